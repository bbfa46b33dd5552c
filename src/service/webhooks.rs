//! Managing outgoing webhooks: the flows behind `/v1/webhooks` (create, list, read, change,
//! delete, rotate the secret, show attempts, replay). The delivery itself is
//! [`crate::outgoing`]'s.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::events::EventId;
use crate::events::log::READ_BATCH;
use crate::outgoing::signature::SigningSecret;
use crate::outgoing::subscription::{
    CONFIG_ID, CreateRequest, HookConfig, Invalid, Subscription, UpdateRequest, is_id, new_id,
};
use crate::outgoing::{Outgoing, now_ms};
use crate::store::StoreError;
use crate::store::hooks::{ConfigChange, DEAD_KEPT, Enqueue, HookRow, HookUpdate, NewDelivery};

/// Why config.env's subscription refuses a change.
pub const MANAGED: &str = "the subscription 'config' comes from WEBHOOK_URL, WEBHOOK_SECRET and WEBHOOK_EVENTS in config.env: change them there (and restart); only enabled can be changed here";

/// Most attempts `GET /v1/webhooks/{id}/deliveries` shows.
pub const MAX_ATTEMPTS_SHOWN: usize = 1000;
/// Most deliveries one replay enqueues.
pub const MAX_REPLAY: usize = 100_000;

/// Why a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Body fields that break a rule.
    #[error("invalid fields")]
    Invalid(Vec<Invalid>),
    /// No subscription with this id.
    #[error("{0}")]
    NotFound(String),
    /// The subscription comes from config.env and changes there (only `enabled` changes here).
    #[error("{MANAGED}")]
    Managed,
    /// The subscription kept changing under the request (other changes won every try).
    #[error("{BUSY}")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The 409 of [`WebhookError::Busy`].
pub const BUSY: &str = "the subscription was changed by other requests while this one was applied, several times in a row; nothing of this request was applied: send it again";

/// How often a change computed from a configuration that another request changed meanwhile is
/// computed again from the new one before the request gives up with [`WebhookError::Busy`].
const UPDATE_TRIES: usize = 16;

/// `POST /v1/webhooks/{id}/replay`: exactly one of the three.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Every retained event after this event id.
    #[serde(default)]
    pub after: Option<String>,
    /// Every retained event written at or after this time (unix seconds).
    #[serde(default)]
    pub since: Option<i64>,
    /// The dead-letter list.
    #[serde(default)]
    pub dead_letters: Option<bool>,
}

/// The outgoing-webhook management service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Webhooks {
    outgoing: Outgoing,
}

/// The 404 for a subscription id (also for one deleted while the request ran).
fn missing(id: &str) -> WebhookError {
    WebhookError::NotFound(format!("no webhook subscription with id {id:?}"))
}

impl Webhooks {
    pub fn new(outgoing: Outgoing) -> Self {
        Self { outgoing }
    }

    async fn load(&self, id: &str) -> Result<Subscription, WebhookError> {
        self.load_row(id).await.map(|(sub, _)| sub)
    }

