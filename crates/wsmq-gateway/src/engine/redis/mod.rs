//! The Redis engine: rsmq queues through `wsmq-rsmq`, pub/sub through one connection per node.
//!
//! Queue operations go through [`Rsmq`] (one round trip each, batches included; realtime on,
//! so every send publishes `{ns}:rt:{q}`). A receive also learns, in the same script, when the
//! queue's next hidden message becomes visible, and in-flight messages are handed back with
//! one batched visibility change. The few other commands (the access-token registry,
//! heartbeats, channel publishes, readiness pings) go through [`Rsmq::query`], over the same
//! multiplexed connection, so the node keeps one command connection and one pub/sub
//! connection. Notifications arrive on the pub/sub connection ([`pubsub`]), which subscribes
//! only to what local sessions need.
//!
//! # When Redis goes away
//!
//! Nothing here gives up: every call that cannot reach Redis fails at once with
//! [`EngineError::Unavailable`] (the wire's `unavailable`, HTTP 503), rsmq replaces its broken
//! connection on the next call, and the pub/sub task reconnects with backoff and subscribes
//! again. The engine logs the outage once, when a call first fails for want of Redis, and the
//! recovery once, when a call succeeds again; the recovery is counted in
//! [`RedisMetrics::command_reconnects`]. Callers log their own failures at debug level only.

mod changes;
mod history;
mod presence;
mod pubsub;
mod shards;
mod wake;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::future::{BoxFuture, FutureExt};
use prometheus_client::metrics::counter::Counter;
use redis::Client;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info, warn};
use wsmq_proto::{NodeHeartbeat, keys};
use wsmq_rsmq::{QueueOptions, Rsmq, RsmqError, RsmqOptions};

use self::{
    changes::Changes,
    pubsub::PubSub,
    shards::{Shards, ShardsShared},
    wake::QueueWake,
};
use super::{
    Broker, BrokerHandler, ClusterState, CredentialCheck, CredentialChecks, CredentialQuery,
    DeadLettered, Engine, EngineError, HandlerSlot, Held, HistoryPage, HistoryPolicy, HistoryRange,
    Membership, Presence, PresenceChanges, PresenceList, Published, QueueMessage, QueueRules,
    QueueStore, QueueWatch, Received, Revocation, interest::Interests,
};

/// How long a send with `replicas` waits for them (Redis `WAIT`) before it answers that they
/// did not confirm: a replica in sync confirms within a round trip, so this only bounds a
/// replica that is gone or far behind.
const REPLICA_WAIT: Duration = Duration::from_secs(2);

/// The Redis engine's counters, registered by the gateway.
#[derive(Debug, Clone, Default)]
pub struct RedisMetrics {
    /// Reconnections of the pub/sub connection.
    pub pubsub_reconnects: Counter,
    /// Recoveries of the command connection: a call succeeded after calls had failed because
    /// Redis was unreachable.
    pub command_reconnects: Counter,
}

/// Queues and channels in a Redis shared by every node.
pub struct RedisEngine {
    /// rsmq over the shared pool; its one multiplexed connection carries every command.
    rsmq: Rsmq,
    /// Whether the last call reached Redis: its flips are what is logged and counted, so an
    /// outage shows as one warning and one recovery, whatever the number of callers.
    reachable: AtomicBool,
    /// Counted on each recovery of the command connection.
    command_reconnects: Counter,
    /// Notified on each recovery of the command connection: the pub/sub task then retries at
    /// once instead of sleeping out its backoff, so consumers are woken (and notifications
    /// flow again) within a round trip of Redis coming back.
    redis_back: Arc<Notify>,
    /// Queues with local consumers: queue → wake-up (realtime notifications) and whether the
    /// node listens to them yet.
    queues: Arc<Interests<Arc<QueueWake>>>,
    /// Channels the node subscribed to (to subscribe again after a reconnect).
    channels: Arc<Mutex<HashSet<String>>>,
    /// Whether Redis confirmed the node's subscription to each of those channels.
    channel_wakes: Mutex<HashMap<String, Arc<QueueWake>>>,
    /// On a Redis Cluster: the channels' sharded pub/sub, and what it shares (which channels
    /// the node wants, and whether Redis confirmed each).
    shards: Option<(Shards, Arc<ShardsShared>)>,
    /// Where the pub/sub task hands channel publications: the node's hub.
    handler: Arc<HandlerSlot>,
    /// Subscribe/unsubscribe wishes for the pub/sub task, coalesced per channel.
    changes: Arc<Changes>,
    /// Revoked user ids, from `wsmq:revoke`, and notices of missed ones.
    revocations: broadcast::Sender<Revocation>,
    /// Queues already warned about for holding corrupt messages: a receive skips them every
    /// time, and one warning per queue and process says it (the metric counts each skip).
    corrupt_warned: Mutex<HashSet<String>>,
    /// Stops the pub/sub task when the engine goes away (the task holds the registries, whose
    /// callbacks hold its command sender, so it would not notice otherwise).
    _pubsub: DropGuard,
}

