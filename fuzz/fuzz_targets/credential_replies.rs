//! Fuzzes how the gateway reads the access-token registry's answers from Redis
//! (`wsmq_gateway::engine::redis::read_credential_replies`): the replies to `TIME`, each
//! user's revocation mark (`GET wsmq:revoked:U`) and each token's registration
//! (`SISMEMBER wsmq:access:U T`), as any Redis, proxy or damaged key could send them.
//!
//! Structure-aware: the input is read as a list of queries and a list of reply values of every
//! RESP2/RESP3 kind (nested arrays, maps, attributes, server errors), so the fuzzer spends its
//! time on the interpretation rather than on producing valid RESP. Besides "no panic", it
//! checks that every answer fails closed: a token counts as registered only on SISMEMBER's own
//! "yes", a mark that is present always revokes, a mark of wsmq's digits revokes as of that
//! time and any other (damaged, negative, a double, an error) as of now.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use redis::Value;
use wsmq_gateway::engine::CredentialQuery;
use wsmq_gateway::engine::redis::read_credential_replies;

/// Deep enough for any real reply (they are flat), shallow enough to keep inputs fast.
const MAX_DEPTH: u32 = 4;

#[derive(Debug, Arbitrary)]
struct Input {
    /// Per query: whether it names an access token.
    queries: Vec<bool>,
    /// Whether the first reply is a well-formed `TIME` (so the rest is reached often).
    time: Option<(u32, u32)>,
    replies: Vec<Reply>,
}

/// A reply value, one variant per kind of [`Value`].
#[derive(Debug, Arbitrary)]
enum Reply {
    Nil,
    Int(i64),
    Digits(u64),
    Bulk(Vec<u8>),
    Simple(String),
    Okay,
    Double(f64),
    Boolean(bool),
    BigNumber(Vec<u8>),
    Verbatim(String),
    Error(String),
    Array(Vec<Reply>),
    Set(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Attribute(Box<Reply>, Vec<(Reply, Reply)>),
}

impl Reply {
    fn value(&self, depth: u32) -> Value {
        let nested = |items: &[Reply]| -> Vec<Value> {
            if depth >= MAX_DEPTH {
                return Vec::new();
            }
            items.iter().map(|r| r.value(depth + 1)).collect()
        };
        let pairs = |items: &[(Reply, Reply)]| -> Vec<(Value, Value)> {
            if depth >= MAX_DEPTH {
                return Vec::new();
            }
            items
                .iter()
                .map(|(k, v)| (k.value(depth + 1), v.value(depth + 1)))
                .collect()
        };
        match self {
            Reply::Nil => Value::Nil,
            Reply::Int(n) => Value::Int(*n),
            Reply::Digits(n) => Value::BulkString(n.to_string().into_bytes()),
            Reply::Bulk(bytes) => Value::BulkString(bytes.clone()),
            Reply::Simple(s) => Value::SimpleString(s.clone()),
            Reply::Okay => Value::Okay,
            Reply::Double(f) => Value::Double(*f),
            Reply::Boolean(b) => Value::Boolean(*b),
            Reply::BigNumber(bytes) => Value::BigNumber(bytes.clone()),
            Reply::Verbatim(text) => Value::VerbatimString {
                format: redis::VerbatimFormat::Text,
                text: text.clone(),
            },
            // Through the client's own parser, the way a server error reaches the gateway.
            Reply::Error(text) => {
                let line: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
                redis::parse_redis_value(format!("-ERR {line}\r\n").as_bytes())
                    .unwrap_or(Value::Nil)
            }
            Reply::Array(items) => Value::Array(nested(items)),
            Reply::Set(items) => Value::Set(nested(items)),
            Reply::Map(items) => Value::Map(pairs(items)),
            Reply::Attribute(data, attributes) => Value::Attribute {
                data: Box::new(if depth >= MAX_DEPTH {
                    Value::Nil
                } else {
                    data.value(depth + 1)
                }),
                attributes: pairs(attributes),
            },
        }
    }
}

/// A count as Redis sends one: decimal digits (no sign, no space), or a RESP integer ≥ 0.
fn number(value: &Value) -> Option<u64> {
    let digits = |text: &[u8]| match std::str::from_utf8(text) {
        Ok(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => t.parse().ok(),
        _ => None,
    };
    match value {
        Value::BulkString(bytes) => digits(bytes),
        Value::SimpleString(text) => digits(text.as_bytes()),
        Value::Int(n) if *n >= 0 => Some(*n as u64),
        Value::Attribute { data, .. } => number(data),
        _ => None,
    }
}

/// The mark a reply holds, by the rule: wsmq's decimal digits, else "revoked now".
fn mark(value: &Value, now: u64) -> Option<u64> {
    match value {
        Value::Nil => None,
        Value::Attribute { data, .. } => mark(data, now),
        other => Some(number(other).unwrap_or(now)),
    }
}

/// `TIME`'s seconds, when the reply is a well-formed pair.
fn time(value: &Value) -> Option<u64> {
    match value {
        Value::Array(parts) if parts.len() == 2 => number(&parts[1]).and(number(&parts[0])),
        Value::Attribute { data, .. } => time(data),
        _ => None,
    }
}

/// SISMEMBER's "yes", the only answers that may register a token.
fn says_yes(value: &Value) -> bool {
    match value {
        Value::Int(1) | Value::Boolean(true) => true,
        Value::Attribute { data, .. } => says_yes(data),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let queries: Vec<CredentialQuery<'_>> = input
        .queries
        .iter()
        .take(64)
        .map(|&token| CredentialQuery {
            user: "u",
            access_token: token.then_some("00ff"),
        })
        .collect();
    let mut replies: Vec<Value> = Vec::new();
    if let Some((secs, micros)) = input.time {
        replies.push(Value::Array(vec![
            Value::BulkString(secs.to_string().into_bytes()),
            Value::BulkString(micros.to_string().into_bytes()),
        ]));
    }
    replies.extend(input.replies.iter().map(|r| r.value(0)));
    let sent = replies.clone();

    let Ok(answer) = read_credential_replies(replies, &queries) else {
        return;
    };
    // Whatever the first reply was, an answer means it was a TIME, and read as one.
    assert_eq!(
        Some(answer.now),
        sent.first().and_then(time),
        "TIME answered {:?}",
        sent.first()
    );
    if let Some((secs, _)) = input.time {
        assert_eq!(answer.now, u64::from(secs));
    }
    assert_eq!(answer.checks.len(), queries.len());

    // Walk the replies as the pipeline laid them out: TIME, then GET [+ SISMEMBER] per query.
    let mut next = sent.iter().skip(1);
    for (query, check) in queries.iter().zip(&answer.checks) {
        let reply = next.next().expect("an answer means every reply was there");
        assert_eq!(
            check.revoked_at,
            mark(reply, answer.now),
            "GET answered {reply:?}"
        );
        match query.access_token {
            None => assert_eq!(check.registered, None),
            Some(_) => {
                let member = next.next().expect("an answer means every reply was there");
                assert_eq!(
                    check.registered,
                    Some(says_yes(member)),
                    "SISMEMBER answered {member:?}"
                );
            }
        }
    }
});
