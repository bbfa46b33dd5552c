//! `/webhook`: Meta's verification handshake (GET) and event notifications (POST).
//!
//! POST order matters: read the raw bytes, check the signature over exactly those bytes, parse,
//! store, and only then answer 200. Anything that is not stored gets a non-200 so Meta retries.
//! Status codes: 401 bad or missing signature (when APP_SECRET is set); 400 malformed JSON or a
//! body that is not a notification envelope, or a message without a usable `id`/`from`; 413 over
//! MAX_BODY_BYTES; 503 store failure. Unknown `field`s and message types are accepted (200).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::AppState;
use crate::http::edge::Connection;
use crate::http::error::ApiError;
use crate::http::extract::take_body;
use crate::webhook::signature::SIGNATURE_HEADER;
use crate::webhook::{HandshakeQuery, extract_batch};

/// What POST /webhook answers (Meta only looks at the status).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookAck {
    /// Always `ok`.
    pub status: &'static str,
    /// Messages newly stored.
    pub stored: usize,
    /// Messages already stored by an earlier delivery.
    pub duplicates: usize,
    /// Status updates received (message statuses are stored on their message; call statuses
    /// are kept as `call_status` events).
    pub statuses: usize,
    /// Items that could not be attributed: kept in the quarantine, announced as
    /// `webhook_error` events, not stored as messages.
    pub quarantined: usize,
    /// Notifications that are not messages (value-level errors, call statuses, history
    /// progress, template, account, user and call updates, ...), kept as events (a retry's are
    /// recognised and not kept twice).
    pub notifications: usize,
}

/// Meta's verification: echoes `hub.challenge` as plain text when the token matches VERIFY_TOKEN.
#[utoipa::path(get, path = "/webhook", tag = "webhook",
    params(
        ("hub.mode" = String, Query, description = "Must be `subscribe`"),
        ("hub.verify_token" = String, Query, description = "Must equal VERIFY_TOKEN"),
        ("hub.challenge" = String, Query, description = "Echoed back on success"),
    ),
    responses(
        (status = 200, description = "The challenge, as text/plain", body = String, content_type = "text/plain"),
        (status = 400, description = "A hub.* parameter is missing", body = crate::http::docs::Detail),
        (status = 403, description = "Wrong mode or token (or VERIFY_TOKEN unset)", body = crate::http::docs::Detail),
    ))]
pub async fn verify_subscription(
    State(state): State<Arc<AppState>>,
    query: Result<Query<HandshakeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    // Every field is optional, so only an undecodable query string fails; it then lacks the hub.* values.
    let query = query.map(|Query(q)| q).unwrap_or_default();
    match query.verify(state.verify_token.as_ref()) {
        Ok(challenge) => {
            tracing::info!(outcome = "accepted", "webhook.verify");
            let mut response = challenge.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            // The challenge is attacker-chosen text; never let a browser sniff it as HTML.
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            Ok(response)
        }
        Err(e) => {
            tracing::warn!(outcome = "refused", reason = %e, "webhook.verify");
            Err(e.into())
        }
    }
}

/// Meta's notifications: verifies, parses, stores every message, then acknowledges.
#[utoipa::path(post, path = "/webhook", tag = "webhook",
    request_body(content = Object, description = "Meta's notification, signed with X-Hub-Signature-256 when APP_SECRET is set"),
    params(("X-Hub-Signature-256" = Option<String>, Header, description = "sha256=<hex HMAC of the raw body>; required when APP_SECRET is set")),
    responses(
        (status = 200, description = "Every message is stored (or was already)", body = WebhookAck),
        (status = 400, description = "Malformed JSON, not a notification envelope, or a message without a valid id/from", body = crate::http::docs::Detail),
        (status = 401, description = "Signature missing or wrong", body = crate::http::docs::Detail),
        (status = 413, description = "Body over MAX_BODY_BYTES", body = crate::http::docs::Detail),
        (status = 503, description = "Store unavailable; Meta will retry", body = crate::http::docs::Detail),
    ))]
pub async fn receive_webhook(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<WebhookAck>, ApiError> {
    // Only the signature header and the digest the edge computed while the body arrived are
    // needed after the body is consumed.
    let signature = request.headers().get(&SIGNATURE_HEADER).cloned();
    let digest = request
        .extensions()
        .get::<Connection>()
        .and_then(|c| c.body_digest);
    let metrics = &state.metrics;
    let body = take_body(request).await.inspect_err(|e| {
        let reason = e.body_failure_reason();
        metrics.reject(reason);
        tracing::warn!(reason, "webhook.rejected");
    })?;
    if let Some(secret) = &state.app_secret {
        let header = signature.as_ref().map(HeaderValue::as_bytes);
        match &digest {
            Some(digest) => secret.verify_digest(header, digest, &body),
            None => secret.verify(header, &body),
        }
        .inspect_err(|e| {
            metrics.reject(e.reason());
            tracing::warn!(reason = e.reason(), "webhook.rejected");
        })?;
    }
    let batch = extract_batch(&body).inspect_err(|e| {
        metrics.reject("invalid_payload");
        tracing::warn!(reason = "invalid_payload", error.message = %crate::http::error::bounded(&e.to_string()), "webhook.rejected");
    })?;
    let now = crate::store::view::now_secs();
    state.delivery.record(now);
    // The tracker's value (a maximum), so concurrent deliveries never move the gauge back.
    metrics
        .webhook_last_received
        .set(state.delivery.last_received());
    metrics
        .statuses_received
        .inc_by((batch.statuses.len() + batch.call_statuses) as u64);
    if !batch.statuses.is_empty() || !batch.notices.is_empty() || batch.ignored_changes > 0 {
        tracing::info!(
            statuses = batch.statuses.len(),
            call_statuses = batch.call_statuses,
            errors = batch.errors,
            notices = batch.notices.len(),
            ignored_changes = batch.ignored_changes,
            "webhook.events received"
        );
    }
    for q in &batch.quarantined {
        tracing::warn!(path = %q.path, rule = %crate::http::error::bounded(&q.rule), "webhook.quarantined");
    }
    let started = std::time::Instant::now();
    let report = state.store.save_inbound(&batch.messages).await;
    if !batch.messages.is_empty() {
        metrics.observe_store("save", started.elapsed().as_secs_f64(), report.is_ok());
    }
    let report = report?;
    // After the messages: a failure here is a 503 too, and Meta's retry finds the messages
    // stored (duplicates) and keeps the quarantined items again.
    state.store.save_statuses(&batch.statuses).await?;
    state.store.save_quarantined(&batch.quarantined).await?;
    state.store.save_notices(&batch.notices).await?;
    metrics
        .webhook_items_quarantined
        .inc_by(batch.quarantined.len() as u64);
    metrics.messages_stored.inc_by(report.stored as u64);
    metrics.messages_duplicate.inc_by(report.duplicates as u64);
    metrics.messages_id_conflict.inc_by(report.conflicts as u64);
    if !batch.messages.is_empty() {
        tracing::info!(
            stored = report.stored,
            duplicates = report.duplicates,
            "webhook.store success"
        );
    }
    Ok(Json(WebhookAck {
        status: "ok",
        stored: report.stored,
        duplicates: report.duplicates,
        statuses: batch.statuses.len() + batch.call_statuses,
        quarantined: batch.quarantined.len(),
        notifications: batch.notices.len(),
    }))
}
