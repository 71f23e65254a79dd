//! Everything `wsmq-cli` prints, human text and `--json` side by side, in one place.
//!
//! Results go to stdout, either as text for people or as one JSON document for programs.
//! Notes (summaries, "nothing found") go to stderr in both modes, so stdout stays parseable.
//! A closed stdout (`wsmq-cli queue list | head -1`) ends the output quietly instead of
//! panicking the way `println!` would.

use std::{
    borrow::Cow,
    io::{self, Write},
    time::{Duration, UNIX_EPOCH},
};

use anyhow::Context;
use serde_json::{Map, Value, json};
use wsmq_proto::NodeHeartbeat;
use wsmq_rsmq::{Message, QueueAttributes};

/// Prints command results as text or JSON.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    /// `--json`: one JSON document on stdout instead of text.
    json: bool,
}

/// A freshly issued pair of tokens, as `token issue` reports it.
#[derive(Debug)]
pub(crate) struct IssuedTokens<'a> {
    /// The user id, the JWT's `sub`.
    pub(crate) user: &'a str,
    /// The signed JWT.
    pub(crate) jwt: &'a str,
    /// The `tokens2` access token, hex.
    pub(crate) access_token: &'a str,
    /// The JWT's `exp`, Unix seconds.
    pub(crate) expires: u64,
}

impl Output {
    pub(crate) fn new(json: bool) -> Output {
        Output { json }
    }

    /// A note for the person at the terminal; stderr, so it never mixes with results.
    pub(crate) fn note(&self, text: impl AsRef<str>) {
        // Ignored on failure: a note is not worth a panic (`eprintln!`) or an exit code.
        let _ = writeln!(io::stderr(), "{}", text.as_ref());
    }

    /// `send --message`: the id of the message.
    pub(crate) fn sent_one(&self, queue: &str, id: &str) -> anyhow::Result<()> {
        self.emit(
            |w| writeln!(w, "{id}"),
            || json!({ "queue": queue, "id": id }),
        )
    }

    /// `send --file`, text output: the ids of one batch, one per line, as soon as it is sent
    /// (so they are out even when a later batch fails). Nothing for `--json`, which prints
    /// them all at the end ([`Output::sent_many`]).
    pub(crate) fn sent_batch(&self, ids: &[String]) -> anyhow::Result<()> {
        if self.json {
            return Ok(());
        }
        self.emit(
            |w| ids.iter().try_for_each(|id| writeln!(w, "{id}")),
            || json!(null),
        )
    }

    /// `send --file` at the end: for `--json` the array of ids in line order (also after a
    /// failure, of what was sent); then, when `complete`, a count on stderr.
    pub(crate) fn sent_many(
        &self,
        queue: &str,
        ids: &[String],
        complete: bool,
    ) -> anyhow::Result<()> {
        if self.json {
            self.emit(|_| Ok(()), || json!(ids))?;
        }
        if complete {
            self.note(format!(
                "sent {} to queue '{queue}'",
                plural(ids.len() as u64, "message")
            ));
        }
        Ok(())
    }

    /// `receive`: one line (or object) per message.
    pub(crate) fn messages(&self, queue: &str, messages: &[Message]) -> anyhow::Result<()> {
        if messages.is_empty() && !self.json {
            self.note(format!("no message available in queue '{queue}'"));
            return Ok(());
        }
        self.emit(
            |w| {
                for m in messages {
                    let sent = time_millis(m.sent);
                    let body = escape_controls(&m.message);
                    writeln!(w, "{}  rc={}  {sent}  {body}", m.id, m.rc)?;
                }
                Ok(())
            },
            || {
                let list = messages.iter().map(|m| {
                    json!({ "id": m.id, "message": m.message, "rc": m.rc, "fr": m.fr, "sent": m.sent })
                });
                Value::Array(list.collect())
            },
        )
    }

