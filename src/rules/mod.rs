//! Auto-replies: rules that answer inbound messages without code (a welcome, keyword answers,
//! "we are closed", a poll's next question), sent through the same path as `POST /v1/messages`
//! (recorded with `source: "auto_reply"`, evented as `message_outgoing`, paced by
//! SEND_RATE_PER_SECOND).
//!
//! - [`rule`]: what a rule is, its matchers and its reply; [`hours`]: opening hours.
//! - **Engine** (one task per instance): follows the event log by one durable cursor shared by
//!   every instance, judges each `message_incoming` event against the enabled rules (by
//!   `priority`, then id; the first that matches answers, so a message gets at most one
//!   auto-reply), then moves the cursor and takes the page's firings in one atomic
//!   compare-and-set ([`crate::store::rules`]). Only the instance whose compare-and-set wins
//!   sends the page's replies, after the firing is stored: a reply is sent at most once, never
//!   twice (an instance dying between the two loses it).
//! - Only customers' messages are answered: echoes, our own sends, other auto-replies and
//!   history are other event types, and a message from one of our own business numbers (two
//!   configured numbers writing to each other) is skipped. A contact gets at most
//!   AUTO_REPLY_MAX_PER_HOUR auto-replies an hour (a loop guard against another bot), and
//!   messages older than AUTO_REPLY_MAX_AGE when judged (after an outage) are not answered.
//! - The cursor starts at the log's end when the engine first runs, so creating a rule never
//!   answers the past; while no rule is enabled the cursor just follows the log's end.
//! - Rules come from `/v1/rules` ([`crate::service::rules`]) and from AUTO_REPLY_RULES_FILE (a
//!   TOML file, installed at start-up: its rules replace the stored ones of the file, and rules
//!   dropped from the file are deleted).

pub mod hours;
pub mod rule;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::RulesSettings;
use crate::domain::send::OutgoingMessage;
use crate::events::log::READ_BATCH;
use crate::events::{EventHub, Wakeups};
use crate::metrics::{Metrics, ReasonLabels};
use crate::service::send::{SendError, Sender};
use crate::store::rules::{Firing, FiringVerdict, RulePut};
use crate::store::view::{MessageCursor, MessagesQuery};
use crate::store::{Store, StoreError};
use rule::{Incoming, ManagedBy, Rule, Verdict};

/// The engine looks at the log (and reloads the rules) at least this often.
pub const PASS_INTERVAL: Duration = Duration::from_secs(1);
/// Most pages of the log one pass judges.
const PAGES_PER_PASS: usize = 16;
/// Auto-replies being sent at once per instance.
const SENDS_IN_FLIGHT: usize = 16;

/// The auto-reply runtime of this instance. Cheap to clone.
#[derive(Clone)]
pub struct AutoReplies {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AutoReplies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoReplies").finish_non_exhaustive()
    }
}

/// A stored document and its rule (`None`: it did not parse).
type Parsed = (String, Option<Arc<Rule>>);

