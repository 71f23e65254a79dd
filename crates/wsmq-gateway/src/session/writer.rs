//! The writing side of a session: frames from the outbound queue to the socket, a batch per
//! flush, then the close frame; written queue deliveries are counted and the legacy ones
//! reported to their subscriptions, which delete them.
//!
//! The writer is not a task of its own: the session's task polls it beside the socket's read
//! half (see `session::run`), through [`Writer::poll_write`], which keeps everything it has
//! taken from the queue in the [`Writer`] itself. Dropping that poll between two wake-ups (the
//! session's `select!` does, each time another branch wins) therefore loses nothing, and an
//! idle session holds no write future at all, only the few fields below.
//!
//! A frame counts as written once a flush has handed it to the socket. A client that closes
//! while a batch is on its way still gets most of that batch (see [`written_despite`]), and
//! those deliveries are reported too, so that a legacy message the client may have read is
//! deleted rather than handed out again.

use std::{
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use futures_util::{Sink, SinkExt};
use tokio_tungstenite::tungstenite::{
    self, Message,
    protocol::{CloseFrame, frame::coding::CloseCode as WsCloseCode},
};
use tracing::debug;
use wsmq_proto::CloseCode;

use crate::{
    clock, mailbox,
    outbound::{Closer, OutFrame, WriteReport},
    state::Gateway,
};

/// Frames written per flush at most (the rest wait for the next flush).
const WRITE_BATCH: usize = 64;
/// How long the final close frame may take to write, and a flush after a failed write; and
/// how long a batch already on its way when the session closes may take to finish.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why [`Writer::poll_write`] stopped writing.
#[derive(Debug)]
pub(super) enum Stop {
    /// A write or flush failed; [`Writer::fail`] says what of the batch got out.
    Failed(tungstenite::Error),
    /// The queue ended: every producer is gone.
    Ended,
}

/// The socket's write half, the outbound queue it writes from, and the batch in progress.
pub(super) struct Writer<W> {
    sink: W,
    rx: mailbox::Receiver<OutFrame>,
    gateway: Arc<Gateway>,
    /// Taken from the queue, not yet accepted by the sink (it was not ready).
    pending: Option<OutFrame>,
    /// The reports of the batch's frames fed but the last, whose report waits in `last`:
    /// after a failed write, that frame is the one that may not have got out (see
    /// [`written_despite`]).
    reports: Vec<WriteReport>,
    last: Option<WriteReport>,
    /// Frames fed in this batch.
    count: usize,
    /// The batch is fed and being flushed.
    flushing: bool,
    /// Writing stopped (a write failed or the queue ended); only the close frame is left.
    stopped: bool,
}

impl<W> Writer<W>
where
    W: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    pub(super) fn new(sink: W, rx: mailbox::Receiver<OutFrame>, gateway: Arc<Gateway>) -> Self {
        Writer {
            sink,
            rx,
            gateway,
            pending: None,
            reports: Vec::new(),
            last: None,
            count: 0,
            flushing: false,
            stopped: false,
        }
    }

    /// Whether [`Writer::poll_write`] may still make progress.
    pub(super) fn is_writing(&self) -> bool {
        !self.stopped
    }

    /// Writes what the queue holds, a batch per flush, for as long as the queue and the
    /// socket allow; `Ready` only when writing stopped (then the writer stays stopped).
    ///
    /// One batch per call at most: then it yields, so that a client that keeps the queue
    /// busy does not keep the session from reading.
    pub(super) fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Stop> {
        if self.stopped {
            return Poll::Pending;
        }
        match ready!(self.poll_batch(cx, true)) {
            Ok(true) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Ok(false) => {
                self.stopped = true;
                Poll::Ready(Stop::Ended)
            }
            Err(err) => {
                self.stopped = true;
                Poll::Ready(Stop::Failed(err))
            }
        }
    }

    /// Drives one batch to its flush: `Ok(true)` once flushed and reported, `Ok(false)` when
    /// there was no batch (the queue ended, or, without `wait`, held nothing). With `wait`,
    /// an idle writer waits for the queue's next frame to start one.
    fn poll_batch(
        &mut self,
        cx: &mut Context<'_>,
        wait: bool,
    ) -> Poll<Result<bool, tungstenite::Error>> {
        loop {
            if self.flushing {
                ready!(self.sink.poll_flush_unpin(cx))?;
                self.flushing = false;
                self.gateway.metrics.frames_out.inc_by(self.count as u64);
                self.count = 0;
                self.reports.extend(self.last.take());
                report_written(&self.gateway, self.reports.drain(..));
                return Poll::Ready(Ok(true));
            }
            if self.pending.is_none() {
                if self.count == 0 {
                    let next = if wait {
                        ready!(self.rx.poll_recv(cx))
                    } else {
                        self.rx.try_recv().ok()
                    };
                    match next {
                        Some(frame) => self.pending = Some(frame),
                        None => return Poll::Ready(Ok(false)),
                    }
                } else if self.count < WRITE_BATCH {
                    self.pending = self.rx.try_recv().ok();
                }
                if self.pending.is_none() {
                    self.flushing = true;
                    continue;
                }
            }
            ready!(self.sink.poll_ready_unpin(cx))?;
            let Some(frame) = self.pending.take() else {
                continue;
            };
            self.sink.start_send_unpin(frame.payload.into_message())?;
            self.reports.extend(self.last.take());
            self.last = frame.report;
            self.count += 1;
        }
    }

    /// After a failed write or flush: reports what of the batch surely got out and closes the
    /// session (1000, unless it was closing already).
    pub(super) async fn fail(&mut self, err: tungstenite::Error, closer: &Closer) {
        debug!(cause = %err, "write failed");
        self.stopped = true;
        // The frame that failed, and the last one fed, which may not have got out.
        self.pending = None;
        self.last = None;
        if written_despite(&err, &mut self.sink).await {
            report_written(&self.gateway, self.reports.drain(..));
        }
        self.reports.clear();
        closer.close(CloseCode::NORMAL);
    }

    /// Once the session is closing: finishes the batch on its way and writes what is queued
    /// (the reply to the client's last request, say, or the frame that made a drained
    /// session's last ack), within [`CLOSE_TIMEOUT`] in all, then the close frame.
    ///
    /// A client that stops reading blocks a write or flush for good; such a batch is abandoned
    /// unreported, so the session can end and hand its messages back instead of holding the
    /// socket forever. (A client that is reading finishes in time, and its deliveries are
    /// reported as usual.)
    ///
    /// Returns whether the close frame was written and flushed in time: when not, the client
    /// is not reading, and the frame waits behind what the socket already holds.
    pub(super) async fn close(mut self, closer: &Closer) -> bool {
        if !self.stopped {
            let rest = async {
                while std::future::poll_fn(|cx| self.poll_batch(cx, false)).await? {}
                Ok::<_, tungstenite::Error>(())
            };
            // Done (and reported), abandoned (unreported) after the timeout, or failed.
            let written = tokio::time::timeout(CLOSE_TIMEOUT, rest).await;
            if let Ok(Err(err)) = written {
                self.fail(err, closer).await;
            }
        }
        // Deliveries not written by now never will be: dropping them (and their reporters)
        // before the close handshake tells their subscriptions at once that no more reports
        // come, so they hand those messages back without waiting for the handshake.
        let Writer {
            mut sink,
            rx,
            pending,
            reports,
            last,
            ..
        } = self;
        drop((rx, pending, reports, last));
        let code = closer.code();
        let frame = CloseFrame {
            code: WsCloseCode::from(code.as_u16()),
            reason: code.reason().into(),
        };
        let sent =
            tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
        matches!(sent, Ok(Ok(())))
    }
}

