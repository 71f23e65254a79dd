//! The RabbitMQ engine: queues, channels and cluster messages over AMQP 0-9-1 (lapin).
//!
//! # Topology
//!
//! - Queue `q` is the durable quorum queue `{prefix}q`, bound to the durable direct exchange
//!   `--amqp-exchange` (default `wsmq.direct`) with binding key `q`, so a publisher reaches
//!   user `q` with `basic.publish(exchange, "q", body)`.
//! - Channels: topic exchange `wsmq.channels`, routing key = channel name; each node has one
//!   exclusive auto-delete queue, bound once per channel with local subscribers.
//! - Control: topic exchange `wsmq.control`; the node queue is bound with `revoke` (body: a
//!   user id), and heartbeats are published as `heartbeat.{node}` / `gone.{node}`.
//! - Delayed sends: headers exchange `wsmq.delay` routes a message with header
//!   `wsmq-delay: N` to the queue `{prefix}wsmq.delay.N` (per-queue TTL N s, dead-lettered to
//!   the direct exchange under its original routing key, so it lands in `q` when due).
//!
//! # From a push consumer to the gateway's pull
//!
//! [`QueueStore::receive`] is a pull: "give me up to `max`". While a queue has local
//! subscribers ([`QueueStore::watch_queue`] is held), the node runs ONE consumer on it with
//! prefetch = the window (`basic.qos` per consumer, all consumers on one channel): the broker
//! pushes up to that many unacked messages, the consumer buffers them and wakes the queue's
//! subscribers, and `receive` takes from the buffer. Without local subscribers (the CLI, a
//! test, a first receive before the consumer is up) `receive` uses `basic.get`. A message
//! handed out stays unacked on the broker until `ack` (`basic.ack`), `release`/a nack
//! (`basic.reject` with requeue) or its vt, after which the node rejects it back itself; a
//! nack with a delay keeps it unacked here until the delay passed. A dead node's or closed
//! connection's unacked messages are requeued by the broker. `rc` is the quorum queue's
//! `x-delivery-count` + 1.
//!
//! # Queue rules
//!
//! wsmq's [`QueueRules`] become arguments of the quorum queue when it is created (see
//! `AmqpEngine::declare_queue` and docs/amqp.md): max receives N is `x-delivery-limit`
//! N - 1, ttl is `x-message-ttl`, the dead-letter queue is `x-dead-letter-exchange` (the direct
//! exchange) with `x-dead-letter-routing-key`. RabbitMQ then dead-letters on its own, when a
//! message is returned or expires; a dead nack is `basic.reject` without requeue. Channel
//! history is not offered: the configuration refuses it beside `--amqp-url`.
//!
//! # When the broker goes away
//!
//! A supervisor task owns the connection: when it breaks, calls fail with
//! [`EngineError::Unavailable`] (and `/readyz` is 503) while it reconnects with backoff;
//! then it declares the topology again, rebinds the node queue and restarts the consumers of
//! the queues that still have local subscribers. What was in flight was requeued by the
//! broker and is delivered again. Revocations announced while the node queue was gone are
//! lost, so the node is told ([`Revocation::Missed`]) and checks its sessions.

mod config;
mod local;
mod url;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{
    StreamExt,
    future::{BoxFuture, FutureExt},
};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, Event, ExchangeKind,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions,
        BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
        ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    },
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::{AMQPValue, FieldTable, ShortString},
};
use tokio::{
    sync::{Notify, broadcast, mpsc},
    time::Instant,
};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{info, warn};
use wsmq_proto::NodeHeartbeat;

use self::local::{Holding, InFlight, LateAcks, QueueWake, to_message};
pub use self::{
    config::{AmqpConfig, DEFAULT_EXCHANGE},
    url::{AmqpUrl, AmqpUrlArg},
};
use super::{
    Broker, BrokerHandler, ClusterState, CredentialCheck, CredentialChecks, CredentialQuery,
    DeadCounts, DeadLettered, Engine, EngineError, HandlerSlot, Held, HistoryPage, HistoryPolicy,
    HistoryRange, Presence, Published, QueueRules, QueueStore, QueueWatch, Received, Revocation,
    interest::Interests, redis::RedisEngine,
};
use crate::clock;

/// The rules of a queue created without any (`ensure_queue`).
static DEFAULT_RULES: QueueRules = QueueRules {
    max_receives: 0,
    ttl: 0,
    dead_letter: None,
};

/// The topic exchange of channels.
pub const CHANNELS_EXCHANGE: &str = "wsmq.channels";
/// The topic exchange of revocations and heartbeats.
pub const CONTROL_EXCHANGE: &str = "wsmq.control";
/// The headers exchange that routes delayed sends to their delay queue.
pub const DELAY_EXCHANGE: &str = "wsmq.delay";
/// Routing key of a revocation on [`CONTROL_EXCHANGE`] (body: the user id).
pub const REVOKE_KEY: &str = "revoke";

/// The header that routes a delayed send (`x-` headers are not matched by RabbitMQ).
const DELAY_HEADER: &str = "wsmq-delay";
/// How long a delay queue outlives its last use (its messages have all expired by then).
const DELAY_QUEUE_SPARE: Duration = Duration::from_secs(60);
/// Reconnection backoff.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the supervisor checks that the connection's channels are all open.
const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// How long an ack that came after its link went away is remembered, to ack the message when
/// it comes back (RabbitMQ requeued it) instead of delivering it again.
const LATE_ACK_MEMORY: Duration = Duration::from_secs(300);
/// How long a release waits for the cancel of the queue's consumer.
const STOP_WAIT: Duration = Duration::from_secs(2);
/// The reaper looks at least this often, even without a deadline in sight.
const REAP_IDLE: Duration = Duration::from_secs(1);

/// How the engine reaches RabbitMQ and names things there.
#[derive(Debug, Clone)]
pub struct AmqpOptions {
    /// The broker.
    pub url: AmqpUrl,
    /// Put before every queue name on the broker (`--amqp-queue-prefix`).
    pub queue_prefix: String,
    /// The durable direct exchange of user queues (`--amqp-exchange`).
    pub exchange: String,
    /// Prefetch of each queue consumer: the subscription window.
    pub prefetch: u16,
}

