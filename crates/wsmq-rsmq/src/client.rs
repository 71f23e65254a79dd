//! [`Rsmq`], the handle every operation hangs off: how it is built, and how it reaches
//! Redis in one round trip per operation.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, ScriptInvocation};

use crate::keys::{self, QueueKeys};
use crate::{RsmqError, scripts};

/// How long [`Rsmq::connect`] waits for a new connection, so that an unreachable Redis
/// fails instead of hanging.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection from [`Rsmq::connect`] waits for a reply. The redis crate's
/// default (500 ms) is short for a large batch on a busy server; a timed-out script
/// still runs to completion in Redis, so a spurious timeout would misreport a success.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Options shared by every operation of one [`Rsmq`], as npm rsmq's constructor options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsmqOptions {
    /// Key namespace, without the `:` that separates it from the rest of each key.
    /// Default `rsmq`.
    pub ns: String,
    /// After each send, `PUBLISH {ns}:rt:{qname} <message count>` so that consumers
    /// can wake up at once instead of polling. Default off, as in rsmq.
    pub realtime: bool,
}

impl Default for RsmqOptions {
    fn default() -> Self {
        Self {
            ns: "rsmq".to_owned(),
            realtime: false,
        }
    }
}

/// A Redis Simple Message Queue client, byte-compatible with npm rsmq 0.12.
///
/// Cloning is cheap; clones share the pool and the connection.
///
/// Operations share one multiplexed connection taken from the pool, which pipelines
/// concurrent calls over one socket. Taking a pooled connection per call would cost a
/// second round trip each time, because deadpool-redis checks every connection it hands
/// out with `UNWATCH` + `PING`. When the shared connection breaks, the next call takes
/// a fresh one from the pool.
#[derive(Clone)]
pub struct Rsmq {
    /// Where connections come from; also lent to callers through [`Rsmq::pool`].
    pool: Pool,
    /// The connection in use; `None` before the first call and after it broke.
    shared: Arc<Mutex<Option<MultiplexedConnection>>>,
    /// Key namespace.
    ns: Arc<str>,
    /// Whether sends publish on the realtime channel.
    realtime: bool,
}

impl Rsmq {
    /// Wraps an existing pool. Nothing is sent to Redis until the first operation, and
    /// the scripts are loaded on first use.
    pub fn new(pool: Pool, options: RsmqOptions) -> Self {
        Self {
            pool,
            shared: Arc::default(),
            ns: options.ns.into(),
            realtime: options.realtime,
        }
    }

    /// Builds a pool for `redis_url`, checks it with a `PING`, and loads the scripts so
    /// that every later operation is a single round trip.
    ///
    /// # Errors
    ///
    /// [`RsmqError::Connect`] if the URL is invalid or Redis cannot be reached within a
    /// few seconds.
    pub async fn connect(redis_url: &str, options: RsmqOptions) -> Result<Self, RsmqError> {
        let connect_error = |err: &dyn fmt::Display| RsmqError::Connect(err.to_string());
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let manager =
            Manager::new_with_config(redis_url, config).map_err(|err| connect_error(&err))?;
        let pool = Pool::builder(manager)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|err| connect_error(&err))?;

