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
    for (path, verb, statuses) in [
        (
            "/send",
            "post",
            &["200", "400", "401", "422", "502", "503", "504"][..],
        ),
        ("/get", "post", &["200", "401", "422", "503"][..]),
        ("/webhook", "get", &["200", "400", "403"][..]),
        ("/webhook", "post", &["200", "400", "401", "413", "503"][..]),
        ("/healthz", "get", &["200"][..]),
        ("/readyz", "get", &["200", "503"][..]),
        ("/metrics", "get", &["200", "401"][..]),
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
