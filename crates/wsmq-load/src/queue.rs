//! Queue delivery: every client consumes its own queue, this process publishes to them (with
//! rsmq into Redis, or to RabbitMQ's direct exchange with the queue as routing key).
//!
//! Over v1 each message is acked as soon as it arrives (the gateway deletes it then); over
//! SSE each is acked by a `POST /api/ack` on one of the client's keep-alive connections;
//! over the legacy dialect the server deletes it once sent. A message counts once per
//! sequence number: a second arrival is a duplicate, a missing one at the end is lost.
//!
//! With `--external` another process (the npm rsmq publisher of the bench) publishes and
//! numbers the messages across the queues of all load processes; this one only consumes.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::{
    cli::{Common, QueueArgs, Target},
    clock::unix_micros,
    emit,
    net::{self, Subscribe, Ws},
    publish, sse,
    stats::{Counts, Frame, Micros, own_cpu_seconds, parse_body},
    wait_for_driver,
};

/// State shared by the consumers of one process.
struct Shared {
    counts: Counts,
    latency: Micros,
    /// One flag per sequence number published by this process.
    seen: Vec<AtomicBool>,
    /// Distinct messages still to come; at zero, `done` fires.
    missing: AtomicU64,
    done: CancellationToken,
}

pub(crate) async fn run(
    common: &Common,
    args: &QueueArgs,
    deadline: Instant,
) -> anyhow::Result<()> {
    let names: Vec<String> = (common.first..common.first + common.clients)
        .map(|i| format!("{}{i}", common.prefix))
        .collect();
    let sink = match (&args.redis_url, &args.amqp_url) {
        (Some(redis_url), _) => {
            publish::QueueSink::Rsmq(publish::queues(redis_url, args.redis_cluster, &names).await?)
        }
        (None, Some(amqp_url)) => publish::QueueSink::Amqp(Box::new(
            publish::Amqp::connect(amqp_url, &args.amqp_exchange, args.publishers).await?,
        )),
        (None, None) => anyhow::bail!("queue needs --redis-url or --amqp-url"),
    };
    let expected = match args.external {
        Some(all) => share(args.messages, all, common.first, common.clients),
        None => args.messages,
    };
    let shared = Arc::new(Shared {
        counts: Counts::default(),
        latency: Micros::new(),
        seen: (0..args.messages).map(|_| AtomicBool::new(false)).collect(),
        missing: AtomicU64::new(expected),
        done: CancellationToken::new(),
    });
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut queues = Vec::new();
    let ready = if common.target == Target::WsmqSse {
        let connected = net::connect_all_with(common, |i| {
            let queue = format!("{}{i}", common.prefix);
            async move { sse::connect(common, i, &queue, args.ack_connections.max(1)).await }
        })
        .await;
        let ready = connected.json();
        for (index, client) in connected.sockets {
            let queue = format!("{}{index}", common.prefix);
            queues.push(queue);
            tasks.push(tokio::spawn(consume_sse(
                client,
                shared.clone(),
                stop.clone(),
            )));
        }
        ready
    } else {
        let connected = net::connect_all(common, |i| {
            Subscribe::Queue(format!("{}{i}", common.prefix))
        })
        .await;
        let ready = connected.json();
        for (index, ws) in connected.sockets {
            let queue = format!("{}{index}", common.prefix);
            queues.push(queue.clone());
            tasks.push(tokio::spawn(consume(
                ws,
                common.target,
                queue,
                shared.clone(),
                stop.clone(),
            )));
        }
        ready
    };
    emit(&ready)?;
    wait_for_driver().await;

    let cpu_before = own_cpu_seconds();
    let started = unix_micros();
    if !queues.is_empty() && expected > 0 {
        if args.external.is_none() {
            let load = publish::QueueLoad {
                messages: args.messages,
                rate: args.rate,
                batch: args.batch,
                publishers: args.publishers,
                body_size: args.body_size,
            };
            publish::to_queues(&sink, &queues, &load, &shared.counts, deadline).await?;
        }
        tokio::select! {
            _ = shared.done.cancelled() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let cpu = own_cpu_seconds() - cpu_before;
    let mut result = shared.counts.json();
    let unique = shared.counts.unique.load(Ordering::Relaxed);
    result["event"] = "result".into();
    result["started_us"] = started.into();
    result["lost"] = (shared
        .counts
        .sent
        .load(Ordering::Relaxed)
        .saturating_sub(unique))
    .into();
    result["latency"] = shared.latency.encode().into();
    result["cpu_seconds"] = cpu.into();
    emit(&result)?;
    Ok(())
}

/// How many of `messages`, sent to `all` queues in turn, go to the `count` queues from
/// index `first`.
fn share(messages: u64, all: usize, first: usize, count: usize) -> u64 {
    let (all, first, count) = (all.max(1) as u64, first as u64, count as u64);
    let rounds = messages / all;
    let rest = messages % all;
    rounds * count + rest.saturating_sub(first).min(count)
}

/// Reads one client's frames until told to stop or the server closes; acks over v1.
async fn consume(
    mut ws: Ws,
    target: Target,
    queue: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            next = ws.next() => next,
        };
        match next {
            Some(Ok(Message::Text(text))) => {
                let Some(id) = shared.handle(target, &text) else {
                    continue;
                };
                let ack = format!(r#"{{"op":"ack","queue":"{queue}","id":"{id}"}}"#);
                if ws.send(Message::text(ack)).await.is_err() {
                    shared.counts.closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            Some(Ok(Message::Close(_)) | Err(_)) | None => {
                shared.counts.closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Some(Ok(_)) => {}
        }
    }
    net::close(ws).await;
}

/// Reads one SSE client's events until told to stop or the stream ends, acking each
/// delivery over `POST /api/ack` (several in flight, one per free connection).
async fn consume_sse(client: sse::Client, shared: Arc<Shared>, stop: CancellationToken) {
    let sse::Client {
        mut stream,
        mut acker,
    } = client;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            applied = acker.next() => {
                let counter = if applied { &shared.counts.replies } else { &shared.counts.failed_acks };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            event = stream.next() => match event {
                // A delivery: an event of the default type whose data is the v1 frame.
                Some(event) if event.event.is_empty() => {
                    if let Some(id) = shared.handle(Target::WsmqSse, &event.data) {
                        acker.push(id);
                    }
                }
                Some(_) => {
                    shared.counts.other.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    shared.counts.closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            },
        }
    }
}

impl Shared {
    /// Counts a frame; returns the id of the message to ack, if the target acks.
    fn handle(&self, target: Target, text: &str) -> Option<String> {
        let now = unix_micros();
        let frame: Frame<'_> = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(_) => {
                self.counts.other.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        if let Some("ok" | "pong") = frame.op.as_deref() {
            self.counts.replies.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let is_message = match target {
            Target::Wsmq | Target::WsmqSse => frame.op.as_deref() == Some("message"),
            Target::Legacy | Target::WsmqLegacy | Target::Nchan => frame.op.is_none(),
        };
        let (true, Some(body)) = (is_message, frame.message.as_deref()) else {
            self.counts.other.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.counts.note_receive(now);
        match parse_body(body) {
            Some((seq, sent)) if (seq as usize) < self.seen.len() => {
                self.latency.record(now.saturating_sub(sent));
                if self.seen[seq as usize].swap(true, Ordering::Relaxed) {
                    self.counts.duplicates.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.counts.unique.fetch_add(1, Ordering::Relaxed);
                    if self.missing.fetch_sub(1, Ordering::Relaxed) == 1 {
                        self.done.cancel();
                    }
                }
            }
            _ => {
                self.counts.other.fetch_add(1, Ordering::Relaxed);
            }
        }
        let id = frame.id?;
        matches!(target, Target::Wsmq | Target::WsmqSse).then(|| id.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_of_an_external_publisher_add_up() {
        // 1,003 messages over 100 queues: queues 0–2 get 11, the others 10.
        assert_eq!(share(1_003, 100, 0, 50), 503);
        assert_eq!(share(1_003, 100, 50, 50), 500);
        assert_eq!(share(1_003, 100, 2, 1), 11);
        assert_eq!(share(1_003, 100, 3, 1), 10);
        assert_eq!(share(5, 100, 0, 100), 5);
    }
}
