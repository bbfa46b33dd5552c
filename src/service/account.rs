//! The business account as Meta describes it: the configured numbers with their quality rating
//! and messaging limit (`GET /v1/numbers`, cached briefly), and the approved templates with the
//! parameters each one takes (`GET /v1/templates`), so a client or the inbox can fill them in.
//!
//! A number Meta cannot describe right now shows `meta: null` and why, instead of failing the
//! whole list. Templates are read page by page with Meta's `after` cursor (never by following
//! the absolute `paging.next` URL, which would leave GRAPH_API_BASE).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::config::BusinessNumber;
use crate::graph::{GraphClient, GraphError, next_cursor, with_cursor};

/// How long `GET /v1/numbers` reuses Meta's answers.
pub const NUMBERS_CACHE: Duration = Duration::from_secs(60);
/// The phone-number fields asked of Meta.
const NUMBER_FIELDS: &str =
    "display_phone_number,verified_name,quality_rating,messaging_limit_tier,throughput,status";
/// Templates per page asked of Meta, and most pages read.
const TEMPLATE_PAGE: usize = 100;
const MAX_TEMPLATE_PAGES: usize = 20;

/// Why templates could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The number has no WABA configured.
    #[error(
        "the WhatsApp Business Account of number {0} is not configured: set BUSINESS_ACCOUNT_ID (or BUSINESS_ACCOUNT_ID_{0})"
    )]
    NoWaba(String),
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// The account service.
#[derive(Debug, Clone)]
pub struct Account {
    graph: GraphClient,
    cache: Arc<Mutex<Option<(Instant, Value)>>>,
}

impl Account {
    pub fn new(graph: GraphClient) -> Self {
        Self {
            graph,
            cache: Arc::default(),
        }
    }

    /// `{"numbers": [{phone_number_id, display_phone_number, waba_id, default, meta, meta_error?}]}`.
    pub async fn numbers(&self) -> Value {
        if let Some((at, cached)) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).clone()
            && at.elapsed() < NUMBERS_CACHE
        {
            return cached;
        }
        let reads = self
            .graph
            .numbers()
            .iter()
            .enumerate()
            .map(|(i, n)| async move {
                let mut entry = json!({
                    "phone_number_id": n.id,
                    "display_phone_number": n.display_phone_number,
                    "waba_id": n.waba_id,
                    "default": i == 0,
                });
                match self.describe_number(n, NUMBER_FIELDS).await {
                    Ok(meta) => entry["meta"] = meta,
                    Err(e) => {
                        entry["meta"] = Value::Null;
                        entry["meta_error"] = crate::http::error::bounded(&e.to_string()).into();
                    }
                }
                entry
            });
        let numbers = futures_util::future::join_all(reads).await;
        let answer = json!({ "numbers": numbers });
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), answer.clone()));
        answer
    }

    /// Meta's `fields` (comma-separated) of `number`: `GET /{phone_number_id}?fields=`, uncached,
    /// with Meta's error as it came (the doctor tells an unknown id from a refused token by it).
    pub async fn describe_number(
        &self,
        number: &BusinessNumber,
        fields: &str,
    ) -> Result<Value, GraphError> {
        self.graph
            .get(number, &format!("/{}?fields={fields}", number.id))
            .await
    }

    /// `{"phone_number_id", "waba_id", "templates": [{name, language, category, status,
    /// components, parameters}]}`: the approved templates of `number`'s WABA.
    pub async fn templates(&self, number: &BusinessNumber) -> Result<Value, AccountError> {
        let waba = number
            .waba_id
            .as_deref()
            .ok_or_else(|| AccountError::NoWaba(number.id.clone()))?;
        let mut templates = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_TEMPLATE_PAGES {
            let path = with_cursor(
                format!(
                    "/{waba}/message_templates?fields=name,language,status,category,components&status=APPROVED&limit={TEMPLATE_PAGE}"
                ),
                after.as_deref(),
            );
            let page = self.graph.get(number, &path).await?;
            for template in page["data"].as_array().into_iter().flatten() {
                templates.push(describe(template));
            }
            after = next_cursor(&page);
            if after.is_none() {
                break;
            }
        }
        Ok(json!({"phone_number_id": number.id, "waba_id": waba, "templates": templates}))
    }
}