/// Queues, channels and cluster messages in RabbitMQ; the access-token registry (and a copy of
/// the heartbeats) in Redis when one is given beside it.
pub struct AmqpEngine {
    /// Names and limits.
    options: AmqpOptions,
    /// The current connection; `None` while the broker is unreachable.
    link: RwLock<Option<Arc<Link>>>,
    /// Queues with local subscribers → their consumer and buffer.
    queues: Arc<Interests<Arc<QueueWake>>>,
    /// Queues whose last local subscriber left and whose consumer is being cancelled.
    stopping: Arc<Mutex<HashMap<String, Arc<QueueWake>>>>,
    /// Messages handed out and not settled.
    in_flight: InFlight,
    /// Acks of messages whose link went away, applied when they come back.
    late_acks: LateAcks,
    /// Queue → when the delayed sends this node made become due (for `next_visible`).
    delayed: Mutex<HashMap<String, Vec<Instant>>>,
    /// Queues known to exist on the current link (`basic.get` on a missing queue would close
    /// the channel, so an unknown one is checked first).
    known: Mutex<HashSet<String>>,
    /// Queues declared and bound on the current link: `ensure_queue` (run before every
    /// publish) costs no round trip for them.
    declared: Mutex<HashSet<String>>,
    /// Queues this node created with a dead-letter queue. RabbitMQ does not tell a client
    /// where a rejected message went, so [`DeadLettered::moved`] says what this node knows:
    /// `false` for a queue some other node or tool created.
    dead_lettering: Mutex<HashSet<String>>,
    /// Channels the node wants (bound again after a reconnect).
    channels: Mutex<HashSet<String>>,
    /// Requests to the supervisor, which owns the node queue and the consumers.
    commands: mpsc::UnboundedSender<Command>,
    /// The node's hub.
    handler: Arc<HandlerSlot>,
    /// Revoked users, from the control exchange (and Redis, when given), and the notice that
    /// some may have been missed while a link was down.
    revocations: broadcast::Sender<Revocation>,
    /// The Redis beside, for the access-token registry.
    redis: Option<Arc<RedisEngine>>,
    /// Wakes the reaper when a deadline was set.
    reaper: Arc<Notify>,
    /// Last id timestamp, µs: ids of this node strictly increase.
    last_id_us: AtomicU64,
    /// Whether the last call reached the broker (its flips are logged once).
    reachable: AtomicBool,
    /// Stops the supervisor and the reaper with the engine.
    _stop: DropGuard,
}

/// One connection and its channels.
struct Link {
    /// Counts connections: what came on an older one is dead.
    generation: u64,
    conn: Connection,
    /// Publishes, in confirm mode.
    publish: Channel,
    /// The consumers of user queues (prefetch per consumer).
    consume: Channel,
    /// `basic.get` of receives without a local consumer.
    get: Channel,
    /// Declarations and checks; an error closes it, and it is replaced.
    ops: tokio::sync::Mutex<Channel>,
    /// The node queue's consumer (kept here: a channel closes when its last handle goes).
    node: Channel,
    /// The node's exclusive queue (channels and control).
    node_queue: ShortString,
}

impl Link {
    /// Whether the connection and every channel the node shares are open.
    fn is_whole(&self) -> bool {
        self.conn.status().connected()
            && self.publish.status().connected()
            && self.consume.status().connected()
            && self.get.status().connected()
            && self.node.status().connected()
    }
}

/// Work for the supervisor, in the order it was asked for.
enum Command {
    /// Start the consumer of a queue that got its first local subscriber.
    Consume(String, Arc<QueueWake>),
    /// Stop it: the last local subscriber left.
    Cancel(String, Arc<QueueWake>),
    /// Bind or unbind a channel on the node queue.
    Channel(String, bool),
}

