//! Message operations: send, receive, pop, delete and change visibility, each also in
//! a batch form that does the work of N single calls in one round trip.

use redis::{ScriptInvocation, Value};
use serde::Serialize;

use crate::validate::{validate_message_id, validate_queue_name, validate_seconds};
use crate::{Rsmq, RsmqError, id, message_sent_ms, reply, scripts};

/// The most messages one [`Rsmq::receive_batch`] asks for, to keep the count a safe
/// Lua integer; a larger `n` simply means "all that are visible" in practice.
const MAX_RECEIVE_BATCH: usize = u32::MAX as usize;

/// What [`Rsmq::receive_batch_next`] returns: the batch, and when to look again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedBatch {
    /// Up to `n` messages, oldest visibility first, exactly as
    /// [`Rsmq::receive_batch`] returns them.
    pub messages: Vec<Message>,
    /// Milliseconds from Redis `TIME` at the receive until the earliest message of the
    /// queue that is still hidden becomes visible; `None` when no message is hidden.
    ///
    /// Hidden means delayed, or received and not yet past its vt, so the messages of this
    /// very batch count, and a consumer that sleeps this long wakes when the first of
    /// them (or of a delayed message) is due. Messages still visible after a full batch
    /// do not count: they are receivable now.
    pub next_visible_ms: Option<u64>,
    /// What the receive took out of the queue instead of handing it out.
    pub dead: DeadCounts,
}

/// Messages a receive did not hand out because of the queue's wsmq rules (see
/// [`QueueOptions`](crate::QueueOptions)), or because their fields are corrupt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeadCounts {
    /// Already received `maxreceives` times: dead.
    pub max_receives: u64,
    /// Sent more than `ttl` seconds ago: dead.
    pub expired: u64,
    /// Whether the dead ones went to the dead-letter queue (else they were deleted).
    pub dead_lettered: bool,
    /// Left where they are, untouched, because their receive count is not a number
    /// (another writer's doing); the receive went on past them.
    pub corrupt: u64,
}

/// A received message, as rsmq's `receiveMessage` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// The message id (32 characters, see [`crate::message_sent_ms`]).
    pub id: String,
    /// The body. Empty if the body field was missing from the queue hash, which only a
    /// foreign writer can cause (rsmq itself would return `null`).
    pub message: String,
    /// How many times the message has been received, this time included.
    pub rc: u64,
    /// When the message was first received, Unix ms (Redis `TIME`).
    pub fr: u64,
    /// When the message was sent, Unix ms, read from the id.
    pub sent: u64,
}

impl Rsmq {
    /// Sends a message and returns its id. `delay` (seconds) overrides the queue's.
    ///
    /// # Errors
    ///
    /// In rsmq's order: the name check, [`RsmqError::QueueNotFound`],
    /// [`RsmqError::InvalidValue`] for the delay, [`RsmqError::MessageTooLong`].
    pub async fn send_message(
        &self,
        qname: &str,
        message: &str,
        delay: Option<u64>,
    ) -> Result<String, RsmqError> {
        let mut ids = self.send_batch(qname, &[message], delay).await?;
        ids.pop()
            .ok_or_else(|| RsmqError::UnexpectedReply("send returned no id".into()))
    }

    /// Sends several messages in one round trip and returns their ids in order.
    ///
    /// The effect is that of one [`send_message`](Self::send_message) per body, with
    /// three differences: all or none are sent (one body too long fails the batch), the
    /// ids take consecutive microseconds so that the messages are received in batch
    /// order, and a realtime queue gets one notification carrying the final count.
    ///
    /// Redis runs the whole batch as one script and serves nobody else meanwhile, so
    /// split very large inputs into chunks (a thousand or so messages each).
    ///
    /// # Errors
    ///
    /// As [`send_message`](Self::send_message).
    pub async fn send_batch(
        &self,
        qname: &str,
        messages: &[impl AsRef<str>],
        delay: Option<u64>,
    ) -> Result<Vec<String>, RsmqError> {
        validate_queue_name(qname)?;
        let keys = self.queue_keys(qname);
        let mut invocation = scripts::SEND_MESSAGES.prepare_invoke();
        invocation
            .key(&keys.zset)
            .key(&keys.hash)
            .key(&keys.realtime)
            .arg(delay.map(|d| d.to_string()).unwrap_or_default())
            .arg(if self.realtime() { "1" } else { "0" });
        for message in messages {
            let message = message.as_ref();
            let length = message_length(message);
            invocation.arg(id::random_suffix()).arg(length).arg(message);
        }
        self.eval(&invocation).await
    }

