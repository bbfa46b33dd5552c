//! The doctor's checks, in the order they run and print:
//!
//! 1. the configuration parses (and what the server would warn about);
//! 2. APP_SECRET and API_KEY are set (each closes a security hole) and VERIFY_TOKEN;
//! 3. the configured store opens, answers one cheap read and takes the readiness write the server
//!    itself makes every second (which also refuses a Redis that evicts keys); an SQLite database
//!    is looked at read-only first: a missing one is not created and an earlier release's is not
//!    migrated (both warnings), a newer release's fails;
//! 4. for every configured business number: its token (`GET /debug_token`: valid, not expiring
//!    within [`EXPIRY_WARNING`], or a cheap call when Meta will not describe it), the token's
//!    permissions, the number itself (`GET /{phone_number_id}`), its quality rating and messaging
//!    limit, and that its WABA lists it (`GET /{waba_id}/phone_numbers`);
//! 5. for every WABA holding a confirmed number: that the token's app is subscribed to it
//!    (`GET /{waba_id}/subscribed_apps`); with `--fix`, subscribing it;
//! 6. with `--public-url`, Meta's GET handshake through that URL ([`crate::simulate::verify`]).
//!
//! A check that depends on a failed one is reported skipped. Texts name the variable, the
//! dashboard page or the command that fixes the problem, and never a secret.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::Value;

use super::{Check, Report};
use crate::config::{BusinessNumber, Settings, StoreSettings};
use crate::graph::error::Class;
use crate::graph::{GraphClient, GraphError, next_cursor, with_cursor};
use crate::service::account::Account;
use crate::store::{Store, StoreError};

/// A token expiring sooner than this is a warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);
/// What the doctor asks Meta about a number.
pub const PHONE_FIELDS: &str = "id,display_phone_number,verified_name,quality_rating,messaging_limit_tier,code_verification_status,name_status,platform_type,throughput,status";
/// The permission every send (and every message webhook) needs.
pub const MESSAGING: &str = "whatsapp_business_messaging";
/// The permission reading the WABA (numbers, templates, subscriptions) needs.
pub const MANAGEMENT: &str = "whatsapp_business_management";
/// How long the public URL may take to answer the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most pages of a WABA's phone numbers read.
const MAX_NUMBER_PAGES: usize = 10;

const TOKEN_FIX: &str = "Create a token that does not expire: Business Settings > Users > System users > (your system user) > Generate new token, choose this app and tick whatsapp_business_messaging and whatsapp_business_management. Put it in";
const ASSIGN_FIX: &str = "In Business Settings > Users > System users, select the token's system user, Assign assets > Apps (this app) and WhatsApp accounts (this WABA, full control), then Generate new token with whatsapp_business_messaging and whatsapp_business_management. Put it in";

/// What the command line asks for besides the checks.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Subscribe the app to every WABA it is not subscribed to.
    pub fix: bool,
    /// The public webhook URL whose handshake to test (`https://<tunnel>/webhook`).
    pub public_url: Option<String>,
    /// Now, in Unix seconds (token expiry is measured from it).
    pub now: i64,
}

/// Where the configuration came from, for the configuration check.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// Files read (`config.env`, `.env`).
    pub files: Vec<String>,
    /// Files that exist but could not be read, with why.
    pub errors: Vec<String>,
}

/// Runs every check against the configuration `lookup` reads, and returns the report, scrubbed
/// of every secret the configuration holds.
pub async fn diagnose(
    lookup: impl Fn(&str) -> Option<String>,
    source: &Source,
    options: &Options,
) -> Report {
    let mut report = Report::default();
    let mut secrets = raw_secrets(&lookup);
    let settings = configuration(&lookup, source, &mut report);
    if let Some(settings) = &settings {
        secrets.extend(settings_secrets(settings));
        secret_checks(settings, &mut report);
        report.push(store_check(&settings.store).await);
        Meta::new(settings, &lookup, options)
            .check_all(settings, &mut report)
            .await;
    } else {
        for (key, name) in [
            ("store", "store"),
            ("meta", "Meta (token, numbers, subscriptions)"),
        ] {
            report.push(Check::skipped(
                key,
                name,
                "skipped: the configuration does not parse",
            ));
        }
    }
    if let Some(url) = &options.public_url {
        let token = settings
            .as_ref()
            .and_then(|s| s.webhook.verify_token.as_ref());
        report.push(public_url_check(url, token, settings.is_some()).await);
    }
    report.scrub(&secrets);
    report
}

// ---- configuration and secrets ----

/// The configuration check; the settings when they parse.
fn configuration(
    lookup: &impl Fn(&str) -> Option<String>,
    source: &Source,
    report: &mut Report,
) -> Option<Settings> {
    let name = "configuration";
    let fix = "Correct the variables named above in config.env (or the environment); config.env.example describes each.";
    if !source.errors.is_empty() {
        report.push(Check::fail(
            "configuration",
            name,
            source.errors.join("; "),
            "Make the file readable (and valid KEY=value lines), or remove it.",
        ));
        return None;
    }
    let from = if source.files.is_empty() {
        "no config.env or .env here: the environment only".to_owned()
    } else {
        format!("read {} and the environment", source.files.join(", "))
    };
    match Settings::from_lookup(lookup) {
        Err(e) => {
            report.push(Check::fail(
                "configuration",
                name,
                format!("{} ({from})", e.problems.join("; ")),
                fix,
            ));
            None
        }
        Ok(settings) => {
            let others = other_warnings(&settings);
            report.push(if others.is_empty() {
                Check::pass(
                    "configuration",
                    name,
                    format!("the settings parse ({from})"),
                )
            } else {
                Check::warn(
                    "configuration",
                    name,
                    format!(
                        "the settings parse ({from}), with warnings: {}",
                        others.join(" ")
                    ),
                    "Each warning says what to change.",
                )
            });
            Some(settings)
        }
    }
}

