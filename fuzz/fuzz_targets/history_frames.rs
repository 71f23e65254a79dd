//! Fuzzes the v1 frames of channel history: `subscribe` with `since` and `presence`, `history`
//! with `limit` and `before` (client side), and the `message` / `ok` / `reset` frames that carry
//! offsets, epochs and history pages (server side).
//!
//! Structure-aware: the input is read as a frame's fields, each any JSON value (often the
//! right type, often not), so nearly every input reaches the field checks instead of failing
//! at the JSON syntax. Besides "no panic", it checks the decoder against the protocol's rules
//! written out independently here (docs/protocol.md): a frame decodes exactly when its fields
//! are valid, into exactly the values sent; and what decodes re-encodes to the same frame. On
//! the server side, the hand-written publication writer must produce serde's bytes.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use wsmq_proto::frame::{
    ClientOp, DEFAULT_HISTORY_LIMIT, HistoryItem, MAX_EPOCH_LEN, MAX_HISTORY_LIMIT, MessageFrame,
    StreamPosition,
};
use wsmq_proto::{
    ChannelName, ServerFrame, Target, decode_client, decode_request, decode_server,
    encode_channel_publication, encode_client, encode_server,
};

/// A JSON value, weighted toward the types the fields want.
#[derive(Debug, Arbitrary)]
enum Json {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
    Position { offset: Box<Json>, epoch: Box<Json> },
}

impl Json {
    fn value(&self, depth: u32) -> Value {
        if depth > 4 {
            return Value::Null;
        }
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Unsigned(n) => json!(n),
            Json::Signed(n) => json!(n),
            // JSON has no NaN or infinity: serde_json writes them as `null`.
            Json::Float(f) => json!(f),
            Json::Text(s) => Value::String(s.clone()),
            Json::Array(items) => items.iter().map(|j| j.value(depth + 1)).collect(),
            Json::Object(fields) => fields
                .iter()
                .map(|(k, v)| (k.clone(), v.value(depth + 1)))
                .collect::<Map<_, _>>()
                .into(),
            Json::Position { offset, epoch } => {
                json!({"offset": offset.value(depth + 1), "epoch": epoch.value(depth + 1)})
            }
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Op {
    Subscribe,
    History,
}

#[derive(Debug, Arbitrary)]
struct Frame {
    op: Op,
    channel: Option<Json>,
    queue: Option<Json>,
    since: Option<Json>,
    presence: Option<Json>,
    limit: Option<Json>,
    before: Option<Json>,
    reference: Option<u32>,
}

#[derive(Debug, Arbitrary)]
struct Server {
    channel: String,
    message: String,
    offset: u64,
    epoch: String,
    recovered: Option<bool>,
    page: Vec<(u64, String, u64)>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    frame: Frame,
    server: Server,
}

/// An offset by the protocol's rule: a JSON integer from 0 to 2^64-1.
fn offset(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) if n.is_u64() => n.as_u64(),
        _ => None,
    }
}

fn channel(value: &Option<Value>) -> Option<Option<ChannelName>> {
    match value {
        None => Some(None),
        Some(Value::String(s)) => ChannelName::new(s.clone()).ok().map(Some),
        Some(_) => None,
    }
}

