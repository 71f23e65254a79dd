//! What one node keeps about the messages RabbitMQ handed it: the deliveries its queue
//! consumers buffered ([`QueueWake`]), the messages handed out to subscribers until they are
//! acked, rejected or their vt passes ([`InFlight`]), and how a delivery becomes a
//! [`QueueMessage`] (id, `rc`, send time).

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use lapin::{
    Acker, BasicProperties,
    message::Delivery,
    types::{AMQPValue, FieldTable},
};
use md5::{Digest, Md5};
use tokio::{sync::Notify, time::Instant};

use crate::engine::{Listening, QueueMessage};

/// One queue with local consumers: its wake-up, its consumer on the broker, and the deliveries
/// that consumer pushed which no subscriber has taken yet.
#[derive(Default)]
pub(super) struct QueueWake {
    /// Woken when a delivery arrives or a held message goes back to the queue.
    pub(super) notify: Arc<Notify>,
    /// Whether the consumer is registered (its `consume-ok` came back), for `wait_listening`.
    pub(super) listening: Arc<Listening>,
    /// The same, readable here: while it holds, receives take from `buffer` instead of
    /// `basic.get` (which would compete with our own consumer).
    pub(super) consuming: AtomicBool,
    /// Set once the last local subscriber left: what still arrives is rejected back.
    pub(super) cancelled: AtomicBool,
    /// Set once the consumer is cancelled on the broker (or there was none): a release of the
    /// queue's last messages waits for it, so the broker does not push them straight back.
    pub(super) stopped: Flag,
    /// The consumer's tag on the link it runs on, while it runs.
    pub(super) tag: Mutex<Option<(u64, String)>>,
    /// Pushed deliveries, oldest first, with the link generation they came on.
    pub(super) buffer: Mutex<VecDeque<(u64, Delivery)>>,
}

impl QueueWake {
    /// Takes up to `max` buffered deliveries of link `generation` (older ones are dead: the
    /// broker requeued them when that link went away).
    pub(super) fn take(&self, generation: u64, max: usize) -> Vec<Delivery> {
        let mut buffer = self.buffer.lock().expect("buffer poisoned");
        let mut taken = Vec::new();
        while taken.len() < max {
            match buffer.pop_front() {
                Some((g, delivery)) if g == generation => taken.push(delivery),
                Some(_) => {}
                None => break,
            }
        }
        taken
    }

    /// Marks the consumer on or off.
    pub(super) fn set_consuming(&self, on: bool) {
        self.consuming.store(on, Ordering::SeqCst);
        self.listening.set(on);
    }

    /// Whether receives should take from the buffer.
    pub(super) fn is_consuming(&self) -> bool {
        self.consuming.load(Ordering::SeqCst)
    }
}

/// A flag that can be awaited.
#[derive(Default)]
pub(super) struct Flag {
    on: AtomicBool,
    turned_on: Notify,
}

impl Flag {
    /// Turns it on, waking the waiters.
    pub(super) fn set(&self) {
        self.on.store(true, Ordering::SeqCst);
        self.turned_on.notify_waiters();
    }

    /// Resolves once it is on.
    pub(super) async fn wait(&self) {
        loop {
            // Registered before the check, so a `set` in between is not missed.
            let turned_on = self.turned_on.notified();
            tokio::pin!(turned_on);
            turned_on.as_mut().enable();
            if self.on.load(Ordering::SeqCst) {
                return;
            }
            turned_on.await;
        }
    }
}

/// A message handed to a subscriber and not yet settled.
pub(super) struct Holding {
    /// Acks or rejects it on the channel it came on.
    pub(super) acker: Acker,
    /// The `rc` this delivery was handed out with: a release or dead-lettering names it, so
    /// one meant for an earlier delivery of the message (its vt ran out, the node gave it
    /// back, RabbitMQ delivered it again) does not touch this one.
    pub(super) rc: u64,
    /// When it goes back to the queue unless settled: the vt, or a nack's delay.
    pub(super) deadline: Instant,
    /// The link it came on: after a reconnect the broker has requeued it already.
    pub(super) generation: u64,
}

/// Messages in flight on this node: queue → id → the deliveries holding that id (usually
/// one; two messages with equal content and no `message-id` share a derived id, and either
/// may settle it since they cannot be told apart).
#[derive(Default)]
pub(super) struct InFlight {
    queues: Mutex<HashMap<String, HashMap<String, VecDeque<Holding>>>>,
}

impl InFlight {
    /// Records a handed-out message.
    pub(super) fn hold(&self, queue: &str, id: String, held: Holding) {
        let mut queues = self.queues.lock().expect("in-flight poisoned");
        let ids = queues.entry(queue.to_owned()).or_default();
        ids.entry(id).or_default().push_back(held);
    }

