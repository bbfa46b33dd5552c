//! `whatsapp-gateway doctor`: the real binary against a wiremock Graph API playing Meta, a real
//! store (both backends where the store is involved) and, for `--public-url`, a gateway started
//! by the test. One test per failure the doctor detects, each asserting the outcome, that the
//! fix names what to change, what was skipped because of it, and the exit status; an all-green
//! run exits 0. Every run also asserts that no configured secret appears in the output.

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::contract_tests;
use crate::helpers::*;

contract_tests!(
    an_all_green_set_up_passes_every_check_and_exits_0,
    an_unreachable_store_fails_with_the_fix,
);

const WABA: &str = "102290129340398";
const APP_ID: &str = "634974688087057";
const APP_NAME: &str = "Acme Gateway";
const API_KEY: &str = "test-api-key-4711";
const SECOND: &str = "200000000000002";
const SECOND_TOKEN: &str = "second-number-token-99";
const DAY: i64 = 86_400;

/// `debug_token`'s answer for a valid token.
fn token_data(expires_at: i64, scopes: &[&str], messaging_targets: &[&str]) -> Value {
    json!({"data": {
        "app_id": APP_ID, "type": "SYSTEM_USER", "application": APP_NAME,
        "data_access_expires_at": 0, "expires_at": expires_at, "is_valid": true,
        "scopes": scopes,
        "granular_scopes": [
            {"scope": "whatsapp_business_management", "target_ids": [WABA]},
            {"scope": "whatsapp_business_messaging", "target_ids": messaging_targets},
        ],
        "user_id": "10222270944537964"}})
}

const BOTH: [&str; 3] = [
    "whatsapp_business_management",
    "whatsapp_business_messaging",
    "public_profile",
];

fn number_fields(quality: &str, status: &str, platform: &str) -> Value {
    json!({"id": PHONE_NUMBER_ID, "display_phone_number": "+1 555-171-3917", "verified_name": "Acme",
        "quality_rating": quality, "messaging_limit_tier": "TIER_1K", "code_verification_status": "VERIFIED",
        "name_status": "APPROVED", "platform_type": platform, "throughput": {"level": "STANDARD"},
        "status": status})
}

fn subscribed(apps: &[(&str, &str)]) -> Value {
    let data: Vec<Value> = apps
        .iter()
        .map(|(id, name)| json!({"whatsapp_business_api_data": {"id": id, "name": name, "link": "https://www.example.com/"}}))
        .collect();
    json!({ "data": data })
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

/// Meta's error answer, as Graph sends it.
fn graph_error(status: u16, code: i64, subcode: i64, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"error": {
        "message": message, "type": "OAuthException", "code": code, "error_subcode": subcode,
        "fbtrace_id": "AbC123"}}))
}

/// What Meta answers the doctor; healthy unless a test changes a part.
struct Meta {
    debug_token: ResponseTemplate,
    number: ResponseTemplate,
    phone_numbers: ResponseTemplate,
    subscribed_apps: ResponseTemplate,
}

impl Meta {
    fn healthy() -> Self {
        Self {
            debug_token: ok(token_data(0, &BOTH, &[WABA])),
            number: ok(number_fields("GREEN", "CONNECTED", "CLOUD_API")),
            phone_numbers: ok(json!({"data": [
                {"id": "300000000000003", "display_phone_number": "+1 555-000-0003"},
                {"id": PHONE_NUMBER_ID, "display_phone_number": "+1 555-171-3917"}]})),
            subscribed_apps: ok(subscribed(&[(APP_ID, APP_NAME)])),
        }
    }

    /// Healthy, but no app is subscribed to the WABA.
    fn unsubscribed() -> Self {
        Self {
            subscribed_apps: ok(json!({"data": []})),
            ..Self::healthy()
        }
    }

    /// Mounts every answer, each only for the default number's token.
    async fn mount(self, server: &MockServer) {
        let bearer = format!("Bearer {ACCESS_TOKEN}");
        Mock::given(method("GET"))
            .and(path("/debug_token"))
            .and(query_param("input_token", ACCESS_TOKEN))
            .and(header("authorization", bearer.as_str()))
            .respond_with(self.debug_token)
            .mount(server)
            .await;
        for (at, answer) in [
            (format!("/{PHONE_NUMBER_ID}"), self.number),
            (format!("/{WABA}/phone_numbers"), self.phone_numbers),
            (format!("/{WABA}/subscribed_apps"), self.subscribed_apps),
        ] {
            Mock::given(method("GET"))
                .and(path(at))
                .and(header("authorization", bearer.as_str()))
                .respond_with(answer)
                .mount(server)
                .await;
        }
    }
}

