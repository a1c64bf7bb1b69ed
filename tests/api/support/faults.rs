//! A TCP proxy that breaks some connections on purpose: it answers 503 to some, resets
//! others, and passes the rest through, so a client's retries can be seen working.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// What the proxy did, by kind.
#[derive(Default)]
pub struct Counts {
    pub passed: AtomicUsize,
    pub unavailable: AtomicUsize,
    pub reset: AtomicUsize,
}

/// A running proxy in front of `upstream`.
pub struct FaultyProxy {
    pub address: String,
    pub counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyProxy {
    /// Of every `every` connections, one gets a 503 and one is reset; the rest pass.
    pub async fn start(upstream: &str, every: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let counts = Arc::new(Counts::default());
        let seen = Arc::new(AtomicUsize::new(0));
        let task_counts = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let (counts, upstream) = (task_counts.clone(), upstream.clone());
                tokio::spawn(async move {
                    match n % every {
                        1 => {
                            counts.unavailable.fetch_add(1, Ordering::SeqCst);
                            let answer = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                            let _ = client.write_all(answer.as_bytes()).await;
                        }
                        2 => {
                            counts.reset.fetch_add(1, Ordering::SeqCst);
                            // A zero linger turns the close into a reset; nothing is left
                            // to flush, so the drop does not block.
                            #[allow(deprecated)]
                            let _ = client.set_linger(Some(std::time::Duration::ZERO));
                            drop(client);
                        }
                        _ => {
                            counts.passed.fetch_add(1, Ordering::SeqCst);
                            if let Ok(mut server) = TcpStream::connect(&upstream).await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        }
                    }
                });
            }
        });
        Self { address, counts, task }
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
