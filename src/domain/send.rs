//! [`OutgoingMessage`]: a send request a client posts to `/v1/messages`, parsed once.
//!
//! The client body mirrors Meta's message object with Meta's field names (`to`, `type` and the
//! object named by `type`), plus `from`, `reply_to`, `outside_window` and shortcut types (`voice`,
//! `location_request`, `product`, `product_list`, `catalog`). Parsing checks the rules Meta
//! documents for `POST /{phone-number-id}/messages` (limits, required fields, one-of choices) and
//! reports every broken rule it finds as an [`Invalid`] with its JSON path, so a request Meta would
//! refuse for its shape never leaves the gateway. An [`OutgoingMessage`] only holds a valid
//! request; [`OutgoingMessage::meta_body`] renders the body Meta documents. A `null` field counts
//! as absent. Whether the 24-hour window is open is decided elsewhere.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Number, Value};

use crate::domain::outbound::MAX_TEXT_CHARS;
use crate::domain::{ContactId, MessageId};

/// Longest media caption and interactive body text (a list's: [`MAX_TEXT_CHARS`]), in
/// characters.
const MAX_CAPTION_CHARS: usize = 1024;
const MAX_CALLBACK_DATA_CHARS: usize = 512;
/// Most contact cards in one message: Meta's documented limit.
const MAX_CONTACT_CARDS: usize = 257;
/// Longest interactive header text, footer text and template header parameter.
const MAX_HEADER_CHARS: usize = 60;
const MAX_FOOTER_CHARS: usize = 60;
const MAX_BUTTONS: usize = 3;
const MAX_BUTTON_ID_CHARS: usize = 256;
const MAX_BUTTON_TITLE_CHARS: usize = 20;
const MAX_LIST_BUTTON_CHARS: usize = 20;
const MAX_SECTIONS: usize = 10;
const MAX_SECTION_TITLE_CHARS: usize = 24;
/// Most list rows, over all sections.
const MAX_ROWS: usize = 10;
const MAX_ROW_ID_CHARS: usize = 200;
const MAX_ROW_TITLE_CHARS: usize = 24;
const MAX_ROW_DESCRIPTION_CHARS: usize = 72;
/// Most products in a product list message, over all sections.
const MAX_PRODUCT_ITEMS: usize = 30;
/// Longest call-to-action label (`cta_url` and `voice_call` display text).
const MAX_CTA_CHARS: usize = 20;
/// Longest `flow_cta`: Meta's Flows page advises 30 characters (it said 20 before).
const MAX_FLOW_CTA_CHARS: usize = 30;
/// Longest `voice_call` button payload (echoed on the calls webhook as `cta_payload`).
const MAX_CALL_PAYLOAD_CHARS: usize = 512;
/// Longest life of a `voice_call` button: 30 days.
const MAX_CALL_BUTTON_TTL_MINUTES: u64 = 43_200;
/// Fewest and most cards in a media card carousel.
const CAROUSEL_CARDS: (usize, usize) = (2, 10);
/// Longest carousel card body text, and its most line breaks.
const MAX_CARD_BODY_CHARS: usize = 160;
const MAX_CARD_BODY_LINE_BREAKS: usize = 2;
const MAX_TEMPLATE_NAME_CHARS: usize = 512;
/// Longest text body parameter: 1024 when the template sends other components too, else 32768.
const MAX_BODY_PARAM_CHARS: usize = 1024;
const MAX_BODY_ONLY_PARAM_CHARS: usize = 32768;
/// Highest template button index (up to 10 buttons, indexed 0-9).
const MAX_BUTTON_INDEX: u64 = 9;
const MAX_COUPON_CHARS: usize = 15;
/// Longest reaction emoji in characters: room for flags, tag sequences (England's flag is 7) and
/// joined sequences with skin tones (a family of four with tones is 11).
const MAX_EMOJI_CHARS: usize = 16;
/// Longest `from` (a business phone_number_id).
const MAX_FROM_DIGITS: usize = 32;
/// No limit of our own: Meta documents none for this text.
const ANY_LENGTH: usize = usize::MAX;

/// Client `type` values, in the order error messages list them.
const CLIENT_TYPES: [&str; 16] = [
    "text",
    "image",
    "video",
    "audio",
    "voice",
    "document",
    "sticker",
    "location",
    "location_request",
    "contacts",
    "interactive",
    "template",
    "reaction",
    "product",
    "product_list",
    "catalog",
];

/// Top-level keys besides the object named by `type`.
const TOP_LEVEL_KEYS: [&str; 7] = [
    "to",
    "recipient",
    "from",
    "reply_to",
    "type",
    "outside_window",
    "biz_opaque_callback_data",
];

/// One field that breaks a rule: `field` is a JSON path like
/// `interactive.action.buttons[3].reply.title` (empty for the body itself), `rule` says the rule
/// and what was found, e.g. "must have at most 20 characters (found 23)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// JSON path of the offending field in the client body.
    pub field: String,
    /// The rule, naming the limit and what was found.
    pub rule: String,
}

/// What a message is, whichever client form named it: `{"type":"catalog"}` and an interactive
/// `catalog_message` are both [`SendKind::Catalog`]; audio with `"voice": true` is
/// [`SendKind::Voice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendKind {
    /// A text message.
    Text,
    /// An image, with an optional caption.
    Image,
    /// A video, with an optional caption.
    Video,
    /// An audio file.
    Audio,
    /// A voice note: Meta audio with `"voice": true`.
    Voice,
    /// A document, with an optional caption and filename.
    Document,
    /// A sticker.
    Sticker,
    /// A map pin.
    Location,
    /// An interactive `location_request_message`: asks the user to share their location.
    LocationRequest,
    /// Contact cards.
    Contacts,
    /// Reply buttons, a list, a `cta_url` or call button, a call permission or contact
    /// information request, or a media card carousel.
    Interactive,
    /// An approved template: the only kind Meta accepts outside the 24-hour window.
    Template,
    /// A reaction to an earlier message, or its removal.
    Reaction,
    /// An interactive single-product message.
    Product,
    /// An interactive multi-product message.
    ProductList,
    /// An interactive `catalog_message`.
    Catalog,
    /// An interactive WhatsApp Flow.
    Flow,
}

impl SendKind {
    /// The name of this kind: the client `type` for all but `flow` (sent as `interactive`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Voice => "voice",
            Self::Document => "document",
            Self::Sticker => "sticker",
            Self::Location => "location",
            Self::LocationRequest => "location_request",
            Self::Contacts => "contacts",
            Self::Interactive => "interactive",
            Self::Template => "template",
            Self::Reaction => "reaction",
            Self::Product => "product",
            Self::ProductList => "product_list",
            Self::Catalog => "catalog",
            Self::Flow => "flow",
        }
    }
}

/// A validated send request.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// Recipient: phone digits (Meta's `to`) or a BSUID (Meta's `recipient`).
    pub to: ContactId,
    /// The business phone_number_id to send from (digits), when the client chose one. Only its
    /// syntax is checked here.
    pub from: Option<String>,
    /// The message this one quotes: Meta's `context.message_id`.
    pub reply_to: Option<MessageId>,
    /// What is sent.
    pub kind: SendKind,
    /// The client asks to send even if the 24-hour window looks closed.
    pub outside_window: bool,
    /// Echoed by Meta on this message's statuses.
    pub biz_opaque_callback_data: Option<String>,
    content: Content,
}

/// The normalized Meta type object and its Meta `type`. (The stored record's preview comes
/// from the record itself, read like an echo: see `service::send`.)
#[derive(Clone)]
struct Content {
    meta_type: &'static str,
    object: Value,
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Message content is personal data; Debug names only its type.
        write!(f, "Content({})", self.meta_type)
    }
}

/// A parsed type object, before it joins the envelope.
struct Built {
    kind: SendKind,
    content: Content,
}

impl Built {
    fn new(kind: SendKind, meta_type: &'static str, object: Value) -> Self {
        let content = Content { meta_type, object };
        Self { kind, content }
    }
}

impl OutgoingMessage {
    /// Parses a client body, reporting every broken rule found (not only the first).
    pub fn parse(body: &Value) -> Result<Self, Vec<Invalid>> {
        let mut r = Report::default();
        let Some(top) = Obj::read(body, String::new(), &mut r) else {
            return Err(r.finish());
        };
        let client_type = client_type(&top, &mut r);
        check_top_level_keys(&top, &mut r);
        // `recipient` is Meta's own name for a BSUID addressee; either names the contact.
        let to_key = match (top.has("to"), top.has("recipient")) {
            (true, true) => {
                r.add(
                    "recipient",
                    "cannot be given with `to`: give one of them (`to` takes a phone number or a BSUID)",
                );
                None
            }
            (false, true) => Some("recipient"),
            _ => Some("to"),
        };
        let to = to_key.and_then(|key| {
            let value = top.str_req(key, &mut r)?;
            r.parsed(key, ContactId::parse(value))
        });
        let from = top
            .str_opt("from", &mut r)
            .filter(|s| check_from(&mut r, s));
        let reply_to = top.str_opt("reply_to", &mut r);
        let reply_to = reply_to.and_then(|s| r.parsed("reply_to", MessageId::parse(s)));
        let outside_window = top.bool_opt("outside_window", &mut r).unwrap_or(false);
        let callback = top.str_opt("biz_opaque_callback_data", &mut r);
        if let Some(data) = callback {
            check_max(
                &mut r,
                "biz_opaque_callback_data",
                data,
                MAX_CALLBACK_DATA_CHARS,
            );
        }
        if client_type == Some("reaction") && top.has("reply_to") {
            r.add("reply_to", "is not allowed with a reaction");
        }
        let built = client_type.and_then(|t| type_object(&top, t, &mut r));
        match (to, built) {
            (Some(to), Some(built)) if r.0.is_empty() => Ok(Self {
                to,
                from: from.map(str::to_owned),
                reply_to,
                kind: built.kind,
                outside_window,
                biz_opaque_callback_data: callback.map(str::to_owned),
                content: built.content,
            }),
            _ => Err(r.finish()),
        }
    }

    /// The body of `POST /{phone-number-id}/messages`, as Meta documents it.
    pub fn meta_body(&self) -> Value {
        // A BSUID goes in `recipient` instead of `to` (Meta prefers `to` when both are present).
        let recipient_key = match self.to {
            ContactId::Phone(_) => "to",
            ContactId::User(_) => "recipient",
        };
        let context = self
            .reply_to
            .as_ref()
            .map(|id| Out::new().put("message_id", id.as_str()).value());
        Out::new()
            .put("messaging_product", "whatsapp")
            .put("recipient_type", "individual")
            .put(recipient_key, self.to.as_str())
            .put("type", self.content.meta_type)
            .put(self.content.meta_type, self.content.object.clone())
            .put_opt("context", context)
            .put_opt(
                "biz_opaque_callback_data",
                self.biz_opaque_callback_data.as_deref(),
            )
            .value()
    }

    /// Meta's `type`: `text`, `image`, `audio` (voice notes too), `interactive`, `template`…
    pub fn meta_type(&self) -> &'static str {
        self.content.meta_type
    }

    /// Whether Meta only accepts this message inside the 24-hour customer-service window: true
    /// for everything but templates.
    pub fn needs_window(&self) -> bool {
        self.kind != SendKind::Template
    }
}

// -------------------------------------------------------------------------------------------------
// Reading JSON and collecting problems
// -------------------------------------------------------------------------------------------------

/// The problems found so far. Builders may go on building after reporting one: `parse` discards
/// what they build whenever anything was reported.
#[derive(Default)]
struct Report(Vec<Invalid>);

impl Report {
    fn add(&mut self, field: impl Into<String>, rule: impl Into<String>) {
        let (field, rule) = (field.into(), rule.into());
        self.0.push(Invalid { field, rule });
    }

    fn wrong_type(&mut self, field: &str, expected: &str, found: &Value) {
        let found = json_kind(found);
        self.add(field, format!("must be {expected} (found {found})"));
    }

    /// The parsed value, or the parser's error as the rule for `field`.
    fn parsed<T, E: fmt::Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        result.map_err(|e| self.add(field, e.to_string())).ok()
    }

    /// The problems; never empty, so a parse that built nothing always says why.
    fn finish(mut self) -> Vec<Invalid> {
        if self.0.is_empty() {
            self.add("", "could not be read");
        }
        self.0
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// A JSON object being read, with its path for error messages.
struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn read(value: &'a Value, path: String, r: &mut Report) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self { path, map }),
            other => {
                r.wrong_type(&path, "an object", other);
                None
            }
        }
    }

    fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value of `key`; `null` counts as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Which of the alternatives `a` and `b` is given; reports (at the object) when both or
    /// neither are.
    fn either(&self, a: &'static str, b: &'static str, r: &mut Report) -> Option<&'static str> {
        let found = match (self.has(a), self.has(b)) {
            (true, false) => return Some(a),
            (false, true) => return Some(b),
            (true, true) => "both",
            (false, false) => "neither",
        };
        r.add(
            &self.path,
            format!("exactly one of {a} or {b} is required (found {found})"),
        );
        None
    }

    /// Reports every key not in `allowed`.
    fn only(&self, allowed: &[&str], r: &mut Report) {
        // A `null` field counts as absent, known or not.
        for (key, _) in self.map.iter().filter(|(_, v)| !v.is_null()) {
            if !allowed.contains(&key.as_str()) {
                let expected = allowed.join(", ");
                r.add(
                    self.at(key),
                    format!("unknown field; expected one of {expected}"),
                );
            }
        }
    }

    fn required(&self, key: &str, r: &mut Report) -> Option<&'a Value> {
        let value = self.get(key);
        if value.is_none() {
            r.add(self.at(key), "is required");
        }
        value
    }

    fn as_str(&self, key: &str, value: &'a Value, r: &mut Report) -> Option<&'a str> {
        match value {
            Value::String(s) => Some(s),
            other => {
                r.wrong_type(&self.at(key), "a string", other);
                None
            }
        }
    }

    fn str_opt(&self, key: &str, r: &mut Report) -> Option<&'a str> {
        self.get(key).and_then(|v| self.as_str(key, v, r))
    }

    fn str_req(&self, key: &str, r: &mut Report) -> Option<&'a str> {
        self.required(key, r).and_then(|v| self.as_str(key, v, r))
    }

    fn bool_opt(&self, key: &str, r: &mut Report) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                r.wrong_type(&self.at(key), "a boolean", other);
                None
            }
        }
    }

    fn num_req(&self, key: &str, r: &mut Report) -> Option<&'a Number> {
        match self.required(key, r)? {
            Value::Number(n) => Some(n),
            Value::String(_) => {
                let rule = "must be a JSON number (found string; numeric strings are not accepted)";
                r.add(self.at(key), rule);
                None
            }
            other => {
                r.wrong_type(&self.at(key), "a number", other);
                None
            }
        }
    }

    /// [`Self::num_req`] when `key` is present.
    fn num_opt(&self, key: &str, r: &mut Report) -> Option<&'a Number> {
        if self.has(key) {
            self.num_req(key, r)
        } else {
            None
        }
    }

    fn obj_opt(&self, key: &str, r: &mut Report) -> Option<Obj<'a>> {
        self.get(key).and_then(|v| Obj::read(v, self.at(key), r))
    }

    fn obj_req(&self, key: &str, r: &mut Report) -> Option<Obj<'a>> {
        self.required(key, r)
            .and_then(|v| Obj::read(v, self.at(key), r))
    }

    fn as_arr(&self, key: &str, value: &'a Value, r: &mut Report) -> Option<&'a [Value]> {
        match value {
            Value::Array(items) => Some(items),
            other => {
                r.wrong_type(&self.at(key), "an array", other);
                None
            }
        }
    }

    fn arr_opt(&self, key: &str, r: &mut Report) -> Option<&'a [Value]> {
        self.get(key).and_then(|v| self.as_arr(key, v, r))
    }

    fn arr_req(&self, key: &str, r: &mut Report) -> Option<&'a [Value]> {
        self.required(key, r).and_then(|v| self.as_arr(key, v, r))
    }

    /// A required string equal to `expected` (Meta's fixed `name` and `type` values).
    fn fixed(&self, key: &str, expected: &'static str, r: &mut Report) -> Option<&'static str> {
        let found = self.str_req(key, r)?;
        if found != expected {
            r.add(
                self.at(key),
                format!("must be \"{expected}\" (found {found:?})"),
            );
        }
        Some(expected)
    }

    /// An optional string that must be one of `allowed`.
    fn one_of_opt(&self, key: &str, allowed: &[&str], r: &mut Report) -> Option<&'a str> {
        let found = self.str_opt(key, r)?;
        if !allowed.contains(&found) {
            let allowed = allowed.join(", ");
            r.add(
                self.at(key),
                format!("must be one of {allowed} (found {found:?})"),
            );
        }
        Some(found)
    }

    /// A required text shown to the user: not blank, at most `max` characters.
    fn text_req(&self, key: &str, max: usize, r: &mut Report) -> Option<&'a str> {
        let s = self.str_req(key, r)?;
        check_text(r, &self.at(key), s, max);
        Some(s)
    }

    /// An optional text shown to the user: not blank, at most `max` characters.
    fn text_opt(&self, key: &str, max: usize, r: &mut Report) -> Option<&'a str> {
        let s = self.str_opt(key, r)?;
        check_text(r, &self.at(key), s, max);
        Some(s)
    }

    /// An optional string of at most `max` characters (may be empty).
    fn max_opt(&self, key: &str, max: usize, r: &mut Report) -> Option<&'a str> {
        let s = self.str_opt(key, r)?;
        check_max(r, &self.at(key), s, max);
        Some(s)
    }

    /// A required identifier: not empty, no whitespace.
    fn token_req(&self, key: &str, r: &mut Report) -> Option<&'a str> {
        let s = self.str_req(key, r)?;
        check_token(r, &self.at(key), s);
        Some(s)
    }

    /// Reports `key` as not allowed here, if present.
    fn forbid(&self, key: &str, rule: impl Into<String>, r: &mut Report) {
        if self.has(key) {
            r.add(self.at(key), rule);
        }
    }

    /// Each element of the array at `key` that is an object, with its index.
    fn objects(&self, key: &str, items: &'a [Value], r: &mut Report) -> Vec<Obj<'a>> {
        let path = self.at(key);
        let objects = items.iter().enumerate();
        let objects = objects.filter_map(|(i, item)| Obj::read(item, index(&path, i), r));
        objects.collect()
    }
}

/// Builds Meta objects from checked values.
struct Out(Map<String, Value>);

impl Out {
    fn new() -> Self {
        Self(Map::new())
    }