        let rsmq = Self::new(pool, options);
        let mut conn = rsmq.conn().await.map_err(|err| connect_error(&err))?;
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(|err| connect_error(&err))?;
        scripts::preload(&mut conn)
            .await
            .map_err(|err| connect_error(&err))?;
        Ok(rsmq)
    }

    /// The key namespace, e.g. `rsmq`.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The connection pool, for callers that need a connection of their own (say, for
    /// blocking commands). For plain commands, [`query`](Self::query) shares rsmq's
    /// connection instead of taking another.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Whether sends publish on the realtime channel.
    pub fn realtime(&self) -> bool {
        self.realtime
    }

    /// The channel realtime sends publish on for `qname`: `{ns}:rt:{qname}`.
    pub fn realtime_channel(&self, qname: &str) -> String {
        keys::realtime_channel(&self.ns, qname)
    }

    /// `{ns}:`, what every key of the namespace starts with; the scripts that find a
    /// dead-letter queue's name in a hash build its keys from it.
    pub(crate) fn key_prefix(&self) -> String {
        format!("{}:", self.ns)
    }

    /// The keys of queue `qname` in this namespace.
    pub(crate) fn queue_keys(&self, qname: &str) -> QueueKeys {
        QueueKeys::new(&self.ns, qname)
    }

    /// Runs a script in one round trip.
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, RsmqError> {
        let mut conn = self.conn().await?;
        let result = scripts::invoke(&mut conn, invocation).await;
        self.forget_if_broken(&result);
        result
    }

    /// Runs any Redis command on the connection the queue operations share, in one round
    /// trip, e.g. a `SISMEMBER`, `SET … EX` or `PUBLISH` of a program that also uses rsmq.
    ///
    /// This is the way to reach Redis alongside rsmq without a second connection. It
    /// takes a command rather than lending the connection out: a lent clone would outlive
    /// a break, while here a broken connection is dropped and the next call (of any kind)
    /// takes a fresh one, exactly as for the queue operations. Do not send blocking
    /// commands (`BLPOP`, `WAIT`, …), which would hold up every caller sharing the
    /// socket, nor `SUBSCRIBE`, which needs a connection of its own.
    ///
    /// # Errors
    ///
    /// [`RsmqError::Redis`] for an error reply or a transport failure,
    /// [`RsmqError::Pool`] when no connection can be had.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RsmqError> {
        let mut conn = self.conn().await?;
        let result = cmd.query_async(&mut conn).await.map_err(RsmqError::from);
        self.forget_if_broken(&result);
        result
    }

    /// Runs a pipeline (or, made `atomic()`, a `MULTI … EXEC` transaction) on the shared
    /// connection in one round trip, as [`query`](Self::query) runs one command.
    ///
    /// # Errors
    ///
    /// As [`query`](Self::query).
    pub async fn query_pipeline<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, RsmqError> {
        let mut conn = self.conn().await?;
        let result = pipe.query_async(&mut conn).await.map_err(RsmqError::from);
        self.forget_if_broken(&result);
        result
    }

    /// The shared connection, taken from the pool if there is none yet.
    async fn conn(&self) -> Result<MultiplexedConnection, RsmqError> {
        if let Some(conn) = self.lock_shared().as_ref() {
            return Ok(conn.clone());
        }
        // Two first calls racing here both take one; the later simply replaces the
        // earlier, which stays usable by whoever holds it.
        let pooled = self.pool.get().await?;
        let conn = MultiplexedConnection::clone(&pooled);
        *self.lock_shared() = Some(conn.clone());
        Ok(conn)
    }

    /// Drops the shared connection after an error that leaves it unusable, so the next
    /// call reconnects through the pool (whose `PING` on checkout discards a dead one).
    ///
    /// A timeout counts too: the socket may be half-open (the server's host vanished without
    /// a reset), and then every later call would wait out its timeout on it. If it was only a
    /// slow reply, replacing the connection costs one reconnect.
    fn forget_if_broken<T>(&self, result: &Result<T, RsmqError>) {
        let broken = matches!(
            result,
            Err(RsmqError::Redis(err))
                if err.is_unrecoverable_error() || err.is_connection_dropped() || err.is_timeout()
        );
        if broken {
            *self.lock_shared() = None;
        }
    }

    fn lock_shared(&self) -> MutexGuard<'_, Option<MultiplexedConnection>> {
        // The lock only guards a swap of the Option, which a panic cannot leave
        // half-done, so a poisoned lock is still sound to use.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Rsmq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The pool's status is what helps when debugging; its config may hold a password.
        f.debug_struct("Rsmq")
            .field("ns", &self.ns)
            .field("realtime", &self.realtime)
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}