impl RedisEngine {
    /// Connects to Redis (checking it answers) and starts the pub/sub connection.
    ///
    /// `metrics` counts the reconnections of both connections.
    ///
    /// # Errors
    ///
    /// [`EngineError::Unavailable`] when Redis cannot be reached.
    pub async fn connect(
        url: &str,
        ns: &str,
        metrics: RedisMetrics,
    ) -> Result<Arc<RedisEngine>, EngineError> {
        Self::open(url, ns, false, metrics).await
    }

    /// Connects to a Redis Cluster through `seeds` (comma-separated node URLs; the rest of
    /// the cluster is discovered), in the cluster layout: every key of queue `q` carries `q`
    /// as its hash tag (see `wsmq_rsmq::keys::cluster_ns`).
    ///
    /// # Errors
    ///
    /// [`EngineError::Unavailable`] when no seed can be reached; [`EngineError::Invalid`]
    /// when the server is not a cluster node.
    pub async fn connect_cluster(
        seeds: &str,
        ns: &str,
        metrics: RedisMetrics,
    ) -> Result<Arc<RedisEngine>, EngineError> {
        Self::open(seeds, ns, true, metrics).await
    }

    async fn open(
        url: &str,
        ns: &str,
        cluster: bool,
        metrics: RedisMetrics,
    ) -> Result<Arc<RedisEngine>, EngineError> {
        let options = RsmqOptions {
            ns: ns.to_owned(),
            realtime: true,
            cluster,
        };
        let rsmq = Rsmq::connect(url, options).await.map_err(map_err)?;
        // The pub/sub connection goes to one node; on a cluster, to any of the seeds.
        let clients = url
            .split(',')
            .map(str::trim)
            .filter(|seed| !seed.is_empty())
            .map(Client::open)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let changes = Arc::new(Changes::default());
        let queue_changes = Arc::clone(&changes);
        let rt_ns = ns.to_owned();
        let queues = Interests::new(Box::new(
            move |queue: &str, wake: &Arc<QueueWake>, first: bool| {
                let channel = wsmq_rsmq::keys::queue_realtime_channel(&rt_ns, queue, cluster);
                queue_changes.toggle(channel, Some(Arc::clone(wake)), first);
            },
        ));
        let channels: Arc<Mutex<HashSet<String>>> = Arc::default();
        let handler = Arc::new(HandlerSlot::default());
        let revocations = broadcast::channel(256).0;
        let stop = CancellationToken::new();
        let redis_back = Arc::new(Notify::new());
        let shards = if cluster {
            let seeds: Vec<&str> = url
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let shared = Arc::new(ShardsShared {
                wakes: Mutex::default(),
            });
            let shards = Shards::start(
                &seeds,
                Arc::clone(&handler),
                Arc::clone(&shared),
                stop.clone(),
            )
            .await?;
            Some((shards, shared))
        } else {
            None
        };
        let pubsub = PubSub {
            redis_back: Arc::clone(&redis_back),
            stop: stop.clone(),
            clients,
            next_client: 0,
            changes: Arc::clone(&changes),
            ns: ns.to_owned(),
            cluster,
            queues: Arc::clone(&queues),
            // On a cluster, channels are sharded ([`shards`]); the classic connection carries
            // the queues' wake-ups and revocations only.
            channels: if cluster {
                Arc::default()
            } else {
                Arc::clone(&channels)
            },
            handler: Arc::clone(&handler),
            revocations: revocations.clone(),
            reconnects: metrics.pubsub_reconnects,
        };
        pubsub.start().await?;
        info!(ns, cluster, "redis engine connected");
        Ok(Arc::new(RedisEngine {
            rsmq,
            reachable: AtomicBool::new(true),
            command_reconnects: metrics.command_reconnects,
            redis_back,
            queues,
            channels,
            channel_wakes: Mutex::default(),
            shards,
            handler,
            changes,
            revocations,
            corrupt_warned: Mutex::default(),
            _pubsub: stop.drop_guard(),
        }))
    }

