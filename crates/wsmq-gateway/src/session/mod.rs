//! One WebSocket session: one task that reads client frames and writes the bounded queue of
//! outbound frames.
//!
//! The task waits on the socket's read half, the outbound queue, the ping timer and the ways a
//! session ends, all in one `select!`. Client frames go to the dialect ([`legacy`] or [`v1`],
//! with one module per v1 op under [`ops`]); frames from the bounded [`Outbound`] queue go to
//! the socket through the `writer`, which batches what is ready before each flush and reports
//! written queue deliveries back (legacy deletes on write). Writing goes on while a client
//! frame is being handled, and reading goes on while a write waits for the client, as with a
//! reader and a writer task of their own, without the second task (and its share of an idle
//! session's memory). Every producer (replies, deliveries, channel frames) pushes without
//! waiting (see [`crate::outbound`]): a client whose queue is full is not reading, and is
//! closed with 4008; its unacked messages are released for redelivery.
//!
//! Everything ends through one [`Closer`] (a child of the root shutdown token plus the close
//! code): revocation (4003), JWT expiry (4001), slow client (4008), oversize frame (1009), the
//! client leaving (1000), or the shutdown (1012, the default when the root is cancelled).
//!
//! The session is generic over `Sink<Message> + Stream<Item = Result<Message, _>>`, so it can
//! be driven without a socket in tests.

mod legacy;
mod ops;
mod rate;
pub(crate) mod sse;
mod subscribe;
mod subscriptions;
mod v1;
mod writer;

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::{Sink, Stream, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};
use wsmq_proto::{ChannelName, CloseCode, QueueName};

use crate::{
    abort::ConnAbort,
    auth::Identity,
    clock,
    delivery::QueueSubscription,
    hub::ChannelSubscription,
    mailbox,
    outbound::{Closer, Dialect, OutFrame, Outbound, Payload},
    revocation,
    state::Gateway,
};
use subscriptions::Subscriptions;
use writer::{Stop, Writer};

/// The state of one session, shared by the dialects and ops.
pub(crate) struct Session {
    /// Node state.
    pub gateway: Arc<Gateway>,
    /// Who is connected.
    pub identity: Identity,
    /// Legacy or v1.
    pub dialect: Dialect,
    /// Frames to the client.
    pub out: Outbound,
    /// Ends the session.
    pub closer: Closer,
    /// Parent of the subscription tasks' tokens.
    pub token: CancellationToken,
    /// Queue subscriptions (dropping one ends it and releases its in-flight messages).
    pub queues: Subscriptions<QueueName, QueueSubscription>,
    /// Channel subscriptions (dropping one ends it).
    pub channels: Subscriptions<ChannelName, ChannelSubscription>,
    /// When the session's JWT expires (4001), if it does.
    pub expires_at: Option<Instant>,
    /// When grants adopted by an access-token session (from an `auth` JWT) end, if any.
    pub grants_expire_at: Option<Instant>,
    /// The session's number in the node's registry.
    pub registration: u64,
    /// What is left of the session's budget of costly ops (`--op-rate-limit`).
    pub ops: rate::OpBudget,
}

impl Session {
    /// Queues an encoded frame for the client.
    pub(crate) fn send(&self, text: impl Into<Utf8Bytes>) {
        self.out.push(OutFrame::text(text));
    }

    /// Subscriptions of both kinds.
    pub(crate) fn subscription_count(&self) -> usize {
        self.queues.len() + self.channels.len()
    }

    /// Sets the expiry timer from a JWT `exp` (Unix seconds).
    pub(crate) fn set_expiry(&mut self, exp: Option<u64>) {
        self.expires_at =
            exp.and_then(|exp| expiry_instant(Instant::now(), exp, clock::unix_secs()));
    }

    /// Sets when adopted grants end, from their JWT's `exp` (Unix seconds); `None`: never.
    pub(crate) fn set_grants_expiry(&mut self, exp: Option<u64>) {
        self.grants_expire_at =
            exp.and_then(|exp| expiry_instant(Instant::now(), exp, clock::unix_secs()));
    }

    /// Adopted grants ran out: back to what the access token alone allows.
    fn drop_adopted_grants(&mut self) {
        info!("grants of the refreshed token expired");
        self.identity.grants = None;
        self.grants_expire_at = None;
        subscribe::end_unallowed(self);
    }
}

/// When a token with `exp` (Unix seconds, from outside) expires, as an instant; `None` when
/// that is too far away for the clock to represent (an `exp` near 2^63 would overflow
/// `Instant + Duration`): such a token does not expire within the life of the process.
fn expiry_instant(now: Instant, exp: u64, now_secs: u64) -> Option<Instant> {
    now.checked_add(Duration::from_secs(exp.saturating_sub(now_secs)))
}