    /// The subscription and its stored configuration document (what a change is made from).
    async fn load_row(&self, id: &str) -> Result<(Subscription, String), WebhookError> {
        if !is_id(id) {
            return Err(missing(id));
        }
        let row = self
            .outgoing
            .store()
            .hook_get(id)
            .await?
            .ok_or_else(|| missing(id))?;
        let sub = Subscription::from_row(&row)
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))
            .map_err(WebhookError::Store)?;
        Ok((sub, row.config))
    }

    /// Creates a subscription that receives the events written from now on. The answer carries
    /// its `secret` (the only time it is shown).
    pub async fn create(&self, request: CreateRequest) -> Result<Value, WebhookError> {
        let enabled = request.enabled.unwrap_or(true);
        let now = now_ms() / 1000;
        let config = request
            .into_config(self.outgoing.settings().allow_private, now)
            .map_err(WebhookError::Invalid)?;
        let cursor = self.outgoing.hub().log().newest().await?.to_string();
        let row = HookRow {
            id: new_id(),
            config: serde_json::to_string(&config).expect("a config serializes"),
            enabled,
            disabled_reason: (!enabled).then(|| "created disabled".to_owned()),
            failing_since: None,
            cursor: Some(cursor),
        };
        if !self.outgoing.store().hook_put(&row, true).await? {
            return Err(StoreError::Io(std::io::Error::other("subscription id collision")).into());
        }
        self.outgoing.changed();
        let sub =
            Subscription::from_row(&row).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        let mut view = sub.view(None);
        view["secret"] = config.secret.into();
        Ok(view)
    }

    /// Every subscription (no secrets).
    pub async fn list(&self) -> Result<Value, WebhookError> {
        let rows = self.outgoing.store().hook_list().await?;
        let mut data = Vec::with_capacity(rows.len());
        for row in &rows {
            match Subscription::from_row(row) {
                Ok(sub) => {
                    let backlog = self.outgoing.store().hook_backlog(&sub.id).await?;
                    data.push(sub.view(Some(backlog)));
                }
                Err(e) => tracing::error!(error.message = %e, "webhooks.unreadable_subscription"),
            }
        }
        Ok(json!({ "data": data }))
    }

    /// One subscription with its backlog (no secret).
    pub async fn get(&self, id: &str) -> Result<Value, WebhookError> {
        let sub = self.load(id).await?;
        let backlog = self.outgoing.store().hook_backlog(id).await?;
        Ok(sub.view(Some(backlog)))
    }

    /// Changes a subscription; `enabled: true` clears its failure state and resumes its waiting
    /// deliveries. config.env's subscription takes only `enabled` (so it can be resumed after a
    /// 410 or a long failure).
    pub async fn update(&self, id: &str, request: UpdateRequest) -> Result<Value, WebhookError> {
        let enabled = request.enabled.map(|e| (e, "disabled through the API"));
        self.change(id, enabled, |sub, now| {
            if !request.changes_config() {
                return Ok((None, ()));
            }
            if sub.id == CONFIG_ID {
                return Err(WebhookError::Managed);
            }
            let next = request
                .apply(
                    &sub.config,
                    self.outgoing.settings().allow_private,
                    now / 1000,
                )
                .map_err(WebhookError::Invalid)?;
            Ok((Some(next), ()))
        })
        .await?;
        self.get(id).await
    }

    /// Stores the configuration `config` makes of the subscription's (`None`: unchanged) and
    /// `enabled`, by compare-and-set on the stored document: when another request changed it
    /// meanwhile, `config` is computed again from the new one (at most [`UPDATE_TRIES`] times,
    /// then [`WebhookError::Busy`]). Returns what `config` returned beside the document.
    async fn change<T>(
        &self,
        id: &str,
        enabled: Option<(bool, &str)>,
        config: impl Fn(&Subscription, i64) -> Result<(Option<HookConfig>, T), WebhookError>,
    ) -> Result<T, WebhookError> {
        for _ in 0..UPDATE_TRIES {
            let (sub, stored) = self.load_row(id).await?;
            let now = now_ms();
            let (next, value) = config(&sub, now)?;
            let text = next.map(|c| serde_json::to_string(&c).expect("a config serializes"));
            let change = text.as_deref().map(|to| ConfigChange { from: &stored, to });
            match self
                .outgoing
                .store()
                .hook_update(id, change, enabled, now)
                .await?
            {
                HookUpdate::Applied => {
                    self.outgoing.changed();
                    return Ok(value);
                }
                HookUpdate::Missing => return Err(missing(id)),
                HookUpdate::Changed => continue,
            }
        }
        Err(WebhookError::Busy)
    }

    /// Deletes a subscription with its waiting deliveries and attempt log.
    pub async fn delete(&self, id: &str) -> Result<(), WebhookError> {
        if id == CONFIG_ID {
            return Err(WebhookError::Managed);
        }
        if !is_id(id) || !self.outgoing.store().hook_delete(id).await? {
            return Err(missing(id));
        }
        self.outgoing.changed();
        Ok(())
    }

    /// A new secret; deliveries carry a second signature with the old one for a day.
    pub async fn rotate(&self, id: &str) -> Result<Value, WebhookError> {
        let fresh = SigningSecret::generate();
        let previous_until = self
            .change(id, None, |sub, now| {
                if sub.id == CONFIG_ID {
                    return Err(WebhookError::Managed);
                }
                let rotated = sub.config.rotated(&fresh, now / 1000);
                let until = rotated.previous_until;
                Ok((Some(rotated), until))
            })
            .await?;
        Ok(json!({
            "id": id,
            "secret": fresh.expose(),
            "previous_secret_valid_until": previous_until,
        }))
    }

    /// The newest attempts (newest first) and the backlog.
    pub async fn deliveries(&self, id: &str, limit: Option<usize>) -> Result<Value, WebhookError> {
        self.load(id).await?;
        let limit = limit.unwrap_or(100).clamp(1, MAX_ATTEMPTS_SHOWN);
        let store = self.outgoing.store();
        let attempts = store.hook_attempts(id, limit).await?;
        let backlog = store.hook_backlog(id).await?;
        let data: Vec<Value> = attempts
            .iter()
            .filter_map(|a| serde_json::from_str(a).ok())
            .collect();
        Ok(json!({
            "data": data,
            "pending": backlog.pending,
            "dead": backlog.dead,
        }))
    }

    /// Enqueues again: the retained events after an event id or since a time that the
    /// subscription wants, or its dead-letter list.
    pub async fn replay(&self, id: &str, request: ReplayRequest) -> Result<Value, WebhookError> {
        let sub = self.load(id).await?;
        let given = [
            request.after.is_some(),
            request.since.is_some(),
            request.dead_letters == Some(true),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            return Err(WebhookError::Invalid(vec![(
                "body",
                "must give exactly one of after (an event id), since (unix seconds) or dead_letters: true".into(),
            )]));
        }
        let store = self.outgoing.store();
        let now = now_ms();
        if request.dead_letters == Some(true) {
            let n = store
                .hook_enqueue(id, &Enqueue::DeadLetters { limit: DEAD_KEPT }, &[], now)
                .await?
                .ok_or_else(|| missing(id))?;
            self.outgoing.changed();
            return Ok(json!({ "enqueued": n }));
        }
        let log = self.outgoing.hub().log();
        let mut cursor = match &request.after {
            Some(after) => Some(log.parse_id(after).ok_or_else(|| {
                WebhookError::Invalid(vec![("after", format!("must be {}", log.id_format()))])
            })?),
            None => None,
        };
        let since_ms = request.since.map(|s| s.saturating_mul(1000));
        if since_ms.is_some_and(|s| s < 0) {
            return Err(WebhookError::Invalid(vec![(
                "since",
                "must be unix seconds, not negative".into(),
            )]));
        }
        let end: EventId = log.newest().await?;
        let mut enqueued = 0;
        let mut truncated = false;
        'pages: loop {
            let events = log.read_after(cursor, READ_BATCH).await?;
            let Some(last) = events.last().map(|e| e.id) else {
                break;
            };
            let mut batch = Vec::new();
            for e in &events {
                if e.id > end {
                    break;
                }
                if since_ms.is_some_and(|s| e.time_ms().unwrap_or(now) < s) || !sub.wants(e) {
                    continue;
                }
                if enqueued + batch.len() >= MAX_REPLAY {
                    truncated = true;
                    break;
                }
                batch.push(NewDelivery {
                    event_id: e.id.to_string(),
                    lane: e.contact().unwrap_or_default().to_owned(),
                    body: crate::outgoing::delivery_body(e, now),
                });
            }
            if !batch.is_empty() {
                enqueued += store
                    .hook_enqueue(id, &Enqueue::Replay, &batch, now)
                    .await?
                    .ok_or_else(|| missing(id))?;
            }
            if truncated || last >= end {
                break 'pages;
            }
            cursor = Some(last);
        }
        self.outgoing.changed();
        Ok(json!({ "enqueued": enqueued, "truncated": truncated }))
    }
}
