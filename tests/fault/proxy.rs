//! A TCP proxy between the gateway and Redis that can simulate a network partition: while
//! partitioned, bytes stop flowing in both directions on existing connections and new connections
//! are accepted but never forwarded (packets vanish, nothing is refused). Healing closes the frozen
//! connections (as TCP would after a long partition) and forwards again. It can also add latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct ChaosProxy {
    pub port: u16,
    partitioned: Arc<AtomicBool>,
    latency_ms: Arc<AtomicU64>,
    /// Bumped on heal: connections from an older generation close.
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl ChaosProxy {
    pub async fn start(target_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let partitioned = Arc::new(AtomicBool::new(false));
        let latency_ms = Arc::new(AtomicU64::new(0));
        let (generation, _) = watch::channel(0u64);
        let task = {
            let partitioned = partitioned.clone();
            let latency_ms = latency_ms.clone();
            let generation = generation.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let partitioned = partitioned.clone();
                    let latency_ms = latency_ms.clone();
                    let generation = generation.subscribe();
                    tokio::spawn(async move {
                        let born = *generation.borrow();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)).await
                        else {
                            return;
                        };
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        let up = pump(
                            cr,
                            sw,
                            partitioned.clone(),
                            latency_ms.clone(),
                            generation.clone(),
                            born,
                        );
                        let down = pump(sr, cw, partitioned, latency_ms, generation, born);
                        tokio::select! { () = up => {}, () = down => {} }
                    });
                }
            })
        };
        Self {
            port,
            partitioned,
            latency_ms,
            generation,
            task,
        }
    }

    pub fn partition(&self) {
        self.partitioned.store(true, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.generation.send_modify(|g| *g += 1);
        self.partitioned.store(false, Ordering::SeqCst);
    }

    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    partitioned: Arc<AtomicBool>,
    latency_ms: Arc<AtomicU64>,
    mut generation: watch::Receiver<u64>,
    born: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = generation.changed() => return,
        };
        // Frozen while partitioned: hold the bytes until healed, then drop the connection.
        while partitioned.load(Ordering::SeqCst) {
            if *generation.borrow() != born {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if *generation.borrow() != born {
            return;
        }
        let latency = latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
