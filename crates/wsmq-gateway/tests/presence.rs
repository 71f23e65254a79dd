//! Channel presence: users of every node listed with their session counts, `presence` frames
//! of who joined and left (coalesced to one per second), a killed node's members gone within
//! 15 s, refusals (`forbidden` without the right to subscribe, `invalid` for bad frames), and
//! a channel of 100,000 members listed in bounded time with the reply capped.

#[macro_use]
mod support;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::{Client, RedisServer, TestGateway, connect_at, now, process::Process, token_with};
use wsmq_gateway::engine::Membership;
use wsmq_proto::{Claims, Grants, MAX_PRESENCE_USERS};

/// A token that may subscribe to `room-*` only.
fn room_token(user: &str) -> String {
    let mut claims = Claims::new(user, now() + 600);
    claims.wsmq = Some(Grants {
        subscribe: vec!["room-*".into()],
        ..Grants::default()
    });
    token_with(claims)
}

/// A v1 session of `user` on the gateway at `addr`, welcome read.
async fn member_at(addr: std::net::SocketAddr, user: &str) -> Client {
    let token = room_token(user);
    let mut client = connect_at(addr, "/ws", &[("x-token", &token)], Some("wsmq.v1"))
        .await
        .unwrap();
    assert_eq!(client.recv_json().await["op"], "welcome");
    client
}

async fn member(gw: &TestGateway, user: &str) -> Client {
    member_at(gw.addr, user).await
}

async fn subscribe(client: &mut Client, room: &str, presence: bool) {
    let ok = client
        .request(json!({"op": "subscribe", "channel": room, "presence": presence, "ref": "s"}))
        .await;
    assert_eq!(ok["op"], "ok", "{ok}");
}