    /// Removes one delivery per id (those of link `generation` only, and with `rc` when one
    /// is given), to settle them; also returns the ids held only on an older link (the broker
    /// requeued those when it went).
    pub(super) fn take<'k>(
        &self,
        queue: &str,
        keys: impl IntoIterator<Item = (&'k str, Option<u64>)>,
        generation: u64,
    ) -> (Vec<Holding>, Vec<String>) {
        let mut queues = self.queues.lock().expect("in-flight poisoned");
        let Some(held) = queues.get_mut(queue) else {
            return (Vec::new(), Vec::new());
        };
        let mut taken = Vec::new();
        let mut stale = Vec::new();
        for (id, rc) in keys {
            let Some(list) = held.get_mut(id) else {
                continue;
            };
            let named = |h: &Holding| rc.is_none_or(|rc| h.rc == rc);
            let before = list.len();
            // What an older link delivered is back in the queue already: only an ack's
            // "stale" answer still needs it.
            list.retain(|h| h.generation == generation || !named(h));
            let older = before - list.len();
            match list
                .iter()
                .position(|h| h.generation == generation && named(h))
            {
                Some(at) => taken.extend(list.remove(at)),
                None if older > 0 => stale.push(id.to_owned()),
                None => {}
            }
            if list.is_empty() {
                held.remove(id);
            }
        }
        if held.is_empty() {
            queues.remove(queue);
        }
        (taken, stale)
    }

    /// Moves the deadline of the delivery of each held message (id and `rc`) to `deadline`
    /// (a nack with a delay keeps the message here until then); returns how many were found.
    pub(super) fn postpone(
        &self,
        queue: &str,
        held: &[crate::engine::Held],
        generation: u64,
        deadline: Instant,
    ) -> u64 {
        let mut queues = self.queues.lock().expect("in-flight poisoned");
        let Some(holding) = queues.get_mut(queue) else {
            return 0;
        };
        let mut found = 0;
        for wanted in held {
            if let Some(h) = holding.get_mut(&wanted.id).and_then(|list| {
                list.iter_mut()
                    .find(|h| h.generation == generation && h.rc == wanted.rc)
            }) {
                h.deadline = deadline;
                found += 1;
            }
        }
        found
    }

    /// Removes what is due at `now` (and what belongs to an older link), returning the due
    /// ones by queue, and the next deadline after `now`.
    pub(super) fn expire(
        &self,
        now: Instant,
        generation: u64,
    ) -> (Vec<(String, Holding)>, Option<Instant>) {
        let mut queues = self.queues.lock().expect("in-flight poisoned");
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (queue, ids) in queues.iter_mut() {
            for list in ids.values_mut() {
                let mut keep = VecDeque::with_capacity(list.len());
                for h in list.drain(..) {
                    if h.generation != generation {
                        // Kept: an ack of it must still be recognised as a late ack.
                        keep.push_back(h);
                        continue;
                    }
                    if h.deadline <= now {
                        due.push((queue.clone(), h));
                    } else {
                        next = Some(next.map_or(h.deadline, |n| n.min(h.deadline)));
                        keep.push_back(h);
                    }
                }
                *list = keep;
            }
            ids.retain(|_, list| !list.is_empty());
        }
        queues.retain(|_, ids| !ids.is_empty());
        (due, next)
    }

    /// The earliest deadline of the queue's messages held on link `generation`.
    pub(super) fn next_deadline(&self, queue: &str, generation: u64) -> Option<Instant> {
        let queues = self.queues.lock().expect("in-flight poisoned");
        queues
            .get(queue)?
            .values()
            .flat_map(|list| list.iter())
            .filter(|h| h.generation == generation)
            .map(|h| h.deadline)
            .min()
    }

    /// Forgets what is held on links older than `generation` and past its deadline: by then
    /// the subscriber's ack, if it comes, is too late to matter.
    pub(super) fn forget_stale(&self, generation: u64, now: Instant) {
        let mut queues = self.queues.lock().expect("in-flight poisoned");
        for ids in queues.values_mut() {
            for list in ids.values_mut() {
                list.retain(|h| h.generation == generation || h.deadline > now);
            }
            ids.retain(|_, list| !list.is_empty());
        }
        queues.retain(|_, ids| !ids.is_empty());
    }
}

/// Acks that came after the link their message was delivered on went away: RabbitMQ requeued
/// those messages, so when one comes back to this node it is acked on sight instead of being
/// delivered again. queue → id → until when the ack is remembered.
#[derive(Default)]
pub(super) struct LateAcks {
    queues: Mutex<HashMap<String, HashMap<String, Instant>>>,
}

impl LateAcks {
    /// Remembers that `ids` of `queue` were acked, until `until`.
    pub(super) fn remember(&self, queue: &str, ids: Vec<String>, until: Instant) {
        let mut queues = self.queues.lock().expect("late acks poisoned");
        let now = Instant::now();
        for acks in queues.values_mut() {
            acks.retain(|_, at| *at > now);
        }
        queues.retain(|_, acks| !acks.is_empty());
        let acks = queues.entry(queue.to_owned()).or_default();
        for id in ids {
            acks.insert(id, until);
        }
    }

