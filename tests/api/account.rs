//! `GET /v1/numbers` and `GET /v1/templates` against a wiremock Graph API: Meta's fields per
//! number (a failing one shown as unknown), the cache, templates across pages with the
//! parameters they take, retries of reads, and the missing-WABA error.

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const SECOND: &str = "200000000000002";
const WABA: &str = "102290129340398";

async fn two_numbers() -> TestApp {
    spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("BUSINESS_ACCOUNT_ID".into(), WABA.into());
        vars.insert("DISPLAY_PHONE_NUMBER".into(), "15551713917".into());
        vars.insert("PHONE_NUMBERS".into(), SECOND.into());
        vars.insert(format!("ACCESS_TOKEN_{SECOND}"), "second-token".into());
    })
    .await
}

#[tokio::test]
async fn numbers_show_metas_fields_and_a_failing_number_as_unknown_and_are_cached() {
    let app = two_numbers().await;
    Mock::given(method("GET"))
        .and(path(format!("/{PHONE_NUMBER_ID}")))
        .and(header("authorization", format!("Bearer {ACCESS_TOKEN}").as_str()))
        .and(query_param(
            "fields",
            "display_phone_number,verified_name,quality_rating,messaging_limit_tier,throughput,status",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "display_phone_number": "+1 555-171-3917", "verified_name": "Acme", "quality_rating": "GREEN",
            "messaging_limit_tier": "TIER_1K", "throughput": {"level": "STANDARD"}, "id": PHONE_NUMBER_ID})))
        .expect(1)
        .mount(&app.graph)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/{SECOND}")))
        .and(header("authorization", "Bearer second-token"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(
                json!({"error": {"message": "An unknown error occurred", "code": 1}}),
            ),
        )
        .expect(3)
        .mount(&app.graph)
        .await;
    let answer = app.get_json("/v1/numbers").await;
    let numbers = answer["numbers"].as_array().unwrap();
    assert_eq!(numbers.len(), 2, "{answer}");
    assert_eq!(numbers[0]["phone_number_id"], PHONE_NUMBER_ID);
    assert_eq!(numbers[0]["default"], true);
    assert_eq!(numbers[0]["display_phone_number"], "15551713917");
    assert_eq!(numbers[0]["waba_id"], WABA);
    assert_eq!(numbers[0]["meta"]["quality_rating"], "GREEN");
    assert_eq!(numbers[0]["meta"]["messaging_limit_tier"], "TIER_1K");
    assert_eq!(numbers[1]["phone_number_id"], SECOND);
    assert_eq!(numbers[1]["meta"], Value::Null);
    assert!(
        numbers[1]["meta_error"].as_str().unwrap().contains("500"),
        "{answer}"
    );
    // Within a minute: the same answer, no new Graph call (the expect counts hold).
    assert_eq!(app.get_json("/v1/numbers").await, answer);
}

#[tokio::test]
async fn templates_are_read_across_pages_with_their_parameters_and_reads_are_retried() {
    let app = two_numbers().await;
    let list = |names: &[&str]| -> Vec<Value> {
        names
            .iter()
            .map(|n| {
                json!({"name": n, "language": "en_US", "status": "APPROVED", "category": "UTILITY",
                "components": [{"type": "BODY", "text": "Hi {{1}}, order {{2}}"}]})
            })
            .collect()
    };
    // Page 2 fails twice (Meta's 500) before it is read: a read is safe to repeat.
    Mock::given(method("GET"))
        .and(path(format!("/{WABA}/message_templates")))
        .and(query_param("after", "QVFI+cursor=="))
        .respond_with(meta_error(2, 500))
        .up_to_n_times(2)
        .expect(2)
        .mount(&app.graph)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/{WABA}/message_templates")))
        .and(query_param("after", "QVFI+cursor=="))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"data": list(&["shipped"]), "paging": {"cursors": {"after": "END"}}}),
        ))
        .expect(1)
        .mount(&app.graph)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/{WABA}/message_templates")))
        .and(query_param("status", "APPROVED"))
        .and(header("authorization", format!("Bearer {ACCESS_TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": list(&["hello_world", "order_update"]),
            "paging": {"cursors": {"after": "QVFI+cursor=="}, "next": "https://graph.facebook.com/v22.0/next-page"}})))
        .expect(1)
        .mount(&app.graph)
        .await;
    let answer = app.get_json("/v1/templates").await;
    let names: Vec<&str> = answer["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["hello_world", "order_update", "shipped"],
        "{answer}"
    );
    assert_eq!(answer["waba_id"], WABA);
    assert_eq!(
        answer["templates"][0]["parameters"],
        json!([{"component": "body", "type": "text", "placeholders": ["1", "2"]}])
    );
}

#[tokio::test]
async fn templates_without_a_waba_or_for_an_unknown_number_are_clear_errors() {
    let app = spawn_app(Backend::Embedded).await;
    let response = app.http.get(app.url("/v1/templates")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("BUSINESS_ACCOUNT_ID"),
        "{body}"
    );
    let response = app
        .http
        .get(app.url("/v1/templates?phone_number_id=999"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(app.graph.received_requests().await.unwrap().len(), 0);
}

/// A failed template read is answered by what the client can do, as a failed send is: an
/// expired token is the gateway's problem (502 with Meta's code and the fix), not a 400 that
/// would blame the client's request.
#[tokio::test]
async fn a_template_read_refused_for_an_expired_token_is_a_502_with_the_fix() {
    let app = two_numbers().await;
    Mock::given(method("GET"))
        .and(path(format!("/{WABA}/message_templates")))
        .respond_with(meta_error(190, 401))
        .expect(1)
        .mount(&app.graph)
        .await;
    let response = app.http.get(app.url("/v1/templates")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"]["code"], 190, "{body}");
    assert_eq!(body["detail"]["fbtrace_id"], "AbC123");
    assert_eq!(body["detail"]["message"], "(#190) something");
    assert!(
        body["detail"]["hint"]
            .as_str()
            .unwrap()
            .contains("ACCESS_TOKEN"),
        "{body}"
    );
    assert!(!body.to_string().contains(ACCESS_TOKEN));
}
