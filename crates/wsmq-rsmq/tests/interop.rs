//! Interop with the real npm `rsmq` 0.12.4: both libraries on one Redis and one
//! namespace, each receiving, counting, hiding, deleting and describing what the other
//! wrote.
//!
//! Run by `cargo xtask e2e`, which installs npm rsmq into `interop/node_modules`, starts a
//! redis-server and sets `WSMQ_TEST_REDIS_URL`; a plain `cargo test` lists these tests as
//! ignored. Each test has a namespace of its own, so they run in parallel on one Redis.
//! Most run once per direction ([`BOTH_WAYS`]): one side writes, the other reads.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use support::peers::{BOTH_WAYS, Failure, Node, Peers, Rust, Side};
use support::unknown_id;
use wsmq_rsmq::{Message, QueueAttributes, QueueOptions, message_sent_ms, validate_message_id};

#[tokio::test]
#[ignore = "needs node + npm rsmq: run by cargo xtask e2e"]
async fn received_messages_are_hidden_revealed_popped_and_deleted_across_sides() {
    let mut p = Peers::start("cross").await;
    for (a, b) in BOTH_WAYS {
        let q = format!("from-{a}");
        let body = format!("hello from {a}");
        p.create_queue(a, &q, &QueueOptions::default())
            .await
            .unwrap();
        let id = p.send(a, &q, &body, None).await.unwrap();

        // b receives it: rc 1, fr stamped, hidden for the queue's vt of 30 s.
        let first = p
            .receive(b, &q, None)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{b} received nothing {a} sent"));
        let want = Message {
            id: id.clone(),
            message: body.clone(),
            rc: 1,
            fr: first.fr,
            sent: message_sent_ms(&id).unwrap(),
        };
        assert_eq!(first, want, "{b} receiving what {a} sent");
        p.assert_counters(&q, &id, 1, first.fr).await;
        assert_eq!(
            p.score(&q, &id).await,
            Some(first.fr + 30_000),
            "hidden 30 s"
        );
        for side in [a, b] {
            let seen = p.receive(side, &q, None).await.unwrap();
            assert_eq!(seen, None, "{side} sees a message {b} holds");
        }
        let attrs = p.assert_same_attributes(&q).await;
        assert_eq!(counts(&attrs), [1, 1, 1, 1]);

        // a makes it visible again and pops it: the second receive, same fr.
        assert!(p.change_visibility(a, &q, &id, 0).await.unwrap());
        let popped = p.pop(a, &q).await.unwrap();
        assert_eq!(
            popped,
            Some(Message { rc: 2, ..first }),
            "{a} popping what {b} received"
        );
        p.assert_gone(&q, &id).await;
        assert_eq!(p.pop(b, &q).await.unwrap(), None);

        // b deletes a message that a sent and received.
        let id = p.send(a, &q, "second", None).await.unwrap();
        let got = p.receive(a, &q, Some(60)).await.unwrap().unwrap();
        assert_eq!((got.id.as_str(), got.rc), (id.as_str(), 1));
        p.assert_counters(&q, &id, 1, got.fr).await;
        assert_eq!(p.score(&q, &id).await, Some(got.fr + 60_000), "hidden 60 s");
        assert!(p.delete(b, &q, &id).await.unwrap(), "{b} deleting {id}");
        p.assert_gone(&q, &id).await;
        for side in [a, b] {
            assert!(
                !p.delete(side, &q, &id).await.unwrap(),
                "{side}: deleted twice"
            );
            assert!(!p.change_visibility(side, &q, &id, 0).await.unwrap());
        }
        let attrs = p.assert_same_attributes(&q).await;
        assert_eq!(counts(&attrs), [2, 3, 0, 0]);

        // b pops a message nobody received: rc 1, fr now.
        let id = p.send(a, &q, "third", None).await.unwrap();
        let before = p.time_ms().await;
        let popped = p.pop(b, &q).await.unwrap().unwrap();
        let after = p.time_ms().await;
        assert_eq!((popped.id.as_str(), popped.rc), (id.as_str(), 1));
        assert!((before..=after).contains(&popped.fr), "{popped:?}");
        p.assert_gone(&q, &id).await;
        let attrs = p.assert_same_attributes(&q).await;
        assert_eq!(counts(&attrs), [3, 4, 0, 0]);
    }
}

#[tokio::test]
#[ignore = "needs node + npm rsmq: run by cargo xtask e2e"]
async fn message_ids_validate_on_both_sides_and_carry_the_send_time() {
    let mut p = Peers::start("ids").await;
    p.create_queue(Rust, "q", &QueueOptions::default())
        .await
        .unwrap();
    for (a, b) in BOTH_WAYS {
        let before = p.time_ms().await;
        let id = p.send(a, "q", &format!("from {a}"), None).await.unwrap();
        let after = p.time_ms().await;

        // 10 lowercase base-36 digits of TIME in µs, then 22 random alphanumerics.
        let time_part = id.get(..10).unwrap_or_default();
        assert!(
            id.len() == 32
                && time_part
                    .bytes()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
                && id[10..].bytes().all(|c| c.is_ascii_alphanumeric()),
            "{a} made id {id:?}"
        );
        validate_message_id(&id).unwrap_or_else(|err| panic!("{a} id {id}: {err}"));
        let sent = message_sent_ms(&id).unwrap();
        assert!(
            (before..=after).contains(&sent),
            "{a} id {id} says {sent}, sent between {before} and {after}"
        );
        assert_eq!(p.score("q", &id).await, Some(sent), "{a}: visible at send");

        // b accepts the id (both check ^[A-Za-z0-9:]{32}$ first) and reads the send
        // time back from it: Rust's sent equals it, Node's floors to it (checked when
        // its reply is decoded).
        assert!(p.change_visibility(b, "q", &id, 0).await.unwrap());
        let got = p.receive(b, "q", None).await.unwrap().unwrap();
        assert_eq!((got.id.as_str(), got.sent), (id.as_str(), sent));
        assert!(p.delete(b, "q", &id).await.unwrap());
    }
}

