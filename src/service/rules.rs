//! Managing auto-reply rules: the flows behind `/v1/rules` (create, list, read, change,
//! delete). Judging messages and sending the replies is [`crate::rules`]'s.
//!
//! A rule's `starts_after` is the log's last event when it is created or enabled: the engine
//! answers only later messages, so a new rule never answers the past, whatever the engine's
//! lag. A change is a compare-and-set on the stored document: two changes at once do not lose
//! one, and a change racing a delete does not bring the rule back.

use serde_json::{Map, Value, json};

use crate::domain::send::Invalid;
use crate::rules::AutoReplies;
use crate::rules::rule::{self, GATEWAY_FIELDS, MAX_RULES, ManagedBy};
use crate::store::StoreError;
use crate::store::rules::RulePut;
use crate::store::view::now_secs;

/// Why a rule from AUTO_REPLY_RULES_FILE refuses a change.
pub const MANAGED: &str =
    "this rule comes from AUTO_REPLY_RULES_FILE: change it in the file (and restart)";

/// Why a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// Fields that break a rule.
    #[error("invalid fields")]
    Invalid(Vec<Invalid>),
    /// No rule with this id.
    #[error("{0}")]
    NotFound(String),
    /// The id is taken, or the rule changed while the request ran.
    #[error("{0}")]
    Conflict(String),
    /// The rule comes from the file.
    #[error("{MANAGED}")]
    Managed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &str, rule: impl Into<String>) -> Invalid {
    Invalid {
        field: field.to_owned(),
        rule: rule.into(),
    }
}

fn missing(id: &str) -> RuleError {
    RuleError::NotFound(format!("no auto-reply rule with id {id:?}"))
}

/// The rule management service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Rules {
    replies: AutoReplies,
}

impl Rules {
    pub fn new(replies: AutoReplies) -> Self {
        Self { replies }
    }

    /// Creates a rule from a client's document; answers the stored document.
    pub async fn create(&self, body: Value) -> Result<Value, RuleError> {
        let Value::Object(mut doc) = body else {
            return Err(RuleError::Invalid(vec![invalid(
                "",
                "the rule must be a JSON object",
            )]));
        };
        let mut errors = gateway_fields(&doc);
        let id = match doc.get("id") {
            None | Some(Value::Null) => rule::new_id(),
            Some(v) => v.as_str().unwrap_or_default().to_owned(),
        };
        let now = now_secs();
        doc.insert("id".into(), json!(id));
        doc.insert("managed_by".into(), json!(ManagedBy::Api));
        doc.insert("created_at".into(), json!(now));
        doc.insert("updated_at".into(), json!(now));
        rule::with_defaults(&mut doc);
        let doc = Value::Object(doc);
        // The types' names are looked at once the rule reads: a `when.types` the parse refused
        // is reported once, by the parse.
        match rule::parse(&doc, self.replies.numbers()) {
            Ok(rule) => errors.extend(rule.unknown_types()),
            Err(more) => errors.extend(more),
        }
        check_size(&doc, &mut errors);
        if !errors.is_empty() {
            return Err(RuleError::Invalid(errors));
        }
        let store = self.replies.store();
        if store.rule_count().await? >= MAX_RULES {
            return Err(RuleError::Invalid(vec![invalid(
                "",
                format!("there are {MAX_RULES} rules already, the most kept: delete one first"),
            )]));
        }
        let mut doc = doc;
        doc["starts_after"] = json!(self.replies.log_end().await?);
        if !store
            .rule_put(&id, &doc.to_string(), RulePut::Create)
            .await?
        {
            return Err(RuleError::Conflict(format!(
                "an auto-reply rule with id {id:?} exists: change it with PATCH /v1/rules/{id}, or choose another id"
            )));
        }
        self.replies.changed();
        Ok(doc)
    }

    /// Every rule, in the order they are tried (priority, then id).
    pub async fn list(&self) -> Result<Value, RuleError> {
        let mut docs: Vec<Value> = self
            .replies
            .store()
            .rule_list()
            .await?
            .into_iter()
            .filter_map(|(_, doc)| serde_json::from_str(&doc).ok())
            .collect();
        let key = |d: &Value| {
            (
                d["priority"].as_i64().unwrap_or(rule::DEFAULT_PRIORITY),
                d["id"].as_str().unwrap_or_default().to_owned(),
            )
        };
        docs.sort_by_key(key);
        Ok(json!({ "data": docs }))
    }

