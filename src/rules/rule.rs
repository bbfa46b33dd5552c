//! An auto-reply rule: which inbound messages it answers ([`When`]) and with what (a
//! `/v1/messages` body without its addressee), parsed from its JSON document (the API's and the
//! store's form; the TOML seed file is read into the same JSON).
//!
//! Document: `{"id", "name"?, "enabled", "priority", "phone_number_id"?, "when", "reply",
//! "quote"?, "once_per"?, "managed_by", "created_at", "updated_at", "starts_after"}` (the last
//! event of the log when the rule was created or last enabled: it answers only later messages).
//! All conditions of `when`
//! must hold (an empty `when` matches every message):
//! - `keyword`: `{"exact"?, "contains"?, "regex"?, "case_sensitive"?}` (a string or a list each;
//!   any one matching is enough) against the message's text: a text's body, a media caption, the
//!   title of a tapped button or list row;
//! - `types`: Meta message types (`text`, `image`, `interactive`, `button`, ...; a client may
//!   name only those in [`KNOWN_TYPES`], see [`Rule::unknown_types`]). Without it, reactions,
//!   edits, deletions (`revoke`), `system` and `unsupported` messages never match;
//! - `reply_id`: the id of a tapped reply button or list row, or a template button's payload;
//! - `first_message`: the contact's first message in the conversation (nothing earlier in it);
//! - `outside_hours`: [`Hours`] (the message's time is outside them).
//!
//! `reply` may use `{{text}}` (the message's text), `{{name}}` (the contact's profile name) and
//! `{{contact}}` (their number or BSUID) in any string; it is checked at creation with the same
//! rules as `POST /v1/messages`, and again with the values filled in when it fires.

use std::time::Duration;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::hours::Hours;
use crate::domain::Content;
use crate::domain::content::Interactive;
use crate::domain::inbound::KNOWN_TYPES;
use crate::domain::send::{Invalid, OutgoingMessage};

/// Who manages a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManagedBy {
    /// `/v1/rules`.
    Api,
    /// AUTO_REPLY_RULES_FILE: changed there (and restart), not through the API.
    File,
}

/// Most entries of a keyword list, of `types` or of `reply_id`.
pub const MAX_LIST: usize = 100;
/// Longest keyword, regex, reply id or name.
pub const MAX_TEXT: usize = 1000;
/// Longest rule id.
pub const MAX_ID: usize = 64;
/// Default priority (lower goes first).
pub const DEFAULT_PRIORITY: i64 = 100;
/// Message types no rule answers unless it names them in `types`.
pub const IGNORED_BY_DEFAULT: [&str; 5] = ["reaction", "edit", "revoke", "system", "unsupported"];
/// The placeholders a reply may use.
pub const PLACEHOLDERS: [&str; 3] = ["text", "name", "contact"];

/// The fields a client writes.
pub const CLIENT_FIELDS: [&str; 9] = [
    "id",
    "name",
    "enabled",
    "priority",
    "phone_number_id",
    "when",
    "reply",
    "quote",
    "once_per",
];
/// The fields the gateway writes.
pub const GATEWAY_FIELDS: [&str; 4] = ["managed_by", "created_at", "updated_at", "starts_after"];
/// Most rules kept.
pub const MAX_RULES: usize = 1000;
/// Longest rule document (bytes of its JSON).
pub const MAX_DOC_BYTES: usize = 64 * 1024;
/// How long a `first_message` rule without `once_per` keeps a contact from being welcomed again
/// (messages of one second are otherwise all "first": their order within it is unknown).
pub const FIRST_MESSAGE_ONCE: Duration = Duration::from_secs(24 * 60 * 60);
/// Keys a reply may not have: the rule decides them.
const DECIDED_BY_THE_RULE: [&str; 5] = ["to", "recipient", "from", "reply_to", "outside_window"];

