//! Encoding frames to text.
//!
//! [`encode_server`] and [`encode_client`] go through serde. The delivery hot path has its own
//! writers, [`encode_queue_message`] and [`encode_channel_message`], which append straight into
//! a caller-owned `String` (reserved once) from borrowed parts, so a message body is copied
//! exactly once on its way to the socket. Both paths produce identical bytes.

use super::{ClientFrame, ServerFrame};
use crate::json;
use crate::name::{ChannelName, MessageId, QueueName};

/// Encodes a server frame as compact JSON.
pub fn encode_server(frame: &ServerFrame) -> String {
    // Serializing plain structs of strings and integers into a String cannot fail.
    serde_json::to_string(frame).expect("server frames always serialize")
}

/// Encodes a client frame as compact JSON (for clients and tests).
pub fn encode_client(frame: &ClientFrame) -> String {
    serde_json::to_string(frame).expect("client frames always serialize")
}

/// Appends `{"op":"message","queue":…,"id":…,"message":…,"rc":…,"sent":…}` to `out`.
///
/// The output is byte-identical to [`encode_server`] on the equivalent
/// [`MessageFrame::Queue`](super::MessageFrame::Queue).
pub fn encode_queue_message(
    out: &mut String,
    queue: &QueueName,
    id: &MessageId,
    message: &str,
    rc: u64,
    sent: u64,
) {
    out.reserve(72 + queue.len() + id.len() + message.len() + 40);
    out.push_str(r#"{"op":"message","queue":"#);
    json::push_string(out, queue);
    out.push_str(r#","id":"#);
    json::push_string(out, id);
    out.push_str(r#","message":"#);
    json::push_string(out, message);
    out.push_str(r#","rc":"#);
    push_u64(out, rc);
    out.push_str(r#","sent":"#);
    push_u64(out, sent);
    out.push('}');
}

/// Appends `{"op":"message","channel":…,"message":…}` to `out`.
pub fn encode_channel_message(out: &mut String, channel: &ChannelName, message: &str) {
    out.reserve(40 + channel.len() + message.len());
    out.push_str(r#"{"op":"message","channel":"#);
    json::push_string(out, channel);
    out.push_str(r#","message":"#);
    json::push_string(out, message);
    out.push('}');
}

/// Appends `{"op":"message","channel":…,"message":…,"offset":…,"epoch":…}` to `out`: a
/// publication of a channel with history.
pub fn encode_channel_publication(
    out: &mut String,
    channel: &ChannelName,
    message: &str,
    offset: u64,
    epoch: &str,
) {
    out.reserve(72 + channel.len() + message.len() + epoch.len());
    out.push_str(r#"{"op":"message","channel":"#);
    json::push_string(out, channel);
    out.push_str(r#","message":"#);
    json::push_string(out, message);
    out.push_str(r#","offset":"#);
    push_u64(out, offset);
    out.push_str(r#","epoch":"#);
    json::push_string(out, epoch);
    out.push('}');
}

/// Appends the decimal digits of `n` without allocating.
fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_u64_digits() {
        for n in [0, 7, 10, 1_700_000_000_123, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }
}
