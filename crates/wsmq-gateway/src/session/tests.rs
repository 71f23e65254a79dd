//! Sessions driven through channels instead of sockets, some on a paused clock.

use std::net::SocketAddr;

use futures_util::{sink, stream};
use wsmq_proto::UserId;

use tokio::sync::mpsc;

use super::*;
use crate::{
    auth::Via,
    config::Config,
    engine::{QueueStore, memory::MemoryEngine},
    metrics::Metrics,
    outbound::Dialect,
};

/// What [`channel_session`] returns: (to the session, from the session, its task, engine).
type ChannelSession = (
    mpsc::Sender<Message>,
    mpsc::Receiver<Message>,
    tokio::task::JoinHandle<()>,
    Arc<MemoryEngine>,
);

/// A session of `alice` (JWT) driven through channels.
fn channel_session(dialect: Dialect) -> ChannelSession {
    let identity = Identity {
        user: UserId::new("alice").unwrap(),
        grants: None,
        exp: None,
        via: Via::Jwt,
        issued: None,
        access_token: None,
    };
    channel_session_with(dialect, identity, |gateway, _| gateway.sessions.epoch())
}

/// A session of `identity` driven through channels; `handshake` plays what happens between
/// the handshake's check and the session's start, and returns the registry epoch the
/// handshake read.
fn channel_session_with(
    dialect: Dialect,
    identity: Identity,
    handshake: impl FnOnce(&Arc<Gateway>, &MemoryEngine) -> u64,
) -> ChannelSession {
    let engine = MemoryEngine::new();
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let gateway = Gateway::new(
        Config::for_tests("secret"),
        engine.engine(),
        Metrics::new(),
        addr,
    )
    .unwrap();
    let (to_session, inbox) = mpsc::channel::<Message>(16);
    let (outbox, from_session) = mpsc::channel::<Message>(16);
    let writer = sink::unfold(outbox, |outbox, msg: Message| async move {
        outbox
            .send(msg)
            .await
            .map_err(|_| tungstenite::Error::ConnectionClosed)?;
        Ok::<_, tungstenite::Error>(outbox)
    });
    let reader = stream::unfold(inbox, |mut inbox| async move {
        inbox.recv().await.map(|msg| (Ok(msg), inbox))
    });
    let epoch = handshake(&gateway, &engine);
    let task = tokio::spawn(run(
        Box::pin(writer),
        Box::pin(reader),
        gateway,
        identity,
        dialect,
        epoch,
        None,
    ));
    (to_session, from_session, task, engine)
}

async fn next_text(rx: &mut mpsc::Receiver<Message>) -> String {
    loop {
        match rx.recv().await.expect("a frame") {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn v1_session_without_a_socket() {
    let (tx, mut rx, task, engine) = channel_session(Dialect::V1);
    assert_eq!(
        next_text(&mut rx).await,
        r#"{"op":"welcome","user":"alice","node":"test-node","token":null}"#
    );
    tx.send(Message::text(r#"{"op":"ping","ref":1}"#))
        .await
        .unwrap();
    assert_eq!(next_text(&mut rx).await, r#"{"op":"pong","ref":1}"#);
    tx.send(Message::text(
        r#"{"op":"subscribe","queue":"alice","ref":2}"#,
    ))
    .await
    .unwrap();
    assert_eq!(next_text(&mut rx).await, r#"{"op":"ok","ref":2}"#);
    let id = engine.send_now_for_tests("alice", "hi");
    let frame = next_text(&mut rx).await;
    assert!(frame.starts_with(&format!(
        r#"{{"op":"message","queue":"alice","id":"{id}","message":"hi","rc":1,"sent":"#
    )));
    // The client goes away: the session closes normally and ends.
    drop(tx);
    match rx.recv().await {
        Some(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected a close frame, got {other:?}"),
    }
    task.await.unwrap();
}

/// A revocation that lands after the handshake read the records and before the session
/// registered finds no session to close: the session notices (the registry's epoch moved),
/// re-checks its credential once registered, and closes with 4003 before its welcome.
#[tokio::test]
async fn a_revocation_during_the_handshake_closes_the_session_once_registered() {
    let identity = Identity {
        user: UserId::new("alice").unwrap(),
        grants: None,
        exp: None,
        via: Via::Jwt,
        issued: Some(clock::unix_secs() - 10),
        access_token: None,
    };
    let (_tx, mut rx, task, _) = channel_session_with(Dialect::V1, identity, |gateway, engine| {
        let epoch = gateway.sessions.epoch();
        // The handshake's check passed; now the revocation is written and announced.
        engine.revoke_quietly("alice");
        assert_eq!(
            gateway.sessions.close_user("alice", CloseCode::FORBIDDEN),
            0
        );
        epoch
    });
    match rx.recv().await {
        Some(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 4003),
        other => panic!("expected a 4003 close, got {other:?}"),
    }
    task.await.unwrap();
}

#[tokio::test]
async fn legacy_session_without_a_socket() {
    let (tx, mut rx, _task, engine) = channel_session(Dialect::Legacy);
    tx.send(Message::text("/subscribe/alice")).await.unwrap();
    tokio::task::yield_now().await;
    engine.send_now_for_tests("alice", "hello world");
    assert_eq!(next_text(&mut rx).await, r#"{"message":"hello world"}"#);
}

#[tokio::test(start_paused = true)]
async fn delayed_messages_and_vt_expiry_on_a_paused_clock() {
    let (tx, mut rx, _task, engine) = channel_session(Dialect::V1);
    next_text(&mut rx).await;
    tx.send(Message::text(r#"{"op":"subscribe","queue":"alice"}"#))
        .await
        .unwrap();
    assert_eq!(next_text(&mut rx).await, r#"{"op":"ok"}"#);
    let start = Instant::now();
    QueueStore::send(engine.as_ref(), "alice", "in five", Some(5))
        .await
        .unwrap();
    let frame = next_text(&mut rx).await;
    assert!(frame.contains(r#""message":"in five","rc":1"#), "{frame}");
    // The precise timer: exactly when due, not at a poll tick.
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_millis(5010),
        "{waited:?}"
    );
    // Not acked: after the queue's 30 s vt it comes back with rc 2.
    let frame = next_text(&mut rx).await;
    assert!(frame.contains(r#""message":"in five","rc":2"#), "{frame}");
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(35), "{waited:?}");
}