/// The server's start-up warnings that no check of its own covers.
fn other_warnings(settings: &Settings) -> Vec<String> {
    const COVERED: [&str; 6] = [
        "APP_SECRET is not set",
        "API_KEY is not set",
        "VERIFY_TOKEN is not set",
        "No business number is configured",
        "No access token for",
        "No WhatsApp Business Account for",
    ];
    settings
        .warnings()
        .into_iter()
        .filter(|w| !COVERED.iter().any(|c| w.starts_with(c)))
        .collect()
}

fn secret_checks(settings: &Settings, report: &mut Report) {
    report.push(if settings.webhook.app_secret.is_some() {
        Check::pass(
            "app_secret",
            "APP_SECRET",
            "set: webhooks without Meta's signature are refused",
        )
    } else {
        Check::fail(
            "app_secret",
            "APP_SECRET",
            "not set: POST /webhook accepts unsigned requests, so anyone who finds the webhook URL (a tunnel's URL is public) can inject fake customer messages",
            "Set APP_SECRET to the app's secret (App Dashboard > App settings > Basic > App secret > Show) and restart the gateway.",
        )
    });
    report.push(if settings.api_key.is_some() {
        Check::pass(
            "api_key",
            "API_KEY",
            "set: client endpoints need Authorization: Bearer <API_KEY>",
        )
    } else {
        let exposed = if settings.http.host.is_loopback() {
            "anyone who can reach the port (a tunnel exposes it)"
        } else {
            "anyone on the network (HOST is not loopback) or behind a tunnel"
        };
        Check::fail(
            "api_key",
            "API_KEY",
            format!("not set: {exposed} can send WhatsApp messages in the business's name and read every conversation"),
            "Set API_KEY to a long random string (e.g. `openssl rand -hex 32`), restart, and send it from client apps as `Authorization: Bearer <API_KEY>`.",
        )
    });
    report.push(if settings.webhook.verify_token.is_some() {
        Check::pass(
            "verify_token",
            "VERIFY_TOKEN",
            "set: Meta's webhook verification can succeed",
        )
    } else {
        Check::warn(
            "verify_token",
            "VERIFY_TOKEN",
            "not set: Meta's webhook verification (Verify and save) is refused, so the Callback URL cannot be registered or changed",
            "Set VERIFY_TOKEN to a random string and enter the same string as Verify Token in App Dashboard > WhatsApp > Configuration.",
        )
    });
}

