//! [`Rsmq`], the handle every operation hangs off: how it is built, and how it reaches
//! Redis in one round trip per operation.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, FromRedisValue, Pipeline, RedisFuture, ScriptInvocation, Value,
};

use crate::keys::QueueKeys;
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
    /// Redis Cluster: the URL given to [`Rsmq::connect`] is a comma-separated list of seed
    /// nodes, and every key of queue `q` carries `q` as its hash tag (the queue lives in
    /// namespace `{ns}:{q}`, see [`keys`](crate::keys)), so each queue's keys share one
    /// slot and its scripts run on one master. Default off.
    pub cluster: bool,
}

impl Default for RsmqOptions {
    fn default() -> Self {
        Self {
            ns: "rsmq".to_owned(),
            realtime: false,
            cluster: false,
        }
    }
}

/// A Redis Simple Message Queue client, byte-compatible with npm rsmq 0.12.
///
/// Cloning is cheap; clones share the pool and the connection.
///
/// On one Redis, operations share one multiplexed connection taken from the pool, which
/// pipelines concurrent calls over one socket. Taking a pooled connection per call would
/// cost a second round trip each time, because deadpool-redis checks every connection it
/// hands out with `UNWATCH` + `PING`. When the shared connection breaks, the next call
/// takes a fresh one from the pool. On a Redis Cluster, operations share redis-rs's
/// cluster connection, which routes each command to the master of its keys' slot, follows
/// `MOVED` and `ASK`, and reconnects to nodes by itself.
#[derive(Clone)]
pub struct Rsmq {
    /// How operations reach Redis.
    link: Link,
    /// Key namespace.
    ns: Arc<str>,
    /// Whether sends publish on the realtime channel.
    realtime: bool,
}

/// How an [`Rsmq`] reaches Redis.
#[derive(Clone)]
enum Link {
    /// One Redis.
    Single {
        /// Where connections come from; also lent to callers through [`Rsmq::pool`].
        pool: Pool,
        /// The connection in use; `None` before the first call and after it broke.
        shared: Arc<Mutex<Option<MultiplexedConnection>>>,
    },
    /// A Redis Cluster: the shared connection, and one for writes that wait for
    /// replicas (`WAIT` holds up the connection it runs on).
    Cluster(ClusterConnection, ClusterConnection),
}

/// The connection one call runs on: rsmq's shared connection on one Redis, the cluster
/// connection on a Redis Cluster (which routes each command by its keys). From
/// [`Rsmq::connection`], for commands and scripts of a program that also uses rsmq.
pub struct RsmqConnection(Conn);

enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RsmqConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

impl Rsmq {
    /// Wraps an existing pool. Nothing is sent to Redis until the first operation, and
    /// the scripts are loaded on first use.
    ///
    /// The handle works on one Redis: `options.cluster` is ignored (a cluster is reached
    /// through [`connect`](Self::connect) only).
    pub fn new(pool: Pool, options: RsmqOptions) -> Self {
        Self {
            link: Link::Single {
                pool,
                shared: Arc::default(),
            },
            ns: options.ns.into(),
            realtime: options.realtime,
        }
    }