impl AmqpEngine {
    /// Connects, declares the exchanges and the node queue, and starts the supervisor; with
    /// `redis`, access tokens are checked there and its revocations count too.
    ///
    /// # Errors
    ///
    /// [`EngineError::Unavailable`] when the broker cannot be reached, `Invalid` when it
    /// refuses the topology (an exchange of another type under the same name).
    pub async fn connect(
        options: AmqpOptions,
        redis: Option<Arc<RedisEngine>>,
    ) -> Result<Arc<AmqpEngine>, EngineError> {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let queue_commands = commands.clone();
        let stopping: Arc<Mutex<HashMap<String, Arc<QueueWake>>>> = Arc::default();
        let stopping_now = Arc::clone(&stopping);
        let queues = Interests::new(Box::new(
            move |queue: &str, wake: &Arc<QueueWake>, first: bool| {
                let command = if first {
                    Command::Consume(queue.to_owned(), Arc::clone(wake))
                } else {
                    // From now on deliveries go back; releases wait for the cancel.
                    wake.cancelled.store(true, Ordering::SeqCst);
                    stopping_now
                        .lock()
                        .expect("stopping poisoned")
                        .insert(queue.to_owned(), Arc::clone(wake));
                    Command::Cancel(queue.to_owned(), Arc::clone(wake))
                };
                let _ = queue_commands.send(command);
            },
        ));
        let stop = CancellationToken::new();
        let engine = Arc::new(AmqpEngine {
            options,
            link: RwLock::new(None),
            queues,
            stopping,
            in_flight: InFlight::default(),
            late_acks: LateAcks::default(),
            delayed: Mutex::default(),
            known: Mutex::default(),
            declared: Mutex::default(),
            dead_lettering: Mutex::default(),
            channels: Mutex::default(),
            commands,
            handler: Arc::new(HandlerSlot::default()),
            revocations: broadcast::channel(256).0,
            redis,
            reaper: Arc::new(Notify::new()),
            last_id_us: AtomicU64::new(0),
            reachable: AtomicBool::new(true),
            _stop: stop.clone().drop_guard(),
        });
        let link = engine.open_link(1).await?;
        info!(url = %engine.options.url, exchange = %engine.options.exchange, "amqp engine connected");
        if let Some(redis) = &engine.redis {
            let mut from_redis = redis.revocations();
            let to = engine.revocations.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        revocation = from_redis.recv() => match revocation {
                            Ok(revocation) => { let _ = to.send(revocation); }
                            // Some were lost on the way here: the node checks its sessions.
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                let _ = to.send(Revocation::Missed);
                            }
                            Err(broadcast::error::RecvError::Closed) => break,
                        },
                    }
                }
            });
        }
        tokio::spawn(supervise(
            Arc::downgrade(&engine),
            link,
            command_rx,
            stop.clone(),
        ));
        tokio::spawn(reap(
            Arc::downgrade(&engine),
            Arc::clone(&engine.reaper),
            stop,
        ));
        Ok(engine)
    }

    /// This engine as the gateway holds it.
    pub fn engine(self: &Arc<Self>) -> Engine {
        Engine::whole("amqp", Arc::clone(self))
    }

    /// How many messages are ready in the queue (not counting those delivered and unacked)
    /// and how many consumers it has, from a passive declare.
    ///
    /// # Errors
    ///
    /// `QueueNotFound`, or `Unavailable`.
    pub async fn queue_counts(&self, queue: &str) -> Result<(u32, u32), EngineError> {
        let link = self.track(self.link())?;
        let name = self.queue_name(queue);
        self.with_ops(&link, |ops| {
            async move {
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                };
                let declared = ops
                    .queue_declare(name, passive, FieldTable::default())
                    .await?;
                Ok((declared.message_count(), declared.consumer_count()))
            }
            .boxed()
        })
        .await
    }

    /// Deletes the queue and its messages; returns how many messages went with it.
    ///
    /// # Errors
    ///
    /// `QueueNotFound` (RabbitMQ itself deletes a missing queue without complaint), or
    /// `Unavailable`.
    pub async fn delete_queue(&self, queue: &str) -> Result<u32, EngineError> {
        self.queue_counts(queue).await?;
        let link = self.track(self.link())?;
        let name = self.queue_name(queue);
        let deleted = self
            .with_ops(&link, |ops| {
                async move {
                    ops.queue_delete(name, lapin::options::QueueDeleteOptions::default())
                        .await
                }
                .boxed()
            })
            .await?;
        self.forget_queue(queue);
        Ok(deleted)
    }

    /// Closes the connection now (a short-lived user such as the CLI; the gateway's engine
    /// closes it when dropped).
    pub async fn close(&self) {
        if let Ok(link) = self.link() {
            let _ = link.conn.close(200, "bye".into()).await;
        }
    }

    /// The broker-side name of queue `q`.
    fn queue_name(&self, queue: &str) -> ShortString {
        format!("{}{queue}", self.options.queue_prefix).into()
    }

    /// The current link, or `Unavailable`.
    fn link(&self) -> Result<Arc<Link>, EngineError> {
        self.link
            .read()
            .expect("link poisoned")
            .clone()
            .ok_or_else(|| EngineError::Unavailable("rabbitmq unreachable; reconnecting".into()))
    }

    /// Connects and sets up everything the node needs on a fresh connection: exchanges, the
    /// node queue with its bindings and consumer, the consumers of watched queues.
    async fn open_link(self: &Arc<Self>, generation: u64) -> Result<Arc<Link>, EngineError> {
        let conn = Connection::connect(
            self.options.url.expose(),
            ConnectionProperties::default().with_connection_name("wsmq-gateway".into()),
        )
        .await
        .map_err(|err| {
            EngineError::Unavailable(format!(
                "cannot connect to RabbitMQ at {}: {err}",
                self.options.url
            ))
        })?;
        let setup = async {
            let publish = conn.create_channel().await?;
            publish
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            let consume = conn.create_channel().await?;
            // Per consumer (global: false): each queue's consumer gets the window.
            consume
                .basic_qos(self.options.prefetch, BasicQosOptions { global: false })
                .await?;
            let get = conn.create_channel().await?;
            let ops = conn.create_channel().await?;
            let durable = ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            };
            let none = FieldTable::default;
            ops.exchange_declare(
                self.options.exchange.as_str().into(),
                ExchangeKind::Direct,
                durable,
                none(),
            )
            .await?;
            ops.exchange_declare(
                CHANNELS_EXCHANGE.into(),
                ExchangeKind::Topic,
                durable,
                none(),
            )
            .await?;
            ops.exchange_declare(
                CONTROL_EXCHANGE.into(),
                ExchangeKind::Topic,
                durable,
                none(),
            )
            .await?;
            ops.exchange_declare(
                DELAY_EXCHANGE.into(),
                ExchangeKind::Headers,
                durable,
                none(),
            )
            .await?;
            let node = conn.create_channel().await?;
            let node_queue = node
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    none(),
                )
                .await?
                .name()
                .clone();
            node.queue_bind(
                node_queue.clone(),
                CONTROL_EXCHANGE.into(),
                REVOKE_KEY.into(),
                QueueBindOptions::default(),
                none(),
            )
            .await?;
            let wanted: Vec<String> = self
                .channels
                .lock()
                .expect("channels poisoned")
                .iter()
                .cloned()
                .collect();
            for channel in wanted {
                node.queue_bind(
                    node_queue.clone(),
                    CHANNELS_EXCHANGE.into(),
                    channel.into(),
                    QueueBindOptions::default(),
                    none(),
                )
                .await?;
            }
            let consumer = node
                .basic_consume(
                    node_queue.clone(),
                    "".into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        exclusive: true,
                        ..BasicConsumeOptions::default()
                    },
                    none(),
                )
                .await?;
            Ok::<_, lapin::Error>((publish, consume, get, ops, node, node_queue, consumer))
        };
        let (publish, consume, get, ops, node, node_queue, node_consumer) = match setup.await {
            Ok(parts) => parts,
            Err(err) => {
                let _ = conn.close(200, "setup failed".into()).await;
                return Err(map_err(err));
            }
        };
        let link = Arc::new(Link {
            generation,
            conn,
            publish,
            consume,
            get,
            ops: tokio::sync::Mutex::new(ops),
            node,
            node_queue,
        });
        tokio::spawn(node_deliveries(
            Arc::downgrade(self),
            node_consumer,
            Arc::clone(&self.handler),
            self.revocations.clone(),
        ));
        // Fresh link: what was known, declared or held belongs to the old one.
        self.known.lock().expect("known poisoned").clear();
        self.declared.lock().expect("declared poisoned").clear();
        *self.link.write().expect("link poisoned") = Some(Arc::clone(&link));
        for (queue, wake) in self.queues.entries() {
            if let Err(err) = self.start_consumer(&link, &queue, &wake).await {
                warn!(queue, cause = %err, "cannot consume the queue after connecting; receives poll it");
            }
        }
        Ok(link)
    }

    /// Makes sure the queue exists (a durable quorum queue) and is bound to the direct
    /// exchange; a missing one is declared with `rules` as its arguments (and its dead-letter
    /// queue first). Returns whether it created the queue.
    ///
    /// RabbitMQ's declare does not say whether it created the queue, and it answers a
    /// redeclaration with other arguments with PRECONDITION_FAILED, so a passive declare
    /// comes first: an existing queue keeps its own arguments, and only a missing one is
    /// declared. That costs one more round trip once per queue and connection (callers keep
    /// what was declared in `declared`). Two nodes that both find the queue missing both
    /// report it created, which spends a user's queue-creation budget twice for one queue:
    /// the budget errs on the strict side.
    async fn declare_queue(
        &self,
        link: &Link,
        queue: &str,
        rules: &QueueRules,
    ) -> Result<bool, EngineError> {
        if let Some(dead) = &rules.dead_letter {
            // Before the queue: a message dead-lettered to a routing key no queue is bound
            // for is dropped.
            self.declare_one(link, dead, &QueueRules::default()).await?;
        }
        let created = self.declare_one(link, queue, rules).await?;
        if created && rules.dead_letter.is_some() {
            self.dead_lettering
                .lock()
                .expect("dead-lettering poisoned")
                .insert(queue.to_owned());
        }
        Ok(created)
    }

    /// [`AmqpEngine::declare_queue`] for one queue, its dead-letter queue aside.
    async fn declare_one(
        &self,
        link: &Link,
        queue: &str,
        rules: &QueueRules,
    ) -> Result<bool, EngineError> {
        let name = self.queue_name(queue);
        let created = match self.passive_declare(link, &name).await {
            Ok(()) => false,
            Err(EngineError::QueueNotFound) => {
                let arguments = self.queue_arguments(rules);
                let declared = self.declare_durable(link, &name, arguments).await;
                match declared {
                    Ok(()) => true,
                    // Refused: another node declared it meanwhile with other arguments (then
                    // it exists now, and keeps them), or the broker cannot honour the rules.
                    Err(EngineError::Invalid(why)) => match self.passive_declare(link, &name).await
                    {
                        Ok(()) => false,
                        Err(EngineError::QueueNotFound) => {
                            return Err(EngineError::Invalid(format!(
                                "RabbitMQ refused queue {name} with these rules: {why}"
                            )));
                        }
                        Err(err) => return Err(err),
                    },
                    Err(err) => return Err(err),
                }
            }
            Err(err) => return Err(err),
        };
        if !created {
            self.check_quorum(link, &name).await?;
        }
        self.with_ops(link, |ops| {
            let name = name.clone();
            let exchange: ShortString = self.options.exchange.as_str().into();
            let key: ShortString = queue.into();
            async move {
                ops.queue_bind(
                    name,
                    exchange,
                    key,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
            }
            .boxed()
        })
        .await?;
        self.known
            .lock()
            .expect("known poisoned")
            .insert(queue.to_owned());
        self.declared
            .lock()
            .expect("declared poisoned")
            .insert(queue.to_owned());
        Ok(created)
    }

    /// The arguments of a new queue: a quorum queue, with wsmq's rules mapped onto
    /// RabbitMQ's own features (docs/amqp.md, "Poison messages").
    fn queue_arguments(&self, rules: &QueueRules) -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        if rules.max_receives > 0 {
            // RabbitMQ dead-letters a message once it was returned more than the limit times,
            // that is when its (limit + 1)th delivery comes back; rsmq's "never delivered
            // after N receives" is N deliveries, so the limit is N - 1 (measured in
            // tests/amqp.rs: with the limit N a 4th delivery of max receives 3 comes).
            arguments.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(to_i64(rules.max_receives - 1)),
            );
        }
        if rules.ttl > 0 {
            arguments.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(to_i64(rules.ttl.saturating_mul(1000))),
            );
        }
        if let Some(dead) = &rules.dead_letter {
            arguments.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(self.options.exchange.as_str().into()),
            );
            arguments.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(dead.as_str().into()),
            );
        }
        arguments
    }

    /// A passive declare of the broker-side queue `name`: `QueueNotFound` when it is missing
    /// (RabbitMQ closes the channel then; `with_ops` replaces it).
    async fn passive_declare(&self, link: &Link, name: &ShortString) -> Result<(), EngineError> {
        let name = name.clone();
        self.with_ops(link, |ops| {
            async move {
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                };
                ops.queue_declare(name, passive, FieldTable::default())
                    .await
                    .map(drop)
            }
            .boxed()
        })
        .await
    }

    /// Checks that an existing queue is a quorum queue (`rc` comes from its
    /// `x-delivery-count`, which classic queues lack), by declaring it as one with no other
    /// argument. That declaration changes nothing on the broker: it succeeds for a plain
    /// wsmq queue, and fails (PRECONDITION_FAILED, the ops channel is replaced) for any queue
    /// with other arguments; the message names the first argument that differs, and only
    /// `x-queue-type` is refused. A queue created with rules is thus accepted as it is.
    async fn check_quorum(&self, link: &Link, name: &ShortString) -> Result<(), EngineError> {
        let arguments = self.queue_arguments(&QueueRules::default());
        let declared = self.declare_durable(link, name, arguments).await;
        match declared {
            Ok(()) => Ok(()),
            Err(EngineError::Invalid(why))
                if why.contains("inequivalent arg 'x-") && !why.contains("'x-queue-type'") =>
            {
                Ok(())
            }
            Err(EngineError::Invalid(why)) => Err(EngineError::Invalid(format!(
                "queue {name} exists on the broker with other arguments (wsmq needs a durable \
                 quorum queue): {why}"
            ))),
            Err(err) => Err(err),
        }
    }

    /// Forgets that the queue exists (it was deleted on the broker).
    fn forget_queue(&self, queue: &str) {
        self.known.lock().expect("known poisoned").remove(queue);
        self.declared
            .lock()
            .expect("declared poisoned")
            .remove(queue);
        self.dead_lettering
            .lock()
            .expect("dead-lettering poisoned")
            .remove(queue);
    }

    /// Checks the queue exists (a passive declare) unless already known on this link.
    async fn check_queue(&self, link: &Link, queue: &str) -> Result<(), EngineError> {
        if self.known.lock().expect("known poisoned").contains(queue) {
            return Ok(());
        }
        self.passive_declare(link, &self.queue_name(queue)).await?;
        self.known
            .lock()
            .expect("known poisoned")
            .insert(queue.to_owned());
        Ok(())
    }

    /// Declares the durable queue `name` with `arguments` on the link's operations channel.
    async fn declare_durable(
        &self,
        link: &Link,
        name: &ShortString,
        arguments: FieldTable,
    ) -> Result<(), EngineError> {
        let name = name.clone();
        self.with_ops(link, |ops| {
            async move {
                let durable = QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                };
                ops.queue_declare(name, durable, arguments).await.map(drop)
            }
            .boxed()
        })
        .await
    }

    /// Runs `op` on the ops channel, one at a time; a channel error closes that channel, so
    /// it is replaced before the next op.
    async fn with_ops<T>(
        &self,
        link: &Link,
        op: impl FnOnce(Channel) -> BoxFuture<'static, lapin::Result<T>>,
    ) -> Result<T, EngineError> {
        let mut ops = link.ops.lock().await;
        if !ops.status().connected() {
            *ops = self.track(link.conn.create_channel().await.map_err(map_err))?;
        }
        let result = op(ops.clone()).await.map_err(map_err);
        if result.is_err()
            && !ops.status().connected()
            && let Ok(fresh) = link.conn.create_channel().await
        {
            *ops = fresh;
        }
        self.track(result)
    }

    /// Starts the queue's consumer on the link unless it runs; deliveries go to `wake`.
    async fn start_consumer(
        &self,
        link: &Arc<Link>,
        queue: &str,
        wake: &Arc<QueueWake>,
    ) -> Result<(), EngineError> {
        if wake.cancelled.load(Ordering::SeqCst) {
            return Ok(());
        }
        if let Some((generation, _)) = &*wake.tag.lock().expect("tag poisoned")
            && *generation == link.generation
        {
            return Ok(());
        }
        // A consume on a missing queue would close the shared consumer channel, so the queue
        // must exist first. A subscribe has just declared it on this link (`declared`): then
        // one passive declare says it is still there (someone may have deleted it on the
        // broker since). Declaring it in full again cost three round trips (passive declare,
        // quorum check, bind) per consumer start, and the supervisor starts consumers one at
        // a time: with many subscribers arriving together, every later queue's consumer
        // waited behind them, and what was published to it meanwhile waited in RabbitMQ (the
        // p99 publish → socket of issue 14).
        let declared = self
            .declared
            .lock()
            .expect("declared poisoned")
            .contains(queue);
        let exists = declared
            && match self.passive_declare(link, &self.queue_name(queue)).await {
                Ok(()) => true,
                Err(EngineError::QueueNotFound) => {
                    self.forget_queue(queue);
                    false
                }
                Err(err) => return Err(err),
            };
        if !exists {
            self.declare_queue(link, queue, &QueueRules::default())
                .await?;
        }
        let tag = format!("wsmq.{queue}");
        let consumer = link
            .consume
            .basic_consume(
                self.queue_name(queue),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(map_err)?;
        *wake.tag.lock().expect("tag poisoned") = Some((link.generation, tag));
        wake.set_consuming(true);
        let wake = Arc::clone(wake);
        let generation = link.generation;
        tokio::spawn(async move {
            let mut consumer = consumer;
            while let Some(delivery) = consumer.next().await {
                let Ok(delivery) = delivery else { break };
                if wake.cancelled.load(Ordering::SeqCst) {
                    requeue(&delivery).await;
                    continue;
                }
                wake.buffer
                    .lock()
                    .expect("buffer poisoned")
                    .push_back((generation, delivery));
                wake.notify.notify_waiters();
            }
            // Cancelled (by us or the broker), or the channel went away.
            let mut tag = wake.tag.lock().expect("tag poisoned");
            if tag.as_ref().is_some_and(|(g, _)| *g == generation) {
                *tag = None;
                wake.set_consuming(false);
            }
        });
        Ok(())
    }

    /// Stops the queue's consumer and gives back what it buffered.
    async fn stop_consumer(&self, link: Option<&Arc<Link>>, wake: &Arc<QueueWake>) {
        wake.cancelled.store(true, Ordering::SeqCst);
        let tag = wake.tag.lock().expect("tag poisoned").take();
        wake.set_consuming(false);
        if let (Some(link), Some((generation, tag))) = (link, tag)
            && generation == link.generation
        {
            let _ = link
                .consume
                .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                .await;
        }
        let buffered: Vec<(u64, Delivery)> = wake
            .buffer
            .lock()
            .expect("buffer poisoned")
            .drain(..)
            .collect();
        for (_, delivery) in buffered {
            requeue(&delivery).await;
        }
    }

    /// The queue's consumer is cancelled: releases may go ahead.
    fn stopped(&self, queue: &str, wake: &Arc<QueueWake>) {
        wake.stopped.set();
        let mut stopping = self.stopping.lock().expect("stopping poisoned");
        if stopping.get(queue).is_some_and(|w| Arc::ptr_eq(w, wake)) {
            stopping.remove(queue);
        }
    }

    /// Waits (a little) until the queue's consumer, if it is being cancelled, is: a message
    /// rejected before that would be pushed straight back to it and counted as delivered.
    async fn wait_stopped(&self, queue: &str) {
        let wake = self
            .stopping
            .lock()
            .expect("stopping poisoned")
            .get(queue)
            .cloned();
        if let Some(wake) = wake {
            let _ = tokio::time::timeout(STOP_WAIT, wake.stopped.wait()).await;
        }
    }

    /// Publishes with a confirm; `Ok(false)` when the broker returned it as unroutable.
    async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<bool, EngineError> {
        let link = self.link()?;
        let options = BasicPublishOptions {
            mandatory,
            ..BasicPublishOptions::default()
        };
        let published = async {
            link.publish
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    options,
                    body,
                    properties,
                )
                .await?
                .await
        };
        let confirmation = self.track(published.await.map_err(map_err))?;
        if confirmation.is_nack() {
            // `invalid` rather than `unavailable`: the client sees why (an `unavailable`
            // says only that the engine is), and retrying at once would not help.
            return Err(EngineError::Invalid(format!(
                "RabbitMQ refused the message for '{routing_key}': the queue is at its length \
                 limit (overflow reject-publish), or the broker is short of resources"
            )));
        }
        Ok(confirmation.take_message().is_none())
    }

    /// A fresh rsmq-style id; strictly increasing on this node.
    fn next_id(&self) -> String {
        let us = clock::unix_millis() * 1000;
        let prev = self
            .last_id_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(last.max(us.saturating_sub(1)) + 1)
            })
            .unwrap_or(us);
        wsmq_rsmq::new_message_id(prev.max(us.saturating_sub(1)) + 1)
    }

    /// Declares the delay queue of `secs`, before every delayed send: publishing does not
    /// count as use for `x-expires`, a declaration does, so the queue outlives each of its
    /// messages by [`DELAY_QUEUE_SPARE`] and goes away once unused.
    async fn ensure_delay_queue(&self, link: &Link, secs: u64) -> Result<(), EngineError> {
        let name = self.queue_name(&format!("{DELAY_EXCHANGE}.{secs}"));
        let ttl_ms = secs.saturating_mul(1000);
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(i64::try_from(ttl_ms).unwrap_or(i64::MAX)),
        );
        arguments.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(
                i64::try_from(ttl_ms + DELAY_QUEUE_SPARE.as_millis() as u64).unwrap_or(i64::MAX),
            ),
        );
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.options.exchange.as_str().into()),
        );
        let mut binding = FieldTable::default();
        binding.insert("x-match".into(), AMQPValue::LongString("all".into()));
        binding.insert(
            DELAY_HEADER.into(),
            AMQPValue::LongString(secs.to_string().into()),
        );
        self.with_ops(link, |ops| {
            async move {
                let durable = QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                };
                ops.queue_declare(name.clone(), durable, arguments).await?;
                ops.queue_bind(
                    name,
                    DELAY_EXCHANGE.into(),
                    "".into(),
                    QueueBindOptions::default(),
                    binding,
                )
                .await
            }
            .boxed()
        })
        .await
    }

    /// When the queue's next hidden message (held here, or a delayed send of this node)
    /// becomes visible.
    fn next_visible(&self, queue: &str, generation: u64, now: Instant) -> Option<Duration> {
        let held = self.in_flight.next_deadline(queue, generation);
        let delayed = {
            let mut delayed = self.delayed.lock().expect("delayed poisoned");
            let due = delayed.get_mut(queue).and_then(|list| {
                list.retain(|at| *at > now);
                list.iter().min().copied()
            });
            if due.is_none() {
                delayed.remove(queue);
            }
            due
        };
        [held, delayed]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    /// Rejects (with requeue) what is due, and wakes the local subscribers of those queues.
    async fn expire_due(&self) -> Option<Instant> {
        let now = Instant::now();
        let generation = match self.link() {
            Ok(link) => link.generation,
            Err(_) => return None,
        };
        self.in_flight.forget_stale(generation, now);
        let (due, next) = self.in_flight.expire(now, generation);
        let mut woken = HashSet::new();
        for (queue, held) in due {
            let _ = held
                .acker
                .reject(BasicRejectOptions { requeue: true })
                .await;
            woken.insert(queue);
        }
        for queue in woken {
            if let Some(wake) = self.queues.get(&queue) {
                wake.notify.notify_waiters();
            }
        }
        next
    }

    /// Notes whether the broker was reached: an outage is logged once, and so is the return.
    fn track<T>(&self, result: Result<T, EngineError>) -> Result<T, EngineError> {
        let unreachable = result.as_ref().err().filter(|e| e.is_unavailable());
        let reachable = unreachable.is_none();
        if self.reachable.swap(reachable, Ordering::Relaxed) != reachable {
            match unreachable {
                Some(err) => warn!(
                    cause = %err,
                    "rabbitmq unreachable: engine calls fail with `unavailable` until it answers again"
                ),
                None => info!("rabbitmq reachable again"),
            }
        }
        result
    }
}