/// `(user, sessions)` of the channel, as a `presence` reply lists them.
async fn presence(client: &mut Client, room: &str) -> Vec<(String, u64)> {
    let ok = client
        .request(json!({"op": "presence", "channel": room, "ref": "p"}))
        .await;
    assert_eq!(ok["op"], "ok", "{ok}");
    assert_eq!(ok["ref"], "p", "{ok}");
    let users: Vec<(String, u64)> = ok["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| {
            (
                u["user"].as_str().unwrap().to_owned(),
                u["sessions"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ok["total"], users.len(), "{ok}");
    users
}

/// Asks for the channel's presence until it is `want`, for at most `limit`.
async fn presence_becomes(client: &mut Client, room: &str, want: &[(&str, u64)], limit: Duration) {
    let want: Vec<(String, u64)> = want.iter().map(|(u, n)| ((*u).to_owned(), *n)).collect();
    let deadline = Instant::now() + limit;
    loop {
        let got = presence(client, room).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "presence still {got:?} after {limit:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The `presence` frames that arrive within `wait`, with when each came.
async fn presence_frames(client: &mut Client, wait: Duration) -> Vec<(Instant, Value)> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut frames = Vec::new();
    while let Some(text) = client
        .next_text(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["op"] == "presence" {
            frames.push((Instant::now(), frame));
        }
    }
    frames
}

fn names(frames: &[(Instant, Value)], field: &str) -> BTreeSet<String> {
    frames
        .iter()
        .flat_map(|(_, f)| f[field].as_array().unwrap().clone())
        .map(|u| u.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn users_of_every_node_are_listed_with_their_session_counts() {
    let redis = RedisServer::start();
    let a = TestGateway::builder().redis(&redis).start().await;
    let b = TestGateway::builder().redis(&redis).start().await;
    let room = format!("room-{}", support::unique());
    let mut alice_a1 = member(&a, "alice").await;
    let mut alice_a2 = member(&a, "alice").await;
    let mut alice_b = member(&b, "alice").await;
    let mut bob_b = member(&b, "bob").await;
    for client in [&mut alice_a1, &mut alice_a2, &mut alice_b, &mut bob_b] {
        subscribe(client, &room, false).await;
    }
    // Asking flushes the asking node's own changes; the other node's are written at once too.
    presence_becomes(
        &mut bob_b,
        &room,
        &[("alice", 3), ("bob", 1)],
        Duration::from_secs(3),
    )
    .await;
    // Subscribing twice is one membership.
    subscribe(&mut alice_a1, &room, true).await;
    assert_eq!(
        presence(&mut alice_a1, &room).await,
        [("alice".to_owned(), 3), ("bob".to_owned(), 1)]
    );
    // Unsubscribing and closing both end a membership, each once.
    let ok = alice_a1
        .request(json!({"op": "unsubscribe", "channel": room}))
        .await;
    assert_eq!(ok["op"], "ok", "{ok}");
    alice_b.close().await;
    presence_becomes(
        &mut bob_b,
        &room,
        &[("alice", 1), ("bob", 1)],
        Duration::from_secs(3),
    )
    .await;
    alice_a1.close().await;
    alice_a2.close().await;
    presence_becomes(&mut bob_b, &room, &[("bob", 1)], Duration::from_secs(3)).await;
}

/// Many joins within a second reach a `presence:true` subscriber as at most two frames, a
/// second apart, and so do the leaves.
async fn joins_and_leaves_are_coalesced(gw: &TestGateway) {
    let room = format!("room-{}", support::unique());
    let mut watcher = member(gw, "watcher").await;
    subscribe(&mut watcher, &room, true).await;
    // Its own join comes first.
    let own = presence_frames(&mut watcher, Duration::from_millis(2500)).await;
    assert_eq!(
        names(&own, "joined"),
        BTreeSet::from(["watcher".to_owned()])
    );

    let users: Vec<String> = (0..30).map(|i| format!("u{i}")).collect();
    let mut sessions = Vec::new();
    for user in &users {
        let mut client = member(gw, user).await;
        subscribe(&mut client, &room, false).await;
        sessions.push(client);
    }
    let frames = presence_frames(&mut watcher, Duration::from_millis(3500)).await;
    assert!(
        (1..=2).contains(&frames.len()),
        "30 joins in {} frames: {frames:?}",
        frames.len()
    );
    assert_eq!(names(&frames, "joined"), users.iter().cloned().collect());
    assert!(names(&frames, "left").is_empty());
    if let [(first, _), (second, _)] = frames.as_slice() {
        assert!(
            second.duration_since(*first) >= Duration::from_millis(900),
            "two frames of one channel within a second"
        );
    }

    for client in sessions {
        client.close().await;
    }
    let frames = presence_frames(&mut watcher, Duration::from_millis(3500)).await;
    assert!(
        (1..=2).contains(&frames.len()),
        "30 leaves in {} frames: {frames:?}",
        frames.len()
    );
    assert_eq!(names(&frames, "left"), users.iter().cloned().collect());
    assert!(names(&frames, "joined").is_empty());
    assert_eq!(
        presence(&mut watcher, &room).await,
        [("watcher".to_owned(), 1)]
    );
}

#[tokio::test]
async fn presence_frames_are_coalesced_on_both_engines() {
    on_both_engines!(|gw| joins_and_leaves_are_coalesced(&gw).await, |_| {});
}

#[tokio::test]
async fn a_killed_node_has_its_members_gone_within_15_s() {
    let redis = RedisServer::start();
    let a = TestGateway::builder().redis(&redis).start().await;
    let mut b = Process::start(&["--redis-url", &redis.url()]).await;
    let room = format!("room-{}", support::unique());
    let mut watcher = member(&a, "watcher").await;
    subscribe(&mut watcher, &room, true).await;
    let mut carol = member_at(b.public, "carol").await;
    subscribe(&mut carol, &room, false).await;
    presence_becomes(
        &mut watcher,
        &room,
        &[("carol", 1), ("watcher", 1)],
        Duration::from_secs(3),
    )
    .await;
    // SIGKILL: no cleanup, no last write.
    b.child.kill().unwrap();
    let killed = Instant::now();
    presence_becomes(
        &mut watcher,
        &room,
        &[("watcher", 1)],
        Duration::from_secs(16),
    )
    .await;
    assert!(killed.elapsed() <= Duration::from_secs(16));
    // And the sweep of the node still running announces that carol left (the sweep runs with
    // its refresh, every 5 s after the memberships expired).
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut left = BTreeSet::new();
    while !left.contains("carol") && Instant::now() < deadline {
        let frames = presence_frames(&mut watcher, Duration::from_secs(1)).await;
        left.extend(names(&frames, "left"));
    }
    assert!(left.contains("carol"), "no `left` for carol");
}

#[tokio::test]
async fn presence_needs_the_right_to_subscribe_and_bad_frames_are_invalid() {
    let gw = TestGateway::builder().start().await;
    let mut client = member(&gw, "mallory").await;
    let refused = client
        .request(json!({"op": "presence", "channel": "secret", "ref": 1}))
        .await;
    assert_eq!(refused["op"], "error", "{refused}");
    assert_eq!(refused["code"], "forbidden", "{refused}");
    assert_eq!(refused["ref"], 1, "{refused}");
    for (frame, why) in [
        (
            json!({"op": "presence", "ref": 2}),
            "missing field `channel`",
        ),
        (
            json!({"op": "presence", "channel": "a b", "ref": 2}),
            "invalid channel",
        ),
        (
            json!({"op": "presence", "channel": ["room-1"], "ref": 2}),
            "`channel` must be a string",
        ),
        (
            json!({"op": "subscribe", "channel": "room-1", "presence": "yes", "ref": 2}),
            "`presence` must be true or false",
        ),
        (
            json!({"op": "subscribe", "queue": "q", "presence": true, "ref": 2}),
            "`presence` is only for channels",
        ),
    ] {
        let reply = client.request(frame.clone()).await;
        assert_eq!(reply["op"], "error", "{frame} -> {reply}");
        assert_eq!(reply["code"], "invalid", "{frame} -> {reply}");
        assert_eq!(reply["ref"], 2, "{frame} -> {reply}");
        let message = reply["message"].as_str().unwrap();
        assert!(message.contains(why), "{frame} -> {reply}");
    }
    // The session is still fine.
    subscribe(&mut client, "room-1", true).await;
    assert_eq!(
        presence(&mut client, "room-1").await,
        [("mallory".to_owned(), 1)]
    );
}

/// 100,000 memberships of distinct users, written through the engine in batches: listed in
/// bounded time, and one reply lists the first [`MAX_PRESENCE_USERS`] with the total.
async fn a_large_channel_is_listed_in_bounded_time(gw: &TestGateway) {
    const MEMBERS: usize = 100_000;
    let room = format!("room-big{}", support::unique());
    let presence_engine = gw.engine().await.presence;
    let sessions: Vec<(String, String)> = (0..MEMBERS)
        .map(|i| (format!("far/x/{i}"), format!("user{i:06}")))
        .collect();
    let started = Instant::now();
    for batch in sessions.chunks(10_000) {
        let members: Vec<Membership<'_>> = batch
            .iter()
            .map(|(session, user)| Membership {
                channel: &room,
                session,
                user,
            })
            .collect();
        presence_engine
            .add(&members, Duration::from_secs(120))
            .await
            .unwrap();
    }
    let written = started.elapsed();

    let started = Instant::now();
    let list = presence_engine
        .members(&room, MAX_PRESENCE_USERS)
        .await
        .unwrap();
    let listed = started.elapsed();
    assert_eq!(list.total, MEMBERS as u64);
    assert_eq!(list.users.len(), MAX_PRESENCE_USERS);
    assert_eq!(list.users[0], ("user000000".to_owned(), 1));
    eprintln!("100,000 members: written in {written:?}, listed in {listed:?}");
    assert!(listed < Duration::from_secs(5), "listed in {listed:?}");

    let mut client = member(gw, "reader").await;
    let started = Instant::now();
    let ok = client
        .request(json!({"op": "presence", "channel": room}))
        .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(ok["total"], MEMBERS, "total");
    assert_eq!(ok["users"].as_array().unwrap().len(), MAX_PRESENCE_USERS);
}

#[tokio::test]
async fn a_channel_of_100_000_members_is_listed_in_bounded_time() {
    on_both_engines!(
        |gw| a_large_channel_is_listed_in_bounded_time(&gw).await,
        |_| {}
    );
}