    /// This engine as the gateway holds it.
    pub fn engine(self: &Arc<Self>) -> Engine {
        Engine::whole("redis", Arc::clone(self))
    }

    /// Records whether the node wants `channel` (what a reconnect subscribes to) and tells the
    /// pub/sub task. The lock is held while sending, so the commands for one channel keep the
    /// order of the calls.
    fn want_channel(&self, channel: &str, wanted: bool) {
        if let Some((shards, _)) = &self.shards {
            shards.want(channel, wanted);
            return;
        }
        let mut channels = self.channels.lock().expect("channel set poisoned");
        if wanted {
            channels.insert(channel.to_owned());
        } else {
            channels.remove(channel);
        }
        // Every carrier: publications with history and presence announcements come on pub/sub
        // channels of their own.
        for name in PubSub::carriers(channel) {
            self.changes.toggle(name, None, wanted);
        }
    }

    /// Runs a command on rsmq's shared connection (which replaces itself after a break).
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, EngineError> {
        self.track(self.rsmq.query(cmd).await)
    }

    /// Maps an rsmq result to the engine's, noting whether Redis was reached: the first
    /// failure for want of Redis logs the outage, the first success after it logs and counts
    /// the recovery. (Any answer from Redis, an error reply included, proves it reachable.)
    fn track<T>(&self, result: Result<T, RsmqError>) -> Result<T, EngineError> {
        let result = result.map_err(map_err);
        let unreachable = result.as_ref().err().filter(|e| e.is_unavailable());
        let reachable = unreachable.is_none();
        if self.reachable.swap(reachable, Ordering::Relaxed) != reachable {
            match unreachable {
                Some(err) => warn!(
                    cause = %err,
                    "redis unreachable: engine calls fail with `unavailable` until it answers again"
                ),
                None => {
                    self.command_reconnects.inc();
                    self.redis_back.notify_one();
                    info!("redis reachable again");
                }
            }
        }
        result
    }
}

impl QueueStore for RedisEngine {
    fn ensure_queue<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<bool, EngineError>> {
        async move {
            let created = match self
                .rsmq
                .create_queue(queue, &QueueOptions::default())
                .await
            {
                Ok(()) => Ok(true),
                Err(RsmqError::QueueExists) => Ok(false),
                Err(other) => Err(other),
            };
            self.track(created)
        }
        .boxed()
    }

    fn queue_exists<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<bool, EngineError>> {
        async move {
            let exists = match self.rsmq.get_queue_attributes(queue).await {
                Ok(_) => Ok(true),
                Err(RsmqError::QueueNotFound) => Ok(false),
                Err(other) => Err(other),
            };
            self.track(exists)
        }
        .boxed()
    }