/// After a failed write or flush: whether every frame of the batch but the last one reached
/// the socket anyway.
///
/// A client that closes while a batch is on its way makes the next write fail, yet the frames
/// before it were written: tungstenite, as the server, answers the close only after writing
/// out everything it had buffered, and then reports `ConnectionClosed` (the handshake is
/// complete). The last frame fed is the exception: the split sink holds it until the next
/// write or flush, which is what failed. After any other failure a second flush, bounded,
/// tells whether tungstenite's buffer got out. Either way a legacy delivery counts as written
/// only when it surely was; one that may not have been is handed back (at-least-once).
async fn written_despite<W>(err: &tungstenite::Error, sink: &mut W) -> bool
where
    W: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    match err {
        tungstenite::Error::ConnectionClosed => true,
        _ => matches!(
            tokio::time::timeout(CLOSE_TIMEOUT, sink.flush()).await,
            Ok(Ok(()))
        ),
    }
}

/// Counts written queue deliveries and reports the legacy ones to their subscriptions.
fn report_written(gateway: &Gateway, reports: impl Iterator<Item = WriteReport>) {
    let metrics = &gateway.metrics;
    let now_ms = clock::unix_millis();
    for report in reports {
        metrics.deliveries.inc();
        metrics
            .delivery_latency
            .observe(now_ms.saturating_sub(report.sent_ms) as f64 / 1000.0);
        if let Some(written) = report.ack_on_write {
            let (id, tx) = *written;
            let _ = tx.try_send(id);
        }
    }
}
