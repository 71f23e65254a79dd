//! The CLI's edges: `users/` user ids, revoking nothing, and `send --file` when a later batch
//! fails or a line has no end.

mod support;

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use redis::Commands;
use support::{TestRedis, temp_file};
use wsmq_proto::{AccessToken, JwtVerifier};

/// `--user users/X` is user `X` for the JWT, the access token and its registry key alike, and
/// `revoke --user users/X` revokes what `issue` registered.
#[test]
fn token_issue_and_revoke_take_users_slash_as_the_same_user() {
    let redis = TestRedis::start();
    let user = redis.unique("erin");
    let prefixed = format!("users/{user}");
    let out = redis
        .command(&["--json", "token", "issue", "--user", &prefixed])
        .env("WSMQ_JWT_SECRET", "s")
        .run()
        .json();
    assert_eq!(out["user"], user.as_str(), "{out}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = JwtVerifier::hs256(b"s")
        .unwrap()
        .verify(out["jwt"].as_str().unwrap(), now)
        .unwrap();
    assert_eq!(claims.sub, user);
    let access = AccessToken::parse(b"s", out["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(access.user_id.as_str(), user, "{access:?}");
    let mut conn = redis.conn();
    let registered: usize = conn.scard(format!("wsmq:access:{user}")).unwrap();
    assert_eq!(registered, 1);
    let none: usize = conn.scard(format!("wsmq:access:{prefixed}")).unwrap();
    assert_eq!(none, 0);

    let out = redis
        .cli(&["--json", "token", "revoke", "--user", &prefixed])
        .json();
    assert_eq!(out["revoked"], 1, "{out}");
}

/// Revoking a user with no registered token says so on stderr (most often a typo).
#[test]
fn token_revoke_of_nothing_warns() {
    let redis = TestRedis::start();
    let user = redis.unique("nobody");
    let run = redis.cli(&["token", "revoke", "--user", &user]).ok();
    assert!(run.stderr.contains("warning:"), "{run:?}");
    assert!(
        run.stderr.contains("no registered access tokens"),
        "{run:?}"
    );
}

/// When the input goes bad after some batches were sent, their ids are printed before the
/// error, so that a rerun can leave those lines out instead of sending them twice.
#[test]
fn send_file_prints_the_ids_of_batches_sent_before_a_failure() {
    let redis = TestRedis::start();
    let queue = redis.unique("partial");
    redis
        .cli(&["queue", "create", &queue, "--maxsize", "1024"])
        .ok();
    let mut text = String::new();
    for n in 0..700 {
        text.push_str(&format!("m{n}\n"));
    }
    text.push_str(&"x".repeat(2000));
    text.push('\n');
    let path = temp_file("partial.txt", &text);
    let run = redis
        .command(&["send", "-q", &queue, "-f", path.to_str().unwrap()])
        .run();
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("line 701"), "{run:?}");
    let ids = run.lines();
    // The first batch (500 lines) went out; the second held the bad line and did not.
    assert_eq!(ids.len(), 500, "{run:?}");
    assert!(ids.iter().all(|id| id.len() == 32), "{run:?}");
    let stats = redis.cli(&["--json", "queue", "stats", &queue]).json();
    assert_eq!(stats["msgs"], 500, "{stats}");
}

/// A line with no end is not read whole: past the longest line the queue's maxsize allows,
/// the command stops with an error naming the line.
#[test]
fn send_file_stops_reading_a_line_longer_than_the_maxsize_could_be() {
    let redis = TestRedis::start();
    let queue = redis.unique("endless");
    redis
        .cli(&["queue", "create", &queue, "--maxsize", "1024"])
        .ok();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsmq-cli"))
        .args(["--redis-url", redis.url(), "--ns", redis.ns()])
        .args(["send", "-q", &queue, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // An endless line: the writer stops only when the command closes its end.
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        while stdin.write_all(&chunk).is_ok() {}
    });
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("still reading the endless line after 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 1 of stdin is longer than"),
        "{stderr}"
    );
}
