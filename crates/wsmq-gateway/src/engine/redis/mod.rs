//! The Redis engine: rsmq queues through `wsmq-rsmq`, pub/sub through one connection per node.
//!
//! Queue operations go through [`Rsmq`] (one round trip each, batches included; realtime on,
//! so every send publishes `{ns}:rt:{q}`). The few other commands (the access-token registry,
//! heartbeats, channel publishes, the next-visible lookup) share one multiplexed connection.
//! Notifications arrive on the node's single pub/sub connection ([`pubsub`]), which
//! subscribes only to what local sessions need.

mod pubsub;

use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, FutureExt};
use prometheus_client::metrics::counter::Counter;
use redis::{AsyncConnectionConfig, Client, aio::MultiplexedConnection};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::info;
use wsmq_proto::{NodeHeartbeat, keys};
use wsmq_rsmq::{QueueOptions, Rsmq, RsmqError, RsmqOptions};

use self::pubsub::{PubSub, PubSubCommand};
use super::{ChannelSubscription, Delivery, Engine, EngineError, QueueWatch, Received};
use crate::{channels::ChannelHub, engine::interest::Interests};

/// How long a command connection waits for a reply.
const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Queues and channels in a Redis shared by every node.
pub struct RedisEngine {
    /// rsmq over the shared pool.
    rsmq: Rsmq,
    /// Opens the command and pub/sub connections.
    client: Client,
    /// The multiplexed connection for non-rsmq commands; `None` until first use or after it
    /// broke.
    conn: Mutex<Option<MultiplexedConnection>>,
    /// Queues with local consumers: queue → wake-up (realtime notifications).
    queues: Arc<Interests<Arc<Notify>>>,
    /// Channels with local subscribers.
    hub: Arc<ChannelHub>,
    /// Revoked user ids, from `wsmq:revoke`.
    revocations: broadcast::Sender<String>,
    /// Stops the pub/sub task when the engine goes away (the task holds the registries, whose
    /// callbacks hold its command sender, so it would not notice otherwise).
    _pubsub: DropGuard,
}

impl RedisEngine {
    /// Connects to Redis (checking it answers) and starts the pub/sub connection.
    ///
    /// `reconnects` counts reconnections of the pub/sub connection (a metric).
    ///
    /// # Errors
    ///
    /// [`EngineError::Unavailable`] when Redis cannot be reached.
    pub async fn connect(
        url: &str,
        ns: &str,
        reconnects: Counter,
    ) -> Result<Arc<RedisEngine>, EngineError> {
        let options = RsmqOptions {
            ns: ns.to_owned(),
            realtime: true,
        };
        let rsmq = Rsmq::connect(url, options).await.map_err(map_err)?;
        let client = Client::open(url).map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let rt_prefix = format!("{ns}:rt:");
        let queue_commands = commands.clone();
        let prefix = rt_prefix.clone();
        let queues = Interests::new(Box::new(move |queue: &str, first: bool| {
            let _ = queue_commands.send(PubSubCommand::toggle(format!("{prefix}{queue}"), first));
        }));
        let hub = Arc::new(ChannelHub::new(Box::new(
            move |channel: &str, first: bool| {
                let _ = commands.send(PubSubCommand::toggle(keys::channel(channel), first));
            },
        )));
        let revocations = broadcast::channel(256).0;
        let stop = CancellationToken::new();
        let pubsub = PubSub {
            stop: stop.clone(),
            client: client.clone(),
            commands: command_rx,
            rt_prefix,
            queues: Arc::clone(&queues),
            hub: Arc::clone(&hub),
            revocations: revocations.clone(),
            reconnects,
        };
        pubsub.start().await?;
        info!(ns, "redis engine connected");
        Ok(Arc::new(RedisEngine {
            rsmq,
            client,
            conn: Mutex::new(None),
            queues,
            hub,
            revocations,
            _pubsub: stop.drop_guard(),
        }))
    }

    /// The shared command connection, opened on first use or after a failure.
    async fn conn(&self) -> Result<MultiplexedConnection, EngineError> {
        if let Some(conn) = self.conn.lock().expect("conn poisoned").clone() {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        *self.conn.lock().expect("conn poisoned") = Some(conn.clone());
        Ok(conn)
    }

    /// Runs a command on the shared connection, dropping the connection if it failed so
    /// the next call opens a fresh one.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, EngineError> {
        let mut conn = self.conn().await?;
        match cmd.query_async(&mut conn).await {
            Ok(value) => Ok(value),
            Err(err) => {
                if err.is_io_error() || err.is_connection_dropped() || err.is_timeout() {
                    *self.conn.lock().expect("conn poisoned") = None;
                }
                Err(EngineError::Unavailable(err.to_string()))
            }
        }
    }

