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
    described_as(app, MEDIA, "image/jpeg", size)
}

/// Meta's description of media `id` of type `mime_type`, pointing at `/dl/<id>` on the mock.
fn described_as(app: &TestApp, id: &str, mime_type: &str, size: usize) -> Value {
    json!({"url": format!("{}/dl/{id}?ext=jpg&hash=x", app.graph.uri()), "mime_type": mime_type,
           "sha256": "abc", "file_size": size, "id": id, "messaging_product": "whatsapp"})
}

#[tokio::test]
async fn a_media_file_is_streamed_through_with_its_type_and_length_after_retried_reads() {
    let app = spawn_app(Backend::Embedded).await;
    let file: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    // Meta fails twice to describe it: a read is tried again.
    Mock::given(method("GET"))
        .and(path(format!("/{MEDIA}")))
        .respond_with(meta_error(2, 500))
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
    let response = get_media(&app).await;
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
    let response = get_media(&app).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    let before = app.graph.received_requests().await.unwrap().len();
    assert_eq!(app.get_status("/v1/media/a%20b").await, 422);
    // ".." would climb out of the media id's place in the Graph URL. (Sent raw: reqwest would
    // normalize the path before sending it.)
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = app.address.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(
                b"GET /v1/media/%2E%2E HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
    }
    assert_eq!(app.get_status("/v1/media/1?phone_number_id=42").await, 422);
    assert_eq!(app.graph.received_requests().await.unwrap().len(), before);
}

/// Meta's API-call rate limit (code 4) on a media read is a 429 with Retry-After, as on a
/// send; an invalid parameter other than an unknown id is the client's 400.
#[tokio::test]
async fn a_throttled_media_read_is_a_429_with_retry_after() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("GET"))
        .and(path(format!("/{MEDIA}")))
        .respond_with(meta_error(4, 400).insert_header("retry-after", "120"))
        .expect(1)
        .mount(&app.graph)
        .await;
    let response = get_media(&app).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "120");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"]["code"], 4, "{body}");

    Mock::given(method("DELETE"))
        .and(path(format!("/{MEDIA}")))
        .respond_with(meta_error(131008, 400))
        .expect(1)
        .mount(&app.graph)
        .await;
    let response = delete_media(&app).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"]["code"], 131008, "{body}");
    assert_eq!(body["detail"]["details"], "the details");
    assert!(body["detail"]["hint"].is_string(), "{body}");
}

#[tokio::test]
async fn a_redirect_on_a_media_read_is_not_tried_again() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("GET"))
        .and(path(format!("/{MEDIA}")))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", "https://elsewhere.example/x"),
        )
        .expect(1)
        .mount(&app.graph)
        .await;
    assert_eq!(app.get_status(&format!("/v1/media/{MEDIA}")).await, 502);
}

/// A file a customer sent never runs as a page of the gateway's origin (where the inbox's
/// cookie lives): every download has `nosniff` and a sandbox; a picture, a sound or a video is
/// shown inline, anything else (HTML, SVG, a PDF) is a download.
#[tokio::test]
async fn a_sent_file_is_never_served_as_a_page_of_the_gateway() {
    let app = spawn_app(Backend::Embedded).await;
    let cases = [
        ("1000000000000001", "text/html; charset=utf-8", true),
        ("1000000000000002", "image/svg+xml", true),
        ("1000000000000003", "application/pdf", true),
        ("1000000000000004", "IMAGE/PNG", false),
        ("1000000000000005", "audio/ogg; codecs=opus", false),
        ("1000000000000006", "video/mp4", false),
    ];
    for (id, content_type, attachment) in cases {
        Mock::given(method("GET"))
            .and(path(format!("/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(described_as(
                &app,
                id,
                content_type,
                30,
            )))
            .mount(&app.graph)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/dl/{id}")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_raw(b"<script>alert(1)</script>".to_vec(), content_type),
            )
            .mount(&app.graph)
            .await;
        let response = app
            .http
            .get(app.url(&format!("/v1/media/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{content_type}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type);
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(
            headers["content-security-policy"],
            "default-src 'none'; sandbox"
        );
        assert_eq!(
            headers
                .get("content-disposition")
                .map(|v| v.to_str().unwrap()),
            attachment.then_some("attachment"),
            "{content_type}"
        );
    }
}

/// `GET /v1/media/{MEDIA}`.
async fn get_media(app: &TestApp) -> reqwest::Response {
    app.http
        .get(app.url(&format!("/v1/media/{MEDIA}")))
        .send()
        .await
        .unwrap()
}

/// `DELETE /v1/media/{MEDIA}`. API_KEY is unset here: a state-changing request must declare
/// JSON (see edge.rs).
async fn delete_media(app: &TestApp) -> reqwest::Response {
    app.http
        .delete(app.url(&format!("/v1/media/{MEDIA}")))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap()
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
    let response = delete_media(&app).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"id": MEDIA, "deleted": true}));
}