/// Every secret value the variables hold, read directly (for when the settings do not parse).
fn raw_secrets(lookup: &impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut names: Vec<String> = ["ACCESS_TOKEN", "APP_SECRET", "API_KEY", "VERIFY_TOKEN"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let ids = [lookup("PHONE_NUMBER_ID"), lookup("PHONE_NUMBERS")];
    for id in ids.iter().flatten().flat_map(|v| v.split(',')) {
        names.push(format!("ACCESS_TOKEN_{}", id.trim()));
    }
    let mut secrets: Vec<String> = names.iter().filter_map(|n| lookup(n)).collect();
    if let Some(url) = lookup("REDIS_URL") {
        secrets.extend(url_secrets(&url));
    }
    secrets
}

/// The secrets of parsed settings: every number's token, the Redis URL and its password.
fn settings_secrets(settings: &Settings) -> Vec<String> {
    let mut secrets: Vec<String> = settings
        .graph
        .numbers
        .iter()
        .filter_map(|n| n.access_token.as_ref())
        .chain(settings.graph.access_token.as_ref())
        .chain(settings.webhook.app_secret.as_ref())
        .chain(settings.webhook.verify_token.as_ref())
        .chain(settings.api_key.as_ref())
        .map(|s| s.expose_secret().to_owned())
        .collect();
    if let StoreSettings::Redis(redis) = &settings.store {
        secrets.extend(url_secrets(redis.url.expose_secret()));
    }
    secrets
}

/// A URL and the password in it.
fn url_secrets(url: &str) -> Vec<String> {
    let mut secrets = vec![url.to_owned()];
    if let Ok(parsed) = reqwest::Url::parse(url)
        && let Some(password) = parsed.password()
    {
        secrets.push(password.to_owned());
        if let Ok(decoded) = String::from_utf8(
            form_urlencoded::parse(format!("p={password}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned().into_bytes())
                .unwrap_or_default(),
        ) {
            secrets.push(decoded);
        }
    }
    secrets
}

// ---- the store ----

async fn store_check(settings: &StoreSettings) -> Check {
    let name = "store";
    match settings {
        StoreSettings::Redis(redis) => {
            let place = format!("Redis at {}", redis_address(redis.url.expose_secret()));
            let fix = "Start Redis (`docker compose up -d redis`, or `redis-server`) or correct REDIS_URL (redis://[:password@]host:port/db). Without REDIS_URL the gateway uses its embedded SQLite store in DATA_DIR instead.";
            let store = match crate::store::redis::RedisStore::new(redis) {
                Ok(store) => Store::Redis(store),
                Err(e) => {
                    return Check::fail(
                        "store",
                        name,
                        format!("REDIS_URL cannot be used: {e}"),
                        fix,
                    );
                }
            };
            // Like start-up's first probe: twice the timeout covers the client's own retry.
            answer_check(
                store,
                &place,
                redis.timeout * 2 + Duration::from_secs(1),
                fix,
            )
            .await
        }
        StoreSettings::Embedded(embedded) => {
            let path = embedded.db_path();
            let place = format!("SQLite at {}", path.display());
            let fix = format!(
                "DATA_DIR must be a directory this user can create and write ({} now); set DATA_DIR or fix its permissions, and check the disk is not full.",
                embedded.data_dir.display()
            );
            // Looked at read-only first: opening for writing would create a missing database
            // or migrate an earlier release's, which the doctor must not do.
            if embedded.data_dir.exists() && !embedded.data_dir.is_dir() {
                return Check::fail(
                    "store",
                    name,
                    format!("cannot open {place}: DATA_DIR is not a directory"),
                    fix,
                );
            }
            if !path.exists() {
                return Check::warn(
                    "store",
                    name,
                    format!("no database at {} yet", path.display()),
                    format!(
                        "The gateway creates it at its first start. If it already ran, DATA_DIR ({}) is not where it keeps its data: run the doctor from the gateway's directory or set DATA_DIR.",
                        embedded.data_dir.display()
                    ),
                );
            }
            let version = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .and_then(|db| db.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)));
            let current = crate::store::embedded::SCHEMA_VERSION;
            match version {
                Err(e) => {
                    return Check::fail("store", name, format!("cannot read {place}: {e}"), fix);
                }
                Ok(v) if v > current => {
                    return Check::fail(
                        "store",
                        name,
                        format!(
                            "{place} was written by a newer release (schema {v}; this release reads up to {current})"
                        ),
                        "Run the release that wrote it, or restore a backup made for this one.",
                    );
                }
                Ok(v) if v < current => {
                    return Check::warn(
                        "store",
                        name,
                        format!(
                            "{place} has schema {v}: left as it is (the doctor writes nothing to it)"
                        ),
                        format!(
                            "The gateway migrates it to schema {current} at its next start; back up {} first if you may go back to the release that wrote it.",
                            path.display()
                        ),
                    );
                }
                Ok(_) => {}
            }
            match crate::store::embedded::EmbeddedStore::open(embedded) {
                Ok(store) => {
                    answer_check(
                        Store::Embedded(store),
                        &place,
                        Duration::from_secs(10),
                        &fix,
                    )
                    .await
                }
                // A gateway runs on it (the usual case): the read above succeeded, and writes are
                // that gateway's to make (its /readyz says whether they succeed).
                Err(StoreError::InUse(in_use)) => Check::pass(
                    "store",
                    name,
                    format!(
                        "{place} answers a read; a running gateway has it ({}), so the readiness write is left to it: its /readyz says whether writes succeed",
                        in_use.holder_text()
                    ),
                ),
                Err(e) => Check::fail("store", name, format!("cannot open {place}: {e}"), fix),
            }
        }
    }
}

/// One cheap read, then the readiness write (which also applies the backend's refusals).
async fn answer_check(store: Store, place: &str, wait: Duration, fix: &str) -> Check {
    let name = "store";
    match tokio::time::timeout(wait, store.import_pending()).await {
        Err(_) => {
            return Check::fail(
                "store",
                name,
                format!(
                    "{place} did not answer a read within {} ms",
                    wait.as_millis()
                ),
                fix,
            );
        }
        Ok(Err(e)) => {
            return Check::fail("store", name, format!("{place} does not answer: {e}"), fix);
        }
        Ok(Ok(_)) => {}
    }
    match tokio::time::timeout(wait, store.probe()).await {
        Ok(Ok(())) => Check::pass(
            "store",
            name,
            format!("{place} answers a read and takes the readiness write"),
        ),
        Ok(Err(StoreError::Refused(reason))) => {
            let (detail, fix) = match reason.split_once(" Fix: ") {
                Some((detail, fix)) => (detail.to_owned(), capitalized(fix)),
                None => (reason.clone(), "Do what the detail says.".to_owned()),
            };
            Check::fail(
                "store",
                name,
                format!("{place} answers, but the gateway refuses it: {detail}"),
                fix,
            )
        }
        Ok(Err(e)) => Check::fail(
            "store",
            name,
            format!("{place} answers reads but refuses writes: {e}"),
            "Check the store's own log: a read-only Redis replica, maxmemory reached, a full disk, a read-only DATA_DIR.",
        ),
        Err(_) => Check::fail(
            "store",
            name,
            format!(
                "{place} answers reads but did not complete a write within {} ms",
                wait.as_millis()
            ),
            "Check the store's own log and the disk (a full or very slow disk, another process holding a lock).",
        ),
    }
}

/// `host:port` of a Redis URL (no user, password or database).
fn redis_address(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) if u.host_str().is_some() => format!(
            "{}:{}",
            u.host_str().unwrap_or_default(),
            u.port().unwrap_or(6379)
        ),
        Ok(u) => u.path().to_owned(),
        Err(_) => "(unparsable REDIS_URL)".to_owned(),
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

// ---- Meta ----

/// What `debug_token` said about a token.
#[derive(Debug, Default)]
struct TokenFacts {
    /// The app the token belongs to (`app_id`, `application`).
    app_id: Option<String>,
    application: Option<String>,
    /// `scopes`; `None` when Meta did not describe the token.
    scopes: Option<Vec<String>>,
    /// `granular_scopes`: permission and the object ids it is limited to.
    granular: Vec<(String, Vec<String>)>,
}

/// The Meta side of the checks.
struct Meta {
    graph: Option<GraphClient>,
    account: Option<Account>,
    /// GRAPH_API_BASE without user info, query or fragment (they may hold secrets), for texts
    /// and the commands in fixes.
    base_url: String,
    fix: bool,
    now: i64,
    /// Which variable holds each number's token and WABA, and names its id.
    vars: Vec<NumberVars>,
    /// Set once the Graph API did not answer: every later Meta check is skipped.
    unreachable: bool,
}

#[derive(Debug, Clone)]
struct NumberVars {
    token: String,
    waba: String,
    id: &'static str,
}

/// A WABA and what the subscription check needs of it.
struct Waba {
    id: String,
    /// A number confirmed in it (its token is used).
    number: Option<BusinessNumber>,
    app_id: Option<String>,
    application: Option<String>,
    token_var: String,
}

impl Meta {
    fn new(
        settings: &Settings,
        lookup: &impl Fn(&str) -> Option<String>,
        options: &Options,
    ) -> Self {
        let set = |name: String| lookup(&name).is_some_and(|v| !v.trim().is_empty());
        let vars = settings
            .graph
            .numbers
            .iter()
            .map(|n| NumberVars {
                token: if set(format!("ACCESS_TOKEN_{}", n.id)) {
                    format!("ACCESS_TOKEN_{}", n.id)
                } else {
                    "ACCESS_TOKEN".to_owned()
                },
                waba: if set(format!("BUSINESS_ACCOUNT_ID_{}", n.id)) {
                    format!("BUSINESS_ACCOUNT_ID_{}", n.id)
                } else {
                    "BUSINESS_ACCOUNT_ID".to_owned()
                },
                id: if settings.graph.phone_number_id.as_deref() == Some(n.id.as_str()) {
                    "PHONE_NUMBER_ID"
                } else {
                    "PHONE_NUMBERS"
                },
            })
            .collect();
        let graph = GraphClient::new(&settings.graph).ok();
        Self {
            account: graph.clone().map(Account::new),
            graph,
            base_url: crate::graph::client::displayable_base(&settings.graph.base_url),
            fix: options.fix,
            now: options.now,
            vars,
            unreachable: false,
        }
    }

    async fn check_all(mut self, settings: &Settings, report: &mut Report) {
        let numbers = &settings.graph.numbers;
        if numbers.is_empty() {
            report.push(Check::fail(
                "numbers",
                "business numbers",
                "none configured: the gateway has nothing to send from, and nothing to check at Meta",
                "Set PHONE_NUMBER_ID to the Phone number ID (App Dashboard > WhatsApp > API Setup; an id, not the phone number), with ACCESS_TOKEN and BUSINESS_ACCOUNT_ID.",
            ));
            return;
        }
        if self.graph.is_none() {
            report.push(Check::fail(
                "meta",
                "Meta (token, numbers, subscriptions)",
                "the HTTP client could not be built (TLS initialisation failed)",
                "Run the doctor on a machine with a working TLS set-up.",
            ));
            return;
        }
        let mut wabas: Vec<Waba> = Vec::new();
        for (number, vars) in numbers.iter().zip(self.vars.clone()) {
            let confirmed = self.check_number(number, &vars, report).await;
            let Some(waba_id) = &number.waba_id else {
                continue;
            };
            let at = match wabas.iter().position(|w| &w.id == waba_id) {
                Some(at) => at,
                None => {
                    wabas.push(Waba {
                        id: waba_id.clone(),
                        number: None,
                        app_id: None,
                        application: None,
                        token_var: vars.token.clone(),
                    });
                    wabas.len() - 1
                }
            };
            if let Some(facts) = confirmed
                && wabas[at].number.is_none()
            {
                let waba = &mut wabas[at];
                waba.number = Some(number.clone());
                waba.app_id = facts.app_id;
                waba.application = facts.application;
                waba.token_var = vars.token.clone();
            }
        }
        for waba in &wabas {
            report.push(self.subscription_check(waba).await);
        }
    }

    /// The checks of one number; the token's facts when the number is confirmed in its WABA.
    async fn check_number(
        &mut self,
        number: &BusinessNumber,
        vars: &NumberVars,
        report: &mut Report,
    ) -> Option<TokenFacts> {
        let id = number.id.as_str();
        let names = [
            ("access_token", format!("access token of {id}")),
            ("permissions", format!("permissions of {id}'s token")),
            ("phone_number", format!("phone number {id}")),
            ("quality", format!("quality and limits of {id}")),
            ("waba", format!("WABA of {id}")),
        ];
        let skip_from = |report: &mut Report, from: usize, because: &str| {
            for (key, name) in &names[from..] {
                report.push(
                    Check::skipped(key, name.clone(), format!("skipped: {because}")).about(id),
                );
            }
        };
        if self.unreachable {
            skip_from(report, 0, "the Graph API did not answer");
            return None;
        }
        // 1. The token.
        let (check, facts) = self.token_check(number, vars, &names[0].1).await;
        report.push(check.about(id));
        let Some(facts) = facts else {
            let because = if self.unreachable {
                "the Graph API did not answer"
            } else {
                "the access token failed"
            };
            skip_from(report, 1, because);
            return None;
        };
        // 2. Its permissions.
        report.push(
            self.permissions_check(number, vars, &facts, &names[1].1)
                .about(id),
        );
        // 3. The number, 4. its quality.
        let meta = match self.describe(number).await {
            Ok(meta) => meta,
            Err(e) => {
                report.push(self.number_failure(number, vars, &e, &names[2].1).about(id));
                skip_from(report, 3, "the phone number check failed");
                return None;
            }
        };
        report.push(number_check(&meta, &names[2].1).about(id));
        report.push(quality_check(&meta, &names[3].1).about(id));
        // 5. Its WABA lists it.
        let (check, confirmed) = self.waba_check(number, vars, &names[4].1).await;
        report.push(check.about(id));
        confirmed.then_some(facts)
    }

    async fn describe(&mut self, number: &BusinessNumber) -> Result<Value, GraphError> {
        let account = self.account.as_ref().expect("built with the client");
        let result = account.describe_number(number, PHONE_FIELDS).await;
        if let Err(e) = &result {
            self.note_unreachable(e);
        }
        result
    }

    async fn get(&mut self, number: &BusinessNumber, path: &str) -> Result<Value, GraphError> {
        let graph = self.graph.as_ref().expect("checked in check_all");
        let result = graph.get(number, path).await;
        if let Err(e) = &result {
            self.note_unreachable(e);
        }
        result
    }

    fn note_unreachable(&mut self, e: &GraphError) {
        if !matches!(e, GraphError::Rejected { .. }) {
            self.unreachable = true;
        }
    }

    /// The failure of a call that did not reach Meta (or got no usable answer).
    fn unreachable_check(&self, key: &'static str, name: &str, e: &GraphError) -> Check {
        Check::fail(
            key,
            name,
            format!("the Graph API did not answer: {e}"),
            format!(
                "Check GRAPH_API_BASE ({}; normally https://graph.facebook.com/v22.0) and this machine's access to it: DNS, firewall, proxy.",
                self.base_url
            ),
        )
    }

    fn token_fix(vars: &NumberVars) -> String {
        format!("{TOKEN_FIX} {} and restart the gateway.", vars.token)
    }

    /// `debug_token`, or a cheap call when Meta will not describe the token.
    async fn token_check(
        &mut self,
        number: &BusinessNumber,
        vars: &NumberVars,
        name: &str,
    ) -> (Check, Option<TokenFacts>) {
        let key = "access_token";
        let Some(token) = &number.access_token else {
            return (
                Check::fail(
                    key,
                    name,
                    format!(
                        "no token: neither ACCESS_TOKEN_{} nor ACCESS_TOKEN is set, so sends from this number answer 503",
                        number.id
                    ),
                    format!(
                        "{TOKEN_FIX} ACCESS_TOKEN (or ACCESS_TOKEN_{} for this number alone) and restart the gateway.",
                        number.id
                    ),
                ),
                None,
            );
        };
        let input: String =
            form_urlencoded::byte_serialize(token.expose_secret().as_bytes()).collect();
        let described = self
            .get(number, &format!("/debug_token?input_token={input}"))
            .await;
        let refused = match described {
            Ok(answer) if answer["data"].is_object() => {
                return self.described_token(&answer["data"], vars, name);
            }
            Ok(_) => "an answer without `data`".to_owned(),
            Err(e) if e.class() == Class::Credentials => {
                return (
                    Check::fail(
                        key,
                        name,
                        format!("Meta refuses the token: {e}"),
                        Self::token_fix(vars),
                    ),
                    None,
                );
            }
            Err(e) if self.unreachable => return (self.unreachable_check(key, name, &e), None),
            Err(e) => e.to_string(),
        };
        // Meta would not describe it (some tokens may not call debug_token): try a cheap call.
        match self.get(number, &format!("/{}?fields=id", number.id)).await {
            Ok(_) => (
                Check::pass(
                    key,
                    name,
                    format!(
                        "valid (Meta answers GET /{} with it); debug_token answered {refused}, so its expiry and permissions are unknown",
                        number.id
                    ),
                ),
                Some(TokenFacts::default()),
            ),
            Err(e) if e.class() == Class::Credentials => (
                Check::fail(
                    key,
                    name,
                    format!("Meta refuses the token: {e}"),
                    Self::token_fix(vars),
                ),
                None,
            ),
            Err(e) if self.unreachable => (self.unreachable_check(key, name, &e), None),
            // Neither call says whether the token is good; the number check shows what is wrong.
            Err(e) => (
                Check::warn(
                    key,
                    name,
                    format!(
                        "not confirmed: debug_token answered {refused}, and GET /{} answered {e}",
                        number.id
                    ),
                    Self::token_fix(vars),
                ),
                Some(TokenFacts::default()),
            ),
        }
    }

    /// The token check from `debug_token`'s `data`.
    fn described_token(
        &self,
        data: &Value,
        vars: &NumberVars,
        name: &str,
    ) -> (Check, Option<TokenFacts>) {
        let key = "access_token";
        if data["is_valid"].as_bool() != Some(true) {
            let why = data
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            return (
                Check::fail(
                    key,
                    name,
                    format!("Meta says the token is not valid: {why}"),
                    Self::token_fix(vars),
                ),
                None,
            );
        }
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        };
        let facts = TokenFacts {
            app_id: data["app_id"].as_str().map(str::to_owned),
            application: data["application"].as_str().map(str::to_owned),
            scopes: data.get("scopes").map(strings),
            granular: data["granular_scopes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| Some((g["scope"].as_str()?.to_owned(), strings(&g["target_ids"]))))
                .collect(),
        };
        let what = match (data["type"].as_str(), &facts.application) {
            (Some(kind), Some(app)) => format!("{kind} token of app {app}"),
            (None, Some(app)) => format!("token of app {app}"),
            (Some(kind), None) => format!("{kind} token"),
            (None, None) => "token".to_owned(),
        };
        let expires_at = data["expires_at"].as_i64().unwrap_or(0);
        let check = if expires_at == 0 {
            Check::pass(key, name, format!("valid {what}; it never expires"))
        } else if expires_at <= self.now {
            Check::fail(
                key,
                name,
                format!("the {what} expired at {}", utc(expires_at)),
                Self::token_fix(vars),
            )
        } else {
            let left = expires_at - self.now;
            if left < EXPIRY_WARNING.as_secs() as i64 {
                Check::warn(
                    key,
                    name,
                    format!(
                        "valid {what}, but it expires in {} ({}); after that every send fails with code 190",
                        span(left),
                        utc(expires_at)
                    ),
                    Self::token_fix(vars),
                )
            } else {
                Check::pass(
                    key,
                    name,
                    format!("valid {what} until {} (in {})", utc(expires_at), span(left)),
                )
            }
        };
        let ok = check.outcome != super::Outcome::Fail;
        (check, ok.then_some(facts))
    }

    fn permissions_check(
        &self,
        number: &BusinessNumber,
        vars: &NumberVars,
        facts: &TokenFacts,
        name: &str,
    ) -> Check {
        let key = "permissions";
        let fix = format!("{ASSIGN_FIX} {} and restart the gateway.", vars.token);
        let Some(scopes) = &facts.scopes else {
            return Check::skipped(
                key,
                name,
                "skipped: Meta did not describe the token (a missing permission shows as code 10 or 200 on a send)",
            );
        };
        let has = |p: &str| scopes.iter().any(|s| s == p);
        if !has(MESSAGING) {
            return Check::fail(
                key,
                name,
                format!(
                    "the token lacks {MESSAGING} (it has: {}): Meta refuses every send with it (code 10 or 200)",
                    if scopes.is_empty() {
                        "none".to_owned()
                    } else {
                        scopes.join(", ")
                    }
                ),
                fix,
            );
        }
        // Granted for some WABAs only: is ours one of them?
        let limited = |p: &str| {
            facts
                .granular
                .iter()
                .find(|(scope, targets)| scope == p && !targets.is_empty())
                .map(|(_, targets)| targets)
        };
        if let (Some(waba), Some(targets)) = (&number.waba_id, limited(MESSAGING))
            && !targets.contains(waba)
        {
            return Check::fail(
                key,
                name,
                format!(
                    "{MESSAGING} is granted for WABA {} only, not for {waba} ({}): Meta refuses sends from this number",
                    targets.join(", "),
                    vars.waba
                ),
                fix,
            );
        }
        if !has(MANAGEMENT) {
            return Check::warn(
                key,
                name,
                format!(
                    "{MESSAGING} granted, but not {MANAGEMENT}: sends work, but GET /v1/templates and /v1/numbers fail, and so do the WABA checks below"
                ),
                fix,
            );
        }
        let scope = match &number.waba_id {
            Some(waba) if limited(MESSAGING).is_some() => format!(" (for WABA {waba})"),
            _ => String::new(),
        };
        Check::pass(
            key,
            name,
            format!("{MESSAGING} and {MANAGEMENT} granted{scope}"),
        )
    }

    /// Why `GET /{phone_number_id}` failed.
    fn number_failure(
        &self,
        number: &BusinessNumber,
        vars: &NumberVars,
        e: &GraphError,
        name: &str,
    ) -> Check {
        let key = "phone_number";
        if self.unreachable {
            return self.unreachable_check(key, name, e);
        }
        match (e.class(), e.meta_code()) {
            (Class::Credentials, _) => Check::fail(key, name, format!("Meta refuses the token: {e}"), Self::token_fix(vars)),
            (Class::Permission, _) => Check::fail(
                key,
                name,
                format!("the token may not read this number: {e}"),
                format!("{ASSIGN_FIX} {} and restart the gateway.", vars.token),
            ),
            (_, Some(100)) => Check::fail(
                key,
                name,
                format!("Meta knows no phone number {} that this token can see: {e}", number.id),
                format!(
                    "{} must hold the Phone number ID from App Dashboard > WhatsApp > API Setup (an id of 15 or so digits, not the phone number itself), and the token's system user must have the WABA that holds it.",
                    vars.id
                ),
            ),
            _ => Check::fail(
                key,
                name,
                format!("Meta did not describe the number: {e}"),
                crate::graph::error::hint(e.meta_code().unwrap_or_default())
                    .unwrap_or("Run the doctor again; if it persists, Meta's error above says what is wrong.")
                    .to_owned(),
            ),
        }
    }

    /// `GET /{waba}/phone_numbers` lists the number; true when it does.
    async fn waba_check(
        &mut self,
        number: &BusinessNumber,
        vars: &NumberVars,
        name: &str,
    ) -> (Check, bool) {
        let key = "waba";
        let where_fix = "the WhatsApp Business Account ID, shown in App Dashboard > WhatsApp > API Setup next to the number (or WhatsApp Manager > Account tools > Phone numbers)";
        let Some(waba) = &number.waba_id else {
            return (
                Check::fail(
                    key,
                    name,
                    format!(
                        "no WABA configured: neither BUSINESS_ACCOUNT_ID_{} nor BUSINESS_ACCOUNT_ID is set, so templates cannot be listed and the webhook subscription cannot be checked",
                        number.id
                    ),
                    format!(
                        "Set BUSINESS_ACCOUNT_ID (or BUSINESS_ACCOUNT_ID_{}) to {where_fix}.",
                        number.id
                    ),
                ),
                false,
            );
        };
        let mut listed: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_NUMBER_PAGES {
            let path = with_cursor(
                format!("/{waba}/phone_numbers?fields=id,display_phone_number&limit=100"),
                after.as_deref(),
            );
            let page = match self.get(number, &path).await {
                Ok(page) => page,
                Err(e) if self.unreachable => {
                    return (self.unreachable_check(key, name, &e), false);
                }
                Err(e) => {
                    let (detail, fix) = match (e.class(), e.meta_code()) {
                        (Class::Permission, _) => (
                            format!("the token may not read WABA {waba}: {e}"),
                            format!("{ASSIGN_FIX} {} and restart the gateway.", vars.token),
                        ),
                        (_, Some(100)) => (
                            format!("Meta knows no WABA {waba} that this token can see ({}): {e}", vars.waba),
                            format!("Set {} to {where_fix}.", vars.waba),
                        ),
                        _ => (
                            format!("Meta did not list WABA {waba}'s numbers: {e}"),
                            "Run the doctor again; if it persists, Meta's error above says what is wrong.".to_owned(),
                        ),
                    };
                    return (Check::fail(key, name, detail, fix), false);
                }
            };
            for entry in page["data"].as_array().into_iter().flatten() {
                if let Some(id) = entry["id"].as_str() {
                    let shown = entry["display_phone_number"].as_str().unwrap_or("?");
                    if id == number.id {
                        return (
                            Check::pass(key, name, format!("WABA {waba} lists it ({shown})")),
                            true,
                        );
                    }
                    listed.push(format!("{id} ({shown})"));
                }
            }
            after = next_cursor(&page);
            if after.is_none() {
                break;
            }
        }
        let holds = if listed.is_empty() {
            "no numbers".to_owned()
        } else {
            listed.join(", ")
        };
        (
            Check::fail(
                key,
                name,
                format!(
                    "number {} is not in WABA {waba} ({}), which holds {holds}",
                    number.id, vars.waba
                ),
                format!(
                    "Set {} to {where_fix}; or, if {waba} is right, {} names a number of another account.",
                    vars.waba, vars.id
                ),
            ),
            false,
        )
    }

    /// The app's subscription to a WABA; with `--fix`, subscribing it.
    async fn subscription_check(&mut self, waba: &Waba) -> Check {
        let key = "subscription";
        let name = format!("webhook subscription of WABA {}", waba.id);
        let skipped = |because: &str| {
            Check::skipped(key, name.clone(), format!("skipped: {because}")).about(&waba.id)
        };
        if self.unreachable {
            return skipped("the Graph API did not answer");
        }
        let Some(number) = &waba.number else {
            return skipped("no configured number was confirmed in this WABA (see above)");
        };
        let path = format!("/{}/subscribed_apps", waba.id);
        let answer = match self.get(number, &path).await {
            Ok(answer) => answer,
            Err(e) if self.unreachable => {
                return self.unreachable_check(key, &name, &e).about(&waba.id);
            }
            Err(e) => {
                return Check::fail(
                    key,
                    name,
                    format!("Meta did not list the apps subscribed to it: {e}"),
                    format!("The token needs {MANAGEMENT} on this WABA. {ASSIGN_FIX} {} and restart the gateway.", waba.token_var),
                )
                .about(&waba.id);
            }
        };
        let apps: Vec<(String, String)> = answer["data"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let app = &a["whatsapp_business_api_data"];
                (
                    app["id"].as_str().unwrap_or_default().to_owned(),
                    app["name"].as_str().unwrap_or("unnamed app").to_owned(),
                )
            })
            .collect();
        let ours = waba
            .application
            .clone()
            .map(|a| format!("app {a}"))
            .unwrap_or_else(|| "the token's app".to_owned());
        let listed = apps
            .iter()
            .map(|(id, name)| format!("{name} ({id})"))
            .collect::<Vec<_>>()
            .join(", ");
        let (problem, was) = if apps.is_empty() {
            (
                format!(
                    "no app is subscribed to WABA {}, so Meta sends its webhooks nowhere: no message or status reaches this gateway, even when the Callback URL verified. This is the most common reason nothing arrives",
                    waba.id
                ),
                "no app was subscribed, so Meta sent its webhooks nowhere".to_owned(),
            )
        } else if let Some(app_id) = &waba.app_id
            && !apps.iter().any(|(id, _)| id == app_id)
        {
            (
                format!(
                    "only other apps are subscribed ({listed}), not {ours} ({app_id}), so Meta sends this WABA's webhooks to their Callback URLs, never to this gateway"
                ),
                format!("only {listed} was subscribed"),
            )
        } else {
            return Check::pass(
                key,
                name,
                format!("subscribed: {listed}; Meta sends this WABA's webhooks to the app's Callback URL"),
            )
            .about(&waba.id);
        };
        if !self.fix {
            return Check::fail(
                key,
                name,
                problem,
                format!(
                    "Run `whatsapp-gateway doctor --fix` (it subscribes {ours}: POST /{id}/subscribed_apps), or by hand:\ncurl -X POST '{base}/{id}/subscribed_apps' -H \"Authorization: Bearer ${token}\"",
                    id = waba.id,
                    base = self.base_url,
                    token = waba.token_var,
                ),
            )
            .about(&waba.id);
        }
        let graph = self.graph.as_ref().expect("checked in check_all");
        match graph.post_empty(number, &path).await {
            Ok(answer) if answer["success"] == Value::Bool(true) => Check::pass(
                key,
                name,
                format!("{was}; --fix subscribed {ours}: Meta sends this WABA's webhooks to its Callback URL from now on"),
            )
            .about(&waba.id),
            Ok(answer) => Check::fail(
                key,
                name,
                format!("{problem}; --fix asked Meta to subscribe {ours}, which answered {answer}"),
                format!("Subscribe it by hand: curl -X POST '{}/{}/subscribed_apps' -H \"Authorization: Bearer ${}\"", self.base_url, waba.id, waba.token_var),
            )
            .about(&waba.id),
            Err(e) => Check::fail(
                key,
                name,
                format!("{problem}; --fix could not subscribe {ours}: {e}"),
                format!("The token needs {MANAGEMENT} on this WABA. {ASSIGN_FIX} {} and run `whatsapp-gateway doctor --fix` again.", waba.token_var),
            )
            .about(&waba.id),
        }
    }
}

