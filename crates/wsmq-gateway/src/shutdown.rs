//! Shutdown: the signal that starts it, and the token and tracker that carry it out.
//!
//! Every session and worker is spawned through [`Shutdown::tracker`] and selects on a child of
//! [`Shutdown::token`]. The drain has two steps (see `server::run`): [`Shutdown::stop_receiving`]
//! cancels [`Shutdown::drain_started`], on which queue subscriptions stop taking messages and end once
//! their client has acked what it holds (its session then closes with 1012), and waits for them
//! for the ack grace; then [`Shutdown::drain`] cancels the root token (the
//! remaining sessions close with 1012 and hand back their unacked messages) and waits for the
//! tracker up to what is left of `--drain-timeout`.

use std::{future::Future, time::Duration};

use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

/// Resolves on SIGINT or SIGTERM (on Unix; Ctrl-C elsewhere), logging which one arrived.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            warn!("cannot install signal handlers; the gateway stops only when killed");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => info!(signal = "SIGINT", "shutting down"),
            _ = term.recv() => info!(signal = "SIGTERM", "shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_ok() {
            info!(signal = "ctrl-c", "shutting down");
        } else {
            std::future::pending::<()>().await;
        }
    }
}

/// The root of cancellation and the set of tasks to wait for.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Cancelled when the gateway stops; sessions and workers hold child tokens.
    pub token: CancellationToken,
    /// Every spawned session and worker, so the drain can wait for them.
    pub tracker: TaskTracker,
    /// Cancelled when the drain starts, before [`Shutdown::token`]: queue subscriptions stop
    /// receiving new messages and end once what they have in flight is acknowledged.
    pub drain_started: CancellationToken,
    /// Every queue subscription, so the drain can wait for their acks.
    pub deliveries: TaskTracker,
}

impl Shutdown {
    /// A fresh root.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Spawns a task that the drain waits for.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Starts the drain: subscriptions stop taking messages; waits up to `grace` for them to
    /// get their in-flight messages acknowledged. Returns whether they all did.
    pub async fn stop_receiving(&self, grace: Duration) -> bool {
        self.drain_started.cancel();
        self.deliveries.close();
        tokio::time::timeout(grace, self.deliveries.wait())
            .await
            .is_ok()
    }

    /// Cancels everything and waits up to `deadline` for the tasks; `false` if the deadline hit.
    pub async fn drain(&self, deadline: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                remaining = self.tracker.len(),
                deadline = ?deadline,
                "drain deadline hit; abandoning the remaining tasks (their messages reappear after vt)"
            );
            return false;
        }
        true
    }
}