#[tokio::test]
#[ignore = "needs node + npm rsmq: run by cargo xtask e2e"]
async fn queues_created_by_one_side_are_listed_described_and_deleted_by_the_other() {
    let mut p = Peers::start("queues").await;
    for (a, b) in BOTH_WAYS {
        let custom = format!("custom-by-{a}");
        let plain = format!("plain_by_{a}");
        let opts = QueueOptions {
            vt: Some(45),
            delay: Some(3),
            maxsize: Some(2048),
            ..QueueOptions::default()
        };
        let before = p.time_ms().await / 1000;
        p.create_queue(a, &custom, &opts).await.unwrap();
        p.create_queue(a, &plain, &QueueOptions::default())
            .await
            .unwrap();
        let after = p.time_ms().await / 1000;

        let mut both = vec![custom.clone(), plain.clone()];
        both.sort();
        for side in [a, b] {
            assert_eq!(p.list_queues(side).await, both, "{side} listing");
        }
        for (q, settings) in [(&custom, (45, 3, 2048)), (&plain, (30, 0, 65536))] {
            let attrs = p.attributes(b, q).await.unwrap();
            assert_eq!((attrs.vt, attrs.delay, attrs.maxsize), settings, "{b}: {q}");
            assert_eq!(counts(&attrs), [0, 0, 0, 0]);
            assert!((before..=after).contains(&attrs.created), "{attrs:?}");
            assert_eq!(attrs.modified, attrs.created);
            p.assert_same_attributes(q).await;
        }

        // b deletes both, one of them holding a message: every key goes.
        p.send(a, &plain, "left behind", None).await.unwrap();
        p.delete_queue(b, &plain).await.unwrap();
        p.delete_queue(b, &custom).await.unwrap();
        for side in [a, b] {
            assert!(p.list_queues(side).await.is_empty(), "{side} still lists");
            for q in [&plain, &custom] {
                let attrs = p.attributes(side, q).await.map(drop);
                assert_eq!(kind(&attrs), "queueNotFound", "{side}: {attrs:?}");
                let again = p.delete_queue(side, q).await;
                assert_eq!(kind(&again), "queueNotFound", "{side}: {again:?}");
            }
        }
        for key in [
            plain.clone(),
            format!("{plain}:Q"),
            custom.clone(),
            format!("{custom}:Q"),
        ] {
            assert!(!p.exists(&key).await, "{key} survived deletion by {b}");
        }
        assert!(!p.exists("QUEUES").await);
    }
}