/// A parsed rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub enabled: bool,
    pub priority: i64,
    /// Only messages to this business number.
    pub phone_number_id: Option<String>,
    pub managed_by: ManagedBy,
    /// The rule answers only messages whose event comes after this one (the log's id format).
    pub starts_after: Option<String>,
    pub when: When,
    /// `{"type", <type object>, "biz_opaque_callback_data"?}`.
    reply: Map<String, Value>,
    /// The reply quotes the message it answers.
    pub quote: bool,
    /// At most one reply per contact (and business number) in this period.
    pub once_per: Option<Duration>,
}

/// The conditions of a rule.
#[derive(Debug, Clone, Default)]
pub struct When {
    keyword: Option<Keyword>,
    types: Option<Vec<String>>,
    reply_ids: Option<Vec<String>>,
    /// Needs a store read, so the engine checks it last ([`Verdict::IfFirst`]).
    pub first_message: bool,
    outside_hours: Option<Hours>,
}

#[derive(Debug, Clone)]
struct Keyword {
    exact: Vec<String>,
    contains: Vec<String>,
    regex: Option<Regex>,
    case_sensitive: bool,
}

/// An inbound message as rules see it: the record of its `message_incoming` event.
#[derive(Debug, Clone, Deserialize)]
pub struct Incoming {
    pub id: String,
    pub phone_number_id: String,
    pub contact: IncomingContact,
    #[serde(default)]
    pub timestamp: i64,
    #[serde(rename = "type", default)]
    pub kind: String,
    pub content: Content,
}

/// The sender of an [`Incoming`].
#[derive(Debug, Clone, Deserialize)]
pub struct IncomingContact {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

impl Incoming {
    /// The message of a `message_incoming` event's data (`None` for anything else).
    pub fn from_event(data: &str) -> Option<Self> {
        serde_json::from_str(data).ok()
    }

    /// What keywords are matched against: a text's body, a caption, a tapped button's or list
    /// row's title.
    pub fn text(&self) -> Option<&str> {
        match &self.content {
            Content::Text { body } => Some(body),
            Content::Image(m) | Content::Video(m) | Content::Document(m) => m.caption.as_deref(),
            Content::Interactive {
                interactive:
                    Interactive::ButtonReply { title, .. } | Interactive::ListReply { title, .. },
            } => Some(title),
            Content::Button { text, .. } => text.as_deref(),
            _ => None,
        }
    }

    /// The id of a tapped reply button or list row, or a template button's payload.
    pub fn reply_id(&self) -> Option<&str> {
        match &self.content {
            Content::Interactive {
                interactive: Interactive::ButtonReply { id, .. } | Interactive::ListReply { id, .. },
            } => Some(id),
            Content::Button { payload, .. } => payload.as_deref(),
            _ => None,
        }
    }
}

/// What a rule says of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    No,
    Yes,
    /// Yes if it is the contact's first message in the conversation.
    IfFirst,
}

impl Rule {
    /// What the rule says of `message` (everything but `first_message`, which needs the store).
    pub fn judge(&self, message: &Incoming) -> Verdict {
        if !self.enabled
            || self
                .phone_number_id
                .as_ref()
                .is_some_and(|n| *n != message.phone_number_id)
        {
            return Verdict::No;
        }
        let when = &self.when;
        let type_ok = match &when.types {
            Some(types) => types.contains(&message.kind),
            None => !IGNORED_BY_DEFAULT.contains(&message.kind.as_str()),
        };
        let reply_ok = when.reply_ids.as_ref().is_none_or(|ids| {
            message
                .reply_id()
                .is_some_and(|id| ids.iter().any(|x| x == id))
        });
        let keyword_ok = when
            .keyword
            .as_ref()
            .is_none_or(|k| message.text().is_some_and(|t| k.matches(t)));
        let hours_ok = when
            .outside_hours
            .as_ref()
            .is_none_or(|h| !h.is_open(message.timestamp));
        match (
            type_ok && reply_ok && keyword_ok && hours_ok,
            when.first_message,
        ) {
            (false, _) => Verdict::No,
            (true, false) => Verdict::Yes,
            (true, true) => Verdict::IfFirst,
        }
    }

