//! Giving back what one receive holds (release and dead-letter, guarded by the receive
//! count), and moving messages between queues (redrive from a dead-letter queue).
//!
//! These are wsmq additions: npm rsmq has no counterpart, and its change-visibility by id
//! alone cannot tell a consumer's own receive from a later one of the same message.

use redis::Value;

use crate::validate::{validate_message_id, validate_queue_name, validate_seconds};
use crate::{Rsmq, RsmqError, reply, scripts};

/// The most messages one [`Rsmq::move_messages`] call moves: Redis serves nobody else
/// while a script runs, so a large redrive is many short calls.
pub const MAX_MOVE_BATCH: usize = 1000;

/// A message as one receive handed it out: its id and the `rc` that receive returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held<'a> {
    /// The message id.
    pub id: &'a str,
    /// The receive count that receive returned.
    pub rc: u64,
}

/// What [`Rsmq::dead_letter_held`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeadLettered {
    /// Messages taken out of the queue (those still held as given).
    pub count: u64,
    /// Whether they went to the queue's dead-letter queue (else they were deleted).
    pub moved: bool,
}

/// What [`Rsmq::move_messages`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    /// Messages moved.
    pub moved: u64,
    /// Messages left in the source queue, visible or not.
    pub left: u64,
}

impl Rsmq {
    /// Makes messages visible again `delay` seconds from now, each only while its receive
    /// count is still the one given: a message that another consumer received since (its
    /// vt ran out meanwhile) stays with that consumer. Returns how many were given back.
    ///
    /// # Errors
    ///
    /// The name, id and delay checks, before Redis and with nothing changed if any fails;
    /// then [`RsmqError::QueueNotFound`].
    pub async fn release_held(
        &self,
        qname: &str,
        held: &[Held<'_>],
        delay: u64,
    ) -> Result<u64, RsmqError> {
        validate_seconds("delay", delay)?;
        let (count, _) = self.return_held(qname, held, "release", delay).await?;
        Ok(count)
    }

    /// Takes messages out of the queue now, each only while its receive count is still
    /// the one given (as [`release_held`](Self::release_held)): into the queue's
    /// dead-letter queue with their ids and bodies, or deleted when it has none; counted
    /// in the queue's `totaldead`.
    ///
    /// # Errors
    ///
    /// The name and id checks, then [`RsmqError::QueueNotFound`] and
    /// [`RsmqError::InvalidDeadLetter`], all with nothing changed.
    pub async fn dead_letter_held(
        &self,
        qname: &str,
        held: &[Held<'_>],
    ) -> Result<DeadLettered, RsmqError> {
        let (count, moved) = self.return_held(qname, held, "dead", 0).await?;
        if moved && self.is_cluster() {
            // Parked in the queue's slot; moved over now, or by the queue's next receive.
            let _ = self.move_parked(qname).await;
        }
        Ok(DeadLettered { count, moved })
    }

    async fn return_held(
        &self,
        qname: &str,
        held: &[Held<'_>],
        mode: &str,
        delay: u64,
    ) -> Result<(u64, bool), RsmqError> {
        validate_queue_name(qname)?;
        for message in held {
            validate_message_id(message.id)?;
        }
        if held.is_empty() {
            return Ok((0, false));
        }
        let keys = self.queue_keys(qname);
        let mut invocation = scripts::RETURN_MESSAGES.prepare_invoke();
        invocation
            .key(&keys.zset)
            .key(&keys.hash)
            .key(&keys.queues)
            .arg(mode)
            .arg(delay)
            .arg(self.dead_letter_arg(qname));
        for message in held {
            invocation.arg(message.id).arg(message.rc);
        }
        let reply: Vec<Value> = self.eval(&invocation).await?;
        let [count, moved] = pair(reply, "return")?;
        Ok((
            reply::count(count, "count")?,
            reply::count(moved, "moved")? == 1,
        ))
    }

    /// Moves up to `n` (at most [`MAX_MOVE_BATCH`]) visible messages from `from` to `to`
    /// in one script, ids and bodies kept: they are visible in `to` at once, never
    /// received there (rc starts again), and counted as sent. Messages being received
    /// from `from` (hidden) stay. With realtime on, `to`'s consumers are woken.
    ///
    /// A message older than `to`'s `ttl` is dead again at its next receive there: its age
    /// comes from its id, which the move keeps.
    ///
    /// # Errors
    ///
    /// The name checks, [`RsmqError::InvalidValue`] for `n` outside
    /// 1..=[`MAX_MOVE_BATCH`], [`RsmqError::InvalidDeadLetter`] when `from` and `to` are
    /// the same queue, then [`RsmqError::QueueNotFound`] when either is missing.
    pub async fn move_messages(&self, from: &str, to: &str, n: usize) -> Result<Moved, RsmqError> {
        validate_queue_name(from)?;
        validate_queue_name(to)?;
        if !(1..=MAX_MOVE_BATCH).contains(&n) {
            return Err(RsmqError::InvalidValue {
                field: "count",
                min: 1,
                max: MAX_MOVE_BATCH as i64,
            });
        }
        if from == to {
            return Err(RsmqError::InvalidDeadLetter("it is the queue itself"));
        }
        if self.is_cluster() {
            // The two queues' keys are in two slots, which no one script can reach.
            return Err(RsmqError::Unsupported(
                "moving messages between queues on a Redis Cluster",
            ));
        }
        let source = self.queue_keys(from);
        let target = self.queue_keys(to);
        let mut invocation = scripts::MOVE_MESSAGES.prepare_invoke();
        invocation
            .key(&source.zset)
            .key(&source.hash)
            .key(&target.zset)
            .key(&target.hash)
            .key(&target.realtime)
            .arg(n)
            .arg(if self.realtime() { "1" } else { "0" });
        let reply: Vec<Value> = self.eval(&invocation).await?;
        let [moved, left] = pair(reply, "move")?;
        Ok(Moved {
            moved: reply::count(moved, "moved")?,
            left: reply::count(left, "left")?,
        })
    }
}

impl Rsmq {
    /// On a Redis Cluster, moves the messages `qname` parked for its dead-letter queue (which
    /// lives in another slot) into that queue, ids and bodies kept, and returns how many it
    /// added. A receive or a dead nack that parks messages calls it at once; a client that
    /// died in between leaves them parked, and the queue's next receive moves them. Each
    /// step is safe to repeat: a message already in the dead-letter queue is not added
    /// twice, and it leaves the parking hash only once it is there. On one Redis nothing is
    /// ever parked, and this answers 0.
    ///
    /// # Errors
    ///
    /// Transport errors, and [`RsmqError::InvalidDeadLetter`] when the dead-letter queue's
    /// keys hold something other than a queue; the messages then stay parked.
    pub async fn move_parked(&self, qname: &str) -> Result<u64, RsmqError> {
        validate_queue_name(qname)?;
        if !self.is_cluster() {
            return Ok(0);
        }
        let park = self.queue_keys(qname).park;
        let mut read = redis::cmd("HGETALL");
        read.arg(&park);
        let mut fields: std::collections::HashMap<String, String> = self.query(&read).await?;
        let Some(to) = fields.remove("to") else {
            return Ok(0);
        };
        if fields.is_empty() {
            return Ok(0);
        }
        validate_queue_name(&to)
            .map_err(|_| RsmqError::InvalidDeadLetter("it is not a valid queue name"))?;
        let target = self.queue_keys(&to);
        let mut put = scripts::PUT_DEAD.prepare_invoke();
        put.key(&target.zset)
            .key(&target.hash)
            .key(&target.queues)
            .key(&target.realtime)
            .arg(if self.realtime() { "1" } else { "0" })
            .arg(&to);
        // In send order, which is id order.
        let mut parked: Vec<(String, String)> = fields.into_iter().collect();
        parked.sort_unstable();
        for (id, body) in &parked {
            put.arg(id).arg(body);
        }
        let added: u64 = self.eval(&put).await?;
        let mut unpark = scripts::UNPARK.prepare_invoke();
        unpark.key(&park);
        for (id, _) in &parked {
            unpark.arg(id);
        }
        self.eval::<u64>(&unpark).await?;
        Ok(added)
    }
}

fn pair(reply: Vec<Value>, what: &str) -> Result<[Value; 2], RsmqError> {
    reply
        .try_into()
        .map_err(|_| RsmqError::UnexpectedReply(format!("{what} reply is not 2 values")))
}