// ---- POST /v1/media ----

/// The parts of a multipart form Meta received: (name, filename, content type, bytes).
async fn form_parts(
    request: &wiremock::Request,
) -> Vec<(String, Option<String>, Option<String>, Vec<u8>)> {
    let content_type = request.headers["content-type"].to_str().unwrap().to_owned();
    let boundary = multer::parse_boundary(&content_type).expect("Meta gets a multipart form");
    let body = bytes::Bytes::from(request.body.clone());
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut parts = Vec::new();
    while let Some(field) = form.next_field().await.unwrap() {
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let mime = field.content_type().map(|m| m.to_string());
        let bytes = field.bytes().await.unwrap().to_vec();
        parts.push((name, filename, mime, bytes));
    }
    parts
}

/// Meta's answer to an upload.
async fn mount_upload(app: &TestApp, number: &str, id: &str, times: u64) {
    Mock::given(method("POST"))
        .and(path(format!("/{number}/media")))
        .and(header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": id })))
        .expect(times)
        .mount(&app.graph)
        .await;
}

/// A form of one `file`.
fn one_file(bytes: Vec<u8>, name: &str, mime: &str) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().part("file", file_part(bytes, name, mime))
}

fn file_part(bytes: Vec<u8>, name: &str, mime: &str) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str(mime)
        .unwrap()
}

async fn upload(app: &TestApp, form: reqwest::multipart::Form) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/v1/media"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_upload_reaches_meta_as_metas_form_and_is_answered_with_its_id_size_and_hash() {
    use sha2::Digest;
    let app = spawn_app(Backend::Embedded).await;
    mount_upload(&app, PHONE_NUMBER_ID, "MEDIA-1", 1).await;
    let file: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let form = reqwest::multipart::Form::new()
        .text("from", PHONE_NUMBER_ID)
        // A path in the name is not passed on.
        .part(
            "file",
            file_part(file.clone(), "C:\\photos\\beach.JPG", "image/jpg"),
        );
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!({"id": "MEDIA-1", "type": "image", "mime_type": "image/jpeg", "file_size": file.len(),
               "sha256": hex::encode(sha2::Sha256::digest(&file)), "filename": "beach.JPG",
               "from": PHONE_NUMBER_ID})
    );
    let requests = app.graph.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let parts = form_parts(&requests[0]).await;
    let names: Vec<&str> = parts.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(names, ["messaging_product", "type", "file"]);
    assert_eq!(parts[0].3, b"whatsapp");
    assert_eq!(parts[1].3, b"image/jpeg");
    assert_eq!(parts[2].1.as_deref(), Some("beach.JPG"));
    assert_eq!(parts[2].2.as_deref(), Some("image/jpeg"));
    assert!(parts[2].3 == file, "Meta got other bytes");
}

#[tokio::test]
async fn the_type_comes_from_the_type_field_or_the_name_and_opus_is_declared_as_meta_wants_it() {
    let app = spawn_app(Backend::Embedded).await;
    mount_upload(&app, PHONE_NUMBER_ID, "MEDIA-2", 2).await;
    // A browser's recorder output, declared the way Meta refuses (131053): normalized.
    let form = reqwest::multipart::Form::new()
        .text("type", "audio/opus")
        .part(
            "file",
            file_part(vec![1; 2000], "note", "application/octet-stream"),
        );
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["type"], "audio");
    assert_eq!(body["mime_type"], "audio/ogg; codecs=opus");
    // No type at all: the extension tells.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(vec![2; 100]).file_name("report.pdf"),
    );
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["type"], "document");
    assert_eq!(body["mime_type"], "application/pdf");
    let requests = app.graph.received_requests().await.unwrap();
    let parts = form_parts(&requests[0]).await;
    assert_eq!(parts[1].3, b"audio/ogg; codecs=opus");
    assert_eq!(parts[2].2.as_deref(), Some("audio/ogg; codecs=opus"));
    assert_eq!(parts[2].1.as_deref(), Some("note"));
}