/// The number as Meta describes it.
fn number_check(meta: &Value, name: &str) -> Check {
    let key = "phone_number";
    let field = |f: &str| meta[f].as_str().unwrap_or("unknown").to_owned();
    let detail = format!(
        "{}, verified name {} (name status {}), code verification {}",
        field("display_phone_number"),
        field("verified_name"),
        field("name_status"),
        field("code_verification_status"),
    );
    match meta["platform_type"].as_str() {
        Some("CLOUD_API") | None => Check::pass(key, name, format!("{detail}, on the Cloud API")),
        Some(other) => Check::warn(
            key,
            name,
            format!(
                "{detail}, but its platform is {other}, not CLOUD_API: it is not registered on the Cloud API, so sends fail (code 133010)"
            ),
            "Register it: App Dashboard > WhatsApp > API Setup, or POST /{phone_number_id}/register with {\"messaging_product\":\"whatsapp\",\"pin\":\"<6 digits>\"}.",
        ),
    }
}

/// Quality rating, status, messaging limit and throughput.
fn quality_check(meta: &Value, name: &str) -> Check {
    let key = "quality";
    let quality = meta["quality_rating"].as_str().unwrap_or("unknown");
    let status = meta["status"].as_str().unwrap_or("unknown");
    let limit = meta["messaging_limit_tier"].as_str().unwrap_or("unknown");
    let throughput = meta
        .pointer("/throughput/level")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let detail = format!(
        "quality {quality}, status {status}, messaging limit {limit}, throughput {throughput}"
    );
    let quality_fix = "Users are blocking or reporting this number's messages: send only to people who opted in, send fewer marketing templates, make them relevant; see WhatsApp Manager > Phone numbers > Insights. The rating recovers over about 7 days of good messages.";
    if status == "FLAGGED" {
        return Check::warn(
            key,
            name,
            format!(
                "{detail}: Meta flagged the number for low quality; if quality does not recover within 7 days its messaging limit is lowered"
            ),
            quality_fix,
        );
    }
    if quality == "RED" {
        return Check::warn(
            key,
            name,
            format!(
                "{detail}: the quality rating is low; Meta may flag the number and lower its messaging limit"
            ),
            quality_fix,
        );
    }
    if !matches!(status, "CONNECTED" | "unknown") {
        return Check::warn(
            key,
            name,
            format!("{detail}: the number is not CONNECTED"),
            "See the number in WhatsApp Manager > Account tools > Phone numbers for what Meta requires.",
        );
    }
    Check::pass(key, name, detail)
}

