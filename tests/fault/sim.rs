//! A Meta simulator: posts signed webhooks, treats only 200 as delivered and retries everything
//! else (statuses, connection errors, timeouts) with exponential backoff, as Meta does, recording
//! which ids were acknowledged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::helpers::{sign, stored_ids, text_message, webhook_with};

/// One webhook delivery: a single message from `from`.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: String,
    pub from: String,
    pub body: Arc<String>,
}

impl Delivery {
    pub fn new(id: String, from: String) -> Self {
        let body = Arc::new(webhook_with(vec![text_message(&id, &from, "load")]));
        Self { id, from, body }
    }
}

/// `count` unique deliveries over `senders` numbers, plus `duplicate_pct`% re-sends of earlier ids
/// (Meta's duplicate deliveries), interleaved.
pub fn deliveries(run: &str, count: usize, senders: usize, duplicate_pct: usize) -> Vec<Delivery> {
    let mut out = Vec::with_capacity(count + count * duplicate_pct / 100);
    for i in 0..count {
        let from = format!("1555{:07}", i % senders);
        out.push(Delivery::new(format!("wamid.{run}.{i}"), from));
        if duplicate_pct > 0 && i % (100 / duplicate_pct) == 0 && i > 0 {
            out.push(out[i / 2].clone());
        }
    }
    out
}

/// What a simulation run observed.
#[derive(Debug, Default)]
pub struct SimReport {
    /// Ids answered 200 at least once.
    pub acked: HashSet<String>,
    /// Ids never acknowledged before the give-up deadline.
    pub abandoned: Vec<String>,
    /// Non-200 answers by status (0 = connection error or timeout).
    pub failures: BTreeMap<u16, usize>,
    pub attempts: usize,
}

/// Posts signed webhooks to one gateway.
#[derive(Clone)]
pub struct MetaSimulator {
    url: Arc<str>,
    http: reqwest::Client,
    retry: bool,
    /// First attempts per second (retries are not paced); `None` = as fast as possible.
    rate: Option<f64>,
}

impl MetaSimulator {
    pub fn new(base_url: &str) -> Self {
        Self {
            url: format!("{base_url}/webhook").into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .pool_max_idle_per_host(256)
                .build()
                .unwrap(),
            retry: true,
            rate: None,
        }
    }

    /// Paces first attempts to `per_second`, so a run lasts long enough for a fault to land in
    /// the middle of it however fast the build is (Meta's delivery rate is bounded too).
    pub fn with_rate(self, per_second: f64) -> Self {
        Self {
            rate: Some(per_second),
            ..self
        }
    }

    /// A simulator that tries each delivery once (to measure what a single attempt gets).
    pub fn without_retries(self) -> Self {
        Self {
            retry: false,
            ..self
        }
    }

    /// One attempt; `Ok(status)` or `Err(())` for a transport failure.
    pub async fn post(&self, body: &str) -> Result<u16, ()> {
        let response = self
            .http
            .post(&*self.url)
            .header("content-type", "application/json")
            .header("X-Hub-Signature-256", sign(body.as_bytes()))
            .body(body.to_owned())
            .send()
            .await
            .map_err(|_| ())?;
        Ok(response.status().as_u16())
    }

    /// Delivers everything with `concurrency` in flight; retries until 200 or `give_up_after`.
    pub async fn run(
        &self,
        deliveries: Vec<Delivery>,
        concurrency: usize,
        give_up_after: Duration,
    ) -> SimReport {
        let report = Arc::new(Mutex::new(SimReport::default()));
        let permits = Arc::new(Semaphore::new(concurrency));
        let deadline = Instant::now() + give_up_after;
        let mut tasks = Vec::with_capacity(deliveries.len());
        let started = Instant::now();
        for (i, delivery) in deliveries.into_iter().enumerate() {
            if let Some(rate) = self.rate {
                tokio::time::sleep_until(
                    (started + Duration::from_secs_f64(i as f64 / rate)).into(),
                )
                .await;
            }
            let permit = permits.clone().acquire_owned().await.unwrap();
            let sim = self.clone();
            let report = report.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                let mut backoff = Duration::from_millis(50);
                loop {
                    let outcome = sim.post(&delivery.body).await;
                    let give_up = {
                        let mut r = report.lock().unwrap();
                        r.attempts += 1;
                        match outcome {
                            Ok(200) => {
                                r.acked.insert(delivery.id.clone());
                                return;
                            }
                            Ok(status) => *r.failures.entry(status).or_default() += 1,
                            Err(()) => *r.failures.entry(0).or_default() += 1,
                        }
                        let give_up = !sim.retry || Instant::now() + backoff > deadline;
                        if give_up {
                            r.abandoned.push(delivery.id.clone());
                        }
                        give_up
                    };
                    if give_up {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        Arc::try_unwrap(report).unwrap().into_inner().unwrap()
    }
}

/// How many times each id is stored, read back through `POST /get` for every sender.
pub async fn stored_counts(
    base_url: &str,
    senders: impl IntoIterator<Item = String>,
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for number in senders {
        for id in stored_ids(base_url, &number).await {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

/// Asserts every id in `expected` is stored exactly once and nothing else is stored.
pub fn assert_exactly_once(counts: &HashMap<String, usize>, expected: &HashSet<String>) {
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    let doubled: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let unexpected: Vec<&String> = counts.keys().filter(|id| !expected.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged ids lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        doubled.is_empty(),
        "{} ids stored more than once, e.g. {:?}",
        doubled.len(),
        &doubled[..doubled.len().min(5)]
    );
    assert!(
        unexpected.is_empty(),
        "{} unexpected ids stored",
        unexpected.len()
    );
}

/// The distinct senders of `deliveries`.
pub fn senders(deliveries: &[Delivery]) -> Vec<String> {
    let set: HashSet<&String> = deliveries.iter().map(|d| &d.from).collect();
    set.into_iter().cloned().collect()
}