    fn create_queue<'a>(
        &'a self,
        queue: &'a str,
        rules: &'a QueueRules,
    ) -> BoxFuture<'a, Result<bool, EngineError>> {
        async move {
            let options = QueueOptions {
                maxreceives: Some(rules.max_receives),
                ttl: Some(rules.ttl),
                deadletter: rules.dead_letter.clone(),
                ..QueueOptions::default()
            };
            let created = match self.rsmq.create_queue(queue, &options).await {
                Ok(()) => Ok(true),
                Err(RsmqError::QueueExists) => Ok(false),
                Err(err) => Err(err),
            };
            self.track(created)
        }
        .boxed()
    }

    fn receive<'a>(
        &'a self,
        queue: &'a str,
        max: usize,
        vt: Option<u64>,
    ) -> BoxFuture<'a, Result<Received, EngineError>> {
        async move {
            // One script call: the batch, and when the queue's next hidden message becomes
            // visible, so a subscriber that drained the queue sleeps exactly that long.
            let batch = self.track(self.rsmq.receive_batch_next(queue, max, vt).await)?;
            let messages = batch
                .messages
                .into_iter()
                .map(|m| QueueMessage {
                    id: m.id,
                    body: m.message,
                    rc: m.rc,
                    sent: m.sent,
                })
                .collect();
            if batch.dead.corrupt > 0 {
                let first = self
                    .corrupt_warned
                    .lock()
                    .expect("corrupt queue set poisoned")
                    .insert(queue.to_owned());
                let count = batch.dead.corrupt;
                if first {
                    warn!(
                        queue,
                        count,
                        "skipped messages whose receive count is not a number; fix or delete them"
                    );
                } else {
                    debug!(queue, count, "skipped corrupt messages again");
                }
            }
            Ok(Received {
                messages,
                next_visible: batch.next_visible_ms.map(Duration::from_millis),
                dead: batch.dead,
            })
        }
        .boxed()
    }

    fn ack<'a>(
        &'a self,
        queue: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        async move { self.track(self.rsmq.delete_batch(queue, ids).await) }.boxed()
    }

    fn release<'a>(
        &'a self,
        queue: &'a str,
        held: &'a [Held],
        delay_secs: u64,
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        async move {
            let held = as_rsmq(held);
            let released = self.rsmq.release_held(queue, &held, delay_secs).await;
            self.track(released)
        }
        .boxed()
    }

    fn dead_letter<'a>(
        &'a self,
        queue: &'a str,
        held: &'a [Held],
    ) -> BoxFuture<'a, Result<DeadLettered, EngineError>> {
        async move {
            let held = as_rsmq(held);
            self.track(self.rsmq.dead_letter_held(queue, &held).await)
        }
        .boxed()
    }

    fn send<'a>(
        &'a self,
        queue: &'a str,
        body: &'a str,
        delay: Option<u64>,
    ) -> BoxFuture<'a, Result<String, EngineError>> {
        async move { self.track(self.rsmq.send_message(queue, body, delay).await) }.boxed()
    }

    fn send_replicated<'a>(
        &'a self,
        queue: &'a str,
        body: &'a str,
        delay: Option<u64>,
        replicas: u32,
    ) -> BoxFuture<'a, Result<String, EngineError>> {
        async move {
            let sent = self
                .rsmq
                .send_batch_replicated(queue, &[body], delay, replicas, REPLICA_WAIT)
                .await;
            let mut ids = match sent {
                // Redis answered: the write is on the master, short of replicas. Retrying is
                // the publisher's call (the message may then be there twice).
                Err(err @ RsmqError::NotReplicated { .. }) => {
                    return Err(EngineError::Unavailable(err.to_string()));
                }
                other => self.track(other)?,
            };
            ids.pop()
                .ok_or_else(|| EngineError::Internal("send returned no id".to_owned()))
        }
        .boxed()
    }

    fn watch_queue(&self, queue: &str) -> QueueWatch {
        let (wake, guard) = self.queues.join(queue, || Arc::new(QueueWake::new()));
        QueueWatch {
            notify: Arc::clone(&wake.notify),
            listening: Some(Arc::clone(&wake.listening)),
            _guard: guard,
        }
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        async move {
            if !self.rsmq.is_cluster() {
                return self.query::<()>(&redis::cmd("PING")).await;
            }
            // Every node answers PING while slots are uncovered; the cluster's own verdict
            // says whether every queue can be served.
            let mut info = redis::cmd("CLUSTER");
            info.arg("INFO");
            let info: String = self.query(&info).await?;
            if info.lines().any(|line| line.trim() == "cluster_state:ok") {
                Ok(())
            } else {
                Err(EngineError::Unavailable(
                    "redis cluster state is not ok (slots uncovered or a majority unreachable)"
                        .to_owned(),
                ))
            }
        }
        .boxed()
    }
}

impl Broker for RedisEngine {
    fn start(&self, handler: &Arc<dyn BrokerHandler>) {
        self.handler.set(handler);
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        async move {
            let mut cmd = if self.shards.is_some() {
                let mut cmd = redis::cmd("SPUBLISH");
                cmd.arg(keys::Carrier::Plain.sharded(channel));
                cmd
            } else {
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(keys::channel(channel));
                cmd
            };
            cmd.arg(body);
            self.query(&cmd).await
        }
        .boxed()
    }

