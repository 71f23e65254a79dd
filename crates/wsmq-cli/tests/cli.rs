//! End-to-end tests of the built `wsmq-cli` binary against a real `redis-server`: every command,
//! text and `--json` output, and the error paths (one `error:` line, exit 1).

mod support;

use std::time::Duration;

use redis::Commands;
use serde_json::{Value, json};
use support::{Cli, TestRedis, closed_port, temp_file};
use wsmq_proto::{AccessToken, JwtVerifier};

// ---- send / receive ----

#[test]
fn send_prints_the_id_and_receive_gets_the_message() {
    let redis = TestRedis::start();
    redis.cli(&["queue", "create", "jobs"]).ok();

    let sent = redis
        .cli(&["send", "--queue", "jobs", "--message", "hello world"])
        .ok();
    let id = sent.stdout.trim();
    assert_eq!(id.len(), 32, "{sent:?}");

    let got = redis.cli(&["--json", "receive", "--queue", "jobs"]).json();
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["id"], id);
    assert_eq!(got[0]["message"], "hello world");
    assert_eq!(got[0]["rc"], 1);
    assert!(got[0]["sent"].as_u64().unwrap() > 1_600_000_000_000);
}

#[test]
fn send_json_names_queue_and_id_and_respects_delay() {
    let redis = TestRedis::start();
    redis.cli(&["queue", "create", "jobs"]).ok();

    let sent = redis
        .cli(&[
            "send", "-q", "jobs", "-m", "later", "--delay", "3600", "--json",
        ])
        .json();
    assert_eq!(sent["queue"], "jobs");
    assert_eq!(sent["id"].as_str().unwrap().len(), 32);

    // Delayed: counted, but hidden, so there is nothing to receive yet.
    let stats = redis.cli(&["--json", "queue", "stats", "jobs"]).json();
    assert_eq!(
        (stats["msgs"].as_u64(), stats["hiddenmsgs"].as_u64()),
        (Some(1), Some(1))
    );
    let got = redis.cli(&["--json", "receive", "--queue", "jobs"]).json();
    assert_eq!(got, json!([]));
}

#[test]
fn send_file_sends_every_line_in_pipelined_batches() {
    let redis = TestRedis::start();
    redis.cli(&["queue", "create", "bulk"]).ok();
    let lines: Vec<String> = (0..1000).map(|i| format!("message {i}")).collect();
    // A blank line in the middle and CRLF endings must not become messages or bytes.
    let mut text = lines[..500].join("\r\n");
    text.push_str("\r\n\r\n");
    text.push_str(&lines[500..].join("\n"));
    text.push('\n');
    let path = temp_file("bulk.txt", &text);

    let run = redis
        .cli(&[
            "--json",
            "send",
            "--queue",
            "bulk",
            "--file",
            path.to_str().unwrap(),
        ])
        .ok();
    assert!(
        run.stderr.contains("sent 1000 messages to queue 'bulk'"),
        "{run:?}"
    );
    let ids: Vec<String> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(ids.len(), 1000);
    // Ids start with the send time in base 36, so in line order they never go backwards.
    assert!(
        ids.windows(2).all(|w| w[0][..10] <= w[1][..10]),
        "ids out of order"
    );
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 1000);

    let got = redis
        .cli(&["--json", "receive", "--queue", "bulk", "--count", "1000"])
        .json();
    let mut bodies: Vec<&str> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    bodies.sort();
    let mut expected: Vec<&str> = lines.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(bodies, expected);
}

#[test]
fn send_file_dash_reads_stdin_and_prints_one_id_per_line() {
    let redis = TestRedis::start();
    redis.cli(&["queue", "create", "piped"]).ok();

    let run = redis
        .command(&["send", "--queue", "piped", "--file", "-"])
        .stdin("one\ntwo\nthree\n")
        .run()
        .ok();
    let ids = run.lines();
    assert_eq!(ids.len(), 3, "{run:?}");
    assert!(ids.iter().all(|id| id.len() == 32));
    assert!(run.stderr.contains("sent 3 messages"), "{run:?}");

    let stats = redis.cli(&["--json", "queue", "stats", "piped"]).json();
    assert_eq!(stats["msgs"], 3);
    assert_eq!(stats["totalsent"], 3);
}