impl QueueStore for AmqpEngine {
    fn ensure_queue<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<bool, EngineError>> {
        self.create_queue(queue, &DEFAULT_RULES)
    }

    fn queue_exists<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<bool, EngineError>> {
        async move {
            let link = self.track(self.link())?;
            match self.check_queue(&link, queue).await {
                Ok(()) => Ok(true),
                Err(EngineError::QueueNotFound) => Ok(false),
                Err(err) => Err(err),
            }
        }
        .boxed()
    }

    fn create_queue<'a>(
        &'a self,
        queue: &'a str,
        rules: &'a QueueRules,
    ) -> BoxFuture<'a, Result<bool, EngineError>> {
        async move {
            rules.validate(queue)?;
            let link = self.track(self.link())?;
            // Declared on this link: it exists (and keeps its arguments); no round trip.
            if self
                .declared
                .lock()
                .expect("declared poisoned")
                .contains(queue)
            {
                return Ok(false);
            }
            self.declare_queue(&link, queue, rules).await
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
            let link = self.track(self.link())?;
            let wake = self.queues.get(queue).filter(|w| w.is_consuming());
            let mut taken = match &wake {
                Some(wake) => wake.take(link.generation, max),
                None => Vec::new(),
            };
            if wake.is_none() {
                self.check_queue(&link, queue).await?;
                while taken.len() < max {
                    let got = link
                        .get
                        .basic_get(self.queue_name(queue), BasicGetOptions::default())
                        .await
                        .map_err(map_err);
                    match self.track(got) {
                        Ok(Some(message)) => taken.push(message.delivery),
                        Ok(None) => break,
                        Err(EngineError::QueueNotFound) => {
                            self.forget_queue(queue);
                            return Err(EngineError::QueueNotFound);
                        }
                        Err(err) => return Err(err),
                    }
                }
            }
            let now = Instant::now();
            let deadline = now + Duration::from_secs(vt.unwrap_or(wsmq_rsmq::DEFAULT_VT));
            let now_ms = clock::unix_millis();
            let mut messages = Vec::with_capacity(taken.len());
            for delivery in taken {
                let message = to_message(&delivery, now_ms);
                if self.late_acks.take(queue, &message.id) {
                    let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                    continue;
                }
                let held = Holding {
                    acker: delivery.acker,
                    rc: message.rc,
                    deadline,
                    generation: link.generation,
                };
                self.in_flight.hold(queue, message.id.clone(), held);
                messages.push(message);
            }
            if !messages.is_empty() {
                self.reaper.notify_one();
            }
            Ok(Received {
                messages,
                next_visible: self.next_visible(queue, link.generation, now),
                // RabbitMQ applies the queue's delivery limit and TTL itself, when a message
                // is returned or reaches the head of the queue: a receive here never sees a
                // dead message, so there is nothing to count.
                dead: DeadCounts::default(),
            })
        }
        .boxed()
    }

    fn ack<'a>(
        &'a self,
        queue: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        async move {
            let link = self.track(self.link())?;
            let keys = ids.iter().map(|id| (id.as_str(), None));
            let (held, stale) = self.in_flight.take(queue, keys, link.generation);
            let mut acked = stale.len() as u64;
            if !stale.is_empty() {
                let until = Instant::now() + LATE_ACK_MEMORY;
                self.late_acks.remember(queue, stale, until);
            }
            for held in held {
                if held.acker.ack(BasicAckOptions::default()).await.is_ok() {
                    acked += 1;
                }
            }
            Ok(acked)
        }
        .boxed()
    }

    fn release<'a>(
        &'a self,
        queue: &'a str,
        held: &'a [Held],
        delay_secs: u64,
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        async move {
            let link = self.track(self.link())?;
            if delay_secs > 0 {
                // AMQP has no "requeue later": the node keeps the message unacked until then.
                let deadline = Instant::now() + Duration::from_secs(delay_secs);
                let found = self
                    .in_flight
                    .postpone(queue, held, link.generation, deadline);
                self.reaper.notify_one();
                return Ok(found);
            }
            self.wait_stopped(queue).await;
            let mut released = 0;
            // Those of an older link are back in the queue already; those handed out again
            // since (another rc) are not this release's to give back.
            let keys = held.iter().map(|h| (h.id.as_str(), Some(h.rc)));
            for held in self.in_flight.take(queue, keys, link.generation).0 {
                let rejected = held
                    .acker
                    .reject(BasicRejectOptions { requeue: true })
                    .await;
                if rejected.is_ok() {
                    released += 1;
                }
            }
            if released > 0
                && let Some(wake) = self.queues.get(queue)
            {
                wake.notify.notify_waiters();
            }
            Ok(released)
        }
        .boxed()
    }

    fn dead_letter<'a>(
        &'a self,
        queue: &'a str,
        held: &'a [Held],
    ) -> BoxFuture<'a, Result<DeadLettered, EngineError>> {
        async move {
            let link = self.track(self.link())?;
            // `basic.reject` without requeue: RabbitMQ dead-letters the message through the
            // queue's `x-dead-letter-exchange`, or drops it when the queue has none. Only the
            // deliveries this node still holds as named; what an older link held is back in
            // the queue, and stays there.
            let keys = held.iter().map(|h| (h.id.as_str(), Some(h.rc)));
            let mut count = 0;
            for holding in self.in_flight.take(queue, keys, link.generation).0 {
                let rejected = holding
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await;
                if rejected.is_ok() {
                    count += 1;
                }
            }
            let moved = self
                .dead_lettering
                .lock()
                .expect("dead-lettering poisoned")
                .contains(queue);
            Ok(DeadLettered { count, moved })
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
            let max = usize::try_from(wsmq_rsmq::DEFAULT_MAXSIZE).unwrap_or(usize::MAX);
            if wsmq_rsmq::message_length(body) > max {
                return Err(EngineError::TooLarge);
            }
            let link = self.track(self.link())?;
            let id = self.next_id();
            let properties = BasicProperties::default()
                .with_message_id(id.as_str().into())
                .with_delivery_mode(2)
                .with_timestamp(clock::unix_millis() / 1000);
            match delay.filter(|d| *d > 0) {
                None => {
                    let routed = self
                        .publish_confirmed(
                            &self.options.exchange,
                            queue,
                            body.as_bytes(),
                            properties,
                            true,
                        )
                        .await?;
                    if !routed {
                        // Deleted behind our back: the next ensure_queue declares it again.
                        self.forget_queue(queue);
                        return Err(EngineError::QueueNotFound);
                    }
                }
                Some(secs) => {
                    // The delay queue accepts anything: check the target first.
                    self.check_queue(&link, queue).await?;
                    self.ensure_delay_queue(&link, secs).await?;
                    let mut headers = FieldTable::default();
                    headers.insert(
                        DELAY_HEADER.into(),
                        AMQPValue::LongString(secs.to_string().into()),
                    );
                    let routed = self
                        .publish_confirmed(
                            DELAY_EXCHANGE,
                            queue,
                            body.as_bytes(),
                            properties.with_headers(headers),
                            true,
                        )
                        .await?;
                    if !routed {
                        return Err(EngineError::Unavailable(format!(
                            "the delay queue of {secs} s is gone; try again"
                        )));
                    }
                    let now = Instant::now();
                    let mut delayed = self.delayed.lock().expect("delayed poisoned");
                    // Queues this node sends to but never receives from are pruned here.
                    for due in delayed.values_mut() {
                        due.retain(|at| *at > now);
                    }
                    delayed.retain(|_, due| !due.is_empty());
                    let due = now + Duration::from_secs(secs);
                    delayed.entry(queue.to_owned()).or_default().push(due);
                }
            }
            Ok(id)
        }
        .boxed()
    }

    fn watch_queue(&self, queue: &str) -> QueueWatch {
        let (wake, guard) = self.queues.join(queue, || Arc::new(QueueWake::default()));
        QueueWatch {
            notify: Arc::clone(&wake.notify),
            listening: Some(Arc::clone(&wake.listening)),
            _guard: guard,
        }
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        async move {
            let link = self.link()?;
            if link.is_whole() {
                Ok(())
            } else {
                Err(EngineError::Unavailable("rabbitmq connection lost".into()))
            }
        }
        .boxed()
    }
}

