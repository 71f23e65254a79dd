//! [`Gateway`]: the state every connection, session and worker of one node shares.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use wsmq_proto::CloseCode;

use crate::{
    auth::Authenticator, config::Config, engine::Engine, error::GatewayError, metrics::Metrics,
    session::Closer, shutdown::Shutdown,
};

/// Shared by everything on the node; cheap to clone through `Arc`.
pub struct Gateway {
    /// The validated configuration.
    pub config: Config,
    /// Queues, channels, token registry, heartbeats.
    pub engine: Arc<dyn Engine>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Root cancellation token and task tracker.
    pub shutdown: Shutdown,
    /// Set when the shutdown starts: `/readyz` answers 503 from then on.
    pub draining: AtomicBool,
    /// JWT and access-token verification, authorization.
    pub auth: Authenticator,
    /// Open sessions by user, so a revocation can close them.
    pub sessions: SessionRegistry,
    /// The address the listener is bound to.
    pub addr: SocketAddr,
    /// Start time, Unix seconds (for the heartbeat).
    pub started: u64,
}

impl Gateway {
    /// Builds the shared state.
    ///
    /// # Errors
    ///
    /// [`GatewayError::Config`] when the JWT key cannot be used.
    pub fn new(
        config: Config,
        engine: Arc<dyn Engine>,
        metrics: Metrics,
        addr: SocketAddr,
    ) -> Result<Arc<Gateway>, GatewayError> {
        let auth = Authenticator::new(&config)?;
        Ok(Arc::new(Gateway {
            config,
            engine,
            metrics,
            shutdown: Shutdown::new(),
            draining: AtomicBool::new(false),
            auth,
            sessions: SessionRegistry::default(),
            addr,
            started: unix_now(),
        }))
    }

    /// Whether the node is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Open sessions by user id; each entry can close its session with a code.
#[derive(Default)]
pub struct SessionRegistry {
    /// user → session number → closer.
    by_user: Mutex<HashMap<String, HashMap<u64, Closer>>>,
    /// Source of session numbers.
    next: AtomicU64,
}

impl SessionRegistry {
    /// Registers a session; the returned number unregisters it.
    pub fn register(&self, user: &str, closer: Closer) -> u64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut by_user = self.by_user.lock().expect("session registry poisoned");
        by_user
            .entry(user.to_owned())
            .or_default()
            .insert(n, closer);
        n
    }

    /// Forgets a session.
    pub fn unregister(&self, user: &str, n: u64) {
        let mut by_user = self.by_user.lock().expect("session registry poisoned");
        if let Some(sessions) = by_user.get_mut(user) {
            sessions.remove(&n);
            if sessions.is_empty() {
                by_user.remove(user);
            }
        }
    }

    /// Closes every session of `user` with `code`; returns how many there were.
    pub fn close_user(&self, user: &str, code: CloseCode) -> usize {
        let by_user = self.by_user.lock().expect("session registry poisoned");
        let Some(sessions) = by_user.get(user) else {
            return 0;
        };
        for closer in sessions.values() {
            closer.close(code);
        }
        sessions.len()
    }
}

/// Unix seconds from the local clock (used only for token checks and the heartbeat; queue
/// times come from the engine).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
