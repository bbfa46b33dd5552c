//! 7. Signature matrix: more than 75 forged variants of one webhook (missing header, other
//!    algorithms, malformed hex, wrong lengths, another app's secret, each of the 64 signature hex
//!    digits changed, each of the first 64 body bytes changed, re-serialized JSON): 0 accepted,
//!    nothing stored.

use secrecy::SecretString;
use serde_json::{Value, json};
use whatsapp_gateway::webhook::AppSecret;

use crate::helpers::{Backend, sign, spawn_app};

#[tokio::test]
async fn no_forged_signature_is_accepted() {
    let _serial = crate::serial().await;
    let app = spawn_app(Backend::Embedded).await;
    // Meta's wire format: escaped unicode and slashes, so any re-serialization changes the bytes.
    let body = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"metadata":{{"display_phone_number":"15551713917","phone_number_id":"1"}},"messages":[{}]}}}}]}}]}}"#,
        r#"{"from":"919216598210","id":"wamid.FORGED","timestamp":"1","type":"text","text":{"body":"caf\u00e9 \/ ok"}}"#
    );
    let good = sign(body.as_bytes());
    let hex = good.strip_prefix("sha256=").unwrap().to_owned();
    let mut variants: Vec<(String, Vec<u8>, Option<String>)> = vec![
        ("missing header".into(), body.clone().into_bytes(), None),
        (
            "empty header".into(),
            body.clone().into_bytes(),
            Some(String::new()),
        ),
        (
            "sha1= prefix".into(),
            body.clone().into_bytes(),
            Some(format!("sha1={hex}")),
        ),
        (
            "no prefix".into(),
            body.clone().into_bytes(),
            Some(hex.clone()),
        ),
        (
            "uppercase prefix".into(),
            body.clone().into_bytes(),
            Some(format!("SHA256={hex}")),
        ),
        (
            "prefix only".into(),
            body.clone().into_bytes(),
            Some("sha256=".into()),
        ),
        (
            "non-hex".into(),
            body.clone().into_bytes(),
            Some(format!("sha256={}", "zz".repeat(32))),
        ),
        (
            "63 hex digits".into(),
            body.clone().into_bytes(),
            Some(format!("sha256={}", &hex[..63])),
        ),
        (
            "65 hex digits".into(),
            body.clone().into_bytes(),
            Some(format!("sha256={hex}0")),
        ),
        (
            "truncated to 32 bytes of 16".into(),
            body.clone().into_bytes(),
            Some(format!("sha256={}", &hex[..32])),
        ),
        // (A trailing space is no forgery: HTTP strips it before the header reaches us.)
        (
            "space after prefix".into(),
            body.clone().into_bytes(),
            Some(format!("sha256= {hex}")),
        ),
        (
            "two signatures".into(),
            body.clone().into_bytes(),
            Some(format!("{good},{good}")),
        ),
        (
            "all zeros".into(),
            body.clone().into_bytes(),
            Some(format!("sha256={}", "0".repeat(64))),
        ),
        (
            "other app's secret".into(),
            body.clone().into_bytes(),
            Some(AppSecret::new(&SecretString::from("another-app")).sign(body.as_bytes())),
        ),
        (
            "empty secret".into(),
            body.clone().into_bytes(),
            Some(AppSecret::new(&SecretString::from("")).sign(body.as_bytes())),
        ),
        (
            "signature of empty body".into(),
            body.clone().into_bytes(),
            Some(sign(b"")),
        ),
        (
            "trailing newline added".into(),
            format!("{body}\n").into_bytes(),
            Some(good.clone()),
        ),
    ];
    for i in 0..64 {
        let mut forged = hex.clone().into_bytes();
        forged[i] = if forged[i] == b'0' { b'1' } else { b'0' };
        variants.push((
            format!("hex digit {i} changed"),
            body.clone().into_bytes(),
            Some(format!("sha256={}", String::from_utf8(forged).unwrap())),
        ));
    }
    for i in 0..64 {
        let mut forged = body.clone().into_bytes();
        forged[i] ^= 0x01;
        variants.push((format!("body byte {i} flipped"), forged, Some(good.clone())));
    }
    let parsed: Value = serde_json::from_str(&body).unwrap();
    for (name, reserialized) in [
        (
            "re-serialized compact",
            serde_json::to_string(&parsed).unwrap(),
        ),
        (
            "re-serialized pretty",
            serde_json::to_string_pretty(&parsed).unwrap(),
        ),
        (
            "escapes decoded",
            body.replace(r"\u00e9", "é")
                .replace(r"\/", "/")
                .replace("é", "e"),
        ),
    ] {
        assert_ne!(reserialized, body, "{name} must differ from the wire bytes");
        variants.push((name.into(), reserialized.into_bytes(), Some(good.clone())));
    }
    // A genuine message, correctly signed, injected with a forged id via a replayed signature.
    let replay = body.replace("wamid.FORGED", "wamid.REPLAY");
    variants.push((
        "replayed signature on other body".into(),
        replay.into_bytes(),
        Some(good.clone()),
    ));

    assert!(variants.len() >= 75, "{} variants", variants.len());
    let mut accepted = Vec::new();
    for (name, bytes, signature) in &variants {
        let status = app
            .post_webhook_raw(bytes.clone(), signature.as_deref())
            .await
            .status();
        if status != 401 {
            accepted.push(format!("{name}: {status}"));
        }
    }
    println!(
        "signature matrix: {} variants, {} not refused",
        variants.len(),
        accepted.len()
    );
    assert!(accepted.is_empty(), "not refused with 401: {accepted:?}");
    let stored = app
        .post_get(json!({"number": "919216598210"}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(stored["count"], 0, "nothing stored");

    // The control: the genuine bytes with the genuine signature are accepted.
    assert_eq!(
        app.post_webhook_raw(body.clone().into_bytes(), Some(&good))
            .await
            .status(),
        200
    );
}