#[tokio::test]
async fn a_file_over_its_kinds_limit_is_413_naming_it_and_meta_keeps_nothing() {
    let app = spawn_app(Backend::Embedded).await;
    // Meta may see the start of the form, never a complete one.
    mount_upload(&app, PHONE_NUMBER_ID, "NEVER", 0).await;
    let image = vec![7u8; 5 * 1024 * 1024 + 1];
    let form = one_file(image, "big.png", "image/png");
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 413, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("5 MiB") && detail.contains("image (image/png)"),
        "{detail}"
    );
    // A static sticker over 100 KiB (an animated one may have 500).
    let mut sticker = b"RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00".to_vec();
    sticker.resize(100 * 1024 + 1, 0);
    let form = one_file(sticker.clone(), "s.webp", "image/webp");
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("100 KiB static"),
        "{body}"
    );
    Mock::given(method("POST"))
        .and(path(format!("/{PHONE_NUMBER_ID}/media")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "ANIMATED" })))
        .with_priority(1)
        .expect(1)
        .mount(&app.graph)
        .await;
    sticker[20] = 0x02; // VP8X: animated
    let form = one_file(sticker, "s.webp", "image/webp");
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], "ANIMATED");
    assert_eq!(body["type"], "sticker");
}

#[tokio::test]
async fn bad_forms_are_refused_before_any_call_naming_the_problem() {
    let app = spawn_app(Backend::Embedded).await;
    mount_upload(&app, PHONE_NUMBER_ID, "NEVER", 0).await;
    // A type WhatsApp does not take: 415 listing those it does.
    let form = one_file(vec![1; 10], "a.gif", "image/gif");
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 415, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("\"image/gif\" is not a media type")
            && detail.contains("image/png (image)"),
        "{detail}"
    );
    // No file field.
    let form = reqwest::multipart::Form::new().text("from", PHONE_NUMBER_ID);
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "file"]));
    // An empty file.
    let form = one_file(Vec::new(), "a.jpg", "image/jpeg");
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["msg"], "file is empty");
    // An unknown field.
    let form = reqwest::multipart::Form::new()
        .text("caption", "hi")
        .part("file", file_part(vec![1; 10], "a.jpg", "image/jpeg"));
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "caption"]));
    // A number that is not configured.
    let form = reqwest::multipart::Form::new()
        .text("from", "999")
        .part("file", file_part(vec![1; 10], "a.jpg", "image/jpeg"));
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "from"]));
    let response = app
        .http
        .post(app.url("/v1/media?from=999"))
        .multipart(one_file(vec![1; 10], "a.jpg", "image/jpeg"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"], json!(["query", "from"]));
    // Not a form.
    let response = app
        .http
        .post(app.url("/v1/media"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("multipart/form-data"),
        "{body}"
    );
}

#[tokio::test]
async fn a_field_after_the_file_is_refused_and_the_upload_deleted() {
    let app = spawn_app(Backend::Embedded).await;
    mount_upload(&app, PHONE_NUMBER_ID, "LATE-1", 1).await;
    Mock::given(method("DELETE"))
        .and(path("/LATE-1"))
        .and(query_param("phone_number_id", PHONE_NUMBER_ID))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&app.graph)
        .await;
    let form = one_file(vec![1; 10], "a.jpg", "image/jpeg").text("from", "106540352242923");
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "from"]));
    assert!(
        body["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("must come before 'file'"),
        "{body}"
    );
}

#[tokio::test]
async fn a_file_declared_larger_than_its_kinds_limit_is_refused_before_any_call() {
    // The Graph API is a bare listener here: any call, even one cut off early, opens a connection.
    let graph = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    graph.set_nonblocking(true).unwrap();
    let base = format!("http://{}", graph.local_addr().unwrap());
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("GRAPH_API_BASE".into(), base);
    })
    .await;
    let (status, body) = upload(
        &app,
        one_file(vec![7; 6 * 1024 * 1024], "big.jpg", "image/jpeg"),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("5 MiB"), "{body}");
    let connected = graph.accept();
    assert!(
        matches!(&connected, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the gateway connected to the Graph API: {connected:?}"
    );
}