    /// The reply to `message`: the reply object with its placeholders filled in, addressed to
    /// the contact from the number they wrote to, parsed like a `POST /v1/messages` body.
    pub fn reply_to(&self, message: &Incoming) -> Result<OutgoingMessage, Vec<Invalid>> {
        let values = [
            message.text().unwrap_or_default(),
            message.contact.name.as_deref().unwrap_or_default(),
            message.contact.id.as_str(),
        ];
        let mut body = Value::Object(self.reply.clone());
        fill(&mut body, &values);
        body["to"] = json!(message.contact.id);
        body["from"] = json!(message.phone_number_id);
        if self.quote {
            body["reply_to"] = json!(message.id);
        }
        OutgoingMessage::parse(&body)
    }
}

impl Keyword {
    fn matches(&self, text: &str) -> bool {
        let folded;
        let text = if self.case_sensitive {
            text
        } else {
            folded = text.to_lowercase();
            &folded
        };
        self.exact.iter().any(|k| text.trim() == k)
            || self.contains.iter().any(|k| text.contains(k.as_str()))
            || self.regex.as_ref().is_some_and(|r| r.is_match(text))
    }
}

/// Replaces `{{name}}` placeholders in every string of `value` (names: [`PLACEHOLDERS`], in
/// that order in `values`). Unknown names are left as written (creation refuses them).
fn fill(value: &mut Value, values: &[&str; 3]) {
    match value {
        Value::String(s) if s.contains("{{") => *s = substitute(s, values),
        Value::Array(items) => items.iter_mut().for_each(|v| fill(v, values)),
        Value::Object(map) => map.values_mut().for_each(|v| fill(v, values)),
        _ => {}
    }
}

fn substitute(s: &str, values: &[&str; 3]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match PLACEHOLDERS.iter().position(|p| *p == name) {
                    Some(i) => out.push_str(values[i]),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Placeholder names used in `value`'s strings that are not [`PLACEHOLDERS`].
fn unknown_placeholders(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("{{") {
                let after = &rest[start + 2..];
                let Some(end) = after.find("}}") else { break };
                let name = after[..end].trim();
                if !PLACEHOLDERS.contains(&name) {
                    out.push(name.to_owned());
                }
                rest = &after[end + 2..];
            }
        }
        Value::Array(items) => items.iter().for_each(|v| unknown_placeholders(v, out)),
        Value::Object(map) => map.values().for_each(|v| unknown_placeholders(v, out)),
        _ => {}
    }
}

impl Rule {
    /// `when.types` names that are not message types Meta sends ([`KNOWN_TYPES`]): a misspelt
    /// type (`txt`) would never match. Checked where a client writes a rule (the API refuses
    /// it, the rules file warns), not where stored rules are read, so a rule an earlier release
    /// took keeps answering.
    pub fn unknown_types(&self) -> Vec<Invalid> {
        unknown_types(self.when.types.as_deref().unwrap_or_default())
    }
}

/// [`Rule::unknown_types`] of these names.
fn unknown_types(names: &[String]) -> Vec<Invalid> {
    let mut unknown: Vec<String> = Vec::new();
    for t in names.iter().filter(|t| !KNOWN_TYPES.contains(&t.as_str())) {
        let t = format!("{t:?}");
        if !unknown.contains(&t) {
            unknown.push(t);
        }
    }
    let mut r = Report::default();
    if !unknown.is_empty() {
        let which = if unknown.len() == 1 {
            "which is not a Meta message type"
        } else {
            "which are not Meta message types"
        };
        r.add(
            "when.types",
            // The names first: long messages are cut in error answers.
            format!(
                "has {}, {which}; expected {}",
                unknown.join(", "),
                KNOWN_TYPES.join(", ")
            ),
        );
    }
    r.0
}

