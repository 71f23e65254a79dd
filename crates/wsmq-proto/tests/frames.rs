//! Golden JSON for every v1 op in both directions, and rejection of malformed client frames.

use wsmq_proto::frame::{MAX_DELAY_SECS, MAX_REF_LEN};
use wsmq_proto::{
    ChannelName, ClientFrame, ClientOp, ErrorCode, MessageFrame, MessageId, ProtoError, Publish,
    QueueName, Ref, ServerFrame, Target, UserId, decode_client, decode_publish_body,
    decode_request, decode_server, encode_channel_message, encode_client, encode_queue_message,
    encode_server,
};

const ID: &str = "lmbn7h5k8c0a1b2c3d4e5f6g7h8i9j0k";

fn queue(name: &str) -> QueueName {
    QueueName::new(name).unwrap()
}

fn channel(name: &str) -> ChannelName {
    ChannelName::new(name).unwrap()
}

fn id() -> MessageId {
    MessageId::new(ID).unwrap()
}

/// `text` decodes to `frame`, and `frame` encodes back to exactly `text`.
#[track_caller]
fn client_golden(text: &str, frame: ClientFrame) {
    assert_eq!(decode_client(text).unwrap(), frame, "decoding {text}");
    assert_eq!(encode_client(&frame), text, "encoding {frame:?}");
    // The serde path agrees with the decode function.
    assert_eq!(serde_json::from_str::<ClientFrame>(text).unwrap(), frame);
}

#[track_caller]
fn server_golden(text: &str, frame: ServerFrame) {
    assert_eq!(encode_server(&frame), text, "encoding {frame:?}");
    assert_eq!(decode_server(text).unwrap(), frame, "decoding {text}");
}

#[track_caller]
fn rejected(text: &str, expected: &str) {
    match decode_client(text) {
        Ok(frame) => panic!("{text} decoded to {frame:?}"),
        Err(err) => {
            assert_eq!(err.to_string(), expected, "for {text}");
            assert_eq!(err.code(), ErrorCode::Invalid);
        }
    }
}

#[test]
fn subscribe_and_unsubscribe_golden() {
    client_golden(
        r#"{"op":"subscribe","queue":"jobs"}"#,
        ClientFrame::new(ClientOp::Subscribe(Target::Queue(queue("jobs")))),
    );
    client_golden(
        r#"{"op":"subscribe","channel":"prices:eu.fx","ref":1}"#,
        ClientFrame::new(ClientOp::Subscribe(Target::Channel(channel(
            "prices:eu.fx",
        ))))
        .with_ref(1),
    );
    client_golden(
        r#"{"op":"unsubscribe","queue":"jobs","ref":"a-1"}"#,
        ClientFrame::new(ClientOp::Unsubscribe(Target::Queue(queue("jobs")))).with_ref("a-1"),
    );
    client_golden(
        r#"{"op":"unsubscribe","channel":"news"}"#,
        ClientFrame::new(ClientOp::Unsubscribe(Target::Channel(channel("news")))),
    );
}

