//! Hostile input: a table of malformed and malicious handshakes and frames, each with the exact
//! answer expected (HTTP status and reason, v1 error code, or WebSocket close code), and after
//! every row a proof that the node still serves others: `/healthz` answers 200 and a healthy
//! v1 client on the same gateway still gets a message and acks it.
//!
//! What tungstenite's client refuses to send (invalid UTF-8, unmasked or reserved frames, a
//! header announcing 10 MB, broken HTTP) is written over raw TCP.

mod support;

use std::{sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::{Client, TestGateway, access_token, now, token, token_with, unique};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use wsmq_gateway::engine::QueueStore;
use wsmq_proto::{Claims, token::issue_hs256};

/// `--max-frame` of the gateway under test: above the 64 KiB queue maxsize, so that an
/// oversize *message* (too_large) can be told apart from an oversize *frame* (1009).
const MAX_FRAME: usize = 256 * 1024;

/// `--handshake-timeout` of the gateway under test.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long "nothing happened" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// A well-formed message id that no session holds.
const UNKNOWN_ID: &str = "lq2k3m4n5oAbCdEfGhIjKlMnOpQrStUv";

/// hyper's default read buffer limit (`8192 + 4096 * 100`): request heads this long are
/// refused with 431.
const HYPER_MAX_HEAD: usize = 8192 + 4096 * 100;

/// The RSA key pair of the proto crate's tests.
const RSA_PUBLIC: &str = include_str!("../../wsmq-proto/tests/keys/rsa_public.pem");
const RSA_PRIVATE: &str = include_str!("../../wsmq-proto/tests/keys/rsa_private.pem");

/// What the node answered, normalized so that a row can state it exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// An HTTP answer (no upgrade): the status and the body's machine-readable label, which
    /// is `reason` when that is a snake_case word (the 401 reasons), else `error`, else ""
    /// (hyper's own 4xx answers have no body).
    Http(u16, String),
    /// 101 Switching Protocols, with the subprotocol the server chose.
    Upgraded(Option<String>),
    /// A v1 `error` frame with this code, after which the same session still answers a ping.
    Error(String),
    /// A v1 reply with this op (e.g. `pong`).
    Reply(String),
    /// The server closed the WebSocket with this code.
    Close(u16),
    /// Legacy: the frames were ignored, and the same session still subscribes and delivers.
    Ignored,
    /// The server dropped the TCP connection without an answer.
    Dropped,
}

fn http(status: u16, label: &str) -> Outcome {
    Outcome::Http(status, label.to_owned())
}

fn error(code: &str) -> Outcome {
    Outcome::Error(code.to_owned())
}

fn reply(op: &str) -> Outcome {
    Outcome::Reply(op.to_owned())
}

/// Which gateway a row runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// HS256 with `support::SECRET`, memory engine, `--max-frame` [`MAX_FRAME`].
    Hs,
    /// `--jwt-public-key` with the RSA test key (RS256).
    Rsa,
    /// Like `Hs`, with `--rate-limit 100 --rate-burst 100`.
    Limited,
}

/// How a row attacks.
enum Probe {
    /// A WebSocket handshake by tungstenite's client: path, headers, subprotocol.
    Handshake(String, Vec<(&'static str, String)>, Option<&'static str>),
    /// These bytes on a fresh TCP connection, then the HTTP answer is read.
    Http(Vec<u8>),
    /// These bytes (part of a request head) and then nothing: the node must keep serving
    /// others, and drop this connection when the handshake timeout expires.
    HalfOpen(Vec<u8>),
    /// A v1 session of a fresh user sends these messages; the first answer is read.
    V1(Vec<Message>),
    /// A v1 handshake of a fresh user over raw TCP, then these raw bytes.
    RawFrames(Vec<u8>),
    /// A legacy session of a fresh user sends these messages.
    Legacy(Vec<Message>),
    /// An access token that was registered, admitted once, then revoked.
    RevokedAccessToken,
    /// A session acks a message that another session of the same user holds.
    AckOfAnotherSession,
    /// This many `{"op":"ping"}` and as many WebSocket pings, as fast as the socket takes them.
    PingFlood(usize),
    /// A publish to the user's own queue of a message over the queue's maxsize (64 KiB) but
    /// well under `--max-frame`.
    OversizePublish,
}

struct Row {
    name: &'static str,
    node: Node,
    probe: Probe,
    /// The expected outcome; a few rows accept any of several (documented on the row).
    expect: Vec<Outcome>,
}

fn row(name: &'static str, probe: Probe, expect: Outcome) -> Row {
    Row {
        name,
        node: Node::Hs,
        probe,
        expect: vec![expect],
    }
}

fn handshake(headers: &[(&'static str, &str)]) -> Probe {
    let headers = headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
    Probe::Handshake("/ws".into(), headers, Some("wsmq.v1"))
}

fn text(s: impl Into<String>) -> Message {
    Message::text(s.into())
}

fn v1(s: impl Into<String>) -> Probe {
    Probe::V1(vec![text(s)])
}

fn v1_json(value: Value) -> Probe {
    v1(value.to_string())
}

/// A request head with the upgrade headers, `extra` lines and a valid token.
fn upgrade_request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         x-token: {}\r\n{extra}\r\n",
        token(&format!("probe{}", unique()))
    )
    .into_bytes()
}

/// A masked client frame.
fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_header(fin, rsv1, opcode, payload.len() as u64, true)
        .into_iter()
        .chain(mask(payload))
        .collect()
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn mask(payload: &[u8]) -> Vec<u8> {
    payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ MASK[i % 4])
        .collect()
}