/// `field rule; field rule` for a log line or an error.
pub fn describe(errors: &[Invalid]) -> String {
    errors
        .iter()
        .map(|e| format!("{} {}", e.field, e.rule))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Writes `enabled` and `priority` in when absent, so a rule shows what applies.
/// Why `doc` is over [`MAX_DOC_BYTES`] of JSON, when it is.
pub fn oversize(doc: &Value) -> Option<String> {
    let size = doc.to_string().len();
    (size > MAX_DOC_BYTES)
        .then(|| format!("the rule takes {size} bytes of JSON; at most {MAX_DOC_BYTES}"))
}

pub fn with_defaults(doc: &mut Map<String, Value>) {
    doc.entry("enabled").or_insert(json!(true));
    doc.entry("priority").or_insert(json!(DEFAULT_PRIORITY));
}

impl Rule {
    /// The once-per-period mark a firing takes: `once_per`, or for a `first_message` rule
    /// [`FIRST_MESSAGE_ONCE`].
    pub fn once(&self) -> Option<Duration> {
        self.once_per
            .or(self.when.first_message.then_some(FIRST_MESSAGE_ONCE))
    }
}

/// Whether `id` is a rule id: 1 to [`MAX_ID`] of `a-z`, `0-9`, `_`, `-`, `.`.
pub fn is_id(id: &str) -> bool {
    (1..=MAX_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b))
}

/// A new rule id: `rule_` and 20 hex digits.
pub fn new_id() -> String {
    let mut bytes = [0u8; 10];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    format!("rule_{}", hex::encode(bytes))
}

/// Collects broken rules while a document is read.
#[derive(Default)]
struct Report(Vec<Invalid>);

impl Report {
    fn add(&mut self, field: impl Into<String>, rule: impl Into<String>) {
        self.0.push(Invalid {
            field: field.into(),
            rule: rule.into(),
        });
    }
}

/// A string or a list of strings (1 to [`MAX_LIST`], each 1 to [`MAX_TEXT`] characters).
fn strings(value: &Value, field: &str, r: &mut Report) -> Option<Vec<String>> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    if items.is_empty() || items.len() > MAX_LIST {
        r.add(
            field,
            format!(
                "must be a string or a list of 1 to {MAX_LIST} strings (found {} items)",
                items.len()
            ),
        );
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item.as_str() {
            Some(s) if !s.is_empty() && s.chars().count() <= MAX_TEXT => out.push(s.to_owned()),
            _ => {
                r.add(
                    field,
                    format!("must hold strings of 1 to {MAX_TEXT} characters (found {item})"),
                );
                return None;
            }
        }
    }
    Some(out)
}