#[test]
fn ack_and_nack_golden() {
    assert_eq!(ID.len(), 32);
    client_golden(
        &format!(r#"{{"op":"ack","queue":"jobs","id":"{ID}","ref":2}}"#),
        ClientFrame::new(ClientOp::Ack {
            queue: queue("jobs"),
            id: id(),
        })
        .with_ref(2),
    );
    client_golden(
        &format!(r#"{{"op":"nack","queue":"jobs","id":"{ID}","delay":5}}"#),
        ClientFrame::new(ClientOp::Nack {
            queue: queue("jobs"),
            id: id(),
            delay: Some(5),
            dead: false,
        }),
    );
    client_golden(
        &format!(r#"{{"op":"nack","queue":"jobs","id":"{ID}"}}"#),
        ClientFrame::new(ClientOp::Nack {
            queue: queue("jobs"),
            id: id(),
            delay: None,
            dead: false,
        }),
    );
    client_golden(
        &format!(r#"{{"op":"nack","queue":"jobs","id":"{ID}","dead":true}}"#),
        ClientFrame::new(ClientOp::Nack {
            queue: queue("jobs"),
            id: id(),
            delay: None,
            dead: true,
        }),
    );
}

#[test]
fn nack_dead_is_a_boolean_without_delay() {
    rejected(
        &format!(r#"{{"op":"nack","queue":"q","id":"{ID}","dead":"yes"}}"#),
        "`dead` must be true or false",
    );
    rejected(
        &format!(r#"{{"op":"nack","queue":"q","id":"{ID}","dead":true,"delay":5}}"#),
        "`delay` and `dead` exclude each other: a dead message is not given back",
    );
}

#[test]
fn publish_auth_ping_golden() {
    client_golden(
        r#"{"op":"publish","queue":"jobs","message":"hi \"there\"\n","delay":0,"ref":3}"#,
        ClientFrame::new(ClientOp::Publish(Publish {
            target: Target::Queue(queue("jobs")),
            message: "hi \"there\"\n".into(),
            delay: Some(0),
        }))
        .with_ref(3),
    );
    client_golden(
        r#"{"op":"publish","channel":"news","message":"é😀"}"#,
        ClientFrame::new(ClientOp::Publish(Publish {
            target: Target::Channel(channel("news")),
            message: "é😀".into(),
            delay: None,
        })),
    );
    client_golden(
        r#"{"op":"auth","token":"eyJ.x.y"}"#,
        ClientFrame::new(ClientOp::Auth {
            token: "eyJ.x.y".into(),
        }),
    );
    client_golden(r#"{"op":"ping"}"#, ClientFrame::new(ClientOp::Ping));
    client_golden(
        r#"{"op":"ping","ref":-1.5}"#,
        ClientFrame::new(ClientOp::Ping)
            .with_ref(Ref::Number(serde_json::Number::from_f64(-1.5).unwrap())),
    );
}

#[test]
fn op_names_are_wire_names() {
    let frame = decode_client(r#"{"op":"unsubscribe","queue":"q"}"#).unwrap();
    assert_eq!(frame.op.name(), "unsubscribe");
}

#[test]
fn server_frames_golden() {
    server_golden(
        r#"{"op":"welcome","user":"57c8","node":"n1","token":null}"#,
        ServerFrame::Welcome {
            user: UserId::new("57c8").unwrap(),
            node: "n1".into(),
            token: None,
        },
    );
    server_golden(
        r#"{"op":"welcome","user":"57c8","node":"n1","token":"eyJ"}"#,
        ServerFrame::Welcome {
            user: UserId::new("57c8").unwrap(),
            node: "n1".into(),
            token: Some("eyJ".into()),
        },
    );
    server_golden(r#"{"op":"ok"}"#, ServerFrame::ok(None));
    server_golden(
        &format!(r#"{{"op":"ok","ref":7,"id":"{ID}"}}"#),
        ServerFrame::Ok {
            reference: Some(7.into()),
            id: Some(id()),
            offset: None,
            epoch: None,
            recovered: None,
            messages: None,
        },
    );
    server_golden(
        r#"{"op":"error","ref":"x","code":"not_found","message":"no such message"}"#,
        ServerFrame::error(Some("x".into()), ErrorCode::NotFound, "no such message"),
    );
    server_golden(
        r#"{"op":"error","code":"rate_limited","message":"slow down"}"#,
        ServerFrame::error(None, ErrorCode::RateLimited, "slow down"),
    );
    server_golden(r#"{"op":"pong"}"#, ServerFrame::pong(None));
    server_golden(
        r#"{"op":"pong","ref":9}"#,
        ServerFrame::pong(Some(9.into())),
    );
}

#[test]
fn message_frames_golden_and_fast_path_agree() {
    let text = format!(
        r#"{{"op":"message","queue":"jobs","id":"{ID}","message":"a\"b\\c\u0001</script>","rc":1,"sent":1700000000123}}"#
    );
    let frame = ServerFrame::Message(MessageFrame::Queue {
        queue: queue("jobs"),
        id: id(),
        message: "a\"b\\c\u{1}</script>".into(),
        rc: 1,
        sent: 1_700_000_000_123,
    });
    server_golden(&text, frame);

    let mut fast = String::from("leading bytes stay: ");
    encode_queue_message(
        &mut fast,
        &queue("jobs"),
        &id(),
        "a\"b\\c\u{1}</script>",
        1,
        1_700_000_000_123,
    );
    assert_eq!(fast.strip_prefix("leading bytes stay: ").unwrap(), text);

    let text = r#"{"op":"message","channel":"news","message":"\u2028 stays raw: ` "}"#;
    let text = text.replace("\\u2028", "\u{2028}");
    let frame = ServerFrame::Message(MessageFrame::Channel {
        channel: channel("news"),
        message: "\u{2028} stays raw: ` ".into(),
        offset: None,
        epoch: None,
    });
    server_golden(&text, frame);
    let mut fast = String::new();
    encode_channel_message(&mut fast, &channel("news"), "\u{2028} stays raw: ` ");
    assert_eq!(fast, text);
}

#[test]
fn fast_path_matches_serde_for_every_ascii_and_some_unicode() {
    let mut body: String = (0u8..128).map(char::from).collect();
    body.push_str("\u{85}\u{2028}\u{2029}\u{feff}😀");
    let frame = ServerFrame::Message(MessageFrame::Queue {
        queue: queue("q"),
        id: id(),
        message: body.clone(),
        rc: u64::MAX,
        sent: 0,
    });
    let mut fast = String::new();
    encode_queue_message(&mut fast, &queue("q"), &id(), &body, u64::MAX, 0);
    assert_eq!(fast, encode_server(&frame));
}

#[test]
fn not_json_or_not_an_object_is_malformed() {
    for text in [
        "",
        "   ",
        "{",
        "not json",
        "{\"op\":\"ping\",}",
        "\"ping\"",
        "[1]",
        "42",
        "null",
        "{'op':'ping'}",
    ] {
        rejected(text, "malformed json");
    }
}

#[test]
fn unknown_op_is_its_own_error_and_is_cut_short() {
    assert_eq!(
        decode_client(r#"{"op":"welcome"}"#),
        Err(ProtoError::UnknownOp("welcome".into()))
    );
    let long = "x".repeat(10_000);
    let err = decode_client(&format!(r#"{{"op":"{long}"}}"#)).unwrap_err();
    assert_eq!(err, ProtoError::UnknownOp("x".repeat(32)));
    assert_eq!(err.code(), ErrorCode::Invalid);
    assert_eq!(
        decode_client(r#"{"op":"PING"}"#),
        Err(ProtoError::UnknownOp("PING".into()))
    );
}

#[test]
fn missing_fields() {
    rejected(r#"{"queue":"q"}"#, "missing field `op`");
    rejected(r#"{"op":null}"#, "missing field `op`");
    rejected(
        r#"{"op":"subscribe"}"#,
        "missing field `queue` or `channel`",
    );
    rejected(
        r#"{"op":"unsubscribe","queue":null}"#,
        "missing field `queue` or `channel`",
    );
    rejected(
        &format!(r#"{{"op":"ack","id":"{ID}"}}"#),
        "missing field `queue`",
    );
    rejected(r#"{"op":"ack","queue":"q"}"#, "missing field `id`");
    rejected(r#"{"op":"nack","queue":"q"}"#, "missing field `id`");
    rejected(r#"{"op":"publish","queue":"q"}"#, "missing field `message`");
    rejected(
        r#"{"op":"publish","message":"m"}"#,
        "missing field `queue` or `channel`",
    );
    rejected(r#"{"op":"auth"}"#, "missing field `token`");
    rejected(r#"{"op":"auth","token":""}"#, "`token` must not be empty");
}

#[test]
fn wrong_types() {
    rejected(r#"{"op":5}"#, "`op` must be a string");
    rejected(
        r#"{"op":"subscribe","queue":5}"#,
        "`queue` must be a string",
    );
    rejected(
        r#"{"op":"subscribe","channel":["c"]}"#,
        "`channel` must be a string",
    );
    rejected(
        r#"{"op":"ack","queue":"q","id":12}"#,
        "`id` must be a string",
    );
    rejected(
        r#"{"op":"publish","queue":"q","message":{"a":1}}"#,
        "`message` must be a string",
    );
    rejected(
        r#"{"op":"publish","queue":"q","message":7}"#,
        "`message` must be a string",
    );
    rejected(r#"{"op":"auth","token":true}"#, "`token` must be a string");
    rejected(
        r#"{"op":"ping","ref":{"a":1}}"#,
        "`ref` must be a number or a string",
    );
    rejected(
        r#"{"op":"ping","ref":true}"#,
        "`ref` must be a number or a string",
    );
    rejected(
        r#"{"op":"ping","ref":[1]}"#,
        "`ref` must be a number or a string",
    );
    let long_ref = "r".repeat(MAX_REF_LEN + 1);
    rejected(
        &format!(r#"{{"op":"ping","ref":"{long_ref}"}}"#),
        "`ref` must be at most 128 bytes",
    );
}

#[test]
fn delay_must_be_a_small_non_negative_integer() {
    let message = format!("`delay` must be an integer from 0 to {MAX_DELAY_SECS}");
    for delay in [
        "-1",
        "1.5",
        "\"5\"",
        "1e3",
        "10000000",
        "4294967296",
        "99999999999999999999999",
        "true",
        "[]",
    ] {
        rejected(
            &format!(r#"{{"op":"publish","queue":"q","message":"m","delay":{delay}}}"#),
            &message,
        );
        rejected(
            &format!(r#"{{"op":"nack","queue":"q","id":"{ID}","delay":{delay}}}"#),
            &message,
        );
    }
    // serde_json refuses numbers beyond f64 while parsing, before any field is looked at.
    rejected(
        r#"{"op":"publish","queue":"q","message":"m","delay":1e400}"#,
        "malformed json",
    );
    let ok = decode_client(&format!(
        r#"{{"op":"nack","queue":"q","id":"{ID}","delay":9999999}}"#
    ));
    assert!(ok.is_ok());
    rejected(
        r#"{"op":"publish","channel":"c","message":"m","delay":0}"#,
        "`delay` is not supported for channels",
    );
}

#[test]
fn both_queue_and_channel_is_refused() {
    let both = "give either `queue` or `channel`, not both";
    rejected(r#"{"op":"subscribe","queue":"q","channel":"c"}"#, both);
    rejected(r#"{"op":"unsubscribe","queue":"q","channel":"c"}"#, both);
    rejected(
        r#"{"op":"publish","queue":"q","channel":"c","message":"m"}"#,
        both,
    );
    // Standalone serde of Target follows the same rule and ignores other keys.
    let err = serde_json::from_str::<Target>(r#"{"queue":"q","channel":"c"}"#).unwrap_err();
    assert!(err.to_string().starts_with(both));
    let err = serde_json::from_str::<Target>(r#"{"message":"m"}"#).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("missing field `queue` or `channel`")
    );
    let target: Target = serde_json::from_str(r#"{"channel":"c","x":[1]}"#).unwrap();
    assert_eq!(target, Target::Channel(channel("c")));
}

#[test]
fn bad_names_and_ids() {
    let q = "invalid queue name: must be 1 to 160 characters of A-Z a-z 0-9 _ -";
    let c = "invalid channel name: must be 1 to 160 characters of A-Z a-z 0-9 _ - . :";
    let i = "invalid message id: must be exactly 32 characters of A-Z a-z 0-9 :";
    rejected(r#"{"op":"subscribe","queue":"a b"}"#, q);
    rejected(r#"{"op":"subscribe","queue":""}"#, q);
    rejected(
        &format!(r#"{{"op":"subscribe","queue":"{}"}}"#, "q".repeat(161)),
        q,
    );
    rejected(r#"{"op":"subscribe","queue":"a.b"}"#, q);
    rejected(r#"{"op":"subscribe","channel":"a/b"}"#, c);
    rejected(r#"{"op":"publish","channel":"","message":"m"}"#, c);
    rejected(r#"{"op":"ack","queue":"q","id":"short"}"#, i);
    rejected(
        &format!(r#"{{"op":"ack","queue":"q","id":"{}-"}}"#, &ID[..31]),
        i,
    );
    rejected(&format!(r#"{{"op":"ack","queue":"q","id":"{ID}x"}}"#), i);
    assert!(
        decode_client(&format!(
            r#"{{"op":"subscribe","queue":"{}"}}"#,
            "q".repeat(160)
        ))
        .is_ok()
    );
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let nest = |depth: usize| {
        format!(
            r#"{{"op":"ping","x":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    // The frame object is level 1, so 31 arrays inside it make 32 levels: allowed.
    assert!(decode_client(&nest(31)).is_ok());
    rejected(&nest(32), "json nested too deep");
    rejected(&nest(1_000_000), "json nested too deep");
    rejected(&"{\"a\":".repeat(100_000), "json nested too deep");
    assert_eq!(
        decode_server(&"[".repeat(100_000)),
        Err(ProtoError::invalid("json nested too deep"))
    );
}

#[test]
fn unknown_fields_are_ignored_and_null_is_absent() {
    let frame =
        decode_client(r#"{"v":2,"op":"ping","future":{"nested":[1,2]},"ref":null}"#).unwrap();
    assert_eq!(frame, ClientFrame::new(ClientOp::Ping));
    let frame =
        decode_client(r#"{"op":"subscribe","queue":"q","channel":null,"delay":null}"#).unwrap();
    assert_eq!(frame.op, ClientOp::Subscribe(Target::Queue(queue("q"))));
}

#[test]
fn duplicate_fields_are_refused() {
    rejected(
        r#"{"op":"subscribe","queue":"a","queue":"b"}"#,
        "duplicate field `queue`",
    );
}

#[test]
fn rejections_keep_the_ref_for_the_error_reply() {
    let rejection = decode_request(r#"{"op":"ack","queue":"q","id":"nope","ref":7}"#).unwrap_err();
    assert_eq!(rejection.reference, Some(Ref::from(7)));
    assert_eq!(
        encode_server(&ServerFrame::from(rejection)),
        r#"{"op":"error","ref":7,"code":"invalid","message":"invalid message id: must be exactly 32 characters of A-Z a-z 0-9 :"}"#
    );
    let rejection = decode_request(r#"{"op":"frobnicate","ref":"abc"}"#).unwrap_err();
    assert_eq!(rejection.reference, Some(Ref::from("abc")));
    assert_eq!(
        encode_server(&rejection.into()),
        r#"{"op":"error","ref":"abc","code":"invalid","message":"unknown op `frobnicate`"}"#
    );
    // No ref can be read from malformed JSON or from an invalid ref.
    assert_eq!(
        decode_request(r#"{"op":"ping","ref":7"#)
            .unwrap_err()
            .reference,
        None
    );
    assert_eq!(
        decode_request(r#"{"op":"ping","ref":{}}"#)
            .unwrap_err()
            .reference,
        None
    );
}

#[test]
fn error_messages_never_echo_the_input() {
    let marker = "SECRET-MARKER";
    let frames = [
        format!(r#"{{"op":"subscribe","queue":"{marker} "}}"#),
        format!(r#"{{"op":"ack","queue":"q","id":"{marker}"}}"#),
        format!(r#"{{"op":"publish","queue":"q","message":"m","delay":"{marker}"}}"#),
        format!(r#"{{"op":"auth","token":["{marker}"]}}"#),
        format!(r#"{{"op":"ping","ref":{{"{marker}":1}}}}"#),
        format!(r#"["{marker}"]"#),
        format!(r#"{{"op":"ping","x":"{marker}"#),
        format!(r#"{{"op":"ping","x":{marker}}}"#),
    ];
    for text in &frames {
        let err = decode_client(text).unwrap_err().to_string();
        assert!(!err.contains(marker), "{err:?} echoes input");
        assert!(err.len() < 120, "{err:?} is long");
    }
}

#[test]
fn publish_body_for_the_http_api() {
    let body = decode_publish_body(r#"{"queue":"jobs","message":"hi","delay":3}"#).unwrap();
    assert_eq!(
        body,
        Publish {
            target: Target::Queue(queue("jobs")),
            message: "hi".into(),
            delay: Some(3),
        }
    );
    let body = decode_publish_body(r#"{"channel":"news","message":"hi"}"#).unwrap();
    assert_eq!(body.target, Target::Channel(channel("news")));
    assert_eq!(
        decode_publish_body(r#"{"queue":"q"}"#),
        Err(ProtoError::invalid("missing field `message`"))
    );
    assert_eq!(
        decode_publish_body("[]"),
        Err(ProtoError::invalid("malformed json"))
    );
}

#[test]
fn server_frames_decode_strictly() {
    assert!(decode_server(r#"{"op":"nope"}"#).is_err());
    assert!(decode_server(r#"{"op":"ok","id":"short"}"#).is_err());
    assert_eq!(
        decode_server("nope"),
        Err(ProtoError::invalid("malformed json"))
    );
}