#[tokio::test]
async fn a_file_without_a_name_gets_its_types_usual_extension() {
    let app = spawn_app(Backend::Embedded).await;
    mount_upload(&app, PHONE_NUMBER_ID, "NAMELESS", 1).await;
    let docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
    let part = reqwest::multipart::Part::bytes(vec![1; 10])
        .mime_str(docx)
        .unwrap();
    let form = reqwest::multipart::Form::new().part("file", part);
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["filename"], "file.docx");
}

#[tokio::test]
async fn meta_refusing_the_file_is_passed_on_with_its_code() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("POST"))
        .and(path(format!("/{PHONE_NUMBER_ID}/media")))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "(#131053) Media upload error", "type": "OAuthException", "code": 131053,
            "error_data": {"details": "Unsupported file type"}, "fbtrace_id": "F"}})))
        .expect(1)
        .mount(&app.graph)
        .await;
    let form = one_file(vec![1; 10], "a.jpg", "image/jpeg");
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["detail"]["code"], 131053);
    assert_eq!(body["detail"]["details"], "Unsupported file type");
    assert_eq!(body["detail"]["fbtrace_id"], "F");
    assert!(
        body["detail"]["hint"]
            .as_str()
            .unwrap()
            .contains("type and size"),
        "{body}"
    );
}

#[tokio::test]
async fn an_upload_over_the_configured_maximum_is_413_from_its_declared_length() {
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("MEDIA_UPLOAD_MAX_BYTES".into(), "4096".into());
    })
    .await;
    mount_upload(&app, PHONE_NUMBER_ID, "SMALL", 1).await;
    // Refused from the declared length, then (within the form's overhead) while it streams.
    for size in [200 * 1024, 8 * 1024] {
        let (status, body) =
            upload(&app, one_file(vec![1; size], "a.pdf", "application/pdf")).await;
        assert_eq!(status, 413, "{size}: {body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("MEDIA_UPLOAD_MAX_BYTES (4 KiB)"),
            "{detail}"
        );
    }
    let form = one_file(vec![1; 4096], "a.pdf", "application/pdf");
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn without_an_api_key_a_form_from_another_sites_page_is_refused() {
    let app = spawn_app(Backend::Embedded).await;
    mount_upload(&app, PHONE_NUMBER_ID, "OWN", 1).await;
    let form = || one_file(vec![1; 10], "a.jpg", "image/jpeg");
    let response = app
        .http
        .post(app.url("/v1/media"))
        .header("origin", "https://evil.example")
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let own_origin = app.address.clone();
    let response = app
        .http
        .post(app.url("/v1/media"))
        .header("origin", own_origin)
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn a_stalled_upload_is_cut_off_with_408_and_frees_its_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(Backend::Embedded, |vars| {
        vars.insert("MAX_UPLOADS_PER_CLIENT".into(), "1".into());
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let start = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\nContent-Type: application/pdf\r\n\r\n";
    let head = format!(
        "POST /v1/media HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 1000000\r\n\r\n{start}{}",
        "x".repeat(100)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The slot is held while the body comes: a second upload from this address is refused.
    let form = one_file(vec![1; 10], "a.pdf", "application/pdf");
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("MAX_UPLOADS_PER_CLIENT"),
        "{body}"
    );
    // Then nothing more comes: after the 2 s grace the minimum rate (1024 B/s) cuts it off.
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Meta never got a complete upload, and the slot is free again.
    let complete = app.graph.received_requests().await.unwrap_or_default();
    assert!(
        complete.is_empty(),
        "{} requests reached the mock",
        complete.len()
    );
    mount_upload(&app, PHONE_NUMBER_ID, "AFTER", 1).await;
    let form = one_file(vec![1; 10], "a.pdf", "application/pdf");
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn meta_must_answer_within_the_graph_timeout_once_the_file_is_sent() {
    let app = spawn_app(Backend::Embedded).await;
    Mock::given(method("POST"))
        .and(path(format!("/{PHONE_NUMBER_ID}/media")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "id": "LATE" }))
                .set_delay(std::time::Duration::from_secs(8)),
        )
        .mount(&app.graph)
        .await;
    let started = std::time::Instant::now();
    let form = one_file(vec![1; 10], "a.jpg", "image/jpeg");
    let (status, body) = upload(&app, form).await;
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    // GRAPH_TIMEOUT_SECS is 2 in tests.
    assert!(
        took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_secs(6),
        "{took:?}"
    );
}