fn frame_header(fin: bool, rsv1: bool, opcode: u8, len: u64, masked: bool) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&MASK);
    }
    out
}

/// An RS256 JWT for `user`, signed with the test RSA private key.
fn rs256_token(user: &str) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &Claims::new(user, now() + 3600),
        &key,
    )
    .unwrap()
}

fn rows() -> Vec<Row> {
    let soon = now() + 600;
    let forged = issue_hs256(&Claims::new("mallory", soon), b"not-the-secret");
    // {"alg":"none","typ":"JWT"} . {"sub":"mallory","exp":9999999999} . (no signature)
    let alg_none =
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJtYWxsb3J5IiwiZXhwIjo5OTk5OTk5OTk5fQ.";
    let expired = token_with(Claims::new("mallory", now() - 3600));
    let mut future = Claims::new("mallory", now() + 7200);
    future.nbf = Some(now() + 3600);
    let not_yet = token_with(future);
    let no_subject = token_with(Claims::new("", soon));
    // The classic confusion: HS256 "signed" with the RSA public key as the HMAC secret.
    let confused = issue_hs256(&Claims::new("mallory", soon), RSA_PUBLIC.as_bytes());
    let jwt = token("mallory");
    let access = access_token("mallory");
    let foreign_access = wsmq_proto::token::issue_access_token(
        b"another-secret",
        &wsmq_proto::UserId::new("mallory").unwrap(),
        now(),
    );
    let huge_token = format!(
        "{}.{}.{}",
        "a".repeat(4000),
        "b".repeat(4000),
        "c".repeat(500)
    );

    // A ping padded with an unknown field to exactly `len` bytes.
    let padded_ping = |len: usize| {
        let shell = r#"{"op":"ping","pad":""}"#;
        format!(
            r#"{{"op":"ping","pad":"{}"}}"#,
            "x".repeat(len - shell.len())
        )
    };

    vec![
        // --- Handshakes: refused before the upgrade, 401 with a JSON reason. ---
        row("no credentials", handshake(&[]), http(401, "missing_token")),
        row(
            "forged signature",
            handshake(&[("x-token", &forged)]),
            http(401, "bad_signature"),
        ),
        row(
            "alg none",
            handshake(&[("x-token", alg_none)]),
            http(401, "wrong_algorithm"),
        ),
        Row {
            name: "HS256 signed with the RSA public key, against --jwt-public-key",
            node: Node::Rsa,
            probe: handshake(&[("x-token", &confused)]),
            expect: vec![http(401, "wrong_algorithm")],
        },
        row(
            "expired JWT",
            handshake(&[("x-token", &expired)]),
            http(401, "expired"),
        ),
        row(
            "JWT not yet valid",
            handshake(&[("x-token", &not_yet)]),
            http(401, "not_yet_valid"),
        ),
        row(
            "JWT without a subject",
            handshake(&[("x-token", &no_subject)]),
            http(401, "missing_subject"),
        ),
        row(
            "garbage JWT",
            handshake(&[("x-token", "a.b.c")]),
            http(401, "malformed"),
        ),
        row(
            "9 KB JWT",
            handshake(&[("x-token", &huge_token)]),
            http(401, "malformed"),
        ),
        row(
            "JWT in x-access-token",
            handshake(&[("x-access-token", &jwt)]),
            http(401, "malformed"),
        ),
        row(
            "access token in x-token",
            handshake(&[("x-token", &access)]),
            http(401, "malformed"),
        ),
        row(
            "JWT in a cookie",
            handshake(&[("cookie", &format!("token={jwt}; x-token={jwt}"))]),
            http(401, "missing_token"),
        ),
        row(
            "access token under another secret",
            handshake(&[("x-access-token", &foreign_access)]),
            http(401, "malformed"),
        ),
        row(
            "revoked access token",
            Probe::RevokedAccessToken,
            http(401, "unregistered"),
        ),
        // --- Broken HTTP and WebSocket handshakes. ---
        row(
            "plain GET on /ws",
            Probe::Http(b"GET /ws HTTP/1.1\r\nhost: localhost\r\n\r\n".to_vec()),
            http(426, "upgrade_required"),
        ),
        row(
            "upgrade on an unknown path",
            Probe::Http(upgrade_request(
                "/ws/../admin",
                "sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            )),
            http(404, "not_found"),
        ),
        row(
            "websocket version 8",
            Probe::Http(upgrade_request(
                "/ws",
                "sec-websocket-version: 8\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            )),
            http(400, "bad_request"),
        ),
        row(
            "missing sec-websocket-key",
            Probe::Http(upgrade_request("/ws", "sec-websocket-version: 13\r\n")),
            http(400, "bad_request"),
        ),
        row(
            "unknown subprotocol (served as legacy, none echoed)",
            Probe::Http(upgrade_request(
                "/ws",
                "sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 sec-websocket-protocol: mqtt, chat.evil\r\n",
            )),
            Outcome::Upgraded(None),
        ),
        row(
            "408 KB header",
            Probe::Http({
                let mut head = b"GET /ws HTTP/1.1\r\nhost: localhost\r\nx-pad: ".to_vec();
                // Exactly hyper's limit, and no end of head: the node reads every byte, so
                // its answer is not lost to a reset.
                head.resize(HYPER_MAX_HEAD, b'a');
                head
            }),
            http(431, ""),
        ),
        row(
            "TLS ClientHello on the plain port",
            Probe::Http(vec![
                0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, b'\r', b'\n',
                b'\r', b'\n',
            ]),
            http(400, ""),
        ),
        row(
            "half-open handshake",
            Probe::HalfOpen(b"GET /ws HTTP/1.1\r\nhost: localhost\r\nupgrade: websoc".to_vec()),
            Outcome::Dropped,
        ),
        // --- v1 frames: an error frame, and the session goes on. ---
        row("bad JSON", v1(r#"{"op":"ping""#), error("invalid")),
        row("JSON array", v1("[1,2,3]"), error("invalid")),
        row(
            "unknown op",
            v1_json(json!({"op": "shutdown"})),
            error("invalid"),
        ),
        row(
            "op of the wrong type",
            v1_json(json!({"op": 7})),
            error("invalid"),
        ),
        row(
            "queue of the wrong type",
            v1_json(json!({"op": "subscribe", "queue": 5})),
            error("invalid"),
        ),
        row(
            "id of the wrong type",
            v1_json(json!({"op": "ack", "queue": "q", "id": ["x"]})),
            error("invalid"),
        ),
        row(
            "queue and channel at once",
            v1_json(json!({"op": "subscribe", "queue": "q", "channel": "c"})),
            error("invalid"),
        ),
        row(
            "100k nested arrays",
            v1("[".repeat(100_000)),
            error("invalid"),
        ),
        row(
            "nesting inside an unknown field",
            v1(format!(
                r#"{{"op":"ping","x":{}{}}}"#,
                "[".repeat(1000),
                "]".repeat(1000)
            )),
            error("invalid"),
        ),
        row(
            "100k-element flat array in an unknown field",
            v1(format!(
                r#"{{"op":"ping","x":[{}0]}}"#,
                "0,".repeat(100_000)
            )),
            reply("pong"),
        ),
        row(
            "frame of exactly --max-frame bytes",
            v1(padded_ping(MAX_FRAME)),
            reply("pong"),
        ),
        row(
            "frame one byte over --max-frame",
            v1(padded_ping(MAX_FRAME + 1)),
            Outcome::Close(1009),
        ),
        row(
            "queue name with a space",
            v1_json(json!({"op": "subscribe", "queue": "a b"})),
            error("invalid"),
        ),
        row(
            "queue name with a NUL",
            v1_json(json!({"op": "subscribe", "queue": "q\u{0}"})),
            error("invalid"),
        ),
        row(
            "channel name with control characters",
            v1_json(json!({"op": "subscribe", "channel": "c\u{7}\u{1b}[2J"})),
            error("invalid"),
        ),
        row(
            "161-character queue name",
            v1_json(json!({"op": "subscribe", "queue": "q".repeat(161)})),
            error("invalid"),
        ),
        row(
            "queue name with a path",
            v1_json(json!({"op": "publish", "queue": "../../etc", "message": "x"})),
            error("invalid"),
        ),
        row(
            "short message id",
            v1_json(json!({"op": "ack", "queue": "q", "id": "short"})),
            error("invalid"),
        ),
        row(
            "message id with a Redis glob",
            v1_json(json!({"op": "ack", "queue": "q", "id": "*".repeat(32)})),
            error("invalid"),
        ),
        row(
            "129-byte ref",
            v1_json(json!({"op": "ping", "ref": "r".repeat(129)})),
            error("invalid"),
        ),
        row(
            "binary frame",
            Probe::V1(vec![Message::Binary(Bytes::from_static(b"\x00\xff{}"))]),
            error("invalid"),
        ),
        row(
            "another user's queue",
            v1_json(json!({"op": "subscribe", "queue": "victim"})),
            error("forbidden"),
        ),
        row(
            "publish to another user's queue",
            v1_json(json!({"op": "publish", "queue": "victim", "message": "x"})),
            error("forbidden"),
        ),
        row(
            "publish to a channel without a grant",
            v1_json(json!({"op": "publish", "channel": "all", "message": "x"})),
            error("forbidden"),
        ),
        row(
            "ack on another user's queue",
            v1_json(json!({"op": "ack", "queue": "victim", "id": UNKNOWN_ID})),
            error("not_found"),
        ),
        row(
            "ack of a message of another session",
            Probe::AckOfAnotherSession,
            error("not_found"),
        ),
        row(
            "nack with a delay over 9999999",
            v1_json(json!({"op": "nack", "queue": "q", "id": UNKNOWN_ID, "delay": 10_000_000})),
            error("invalid"),
        ),
        row(
            "nack with a negative delay",
            v1_json(json!({"op": "nack", "queue": "q", "id": UNKNOWN_ID, "delay": -1})),
            error("invalid"),
        ),
        row(
            "nack with a delay of 1e300",
            v1(format!(
                r#"{{"op":"nack","queue":"q","id":"{UNKNOWN_ID}","delay":1e300}}"#
            )),
            error("invalid"),
        ),
        row(
            "auth with an empty token",
            v1_json(json!({"op": "auth", "token": ""})),
            error("invalid"),
        ),
        row(
            "auth with alg none",
            v1_json(json!({"op": "auth", "token": alg_none})),
            error("forbidden"),
        ),
        // --- Raw frames tungstenite's client will not send. ---
        row(
            "text frame that is not UTF-8",
            Probe::RawFrames(frame(
                true,
                false,
                0x1,
                b"{\"op\":\"ping\",\"x\":\"\xc3\x28\"}",
            )),
            Outcome::Close(1007),
        ),
        row(
            "unmasked client frame",
            Probe::RawFrames({
                let mut f = frame_header(true, false, 0x1, 13, false);
                f.extend_from_slice(br#"{"op":"ping"}"#);
                f
            }),
            Outcome::Close(1002),
        ),
        row(
            "reserved opcode 0x3",
            Probe::RawFrames(frame(true, false, 0x3, b"x")),
            Outcome::Close(1002),
        ),
        row(
            "RSV1 without a negotiated extension",
            Probe::RawFrames(frame(true, true, 0x1, br#"{"op":"ping"}"#)),
            Outcome::Close(1002),
        ),
        row(
            "continuation frame with nothing to continue",
            Probe::RawFrames(frame(true, false, 0x0, br#"{"op":"ping"}"#)),
            Outcome::Close(1002),
        ),
        row(
            "header announcing a 10 MB frame",
            Probe::RawFrames({
                // Only the head and 1 KB are sent: the size alone must be enough to refuse.
                let mut f = frame_header(true, false, 0x1, 10 * 1024 * 1024, true);
                f.extend(std::iter::repeat_n(b'x', 1024));
                f
            }),
            Outcome::Close(1009),
        ),
        row(
            "fragments adding up to more than --max-frame",
            Probe::RawFrames({
                let part = vec![b' '; 100 * 1024];
                let mut f = frame(false, false, 0x1, &part);
                f.extend(frame(false, false, 0x0, &part));
                f.extend(frame(false, false, 0x0, &part));
                f
            }),
            Outcome::Close(1009),
        ),
        row(
            "fragmented ping",
            Probe::RawFrames(frame(false, false, 0x9, b"p")),
            Outcome::Close(1002),
        ),
        // --- Legacy: no error frames; what it does not understand it ignores. ---
        row(
            "legacy: another user's queue",
            Probe::Legacy(vec![text("/subscribe/victim")]),
            Outcome::Close(4003),
        ),
        row(
            "legacy: invalid and control-character names, JSON, binary",
            Probe::Legacy(vec![
                text("/subscribe/a b"),
                text("/subscribe/q\u{1}\u{7f}"),
                text("/subscribe/"),
                text(r#"{"op":"subscribe","queue":"victim"}"#),
                Message::Binary(Bytes::from_static(b"/subscribe/victim")),
            ]),
            Outcome::Ignored,
        ),
        // --- Floods. ---
        // Under the default --rate-limit (10000/s, burst 20000) every ping is answered.
        row(
            "ping flood: 2000 op pings and 2000 WebSocket pings",
            Probe::PingFlood(2000),
            reply("pong"),
        ),
        // Under --rate-limit 100: 100 pongs, then rate_limited errors, then 4029.
        Row {
            name: "ping flood over --rate-limit",
            node: Node::Limited,
            probe: Probe::PingFlood(5000),
            expect: vec![Outcome::Close(4029)],
        },
        row(
            "publish of a message over the queue's maxsize",
            Probe::OversizePublish,
            error("too_large"),
        ),
    ]
}

/// A client that must keep being served while the table runs.
struct Healthy {
    client: Client,
    queue: String,
    engine: Arc<dyn QueueStore>,
    sent: usize,
}

impl Healthy {
    async fn start(gw: &TestGateway, node: Node) -> Healthy {
        let user = format!("healthy{}", unique());
        let jwt = match node {
            Node::Hs | Node::Limited => token(&user),
            Node::Rsa => rs256_token(&user),
        };
        let mut client = gw
            .connect("/ws", &[("x-token", &jwt)], Some("wsmq.v1"))
            .await
            .expect("the healthy client is admitted");
        assert_eq!(client.recv_json().await["op"], "welcome");
        let r = client
            .request(json!({"op": "subscribe", "queue": user, "ref": 0}))
            .await;
        assert_eq!(r, json!({"op": "ok", "ref": 0}));
        Healthy {
            client,
            queue: user,
            engine: gw.queues().await,
            sent: 0,
        }
    }

    /// `/healthz` is 200, and a message published now reaches the client and is acked.
    async fn check(&mut self, gw: &TestGateway, after: &str) {
        let (status, _) = gw.http("GET", "/healthz", &[], "").await;
        assert_eq!(status, 200, "/healthz after {after:?}");
        self.sent += 1;
        let body = format!("alive {}", self.sent);
        self.engine.send(&self.queue, &body, None).await.unwrap();
        let Some(text) = self.client.next_text(Duration::from_secs(5)).await else {
            panic!("the healthy client got nothing after {after:?}");
        };
        let msg: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(msg["message"], body, "after {after:?}");
        let r = self
            .client
            .request(json!({"op": "ack", "queue": self.queue, "id": msg["id"], "ref": self.sent}))
            .await;
        assert_eq!(r, json!({"op": "ok", "ref": self.sent}), "after {after:?}");
    }
}

#[tokio::test]
async fn hostile_handshakes_and_frames_get_exact_answers_and_the_node_survives() {
    let hs = TestGateway::builder()
        .config(|c| {
            c.limits.max_frame = MAX_FRAME;
            c.listen.handshake_timeout = HANDSHAKE_TIMEOUT;
        })
        .start()
        .await;
    let rsa = TestGateway::builder()
        .config(|c| c.auth.jwt.public_key_pem = Some(RSA_PUBLIC.to_owned()))
        .start()
        .await;
    let limited = TestGateway::builder()
        .config(|c| {
            c.limits.rate_limit = 100;
            c.limits.rate_burst = 100;
        })
        .start()
        .await;
    let mut healthy_hs = Healthy::start(&hs, Node::Hs).await;
    let mut healthy_rsa = Healthy::start(&rsa, Node::Rsa).await;
    let mut healthy_limited = Healthy::start(&limited, Node::Limited).await;

    let rows = rows();
    assert!(rows.len() >= 30, "the table has {} rows", rows.len());
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        let (gw, healthy) = match row.node {
            Node::Hs => (&hs, &mut healthy_hs),
            Node::Rsa => (&rsa, &mut healthy_rsa),
            Node::Limited => (&limited, &mut healthy_limited),
        };
        let outcome = match &row.probe {
            Probe::HalfOpen(bytes) => half_open(gw, bytes, healthy, row.name).await,
            probe => run(gw, probe).await,
        };
        let ok = row.expect.contains(&outcome);
        let line = format!(
            "{:>2} {} {:<64} {:?}",
            i + 1,
            if ok { "ok  " } else { "FAIL" },
            row.name,
            outcome
        );
        println!("{line}");
        report.push(line);
        if !ok {
            failures.push(format!(
                "{}: expected {:?}, got {outcome:?}",
                row.name, row.expect
            ));
        }
        healthy.check(gw, row.name).await;
    }
    assert!(
        failures.is_empty(),
        "{}\n\n{}",
        failures.join("\n"),
        report.join("\n")
    );
}

async fn run(gw: &TestGateway, probe: &Probe) -> Outcome {
    match probe {
        Probe::Handshake(path, headers, protocol) => {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            match gw.connect(path, &headers, *protocol).await {
                Ok(client) => {
                    let protocol = client.protocol.clone();
                    client.close().await;
                    Outcome::Upgraded(protocol)
                }
                Err((status, body)) => Outcome::Http(status, label(&body)),
            }
        }
        Probe::Http(bytes) => raw_http(gw, bytes).await,
        Probe::HalfOpen(_) => unreachable!("run by half_open"),
        Probe::V1(frames) => {
            let (mut client, _) = gw.v1(&format!("probe{}", unique())).await;
            for frame in frames {
                // A send may fail when the node closes first (1009): the answer says why.
                if client.ws.send(frame.clone()).await.is_err() {
                    break;
                }
            }
            v1_answer(&mut client).await
        }
        Probe::RawFrames(bytes) => raw_frames(gw, bytes).await,
        Probe::Legacy(frames) => {
            let user = format!("probe{}", unique());
            let mut client = gw.legacy(&user).await;
            for frame in frames {
                client.ws.send(frame.clone()).await.unwrap();
            }
            match timeout(QUIET, client.ws.next()).await {
                Err(_) => {}
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Outcome::Close(frame.map_or(1005, |f| u16::from(f.code)));
                }
                Ok(other) => panic!("legacy answered {other:?}"),
            }
            // Still alive: its own queue still works.
            client.send_text(&format!("/subscribe/{user}")).await;
            let engine = gw.queues().await;
            engine.ensure_queue(&user).await.unwrap();
            engine.send(&user, "still here", None).await.unwrap();
            assert_eq!(client.recv_text().await, r#"{"message":"still here"}"#);
            Outcome::Ignored
        }
        Probe::RevokedAccessToken => {
            let user = format!("probe{}", unique());
            let at = access_token(&user);
            let memory = gw.memory.as_ref().expect("a memory engine");
            memory.register_access_token(&user, &at);
            let admitted = gw.connect("/", &[("x-access-token", &at)], None).await;
            let mut admitted = admitted.expect("admitted while registered");
            memory.revoke(&user);
            assert_eq!(admitted.close_code().await, Some(4003));
            match gw.connect("/", &[("x-access-token", &at)], None).await {
                Ok(_) => Outcome::Upgraded(None),
                Err((status, body)) => Outcome::Http(status, label(&body)),
            }
        }
        Probe::AckOfAnotherSession => {
            let user = format!("probe{}", unique());
            let (mut holder, _) = gw.v1(&user).await;
            let (mut other, _) = gw.v1(&user).await;
            let sub = json!({"op": "subscribe", "queue": user});
            assert_eq!(holder.request(sub.clone()).await["op"], "ok");
            gw.queues().await.send(&user, "mine", None).await.unwrap();
            let msg = holder.recv_json().await;
            assert_eq!(msg["message"], "mine");
            assert_eq!(other.request(sub).await["op"], "ok");
            let ack = json!({"op": "ack", "queue": user, "id": msg["id"]});
            let outcome = answer_of(other.request(ack.clone()).await);
            // The holder's ack still works: the foreign ack took nothing from it.
            assert_eq!(holder.request(ack).await["op"], "ok");
            outcome
        }
        Probe::PingFlood(n) => ping_flood(gw, *n).await,
        Probe::OversizePublish => {
            let user = format!("probe{}", unique());
            let (mut client, _) = gw.v1(&user).await;
            let message = "m".repeat(65_537);
            client
                .send_json(json!({"op": "publish", "queue": user, "message": message}))
                .await;
            v1_answer(&mut client).await
        }
    }
}

/// The first answer of a v1 session; an `error` counts only if the session then still
/// answers a ping.
async fn v1_answer(client: &mut Client) -> Outcome {
    loop {
        match timeout(Duration::from_secs(5), client.ws.next()).await {
            Err(_) => panic!("no answer within 5 s"),
            Ok(None | Some(Err(_))) => return Outcome::Dropped,
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Outcome::Close(frame.map_or(1005, |f| u16::from(f.code)));
            }
            Ok(Some(Ok(Message::Text(text)))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                let outcome = answer_of(value);
                if matches!(outcome, Outcome::Error(_)) {
                    let pong = client.request(json!({"op": "ping", "ref": "after"})).await;
                    assert_eq!(pong, json!({"op": "pong", "ref": "after"}));
                }
                return outcome;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn answer_of(value: Value) -> Outcome {
    match value["op"].as_str() {
        Some("error") => Outcome::Error(value["code"].as_str().unwrap_or("?").to_owned()),
        Some(op) => Outcome::Reply(op.to_owned()),
        None => panic!("not a v1 frame: {value}"),
    }
}

/// The label of an HTTP answer's JSON body (see [`Outcome::Http`]).
fn label(body: &str) -> String {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return String::new();
    };
    match value["reason"].as_str() {
        Some(reason)
            if !reason.is_empty()
                && reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
        {
            reason.to_owned()
        }
        _ => value["error"].as_str().unwrap_or_default().to_owned(),
    }
}

/// Sends `bytes` on a fresh connection and reads the answer head (and body, to the end or a
/// second of quiet).
async fn raw_http(gw: &TestGateway, bytes: &[u8]) -> Outcome {
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let response = read_some(&mut stream, Duration::from_secs(5)).await;
    parse_http(&response)
}

fn parse_http(response: &[u8]) -> Outcome {
    if response.is_empty() {
        return Outcome::Dropped;
    }
    let text = String::from_utf8_lossy(response);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if status == 101 {
        let protocol = head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-protocol")
                .then(|| value.trim().to_owned())
        });
        return Outcome::Upgraded(protocol);
    }
    Outcome::Http(status, label(body))
}

/// Reads until EOF, or until nothing more arrives for a moment after the first bytes, or
/// `wait` passes with nothing.
async fn read_some(stream: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let mut response = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut deadline = wait;
    loop {
        match timeout(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return response,
            Ok(Ok(n)) => {
                response.extend_from_slice(&buf[..n]);
                deadline = Duration::from_millis(200);
            }
        }
    }
}

/// Part of a request head, then nothing: others are served meanwhile, and the node drops
/// the connection once its handshake timeout expires.
async fn half_open(gw: &TestGateway, bytes: &[u8], healthy: &mut Healthy, name: &str) -> Outcome {
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let started = tokio::time::Instant::now();
    // While it hangs, the node serves everyone else.
    healthy.check(gw, name).await;
    let (mut c, _) = gw.v1(&format!("probe{}", unique())).await;
    assert_eq!(c.request(json!({"op": "ping"})).await["op"], "pong");
    c.close().await;
    // Dropped at the handshake timeout: not before, and not much after.
    let response = read_some(&mut stream, HANDSHAKE_TIMEOUT * 10).await;
    let waited = started.elapsed();
    assert!(
        waited >= HANDSHAKE_TIMEOUT.mul_f32(0.9) && waited < HANDSHAKE_TIMEOUT * 5,
        "a half-open handshake was dropped after {waited:?}"
    );
    parse_http(&response)
}

/// A v1 handshake over raw TCP, then `bytes`; the answer is the first close (or error frame)
/// after the welcome.
async fn raw_frames(gw: &TestGateway, bytes: &[u8]) -> Outcome {
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let head = upgrade_request(
        "/ws",
        "sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         sec-websocket-protocol: wsmq.v1\r\n",
    );
    stream.write_all(&head).await.unwrap();
    let mut reader = RawReader::default();
    let response = reader.head(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    let (opcode, welcome) = reader.frame(&mut stream).await.expect("the welcome");
    assert_eq!(opcode, 0x1);
    assert!(welcome.starts_with(br#"{"op":"welcome""#));
    // The node may close before it has read everything: a failed write is not the answer.
    let _ = stream.write_all(bytes).await;
    loop {
        match reader.frame(&mut stream).await {
            None => return Outcome::Dropped,
            Some((0x8, payload)) => {
                return Outcome::Close(if payload.len() >= 2 {
                    u16::from_be_bytes([payload[0], payload[1]])
                } else {
                    1005
                });
            }
            Some((0x1, payload)) => return answer_of(serde_json::from_slice(&payload).unwrap()),
            Some(_) => {}
        }
    }
}

/// A minimal reader of server frames (unmasked) over a raw socket.
#[derive(Default)]
struct RawReader {
    buf: Vec<u8>,
}

impl RawReader {
    async fn fill(&mut self, stream: &mut TcpStream, want: usize) -> bool {
        let mut chunk = [0u8; 4096];
        while self.buf.len() < want {
            match timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
                Ok(Ok(0) | Err(_)) | Err(_) => return false,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    }

    /// The HTTP response head.
    async fn head(&mut self, stream: &mut TcpStream) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            let want = self.buf.len() + 1;
            assert!(self.fill(stream, want).await, "no response head");
        }
    }

    /// The next frame: (opcode, payload), or `None` at EOF.
    async fn frame(&mut self, stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
        if !self.fill(stream, 2).await {
            return None;
        }
        let opcode = self.buf[0] & 0x0f;
        let (len, at) = match self.buf[1] & 0x7f {
            126 => {
                self.fill(stream, 4).await.then_some(())?;
                (
                    usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                    4,
                )
            }
            127 => {
                self.fill(stream, 10).await.then_some(())?;
                let mut n = [0u8; 8];
                n.copy_from_slice(&self.buf[2..10]);
                (usize::try_from(u64::from_be_bytes(n)).unwrap(), 10)
            }
            n => (usize::from(n), 2),
        };
        self.fill(stream, at + len).await.then_some(())?;
        let payload = self.buf[at..at + len].to_vec();
        self.buf.drain(..at + len);
        Some((opcode, payload))
    }
}

/// `n` `{"op":"ping"}` and `n` WebSocket pings, written as fast as the socket takes them
/// while another task reads the answers.
async fn ping_flood(gw: &TestGateway, n: usize) -> Outcome {
    let (client, _) = gw.v1(&format!("probe{}", unique())).await;
    let (mut sink, mut stream) = client.ws.split();
    let reader = tokio::spawn(async move {
        let (mut pongs, mut limited, mut close) = (0usize, 0usize, None);
        while pongs + limited < n {
            match timeout(Duration::from_secs(10), stream.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    match answer_of(value) {
                        Outcome::Reply(op) if op == "pong" => pongs += 1,
                        Outcome::Error(code) if code == "rate_limited" => limited += 1,
                        other => panic!("flood answered {other:?}"),
                    }
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    close = Some(frame.map_or(1005, |f| u16::from(f.code)));
                    break;
                }
                Ok(Some(Ok(_))) => {}
                Ok(None | Some(Err(_))) => break,
                Err(_) => {
                    panic!("the flood's answers stopped at {pongs} pongs, {limited} refusals")
                }
            }
        }
        (pongs, limited, close, stream)
    });
    let ping = Message::text(r#"{"op":"ping"}"#);
    for i in 0..n {
        if sink.feed(ping.clone()).await.is_err()
            || sink
                .feed(Message::Ping(Bytes::from_static(b"x")))
                .await
                .is_err()
        {
            break;
        }
        // The reader shares this thread: let it read, as a real client's would.
        if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let _ = sink.flush().await;
    let (pongs, limited, close, stream) = reader.await.unwrap();
    println!("ping flood: {pongs} pongs, {limited} rate_limited, close {close:?}");
    if let Some(code) = close {
        return Outcome::Close(code);
    }
    // Not closed: the session still answers once the flood has passed (after a pause, so
    // that a rate limiter has refilled).
    let mut stream = stream;
    tokio::time::sleep(Duration::from_secs(1)).await;
    sink.send(Message::text(r#"{"op":"ping","ref":"after"}"#))
        .await
        .unwrap();
    loop {
        match timeout(Duration::from_secs(5), stream.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                assert_eq!(text.as_str(), r#"{"op":"pong","ref":"after"}"#);
                break;
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no pong after the flood: {other:?}"),
        }
    }
    if limited > 0 {
        error("rate_limited")
    } else {
        reply("pong")
    }
}
