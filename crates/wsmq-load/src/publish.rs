//! Publishers: rsmq queues or RabbitMQ's direct exchange, Redis or RabbitMQ channels, and
//! Nchan, paced or at full speed.
//!
//! Pacing is by schedule, not by sleeping between sends: message `i` is due at
//! `start + i / rate`, so a slow send is caught up by the next ones instead of lowering
//! the rate. Every loop is bounded by its message count and by the deadline.

use std::{
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::Duration,
};

use anyhow::Context as _;
use futures_util::future::{join_all, try_join_all};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::TcpStream,
    time::Instant,
};
use wsmq_rsmq::{QueueOptions, Rsmq, RsmqError, RsmqOptions};

use crate::stats::{Counts, body};

/// Connects to the queues' Redis (with `cluster`, a Redis Cluster from its seed nodes) with
/// realtime notifications on, and creates the queues that do not exist yet (so that sends
/// never race the subscribers' creation).
///
/// # Errors
///
/// When Redis cannot be reached, is a cluster node when `cluster` is off (or the other way
/// round), or a queue cannot be created.
pub(crate) async fn queues(
    redis_url: &str,
    cluster: bool,
    queues: &[String],
) -> anyhow::Result<Rsmq> {
    let rsmq = Rsmq::connect(
        redis_url,
        RsmqOptions {
            realtime: true,
            cluster,
            ..RsmqOptions::default()
        },
    )
    .await
    .context("connecting to Redis")?;
    for queue in queues {
        match rsmq.create_queue(queue, &QueueOptions::default()).await {
            Ok(()) | Err(RsmqError::QueueExists) => {}
            Err(err) => return Err(err).context("creating a queue"),
        }
    }
    Ok(rsmq)
}

/// Where queue messages go.
pub(crate) enum QueueSink {
    /// rsmq queues in Redis, `send_batch` with the realtime notification.
    Rsmq(Rsmq),
    /// RabbitMQ: the direct exchange, routing key = queue name.
    Amqp(Box<Amqp>),
}

/// A RabbitMQ connection with one confirm channel per publishing lane.
pub(crate) struct Amqp {
    /// Kept open for the channels.
    _connection: Connection,
    channels: Vec<Channel>,
    exchange: String,
}

impl Amqp {
    /// Connects to `url` and opens `lanes` channels in confirm mode, publishing to `exchange`.
    ///
    /// # Errors
    ///
    /// When the broker cannot be reached or refuses a channel.
    pub(crate) async fn connect(url: &str, exchange: &str, lanes: usize) -> anyhow::Result<Amqp> {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .context("connecting to RabbitMQ")?;
        let mut channels = Vec::new();
        for _ in 0..lanes.max(1) {
            let channel = connection
                .create_channel()
                .await
                .context("opening a channel")?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .context("confirm.select")?;
            channels.push(channel);
        }
        Ok(Amqp {
            _connection: connection,
            channels,
            exchange: exchange.to_owned(),
        })
    }

    /// Publishes `bodies` with `routing_key` on the channel of `lane`, all in flight at once,
    /// and returns once the broker confirmed every one.
    ///
    /// # Errors
    ///
    /// On a failed publish or a broker nack.
    async fn publish(
        &self,
        lane: usize,
        routing_key: &str,
        bodies: &[String],
    ) -> anyhow::Result<()> {
        let channel = &self.channels[lane % self.channels.len()];
        let mut confirms = Vec::with_capacity(bodies.len());
        for body in bodies {
            let confirm = channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    routing_key.into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .context("basic.publish")?;
            confirms.push(confirm);
        }
        for confirmation in join_all(confirms).await {
            let confirmation = confirmation.context("publisher confirm")?;
            anyhow::ensure!(confirmation.is_ack(), "RabbitMQ refused a publish (nack)");
        }
        Ok(())
    }
}

/// What a queue publisher does.
pub(crate) struct QueueLoad {
    pub(crate) messages: u64,
    pub(crate) rate: f64,
    pub(crate) batch: usize,
    pub(crate) publishers: usize,
    pub(crate) body_size: usize,
}

/// Sends `load.messages` bodies numbered 0.. over `queues` in turn, `load.batch` at most
/// per call (to one queue), `load.publishers` calls in flight.
///
/// # Errors
///
/// On a failed send; the deadline just stops it.
pub(crate) async fn to_queues(
    sink: &QueueSink,
    queues: &[String],
    load: &QueueLoad,
    counts: &Counts,
    deadline: Instant,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let next_seq = AtomicU64::new(0);
    let next_queue = AtomicUsize::new(0);
    let (next_seq, next_queue) = (&next_seq, &next_queue);
    let lane = |lane: usize| async move {
        while Instant::now() < deadline {
            // How many are due now, at most a batch.
            let due = if load.rate > 0.0 {
                ((start.elapsed().as_secs_f64() * load.rate) as u64 + 1).min(load.messages)
            } else {
                load.messages
            };
            let taken = next_seq.load(Ordering::Relaxed);
            if taken >= load.messages {
                break;
            }
            if taken >= due {
                let at = start + Duration::from_secs_f64(taken as f64 / load.rate);
                tokio::time::sleep_until(at.min(deadline)).await;
                continue;
            }
            let want = (due - taken).min(load.batch as u64);
            let first = next_seq.fetch_add(want, Ordering::Relaxed);
            if first >= load.messages {
                break;
            }
            let n = want.min(load.messages - first);
            let queue = &queues[next_queue.fetch_add(1, Ordering::Relaxed) % queues.len()];
            let bodies: Vec<String> = (first..first + n)
                .map(|seq| body(seq, load.body_size))
                .collect();
            match sink {
                QueueSink::Rsmq(rsmq) => {
                    rsmq.send_batch(queue, &bodies, None)
                        .await
                        .context("send_batch")?;
                }
                QueueSink::Amqp(amqp) => amqp.publish(lane, queue, &bodies).await?,
            }
            counts.note_send(n);
        }
        anyhow::Ok(())
    };
    try_join_all((0..load.publishers.max(1)).map(lane)).await?;
    Ok(())
}