struct Inner {
    store: Store,
    hub: Arc<EventHub>,
    sender: Sender,
    settings: RulesSettings,
    /// The configured phone_number_ids (a rule's `phone_number_id` must be one).
    numbers: Vec<String>,
    /// The configured numbers as people dial them (digits): messages from them are ours.
    own: Vec<String>,
    /// Parsed rules by id, with the document they were parsed from (`None`: it did not parse;
    /// logged once).
    parsed: Mutex<HashMap<String, Parsed>>,
    /// AUTO_REPLY_RULES_FILE's rules, still to be installed (the store failed at start-up).
    file_pending: AtomicBool,
    file_rules: Vec<Value>,
    changed: Notify,
    sends: Arc<Semaphore>,
    /// Per contact (`<number>:<contact>`), the completion of its latest replies' task, which
    /// the contact's next task waits for.
    chains: Mutex<HashMap<String, (u64, oneshot::Receiver<()>)>>,
    generation: AtomicU64,
    outcomes: Family<ReasonLabels, Counter>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// Milliseconds since the epoch.
fn now_ms() -> i64 {
    crate::outgoing::now_ms()
}

impl AutoReplies {
    /// Reads AUTO_REPLY_RULES_FILE (refusing to start on a mistake in it), installs its rules
    /// and starts the engine.
    pub async fn start(
        settings: &RulesSettings,
        store: Store,
        hub: Arc<EventHub>,
        sender: Sender,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let numbers: Vec<String> = sender
            .graph()
            .numbers()
            .iter()
            .map(|n| n.id.clone())
            .collect();
        let own = sender
            .graph()
            .numbers()
            .iter()
            .filter_map(|n| n.display_phone_number.as_deref())
            .map(|d| d.chars().filter(char::is_ascii_digit).collect())
            .collect();
        let file_rules = match &settings.file {
            Some(path) => read_file(path, &numbers)
                .with_context(|| format!("AUTO_REPLY_RULES_FILE {}", path.display()))?,
            None => Vec::new(),
        };
        let replies = Self {
            inner: Arc::new(Inner {
                store,
                hub,
                sender,
                settings: settings.clone(),
                numbers,
                own,
                parsed: Mutex::default(),
                file_pending: AtomicBool::new(false),
                file_rules,
                changed: Notify::new(),
                sends: Arc::new(Semaphore::new(SENDS_IN_FLIGHT)),
                chains: Mutex::default(),
                generation: AtomicU64::new(0),
                outcomes: metrics.auto_replies.clone(),
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        };
        if let Err(e) = replies.inner.install_file().await {
            tracing::warn!(error.message = %e, "rules.file_not_installed (retrying)");
            replies.inner.file_pending.store(true, Ordering::Relaxed);
        }
        let inner = replies.inner.clone();
        replies.inner.tracker.spawn(run(inner));
        Ok(replies)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The configured business numbers (phone_number_ids).
    pub fn numbers(&self) -> &[String] {
        &self.inner.numbers
    }

    /// The log's last event now (a new rule's `starts_after`).
    pub async fn log_end(&self) -> Result<String, StoreError> {
        Ok(self.inner.hub.log().newest().await?.to_string())
    }

    /// Rules changed: reload them now.
    pub fn changed(&self) {
        self.inner.changed.notify_one();
    }

    /// Stops the engine; replies being sent finish ([`AutoReplies::stopped`]).
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
    }

    /// Completes when the engine and every send have ended.
    pub async fn stopped(&self) {
        self.inner.tracker.wait().await;
    }
}

/// Reads the TOML file: `[[rules]]` tables, each a rule document with an `id`.
fn read_file(path: &std::path::Path, numbers: &[String]) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).context("cannot be read")?;
    let table: toml::Table = toml::from_str(&text).context("is not valid TOML")?;
    let mut docs = Vec::new();
    for (key, value) in table {
        if key != "rules" {
            anyhow::bail!("has an unknown key {key:?}: rules are [[rules]] tables");
        }
        let rules = value
            .as_array()
            .context("`rules` must be an array of tables ([[rules]])")?;
        for (i, rule) in rules.iter().enumerate() {
            let n = i + 1;
            let mut doc = serde_json::to_value(rule).context("a rule is not JSON-shaped")?;
            if doc.get("id").is_none() {
                anyhow::bail!("[[rules]] number {n} needs an id");
            }
            if let Some(object) = doc.as_object_mut() {
                for field in rule::GATEWAY_FIELDS {
                    if object.contains_key(field) {
                        anyhow::bail!("[[rules]] number {n}: {field} is set by the gateway");
                    }
                }
                object.insert("managed_by".into(), serde_json::json!(ManagedBy::File));
                rule::with_defaults(object);
            }
            if let Some(why) = rule::oversize(&doc) {
                anyhow::bail!(
                    "rule {:?} ([[rules]] number {n}): {why}",
                    doc["id"].as_str().unwrap_or_default()
                );
            }
            let parsed = match rule::parse(&doc, numbers) {
                Ok(parsed) => parsed,
                Err(errors) => anyhow::bail!(
                    "rule {:?} ([[rules]] number {n}): {}",
                    doc["id"].as_str().unwrap_or_default(),
                    rule::describe(&errors)
                ),
            };
            // Taken (a file an earlier release started with keeps starting), but said.
            let unknown = parsed.unknown_types();
            if !unknown.is_empty() {
                tracing::warn!(
                    rule = doc["id"].as_str().unwrap_or_default(),
                    problem = %rule::describe(&unknown),
                    "rules.unknown_type (the rule never matches messages of that type)"
                );
            }
            docs.push(doc);
        }
    }
    let mut ids: Vec<&str> = docs.iter().filter_map(|d| d["id"].as_str()).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        anyhow::bail!("has two rules with id {:?}", w[0]);
    }
    Ok(docs)
}

