//! Scenario: `kill -9` of the node holding an SSE stream, some of whose messages were acked
//! through the other node.
//!
//! A user's queue (vt 2 s) gets ten messages; the user's `GET /sse` stream on node A receives
//! them all and acks four with `POST /api/ack` on node B (relayed to A, which holds them).
//! Node A is then killed with SIGKILL: no drain, so the six it held stay hidden until their vt
//! runs out. A v1 client on node B then receives exactly those six, each a redelivery, and
//! never one of the four acked ones. Bounded: about the vt plus a few seconds.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

use crate::{
    cluster::{API_KEY, Cluster, Gateway},
    report, user,
    ws::{Event, Ws, jwt},
};

/// Messages in the queue.
const MESSAGES: usize = 10;
/// Of which acked through node B before the kill.
const ACKED: usize = 4;
/// The queue's vt: how soon what node A held reappears.
const VT_SECS: u64 = 2;
/// How long any one expected event may take.
const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "two gateway processes + redis-server: run by cargo xtask e2e"]
async fn kill_9_of_a_stream_s_node_redelivers_exactly_what_was_not_acked_through_the_other() {
    let _machine = crate::shared_machine().await;
    let cluster = Cluster::start("sse-crash", &[]).await;
    let user = user("ssecrash");
    cluster
        .cli(&["queue", "create", &user, "--vt", &VT_SECS.to_string()])
        .await;
    let token = jwt(&user, None);
    let mut stream = Sse::open(&cluster.a, &user, &token).await;
    let auth = format!("apikey {API_KEY}");
    for n in 0..MESSAGES {
        let body = json!({"queue": user, "message": format!("m{n}")}).to_string();
        let (status, reply) = cluster
            .b
            .http("POST", "/api/publish", &[("authorization", &auth)], &body)
            .await
            .expect("POST /api/publish");
        assert_eq!(status, 200, "{reply}");
    }
    let mut held = Vec::new();
    while held.len() < MESSAGES {
        let frame = stream.message().await;
        assert_eq!(frame["rc"], 1, "{frame}");
        held.push(frame);
    }
    let bearer = format!("Bearer {token}");
    let mut acked = BTreeSet::new();
    for frame in &held[..ACKED] {
        let body = json!({"queue": user, "id": frame["id"]}).to_string();
        let (status, reply) = cluster
            .b
            .http("POST", "/api/ack", &[("authorization", &bearer)], &body)
            .await
            .expect("POST /api/ack on B");
        assert_eq!(status, 200, "ack through B: {reply}");
        acked.insert(frame["message"].as_str().unwrap().to_owned());
    }
    let unacked: BTreeSet<String> = held[ACKED..]
        .iter()
        .map(|f| f["message"].as_str().unwrap().to_owned())
        .collect();

    cluster.a.kill();
    let killed = Instant::now();
    assert!(
        stream.ends_within(WAIT).await,
        "the stream on A did not end within {WAIT:?} of the kill"
    );
    let (mut ws, _) = Ws::v1(&cluster.b, &format!("{user}@B"), &token).await;
    let reply = ws
        .request(&json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    assert_eq!(reply["op"], "ok", "{reply}");
    let mut back = BTreeSet::new();
    let deadline = killed + Duration::from_secs(VT_SECS) + WAIT;
    while back.len() < unacked.len() {
        assert!(
            Instant::now() < deadline,
            "only {back:?} of {unacked:?} came back within the vt and {WAIT:?} of the kill"
        );
        let frame = ws.json().await;
        if frame["op"] != "message" {
            continue;
        }
        let body = frame["message"].as_str().unwrap().to_owned();
        assert!(!acked.contains(&body), "{body} was acked, yet redelivered");
        assert_eq!(frame["rc"], 2, "{frame}");
        assert!(back.insert(body.clone()), "{body} delivered twice on B");
        ws.send_json(&json!({"op": "ack", "queue": user, "id": frame["id"]}))
            .await;
    }
    let recovered = killed.elapsed();
    assert_eq!(back, unacked);
    // Nothing else is left to come (only the replies to the acks): the acked ones were
    // deleted, not merely hidden.
    let quiet_until = tokio::time::Instant::now() + Duration::from_secs(VT_SECS + 1);
    while let Some(event) = ws
        .next(quiet_until.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        let Event::Text(text) = event else {
            panic!("the session on B ended: {event:?}");
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            frame["op"], "ok",
            "nothing but ack replies may come: {frame}"
        );
    }
    cluster
        .wait_stats(&user, WAIT, "an empty queue", |s| {
            s["msgs"] == 0 && s["hiddenmsgs"] == 0
        })
        .await;
    report(&format!(
        "sse crash: {MESSAGES} messages on a stream on A, {ACKED} acked through B, A killed \
         (SIGKILL); the {} unacked came back on B within {recovered:?} (vt {VT_SECS} s), none \
         of the acked",
        unacked.len()
    ));
}

/// A raw `GET /sse` stream (HTTP/1.0: the body runs until the connection closes).
struct Sse {
    reader: BufReader<TcpStream>,
}

impl Sse {
    /// Opens a stream of `queue` on `gateway` with `token` in the query, past its headers.
    async fn open(gateway: &Gateway, queue: &str, token: &str) -> Sse {
        let mut tcp = TcpStream::connect(gateway.addr).await.expect("connect");
        let request = format!(
            "GET /sse?queue={queue}&token={token} HTTP/1.0\r\nhost: {}\r\n\r\n",
            gateway.addr
        );
        tcp.write_all(request.as_bytes()).await.expect("send");
        let mut reader = BufReader::new(tcp);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(WAIT, reader.read_line(&mut line))
                .await
                .expect("response headers in time")
                .expect("read");
            assert!(read > 0, "the stream closed during its headers: {head}");
            if line.trim().is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert_eq!(head.split(' ').nth(1), Some("200"), "{head}");
        Sse { reader }
    }

    /// The next `message` event's frame, failing the test if none comes within [`WAIT`].
    async fn message(&mut self) -> Value {
        let mut data = String::new();
        let mut named = false;
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
                .await
                .expect("a message event in time")
                .expect("read");
            assert!(read > 0, "the stream ended");
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if !data.is_empty() && !named {
                    return serde_json::from_str(&data).expect("event data is JSON");
                }
                data.clear();
                named = false;
            } else if line.starts_with("event:") {
                named = true;
            } else if let Some(value) = line.strip_prefix("data: ") {
                data.push_str(value);
            }
        }
    }

    /// Whether the stream ends (EOF or a reset) within `wait`, whatever it still sends.
    async fn ends_within(&mut self, wait: Duration) -> bool {
        let mut line = String::new();
        tokio::time::timeout(wait, async {
            loop {
                line.clear();
                match self.reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }
}