    /// [`send_batch`](Self::send_batch), returning only once the write reached `replicas`
    /// replicas of the queue's master (Redis `WAIT`, at most `timeout`): a message
    /// acknowledged this way survives the failover of that master.
    ///
    /// The send and the `WAIT` go in one round trip over a connection of their own, so a
    /// slow or missing replica holds up only this call, never the handle's shared
    /// connection.
    ///
    /// # Errors
    ///
    /// As [`send_batch`](Self::send_batch); [`RsmqError::NotReplicated`] (with the ids: the
    /// messages are on the master, and may or may not survive its failover) when fewer
    /// replicas confirmed within `timeout`.
    pub async fn send_batch_replicated(
        &self,
        qname: &str,
        messages: &[impl AsRef<str>],
        delay: Option<u64>,
        replicas: u32,
        timeout: std::time::Duration,
    ) -> Result<Vec<String>, RsmqError> {
        validate_queue_name(qname)?;
        let keys = self.queue_keys(qname);
        let mut send = redis::cmd("EVALSHA");
        send.arg(scripts::SEND_MESSAGES.get_hash())
            .arg(3)
            .arg(&keys.zset)
            .arg(&keys.hash)
            .arg(&keys.realtime)
            .arg(delay.map(|d| d.to_string()).unwrap_or_default())
            .arg(if self.realtime() { "1" } else { "0" });
        for message in messages {
            let message = message.as_ref();
            send.arg(id::random_suffix())
                .arg(message_length(message))
                .arg(message);
        }
        let timeout_ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut pipe = redis::pipe();
        pipe.add_command(send)
            .cmd("WAIT")
            .arg(replicas)
            .arg(timeout_ms);
        let (ids, reached): (Vec<String>, u64) = self.query_replicated(&pipe, &keys.zset).await?;
        if reached < u64::from(replicas) {
            return Err(RsmqError::NotReplicated {
                wanted: replicas,
                reached,
                ids,
            });
        }
        Ok(ids)
    }

    /// Receives the next visible message, hiding it for `vt` seconds (default: the
    /// queue's vt). `Ok(None)` when no message is visible.
    ///
    /// # Errors
    ///
    /// In rsmq's order: the name check, [`RsmqError::QueueNotFound`],
    /// [`RsmqError::InvalidValue`] for the vt.
    pub async fn receive_message(
        &self,
        qname: &str,
        vt: Option<u64>,
    ) -> Result<Option<Message>, RsmqError> {
        Ok(self.receive_batch(qname, 1, vt).await?.pop())
    }

    /// Receives up to `n` visible messages in one round trip, oldest visibility first.
    ///
    /// The data ends up as after `n` calls of
    /// [`receive_message`](Self::receive_message) made at the same instant: each
    /// message is hidden for `vt`, its `rc` incremented, `fr` set on its first receive,
    /// and `totalrecv` grows by the number returned. A message is returned at most once
    /// per batch, even with a vt of 0.
    ///
    /// Messages that the queue's `maxreceives` or `ttl` rule out are moved to its
    /// dead-letter queue (or deleted) instead, in the same script, and the batch goes on
    /// past them; so are messages whose rc field is not a number left as they are.
    /// [`receive_batch_next`](Self::receive_batch_next) also says how many there were.
    ///
    /// # Errors
    ///
    /// As [`receive_message`](Self::receive_message).
    pub async fn receive_batch(
        &self,
        qname: &str,
        n: usize,
        vt: Option<u64>,
    ) -> Result<Vec<Message>, RsmqError> {
        if self.is_cluster() {
            // The batch with its counts, which say when dead messages wait to be moved.
            return Ok(self.receive_batch_next(qname, n, vt).await?.messages);
        }
        let invocation = self.receive_invocation(qname, n, vt, false)?;
        let reply = self.eval(&invocation).await?;
        decode_messages(reply)
    }