    /// `publish`: how many nodes had a subscriber for the channel.
    pub(crate) fn published(&self, channel: &str, receivers: u64) -> anyhow::Result<()> {
        self.emit(
            |w| {
                let nodes = plural(receivers, "node");
                writeln!(w, "published on channel '{channel}': received by {nodes}")
            },
            || json!({ "channel": channel, "receivers": receivers }),
        )
    }

    /// `channel history`: the epoch, the latest offset and the publications, oldest first.
    pub(crate) fn history(
        &self,
        channel: &str,
        epoch: &str,
        offset: u64,
        entries: &[(u64, u64, String)],
    ) -> anyhow::Result<()> {
        self.emit(
            |w| {
                writeln!(
                    w,
                    "channel '{channel}': epoch {epoch}, latest offset {offset}"
                )?;
                let rows: Vec<Vec<String>> = entries
                    .iter()
                    .map(|(offset, sent, message)| {
                        vec![
                            offset.to_string(),
                            time_millis(*sent),
                            escape_controls(message).into_owned(),
                        ]
                    })
                    .collect();
                table(w, &["OFFSET", "SENT", "MESSAGE"], &rows)
            },
            || {
                let messages: Vec<Value> = entries
                    .iter()
                    .map(|(offset, sent, message)| {
                        json!({"offset": offset, "sent": sent, "message": message})
                    })
                    .collect();
                json!({"channel": channel, "epoch": epoch, "offset": offset, "messages": messages})
            },
        )
    }

    /// `channel presence`: the users, by id, with their session counts.
    pub(crate) fn presence(&self, channel: &str, users: &[(String, u64)]) -> anyhow::Result<()> {
        self.emit(
            |w| {
                let sessions: u64 = users.iter().map(|(_, n)| n).sum();
                writeln!(
                    w,
                    "channel '{channel}': {} users, {sessions} sessions",
                    users.len()
                )?;
                let rows: Vec<Vec<String>> = users
                    .iter()
                    .map(|(user, n)| vec![escape_controls(user).into_owned(), n.to_string()])
                    .collect();
                table(w, &["USER", "SESSIONS"], &rows)
            },
            || {
                let list: Vec<Value> = users
                    .iter()
                    .map(|(user, n)| json!({"user": user, "sessions": n}))
                    .collect();
                json!({"channel": channel, "total": users.len(), "users": list})
            },
        )
    }

    /// `queue list`: the names, sorted.
    pub(crate) fn queues(&self, ns: &str, names: &[String]) -> anyhow::Result<()> {
        if names.is_empty() && !self.json {
            self.note(format!("no queues in namespace '{ns}'"));
            return Ok(());
        }
        self.emit(
            |w| names.iter().try_for_each(|name| writeln!(w, "{name}")),
            || json!(names),
        )
    }

    /// `queue stats` and `queue set`: the attributes and counters of a queue.
    pub(crate) fn queue_attributes(&self, queue: &str, a: &QueueAttributes) -> anyhow::Result<()> {
        self.emit(
            |w| {
                let maxsize = match a.maxsize {
                    -1 => "unlimited".to_owned(),
                    n => n.to_string(),
                };
                let rows = [
                    ("queue", queue.to_owned()),
                    ("messages", a.msgs.to_string()),
                    ("hidden", a.hiddenmsgs.to_string()),
                    ("total sent", a.totalsent.to_string()),
                    ("total received", a.totalrecv.to_string()),
                    ("vt", format!("{} s", a.vt)),
                    ("delay", format!("{} s", a.delay)),
                    ("maxsize", maxsize),
                    ("max receives", or_off(a.maxreceives, "no limit")),
                    (
                        "ttl",
                        if a.ttl == 0 {
                            "none".to_owned()
                        } else {
                            format!("{} s", a.ttl)
                        },
                    ),
                    (
                        "dead-letter",
                        a.deadletter.clone().unwrap_or_else(|| "none".to_owned()),
                    ),
                    ("total dead", a.totaldead.to_string()),
                    ("created", time_secs(a.created)),
                    ("modified", time_secs(a.modified)),
                ];
                rows.iter()
                    .try_for_each(|(k, v)| writeln!(w, "{:<16}{v}", format!("{k}:")))
            },
            || {
                json!({
                    "queue": queue,
                    "vt": a.vt,
                    "delay": a.delay,
                    "maxsize": a.maxsize,
                    "totalrecv": a.totalrecv,
                    "totalsent": a.totalsent,
                    "created": a.created,
                    "modified": a.modified,
                    "msgs": a.msgs,
                    "hiddenmsgs": a.hiddenmsgs,
                    "maxreceives": a.maxreceives,
                    "ttl": a.ttl,
                    "deadletter": a.deadletter,
                    "totaldead": a.totaldead,
                })
            },
        )
    }