    fn publish_with_history<'a>(
        &'a self,
        channel: &'a str,
        body: &'a str,
        history: HistoryPolicy,
    ) -> BoxFuture<'a, Result<Published, EngineError>> {
        self.publish_at(channel, body, history).boxed()
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        history: HistoryPolicy,
        range: HistoryRange,
        limit: u64,
    ) -> BoxFuture<'a, Result<HistoryPage, EngineError>> {
        self.read_history(channel, history, range, limit).boxed()
    }

    fn subscribe(&self, channel: &str) {
        self.want_channel(channel, true);
    }

    fn unsubscribe(&self, channel: &str) {
        self.want_channel(channel, false);
    }

    fn channel_listening(&self, channel: &str) -> Option<Arc<super::Listening>> {
        if let Some((_, shared)) = &self.shards {
            let wakes = shared.wakes.lock().expect("shard wakes poisoned");
            return wakes.get(channel).map(|wake| Arc::clone(&wake.listening));
        }
        let wakes = self.channel_wakes.lock().expect("channel wakes poisoned");
        wakes.get(channel).map(|wake| Arc::clone(&wake.listening))
    }
}

impl Presence for RedisEngine {
    fn add<'a>(
        &'a self,
        members: &'a [Membership<'a>],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<PresenceChanges, EngineError>> {
        self.presence_add(members, ttl).boxed()
    }

    fn remove<'a>(
        &'a self,
        members: &'a [Membership<'a>],
    ) -> BoxFuture<'a, Result<PresenceChanges, EngineError>> {
        self.presence_remove(members).boxed()
    }

    fn sweep<'a>(
        &'a self,
        channels: &'a [&'a str],
        max: usize,
    ) -> BoxFuture<'a, Result<PresenceChanges, EngineError>> {
        self.presence_sweep(channels, max).boxed()
    }

    fn members<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<PresenceList, EngineError>> {
        self.presence_members(channel, limit).boxed()
    }

    fn announce<'a>(
        &'a self,
        channel: &'a str,
        joined: &'a [String],
        left: &'a [String],
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        self.presence_announce(channel, joined, left).boxed()
    }
}

impl ClusterState for RedisEngine {
    fn check_credentials<'a>(
        &'a self,
        queries: &'a [CredentialQuery<'a>],
    ) -> BoxFuture<'a, Result<CredentialChecks, EngineError>> {
        async move {
            // TIME first: see the trait. A pipeline keeps the order of its commands. Errors
            // stay per command, so that one user's damaged key fails that user, not the batch.
            let cluster = self.rsmq.is_cluster();
            let mut pipe = redis::pipe();
            pipe.ignore_errors().cmd("TIME");
            for query in queries {
                let (revoked, access) = if cluster {
                    (
                        keys::revoked_tagged(query.user),
                        keys::access_tokens_tagged(query.user),
                    )
                } else {
                    (keys::revoked(query.user), keys::access_tokens(query.user))
                };
                pipe.cmd("GET").arg(revoked);
                if let Some(token) = query.access_token {
                    pipe.cmd("SISMEMBER").arg(access).arg(token);
                }
            }
            // On a cluster the users' keys are on several masters: one command each, in
            // parallel (`query_each`).
            let replies = self.track(self.rsmq.query_each(&pipe).await)?;
            read_credential_replies(replies, queries)
        }
        .boxed()
    }

    fn revocations(&self) -> broadcast::Receiver<Revocation> {
        self.revocations.subscribe()
    }

    fn write_heartbeat<'a>(
        &'a self,
        heartbeat: &'a NodeHeartbeat,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        async move {
            let json = serde_json::to_string(heartbeat)
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
            let mut cmd = redis::cmd("SET");
            cmd.arg(keys::node(&heartbeat.id))
                .arg(json)
                .arg("EX")
                .arg(keys::NODE_TTL_SECS);
            self.query::<()>(&cmd).await
        }
        .boxed()
    }

    fn remove_heartbeat<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(keys::node(node_id));
            self.query::<()>(&cmd).await
        }
        .boxed()
    }
}