#[test]
fn send_file_to_a_missing_queue_fails_before_reading_input() {
    let redis = TestRedis::start();
    let line = redis
        .command(&["send", "--queue", "nope", "--file", "-"])
        .stdin("never sent\n")
        .run()
        .error();
    assert_eq!(line, "error: queue 'nope' not found");
}

#[test]
fn send_file_names_the_line_that_is_too_long() {
    let redis = TestRedis::start();
    redis
        .cli(&["queue", "create", "small", "--maxsize", "1024"])
        .ok();
    let text = format!("short\n{}\n", "x".repeat(1025));
    let path = temp_file("long.txt", &text);

    let line = redis
        .cli(&["send", "-q", "small", "-f", path.to_str().unwrap()])
        .error();
    assert!(line.contains("line 2 of"), "{line}");
    assert!(line.contains("maxsize of queue 'small' (1024)"), "{line}");
}

#[test]
fn send_file_that_does_not_exist_is_reported() {
    let redis = TestRedis::start();
    let line = redis
        .cli(&["send", "-q", "jobs", "-f", "/nonexistent/wsmq.txt"])
        .error();
    assert!(
        line.starts_with("error: cannot open /nonexistent/wsmq.txt"),
        "{line}"
    );
}

#[test]
fn receive_prints_one_line_per_message_and_leaves_them_hidden() {
    let redis = TestRedis::start();
    redis.cli(&["queue", "create", "jobs"]).ok();
    redis
        .cli(&["send", "-q", "jobs", "-m", "line one\nline two"])
        .ok();

    let run = redis
        .cli(&["receive", "--queue", "jobs", "--vt", "60"])
        .ok();
    let lines = run.lines();
    assert_eq!(lines.len(), 1, "{run:?}");
    assert!(lines[0].contains("rc=1"), "{run:?}");
    assert!(lines[0].ends_with("line one\\nline two"), "{run:?}");

    // Not deleted: still in the queue, hidden for the vt.
    let stats = redis.cli(&["--json", "queue", "stats", "jobs"]).json();
    assert_eq!(
        (stats["msgs"].as_u64(), stats["hiddenmsgs"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(stats["totalrecv"], 1);
}

#[test]
fn receive_delete_removes_what_it_printed() {
    let redis = TestRedis::start();
    redis.cli(&["queue", "create", "jobs"]).ok();
    for body in ["a", "b", "c"] {
        redis.cli(&["send", "-q", "jobs", "-m", body]).ok();
    }

    let run = redis
        .cli(&["--json", "receive", "-q", "jobs", "-n", "10", "--delete"])
        .ok();
    assert!(run.stderr.contains("deleted 3 of 3 messages"), "{run:?}");
    let got: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(got.as_array().unwrap().len(), 3);

    let stats = redis.cli(&["--json", "queue", "stats", "jobs"]).json();
    assert_eq!(stats["msgs"], 0);
}

#[test]
fn receive_from_an_empty_queue_says_so() {
    let redis = TestRedis::start();
    redis.cli(&["queue", "create", "idle"]).ok();
    let run = redis.cli(&["receive", "-q", "idle"]).ok();
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("no message available in queue 'idle'"),
        "{run:?}"
    );
}

// ---- publish ----

#[test]
fn publish_reaches_the_channel_and_counts_receivers() {
    let redis = TestRedis::start();
    let channel = redis.unique("news");
    let mut conn = redis.conn();
    let mut pubsub = conn.as_pubsub();
    pubsub.subscribe(format!("wsmq:ch:{channel}")).unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let out = redis
        .cli(&[
            "--json",
            "publish",
            "--channel",
            &channel,
            "--message",
            "hi all",
        ])
        .json();
    assert_eq!(out, json!({ "channel": channel, "receivers": 1 }));
    let msg = pubsub.get_message().unwrap();
    assert_eq!(msg.get_payload::<String>().unwrap(), "hi all");

    let run = redis.cli(&["publish", "-c", &channel, "-m", "again"]).ok();
    assert!(run.stdout.contains("received by 1 node"), "{run:?}");
}

#[test]
fn publish_rejects_an_invalid_channel_name() {
    let redis = TestRedis::start();
    let line = redis.cli(&["publish", "-c", "a/b", "-m", "x"]).error();
    assert!(
        line.starts_with("error: invalid channel name 'a/b'"),
        "{line}"
    );
}

#[test]
fn channel_history_prints_the_latest_publications_oldest_first() {
    let redis = TestRedis::start();
    let channel = redis.unique("room");
    let mut conn = redis.conn();
    // The layout the gateways write (wsmq_proto::keys).
    for (offset, body) in [(3, "three"), (4, "four"), (5, "five\nlines")] {
        let _: String = redis::cmd("XADD")
            .arg(format!("wsmq:hist:{{{channel}}}"))
            .arg(format!("{offset}-0"))
            .arg("m")
            .arg(body)
            .arg("t")
            .arg(1_700_000_000_000u64 + offset)
            .query(&mut conn)
            .unwrap();
    }
    let _: () = redis::cmd("HSET")
        .arg(format!("wsmq:hist:{{{channel}}}:pos"))
        .arg("epoch")
        .arg("Ep0ch")
        .arg("offset")
        .arg(5)
        .query(&mut conn)
        .unwrap();

    let out = redis
        .cli(&["--json", "channel", "history", &channel, "--limit", "2"])
        .json();
    assert_eq!(
        out,
        json!({"channel": channel, "epoch": "Ep0ch", "offset": 5, "messages": [
            {"offset": 4, "sent": 1_700_000_000_004u64, "message": "four"},
            {"offset": 5, "sent": 1_700_000_000_005u64, "message": "five\nlines"},
        ]})
    );
    let out = redis
        .cli(&["--json", "channel", "history", &channel, "--before", "4"])
        .json();
    assert_eq!(
        out["messages"],
        json!([{"offset": 3, "sent": 1_700_000_000_003u64, "message": "three"}])
    );
    let run = redis.cli(&["channel", "history", &channel]).ok();
    assert!(
        run.stdout.contains("epoch Ep0ch, latest offset 5"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("five\\nlines"),
        "one line per message: {run:?}"
    );
    assert_eq!(run.stdout.lines().count(), 5, "{run:?}");

    let line = redis
        .cli(&["channel", "history", &redis.unique("none")])
        .error();
    assert!(line.contains("has no history"), "{line}");
    let line = redis
        .cli(&["channel", "history", &channel, "--limit", "1001"])
        .error();
    assert!(line.contains("--limit must be from 1 to 1000"), "{line}");
    let line = redis.cli(&["channel", "history", "a/b"]).error();
    assert!(line.starts_with("error: invalid channel name"), "{line}");
}

// ---- queue ----

#[test]
fn queue_create_list_stats_set_delete() {
    let redis = TestRedis::start();
    let run = redis.cli(&["queue", "list"]).ok();
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("no queues in namespace"), "{run:?}");

    let created = redis
        .cli(&[
            "--json",
            "queue",
            "create",
            "orders",
            "--vt",
            "60",
            "--maxsize",
            "-1",
        ])
        .json();
    assert_eq!(created, json!({ "queue": "orders", "created": true }));
    redis.cli(&["queue", "create", "audit"]).ok();

    assert_eq!(
        redis.cli(&["queue", "list"]).ok().lines(),
        ["audit", "orders"]
    );
    assert_eq!(
        redis.cli(&["queue", "list", "--json"]).json(),
        json!(["audit", "orders"])
    );

    let stats = redis.cli(&["--json", "queue", "stats", "orders"]).json();
    assert_eq!(stats["queue"], "orders");
    assert_eq!(stats["vt"], 60);
    assert_eq!(stats["delay"], 0);
    assert_eq!(stats["maxsize"], -1);
    assert_eq!(stats["msgs"], 0);
    assert!(stats["created"].as_u64().unwrap() > 1_600_000_000);

    let text = redis.cli(&["queue", "stats", "orders"]).ok();
    assert!(
        text.stdout.contains("maxsize:        unlimited"),
        "{text:?}"
    );

    let updated = redis
        .cli(&[
            "--json",
            "queue",
            "set",
            "orders",
            "--delay",
            "5",
            "--maxsize",
            "2048",
        ])
        .json();
    assert_eq!(
        (updated["vt"].as_u64(), updated["delay"].as_u64()),
        (Some(60), Some(5))
    );
    assert_eq!(updated["maxsize"], 2048);

    let deleted = redis.cli(&["--json", "queue", "delete", "orders"]).json();
    assert_eq!(deleted, json!({ "queue": "orders", "deleted": true }));
    assert_eq!(redis.cli(&["queue", "list"]).ok().lines(), ["audit"]);
    let line = redis.cli(&["queue", "stats", "orders"]).error();
    assert_eq!(line, "error: queue 'orders' not found");
}

#[test]
fn queue_errors_are_one_line() {
    let redis = TestRedis::start();
    redis.cli(&["queue", "create", "q"]).ok();
    assert_eq!(
        redis.cli(&["queue", "create", "q"]).error(),
        "error: queue 'q' already exists"
    );
    assert_eq!(
        redis.cli(&["queue", "set", "q"]).error(),
        "error: nothing to change: give --vt, --delay, --maxsize, --max-receives, --ttl, \
         --dead-letter or --no-dead-letter"
    );
    assert_eq!(
        redis.cli(&["queue", "set", "q", "--maxsize", "10"]).error(),
        "error: maxsize must be between 1024 and 65536"
    );
    assert_eq!(
        redis.cli(&["queue", "delete", "missing"]).error(),
        "error: queue 'missing' not found"
    );
}

#[test]
fn queue_rules_are_set_shown_and_cleared() {
    let redis = TestRedis::start();
    let created = redis
        .cli(&[
            "--json",
            "queue",
            "create",
            "jobs",
            "--max-receives",
            "3",
            "--dead-letter",
            "jobs-dead",
            "--ttl",
            "3600",
        ])
        .json();
    assert_eq!(created, json!({ "queue": "jobs", "created": true }));
    let stats = redis.cli(&["--json", "queue", "stats", "jobs"]).json();
    assert_eq!(
        (
            &stats["maxreceives"],
            &stats["ttl"],
            &stats["deadletter"],
            &stats["totaldead"]
        ),
        (&json!(3), &json!(3600), &json!("jobs-dead"), &json!(0))
    );
    let text = redis.cli(&["queue", "stats", "jobs"]).ok().stdout;
    for row in [
        "max receives:   3",
        "ttl:            3600 s",
        "dead-letter:    jobs-dead",
        "total dead:     0",
    ] {
        assert!(text.contains(row), "{row:?} in {text}");
    }

    let cleared = redis
        .cli(&[
            "--json",
            "queue",
            "set",
            "jobs",
            "--max-receives",
            "0",
            "--ttl",
            "0",
            "--no-dead-letter",
        ])
        .json();
    assert_eq!(
        (
            &cleared["maxreceives"],
            &cleared["ttl"],
            &cleared["deadletter"]
        ),
        (&json!(0), &json!(0), &json!(null))
    );
    let text = redis.cli(&["queue", "stats", "jobs"]).ok().stdout;
    assert!(text.contains("max receives:   no limit"), "{text}");
    assert!(text.contains("dead-letter:    none"), "{text}");
}

#[test]
fn bad_queue_rules_are_refused_with_one_line() {
    let redis = TestRedis::start();
    redis.cli(&["queue", "create", "jobs"]).ok();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--max-receives", "-1"],
            "error: --max-receives must be a whole number from 0 to 1000000 (0: no limit), not '-1'",
        ),
        (
            &["--max-receives", "three"],
            "error: --max-receives must be a whole number from 0 to 1000000 (0: no limit), not 'three'",
        ),
        (
            &["--ttl", "-5"],
            "error: --ttl must be a whole number from 0 to 9999999 seconds (0: never), not '-5'",
        ),
        (
            &["--ttl", "10000000"],
            "error: --ttl must be a whole number from 0 to 9999999 seconds (0: never), not '10000000'",
        ),
        (
            &["--dead-letter", "jobs"],
            "error: --dead-letter cannot be the queue itself ('jobs')",
        ),
        (
            &["--dead-letter", "bad name"],
            "error: --dead-letter: invalid queue name 'bad name' (allowed: A-Z a-z 0-9 _ -, 1 to 160 chars)",
        ),
    ];
    for (flags, line) in cases {
        for command in ["create", "set"] {
            let mut args = vec!["queue", command, "jobs"];
            args.extend_from_slice(flags);
            assert_eq!(redis.cli(&args).error(), line, "{args:?}");
        }
    }
    let stats = redis.cli(&["--json", "queue", "stats", "jobs"]).json();
    assert_eq!(
        (&stats["maxreceives"], &stats["deadletter"]),
        (&json!(0), &json!(null))
    );
}

