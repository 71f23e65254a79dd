//! Channels on a Redis Cluster: sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7).
//!
//! Classic pub/sub on a cluster sends every message to every node over the cluster bus, so
//! its cost grows with the cluster. Sharded pub/sub keeps a channel's messages on the master
//! (and replicas) of the channel's slot: each gateway node holds one connection per master
//! that owns a channel it subscribed to. The three pub/sub names of a broadcast channel
//! (`wsmq:ch:{c}`, `wsmq:chh:{c}`, `wsmq:pres:{c}`, see `wsmq_proto::keys::Carrier`) share
//! the slot of its history and presence keys, so one `SSUBSCRIBE` covers them and the
//! history script `SPUBLISH`es in the slot it writes.
//!
//! The connection is redis-rs's cluster connection in RESP3 with a push channel: it routes
//! each `SSUBSCRIBE` to the master of the slot, keeps its subscriptions, and subscribes again
//! after it reconnected to a node or refreshed its slot map. Two cases are handled here on
//! top of that: Redis ends a shard subscription by itself (an unasked `sunsubscribe` push)
//! when the slot moved away or the master became a replica, and a channel still wanted is
//! then subscribed again, wherever the slot lives now; and after a connection dropped, the
//! node's handler hears `on_link_restored`, so that channels with history read what was
//! published meanwhile.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use redis::{
    ProtocolVersion, PushInfo, PushKind, Value, cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use wsmq_proto::keys::Carrier;

use super::{
    super::{Announcement, EngineError, HandlerSlot},
    wake::QueueWake,
};

/// How long a connection attempt and a reply may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Between tries of a subscription Redis refused or ended (a slot moving, a failover).
const RETRY: Duration = Duration::from_millis(250);
/// Tries of one subscription before it is left to the next link restoration: a failover
/// takes a few seconds (the cluster node timeout and an election).
const TRIES: u32 = 60;
/// How long after a dropped connection the handler hears `on_link_restored`: redis-rs
/// reconnects and subscribes again in the meantime, and a history read before that would
/// leave a window in which a publication passes the node by.
const RELINK_DELAY: Duration = Duration::from_secs(1);

/// A wish of the node: subscribe (`true`) to a broadcast channel, or leave it.
type Wish = (String, bool);

/// The node's sharded subscriptions; dropping it does not stop the task (the engine's stop
/// token does).
pub(super) struct Shards {
    wishes: mpsc::UnboundedSender<Wish>,
}

/// What the task shares with the engine.
pub(super) struct ShardsShared {
    /// Broadcast channels the node wants, and whether Redis confirmed each.
    pub(super) wakes: Mutex<HashMap<String, Arc<QueueWake>>>,
}

impl Shards {
    /// Connects to the cluster through `seeds` for pub/sub and starts the task that applies
    /// the node's wishes and hands publications to `handler`.
    pub(super) async fn start(
        seeds: &[&str],
        handler: Arc<HandlerSlot>,
        shared: Arc<ShardsShared>,
        stop: CancellationToken,
    ) -> Result<Shards, EngineError> {
        let (pushes, push_rx) = mpsc::unbounded_channel();
        let client = ClusterClientBuilder::new(seeds.to_vec())
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(pushes)
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .build()
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let (wishes, wish_rx) = mpsc::unbounded_channel();
        let task = Task {
            conn,
            handler,
            shared,
            wishes: wishes.clone(),
            relinking: Arc::default(),
        };
        tokio::spawn(task.run(wish_rx, push_rx, stop));
        Ok(Shards { wishes })
    }

    /// The node wants `channel` (its first local subscriber came) or not (its last left).
    pub(super) fn want(&self, channel: &str, wanted: bool) {
        let _ = self.wishes.send((channel.to_owned(), wanted));
    }
}

struct Task {
    conn: ClusterConnection,
    handler: Arc<HandlerSlot>,
    shared: Arc<ShardsShared>,
    /// For subscribing again from inside the task.
    wishes: mpsc::UnboundedSender<Wish>,
    /// Whether an `on_link_restored` is already scheduled.
    relinking: Arc<Mutex<bool>>,
}

