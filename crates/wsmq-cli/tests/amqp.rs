//! `wsmq-cli --amqp-url …` against RabbitMQ: send, queue create | stats | delete and publish go
//! to the broker the way the gateways use it; the other commands say they need Redis. The
//! broker is `WSMQ_TEST_AMQP_URL`, or a `rabbitmq-server` node this test process starts.

mod support;

use serde_json::json;
use support::{Cli, closed_port};

/// `wsmq-cli --amqp-url URL --amqp-queue-prefix P --amqp-exchange X ARGS…`, with a prefix
/// and an exchange of this test's own.
struct Broker {
    url: String,
    prefix: String,
    exchange: String,
}

impl Broker {
    fn new(name: &str) -> Broker {
        let rabbit = wsmq_testkit::TestRabbit::shared("WSMQ_TEST_AMQP_URL");
        let id = format!("{name}{}", std::process::id());
        Broker {
            url: rabbit.url().to_owned(),
            prefix: format!("{id}."),
            exchange: format!("wsmq.direct.{id}"),
        }
    }

    fn cli(&self, args: &[&str]) -> Cli {
        Cli::plain()
            .args(&["--amqp-url", &self.url])
            .args(&["--amqp-queue-prefix", &self.prefix])
            .args(&["--amqp-exchange", &self.exchange])
            .args(args)
    }
}

#[test]
fn send_queue_and_publish_work_on_rabbitmq() {
    let broker = Broker::new("cli");
    let created = broker.cli(&["queue", "create", "jobs"]).run().ok();
    assert_eq!(created.stdout.trim(), "created queue 'jobs'");

    let sent = broker
        .cli(&["send", "--queue", "jobs", "--message", "hello"])
        .run()
        .ok();
    let id = sent.stdout.trim();
    assert_eq!(id.len(), 32, "{sent:?}");
    let lines = broker
        .cli(&["send", "--queue", "jobs", "--file", "-"])
        .stdin("one\n\ntwo\n")
        .run()
        .ok();
    assert_eq!(lines.lines().len(), 2, "{lines:?}");

    let stats = broker
        .cli(&["--json", "queue", "stats", "jobs"])
        .run()
        .json();
    assert_eq!(stats, json!({"queue": "jobs", "ready": 3, "consumers": 0}));

    // rsmq's rule: sending to a queue that does not exist fails (the publish is unroutable).
    let missing = broker
        .cli(&["send", "--queue", "nosuch", "--message", "x"])
        .run()
        .error();
    assert_eq!(missing, "error: queue 'nosuch' not found");

    let published = broker
        .cli(&[
            "--json",
            "publish",
            "--channel",
            "room.1",
            "--message",
            "hi",
        ])
        .run()
        .json();
    assert_eq!(published, json!({"channel": "room.1", "receivers": 0}));

    let deleted = broker.cli(&["queue", "delete", "jobs"]).run().ok();
    assert_eq!(deleted.stdout.trim(), "deleted queue 'jobs'");
    let gone = broker.cli(&["queue", "stats", "jobs"]).run().error();
    assert_eq!(gone, "error: queue 'jobs' not found");
}

/// `queue create` with --max-receives, --ttl and --dead-letter makes them the quorum queue's
/// arguments (docs/amqp.md) and declares the dead-letter queue; an existing queue is not
/// declared again, as on Redis.
#[test]
fn queue_create_takes_the_dead_letter_rules_on_rabbitmq() {
    let broker = Broker::new("clidl");
    let created = broker
        .cli(&[
            "queue",
            "create",
            "jobs",
            "--max-receives",
            "3",
            "--ttl",
            "60",
            "--dead-letter",
            "jobs-dead",
        ])
        .run()
        .ok();
    assert_eq!(created.stdout.trim(), "created queue 'jobs'");
    let dead = broker
        .cli(&["--json", "queue", "stats", "jobs-dead"])
        .run()
        .json();
    assert_eq!(dead["ready"], 0, "{dead}");
    let again = broker.cli(&["queue", "create", "jobs"]).run().error();
    assert_eq!(again, "error: queue 'jobs' already exists");
    let bad = broker
        .cli(&["queue", "create", "other", "--max-receives", "-1"])
        .run()
        .error();
    assert!(bad.contains("--max-receives"), "{bad}");
    let selfish = broker
        .cli(&["queue", "create", "other", "--dead-letter", "other"])
        .run()
        .error();
    assert!(selfish.contains("--dead-letter"), "{selfish}");
}

#[test]
fn commands_that_need_redis_say_so_and_passwords_stay_hidden() {
    let broker = Broker::new("cliref");
    let refused = broker.cli(&["receive", "--queue", "jobs"]).run().error();
    assert!(
        refused.contains("`receive` is not available with --amqp-url"),
        "{refused}"
    );
    let refused = broker
        .cli(&["queue", "create", "jobs", "--vt", "5"])
        .run()
        .error();
    assert!(refused.contains("--vt"), "{refused}");

    let url = format!("amqp://guest:sekrit-pw@127.0.0.1:{}/%2f", closed_port());
    let unreachable = Cli::plain()
        .args(&["--amqp-url", &url, "queue", "stats", "jobs"])
        .run()
        .error();
    assert!(
        unreachable.contains("cannot connect to RabbitMQ"),
        "{unreachable}"
    );
    assert!(!unreachable.contains("sekrit"), "{unreachable}");
    let bad = Cli::plain()
        .args(&[
            "--amqp-url",
            "amqps://guest:sekrit-pw@h/",
            "queue",
            "stats",
            "q",
        ])
        .run()
        .error();
    assert!(bad.contains("amqps://") && !bad.contains("sekrit"), "{bad}");
}
