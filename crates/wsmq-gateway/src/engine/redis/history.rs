//! Channel history in Redis: one STREAM per channel plus a small HASH with its epoch and
//! latest offset (keys in `wsmq_proto::keys`), written by one script that also PUBLISHes, so
//! taking the offset, storing and broadcasting are one atomic step.
//!
//! Publications of channels with history travel on `wsmq:chh:{c}` as
//! `{offset} {epoch} {sent} {body}`, not on `wsmq:ch:{c}`, whose payload stays the bare body
//! that nodes, tools and scripts unaware of history read.

use std::sync::{Arc, LazyLock};

use redis::{Script, Value};
use wsmq_proto::keys;

use super::super::{
    EngineError, HistoryEntry, HistoryPage, HistoryPolicy, HistoryRange, Position, Published,
    new_epoch,
};
use super::RedisEngine;

const PUBLISH_SOURCE: &str = include_str!("scripts/history_publish.lua");
const READ_SOURCE: &str = include_str!("scripts/history_read.lua");
/// Only the hash of each is used (`EVALSHA`); the source goes out when Redis lacks it.
static PUBLISH: LazyLock<Script> = LazyLock::new(|| Script::new(PUBLISH_SOURCE));
static READ: LazyLock<Script> = LazyLock::new(|| Script::new(READ_SOURCE));

impl RedisEngine {
    /// [`Broker::publish_with_history`](super::super::Broker::publish_with_history).
    pub(super) async fn publish_at(
        &self,
        channel: &str,
        body: &str,
        history: HistoryPolicy,
    ) -> Result<Published, EngineError> {
        let cluster = self.rsmq.is_cluster();
        let args = [
            if cluster {
                keys::Carrier::History.sharded(channel)
            } else {
                keys::history_channel(channel)
            },
            body.to_owned(),
            history.size.max(1).to_string(),
            ttl_secs(history).to_string(),
            new_epoch(),
            if cluster { "SPUBLISH" } else { "PUBLISH" }.to_owned(),
        ];
        let reply: (u64, String, String) =
            self.eval(&PUBLISH, PUBLISH_SOURCE, channel, &args).await?;
        let (receivers, offset, epoch) = reply;
        Ok(Published {
            receivers,
            position: Some(Position {
                offset: parse_u64(&offset)?,
                epoch: epoch.into(),
            }),
        })
    }

    /// [`Broker::history`](super::super::Broker::history).
    pub(super) async fn read_history(
        &self,
        channel: &str,
        history: HistoryPolicy,
        range: HistoryRange,
        limit: u64,
    ) -> Result<HistoryPage, EngineError> {
        let (mode, bound) = match range {
            HistoryRange::After(after) => ("after", after.to_string()),
            HistoryRange::Before(before) => {
                ("before", before.map_or(String::new(), |b| b.to_string()))
            }
        };
        let args = [
            mode.to_owned(),
            bound,
            limit.max(1).to_string(),
            new_epoch(),
            ttl_secs(history).to_string(),
        ];
        let (epoch, top, raw): (String, String, Value) =
            self.eval(&READ, READ_SOURCE, channel, &args).await?;
        let mut entries = parse_entries(raw)?;
        if matches!(range, HistoryRange::Before(_)) {
            entries.reverse();
        }
        Ok(HistoryPage {
            epoch: Arc::from(epoch),
            top: parse_u64(&top)?,
            entries,
        })
    }

    /// Runs a history script on the channel's two keys: `EVALSHA`, and `EVAL` once when Redis
    /// does not know the script yet (a restart, `SCRIPT FLUSH`).
    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        source: &str,
        channel: &str,
        args: &[String],
    ) -> Result<T, EngineError> {
        let build = |verb: &str, first: &str| {
            let mut cmd = redis::cmd(verb);
            cmd.arg(first)
                .arg(2)
                .arg(keys::history_stream(channel))
                .arg(keys::history_position(channel));
            for arg in args {
                cmd.arg(arg);
            }
            cmd
        };
        match self.rsmq.query(&build("EVALSHA", script.get_hash())).await {
            Err(wsmq_rsmq::RsmqError::Redis(err))
                if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                self.query(&build("EVAL", source)).await
            }
            other => self.track(other),
        }
    }
}

/// The ttl in whole seconds, at least 1 (`EXPIRE` takes seconds; 0 would delete at once).
fn ttl_secs(history: HistoryPolicy) -> u64 {
    history.ttl.as_secs().max(1)
}

fn parse_u64(text: &str) -> Result<u64, EngineError> {
    text.parse()
        .map_err(|_| EngineError::Unavailable(format!("unexpected offset from redis: {text:?}")))
}

/// `[[id, [field, value, …]], …]` as XRANGE returns it.
fn parse_entries(raw: Value) -> Result<Vec<HistoryEntry>, EngineError> {
    let bad = |what: &str| EngineError::Unavailable(format!("unexpected history entry: {what}"));
    let Value::Array(items) = raw else {
        return Ok(Vec::new());
    };
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        let (id, fields): (String, Vec<String>) =
            redis::from_redis_value(item).map_err(|_| bad("shape"))?;
        let offset = id
            .strip_suffix("-0")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad("id"))?;
        let mut body = None;
        let mut sent = 0;
        for pair in fields.chunks(2) {
            match pair {
                [k, v] if k == "m" => body = Some(v.clone()),
                [k, v] if k == "t" => sent = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        entries.push(HistoryEntry {
            offset,
            body: body.ok_or_else(|| bad("no body"))?,
            sent,
        });
    }
    Ok(entries)
}

/// Splits a `wsmq:chh:` payload, `{offset} {epoch} {sent} {body}`, into the position and the
/// body; `None` when it is not one.
pub(super) fn parse_payload(payload: &str) -> Option<(Position, &str)> {
    let mut parts = payload.splitn(4, ' ');
    let offset = parts.next()?.parse().ok()?;
    let epoch = parts.next()?;
    let _sent: u64 = parts.next()?.parse().ok()?;
    let body = parts.next()?;
    Some((
        Position {
            offset,
            epoch: epoch.into(),
        },
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_split_at_the_first_three_spaces() {
        let (position, body) = parse_payload("42 ab12 1700000000000 hello there ").unwrap();
        assert_eq!(position.offset, 42);
        assert_eq!(&*position.epoch, "ab12");
        assert_eq!(body, "hello there ");
        assert_eq!(parse_payload("42 ab12 1 ").unwrap().1, "");
        assert!(parse_payload("x ab12 1 body").is_none());
        assert!(parse_payload("42 ab12").is_none());
    }
}
