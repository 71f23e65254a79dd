//! Frames of channel presence: the `presence` op and its `ok` with `users`, `subscribe` with
//! `"presence":true`, and the `presence` frame of who joined and left; bad frames are refused
//! with a clear `invalid`, never a panic.

use wsmq_proto::{
    ChannelName, ClientFrame, ClientOp, ErrorCode, PresenceUser, ProtoError, ServerFrame,
    StreamPosition, Target, decode_client, decode_request, decode_server, encode_client,
    encode_server,
};

fn channel(name: &str) -> ChannelName {
    ChannelName::new(name).unwrap()
}

fn refused(text: &str, message: &str) {
    let err = decode_client(text).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Invalid, "{text}");
    assert_eq!(err, ProtoError::invalid(message), "{text}");
}

#[test]
fn presence_op_round_trips() {
    let text = r#"{"op":"presence","channel":"room-1","ref":3}"#;
    let frame = decode_client(text).unwrap();
    assert_eq!(
        frame,
        ClientFrame::new(ClientOp::Presence {
            channel: channel("room-1")
        })
        .with_ref(3)
    );
    assert_eq!(frame.op.name(), "presence");
    assert_eq!(encode_client(&frame), text);
}

#[test]
fn bad_presence_frames_are_invalid_with_their_ref() {
    refused(r#"{"op":"presence"}"#, "missing field `channel`");
    refused(
        r#"{"op":"presence","channel":7}"#,
        "`channel` must be a string",
    );
    let bad_name = decode_request(r#"{"op":"presence","channel":"a b","ref":"r"}"#).unwrap_err();
    assert_eq!(bad_name.reference, Some("r".into()));
    assert_eq!(bad_name.error.code(), ErrorCode::Invalid);
    // A queue has no presence: `channel` is what is missing.
    refused(
        r#"{"op":"presence","queue":"q"}"#,
        "missing field `channel`",
    );
}

#[test]
fn subscribe_with_presence_decodes_to_a_channel_subscribe() {
    let frame = decode_client(r#"{"op":"subscribe","channel":"c","presence":true}"#).unwrap();
    assert_eq!(
        frame.op,
        ClientOp::SubscribeChannel {
            channel: channel("c"),
            since: None,
            presence: true,
        }
    );
    assert_eq!(
        encode_client(&frame),
        r#"{"op":"subscribe","channel":"c","presence":true}"#
    );
    let both = decode_client(
        r#"{"op":"subscribe","channel":"c","presence":true,"since":{"offset":1,"epoch":"e"}}"#,
    )
    .unwrap();
    assert_eq!(
        both.op,
        ClientOp::SubscribeChannel {
            channel: channel("c"),
            since: Some(StreamPosition {
                offset: 1,
                epoch: "e".into()
            }),
            presence: true,
        }
    );
    // `false` and `null` are the plain subscribe.
    for text in [
        r#"{"op":"subscribe","channel":"c","presence":false}"#,
        r#"{"op":"subscribe","channel":"c","presence":null}"#,
    ] {
        assert_eq!(
            decode_client(text).unwrap().op,
            ClientOp::Subscribe(Target::Channel(channel("c"))),
            "{text}"
        );
    }
    let queue = decode_client(r#"{"op":"subscribe","queue":"q","presence":false}"#).unwrap();
    assert!(matches!(queue.op, ClientOp::Subscribe(Target::Queue(_))));
}

#[test]
fn bad_presence_flags_are_invalid() {
    for value in ["1", "\"true\"", "[]", "{}", "0"] {
        refused(
            &format!(r#"{{"op":"subscribe","channel":"c","presence":{value}}}"#),
            "`presence` must be true or false",
        );
    }
    refused(
        r#"{"op":"subscribe","queue":"q","presence":true}"#,
        "`presence` is only for channels: a queue has consumers, not members",
    );
}

#[test]
fn presence_replies_and_frames_round_trip() {
    let mut ok = ServerFrame::ok(Some(1.into()));
    if let ServerFrame::Ok { users, total, .. } = &mut ok {
        *users = Some(vec![
            PresenceUser {
                user: "alice".into(),
                sessions: 2,
            },
            PresenceUser {
                user: "bob".into(),
                sessions: 1,
            },
        ]);
        *total = Some(2);
    }
    let text = encode_server(&ok);
    assert_eq!(
        text,
        r#"{"op":"ok","ref":1,"users":[{"user":"alice","sessions":2},{"user":"bob","sessions":1}],"total":2}"#
    );
    assert_eq!(decode_server(&text).unwrap(), ok);

    let frame = ServerFrame::Presence {
        channel: channel("room"),
        joined: vec!["alice".into()],
        left: vec![],
    };
    let text = encode_server(&frame);
    assert_eq!(
        text,
        r#"{"op":"presence","channel":"room","joined":["alice"],"left":[]}"#
    );
    assert_eq!(decode_server(&text).unwrap(), frame);
}