/// A configured set-up: Meta (wiremock), the store, the variables.
struct Setup {
    meta: MockServer,
    vars: HashMap<String, String>,
    _data: tempfile::TempDir,
    _redis: Option<TestRedis>,
}

async fn setup(backend: Backend) -> Setup {
    let meta = MockServer::start().await;
    let mut vars = default_vars(&meta.uri());
    vars.insert("BUSINESS_ACCOUNT_ID".into(), WABA.into());
    vars.insert("API_KEY".into(), API_KEY.into());
    let data = tempfile::tempdir().unwrap();
    vars.insert("DATA_DIR".into(), data.path().display().to_string());
    let redis = (backend == Backend::Redis).then(TestRedis::start);
    if let Some(redis) = &redis {
        vars.insert("REDIS_URL".into(), redis.url());
        vars.insert("REDIS_KEY_PREFIX".into(), "doctor".into());
    } else {
        // The gateway has run here before: its database exists (the doctor creates none).
        whatsapp_gateway::store::embedded::EmbeddedStore::open(
            &whatsapp_gateway::config::EmbeddedSettings {
                data_dir: data.path().to_owned(),
                event_retention: 100,
            },
        )
        .unwrap();
        // Dropped; its writer thread lets go of the DATA_DIR lock once it has finished, which
        // on a loaded machine can be after a gateway process spawned next would ask for it.
        wait_until_unlocked(data.path()).await;
    }
    Setup {
        meta,
        vars,
        _data: data,
        _redis: redis,
    }
}

/// Waits (at most 10 s) until no one, this process included, holds `dir`'s DATA_DIR lock.
async fn wait_until_unlocked(dir: &Path) {
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(dir.join(whatsapp_gateway::store::embedded::lock::LOCK_FILE))
        .unwrap();
    eventually("the DATA_DIR lock released", || async {
        file.try_lock().ok()
    })
    .await;
    file.unlock().unwrap();
}

/// A set-up on `backend` with Meta answering as `meta` says.
async fn setup_with(backend: Backend, meta: Meta) -> Setup {
    let setup = setup(backend).await;
    meta.mount(&setup.meta).await;
    setup
}

/// A set-up on the embedded store with Meta healthy.
async fn healthy() -> Setup {
    setup_with(Backend::Embedded, Meta::healthy()).await
}

impl Setup {
    /// `doctor <args> --json`: the exit code and the report.
    async fn json(&self, args: &[&str]) -> (i32, Value) {
        let mut args = args.to_vec();
        args.push("--json");
        let out = run_doctor(&self.vars, &args, None).await;
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&out)));
        (out.status.code().expect("exited"), report)
    }

    /// `doctor <args>`: the exit code and the checklist.
    async fn text(&self, args: &[&str]) -> (i32, String) {
        let out = run_doctor(&self.vars, args, None).await;
        (
            out.status.code().expect("exited"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

/// Runs the binary's `doctor` in a fresh directory with only `vars` (and, when given, a
/// `config.env` there instead), asserting that no secret of `vars` is in its output.
async fn run_doctor(
    vars: &HashMap<String, String>,
    args: &[&str],
    config_env: Option<&Path>,
) -> Output {
    let cwd = tempfile::tempdir().unwrap();
    let dir = config_env.unwrap_or(cwd.path());
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_whatsapp-gateway"))
        .arg("doctor")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(
            if config_env.is_some() {
                None
            } else {
                Some(vars)
            }
            .into_iter()
            .flatten(),
        )
        .current_dir(dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("doctor finished within 60 s")
        .unwrap();
    let all = show(&out);
    for (name, value) in vars {
        let secret = name.starts_with("ACCESS_TOKEN")
            || ["APP_SECRET", "API_KEY", "VERIFY_TOKEN", "REDIS_URL"].contains(&name.as_str());
        assert!(
            !secret || !all.contains(value.as_str()),
            "{name}'s value is in the output:\n{all}"
        );
    }
    out
}

fn show(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The check `key` (about `subject`, when given) of a report.
fn check<'a>(report: &'a Value, key: &str, subject: Option<&str>) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == key && subject.is_none_or(|s| c["subject"] == s))
        .unwrap_or_else(|| panic!("no check {key} ({subject:?}) in {report:#}"))
}

fn outcome<'a>(report: &'a Value, key: &str) -> &'a str {
    check(report, key, None)["outcome"].as_str().unwrap()
}

fn text_of<'a>(report: &'a Value, key: &str, field: &str) -> &'a str {
    check(report, key, None)[field].as_str().unwrap_or_default()
}

/// The checks that need a working token, skipped when it fails.
const AFTER_TOKEN: [&str; 5] = [
    "permissions",
    "phone_number",
    "quality",
    "waba",
    "subscription",
];

