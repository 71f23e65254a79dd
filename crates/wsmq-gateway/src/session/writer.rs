//! The writer half of a session: frames from the outbound queue to the socket, a batch per
//! flush, then the close frame; written queue deliveries are counted and the legacy ones
//! reported to their subscriptions, which delete them.
//!
//! A frame counts as written once a flush has handed it to the socket. A client that closes
//! while a batch is on its way still gets most of that batch (see [`written_despite`]), and
//! those deliveries are reported too, so that a legacy message the client may have read is
//! deleted rather than handed out again.

use std::{sync::Arc, time::Duration};

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
/// How long the final close frame may take to write, and a flush after a failed write.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Writes outbound frames, flushing after each batch, until the session closes or a write
/// fails; then the close frame.
pub(super) async fn run<W>(
    mut sink: W,
    mut rx: mailbox::Receiver<OutFrame>,
    closer: Closer,
    gateway: Arc<Gateway>,
) where
    W: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    // The reports of a batch's frames but the last, whose report waits in `last`: after a
    // failed write, that frame is the one that may not have got out (see `written_despite`).
    let mut reports = Vec::new();
    // A client that stops reading blocks a write or flush for good; when the session closes
    // meanwhile (4008, a shutdown) and the write still does not finish within CLOSE_TIMEOUT,
    // it is abandoned, unreported, so the session can end and hand its messages back instead
    // of holding the socket forever. (A client that is reading finishes the write in time, and
    // its deliveries are reported as usual.)
    'batches: loop {
        let first = tokio::select! {
            biased;
            () = closer.closed() => break,
            frame = rx.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
        };
        let mut next = Some(first);
        let mut count = 0;
        let mut last = None;
        let mut result = Ok(());
        while let Some(frame) = next.take() {
            let fed = tokio::select! {
                biased;
                fed = sink.feed(frame.payload.into_message()) => fed,
                () = closed_for(&closer, CLOSE_TIMEOUT) => break 'batches,
            };
            if let Err(err) = fed {
                result = Err(err);
                break;
            }
            reports.extend(last.take());
            last = frame.report;
            count += 1;
            if count < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if result.is_ok() {
            result = tokio::select! {
                biased;
                flushed = sink.flush() => flushed,
                () = closed_for(&closer, CLOSE_TIMEOUT) => break 'batches,
            };
        }
        match result {
            Ok(()) => {
                gateway.metrics.frames_out.inc_by(count as u64);
                reports.extend(last);
                report_written(&gateway, reports.drain(..));
            }
            Err(err) => {
                debug!(cause = %err, "write failed");
                if written_despite(&err, &mut sink).await {
                    report_written(&gateway, reports.drain(..));
                }
                closer.close(CloseCode::NORMAL);
                break;
            }
        }
    }
    // Deliveries not written by now never will be: dropping them (and their reporters) before
    // the close handshake tells their subscriptions at once that no more reports come, so
    // they hand those messages back without waiting for the handshake.
    drop(reports);
    drop(rx);
    let code = closer.code();
    let frame = CloseFrame {
        code: WsCloseCode::from(code.as_u16()),
        reason: code.reason().into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
}

/// Resolves `grace` after the session started closing.
async fn closed_for(closer: &Closer, grace: Duration) {
    closer.closed().await;
    tokio::time::sleep(grace).await;
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