/// Parses a rule document. `numbers` are the configured business numbers (a rule's
/// `phone_number_id` must be one of them, when any is configured).
pub fn parse(doc: &Value, numbers: &[String]) -> Result<Rule, Vec<Invalid>> {
    let mut r = Report::default();
    let Some(object) = doc.as_object() else {
        r.add("", "the rule must be a JSON object");
        return Err(r.0);
    };
    for key in object.keys() {
        if !CLIENT_FIELDS.contains(&key.as_str()) && !GATEWAY_FIELDS.contains(&key.as_str()) {
            r.add(
                key.as_str(),
                format!("unknown field; a rule has {}", CLIENT_FIELDS.join(", ")),
            );
        }
    }
    let id = match object.get("id").and_then(Value::as_str) {
        Some(id) if is_id(id) => id.to_owned(),
        _ => {
            r.add(
                "id",
                format!(
                    "must be 1 to {MAX_ID} characters of a-z, 0-9, _, - and . (e.g. \"welcome\")"
                ),
            );
            String::new()
        }
    };
    if let Some(name) = object.get("name").filter(|v| !v.is_null())
        && name.as_str().is_none_or(|s| s.chars().count() > MAX_TEXT)
    {
        r.add(
            "name",
            format!("must be a string of at most {MAX_TEXT} characters"),
        );
    }
    let enabled = match object.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            r.add("enabled", "must be true or false");
            true
        }
    };
    let priority = match object.get("priority") {
        None | Some(Value::Null) => DEFAULT_PRIORITY,
        Some(v) => match v.as_i64().filter(|p| (0..=1_000_000).contains(p)) {
            Some(p) => p,
            None => {
                r.add(
                    "priority",
                    format!("must be an integer from 0 to 1000000; lower goes first (found {v})"),
                );
                DEFAULT_PRIORITY
            }
        },
    };
    let phone_number_id = match object.get("phone_number_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) if numbers.is_empty() || numbers.contains(n) => Some(n.clone()),
        Some(v) => {
            r.add(
                "phone_number_id",
                format!(
                    "must be a configured business number (configured: {}; found {v})",
                    if numbers.is_empty() {
                        "none".to_owned()
                    } else {
                        numbers.join(", ")
                    }
                ),
            );
            None
        }
    };
    let managed_by = object
        .get("managed_by")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or(ManagedBy::Api);
    let when = match object.get("when") {
        None | Some(Value::Null) => When::default(),
        Some(v) => parse_when(v, &mut r),
    };
    let quote = match object.get("quote") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            r.add("quote", "must be true or false");
            false
        }
    };
    let once_per = match object.get("once_per") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let parsed = v.as_str().and_then(|s| {
                crate::config::duration_within(
                    s,
                    Duration::from_secs(1),
                    crate::config::MAX_DURATION,
                )
            });
            if parsed.is_none() {
                r.add(
                    "once_per",
                    format!("must be a duration from 1s to 365days, such as \"24h\" or \"7days\" (found {v})"),
                );
            }
            parsed
        }
    };
    let reply = match object.get("reply") {
        Some(Value::Object(reply)) => check_reply(reply, &mut r),
        _ => {
            r.add(
                "reply",
                "is required: a POST /v1/messages body without to/from, such as {\"type\": \"text\", \"text\": {\"body\": \"Hello!\"}}",
            );
            None
        }
    };
    match reply {
        Some(reply) if r.0.is_empty() => Ok(Rule {
            id,
            enabled,
            priority,
            phone_number_id,
            managed_by,
            starts_after: object
                .get("starts_after")
                .and_then(Value::as_str)
                .map(str::to_owned),
            when,
            reply,
            quote,
            once_per,
        }),
        _ => Err(r.0),
    }
}

fn parse_when(value: &Value, r: &mut Report) -> When {
    let mut when = When::default();
    let Some(object) = value.as_object() else {
        r.add(
            "when",
            "must be an object of conditions (keyword, types, reply_id, first_message, outside_hours)",
        );
        return when;
    };
    for (key, v) in object {
        if v.is_null() {
            continue;
        }
        let field = format!("when.{key}");
        match key.as_str() {
            "keyword" => when.keyword = parse_keyword(v, &field, r),
            "types" => {
                // The shape only: which names are known is checked where a client writes a
                // rule ([`Rule::unknown_types`]), so a rule an earlier release took keeps working.
                when.types = strings(v, &field, r).and_then(|types| {
                    let bad = types.iter().find(|t| {
                        t.len() > 32 || !t.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    });
                    match bad {
                        Some(t) => {
                            r.add(field.as_str(), format!("must hold Meta message types such as text, image, interactive, button (found {t:?})"));
                            None
                        }
                        None => Some(types),
                    }
                });
            }
            "reply_id" => when.reply_ids = strings(v, &field, r),
            "first_message" => match v {
                Value::Bool(b) => when.first_message = *b,
                _ => r.add(field, "must be true or false"),
            },
            "outside_hours" => match Hours::parse(v) {
                Ok(h) => when.outside_hours = Some(h),
                Err(errors) => {
                    for (sub, rule) in errors {
                        let f = if sub.is_empty() {
                            field.clone()
                        } else {
                            format!("{field}.{sub}")
                        };
                        r.add(f, rule);
                    }
                }
            },
            _ => r.add(
                field,
                "unknown condition; expected keyword, types, reply_id, first_message or outside_hours",
            ),
        }
    }
    when
}