    /// `queue stats` with `--amqp-url`: what RabbitMQ reports of the queue.
    pub(crate) fn amqp_queue_counts(
        &self,
        queue: &str,
        ready: u32,
        consumers: u32,
    ) -> anyhow::Result<()> {
        self.emit(
            |w| {
                writeln!(w, "{:<16}{queue}", "queue:")?;
                writeln!(w, "{:<16}{ready}", "ready:")?;
                writeln!(w, "{:<16}{consumers}", "consumers:")
            },
            || json!({ "queue": queue, "ready": ready, "consumers": consumers }),
        )
    }

    /// `queue redrive`: how many moved, and how many are left in the source.
    pub(crate) fn redriven(
        &self,
        from: &str,
        to: &str,
        moved: u64,
        left: u64,
    ) -> anyhow::Result<()> {
        self.emit(
            |w| {
                writeln!(
                    w,
                    "moved {moved} messages from '{from}' to '{to}' ({left} left in '{from}')"
                )
            },
            || json!({ "from": from, "to": to, "moved": moved, "left": left }),
        )
    }

    /// `queue create` / `queue delete`: `done` is the past participle, e.g. "created".
    pub(crate) fn queue_done(&self, queue: &str, done: &str) -> anyhow::Result<()> {
        self.emit(
            |w| writeln!(w, "{done} queue '{queue}'"),
            || {
                let mut obj = Map::new();
                obj.insert("queue".into(), queue.into());
                obj.insert(done.into(), true.into());
                Value::Object(obj)
            },
        )
    }

    /// `token issue`: both tokens, labelled.
    pub(crate) fn tokens(&self, t: &IssuedTokens<'_>) -> anyhow::Result<()> {
        self.emit(
            |w| {
                writeln!(w, "user:          {}", t.user)?;
                writeln!(w, "expires:       {} (the JWT)", time_secs(t.expires))?;
                writeln!(w, "jwt:           {}", t.jwt)?;
                writeln!(w, "access token:  {}", t.access_token)
            },
            || {
                json!({
                    "user": t.user,
                    "jwt": t.jwt,
                    "access_token": t.access_token,
                    "expires": t.expires,
                })
            },
        )
    }

    /// `token revoke`: how many access tokens went away, until when JWTs are revoked (the
    /// mark, Unix seconds) and how many nodes were told.
    pub(crate) fn revoked(
        &self,
        user: &str,
        removed: u64,
        mark: u64,
        notified: u64,
    ) -> anyhow::Result<()> {
        if removed == 0 {
            // Often a mistyped user id: the mark still revokes the user's JWTs, but say so.
            self.note(format!(
                "warning: user '{}' had no registered access tokens (its JWTs are revoked \
                 all the same); check the user id",
                user.escape_debug()
            ));
        }
        self.emit(
            |w| {
                let tokens = plural(removed, "access token");
                let nodes = plural(notified, "node");
                let until = time_secs(mark);
                writeln!(
                    w,
                    "revoked {tokens} of user '{user}' and every JWT of the user issued until \
                     {until}; {nodes} notified"
                )
            },
            || {
                json!({
                    "user": user,
                    "revoked": removed,
                    "jwts_issued_until": mark,
                    "nodes_notified": notified,
                })
            },
        )
    }

