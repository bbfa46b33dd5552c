//! 8. Parser robustness: the webhook parser and the signature check over arbitrary bytes,
//!    arbitrary JSON and mutated Meta envelopes never panic. Full: 100,000 cases per strategy;
//!    CI: 3,000. Invariants: whatever parses holds only valid ids and numbers; only the genuine
//!    signature verifies.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use secrecy::SecretString;
use whatsapp_gateway::webhook::{AppSecret, extract_batch};

use crate::scaled;

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: scaled(100_000, 3_000) as u32,
        failure_persistence: None,
        ..Config::default()
    })
}

fn check_parse(bytes: &[u8]) {
    if let Ok(batch) = extract_batch(bytes) {
        for m in batch.messages {
            assert!(!m.id.as_str().is_empty());
            assert!(m.from.as_str().bytes().all(|b| b.is_ascii_digit()));
            assert!((7..=15).contains(&m.from.as_str().len()));
            // The stored form is always valid JSON.
            serde_json::from_str::<serde_json::Value>(&m.to_stored_json()).unwrap();
        }
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        "\\PC{0,12}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("entry"),
            Just("changes"),
            Just("value"),
            Just("messages"),
            Just("from"),
            Just("id"),
            Just("text"),
            Just("type")
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("entry".to_owned()),
                        Just("changes".to_owned()),
                        Just("value".to_owned()),
                        Just("messages".to_owned()),
                        Just("from".to_owned()),
                        Just("id".to_owned()),
                        Just("type".to_owned()),
                        Just("text".to_owned()),
                        Just("field".to_owned()),
                        Just("metadata".to_owned()),
                        Just("statuses".to_owned()),
                        "[a-z_]{1,8}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|pairs| serde_json::Value::Object(pairs.into_iter().collect())),
        ]
    })
}

#[test]
fn arbitrary_bytes_never_panic_the_parser() {
    let _serial = crate::serial_blocking();
    runner()
        .run(&prop::collection::vec(any::<u8>(), 0..600), |bytes| {
            check_parse(&bytes);
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_json_never_panics_the_parser() {
    let _serial = crate::serial_blocking();
    runner()
        .run(&json_value(), |value| {
            check_parse(value.to_string().as_bytes());
            Ok(())
        })
        .unwrap();
}

#[test]
fn mutated_envelopes_never_panic_the_parser() {
    let _serial = crate::serial_blocking();
    let envelope = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"display_phone_number":"15551713917","phone_number_id":"1"},"messages":[{"from":"919216598210","id":"wamid.A","timestamp":"1","type":"text","text":{"body":"hi"}}],"statuses":[{"id":"wamid.S","status":"read"}]}}]}]}"#;
    let strategy = (
        prop::collection::vec((0..envelope.len(), any::<u8>()), 1..8),
        prop::collection::vec(0..envelope.len(), 0..4),
    );
    runner()
        .run(&strategy, |(replacements, deletions)| {
            let mut bytes = envelope.as_bytes().to_vec();
            for (at, byte) in replacements {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            for at in deletions {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes.remove(at);
                }
            }
            check_parse(&bytes);
            Ok(())
        })
        .unwrap();
}

#[test]
fn signature_check_never_panics_and_accepts_only_the_genuine_signature() {
    let _serial = crate::serial_blocking();
    let secret = AppSecret::new(&SecretString::from("fuzz-secret"));
    runner()
        .run(
            &(
                prop::collection::vec(any::<u8>(), 0..200),
                prop::option::of(prop::collection::vec(any::<u8>(), 0..80)),
            ),
            |(body, header)| {
                let genuine = secret.sign(&body);
                let verdict = secret.verify(header.as_deref(), &body);
                // Upper-case hex of the genuine digest is the only other accepted spelling.
                let matches_genuine = header.as_deref().is_some_and(|h| {
                    h.eq_ignore_ascii_case(genuine.as_bytes()) && h.starts_with(b"sha256=")
                });
                prop_assert_eq!(verdict.is_ok(), matches_genuine);
                prop_assert!(secret.verify(Some(genuine.as_bytes()), &body).is_ok());
                Ok(())
            },
        )
        .unwrap();
}
