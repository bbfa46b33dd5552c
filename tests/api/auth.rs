//! API_KEY on client endpoints; /webhook and health stay open.

use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const API_KEY: &str = "client-key-123";

#[tokio::test]
async fn client_endpoints_require_the_api_key_when_set() {
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("API_KEY".into(), API_KEY.into());
    })
    .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"messages": []})))
        .mount(&app.graph)
        .await;
    for path in ["/get", "/send"] {
        let body = json!({"number": "919216598210", "text": "hi"});
        let none = app
            .http
            .post(app.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), 401, "{path}");
        assert_eq!(none.headers()["www-authenticate"], "Bearer");
        let wrong = app
            .http
            .post(app.url(path))
            .bearer_auth("client-key-12")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        let bearer = app
            .http
            .post(app.url(path))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(bearer.status(), 200, "{path}");
        let header = app
            .http
            .post(app.url(path))
            .header("X-API-Key", API_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(header.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn webhook_and_health_stay_open_with_an_api_key() {
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("API_KEY".into(), API_KEY.into());
    })
    .await;
    let body = webhook_with(vec![text_message("wamid.K", "919216598210", "hi")]);
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    let verify = app.url(&format!(
        "/webhook?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=7"
    ));
    assert_eq!(app.http.get(verify).send().await.unwrap().status(), 200);
    assert_eq!(app.get_status("/healthz").await, 200);
    assert_eq!(app.get_status("/readyz").await, 200);
}

#[tokio::test]
async fn client_endpoints_are_open_without_an_api_key() {
    let app = spawn_app(Backend::Embedded).await;
    assert_eq!(
        app.post_get(json!({"number": "919216598210"}))
            .await
            .status(),
        200
    );
}