    /// `nodes`: a table of the live nodes; `now` (Unix seconds) gives their uptime.
    pub(crate) fn nodes(&self, nodes: &[NodeHeartbeat], now: u64) -> anyhow::Result<()> {
        let uptime = |n: &NodeHeartbeat| now.saturating_sub(n.started);
        if nodes.is_empty() && !self.json {
            return self.emit(|w| writeln!(w, "no live nodes"), || json!([]));
        }
        self.emit(
            |w| {
                let header = [
                    "ID",
                    "ADDR",
                    "CONNECTIONS",
                    "SUBSCRIPTIONS",
                    "UPTIME",
                    "DRAINING",
                    "VERSION",
                ];
                let rows: Vec<Vec<String>> = nodes
                    .iter()
                    .map(|n| {
                        vec![
                            n.id.clone(),
                            n.addr.clone(),
                            n.connections.to_string(),
                            n.subscriptions.to_string(),
                            humantime::format_duration(Duration::from_secs(uptime(n))).to_string(),
                            if n.draining { "yes" } else { "no" }.to_owned(),
                            n.version.clone(),
                        ]
                    })
                    .collect();
                table(w, &header, &rows)
            },
            || {
                let list = nodes.iter().map(|n| {
                    let mut value = serde_json::to_value(n).unwrap_or(Value::Null);
                    if let Value::Object(obj) = &mut value {
                        obj.insert("uptime".into(), uptime(n).into());
                    }
                    value
                });
                Value::Array(list.collect())
            },
        )
    }

    /// Writes either the human text or the JSON value to stdout.
    ///
    /// # Errors
    ///
    /// When stdout fails for a reason other than a closed pipe.
    fn emit(
        &self,
        human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
        json: impl FnOnce() -> Value,
    ) -> anyhow::Result<()> {
        // Buffered: `send --file` may print hundreds of thousands of ids.
        let mut w = io::BufWriter::new(io::stdout().lock());
        let written = if self.json {
            serde_json::to_writer_pretty(&mut w, &json())
                .map_err(io::Error::from)
                .and_then(|()| writeln!(w))
        } else {
            human(&mut w)
        };
        match written.and_then(|()| w.flush()) {
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other.context("cannot write to stdout"),
        }
    }
}

/// Left-aligned columns two spaces apart, sized to their widest cell.
fn table(w: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |w: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(&format!("{cell:<width$}"));
        }
        writeln!(w, "{}", text.trim_end())
    };
    line(w, &mut header.iter().copied())?;
    for row in rows {
        line(w, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

/// `1 message`, `2 messages`.
fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Unix seconds as RFC 3339 UTC.
fn time_secs(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds.
fn time_millis(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Escapes control characters so that a message body stays on its one line of output.
fn escape_controls(body: &str) -> Cow<'_, str> {
    if !body.chars().any(char::is_control) {
        return Cow::Borrowed(body);
    }
    let mut out = String::with_capacity(body.len() + 8);
    for c in body.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A setting where 0 means off: the number, or `off` in words.
fn or_off(value: u64, off: &str) -> String {
    if value == 0 {
        off.to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["node-a".to_owned(), "1".to_owned()],
            vec!["b".to_owned(), "12345".to_owned()],
        ];
        table(&mut out, &["ID", "N"], &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "ID      N\nnode-a  1\nb       12345\n");
    }

    #[test]
    fn bodies_stay_on_one_line() {
        assert_eq!(escape_controls("plain {\"a\":1}"), "plain {\"a\":1}");
        assert_eq!(escape_controls("a\nb\tc\u{7}"), "a\\nb\\tc\\u{7}");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(time_secs(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(time_millis(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
