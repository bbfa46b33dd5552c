//! [`Readiness`]: what `/readyz` reports, kept in memory so answering it never waits for the store.
//!
//! Two inputs: the outcome of the most recent write (a real save or the background probe's small
//! write, whichever came last), and a *refusal*: a condition under which the store refuses every
//! write until an operator acts (an evicting Redis, the SQLite file deleted under the running
//! service). A refusal wins over any write outcome.

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};

use super::PROBE_INTERVAL;

/// Shared, cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    /// `None` until the first write or probe.
    last_write: Option<Result<(), String>>,
    refused: Option<String>,
}

impl Readiness {
    /// Records the outcome of a write (a save or a probe); the most recent one wins.
    pub fn record_write(&self, outcome: Result<(), String>) {
        self.lock().last_write = Some(outcome);
    }

    /// Sets (or with `None` clears) the reason why the store refuses writes.
    pub fn set_refused(&self, reason: Option<String>) {
        self.lock().refused = reason;
    }

    /// The reason why writes are refused, if they are.
    pub fn refused(&self) -> Option<String> {
        self.lock().refused.clone()
    }

    /// `Ok` when the store takes writes, else why not.
    pub fn status(&self) -> Result<(), String> {
        let state = self.lock();
        if let Some(reason) = &state.refused {
            return Err(reason.clone());
        }
        match &state.last_write {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(format!("the last write failed: {e}")),
            None => Err("no write has been attempted yet".to_owned()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs `probe` every [`PROBE_INTERVAL`] while the store behind `store` is alive; the task ends
/// when the last handle to the store is dropped.
pub(crate) fn spawn_probe<T, F, Fut>(store: Weak<T>, probe: F)
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            let Some(store) = store.upgrade() else {
                return;
            };
            probe(store).await;
        }
    });
}