impl Broker for AmqpEngine {
    fn start(&self, handler: &Arc<dyn BrokerHandler>) {
        self.handler.set(handler);
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        async move {
            // Mandatory: a publication no node queue is bound for comes back, which is how
            // "no node listens" is told from "some did" (AMQP does not count receivers).
            let routed = self
                .publish_confirmed(
                    CHANNELS_EXCHANGE,
                    channel,
                    body.as_bytes(),
                    BasicProperties::default(),
                    true,
                )
                .await?;
            Ok(u64::from(routed))
        }
        .boxed()
    }

    fn publish_with_history<'a>(
        &'a self,
        _channel: &'a str,
        _body: &'a str,
        _history: HistoryPolicy,
    ) -> BoxFuture<'a, Result<Published, EngineError>> {
        futures_util::future::ready(Err(no_history())).boxed()
    }

    fn history<'a>(
        &'a self,
        _channel: &'a str,
        _history: HistoryPolicy,
        _range: HistoryRange,
        _limit: u64,
    ) -> BoxFuture<'a, Result<HistoryPage, EngineError>> {
        futures_util::future::ready(Err(no_history())).boxed()
    }

    fn subscribe(&self, channel: &str) {
        self.want_channel(channel, true);
    }

    fn unsubscribe(&self, channel: &str) {
        self.want_channel(channel, false);
    }
}