/// Reads the replies of [`ClusterState::check_credentials`]'s pipeline: `TIME`, then per query
/// the mark's `GET` and, when the query names an access token, its `SISMEMBER`.
///
/// These are answers from Redis, so they are read as untrusted input (and fuzzed as such, see
/// docs/fuzzing.md): whatever a damaged or foreign key holds fails closed. A mark that is not
/// decimal digits was not written by wsmq; it still says the user was revoked, so it counts
/// as a revocation now. A token is registered only on SISMEMBER's own "yes" (`1`, or RESP3's
/// `true`), never on another reply that a lenient conversion would call true.
pub fn read_credential_replies(
    replies: Vec<redis::Value>,
    queries: &[CredentialQuery<'_>],
) -> Result<CredentialChecks, EngineError> {
    let mut replies = replies.into_iter();
    let unexpected = |what: &str| EngineError::Invalid(format!("unexpected reply to {what}"));
    let secs = replies
        .next()
        .as_ref()
        .and_then(time_secs)
        .ok_or_else(|| unexpected("TIME"))?;
    let mut checks = Vec::with_capacity(queries.len());
    for query in queries {
        let revoked_at = match replies.next() {
            Some(value) => revocation_mark(&value, secs),
            None => return Err(unexpected("GET")),
        };
        let registered = match query.access_token {
            Some(_) => match replies.next() {
                Some(value) => Some(is_member(&value)),
                None => return Err(unexpected("SISMEMBER")),
            },
            None => None,
        };
        checks.push(CredentialCheck {
            revoked_at,
            registered,
        });
    }
    Ok(CredentialChecks { now: secs, checks })
}

/// The revocation mark a `GET wsmq:revoked:U` answered, `now` for one wsmq did not write.
///
/// wsmq writes the revocation time as decimal digits. Anything else that is there still says
/// the user was revoked, so it reads as a revocation now, and never through a numeric cast:
/// those turn `-1` into 2^64-1 and a NaN double into 0, a mark that revokes nothing.
fn revocation_mark(value: &redis::Value, now: u64) -> Option<u64> {
    match value {
        redis::Value::Nil => None,
        redis::Value::Attribute { data, .. } => revocation_mark(data, now),
        value => Some(decimal(value).unwrap_or(now)),
    }
}

/// `TIME`'s seconds: a pair of decimal numbers, seconds and microseconds.
fn time_secs(value: &redis::Value) -> Option<u64> {
    match value {
        redis::Value::Array(parts) => match parts.as_slice() {
            [secs, micros] => decimal(micros).and(decimal(secs)),
            _ => None,
        },
        redis::Value::Attribute { data, .. } => time_secs(data),
        _ => None,
    }
}

/// A non-negative integer as Redis sends one: decimal digits, or a RESP integer.
fn decimal(value: &redis::Value) -> Option<u64> {
    let digits = |bytes: &[u8]| {
        if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(bytes).ok()?.parse::<u64>().ok()
    };
    match value {
        redis::Value::BulkString(bytes) => digits(bytes),
        redis::Value::SimpleString(text) => digits(text.as_bytes()),
        redis::Value::Int(n) => u64::try_from(*n).ok(),
        redis::Value::Attribute { data, .. } => decimal(data),
        _ => None,
    }
}

/// SISMEMBER's "yes": `1` (RESP2) or `true` (RESP3), possibly under RESP3 attributes.
fn is_member(value: &redis::Value) -> bool {
    match value {
        redis::Value::Int(1) | redis::Value::Boolean(true) => true,
        redis::Value::Attribute { data, .. } => is_member(data),
        _ => false,
    }
}

fn as_rsmq(held: &[Held]) -> Vec<wsmq_rsmq::Held<'_>> {
    held.iter()
        .map(|h| wsmq_rsmq::Held {
            id: &h.id,
            rc: h.rc,
        })
        .collect()
}

