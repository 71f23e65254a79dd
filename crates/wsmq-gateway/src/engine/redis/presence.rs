//! Presence in Redis: per channel a ZSET of memberships scored by their expiry and a HASH of
//! per-user counts (keys in `wsmq_proto::keys`), changed together by two scripts, so joins and
//! leaves are exact whichever node causes them.
//!
//! Work is bounded for channels of any size: writes go as one pipeline of script calls of at
//! most [`CHUNK`] memberships each, the sweep removes at most `max` expired memberships per
//! channel and call, and reads page through the ZSET [`PAGE`] entries at a time, skipping
//! what expired (swept or not). Announcements are one `PUBLISH` on `wsmq:pres:{c}` per call.

use std::{collections::HashMap, sync::LazyLock, time::Duration};

use redis::Script;
use wsmq_proto::keys;

use super::super::{Announcement, EngineError, Membership, PresenceChanges, PresenceList};
use super::RedisEngine;

const ADD_SOURCE: &str = include_str!("scripts/presence_add.lua");
const REMOVE_SOURCE: &str = include_str!("scripts/presence_remove.lua");
static ADD: LazyLock<Script> = LazyLock::new(|| Script::new(ADD_SOURCE));
static REMOVE: LazyLock<Script> = LazyLock::new(|| Script::new(REMOVE_SOURCE));

/// Most memberships one script call handles: keeps each call short, so Redis serves others
/// between the calls of a large batch.
const CHUNK: usize = 1000;
/// ZSET entries read per round trip when listing.
const PAGE: usize = 10_000;
/// The presence keys outlive the memberships by this much: a channel whose nodes all died is
/// gone from Redis soon after its last memberships expired.
const KEY_GRACE: Duration = Duration::from_secs(60);

/// One script call of a batch.
struct Call {
    channel: String,
    args: Vec<String>,
}