#[test]
fn queue_redrive_moves_dead_messages_back_with_their_ids() {
    let redis = TestRedis::start();
    redis.cli(&["queue", "create", "jobs"]).ok();
    redis.cli(&["queue", "create", "jobs-dead"]).ok();
    let input = (0..25).map(|i| format!("m{i}\n")).collect::<String>();
    let run = redis
        .command(&["send", "--queue", "jobs-dead", "--file", "-"])
        .stdin(input)
        .run()
        .ok();
    let mut sent: Vec<String> = run.lines().into_iter().map(str::to_owned).collect();
    assert_eq!(sent.len(), 25);

    let some = redis
        .cli(&[
            "--json",
            "queue",
            "redrive",
            "jobs-dead",
            "--to",
            "jobs",
            "--count",
            "10",
        ])
        .json();
    assert_eq!(
        some,
        json!({ "from": "jobs-dead", "to": "jobs", "moved": 10, "left": 15 })
    );
    let rest = redis
        .cli(&["queue", "redrive", "jobs-dead", "--to", "jobs"])
        .ok();
    assert_eq!(
        rest.lines(),
        ["moved 15 messages from 'jobs-dead' to 'jobs' (0 left in 'jobs-dead')"]
    );
    let got = redis
        .cli(&["--json", "receive", "--queue", "jobs", "--count", "100"])
        .json();
    let mut ids: Vec<String> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    sent.sort();
    assert_eq!(ids, sent);

    assert_eq!(
        redis
            .cli(&["queue", "redrive", "jobs", "--to", "jobs"])
            .error(),
        "error: --to names the queue itself ('jobs'): nothing to move"
    );
    assert_eq!(
        redis
            .cli(&["queue", "redrive", "jobs-dead", "--to", "missing"])
            .error(),
        "error: queue 'missing' not found"
    );
}