/// The checks after the token, skipped.
fn assert_skipped(report: &Value, keys: &[&str]) {
    for key in keys {
        assert_eq!(outcome(report, key), "skipped", "{key}: {report:#}");
    }
}

async fn an_all_green_set_up_passes_every_check_and_exits_0(backend: Backend) {
    let setup = setup_with(backend, Meta::healthy()).await;
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    for key in [
        "configuration",
        "app_secret",
        "api_key",
        "verify_token",
        "store",
        "access_token",
        "permissions",
        "phone_number",
        "quality",
        "waba",
        "subscription",
    ] {
        assert_eq!(outcome(&report, key), "pass", "{key}: {report:#}");
    }
    let store = text_of(&report, "store", "detail");
    match backend {
        Backend::Redis => assert!(store.starts_with("Redis at 127.0.0.1:"), "{store}"),
        Backend::Embedded => assert!(store.starts_with("SQLite at "), "{store}"),
    }
    assert!(text_of(&report, "access_token", "detail").contains("never expires"));
    let quality = text_of(&report, "quality", "detail");
    assert!(
        quality.contains("quality GREEN") && quality.contains("messaging limit TIER_1K"),
        "{quality}"
    );
    assert!(text_of(&report, "subscription", "detail").contains(APP_NAME));

    // The same from config.env in the working directory, as a checklist.
    let dir = tempfile::tempdir().unwrap();
    let lines: String = setup
        .vars
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    std::fs::write(dir.path().join("config.env"), lines).unwrap();
    let out = run_doctor(&setup.vars, &[], Some(dir.path())).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        text.contains("✓ configuration: the settings parse (read config.env"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "✓ webhook subscription of WABA {WABA}: subscribed: {APP_NAME} ({APP_ID})"
        )),
        "{text}"
    );
    assert!(
        text.contains("11 passed, 0 warnings, 0 failed, 0 skipped"),
        "{text}"
    );
    assert!(!text.contains('✗'), "{text}");
}

/// The embedded store is single-instance (its DATA_DIR is locked), but the doctor still checks
/// it while the gateway runs: a read, with the writes left to the gateway that holds the lock.
#[tokio::test]
async fn the_doctor_checks_an_embedded_store_a_running_gateway_holds() {
    let setup = healthy().await;
    let cwd = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::spawn(&setup.vars, cwd.path());
    gateway.wait_ready().await;
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(outcome(&report, "store"), "pass", "{report:#}");
    let detail = text_of(&report, "store", "detail");
    assert!(
        detail.contains(&format!(
            "a running gateway has it (process {} holds its lock",
            gateway.child.id()
        )),
        "{detail}"
    );
    // The gateway was not disturbed.
    assert_eq!(
        reqwest::get(gateway.url("/readyz")).await.unwrap().status(),
        200
    );
}

/// The doctor reads the SQLite database's schema version first and writes nothing to a database
/// it would have to create or migrate (an earlier release's must stay usable by that release).
#[tokio::test]
async fn the_doctor_neither_creates_nor_migrates_an_embedded_database() {
    let mut setup = healthy().await;
    let empty = tempfile::tempdir().unwrap();
    setup
        .vars
        .insert("DATA_DIR".into(), empty.path().display().to_string());
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 0, "a missing database is a warning: {report:#}");
    assert_eq!(outcome(&report, "store"), "warn", "{report:#}");
    assert!(text_of(&report, "store", "detail").starts_with("no database at"));
    assert_eq!(
        std::fs::read_dir(empty.path()).unwrap().count(),
        0,
        "nothing created"
    );

    let file = empty
        .path()
        .join(whatsapp_gateway::store::embedded::DB_FILE);
    for (version, expected) in [(3, "warn"), (99, "fail")] {
        let db = rusqlite::Connection::open(&file).unwrap();
        db.pragma_update(None, "user_version", version).unwrap();
        drop(db);
        let (_, report) = setup.json(&[]).await;
        assert_eq!(outcome(&report, "store"), expected, "{report:#}");
        let db = rusqlite::Connection::open(&file).unwrap();
        let after: i64 = db
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(after, version, "schema {version} left as it was");
    }
}