/// A template as Meta lists it, plus `parameters`: what a send must fill in, per component, in
/// the shape of `POST /v1/messages`' `template.components`.
fn describe(template: &Value) -> Value {
    let mut parameters = Vec::new();
    for component in template["components"].as_array().into_iter().flatten() {
        let kind = component["type"].as_str().unwrap_or_default();
        match kind {
            "HEADER" => {
                match component["format"].as_str().unwrap_or("TEXT") {
                    "TEXT" => {
                        let names = placeholders(component["text"].as_str().unwrap_or_default());
                        if !names.is_empty() {
                            parameters.push(json!({"component": "header", "type": "text", "placeholders": names}));
                        }
                    }
                    media => parameters
                        .push(json!({"component": "header", "type": media.to_lowercase()})),
                }
            }
            "BODY" => {
                let names = placeholders(component["text"].as_str().unwrap_or_default());
                if !names.is_empty() {
                    parameters
                        .push(json!({"component": "body", "type": "text", "placeholders": names}));
                }
            }
            "BUTTONS" => {
                for (index, button) in component["buttons"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let sub_type = button["type"].as_str().unwrap_or_default().to_lowercase();
                    let needs = match sub_type.as_str() {
                        "url" => {
                            !placeholders(button["url"].as_str().unwrap_or_default()).is_empty()
                        }
                        "quick_reply" | "copy_code" => true,
                        _ => false,
                    };
                    if needs {
                        parameters.push(json!({
                            "component": "button", "sub_type": sub_type, "index": index.to_string(),
                            "text": button["text"],
                        }));
                    }
                }
            }
            _ => {}
        }
    }
    json!({
        "name": template["name"], "language": template["language"], "category": template["category"],
        "status": template["status"], "components": template["components"], "parameters": parameters,
    })
}

/// The placeholders of a template text in order of appearance, each once: `{{1}}` gives `"1"`,
/// a named `{{order_id}}` gives `"order_id"`.
fn placeholders(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_owned());
        }
        rest = &after[end + 2..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_listed_once_in_order_numbered_or_named() {
        assert_eq!(
            placeholders("Hi {{1}}, order {{2}} ships {{1}} {{ 3 }}"),
            ["1", "2", "3"]
        );
        assert_eq!(
            placeholders("Order {{order_id}} for {{name}}"),
            ["order_id", "name"]
        );
        assert!(placeholders("no {{}} params {{ bad-name }}").is_empty());
        assert!(placeholders("{{1").is_empty());
    }

    #[test]
    fn a_template_lists_what_a_send_must_fill_in() {
        let template = json!({"name": "order_update", "language": "en_US", "category": "UTILITY", "status": "APPROVED",
            "components": [
                {"type": "HEADER", "format": "IMAGE"},
                {"type": "BODY", "text": "Hi {{1}}, your order {{2}} has shipped."},
                {"type": "FOOTER", "text": "Thanks"},
                {"type": "BUTTONS", "buttons": [
                    {"type": "URL", "text": "Track", "url": "https://example.com/track/{{1}}"},
                    {"type": "URL", "text": "Shop", "url": "https://example.com"},
                    {"type": "QUICK_REPLY", "text": "Stop"}]}]});
        let described = describe(&template);
        assert_eq!(
            described["parameters"],
            json!([
                {"component": "header", "type": "image"},
                {"component": "body", "type": "text", "placeholders": ["1", "2"]},
                {"component": "button", "sub_type": "url", "index": "0", "text": "Track"},
                {"component": "button", "sub_type": "quick_reply", "index": "2", "text": "Stop"},
            ])
        );
        assert_eq!(described["name"], "order_update");
        assert_eq!(described["components"], template["components"]);
    }
}