/// rsmq errors as engine errors. Only a Redis that cannot be reached (or says it cannot serve
/// now) is `Unavailable`, which readiness and the outage log follow; an error reply about the
/// data (WRONGTYPE, "not an integer") or a reply of the wrong shape is `Internal`: Redis is up,
/// and retrying will not help.
fn map_err(err: RsmqError) -> EngineError {
    match err {
        RsmqError::QueueNotFound => EngineError::QueueNotFound,
        RsmqError::MessageTooLong => EngineError::TooLarge,
        RsmqError::Connect(_) | RsmqError::Pool(_) => EngineError::Unavailable(err.to_string()),
        RsmqError::ClusterMismatch { server_is_cluster } => EngineError::Invalid(
            if server_is_cluster {
                "redis is a cluster node: run with --redis-cluster (WSMQ_REDIS_CLUSTER=1) and its nodes in --redis-url"
            } else {
                "--redis-cluster is set but redis is not a cluster node (cluster support disabled)"
            }
            .to_owned(),
        ),
        RsmqError::Redis(ref e) if unreachable(e) => EngineError::Unavailable(err.to_string()),
        RsmqError::Redis(_) | RsmqError::UnexpectedReply(_) => {
            EngineError::Internal(err.to_string())
        }
        other => EngineError::Invalid(other.to_string()),
    }
}

/// Whether a Redis error means "not reachable now" rather than "refused this command".
fn unreachable(err: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() {
        return true;
    }
    matches!(
        err.kind(),
        ErrorKind::Io
            | ErrorKind::AuthenticationFailed
            | ErrorKind::ClusterConnectionNotFound
            | ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
    )
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::*;

    fn time() -> Value {
        Value::Array(vec![
            Value::BulkString(b"1700000000".to_vec()),
            Value::BulkString(b"5".to_vec()),
        ])
    }

    fn one(mark: Value, member: Value) -> CredentialCheck {
        let query = CredentialQuery {
            user: "u",
            access_token: Some("00ff"),
        };
        let answer = read_credential_replies(vec![time(), mark, member], &[query]).unwrap();
        assert_eq!(answer.now, 1_700_000_000);
        answer.checks[0]
    }

    #[test]
    fn only_sismembers_own_yes_registers_a_token() {
        // A lenient conversion to bool calls `OK`, `2` and the string "1" true; SISMEMBER
        // never answers them, so a registry that does is not one to trust.
        for (reply, registered) in [
            (Value::Int(1), true),
            (Value::Boolean(true), true),
            (Value::Int(0), false),
            (Value::Okay, false),
            (Value::Int(2), false),
            (Value::BulkString(b"1".to_vec()), false),
            (Value::SimpleString("1".into()), false),
            (Value::Nil, false),
            (Value::Array(vec![Value::Int(1)]), false),
        ] {
            let check = one(Value::Nil, reply.clone());
            assert_eq!(check.registered, Some(registered), "{reply:?}");
            assert_eq!(check.revoked_at, None);
        }
    }

    #[test]
    fn a_damaged_mark_revokes_as_of_now() {
        let check = one(Value::BulkString(b"1699999000".to_vec()), Value::Int(1));
        assert_eq!(check.revoked_at, Some(1_699_999_000));
        // A numeric cast reads -1 as 2^64-1 and NaN as 0 (which would revoke nothing).
        for mark in [
            Value::BulkString(b"soon".to_vec()),
            Value::BulkString(b"+5".to_vec()),
            Value::BulkString(b"".to_vec()),
            Value::Int(-1),
            Value::Double(f64::NAN),
            Value::Double(5.0),
            Value::Okay,
            Value::Array(vec![]),
        ] {
            assert_eq!(
                one(mark.clone(), Value::Int(1)).revoked_at,
                Some(1_700_000_000)
            );
        }
    }

    #[test]
    fn missing_replies_are_an_error_not_a_pass() {
        let query = CredentialQuery {
            user: "u",
            access_token: Some("00ff"),
        };
        assert!(read_credential_replies(vec![time(), Value::Nil], &[query]).is_err());
        assert!(read_credential_replies(vec![Value::Okay, Value::Nil], &[query]).is_err());
        assert!(read_credential_replies(vec![], &[]).is_err());
        // A clock of -1 s is no clock (a cast would make it 2^64-1).
        let negative = Value::Array(vec![Value::Int(-1), Value::Int(0)]);
        assert!(read_credential_replies(vec![negative], &[]).is_err());
    }
}