#[test]
fn invalid_queue_names_are_refused_before_connecting() {
    // The closed port proves no connection was attempted: the name is the error.
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let line = Cli::plain()
        .args(&["--redis-url", &url, "queue", "create", "a b"])
        .run()
        .error();
    assert_eq!(
        line,
        "error: invalid queue name 'a b' (allowed: A-Z a-z 0-9 _ -, 1 to 160 chars)"
    );
}

// ---- token ----

#[test]
fn token_issue_prints_a_valid_jwt_and_registers_the_access_token() {
    let redis = TestRedis::start();
    let user = redis.unique("alice");
    let out = redis
        .command(&["--json", "token", "issue", "--user", &user, "--ttl", "1h"])
        .env("WSMQ_JWT_SECRET", "jwt-secret")
        .run()
        .json();
    assert_eq!(out["user"], user.as_str());

    let mut conn = redis.conn();
    let (now, _micros): (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
    let expires = out["expires"].as_u64().unwrap();
    assert!((now + 3590..=now + 3600).contains(&expires), "{out}");

    let jwt = out["jwt"].as_str().unwrap();
    let claims = JwtVerifier::hs256(b"jwt-secret")
        .unwrap()
        .verify(jwt, now)
        .unwrap();
    assert_eq!(claims.sub, user);
    assert_eq!(claims.exp, expires);
    assert!(claims.iat.is_some());
    assert_eq!(claims.wsmq, None);

    // The access token secret defaults to the JWT secret, as in tokens2.
    let access = out["access_token"].as_str().unwrap();
    assert_eq!(
        AccessToken::parse(b"jwt-secret", access)
            .unwrap()
            .user_id
            .as_str(),
        user
    );
    let registered: bool = conn
        .sismember(format!("wsmq:access:{user}"), access)
        .unwrap();
    assert!(registered);
}

#[test]
fn token_issue_with_grants_and_a_separate_access_secret() {
    let redis = TestRedis::start();
    let user = redis.unique("bot");
    let out = redis
        .command(&["--json", "token", "issue", "--user", &user])
        .args(&["--consume", "jobs-*", "--subscribe", "news*"])
        .args(&["--publish", "channel:news", "--publish", "queue:jobs-*"])
        .args(&["--jwt-secret", "s1", "--access-token-secret", "s2"])
        .run()
        .json();

    let claims = JwtVerifier::hs256(b"s1")
        .unwrap()
        .verify(
            out["jwt"].as_str().unwrap(),
            out["expires"].as_u64().unwrap() - 60,
        )
        .unwrap();
    let grants = claims.wsmq.expect("grants");
    assert_eq!(grants.consume, ["jobs-*"]);
    assert_eq!(grants.subscribe, ["news*"]);
    assert_eq!(grants.publish, ["channel:news", "queue:jobs-*"]);

    let access = out["access_token"].as_str().unwrap();
    assert!(AccessToken::parse(b"s2", access).is_ok());
    assert!(AccessToken::parse(b"s1", access).is_err());
}

#[test]
fn token_issue_labels_both_tokens_in_text() {
    let redis = TestRedis::start();
    let user = redis.unique("carol");
    let run = redis
        .command(&["token", "issue", "--user", &user])
        .env("WSMQ_JWT_SECRET", "topsecret")
        .run()
        .ok();
    let labels: Vec<&str> = run
        .lines()
        .iter()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["user", "expires", "jwt", "access token"],
        "{run:?}"
    );
    assert!(!run.stdout.contains("topsecret"));
}