    fn put(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    fn put_opt(self, key: &str, value: Option<impl Into<Value>>) -> Self {
        match value {
            Some(v) => self.put(key, v),
            None => self,
        }
    }

    fn value(self) -> Value {
        Value::Object(self.0)
    }
}

// -------------------------------------------------------------------------------------------------
// Rules shared by several types
// -------------------------------------------------------------------------------------------------

fn check_max(r: &mut Report, path: &str, s: &str, max: usize) {
    let n = s.chars().count();
    if n > max {
        r.add(
            path,
            format!("must have at most {max} characters (found {n})"),
        );
    }
}

fn check_text(r: &mut Report, path: &str, s: &str, max: usize) {
    if s.trim().is_empty() {
        r.add(path, "must not be empty or only whitespace");
    } else {
        check_max(r, path, s, max);
    }
}

fn check_token(r: &mut Report, path: &str, s: &str) {
    if s.is_empty() {
        r.add(path, "must not be empty");
    } else if s.chars().any(char::is_whitespace) {
        r.add(path, "must not contain whitespace");
    }
}

/// Checks a number of items against `min..=max`: "must have at most 3 buttons (found 4)".
fn check_count(r: &mut Report, path: &str, found: usize, range: (usize, usize), noun: &str) {
    let (min, max) = range;
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    if found < min {
        r.add(
            path,
            format!(
                "must have at least {min} {noun}{} (found {found})",
                plural(min)
            ),
        );
    } else if found > max {
        r.add(
            path,
            format!(
                "must have at most {max} {noun}{} (found {found})",
                plural(max)
            ),
        );
    }
}

/// Reports the second and later uses of one value (button ids and titles, row ids).
fn check_unique<'a>(
    r: &mut Report,
    seen: &mut HashMap<&'a str, String>,
    value: &'a str,
    path: String,
    scope: &str,
) {
    match seen.get(value) {
        Some(first) => r.add(path, format!("must be unique {scope} (same as {first})")),
        None => {
            seen.insert(value, path);
        }
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// An absolute `http` or `https` URL with a host and no whitespace.
fn check_url(r: &mut Report, path: &str, s: &str) {
    let rest =
        strip_prefix_ignore_case(s, "https://").or_else(|| strip_prefix_ignore_case(s, "http://"));
    let Some(rest) = rest else {
        r.add(path, "must be an absolute http:// or https:// URL");
        return;
    };
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        r.add(path, "must be a URL without whitespace");
        return;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(ipv6) => ipv6,
        None => host.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        r.add(
            path,
            "must be an absolute http:// or https:// URL with a host",
        );
    }
}

fn check_from(r: &mut Report, s: &str) -> bool {
    let ok = (1..=MAX_FROM_DIGITS).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        r.add(
            "from",
            format!("must be a phone_number_id: 1-{MAX_FROM_DIGITS} digits"),
        );
    }
    ok
}

/// A latitude or longitude within `limit` degrees of zero.
fn check_degrees(r: &mut Report, path: &str, n: &Number, limit: f64) {
    if !n.as_f64().is_some_and(|v| (-limit..=limit).contains(&v)) {
        r.add(
            path,
            format!("must be between -{limit} and {limit} (found {n})"),
        );
    }
}

/// `YYYY-MM-DD`, a real calendar date.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let part = |from: usize, to: usize| {
        let digits = s.get(from..to)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse::<u32>().ok())?
    };
    let (Some(year), Some(month), Some(day)) = (part(0, 4), part(5, 7), part(8, 10)) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// Why `s` is not `""` or one emoji: one user-perceived character (one extended grapheme cluster,
/// so a flag, a keycap, a skin tone or a ZWJ family counts as one; two emoji do not), of at most
/// [`MAX_EMOJI_CHARS`] code points, that is not text. ASCII and letters are text, except keycap
/// bases (`1️⃣`, `#️⃣`: a digit, `#` or `*` followed by U+FE0F or U+20E3) and the few emoji Unicode
/// counts as letters (`ℹ️`, `Ⓜ️`, `🅰️`, `🅱️`, `🅾️`, `🅿️`).
fn emoji_problem(s: &str) -> Option<String> {
    use unicode_segmentation::UnicodeSegmentation;
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    if n > MAX_EMOJI_CHARS {
        return Some(format!(
            "must be one emoji: at most {MAX_EMOJI_CHARS} characters (found {n})"
        ));
    }
    let keycap = |i: usize| {
        matches!(chars[i], '0'..='9' | '#' | '*')
            && matches!(chars.get(i + 1), Some('\u{fe0f}' | '\u{20e3}'))
    };
    let is_text = |i: usize| {
        let c = chars[i];
        let emoji_letter = matches!(c, '\u{2139}' | '\u{24c2}' | '\u{1f170}'..='\u{1f189}');
        let letter = c.is_alphanumeric() && !emoji_letter;
        let wordy = c.is_ascii() || letter || c.is_whitespace() || c.is_control();
        wordy && !keycap(i)
    };
    (0..n)
        .any(is_text)
        .then(|| format!("must be one emoji, or \"\" to remove the reaction (found text: {s:?})"))
        .or_else(|| {
            let graphemes = s.graphemes(true).count();
            (graphemes > 1).then(|| {
                format!("must be one emoji, or \"\" to remove the reaction (found {graphemes})")
            })
        })
}

/// Meta's media reference: exactly one of `id` (an uploaded media id) or `link` (an http(s) URL).
fn media_source(o: &Obj, r: &mut Report) -> Option<(&'static str, String)> {
    if o.either("id", "link", r)? == "id" {
        return o.token_req("id", r).map(|id| ("id", id.to_owned()));
    }
    let link = o.str_req("link", r)?;
    check_url(r, &o.at("link"), link);
    Some(("link", link.to_owned()))
}

/// A media object in a header (interactive or template): id or link; a filename on a document.
fn header_media(o: &Obj, media: &str, r: &mut Report) -> Option<Value> {
    o.only(&["id", "link", "caption", "filename"], r);
    o.forbid("caption", "caption is not allowed in a header", r);
    let filename = if media == "document" {
        o.text_opt("filename", ANY_LENGTH, r)
    } else {
        o.forbid(
            "filename",
            format!("filename is allowed only on a document, not on {media}"),
            r,
        );
        None
    };
    let (key, source) = media_source(o, r)?;
    Some(
        Out::new()
            .put(key, source)
            .put_opt("filename", filename)
            .value(),
    )
}

/// Meta's location object: latitude and longitude as JSON numbers, optional name and address.
fn location_object<'a>(o: &Obj<'a>, r: &mut Report) -> Option<(Value, Option<&'a str>)> {
    o.only(&["latitude", "longitude", "name", "address"], r);
    let latitude = o.num_req("latitude", r);
    let longitude = o.num_req("longitude", r);
    if let Some(n) = latitude {
        check_degrees(r, &o.at("latitude"), n, 90.0);
    }
    if let Some(n) = longitude {
        check_degrees(r, &o.at("longitude"), n, 180.0);
    }
    let name = o.str_opt("name", r);
    let address = o.str_opt("address", r);
    let out = Out::new()
        .put("latitude", Value::Number(latitude?.clone()))
        .put("longitude", Value::Number(longitude?.clone()))
        .put_opt("name", name)
        .put_opt("address", address);
    Some((out.value(), name))
}

// -------------------------------------------------------------------------------------------------
// The envelope
// -------------------------------------------------------------------------------------------------

fn client_type<'a>(top: &Obj<'a>, r: &mut Report) -> Option<&'a str> {
    let t = top.str_req("type", r)?;
    if CLIENT_TYPES.contains(&t) {
        return Some(t);
    }
    let expected = CLIENT_TYPES.join(", ");
    r.add("type", format!("must be one of {expected} (found {t:?})"));
    None
}

/// Reports keys other than the envelope's and the object named by `type` (even an unknown
/// type: that mistake is reported once, on `type`).
fn check_top_level_keys(top: &Obj, r: &mut Report) {
    let raw_type = top.get("type").and_then(Value::as_str);
    let client_type = raw_type.filter(|t| CLIENT_TYPES.contains(t));
    let present = top.map.iter().filter(|(_, v)| !v.is_null());
    for key in present.map(|(k, _)| k.as_str()) {
        if TOP_LEVEL_KEYS.contains(&key) || Some(key) == raw_type {
            continue;
        }
        if CLIENT_TYPES.contains(&key) {
            // Another type's object: only the one named by `type` is sent.
            if let Some(t) = client_type {
                r.add(
                    key,
                    format!("is not allowed with type \"{t}\": only the {t} object is sent"),
                );
            }
            continue;
        }
        let expected = TOP_LEVEL_KEYS.join(", ");
        let named = client_type.unwrap_or("named by type");
        r.add(
            key,
            format!("unknown field; expected one of {expected} and the {named} object"),
        );
    }
}

/// Parses the object named by `type`.
fn type_object(top: &Obj, client_type: &str, r: &mut Report) -> Option<Built> {
    let Some(value) = top.get(client_type) else {
        r.add(
            client_type,
            format!("is required when type is \"{client_type}\""),
        );
        return None;
    };
    if client_type == "contacts" {
        return contacts_message(value, r);
    }
    let o = Obj::read(value, client_type.to_owned(), r)?;
    match client_type {
        "text" => text_message(&o, r),
        "image" => media_message(Media::Image, &o, r),
        "video" => media_message(Media::Video, &o, r),
        "audio" => media_message(Media::Audio, &o, r),
        "document" => media_message(Media::Document, &o, r),
        "sticker" => media_message(Media::Sticker, &o, r),
        "voice" => voice_message(&o, r),
        "location" => location_message(&o, r),
        "interactive" => interactive_message(&o, r),
        "location_request" => {
            interactive_object(InteractiveType::LocationRequest, &o, Form::Shortcut, r)
        }
        "product" => interactive_object(InteractiveType::Product, &o, Form::Shortcut, r),
        "product_list" => interactive_object(InteractiveType::ProductList, &o, Form::Shortcut, r),
        "catalog" => interactive_object(InteractiveType::Catalog, &o, Form::Shortcut, r),
        "template" => template_message(&o, r),
        "reaction" => reaction_message(&o, r),
        _ => None,
    }
}

// -------------------------------------------------------------------------------------------------
// text, media, location, contacts, reaction
// -------------------------------------------------------------------------------------------------

fn text_message(o: &Obj, r: &mut Report) -> Option<Built> {
    o.only(&["body", "preview_url"], r);
    let preview_url = o.bool_opt("preview_url", r);
    let body = o.text_req("body", MAX_TEXT_CHARS, r)?;
    let out = Out::new()
        .put("body", body)
        .put_opt("preview_url", preview_url);
    Some(Built::new(SendKind::Text, "text", out.value()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Media {
    Image,
    Video,
    Audio,
    Document,
    Sticker,
}

impl Media {
    fn name(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Document => "document",
            Self::Sticker => "sticker",
        }
    }

    fn kind(self) -> SendKind {
        match self {
            Self::Image => SendKind::Image,
            Self::Video => SendKind::Video,
            Self::Audio => SendKind::Audio,
            Self::Document => SendKind::Document,
            Self::Sticker => SendKind::Sticker,
        }
    }

    fn takes_caption(self) -> bool {
        matches!(self, Self::Image | Self::Video | Self::Document)
    }
}

fn media_message(media: Media, o: &Obj, r: &mut Report) -> Option<Built> {
    let name = media.name();
    o.only(&["id", "link", "caption", "filename", "voice"], r);
    let caption = if media.takes_caption() {
        o.max_opt("caption", MAX_CAPTION_CHARS, r)
    } else {
        o.forbid("caption", format!("caption is not allowed on {name}"), r);
        None
    };
    let filename = if media == Media::Document {
        o.text_opt("filename", ANY_LENGTH, r)
    } else {
        o.forbid(
            "filename",
            format!("filename is allowed only on document, not on {name}"),
            r,
        );
        None
    };
    let voice = if media == Media::Audio {
        o.bool_opt("voice", r).unwrap_or(false)
    } else {
        o.forbid(
            "voice",
            format!("voice is allowed only on audio, not on {name}"),
            r,
        );
        false
    };
    let (key, source) = media_source(o, r)?;
    let out = Out::new()
        .put(key, source)
        .put_opt("caption", caption)
        .put_opt("filename", filename)
        .put_opt("voice", voice.then_some(true));
    let kind = if voice { SendKind::Voice } else { media.kind() };
    Some(Built::new(kind, name, out.value()))
}

/// `{"type":"voice","voice":{"id"|"link"}}`: a voice note, sent as audio with `"voice": true`.
fn voice_message(o: &Obj, r: &mut Report) -> Option<Built> {
    o.only(&["id", "link", "caption"], r);
    o.forbid("caption", "caption is not allowed on voice", r);
    let (key, source) = media_source(o, r)?;
    let out = Out::new().put(key, source).put("voice", true);
    Some(Built::new(SendKind::Voice, "audio", out.value()))
}

fn location_message(o: &Obj, r: &mut Report) -> Option<Built> {
    let (object, _name) = location_object(o, r)?;
    Some(Built::new(SendKind::Location, "location", object))
}

/// Meta's `contacts` is an array of cards, not an object.
fn contacts_message(value: &Value, r: &mut Report) -> Option<Built> {
    let Value::Array(cards) = value else {
        r.wrong_type("contacts", "an array of contact cards", value);
        return None;
    };
    check_count(r, "contacts", cards.len(), (1, MAX_CONTACT_CARDS), "card");
    let mut out = Vec::new();
    for (i, card) in cards.iter().enumerate() {
        let Some(card) = Obj::read(card, index("contacts", i), r) else {
            continue;
        };
        if let Some((card, _formatted_name)) = contact_card(&card, r) {
            out.push(card);
        }
    }
    if out.is_empty() {
        return None;
    }
    Some(Built::new(
        SendKind::Contacts,
        "contacts",
        Value::Array(out),
    ))
}

const CARD_KEYS: [&str; 7] = [
    "name",
    "phones",
    "emails",
    "urls",
    "addresses",
    "org",
    "birthday",
];
const CARD_LISTS: [&str; 4] = ["phones", "emails", "urls", "addresses"];
const NAME_PARTS: [&str; 5] = ["first_name", "last_name", "middle_name", "suffix", "prefix"];

/// One contact card: the card as sent and its formatted name.
fn contact_card(o: &Obj, r: &mut Report) -> Option<(Value, String)> {
    o.only(&CARD_KEYS, r);
    let name = o.obj_req("name", r).and_then(|n| contact_name(&n, r));
    let mut out = Out::new();
    for list in CARD_LISTS {
        let Some(items) = o.arr_opt(list, r) else {
            continue;
        };
        let entries = o
            .objects(list, items, r)
            .iter()
            .map(|e| string_fields(e, r))
            .collect::<Vec<_>>();
        out = out.put(list, entries);
    }
    let org = o.obj_opt("org", r).map(|org| string_fields(&org, r));
    let birthday = o.str_opt("birthday", r);
    if let Some(b) = birthday.filter(|b| !is_date(b)) {
        r.add(
            o.at("birthday"),
            format!("must be a date as YYYY-MM-DD (found {b:?})"),
        );
    }
    let (name, formatted_name) = name?;
    let out = out
        .put("name", name)
        .put_opt("org", org)
        .put_opt("birthday", birthday);
    Some((out.value(), formatted_name))
}

/// `name`: `formatted_name` and at least one of Meta's name parts.
fn contact_name(o: &Obj, r: &mut Report) -> Option<(Value, String)> {
    let formatted = o.text_req("formatted_name", ANY_LENGTH, r);
    let value = string_fields(o, r);
    if !NAME_PARTS.iter().any(|part| o.has(part)) {
        let parts = NAME_PARTS.join(", ");
        r.add(
            &o.path,
            format!("must have at least one of {parts} besides formatted_name"),
        );
    }
    Some((value, formatted?.to_owned()))
}

/// An object whose fields are all strings (Meta's name, phone, email, url, address and org
/// objects); `null` fields are left out. Any key is kept: Meta documents several optional ones
/// per object (`wa_id`, `country_code`, `department`…) and these objects only describe a card.
fn string_fields(o: &Obj, r: &mut Report) -> Value {
    let mut out = Map::new();
    for (key, value) in o.map {
        match value {
            Value::String(_) => {
                out.insert(key.clone(), value.clone());
            }
            Value::Null => {}
            other => r.wrong_type(&o.at(key), "a string", other),
        }
    }
    Value::Object(out)
}

fn reaction_message(o: &Obj, r: &mut Report) -> Option<Built> {
    o.only(&["message_id", "emoji"], r);
    let message_id = o.str_req("message_id", r);
    let message_id = message_id.and_then(|s| r.parsed(&o.at("message_id"), MessageId::parse(s)));
    let emoji = o.str_req("emoji", r);
    if let Some(problem) = emoji.and_then(emoji_problem) {
        r.add(o.at("emoji"), problem);
    }
    let (message_id, emoji) = (message_id?, emoji?);
    let out = Out::new()
        .put("message_id", message_id.as_str())
        .put("emoji", emoji);
    Some(Built::new(SendKind::Reaction, "reaction", out.value()))
}

// -------------------------------------------------------------------------------------------------
// interactive
// -------------------------------------------------------------------------------------------------

/// An interactive message type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum InteractiveType {
    Button,
    List,
    CtaUrl,
    LocationRequest,
    Product,
    ProductList,
    Catalog,
    Flow,
    VoiceCall,
    CallPermissionRequest,
    RequestContactInfo,
    Carousel,
}

/// How the client wrote an interactive message: Meta's object (with `type`) or a shortcut type
/// whose object is Meta's without `type`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Interactive,
    Shortcut,
}

/// Which headers an interactive type takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HeaderRule {
    Any,
    TextOnly,
    TextRequired,
    Forbidden,
}

const INTERACTIVE_TYPES: [&str; 12] = [
    "button",
    "list",
    "cta_url",
    "location_request_message",
    "product",
    "product_list",
    "catalog_message",
    "flow",
    "voice_call",
    "call_permission_request",
    "request_contact_info",
    "carousel",
];

impl InteractiveType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "button" => Self::Button,
            "list" => Self::List,
            "cta_url" => Self::CtaUrl,
            "location_request_message" => Self::LocationRequest,
            "product" => Self::Product,
            "product_list" => Self::ProductList,
            "catalog_message" => Self::Catalog,
            "flow" => Self::Flow,
            "voice_call" => Self::VoiceCall,
            "call_permission_request" => Self::CallPermissionRequest,
            "request_contact_info" => Self::RequestContactInfo,
            "carousel" => Self::Carousel,
            _ => return None,
        })
    }

    fn meta_name(self) -> &'static str {
        match self {
            Self::Button => "button",
            Self::List => "list",
            Self::CtaUrl => "cta_url",
            Self::LocationRequest => "location_request_message",
            Self::Product => "product",
            Self::ProductList => "product_list",
            Self::Catalog => "catalog_message",
            Self::Flow => "flow",
            Self::VoiceCall => "voice_call",
            Self::CallPermissionRequest => "call_permission_request",
            Self::RequestContactInfo => "request_contact_info",
            Self::Carousel => "carousel",
        }
    }

    fn kind(self) -> SendKind {
        match self {
            Self::Button
            | Self::List
            | Self::CtaUrl
            | Self::VoiceCall
            | Self::CallPermissionRequest
            | Self::RequestContactInfo
            | Self::Carousel => SendKind::Interactive,
            Self::LocationRequest => SendKind::LocationRequest,
            Self::Product => SendKind::Product,
            Self::ProductList => SendKind::ProductList,
            Self::Catalog => SendKind::Catalog,
            Self::Flow => SendKind::Flow,
        }
    }

    fn header(self) -> HeaderRule {
        match self {
            Self::Button | Self::CtaUrl | Self::Flow => HeaderRule::Any,
            Self::List => HeaderRule::TextOnly,
            Self::ProductList => HeaderRule::TextRequired,
            Self::LocationRequest
            | Self::Product
            | Self::Catalog
            | Self::VoiceCall
            | Self::CallPermissionRequest
            | Self::RequestContactInfo
            | Self::Carousel => HeaderRule::Forbidden,
        }
    }

    fn body_required(self) -> bool {
        self != Self::Product
    }

    /// Meta documents a location request, a call button, a call permission request, a contact
    /// information request and a carousel as body text and their action only.
    fn footer_allowed(self) -> bool {
        !matches!(
            self,
            Self::LocationRequest
                | Self::VoiceCall
                | Self::CallPermissionRequest
                | Self::RequestContactInfo
                | Self::Carousel
        )
    }

    /// The action a shortcut may leave out because it has nothing to choose.
    fn default_action(self) -> Option<Value> {
        let name = match self {
            Self::LocationRequest => "send_location",
            Self::Catalog => "catalog_message",
            _ => return None,
        };
        Some(Out::new().put("name", name).value())
    }
}

fn interactive_message(o: &Obj, r: &mut Report) -> Option<Built> {
    let t = o.str_req("type", r)?;
    let Some(it) = InteractiveType::parse(t) else {
        let expected = INTERACTIVE_TYPES.join(", ");
        r.add(
            o.at("type"),
            format!("must be one of {expected} (found {t:?})"),
        );
        return None;
    };
    interactive_object(it, o, Form::Interactive, r)
}

