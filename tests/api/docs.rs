//! GET /openapi.json and /docs.

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn openapi_documents_every_endpoint_and_its_errors() {
    let app = spawn_app(Backend::Embedded).await;
    let response = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    let paths = &doc["paths"];
    // 503 (over CONCURRENCY_LIMIT, or past REQUEST_TIMEOUT_SECS) can answer any route; bodies
    // can be too slow (408) or too large (413); client endpoints refuse a non-JSON Content-Type
    // (415) and, while API_KEY is unset, a Host outside ALLOWED_HOSTS (403).
    for (path, verb, statuses) in [
        (
            "/send",
            "post",
            &[
                "200", "400", "401", "403", "408", "413", "415", "422", "502", "503", "504",
            ][..],
        ),
        (
            "/get",
            "post",
            &[
                "200", "400", "401", "403", "408", "413", "415", "422", "503",
            ][..],
        ),
        ("/webhook", "get", &["200", "400", "403", "503"][..]),
        (
            "/webhook",
            "post",
            &["200", "400", "401", "408", "413", "503"][..],
        ),
        ("/healthz", "get", &["200", "503"][..]),
        ("/readyz", "get", &["200", "503"][..]),
        ("/metrics", "get", &["200", "401", "403", "503"][..]),
        (
            "/v1/events",
            "get",
            &["200", "401", "403", "422", "503"][..],
        ),
        ("/v1/ws", "get", &["101", "401", "403", "422", "503"][..]),
        (
            "/v1/messages",
            "post",
            &[
                "200", "400", "401", "403", "415", "422", "429", "502", "503", "504",
            ][..],
        ),
        (
            "/v1/messages/{id}/read",
            "post",
            &["200", "401", "403", "415", "422", "503"][..],
        ),
        (
            "/v1/media",
            "post",
            &[
                "201", "400", "401", "403", "408", "413", "415", "422", "502", "503",
            ][..],
        ),
        (
            "/v1/media/{id}",
            "delete",
            &["200", "403", "404", "415", "503"][..],
        ),
        (
            "/v1/media/{id}",
            "get",
            &["200", "403", "404", "422", "503"][..],
        ),
        ("/v1/numbers", "get", &["200", "401", "403", "503"][..]),
    ] {
        let responses = paths[path][verb]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{verb} {path} missing"));
        for status in statuses {
            assert!(
                responses.contains_key(*status),
                "{verb} {path} lacks {status}"
            );
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every operation of every path, including ones added later, documents 503.
    for (path, item) in paths.as_object().unwrap() {
        for (verb, operation) in item.as_object().unwrap() {
            if let Some(responses) = operation.get("responses") {
                assert!(responses.get("503").is_some(), "{verb} {path} lacks 503");
            }
        }
    }
    // Any client endpoint may refuse an address that sent too many wrong keys; open ones never.
    for (path, verb) in [
        ("/get", "post"),
        ("/v1/conversations", "get"),
        ("/v1/ws", "get"),
    ] {
        let wrong_keys = paths[path][verb]["responses"]["429"]["description"]
            .as_str()
            .unwrap_or_else(|| panic!("{verb} {path} lacks 429"));
        assert!(wrong_keys.contains("wrong API keys"), "{verb} {path}");
    }
    assert!(paths["/webhook"]["post"]["responses"].get("429").is_none());
    let send_502 = paths["/send"]["post"]["responses"]["502"]["description"]
        .as_str()
        .unwrap();
    for cause in ["DNS", "refused", "TLS", "5xx", "redirect", "1 MiB"] {
        assert!(
            send_502.contains(cause),
            "/send 502 does not mention {cause}"
        );
    }
}

#[tokio::test]
async fn swagger_ui_is_served_offline() {
    let app = spawn_app(Backend::Embedded).await;
    let response = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.text().await.unwrap().contains("swagger"),
        "Swagger UI HTML"
    );
    let js = app
        .http
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
}
