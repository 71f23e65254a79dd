//! The name rules of `wsmq-proto` (what a client may send) and `wsmq-rsmq` (what rsmq
//! accepts) must agree: a queue name or message id the gateway admits has to work in Redis,
//! and one that rsmq would take must not be refused at the socket.

use rand::{Rng, seq::IndexedRandom};
use wsmq_proto::{MessageId, QueueName};

/// Bytes the rules treat differently, plus some that neither allows.
const ALPHABET: &[char] = &[
    'a', 'Z', '0', '9', '_', '-', ':', '.', ' ', '/', '{', '}', '*', 'é', '\n', '\0',
];

fn agree_on_queue(name: &str) {
    assert_eq!(
        QueueName::new(name).is_ok(),
        wsmq_rsmq::validate_queue_name(name).is_ok(),
        "queue name {name:?}"
    );
}

fn agree_on_id(id: &str) {
    assert_eq!(
        MessageId::new(id).is_ok(),
        wsmq_rsmq::validate_message_id(id).is_ok(),
        "message id {id:?}"
    );
}

#[test]
fn queue_names_and_ids_follow_one_rule() {
    assert_eq!(
        wsmq_proto::name::MAX_NAME_LEN,
        wsmq_rsmq::MAX_QUEUE_NAME_LEN
    );
    assert_eq!(wsmq_proto::name::MESSAGE_ID_LEN, wsmq_rsmq::MESSAGE_ID_LEN);
    let edges = [
        String::new(),
        "q".to_owned(),
        "a".repeat(160),
        "a".repeat(161),
        "with:colon".to_owned(),
        "dash-and_underscore".to_owned(),
        "dot.ted".to_owned(),
        "ümlaut".to_owned(),
    ];
    for name in &edges {
        agree_on_queue(name);
    }
    let id = wsmq_rsmq::new_message_id(1_700_000_000_123_456);
    for candidate in [
        id.clone(),
        id[..31].to_owned(),
        format!("{id}x"),
        id.replacen(&id[..1], ":", 1),
        id.replacen(&id[..1], "_", 1),
        String::new(),
    ] {
        agree_on_id(&candidate);
    }
    // Random strings over the interesting alphabet, at the lengths that matter.
    let mut rng = rand::rng();
    for _ in 0..5_000 {
        let len = *[1usize, 2, 31, 32, 33, 159, 160, 161]
            .choose(&mut rng)
            .unwrap();
        let s: String = (0..len)
            .map(|_| {
                if rng.random_bool(0.8) {
                    *['a', 'Z', '0', '_', '-', ':'].choose(&mut rng).unwrap()
                } else {
                    *ALPHABET.choose(&mut rng).unwrap()
                }
            })
            .collect();
        agree_on_queue(&s);
        agree_on_id(&s);
    }
}
