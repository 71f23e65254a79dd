//! Request bodies that never end or trickle in, on the endpoints that read one besides the ack
//! endpoints (covered in `sse_failures.rs`): `POST /api/publish` and `POST /demo/token`. Each
//! is answered 408 once `--handshake-timeout` has passed after the headers, so a slowloris
//! body cannot hold a connection and its `--max-connections` permit, and a whole body still
//! gets its usual answer. A body whose framing is broken is a 400, not a 413.

mod support;

use std::time::{Duration, Instant};

use support::{
    TestGateway,
    slowloris::{status_of, trickle},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use wsmq_gateway::config::Secret;

/// The handshake timeout of these tests, which bounds a body's arrival too.
const HANDSHAKE: Duration = Duration::from_millis(500);
/// What an answer may take past [`HANDSHAKE`] on a busy machine.
const SLACK: Duration = Duration::from_millis(1500);
/// Between two bytes of a trickling body.
const GAP: Duration = Duration::from_millis(50);
const KEY: &str = "publish-key-0123456789";

#[tokio::test]
async fn a_body_that_never_ends_or_trickles_is_answered_408_in_bounded_time() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.listen.handshake_timeout = HANDSHAKE;
            c.auth.api_key = Some(Secret::new(KEY));
            c.demo = true;
            c.auth.demo_secret = Some(Secret::new("demo-play-secret"));
        })
        .start()
        .await;
    let publish = r#"{"queue":"bodies","message":"a message long enough to trickle"}"#;
    let endpoints = [
        (
            "/api/publish",
            format!("authorization: apikey {KEY}\r\ncontent-type: application/json"),
            publish.to_owned(),
        ),
        (
            "/demo/token",
            "content-type: application/x-www-form-urlencoded".to_owned(),
            // Other fields are ignored: they make the body long enough to trickle.
            format!("pad={}&user=trickler", "x".repeat(40)),
        ),
    ];
    for (path, headers, body) in endpoints {
        assert!(
            GAP * body.len() as u32 > HANDSHAKE + SLACK,
            "{path}: body too short"
        );
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\n{headers}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        // The head at once, then a few bytes of the body and nothing more.
        let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(&body.as_bytes()[..5]).await.unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        tokio::time::timeout(HANDSHAKE + SLACK, tcp.read_to_end(&mut answer))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{path}: a stalled body still open after {:?}",
                    HANDSHAKE + SLACK
                )
            })
            .ok();
        let waited = started.elapsed();
        assert!(
            waited >= HANDSHAKE - Duration::from_millis(50),
            "{path}: answered after {waited:?}, before the timeout"
        );
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status_of(&answer), Some(408), "{path}: {text}");
        assert!(
            text.contains(r#""error":"request_timeout""#),
            "{path}: {text}"
        );
        // The head at once, then the body a byte at a time, past the timeout in all.
        let (closed, answer) = trickle(
            gw.addr,
            head.as_bytes(),
            body.clone().into_bytes(),
            GAP,
            HANDSHAKE + SLACK,
        )
        .await;
        let text = String::from_utf8_lossy(&answer);
        let Some(closed) = closed else {
            panic!(
                "{path}: a trickling body still open after {:?}: {text}",
                HANDSHAKE + SLACK
            );
        };
        assert!(
            closed >= HANDSHAKE - Duration::from_millis(50),
            "{path}: answered after {closed:?}, before the timeout"
        );
        assert_eq!(status_of(&answer), Some(408), "{path}: {text}");
        // A body that arrives whole is served as ever.
        let header_pairs: Vec<(&str, &str)> = headers
            .split("\r\n")
            .filter_map(|line| line.split_once(": "))
            .collect();
        let (status, reply) = gw.http("POST", path, &header_pairs, &body).await;
        assert_eq!(status, 200, "{path}: {reply}");
    }
}

/// A body whose chunked framing is broken is a clear 400, not taken for an oversize one.
#[tokio::test]
async fn a_body_with_broken_chunked_framing_is_a_400() {
    let gw = TestGateway::builder()
        .config(|c| c.auth.api_key = Some(Secret::new(KEY)))
        .start()
        .await;
    let request = format!(
        "POST /api/publish HTTP/1.1\r\nhost: x\r\nauthorization: apikey {KEY}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{{}}\r\n"
    );
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(SLACK, tcp.read_to_end(&mut answer))
        .await
        .expect("answered and closed")
        .ok();
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), Some(400), "{text}");
    assert!(text.contains(r#""error":"invalid""#), "{text}");
}
