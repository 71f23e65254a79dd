//! Idle sessions: every client subscribes to its own queue (Nchan: its own channel) and
//! then only answers pings, until the driver sends a second line (or the deadline).
//!
//! The driver reads the server's memory while they are held; this process reports how
//! fast they connected and how many the server closed meanwhile.

use std::sync::{Arc, atomic::Ordering};

use futures_util::StreamExt as _;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::{
    cli::Common,
    emit,
    net::{self, Subscribe},
    stats::Counts,
    wait_for_driver,
};

pub(crate) async fn run(common: &Common, deadline: Instant) -> anyhow::Result<()> {
    let connected = net::connect_all(common, |i| {
        Subscribe::Queue(format!("{}{i}", common.prefix))
    })
    .await;
    let ready = connected.json();
    let counts = Arc::new(Counts::default());
    let stop = CancellationToken::new();
    let tasks: Vec<_> = connected
        .sockets
        .into_iter()
        .map(|(_, mut ws)| {
            let (counts, stop) = (counts.clone(), stop.clone());
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
        })
        .collect();
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
