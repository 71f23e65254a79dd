//! An SSE stream: a v1 session whose writer is an HTTP body and which reads nothing.
//!
//! Everything but the socket is the WebSocket session's: the same [`Session`] state and
//! registration (so revocations and JWT expiry end it), the same subscribing
//! (`session::subscribe`, channel recovery in `ops::recover`), the same delivery tasks with
//! their window, the same bounded outbound queue (a stream whose client does not read is
//! ended as a slow client, 4008, and its messages released) and the same [`Writer`], over a
//! sink ([`EventSink`]) that turns each frame into an event and hands it to the response body.
//!
//! The stream reads nothing: acks come over HTTP (`crate::acks`), through the node's stream
//! registry to the subscriptions' command mailboxes. The client leaving drops the body, which
//! closes the channel the sink writes to; the stream sees that at once (not at its next
//! write), so the messages it held are released for redelivery without waiting for a vt.
//!
//! A stream ended as a slow client also ends its connection: hyper cannot finish a body the
//! client does not read, and would keep the connection (its `--max-connections` permit, the
//! kernel's buffers full of events) until the client reads or leaves. The stream requests the
//! connection's abort, and the accept loop resets it after a short grace.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use futures_util::Sink;
use tokio::{sync::mpsc, time::Instant};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::PollSender;
use tracing::info;
use wsmq_proto::{ChannelName, CloseCode, QueueName, StreamPosition};

use super::{
    Session, ops,
    writer::{Stop, Writer},
};
use crate::{
    abort::ConnAbort,
    auth::Identity,
    error::GatewayError,
    http::Body,
    outbound::{Dialect, OutFrame, Payload},
    state::Gateway,
};

/// The longest gap between two writes: a comment line then keeps proxies (and the browser)
/// from taking an idle stream for a dead one. `--ping-interval`, when shorter, wins.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Event chunks waiting for hyper: a few, so that a client that does not read backs up
/// into the outbound queue, where the slow-client rule decides.
const BODY_CHUNKS: usize = 8;

/// What a stream subscribes to, from the request.
#[derive(Debug, Default)]
pub(crate) struct StreamRequest {
    /// `queue=` parameters.
    pub queues: Vec<QueueName>,
    /// `channel=` parameters.
    pub channels: Vec<ChannelName>,
    /// `Last-Event-ID`, when it names a channel position (`epoch:offset`): channels with
    /// history resume after it.
    pub since: Option<StreamPosition>,
}

/// Opens a stream of `identity`: registers the session, subscribes it, and starts its task.
/// Returns the response body, or why a subscription was refused (then nothing stays open).
///
/// `epoch` is the session registry's epoch read before the credential was checked; `hold` is
/// kept until the stream ends (the connection permit of `--max-connections`). `abort`, the
/// connection's, is requested when the stream ends as a slow client: the response cannot
/// finish while the client does not read, so only dropping the connection frees its permit
/// and the kernel's buffers (see `crate::abort`).
pub(crate) async fn open<H: Send + 'static>(
    gateway: Arc<Gateway>,
    identity: Identity,
    request: StreamRequest,
    epoch: u64,
    hold: H,
    abort: Option<ConnAbort>,
) -> Result<Body, GatewayError> {
    let (mut session, rx, registered_epoch) = Session::open(gateway, identity, Dialect::V1);
    let (tx, body) = mpsc::channel(BODY_CHUNKS);
    // A first byte at once: proxies that hold the response headers back until the body starts
    // would otherwise keep a stream of idle queues silent until the first keep-alive (15 s).
    let _ = tx.try_send(Bytes::from_static(OPENED));
    let gone = tx.clone();
    let writer = Writer::new(EventSink::new(tx), rx, Arc::clone(&session.gateway));
    for queue in request.queues {
        if let Err(refusal) = super::subscribe::queue(&mut session, queue, None).await {
            session.closer.close(CloseCode::NORMAL);
            session.finish(writer).await;
            return Err(refusal.into_error());
        }
    }
    for channel in request.channels {
        // The same as a v1 `subscribe` with `since`: `ok` (with the channel's position when it
        // keeps history), the replay, then live. A refusal reaches the stream as an `error`
        // event; the route checked the grants already, so that is an engine failure.
        let since = request.since.clone();
        if let ops::Reply::Now(frame) =
            ops::recover::apply(&mut session, channel, since, false, None).await
        {
            session.send(wsmq_proto::encode_server(&frame));
        }
    }
    let queues = session
        .queues
        .keys()
        .filter_map(|q| Some((q.clone(), session.queues.get(q)?.commands.clone())))
        .collect();
    let user = session.identity.user.as_str().to_owned();
    session
        .gateway
        .streams
        .add(&user, session.registration, queues);
    let gateway = Arc::clone(&session.gateway);
    let run = async move {
        if registered_epoch != epoch {
            let closer = session.closer.clone();
            let gateway = &session.gateway;
            super::recheck(gateway, &user, &session.identity, &closer).await;
        }
        let mut writer = writer;
        stream_loop(&mut session, &mut writer, &gone).await;
        session.gateway.streams.remove(&user, session.registration);
        let closer = session.closer.clone();
        session.finish(writer).await;
        // Only a slow client: after any other end the client is reading, and must get the
        // `close` event and the end of the body.
        if closer.code() == CloseCode::SLOW_CONSUMER
            && let Some(abort) = abort
        {
            abort.request();
        }
        drop(hold);
    };
    gateway.shutdown.spawn(run);
    Ok(Body::Stream(body))
}