/// Meta's handshake through the public URL.
async fn public_url_check(
    url: &str,
    verify_token: Option<&secrecy::SecretString>,
    parsed: bool,
) -> Check {
    let key = "public_url";
    let name = format!("public URL {url}");
    if !parsed {
        return Check::skipped(key, name, "skipped: the configuration does not parse");
    }
    let Some(token) = verify_token else {
        return Check::fail(
            key,
            name,
            "VERIFY_TOKEN is not set, so the gateway refuses every handshake",
            "Set VERIFY_TOKEN (the same string as Verify Token in App Dashboard > WhatsApp > Configuration) and restart the gateway.",
        );
    };
    let challenge = crate::simulate::wire::Rng::from_entropy().digits(10);
    let handshake = match crate::simulate::verify::check(
        url,
        token.expose_secret(),
        &challenge,
        HANDSHAKE_TIMEOUT,
    )
    .await
    {
        Ok(handshake) => handshake,
        Err(e) => {
            return Check::fail(
                key,
                name,
                e,
                "Pass the full Callback URL, e.g. --public-url https://abc123.ngrok.app/webhook.",
            );
        }
    };
    let took = handshake.elapsed.as_millis();
    match handshake.problem() {
        None if url.starts_with("https://") => Check::pass(
            key,
            name,
            format!(
                "answered the handshake with the challenge in {took} ms: Meta would accept it as the Callback URL"
            ),
        ),
        None => Check::warn(
            key,
            name,
            format!(
                "answered the handshake with the challenge in {took} ms, but Meta accepts only https:// Callback URLs"
            ),
            "Use the tunnel's https:// address (ngrok and cloudflared give one).",
        ),
        Some(problem) => {
            let fix = match handshake.status.map(|s| s.as_u16()) {
                None => "Is the tunnel running (`ngrok http <PORT>`) and pointing at this gateway's PORT, and the gateway started? A free ngrok URL changes on every restart: use the current one.".to_owned(),
                Some(403) => "The gateway behind the URL has another VERIFY_TOKEN (or none): run it with the same config.env, and enter the same string as Verify Token in App Dashboard > WhatsApp > Configuration.".to_owned(),
                Some(404) => "The path must be the gateway's /webhook: --public-url https://<tunnel>/webhook.".to_owned(),
                Some(_) => "The URL does not lead to this gateway's /webhook (a tunnel's error page, a login page, a redirect: Meta follows none): point the tunnel straight at the gateway's PORT.".to_owned(),
            };
            Check::fail(key, name, format!("the handshake failed: {problem}"), fix)
        }
    }
}