impl Task {
    async fn run(
        self,
        mut wishes: mpsc::UnboundedReceiver<Wish>,
        mut pushes: mpsc::UnboundedReceiver<PushInfo>,
        stop: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                wish = wishes.recv() => {
                    let Some(first) = wish else { return };
                    // Everything waiting, the last wish per channel winning: a storm of
                    // joins and leaves costs one command per channel.
                    let mut batch: HashMap<String, bool> = HashMap::from([first]);
                    while let Ok((channel, wanted)) = wishes.try_recv() {
                        batch.insert(channel, wanted);
                    }
                    self.apply(batch);
                }
                push = pushes.recv() => match push {
                    Some(push) => self.dispatch(push),
                    None => return,
                },
            }
        }
    }

    /// Records the wishes and sends one `SSUBSCRIBE` or `SUNSUBSCRIBE` per channel, in
    /// parallel (channels of different slots cannot share one).
    fn apply(&self, batch: HashMap<String, bool>) {
        for (channel, wanted) in batch {
            let wake = {
                let mut wakes = self.shared.wakes.lock().expect("shard wakes poisoned");
                if wanted {
                    Some(Arc::clone(
                        wakes
                            .entry(channel.clone())
                            .or_insert_with(|| Arc::new(QueueWake::new())),
                    ))
                } else {
                    wakes.remove(&channel);
                    None
                }
            };
            let mut conn = self.conn.clone();
            let shared = Arc::clone(&self.shared);
            let wishes = self.wishes.clone();
            tokio::spawn(async move {
                let names = Carrier::sharded_names(&channel);
                let wanted = |shared: &ShardsShared| {
                    shared
                        .wakes
                        .lock()
                        .expect("shard wakes poisoned")
                        .contains_key(&channel)
                };
                let Some(wake) = wake else {
                    // The tasks of successive wishes for one channel run side by side, so
                    // this SUNSUBSCRIBE may reach Redis after the SSUBSCRIBE of a later wish.
                    // Once it is done, a channel wanted again is subscribed afresh (with a
                    // new wake, so that new subscribers wait for that confirmation).
                    if wanted(&shared) {
                        return;
                    }
                    if let Err(err) = conn.sunsubscribe(&names[..]).await {
                        debug!(channel, cause = %err, "sunsubscribe failed");
                    }
                    let again = {
                        let mut wakes = shared.wakes.lock().expect("shard wakes poisoned");
                        wakes
                            .get_mut(&channel)
                            .map(|wake| *wake = Arc::new(QueueWake::new()))
                            .is_some()
                    };
                    if again {
                        let _ = wishes.send((channel, true));
                    }
                    return;
                };
                for attempt in 1..=TRIES {
                    // Given up once the node no longer wants it (or wants it anew, with a
                    // wake of its own).
                    let current = shared
                        .wakes
                        .lock()
                        .expect("shard wakes poisoned")
                        .get(&channel)
                        .is_some_and(|w| Arc::ptr_eq(w, &wake));
                    if !current {
                        return;
                    }
                    match tokio::time::timeout(TIMEOUT, conn.ssubscribe(&names[..])).await {
                        Ok(Ok(())) => {
                            wake.listening.set(true);
                            return;
                        }
                        Ok(Err(err)) if attempt == TRIES => {
                            warn!(channel, cause = %err, "ssubscribe failed; giving up until the link is restored");
                        }
                        Ok(Err(err)) => {
                            debug!(channel, attempt, cause = %err, "ssubscribe failed; retrying")
                        }
                        Err(_) => debug!(channel, attempt, "ssubscribe timed out; retrying"),
                    }
                    tokio::time::sleep(RETRY).await;
                }
            });
        }
    }

    fn dispatch(&self, push: PushInfo) {
        match push.kind {
            PushKind::SMessage => {
                let [channel, payload] = match <[Value; 2]>::try_from(push.data) {
                    Ok(pair) => pair,
                    Err(_) => return,
                };
                let (Some(channel), Some(payload)) = (bytes(&channel), bytes(&payload)) else {
                    return;
                };
                let channel = String::from_utf8_lossy(channel);
                let Some((carrier, name)) = Carrier::parse_sharded(&channel) else {
                    return;
                };
                match carrier {
                    Carrier::Plain => self
                        .handler
                        .on_publication(name, &String::from_utf8_lossy(payload)),
                    Carrier::History => {
                        let payload = String::from_utf8_lossy(payload);
                        match super::history::parse_payload(&payload) {
                            Some((position, body)) => {
                                self.handler.on_positioned(name, body, &position);
                            }
                            None => debug!(
                                channel = name,
                                "history publication without a position dropped"
                            ),
                        }
                    }
                    Carrier::Presence => match serde_json::from_slice::<Announcement>(payload) {
                        Ok(a) => self.handler.on_presence(name, &a.joined, &a.left),
                        Err(_) => debug!(channel = name, "malformed presence announcement dropped"),
                    },
                }
            }
            PushKind::SUnsubscribe => {
                // Asked for (the node left the channel), or Redis ended it: the slot moved
                // or its master became a replica. A channel still wanted is subscribed again;
                // redis-rs routes the new SSUBSCRIBE to wherever the slot lives now.
                let Some(channel) = push.data.first().and_then(bytes) else {
                    return;
                };
                let channel = String::from_utf8_lossy(channel);
                let Some((Carrier::Plain, name)) = Carrier::parse_sharded(&channel) else {
                    return;
                };
                let wanted = {
                    let mut wakes = self.shared.wakes.lock().expect("shard wakes poisoned");
                    // A fresh wake: the old one's retries stop, and subscribers wait for the
                    // new confirmation.
                    wakes
                        .get_mut(name)
                        .map(|wake| *wake = Arc::new(QueueWake::new()))
                        .is_some()
                };
                if wanted {
                    debug!(
                        channel = name,
                        "shard subscription ended by redis; subscribing again"
                    );
                    let _ = self.wishes.send((name.to_owned(), true));
                    self.relink_later();
                }
            }
            PushKind::Disconnection => {
                debug!("a pub/sub connection to the cluster dropped");
                self.relink_later();
            }
            _ => {}
        }
    }

    /// Tells the handler, once, a moment from now, that publications may have been missed.
    fn relink_later(&self) {
        let mut scheduled = self.relinking.lock().expect("relink flag poisoned");
        if *scheduled {
            return;
        }
        *scheduled = true;
        let handler = Arc::clone(&self.handler);
        let flag = Arc::clone(&self.relinking);
        tokio::spawn(async move {
            tokio::time::sleep(RELINK_DELAY).await;
            *flag.lock().expect("relink flag poisoned") = false;
            handler.on_link_restored();
        });
    }
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}
