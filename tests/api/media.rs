//! `GET /v1/media/{id}` and `DELETE /v1/media/{id}` against a wiremock Graph API: Meta's
//! short-lived URL resolved (retried on Meta's failures) and the file streamed through with its
//! type and length; unknown and expired ids as 404; a bad id refused before any call.

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const MEDIA: &str = "1479537139650973";

/// Meta's description of the media, pointing at `/dl/<MEDIA>` on the mock.
fn described(app: &TestApp, size: usize) -> Value {
    json!({"url": format!("{}/dl/{MEDIA}?ext=jpg&hash=x", app.graph.uri()), "mime_type": "image/jpeg",
           "sha256": "abc", "file_size": size, "id": MEDIA, "messaging_product": "whatsapp"})
}

#[tokio::test]
async fn a_media_file_is_streamed_through_with_its_type_and_length_after_retried_reads() {
    let app = spawn_app(Backend::Embedded).await;
    let file: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    // Meta fails twice to describe it: a read is tried again.
    Mock::given(method("GET"))
        .and(path(format!("/{MEDIA}")))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(json!({"error": {"message": "x", "code": 2}})),
        )
        .up_to_n_times(2)
        .expect(2)
        .mount(&app.graph)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/{MEDIA}")))
        .and(query_param("phone_number_id", PHONE_NUMBER_ID))
        .and(header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(described(&app, file.len())))
        .expect(1)
        .mount(&app.graph)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/dl/{MEDIA}")))
        .and(header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_raw(file.clone(), "image/jpeg"))
        .expect(1)
        .mount(&app.graph)
        .await;
    let response = app
        .http
        .get(app.url(&format!("/v1/media/{MEDIA}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert_eq!(
        response.headers()["content-length"],
        file.len().to_string().as_str()
    );
    assert_eq!(response.headers()["cache-control"], "private, no-store");
    let body = response.bytes().await.unwrap();
    assert!(body.as_ref() == file.as_slice(), "the bytes differ");
}

#[tokio::test]
async fn unknown_and_expired_media_are_404_and_a_bad_id_is_422_without_a_call() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("GET"))
        .and(path("/999"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "Unsupported get request. Object with ID '999' does not exist", "type": "GraphMethodException",
            "code": 100, "error_subcode": 33, "fbtrace_id": "A"}})))
        .expect(1)
        .mount(&app.graph)
        .await;
    let status = app.get_status("/v1/media/999").await;
    assert_eq!(status, 404);

    Mock::given(method("GET"))
        .and(path(format!("/{MEDIA}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(described(&app, 10)))
        .mount(&app.graph)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/dl/{MEDIA}")))
        .respond_with(ResponseTemplate::new(404).set_body_string("<html>expired</html>"))
        .expect(1)
        .mount(&app.graph)
        .await;
    let response = app
        .http
        .get(app.url(&format!("/v1/media/{MEDIA}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    let before = app.graph.received_requests().await.unwrap().len();
    assert_eq!(app.get_status("/v1/media/a%20b").await, 422);
    assert_eq!(app.get_status("/v1/media/1?phone_number_id=42").await, 422);
    assert_eq!(app.graph.received_requests().await.unwrap().len(), before);
}

#[tokio::test]
async fn media_is_deleted_with_the_numbers_token() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("DELETE"))
        .and(path(format!("/{MEDIA}")))
        .and(query_param("phone_number_id", PHONE_NUMBER_ID))
        .and(header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&app.graph)
        .await;
    let response = app
        .http
        .delete(app.url(&format!("/v1/media/{MEDIA}")))
        // API_KEY is unset here: a state-changing request must declare JSON (see edge.rs).
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"id": MEDIA, "deleted": true}));
}