/// What the protocol says the frame decodes to, or `None` when it must be refused.
fn expected(op: &Op, fields: &Map<String, Value>) -> Option<ClientOp> {
    let get = |name: &str| fields.get(name).cloned();
    let channel = channel(&get("channel"))?;
    let queue = get("queue");
    match op {
        Op::History => {
            let limit = match get("limit") {
                None => DEFAULT_HISTORY_LIMIT,
                Some(v) => offset(&v)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| (1..=MAX_HISTORY_LIMIT).contains(n))?,
            };
            let before = match get("before") {
                None => None,
                Some(v) => Some(offset(&v)?),
            };
            Some(ClientOp::History {
                channel: channel?,
                limit,
                before,
            })
        }
        Op::Subscribe => {
            // Frames with a queue are the plain decoder's business; here only channels count.
            if queue.is_some() {
                return None;
            }
            let presence = match get("presence") {
                None => false,
                Some(Value::Bool(b)) => b,
                Some(_) => return None,
            };
            let since = match get("since") {
                None => None,
                Some(Value::Object(position)) => {
                    let offset = offset(position.get("offset")?)?;
                    let epoch = match position.get("epoch")? {
                        Value::String(e) if !e.is_empty() && e.len() <= MAX_EPOCH_LEN => e.clone(),
                        _ => return None,
                    };
                    Some(StreamPosition { offset, epoch })
                }
                Some(_) => return None,
            };
            let channel = channel?;
            Some(if since.is_none() && !presence {
                ClientOp::Subscribe(Target::Channel(channel))
            } else {
                ClientOp::SubscribeChannel {
                    channel,
                    since,
                    presence,
                }
            })
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let Frame {
        op,
        channel,
        queue,
        since,
        presence,
        limit,
        before,
        reference,
    } = &input.frame;
    let mut fields = Map::new();
    fields.insert(
        "op".into(),
        match op {
            Op::Subscribe => "subscribe",
            Op::History => "history",
        }
        .into(),
    );
    for (name, value) in [
        ("channel", channel),
        ("queue", queue),
        ("since", since),
        ("presence", presence),
        ("limit", limit),
        ("before", before),
    ] {
        if let Some(value) = value {
            fields.insert(name.into(), value.value(0));
        }
    }
    if let Some(r) = reference {
        fields.insert("ref".into(), json!(r));
    }
    // `null` reads as absent in serde's `Option` fields.
    fields.retain(|_, v| !v.is_null());
    let text = Value::Object(fields.clone()).to_string();

    let decoded = decode_request(&text);
    assert_eq!(
        decoded.as_ref().map_err(|r| &r.error),
        decode_client(&text).as_ref()
    );
    if matches!(op, Op::History) || !fields.contains_key("queue") {
        let want = expected(op, &fields);
        assert_eq!(
            decoded.as_ref().ok().map(|f| &f.op),
            want.as_ref(),
            "{text} decoded as {decoded:?}"
        );
    }
    if matches!(op, Op::Subscribe)
        && fields.contains_key("queue")
        && (fields.contains_key("since") || fields.get("presence") == Some(&Value::Bool(true)))
    {
        assert!(
            decoded.is_err(),
            "{text}: `since` and `presence` are for channels"
        );
    }
    if let Ok(frame) = &decoded {
        let encoded = encode_client(frame);
        assert_eq!(decode_client(&encoded).as_ref(), Ok(frame), "{encoded}");
    }

    // Server side: a publication with history, the `ok` of a recovering subscribe, a page.
    let server = &input.server;
    let Ok(channel) = ChannelName::new(server.channel.clone()) else {
        return;
    };
    let publication = ServerFrame::Message(MessageFrame::Channel {
        channel: channel.clone(),
        message: server.message.clone(),
        offset: Some(server.offset),
        epoch: Some(server.epoch.clone()),
    });
    let mut written = String::new();
    encode_channel_publication(
        &mut written,
        &channel,
        &server.message,
        server.offset,
        &server.epoch,
    );
    assert_eq!(written, encode_server(&publication));
    assert_eq!(decode_server(&written).as_ref(), Ok(&publication));

    let mut ok = ServerFrame::ok(reference.map(|r| u64::from(r).into()));
    if let ServerFrame::Ok {
        offset,
        epoch,
        recovered,
        messages,
        ..
    } = &mut ok
    {
        *offset = Some(server.offset);
        *epoch = Some(server.epoch.clone());
        *recovered = server.recovered;
        *messages = Some(
            server
                .page
                .iter()
                .map(|(offset, message, sent)| HistoryItem {
                    offset: *offset,
                    message: message.clone(),
                    sent: *sent,
                })
                .collect(),
        );
    }
    let reset = ServerFrame::Reset {
        channel,
        offset: server.offset,
        epoch: server.epoch.clone(),
    };
    for frame in [ok, reset] {
        let encoded = encode_server(&frame);
        assert_eq!(decode_server(&encoded).as_ref(), Ok(&frame), "{encoded}");
    }
});