/// The comment a stream starts with.
const OPENED: &[u8] = b": stream open\n\n";

/// Writes the outbound queue to the body, with a keep-alive comment when idle, until the
/// session closes, the node drains, the token expires or the client leaves.
async fn stream_loop(
    session: &mut Session,
    writer: &mut Writer<EventSink>,
    gone: &mpsc::Sender<Bytes>,
) {
    let closer = session.closer.clone();
    let keep_alive = KEEP_ALIVE.min(session.gateway.config.limits.ping_interval);
    let mut next_ping = Instant::now() + keep_alive;
    let timer = tokio::time::sleep_until(next_ping);
    tokio::pin!(timer);
    // As for a WebSocket: in a drain, ends once the stream holds no unacked message.
    let drained = {
        let drain = session.gateway.shutdown.drain_started.clone();
        let deliveries = session.out.deliveries.clone();
        async move {
            drain.cancelled().await;
            deliveries.close();
            deliveries.wait().await;
        }
    };
    tokio::pin!(drained);
    loop {
        let wake = session.expires_at.map_or(next_ping, |at| at.min(next_ping));
        if timer.deadline() != wake {
            timer.as_mut().reset(wake);
        }
        tokio::select! {
            biased;
            () = closer.closed() => break,
            () = &mut drained => {
                closer.close(CloseCode::SERVICE_RESTART);
                break;
            }
            () = gone.closed() => {
                info!("stream client left");
                closer.close(CloseCode::NORMAL);
                break;
            }
            () = &mut timer => {
                let now = Instant::now().max(timer.deadline());
                if session.expires_at.is_some_and(|at| at <= now) {
                    info!("token expired");
                    closer.close(CloseCode::TOKEN_EXPIRED);
                    break;
                }
                if now >= next_ping {
                    next_ping = now + keep_alive;
                    session.out.push(OutFrame { payload: Payload::Ping, report: None });
                }
            }
            stop = std::future::poll_fn(|cx| writer.poll_write(cx)), if writer.is_writing() => {
                if let Stop::Failed(err) = stop {
                    writer.fail(err, &closer).await;
                }
            }
        }
    }
}

/// A `Sink<Message>` that writes Server-Sent Events to a response body: a text frame becomes
/// an event (see [`encode_event`]), a ping a `: keep-alive` comment, the close frame a
/// `close` event with the code and reason.
pub(crate) struct EventSink {
    tx: PollSender<Bytes>,
}

impl EventSink {
    fn new(tx: mpsc::Sender<Bytes>) -> EventSink {
        EventSink {
            tx: PollSender::new(tx),
        }
    }
}

