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
    auth::{Authenticator, Credential},
    clock,
    config::Config,
    engine::{BrokerHandler, Engine, QueueRules},
    error::GatewayError,
    history,
    hub::ChannelHub,
    metrics::Metrics,
    outbound::Closer,
    quota::QueueQuota,
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
    /// Queue creations each user has left (`--queue-create-limit`).
    pub queue_quota: QueueQuota,
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
            queue_quota: QueueQuota::new(config.limits.queue_create_limit),
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

    /// Makes sure `queue` exists before `user` consumes or publishes to it, creating it (with
    /// `rules`, else the defaults) within the user's budget of creations (`user` `None`: the
    /// publish API, not limited). An existing queue keeps its own rules.
    ///
    /// # Errors
    ///
    /// The engine's, or [`GatewayError::RateLimited`] when the queue is missing and the user
    /// has created as many as the budget allows.
    pub(crate) async fn ensure_queue_for(
        &self,
        user: Option<&str>,
        queue: &str,
        rules: Option<&QueueRules>,
    ) -> Result<(), GatewayError> {
        let queues = &self.engine.queues;
        let create = || async {
            match rules {
                Some(rules) => queues.create_queue(queue, rules).await,
                None => queues.ensure_queue(queue).await,
            }
        };
        let Some(user) = user.filter(|_| self.queue_quota.limit() > 0) else {
            create().await?;
            return Ok(());
        };
        if self.queue_quota.has_room(user) {
            if create().await? {
                self.queue_quota.spend(user);
            }
            return Ok(());
        }
        if queues.queue_exists(queue).await? {
            return Ok(());
        }
        tracing::info!(user, "queue creation refused: budget spent");
        Err(GatewayError::RateLimited(format!(
            "you created too many queues (at most {} an hour); use existing ones",
            self.queue_quota.limit()
        )))
    }

    /// Whether the node is shutting down (`/readyz` answers 503, new sessions are refused).
    pub(crate) fn is_draining(&self) -> bool {
        self.shutdown.drain_started.is_cancelled()
    }
}

/// Open sessions by user id; each entry can close its session with a code, and says what the
/// session's admission rests on so that it can be re-checked.
///
/// It also counts the revocations the node has seen (its *epoch*): a handshake reads the epoch
/// before it checks the credential, and the session compares it once registered. A revocation
/// seen in between may have been checked against too early, and would have found no session
/// to close: the session then re-checks its credential. One seen after the registration
/// finds the session. Both happen under one lock, so there is no gap between the two.
#[derive(Default)]
pub(crate) struct SessionRegistry {
    /// The sessions, and the epoch.
    inner: Mutex<Registry>,
    /// Source of session numbers.
    next: AtomicU64,
}

#[derive(Default)]
struct Registry {
    /// user → that user's sessions.
    by_user: HashMap<Box<str>, UserSessions>,
    /// Revocations seen (and notices of missed ones), ever.
    epoch: u64,
}

/// The sessions of one user, by session number.
///
/// Most users hold one session at a time, which then sits in the registry's own entry: a
/// table per user (a `HashMap`) cost every idle session about 250 bytes.
enum UserSessions {
    One((u64, Entry)),
    Many(Vec<(u64, Entry)>),
}

impl UserSessions {
    fn entries(&self) -> &[(u64, Entry)] {
        match self {
            UserSessions::One(one) => std::slice::from_ref(one),
            UserSessions::Many(many) => many,
        }
    }

    fn entries_mut(&mut self) -> &mut [(u64, Entry)] {
        match self {
            UserSessions::One(one) => std::slice::from_mut(one),
            UserSessions::Many(many) => many,
        }
    }

    fn get(&self, n: u64) -> Option<&Entry> {
        self.entries().iter().find(|(m, _)| *m == n).map(|(_, e)| e)
    }
}

struct Entry {
    /// Closes the session.
    closer: Closer,
    /// What its admission rests on now.
    credential: Credential,
}

/// One open session, as the periodic re-check sees it.
pub(crate) struct RegisteredSession {
    /// The user.
    pub user: String,
    /// The session number.
    pub n: u64,
    /// What its admission rests on.
    pub credential: Credential,
}

