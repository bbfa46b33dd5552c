//! The embedded store is **single-instance**: one gateway process per DATA_DIR. This lock makes
//! that a rule instead of advice.
//!
//! [`DataDirLock::acquire`] takes an exclusive OS advisory lock (`flock`, through std's
//! [`File::try_lock`]) on `<DATA_DIR>/whatsapp-gateway.lock` before the database is opened for
//! writing, and writes the holder's pid into the file. Another process asking for the same
//! directory gets [`StoreError::InUse`] at once, naming the directory, the lock file and the
//! holder's pid, and saying that several instances need REDIS_URL; it never opens the database
//! for writing, so it cannot migrate, probe or trim under the running gateway.
//!
//! Invariants:
//! - **The kernel releases the lock when the process ends**, SIGKILL and crashes included: no
//!   stale lock file to delete by hand. The file itself stays (deleting it would let a third
//!   process lock a new file while the second still holds the old one); its content is only
//!   informative.
//! - **The lock outlives the write connection**: the store and its writer thread each hold the
//!   lock, so it is released only after the last write connection of the process was closed.
//! - **One process shares its lock**: opening the same directory again in the same process (an
//!   in-process restart in tests, the doctor's own check) reuses the held lock instead of
//!   refusing itself. A process-wide table maps the canonical directory to the held lock; `flock`
//!   would otherwise refuse a second descriptor of the same process.
//! - Read-only users (the event log's readers, `doctor` while a gateway runs) do not take it.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::store::StoreError;

/// The lock file's name inside DATA_DIR.
pub const LOCK_FILE: &str = "whatsapp-gateway.lock";

/// The held lock of one DATA_DIR; released when the last clone is dropped (or the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    /// Holds the `flock`; closing it releases the lock.
    _file: File,
}

/// The directories this process holds, by canonical path.
static HELD: Mutex<Vec<(PathBuf, Weak<DataDirLock>)>> = Mutex::new(Vec::new());

impl DataDirLock {
    /// Locks `data_dir` (which must exist) for this process, or shares the lock this process
    /// already holds on it. Fails with [`StoreError::InUse`] when another process holds it.
    pub fn acquire(data_dir: &Path) -> Result<Arc<Self>, StoreError> {
        let dir = data_dir.canonicalize()?;
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|(_, lock)| lock.strong_count() > 0);
        if let Some(lock) = held
            .iter()
            .find(|(path, _)| *path == dir)
            .and_then(|(_, lock)| lock.upgrade())
        {
            return Ok(lock);
        }
        let path = dir.join(LOCK_FILE);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::InUse(InUse {
                    data_dir: data_dir.to_owned(),
                    lock_file: path,
                    holder: holder(&mut file),
                }));
            }
            Err(TryLockError::Error(e)) => return Err(StoreError::Io(e)),
        }
        // Informative only (who holds it); the lock is the kernel's, not the content.
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        let lock = Arc::new(Self { _file: file });
        held.push((dir, Arc::downgrade(&lock)));
        Ok(lock)
    }
}

/// The pid written by the holder, if the file has one.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// The refusal: which directory, which lock file, who holds it; shown, it says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUse {
    /// DATA_DIR as configured.
    pub data_dir: PathBuf,
    /// The lock file inside it.
    pub lock_file: PathBuf,
    /// The pid the holder wrote, when the file has one.
    pub holder: Option<u32>,
}

impl InUse {
    /// `process <pid> holds its lock <file>`.
    pub fn holder_text(&self) -> String {
        let holder = self.holder.map_or_else(
            || "another process".to_owned(),
            |pid| format!("process {pid}"),
        );
        format!("{holder} holds its lock {}", self.lock_file.display())
    }
}

impl std::fmt::Display for InUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DATA_DIR {} is in use: {}. The embedded store is single-instance (one gateway \
             process per DATA_DIR): stop the other gateway, or give this one another DATA_DIR; to \
             run several instances, set REDIS_URL on all of them (one Redis; README, Several \
             instances)",
            self.data_dir.display(),
            self.holder_text()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_process_shares_its_lock_and_releases_it_with_the_last_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let again = DataDirLock::acquire(dir.path()).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let pid: u32 = std::fs::read_to_string(dir.path().join(LOCK_FILE))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(pid, std::process::id());
        // Another descriptor (as another process would have) cannot take it while it is held.
        let other = File::options()
            .write(true)
            .open(dir.path().join(LOCK_FILE))
            .unwrap();
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        drop(first);
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        drop(again);
        other.try_lock().expect("released with the last holder");
        // Now held by `other`: this process's table has no live entry, so it is refused,
        // naming the directory, the file, the holder and the way out.
        let Err(StoreError::InUse(in_use)) = DataDirLock::acquire(dir.path()) else {
            panic!("expected InUse");
        };
        assert_eq!(in_use.holder, Some(std::process::id()));
        let message = in_use.to_string();
        for part in [
            &dir.path().display().to_string(),
            LOCK_FILE,
            &format!("process {}", std::process::id()),
            "single-instance",
            "REDIS_URL",
        ] {
            assert!(message.contains(part), "{part:?} not in {message}");
        }
    }
}
