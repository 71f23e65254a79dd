//! Idle sessions: every client subscribes to its own queue (Nchan: its own channel) and
//! then only answers pings, until the driver sends a second line (or the deadline). SSE
//! clients (`--target wsmq-sse`) hold a `GET /sse` stream of their own queue instead.
//!
//! The driver reads the server's memory while they are held; this process reports how
//! fast they connected and how many the server closed meanwhile.

use std::{
    future::Future,
    sync::{Arc, atomic::Ordering},
};

use futures_util::StreamExt as _;
use tokio::{task::JoinHandle, time::Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::{
    cli::{Common, Target},
    emit,
    net::{self, Subscribe, Ws},
    sse,
    stats::Counts,
    wait_for_driver,
};

pub(crate) async fn run(common: &Common, deadline: Instant) -> anyhow::Result<()> {
    let counts = Arc::new(Counts::default());
    let stop = CancellationToken::new();
    let queue = |i: usize| format!("{}{i}", common.prefix);
    let (ready, tasks): (_, Vec<_>) = if common.target == Target::WsmqSse {
        // No ack connections: an idle stream never receives anything to ack.
        let connected = net::connect_all_with(common, |i| {
            let queue = queue(i);
            async move { sse::connect(common, i, &queue, 0).await }
        })
        .await;
        let ready = connected.json();
        let tasks = connected
            .sockets
            .into_iter()
            .map(|(_, client)| hold(hold_stream(client.stream, counts.clone()), &stop))
            .collect();
        (ready, tasks)
    } else {
        let connected = net::connect_all(common, |i| Subscribe::Queue(queue(i))).await;
        let ready = connected.json();
        let tasks = connected
            .sockets
            .into_iter()
            .map(|(_, ws)| hold_socket(ws, counts.clone(), stop.clone()))
            .collect();
        (ready, tasks)
    };
    emit(&ready)?;
    tokio::select! {
        () = wait_for_driver() => {}
        () = tokio::time::sleep_until(deadline) => {}
    }
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let mut result = counts.json();
    result["event"] = "result".into();
    emit(&result)?;
    Ok(())
}

/// Runs `session` until it ends or `stop` fires (then drops it, closing its socket).
fn hold(
    session: impl Future<Output = ()> + Send + 'static,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    let stop = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            () = session => {}
        }
    })
}

/// Reads a stream's events until it ends, which counts as closed by the server.
async fn hold_stream(mut stream: sse::Stream, counts: Arc<Counts>) {
    while stream.next().await.is_some() {
        counts.other.fetch_add(1, Ordering::Relaxed);
    }
    counts.closed.fetch_add(1, Ordering::Relaxed);
}

/// Answers a socket's pings until it closes or `stop` fires, then closes it politely.
fn hold_socket(mut ws: Ws, counts: Arc<Counts>, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => break,
                next = ws.next() => next,
            };
            match next {
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    counts.closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(Ok(Message::Text(_))) => {
                    counts.other.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(_)) => {}
            }
        }
        net::close(ws).await;
    })
}