async fn an_unreachable_store_fails_with_the_fix(backend: Backend) {
    let mut setup = setup_with(backend, Meta::healthy()).await;
    let file = tempfile::NamedTempFile::new().unwrap();
    match backend {
        // Nothing listens there.
        Backend::Redis => setup.vars.insert(
            "REDIS_URL".into(),
            format!("redis://:store-pw-1234@127.0.0.1:{}/0", free_port()),
        ),
        // A file where the data directory should be.
        Backend::Embedded => setup
            .vars
            .insert("DATA_DIR".into(), file.path().display().to_string()),
    };
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(outcome(&report, "store"), "fail", "{report:#}");
    let (detail, fix) = (
        text_of(&report, "store", "detail"),
        text_of(&report, "store", "fix"),
    );
    match backend {
        Backend::Redis => {
            assert!(detail.contains("does not answer"), "{detail}");
            assert!(
                fix.contains("REDIS_URL") && fix.contains("Start Redis"),
                "{fix}"
            );
        }
        Backend::Embedded => {
            assert!(detail.starts_with("cannot open SQLite at"), "{detail}");
            assert!(fix.contains("DATA_DIR"), "{fix}");
        }
    }
    // The rest does not depend on the store.
    assert_eq!(outcome(&report, "subscription"), "pass", "{report:#}");
}

#[tokio::test]
async fn a_redis_that_evicts_keys_fails_as_the_server_would_refuse_it() {
    let redis = TestRedis::start_with(&["--save", "", "--maxmemory-policy", "allkeys-lru"]);
    let mut setup = healthy().await;
    setup.vars.insert("REDIS_URL".into(), redis.url());
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(outcome(&report, "store"), "fail");
    assert!(
        text_of(&report, "store", "detail").contains("maxmemory-policy is allkeys-lru"),
        "{report:#}"
    );
    assert!(text_of(&report, "store", "fix").contains("noeviction"));
}

#[tokio::test]
async fn an_expired_or_invalid_token_fails_with_the_fix_and_skips_what_needs_it() {
    let expired = || {
        graph_error(
            401,
            190,
            463,
            "Error validating access token: Session has expired on Tuesday, 04-Mar-25 10:00:00 PST.",
        )
    };
    let invalidated = ok(
        json!({"data": {"app_id": APP_ID, "is_valid": false, "scopes": [],
        "error": {"code": 190, "message": "The session has been invalidated because the user changed their password."}}}),
    );
    let past = ok(token_data(now_secs() - DAY, &BOTH, &[WABA]));
    for (answer, says) in [
        (
            expired(),
            "Meta refuses the token: Graph API answered 401: code 190: Error validating access token: Session has expired",
        ),
        (
            invalidated,
            "Meta says the token is not valid: The session has been invalidated",
        ),
        (
            past,
            "the SYSTEM_USER token of app Acme Gateway expired at ",
        ),
    ] {
        let setup = setup_with_token(answer).await;
        let (code, report) = setup.json(&[]).await;
        assert_eq!(code, 1, "{report:#}");
        assert_eq!(outcome(&report, "access_token"), "fail", "{report:#}");
        assert!(
            text_of(&report, "access_token", "detail").starts_with(says),
            "{report:#}"
        );
        let fix = text_of(&report, "access_token", "fix");
        assert!(
            fix.contains("System users") && fix.contains("Put it in ACCESS_TOKEN"),
            "{fix}"
        );
        assert_skipped(&report, &AFTER_TOKEN);
    }
}

#[tokio::test]
async fn a_token_expiring_within_7_days_is_a_warning_and_later_a_pass() {
    let setup = setup_with_token(ok(token_data(now_secs() + 3 * DAY + 600, &BOTH, &[WABA]))).await;
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 0, "warnings pass: {report:#}");
    assert_eq!(outcome(&report, "access_token"), "warn", "{report:#}");
    let detail = text_of(&report, "access_token", "detail");
    assert!(detail.contains("expires in 3 days ("), "{detail}");
    assert!(detail.contains("code 190"), "{detail}");
    assert!(text_of(&report, "access_token", "fix").contains("does not expire"));
    // The other checks still run on a token that works today.
    assert_eq!(outcome(&report, "subscription"), "pass");

    let setup = setup_with_token(ok(token_data(now_secs() + 30 * DAY + 600, &BOTH, &[WABA]))).await;
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(outcome(&report, "access_token"), "pass");
    assert!(text_of(&report, "access_token", "detail").contains("(in 30 days)"));
}

async fn setup_with_token(debug_token: ResponseTemplate) -> Setup {
    setup_with(
        Backend::Embedded,
        Meta {
            debug_token,
            ..Meta::healthy()
        },
    )
    .await
}