fn parse_keyword(value: &Value, field: &str, r: &mut Report) -> Option<Keyword> {
    let Some(object) = value.as_object() else {
        r.add(
            field,
            "must be an object with exact, contains and/or regex (e.g. {\"contains\": [\"price\", \"cost\"]})",
        );
        return None;
    };
    let case_sensitive = match object.get("case_sensitive") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            r.add(format!("{field}.case_sensitive"), "must be true or false");
            false
        }
    };
    let fold = |s: String| {
        if case_sensitive { s } else { s.to_lowercase() }
    };
    let mut keyword = Keyword {
        exact: Vec::new(),
        contains: Vec::new(),
        regex: None,
        case_sensitive,
    };
    for (key, v) in object {
        let sub = format!("{field}.{key}");
        match key.as_str() {
            "case_sensitive" => {}
            "exact" => {
                keyword.exact = strings(v, &sub, r)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| fold(s.trim().to_owned()))
                    .collect();
            }
            "contains" => {
                keyword.contains = strings(v, &sub, r)
                    .unwrap_or_default()
                    .into_iter()
                    .map(fold)
                    .collect();
            }
            "regex" => match v.as_str() {
                Some(pattern) if !pattern.is_empty() && pattern.chars().count() <= MAX_TEXT => {
                    match RegexBuilder::new(pattern)
                        .case_insensitive(!case_sensitive)
                        .size_limit(1 << 20)
                        .build()
                    {
                        Ok(re) => keyword.regex = Some(re),
                        Err(e) => r.add(sub, format!("is not a valid regular expression: {e}")),
                    }
                }
                _ => r.add(
                    sub,
                    format!("must be a regular expression of 1 to {MAX_TEXT} characters (Rust regex syntax, e.g. \"^order\\\\s+\\\\d+$\")"),
                ),
            },
            _ => r.add(
                sub,
                "unknown field; a keyword has exact, contains, regex and case_sensitive",
            ),
        }
    }
    if keyword.exact.is_empty() && keyword.contains.is_empty() && keyword.regex.is_none() {
        if !r.0.iter().any(|e| e.field.starts_with(field)) {
            r.add(field, "needs exact, contains or regex");
        }
        return None;
    }
    Some(keyword)
}

