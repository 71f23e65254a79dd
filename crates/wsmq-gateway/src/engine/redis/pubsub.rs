//! The node's one Redis pub/sub connection.
//!
//! It subscribes to `wsmq:revoke` always, to `{ns}:rt:{q}` for each queue with a local
//! consumer and to `wsmq:ch:{c}`, `wsmq:chh:{c}` (publications with history) and
//! `wsmq:pres:{c}` (presence announcements) for each channel with a local subscriber (the interest registries add wishes on first/last local
//! holder to [`Changes`], coalesced per channel; what waits goes out as one `SUBSCRIBE` and one
//! `UNSUBSCRIBE` with many channels). Messages
//! are dispatched into the per-queue [`QueueWake`], the node's broker handler (its channel hub)
//! and the revocation broadcast.
//!
//! Each queue's [`QueueWake`] also says whether the node listens to the queue yet: it turns
//! `listening` on once Redis confirmed the `SUBSCRIBE` made for it, and off when the connection
//! drops. A new consumer waits for that before its first receive, so that every message sent
//! after the receive is announced to it.
//!
//! The connection is checked with a `PING` every [`PING_INTERVAL`]: one that stopped answering
//! without closing (its peer vanished) is dropped like a closed one.
//!
//! If the connection drops, the task reconnects with backoff (cut short as soon as the
//! engine's command connection reaches Redis again) and subscribes to everything still
//! wanted; once Redis confirmed that, it wakes every local consumer, because notifications
//! sent while nobody listened are lost, while the messages are in their queues. (Waking them
//! when the connection drops would be too early: a message sent after that wake-up and before
//! the re-subscribe would wait for the poll.) For the same reason it then tells the node that
//! revocations may have been missed ([`Revocation::Missed`]): their marks are in Redis, and the
//! node checks its sessions against them.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use redis::{Client, Msg, RedisResult, aio::PubSubSink};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use wsmq_proto::keys;

use super::{
    super::{Announcement, EngineError, HandlerSlot, Revocation, interest::Interests},
    changes::Changes,
    wake::QueueWake,
};

/// Backoff between reconnection attempts: doubles from the first to the last value. The cap
/// bounds how long delivery lags behind a Redis that is back (notifications resume only once
/// this connection does); one connection attempt a second per node costs a down Redis nothing.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long one connection attempt (connect and subscribe) may take, so that an unreachable
/// host (no RST, packets dropped) means a retry rather than a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the connection is checked with a `PING`, and how long that (or a `SUBSCRIBE` or
/// `UNSUBSCRIBE`) may take to be answered before the connection is given up. A connection
/// whose peer vanished without a FIN or RST (a partition, a frozen host, a NAT that forgot
/// it) stays open and silent: unchecked, the node would stop receiving wake-ups, channel
/// messages and revocations until it restarted.
const PING_INTERVAL: Duration = Duration::from_secs(5);
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);
/// Most channels in one `SUBSCRIBE`/`UNSUBSCRIBE`, so one command stays a modest size.
const MAX_CHANNELS_PER_COMMAND: usize = 1024;

/// Everything the pub/sub task needs; consumed by [`PubSub::start`].
pub(super) struct PubSub {
    /// Opens connections: one per node known at start (one on a single Redis). Classic
    /// pub/sub reaches every node of a Redis Cluster, so any one node serves; after a failed
    /// attempt the next one is tried.
    pub(super) clients: Vec<Client>,
    /// The client of the next connection attempt.
    pub(super) next_client: usize,
    /// Subscribe/unsubscribe wishes from the interest registries.
    pub(super) changes: Arc<Changes>,
    /// The rsmq namespace, for the queues' realtime channels.
    pub(super) ns: String,
    /// Whether the queues use the cluster layout (`{ns}:{q}:rt:q`).
    pub(super) cluster: bool,
    /// Queue wake-ups.
    pub(super) queues: Arc<Interests<Arc<QueueWake>>>,
    /// Channels the node subscribed to.
    pub(super) channels: Arc<Mutex<HashSet<String>>>,
    /// The node's handler of channel publications.
    pub(super) handler: Arc<HandlerSlot>,
    /// Revocations, and notices of missed ones.
    pub(super) revocations: broadcast::Sender<Revocation>,
    /// Reconnections (metric).
    pub(super) reconnects: Counter,
    /// Cancelled when the engine is dropped.
    pub(super) stop: CancellationToken,
    /// Notified when the engine's command connection reaches Redis again: cuts the backoff.
    pub(super) redis_back: Arc<Notify>,
}