#[tokio::test]
async fn a_token_without_the_messaging_permission_fails() {
    // No whatsapp_business_messaging at all.
    let setup = setup_with_token(ok(token_data(
        0,
        &["whatsapp_business_management", "public_profile"],
        &[],
    )))
    .await;
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(outcome(&report, "permissions"), "fail");
    let detail = text_of(&report, "permissions", "detail");
    assert!(
        detail.starts_with("the token lacks whatsapp_business_messaging (it has: whatsapp_business_management, public_profile)"),
        "{detail}"
    );
    let fix = text_of(&report, "permissions", "fix");
    assert!(
        fix.contains("Assign assets") && fix.contains("ACCESS_TOKEN"),
        "{fix}"
    );

    // Granted, but for another WABA only.
    let setup = setup_with_token(ok(token_data(0, &BOTH, &["999999999999999"]))).await;
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(outcome(&report, "permissions"), "fail");
    assert!(
        text_of(&report, "permissions", "detail").starts_with(&format!(
            "whatsapp_business_messaging is granted for WABA 999999999999999 only, not for {WABA}"
        )),
        "{report:#}"
    );

    // Messaging without management: sends work, a warning.
    let setup =
        setup_with_token(ok(token_data(0, &["whatsapp_business_messaging"], &[WABA]))).await;
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(outcome(&report, "permissions"), "warn", "{report:#}");
    assert!(text_of(&report, "permissions", "detail").contains("not whatsapp_business_management"));
}

#[tokio::test]
async fn a_token_meta_will_not_describe_is_confirmed_by_a_cheap_call() {
    let setup = setup_with_token(graph_error(
        400,
        100,
        0,
        "(#100) You must provide an app access token, or a user access token that is an owner or developer of the app",
    ))
    .await;
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(outcome(&report, "access_token"), "pass", "{report:#}");
    assert!(
        text_of(&report, "access_token", "detail")
            .contains("its expiry and permissions are unknown"),
        "{report:#}"
    );
    assert_eq!(outcome(&report, "permissions"), "skipped");
    assert_eq!(outcome(&report, "subscription"), "pass");
}

#[tokio::test]
async fn an_unknown_phone_number_id_fails_with_where_to_find_the_id() {
    let setup = setup_with(
        Backend::Embedded,
        Meta {
            number: graph_error(
                400,
                100,
                33,
                &format!("Unsupported get request. Object with ID '{PHONE_NUMBER_ID}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."),
            ),
            ..Meta::healthy()
        },
    )
    .await;
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(outcome(&report, "phone_number"), "fail");
    assert!(
        text_of(&report, "phone_number", "detail")
            .starts_with(&format!("Meta knows no phone number {PHONE_NUMBER_ID}")),
        "{report:#}"
    );
    let fix = text_of(&report, "phone_number", "fix");
    assert!(
        fix.starts_with("PHONE_NUMBER_ID must hold the Phone number ID from App Dashboard > WhatsApp > API Setup"),
        "{fix}"
    );
    assert_skipped(&report, &["quality", "waba", "subscription"]);
}

#[tokio::test]
async fn a_number_its_waba_does_not_list_fails_and_its_subscription_is_not_checked() {
    let setup = setup_with(
        Backend::Embedded,
        Meta {
            phone_numbers: ok(
                json!({"data": [{"id": "300000000000003", "display_phone_number": "+1 555-000-0003"}]}),
            ),
            ..Meta::healthy()
        },
    )
    .await;
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(outcome(&report, "waba"), "fail");
    assert_eq!(
        text_of(&report, "waba", "detail"),
        format!(
            "number {PHONE_NUMBER_ID} is not in WABA {WABA} (BUSINESS_ACCOUNT_ID), which holds 300000000000003 (+1 555-000-0003)"
        )
    );
    assert!(
        text_of(&report, "waba", "fix")
            .starts_with("Set BUSINESS_ACCOUNT_ID to the WhatsApp Business Account ID")
    );
    assert_eq!(outcome(&report, "subscription"), "skipped");
    assert!(
        setup
            .meta
            .received_requests()
            .await
            .unwrap()
            .iter()
            .all(|r| !r.url.path().ends_with("/subscribed_apps")),
        "a WABA the number is not in is not asked about"
    );
}

#[tokio::test]
async fn a_number_without_a_configured_waba_fails() {
    let mut setup = healthy().await;
    setup.vars.remove("BUSINESS_ACCOUNT_ID");
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(outcome(&report, "waba"), "fail");
    assert!(text_of(&report, "waba", "detail").starts_with("no WABA configured"));
    assert!(text_of(&report, "waba", "fix").starts_with("Set BUSINESS_ACCOUNT_ID"));
    // No WABA, nothing to check the subscription of.
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["key"] != "subscription")
    );
}