    /// One rule, with its stored text (a change's compare-and-set expects it).
    async fn load(&self, id: &str) -> Result<(Value, String), RuleError> {
        if !rule::is_id(id) {
            return Err(missing(id));
        }
        let raw = self
            .replies
            .store()
            .rule_get(id)
            .await?
            .ok_or_else(|| missing(id))?;
        let doc = serde_json::from_str(&raw).map_err(|_| missing(id))?;
        Ok((doc, raw))
    }

    /// One rule.
    pub async fn get(&self, id: &str) -> Result<Value, RuleError> {
        Ok(self.load(id).await?.0)
    }

    /// Changes a rule: the fields given replace the stored ones (`when` and `reply` as a
    /// whole); `null` removes an optional field (its default applies).
    pub async fn update(&self, id: &str, patch: Value) -> Result<Value, RuleError> {
        let (mut doc, raw) = self.load(id).await?;
        if doc["managed_by"] == "file" {
            return Err(RuleError::Managed);
        }
        let Value::Object(patch) = patch else {
            return Err(RuleError::Invalid(vec![invalid(
                "",
                "the change must be a JSON object",
            )]));
        };
        let mut errors = gateway_fields(&patch);
        match patch.get("id") {
            None | Some(Value::Null) => {}
            Some(new_id) if new_id.as_str() == Some(id) => {}
            Some(_) => errors.push(invalid("id", "cannot change: create a new rule instead")),
        }
        if patch.get("when").is_some_and(Value::is_null) {
            errors.push(invalid(
                "when",
                "cannot be null: give the conditions, or {} to answer every message",
            ));
        }
        let was_enabled = doc["enabled"] != false;
        // The type names are checked when the change writes them: pausing a rule an earlier
        // release took does not require fixing its types first.
        let writes_when = patch.get("when").is_some();
        let object = doc.as_object_mut().expect("a stored rule is an object");
        for (key, value) in patch {
            if GATEWAY_FIELDS.contains(&key.as_str()) || key == "id" {
                continue;
            }
            if value.is_null() {
                object.remove(&key);
            } else {
                object.insert(key, value);
            }
        }
        object.insert("updated_at".into(), json!(now_secs()));
        rule::with_defaults(object);
        match rule::parse(&doc, self.replies.numbers()) {
            Ok(rule) if writes_when => errors.extend(rule.unknown_types()),
            Ok(_) => {}
            Err(more) => errors.extend(more),
        }
        check_size(&doc, &mut errors);
        if !errors.is_empty() {
            return Err(RuleError::Invalid(errors));
        }
        if !was_enabled && doc["enabled"] != false {
            // Enabled again: it answers messages from now on, not those of its pause.
            doc["starts_after"] = json!(self.replies.log_end().await?);
        }
        let put = RulePut::Replace { expected: &raw };
        if !self
            .replies
            .store()
            .rule_put(id, &doc.to_string(), put)
            .await?
        {
            return Err(RuleError::Conflict(format!(
                "the rule {id:?} was changed or deleted while this change ran: read it again (GET /v1/rules/{id}) and retry"
            )));
        }
        self.replies.changed();
        Ok(doc)
    }

    /// Deletes a rule.
    pub async fn delete(&self, id: &str) -> Result<(), RuleError> {
        let doc = self.get(id).await?;
        if doc["managed_by"] == "file" {
            return Err(RuleError::Managed);
        }
        if !self.replies.store().rule_delete(id).await? {
            return Err(missing(id));
        }
        self.replies.changed();
        Ok(())
    }
}

/// The gateway's own fields, refused in a client's document.
fn gateway_fields(doc: &Map<String, Value>) -> Vec<Invalid> {
    GATEWAY_FIELDS
        .iter()
        .filter(|f| doc.contains_key(**f))
        .map(|f| invalid(f, "is set by the gateway"))
        .collect()
}

fn check_size(doc: &Value, errors: &mut Vec<Invalid>) {
    if let Some(why) = rule::oversize(doc) {
        errors.push(invalid("", why));
    }
}
