//! A runtime of its own for outbound connections (S3, Redis).
//!
//! The HTTP server runs one single-threaded runtime per worker, and a pooled client
//! connection lives as a task on the runtime that opened it. When a worker stops (idle
//! workers stop first during a graceful shutdown), its connections would die under the
//! requests other workers are still serving. Calls made through `spawn` open and keep
//! their connections here instead, on a runtime that lives as long as the process.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::{JoinError, JoinHandle};

fn handle() -> &'static Handle {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("ferry-io")
                .enable_all()
                .build()
                // Startup: without threads there is no server either.
                .unwrap_or_else(|e| panic!("cannot start the I/O runtime: {e}"))
        })
        .handle()
}

/// Runs `future` on the I/O runtime. Dropping the returned task cancels it, as dropping
/// the future itself would.
pub fn spawn<F>(future: F) -> Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Task(handle().spawn(future))
}

/// Runs `future` on the I/O runtime to its end, with nobody waiting for it (clean-ups
/// whose failure only leaves work for a later sweep).
pub fn detach<F>(future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    drop(handle().spawn(future));
}

/// A future running on the I/O runtime; cancelled when dropped.
pub struct Task<T>(JoinHandle<T>);

impl<T> Future for Task<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
