//! Managing auto-reply rules: the flows behind `/v1/rules` (create, list, read, change,
//! delete). Judging messages and sending the replies is [`crate::rules`]'s.

use serde_json::{Map, Value, json};

use crate::domain::send::Invalid;
use crate::rules::AutoReplies;
use crate::rules::rule::{self, GATEWAY_FIELDS, ManagedBy};
use crate::store::StoreError;

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
    /// The id is taken.
    #[error("{0}")]
    Exists(String),
    /// The rule comes from the file.
    #[error("{MANAGED}")]
    Managed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &str, rule: impl Into<String>) -> RuleError {
    RuleError::Invalid(vec![Invalid {
        field: field.to_owned(),
        rule: rule.into(),
    }])
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
            return Err(invalid("", "the rule must be a JSON object"));
        };
        let mut errors = gateway_fields(&doc);
        let id = match doc.get("id") {
            None | Some(Value::Null) => rule::new_id(),
            Some(v) => v.as_str().unwrap_or_default().to_owned(),
        };
        let now = crate::outgoing::now_ms() / 1000;
        doc.insert("id".into(), json!(id));
        doc.insert("managed_by".into(), json!(ManagedBy::Api));
        doc.insert("created_at".into(), json!(now));
        doc.insert("updated_at".into(), json!(now));
        with_defaults(&mut doc);
        let doc = Value::Object(doc);
        if let Err(more) = rule::parse(&doc, self.replies.numbers()) {
            errors.extend(more);
        }
        if !errors.is_empty() {
            return Err(RuleError::Invalid(errors));
        }
        if !self
            .replies
            .store()
            .rule_put(&id, &doc.to_string(), true)
            .await?
        {
            return Err(RuleError::Exists(format!(
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

    /// One rule.
    pub async fn get(&self, id: &str) -> Result<Value, RuleError> {
        if !rule::is_id(id) {
            return Err(missing(id));
        }
        let doc = self
            .replies
            .store()
            .rule_get(id)
            .await?
            .ok_or_else(|| missing(id))?;
        serde_json::from_str(&doc).map_err(|_| missing(id))
    }

    /// Changes a rule: the fields given replace the stored ones (`when` and `reply` as a
    /// whole); `null` removes an optional field (its default applies).
    pub async fn update(&self, id: &str, patch: Value) -> Result<Value, RuleError> {
        let mut doc = self.get(id).await?;
        if doc["managed_by"] == "file" {
            return Err(RuleError::Managed);
        }
        let Value::Object(patch) = patch else {
            return Err(invalid("", "the change must be a JSON object"));
        };
        let mut errors = gateway_fields(&patch);
        if let Some(new_id) = patch.get("id")
            && new_id.as_str() != Some(id)
        {
            errors.push(Invalid {
                field: "id".into(),
                rule: "cannot change: create a new rule instead".into(),
            });
        }
        let object = doc.as_object_mut().expect("a stored rule is an object");
        for (key, value) in patch {
            if GATEWAY_FIELDS.contains(&key.as_str()) {
                continue;
            }
            if value.is_null() {
                object.remove(&key);
            } else {
                object.insert(key, value);
            }
        }
        object.insert("updated_at".into(), json!(crate::outgoing::now_ms() / 1000));
        with_defaults(object);
        if let Err(more) = rule::parse(&doc, self.replies.numbers()) {
            errors.extend(more);
        }
        if !errors.is_empty() {
            return Err(RuleError::Invalid(errors));
        }
        self.replies
            .store()
            .rule_put(id, &doc.to_string(), false)
            .await?;
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

/// Writes `enabled` and `priority` in when absent, so a rule shows what applies.
fn with_defaults(doc: &mut Map<String, Value>) {
    doc.entry("enabled").or_insert(json!(true));
    doc.entry("priority")
        .or_insert(json!(rule::DEFAULT_PRIORITY));
}

/// The gateway's own fields, refused in a client's document.
fn gateway_fields(doc: &Map<String, Value>) -> Vec<Invalid> {
    GATEWAY_FIELDS
        .iter()
        .filter(|f| doc.contains_key(**f))
        .map(|f| Invalid {
            field: (*f).to_owned(),
            rule: "is set by the gateway".to_owned(),
        })
        .collect()
}
