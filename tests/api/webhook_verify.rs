//! GET /webhook: Meta's verification handshake.

use crate::helpers::*;

#[tokio::test]
async fn right_token_echoes_the_challenge_as_plain_text() {
    let app = spawn_app(Backend::Embedded).await;
    let url = app.url(&format!(
        "/webhook?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
    ));
    let response = app.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(response.text().await.unwrap(), "1158201444");
}

#[tokio::test]
async fn wrong_token_or_mode_is_403() {
    let app = spawn_app(Backend::Embedded).await;
    for query in [
        "hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1",
        &format!("hub.mode=unsubscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1"),
    ] {
        let response = app
            .http
            .get(app.url(&format!("/webhook?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{query}");
    }
}

#[tokio::test]
async fn missing_parameters_are_400_naming_the_parameter() {
    let app = spawn_app(Backend::Embedded).await;
    let response = app
        .http
        .get(app.url("/webhook?hub.mode=subscribe&hub.challenge=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["detail"], "missing query parameter hub.verify_token");
    assert_eq!(app.get_status("/webhook").await, 400);
}

#[tokio::test]
async fn handshake_is_refused_when_verify_token_is_unset() {
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.remove("VERIFY_TOKEN");
    })
    .await;
    let response = app
        .http
        .get(app.url("/webhook?hub.mode=subscribe&hub.verify_token=&hub.challenge=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["detail"],
        "VERIFY_TOKEN is not set on the server: set it to the Verify Token entered in Meta's dashboard"
    );
    // Whatever token is tried: the reason is the server's configuration, not the token.
    let response = app
        .http
        .get(app.url(&format!(
            "/webhook?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("VERIFY_TOKEN is not set")
    );
}