#[tokio::test]
#[ignore = "needs node + npm rsmq: run by cargo xtask e2e"]
async fn attributes_agree_field_by_field_after_a_mixed_sequence() {
    let mut p = Peers::start("mixed").await;
    let twenty = QueueOptions {
        vt: Some(20),
        ..QueueOptions::default()
    };
    p.create_queue(Node, "by-node", &twenty).await.unwrap();
    let small = QueueOptions {
        maxsize: Some(4096),
        ..QueueOptions::default()
    };
    p.create_queue(Rust, "by-rust", &small).await.unwrap();

    for q in ["by-node", "by-rust"] {
        for i in 0..3 {
            p.send(Rust, q, &format!("rust {i}"), None).await.unwrap();
        }
        for i in 0..2 {
            p.send(Node, q, &format!("node {i}"), None).await.unwrap();
        }
        p.send(Node, q, "node, later", Some(120)).await.unwrap();
        p.send(Rust, q, "rust, later", Some(120)).await.unwrap();

        p.receive(Rust, q, None).await.unwrap().expect("a message");
        let by_node = p
            .receive(Node, q, Some(90))
            .await
            .unwrap()
            .expect("a message");
        p.receive(Rust, q, None).await.unwrap().expect("a message");
        p.pop(Node, q).await.unwrap().expect("a message");
        assert!(p.delete(Rust, q, &by_node.id).await.unwrap());
        p.assert_same_attributes(q).await;

        // One setQueueAttributes from each side; each answers what the other reads,
        // and stamps modified with Redis TIME in seconds.
        let vt = QueueOptions {
            vt: Some(40),
            ..QueueOptions::default()
        };
        let before = p.time_ms().await / 1000;
        let set_by_node = p.set_attributes(Node, q, &vt).await.unwrap();
        let read_by_rust = p.attributes(Rust, q).await.unwrap();
        assert_same_but_hidden(&set_by_node, &read_by_rust);
        let delay_and_size = QueueOptions {
            delay: Some(1),
            maxsize: Some(8192),
            ..QueueOptions::default()
        };
        let set_by_rust = p.set_attributes(Rust, q, &delay_and_size).await.unwrap();
        let read_by_node = p.attributes(Node, q).await.unwrap();
        assert_same_but_hidden(&set_by_rust, &read_by_node);
        let after = p.time_ms().await / 1000;
        for modified in [set_by_node.modified, set_by_rust.modified] {
            assert!((before..=after).contains(&modified), "modified {modified}");
        }

        // The queue's delay is in seconds for both.
        for side in [Node, Rust] {
            let id = p
                .send(side, q, &format!("{side}, delayed by the queue"), None)
                .await;
            let id = id.unwrap();
            let due = message_sent_ms(&id).unwrap() + 1000;
            assert_eq!(p.score(q, &id).await, Some(due), "{side} send in {q}");
        }

        let attrs = p.assert_same_attributes(q).await;
        assert_eq!(
            (attrs.vt, attrs.delay, attrs.maxsize),
            (40, 1, 8192),
            "{q}: {attrs:?}"
        );
        assert_eq!(
            (attrs.totalsent, attrs.totalrecv, attrs.msgs),
            (9, 4, 7),
            "{q}: {attrs:?}"
        );
        // Two received (vt >= 20 s) and two delayed by 120 s are surely hidden; the
        // rest only while rsmq's whole-second count still includes them.
        assert!((4..=7).contains(&attrs.hiddenmsgs), "{q}: {attrs:?}");
        assert!(attrs.modified >= attrs.created, "{q}: {attrs:?}");
        assert_eq!(attrs.modified, set_by_rust.modified);

        // Stored the same way whoever wrote last: decimal strings.
        let raw: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(p.key(&format!("{q}:Q")))
            .query_async(&mut p.conn)
            .await
            .unwrap();
        let json = serde_json::to_value(&attrs).unwrap();
        for field in [
            "vt",
            "delay",
            "maxsize",
            "totalsent",
            "totalrecv",
            "created",
            "modified",
        ] {
            assert_eq!(
                raw.get(field).map(String::as_str),
                Some(json[field].to_string().as_str()),
                "raw {field} of {q}"
            );
        }
    }
}

#[tokio::test]
#[ignore = "needs node + npm rsmq: run by cargo xtask e2e"]
async fn delayed_messages_stay_hidden_from_the_other_side_until_due() {
    let mut p = Peers::start("delay").await;
    // Both directions run side by side so the test waits for the delays only once.
    let mut cases = Vec::new();
    for (a, b) in BOTH_WAYS {
        let q = format!("delayed-by-{a}");
        p.create_queue(a, &q, &QueueOptions::default())
            .await
            .unwrap();
        let soon = p.send(a, &q, "soon", Some(1)).await.unwrap();
        // Without a delay of its own, a send takes the queue's, also in seconds.
        let two = QueueOptions {
            delay: Some(2),
            ..QueueOptions::default()
        };
        p.set_attributes(a, &q, &two).await.unwrap();
        let later = p.send(a, &q, "later", None).await.unwrap();
        let soon_due = message_sent_ms(&soon).unwrap() + 1000;
        let later_due = message_sent_ms(&later).unwrap() + 2000;
        assert_eq!(p.score(&q, &soon).await, Some(soon_due), "{a}: delay 1");
        assert_eq!(
            p.score(&q, &later).await,
            Some(later_due),
            "{a}: queue delay 2"
        );
        cases.push((q, b, [(soon, soon_due), (later, later_due)]));
    }

    // Each message in turn: hidden from the reader while not due, received once due.
    let mut early = vec![None, None];
    for step in 0..2 {
        for ((q, b, messages), early) in cases.iter().zip(&mut early) {
            *early = probe_hidden(&mut p, *b, q, messages[step].1).await;
        }
        for ((q, b, messages), early) in cases.iter().zip(&mut early) {
            let (id, due) = &messages[step];
            let got = match early.take() {
                Some(got) => got,
                None => {
                    p.wait_until(*due).await;
                    let got = p.receive(*b, q, None).await.unwrap();
                    got.unwrap_or_else(|| panic!("{b} in {q}: {id} not visible when due"))
                }
            };
            assert_eq!(&got.id, id, "{b} in {q} when due");
        }
    }
}