impl Sink<Message> for EventSink {
    type Error = tungstenite::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let ready = ready!(self.tx.poll_reserve(cx));
        Poll::Ready(ready.map_err(|_| tungstenite::Error::ConnectionClosed))
    }

    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), Self::Error> {
        let chunk = match message {
            Message::Text(text) => encode_event(text.as_str()),
            Message::Ping(_) => Some(Bytes::from_static(b": keep-alive\n\n")),
            Message::Close(frame) => {
                let (code, reason) = frame.map_or((1000, String::new()), |f| {
                    (u16::from(f.code), f.reason.as_str().to_owned())
                });
                let data = serde_json::json!({"code": code, "reason": reason});
                Some(Bytes::from(format!("event: close\ndata: {data}\n\n")))
            }
            _ => None,
        };
        match chunk {
            Some(chunk) => self
                .tx
                .send_item(chunk)
                .map_err(|_| tungstenite::Error::ConnectionClosed),
            None => {
                // The slot reserved for it goes back.
                self.tx.abort_send();
                Ok(())
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A chunk handed over is with hyper already.
        Poll::Ready(Ok(()))
    }

    fn poll_close(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Result<(), Self::Error>> {
        self.tx.close();
        Poll::Ready(Ok(()))
    }
}

/// The event for a v1 frame: `message` events (the default type, so `onmessage` gets them)
/// for deliveries, with `id:` the message id (queues) or `epoch:offset` (channels with
/// history); other frames (`ok`, `error`, `reset`, `presence`) as events named by their op,
/// which `onmessage` does not see. The frame is the `data:` line as it is: the encoder
/// escapes newlines inside strings, so it is one line.
fn encode_event(frame: &str) -> Option<Bytes> {
    #[derive(serde::Deserialize)]
    struct Head {
        op: String,
        id: Option<String>,
        offset: Option<u64>,
        epoch: Option<String>,
    }
    let head: Head = serde_json::from_str(frame).ok()?;
    let mut event = String::with_capacity(frame.len() + 64);
    if head.op != "message" {
        event.push_str("event: ");
        event.push_str(&head.op);
        event.push('\n');
    }
    if let Some(id) = head.id {
        event.push_str("id: ");
        event.push_str(&id);
        event.push('\n');
    } else if let (Some(offset), Some(epoch)) = (head.offset, head.epoch) {
        event.push_str(&format!("id: {epoch}:{offset}\n"));
    }
    for line in frame.lines() {
        event.push_str("data: ");
        event.push_str(line);
        event.push('\n');
    }
    event.push('\n');
    Some(Bytes::from(event))
}

/// The channel position a `Last-Event-ID` names (`epoch:offset`), if it names one.
pub(crate) fn parse_last_event_id(id: &str) -> Option<StreamPosition> {
    let (epoch, offset) = id.rsplit_once(':')?;
    let offset = offset.parse().ok()?;
    (!epoch.is_empty()).then(|| StreamPosition {
        offset,
        epoch: epoch.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_become_message_events_with_their_ids() {
        let queue = r#"{"op":"message","queue":"q","id":"abc","message":"hi","rc":1,"sent":5}"#;
        let event = encode_event(queue).unwrap();
        assert_eq!(event, format!("id: abc\ndata: {queue}\n\n"));
        let channel = r#"{"op":"message","channel":"c","message":"hi","offset":7,"epoch":"e1"}"#;
        let event = encode_event(channel).unwrap();
        assert_eq!(event, format!("id: e1:7\ndata: {channel}\n\n"));
        let ok = r#"{"op":"ok"}"#;
        assert_eq!(
            encode_event(ok).unwrap(),
            format!("event: ok\ndata: {ok}\n\n")
        );
        assert!(encode_event("not json").is_none());
    }

    #[test]
    fn last_event_id_names_a_channel_position_or_nothing() {
        let at = parse_last_event_id("e1:7").unwrap();
        assert_eq!((at.epoch.as_str(), at.offset), ("e1", 7));
        assert!(parse_last_event_id("abcdef").is_none());
        assert!(parse_last_event_id(":7").is_none());
        assert!(parse_last_event_id("e1:x").is_none());
    }
}