/// Starts a session on an upgraded socket; the future runs it until it ends, then cleans up.
///
/// Takes the two halves separately (a split `WebSocketStream`, or channels in tests).
/// `epoch` is the session registry's epoch read before the credential was checked. `abort`,
/// the connection's, resets the socket of a session closed as a slow client (4008) whose
/// close frame could not be written: the client is not reading, and an ordinary close would
/// leave the kernel holding what it was sent, retrying for minutes (see `crate::abort`).
///
/// Not an `async fn`: the session is set up here, and the future holds only what it runs
/// on. An `async fn` keeps its arguments for as long as it runs, beside the session that
/// took them over (the identity alone is about 120 bytes), in every idle session's task.
pub(crate) fn run<W, R>(
    sink: W,
    stream: R,
    gateway: Arc<Gateway>,
    identity: Identity,
    dialect: Dialect,
    epoch: u64,
    abort: Option<ConnAbort>,
) -> impl Future<Output = ()>
where
    W: Sink<Message, Error = tungstenite::Error> + Unpin,
    R: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let (mut session, rx, registered_epoch) = Session::open(gateway, identity, dialect);
    let closer = session.closer.clone();
    let mut writer = Writer::new(sink, rx, Arc::clone(&session.gateway));
    // Fused: `linger` reads on after the read loop, which may have seen the end already.
    let mut stream = stream.fuse();
    async move {
        if registered_epoch != epoch {
            let gateway = &session.gateway;
            let user = session.identity.user.as_str();
            // Boxed: rare, and it would otherwise add to every idle session's task.
            Box::pin(recheck(gateway, user, &session.identity, &closer)).await;
        }
        // A session closed by its re-check gets no welcome (nor the token in it).
        if dialect == Dialect::V1 && !closer.is_closed() {
            v1::welcome(&session);
        }
        read_loop(&mut session, &mut stream, &mut writer).await;
        let gateway = Arc::clone(&session.gateway);
        // Boxed, as what follows the read loop: an `async fn` keeps its arguments, so the
        // session and the writer would be held a second time, with the close's timers, in
        // every idle session's task (1 KiB of it, heaptrack at 2,000 idle v1 sessions).
        if !Box::pin(session.finish(writer)).await
            && closer.code() == CloseCode::SLOW_CONSUMER
            && let Some(abort) = abort
        {
            // Nothing to linger for: the client reads nothing, not even our close. Legacy
            // sessions too: the legacy messages the kernel holds were deleted once written,
            // but an ordinary close would seldom deliver them either, since the client's next
            // write (a pong, a timestamp) to the closed socket makes the kernel reset it.
            info!("connection reset: the client does not read");
            gateway.metrics.connections_reset.inc();
            abort.reset_on_drop();
            return;
        }
        Box::pin(linger(&mut stream)).await;
    }
}

impl Session {
    /// A new session of `identity`, registered with the node (so revocations reach it), and
    /// the receiving end of its outbound queue, for its writer. Also returns the registry's
    /// epoch at registration, which the caller compares with the one it read before checking
    /// the credential.
    fn open(
        gateway: Arc<Gateway>,
        identity: Identity,
        dialect: Dialect,
    ) -> (Session, mailbox::Receiver<OutFrame>, u64) {
        let token = gateway.shutdown.token.child_token();
        let closer = Closer::new(token.clone());
        let (tx, rx) = mailbox::channel(gateway.config.limits.outbound_buffer);
        let out = Outbound::new(tx, closer.clone());
        let (registration, registered_epoch) = gateway.sessions.register(
            identity.user.as_str(),
            closer.clone(),
            identity.credential(),
        );
        gateway.metrics.connections.inc();
        info!("session opened");
        let ops = rate::OpBudget::new(gateway.config.limits.op_rate_limit);
        let mut session = Session {
            gateway,
            identity,
            dialect,
            out,
            closer,
            token,
            queues: Subscriptions::new(),
            channels: Subscriptions::new(),
            expires_at: None,
            grants_expire_at: None,
            registration,
            ops,
        };
        session.set_expiry(session.identity.exp);
        (session, rx, registered_epoch)
    }