fn interactive_object(it: InteractiveType, o: &Obj, form: Form, r: &mut Report) -> Option<Built> {
    let keys = ["type", "header", "body", "footer", "action"];
    o.only(
        if form == Form::Shortcut {
            &keys[1..]
        } else {
            &keys[..]
        },
        r,
    );
    let header = interactive_header(it, o, r);
    let body = interactive_text(it, o, "body", r);
    let footer = interactive_text(it, o, "footer", r);
    let action = match it.default_action() {
        Some(default) if form == Form::Shortcut && !o.has("action") => Some(default),
        _ => o
            .obj_req("action", r)
            .and_then(|a| interactive_action(it, &a, r)),
    };
    let text_object = |text: &str| Out::new().put("text", text).value();
    let out = Out::new()
        .put("type", it.meta_name())
        .put_opt("header", header)
        .put_opt("body", body.map(text_object))
        .put_opt("footer", footer.map(text_object))
        .put("action", action?);
    Some(Built::new(it.kind(), "interactive", out.value()))
}

fn interactive_header(it: InteractiveType, o: &Obj, r: &mut Report) -> Option<Value> {
    let (rule, name) = (it.header(), it.meta_name());
    if rule == HeaderRule::TextRequired && !o.has("header") {
        r.add(o.at("header"), format!("is required for a {name} message"));
        return None;
    }
    if rule == HeaderRule::Forbidden {
        o.forbid(
            "header",
            format!("header is not allowed on a {name} message"),
            r,
        );
        return None;
    }
    let h = o.obj_opt("header", r)?;
    let t = h.str_req("type", r)?;
    let text_only = matches!(rule, HeaderRule::TextOnly | HeaderRule::TextRequired);
    match t {
        "text" => {
            h.only(&["type", "text"], r);
            let text = h.text_req("text", MAX_HEADER_CHARS, r)?;
            Some(Out::new().put("type", "text").put("text", text).value())
        }
        "image" | "video" | "document" if text_only => {
            r.add(
                h.at("type"),
                format!("must be \"text\" for a {name} message (found {t:?})"),
            );
            None
        }
        "image" | "video" | "document" => {
            h.only(&["type", t], r);
            let media = header_media(&h.obj_req(t, r)?, t, r)?;
            Some(Out::new().put("type", t).put(t, media).value())
        }
        other => {
            let rule = format!("must be one of text, image, video, document (found {other:?})");
            r.add(h.at("type"), rule);
            None
        }
    }
}

/// `body` or `footer`: `{"text"}`, the body required for all types but `product`.
fn interactive_text<'a>(
    it: InteractiveType,
    o: &Obj<'a>,
    key: &str,
    r: &mut Report,
) -> Option<&'a str> {
    let name = it.meta_name();
    let (required, max) = match key {
        // Meta's list page allows a longer body (4096) than the other interactive types.
        "body" if it == InteractiveType::List => (it.body_required(), MAX_TEXT_CHARS),
        "body" => (it.body_required(), MAX_CAPTION_CHARS),
        _ => (false, MAX_FOOTER_CHARS),
    };
    if key == "footer" && !it.footer_allowed() {
        o.forbid(key, format!("footer is not allowed on a {name} message"), r);
        return None;
    }
    if required && !o.has(key) {
        r.add(o.at(key), format!("is required for a {name} message"));
        return None;
    }
    let text = o.obj_opt(key, r)?;
    text.only(&["text"], r);
    text.text_req("text", max, r)
}

fn interactive_action(it: InteractiveType, a: &Obj, r: &mut Report) -> Option<Value> {
    match it {
        InteractiveType::Button => button_action(a, r),
        InteractiveType::List => list_action(a, r),
        InteractiveType::CtaUrl => cta_url_action(a, r),
        InteractiveType::LocationRequest => name_only_action(a, "send_location", r),
        InteractiveType::Product => product_action(a, r),
        InteractiveType::ProductList => product_list_action(a, r),
        InteractiveType::Catalog => catalog_action(a, r),
        InteractiveType::Flow => flow_action(a, r),
        InteractiveType::VoiceCall => voice_call_action(a, r),
        InteractiveType::CallPermissionRequest => name_only_action(a, "call_permission_request", r),
        InteractiveType::RequestContactInfo => name_only_action(a, "request_contact_info", r),
        InteractiveType::Carousel => carousel_action(a, r),
    }
}

/// An action that is only its fixed `name` (a location request, a call permission request, a
/// contact information request: WhatsApp labels its button in the user's language).
fn name_only_action(a: &Obj, name: &'static str, r: &mut Report) -> Option<Value> {
    a.only(&["name"], r);
    let name = a.fixed("name", name, r)?;
    Some(Out::new().put("name", name).value())
}

/// A WhatsApp call button: `{"name": "voice_call", "parameters"?: {"display_text"? (<= 20),
/// "ttl_minutes"? (1-43200), "payload"? (<= 512, echoed on the calls webhook as `cta_payload`)}}`.
fn voice_call_action(a: &Obj, r: &mut Report) -> Option<Value> {
    a.only(&["name", "parameters"], r);
    let name = a.fixed("name", "voice_call", r);
    let mut parameters = None;
    if let Some(p) = a.obj_opt("parameters", r) {
        p.only(&["display_text", "ttl_minutes", "payload"], r);
        let display_text = p.text_opt("display_text", MAX_CTA_CHARS, r);
        let payload = p.text_opt("payload", MAX_CALL_PAYLOAD_CHARS, r);
        let ttl = p.num_opt("ttl_minutes", r).and_then(|n| {
            let minutes = n
                .as_u64()
                .filter(|m| (1..=MAX_CALL_BUTTON_TTL_MINUTES).contains(m));
            if minutes.is_none() {
                let rule = format!(
                    "must be a whole number of minutes from 1 to {MAX_CALL_BUTTON_TTL_MINUTES} \
                     (30 days) (found {n})"
                );
                r.add(p.at("ttl_minutes"), rule);
            }
            minutes
        });
        // `{}` says nothing: Meta's defaults apply without it.
        if display_text.is_some() || ttl.is_some() || payload.is_some() {
            let given = Out::new()
                .put_opt("display_text", display_text)
                .put_opt("ttl_minutes", ttl)
                .put_opt("payload", payload);
            parameters = Some(given.value());
        }
    }
    // Built last: a missing name does not hide the parameters' problems.
    let out = Out::new()
        .put("name", name?)
        .put_opt("parameters", parameters);
    Some(out.value())
}

/// What a carousel card's buttons are; Meta wants the same on every card.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CardButtons {
    Url,
    QuickReplies(usize),
}

impl fmt::Display for CardButtons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url => f.write_str("a URL button"),
            Self::QuickReplies(1) => f.write_str("1 quick-reply button"),
            Self::QuickReplies(n) => write!(f, "{n} quick-reply buttons"),
        }
    }
}

/// A media card carousel: `{"cards": [2-10 cards]}`. Every card has the same kind and number
/// of buttons (Meta's rule): one URL button each, or as many quick-reply buttons each.
fn carousel_action(a: &Obj, r: &mut Report) -> Option<Value> {
    a.only(&["cards"], r);
    let items = a.arr_req("cards", r)?;
    check_count(r, &a.at("cards"), items.len(), CAROUSEL_CARDS, "card");
    let mut cards = Vec::new();
    let mut layouts: Vec<(CardButtons, String)> = Vec::new();
    for (position, item) in items.iter().enumerate() {
        let Some(card) = Obj::read(item, index(&a.at("cards"), position), r) else {
            continue;
        };
        let Some((value, buttons)) = carousel_card(&card, position, r) else {
            continue;
        };
        // A card without buttons was reported already: it sets no example for the others.
        if buttons != CardButtons::QuickReplies(0) {
            layouts.push((buttons, card.at("action")));
        }
        cards.push(value);
    }
    // The cards that differ from the most common layout (the first card's on a tie) are named.
    // (`max_by_key` keeps the last of equals: over the cards from the last, the first card.)
    let count = |b: CardButtons| layouts.iter().filter(|(l, _)| *l == b).count();
    let common = layouts
        .iter()
        .rev()
        .map(|(b, _)| *b)
        .max_by_key(|b| count(*b));
    if let Some(common) = common {
        for (buttons, at) in layouts.iter().filter(|(b, _)| *b != common) {
            let rule = format!(
                "must have {common} like the other cards (found {buttons}): every card of a \
                 carousel has the same buttons"
            );
            r.add(at.clone(), rule);
        }
    }
    Some(Out::new().put("cards", cards).value())
}

/// One carousel card: `{"card_index"?, "type"?, "header": {"type": "image"|"video", <type>:
/// {"link"}}, "body"?: {"text"}, "action": {"name": "cta_url", "parameters": {"display_text",
/// "url"}} | {"buttons": [{"type": "quick_reply", "quick_reply": {"id", "title"}}, ...]}}`.
/// `card_index` is the card's position (filled in when absent); `type` is `cta_url` on a card
/// with a URL button (filled in); on one with quick-reply buttons a given `type` is passed on
/// as it is (Meta's syntax shows none for them), except `cta_url`, which is refused. Meta
/// takes the header media by public `link` only.
fn carousel_card(card: &Obj, position: usize, r: &mut Report) -> Option<(Value, CardButtons)> {
    card.only(&["card_index", "type", "header", "body", "action"], r);
    check_card_index(card, position, r);
    let card_type = card.str_opt("type", r);
    if let Some(t) = card_type {
        check_token(r, &card.at("type"), t);
    }
    let header = carousel_header(card, r);
    let body = card.obj_opt("body", r).and_then(|b| {
        b.only(&["text"], r);
        let text = b.text_req("text", MAX_CARD_BODY_CHARS, r)?;
        let breaks = text.matches('\n').count();
        if breaks > MAX_CARD_BODY_LINE_BREAKS {
            let rule = format!(
                "must have at most {MAX_CARD_BODY_LINE_BREAKS} line breaks (found {breaks})"
            );
            r.add(b.at("text"), rule);
        }
        Some(Out::new().put("text", text).value())
    });
    let a = card.obj_req("action", r)?;
    let (action, buttons) = if a.has("buttons") {
        if card_type == Some("cta_url") {
            let rule = "must not be \"cta_url\" on a card with quick-reply buttons";
            r.add(card.at("type"), rule);
        }
        card_quick_replies(&a, r)?
    } else {
        if let Some(t) = card_type.filter(|t| *t != "cta_url") {
            let rule = format!("must be \"cta_url\" on a card with a URL button (found {t:?})");
            r.add(card.at("type"), rule);
        }
        (cta_url_action(&a, r)?, CardButtons::Url)
    };
    let out = Out::new()
        .put("card_index", position)
        .put_opt(
            "type",
            match buttons {
                CardButtons::Url => Some("cta_url"),
                CardButtons::QuickReplies(_) => card_type,
            },
        )
        .put("header", header?)
        .put_opt("body", body)
        .put("action", action);
    Some((out.value(), buttons))
}

/// A carousel card's `card_index`, when given, must be its position.
fn check_card_index(card: &Obj, position: usize, r: &mut Report) {
    if let Some(n) = card
        .num_opt("card_index", r)
        .filter(|n| n.as_u64() != Some(position as u64))
    {
        let rule = format!("must be {position}, the card's position (found {n})");
        r.add(card.at("card_index"), rule);
    }
}

/// A carousel card's header: an image or a video by public `link`.
fn carousel_header(card: &Obj, r: &mut Report) -> Option<Value> {
    let h = card.obj_req("header", r)?;
    let t = h.str_req("type", r)?;
    if !matches!(t, "image" | "video") {
        let rule = format!("must be image or video on a carousel card (found {t:?})");
        r.add(h.at("type"), rule);
        return None;
    }
    h.only(&["type", t], r);
    let media = h.obj_req(t, r)?;
    media.only(&["link", "id"], r);
    if media.has("id") {
        r.add(
            media.at("id"),
            "Meta takes a carousel card's media by public link only: give `link` instead",
        );
    }
    let link = media.str_req("link", r)?;
    check_url(r, &media.at("link"), link);
    let media = Out::new().put("link", link).value();
    Some(Out::new().put("type", t).put(t, media).value())
}

/// A carousel card's quick-reply buttons (at least one), ids unique on the card.
fn card_quick_replies(a: &Obj, r: &mut Report) -> Option<(Value, CardButtons)> {
    let (buttons, given) = reply_buttons(a, ReplyButtons::Card, r)?;
    let layout = CardButtons::QuickReplies(given);
    Some((Out::new().put("buttons", buttons).value(), layout))
}

fn button_action(a: &Obj, r: &mut Report) -> Option<Value> {
    let (buttons, _) = reply_buttons(a, ReplyButtons::Message, r)?;
    Some(Out::new().put("buttons", buttons).value())
}

/// Where reply buttons are: an interactive `button` message's (`reply`, at most
/// [`MAX_BUTTONS`], ids and titles unique within the message) or a carousel card's
/// (`quick_reply`, ids unique on the card; titles repeat across cards by design, and the count
/// is checked against the other cards').
#[derive(Clone, Copy)]
enum ReplyButtons {
    Message,
    Card,
}

/// `{"buttons": [{"type": <kind>, <kind>: {"id", "title" (<= 20)}}]}` of a message or a card
/// ([`ReplyButtons`]). The buttons built, and how many were given.
fn reply_buttons(a: &Obj, place: ReplyButtons, r: &mut Report) -> Option<(Vec<Value>, usize)> {
    let (kind, max, scope, unique_titles) = match place {
        ReplyButtons::Message => ("reply", MAX_BUTTONS, "within the message", true),
        ReplyButtons::Card => ("quick_reply", ANY_LENGTH, "on the card", false),
    };
    a.only(&["buttons"], r);
    let buttons = a.arr_req("buttons", r)?;
    check_count(r, &a.at("buttons"), buttons.len(), (1, max), "button");
    let (mut ids, mut titles) = (HashMap::new(), HashMap::new());
    let mut out = Vec::new();
    for b in a.objects("buttons", buttons, r) {
        b.only(&["type", kind], r);
        let fixed = b.fixed("type", kind, r);
        let Some(reply) = b.obj_req(kind, r) else {
            continue;
        };
        reply.only(&["id", "title"], r);
        let id = reply.str_req("id", r);
        let title = reply.text_req("title", MAX_BUTTON_TITLE_CHARS, r);
        if let Some(id) = id {
            check_button_id(r, &reply.at("id"), id);
            check_unique(r, &mut ids, id, reply.at("id"), scope);
        }
        if let Some(title) = title.filter(|_| unique_titles) {
            check_unique(r, &mut titles, title, reply.at("title"), scope);
        }
        if let (Some(fixed), Some(id), Some(title)) = (fixed, id, title) {
            let reply = Out::new().put("id", id).put("title", title).value();
            out.push(Out::new().put("type", fixed).put(kind, reply).value());
        }
    }
    Some((out, buttons.len()))
}

/// A reply button id: 1-256 characters without leading or trailing spaces (Meta refuses them).
fn check_button_id(r: &mut Report, path: &str, id: &str) {
    if id.is_empty() {
        r.add(path, "must not be empty");
    } else if id.trim() != id {
        r.add(path, "must not have leading or trailing spaces");
    } else {
        check_max(r, path, id, MAX_BUTTON_ID_CHARS);
    }
}

fn list_action(a: &Obj, r: &mut Report) -> Option<Value> {
    a.only(&["button", "sections"], r);
    let button = a.text_req("button", MAX_LIST_BUTTON_CHARS, r);
    let sections = a.arr_req("sections", r)?;
    let path = a.at("sections");
    check_count(r, &path, sections.len(), (1, MAX_SECTIONS), "section");
    let mut row_ids = HashMap::new();
    let mut rows_total = 0;
    let mut out = Vec::new();
    for s in a.objects("sections", sections, r) {
        s.only(&["title", "rows"], r);
        if sections.len() > 1 && !s.has("title") {
            r.add(
                s.at("title"),
                "is required when there is more than one section",
            );
        }
        let title = s.text_opt("title", MAX_SECTION_TITLE_CHARS, r);
        let Some(rows) = s.arr_req("rows", r) else {
            continue;
        };
        rows_total += rows.len();
        // The most rows is a limit on all sections together, checked below.
        check_count(r, &s.at("rows"), rows.len(), (1, ANY_LENGTH), "row");
        let rows = list_rows(&s, rows, &mut row_ids, r);
        out.push(Out::new().put_opt("title", title).put("rows", rows).value());
    }
    if rows_total > MAX_ROWS {
        r.add(
            &path,
            format!("must have at most {MAX_ROWS} rows in total (found {rows_total})"),
        );
    }
    Some(
        Out::new()
            .put("button", button?)
            .put("sections", out)
            .value(),
    )
}

fn list_rows<'a>(
    section: &Obj<'a>,
    rows: &'a [Value],
    ids: &mut HashMap<&'a str, String>,
    r: &mut Report,
) -> Vec<Value> {
    let mut out = Vec::new();
    for row in section.objects("rows", rows, r) {
        row.only(&["id", "title", "description"], r);
        let id = row.text_req("id", MAX_ROW_ID_CHARS, r);
        if let Some(id) = id {
            check_unique(r, ids, id, row.at("id"), "within the message");
        }
        let title = row.text_req("title", MAX_ROW_TITLE_CHARS, r);
        let description = row.max_opt("description", MAX_ROW_DESCRIPTION_CHARS, r);
        if let (Some(id), Some(title)) = (id, title) {
            let row = Out::new().put("id", id).put("title", title);
            out.push(row.put_opt("description", description).value());
        }
    }
    out
}

fn cta_url_action(a: &Obj, r: &mut Report) -> Option<Value> {
    a.only(&["name", "parameters"], r);
    let name = a.fixed("name", "cta_url", r);
    let p = a.obj_req("parameters", r)?;
    p.only(&["display_text", "url"], r);
    let display_text = p.text_req("display_text", MAX_CTA_CHARS, r);
    let url = p.str_req("url", r);
    if let Some(url) = url {
        check_url(r, &p.at("url"), url);
    }
    let parameters = Out::new()
        .put("display_text", display_text?)
        .put("url", url?);
    Some(
        Out::new()
            .put("name", name?)
            .put("parameters", parameters.value())
            .value(),
    )
}

fn product_action(a: &Obj, r: &mut Report) -> Option<Value> {
    a.only(&["catalog_id", "product_retailer_id"], r);
    let catalog_id = a.token_req("catalog_id", r);
    let product = a.text_req("product_retailer_id", ANY_LENGTH, r);
    let out = Out::new().put("catalog_id", catalog_id?);
    Some(out.put("product_retailer_id", product?).value())
}

fn product_list_action(a: &Obj, r: &mut Report) -> Option<Value> {
    a.only(&["catalog_id", "sections"], r);
    let catalog_id = a.token_req("catalog_id", r);
    let sections = a.arr_req("sections", r)?;
    let path = a.at("sections");
    check_count(r, &path, sections.len(), (1, MAX_SECTIONS), "section");
    let mut items_total = 0;
    let mut out = Vec::new();
    for s in a.objects("sections", sections, r) {
        s.only(&["title", "product_items"], r);
        let title = s.text_req("title", MAX_SECTION_TITLE_CHARS, r);
        let Some(items) = s.arr_req("product_items", r) else {
            continue;
        };
        items_total += items.len();
        // The most items is a limit on all sections together, checked below.
        let path = s.at("product_items");
        check_count(r, &path, items.len(), (1, ANY_LENGTH), "product item");
        let items = s
            .objects("product_items", items, r)
            .into_iter()
            .filter_map(|item| {
                item.only(&["product_retailer_id"], r);
                let id = item.text_req("product_retailer_id", ANY_LENGTH, r)?;
                Some(Out::new().put("product_retailer_id", id).value())
            });
        let items: Vec<Value> = items.collect();
        out.push(
            Out::new()
                .put_opt("title", title)
                .put("product_items", items)
                .value(),
        );
    }
    if items_total > MAX_PRODUCT_ITEMS {
        let rule = format!(
            "must have at most {MAX_PRODUCT_ITEMS} product items in total (found {items_total})"
        );
        r.add(&path, rule);
    }
    Some(
        Out::new()
            .put("catalog_id", catalog_id?)
            .put("sections", out)
            .value(),
    )
}