#[tokio::test]
#[ignore = "needs node + npm rsmq: run by cargo xtask e2e"]
async fn unlimited_maxsize_carries_a_megabyte_body_both_ways() {
    let mut p = Peers::start("megabyte").await;
    // 1 MiB of numbered lines and a non-ASCII tail, so a cut or a shift shows.
    let mut body: String = (0..131_072).map(|i| format!("{i:07}\n")).collect();
    body.push_str("é😀");
    for (a, b) in BOTH_WAYS {
        let q = format!("big-{a}");
        p.create_queue(a, &q, &QueueOptions::default())
            .await
            .unwrap();
        for side in [a, b] {
            let refused = p.send(side, &q, &body, None).await.map(|_| ());
            assert_eq!(refused.unwrap_err().kind, "messageTooLong", "{side}");
        }

        let unlimited = QueueOptions {
            maxsize: Some(-1),
            ..QueueOptions::default()
        };
        let attrs = p.set_attributes(b, &q, &unlimited).await.unwrap();
        assert_eq!(attrs.maxsize, -1);
        let id = p.send(a, &q, &body, None).await.unwrap();
        let raw = p.field_bytes(&q, &id).await.unwrap_or_default();
        assert!(
            raw == body.as_bytes(),
            "{a} stored {} of {} bytes",
            raw.len(),
            body.len()
        );
        let got = p.receive(b, &q, None).await.unwrap().unwrap();
        assert_eq!(got.id, id);
        assert!(
            got.message == body,
            "{b} received {} bytes, {a} sent {}; first difference at byte {:?}",
            got.message.len(),
            body.len(),
            got.message
                .bytes()
                .zip(body.bytes())
                .position(|(x, y)| x != y)
        );
        assert!(p.delete(b, &q, &id).await.unwrap());
        p.assert_gone(&q, &id).await;
    }
}

#[tokio::test]
#[ignore = "needs node + npm rsmq: run by cargo xtask e2e"]
async fn unicode_bodies_arrive_byte_exact_both_ways() {
    let bodies = [
        "😀🎉👩‍👩‍👧 emoji, with a ZWJ sequence",
        "中文字符 日本語のテキスト 한국어",
        "e\u{301} a\u{308}\u{323} n\u{303} combining marks",
        "line\u{2028}separator\u{2029}paragraph",
        "\"double\" 'single' `back` quotes",
        "back\\slash \\n \\u0000 \\\\",
        "nul\0in\0the\0middle",
        "\0",
        "",
        "\r\n\t controls \u{1}\u{1b}\u{1f}\u{7f}\u{85}",
        "\u{feff}bom \u{fffd} \u{10ffff} \u{e000}",
        "  surrounded by spaces  ",
        "{\"json\": [1, \"two\"]}",
    ];
    let mut p = Peers::start("unicode").await;
    for (a, b) in BOTH_WAYS {
        let q = format!("text-from-{a}");
        p.create_queue(b, &q, &QueueOptions::default())
            .await
            .unwrap();
        let mut sent = HashMap::new();
        for body in bodies {
            let id = p.send(a, &q, body, None).await.unwrap();
            let raw = p.field_bytes(&q, &id).await;
            assert_eq!(raw.as_deref(), Some(body.as_bytes()), "{a} stored {body:?}");
            sent.insert(id, body);
        }
        while let Some(got) = p.receive(b, &q, None).await.unwrap() {
            let body = sent
                .remove(&got.id)
                .unwrap_or_else(|| panic!("{b} received an unknown or repeated {got:?}"));
            assert_eq!(got.message, body, "{b} receiving from {a}");
        }
        assert!(sent.is_empty(), "{b} never received {sent:?}");
    }
}

#[tokio::test]
#[ignore = "needs node + npm rsmq: run by cargo xtask e2e"]
async fn maxsize_counts_utf16_units_the_same_on_both_sides() {
    let mut p = Peers::start("utf16").await;
    let opts = QueueOptions {
        maxsize: Some(1024),
        ..QueueOptions::default()
    };
    p.create_queue(Node, "q", &opts).await.unwrap();
    // Exactly 1024 UTF-16 units each, however many bytes or chars.
    let fits = [
        "a".repeat(1024),
        "😀".repeat(512),
        "é".repeat(1024),
        "中".repeat(1024),
        "e\u{301}".repeat(512),
        format!("{}ab", "😀".repeat(511)),
    ];
    // One unit over.
    let over = [
        "a".repeat(1025),
        format!("{}a", "😀".repeat(512)),
        "é".repeat(1025),
        format!("{}x", "e\u{301}".repeat(512)),
        "😀".repeat(513),
    ];
    for side in [Rust, Node] {
        for body in &fits {
            let units = body.encode_utf16().count();
            let sent = p.send(side, "q", body, None).await;
            assert!(sent.is_ok(), "{side} refused {units} units: {sent:?}");
        }
        for body in &over {
            let units = body.encode_utf16().count();
            let refused = p.send(side, "q", body, None).await.map(|_| ());
            assert_eq!(
                refused.map_err(|f| f.kind),
                Err("messageTooLong".to_owned()),
                "{side} with {units} units"
            );
        }
    }
    let attrs = p.assert_same_attributes("q").await;
    assert_eq!((attrs.totalsent, attrs.msgs), (12, 12));
}

#[tokio::test]
#[ignore = "needs node + npm rsmq: run by cargo xtask e2e"]
async fn node_receives_a_rust_send_batch_in_order() {
    let mut p = Peers::start("send-batch").await;
    p.create_queue(Node, "q", &QueueOptions::default())
        .await
        .unwrap();
    let bodies: Vec<String> = (0..20).map(|i| format!("batch {i} ✓")).collect();
    let ids = p.rust.send_batch("q", &bodies, None).await.unwrap();
    assert_eq!(ids.len(), bodies.len());

    for (id, body) in ids.iter().zip(&bodies) {
        let got = p.receive(Node, "q", None).await.unwrap();
        let got = got.unwrap_or_else(|| panic!("node missed {id} ({body})"));
        assert_eq!(
            (got.id.as_str(), got.message.as_str(), got.rc),
            (id.as_str(), body.as_str(), 1)
        );
        p.assert_counters("q", id, 1, got.fr).await;
    }
    assert_eq!(p.receive(Node, "q", None).await.unwrap(), None);
    let attrs = p.assert_same_attributes("q").await;
    assert_eq!(counts(&attrs), [20, 20, 20, 20]);
}