    /// Ends the session once its loop is done: ends the subscriptions (which apply the acks
    /// already sent, then release what is still in flight), lets the writer finish and write
    /// the close, then counts and unregisters the session.
    ///
    /// Returns whether the close frame was written in time (see [`Writer::close`]).
    async fn finish<W>(mut self, writer: Writer<W>) -> bool
    where
        W: Sink<Message, Error = tungstenite::Error> + Unpin,
    {
        // Every frame the session took was handled before it read the next, so each ack or
        // nack it read is in its subscription's command channel by now; the subscriptions
        // apply those before they release what is still in flight for redelivery.
        // Cancel without choosing a code: whoever ended the session chose one already, and
        // a root cancellation (shutdown) means 1012.
        self.token.cancel();
        self.queues.clear();
        self.channels.clear();
        let gateway = Arc::clone(&self.gateway);
        let user = self.identity.user.clone();
        let closer = self.closer.clone();
        let registration = self.registration;
        drop(self);
        let close_written = writer.close(&closer).await;
        let code = closer.code();
        if code == CloseCode::SLOW_CONSUMER {
            gateway.metrics.slow_clients.inc();
        }
        gateway.metrics.session_closed(code.as_u16());
        gateway.sessions.unregister(user.as_str(), registration);
        gateway.metrics.connections.dec();
        info!(code = code.as_u16(), "session closed");
        close_written
    }
}

/// Re-checks the credential of a session that registered while the node saw a revocation: the
/// handshake may have read the records just before it, and the revocation then found no
/// session to close. A credential that cannot be checked does not keep the session either.
async fn recheck(gateway: &Gateway, user: &str, identity: &Identity, closer: &Closer) {
    match revocation::still_valid(gateway, user, &identity.credential()).await {
        Ok(true) => {}
        Ok(false) => {
            info!("access revoked during the handshake; closing");
            closer.close(CloseCode::FORBIDDEN);
        }
        Err(err) => {
            info!(cause = %err, "cannot re-check the credential; closing");
            closer.close(CloseCode::INTERNAL);
        }
    }
}

/// Reads and handles client frames, and writes outbound ones, until the session closes.
async fn read_loop<W, R>(session: &mut Session, mut stream: R, writer: &mut Writer<W>)
where
    W: Sink<Message, Error = tungstenite::Error> + Unpin,
    R: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let closer = session.closer.clone();
    // Server pings keep NATs and proxies open and detect dead peers: a client that sends
    // nothing at all (not even the automatic pong) for two intervals is gone.
    let ping_every = session.gateway.config.limits.ping_interval;
    let mut next_ping = Instant::now() + ping_every;
    let mut last_seen = Instant::now();
    // One timer, inside the task, for the next ping and the token's expiry, whichever comes
    // first: an `Interval` boxes a timer of its own, and each timer is part of every idle
    // session.
    let timer = tokio::time::sleep_until(next_ping);
    tokio::pin!(timer);
    let config = &session.gateway.config;
    let mut rate = rate::RateLimit::new(config.limits.rate_limit, config.limits.rate_burst);
    // Resolves in a drain once the session holds no unacknowledged message (at once for a
    // session without queue subscriptions), so its client reconnects elsewhere without delay.
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
        let expiry = session.expires_at;
        let grants_expiry = session.grants_expire_at;
        let wake = [expiry, grants_expiry]
            .into_iter()
            .flatten()
            .fold(next_ping, Instant::min);
        if timer.deadline() != wake {
            timer.as_mut().reset(wake);
        }
        let frame = tokio::select! {
            biased;
            () = closer.closed() => break,
            () = &mut drained => {
                closer.close(CloseCode::SERVICE_RESTART);
                break;
            }
            () = &mut timer => {
                // Never before the deadline, so that whatever it was set for is due.
                let now = Instant::now().max(timer.deadline());
                if expiry.is_some_and(|at| at <= now) {
                    info!("token expired");
                    closer.close(CloseCode::TOKEN_EXPIRED);
                    break;
                }
                if grants_expiry.is_some_and(|at| at <= now) {
                    session.drop_adopted_grants();
                }
                if now >= next_ping {
                    // As an `Interval` would (missed pings are caught up at once).
                    next_ping += ping_every;
                    if last_seen.elapsed() >= ping_every * 2 {
                        info!("idle timeout");
                        closer.close(CloseCode::POLICY);
                        break;
                    }
                    session.out.push(OutFrame {
                        payload: Payload::Ping,
                        report: None,
                    });
                }
                continue;
            }
            // Before the socket, so that a client sending fast still gets written to; it
            // yields after each batch, so that a busy queue does not keep us from reading.
            stop = std::future::poll_fn(|cx| writer.poll_write(cx)), if writer.is_writing() => {
                if let Stop::Failed(err) = stop {
                    Box::pin(writer.fail(err, &closer)).await;
                }
                continue;
            }
            frame = stream.next() => frame,
        };
        last_seen = Instant::now();
        if let Some(Ok(Message::Text(_) | Message::Binary(_))) = &frame {
            match rate.check() {
                rate::Verdict::Allow => {}
                rate::Verdict::Refuse => {
                    session.gateway.metrics.rate_limited.inc();
                    if let Some(Ok(Message::Text(text))) = &frame {
                        refuse_over_rate(session, text.as_str());
                    }
                    continue;
                }
                rate::Verdict::Close => {
                    session.gateway.metrics.rate_limited.inc();
                    info!("inbound flood; closing");
                    closer.close(CloseCode::RATE_LIMITED);
                    break;
                }
            }
        }
        match frame {
            Some(Ok(Message::Text(text))) => {
                session.gateway.metrics.frames_in.inc();
                // Boxed: handling a frame takes more state than waiting for one, and an
                // unboxed handler would be part of every idle session's task for good.
                match session.dialect {
                    Dialect::Legacy => {
                        let handling = legacy::on_text(session, text.as_str());
                        Box::pin(writing_meanwhile(writer, &closer, handling)).await;
                    }
                    Dialect::V1 => {
                        let handling = v1::on_text(session, text.as_str());
                        Box::pin(writing_meanwhile(writer, &closer, handling)).await;
                    }
                }
            }
            Some(Ok(Message::Binary(_))) => {
                session.gateway.metrics.frames_in.inc();
                if session.dialect == Dialect::V1 {
                    v1::on_binary(session);
                }
            }
            // tungstenite answers pings itself; pongs and raw frames need nothing.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(_))) | None => {
                closer.close(CloseCode::NORMAL);
                break;
            }
            Some(Err(tungstenite::Error::Capacity(err))) => {
                info!(cause = %err, "frame too large");
                closer.close(CloseCode::TOO_BIG);
                break;
            }
            // tungstenite reports a broken frame but leaves the close code to us (RFC 6455
            // 7.4.1): 1007 for a text frame that is not UTF-8, 1002 for broken framing.
            Some(Err(tungstenite::Error::Utf8(_))) => {
                info!("text frame is not utf-8");
                closer.close(CloseCode::INVALID_PAYLOAD);
                break;
            }
            Some(Err(tungstenite::Error::Protocol(err))) if is_framing_error(&err) => {
                info!(cause = %err, "websocket protocol error");
                closer.close(CloseCode::PROTOCOL_ERROR);
                break;
            }
            Some(Err(err)) => {
                debug!(cause = %err, "read failed");
                closer.close(CloseCode::NORMAL);
                break;
            }
        }
    }
}

