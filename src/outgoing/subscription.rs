//! A subscription: where an app wants events, which ones, and the secret deliveries are signed
//! with. Parsed from the stored row ([`crate::store::hooks::HookRow`]) or from an API request;
//! the stored configuration is [`HookConfig`] (JSON).

use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

use super::signature::SigningSecret;
use super::target;
use crate::events::Event;
use crate::store::hooks::{Backlog, HookRow};

/// The id of the subscription config.env defines (WEBHOOK_URL).
pub const CONFIG_ID: &str = "config";
/// Most event types one subscription may name.
pub const MAX_EVENT_TYPES: usize = 64;
/// Longest event type name.
pub const MAX_EVENT_TYPE_LEN: usize = 64;
/// Longest description.
pub const MAX_DESCRIPTION_LEN: usize = 512;
/// How long a rotated-out secret still signs deliveries (a second signature).
pub const ROTATION_OVERLAP_SECS: i64 = 24 * 60 * 60;

/// Who manages a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManagedBy {
    /// `/v1/webhooks`.
    Api,
    /// config.env (WEBHOOK_URL): changed there, not through the API.
    Config,
}

/// The stored configuration of a subscription. Its `Debug` leaves the secrets out.
#[derive(Clone, Serialize, Deserialize)]
pub struct HookConfig {
    pub url: String,
    /// `None`: every type.
    pub events: Option<Vec<String>>,
    /// Only events of this business number (`data.phone_number_id`).
    pub phone_number_id: Option<String>,
    pub description: Option<String>,
    pub secret: String,
    /// The secret before the last rotation, valid until `previous_until` (unix seconds).
    pub previous_secret: Option<String>,
    pub previous_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub managed_by: ManagedBy,
}

impl std::fmt::Debug for HookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookConfig")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("phone_number_id", &self.phone_number_id)
            .field("managed_by", &self.managed_by)
            .finish_non_exhaustive()
    }
}

/// A subscription, parsed.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub config: HookConfig,
    pub url: Url,
    secret: SigningSecret,
    previous: Option<(SigningSecret, i64)>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<i64>,
    pub cursor: Option<String>,
}

impl Subscription {
    /// Parses a stored row; the error says what is wrong with it.
    pub fn from_row(row: &HookRow) -> Result<Self, String> {
        let config: HookConfig = serde_json::from_str(&row.config)
            .map_err(|e| format!("subscription {}: unreadable configuration: {e}", row.id))?;
        let url = Url::parse(&config.url)
            .map_err(|e| format!("subscription {}: unreadable URL: {e}", row.id))?;
        let secret = SigningSecret::parse(&config.secret)
            .map_err(|e| format!("subscription {}: its secret {e}", row.id))?;
        let previous = match (&config.previous_secret, config.previous_until) {
            (Some(s), Some(until)) => SigningSecret::parse(s).ok().map(|s| (s, until)),
            _ => None,
        };
        Ok(Self {
            id: row.id.clone(),
            config,
            url,
            secret,
            previous,
            enabled: row.enabled,
            disabled_reason: row.disabled_reason.clone(),
            failing_since: row.failing_since,
            cursor: row.cursor.clone(),
        })
    }

    /// The secrets a delivery made at `now_secs` is signed with: the current one, and the one
    /// before the last rotation for [`ROTATION_OVERLAP_SECS`] after it.
    pub fn secrets(&self, now_secs: i64) -> Vec<&SigningSecret> {
        let mut secrets = vec![&self.secret];
        if let Some((previous, until)) = &self.previous
            && now_secs < *until
        {
            secrets.push(previous);
        }
        secrets
    }

    /// Whether the subscription wants `event`.
    pub fn wants(&self, event: &Event) -> bool {
        self.config
            .events
            .as_ref()
            .is_none_or(|types| types.contains(&event.kind))
            && self
                .config
                .phone_number_id
                .as_ref()
                .is_none_or(|p| event.phone_number_id() == Some(p.as_str()))
    }

    /// The subscription as the API shows it: never the secret.
    pub fn view(&self, backlog: Option<Backlog>) -> serde_json::Value {
        let c = &self.config;
        let mut view = serde_json::json!({
            "id": self.id,
            "url": c.url,
            "events": c.events,
            "phone_number_id": c.phone_number_id,
            "description": c.description,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "failing_since": self.failing_since,
            "managed_by": c.managed_by,
            "created_at": c.created_at,
            "updated_at": c.updated_at,
            "previous_secret_valid_until": self.previous.as_ref().map(|(_, until)| until),
        });
        if let Some(b) = backlog {
            view["pending_deliveries"] = b.pending.into();
            view["dead_deliveries"] = b.dead.into();
        }
        view
    }
}