/// Where channel messages go.
pub(crate) enum ChannelSink {
    /// `PUBLISH wsmq:ch:<channel>`, as every wsmq publisher does.
    Redis(redis::aio::MultiplexedConnection, String),
    /// `SPUBLISH wsmq:ch:{channel}` on a Redis Cluster, routed to the master of the
    /// channel's slot, as gateways in cluster mode publish.
    RedisCluster(redis::cluster_async::ClusterConnection, String),
    /// `POST /pub/<channel>` to Nchan, one keep-alive connection per lane.
    Nchan(std::net::SocketAddr, String),
    /// RabbitMQ: `wsmq.channels` with the channel as routing key, as the gateway's AMQP
    /// engine publishes, each publish confirmed.
    Amqp(Box<Amqp>, String),
}

/// Publishes `messages` bodies to a channel, paced at `rate` (0: full speed, then with
/// a few lanes in flight).
///
/// # Errors
///
/// On a failed publish.
pub(crate) async fn to_channel(
    sink: &ChannelSink,
    messages: u64,
    rate: f64,
    body_size: usize,
    counts: &Counts,
    deadline: Instant,
) -> anyhow::Result<()> {
    let lanes: u64 = if rate > 0.0 { 1 } else { 4 };
    let start = Instant::now();
    let lane = |lane: u64| async move {
        let mut http = None;
        let mut seq = lane;
        while seq < messages && Instant::now() < deadline {
            if rate > 0.0 {
                let at = start + Duration::from_secs_f64(seq as f64 / rate);
                tokio::time::sleep_until(at.min(deadline)).await;
            }
            let text = body(seq, body_size);
            match sink {
                ChannelSink::Redis(conn, channel) => {
                    let mut conn = conn.clone();
                    redis::cmd("PUBLISH")
                        .arg(format!("wsmq:ch:{channel}"))
                        .arg(&text)
                        .query_async::<i64>(&mut conn)
                        .await
                        .context("PUBLISH")?;
                }
                ChannelSink::RedisCluster(conn, channel) => {
                    let mut conn = conn.clone();
                    redis::cmd("SPUBLISH")
                        .arg(wsmq_proto::keys::Carrier::Plain.sharded(channel))
                        .arg(&text)
                        .query_async::<i64>(&mut conn)
                        .await
                        .context("SPUBLISH")?;
                }
                ChannelSink::Amqp(amqp, channel) => {
                    amqp.publish(lane as usize, channel, std::slice::from_ref(&text))
                        .await?;
                }
                ChannelSink::Nchan(addr, channel) => {
                    if http.is_none() {
                        http = Some(Http::connect(*addr).await?);
                    }
                    let conn = http.as_mut().expect("connected above");
                    conn.post(&format!("/pub/{channel}"), &text).await?;
                }
            }
            counts.note_send(1);
            seq += lanes;
        }
        anyhow::Ok(())
    };
    try_join_all((0..lanes).map(lane)).await?;
    Ok(())
}

/// A minimal HTTP/1.1 keep-alive client, enough to POST to Nchan's publisher location.
struct Http {
    stream: BufReader<TcpStream>,
    addr: std::net::SocketAddr,
}

impl Http {
    async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Http> {
        let stream = TcpStream::connect(addr)
            .await
            .context("connecting to nchan")?;
        stream.set_nodelay(true)?;
        Ok(Http {
            stream: BufReader::new(stream),
            addr,
        })
    }

    /// POSTs `body` and reads the whole response; fails on a status other than 2xx.
    async fn post(&mut self, path: &str, body: &str) -> anyhow::Result<()> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut status = String::new();
        self.stream.read_line(&mut status).await?;
        let ok = status
            .split_whitespace()
            .nth(1)
            .is_some_and(|code| code.starts_with('2'));
        let mut length = 0usize;
        for _ in 0..100 {
            let mut line = String::new();
            if self.stream.read_line(&mut line).await? == 0 {
                anyhow::bail!("nchan closed the connection");
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut rest = vec![0u8; length];
        self.stream.read_exact(&mut rest).await?;
        anyhow::ensure!(ok, "nchan publish answered {}", status.trim_end());
        Ok(())
    }
}