/// Awaits `work` (the handling of a client frame, which may wait for the engine) while the
/// writer goes on writing: replies and deliveries do not pile up behind a slow engine call
/// until the queue overflows (4008).
async fn writing_meanwhile<W, F>(writer: &mut Writer<W>, closer: &Closer, work: F)
where
    W: Sink<Message, Error = tungstenite::Error> + Unpin,
    F: Future<Output = ()>,
{
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            biased;
            () = &mut work => return,
            stop = std::future::poll_fn(|cx| writer.poll_write(cx)), if writer.is_writing() => {
                if let Stop::Failed(err) = stop {
                    writer.fail(err, closer).await;
                }
            }
        }
    }
}

/// Whether a read error is the client breaking WebSocket framing (worth a 1002), as opposed to
/// the connection going away.
fn is_framing_error(err: &tungstenite::error::ProtocolError) -> bool {
    use tungstenite::error::ProtocolError as P;
    matches!(
        err,
        P::UnmaskedFrameFromClient
            | P::NonZeroReservedBits
            | P::UnknownControlFrameType(_)
            | P::UnknownDataFrameType(_)
            | P::UnexpectedContinueFrame
            | P::ExpectedFragment(_)
            | P::FragmentedControlFrame
            | P::ControlFrameTooBig
            | P::InvalidCloseSequence
            | P::InvalidOpcode(_)
    )
}

/// Answers a frame over the rate limit: v1 gets a `rate_limited` error (with the request's
/// `ref` when it has one); legacy has no error frame, and its clients only ever send one
/// command, so the frame is dropped.
fn refuse_over_rate(session: &Session, text: &str) {
    if session.dialect != Dialect::V1 {
        return;
    }
    let reference = match wsmq_proto::decode_request(text) {
        Ok(frame) => frame.reference,
        Err(rejection) => rejection.reference,
    };
    let frame = wsmq_proto::ServerFrame::error(
        reference,
        wsmq_proto::ErrorCode::RateLimited,
        "too many frames; slow down",
    );
    session.send(wsmq_proto::encode_server(&frame));
}

/// How long a closing session keeps reading for the client's close reply.
const LINGER: Duration = Duration::from_secs(1);

/// After the close frame is written: reads and discards until the client answers the close,
/// hangs up or errs, for at most [`LINGER`]. Dropping a socket that has unread data makes the
/// kernel reset the connection and discard what it has not sent yet, which can be our close
/// frame: a client that floods (4029) or sends an oversize frame (1009) would then never learn
/// why it was closed.
async fn linger<R>(stream: &mut R)
where
    R: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let _ = tokio::time::timeout(LINGER, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests;