    /// Connects to `redis_url` (with `options.cluster`, a comma-separated list of a
    /// cluster's seed nodes), checks that the server is what `options.cluster` says, and
    /// loads the scripts so that every later operation is a single round trip.
    ///
    /// # Errors
    ///
    /// [`RsmqError::Connect`] if a URL is invalid or Redis cannot be reached within a
    /// few seconds; [`RsmqError::ClusterMismatch`] when the server is a cluster node and
    /// `options.cluster` is off, or the other way round.
    pub async fn connect(redis_url: &str, options: RsmqOptions) -> Result<Self, RsmqError> {
        let connect_error = |err: &dyn fmt::Display| RsmqError::Connect(err.to_string());
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        if options.cluster {
            let seeds: Vec<&str> = redis_url
                .split(',')
                .map(str::trim)
                .filter(|seed| !seed.is_empty())
                .collect();
            let first = seeds
                .first()
                .ok_or_else(|| RsmqError::Connect("no seed node given".to_owned()))?;
            // The cluster client would fail on a plain server with a less helpful error (or
            // not at all, for a server that only lacks slots), so ask the first seed first.
            if !cluster_enabled(first, &config).await? {
                return Err(RsmqError::ClusterMismatch {
                    server_is_cluster: false,
                });
            }
            let client = ClusterClientBuilder::new(seeds)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .build()
                .map_err(|err| connect_error(&err))?;
            let mut conn = client
                .get_async_connection()
                .await
                .map_err(|err| connect_error(&err))?;
            scripts::preload_each(&mut conn)
                .await
                .map_err(|err| connect_error(&err))?;
            let waiting = client
                .get_async_connection()
                .await
                .map_err(|err| connect_error(&err))?;
            return Ok(Self {
                link: Link::Cluster(conn, waiting),
                ns: options.ns.into(),
                realtime: options.realtime,
            });
        }
        if cluster_enabled(redis_url, &config).await? {
            return Err(RsmqError::ClusterMismatch {
                server_is_cluster: true,
            });
        }
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

    /// Whether this handle works on a Redis Cluster (with the tagged key layout).
    pub fn is_cluster(&self) -> bool {
        matches!(self.link, Link::Cluster(..))
    }

    /// The cluster connection, for callers that route commands themselves (to every
    /// master, or by address); `None` on one Redis.
    pub fn cluster_connection(&self) -> Option<ClusterConnection> {
        match &self.link {
            Link::Cluster(conn, _) => Some(conn.clone()),
            Link::Single { .. } => None,
        }
    }

    /// The key namespace, e.g. `rsmq`.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The connection pool, for callers that need a connection of their own (say, for
    /// blocking commands); `None` on a Redis Cluster. For plain commands,
    /// [`query`](Self::query) shares rsmq's connection instead of taking another.
    pub fn pool(&self) -> Option<&Pool> {
        match &self.link {
            Link::Single { pool, .. } => Some(pool),
            Link::Cluster(..) => None,
        }
    }

    /// Whether sends publish on the realtime channel.
    pub fn realtime(&self) -> bool {
        self.realtime
    }

    /// The channel realtime sends publish on for `qname`: `{ns}:rt:{qname}`, or on a
    /// cluster `{ns}:{{qname}}:rt:{qname}`.
    pub fn realtime_channel(&self, qname: &str) -> String {
        self.queue_keys(qname).realtime
    }

    /// Where the scripts that take dead messages out of `qname` put them: `{ns}:`, the
    /// namespace from which they build the dead-letter queue's keys; on a cluster, where
    /// those keys are in another slot, `park:` and the queue's parking hash, from which
    /// [`move_parked`](Self::move_parked) takes them over.
    pub(crate) fn dead_letter_arg(&self, qname: &str) -> String {
        if self.is_cluster() {
            format!("park:{}", self.queue_keys(qname).park)
        } else {
            format!("{}:", self.ns)
        }
    }

    /// The keys of queue `qname` in this namespace and layout.
    pub(crate) fn queue_keys(&self, qname: &str) -> QueueKeys {
        QueueKeys::new(&self.ns, qname, self.is_cluster())
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

    /// The connection rsmq's operations share, lent for a caller's own commands and scripts
    /// (e.g. `Script::invoke_async`), which [`query`](Self::query) cannot run. On a cluster
    /// it routes each command to the master of its keys' slot. A clone of a connection that
    /// later breaks stays broken: take a new one per task rather than keeping it.
    ///
    /// # Errors
    ///
    /// [`RsmqError::Pool`] when no connection can be had.
    pub async fn connection(&self) -> Result<RsmqConnection, RsmqError> {
        Ok(RsmqConnection(self.conn().await?))
    }

    /// Every key matching the `SCAN` pattern `pattern`: on one Redis, and on a cluster on
    /// every master. A key may be listed twice while Redis rehashes; callers that mind
    /// dedupe.
    ///
    /// # Errors
    ///
    /// Transport errors.
    pub async fn scan(&self, pattern: &str) -> Result<Vec<String>, RsmqError> {
        match &self.link {
            Link::Cluster(conn, _) => crate::cluster::scan(conn.clone(), pattern, None).await,
            Link::Single { .. } => {
                let mut conn = self.conn().await?;
                let mut keys = Vec::new();
                let mut cursor = "0".to_owned();
                loop {
                    let (next, found): (String, Vec<String>) = redis::cmd("SCAN")
                        .arg(&cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(crate::cluster::SCAN_COUNT)
                        .query_async(&mut conn)
                        .await?;
                    keys.extend(found);
                    if next == "0" {
                        return Ok(keys);
                    }
                    cursor = next;
                }
            }
        }
    }

    /// Runs every command of `pipe` (not `atomic()`) and answers one value per command, an
    /// error reply as a [`Value::ServerError`] in its place (as `ignore_errors()` does): on
    /// one Redis as one pipeline, in one round trip; on a Redis Cluster, where a pipeline
    /// must stay within one slot, as concurrent commands, each routed to the master of its
    /// own keys (one round trip per master, in parallel).
    ///
    /// # Errors
    ///
    /// As [`query`](Self::query), for what keeps any answer from arriving (a transport
    /// failure, a cluster that cannot route a command).
    pub async fn query_each(&self, pipe: &Pipeline) -> Result<Vec<Value>, RsmqError> {
        let mut conn = self.conn().await?;
        let result = match &mut conn {
            Conn::Single(_) => {
                let mut lenient = pipe.clone();
                lenient.ignore_errors();
                lenient
                    .query_async::<Vec<Value>>(&mut conn)
                    .await
                    .map_err(RsmqError::from)
            }
            Conn::Cluster(cluster) => {
                let calls = pipe.cmd_iter().map(|cmd| {
                    let mut conn = cluster.clone();
                    async move {
                        match cmd.query_async::<Value>(&mut conn).await {
                            Ok(value) => Ok(value),
                            Err(err) => redis::ServerError::try_from(err).map(Value::ServerError),
                        }
                    }
                });
                futures_util::future::try_join_all(calls)
                    .await
                    .map_err(RsmqError::from)
            }
        };
        self.forget_if_broken(&result);
        result
    }

    /// Runs a pipeline that ends in `WAIT` on a connection other than the shared one: on
    /// one Redis a pooled connection of its own, on a cluster the second cluster
    /// connection. A `NOSCRIPT` (Redis restarted, scripts flushed) loads the scripts and
    /// runs it again.
    pub(crate) async fn query_replicated<T: FromRedisValue>(
        &self,
        pipe: &Pipeline,
        key: &str,
    ) -> Result<T, RsmqError> {
        let mut conn = match &self.link {
            Link::Single { pool, .. } => {
                let pooled = pool.get().await?;
                Conn::Single(MultiplexedConnection::clone(&pooled))
            }
            Link::Cluster(_, waiting) => Conn::Cluster(waiting.clone()),
        };
        let mut result = run_routed(&mut conn, pipe, key).await;
        if matches!(&result, Err(err) if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
        {
            match &mut conn {
                Conn::Cluster(_) => scripts::preload_each(&mut conn).await?,
                Conn::Single(_) => scripts::preload(&mut conn).await?,
            }
            result = run_routed(&mut conn, pipe, key).await;
        }
        let values = result.map_err(scripts::script_error)?;
        T::from_redis_value(Value::Array(values))
            .map_err(|err| RsmqError::UnexpectedReply(err.to_string()))
    }

    /// The shared connection, taken from the pool if there is none yet.
    async fn conn(&self) -> Result<Conn, RsmqError> {
        let (pool, shared) = match &self.link {
            Link::Cluster(conn, _) => return Ok(Conn::Cluster(conn.clone())),
            Link::Single { pool, shared } => (pool, shared),
        };
        if let Some(conn) = lock(shared).as_ref() {
            return Ok(Conn::Single(conn.clone()));
        }
        // Two first calls racing here both take one; the later simply replaces the
        // earlier, which stays usable by whoever holds it.
        let pooled = pool.get().await?;
        let conn = MultiplexedConnection::clone(&pooled);
        *lock(shared) = Some(conn.clone());
        Ok(Conn::Single(conn))
    }

    /// Drops the shared connection after an error that leaves it unusable, so the next
    /// call reconnects through the pool (whose `PING` on checkout discards a dead one).
    ///
    /// A timeout counts too: the socket may be half-open (the server's host vanished without
    /// a reset), and then every later call would wait out its timeout on it. If it was only a
    /// slow reply, replacing the connection costs one reconnect.
    /// (The cluster connection mends itself: it reconnects to nodes and refreshes the slot
    /// map when it meets a broken link or a `MOVED`.)
    fn forget_if_broken<T>(&self, result: &Result<T, RsmqError>) {
        let Link::Single { shared, .. } = &self.link else {
            return;
        };
        let broken = matches!(
            result,
            Err(RsmqError::Redis(err))
                if err.is_unrecoverable_error() || err.is_connection_dropped() || err.is_timeout()
        );
        if broken {
            *lock(shared) = None;
        }
    }
}

/// Runs `pipe` on one Redis, or on a cluster on the master of `key`'s slot: a pipeline with
/// a command that has no key of its own (`WAIT`) is not routed by redis-rs to where its
/// keyed commands belong, so the route is given.
async fn run_routed(
    conn: &mut Conn,
    pipe: &Pipeline,
    key: &str,
) -> Result<Vec<Value>, redis::RedisError> {
    let result = match conn {
        Conn::Single(single) => pipe.query_async(single).await,
        Conn::Cluster(cluster) => {
            use redis::cluster_routing::{Route, SingleNodeRoutingInfo, Slot, SlotAddr};
            let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
            cluster
                .route_pipeline(
                    pipe.clone(),
                    0,
                    pipe.len(),
                    SingleNodeRoutingInfo::SpecificNode(route),
                )
                .await
        }
    };
    // A routed pipeline answers a failed command in place; a plain one fails as a whole.
    let values = result.map_err(first_server_error)?;
    if let Some(Value::ServerError(err)) =
        values.iter().find(|v| matches!(v, Value::ServerError(_)))
    {
        return Err(redis::RedisError::from(err.clone()));
    }
    Ok(values)
}

/// A pipeline's failure as the error of its first failing command (a script's `RSMQ …`
/// reply, `NOSCRIPT`), which is what callers map; any other error as it is.
fn first_server_error(err: redis::RedisError) -> redis::RedisError {
    match err.clone().into_server_errors() {
        Some(errors) if !errors.is_empty() => redis::RedisError::from(errors[0].1.clone()),
        _ => err,
    }
}

fn lock(
    shared: &Mutex<Option<MultiplexedConnection>>,
) -> MutexGuard<'_, Option<MultiplexedConnection>> {
    // The lock only guards a swap of the Option, which a panic cannot leave half-done, so a
    // poisoned lock is still sound to use.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the server at `url` runs in cluster mode (`INFO cluster` says
/// `cluster_enabled:1`), asked over a connection of its own.
async fn cluster_enabled(url: &str, config: &AsyncConnectionConfig) -> Result<bool, RsmqError> {
    let connect_error = |err: &dyn fmt::Display| RsmqError::Connect(err.to_string());
    let client = redis::Client::open(url).map_err(|err| connect_error(&err))?;
    let mut conn = client
        .get_multiplexed_async_connection_with_config(config)
        .await
        .map_err(|err| connect_error(&err))?;
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut conn)
        .await
        .map_err(|err| connect_error(&err))?;
    Ok(info.lines().any(|line| line.trim() == "cluster_enabled:1"))
}

impl fmt::Debug for Rsmq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The pool's status is what helps when debugging; its config may hold a password.
        f.debug_struct("Rsmq")
            .field("ns", &self.ns)
            .field("realtime", &self.realtime)
            .field("cluster", &self.is_cluster())
            .field("pool", &self.pool().map(Pool::status))
            .finish_non_exhaustive()
    }
}