/// `2026-05-04 10:00 UTC`.
pub fn utc(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// `3 days`, `5 hours`, `1 day`.
fn span(secs: i64) -> String {
    let (n, unit) = if secs >= 86_400 {
        (secs / 86_400, "day")
    } else if secs >= 3600 {
        (secs / 3600, "hour")
    } else {
        ((secs / 60).max(1), "minute")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(4_102_444_800), "2100-01-01 00:00 UTC");
        assert_eq!(span(3 * 86_400 + 5), "3 days");
        assert_eq!(span(86_400), "1 day");
        assert_eq!(span(7200), "2 hours");
        assert_eq!(span(10), "1 minute");
    }

    fn settings(vars: &[(&str, &str)]) -> Settings {
        Settings::from_lookup(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap()
    }

    #[test]
    fn warnings_with_a_check_of_their_own_are_not_repeated() {
        // Nothing set: the server warns about APP_SECRET, API_KEY, VERIFY_TOKEN and the numbers,
        // which the doctor checks one by one.
        let none = settings(&[]);
        assert_eq!(none.warnings().len(), 4);
        assert!(
            other_warnings(&none).is_empty(),
            "{:?}",
            other_warnings(&none)
        );
        let tokenless = settings(&[("PHONE_NUMBERS", "222")]);
        assert!(
            other_warnings(&tokenless)
                .iter()
                .all(|w| w.starts_with("PHONE_NUMBER_ID is not set")),
            "{:?}",
            other_warnings(&tokenless)
        );
        let short = settings(&[("REQUEST_TIMEOUT_SECS", "5")]);
        assert_eq!(other_warnings(&short).len(), 1);
        assert!(other_warnings(&short)[0].starts_with("REQUEST_TIMEOUT_SECS"));
    }

    #[test]
    fn every_configured_secret_is_collected_for_scrubbing() {
        let vars = [
            ("ACCESS_TOKEN", "tok-shared"),
            ("ACCESS_TOKEN_222", "tok-222"),
            ("PHONE_NUMBER_ID", "111"),
            ("PHONE_NUMBERS", "222"),
            ("APP_SECRET", "app-secret"),
            ("API_KEY", "api-key"),
            ("VERIFY_TOKEN", "verify"),
            ("REDIS_URL", "redis://:p%40ss@localhost:6379/0"),
        ];
        let lookup = |k: &str| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        };
        let raw = raw_secrets(&lookup);
        let parsed = settings_secrets(&settings(&vars));
        for secrets in [&raw, &parsed] {
            for secret in [
                "tok-shared",
                "tok-222",
                "app-secret",
                "api-key",
                "verify",
                "p%40ss",
                "p@ss",
            ] {
                assert!(
                    secrets.iter().any(|s| s == secret),
                    "{secret} in {secrets:?}"
                );
            }
        }
        assert_eq!(
            redis_address("redis://:p%40ss@localhost:6379/0"),
            "localhost:6379"
        );
        assert_eq!(redis_address("redis://cache"), "cache:6379");
    }

    #[test]
    fn quality_red_and_flagged_are_warnings_and_the_limit_is_shown() {
        let check = |meta: Value| quality_check(&meta, "q");
        let green = check(
            serde_json::json!({"quality_rating": "GREEN", "status": "CONNECTED",
            "messaging_limit_tier": "TIER_1K", "throughput": {"level": "STANDARD"}}),
        );
        assert_eq!(green.outcome, super::super::Outcome::Pass);
        assert!(green.detail.contains("TIER_1K") && green.detail.contains("STANDARD"));
        let red = check(serde_json::json!({"quality_rating": "RED", "status": "CONNECTED"}));
        assert_eq!(red.outcome, super::super::Outcome::Warn);
        let flagged = check(serde_json::json!({"quality_rating": "YELLOW", "status": "FLAGGED"}));
        assert_eq!(flagged.outcome, super::super::Outcome::Warn);
        assert!(flagged.detail.contains("flagged"), "{}", flagged.detail);
    }
}