impl SessionRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().expect("session registry poisoned")
    }

    /// The number of revocations seen so far; read before a credential is checked.
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Registers a session; returns its number (which unregisters it) and the epoch at
    /// registration.
    pub(crate) fn register(
        &self,
        user: &str,
        closer: Closer,
        credential: Credential,
    ) -> (u64, u64) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = (n, Entry { closer, credential });
        let mut inner = self.lock();
        let by_user = &mut inner.by_user;
        match by_user.remove_entry(user) {
            None => {
                by_user.insert(user.into(), UserSessions::One(entry));
            }
            Some((key, UserSessions::One(first))) => {
                by_user.insert(key, UserSessions::Many(vec![first, entry]));
            }
            Some((key, UserSessions::Many(mut sessions))) => {
                sessions.push(entry);
                by_user.insert(key, UserSessions::Many(sessions));
            }
        }
        (n, inner.epoch)
    }

    /// Records a session's new credential (after an `auth` refresh).
    pub(crate) fn set_credential(&self, user: &str, n: u64, credential: Credential) {
        let mut inner = self.lock();
        let sessions = inner.by_user.get_mut(user);
        let entries = sessions.map(UserSessions::entries_mut).unwrap_or_default();
        if let Some((_, entry)) = entries.iter_mut().find(|(m, _)| *m == n) {
            entry.credential = credential;
        }
    }

    /// Forgets a session.
    pub(crate) fn unregister(&self, user: &str, n: u64) {
        let mut inner = self.lock();
        let now_empty = match inner.by_user.get_mut(user) {
            None => false,
            Some(UserSessions::One((one, _))) => *one == n,
            Some(UserSessions::Many(sessions)) => {
                sessions.retain(|(one, _)| *one != n);
                sessions.is_empty()
            }
        };
        if now_empty {
            inner.by_user.remove(user);
        }
    }

    /// Closes every session of `user` with `code` (a revocation); returns how many there were.
    pub(crate) fn close_user(&self, user: &str, code: CloseCode) -> usize {
        let mut inner = self.lock();
        inner.epoch += 1;
        let Some(sessions) = inner.by_user.get(user) else {
            return 0;
        };
        for (_, entry) in sessions.entries() {
            entry.closer.close(code);
        }
        sessions.entries().len()
    }

    /// Notes that revocations may have been missed: sessions registering from now on re-check.
    pub(crate) fn note_missed(&self) {
        self.lock().epoch += 1;
    }

    /// Closes one session with `code`; `false` when it is gone already.
    pub(crate) fn close_session(&self, user: &str, n: u64, code: CloseCode) -> bool {
        let inner = self.lock();
        let entry = inner.by_user.get(user).and_then(|s| s.get(n));
        if let Some(entry) = entry {
            entry.closer.close(code);
        }
        entry.is_some()
    }

    /// Every open session, for the periodic re-check.
    pub(crate) fn snapshot(&self) -> Vec<RegisteredSession> {
        let inner = self.lock();
        inner
            .by_user
            .iter()
            .flat_map(|(user, sessions)| {
                sessions
                    .entries()
                    .iter()
                    .map(|(n, entry)| RegisteredSession {
                        user: user.to_string(),
                        n: *n,
                        credential: entry.credential.clone(),
                    })
            })
            .collect()
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

    fn register(registry: &SessionRegistry, user: &str, closer: Closer) -> u64 {
        registry.register(user, closer, Credential::Jwt(Some(1))).0
    }

    #[test]
    fn the_registry_closes_every_session_of_a_user_and_only_those() {
        let registry = SessionRegistry::default();
        let (a1, a1_token) = closer();
        let (a2, a2_token) = closer();
        let (a3, a3_token) = closer();
        let (b, b_token) = closer();
        let n1 = register(&registry, "alice", a1);
        let n2 = register(&registry, "alice", a2);
        let nb = register(&registry, "bob", b);
        registry.unregister("alice", n1);
        let n3 = register(&registry, "alice", a3);
        registry.set_credential("alice", n3, Credential::Jwt(Some(2)));
        let mut seen: Vec<_> = registry
            .snapshot()
            .into_iter()
            .map(|s| (s.user, s.n, s.credential))
            .collect();
        seen.sort_by_key(|(_, n, _)| *n);
        assert_eq!(
            seen,
            [
                ("alice".to_owned(), n2, Credential::Jwt(Some(1))),
                ("bob".to_owned(), nb, Credential::Jwt(Some(1))),
                ("alice".to_owned(), n3, Credential::Jwt(Some(2))),
            ]
        );
        let before = registry.epoch();
        assert_eq!(registry.close_user("alice", CloseCode::FORBIDDEN), 2);
        assert_eq!(registry.epoch(), before + 1);
        assert!(!a1_token.is_cancelled(), "unregistered: no longer closed");
        assert!(a2_token.is_cancelled() && a3_token.is_cancelled());
        assert!(!b_token.is_cancelled());
        registry.unregister("alice", n2);
        registry.unregister("alice", n3);
        assert_eq!(registry.close_user("alice", CloseCode::FORBIDDEN), 0);
        assert!(!registry.lock().by_user.contains_key("alice"));
        assert!(registry.close_session("bob", nb, CloseCode::FORBIDDEN));
        assert!(b_token.is_cancelled());
        assert_eq!(registry.close_user("carol", CloseCode::FORBIDDEN), 0);
    }
}