impl AmqpEngine {
    /// Records the node's interest (what a reconnect binds) and has the supervisor bind or
    /// unbind; the lock is held while sending so commands for one channel keep their order.
    fn want_channel(&self, channel: &str, wanted: bool) {
        let mut channels = self.channels.lock().expect("channels poisoned");
        if wanted {
            channels.insert(channel.to_owned());
        } else {
            channels.remove(channel);
        }
        let _ = self
            .commands
            .send(Command::Channel(channel.to_owned(), wanted));
    }

    /// Applies one command on the current link.
    async fn apply(&self, link: &Arc<Link>, command: Command) -> Result<(), EngineError> {
        match command {
            Command::Consume(queue, wake) => self.start_consumer(link, &queue, &wake).await,
            Command::Cancel(queue, wake) => {
                self.stop_consumer(Some(link), &wake).await;
                self.stopped(&queue, &wake);
                Ok(())
            }
            Command::Channel(channel, wanted) => {
                let still = self
                    .channels
                    .lock()
                    .expect("channels poisoned")
                    .contains(&channel);
                if still != wanted {
                    return Ok(()); // a later command undoes this one
                }
                let node_queue = link.node_queue.clone();
                self.with_ops(link, |ops| {
                    async move {
                        if wanted {
                            ops.queue_bind(
                                node_queue,
                                CHANNELS_EXCHANGE.into(),
                                channel.into(),
                                QueueBindOptions::default(),
                                FieldTable::default(),
                            )
                            .await
                        } else {
                            ops.queue_unbind(
                                node_queue,
                                CHANNELS_EXCHANGE.into(),
                                channel.into(),
                                FieldTable::default(),
                            )
                            .await
                        }
                    }
                    .boxed()
                })
                .await
            }
        }
    }
}