impl PubSub {
    /// Opens the first connection (failing if Redis is unreachable) and spawns the task that
    /// keeps it. The task ends when the engine is dropped.
    pub(super) async fn start(mut self) -> Result<(), EngineError> {
        let (sink, stream) = self.connect().await?;
        tokio::spawn(async move {
            let mut conn = Some((sink, stream));
            let mut backoff = BACKOFF_MIN;
            // Failed attempts since the connection was lost: only the first is a warning, so
            // an outage logs one line, not one per attempt.
            let mut failures = 0u32;
            loop {
                let (sink, stream) = match conn.take() {
                    Some(c) => c,
                    None => match self.connect_unless_stopped().await {
                        Ok(c) => {
                            self.reconnects.inc();
                            info!(failures, "pub/sub reconnected; subscriptions restored");
                            backoff = BACKOFF_MIN;
                            failures = 0;
                            // Subscribed again: whatever was sent meanwhile is in the queues,
                            // and its notifications are lost. Every local consumer receives
                            // now, and anything sent from now on is announced.
                            for (_, wake) in self.queues.entries() {
                                wake.notify.notify_waiters();
                            }
                            // Channel publications of the outage are lost on this link too;
                            // those with history can be read back.
                            self.handler.on_link_restored();
                            // Revocations announced meanwhile are lost the same way; their
                            // marks are in Redis, and the node checks its sessions against
                            // them.
                            let _ = self.revocations.send(Revocation::Missed);
                            c
                        }
                        Err(None) => return,
                        Err(Some(err)) => {
                            if failures == 0 {
                                warn!(cause = %err, "pub/sub reconnect failed; retrying with backoff");
                            } else {
                                debug!(cause = %err, retry_in = ?backoff, failures, "pub/sub reconnect failed");
                            }
                            failures += 1;
                            tokio::select! {
                                () = self.stop.cancelled() => return,
                                () = tokio::time::sleep(backoff) => {}
                                () = self.redis_back.notified() => {}
                            }
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                            continue;
                        }
                    },
                };
                if !self.serve(sink, stream).await {
                    debug!("pub/sub task stopping: engine dropped");
                    return;
                }
                warn!("pub/sub connection lost; reconnecting");
                // New consumers of these queues wait (bounded) for the re-subscribe.
                for (_, wake) in self.queues.entries() {
                    wake.listening.set(false);
                }
            }
        });
        Ok(())
    }

    /// [`PubSub::connect`], or `Err(None)` when the engine is gone.
    async fn connect_unless_stopped(
        &mut self,
    ) -> Result<(PubSubSink, redis::aio::PubSubStream), Option<EngineError>> {
        let stop = self.stop.clone();
        tokio::select! {
            () = stop.cancelled() => Err(None),
            conn = self.connect() => conn.map_err(Some),
        }
    }