impl RedisEngine {
    /// [`Presence::add`](super::super::Presence::add).
    pub(super) async fn presence_add(
        &self,
        members: &[Membership<'_>],
        ttl: Duration,
    ) -> Result<PresenceChanges, EngineError> {
        let head = [
            ttl.as_millis().max(1).to_string(),
            (ttl + KEY_GRACE).as_secs().to_string(),
        ];
        let calls = chunked(members, &head);
        let joined = self.run_batch(&ADD, ADD_SOURCE, &calls).await?;
        Ok(PresenceChanges {
            joined,
            left: Vec::new(),
        })
    }

    /// [`Presence::remove`](super::super::Presence::remove).
    pub(super) async fn presence_remove(
        &self,
        members: &[Membership<'_>],
    ) -> Result<PresenceChanges, EngineError> {
        let calls = chunked(members, &["members".to_owned()]);
        let left = self.run_batch(&REMOVE, REMOVE_SOURCE, &calls).await?;
        Ok(PresenceChanges {
            joined: Vec::new(),
            left,
        })
    }

    /// [`Presence::sweep`](super::super::Presence::sweep).
    pub(super) async fn presence_sweep(
        &self,
        channels: &[&str],
        max: usize,
    ) -> Result<PresenceChanges, EngineError> {
        let calls: Vec<Call> = channels
            .iter()
            .map(|channel| Call {
                channel: (*channel).to_owned(),
                args: vec!["expired".to_owned(), max.max(1).to_string()],
            })
            .collect();
        let left = self.run_batch(&REMOVE, REMOVE_SOURCE, &calls).await?;
        Ok(PresenceChanges {
            joined: Vec::new(),
            left,
        })
    }

    /// [`Presence::members`](super::super::Presence::members): Redis `TIME`, then the live
    /// part of the ZSET page by page, counted per user. Pages taken while memberships come and
    /// go may see one of them twice or not at all; a list is a snapshot, not a transaction.
    pub(super) async fn presence_members(
        &self,
        channel: &str,
        limit: usize,
    ) -> Result<PresenceList, EngineError> {
        let (secs, micros): (u64, u64) = self.query(&redis::cmd("TIME")).await?;
        let now_ms = secs * 1000 + micros / 1000;
        let key = keys::presence(channel);
        let mut counts: HashMap<String, u64> = HashMap::new();
        let mut offset = 0usize;
        loop {
            let mut cmd = redis::cmd("ZRANGEBYSCORE");
            cmd.arg(&key)
                .arg(format!("({now_ms}"))
                .arg("+inf")
                .arg("LIMIT")
                .arg(offset)
                .arg(PAGE);
            let page: Vec<String> = self.query(&cmd).await?;
            for member in &page {
                if let Some((_, user)) = keys::split_presence_member(member) {
                    *counts.entry(user.to_owned()).or_default() += 1;
                }
            }
            if page.len() < PAGE {
                break;
            }
            offset += page.len();
        }
        let total = counts.len() as u64;
        let mut users: Vec<(String, u64)> = counts.into_iter().collect();
        users.sort_unstable();
        users.truncate(limit);
        Ok(PresenceList { users, total })
    }

    /// [`Presence::announce`](super::super::Presence::announce).
    pub(super) async fn presence_announce(
        &self,
        channel: &str,
        joined: &[String],
        left: &[String],
    ) -> Result<(), EngineError> {
        let payload = serde_json::to_string(&Announcement {
            joined: joined.to_vec(),
            left: left.to_vec(),
        })
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        let mut cmd = if self.rsmq.is_cluster() {
            let mut cmd = redis::cmd("SPUBLISH");
            cmd.arg(keys::Carrier::Presence.sharded(channel));
            cmd
        } else {
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(keys::presence_channel(channel));
            cmd
        };
        cmd.arg(payload);
        self.query::<u64>(&cmd).await.map(drop)
    }

    /// Runs every call of `script` in one pipeline of `EVALSHA`s; when Redis lacks the script
    /// (a restart, `SCRIPT FLUSH`), every call failed, so it is loaded and the batch run again.
    /// Returns (channel, user) for every user each call reported.
    async fn run_batch(
        &self,
        script: &Script,
        source: &str,
        calls: &[Call],
    ) -> Result<Vec<(String, String)>, EngineError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for call in calls {
            pipe.cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(2)
                .arg(keys::presence(&call.channel))
                .arg(keys::presence_users(&call.channel))
                .arg(&call.args);
        }
        // One pipeline on one Redis; on a cluster, the channels' keys are on several masters,
        // so one call each, in parallel.
        let mut replies = self.track(self.rsmq.query_each(&pipe).await)?;
        if replies.iter().any(is_noscript) {
            let mut load = redis::cmd("SCRIPT");
            load.arg("LOAD").arg(source);
            self.query::<String>(&load).await?;
            replies = self.track(self.rsmq.query_each(&pipe).await)?;
        }
        let replies = replies
            .into_iter()
            .map(|reply| match reply.extract_error() {
                Ok(value) => redis::from_redis_value::<Vec<String>>(value)
                    .map_err(|e| EngineError::Internal(format!("presence script reply: {e}"))),
                Err(err) => Err(EngineError::Internal(format!("presence script: {err}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(calls
            .iter()
            .zip(replies)
            .flat_map(|(call, users)| users.into_iter().map(|u| (call.channel.clone(), u)))
            .collect())
    }
}

/// Whether a reply is Redis's "no such script" (after a restart or `SCRIPT FLUSH`).
fn is_noscript(reply: &redis::Value) -> bool {
    matches!(reply, redis::Value::ServerError(err) if err.code() == "NOSCRIPT")
}

/// Groups memberships by channel into script calls of at most [`CHUNK`] members, each
/// starting with `head`.
fn chunked(members: &[Membership<'_>], head: &[String]) -> Vec<Call> {
    let mut by_channel: HashMap<&str, Vec<String>> = HashMap::new();
    for m in members {
        by_channel
            .entry(m.channel)
            .or_default()
            .push(format!("{} {}", m.session, m.user));
    }
    let mut calls = Vec::new();
    for (channel, members) in by_channel {
        for chunk in members.chunks(CHUNK) {
            let mut args = head.to_vec();
            args.extend_from_slice(chunk);
            calls.push(Call {
                channel: channel.to_owned(),
                args,
            });
        }
    }
    calls
}