/// RabbitMQ has no place for presence: the trait's defaults refuse it with a clear `invalid`
/// (the `presence` op answers so; the node's tracker writes nothing).
impl Presence for AmqpEngine {}

impl ClusterState for AmqpEngine {
    fn check_credentials<'a>(
        &'a self,
        queries: &'a [CredentialQuery<'a>],
    ) -> BoxFuture<'a, Result<CredentialChecks, EngineError>> {
        async move {
            if let Some(redis) = &self.redis {
                return redis.check_credentials(queries).await;
            }
            // No registry and no marks without Redis: access tokens are refused at start when
            // configured (so none is registered), and `token revoke` writes its marks in
            // Redis only. The clock is the gateway's, as nothing else keeps one.
            let checks = queries
                .iter()
                .map(|query| CredentialCheck {
                    revoked_at: None,
                    registered: query.access_token.map(|_| false),
                })
                .collect();
            Ok(CredentialChecks {
                now: clock::unix_secs(),
                checks,
            })
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
            let json =
                serde_json::to_vec(heartbeat).map_err(|e| EngineError::Invalid(e.to_string()))?;
            let key = format!("heartbeat.{}", heartbeat.id);
            let properties = BasicProperties::default().with_expiration(
                wsmq_proto::keys::NODE_TTL_SECS
                    .saturating_mul(1000)
                    .to_string()
                    .into(),
            );
            self.publish_confirmed(CONTROL_EXCHANGE, &key, &json, properties, false)
                .await?;
            if let Some(redis) = &self.redis {
                redis.write_heartbeat(heartbeat).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn remove_heartbeat<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        async move {
            let key = format!("gone.{node_id}");
            self.publish_confirmed(
                CONTROL_EXCHANGE,
                &key,
                b"",
                BasicProperties::default(),
                false,
            )
            .await?;
            if let Some(redis) = &self.redis {
                redis.remove_heartbeat(node_id).await?;
            }
            Ok(())
        }
        .boxed()
    }
}