/// Checks a reply: no addressee of its own, known placeholders, and a valid send body once
/// addressed (to a sample contact, with sample values).
fn check_reply(reply: &Map<String, Value>, r: &mut Report) -> Option<Map<String, Value>> {
    let before = r.0.len();
    for key in DECIDED_BY_THE_RULE {
        if reply.contains_key(key) {
            r.add(
                format!("reply.{key}"),
                "is decided by the rule: the reply goes to the contact who wrote, from the number they wrote to (quote: true quotes their message)",
            );
        }
    }
    let mut unknown = Vec::new();
    unknown_placeholders(&Value::Object(reply.clone()), &mut unknown);
    if !unknown.is_empty() {
        r.add(
            "reply",
            format!(
                "uses unknown placeholders {} (known: {{{{text}}}}, {{{{name}}}}, {{{{contact}}}})",
                unknown
                    .iter()
                    .map(|n| format!("{{{{{n}}}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    if r.0.len() > before {
        return None;
    }
    let mut body = Value::Object(reply.clone());
    fill(&mut body, &["sample", "sample", "15550000000"]);
    body["to"] = json!("15550000000");
    match OutgoingMessage::parse(&body) {
        Ok(_) => Some(reply.clone()),
        Err(errors) => {
            for e in errors {
                r.add(format!("reply.{}", e.field), e.rule);
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(when: Value) -> Rule {
        parse(
            &json!({"id": "r1", "when": when, "reply": {"type": "text", "text": {"body": "You said: {{text}}"}}}),
            &[],
        )
        .unwrap()
    }

    fn text(body: &str) -> Incoming {
        message(json!({"type": "text", "body": body}), "text")
    }

    fn message(content: Value, kind: &str) -> Incoming {
        serde_json::from_value(json!({
            "id": "wamid.A1", "phone_number_id": "1001", "timestamp": 1_763_900_000,
            "contact": {"id": "15551234567", "name": "Ana"}, "type": kind, "content": content,
        }))
        .unwrap()
    }

    #[test]
    fn keywords_match_exact_contains_and_regex_without_case() {
        let r = rule(json!({"keyword": {"exact": ["hi", "Hello"]}}));
        assert_eq!(r.judge(&text("  HELLO ")), Verdict::Yes);
        assert_eq!(r.judge(&text("hello there")), Verdict::No);
        let r = rule(json!({"keyword": {"contains": "Price"}}));
        assert_eq!(r.judge(&text("what is the PRICE?")), Verdict::Yes);
        assert_eq!(r.judge(&text("cost?")), Verdict::No);
        let r = rule(json!({"keyword": {"regex": "^order\\s+\\d+$"}}));
        assert_eq!(r.judge(&text("Order 123")), Verdict::Yes);
        assert_eq!(r.judge(&text("order abc")), Verdict::No);
        let r = rule(json!({"keyword": {"exact": "Hi", "case_sensitive": true}}));
        assert_eq!(r.judge(&text("Hi")), Verdict::Yes);
        assert_eq!(r.judge(&text("hi")), Verdict::No);
    }

    #[test]
    fn types_reply_ids_and_the_default_exclusions() {
        let any = rule(json!({}));
        assert_eq!(any.judge(&text("x")), Verdict::Yes);
        let reaction = message(
            json!({"type": "reaction", "message_id": "wamid.B", "emoji": "👍"}),
            "reaction",
        );
        assert_eq!(any.judge(&reaction), Verdict::No, "reactions need types");
        assert_eq!(
            rule(json!({"types": "reaction"})).judge(&reaction),
            Verdict::Yes
        );
        let image = message(
            json!({"type": "image", "id": "m1", "caption": "my PRICE list"}),
            "image",
        );
        assert_eq!(
            rule(json!({"types": ["image"]})).judge(&image),
            Verdict::Yes
        );
        assert_eq!(rule(json!({"types": ["text"]})).judge(&image), Verdict::No);
        assert_eq!(
            rule(json!({"keyword": {"contains": "price"}})).judge(&image),
            Verdict::Yes,
            "captions are text"
        );
        let tapped = message(
            json!({"type": "interactive", "interactive": {"type": "button_reply", "id": "poll_yes", "title": "Yes"}}),
            "interactive",
        );
        assert_eq!(
            rule(json!({"reply_id": ["poll_yes", "poll_no"]})).judge(&tapped),
            Verdict::Yes
        );
        assert_eq!(
            rule(json!({"reply_id": "poll_no"})).judge(&tapped),
            Verdict::No
        );
        assert_eq!(
            rule(json!({"reply_id": "poll_yes"})).judge(&text("poll_yes")),
            Verdict::No
        );
        let button = message(
            json!({"type": "button", "text": "Stop", "payload": "STOP"}),
            "button",
        );
        assert_eq!(
            rule(json!({"reply_id": "STOP"})).judge(&button),
            Verdict::Yes
        );
        assert_eq!(
            rule(json!({"first_message": true, "types": "text"})).judge(&text("x")),
            Verdict::IfFirst
        );
        assert_eq!(
            rule(json!({"first_message": true, "types": "image"})).judge(&text("x")),
            Verdict::No
        );
    }

    #[test]
    fn outside_hours_numbers_and_disabled_rules() {
        // 1_763_900_000 is Sunday 2025-11-23 12:13 UTC.
        let r =
            rule(json!({"outside_hours": {"timezone": "UTC", "open": {"mon-fri": "09:00-17:00"}}}));
        assert_eq!(r.judge(&text("x")), Verdict::Yes, "Sunday is closed");
        let r = rule(json!({"outside_hours": {"timezone": "UTC", "open": {"sun": "12:00-13:00"}}}));
        assert_eq!(r.judge(&text("x")), Verdict::No, "open now");
        let mut r = rule(json!({}));
        r.phone_number_id = Some("2002".into());
        assert_eq!(r.judge(&text("x")), Verdict::No);
        r.phone_number_id = Some("1001".into());
        assert_eq!(r.judge(&text("x")), Verdict::Yes);
        r.enabled = false;
        assert_eq!(r.judge(&text("x")), Verdict::No);
    }

    #[test]
    fn replies_are_filled_addressed_and_quoted() {
        let mut r = parse(
            &json!({"id": "echo", "quote": true, "reply": {"type": "text", "text": {"body": "{{ name }}, you said: {{text}} ({{contact}}) {{text"}}}),
            &["1001".into()],
        )
        .unwrap();
        let body = r.reply_to(&text("ping")).unwrap().meta_body();
        assert_eq!(
            body["text"]["body"],
            "Ana, you said: ping (15551234567) {{text"
        );
        assert_eq!(body["to"], "15551234567");
        assert_eq!(body["context"]["message_id"], "wamid.A1");
        r.quote = false;
        assert!(
            r.reply_to(&text("ping"))
                .unwrap()
                .meta_body()
                .get("context")
                .is_none()
        );
        // A filled-in text past Meta's limit is refused when it fires.
        assert!(r.reply_to(&text(&"x".repeat(4090))).is_err());
    }

    #[test]
    fn mistakes_are_named() {
        let fields = |doc: Value| -> Vec<String> {
            parse(&doc, &["1001".into()])
                .unwrap_err()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        let f = fields(json!({
            "id": "Bad Id", "priority": -1, "phone_number_id": "999", "once_per": "soon",
            "when": {"keyword": {"regex": "("}, "types": ["Text!"], "nope": 1},
            "reply": {"type": "text", "text": {"body": ""}, "to": "1"}, "extra": 1,
        }));
        for expected in [
            "id",
            "priority",
            "phone_number_id",
            "once_per",
            "when.keyword.regex",
            "when.types",
            "when.nope",
            "reply.to",
            "extra",
        ] {
            assert!(f.iter().any(|x| x == expected), "{expected} in {f:?}");
        }
        let f = fields(json!({"id": "a", "reply": {"type": "text", "text": {"body": ""}}}));
        assert!(f.iter().any(|x| x == "reply.text.body"), "{f:?}");
        // A misspelt type is named where a client writes it; every type Meta sends is taken.
        // Reading a stored rule takes any well-formed name (an earlier release took them).
        let reply = json!({"type": "text", "text": {"body": "x"}});
        let typo = json!({"id": "a", "when": {"types": ["text", "txt"]}, "reply": reply});
        let unknown = |doc: &Value| parse(doc, &["1001".into()]).unwrap().unknown_types();
        let f: Vec<String> = unknown(&typo).into_iter().map(|e| e.field).collect();
        assert_eq!(f, ["when.types"]);
        // Every unknown name is named, once, in one error.
        let typos = json!({"id": "a", "when": {"types": ["imgae", "text", "txt", "imgae"]},
            "reply": reply});
        let e = unknown(&typos);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].rule.starts_with(
                r#"has "imgae", "txt", which are not Meta message types; expected text, "#
            ),
            "{}",
            e[0].rule
        );
        assert!(parse(&typo, &["1001".into()]).is_ok());
        let one = json!({"id": "a", "when": {"types": "txt"}, "reply": reply});
        assert_eq!(unknown(&one).len(), 1);
        let all = json!({"id": "a", "when": {"types": KNOWN_TYPES}, "reply": reply});
        assert!(unknown(&all).is_empty());
        assert!(parse(&all, &["1001".into()]).is_ok());
        let f =
            fields(json!({"id": "a", "reply": {"type": "text", "text": {"body": "{{order}}"}}}));
        assert_eq!(f, ["reply"]);
        let f = fields(
            json!({"id": "a", "when": {"keyword": {}}, "reply": {"type": "text", "text": {"body": "x"}}}),
        );
        assert_eq!(f, ["when.keyword"]);
        assert_eq!(fields(json!({"id": "a"})), ["reply"]);
    }
}