    /// Milliseconds until the first hidden message of `queue` becomes visible, from its ZSET
    /// and Redis `TIME` in one pipeline.
    async fn next_visible(&self, queue: &str) -> Result<Option<u64>, EngineError> {
        let zset = format!("{}:{queue}", self.rsmq.ns());
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE")
            .arg(&zset)
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .cmd("TIME");
        let mut conn = self.conn().await?;
        let (first, time): (Vec<(String, f64)>, (u64, u64)) = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let now_ms = time.0 * 1000 + time.1 / 1000;
        Ok(first
            .first()
            .map(|(_, score)| (*score as u64).saturating_sub(now_ms)))
    }
}

impl Engine for RedisEngine {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn ensure_queue<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        async move {
            match self
                .rsmq
                .create_queue(queue, &QueueOptions::default())
                .await
            {
                Ok(()) | Err(RsmqError::QueueExists) => Ok(()),
                Err(err) => Err(map_err(err)),
            }
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
            let messages = self
                .rsmq
                .receive_batch(queue, max, vt)
                .await
                .map_err(map_err)?;
            // A short batch drained what is visible: learn when the next message appears so
            // the subscriber can sleep exactly that long. (One extra round trip, only when
            // idle-ish; a receive that also returned this would save it.)
            let next_visible = if messages.len() < max {
                self.next_visible(queue)
                    .await
                    .ok()
                    .flatten()
                    .map(std::time::Duration::from_millis)
            } else {
                None
            };
            let deliveries = messages
                .into_iter()
                .map(|m| Delivery {
                    id: m.id,
                    body: m.message,
                    rc: m.rc,
                    sent: m.sent,
                })
                .collect();
            Ok(Received {
                deliveries,
                next_visible,
            })
        }
        .boxed()
    }

    fn ack<'a>(
        &'a self,
        queue: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        async move { self.rsmq.delete_batch(queue, ids).await.map_err(map_err) }.boxed()
    }

    fn nack<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
        delay_secs: u64,
    ) -> BoxFuture<'a, Result<bool, EngineError>> {
        async move {
            self.rsmq
                .change_message_visibility(queue, id, delay_secs)
                .await
                .map_err(map_err)
        }
        .boxed()
    }

    fn send<'a>(
        &'a self,
        queue: &'a str,
        body: &'a str,
        delay: Option<u64>,
    ) -> BoxFuture<'a, Result<String, EngineError>> {
        async move {
            self.rsmq
                .send_message(queue, body, delay)
                .await
                .map_err(map_err)
        }
        .boxed()
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        async move {
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(keys::channel(channel)).arg(body);
            self.query(&cmd).await
        }
        .boxed()
    }

    fn watch_queue(&self, queue: &str) -> QueueWatch {
        let (notify, guard) = self.queues.join(queue, || Arc::new(Notify::new()));
        QueueWatch {
            notify,
            _guard: guard,
        }
    }

    fn subscribe_channel(&self, channel: &str) -> ChannelSubscription {
        self.hub.subscribe(channel)
    }

    fn is_access_token_registered<'a>(
        &'a self,
        user: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, EngineError>> {
        async move {
            let mut cmd = redis::cmd("SISMEMBER");
            cmd.arg(keys::access_tokens(user)).arg(token);
            self.query(&cmd).await
        }
        .boxed()
    }

    fn revocations(&self) -> broadcast::Receiver<String> {
        self.revocations.subscribe()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        async move { self.query::<()>(&redis::cmd("PING")).await }.boxed()
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

/// rsmq errors as engine errors (transport failures are `Unavailable`).
fn map_err(err: RsmqError) -> EngineError {
    match err {
        RsmqError::QueueNotFound => EngineError::QueueNotFound,
        RsmqError::MessageTooLong => EngineError::TooLarge,
        RsmqError::Connect(_)
        | RsmqError::Redis(_)
        | RsmqError::Pool(_)
        | RsmqError::UnexpectedReply(_) => EngineError::Unavailable(err.to_string()),
        other => EngineError::Invalid(other.to_string()),
    }
}
