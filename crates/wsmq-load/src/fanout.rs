//! Fan-out: every client subscribes to one channel; the process given `--publish`
//! publishes to it once every process is ready.
//!
//! Channels are at-most-once, so a message a subscriber misses is counted, not waited
//! for: a subscriber stops once it has every message, or after `--quiet-secs` without
//! one once messages have started, or at the deadline.

use std::{
    borrow::Cow,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::{
    cli::{Common, FanoutArgs, Target},
    clock::unix_micros,
    emit,
    net::{self, Subscribe, Ws},
    publish::{self, ChannelSink},
    stats::{Counts, Frame, Micros, own_cpu_seconds, parse_body},
    wait_for_driver,
};

/// The gateway's topic exchange for channels on RabbitMQ (its AMQP engine's default).
const CHANNELS_EXCHANGE: &str = "wsmq.channels";

struct Shared {
    counts: Counts,
    latency: Micros,
    messages: u64,
    /// Subscribers that do not have every message yet.
    remaining: AtomicU64,
    done: CancellationToken,
}

pub(crate) async fn run(
    common: &Common,
    args: &FanoutArgs,
    deadline: Instant,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        common.target != Target::WsmqSse,
        "the fan-out scenario has WebSocket subscribers only"
    );
    let sink = if args.publish {
        Some(match common.target {
            Target::Nchan => ChannelSink::Nchan(common.server, args.channel.clone()),
            Target::Wsmq | Target::Legacy | Target::WsmqLegacy | Target::WsmqSse
                if args.amqp_url.is_some() =>
            {
                let url = args.amqp_url.as_deref().unwrap_or_default();
                let amqp = publish::Amqp::connect(url, CHANNELS_EXCHANGE, 4).await?;
                ChannelSink::Amqp(Box::new(amqp), args.channel.clone())
            }
            Target::Wsmq | Target::Legacy | Target::WsmqLegacy | Target::WsmqSse => {
                let url = args
                    .redis_url
                    .as_deref()
                    .context("--publish to wsmq needs --redis-url")?;
                if args.redis_cluster {
                    // rsmq's cluster client: it checks that the seeds are cluster nodes and
                    // routes each SPUBLISH to the master of the channel's slot.
                    let rsmq = wsmq_rsmq::Rsmq::connect(
                        url,
                        wsmq_rsmq::RsmqOptions {
                            cluster: true,
                            ..wsmq_rsmq::RsmqOptions::default()
                        },
                    )
                    .await
                    .context("connecting to the Redis Cluster")?;
                    let conn = rsmq
                        .cluster_connection()
                        .context("a cluster-mode rsmq client has a cluster connection")?;
                    ChannelSink::RedisCluster(conn, args.channel.clone())
                } else {
                    let client = redis::Client::open(url)?;
                    let conn = client.get_multiplexed_async_connection().await?;
                    ChannelSink::Redis(conn, args.channel.clone())
                }
            }
        })
    } else {
        None
    };
    let connected = net::connect_all(common, |_| Subscribe::Channel(args.channel.clone())).await;
    let ready = connected.json();
    let shared = Arc::new(Shared {
        counts: Counts::default(),
        latency: Micros::new(),
        messages: args.messages,
        remaining: AtomicU64::new(connected.sockets.len() as u64),
        done: CancellationToken::new(),
    });
    if connected.sockets.is_empty() {
        shared.done.cancel();
    }
    let stop = CancellationToken::new();
    let tasks: Vec<_> = connected
        .sockets
        .into_iter()
        .map(|(_, ws)| tokio::spawn(subscriber(ws, common.target, shared.clone(), stop.clone())))
        .collect();
    emit(&ready)?;
    wait_for_driver().await;

    let cpu_before = own_cpu_seconds();
    let started = unix_micros();
    let quiet = Duration::from_secs_f64(args.quiet_secs);
    let watch = async {
        // Bounded by the deadline: ends when every subscriber is complete or quiet.
        while Instant::now() < deadline && !shared.done.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let last = shared.counts.last_recv_us.load(Ordering::Relaxed);
            if last > 0 && unix_micros().saturating_sub(last) > quiet.as_micros() as u64 {
                break;
            }
        }
    };
    if let Some(sink) = &sink {
        let publishing = publish::to_channel(
            sink,
            args.messages,
            args.rate,
            args.body_size,
            &shared.counts,
            deadline,
        );
        let (published, ()) = tokio::join!(publishing, watch);
        published?;
    } else {
        watch.await;
    }
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let cpu = own_cpu_seconds() - cpu_before;
    let mut result = shared.counts.json();
    result["event"] = "result".into();
    result["started_us"] = started.into();
    result["latency"] = shared.latency.encode().into();
    result["cpu_seconds"] = cpu.into();
    emit(&result)?;
    Ok(())
}

async fn subscriber(mut ws: Ws, target: Target, shared: Arc<Shared>, stop: CancellationToken) {
    let mut seen = vec![false; shared.messages as usize];
    let mut unique = 0u64;
    while unique < shared.messages {
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            next = ws.next() => next,
        };
        let text = match next {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_)) | Err(_)) | None => {
                shared.counts.closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Some(Ok(_)) => continue,
        };
        let now = unix_micros();
        let body = match target {
            Target::Nchan => Some(Cow::Borrowed(text.as_str())),
            Target::Wsmq | Target::Legacy | Target::WsmqLegacy | Target::WsmqSse => {
                serde_json::from_str::<Frame<'_>>(&text)
                    .ok()
                    .filter(|frame| frame.op.as_deref() == Some("message"))
                    .and_then(|frame| frame.message)
            }
        };
        let Some((seq, sent)) = body.as_deref().and_then(parse_body) else {
            shared.counts.other.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        shared.counts.note_receive(now);
        shared.latency.record(now.saturating_sub(sent));
        match seen.get_mut(seq as usize) {
            Some(flag) if !*flag => {
                *flag = true;
                unique += 1;
                shared.counts.unique.fetch_add(1, Ordering::Relaxed);
            }
            Some(_) => {
                shared.counts.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                shared.counts.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    if unique >= shared.messages && shared.remaining.fetch_sub(1, Ordering::Relaxed) == 1 {
        shared.done.cancel();
    }
    net::close(ws).await;
}
