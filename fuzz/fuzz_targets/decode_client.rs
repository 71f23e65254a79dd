//! Fuzzes v1 frame decoding: `decode_request` / `decode_client` (what every client text frame
//! goes through), `decode_publish_body` (the body of `POST /api/publish`) and `decode_server`.
//!
//! Besides "no panic, no stack overflow, no blow-up", it checks properties a session relies on:
//! both client decoders agree; whatever decodes re-encodes to text that decodes to the same
//! value; and an `error` reply to a refused frame stays short (it never echoes the input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsmq_proto::frame::MAX_REF_LEN;
use wsmq_proto::{
    Ref, ServerFrame, decode_client, decode_publish_body, decode_request, decode_server,
    encode_client, encode_server,
};

/// The longest `message` of an `error` frame, in characters (the decoder truncates serde's
/// text to 120 characters and adds a short prefix at most).
const MAX_ERROR_CHARS: usize = 200;

fuzz_target!(|data: &[u8]| {
    // A WebSocket text frame is valid UTF-8 by the time the session sees it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    match decode_request(text) {
        Ok(frame) => {
            assert_eq!(decode_client(text).as_ref(), Ok(&frame));
            let encoded = encode_client(&frame);
            assert_eq!(
                decode_client(&encoded).as_ref(),
                Ok(&frame),
                "re-encoded as {encoded}"
            );
        }
        Err(rejection) => {
            assert_eq!(decode_client(text).as_ref(), Err(&rejection.error));
            if let Some(Ref::String(s)) = &rejection.reference {
                assert!(s.len() <= MAX_REF_LEN);
            }
            let reply = ServerFrame::from(rejection);
            let ServerFrame::Error { message, .. } = &reply else {
                unreachable!("a rejection becomes an error frame");
            };
            assert!(
                message.chars().count() <= MAX_ERROR_CHARS,
                "error message of {} chars",
                message.chars().count()
            );
            let encoded = encode_server(&reply);
            assert_eq!(decode_server(&encoded).as_ref(), Ok(&reply));
        }
    }

    if let Ok(publish) = decode_publish_body(text) {
        let encoded = serde_json::to_string(&publish).expect("a publish serializes");
        assert_eq!(decode_publish_body(&encoded).as_ref(), Ok(&publish));
    }

    if let Ok(frame) = decode_server(text) {
        let encoded = encode_server(&frame);
        assert_eq!(
            decode_server(&encoded).as_ref(),
            Ok(&frame),
            "re-encoded as {encoded}"
        );
    }
});