#[tokio::test]
async fn an_unsubscribed_app_fails_and_says_plainly_why_nothing_arrives() {
    let setup = setup_with(Backend::Embedded, Meta::unsubscribed()).await;
    Mock::given(method("POST"))
        .and(path(format!("/{WABA}/subscribed_apps")))
        .respond_with(ok(json!({"success": true})))
        .expect(0)
        .mount(&setup.meta)
        .await;
    let (code, text) = setup.text(&[]).await;
    assert_eq!(code, 1, "{text}");
    let line = format!(
        "✗ webhook subscription of WABA {WABA}: no app is subscribed to WABA {WABA}, so Meta sends its webhooks nowhere: no message or status reaches this gateway, even when the Callback URL verified. This is the most common reason nothing arrives\n"
    );
    assert!(text.contains(&line), "{text}");
    assert!(
        text.contains(&format!("    fix: Run `whatsapp-gateway doctor --fix` (it subscribes app {APP_NAME}: POST /{WABA}/subscribed_apps), or by hand:\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("         curl -X POST '{}/{WABA}/subscribed_apps' -H \"Authorization: Bearer $ACCESS_TOKEN\"\n", setup.meta.uri())),
        "{text}"
    );
    assert!(
        text.contains("10 passed, 0 warnings, 1 failed, 0 skipped"),
        "{text}"
    );
}