impl Inner {
    /// Puts the file's rules in the store (keeping their creation time and `starts_after`)
    /// and deletes stored rules of the file that it no longer has. A file rule whose id a rule
    /// made through the API has is skipped (logged): the API's rule is kept.
    async fn install_file(&self) -> Result<(), StoreError> {
        let now = crate::store::view::now_secs();
        let stored = self.store.rule_list().await?;
        let end = self.hub.log().newest().await?.to_string();
        for mut doc in self.file_rules.iter().cloned() {
            let id = doc["id"].as_str().unwrap_or_default().to_owned();
            let existing = stored
                .iter()
                .find(|(s, _)| *s == id)
                .and_then(|(_, d)| serde_json::from_str::<Value>(d).ok());
            if let Some(existing) = &existing
                && existing["managed_by"] != "file"
            {
                tracing::error!(
                    rule = id.as_str(),
                    "rules.file_rule_skipped a rule made through /v1/rules has this id; rename the file's rule or delete the other"
                );
                continue;
            }
            let kept = |field: &str| {
                existing
                    .as_ref()
                    .map(|e| e[field].clone())
                    .filter(|v| !v.is_null())
            };
            doc["created_at"] = kept("created_at").unwrap_or(now.into());
            doc["starts_after"] = kept("starts_after").unwrap_or(end.clone().into());
            doc["updated_at"] = now.into();
            self.store
                .rule_put(&id, &doc.to_string(), RulePut::Upsert)
                .await?;
        }
        for (id, doc) in &stored {
            let from_file =
                serde_json::from_str::<Value>(doc).is_ok_and(|d| d["managed_by"] == "file");
            if from_file && !self.file_rules.iter().any(|d| d["id"] == id.as_str()) {
                self.store.rule_delete(id).await?;
                tracing::info!(rule = id.as_str(), "rules.file_rule_removed");
            }
        }
        if !self.file_rules.is_empty() {
            tracing::info!(rules = self.file_rules.len(), "rules.file_installed");
        }
        Ok(())
    }

    /// The enabled rules in the order they are tried.
    async fn load(&self) -> Result<Vec<Arc<Rule>>, StoreError> {
        let rows = self.store.rule_list().await?;
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        parsed.retain(|id, _| rows.iter().any(|(r, _)| r == id));
        let mut rules = Vec::with_capacity(rows.len());
        for (id, doc) in rows {
            if let Some((known, rule)) = parsed.get(&id)
                && *known == doc
            {
                rules.extend(rule.clone());
                continue;
            }
            // Numbers are not checked here: a rule stays usable when config changes.
            let rule = serde_json::from_str::<Value>(&doc)
                .map_err(|e| e.to_string())
                .and_then(|d| rule::parse(&d, &[]).map_err(|e| rule::describe(&e)));
            match rule {
                Ok(rule) => {
                    let rule = Arc::new(rule);
                    parsed.insert(id, (doc, Some(rule.clone())));
                    rules.push(rule);
                }
                Err(e) => {
                    tracing::error!(rule = id.as_str(), error.message = %e, "rules.unreadable_rule (skipped until it changes)");
                    parsed.insert(id, (doc, None));
                }
            }
        }
        rules.retain(|r| r.enabled);
        rules.sort_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.id.cmp(&b.id)));
        Ok(rules)
    }

    /// Moves the cursor from `from` to `to` without judging what is between; false when
    /// another instance moved it first.
    async fn jump(&self, from: Option<&str>, to: &str) -> Result<bool, StoreError> {
        let moved = self
            .store
            .rules_advance(from, to, &[], self.settings.max_per_hour, now_ms())
            .await?;
        Ok(moved.is_some())
    }

    fn count(&self, reason: &'static str) {
        self.outcomes.get_or_create(&ReasonLabels { reason }).inc();
    }
}

/// The engine loop: a pass, then wait for a new event, a change or [`PASS_INTERVAL`].
async fn run(inner: Arc<Inner>) {
    let mut wake = Wakeups::default();
    let mut failing = false;
    let mut cursor: Option<Option<String>> = None;
    loop {
        if inner.shutdown.is_cancelled() {
            return;
        }
        if inner.file_pending.load(Ordering::Relaxed) && inner.install_file().await.is_ok() {
            inner.file_pending.store(false, Ordering::Relaxed);
        }
        match pass(&inner, &mut cursor).await {
            Ok(any_rules) => {
                // Follow the log live only while a rule is enabled.
                wake.follow(&inner.hub, any_rules).await;
                if failing {
                    tracing::info!("rules.engine_recovered");
                    failing = false;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error.message = %e, "rules.engine_failed (retrying)");
                }
                failing = true;
            }
        }
        if !wake
            .wait(&inner.shutdown, &inner.changed, PASS_INTERVAL)
            .await
        {
            return;
        }
    }
}

/// A reply decided for one message.
struct Planned {
    rule: Arc<Rule>,
    firing: Firing,
    reply: OutgoingMessage,
    message_id: String,
}

