//! Queue operations: create, delete, list, and get or set attributes.

use redis::Value;
use serde::Serialize;

use crate::keys;
use crate::validate::{
    MAX_MAXSIZE, validate_max_receives, validate_maxsize, validate_queue_name, validate_seconds,
};
use crate::{Rsmq, RsmqError, reply, scripts};

/// Queue settings for [`Rsmq::create_queue`] and [`Rsmq::set_queue_attributes`];
/// `None` means the default on create and "leave as is" on set.
///
/// `maxreceives`, `ttl` and `deadletter` are wsmq's own: extra fields of the queue hash
/// that npm rsmq ignores, written only when set (see the crate docs for what they do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueOptions {
    /// Seconds a received message stays hidden, 0..=9999999. Default 30.
    pub vt: Option<u64>,
    /// Seconds a sent message waits before it can be received, 0..=9999999. Default 0.
    pub delay: Option<u64>,
    /// Longest body in UTF-16 code units, 1024..=65536, or -1 for no limit.
    /// Default 65536.
    pub maxsize: Option<i64>,
    /// Receives after which a message is dead, 0..=1000000; 0 (the default) is no limit.
    pub maxreceives: Option<u64>,
    /// Seconds after its send at which a message is dead, 0..=9999999; 0 (the default)
    /// is never.
    pub ttl: Option<u64>,
    /// Where dead messages go: a queue name (not the queue's own), or `""` for nowhere
    /// (they are deleted), the default.
    pub deadletter: Option<String>,
}

/// A queue's settings and counters, as rsmq's `getQueueAttributes` returns them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueAttributes {
    /// Default visibility timeout of received messages, in seconds.
    pub vt: u64,
    /// Default delay of sent messages, in seconds.
    pub delay: u64,
    /// Longest accepted body in UTF-16 code units, or -1 for no limit.
    pub maxsize: i64,
    /// Messages received (and popped) over the queue's life.
    pub totalrecv: u64,
    /// Messages sent over the queue's life.
    pub totalsent: u64,
    /// When the queue was created, Unix seconds (Redis `TIME`).
    pub created: u64,
    /// When the attributes were last changed, Unix seconds (Redis `TIME`).
    pub modified: u64,
    /// Messages in the queue, visible or not.
    pub msgs: u64,
    /// Messages not visible at the start of the current second: being processed or
    /// delayed. rsmq counts from the whole second, and so does this.
    pub hiddenmsgs: u64,
    /// Receives after which a message is dead; 0: no limit.
    pub maxreceives: u64,
    /// Seconds after its send at which a message is dead; 0: never.
    pub ttl: u64,
    /// Where dead messages go; `None`: they are deleted.
    pub deadletter: Option<String>,
    /// Messages taken out as dead over the queue's life (moved or deleted).
    pub totaldead: u64,
}

/// rsmq's default visibility timeout of a new queue, seconds.
pub const DEFAULT_VT: u64 = 30;
/// rsmq's default delay of a new queue, seconds.
pub const DEFAULT_DELAY: u64 = 0;
/// rsmq's default maxsize of a new queue (the largest bounded one).
pub const DEFAULT_MAXSIZE: i64 = MAX_MAXSIZE;

impl Rsmq {
    /// Creates a queue, filling unset options with rsmq's defaults (vt 30, delay 0,
    /// maxsize 65536).
    ///
    /// # Errors
    ///
    /// Validation errors in rsmq's order (name, vt, delay, maxsize), then
    /// [`RsmqError::QueueExists`].
    pub async fn create_queue(&self, qname: &str, opts: &QueueOptions) -> Result<(), RsmqError> {
        let vt = opts.vt.unwrap_or(DEFAULT_VT);
        let delay = opts.delay.unwrap_or(DEFAULT_DELAY);
        let maxsize = opts.maxsize.unwrap_or(DEFAULT_MAXSIZE);
        validate_queue_name(qname)?;
        validate_seconds("vt", vt)?;
        validate_seconds("delay", delay)?;
        validate_maxsize(maxsize)?;
        let maxreceives = opts.maxreceives.unwrap_or(0);
        let ttl = opts.ttl.unwrap_or(0);
        let deadletter = opts.deadletter.as_deref().unwrap_or_default();
        validate_wsmq_attributes(qname, opts)?;

        let keys = self.queue_keys(qname);
        let mut invocation = scripts::CREATE_QUEUE.prepare_invoke();
        invocation
            .key(&keys.hash)
            .key(&keys.queues)
            .arg(vt)
            .arg(delay)
            .arg(maxsize)
            .arg(qname)
            .arg(maxreceives)
            .arg(ttl)
            .arg(deadletter);
        self.eval::<()>(&invocation).await
    }

    /// Deletes a queue with all its messages and removes it from the queue set.
    ///
    /// # Errors
    ///
    /// [`RsmqError::QueueNotFound`] if neither the hash nor the zset existed; the name
    /// is removed from the set regardless, as rsmq does.
    pub async fn delete_queue(&self, qname: &str) -> Result<(), RsmqError> {
        validate_queue_name(qname)?;
        let keys = self.queue_keys(qname);
        // rsmq's MULTI: the name leaves the set even when there was nothing to delete.
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(&[&keys.hash, &keys.zset])
            .srem(&keys.queues, qname);
        let (deleted, _removed): (u64, u64) = self.query_pipeline(&pipe).await?;
        if deleted == 0 {
            return Err(RsmqError::QueueNotFound);
        }
        Ok(())
    }