/// Checks event type names: 1 to [`MAX_EVENT_TYPES`] of them, each 1 to
/// [`MAX_EVENT_TYPE_LEN`] letters, digits, `_` or `.`; duplicates are dropped.
pub fn parse_event_types<'a>(
    types: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for t in types {
        if t.is_empty()
            || t.len() > MAX_EVENT_TYPE_LEN
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            let shown: String = t.chars().take(MAX_EVENT_TYPE_LEN).collect();
            return Err(format!(
                "must be event types of 1-{MAX_EVENT_TYPE_LEN} letters, digits, _ or . (found {shown:?}); e.g. message_incoming, message_status"
            ));
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    if out.is_empty() {
        return Err(
            "must name at least one event type (leave it out, or null, for every type)".into(),
        );
    }
    if out.len() > MAX_EVENT_TYPES {
        return Err(format!("must name at most {MAX_EVENT_TYPES} event types"));
    }
    Ok(out)
}

/// A fresh subscription id: `wh_` and 20 random hex digits.
pub fn new_id() -> String {
    let mut bytes = [0u8; 10];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    format!("wh_{}", hex::encode(bytes))
}

/// Whether `id` could be a subscription id (for paths): `config` or `wh_` + hex.
pub fn is_id(id: &str) -> bool {
    id == CONFIG_ID
        || id.strip_prefix("wh_").is_some_and(|h| {
            (1..=40).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

/// `Some(value)` for a field that is present (even `null`): tells "absent" from "null" in a
/// PATCH.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `POST /v1/webhooks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub url: String,
    #[serde(default)]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub phone_number_id: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `PATCH /v1/webhooks/{id}`: absent fields stay; `null` clears `events` (every type),
/// `phone_number_id` (every number) and `description`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    // `present` over a plain type: `null` is a 422 naming the field, not "no change".
    #[serde(default, deserialize_with = "present")]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub events: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub phone_number_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub enabled: Option<bool>,
}

/// A field that breaks a rule: its name and the rule.
pub type Invalid = (&'static str, String);

fn check_events(events: &Option<Vec<String>>) -> Result<Option<Vec<String>>, Invalid> {
    events
        .as_ref()
        .map(|e| parse_event_types(e.iter().map(String::as_str)))
        .transpose()
        .map_err(|rule| ("events", rule))
}

fn check_number(number: &Option<String>) -> Result<Option<String>, Invalid> {
    number
        .as_ref()
        .map(|n| {
            crate::domain::PhoneNumberId::parse(n)
                .map(|p| p.as_str().to_owned())
                .map_err(|e| ("phone_number_id", e.to_string()))
        })
        .transpose()
}

fn check_description(d: &Option<String>) -> Result<Option<String>, Invalid> {
    match d {
        Some(d) if d.len() > MAX_DESCRIPTION_LEN => Err((
            "description",
            format!("must be at most {MAX_DESCRIPTION_LEN} bytes"),
        )),
        other => Ok(other.clone()),
    }
}

impl CreateRequest {
    /// The configuration it asks for (a new secret unless one is given), or every field that
    /// breaks a rule.
    pub fn into_config(self, allow_private: bool, now: i64) -> Result<HookConfig, Vec<Invalid>> {
        let mut invalid = Vec::new();
        let url = target::parse_url(&self.url, allow_private).map_err(|r| ("url", r));
        let events = check_events(&self.events);
        let number = check_number(&self.phone_number_id);
        let description = check_description(&self.description);
        let secret = match &self.secret {
            None => Ok(SigningSecret::generate()),
            Some(s) => SigningSecret::parse(s).map_err(|r| ("secret", r.to_owned())),
        };
        macro_rules! take {
            ($r:expr) => {
                match $r {
                    Ok(v) => Some(v),
                    Err(e) => {
                        invalid.push(e);
                        None
                    }
                }
            };
        }
        let (url, events, number, description, secret) = (
            take!(url),
            take!(events),
            take!(number),
            take!(description),
            take!(secret),
        );
        match (url, events, number, description, secret) {
            (Some(url), Some(events), Some(number), Some(description), Some(secret)) => {
                Ok(HookConfig {
                    url: url.to_string(),
                    events,
                    phone_number_id: number,
                    description,
                    secret: secret.expose().to_owned(),
                    previous_secret: None,
                    previous_until: None,
                    created_at: now,
                    updated_at: now,
                    managed_by: ManagedBy::Api,
                })
            }
            _ => Err(invalid),
        }
    }
}

impl UpdateRequest {
    /// `config` with the changes applied, or every field that breaks a rule.
    pub fn apply(
        &self,
        config: &HookConfig,
        allow_private: bool,
        now: i64,
    ) -> Result<HookConfig, Vec<Invalid>> {
        let mut invalid = Vec::new();
        let mut next = config.clone();
        if let Some(url) = &self.url {
            match target::parse_url(url, allow_private) {
                Ok(url) => next.url = url.to_string(),
                Err(rule) => invalid.push(("url", rule)),
            }
        }
        if let Some(events) = &self.events {
            match check_events(events) {
                Ok(e) => next.events = e,
                Err(e) => invalid.push(e),
            }
        }
        if let Some(number) = &self.phone_number_id {
            match check_number(number) {
                Ok(n) => next.phone_number_id = n,
                Err(e) => invalid.push(e),
            }
        }
        if let Some(description) = &self.description {
            match check_description(description) {
                Ok(d) => next.description = d,
                Err(e) => invalid.push(e),
            }
        }
        if !invalid.is_empty() {
            return Err(invalid);
        }
        next.updated_at = now;
        Ok(next)
    }

    /// Whether it changes the configuration (not only `enabled`).
    pub fn changes_config(&self) -> bool {
        self.url.is_some()
            || self.events.is_some()
            || self.phone_number_id.is_some()
            || self.description.is_some()
    }
}

impl HookConfig {
    /// The configuration after a rotation to `fresh`: the current secret stays valid for
    /// [`ROTATION_OVERLAP_SECS`].
    pub fn rotated(&self, fresh: &SigningSecret, now: i64) -> Self {
        Self {
            previous_secret: Some(self.secret.clone()),
            previous_until: Some(now + ROTATION_OVERLAP_SECS),
            secret: fresh.expose().to_owned(),
            updated_at: now,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_names_without_duplicates() {
        assert_eq!(
            parse_event_types(["message_status", "message_status", "a.b"]).unwrap(),
            ["message_status", "a.b"]
        );
        assert!(
            parse_event_types(["message status"])
                .unwrap_err()
                .contains("letters")
        );
        assert!(parse_event_types([]).unwrap_err().contains("at least one"));
        let many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
        assert!(
            parse_event_types(many.iter().map(String::as_str))
                .unwrap_err()
                .contains("at most 64")
        );
    }

    #[test]
    fn ids_are_generated_and_recognised() {
        let id = new_id();
        assert!(is_id(&id) && id.len() == 23, "{id}");
        assert_ne!(new_id(), id);
        assert!(is_id("config"));
        for bad in ["", "wh_", "wh_xyz", "../x", "wh_12 3"] {
            assert!(!is_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_create_request_reports_every_bad_field() {
        let request: CreateRequest = serde_json::from_value(serde_json::json!({
            "url": "ftp://x", "events": [""], "phone_number_id": "a b", "secret": "nope"
        }))
        .unwrap();
        let fields: Vec<&str> = request
            .into_config(false, 1)
            .unwrap_err()
            .iter()
            .map(|(f, _)| *f)
            .collect();
        assert_eq!(fields, ["url", "events", "phone_number_id", "secret"]);
        let ok: CreateRequest =
            serde_json::from_value(serde_json::json!({"url": "https://example.com/h"})).unwrap();
        let config = ok.into_config(false, 7).unwrap();
        assert!(
            config.secret.starts_with("whsec_")
                && config.events.is_none()
                && config.created_at == 7
        );
    }

    #[test]
    fn a_patch_tells_absent_from_null() {
        let base: CreateRequest = serde_json::from_value(serde_json::json!({"url": "https://example.com/h", "events": ["message_status"], "description": "d"})).unwrap();
        let base = base.into_config(false, 1).unwrap();
        let keep: UpdateRequest =
            serde_json::from_value(serde_json::json!({"enabled": false})).unwrap();
        assert!(!keep.changes_config());
        let clear: UpdateRequest =
            serde_json::from_value(serde_json::json!({"events": null, "description": null}))
                .unwrap();
        let next = clear.apply(&base, false, 2).unwrap();
        assert_eq!(
            (next.events, next.description, next.updated_at),
            (None, None, 2)
        );
        assert!(
            serde_json::from_value::<UpdateRequest>(serde_json::json!({"secret": "x"})).is_err()
        );
        for null in ["url", "enabled"] {
            let e = serde_json::from_value::<UpdateRequest>(serde_json::json!({ null: null }));
            assert!(e.is_err(), "{null}: null is not a change");
        }
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let config: CreateRequest = serde_json::from_value(
            serde_json::json!({"url": "https://example.com/h", "secret": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"}),
        )
        .unwrap();
        let config = config.into_config(false, 1).unwrap();
        let row = HookRow {
            id: "wh_1".into(),
            config: serde_json::to_string(&config).unwrap(),
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            cursor: None,
        };
        let sub = Subscription::from_row(&row).unwrap();
        for shown in [
            format!("{config:?}"),
            format!("{row:?}"),
            format!("{sub:?}"),
        ] {
            assert!(!shown.contains("C2FVsBQIhrsc"), "{shown}");
        }
    }

    #[test]
    fn rotation_signs_with_both_secrets_for_a_day() {
        let config: CreateRequest =
            serde_json::from_value(serde_json::json!({"url": "https://example.com/h"})).unwrap();
        let config = config.into_config(false, 100).unwrap();
        let fresh = SigningSecret::generate();
        let rotated = config.rotated(&fresh, 100);
        let row = HookRow {
            id: "wh_1".into(),
            config: serde_json::to_string(&rotated).unwrap(),
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            cursor: None,
        };
        let sub = Subscription::from_row(&row).unwrap();
        let at = |t| {
            sub.secrets(t)
                .iter()
                .map(|s| s.expose().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(at(100), [fresh.expose().to_owned(), config.secret.clone()]);
        assert_eq!(at(100 + ROTATION_OVERLAP_SECS), [fresh.expose().to_owned()]);
    }
}