#[test]
fn token_issue_without_a_secret_fails_before_connecting() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let line = Cli::plain()
        .args(&["--redis-url", &url, "token", "issue", "--user", "u"])
        .run()
        .error();
    assert!(
        line.starts_with("error: missing --jwt-secret (or WSMQ_JWT_SECRET)"),
        "{line}"
    );
}

#[test]
fn token_revoke_removes_the_tokens_and_announces_it() {
    let redis = TestRedis::start();
    let user = redis.unique("dave");
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let out = redis
            .command(&["--json", "token", "issue", "--user", &user])
            .env("WSMQ_JWT_SECRET", "s")
            .run()
            .json();
        tokens.push(out["access_token"].as_str().unwrap().to_owned());
    }
    let mut conn = redis.conn();
    let key = format!("wsmq:access:{user}");
    let registered: usize = conn.scard(&key).unwrap();
    // Two issues in the same second may give the same token; both are registered either way.
    assert!((1..=2).contains(&registered));

    let mut listener = redis.conn();
    let mut pubsub = listener.as_pubsub();
    pubsub.subscribe("wsmq:revoke").unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let out = redis
        .cli(&["--json", "token", "revoke", "--user", &user])
        .json();
    assert_eq!(out["user"], user.as_str());
    assert_eq!(out["revoked"], registered);
    // Our subscriber, plus any gateway that shares the Redis.
    let notified = out["nodes_notified"].as_u64().unwrap();
    assert!(notified == 1 || (redis.shared() && notified > 1), "{out}");
    for token in &tokens {
        let still: bool = conn.sismember(&key, token).unwrap();
        assert!(!still);
    }
    // Other tests on a shared Redis may revoke too; ours must be among the announcements.
    loop {
        let msg = pubsub.get_message().expect("the revocation is announced");
        if msg.get_payload::<String>().unwrap() == user {
            break;
        }
    }

    let run = redis.cli(&["token", "revoke", "--user", &user]).ok();
    assert!(run.stdout.contains("revoked 0 access tokens"), "{run:?}");
}