    /// [`receive_batch`](Self::receive_batch), plus the time until the queue's next hidden
    /// message becomes visible, computed by the same script in the same round trip.
    ///
    /// A consumer that drained the queue can sleep exactly
    /// [`next_visible_ms`](ReceivedBatch::next_visible_ms) (or until a realtime
    /// notification) instead of polling, and wakes when a delayed message is due or an
    /// unacknowledged one comes back after its vt. The data ends up exactly as after
    /// `receive_batch`; the extra work is one `ZRANGEBYSCORE … LIMIT 0 1` inside the script.
    ///
    /// # Errors
    ///
    /// As [`receive_message`](Self::receive_message).
    pub async fn receive_batch_next(
        &self,
        qname: &str,
        n: usize,
        vt: Option<u64>,
    ) -> Result<ReceivedBatch, RsmqError> {
        let invocation = self.receive_invocation(qname, n, vt, true)?;
        let reply: Vec<Value> = self.eval(&invocation).await?;
        let mut parts = reply.into_iter();
        let (Some(Value::Array(messages)), Some(next), Some(Value::Array(counts)), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(RsmqError::UnexpectedReply(
                "receive reply is not a [messages, next visible, counts] triple".into(),
            ));
        };
        let counts: [Value; 4] = counts
            .try_into()
            .map_err(|_| RsmqError::UnexpectedReply("receive counts are not 4 values".into()))?;
        let [max_receives, expired, dead_lettered, corrupt] = counts;
        let dead = DeadCounts {
            max_receives: reply::count(max_receives, "maxreceives count")?,
            expired: reply::count(expired, "expired count")?,
            dead_lettered: reply::count(dead_lettered, "dead-lettered flag")? == 1,
            corrupt: reply::count(corrupt, "corrupt count")?,
        };
        let next_visible_ms = match next {
            Value::Nil => None,
            other => Some(reply::count(other, "next visible")?),
        };
        if dead.dead_lettered && self.is_cluster() {
            // The receive is done either way: what cannot be moved now stays parked, and the
            // next receive of the queue tries again.
            let _ = self.move_parked(qname).await;
        }
        Ok(ReceivedBatch {
            messages: decode_messages(messages)?,
            next_visible_ms,
            dead,
        })
    }