/// Judges the log after the cursor, page by page. `known` is the cursor as this instance last
/// stored it (`None`: read it from the store; another instance may have moved it). Returns
/// whether any rule is enabled.
async fn pass(inner: &Arc<Inner>, known: &mut Option<Option<String>>) -> Result<bool, StoreError> {
    let log = inner.hub.log();
    let mut rules = inner.load().await?;
    let mut cursor = match known.take() {
        Some(cursor) => cursor,
        None => inner.store.rules_cursor().await?,
    };
    if rules.is_empty() || cursor.is_none() {
        // Follow the log's end (on the first start too: rules never answer the past). The end
        // is read before the rules are read again, so a rule created meanwhile sees every
        // message stored after that end.
        let newest = log.newest().await?.to_string();
        if cursor.is_some() {
            rules = inner.load().await?;
        }
        if cursor.is_none() || rules.is_empty() {
            // Never backwards (the cursor is read before the end, so this is only a guard).
            let behind = match (
                cursor.as_deref().map(|c| log.parse_id(c)),
                log.parse_id(&newest),
            ) {
                (None, _) | (Some(None), _) => true,
                (Some(Some(at)), Some(end)) => at < end,
                (Some(Some(_)), None) => false,
            };
            if behind && !inner.jump(cursor.as_deref(), &newest).await? {
                return Ok(!rules.is_empty());
            }
            *known = Some(Some(newest));
            return Ok(!rules.is_empty());
        }
    }
    let Some(mut at) = cursor.as_deref().and_then(|c| log.parse_id(c)) else {
        // Written by something else (another backend's format): re-reading the whole log would
        // answer the past, so the engine starts over at the log's end.
        tracing::error!(
            cursor = cursor.as_deref().unwrap_or_default(),
            "rules.unreadable_cursor starting again at the log's end"
        );
        inner
            .jump(cursor.as_deref(), &log.newest().await?.to_string())
            .await?;
        return Ok(true);
    };
    for _ in 0..PAGES_PER_PASS {
        if inner.shutdown.is_cancelled() {
            break;
        }
        let events = log.read_after(Some(at), READ_BATCH).await?;
        let Some(last_id) = events.last().map(|e| e.id) else {
            break;
        };
        let last = last_id.to_string();
        let mut planned = Vec::new();
        for event in events.iter().filter(|e| e.kind == "message_incoming") {
            let Some(message) = Incoming::from_event(event.data()) else {
                tracing::warn!(event = %event.id, "rules.unreadable_event a message_incoming event this release cannot read; not judged");
                inner.count("unreadable_event");
                continue;
            };
            let fresh: Vec<Arc<Rule>> = rules
                .iter()
                .filter(|r| {
                    r.starts_after
                        .as_deref()
                        .and_then(|s| log.parse_id(s))
                        .is_none_or(|start| event.id > start)
                })
                .cloned()
                .collect();
            if let Some(p) = plan(inner, &fresh, &message).await? {
                planned.push(p);
            }
        }
        let firings: Vec<Firing> = planned.iter().map(|p| p.firing.clone()).collect();
        let Some(verdicts) = inner
            .store
            .rules_advance(
                cursor.as_deref(),
                &last,
                &firings,
                inner.settings.max_per_hour,
                now_ms(),
            )
            .await?
        else {
            // Another instance judged this page first: read its cursor next time.
            return Ok(true);
        };
        let mut fired = Vec::new();
        for (p, verdict) in planned.into_iter().zip(verdicts) {
            match verdict {
                FiringVerdict::Fire => fired.push(p),
                FiringVerdict::OnceTaken => inner.count("once_per"),
                FiringVerdict::LoopGuard => {
                    tracing::warn!(rule = p.rule.id.as_str(), to = %p.reply.to.masked(), max_per_hour = inner.settings.max_per_hour, "rules.loop_guard the contact got AUTO_REPLY_MAX_PER_HOUR auto-replies this hour; not answered");
                    inner.count("loop_guard");
                }
            }
        }
        send(inner, fired).await;
        cursor = Some(last);
        at = last_id;
    }
    *known = Some(cursor);
    Ok(true)
}