/// Owns the connection: applies commands, and on a lost connection reconnects with backoff.
async fn supervise(
    engine: Weak<AmqpEngine>,
    first: Arc<Link>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    stop: CancellationToken,
) {
    let mut link = Some(first);
    let mut generation = 1;
    let mut backoff = BACKOFF_MIN;
    loop {
        let current = match link.take() {
            Some(current) => current,
            None => {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                let Some(this) = engine.upgrade() else { return };
                generation += 1;
                match this.open_link(generation).await {
                    Ok(fresh) => {
                        let _ = this.track(Ok(()));
                        info!(generation, "rabbitmq connection restored");
                        // The node queue is new: what was published on the channels and the
                        // control exchange while there was none is lost. Channels keep no
                        // history here, but revocations have their records (in the Redis
                        // beside, when one is), so the node checks its sessions against them,
                        // as the Redis engine does when its pub/sub link comes back.
                        this.handler.on_link_restored();
                        let _ = this.revocations.send(Revocation::Missed);
                        backoff = BACKOFF_MIN;
                        fresh
                    }
                    Err(err) => {
                        let _ = this.track(Err::<(), _>(err));
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
        };
        let mut events = current.conn.events_listener();
        let mut health = tokio::time::interval(HEALTH_EVERY);
        let lost = loop {
            tokio::select! {
                // A channel the node shares (publishes, consumers, gets) closed by a channel
                // error takes its consumers or confirms with it: start the link afresh.
                _ = health.tick() => {
                    if !current.is_whole() {
                        break EngineError::Unavailable("a channel of the connection closed".into());
                    }
                }
                () = stop.cancelled() => {
                    let _ = current.conn.close(200, "gateway stopping".into()).await;
                    return;
                }
                event = events.next() => match event {
                    // A channel's error (a passive declare of a missing queue) is reported
                    // here too; only the connection's ends the link.
                    Some(Event::Error(err)) if !err.is_amqp_soft_error() => break map_err(err),
                    Some(_) => {}
                    None => break EngineError::Unavailable("connection closed".into()),
                },
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    let Some(this) = engine.upgrade() else { return };
                    if let Err(err) = this.apply(&current, command).await {
                        warn!(cause = %err, "rabbitmq command failed");
                    }
                    if !current.conn.status().connected() {
                        break EngineError::Unavailable("connection closed".into());
                    }
                }
            }
        };
        let Some(this) = engine.upgrade() else { return };
        *this.link.write().expect("link poisoned") = None;
        let _ = this.track(Err::<(), _>(lost));
        for (_, wake) in this.queues.entries() {
            wake.buffer.lock().expect("buffer poisoned").clear();
            *wake.tag.lock().expect("tag poisoned") = None;
            wake.set_consuming(false);
        }
        drop(this);
        let _ = current.conn.close(200, "reconnecting".into()).await;
    }
}

/// Rejects back what passed its deadline, sleeping until the next one.
async fn reap(engine: Weak<AmqpEngine>, wake: Arc<Notify>, stop: CancellationToken) {
    loop {
        let Some(this) = engine.upgrade() else { return };
        let next = this.expire_due().await;
        drop(this);
        let wait = next.map_or(REAP_IDLE, |at| {
            at.saturating_duration_since(Instant::now()).min(REAP_IDLE)
        });
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
        }
    }
}

/// Hands what arrives on the node queue to the hub (channels) or the revocation listeners.
async fn node_deliveries(
    engine: Weak<AmqpEngine>,
    mut consumer: lapin::Consumer,
    handler: Arc<HandlerSlot>,
    revocations: broadcast::Sender<Revocation>,
) {
    while let Some(delivery) = consumer.next().await {
        let Ok(delivery) = delivery else { break };
        if engine.strong_count() == 0 {
            return;
        }
        let body = String::from_utf8_lossy(&delivery.data);
        match delivery.exchange.as_str() {
            CHANNELS_EXCHANGE => handler.on_publication(delivery.routing_key.as_str(), &body),
            CONTROL_EXCHANGE if delivery.routing_key.as_str() == REVOKE_KEY => {
                let _ = revocations.send(Revocation::User(body.into_owned()));
            }
            _ => {}
        }
    }
}

/// Why [`Broker::publish_with_history`] and [`Broker::history`] fail here. A topic exchange
/// keeps nothing and numbers nothing; a stream per channel could, but is not built, so the
/// configuration refuses history beside `--amqp-url` at start and this is only reached by a
/// caller that skipped it.
fn no_history() -> EngineError {
    EngineError::Invalid(
        "channel history needs the Redis or in-memory engine; RabbitMQ channels keep none".into(),
    )
}

/// `n` as an AMQP long-long, saturating (the rules' ranges keep it far below).
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Gives a delivery back to its queue (at once).
async fn requeue(delivery: &Delivery) {
    let _ = delivery
        .acker
        .reject(BasicRejectOptions { requeue: true })
        .await;
}

/// lapin errors as engine errors: a missing queue is `QueueNotFound`, a refused declaration
/// `Invalid`, anything about the connection `Unavailable`.
fn map_err(err: lapin::Error) -> EngineError {
    if let lapin::ErrorKind::ProtocolError(amqp) = err.kind() {
        match amqp.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => return EngineError::QueueNotFound,
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) => {
                return EngineError::Invalid(amqp.get_message().to_string());
            }
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => {
                return EngineError::Invalid(format!(
                    "the broker refused access: {}",
                    amqp.get_message()
                ));
            }
            _ => {}
        }
    }
    EngineError::Unavailable(err.to_string())
}