    /// Names of all queues in the namespace, in no particular order. On a Redis Cluster,
    /// every queue has a set of its own (`{ns}:{q}:QUEUES`), found by scanning every master.
    ///
    /// # Errors
    ///
    /// Only transport errors.
    pub async fn list_queues(&self) -> Result<Vec<String>, RsmqError> {
        if let Some(conn) = self.cluster_connection() {
            return crate::cluster::list_queues(conn, self.ns()).await;
        }
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(keys::queues(self.ns()));
        self.query(&cmd).await
    }

    /// A queue's settings and counters.
    ///
    /// # Errors
    ///
    /// [`RsmqError::QueueNotFound`] if the queue has no `vt` field.
    pub async fn get_queue_attributes(&self, qname: &str) -> Result<QueueAttributes, RsmqError> {
        validate_queue_name(qname)?;
        let keys = self.queue_keys(qname);
        let mut invocation = scripts::GET_QUEUE_ATTRIBUTES.prepare_invoke();
        invocation.key(&keys.zset).key(&keys.hash);
        let reply = self.eval(&invocation).await?;
        decode_attributes(reply)
    }

    /// Changes the given settings, stamps `modified`, and returns the attributes as
    /// they are afterwards.
    ///
    /// # Errors
    ///
    /// In rsmq's order: [`RsmqError::NoAttributeSupplied`] if every option is `None`
    /// (checked before the name), the name, vt, maxsize and delay checks, then
    /// [`RsmqError::QueueNotFound`].
    pub async fn set_queue_attributes(
        &self,
        qname: &str,
        opts: &QueueOptions,
    ) -> Result<QueueAttributes, RsmqError> {
        if *opts == QueueOptions::default() {
            return Err(RsmqError::NoAttributeSupplied);
        }
        validate_queue_name(qname)?;
        if let Some(vt) = opts.vt {
            validate_seconds("vt", vt)?;
        }
        if let Some(maxsize) = opts.maxsize {
            validate_maxsize(maxsize)?;
        }
        if let Some(delay) = opts.delay {
            validate_seconds("delay", delay)?;
        }
        validate_wsmq_attributes(qname, opts)?;

        let keys = self.queue_keys(qname);
        let mut invocation = scripts::SET_QUEUE_ATTRIBUTES.prepare_invoke();
        invocation
            .key(&keys.zset)
            .key(&keys.hash)
            .arg(optional(opts.vt))
            .arg(optional(opts.delay))
            .arg(optional(opts.maxsize))
            .arg(optional(opts.maxreceives))
            .arg(optional(opts.ttl))
            .arg(
                opts.deadletter
                    .as_ref()
                    .map(|name| format!("={name}"))
                    .unwrap_or_default(),
            );
        let reply = self.eval(&invocation).await?;
        decode_attributes(reply)
    }
}

/// Checks wsmq's own attributes: maxreceives and ttl in range, and a dead-letter queue
/// that is a valid name other than the queue's own (or `""`, none).
fn validate_wsmq_attributes(qname: &str, opts: &QueueOptions) -> Result<(), RsmqError> {
    if let Some(maxreceives) = opts.maxreceives {
        validate_max_receives(maxreceives)?;
    }
    if let Some(ttl) = opts.ttl {
        validate_seconds("ttl", ttl)?;
    }
    match opts.deadletter.as_deref() {
        None | Some("") => Ok(()),
        Some(name) if name == qname => Err(RsmqError::InvalidDeadLetter("it is the queue itself")),
        Some(name) => validate_queue_name(name),
    }
}

/// A script argument for an optional number: the number, or "" for "not given".
fn optional(value: Option<impl ToString>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// Reads the 13-element reply of the attribute scripts, with rsmq's defaults: the
/// counters read 0 when missing (`parseInt(x) || 0`), rsmq's settings must be numbers,
/// and wsmq's own read as off when missing or not numbers (as the receive script reads
/// them).
fn decode_attributes(reply: Vec<Value>) -> Result<QueueAttributes, RsmqError> {
    let values: [Value; 13] = reply
        .try_into()
        .map_err(|_| RsmqError::UnexpectedReply("attributes reply is not 13 values".into()))?;
    let [
        vt,
        delay,
        maxsize,
        totalrecv,
        totalsent,
        created,
        modified,
        msgs,
        hidden,
        maxreceives,
        ttl,
        deadletter,
        totaldead,
    ] = values;
    Ok(QueueAttributes {
        vt: reply::count(vt, "vt")?,
        delay: reply::count(delay, "delay")?,
        maxsize: reply::int(maxsize)?
            .ok_or_else(|| RsmqError::UnexpectedReply("maxsize is not a number".into()))?,
        totalrecv: reply::count_or_zero(totalrecv)?,
        totalsent: reply::count_or_zero(totalsent)?,
        created: reply::count(created, "created")?,
        modified: reply::count(modified, "modified")?,
        msgs: reply::count(msgs, "msgs")?,
        hiddenmsgs: reply::count(hidden, "hiddenmsgs")?,
        maxreceives: reply::count_or_zero(maxreceives)?,
        ttl: reply::count_or_zero(ttl)?,
        deadletter: reply::text(deadletter)?.filter(|name| !name.is_empty()),
        totaldead: reply::count_or_zero(totaldead)?,
    })
}