fn catalog_action(a: &Obj, r: &mut Report) -> Option<Value> {
    a.only(&["name", "parameters"], r);
    let name = a.fixed("name", "catalog_message", r);
    let parameters = a.obj_opt("parameters", r).map(|p| {
        p.only(&["thumbnail_product_retailer_id"], r);
        let thumbnail = p.text_opt("thumbnail_product_retailer_id", ANY_LENGTH, r);
        Out::new()
            .put_opt("thumbnail_product_retailer_id", thumbnail)
            .value()
    });
    Some(
        Out::new()
            .put("name", name?)
            .put_opt("parameters", parameters)
            .value(),
    )
}

const FLOW_KEYS: [&str; 8] = [
    "flow_message_version",
    "flow_id",
    "flow_name",
    "flow_cta",
    "flow_token",
    "flow_action",
    "flow_action_payload",
    "mode",
];

fn flow_action(a: &Obj, r: &mut Report) -> Option<Value> {
    a.only(&["name", "parameters"], r);
    let name = a.fixed("name", "flow", r);
    let p = a.obj_req("parameters", r)?;
    p.only(&FLOW_KEYS, r);
    let version = p.fixed("flow_message_version", "3", r);
    let flow = flow_reference(&p, r);
    let cta = p.text_req("flow_cta", MAX_FLOW_CTA_CHARS, r);
    let token = p.text_opt("flow_token", ANY_LENGTH, r);
    let flow_action = p.one_of_opt("flow_action", &["navigate", "data_exchange"], r);
    let payload = flow_payload(&p, flow_action, r);
    let mode = p.one_of_opt("mode", &["published", "draft"], r);
    let (flow_key, flow_ref) = flow?;
    let parameters = Out::new()
        .put("flow_message_version", version?)
        .put(flow_key, flow_ref)
        .put("flow_cta", cta?)
        .put_opt("flow_token", token)
        .put_opt("flow_action", flow_action)
        .put_opt("flow_action_payload", payload)
        .put_opt("mode", mode);
    Some(
        Out::new()
            .put("name", name?)
            .put("parameters", parameters.value())
            .value(),
    )
}

/// Exactly one of `flow_id` or `flow_name`.
fn flow_reference<'a>(p: &Obj<'a>, r: &mut Report) -> Option<(&'static str, &'a str)> {
    if p.either("flow_id", "flow_name", r)? == "flow_id" {
        return p.token_req("flow_id", r).map(|id| ("flow_id", id));
    }
    p.text_req("flow_name", ANY_LENGTH, r)
        .map(|n| ("flow_name", n))
}

/// `flow_action_payload`: `{"screen", "data"?}` with `data` a non-empty object; not allowed with
/// `data_exchange`, where the flow's endpoint picks the first screen.
fn flow_payload(p: &Obj, flow_action: Option<&str>, r: &mut Report) -> Option<Value> {
    let payload = p.obj_opt("flow_action_payload", r)?;
    if flow_action == Some("data_exchange") {
        r.add(
            &payload.path,
            "is not allowed when flow_action is \"data_exchange\"",
        );
    }
    payload.only(&["screen", "data"], r);
    let screen = payload.text_req("screen", ANY_LENGTH, r);
    let data = payload.obj_opt("data", r).map(|data| {
        if data.map.is_empty() {
            r.add(
                &data.path,
                "must not be an empty object (leave it out instead)",
            );
        }
        Value::Object(data.map.clone())
    });
    Some(
        Out::new()
            .put("screen", screen?)
            .put_opt("data", data)
            .value(),
    )
}

// -------------------------------------------------------------------------------------------------
// template
// -------------------------------------------------------------------------------------------------

const COMPONENT_TYPES: [&str; 5] = ["header", "body", "button", "carousel", "limited_time_offer"];
/// What a carousel template's card may hold: a template's components but a card's own.
const CARD_COMPONENT_TYPES: [&str; 3] = ["header", "body", "button"];
const BUTTON_SUB_TYPES: [&str; 8] = [
    "quick_reply",
    "url",
    "copy_code",
    "flow",
    "catalog",
    "mpm",
    "order_details",
    "voice_call",
];

fn template_message(o: &Obj, r: &mut Report) -> Option<Built> {
    o.only(&["name", "language", "components"], r);
    let name = o.str_req("name", r);
    if let Some(name) = name {
        check_template_name(r, &o.at("name"), name);
    }
    let language = o
        .obj_req("language", r)
        .and_then(|l| template_language(&l, r));
    let components = o.arr_opt("components", r);
    let components = components.map(|items| template_components(o, items, r));
    let name = name?;
    let out = Out::new()
        .put("name", name)
        .put("language", language?)
        .put_opt("components", components);
    Some(Built::new(SendKind::Template, "template", out.value()))
}

fn check_template_name(r: &mut Report, path: &str, name: &str) {
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if name.is_empty() || !chars_ok {
        let rule =
            format!("must be 1-{MAX_TEMPLATE_NAME_CHARS} lowercase letters, digits or underscores");
        r.add(path, rule);
    } else {
        check_max(r, path, name, MAX_TEMPLATE_NAME_CHARS);
    }
}

fn template_language(l: &Obj, r: &mut Report) -> Option<Value> {
    l.only(&["code", "policy"], r);
    let code = l.token_req("code", r);
    let policy = l.one_of_opt("policy", &["deterministic"], r);
    Some(
        Out::new()
            .put("code", code?)
            .put_opt("policy", policy)
            .value(),
    )
}

/// The components, each type once (buttons once per index). A text body parameter may be
/// longer when the body is the only component.
fn template_components(o: &Obj, items: &[Value], r: &mut Report) -> Vec<Value> {
    let body_only = items.len() == 1;
    let mut seen = SeenComponents::default();
    let mut out = Vec::new();
    for c in o.objects("components", items, r) {
        let Some((component, key)) = template_component(&c, body_only, r) else {
            continue;
        };
        seen.note(key, &c.path, r);
        out.push(component);
    }
    out
}

/// The components of one list so far, by what must be unique about them, with where each came
/// first.
#[derive(Default)]
struct SeenComponents(HashMap<String, String>);

impl SeenComponents {
    /// Notes a component at `path`, or reports that `key` came before.
    fn note(&mut self, key: String, path: &str, r: &mut Report) {
        match self.0.get(&key) {
            Some(first) => r.add(
                path,
                format!("must not repeat the {key} component (see {first})"),
            ),
            None => {
                self.0.insert(key, path.to_owned());
            }
        }
    }
}

/// One component and what must be unique about it (`header`, `body`, `button 0`).
fn template_component(c: &Obj, body_only: bool, r: &mut Report) -> Option<(Value, String)> {
    let t = c.str_req("type", r)?;
    match t {
        "carousel" => Some((template_carousel(c, r)?, t.to_owned())),
        "limited_time_offer" => Some((limited_time_offer(c, r)?, t.to_owned())),
        "header" | "body" => {
            c.only(&["type", "parameters"], r);
            let params = c.arr_req("parameters", r)?;
            let params = component_parameters(c, t, params, body_only, r);
            Some((
                Out::new().put("type", t).put("parameters", params).value(),
                t.to_owned(),
            ))
        }
        "button" => {
            let (button, index) = template_button(c, r)?;
            Some((button, format!("button {index}")))
        }
        "footer" => {
            r.add(
                c.at("type"),
                "footer is never sent: its text is fixed in the approved template",
            );
            None
        }
        other => {
            let expected = COMPONENT_TYPES.join(", ");
            r.add(
                c.at("type"),
                format!("must be one of {expected} (found {other:?})"),
            );
            None
        }
    }
}

/// A carousel template's cards: `{"type": "carousel", "cards": [2-10 {"card_index"?,
/// "components": [header (its media), body?, buttons?]}]}` (Meta's media and product card
/// carousel templates). `card_index` is the card's position, filled in when absent; each card's
/// components follow the template's own rules, each type once (buttons once per index).
fn template_carousel(c: &Obj, r: &mut Report) -> Option<Value> {
    c.only(&["type", "cards"], r);
    let items = c.arr_req("cards", r)?;
    check_count(r, &c.at("cards"), items.len(), CAROUSEL_CARDS, "card");
    let mut cards = Vec::new();
    for (position, item) in items.iter().enumerate() {
        let Some(card) = Obj::read(item, index(&c.at("cards"), position), r) else {
            continue;
        };
        card.only(&["card_index", "components"], r);
        check_card_index(&card, position, r);
        let Some(items) = card.arr_req("components", r) else {
            continue;
        };
        let mut seen = SeenComponents::default();
        let mut components = Vec::new();
        let mut has_header = false;
        for component in card.objects("components", items, r) {
            let Some(t) = component.str_req("type", r) else {
                continue;
            };
            if !CARD_COMPONENT_TYPES.contains(&t) {
                let rule = format!(
                    "must be one of {} on a carousel card (found {t:?})",
                    CARD_COMPONENT_TYPES.join(", ")
                );
                r.add(component.at("type"), rule);
                continue;
            }
            has_header |= t == "header";
            let Some((value, key)) = template_component(&component, false, r) else {
                continue;
            };
            seen.note(key, &component.path, r);
            components.push(value);
        }
        if !has_header {
            let rule = "must have a header component: a carousel card's media (or product) is \
                        given when sending";
            r.add(card.at("components"), rule);
        }
        let out = Out::new()
            .put("card_index", position)
            .put("components", components);
        cards.push(out.value());
    }
    Some(
        Out::new()
            .put("type", "carousel")
            .put("cards", cards)
            .value(),
    )
}

/// A limited-time-offer template's expiry: `{"type": "limited_time_offer", "parameters":
/// [{"type": "limited_time_offer", "limited_time_offer": {"expiration_time_ms"}}]}`, the
/// offer's end in milliseconds since the epoch.
fn limited_time_offer(c: &Obj, r: &mut Report) -> Option<Value> {
    c.only(&["type", "parameters"], r);
    let params = c.arr_req("parameters", r)?;
    check_count(r, &c.at("parameters"), params.len(), (1, 1), "parameter");
    let p = c.objects("parameters", params, r).into_iter().next()?;
    p.only(&["type", "limited_time_offer"], r);
    let kind = p.fixed("type", "limited_time_offer", r);
    let offer = p.obj_req("limited_time_offer", r)?;
    offer.only(&["expiration_time_ms"], r);
    let ms = offer.num_req("expiration_time_ms", r)?;
    if ms.as_u64().is_none_or(|ms| ms == 0) {
        let rule = format!("must be a positive integer: milliseconds since the epoch (found {ms})");
        r.add(offer.at("expiration_time_ms"), rule);
        return None;
    }
    let parameter = Out::new().put("type", kind?).put(
        "limited_time_offer",
        Out::new().put("expiration_time_ms", ms.clone()).value(),
    );
    Some(
        Out::new()
            .put("type", "limited_time_offer")
            .put("parameters", vec![parameter.value()])
            .value(),
    )
}

/// Header or body parameters: a header takes one, a body one or more; named parameters
/// (`parameter_name`) on all text parameters of a component or on none.
fn component_parameters(
    c: &Obj,
    component: &str,
    params: &[Value],
    body_only: bool,
    r: &mut Report,
) -> Vec<Value> {
    let max = if component == "header" { 1 } else { ANY_LENGTH };
    check_count(r, &c.at("parameters"), params.len(), (1, max), "parameter");
    check_named_consistently(&c.at("parameters"), params, r);
    let params = c
        .objects("parameters", params, r)
        .into_iter()
        .filter_map(|p| match component {
            "header" => header_parameter(&p, r),
            _ => body_parameter(&p, body_only, r),
        });
    params.collect()
}

fn check_named_consistently(path: &str, params: &[Value], r: &mut Report) {
    let is_text = |p: &&Value| p.get("type").and_then(Value::as_str) == Some("text");
    let is_named = |p: &&Value| p.get("parameter_name").is_some_and(|n| !n.is_null());
    let total = params.iter().filter(is_text).count();
    let named = params.iter().filter(is_text).filter(is_named).count();
    if named > 0 && named < total {
        let rule = format!(
            "must give parameter_name on all text parameters or on none (found {named} of {total})"
        );
        r.add(path, rule);
    }
}

fn parameter_name<'a>(p: &Obj<'a>, r: &mut Report) -> Option<&'a str> {
    let name = p.str_opt("parameter_name", r)?;
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        r.add(
            p.at("parameter_name"),
            format!("must be lowercase letters, digits and underscores (found {name:?})"),
        );
    }
    Some(name)
}

fn header_parameter(p: &Obj, r: &mut Report) -> Option<Value> {
    let t = p.str_req("type", r)?;
    match t {
        "text" => text_parameter(p, MAX_HEADER_CHARS, r),
        "image" | "video" | "document" => {
            p.only(&["type", t], r);
            let media = header_media(&p.obj_req(t, r)?, t, r)?;
            Some(Out::new().put("type", t).put(t, media).value())
        }
        "location" => {
            p.only(&["type", "location"], r);
            let (location, _) = location_object(&p.obj_req("location", r)?, r)?;
            Some(
                Out::new()
                    .put("type", "location")
                    .put("location", location)
                    .value(),
            )
        }
        "product" => {
            // A product card carousel's card: which catalog item it shows.
            p.only(&["type", "product"], r);
            let product = p.obj_req("product", r)?;
            product.only(&["product_retailer_id", "catalog_id"], r);
            let retailer = product.token_req("product_retailer_id", r);
            let catalog = product.token_req("catalog_id", r);
            let product = Out::new()
                .put("product_retailer_id", retailer?)
                .put("catalog_id", catalog?);
            Some(
                Out::new()
                    .put("type", "product")
                    .put("product", product.value())
                    .value(),
            )
        }
        other => {
            let expected = "text, image, video, document, location, product";
            r.add(
                p.at("type"),
                format!("must be one of {expected} in a header (found {other:?})"),
            );
            None
        }
    }
}

fn body_parameter(p: &Obj, body_only: bool, r: &mut Report) -> Option<Value> {
    let t = p.str_req("type", r)?;
    match t {
        "text" => {
            let max = if body_only {
                MAX_BODY_ONLY_PARAM_CHARS
            } else {
                MAX_BODY_PARAM_CHARS
            };
            text_parameter(p, max, r)
        }
        "currency" => currency_parameter(p, r),
        "date_time" => date_time_parameter(p, r),
        other => {
            let expected = "text, currency, date_time";
            r.add(
                p.at("type"),
                format!("must be one of {expected} in a body (found {other:?})"),
            );
            None
        }
    }
}

fn text_parameter(p: &Obj, max: usize, r: &mut Report) -> Option<Value> {
    p.only(&["type", "text", "parameter_name"], r);
    let name = parameter_name(p, r);
    let text = p.text_req("text", max, r)?;
    // Meta refuses these with 132018, often only later as a `failed` status of a message it
    // first accepted.
    if text.contains(['\n', '\r', '\t']) || text.contains("     ") {
        let rule = "must not contain line breaks, tabs or more than 4 consecutive spaces \
                    (Meta refuses them in template parameters)";
        r.add(p.at("text"), rule);
    }
    let out = Out::new()
        .put("type", "text")
        .put_opt("parameter_name", name);
    Some(out.put("text", text).value())
}

fn currency_parameter(p: &Obj, r: &mut Report) -> Option<Value> {
    p.only(&["type", "currency", "parameter_name"], r);
    let name = parameter_name(p, r);
    let c = p.obj_req("currency", r)?;
    c.only(&["fallback_value", "code", "amount_1000"], r);
    let fallback = c.text_req("fallback_value", ANY_LENGTH, r);
    let code = c.str_req("code", r);
    if let Some(code) =
        code.filter(|code| code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()))
    {
        r.add(
            c.at("code"),
            format!("must be a 3-letter ISO 4217 code in capitals (found {code:?})"),
        );
    }
    let amount = c.num_req("amount_1000", r);
    if let Some(n) = amount.filter(|n| !n.is_i64() && !n.is_u64()) {
        r.add(
            c.at("amount_1000"),
            format!("must be an integer: the amount times 1000 (found {n})"),
        );
    }
    let currency = Out::new()
        .put("fallback_value", fallback?)
        .put("code", code?)
        .put("amount_1000", Value::Number(amount?.clone()));
    let out = Out::new()
        .put("type", "currency")
        .put_opt("parameter_name", name);
    Some(out.put("currency", currency.value()).value())
}

fn date_time_parameter(p: &Obj, r: &mut Report) -> Option<Value> {
    p.only(&["type", "date_time", "parameter_name"], r);
    let name = parameter_name(p, r);
    let d = p.obj_req("date_time", r)?;
    d.only(&["fallback_value"], r);
    let fallback = d.text_req("fallback_value", ANY_LENGTH, r)?;
    let date_time = Out::new().put("fallback_value", fallback).value();
    let out = Out::new()
        .put("type", "date_time")
        .put_opt("parameter_name", name);
    Some(out.put("date_time", date_time).value())
}

/// A button component and its index.
fn template_button(c: &Obj, r: &mut Report) -> Option<(Value, u64)> {
    c.only(&["type", "sub_type", "index", "parameters"], r);
    let sub_type = c.one_of_opt("sub_type", &BUTTON_SUB_TYPES, r);
    if !c.has("sub_type") {
        r.add(c.at("sub_type"), "is required");
    }
    let index = button_index(c, r);
    let params = button_parameters(c, sub_type, r);
    let out = Out::new()
        .put("type", "button")
        .put("sub_type", sub_type?)
        .put("index", index?.to_string())
        .put_opt("parameters", params);
    Some((out.value(), index?))
}

/// `index`: 0-9, as a number or a digit string; Meta wants a string.
fn button_index(c: &Obj, r: &mut Report) -> Option<u64> {
    let value = c.required("index", r)?;
    let index = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    };
    let index = index.filter(|i| *i <= MAX_BUTTON_INDEX);
    if index.is_none() {
        let rule = format!(
            "must be a button position 0-{MAX_BUTTON_INDEX}, as a number or a digit string (found {value})"
        );
        r.add(c.at("index"), rule);
    }
    index
}

