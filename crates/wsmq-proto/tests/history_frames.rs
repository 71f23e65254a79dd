//! Frames of channel history: `subscribe` with `since`, `history`, message frames with
//! `offset` and `epoch`, and `reset`; bad positions are refused with a clear `invalid`.

use wsmq_proto::{
    ChannelName, ClientFrame, ClientOp, ErrorCode, MessageFrame, ProtoError, ServerFrame,
    StreamPosition, decode_client, decode_server, encode_channel_publication, encode_client,
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
fn subscribe_with_since_decodes_to_a_position() {
    let frame =
        decode_client(r#"{"op":"subscribe","channel":"c","since":{"offset":41,"epoch":"e1"}}"#)
            .unwrap();
    assert_eq!(
        frame.op,
        ClientOp::SubscribeSince {
            channel: channel("c"),
            since: StreamPosition {
                offset: 41,
                epoch: "e1".into()
            },
        }
    );
    let max = decode_client(&format!(
        r#"{{"op":"subscribe","channel":"c","since":{{"offset":{},"epoch":"e"}}}}"#,
        u64::MAX
    ))
    .unwrap();
    assert!(matches!(max.op, ClientOp::SubscribeSince { since, .. } if since.offset == u64::MAX));
    // `null` is absent, as for every field.
    let plain = decode_client(r#"{"op":"subscribe","channel":"c","since":null}"#).unwrap();
    assert_eq!(
        plain.op,
        ClientOp::Subscribe(wsmq_proto::Target::Channel(channel("c")))
    );
}

#[test]
fn bad_since_values_are_invalid() {
    let range = "`since.offset` must be an integer from 0 to 18446744073709551615";
    for offset in [
        "-1",
        "1.5",
        "\"41\"",
        "18446744073709551616",
        "1e30",
        "true",
        "[]",
    ] {
        refused(
            &format!(
                r#"{{"op":"subscribe","channel":"c","since":{{"offset":{offset},"epoch":"e"}}}}"#
            ),
            range,
        );
    }
    refused(
        r#"{"op":"subscribe","channel":"c","since":{"epoch":"e"}}"#,
        "missing field `since.offset`",
    );
    refused(
        r#"{"op":"subscribe","channel":"c","since":{"offset":1}}"#,
        "missing field `since.epoch`",
    );
    refused(
        r#"{"op":"subscribe","channel":"c","since":{"offset":1,"epoch":7}}"#,
        "`since.epoch` must be a string",
    );
    refused(
        r#"{"op":"subscribe","channel":"c","since":{"offset":1,"epoch":""}}"#,
        "`since.epoch` must be 1 to 64 bytes",
    );
    refused(
        &format!(
            r#"{{"op":"subscribe","channel":"c","since":{{"offset":1,"epoch":"{}"}}}}"#,
            "e".repeat(65)
        ),
        "`since.epoch` must be 1 to 64 bytes",
    );
    for since in ["41", "\"41:e\"", "[41,\"e\"]"] {
        refused(
            &format!(r#"{{"op":"subscribe","channel":"c","since":{since}}}"#),
            r#"`since` must be an object {"offset": integer, "epoch": string}"#,
        );
    }
    refused(
        r#"{"op":"subscribe","queue":"q","since":{"offset":1,"epoch":"e"}}"#,
        "`since` is only for channels: queues keep what is not acked",
    );
}

#[test]
fn history_requests_have_a_bounded_limit() {
    let frame = decode_client(r#"{"op":"history","channel":"c","limit":50,"before":42}"#).unwrap();
    assert_eq!(
        frame.op,
        ClientOp::History {
            channel: channel("c"),
            limit: 50,
            before: Some(42)
        }
    );
    let frame = decode_client(r#"{"op":"history","channel":"c"}"#).unwrap();
    assert_eq!(
        frame.op,
        ClientOp::History {
            channel: channel("c"),
            limit: 50,
            before: None
        }
    );
    let limit = "`limit` must be an integer from 1 to 1000";
    for bad in ["0", "1001", "-1", "2.5", "\"10\""] {
        refused(
            &format!(r#"{{"op":"history","channel":"c","limit":{bad}}}"#),
            limit,
        );
    }
    refused(
        r#"{"op":"history","channel":"c","before":-3}"#,
        "`before` must be an integer from 0 to 18446744073709551615",
    );
    refused(r#"{"op":"history","queue":"q"}"#, "missing field `channel`");
}

#[test]
fn publications_carry_offset_and_epoch() {
    let mut fast = String::new();
    encode_channel_publication(&mut fast, &channel("news"), "hi \"you\"", 42, "ab12");
    let text =
        r#"{"op":"message","channel":"news","message":"hi \"you\"","offset":42,"epoch":"ab12"}"#;
    assert_eq!(fast, text);
    let frame = ServerFrame::Message(MessageFrame::Channel {
        channel: channel("news"),
        message: "hi \"you\"".into(),
        offset: Some(42),
        epoch: Some("ab12".into()),
    });
    assert_eq!(encode_server(&frame), text);
    assert_eq!(decode_server(text).unwrap(), frame);

    let reset = ServerFrame::Reset {
        channel: channel("news"),
        offset: 7,
        epoch: "x".into(),
    };
    let text = r#"{"op":"reset","channel":"news","offset":7,"epoch":"x"}"#;
    assert_eq!(encode_server(&reset), text);
    assert_eq!(decode_server(text).unwrap(), reset);
}

#[test]
fn history_ops_re_encode_to_what_decodes_the_same() {
    for text in [
        r#"{"op":"subscribe","channel":"c","since":{"offset":41,"epoch":"e1"},"ref":3}"#,
        r#"{"op":"history","channel":"c","limit":7,"before":42}"#,
        r#"{"op":"history","channel":"c"}"#,
    ] {
        let frame: ClientFrame = decode_client(text).unwrap();
        let again = decode_client(&encode_client(&frame)).unwrap();
        assert_eq!(again, frame, "{text}");
    }
    assert_eq!(
        encode_client(&decode_client(r#"{"op":"history","channel":"c","before":2}"#).unwrap()),
        r#"{"op":"history","channel":"c","limit":50,"before":2}"#
    );
    assert_eq!(
        encode_client(
            &decode_client(r#"{"op":"subscribe","channel":"c","since":{"epoch":"e","offset":1}}"#)
                .unwrap()
        ),
        r#"{"op":"subscribe","channel":"c","since":{"offset":1,"epoch":"e"}}"#
    );
}
