//! The node's one Redis pub/sub connection.
//!
//! It subscribes to `wsmq:revoke` always, to `{ns}:rt:{q}` for each queue with a local
//! consumer and to `wsmq:ch:{c}` for each channel with a local subscriber (the interest
//! registries send subscribe/unsubscribe commands on first/last local holder). Messages are
//! dispatched into the per-queue `Notify`, the channel hub (bounded broadcast) and the
//! revocation broadcast. If the connection drops, it reconnects with backoff and subscribes
//! to everything still wanted; a queue woken spuriously just receives nothing, and the poll
//! fallback covers notifications lost while disconnected.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use redis::{Client, Msg, aio::PubSubSink};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use wsmq_proto::keys;

use super::super::{EngineError, interest::Interests};
use crate::channels::ChannelHub;

/// Backoff between reconnection attempts: doubles from the first to the last value.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A change of what the node listens to.
#[derive(Debug)]
pub(super) enum PubSubCommand {
    Subscribe(String),
    Unsubscribe(String),
}

impl PubSubCommand {
    /// `Subscribe` when a first holder appeared, `Unsubscribe` after the last left.
    pub(super) fn toggle(channel: String, first: bool) -> PubSubCommand {
        if first {
            PubSubCommand::Subscribe(channel)
        } else {
            PubSubCommand::Unsubscribe(channel)
        }
    }
}

/// Everything the pub/sub task needs; consumed by [`PubSub::start`].
pub(super) struct PubSub {
    /// Opens connections.
    pub(super) client: Client,
    /// Subscribe/unsubscribe requests from the interest registries.
    pub(super) commands: mpsc::UnboundedReceiver<PubSubCommand>,
    /// `{ns}:rt:`.
    pub(super) rt_prefix: String,
    /// Queue wake-ups.
    pub(super) queues: Arc<Interests<Arc<Notify>>>,
    /// Channel fan-out.
    pub(super) hub: Arc<ChannelHub>,
    /// Revocations.
    pub(super) revocations: broadcast::Sender<String>,
    /// Reconnections (metric).
    pub(super) reconnects: Counter,
    /// Cancelled when the engine is dropped.
    pub(super) stop: CancellationToken,
}

impl PubSub {
    /// Opens the first connection (failing if Redis is unreachable) and spawns the task that
    /// keeps it. The task ends when the engine is dropped.
    pub(super) async fn start(mut self) -> Result<(), EngineError> {
        let (sink, stream) = self.connect().await?;
        tokio::spawn(async move {
            let mut conn = Some((sink, stream));
            let mut backoff = BACKOFF_MIN;
            loop {
                let (sink, stream) = match conn.take() {
                    Some(c) => c,
                    None => match self.connect_unless_stopped().await {
                        Ok(c) => {
                            self.reconnects.inc();
                            info!("pub/sub reconnected; subscriptions restored");
                            backoff = BACKOFF_MIN;
                            c
                        }
                        Err(None) => return,
                        Err(Some(err)) => {
                            warn!(cause = %err, retry_in = ?backoff, "pub/sub reconnect failed");
                            tokio::select! {
                                () = self.stop.cancelled() => return,
                                () = tokio::time::sleep(backoff) => {}
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
                // Wake every local consumer: notifications may have been lost meanwhile.
                for queue in self.queues.names() {
                    if let Some(notify) = self.queues.get(&queue) {
                        notify.notify_waiters();
                    }
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

    /// Connects and subscribes to everything currently wanted.
    async fn connect(&mut self) -> Result<(PubSubSink, redis::aio::PubSubStream), EngineError> {
        let unavailable = |e: redis::RedisError| EngineError::Unavailable(e.to_string());
        let pubsub = self.client.get_async_pubsub().await.map_err(unavailable)?;
        let (mut sink, stream) = pubsub.split();
        let mut wanted = vec![keys::REVOKE_CHANNEL.to_owned()];
        wanted.extend(
            self.queues
                .names()
                .into_iter()
                .map(|q| format!("{}{q}", self.rt_prefix)),
        );
        wanted.extend(self.hub.channels().iter().map(|c| keys::channel(c)));
        sink.subscribe(&wanted).await.map_err(unavailable)?;
        Ok((sink, stream))
    }

    /// Serves one connection: `false` when the engine is gone, `true` when the connection
    /// dropped.
    async fn serve(&mut self, mut sink: PubSubSink, mut stream: redis::aio::PubSubStream) -> bool {
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return false,
                command = self.commands.recv() => {
                    let result = match command {
                        Some(PubSubCommand::Subscribe(ch)) => sink.subscribe(&ch).await,
                        Some(PubSubCommand::Unsubscribe(ch)) => sink.unsubscribe(&ch).await,
                        None => return false,
                    };
                    if let Err(err) = result {
                        warn!(cause = %err, "pub/sub command failed");
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

    fn dispatch(&self, msg: &Msg) {
        let channel = msg.get_channel_name();
        if let Some(queue) = channel.strip_prefix(self.rt_prefix.as_str()) {
            if let Some(notify) = self.queues.get(queue) {
                notify.notify_waiters();
            }
        } else if let Some(name) = keys::channel_name(channel) {
            let body = String::from_utf8_lossy(msg.get_payload_bytes());
            self.hub.dispatch(name, &body);
        } else if channel == keys::REVOKE_CHANNEL {
            let user = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
            let _ = self.revocations.send(user);
        }
    }
}