/// `token revoke` marks the user revoked at Redis' clock, for as long as a JWT issued before
/// can live: the gateways refuse every JWT of the user issued until then.
#[test]
fn token_revoke_sets_the_users_revocation_mark() {
    let redis = TestRedis::start();
    let user = redis.unique("erin");
    let mut conn = redis.conn();
    let (before, _micros): (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
    redis.cli(&["token", "revoke", "--user", &user]).ok();
    let key = wsmq_proto::keys::revoked(&user);
    let mark: u64 = conn.get(&key).expect("a revocation mark");
    let (after, _micros): (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
    let out = redis
        .cli(&["--json", "token", "revoke", "--user", &user])
        .json();
    let until = out["jwts_issued_until"].as_u64().unwrap();
    assert!((after..after + 5).contains(&until), "{out}");
    assert!(
        (before..=after).contains(&mark),
        "{before} <= {mark} <= {after}"
    );
    let ttl: u64 = conn.ttl(&key).unwrap();
    let horizon = wsmq_proto::keys::REVOCATION_TTL_SECS;
    assert!(
        ttl > wsmq_proto::token::MAX_JWT_LIFETIME_SECS && ttl <= horizon,
        "{ttl}"
    );
    // A mark never moves back (a second revoke, or a clock that jumped back).
    let ahead = mark + 3;
    let _: () = conn.set_ex(&key, ahead, 60).unwrap();
    redis.cli(&["token", "revoke", "--user", &user]).ok();
    assert_eq!(conn.get::<_, u64>(&key).unwrap(), ahead);
}

/// A token issued right after a revoke (a credential rotation) is not caught by it: issuing
/// waits until Redis' clock is past the mark.
#[test]
fn token_issue_right_after_a_revoke_issues_a_token_past_the_mark() {
    let redis = TestRedis::start();
    let user = redis.unique("frank");
    redis.cli(&["token", "revoke", "--user", &user]).ok();
    let out = redis
        .command(&["--json", "token", "issue", "--user", &user])
        .env("WSMQ_JWT_SECRET", "s")
        .run()
        .json();
    let mark: u64 = redis
        .conn()
        .get(wsmq_proto::keys::revoked(&user))
        .expect("a revocation mark");
    let exp = out["expires"].as_u64().unwrap();
    let claims = JwtVerifier::hs256(b"s")
        .unwrap()
        .verify(out["jwt"].as_str().unwrap(), exp - 60)
        .unwrap();
    assert!(claims.iat.unwrap() > mark, "{claims:?} vs mark {mark}");
}

/// Gateways that require an issuer and an audience accept what `token issue` prints with the
/// same values.
#[test]
fn token_issue_sets_the_issuer_and_audience() {
    let redis = TestRedis::start();
    let user = redis.unique("grace");
    let out = redis
        .command(&["--json", "token", "issue", "--user", &user])
        .args(&["--issuer", "https://id.example", "--audience", "wsmq"])
        .env("WSMQ_JWT_SECRET", "s")
        .run()
        .json();
    let exp = out["expires"].as_u64().unwrap();
    let claims = JwtVerifier::hs256(b"s")
        .unwrap()
        .with_issuer("https://id.example")
        .with_audience("wsmq")
        .verify(out["jwt"].as_str().unwrap(), exp - 60)
        .expect("the issuer and audience are set");
    assert_eq!(claims.sub, user);
    // The same from the gateways' environment variables.
    let out = redis
        .command(&["--json", "token", "issue", "--user", &user])
        .env("WSMQ_JWT_SECRET", "s")
        .env("WSMQ_JWT_ISSUER", "https://id.example")
        .env("WSMQ_JWT_AUDIENCE", "wsmq")
        .run()
        .json();
    JwtVerifier::hs256(b"s")
        .unwrap()
        .with_issuer("https://id.example")
        .with_audience("wsmq")
        .verify(out["jwt"].as_str().unwrap(), exp - 60)
        .expect("the issuer and audience are set from the environment");
}

#[test]
fn token_issue_refuses_a_lifetime_the_gateways_would_refuse() {
    let redis = TestRedis::start();
    let line = redis
        .command(&["token", "issue", "--user", "u", "--ttl", "31d"])
        .env("WSMQ_JWT_SECRET", "jwt-secret")
        .run()
        .error();
    assert_eq!(
        line,
        "error: --ttl must be at most 30d (the longest JWT lifetime the gateways accept)"
    );
}

// ---- nodes ----

#[test]
fn nodes_lists_live_heartbeats() {
    let redis = TestRedis::start();
    let id = redis.unique("gw");
    let heartbeat = json!({
        "id": id,
        "addr": "10.0.0.7:3000",
        "started": 1_700_000_000u64,
        "connections": 42,
        "subscriptions": 57,
        "version": "0.1.0",
        "draining": true,
    });
    let mut conn = redis.conn();
    let _: () = conn
        .set_ex(format!("wsmq:node:{id}"), heartbeat.to_string(), 60)
        .unwrap();
    // A stray key under the pattern must be skipped with a warning, not fail the listing.
    let stray = redis.unique("stray");
    let _: () = conn
        .set_ex(format!("wsmq:node:{stray}"), "not json", 60)
        .unwrap();

    let nodes = redis.cli(&["--json", "nodes"]).json();
    let ours = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id.as_str())
        .expect("our node is listed");
    assert_eq!(ours["addr"], "10.0.0.7:3000");
    assert_eq!(ours["connections"], 42);
    assert_eq!(ours["draining"], true);
    assert!(ours["uptime"].as_u64().unwrap() > 0);

    let run = redis.cli(&["nodes"]).ok();
    let header = run.lines()[0].split_whitespace().collect::<Vec<_>>();
    assert_eq!(
        header,
        [
            "ID",
            "ADDR",
            "CONNECTIONS",
            "SUBSCRIPTIONS",
            "UPTIME",
            "DRAINING",
            "VERSION"
        ]
    );
    let row = run
        .lines()
        .into_iter()
        .find(|l| l.starts_with(&id))
        .expect("our node's row");
    assert!(
        row.contains("10.0.0.7:3000") && row.contains("yes"),
        "{row}"
    );
    assert!(
        run.stderr.contains(&format!("skipping wsmq:node:{stray}")),
        "{run:?}"
    );
}

#[test]
fn nodes_without_heartbeats_says_so() {
    let redis = TestRedis::start();
    if redis.shared() {
        eprintln!("skipped: a shared Redis may hold other nodes' heartbeats");
        return;
    }
    let run = redis.cli(&["nodes"]).ok();
    assert_eq!(run.stdout, "no live nodes\n");
    assert_eq!(redis.cli(&["nodes", "--json"]).json(), json!([]));
}

// ---- connection, environment, help ----

#[test]
fn unreachable_redis_is_one_line_without_the_password() {
    let port = closed_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let run = Cli::plain()
        .args(&["--redis-url", &url, "queue", "list"])
        .run();
    assert!(!run.stderr.contains("hunter2"), "{run:?}");
    let line = run.error();
    assert!(
        line.starts_with(&format!(
            "error: cannot connect to redis at redis://***@127.0.0.1:{port}: "
        )),
        "{line}"
    );
    assert!(line.to_lowercase().contains("connection refused"), "{line}");
}

#[test]
fn redis_url_and_namespace_come_from_the_environment() {
    let redis = TestRedis::start();
    Cli::plain()
        .args(&["queue", "create", "from-env"])
        .env("WSMQ_REDIS_URL", redis.url())
        .env("WSMQ_RSMQ_NS", redis.ns())
        .run()
        .ok();
    // The same queue, seen through the flags.
    assert_eq!(redis.cli(&["queue", "list"]).ok().lines(), ["from-env"]);
}

#[test]
fn every_command_has_help() {
    let commands: [&[&str]; 14] = [
        &[],
        &["send"],
        &["receive"],
        &["publish"],
        &["queue"],
        &["queue", "list"],
        &["queue", "stats"],
        &["queue", "create"],
        &["queue", "set"],
        &["queue", "delete"],
        &["token"],
        &["token", "issue"],
        &["token", "revoke"],
        &["nodes"],
    ];
    for command in commands {
        let run = Cli::plain().args(command).args(&["--help"]).run().ok();
        assert!(
            run.stdout.contains("Usage: wsmq-cli"),
            "{command:?}: {run:?}"
        );
        assert!(run.stdout.contains("--redis-url"), "{command:?}: {run:?}");
    }
}
