//! [`Gateway`]: the state every connection, session and worker of one node shares.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use wsmq_proto::CloseCode;

use crate::{
    auth::Authenticator,
    clock,
    config::Config,
    engine::{BrokerHandler, Engine},
    error::GatewayError,
    history,
    hub::ChannelHub,
    metrics::Metrics,
    outbound::Closer,
    shutdown::Shutdown,
};

/// Shared by everything on the node; cheap to clone through `Arc`.
pub(crate) struct Gateway {
    /// The validated configuration.
    pub config: Config,
    /// Queues, the channel broker, tokens and heartbeats.
    pub engine: Engine,
    /// The node's channel subscribers, fed by the engine's broker.
    pub hub: Arc<ChannelHub>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Root cancellation token and task tracker; its drain flag is the node's draining state.
    pub shutdown: Shutdown,
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
    /// The history `channel` keeps, if any.
    pub(crate) fn history_policy(&self, channel: &str) -> Option<crate::engine::HistoryPolicy> {
        history::policy(&self.config.history, channel)
    }

    /// Builds the shared state, and starts the engine's broker with the node's hub as its
    /// handler.
    ///
    /// # Errors
    ///
    /// [`GatewayError::Config`] when the JWT key cannot be used.
    pub(crate) fn new(
        config: Config,
        engine: Engine,
        metrics: Metrics,
        addr: SocketAddr,
    ) -> Result<Arc<Gateway>, GatewayError> {
        let auth = Authenticator::new(&config)?;
        let broker = Arc::clone(&engine.broker);
        let history = config.history.clone();
        let hub = ChannelHub::new(
            move |channel, first| {
                if first {
                    broker.subscribe(channel);
                } else {
                    broker.unsubscribe(channel);
                }
            },
            metrics.subscriptions.clone(),
        )
        .with_repairs(
            Arc::clone(&engine.broker),
            Box::new(move |channel| history::policy(&history, channel)),
        );
        let hub = Arc::new(hub);
        let handler: Arc<dyn BrokerHandler> = hub.clone();
        engine.broker.start(&handler);
        Ok(Arc::new(Gateway {
            config,
            engine,
            hub,
            metrics,
            shutdown: Shutdown::new(),
            auth,
            sessions: SessionRegistry::default(),
            addr,
            started: clock::unix_secs(),
        }))
    }

    /// Whether the node is shutting down (`/readyz` answers 503, new sessions are refused).
    pub(crate) fn is_draining(&self) -> bool {
        self.shutdown.drain_started.is_cancelled()
    }
}

/// Open sessions by user id; each entry can close its session with a code.
#[derive(Default)]
pub(crate) struct SessionRegistry {
    /// user → session number → closer.
    by_user: Mutex<HashMap<String, HashMap<u64, Closer>>>,
    /// Source of session numbers.
    next: AtomicU64,
}

impl SessionRegistry {
    /// Registers a session; the returned number unregisters it.
    pub(crate) fn register(&self, user: &str, closer: Closer) -> u64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut by_user = self.by_user.lock().expect("session registry poisoned");
        by_user
            .entry(user.to_owned())
            .or_default()
            .insert(n, closer);
        n
    }

    /// Forgets a session.
    pub(crate) fn unregister(&self, user: &str, n: u64) {
        let mut by_user = self.by_user.lock().expect("session registry poisoned");
        if let Some(sessions) = by_user.get_mut(user) {
            sessions.remove(&n);
            if sessions.is_empty() {
                by_user.remove(user);
            }
        }
    }

    /// Closes every session of `user` with `code`; returns how many there were.
    pub(crate) fn close_user(&self, user: &str, code: CloseCode) -> usize {
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