    /// Whether the message `id` of `queue` was acked late (forgetting it: it is settled now).
    pub(super) fn take(&self, queue: &str, id: &str) -> bool {
        let mut queues = self.queues.lock().expect("late acks poisoned");
        let Some(acks) = queues.get_mut(queue) else {
            return false;
        };
        let found = acks.remove(id).is_some_and(|until| until > Instant::now());
        if acks.is_empty() {
            queues.remove(queue);
        }
        found
    }
}

/// The message a subscriber sees for `delivery`, received at `now_ms`.
pub(super) fn to_message(delivery: &Delivery, now_ms: u64) -> QueueMessage {
    let properties = &delivery.properties;
    let id = message_id(properties, &delivery.data);
    let sent = wsmq_rsmq::message_sent_ms(&id)
        .filter(|_| is_gateway_id(properties))
        .or_else(|| properties.timestamp().map(|secs| secs.saturating_mul(1000)))
        .unwrap_or(now_ms);
    QueueMessage {
        body: String::from_utf8_lossy(&delivery.data).into_owned(),
        rc: delivery_count(properties.headers().as_ref()) + 1,
        sent,
        id,
    }
}

/// The id a subscriber acks: the publisher's `message-id` when it is a valid wsmq id (32
/// characters of `[A-Za-z0-9:]`, what this gateway and rsmq make); a digest of it when it is
/// something else; and without one, a digest of the message's content, so the id stays the
/// same across redeliveries.
pub(super) fn message_id(properties: &BasicProperties, body: &[u8]) -> String {
    if let Some(id) = properties.message_id() {
        let id = id.as_str();
        if is_wsmq_id(id) {
            return id.to_owned();
        }
        return digest(&[b"message-id\0", id.as_bytes()]);
    }
    let timestamp = properties.timestamp().unwrap_or_default().to_be_bytes();
    let field = |v: &Option<lapin::types::ShortString>| {
        v.as_ref()
            .map_or(Vec::new(), |s| s.as_str().as_bytes().to_vec())
    };
    digest(&[
        b"content\0",
        &timestamp,
        &field(properties.correlation_id()),
        b"\0",
        &field(properties.app_id()),
        b"\0",
        &field(properties.kind()),
        b"\0",
        body,
    ])
}

/// Whether the message carries an id this gateway (or rsmq) made, whose first characters
/// are its send time.
fn is_gateway_id(properties: &BasicProperties) -> bool {
    properties
        .message_id()
        .as_ref()
        .is_some_and(|id| is_wsmq_id(id.as_str()))
}

/// `^[A-Za-z0-9:]{32}$`.
fn is_wsmq_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':')
}

/// 32 lowercase hex characters of the MD5 of the parts.
fn digest(parts: &[&[u8]]) -> String {
    let mut md5 = Md5::new();
    for part in parts {
        md5.update(part);
    }
    hex(&md5.finalize())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The quorum queue's `x-delivery-count` header: earlier deliveries of this message (absent
/// on the first).
fn delivery_count(headers: Option<&FieldTable>) -> u64 {
    let Some(value) = headers.and_then(|h| h.inner().get("x-delivery-count")) else {
        return 0;
    };
    match value {
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).unwrap_or(0),
        AMQPValue::ShortShortUInt(n) => u64::from(*n),
        AMQPValue::ShortInt(n) => u64::try_from(*n).unwrap_or(0),
        AMQPValue::ShortUInt(n) => u64::from(*n),
        AMQPValue::LongInt(n) => u64::try_from(*n).unwrap_or(0),
        AMQPValue::LongUInt(n) => u64::from(*n),
        AMQPValue::LongLongInt(n) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_message_id_or_a_stable_digest() {
        let own = "ab12cd34ef56gh78ij90kl12mn34op56";
        let props = BasicProperties::default().with_message_id(own.into());
        assert_eq!(message_id(&props, b"x"), own);
        // A foreign message-id is digested, the same way each time.
        let props = BasicProperties::default().with_message_id("order-17".into());
        let id = message_id(&props, b"x");
        assert!(is_wsmq_id(&id) && id != "order-17");
        assert_eq!(
            id,
            message_id(&props, b"y"),
            "the body does not matter then"
        );
        // Without one, the content decides: stable, and different for different bodies.
        let none = BasicProperties::default();
        let a = message_id(&none, b"hello");
        assert!(is_wsmq_id(&a));
        assert_eq!(a, message_id(&none, b"hello"));
        assert_ne!(a, message_id(&none, b"hello!"));
        let stamped = BasicProperties::default().with_timestamp(1_700_000_000);
        assert_ne!(a, message_id(&stamped, b"hello"));
    }

    #[test]
    fn rc_counts_the_quorum_queue_deliveries() {
        assert_eq!(delivery_count(None), 0);
        let mut headers = FieldTable::default();
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(2));
        assert_eq!(delivery_count(Some(&headers)), 2);
        headers.insert("x-delivery-count".into(), AMQPValue::LongInt(-1));
        assert_eq!(delivery_count(Some(&headers)), 0);
    }
}
