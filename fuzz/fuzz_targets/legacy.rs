//! Fuzzes the legacy dialect: `LegacyCommand::parse` on any text a legacy client may send, and
//! the hand-written JSON writers (legacy `{"message":…}` and the v1 delivery fast path) on any
//! message body a publisher may send.
//!
//! Properties: a subscribe is exactly `/subscribe/` + a valid queue name; anything else that
//! starts with the prefix is an error and everything else is ignored; every writer produces
//! the same bytes as serde_json (`JSON.stringify`) for the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsmq_proto::legacy::{SUBSCRIBE_PREFIX, encode_message};
use wsmq_proto::{
    ChannelName, LegacyCommand, MessageFrame, MessageId, QueueName, ServerFrame,
    encode_channel_message, encode_queue_message, encode_server,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    match LegacyCommand::parse(text) {
        Ok(LegacyCommand::Subscribe(queue)) => {
            assert_eq!(format!("{SUBSCRIBE_PREFIX}{queue}"), text);
            assert!(QueueName::validate(queue.as_str()).is_ok());
        }
        Ok(LegacyCommand::Ignored) => assert!(!text.starts_with(SUBSCRIBE_PREFIX)),
        Err(_) => assert!(text.starts_with(SUBSCRIBE_PREFIX)),
    }

    // The same text as a message body.
    assert_eq!(
        encode_message(text),
        serde_json::json!({ "message": text }).to_string()
    );

    let channel = ChannelName::new("room-1").unwrap();
    let mut fast = String::new();
    encode_channel_message(&mut fast, &channel, text);
    let slow = encode_server(&ServerFrame::Message(MessageFrame::Channel {
        channel,
        message: text.to_owned(),
        offset: None,
        epoch: None,
    }));
    assert_eq!(fast, slow);

    let queue = QueueName::new("q").unwrap();
    let id = MessageId::new("lq2k3m4n5oAbCdEfGhIjKlMnOpQrStUv").unwrap();
    let (rc, sent) = (data.len() as u64, u64::MAX - data.len() as u64);
    let mut fast = String::new();
    encode_queue_message(&mut fast, &queue, &id, text, rc, sent);
    let slow = encode_server(&ServerFrame::Message(MessageFrame::Queue {
        queue,
        id,
        message: text.to_owned(),
        rc,
        sent,
    }));
    assert_eq!(fast, slow);
});