/// The first rule that answers `message`, with its reply; `None` when none does (or the
/// message is ours, or too old).
async fn plan(
    inner: &Inner,
    rules: &[Arc<Rule>],
    message: &Incoming,
) -> Result<Option<Planned>, StoreError> {
    if inner.own.contains(&message.contact.id) {
        return Ok(None);
    }
    let mut first: Option<bool> = None;
    for rule in rules {
        let verdict = rule.judge(message);
        let matches = match verdict {
            Verdict::No => false,
            Verdict::Yes => true,
            Verdict::IfFirst => match first {
                Some(first) => first,
                None => {
                    let is_first = is_first(&inner.store, message).await?;
                    first = Some(is_first);
                    is_first
                }
            },
        };
        if !matches {
            continue;
        }
        let age_ms = now_ms() - message.timestamp.saturating_mul(1000);
        if age_ms > inner.settings.max_age.as_millis() as i64 {
            tracing::info!(
                rule = rule.id.as_str(),
                age_secs = age_ms / 1000,
                "rules.stale_message not answered: older than AUTO_REPLY_MAX_AGE"
            );
            inner.count("stale");
            return Ok(None);
        }
        return match rule.reply_to(message) {
            Ok(reply) => Ok(Some(Planned {
                firing: Firing {
                    rule: rule.id.clone(),
                    number: message.phone_number_id.clone(),
                    contact: message.contact.id.clone(),
                    once_ms: rule.once().map(|d| d.as_millis() as i64),
                },
                rule: rule.clone(),
                reply,
                message_id: message.id.clone(),
            })),
            Err(errors) => {
                tracing::warn!(
                    rule = rule.id.as_str(),
                    error.message = rule::describe(&errors),
                    "rules.invalid_reply the reply with this message's values filled in breaks a rule; not answered"
                );
                inner.count("invalid_reply");
                Ok(None)
            }
        };
    }
    Ok(None)
}

/// Whether nothing of an earlier second precedes `message` in its conversation. Messages of
/// the same second all count as first (their order within it is not known): the rule's
/// once-per mark ([`Rule::once`]) lets only the first of them in log order be answered.
async fn is_first(store: &Store, message: &Incoming) -> Result<bool, StoreError> {
    let page = store
        .conversation_messages(&MessagesQuery {
            phone_number_id: message.phone_number_id.clone(),
            contact: message.contact.id.clone(),
            cursor: MessageCursor::Before(crate::store::record::index_key(message.timestamp, "")),
            limit: 1,
            kind: None,
        })
        .await?;
    Ok(page.items.is_empty())
}

/// Sends a page's fired replies: one task per contact (at most [`SENDS_IN_FLIGHT`] at once),
/// each sending its contact's replies in order after the contact's replies of earlier pages
/// went out, so a contact never gets two replies in the wrong order.
async fn send(inner: &Arc<Inner>, fired: Vec<Planned>) {
    let mut groups: Vec<(String, Vec<Planned>)> = Vec::new();
    for p in fired {
        let key = format!("{}:{}", p.firing.number, p.firing.contact);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push(p),
            None => groups.push((key, vec![p])),
        }
    }
    for (key, group) in groups {
        let Ok(permit) = inner.sends.clone().acquire_owned().await else {
            return;
        };
        let (done, mine) = oneshot::channel::<()>();
        let generation = inner.generation.fetch_add(1, Ordering::Relaxed);
        let previous = inner
            .chains
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), (generation, mine));
        let task = inner.clone();
        inner.tracker.spawn(async move {
            let _permit = permit;
            if let Some((_, previous)) = previous {
                let _ = previous.await;
            }
            for p in group {
                task.send_one(p).await;
            }
            drop(done);
            let mut chains = task.chains.lock().unwrap_or_else(|p| p.into_inner());
            if chains.get(&key).is_some_and(|(g, _)| *g == generation) {
                chains.remove(&key);
            }
        });
    }
}

impl Inner {
    /// Sends one fired reply; a reply Meta certainly did not take releases its once-per mark.
    async fn send_one(&self, p: Planned) {
        let to = p.reply.to.masked();
        match self.sender.send_auto_reply(&p.reply).await {
            Ok(sent) => {
                tracing::info!(rule = p.rule.id.as_str(), %to, answering = p.message_id.as_str(), message_id = sent.id.as_str(), "rules.replied");
                self.count("sent");
            }
            Err(e) => {
                let unknown = matches!(&e, SendError::Graph(g) if g.outcome_unknown());
                tracing::warn!(rule = p.rule.id.as_str(), %to, answering = p.message_id.as_str(), error.message = %e, outcome_unknown = unknown, "rules.reply_failed");
                if unknown {
                    self.count("outcome_unknown");
                } else {
                    self.count("failed");
                    // Nothing was sent: the contact's next message may be answered.
                    if p.firing.once_ms.is_some()
                        && let Err(e) = self.store.rules_release(&p.firing).await
                    {
                        tracing::warn!(error.message = %e, "rules.release_failed");
                    }
                }
            }
        }
    }
}