#[tokio::test]
#[ignore = "needs node + npm rsmq: run by cargo xtask e2e"]
async fn rust_receive_batch_takes_what_node_sent_and_node_counts_it() {
    let mut p = Peers::start("receive-batch").await;
    p.create_queue(Node, "q", &QueueOptions::default())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(p.send(Node, "q", &format!("node {i}"), None).await.unwrap());
    }

    let got = p.rust.receive_batch("q", 10, Some(60)).await.unwrap();
    let got_ids: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(got_ids, ids, "rust receives node's messages in send order");
    for (i, msg) in got.iter().enumerate() {
        assert_eq!(msg.message, format!("node {i}"));
        assert_eq!(msg.rc, 1, "{msg:?}");
        assert_eq!(Some(msg.sent), message_sent_ms(&msg.id));
        p.assert_counters("q", &msg.id, 1, msg.fr).await;
        assert_eq!(p.score("q", &msg.id).await, Some(msg.fr + 60_000));
    }

    let attrs = p.attributes(Node, "q").await.unwrap();
    assert_eq!(
        counts(&attrs),
        [7, 7, 7, 7],
        "node's view after rust's batch"
    );
    p.assert_same_attributes("q").await;
    assert_eq!(p.receive(Node, "q", None).await.unwrap(), None);
    assert!(
        p.rust
            .receive_batch("q", 10, None)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
#[ignore = "needs node + npm rsmq: run by cargo xtask e2e"]
async fn rust_delete_batch_removes_messages_for_node() {
    let mut p = Peers::start("delete-batch").await;
    p.create_queue(Node, "q", &QueueOptions::default())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(p.send(Node, "q", &format!("node {i}"), None).await.unwrap());
    }
    // Two of them received, so their rc and fr fields exist too.
    for _ in 0..2 {
        p.receive(Node, "q", None)
            .await
            .unwrap()
            .expect("a message");
    }

    let mut doomed = ids.clone();
    doomed.push(unknown_id());
    assert_eq!(p.rust.delete_batch("q", &doomed).await.unwrap(), 5);

    for id in &ids {
        p.assert_gone("q", id).await;
        assert!(
            !p.delete(Node, "q", id).await.unwrap(),
            "node deleted {id} again"
        );
        assert!(!p.change_visibility(Node, "q", id, 0).await.unwrap());
    }
    assert_eq!(p.receive(Node, "q", None).await.unwrap(), None);
    let attrs = p.assert_same_attributes("q").await;
    assert_eq!(counts(&attrs), [5, 2, 0, 0]);
    let fields: u64 = redis::cmd("HLEN")
        .arg(p.key("q:Q"))
        .query_async(&mut p.conn)
        .await
        .unwrap();
    assert_eq!(fields, 7, "only the queue's own fields are left");
}

#[tokio::test]
#[ignore = "needs node + npm rsmq: run by cargo xtask e2e"]
async fn realtime_sends_publish_the_count_node_publishes() {
    let mut p = Peers::start("realtime").await;
    p.create_queue(Node, "q", &QueueOptions::default())
        .await
        .unwrap();
    let rust_rt = p.rust_realtime().await;
    let channel = p.key("rt:q");
    assert_eq!(rust_rt.realtime_channel("q"), channel);

    let client = redis::Client::open(p.url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&channel).await.unwrap();
    let mut notes = pubsub.on_message();

    /// A send and how many messages it adds; realtime ones publish.
    enum Step {
        Rust { realtime: bool },
        Node { realtime: bool, delay: u64 },
        RustBatch(usize),
    }
    let steps = [
        Step::Rust { realtime: true },
        Step::Node {
            realtime: true,
            delay: 0,
        },
        Step::Rust { realtime: false },
        Step::Node {
            realtime: false,
            delay: 0,
        },
        Step::Node {
            realtime: true,
            delay: 60,
        },
        Step::Rust { realtime: true },
        Step::RustBatch(3),
    ];
    let mut count = 0;
    for (i, step) in steps.iter().enumerate() {
        let body = format!("step {i}");
        let (who, publishes) = match *step {
            Step::Rust { realtime } => {
                let rsmq = if realtime { &rust_rt } else { &p.rust };
                rsmq.send_message("q", &body, None).await.unwrap();
                count += 1;
                ("rust", realtime)
            }
            Step::Node { realtime, delay } => {
                let args =
                    json!({ "qname": "q", "message": body, "delay": delay, "realtime": realtime });
                p.node.ok("sendMessage", args).await;
                count += 1;
                ("node", realtime)
            }
            Step::RustBatch(n) => {
                let bodies = vec![body; n];
                rust_rt.send_batch("q", &bodies, None).await.unwrap();
                count += n;
                // One notification with the final count: what the last of n rsmq
                // sends would publish.
                ("rust batch", true)
            }
        };
        // Sends without realtime publish nothing: were they to, the next payload
        // read here would be an older count.
        if publishes {
            let note = tokio::time::timeout(Duration::from_secs(5), notes.next())
                .await
                .unwrap_or_else(|_| panic!("no notification after step {i} ({who})"))
                .expect("pubsub open");
            assert_eq!(note.get_channel_name(), channel);
            let payload: String = note.get_payload().unwrap();
            assert_eq!(payload, count.to_string(), "step {i} ({who})");
        }
    }
    let attrs = p.assert_same_attributes("q").await;
    assert_eq!(attrs.msgs, count as u64);
}