    /// Connects and subscribes to everything currently wanted; the queues subscribed to are
    /// marked listening once Redis confirmed.
    async fn connect(&mut self) -> Result<(PubSubSink, redis::aio::PubSubStream), EngineError> {
        let unavailable = |e: redis::RedisError| EngineError::Unavailable(e.to_string());
        let queues = self.queues.entries();
        let channels = self.channels.lock().expect("channel set poisoned").clone();
        let mut wanted = vec![keys::REVOKE_CHANNEL.to_owned()];
        wanted.extend(queues.iter().map(|(q, _)| self.realtime_channel(q)));
        wanted.extend(channels.iter().flat_map(|c| Self::carriers(c)));
        let client = &self.clients[self.next_client % self.clients.len()];
        self.next_client = self.next_client.wrapping_add(1);
        let connecting = async {
            let pubsub = client.get_async_pubsub().await.map_err(unavailable)?;
            let (mut sink, stream) = pubsub.split();
            for chunk in wanted.chunks(MAX_CHANNELS_PER_COMMAND) {
                sink.subscribe(chunk).await.map_err(unavailable)?;
            }
            Ok((sink, stream))
        };
        let (sink, stream) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| {
                EngineError::Unavailable(format!(
                    "no pub/sub connection within {CONNECT_TIMEOUT:?}"
                ))
            })??;
        for (_, wake) in &queues {
            wake.listening.set(true);
        }
        self.settle_changes(&queues, &channels);
        Ok((sink, stream))
    }

    /// The realtime channel of `queue`.
    fn realtime_channel(&self, queue: &str) -> String {
        wsmq_rsmq::keys::queue_realtime_channel(&self.ns, queue, self.cluster)
    }

    /// The pub/sub names that carry `channel`'s publications (without history and with it)
    /// and its presence announcements.
    pub(super) fn carriers(channel: &str) -> [String; 3] {
        [
            keys::channel(channel),
            keys::history_channel(channel),
            keys::presence_channel(channel),
        ]
    }

    /// After a connection subscribed to what was wanted when it started (`queues` and
    /// `channels`), makes exactly that what [`Changes`] judges wishes against (a subscribe
    /// wished for meanwhile is still sent), and asks to leave what lost its last holder
    /// meanwhile: that holder's wish was judged against the old connection, so no unsubscribe
    /// was made for the new one.
    fn settle_changes(&self, queues: &[(String, Arc<QueueWake>)], channels: &HashSet<String>) {
        let realtime: Vec<String> = queues
            .iter()
            .map(|(q, _)| self.realtime_channel(q))
            .collect();
        let subscribed = realtime
            .iter()
            .cloned()
            .chain(channels.iter().flat_map(|c| Self::carriers(c)));
        self.changes.connected(subscribed.collect());
        for ((queue, _), channel) in queues.iter().zip(&realtime) {
            if self.queues.get(queue).is_none() {
                self.changes.drop_stale(channel);
            }
        }
        let now = self.channels.lock().expect("channel set poisoned").clone();
        for channel in channels.difference(&now) {
            for carrier in Self::carriers(channel) {
                self.changes.drop_stale(&carrier);
            }
        }
    }

    /// Serves one connection: `false` when the engine is gone, `true` when the connection
    /// dropped.
    async fn serve(&mut self, mut sink: PubSubSink, mut stream: redis::aio::PubSubStream) -> bool {
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return false,
                () = self.changes.added.notified() => {
                    // A batch that is cut short is not lost: the reconnect subscribes to
                    // everything wanted by then.
                    if !answered("command", self.apply(&mut sink)).await {
                        return true;
                    }
                }
                _ = ping.tick() => {
                    if !answered("PING", sink.ping::<redis::Value>()).await {
                        return true;
                    }
                }
                msg = stream.next() => match msg {
                    Some(msg) => self.dispatch(&msg),
                    None => return true,
                },
            }
        }
    }

    /// Sends every wish waiting: one `SUBSCRIBE` and one `UNSUBSCRIBE` (in chunks), whoever
    /// made them, which matters when many sessions subscribe at once (a reconnect storm) and
    /// each waits for its confirmation.
    async fn apply(&mut self, sink: &mut PubSubSink) -> RedisResult<()> {
        let batch = self.changes.take();
        for wake in batch.already {
            wake.listening.set(true);
        }
        for chunk in batch.subscribe.chunks(MAX_CHANNELS_PER_COMMAND) {
            sink.subscribe(chunk).await?;
        }
        for wake in batch.wakes {
            wake.listening.set(true);
        }
        for chunk in batch.unsubscribe.chunks(MAX_CHANNELS_PER_COMMAND) {
            sink.unsubscribe(chunk).await?;
        }
        Ok(())
    }

    fn dispatch(&self, msg: &Msg) {
        let channel = msg.get_channel_name();
        if let Some(queue) = wsmq_rsmq::keys::realtime_queue(&self.ns, channel, self.cluster) {
            if let Some(wake) = self.queues.get(queue) {
                wake.notify.notify_waiters();
            }
        } else if let Some(name) = keys::channel_name(channel) {
            let body = String::from_utf8_lossy(msg.get_payload_bytes());
            self.handler.on_publication(name, &body);
        } else if let Some(name) = keys::history_channel_name(channel) {
            let payload = String::from_utf8_lossy(msg.get_payload_bytes());
            match super::history::parse_payload(&payload) {
                Some((position, body)) => self.handler.on_positioned(name, body, &position),
                None => debug!(
                    channel = name,
                    "history publication without a position dropped"
                ),
            }
        } else if let Some(name) = keys::presence_channel_name(channel) {
            match serde_json::from_slice::<Announcement>(msg.get_payload_bytes()) {
                Ok(a) => self.handler.on_presence(name, &a.joined, &a.left),
                Err(_) => debug!(channel = name, "malformed presence announcement dropped"),
            }
        } else if channel == keys::REVOKE_CHANNEL {
            let user = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
            let _ = self.revocations.send(Revocation::User(user));
        }
    }
}

/// Waits at most [`REPLY_TIMEOUT`] for Redis to answer `what`; `false`, logged, when it failed
/// or did not answer (the connection is then given up).
async fn answered<T>(what: &str, reply: impl Future<Output = RedisResult<T>>) -> bool {
    match tokio::time::timeout(REPLY_TIMEOUT, reply).await {
        Ok(Ok(_)) => true,
        Ok(Err(err)) => {
            warn!(cause = %err, "pub/sub {what} failed");
            false
        }
        Err(_) => {
            warn!(timeout = ?REPLY_TIMEOUT, "pub/sub connection unresponsive: no reply to {what}");
            false
        }
    }
}