#[tokio::test]
async fn fix_subscribes_the_app_with_the_numbers_token_and_passes() {
    let setup = setup_with(Backend::Embedded, Meta::unsubscribed()).await;
    Mock::given(method("POST"))
        .and(path(format!("/{WABA}/subscribed_apps")))
        .and(header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .respond_with(ok(json!({"success": true})))
        .expect(1)
        .named("POST /{waba}/subscribed_apps")
        .mount(&setup.meta)
        .await;
    let (code, report) = setup.json(&["--fix"]).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(outcome(&report, "subscription"), "pass");
    assert_eq!(
        text_of(&report, "subscription", "detail"),
        format!(
            "no app was subscribed, so Meta sent its webhooks nowhere; --fix subscribed app {APP_NAME}: Meta sends this WABA's webhooks to its Callback URL from now on"
        ),
    );
    setup.meta.verify().await;

    // Meta refusing the subscription: still a failure, with why.
    let setup = setup_refusing_subscription().await;
    let (code, report) = setup.json(&["--fix"]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(outcome(&report, "subscription"), "fail");
    assert!(
        text_of(&report, "subscription", "detail").contains("--fix could not subscribe"),
        "{report:#}"
    );
    assert!(text_of(&report, "subscription", "fix").contains("whatsapp_business_management"));
}

async fn setup_refusing_subscription() -> Setup {
    let setup = setup_with(Backend::Embedded, Meta::unsubscribed()).await;
    Mock::given(method("POST"))
        .and(path(format!("/{WABA}/subscribed_apps")))
        .respond_with(graph_error(403, 200, 0, "(#200) Permissions error"))
        .expect(1)
        .mount(&setup.meta)
        .await;
    setup
}

#[tokio::test]
async fn a_waba_subscribed_only_by_other_apps_fails() {
    let setup = setup_with(
        Backend::Embedded,
        Meta {
            subscribed_apps: ok(subscribed(&[("111111111111111", "Old CRM")])),
            ..Meta::healthy()
        },
    )
    .await;
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(outcome(&report, "subscription"), "fail");
    assert!(
        text_of(&report, "subscription", "detail").starts_with(&format!(
            "only other apps are subscribed (Old CRM (111111111111111)), not app {APP_NAME} ({APP_ID})"
        )),
        "{report:#}"
    );
}

#[tokio::test]
async fn a_red_quality_rating_a_flagged_number_or_one_off_the_cloud_api_is_a_warning() {
    for (quality, status, platform, key, says) in [
        (
            "RED",
            "CONNECTED",
            "CLOUD_API",
            "quality",
            "quality RED, status CONNECTED, messaging limit TIER_1K, throughput STANDARD: the quality rating is low",
        ),
        (
            "YELLOW",
            "FLAGGED",
            "CLOUD_API",
            "quality",
            "quality YELLOW, status FLAGGED, messaging limit TIER_1K, throughput STANDARD: Meta flagged the number",
        ),
        (
            "GREEN",
            "CONNECTED",
            "NOT_APPLICABLE",
            "phone_number",
            "+1 555-171-3917, verified name Acme (name status APPROVED), code verification VERIFIED, but its platform is NOT_APPLICABLE",
        ),
    ] {
        let setup = setup_with(
            Backend::Embedded,
            Meta {
                number: ok(number_fields(quality, status, platform)),
                ..Meta::healthy()
            },
        )
        .await;
        let (code, report) = setup.json(&[]).await;
        assert_eq!(code, 0, "warnings pass: {report:#}");
        assert_eq!(outcome(&report, key), "warn", "{report:#}");
        assert!(
            text_of(&report, key, "detail").starts_with(says),
            "{report:#}"
        );
        assert!(!text_of(&report, key, "fix").is_empty());
    }
}

#[tokio::test]
async fn a_missing_app_secret_or_api_key_fails_and_says_why_it_matters() {
    let mut setup = healthy().await;
    setup.vars.remove("APP_SECRET");
    setup.vars.remove("API_KEY");
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(outcome(&report, "app_secret"), "fail");
    assert!(text_of(&report, "app_secret", "detail").contains("can inject fake customer messages"));
    assert!(text_of(&report, "app_secret", "fix").contains("App Dashboard > App settings > Basic"));
    assert_eq!(outcome(&report, "api_key"), "fail");
    assert!(
        text_of(&report, "api_key", "detail").contains(
            "can send WhatsApp messages in the business's name and read every conversation"
        )
    );
    assert!(text_of(&report, "api_key", "fix").contains("Authorization: Bearer <API_KEY>"));
    // Only these two failed.
    let failed: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "fail")
        .collect();
    assert_eq!(failed.len(), 2, "{report:#}");

    // Each alone fails the run too.
    for gone in ["APP_SECRET", "API_KEY"] {
        let mut setup = healthy().await;
        setup.vars.remove(gone);
        let (code, _) = setup.json(&[]).await;
        assert_eq!(code, 1, "without {gone}");
    }
}

#[tokio::test]
async fn the_public_url_handshake_passes_through_a_gateway_and_fails_clearly() {
    let gateway = spawn_app(Backend::Embedded).await;
    let setup = healthy().await;
    let url = gateway.url("/webhook");
    let (code, report) = setup.json(&["--public-url", &url]).await;
    assert_eq!(code, 0, "{report:#}");
    // It answered; over http:// Meta would still refuse the URL.
    assert_eq!(outcome(&report, "public_url"), "warn", "{report:#}");
    assert!(
        text_of(&report, "public_url", "detail")
            .starts_with("answered the handshake with the challenge in "),
        "{report:#}"
    );
    assert!(text_of(&report, "public_url", "detail").contains("only https://"));

    // Another VERIFY_TOKEN than the gateway's: 403, and the fix says so.
    let mut other = healthy().await;
    other
        .vars
        .insert("VERIFY_TOKEN".into(), "another-verify-token-31337".into());
    let (code, report) = other.json(&["--public-url", &url]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(outcome(&report, "public_url"), "fail");
    assert!(
        text_of(&report, "public_url", "detail").starts_with(
            "the handshake failed: expected 200 with the challenge as the body, got 403 Forbidden"
        ),
        "{report:#}"
    );
    assert!(text_of(&report, "public_url", "fix").contains("another VERIFY_TOKEN"));

    // Nothing behind the URL (a stopped tunnel).
    let dead = format!("http://127.0.0.1:{}/webhook", free_port());
    let (code, report) = setup.json(&["--public-url", &dead]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(outcome(&report, "public_url"), "fail");
    assert!(
        text_of(&report, "public_url", "detail").contains("no answer"),
        "{report:#}"
    );
    assert!(text_of(&report, "public_url", "fix").contains("Is the tunnel running"));

    // A peer that hangs up without answering: reqwest's transport error names the URL, verify
    // token included; simulate::verify replaces it, and run_doctor asserts that the token is not
    // printed anyway.
    let hang_up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_up_url = format!("http://{}/webhook", hang_up.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = hang_up.accept().await {
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
        }
    });
    let (code, report) = setup.json(&["--public-url", &hang_up_url]).await;
    assert_eq!(code, 1, "{report:#}");
    let detail = text_of(&report, "public_url", "detail");
    assert!(
        detail.contains("(the URL)") && detail.contains("connection closed"),
        "{detail}"
    );

    // The wrong path.
    let (code, report) = setup.json(&["--public-url", &gateway.url("/")]).await;
    assert_eq!(code, 1, "{report:#}");
    assert!(
        text_of(&report, "public_url", "fix").contains("/webhook"),
        "{report:#}"
    );

    // No VERIFY_TOKEN: nothing to shake hands with.
    let mut none = healthy().await;
    none.vars.remove("VERIFY_TOKEN");
    let (code, report) = none.json(&["--public-url", &url]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(outcome(&report, "public_url"), "fail");
    assert_eq!(outcome(&report, "verify_token"), "warn");
}

#[tokio::test]
async fn every_configured_number_is_checked_with_its_own_token() {
    let mut setup = healthy().await;
    setup.vars.insert("PHONE_NUMBERS".into(), SECOND.into());
    setup
        .vars
        .insert(format!("ACCESS_TOKEN_{SECOND}"), SECOND_TOKEN.into());
    Mock::given(method("GET"))
        .and(path("/debug_token"))
        .and(query_param("input_token", SECOND_TOKEN))
        .and(header(
            "authorization",
            format!("Bearer {SECOND_TOKEN}").as_str(),
        ))
        .respond_with(graph_error(
            400,
            190,
            460,
            "Error validating access token: The session has been invalidated.",
        ))
        .expect(1)
        .mount(&setup.meta)
        .await;
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 1, "{report:#}");
    let first = check(&report, "access_token", Some(PHONE_NUMBER_ID));
    assert_eq!(first["outcome"], "pass", "{report:#}");
    let second = check(&report, "access_token", Some(SECOND));
    assert_eq!(second["outcome"], "fail", "{report:#}");
    assert_eq!(second["name"], format!("access token of {SECOND}"));
    assert!(
        second["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("Put it in ACCESS_TOKEN_{SECOND}")),
        "{report:#}"
    );
    assert_eq!(
        check(&report, "phone_number", Some(SECOND))["outcome"],
        "skipped"
    );
    // The WABA they share is checked once, with the number that passed.
    let subscriptions: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["key"] == "subscription")
        .collect();
    assert_eq!(subscriptions.len(), 1, "{report:#}");
    assert_eq!(subscriptions[0]["outcome"], "pass");
}

#[tokio::test]
async fn a_secret_that_meta_echoes_is_still_never_printed() {
    let setup = setup_with_token(graph_error(
        400,
        190,
        0,
        &format!("Invalid OAuth access token - Cannot parse access token {ACCESS_TOKEN}"),
    ))
    .await;
    // run_doctor asserts the token is absent; here also that the rest of the text is kept.
    let (code, text) = setup.text(&[]).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("Cannot parse access token (hidden)"),
        "{text}"
    );
}

#[tokio::test]
async fn a_configuration_that_does_not_parse_fails_and_skips_the_rest() {
    let mut setup = healthy().await;
    setup.vars.insert("PORT".into(), "eighty".into());
    setup
        .vars
        .insert("PHONE_NUMBER_ID".into(), "+1 555 171".into());
    let (code, report) = setup
        .json(&["--public-url", "https://example.invalid/webhook"])
        .await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(outcome(&report, "configuration"), "fail");
    let detail = text_of(&report, "configuration", "detail");
    assert!(
        detail.contains("PORT: must be a port number")
            && detail.contains("PHONE_NUMBER_ID: must be digits only"),
        "{detail}"
    );
    assert!(text_of(&report, "configuration", "fix").contains("config.env.example"));
    assert_skipped(&report, &["store", "meta", "public_url"]);
    assert!(setup.meta.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_graph_api_fails_once_and_skips_the_rest() {
    let mut setup = setup(Backend::Embedded).await;
    setup.vars.insert(
        "GRAPH_API_BASE".into(),
        format!("http://127.0.0.1:{}/v22.0", free_port()),
    );
    let (code, report) = setup.json(&[]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(outcome(&report, "access_token"), "fail");
    assert!(
        text_of(&report, "access_token", "detail")
            .starts_with("the Graph API did not answer: Graph API unreachable: connection refused"),
        "{report:#}"
    );
    assert!(text_of(&report, "access_token", "fix").starts_with("Check GRAPH_API_BASE"));
    assert_skipped(&report, &AFTER_TOKEN);
    // A GRAPH_API_BASE with credentials in it: they are never shown.
    setup.vars.insert(
        "GRAPH_API_BASE".into(),
        format!("http://proxy:base-pw-5531@127.0.0.1:{}/v22.0", free_port()),
    );
    let (code, text) = setup.text(&[]).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("GRAPH_API_BASE"), "{text}");
    assert!(!text.contains("base-pw-5531"), "{text}");
}

#[tokio::test]
async fn a_closed_stdout_does_not_crash_the_doctor() {
    // `doctor | head -1`: the reader is gone before the checklist is written.
    let setup = healthy().await;
    let cwd = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_whatsapp-gateway"))
        .arg("doctor")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&setup.vars)
        .current_dir(cwd.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn a_config_env_line_that_does_not_parse_fails_without_quoting_it() {
    let setup = healthy().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.env"),
        "APP_SECRET=abc12345\nACCESS_TOKEN EAAG-secret-without-its-equals-sign\n",
    )
    .unwrap();
    let out = run_doctor(&setup.vars, &[], Some(dir.path())).await;
    let text = show(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("✗ configuration: config.env line 2 is not a KEY=value line (its text is not shown: it may hold a secret)"),
        "{text}"
    );
    assert!(!text.contains("EAAG-secret"), "{text}");
    assert!(
        text.contains("- store: skipped: the configuration does not parse"),
        "{text}"
    );
}