    /// The receive script's invocation, after the name check.
    fn receive_invocation(
        &self,
        qname: &str,
        n: usize,
        vt: Option<u64>,
        with_next: bool,
    ) -> Result<ScriptInvocation<'static>, RsmqError> {
        validate_queue_name(qname)?;
        let keys = self.queue_keys(qname);
        let mut invocation = scripts::RECEIVE_MESSAGES.prepare_invoke();
        invocation
            .key(&keys.zset)
            .key(&keys.hash)
            .key(&keys.queues)
            .arg(vt.map(|vt| vt.to_string()).unwrap_or_default())
            .arg(n.min(MAX_RECEIVE_BATCH))
            .arg(if with_next { "1" } else { "0" })
            .arg(self.dead_letter_arg(qname));
        Ok(invocation)
    }

    /// Receives the next visible message and deletes it in the same step, so it is
    /// never redelivered. `Ok(None)` when no message is visible.
    ///
    /// # Errors
    ///
    /// The name check, then [`RsmqError::QueueNotFound`].
    pub async fn pop_message(&self, qname: &str) -> Result<Option<Message>, RsmqError> {
        validate_queue_name(qname)?;
        let keys = self.queue_keys(qname);
        let mut invocation = scripts::POP_MESSAGE.prepare_invoke();
        invocation.key(&keys.zset).key(&keys.hash);
        let reply = self.eval(&invocation).await?;
        Ok(decode_messages(reply)?.pop())
    }

    /// Deletes a message. `Ok(false)` if there was no such message, including when the
    /// queue itself does not exist (rsmq does not check the queue here).
    ///
    /// # Errors
    ///
    /// The name and id checks.
    pub async fn delete_message(&self, qname: &str, id: &str) -> Result<bool, RsmqError> {
        Ok(self.delete_batch(qname, &[id]).await? == 1)
    }

    /// Deletes several messages in one round trip and returns how many existed.
    ///
    /// # Errors
    ///
    /// The name check, then the id check of each id; nothing is deleted if any fails.
    pub async fn delete_batch(
        &self,
        qname: &str,
        ids: &[impl AsRef<str>],
    ) -> Result<u64, RsmqError> {
        validate_queue_name(qname)?;
        for id in ids {
            validate_message_id(id.as_ref())?;
        }
        if ids.is_empty() {
            // rsmq's delete never looks at the queue, so nothing to ask Redis.
            return Ok(0);
        }
        let keys = self.queue_keys(qname);
        let mut invocation = scripts::DELETE_MESSAGES.prepare_invoke();
        invocation.key(&keys.zset).key(&keys.hash);
        for id in ids {
            invocation.arg(id.as_ref());
        }
        self.eval(&invocation).await
    }

    /// Makes a message visible again `vt` seconds from now (0: at once). `Ok(false)` if
    /// the queue has no such message.
    ///
    /// # Errors
    ///
    /// The name, id and vt checks (all before Redis, as in rsmq), then
    /// [`RsmqError::QueueNotFound`].
    pub async fn change_message_visibility(
        &self,
        qname: &str,
        id: &str,
        vt: u64,
    ) -> Result<bool, RsmqError> {
        Ok(self.change_visibility_batch(qname, &[id], vt).await? == 1)
    }

    /// Makes several messages visible again `vt` seconds from now, in one round trip, and
    /// returns how many the queue holds (those are the ones changed).
    ///
    /// The data ends up as after one
    /// [`change_message_visibility`](Self::change_message_visibility) per id made at the
    /// same instant: every listed message that exists gets the same visible-at time, and
    /// ids the queue does not hold are skipped. This is how a consumer gives back what it
    /// holds in flight when it stops, or negatively acknowledges several messages at once.
    ///
    /// # Errors
    ///
    /// The name check, the id check of each id and the vt check, before Redis and with
    /// nothing changed if any fails; then [`RsmqError::QueueNotFound`]. With no ids,
    /// nothing is asked of Redis and the answer is 0, as for zero single calls.
    pub async fn change_visibility_batch(
        &self,
        qname: &str,
        ids: &[impl AsRef<str>],
        vt: u64,
    ) -> Result<u64, RsmqError> {
        validate_queue_name(qname)?;
        for id in ids {
            validate_message_id(id.as_ref())?;
        }
        validate_seconds("vt", vt)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let keys = self.queue_keys(qname);
        let mut invocation = scripts::CHANGE_MESSAGE_VISIBILITY.prepare_invoke();
        invocation.key(&keys.zset).key(&keys.hash).arg(vt);
        for id in ids {
            invocation.arg(id.as_ref());
        }
        self.eval(&invocation).await
    }
}

/// Reads the flat `id, body, rc, fr, id, body, rc, fr, …` reply of the receive and pop
/// scripts.
fn decode_messages(reply: Vec<Value>) -> Result<Vec<Message>, RsmqError> {
    if !reply.len().is_multiple_of(4) {
        return Err(RsmqError::UnexpectedReply(format!(
            "message reply has {} values, not a multiple of 4",
            reply.len()
        )));
    }
    let mut messages = Vec::with_capacity(reply.len() / 4);
    let mut values = reply.into_iter();
    while let (Some(id), Some(body), Some(rc), Some(fr)) =
        (values.next(), values.next(), values.next(), values.next())
    {
        let id = reply::text(id)?.ok_or_else(|| reply::unexpected("a message id", &Value::Nil))?;
        messages.push(Message {
            sent: message_sent_ms(&id).unwrap_or(0),
            message: reply::text(body)?.unwrap_or_default(),
            rc: reply::count(rc, "rc")?,
            fr: reply::count_or_zero(fr)?,
            id,
        });
    }
    Ok(messages)
}

/// A body's length as rsmq measures it against maxsize: JavaScript's `string.length`,
/// which counts UTF-16 code units (an emoji is 2, `é` is 1).
pub fn message_length(body: &str) -> usize {
    body.encode_utf16().count()
}