/// One call that must fail, for the error table.
enum Op {
    Create(&'static str, QueueOptions),
    DeleteQueue(&'static str),
    Attributes(&'static str),
    SetAttributes(&'static str, QueueOptions),
    Send(&'static str, String, Option<u64>),
    Receive(&'static str, Option<u64>),
    Pop(&'static str),
    Delete(&'static str, String),
    ChangeVisibility(&'static str, String, u64),
}

impl Op {
    async fn run(&self, p: &mut Peers, side: Side) -> Result<(), Failure> {
        match self {
            Self::Create(q, opts) => p.create_queue(side, q, opts).await,
            Self::DeleteQueue(q) => p.delete_queue(side, q).await,
            Self::Attributes(q) => p.attributes(side, q).await.map(drop),
            Self::SetAttributes(q, opts) => p.set_attributes(side, q, opts).await.map(drop),
            Self::Send(q, body, delay) => p.send(side, q, body, *delay).await.map(drop),
            Self::Receive(q, vt) => p.receive(side, q, *vt).await.map(drop),
            Self::Pop(q) => p.pop(side, q).await.map(drop),
            Self::Delete(q, id) => p.delete(side, q, id).await.map(drop),
            Self::ChangeVisibility(q, id, vt) => {
                p.change_visibility(side, q, id, *vt).await.map(drop)
            }
        }
    }
}

#[tokio::test]
#[ignore = "needs node + npm rsmq: run by cargo xtask e2e"]
async fn errors_have_the_same_kind_on_both_sides() {
    use Op::*;
    let none = QueueOptions::default();
    let vt = |vt| QueueOptions {
        vt: Some(vt),
        ..none.clone()
    };
    let delay = |delay| QueueOptions {
        delay: Some(delay),
        ..none.clone()
    };
    let maxsize = |maxsize| QueueOptions {
        maxsize: Some(maxsize),
        ..none.clone()
    };
    let too_many_secs = 10_000_000;
    let id = unknown_id();
    let x = || "x".to_owned();
    // Grouped by the kind both sides must report.
    let cases = [
        (
            "queueNotFound",
            vec![
                ("receive", Receive("missing", None)),
                ("receive, bad vt", Receive("missing", Some(too_many_secs))),
                ("send", Send("missing", x(), None)),
                ("send, bad delay", Send("missing", x(), Some(too_many_secs))),
                ("attributes", Attributes("missing")),
                ("delete queue", DeleteQueue("missing")),
                ("pop", Pop("missing")),
                (
                    "change visibility",
                    ChangeVisibility("missing", id.clone(), 0),
                ),
                ("set attributes", SetAttributes("missing", vt(10))),
            ],
        ),
        (
            // Counted in UTF-16 units.
            "messageTooLong",
            vec![
                ("65537 ASCII chars", Send("q", "x".repeat(65_537), None)),
                ("65538 units of emoji", Send("q", "😀".repeat(32_769), None)),
            ],
        ),
        (
            "invalidFormat",
            vec![
                ("create, space in name", Create("bad name", none.clone())),
                ("create, colon in name", Create("bad:name", none.clone())),
                ("create, non-ASCII name", Create("café", none.clone())),
                ("create, 161-char name", Create(LONG_NAME, none.clone())),
                ("send, dot in name", Send("a.b", x(), None)),
                ("receive, slash in name", Receive("a/b", None)),
                ("set attributes, bad name", SetAttributes("bad name", vt(5))),
                ("delete, short id", Delete("q", "short".into())),
                ("delete, 33-char id", Delete("q", format!("{id}x"))),
                ("delete, dashes in id", Delete("q", "-".repeat(32))),
                (
                    "change visibility, bad id",
                    ChangeVisibility("q", "short".into(), 0),
                ),
            ],
        ),
        (
            "missingParameter",
            vec![
                ("create, empty name", Create("", none.clone())),
                ("attributes, empty name", Attributes("")),
                ("delete, empty id", Delete("q", String::new())),
            ],
        ),
        (
            "invalidValue",
            vec![
                ("create, vt", Create("new", vt(too_many_secs))),
                ("create, delay", Create("new", delay(too_many_secs))),
                ("create, maxsize 1023", Create("new", maxsize(1023))),
                ("create, maxsize 65537", Create("new", maxsize(65_537))),
                ("create, maxsize 0", Create("new", maxsize(0))),
                ("create, maxsize -2", Create("new", maxsize(-2))),
                ("receive, vt", Receive("q", Some(too_many_secs))),
                ("send, delay", Send("q", x(), Some(too_many_secs))),
                (
                    "change visibility, vt",
                    ChangeVisibility("q", id.clone(), too_many_secs),
                ),
                ("set attributes, vt", SetAttributes("q", vt(too_many_secs))),
                (
                    "set attributes, delay",
                    SetAttributes("q", delay(too_many_secs)),
                ),
                (
                    "set attributes, maxsize 100",
                    SetAttributes("q", maxsize(100)),
                ),
                // Validation comes before the existence check.
                ("create existing, vt", Create("q", vt(too_many_secs))),
            ],
        ),
        (
            "queueExists",
            vec![("create existing", Create("q", none.clone()))],
        ),
        (
            // Checked before anything else, even the name.
            "noAttributeSupplied",
            vec![
                ("set nothing", SetAttributes("q", none.clone())),
                (
                    "set nothing, missing queue",
                    SetAttributes("missing", none.clone()),
                ),
                (
                    "set nothing, bad name",
                    SetAttributes("bad name", none.clone()),
                ),
            ],
        ),
    ];

    assert_eq!(LONG_NAME.len(), 161);
    let mut p = Peers::start("errors").await;
    p.create_queue(Node, "q", &QueueOptions::default())
        .await
        .unwrap();
    let before = p.assert_same_attributes("q").await;
    let mut mismatches = Vec::new();
    for (want, ops) in &cases {
        for (what, op) in ops {
            let rust = op.run(&mut p, Rust).await;
            let node = op.run(&mut p, Node).await;
            if (kind(&rust), kind(&node)) != (*want, *want) {
                mismatches.push(format!(
                    "{what}: want {want}\n    rust {rust:?}\n    node {node:?}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "error kinds differ:\n  {}",
        mismatches.join("\n  ")
    );

    // Nothing failed half-way: no queue appeared, q is as it was.
    for side in [Rust, Node] {
        assert_eq!(p.list_queues(side).await, ["q"], "{side}");
    }
    assert_eq!(p.assert_same_attributes("q").await, before);
}

/// A queue name one character too long.
const LONG_NAME: &str = concat!(
    "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq",
    "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"
);

/// The counters that tests compare: totalsent, totalrecv, msgs, hiddenmsgs.
fn counts(attrs: &QueueAttributes) -> [u64; 4] {
    [
        attrs.totalsent,
        attrs.totalrecv,
        attrs.msgs,
        attrs.hiddenmsgs,
    ]
}

/// Asserts that two reads of a queue's attributes agree, except that `hiddenmsgs`
/// may have dropped between them as rsmq's whole-second count moved on.
fn assert_same_but_hidden(earlier: &QueueAttributes, later: &QueueAttributes) {
    let steady = QueueAttributes {
        hiddenmsgs: earlier.hiddenmsgs,
        ..later.clone()
    };
    assert_eq!(earlier, &steady, "first read, then second");
    assert!(
        later.hiddenmsgs <= earlier.hiddenmsgs,
        "{earlier:?} then {later:?}"
    );
}

/// The error kind of an outcome, or "ok".
fn kind(outcome: &Result<(), Failure>) -> &str {
    outcome.as_ref().err().map_or("ok", |f| f.kind.as_str())
}

/// Receives on `side` and asserts nothing came, when Redis `TIME` shows that the
/// receive ran before `due`. On a machine stalled past `due` the check cannot be made:
/// it says so, and returns what the receive took so the caller can go on with it.
async fn probe_hidden(p: &mut Peers, side: Side, q: &str, due: u64) -> Option<Message> {
    let got = p.receive(side, q, None).await.unwrap();
    let now = p.time_ms().await;
    if now < due {
        assert_eq!(got, None, "{side} received from {q} {} ms early", due - now);
        return None;
    }
    eprintln!("{side} in {q}: reached {now} ms, past {due}, before the check; skipped");
    got
}

/// npm rsmq sends to and receives from a queue that has wsmq's `maxreceives`, `ttl` and
/// `deadletter` (extra hash fields it ignores), its getQueueAttributes and setQueueAttributes
/// leave them be, and wsmq applies them to what npm sent and received: the message npm received
/// past the limit is dead at wsmq's next receive, and npm receives it from the dead-letter queue
/// that wsmq created.
#[tokio::test]
#[ignore = "needs node + npm rsmq: run by cargo xtask e2e"]
async fn npm_rsmq_sends_to_and_receives_from_a_queue_with_wsmq_rules() {
    let mut p = Peers::start("rules").await;
    let rules = QueueOptions {
        maxreceives: Some(2),
        ttl: Some(3600),
        deadletter: Some("jobs-dead".into()),
        ..QueueOptions::default()
    };
    p.create_queue(Rust, "jobs", &rules).await.unwrap();

    // npm applies no rule: it receives the message as often as it likes.
    let id = p.send(Node, "jobs", "from node", None).await.unwrap();
    for rc in 1..=3 {
        let got = p.receive(Node, "jobs", Some(0)).await.unwrap().unwrap();
        assert_eq!((got.id.as_str(), got.rc), (id.as_str(), rc));
    }
    let seen = p.attributes(Node, "jobs").await.unwrap();
    assert_eq!((seen.msgs, seen.totalrecv, seen.totalsent), (1, 3, 1));
    let changed = QueueOptions {
        vt: Some(45),
        ..QueueOptions::default()
    };
    p.set_attributes(Node, "jobs", &changed).await.unwrap();
    let attrs = p.attributes(Rust, "jobs").await.unwrap();
    assert_eq!(
        (
            attrs.vt,
            attrs.maxreceives,
            attrs.ttl,
            attrs.deadletter.as_deref()
        ),
        (45, 2, 3600, Some("jobs-dead")),
        "npm's setQueueAttributes leaves wsmq's fields be"
    );

    // wsmq does apply them: received 3 times, the message is dead.
    assert_eq!(p.receive(Rust, "jobs", None).await.unwrap(), None);
    let dead = p.receive(Node, "jobs-dead", None).await.unwrap().unwrap();
    assert_eq!(
        (dead.id.as_str(), dead.message.as_str(), dead.rc),
        (id.as_str(), "from node", 1)
    );
    assert!(p.list_queues(Node).await.contains(&"jobs-dead".to_owned()));

    // A fresh message from npm is delivered by wsmq and deleted by npm as usual.
    let next = p.send(Node, "jobs", "second", None).await.unwrap();
    let got = p.receive(Rust, "jobs", None).await.unwrap().unwrap();
    assert_eq!((got.id.as_str(), got.rc), (next.as_str(), 1));
    assert!(p.delete(Node, "jobs", &next).await.unwrap());
    let attrs = p.attributes(Rust, "jobs").await.unwrap();
    assert_eq!((attrs.msgs, attrs.totaldead), (0, 1));
}

/// docs/rsmq.md's cluster recipe: npm rsmq, given the namespace `{ns}:{q}` and a connection
/// to the master that owns that slot, creates, sends (realtime included), describes and
/// deletes a queue that wsmq's cluster mode consumes; its receive fails on a cluster, as
/// documented, since it passes non-key arguments as KEYS.
#[tokio::test]
#[ignore = "needs node + npm rsmq: run by cargo xtask e2e"]
async fn npm_rsmq_publishes_into_a_cluster_mode_queue_that_wsmq_consumes() {
    use wsmq_rsmq::{Rsmq, RsmqOptions, keys};
    use wsmq_testkit::RedisCluster;

    let cluster = RedisCluster::start().expect("cluster");
    let ns = format!("c{}", support::random_text(6));
    let rust = Rsmq::connect(
        &cluster.urls(),
        RsmqOptions {
            ns: ns.clone(),
            realtime: false,
            cluster: true,
        },
    )
    .await
    .expect("connect to the cluster");
    let owner = cluster.master_of("{jobs}").expect("owner of {jobs}");
    let mut node = support::node::NodeRsmq::start(
        &cluster.nodes()[owner].url(),
        &keys::cluster_ns(&ns, "jobs"),
    )
    .await;

    node.ok("createQueue", json!({ "qname": "jobs", "vt": 40 }))
        .await;
    assert_eq!(rust.list_queues().await.unwrap(), ["jobs"]);
    assert_eq!(rust.get_queue_attributes("jobs").await.unwrap().vt, 40);

    // A realtime send by node wakes a wsmq listener on another node of the cluster.
    let channel = rust.realtime_channel("jobs");
    let listener = cluster.nodes()[(owner + 1) % cluster.nodes().len()].url();
    let mut pubsub = redis::Client::open(listener)
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    pubsub.subscribe(&channel).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = node
            .ok(
                "sendMessage",
                json!({ "qname": "jobs", "message": format!("m{i}"), "realtime": i == 2 }),
            )
            .await;
        ids.push(id.as_str().expect("an id").to_owned());
    }
    let note = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next())
        .await
        .expect("notified within 5 s")
        .expect("a notification");
    assert_eq!(note.get_payload::<String>().unwrap(), "3");

    let got = rust.receive_batch("jobs", 10, Some(30)).await.unwrap();
    let got_ids: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(got_ids, ids, "wsmq receives what node sent, in order");
    let bodies: Vec<&str> = got.iter().map(|m| m.message.as_str()).collect();
    assert_eq!(bodies, ["m0", "m1", "m2"]);
    let attributes = node
        .ok("getQueueAttributes", json!({ "qname": "jobs" }))
        .await;
    assert_eq!(attributes["totalrecv"], 3);
    assert_eq!(attributes["hiddenmsgs"], 3);

    // npm rsmq's receive names its timestamp arguments as keys: refused on any cluster.
    rust.send_message("jobs", "for node", None).await.unwrap();
    let refused = node
        .call("receiveMessage", json!({ "qname": "jobs" }))
        .await;
    assert!(
        refused.is_err(),
        "npm rsmq's receive works on a cluster: {refused:?}"
    );

    assert_eq!(rust.delete_batch("jobs", &ids).await.unwrap(), 3);
    node.ok("deleteQueue", json!({ "qname": "jobs" })).await;
    assert!(rust.list_queues().await.unwrap().is_empty());
}
