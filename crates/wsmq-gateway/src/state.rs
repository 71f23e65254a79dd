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
        let hub = Arc::new(ChannelHub::new(
            move |channel, first| {
                if first {
                    broker.subscribe(channel);
                } else {
                    broker.unsubscribe(channel);
                }
            },
            metrics.subscriptions.clone(),
        ));
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
    /// user → that user's sessions.
    by_user: Mutex<HashMap<Box<str>, UserSessions>>,
    /// Source of session numbers.
    next: AtomicU64,
}

/// The sessions of one user: (session number, closer).
///
/// Most users hold one session at a time, which then sits in the registry's own entry: a
/// table per user (a `HashMap`, as before) cost every idle session about 250 bytes.
enum UserSessions {
    One(u64, Closer),
    Many(Vec<(u64, Closer)>),
}

impl SessionRegistry {
    /// Registers a session; the returned number unregisters it.
    pub(crate) fn register(&self, user: &str, closer: Closer) -> u64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut by_user = self.by_user.lock().expect("session registry poisoned");
        match by_user.remove_entry(user) {
            None => {
                by_user.insert(user.into(), UserSessions::One(n, closer));
            }
            Some((key, UserSessions::One(first, first_closer))) => {
                let sessions = vec![(first, first_closer), (n, closer)];
                by_user.insert(key, UserSessions::Many(sessions));
            }
            Some((key, UserSessions::Many(mut sessions))) => {
                sessions.push((n, closer));
                by_user.insert(key, UserSessions::Many(sessions));
            }
        }
        n
    }

    /// Forgets a session.
    pub(crate) fn unregister(&self, user: &str, n: u64) {
        let mut by_user = self.by_user.lock().expect("session registry poisoned");
        let now_empty = match by_user.get_mut(user) {
            None => false,
            Some(UserSessions::One(one, _)) => *one == n,
            Some(UserSessions::Many(sessions)) => {
                sessions.retain(|(one, _)| *one != n);
                sessions.is_empty()
            }
        };
        if now_empty {
            by_user.remove(user);
        }
    }

    /// Closes every session of `user` with `code`; returns how many there were.
    pub(crate) fn close_user(&self, user: &str, code: CloseCode) -> usize {
        let by_user = self.by_user.lock().expect("session registry poisoned");
        match by_user.get(user) {
            None => 0,
            Some(UserSessions::One(_, closer)) => {
                closer.close(code);
                1
            }
            Some(UserSessions::Many(sessions)) => {
                for (_, closer) in sessions {
                    closer.close(code);
                }
                sessions.len()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;

    fn closer() -> (Closer, CancellationToken) {
        let token = CancellationToken::new();
        (Closer::new(token.clone()), token)
    }

    #[test]
    fn the_registry_closes_every_session_of_a_user_and_only_those() {
        let registry = SessionRegistry::default();
        let (a1, a1_token) = closer();
        let (a2, a2_token) = closer();
        let (a3, a3_token) = closer();
        let (b, b_token) = closer();
        let n1 = registry.register("alice", a1);
        let n2 = registry.register("alice", a2);
        registry.register("bob", b);
        registry.unregister("alice", n1);
        let n3 = registry.register("alice", a3);
        assert_eq!(registry.close_user("alice", CloseCode::FORBIDDEN), 2);
        assert!(!a1_token.is_cancelled(), "unregistered: no longer closed");
        assert!(a2_token.is_cancelled() && a3_token.is_cancelled());
        assert!(!b_token.is_cancelled());
        registry.unregister("alice", n2);
        registry.unregister("alice", n3);
        assert_eq!(registry.close_user("alice", CloseCode::FORBIDDEN), 0);
        assert!(registry.by_user.lock().unwrap().get("alice").is_none());
        assert_eq!(registry.close_user("bob", CloseCode::FORBIDDEN), 1);
        assert!(b_token.is_cancelled());
        assert_eq!(registry.close_user("carol", CloseCode::FORBIDDEN), 0);
    }
}