/// Parameters of a template button: one `payload` for quick_reply, one `text` (the URL suffix)
/// for url, one `coupon_code` for copy_code; other sub-types pass their typed parameters through.
fn button_parameters(c: &Obj, sub_type: Option<&str>, r: &mut Report) -> Option<Vec<Value>> {
    let expected = match sub_type {
        Some("quick_reply") => Some(("payload", ANY_LENGTH)),
        Some("url") => Some(("text", ANY_LENGTH)),
        Some("copy_code") => Some(("coupon_code", MAX_COUPON_CHARS)),
        _ => None,
    };
    let Some((kind, max)) = expected else {
        let params = c.arr_opt("parameters", r)?;
        let params = c.objects("parameters", params, r).into_iter().map(|p| {
            p.token_req("type", r);
            Value::Object(p.map.clone())
        });
        return Some(params.collect());
    };
    let params = c.arr_req("parameters", r)?;
    check_count(r, &c.at("parameters"), params.len(), (1, 1), "parameter");
    let params = c
        .objects("parameters", params, r)
        .into_iter()
        .filter_map(|p| {
            p.only(&["type", kind], r);
            p.fixed("type", kind, r);
            let value = p.text_req(kind, max, r)?;
            Some(Out::new().put("type", kind).put(kind, value).value())
        });
    Some(params.collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const TO: &str = "15551234567";
    const WAMID: &str = "wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA";

    /// A client body of `kind` carrying `object`.
    fn client(kind: &str, object: Value) -> Value {
        let mut body = json!({"to": TO, "type": kind});
        body[kind] = object;
        body
    }

    /// Meta's body for a message of Meta type `kind` carrying `object` to [`TO`].
    fn meta(kind: &str, object: Value) -> Value {
        let mut body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": TO,
            "type": kind,
        });
        body[kind] = object;
        body
    }

    #[track_caller]
    fn parse(body: &Value) -> OutgoingMessage {
        OutgoingMessage::parse(body).unwrap_or_else(|e| panic!("refused: {e:#?}"))
    }

    /// Parses `body` and checks it renders exactly `expected`.
    #[track_caller]
    fn sends(body: Value, expected: Value) -> OutgoingMessage {
        let message = parse(&body);
        assert_eq!(message.meta_body(), expected);
        message
    }

    #[track_caller]
    fn problems(body: Value) -> Vec<Invalid> {
        match OutgoingMessage::parse(&body) {
            Ok(m) => panic!("accepted: {}", m.meta_body()),
            Err(problems) => problems,
        }
    }

    /// `body` is refused for exactly one problem, on `field`, whose rule mentions `rule`.
    #[track_caller]
    fn refused(body: Value, field: &str, rule: &str) {
        let problems = problems(body);
        let [problem] = problems.as_slice() else {
            panic!("expected one problem on {field}, got {problems:#?}");
        };
        assert_eq!(problem.field, field, "{problem:?}");
        assert!(
            problem.rule.contains(rule),
            "{:?} does not mention {rule:?}",
            problem.rule
        );
    }

    fn interactive(object: Value) -> Value {
        client("interactive", object)
    }

    fn buttons(buttons: Value) -> Value {
        interactive(
            json!({"type": "button", "body": {"text": "Pick one"}, "action": {"buttons": buttons}}),
        )
    }

    fn reply(id: &str, title: &str) -> Value {
        json!({"type": "reply", "reply": {"id": id, "title": title}})
    }

    fn list(sections: Value) -> Value {
        interactive(
            json!({"type": "list", "body": {"text": "Menu"}, "action": {"button": "Open", "sections": sections}}),
        )
    }

    fn row(id: &str) -> Value {
        json!({"id": id, "title": "Row"})
    }

    fn rows(prefix: &str, n: usize) -> Value {
        Value::Array((0..n).map(|i| row(&format!("{prefix}{i}"))).collect())
    }

    fn flow(parameters: Value) -> Value {
        interactive(
            json!({"type": "flow", "body": {"text": "Sign up"}, "action": {"name": "flow", "parameters": parameters}}),
        )
    }

    fn flow_parameters(extra: Value) -> Value {
        let mut p =
            json!({"flow_message_version": "3", "flow_id": "1234567890", "flow_cta": "Start"});
        for (k, v) in extra.as_object().into_iter().flatten() {
            p[k] = v.clone();
        }
        p
    }

    fn template(components: Value) -> Value {
        client(
            "template",
            json!({"name": "order_update", "language": {"code": "en_US"}, "components": components}),
        )
    }

    fn product_list(sections: Value) -> Value {
        client(
            "product_list",
            json!({
                "header": {"type": "text", "text": "Our picks"},
                "body": {"text": "Have a look"},
                "action": {"catalog_id": "987654321", "sections": sections}
            }),
        )
    }

    fn items(n: usize) -> Value {
        Value::Array(
            (0..n)
                .map(|i| json!({"product_retailer_id": format!("SKU-{i}")}))
                .collect(),
        )
    }

    fn card(name: &str) -> Value {
        json!({"name": {"formatted_name": name, "first_name": name}})
    }

    // ---------------------------------------------------------------------------------------------
    // Every type renders Meta's body
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn text_with_preview_url_is_sent_as_meta_text() {
        let m = sends(
            client(
                "text",
                json!({"body": "See https://example.com", "preview_url": true}),
            ),
            meta(
                "text",
                json!({"body": "See https://example.com", "preview_url": true}),
            ),
        );
        assert_eq!(m.kind, SendKind::Text);
        assert_eq!(m.meta_type(), "text");
        assert!(m.needs_window());
    }

    #[test]
    fn image_by_id_with_caption() {
        let m = sends(
            client(
                "image",
                json!({"id": "1234567890", "caption": "Our new store"}),
            ),
            meta(
                "image",
                json!({"id": "1234567890", "caption": "Our new store"}),
            ),
        );
        assert_eq!(m.kind, SendKind::Image);
    }

    #[test]
    fn document_by_link_with_filename() {
        let object =
            json!({"link": "https://example.com/files/report.pdf", "filename": "report.pdf"});
        let m = sends(client("document", object.clone()), meta("document", object));
        assert_eq!(m.kind, SendKind::Document);
    }

    #[test]
    fn audio_video_and_sticker() {
        let m = sends(
            client("audio", json!({"id": "111"})),
            meta("audio", json!({"id": "111"})),
        );
        assert_eq!((m.kind, m.meta_type()), (SendKind::Audio, "audio"));
        let video = json!({"link": "http://example.com/clip.mp4", "caption": "Tour"});
        let m = sends(client("video", video.clone()), meta("video", video));
        assert_eq!(m.kind, SendKind::Video);
        let sticker = json!({"link": "https://example.com/s.webp"});
        let m = sends(client("sticker", sticker.clone()), meta("sticker", sticker));
        assert_eq!(m.kind, SendKind::Sticker);
    }

    #[test]
    fn voice_shortcut_is_audio_with_voice_true() {
        let m = sends(
            client("voice", json!({"id": "222"})),
            meta("audio", json!({"id": "222", "voice": true})),
        );
        assert_eq!((m.kind, m.meta_type()), (SendKind::Voice, "audio"));
        // Meta's own form means the same.
        let m = sends(
            client("audio", json!({"id": "222", "voice": true})),
            meta("audio", json!({"id": "222", "voice": true})),
        );
        assert_eq!(m.kind, SendKind::Voice);
    }

    #[test]
    fn location_with_name_and_address() {
        let object = json!({"latitude": 37.483307, "longitude": -122.148981, "name": "HQ", "address": "1 Hacker Way"});
        let m = sends(client("location", object.clone()), meta("location", object));
        assert_eq!(m.kind, SendKind::Location);
        let bare = json!({"latitude": -90, "longitude": 180});
        sends(client("location", bare.clone()), meta("location", bare));
    }

    #[test]
    fn location_request_shortcut_is_an_interactive_location_request() {
        let expected = meta(
            "interactive",
            json!({"type": "location_request_message", "body": {"text": "Where should we deliver?"}, "action": {"name": "send_location"}}),
        );
        let m = sends(
            client(
                "location_request",
                json!({"body": {"text": "Where should we deliver?"}}),
            ),
            expected.clone(),
        );
        assert_eq!(m.kind, SendKind::LocationRequest);
        let m = sends(
            interactive(
                json!({"type": "location_request_message", "body": {"text": "Where should we deliver?"}, "action": {"name": "send_location"}}),
            ),
            expected,
        );
        assert_eq!(m.kind, SendKind::LocationRequest);
    }

    #[test]
    fn contacts_with_two_cards() {
        let cards = json!([
            {
                "name": {"formatted_name": "Barbara Johnson", "first_name": "Barbara", "last_name": "Johnson"},
                "phones": [{"phone": "+1 (940) 555-1234", "type": "WORK", "wa_id": "19405551234"}],
                "emails": [{"email": "bjohnson@example.com", "type": "WORK"}],
                "urls": [{"url": "https://example.com", "type": "WORK"}],
                "addresses": [{"street": "1 Lucky Shrub Way", "city": "Austin", "country_code": "US", "type": "WORK"}],
                "org": {"company": "Lucky Shrub", "title": "Manager"},
                "birthday": "1999-02-28"
            },
            {"name": {"formatted_name": "Pablo M.", "first_name": "Pablo"}}
        ]);
        let m = sends(client("contacts", cards.clone()), meta("contacts", cards));
        assert_eq!(m.kind, SendKind::Contacts);
    }

    #[test]
    fn interactive_buttons_with_image_header_and_footer() {
        let object = json!({
            "type": "button",
            "header": {"type": "image", "image": {"link": "https://example.com/banner.png"}},
            "body": {"text": "Change or cancel your appointment?"},
            "footer": {"text": "Lucky Shrub"},
            "action": {"buttons": [reply("change", "Change"), reply("cancel", "Cancel")]}
        });
        let m = sends(interactive(object.clone()), meta("interactive", object));
        assert_eq!(m.kind, SendKind::Interactive);
    }

    #[test]
    fn list_with_two_sections() {
        let object = json!({
            "type": "list",
            "header": {"type": "text", "text": "Shipping"},
            "body": {"text": "Choose a speed"},
            "footer": {"text": "Prices in USD"},
            "action": {
                "button": "Options",
                "sections": [
                    {"title": "Fast", "rows": [{"id": "priority", "title": "Priority", "description": "Next day"}]},
                    {"title": "Slow", "rows": [{"id": "ground", "title": "Ground"}, {"id": "sea", "title": "Sea"}]}
                ]
            }
        });
        let m = sends(interactive(object.clone()), meta("interactive", object));
        assert_eq!(m.kind, SendKind::Interactive);
    }

    #[test]
    fn cta_url_button() {
        let object = json!({
            "type": "cta_url",
            "header": {"type": "text", "text": "Offer"},
            "body": {"text": "Tap to see our dates"},
            "action": {"name": "cta_url", "parameters": {"display_text": "See dates", "url": "https://example.com/dates?x=1"}}
        });
        sends(interactive(object.clone()), meta("interactive", object));
    }

    #[test]
    fn product_shortcut_and_interactive_form_send_the_same() {
        let action = json!({"catalog_id": "194836987003835", "product_retailer_id": "SKU-1"});
        let expected = meta(
            "interactive",
            json!({"type": "product", "body": {"text": "Back in stock"}, "action": action}),
        );
        let m = sends(
            client(
                "product",
                json!({"body": {"text": "Back in stock"}, "action": action}),
            ),
            expected.clone(),
        );
        assert_eq!(m.kind, SendKind::Product);
        let m = sends(
            interactive(
                json!({"type": "product", "body": {"text": "Back in stock"}, "action": action}),
            ),
            expected,
        );
        assert_eq!(m.kind, SendKind::Product);
        // Body is optional for a single product.
        sends(
            client("product", json!({"action": action})),
            meta("interactive", json!({"type": "product", "action": action})),
        );
    }

    #[test]
    fn product_list_shortcut() {
        let sections = json!([
            {"title": "Shrubs", "product_items": [{"product_retailer_id": "SKU-1"}, {"product_retailer_id": "SKU-2"}]},
            {"title": "Trees", "product_items": [{"product_retailer_id": "SKU-3"}]}
        ]);
        let m = sends(
            product_list(sections.clone()),
            meta(
                "interactive",
                json!({
                    "type": "product_list",
                    "header": {"type": "text", "text": "Our picks"},
                    "body": {"text": "Have a look"},
                    "action": {"catalog_id": "987654321", "sections": sections}
                }),
            ),
        );
        assert_eq!(m.kind, SendKind::ProductList);
    }

    #[test]
    fn catalog_shortcut_and_interactive_form() {
        let m = sends(
            client(
                "catalog",
                json!({"body": {"text": "Browse our catalog"}, "footer": {"text": "Free delivery"}}),
            ),
            meta(
                "interactive",
                json!({
                    "type": "catalog_message",
                    "body": {"text": "Browse our catalog"},
                    "footer": {"text": "Free delivery"},
                    "action": {"name": "catalog_message"}
                }),
            ),
        );
        assert_eq!(m.kind, SendKind::Catalog);
        let object = json!({
            "type": "catalog_message",
            "body": {"text": "Browse our catalog"},
            "action": {"name": "catalog_message", "parameters": {"thumbnail_product_retailer_id": "SKU-1"}}
        });
        let m = sends(interactive(object.clone()), meta("interactive", object));
        assert_eq!(m.kind, SendKind::Catalog);
    }

    #[test]
    fn flow_message() {
        let object = json!({
            "type": "flow",
            "header": {"type": "text", "text": "Sign up"},
            "body": {"text": "Join our loyalty club"},
            "footer": {"text": "Takes a minute"},
            "action": {"name": "flow", "parameters": {
                "flow_message_version": "3",
                "flow_token": "token-1",
                "flow_id": "1234567890",
                "flow_cta": "Join now",
                "flow_action": "navigate",
                "flow_action_payload": {"screen": "WELCOME", "data": {"name": "Pablo"}},
                "mode": "draft"
            }}
        });
        let m = sends(interactive(object.clone()), meta("interactive", object));
        assert_eq!(m.kind, SendKind::Flow);
        // By name, data exchange, no payload.
        let p = json!({"flow_message_version": "3", "flow_name": "signup", "flow_cta": "Go", "flow_action": "data_exchange"});
        sends(
            flow(p.clone()),
            meta(
                "interactive",
                json!({"type": "flow", "body": {"text": "Sign up"}, "action": {"name": "flow", "parameters": p}}),
            ),
        );
    }

    #[test]
    fn template_with_header_image_body_parameters_and_buttons() {
        let body = client(
            "template",
            json!({
                "name": "order_update",
                "language": {"code": "en_US", "policy": "deterministic"},
                "components": [
                    {"type": "header", "parameters": [{"type": "image", "image": {"id": "5555"}}]},
                    {"type": "body", "parameters": [
                        {"type": "text", "text": "Pablo"},
                        {"type": "currency", "currency": {"fallback_value": "$100.99", "code": "USD", "amount_1000": 100990}},
                        {"type": "date_time", "date_time": {"fallback_value": "February 25, 1977"}}
                    ]},
                    {"type": "button", "sub_type": "quick_reply", "index": 0, "parameters": [{"type": "payload", "payload": "STOP"}]},
                    {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "order/42"}]}
                ]
            }),
        );
        let expected = meta(
            "template",
            json!({
                "name": "order_update",
                "language": {"code": "en_US", "policy": "deterministic"},
                "components": [
                    {"type": "header", "parameters": [{"type": "image", "image": {"id": "5555"}}]},
                    {"type": "body", "parameters": [
                        {"type": "text", "text": "Pablo"},
                        {"type": "currency", "currency": {"fallback_value": "$100.99", "code": "USD", "amount_1000": 100990}},
                        {"type": "date_time", "date_time": {"fallback_value": "February 25, 1977"}}
                    ]},
                    {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "STOP"}]},
                    {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "order/42"}]}
                ]
            }),
        );
        let m = sends(body, expected);
        assert_eq!((m.kind, m.meta_type()), (SendKind::Template, "template"));
        assert!(!m.needs_window());
    }

    #[test]
    fn template_without_components_named_parameters_location_header_and_copy_code() {
        let object = json!({"name": "hello_world", "language": {"code": "en_US"}});
        sends(client("template", object.clone()), meta("template", object));
        let object = json!({
            "name": "pickup_ready",
            "language": {"code": "pt_BR"},
            "components": [
                {"type": "header", "parameters": [{"type": "location", "location": {"latitude": 1.5, "longitude": 2, "name": "Store"}}]},
                {"type": "body", "parameters": [
                    {"type": "text", "parameter_name": "first_name", "text": "Ana"},
                    {"type": "text", "parameter_name": "order_id", "text": "42"}
                ]},
                {"type": "button", "sub_type": "copy_code", "index": "0", "parameters": [{"type": "coupon_code", "coupon_code": "SAVE15"}]},
                {"type": "button", "sub_type": "flow", "index": "1", "parameters": [{"type": "action", "action": {"flow_token": "t"}}]}
            ]
        });
        sends(client("template", object.clone()), meta("template", object));
        let object = json!({
            "name": "invoice",
            "language": {"code": "en"},
            "components": [{"type": "header", "parameters": [{"type": "document", "document": {"link": "https://example.com/i.pdf", "filename": "invoice.pdf"}}]}]
        });
        sends(client("template", object.clone()), meta("template", object));
    }

    #[test]
    fn reaction_and_its_removal() {
        let object = json!({"message_id": WAMID, "emoji": "\u{1f600}"});
        let m = sends(client("reaction", object.clone()), meta("reaction", object));
        assert_eq!(m.kind, SendKind::Reaction);
        let object = json!({"message_id": WAMID, "emoji": ""});
        sends(client("reaction", object.clone()), meta("reaction", object));
    }

    #[test]
    fn emoji_sequences_count_as_one_emoji() {
        // Keycap, flag, skin tone, family (joined by ZWJ), copyright sign, emoji Unicode calls
        // letters (blood type A, information, circled M).
        for emoji in [
            "\u{1f170}\u{fe0f}",
            "\u{2139}\u{fe0f}",
            "\u{24c2}\u{fe0f}",
            "1\u{fe0f}\u{20e3}",
            "#\u{20e3}",
            "\u{1f1e7}\u{1f1f7}",
            "\u{1f44d}\u{1f3fd}",
            "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}\u{200d}\u{1f466}",
            "\u{a9}\u{fe0f}",
            // England (a tag sequence) and a family of four with skin tones (11 code points).
            "\u{1f3f4}\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}",
            "\u{1f468}\u{1f3fb}\u{200d}\u{1f469}\u{1f3fb}\u{200d}\u{1f467}\u{1f3fb}\u{200d}\u{1f466}\u{1f3fb}",
        ] {
            parse(&client(
                "reaction",
                json!({"message_id": WAMID, "emoji": emoji}),
            ));
        }
    }

    #[test]
    fn reply_to_becomes_context() {
        let mut body = client("text", json!({"body": "Yes"}));
        body["reply_to"] = json!(WAMID);
        let mut expected = meta("text", json!({"body": "Yes"}));
        expected["context"] = json!({"message_id": WAMID});
        let m = sends(body, expected);
        assert_eq!(
            m.reply_to.map(|id| id.as_str().to_owned()).as_deref(),
            Some(WAMID)
        );
    }

    /// A BSUID goes to Meta as `recipient`, whether the client named it `to` or, as Meta does,
    /// `recipient`.
    #[test]
    fn bsuid_recipient_is_sent_as_recipient_instead_of_to() {
        for key in ["to", "recipient"] {
            let mut body = json!({"type": "text", "text": {"body": "Your order has shipped"}});
            body[key] = "US.13491208655302741918".into();
            let m = sends(
                body,
                json!({
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "recipient": "US.13491208655302741918",
                    "type": "text",
                    "text": {"body": "Your order has shipped"}
                }),
            );
            assert!(matches!(m.to, ContactId::User(_)), "{key}");
        }
    }

    #[test]
    fn to_and_recipient_are_one_or_the_other() {
        refused(
            json!({"to": TO, "recipient": "US.13491208655302741918", "type": "text", "text": {"body": "Hi"}}),
            "recipient",
            "cannot be given with `to`",
        );
        refused(
            json!({"recipient": "US.12:3", "type": "text", "text": {"body": "Hi"}}),
            "recipient",
            "business-scoped user id",
        );
        refused(
            json!({"type": "text", "text": {"body": "Hi"}}),
            "to",
            "is required",
        );
        // A null `recipient` counts as absent.
        assert!(
            OutgoingMessage::parse(
                &json!({"to": TO, "recipient": null, "type": "text", "text": {"body": "Hi"}})
            )
            .is_ok()
        );
    }

    #[test]
    fn phone_in_any_form_is_sent_as_digits() {
        let body = json!({"to": "+1 (555) 123-4567", "type": "text", "text": {"body": "Hi"}});
        sends(body, meta("text", json!({"body": "Hi"})));
    }

    #[test]
    fn envelope_options_are_kept() {
        let mut body = client("text", json!({"body": "Hi"}));
        body["biz_opaque_callback_data"] = json!("campaign-7");
        body["from"] = json!("106540352242922");
        body["outside_window"] = json!(true);
        let mut expected = meta("text", json!({"body": "Hi"}));
        expected["biz_opaque_callback_data"] = json!("campaign-7");
        let m = sends(body, expected);
        assert_eq!(m.from.as_deref(), Some("106540352242922"));
        assert!(m.outside_window);
        assert_eq!(m.biz_opaque_callback_data.as_deref(), Some("campaign-7"));
        assert!(!parse(&client("text", json!({"body": "Hi"}))).outside_window);
    }

    #[test]
    fn null_optional_fields_count_as_absent() {
        let body = json!({"to": TO, "type": "text", "text": {"body": "Hi", "preview_url": null}, "reply_to": null, "from": null});
        sends(body, meta("text", json!({"body": "Hi"})));
        // Fields a form leaves empty as null, of another type or none: absent too.
        let body = json!({"to": TO, "type": "text", "text": {"body": "Hi", "caption": null}, "image": null, "extra": null});
        sends(body, meta("text", json!({"body": "Hi"})));
    }

    #[test]
    fn debug_does_not_show_the_content() {
        let m = parse(&client("text", json!({"body": "secret plans"})));
        let debug = format!("{m:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(!debug.contains(TO), "{debug}");
    }

    // ---------------------------------------------------------------------------------------------
    // Envelope rules
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn a_body_that_is_not_an_object_is_refused() {
        refused(json!(["text"]), "", "must be an object (found array)");
    }

    #[test]
    fn to_is_required_and_must_be_a_phone_or_bsuid() {
        refused(
            json!({"type": "text", "text": {"body": "Hi"}}),
            "to",
            "is required",
        );
        refused(
            json!({"to": 15551234567u64, "type": "text", "text": {"body": "Hi"}}),
            "to",
            "must be a string (found number)",
        );
        refused(
            json!({"to": "12345", "type": "text", "text": {"body": "Hi"}}),
            "to",
            "7-15 digits (found 5)",
        );
        refused(
            json!({"to": "US.12:3", "type": "text", "text": {"body": "Hi"}}),
            "to",
            "business-scoped user id",
        );
    }

    #[test]
    fn from_must_be_a_phone_number_id() {
        let mut body = client("text", json!({"body": "Hi"}));
        body["from"] = json!("+1 555");
        refused(body.clone(), "from", "1-32 digits");
        body["from"] = json!("1".repeat(33));
        refused(body, "from", "1-32 digits");
    }

    #[test]
    fn reply_to_must_be_a_message_id() {
        let mut body = client("text", json!({"body": "Hi"}));
        body["reply_to"] = json!("wamid. x");
        refused(body, "reply_to", "printable ASCII without spaces");
    }

    #[test]
    fn reply_to_is_not_allowed_with_a_reaction() {
        let mut body = client(
            "reaction",
            json!({"message_id": WAMID, "emoji": "\u{1f44d}"}),
        );
        body["reply_to"] = json!(WAMID);
        refused(body, "reply_to", "not allowed with a reaction");
    }

    #[test]
    fn callback_data_has_at_most_512_characters() {
        let mut body = client("text", json!({"body": "Hi"}));
        body["biz_opaque_callback_data"] = json!("é".repeat(513));
        refused(
            body,
            "biz_opaque_callback_data",
            "must have at most 512 characters (found 513)",
        );
    }

    #[test]
    fn outside_window_must_be_a_boolean() {
        let mut body = client("text", json!({"body": "Hi"}));
        body["outside_window"] = json!("yes");
        refused(body, "outside_window", "must be a boolean (found string)");
    }

    #[test]
    fn type_is_required_and_known_and_its_object_present() {
        refused(json!({"to": TO}), "type", "is required");
        refused(
            json!({"to": TO, "type": "fax", "fax": {}}),
            "type",
            "must be one of text, image",
        );
        refused(
            json!({"to": TO, "type": "text"}),
            "text",
            "is required when type is \"text\"",
        );
        refused(
            json!({"to": TO, "type": "text", "text": "Hi"}),
            "text",
            "must be an object (found string)",
        );
    }

    #[test]
    fn unknown_and_other_type_keys_are_refused() {
        let mut body = client("text", json!({"body": "Hi"}));
        body["priority"] = json!("high");
        refused(
            body,
            "priority",
            "unknown field; expected one of to, recipient, from, reply_to",
        );
        let mut body = client("text", json!({"body": "Hi"}));
        body["image"] = json!({"id": "1"});
        refused(body, "image", "not allowed with type \"text\"");
    }

    // ---------------------------------------------------------------------------------------------
    // text
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn text_body_has_1_to_4096_characters_and_is_not_blank() {
        refused(
            client("text", json!({"body": " \n"})),
            "text.body",
            "must not be empty or only whitespace",
        );
        refused(client("text", json!({})), "text.body", "is required");
        refused(
            client("text", json!({"body": "é".repeat(4097)})),
            "text.body",
            "must have at most 4096 characters (found 4097)",
        );
        parse(&client("text", json!({"body": "é".repeat(4096)})));
    }

    #[test]
    fn text_fields_are_checked() {
        refused(
            client("text", json!({"body": "Hi", "preview_url": "yes"})),
            "text.preview_url",
            "must be a boolean",
        );
        refused(
            client("text", json!({"body": "Hi", "bold": true})),
            "text.bold",
            "unknown field; expected one of body, preview_url",
        );
        refused(
            client("text", json!({"body": 5})),
            "text.body",
            "must be a string (found number)",
        );
    }

    // ---------------------------------------------------------------------------------------------
    // media
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn media_takes_exactly_one_of_id_or_link() {
        refused(
            client(
                "image",
                json!({"id": "1", "link": "https://example.com/a.png"}),
            ),
            "image",
            "exactly one of id or link is required (found both)",
        );
        refused(
            client("video", json!({"caption": "x"})),
            "video",
            "exactly one of id or link is required (found neither)",
        );
        refused(
            client("image", json!({"id": "12 34"})),
            "image.id",
            "must not contain whitespace",
        );
        refused(
            client("image", json!({"id": ""})),
            "image.id",
            "must not be empty",
        );
    }

    #[test]
    fn media_link_is_an_absolute_http_url() {
        refused(
            client("image", json!({"link": "ftp://example.com/a.png"})),
            "image.link",
            "http:// or https://",
        );
        refused(
            client("image", json!({"link": "example.com/a.png"})),
            "image.link",
            "http:// or https://",
        );
        refused(
            client("image", json!({"link": "https:///a.png"})),
            "image.link",
            "with a host",
        );
        refused(
            client("image", json!({"link": "https://example.com/a b.png"})),
            "image.link",
            "without whitespace",
        );
        parse(&client(
            "image",
            json!({"link": "HTTPS://user@example.com:8443/a.png?x=1"}),
        ));
    }

    #[test]
    fn caption_only_on_image_video_and_document() {
        refused(
            client("audio", json!({"id": "1", "caption": "x"})),
            "audio.caption",
            "caption is not allowed on audio",
        );
        refused(
            client("sticker", json!({"id": "1", "caption": "x"})),
            "sticker.caption",
            "caption is not allowed on sticker",
        );
        refused(
            client("voice", json!({"id": "1", "caption": "x"})),
            "voice.caption",
            "caption is not allowed on voice",
        );
        refused(
            client("image", json!({"id": "1", "caption": "a".repeat(1025)})),
            "image.caption",
            "must have at most 1024 characters (found 1025)",
        );
        parse(&client(
            "document",
            json!({"id": "1", "caption": "a".repeat(1024)}),
        ));
    }

    #[test]
    fn filename_only_on_document_and_voice_only_on_audio() {
        refused(
            client("image", json!({"id": "1", "filename": "a.png"})),
            "image.filename",
            "filename is allowed only on document",
        );
        // Meta documents no length limit for a filename: a long one is sent as it is.
        parse(&client(
            "document",
            json!({"id": "1", "filename": format!("{}.pdf", "a".repeat(300))}),
        ));
        refused(
            client("video", json!({"id": "1", "voice": true})),
            "video.voice",
            "voice is allowed only on audio",
        );
        refused(
            client("audio", json!({"id": "1", "voice": "yes"})),
            "audio.voice",
            "must be a boolean",
        );
        refused(
            client("voice", json!({"id": "1", "voice": true})),
            "voice.voice",
            "unknown field; expected one of id, link",
        );
        refused(
            client("image", json!({"id": "1", "sha256": "x"})),
            "image.sha256",
            "unknown field",
        );
    }

    // ---------------------------------------------------------------------------------------------
    // location
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn coordinates_are_json_numbers_in_range() {
        refused(
            client("location", json!({"latitude": 90.5, "longitude": 0})),
            "location.latitude",
            "between -90 and 90 (found 90.5)",
        );
        refused(
            client("location", json!({"latitude": 0, "longitude": -181})),
            "location.longitude",
            "between -180 and 180 (found -181)",
        );
        refused(
            client("location", json!({"latitude": "1.5", "longitude": 0})),
            "location.latitude",
            "numeric strings are not accepted",
        );
        refused(
            client("location", json!({"latitude": 1})),
            "location.longitude",
            "is required",
        );
        refused(
            client(
                "location",
                json!({"latitude": 1, "longitude": 2, "name": 3}),
            ),
            "location.name",
            "must be a string",
        );
        refused(
            client(
                "location",
                json!({"latitude": 1, "longitude": 2, "url": "x"}),
            ),
            "location.url",
            "unknown field",
        );
    }

    // ---------------------------------------------------------------------------------------------
    // contacts
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn contacts_is_an_array_of_1_to_257_cards() {
        refused(
            client("contacts", card("A")),
            "contacts",
            "must be an array of contact cards (found object)",
        );
        refused(
            client("contacts", json!([])),
            "contacts",
            "must have at least 1 card (found 0)",
        );
        let many: Vec<Value> = (0..258).map(|_| card("A")).collect();
        refused(
            client("contacts", json!(many)),
            "contacts",
            "must have at most 257 cards (found 258)",
        );
        refused(
            client("contacts", json!(["A"])),
            "contacts[0]",
            "must be an object (found string)",
        );
    }

    #[test]
    fn a_card_needs_a_formatted_name_and_one_more_name_part() {
        refused(
            client("contacts", json!([{"phones": []}])),
            "contacts[0].name",
            "is required",
        );
        refused(
            client(
                "contacts",
                json!([card("A"), {"name": {"formatted_name": " ", "first_name": "B"}}]),
            ),
            "contacts[1].name.formatted_name",
            "must not be empty",
        );
        refused(
            client("contacts", json!([{"name": {"formatted_name": "Ana"}}])),
            "contacts[0].name",
            "at least one of first_name, last_name, middle_name, suffix, prefix",
        );
    }

    #[test]
    fn card_fields_have_meta_types() {
        let with = |key: &str, value: Value| {
            let mut c = card("Ana");
            c[key] = value;
            client("contacts", json!([c]))
        };
        refused(
            with("birthday", json!("1999-02-29")),
            "contacts[0].birthday",
            "YYYY-MM-DD",
        );
        refused(
            with("birthday", json!("28/02/1999")),
            "contacts[0].birthday",
            "YYYY-MM-DD",
        );
        refused(
            with("phones", json!({"phone": "1"})),
            "contacts[0].phones",
            "must be an array",
        );
        refused(
            with("phones", json!([{"phone": "1", "wa_id": 1}])),
            "contacts[0].phones[0].wa_id",
            "must be a string",
        );
        refused(
            with("emails", json!(["a@example.com"])),
            "contacts[0].emails[0]",
            "must be an object",
        );
        refused(
            with("org", json!("Acme")),
            "contacts[0].org",
            "must be an object",
        );
        refused(
            with("nickname", json!("Ani")),
            "contacts[0].nickname",
            "unknown field; expected one of name, phones",
        );
        parse(&with("birthday", json!("2000-02-29")));
    }

    // ---------------------------------------------------------------------------------------------
    // interactive: shared parts
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn interactive_type_is_one_of_meta_types() {
        refused(
            interactive(json!({"type": "order_details", "action": {}})),
            "interactive.type",
            "must be one of button, list, cta_url",
        );
        refused(
            interactive(json!({"body": {"text": "x"}})),
            "interactive.type",
            "is required",
        );
    }

    /// The types Meta documents without a header, or without a footer, refuse one.
    #[test]
    fn types_without_a_header_or_a_footer_refuse_one() {
        let named = |object: Value, field: &str, rule: String| {
            let found = problems(interactive(object));
            assert!(
                found
                    .iter()
                    .any(|p| p.field == field && p.rule.contains(&rule)),
                "{rule}: {found:#?}"
            );
        };
        let no_header = [
            "location_request_message",
            "product",
            "catalog_message",
            "voice_call",
            "call_permission_request",
            "request_contact_info",
            "carousel",
        ];
        for t in no_header {
            named(
                json!({"type": t, "header": {"type": "text", "text": "h"}, "body": {"text": "b"}}),
                "interactive.header",
                format!("header is not allowed on a {t} message"),
            );
        }
        let no_footer = [
            "location_request_message",
            "voice_call",
            "call_permission_request",
            "request_contact_info",
            "carousel",
        ];
        for t in no_footer {
            named(
                json!({"type": t, "body": {"text": "b"}, "footer": {"text": "f"}}),
                "interactive.footer",
                format!("footer is not allowed on a {t} message"),
            );
        }
    }

    #[test]
    fn a_list_s_body_has_at_most_4096_characters() {
        let with_body = |n: usize| {
            interactive(json!({"type": "list", "body": {"text": "a".repeat(n)},
                "action": {"button": "Open", "sections": [{"rows": [{"id": "r", "title": "R"}]}]}}))
        };
        parse(&with_body(4096));
        refused(
            with_body(4097),
            "interactive.body.text",
            "must have at most 4096 characters (found 4097)",
        );
    }

    #[test]
    fn body_is_required_and_has_at_most_1024_characters() {
        refused(
            interactive(json!({"type": "button", "action": {"buttons": [reply("a", "A")]}})),
            "interactive.body",
            "is required for a button message",
        );
        refused(
            interactive(
                json!({"type": "button", "body": {"text": "a".repeat(1025)}, "action": {"buttons": [reply("a", "A")]}}),
            ),
            "interactive.body.text",
            "must have at most 1024 characters (found 1025)",
        );
        refused(
            interactive(
                json!({"type": "button", "body": {"text": "x", "emoji": true}, "action": {"buttons": [reply("a", "A")]}}),
            ),
            "interactive.body.emoji",
            "unknown field",
        );
    }

    #[test]
    fn footer_and_header_text_have_at_most_60_characters() {
        refused(
            interactive(
                json!({"type": "button", "body": {"text": "x"}, "footer": {"text": "a".repeat(61)}, "action": {"buttons": [reply("a", "A")]}}),
            ),
            "interactive.footer.text",
            "must have at most 60 characters (found 61)",
        );
        refused(
            interactive(
                json!({"type": "button", "header": {"type": "text", "text": "a".repeat(61)}, "body": {"text": "x"}, "action": {"buttons": [reply("a", "A")]}}),
            ),
            "interactive.header.text",
            "must have at most 60 characters (found 61)",
        );
    }

    #[test]
    fn header_is_text_or_media_without_caption() {
        let with_header = |header: Value| {
            interactive(
                json!({"type": "button", "header": header, "body": {"text": "x"}, "action": {"buttons": [reply("a", "A")]}}),
            )
        };
        refused(
            with_header(json!({"type": "gif", "gif": {}})),
            "interactive.header.type",
            "must be one of text, image, video, document",
        );
        refused(
            with_header(json!({"type": "image", "image": {"id": "1", "caption": "x"}})),
            "interactive.header.image.caption",
            "caption is not allowed in a header",
        );
        refused(
            with_header(json!({"type": "video", "video": {}})),
            "interactive.header.video",
            "exactly one of id or link",
        );
        refused(
            with_header(json!({"type": "image", "text": "x", "image": {"id": "1"}})),
            "interactive.header.text",
            "unknown field",
        );
        let document = json!({"type": "document", "document": {"id": "1", "filename": "menu.pdf"}});
        parse(&with_header(document));
    }

    #[test]
    fn action_must_be_an_object() {
        refused(
            interactive(json!({"type": "button", "body": {"text": "x"}, "action": "buttons"})),
            "interactive.action",
            "must be an object (found string)",
        );
        refused(
            interactive(json!({"type": "button", "body": {"text": "x"}})),
            "interactive.action",
            "is required",
        );
    }

    // ---------------------------------------------------------------------------------------------
    // interactive: reply buttons
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn one_to_three_buttons() {
        let four = json!([
            reply("a", "A"),
            reply("b", "B"),
            reply("c", "C"),
            reply("d", "D")
        ]);
        refused(
            buttons(four),
            "interactive.action.buttons",
            "must have at most 3 buttons (found 4)",
        );
        refused(
            buttons(json!([])),
            "interactive.action.buttons",
            "must have at least 1 button (found 0)",
        );
        refused(
            buttons(json!({"a": 1})),
            "interactive.action.buttons",
            "must be an array (found object)",
        );
    }

    #[test]
    fn button_title_has_1_to_20_characters_and_id_1_to_256() {
        refused(
            buttons(json!([reply("a", &"t".repeat(21))])),
            "interactive.action.buttons[0].reply.title",
            "must have at most 20 characters (found 21)",
        );
        refused(
            buttons(json!([reply("a", "")])),
            "interactive.action.buttons[0].reply.title",
            "must not be empty",
        );
        refused(
            buttons(json!([reply("a", "A"), reply(&"i".repeat(257), "B")])),
            "interactive.action.buttons[1].reply.id",
            "must have at most 256 characters (found 257)",
        );
        refused(
            buttons(json!([reply(" a", "A")])),
            "interactive.action.buttons[0].reply.id",
            "leading or trailing spaces",
        );
        refused(
            buttons(json!([reply("", "A")])),
            "interactive.action.buttons[0].reply.id",
            "must not be empty",
        );
    }

    #[test]
    fn button_ids_and_titles_are_unique() {
        refused(
            buttons(json!([reply("a", "A"), reply("a", "B")])),
            "interactive.action.buttons[1].reply.id",
            "must be unique within the message (same as interactive.action.buttons[0].reply.id)",
        );
        refused(
            buttons(json!([
                reply("a", "Yes"),
                reply("b", "No"),
                reply("c", "Yes")
            ])),
            "interactive.action.buttons[2].reply.title",
            "must be unique",
        );
    }

    #[test]
    fn button_type_is_reply() {
        let button = json!({"type": "url", "reply": {"id": "a", "title": "A"}});
        refused(
            buttons(json!([button])),
            "interactive.action.buttons[0].type",
            "must be \"reply\" (found \"url\")",
        );
        let button = json!({"type": "reply", "reply": {"id": "a", "title": "A", "url": "x"}});
        refused(
            buttons(json!([button])),
            "interactive.action.buttons[0].reply.url",
            "unknown field",
        );
    }

    // ---------------------------------------------------------------------------------------------
    // interactive: list
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn list_header_is_text_only() {
        let object = json!({
            "type": "list",
            "header": {"type": "image", "image": {"id": "1"}},
            "body": {"text": "Menu"},
            "action": {"button": "Open", "sections": [{"rows": [row("a")]}]}
        });
        refused(
            interactive(object),
            "interactive.header.type",
            "must be \"text\" for a list message (found \"image\")",
        );
    }

    #[test]
    fn list_button_has_at_most_20_characters() {
        let object = json!({"type": "list", "body": {"text": "Menu"}, "action": {"button": "b".repeat(21), "sections": [{"rows": [row("a")]}]}});
        refused(
            interactive(object),
            "interactive.action.button",
            "must have at most 20 characters (found 21)",
        );
    }

    #[test]
    fn list_has_1_to_10_sections_each_titled_when_several() {
        let sections: Vec<Value> = (0..11)
            .map(|i| json!({"title": format!("S{i}"), "rows": [row(&format!("r{i}"))]}))
            .collect();
        let problems = problems(list(json!(sections)));
        assert!(
            problems.contains(&Invalid {
                field: "interactive.action.sections".into(),
                rule: "must have at most 10 sections (found 11)".into(),
            }),
            "{problems:#?}"
        );
        refused(
            list(json!([])),
            "interactive.action.sections",
            "must have at least 1 section (found 0)",
        );
        refused(
            list(json!([{"title": "A", "rows": [row("a")]}, {"rows": [row("b")]}])),
            "interactive.action.sections[1].title",
            "is required when there is more than one section",
        );
        refused(
            list(json!([{"title": "t".repeat(25), "rows": [row("a")]}])),
            "interactive.action.sections[0].title",
            "must have at most 24 characters (found 25)",
        );
        // One untitled section is fine.
        parse(&list(json!([{"rows": [row("a")]}])));
    }

    #[test]
    fn list_has_1_to_10_rows_in_total() {
        refused(
            list(json!([{"rows": rows("a", 11)}])),
            "interactive.action.sections",
            "must have at most 10 rows in total (found 11)",
        );
        refused(
            list(
                json!([{"title": "A", "rows": rows("a", 6)}, {"title": "B", "rows": rows("b", 5)}]),
            ),
            "interactive.action.sections",
            "must have at most 10 rows in total (found 11)",
        );
        refused(
            list(json!([{"title": "A", "rows": []}])),
            "interactive.action.sections[0].rows",
            "must have at least 1 row (found 0)",
        );
        parse(&list(
            json!([{"title": "A", "rows": rows("a", 5)}, {"title": "B", "rows": rows("b", 5)}]),
        ));
    }

    #[test]
    fn row_limits_and_unique_ids() {
        let one = |row: Value| list(json!([{"rows": [row]}]));
        refused(
            one(json!({"id": "i".repeat(201), "title": "T"})),
            "interactive.action.sections[0].rows[0].id",
            "must have at most 200 characters (found 201)",
        );
        refused(
            one(json!({"id": "a", "title": "t".repeat(25)})),
            "interactive.action.sections[0].rows[0].title",
            "must have at most 24 characters (found 25)",
        );
        refused(
            one(json!({"id": "a", "title": "T", "description": "d".repeat(73)})),
            "interactive.action.sections[0].rows[0].description",
            "must have at most 72 characters (found 73)",
        );
        refused(
            one(json!({"title": "T"})),
            "interactive.action.sections[0].rows[0].id",
            "is required",
        );
        refused(
            list(json!([{"title": "A", "rows": [row("x")]}, {"title": "B", "rows": [row("x")]}])),
            "interactive.action.sections[1].rows[0].id",
            "must be unique",
        );
    }

    // ---------------------------------------------------------------------------------------------
    // interactive: cta_url, location request, product, product list, catalog
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn cta_url_rules() {
        let cta = |name: &str, text: &str, url: &str| {
            interactive(
                json!({"type": "cta_url", "body": {"text": "x"}, "action": {"name": name, "parameters": {"display_text": text, "url": url}}}),
            )
        };
        refused(
            cta("cta_url", &"d".repeat(21), "https://example.com"),
            "interactive.action.parameters.display_text",
            "must have at most 20 characters (found 21)",
        );
        refused(
            cta("cta_url", "Go", "mailto:a@example.com"),
            "interactive.action.parameters.url",
            "http:// or https://",
        );
        refused(
            cta("url", "Go", "https://example.com"),
            "interactive.action.name",
            "must be \"cta_url\" (found \"url\")",
        );
    }

    #[test]
    fn call_button_and_call_permission_request() {
        // Meta's examples: a call button with its optional parameters, and without them.
        let call = json!({
            "type": "voice_call",
            "body": {"text": "You can call us on WhatsApp now for faster service!"},
            "action": {"name": "voice_call", "parameters": {"display_text": "Call on WhatsApp", "ttl_minutes": 100, "payload": "payload data"}}
        });
        let m = sends(interactive(call.clone()), meta("interactive", call));
        assert_eq!(m.kind, SendKind::Interactive);
        assert!(
            m.needs_window(),
            "free-form: inside the 24-hour window only"
        );
        let bare = json!({"type": "voice_call", "body": {"text": "Call us"}, "action": {"name": "voice_call"}});
        sends(interactive(bare.clone()), meta("interactive", bare.clone()));
        let empty = json!({"type": "voice_call", "body": {"text": "Call us"}, "action": {"name": "voice_call", "parameters": {}}});
        sends(interactive(empty), meta("interactive", bare));
        let permission = json!({
            "type": "call_permission_request",
            "body": {"text": "We would like to call you about order ON-12853."},
            "action": {"name": "call_permission_request"}
        });
        sends(
            interactive(permission.clone()),
            meta("interactive", permission),
        );
    }

    /// A carousel card with an image header by link, body text and a URL button, as Meta's
    /// example writes it.
    fn url_card(i: usize) -> Value {
        json!({"card_index": i, "type": "cta_url",
               "header": {"type": "image", "image": {"link": format!("https://example.com/{i}.jpeg")}},
               "body": {"text": format!("*Plant {i}*\n\nUnder $25")},
               "action": {"name": "cta_url", "parameters": {"display_text": "Buy now", "url": format!("https://example.com/p/{i}")}}})
    }

    /// A carousel card with a video header and quick-reply buttons (ids `<i>-<title>`).
    fn quick_reply_card(i: usize, titles: &[&str]) -> Value {
        let buttons: Vec<Value> = titles
            .iter()
            .map(|t| json!({"type": "quick_reply", "quick_reply": {"id": format!("{i}-{t}"), "title": t}}))
            .collect();
        json!({"card_index": i, "header": {"type": "video", "video": {"link": format!("https://example.com/{i}.mp4")}},
               "action": {"buttons": buttons}})
    }

    fn carousel(cards: Value) -> Value {
        interactive(
            json!({"type": "carousel", "body": {"text": "Three of our latest arrivals"},
                           "action": {"cards": cards}}),
        )
    }

    #[test]
    fn carousels_of_url_or_quick_reply_cards() {
        let cards = json!([url_card(0), url_card(1), url_card(2)]);
        let object = json!({"type": "carousel", "body": {"text": "Three of our latest arrivals"},
                            "action": {"cards": cards}});
        let m = sends(carousel(cards), meta("interactive", object));
        assert_eq!(m.kind, SendKind::Interactive);
        assert!(m.needs_window());
        let cards = json!([
            quick_reply_card(0, &["Learn more", "Favorite"]),
            quick_reply_card(1, &["Learn more", "Favorite"])
        ]);
        let object = json!({"type": "carousel", "body": {"text": "Three of our latest arrivals"},
                            "action": {"cards": cards}});
        sends(carousel(cards), meta("interactive", object));
        // card_index and a URL card's type are filled in when left out.
        let mut bare = [url_card(0), url_card(1)];
        for card in &mut bare {
            let card = card.as_object_mut().unwrap();
            card.remove("card_index");
            card.remove("type");
        }
        let object = json!({"type": "carousel", "body": {"text": "Three of our latest arrivals"},
                            "action": {"cards": [url_card(0), url_card(1)]}});
        sends(carousel(json!(bare)), meta("interactive", object));
    }

    #[test]
    fn a_contact_information_request_is_body_text_and_its_named_action() {
        // Asks a user known only by a BSUID to share their phone number.
        let request = json!({"type": "request_contact_info",
                             "body": {"text": "Share your number so we can update you about your order."},
                             "action": {"name": "request_contact_info"}});
        let mut body = interactive(request.clone());
        body["to"] = json!("US.13491208655302741918");
        let mut expected = meta("interactive", request);
        let expected_map = expected.as_object_mut().unwrap();
        expected_map.remove("to");
        expected_map.insert("recipient".into(), json!("US.13491208655302741918"));
        let m = sends(body, expected);
        assert_eq!(m.kind, SendKind::Interactive);
        refused(
            interactive(
                json!({"type": "request_contact_info", "body": {"text": "x"},
                               "footer": {"text": "f"}, "action": {"name": "request_contact_info"}}),
            ),
            "interactive.footer",
            "footer is not allowed on a request_contact_info message",
        );
        refused(
            interactive(
                json!({"type": "request_contact_info", "body": {"text": "x"},
                               "action": {"name": "request_contact_info", "parameters": {}}}),
            ),
            "interactive.action.parameters",
            "unknown field; expected one of name",
        );
        refused(
            interactive(
                json!({"type": "request_contact_info", "action": {"name": "request_contact_info"}}),
            ),
            "interactive.body",
            "is required for a request_contact_info message",
        );
    }

    #[test]
    fn carousel_rules() {
        refused(
            carousel(json!([url_card(0)])),
            "interactive.action.cards",
            "must have at least 2 cards (found 1)",
        );
        let eleven: Vec<Value> = (0..11).map(url_card).collect();
        refused(
            carousel(json!(eleven)),
            "interactive.action.cards",
            "must have at most 10 cards (found 11)",
        );
        refused(
            carousel(json!([url_card(0), quick_reply_card(1, &["Yes"])])),
            "interactive.action.cards[1].action",
            "must have a URL button like the other cards (found 1 quick-reply button)",
        );
        // The odd one out is named, the first card too.
        refused(
            carousel(json!([
                quick_reply_card(0, &["Yes"]),
                quick_reply_card(1, &["Yes", "No"]),
                quick_reply_card(2, &["Yes", "No"])
            ])),
            "interactive.action.cards[0].action",
            "must have 2 quick-reply buttons like the other cards (found 1 quick-reply button)",
        );
        // A card without buttons is reported as such, and sets no example.
        refused(
            carousel(json!([
                quick_reply_card(0, &[]),
                quick_reply_card(1, &["Yes"])
            ])),
            "interactive.action.cards[0].action.buttons",
            "must have at least 1 button (found 0)",
        );
        refused(
            carousel(json!([url_card(0), url_card(0)])),
            "interactive.action.cards[1].card_index",
            "must be 1, the card's position (found 0)",
        );
        let mut with_id = url_card(1);
        with_id["header"]["image"] = json!({"id": "1479537139650973"});
        let found = problems(carousel(json!([url_card(0), with_id])));
        assert_eq!(found.len(), 2, "{found:#?}");
        assert_eq!(
            found[0].field,
            "interactive.action.cards[1].header.image.id"
        );
        assert!(found[0].rule.contains("by public link only"));
        assert_eq!(
            found[1].field,
            "interactive.action.cards[1].header.image.link"
        );
        let mut document = url_card(1);
        document["header"] =
            json!({"type": "document", "document": {"link": "https://example.com/a.pdf"}});
        refused(
            carousel(json!([url_card(0), document])),
            "interactive.action.cards[1].header.type",
            "must be image or video on a carousel card (found \"document\")",
        );
        let mut long = url_card(1);
        long["body"]["text"] = json!("b".repeat(161));
        refused(
            carousel(json!([url_card(0), long])),
            "interactive.action.cards[1].body.text",
            "must have at most 160 characters (found 161)",
        );
        let mut lines = url_card(1);
        lines["body"]["text"] = json!("a\nb\nc\nd");
        refused(
            carousel(json!([url_card(0), lines])),
            "interactive.action.cards[1].body.text",
            "must have at most 2 line breaks (found 3)",
        );
        let mut typed = url_card(1);
        typed["type"] = json!("button");
        refused(
            carousel(json!([url_card(0), typed])),
            "interactive.action.cards[1].type",
            "must be \"cta_url\" on a card with a URL button (found \"button\")",
        );
        // A quick-reply card's own type is passed on as given.
        let mut typed = quick_reply_card(1, &["Yes"]);
        typed["type"] = json!("quick_reply");
        let sent = parse(&carousel(json!([quick_reply_card(0, &["Yes"]), typed])));
        let cards = &sent.meta_body()["interactive"]["action"]["cards"];
        assert_eq!(cards[0].get("type"), None);
        assert_eq!(cards[1]["type"], "quick_reply");
        // ...but not a URL card's type.
        let mut typed = quick_reply_card(1, &["Yes"]);
        typed["type"] = json!("cta_url");
        refused(
            carousel(json!([quick_reply_card(0, &["Yes"]), typed])),
            "interactive.action.cards[1].type",
            "must not be \"cta_url\" on a card with quick-reply buttons",
        );
        let mut thrice = quick_reply_card(1, &["Yes", "No", "Maybe"]);
        thrice["action"]["buttons"][1]["quick_reply"]["id"] = json!("1-Yes");
        thrice["action"]["buttons"][2]["quick_reply"]["id"] = json!("1-Yes");
        let problems = problems(carousel(json!([
            quick_reply_card(0, &["Yes", "No", "Maybe"]),
            thrice
        ])));
        let first = "interactive.action.cards[1].action.buttons[0].quick_reply.id";
        assert_eq!(problems.len(), 2, "{problems:#?}");
        for (i, p) in problems.iter().enumerate() {
            let field = format!(
                "interactive.action.cards[1].action.buttons[{}].quick_reply.id",
                i + 1
            );
            assert_eq!(p.field, field);
            assert_eq!(
                p.rule,
                format!("must be unique on the card (same as {first})")
            );
        }
        refused(
            carousel(json!([
                quick_reply_card(0, &["A title longer than 20"]),
                quick_reply_card(1, &["Yes"])
            ])),
            "interactive.action.cards[0].action.buttons[0].quick_reply.title",
            "must have at most 20 characters (found 22)",
        );
        refused(
            interactive(
                json!({"type": "carousel", "body": {"text": "x"}, "footer": {"text": "f"},
                               "action": {"cards": [url_card(0), url_card(1)]}}),
            ),
            "interactive.footer",
            "footer is not allowed on a carousel message",
        );
        refused(
            interactive(
                json!({"type": "carousel", "action": {"cards": [url_card(0), url_card(1)]}}),
            ),
            "interactive.body",
            "is required for a carousel message",
        );
    }

    #[test]
    fn call_button_and_call_permission_request_rules() {
        // A missing name and a bad parameter are both reported, in one answer.
        let found = problems(interactive(
            json!({"type": "voice_call", "body": {"text": "x"},
                                                "action": {"parameters": {"ttl_minutes": 0}}}),
        ));
        let fields: Vec<&str> = found.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "interactive.action.name",
                "interactive.action.parameters.ttl_minutes"
            ]
        );
        let call = |parameters: Value| {
            interactive(json!({"type": "voice_call", "body": {"text": "x"},
                               "action": {"name": "voice_call", "parameters": parameters}}))
        };
        refused(
            call(json!({"display_text": "d".repeat(21)})),
            "interactive.action.parameters.display_text",
            "must have at most 20 characters (found 21)",
        );
        for ttl in [json!(0), json!(43_201), json!(1.5), json!(-1)] {
            refused(
                call(json!({"ttl_minutes": ttl})),
                "interactive.action.parameters.ttl_minutes",
                "must be a whole number of minutes from 1 to 43200",
            );
        }
        refused(
            call(json!({"ttl_minutes": "100"})),
            "interactive.action.parameters.ttl_minutes",
            "numeric strings are not accepted",
        );
        refused(
            call(json!({"payload": "p".repeat(513)})),
            "interactive.action.parameters.payload",
            "must have at most 512 characters (found 513)",
        );
        refused(
            call(json!({"url": "https://example.com"})),
            "interactive.action.parameters.url",
            "unknown field; expected one of display_text, ttl_minutes, payload",
        );
        refused(
            interactive(json!({"type": "voice_call", "action": {"name": "voice_call"}})),
            "interactive.body",
            "is required for a voice_call message",
        );
        refused(
            interactive(
                json!({"type": "call_permission_request", "body": {"text": "x"},
                               "footer": {"text": "f"}, "action": {"name": "call_permission_request"}}),
            ),
            "interactive.footer",
            "footer is not allowed on a call_permission_request message",
        );
        refused(
            interactive(
                json!({"type": "call_permission_request", "body": {"text": "x"},
                               "header": {"type": "text", "text": "h"},
                               "action": {"name": "call_permission_request"}}),
            ),
            "interactive.header",
            "header is not allowed on a call_permission_request message",
        );
        refused(
            interactive(
                json!({"type": "call_permission_request", "body": {"text": "x"},
                               "action": {"name": "voice_call"}}),
            ),
            "interactive.action.name",
            "must be \"call_permission_request\" (found \"voice_call\")",
        );
    }

    #[test]
    fn location_request_rules() {
        refused(
            client(
                "location_request",
                json!({"body": {"text": "a".repeat(1025)}}),
            ),
            "location_request.body.text",
            "must have at most 1024 characters (found 1025)",
        );
        refused(
            client("location_request", json!({})),
            "location_request.body",
            "is required for a location_request_message message",
        );
        refused(
            client(
                "location_request",
                json!({"body": {"text": "x"}, "header": {"type": "text", "text": "h"}}),
            ),
            "location_request.header",
            "header is not allowed on a location_request_message message",
        );
        refused(
            client(
                "location_request",
                json!({"body": {"text": "x"}, "footer": {"text": "f"}}),
            ),
            "location_request.footer",
            "footer is not allowed",
        );
        refused(
            interactive(
                json!({"type": "location_request_message", "body": {"text": "x"}, "action": {"name": "send"}}),
            ),
            "interactive.action.name",
            "must be \"send_location\"",
        );
        refused(
            client(
                "location_request",
                json!({"type": "location_request_message", "body": {"text": "x"}}),
            ),
            "location_request.type",
            "unknown field",
        );
    }

    #[test]
    fn product_rules() {
        refused(
            client("product", json!({"action": {"catalog_id": "1"}})),
            "product.action.product_retailer_id",
            "is required",
        );
        refused(
            client("product", json!({"action": {"product_retailer_id": "SKU"}})),
            "product.action.catalog_id",
            "is required",
        );
        refused(
            client(
                "product",
                json!({"header": {"type": "text", "text": "h"}, "action": {"catalog_id": "1", "product_retailer_id": "SKU"}}),
            ),
            "product.header",
            "header is not allowed on a product message",
        );
    }

    #[test]
    fn product_list_rules() {
        refused(
            client(
                "product_list",
                json!({"body": {"text": "x"}, "action": {"catalog_id": "1", "sections": [{"title": "A", "product_items": items(1)}]}}),
            ),
            "product_list.header",
            "is required for a product_list message",
        );
        refused(
            client(
                "product_list",
                json!({"header": {"type": "text", "text": "h"}, "action": {"catalog_id": "1", "sections": [{"title": "A", "product_items": items(1)}]}}),
            ),
            "product_list.body",
            "is required",
        );
        refused(
            product_list(json!([{"product_items": items(1)}])),
            "product_list.action.sections[0].title",
            "is required",
        );
        refused(
            product_list(
                json!([{"title": "A", "product_items": items(16)}, {"title": "B", "product_items": items(15)}]),
            ),
            "product_list.action.sections",
            "must have at most 30 product items in total (found 31)",
        );
        refused(
            product_list(json!([{"title": "A", "product_items": items(31)}])),
            "product_list.action.sections",
            "must have at most 30 product items in total (found 31)",
        );
        refused(
            product_list(json!([{"title": "A", "product_items": []}])),
            "product_list.action.sections[0].product_items",
            "at least 1 product item",
        );
        let sections: Vec<Value> = (0..11)
            .map(|i| json!({"title": format!("S{i}"), "product_items": items(1)}))
            .collect();
        refused(
            product_list(json!(sections)),
            "product_list.action.sections",
            "must have at most 10 sections (found 11)",
        );
        refused(
            product_list(
                json!([{"title": "A", "product_items": [{"product_retailer_id": "x", "id": "x"}]}]),
            ),
            "product_list.action.sections[0].product_items[0].id",
            "unknown field",
        );
    }

    #[test]
    fn catalog_rules() {
        refused(
            client(
                "catalog",
                json!({"body": {"text": "x"}, "header": {"type": "text", "text": "h"}}),
            ),
            "catalog.header",
            "header is not allowed on a catalog_message message",
        );
        refused(
            client("catalog", json!({"footer": {"text": "x"}})),
            "catalog.body",
            "is required",
        );
        refused(
            client(
                "catalog",
                json!({"body": {"text": "x"}, "action": {"name": "catalog_message", "parameters": {"thumbnail": "SKU"}}}),
            ),
            "catalog.action.parameters.thumbnail",
            "unknown field",
        );
        refused(
            interactive(
                json!({"type": "catalog_message", "body": {"text": "x"}, "action": {"name": "catalog"}}),
            ),
            "interactive.action.name",
            "must be \"catalog_message\"",
        );
    }

    // ---------------------------------------------------------------------------------------------
    // interactive: flow
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn flow_version_is_3_and_cta_has_at_most_30_characters() {
        refused(
            flow(flow_parameters(json!({"flow_message_version": "2"}))),
            "interactive.action.parameters.flow_message_version",
            "must be \"3\" (found \"2\")",
        );
        parse(&flow(flow_parameters(json!({"flow_cta": "c".repeat(30)}))));
        refused(
            flow(flow_parameters(json!({"flow_cta": "c".repeat(31)}))),
            "interactive.action.parameters.flow_cta",
            "must have at most 30 characters (found 31)",
        );
    }

    #[test]
    fn flow_is_named_by_exactly_one_of_id_or_name() {
        refused(
            flow(flow_parameters(json!({"flow_name": "signup"}))),
            "interactive.action.parameters",
            "exactly one of flow_id or flow_name is required (found both)",
        );
        refused(
            flow(json!({"flow_message_version": "3", "flow_cta": "Go"})),
            "interactive.action.parameters",
            "exactly one of flow_id or flow_name is required (found neither)",
        );
    }

    #[test]
    fn flow_action_mode_and_payload() {
        refused(
            flow(flow_parameters(json!({"flow_action": "open"}))),
            "interactive.action.parameters.flow_action",
            "must be one of navigate, data_exchange (found \"open\")",
        );
        refused(
            flow(flow_parameters(json!({"mode": "live"}))),
            "interactive.action.parameters.mode",
            "must be one of published, draft",
        );
        refused(
            flow(flow_parameters(
                json!({"flow_action": "data_exchange", "flow_action_payload": {"screen": "A"}}),
            )),
            "interactive.action.parameters.flow_action_payload",
            "not allowed when flow_action is \"data_exchange\"",
        );
        refused(
            flow(flow_parameters(
                json!({"flow_action_payload": {"data": {"a": 1}}}),
            )),
            "interactive.action.parameters.flow_action_payload.screen",
            "is required",
        );
        refused(
            flow(flow_parameters(
                json!({"flow_action_payload": {"screen": "A", "data": {}}}),
            )),
            "interactive.action.parameters.flow_action_payload.data",
            "must not be an empty object",
        );
        refused(
            flow(flow_parameters(json!({"flow_json": "{}"}))),
            "interactive.action.parameters.flow_json",
            "unknown field",
        );
    }

    // ---------------------------------------------------------------------------------------------
    // template
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn template_name_is_lowercase_letters_digits_and_underscores() {
        let named = |name: &str| {
            client(
                "template",
                json!({"name": name, "language": {"code": "en_US"}}),
            )
        };
        refused(
            named("Order-Update"),
            "template.name",
            "lowercase letters, digits or underscores",
        );
        refused(named(""), "template.name", "1-512");
        refused(
            named(&"a".repeat(513)),
            "template.name",
            "must have at most 512 characters (found 513)",
        );
    }

    #[test]
    fn template_language_code_is_required() {
        refused(
            client("template", json!({"name": "hello_world"})),
            "template.language",
            "is required",
        );
        refused(
            client("template", json!({"name": "hello_world", "language": {}})),
            "template.language.code",
            "is required",
        );
        refused(
            client(
                "template",
                json!({"name": "hello_world", "language": {"code": "en_US", "policy": "fallback"}}),
            ),
            "template.language.policy",
            "must be one of deterministic (found \"fallback\")",
        );
        refused(
            client(
                "template",
                json!({"name": "hello_world", "language": "en_US"}),
            ),
            "template.language",
            "must be an object",
        );
    }

    #[test]
    fn template_component_types() {
        refused(
            template(json!([{"type": "footer", "parameters": []}])),
            "template.components[0].type",
            "footer is never sent",
        );
        refused(
            template(json!([{"type": "carousel", "cards": []}])),
            "template.components[0].cards",
            "must have at least 2 cards (found 0)",
        );
        refused(
            template(json!([{"type": "gallery", "cards": []}])),
            "template.components[0].type",
            "must be one of header, body, button, carousel, limited_time_offer",
        );
        refused(
            template(
                json!([{"type": "body", "parameters": [{"type": "text", "text": "a"}]}, {"type": "body", "parameters": [{"type": "text", "text": "b"}]}]),
            ),
            "template.components[1]",
            "must not repeat the body component",
        );
        refused(
            template(json!({"type": "body"})),
            "template.components",
            "must be an array",
        );
        refused(
            template(json!([{"type": "body"}])),
            "template.components[0].parameters",
            "is required",
        );
    }

    /// A card of a media card carousel template, as Meta's guide sends it.
    fn template_card(i: usize) -> Value {
        json!({"card_index": i, "components": [
            {"type": "header", "parameters": [{"type": "image", "image": {"id": format!("24230790383178{i}")}}]},
            {"type": "body", "parameters": [{"type": "text", "text": format!("{i}0%")}]},
            {"type": "button", "sub_type": "quick_reply", "index": "0",
             "parameters": [{"type": "payload", "payload": format!("more-{i}")}]},
            {"type": "button", "sub_type": "url", "index": "1",
             "parameters": [{"type": "text", "text": format!("p{i}")}]}
        ]})
    }

    #[test]
    fn carousel_templates_are_sent_as_meta_documents_them() {
        let components = json!([
            {"type": "body", "parameters": [{"type": "text", "text": "Pablo"}]},
            {"type": "carousel", "cards": [template_card(0), template_card(1)]}
        ]);
        sends(
            template(components.clone()),
            meta(
                "template",
                json!({"name": "order_update", "language": {"code": "en_US"}, "components": components}),
            ),
        );
        // card_index is filled in; a product card's header names the product.
        let mut first = template_card(0);
        first.as_object_mut().unwrap().remove("card_index");
        let product = json!({"components": [{"type": "header", "parameters": [{"type": "product",
            "product": {"product_retailer_id": "SKU-1", "catalog_id": "194836987003835"}}]}]});
        let sent = parse(&template(
            json!([{"type": "carousel", "cards": [first, product]}]),
        ));
        let cards = &sent.meta_body()["template"]["components"][0]["cards"];
        assert_eq!(cards[0]["card_index"], 0);
        assert_eq!(cards[1]["card_index"], 1);
        assert_eq!(
            cards[1]["components"][0]["parameters"][0]["product"]["catalog_id"],
            "194836987003835"
        );
    }

    #[test]
    fn carousel_template_rules() {
        let carousel = |cards: Value| template(json!([{"type": "carousel", "cards": cards}]));
        refused(
            carousel(json!([template_card(0)])),
            "template.components[0].cards",
            "must have at least 2 cards (found 1)",
        );
        refused(
            carousel(json!([template_card(0), template_card(0)])),
            "template.components[0].cards[1].card_index",
            "must be 1, the card's position (found 0)",
        );
        // A card that is no object is named alone: the next keeps its position.
        refused(
            carousel(json!([1, template_card(1)])),
            "template.components[0].cards[0]",
            "must be an object",
        );
        // A broken header is named as broken, not as missing.
        let mut broken = template_card(1);
        broken["components"][0]
            .as_object_mut()
            .unwrap()
            .remove("parameters");
        refused(
            carousel(json!([template_card(0), broken])),
            "template.components[0].cards[1].components[0].parameters",
            "is required",
        );
        let mut headless = template_card(1);
        headless["components"].as_array_mut().unwrap().remove(0);
        refused(
            carousel(json!([template_card(0), headless])),
            "template.components[0].cards[1].components",
            "must have a header component",
        );
        let mut nested = template_card(1);
        nested["components"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "carousel", "cards": []}));
        refused(
            carousel(json!([template_card(0), nested])),
            "template.components[0].cards[1].components[4].type",
            "must be one of header, body, button on a carousel card (found \"carousel\")",
        );
        let mut twice = template_card(1);
        twice["components"][3]["index"] = json!("0");
        twice["components"][3]["sub_type"] = json!("quick_reply");
        twice["components"][3]["parameters"] = json!([{"type": "payload", "payload": "x"}]);
        refused(
            carousel(json!([template_card(0), twice])),
            "template.components[0].cards[1].components[3]",
            "must not repeat the button 0 component",
        );
        let mut extra = template_card(1);
        extra["extra"] = json!(1);
        refused(
            carousel(json!([template_card(0), extra])),
            "template.components[0].cards[1].extra",
            "unknown field; expected one of card_index, components",
        );
    }

    #[test]
    fn limited_time_offer_templates() {
        let offer = json!({"type": "limited_time_offer", "parameters": [{"type": "limited_time_offer",
            "limited_time_offer": {"expiration_time_ms": 1_209_600_000u64}}]});
        let components = json!([offer, {"type": "button", "sub_type": "copy_code", "index": "0",
            "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}]}]);
        sends(
            template(components.clone()),
            meta(
                "template",
                json!({"name": "order_update", "language": {"code": "en_US"}, "components": components}),
            ),
        );
        let with = |parameters: Value| {
            template(json!([{"type": "limited_time_offer", "parameters": parameters}]))
        };
        refused(
            with(
                json!([{"type": "limited_time_offer", "limited_time_offer": {"expiration_time_ms": 0}}]),
            ),
            "template.components[0].parameters[0].limited_time_offer.expiration_time_ms",
            "must be a positive integer: milliseconds since the epoch (found 0)",
        );
        refused(
            with(json!([])),
            "template.components[0].parameters",
            "must have at least 1 parameter (found 0)",
        );
        refused(
            with(json!([{"type": "text", "limited_time_offer": {"expiration_time_ms": 5}}])),
            "template.components[0].parameters[0].type",
            "must be \"limited_time_offer\"",
        );
    }

    #[test]
    fn template_header_takes_one_parameter_of_a_header_type() {
        let header = |params: Value| template(json!([{"type": "header", "parameters": params}]));
        refused(
            header(json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])),
            "template.components[0].parameters",
            "must have at most 1 parameter (found 2)",
        );
        refused(
            header(json!([{"type": "text", "text": "a".repeat(61)}])),
            "template.components[0].parameters[0].text",
            "must have at most 60 characters (found 61)",
        );
        refused(
            header(json!([{"type": "currency", "currency": {}}])),
            "template.components[0].parameters[0].type",
            "must be one of text, image, video, document, location, product in a header",
        );
        refused(
            header(
                json!([{"type": "image", "image": {"link": "https://example.com/a.png", "caption": "x"}}]),
            ),
            "template.components[0].parameters[0].image.caption",
            "caption is not allowed in a header",
        );
        refused(
            header(json!([{"type": "location", "location": {"latitude": 100, "longitude": 0}}])),
            "template.components[0].parameters[0].location.latitude",
            "between -90 and 90",
        );
    }

    #[test]
    fn template_body_parameters() {
        let body = |params: Value| {
            template(
                json!([{"type": "body", "parameters": params}, {"type": "header", "parameters": [{"type": "text", "text": "h"}]}]),
            )
        };
        refused(
            body(json!([{"type": "text", "text": ""}])),
            "template.components[0].parameters[0].text",
            "must not be empty",
        );
        refused(
            body(json!([{"type": "text", "text": "a".repeat(1025)}])),
            "template.components[0].parameters[0].text",
            "must have at most 1024 characters (found 1025)",
        );
        refused(
            body(json!([{"type": "image", "image": {"id": "1"}}])),
            "template.components[0].parameters[0].type",
            "must be one of text, currency, date_time in a body",
        );
        refused(
            body(json!([{"type": "text", "text": "a", "parameter_name": "First Name"}])),
            "template.components[0].parameters[0].parameter_name",
            "lowercase letters, digits and underscores",
        );
        refused(
            body(
                json!([{"type": "text", "text": "a", "parameter_name": "first"}, {"type": "text", "text": "b"}]),
            ),
            "template.components[0].parameters",
            "parameter_name on all text parameters or on none (found 1 of 2)",
        );
        refused(
            body(json!([])),
            "template.components[0].parameters",
            "must have at least 1 parameter (found 0)",
        );
        // A body alone may carry up to 32768 characters in a parameter.
        let alone = template(
            json!([{"type": "body", "parameters": [{"type": "text", "text": "a".repeat(32768)}]}]),
        );
        parse(&alone);
        let too_long = template(
            json!([{"type": "body", "parameters": [{"type": "text", "text": "a".repeat(32769)}]}]),
        );
        refused(
            too_long,
            "template.components[0].parameters[0].text",
            "must have at most 32768 characters (found 32769)",
        );
        // Meta's 132018: no line break, tab or run of 5 spaces, in the body or the header.
        for text in ["Item 1\nItem 2", "a\r\nb", "a\tb", "a     b"] {
            refused(
                body(json!([{"type": "text", "text": text}])),
                "template.components[0].parameters[0].text",
                "must not contain line breaks, tabs or more than 4 consecutive spaces",
            );
        }
        let header =
            template(json!([{"type": "header", "parameters": [{"type": "text", "text": "a\nb"}]}]));
        refused(
            header,
            "template.components[0].parameters[0].text",
            "must not contain line breaks, tabs or more than 4 consecutive spaces",
        );
        parse(&body(
            json!([{"type": "text", "text": "four    spaces are fine"}]),
        ));
    }

    #[test]
    fn template_currency_and_date_time() {
        let currency = |c: Value| {
            template(json!([{"type": "body", "parameters": [{"type": "currency", "currency": c}]}]))
        };
        refused(
            currency(json!({"fallback_value": "$1", "code": "usd", "amount_1000": 1000})),
            "template.components[0].parameters[0].currency.code",
            "3-letter ISO 4217 code",
        );
        refused(
            currency(json!({"fallback_value": "$1", "code": "USD", "amount_1000": 1.5})),
            "template.components[0].parameters[0].currency.amount_1000",
            "must be an integer",
        );
        refused(
            currency(json!({"code": "USD", "amount_1000": 1000})),
            "template.components[0].parameters[0].currency.fallback_value",
            "is required",
        );
        refused(
            template(
                json!([{"type": "body", "parameters": [{"type": "date_time", "date_time": {}}]}]),
            ),
            "template.components[0].parameters[0].date_time.fallback_value",
            "is required",
        );
    }

    #[test]
    fn template_button_index_and_sub_type() {
        let button = |sub_type: &str, index: Value| {
            template(
                json!([{"type": "button", "sub_type": sub_type, "index": index, "parameters": [{"type": "payload", "payload": "P"}]}]),
            )
        };
        refused(
            button("quick_reply", json!(10)),
            "template.components[0].index",
            "0-9",
        );
        refused(
            button("quick_reply", json!("first")),
            "template.components[0].index",
            "0-9",
        );
        refused(
            button("quick_reply", json!(-1)),
            "template.components[0].index",
            "0-9",
        );
        refused(
            button("call", json!(0)),
            "template.components[0].sub_type",
            "must be one of quick_reply, url, copy_code",
        );
        refused(
            template(
                json!([{"type": "button", "index": 0, "parameters": [{"type": "payload", "payload": "P"}]}]),
            ),
            "template.components[0].sub_type",
            "is required",
        );
        refused(
            template(json!([
                {"type": "button", "sub_type": "quick_reply", "index": 0, "parameters": [{"type": "payload", "payload": "A"}]},
                {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "B"}]}
            ])),
            "template.components[1]",
            "must not repeat the button 0 component",
        );
    }

    #[test]
    fn template_button_parameters() {
        let button = |sub_type: &str, params: Value| {
            template(
                json!([{"type": "button", "sub_type": sub_type, "index": "0", "parameters": params}]),
            )
        };
        refused(
            button("quick_reply", json!([{"type": "text", "payload": "x"}])),
            "template.components[0].parameters[0].type",
            "must be \"payload\" (found \"text\")",
        );
        refused(
            button("quick_reply", json!([{"type": "payload", "payload": ""}])),
            "template.components[0].parameters[0].payload",
            "must not be empty",
        );
        refused(
            button("url", json!([{"type": "text", "text": " "}])),
            "template.components[0].parameters[0].text",
            "must not be empty",
        );
        refused(
            template(json!([{"type": "button", "sub_type": "url", "index": "0"}])),
            "template.components[0].parameters",
            "is required",
        );
        refused(
            button(
                "url",
                json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]),
            ),
            "template.components[0].parameters",
            "must have at most 1 parameter (found 2)",
        );
        refused(
            button(
                "copy_code",
                json!([{"type": "coupon_code", "coupon_code": "C".repeat(16)}]),
            ),
            "template.components[0].parameters[0].coupon_code",
            "must have at most 15 characters (found 16)",
        );
        refused(
            button("flow", json!([{"action": {}}])),
            "template.components[0].parameters[0].type",
            "is required",
        );
    }

    // ---------------------------------------------------------------------------------------------
    // reaction
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn reaction_needs_a_message_id_and_one_emoji() {
        refused(
            client("reaction", json!({"emoji": "\u{1f44d}"})),
            "reaction.message_id",
            "is required",
        );
        refused(
            client(
                "reaction",
                json!({"message_id": "wamid. x", "emoji": "\u{1f44d}"}),
            ),
            "reaction.message_id",
            "printable ASCII",
        );
        refused(
            client("reaction", json!({"message_id": WAMID})),
            "reaction.emoji",
            "is required",
        );
        refused(
            client("reaction", json!({"message_id": WAMID, "emoji": "ok"})),
            "reaction.emoji",
            "must be one emoji",
        );
        refused(
            client(
                "reaction",
                json!({"message_id": WAMID, "emoji": "\u{1f44d} "}),
            ),
            "reaction.emoji",
            "must be one emoji",
        );
        refused(
            client("reaction", json!({"message_id": WAMID, "emoji": "日"})),
            "reaction.emoji",
            "must be one emoji",
        );
        refused(
            client(
                "reaction",
                json!({"message_id": WAMID, "emoji": "\u{1f44d}".repeat(17)}),
            ),
            "reaction.emoji",
            "at most 16 characters (found 17)",
        );
        // Two emoji, each fine alone, and two flags (whose regional indicators pair up).
        for two in ["\u{1f44d}\u{1f44d}", "\u{1f1e7}\u{1f1f7}\u{1f1e9}\u{1f1ea}"] {
            refused(
                client("reaction", json!({"message_id": WAMID, "emoji": two})),
                "reaction.emoji",
                "must be one emoji, or \"\" to remove the reaction (found 2)",
            );
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Several problems at once
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn every_problem_is_reported_at_once() {
        let body = json!({
            "to": "12",
            "from": "abc",
            "reply_to": "",
            "type": "interactive",
            "extra": 1,
            "biz_opaque_callback_data": "x".repeat(600),
            "interactive": {
                "type": "button",
                "header": {"type": "text", "text": "h".repeat(61)},
                "body": {"text": ""},
                "footer": {"text": "f".repeat(61)},
                "action": {"buttons": [reply("a", &"t".repeat(21)), reply("a", "B"), reply("c", "C"), reply("d", "D")]}
            }
        });
        let fields: Vec<String> = problems(body).into_iter().map(|p| p.field).collect();
        for expected in [
            "to",
            "from",
            "reply_to",
            "extra",
            "biz_opaque_callback_data",
            "interactive.header.text",
            "interactive.body.text",
            "interactive.footer.text",
            "interactive.action.buttons",
            "interactive.action.buttons[0].reply.title",
            "interactive.action.buttons[1].reply.id",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} missing from {fields:#?}"
            );
        }
        assert_eq!(fields.len(), 11, "{fields:#?}");
    }

    #[test]
    fn problems_in_several_cards_and_components_are_all_reported() {
        let body = client(
            "contacts",
            json!([{"name": {"formatted_name": ""}}, {"birthday": "x"}]),
        );
        let fields: Vec<String> = problems(body).into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "contacts[0].name.formatted_name",
                "contacts[0].name",
                "contacts[1].name",
                "contacts[1].birthday"
            ],
        );
    }
}
