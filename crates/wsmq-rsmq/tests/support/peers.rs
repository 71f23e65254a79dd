//! Both rsmq implementations on one Redis and one namespace, behind one set of
//! operations: [`Peers`] runs each operation on the [`Side`] asked for and returns the
//! same Rust types either way, so interop tests can be written once and run in both
//! directions.
//!
//! Node's replies are decoded strictly: a field of the wrong type or a `sent` that
//! disagrees with the id fails at once, printing the reply.

use std::fmt;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde_json::{Map, Value, json};
use wsmq_rsmq::{
    Message, QueueAttributes, QueueOptions, Rsmq, RsmqError, RsmqOptions, message_sent_ms,
};

use super::node::{NodeErr, NodeRsmq, brief, test_redis_url};
use super::random_text;

/// Which library performs an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// wsmq-rsmq.
    Rust,
    /// npm rsmq 0.12.4 through the driver.
    Node,
}

pub use Side::{Node, Rust};

/// Every (writer, reader) pair, for tests that run in both directions.
pub const BOTH_WAYS: [(Side, Side); 2] = [(Rust, Node), (Node, Rust)];

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rust => "rust",
            Node => "node",
        })
    }
}

/// An operation failed on one side: rsmq's error name, comparable across sides, and
/// the text for the failure message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Which side failed.
    pub side: Side,
    /// `RsmqError::kind()` or Node's `err.name`.
    pub kind: String,
    /// The error's text.
    pub message: String,
}

impl Failure {
    fn rust(err: &RsmqError) -> Self {
        Self {
            side: Rust,
            kind: err.kind().to_owned(),
            message: err.to_string(),
        }
    }

    fn node(err: NodeErr) -> Self {
        Self {
            side: Node,
            kind: err.name,
            message: err.message,
        }
    }
}

/// The outcome of an operation on one side.
pub type Outcome<T> = Result<T, Failure>;

/// wsmq-rsmq and npm rsmq on the shared test Redis, in a namespace of this test's own,
/// plus a raw connection for reading keys.
pub struct Peers {
    /// The Redis URL.
    pub url: String,
    /// This test's namespace.
    pub ns: String,
    /// The Rust client (realtime off).
    pub rust: Rsmq,
    /// The npm client.
    pub node: NodeRsmq,
    /// A plain connection for raw reads.
    pub conn: MultiplexedConnection,
}

impl Peers {
    /// Connects both sides to `WSMQ_TEST_REDIS_URL` under a fresh namespace named
    /// after `test`, so tests can run in parallel on one Redis.
    pub async fn start(test: &str) -> Self {
        let url = test_redis_url();
        let ns = format!("interop-{test}-{}", random_text(6));
        let options = RsmqOptions {
            ns: ns.clone(),
            realtime: false,
            cluster: false,
        };
        let rust = Rsmq::connect(&url, options)
            .await
            .unwrap_or_else(|err| panic!("wsmq-rsmq cannot connect to {url}: {err}"));
        let node = NodeRsmq::start(&url, &ns).await;
        let conn = redis::Client::open(url.as_str())
            .expect("valid redis url")
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|err| panic!("cannot connect to {url}: {err}"));
        Self {
            url,
            ns,
            rust,
            node,
            conn,
        }
    }

    /// A Rust client in this namespace with realtime on.
    pub async fn rust_realtime(&self) -> Rsmq {
        let options = RsmqOptions {
            ns: self.ns.clone(),
            realtime: true,
            cluster: false,
        };
        Rsmq::connect(&self.url, options).await.unwrap()
    }

    // ---- operations, on either side -------------------------------------------------

    /// createQueue / `create_queue`.
    pub async fn create_queue(&mut self, side: Side, q: &str, opts: &QueueOptions) -> Outcome<()> {
        match side {
            Rust => self.rust.create_queue(q, opts).await.map_err(rust_err),
            Node => {
                let reply = self.node_call("createQueue", options_json(q, opts)).await?;
                expect_eq(&reply, &json!(1), "createQueue");
                Ok(())
            }
        }
    }

    /// deleteQueue / `delete_queue`.
    pub async fn delete_queue(&mut self, side: Side, q: &str) -> Outcome<()> {
        match side {
            Rust => self.rust.delete_queue(q).await.map_err(rust_err),
            Node => {
                let reply = self.node_call("deleteQueue", json!({ "qname": q })).await?;
                expect_eq(&reply, &json!(1), "deleteQueue");
                Ok(())
            }
        }
    }

    /// listQueues / `list_queues`, sorted.
    pub async fn list_queues(&mut self, side: Side) -> Vec<String> {
        let mut names = match side {
            Rust => self.rust.list_queues().await.unwrap(),
            Node => {
                let reply = self.node.ok("listQueues", json!({})).await;
                serde_json::from_value(reply.clone())
                    .unwrap_or_else(|err| panic!("listQueues reply {reply}: {err}"))
            }
        };
        names.sort();
        names
    }

    /// getQueueAttributes / `get_queue_attributes`.
    pub async fn attributes(&mut self, side: Side, q: &str) -> Outcome<QueueAttributes> {
        match side {
            Rust => self.rust.get_queue_attributes(q).await.map_err(rust_err),
            Node => Ok(node_attributes(
                &self.node_attributes_raw(q).await?,
                "getQueueAttributes",
            )),
        }
    }

    /// Node's getQueueAttributes reply as it came.
    pub async fn node_attributes_raw(&mut self, q: &str) -> Outcome<Value> {
        self.node_call("getQueueAttributes", json!({ "qname": q }))
            .await
    }

    /// setQueueAttributes / `set_queue_attributes`: the attributes afterwards.
    pub async fn set_attributes(
        &mut self,
        side: Side,
        q: &str,
        opts: &QueueOptions,
    ) -> Outcome<QueueAttributes> {
        match side {
            Rust => self
                .rust
                .set_queue_attributes(q, opts)
                .await
                .map_err(rust_err),
            Node => {
                let reply = self
                    .node_call("setQueueAttributes", options_json(q, opts))
                    .await?;
                Ok(node_attributes(&reply, "setQueueAttributes"))
            }
        }
    }

    /// sendMessage / `send_message`: the new id.
    pub async fn send(
        &mut self,
        side: Side,
        q: &str,
        body: &str,
        delay: Option<u64>,
    ) -> Outcome<String> {
        match side {
            Rust => self
                .rust
                .send_message(q, body, delay)
                .await
                .map_err(rust_err),
            Node => {
                let mut args = json!({ "qname": q, "message": body });
                if let Some(delay) = delay {
                    args["delay"] = json!(delay);
                }
                let reply = self.node_call("sendMessage", args).await?;
                match reply {
                    Value::String(id) => Ok(id),
                    other => panic!("sendMessage replied {}, not an id", brief(&other)),
                }
            }
        }
    }

    /// receiveMessage / `receive_message`.
    pub async fn receive(
        &mut self,
        side: Side,
        q: &str,
        vt: Option<u64>,
    ) -> Outcome<Option<Message>> {
        match side {
            Rust => self.rust.receive_message(q, vt).await.map_err(rust_err),
            Node => {
                let mut args = json!({ "qname": q });
                if let Some(vt) = vt {
                    args["vt"] = json!(vt);
                }
                let reply = self.node_call("receiveMessage", args).await?;
                Ok(node_message(&reply, "receiveMessage"))
            }
        }
    }

    /// popMessage / `pop_message`.
    pub async fn pop(&mut self, side: Side, q: &str) -> Outcome<Option<Message>> {
        match side {
            Rust => self.rust.pop_message(q).await.map_err(rust_err),
            Node => {
                let reply = self.node_call("popMessage", json!({ "qname": q })).await?;
                Ok(node_message(&reply, "popMessage"))
            }
        }
    }

    /// deleteMessage / `delete_message`: whether the message existed.
    pub async fn delete(&mut self, side: Side, q: &str, id: &str) -> Outcome<bool> {
        match side {
            Rust => self.rust.delete_message(q, id).await.map_err(rust_err),
            Node => {
                let reply = self
                    .node_call("deleteMessage", json!({ "qname": q, "id": id }))
                    .await?;
                Ok(node_flag(&reply, "deleteMessage"))
            }
        }
    }

    /// changeMessageVisibility / `change_message_visibility`: whether the message
    /// existed.
    pub async fn change_visibility(
        &mut self,
        side: Side,
        q: &str,
        id: &str,
        vt: u64,
    ) -> Outcome<bool> {
        match side {
            Rust => self
                .rust
                .change_message_visibility(q, id, vt)
                .await
                .map_err(rust_err),
            Node => {
                let args = json!({ "qname": q, "id": id, "vt": vt });
                let reply = self.node_call("changeMessageVisibility", args).await?;
                Ok(node_flag(&reply, "changeMessageVisibility"))
            }
        }
    }

    async fn node_call(&mut self, method: &str, args: Value) -> Outcome<Value> {
        self.node.call(method, args).await.map_err(Failure::node)
    }

    // ---- comparing the two sides ---------------------------------------------------

    /// Asserts that getQueueAttributes from Node and from Rust agree field by field,
    /// as JSON, and returns them.
    ///
    /// `hiddenmsgs` counts scores from the start of the current second, so it can drop
    /// between two reads when the second turns. Node is read before and after Rust:
    /// when both Node reads agree nothing moved and Rust must match exactly; otherwise
    /// Rust must lie between them, and the reads are repeated.
    pub async fn assert_same_attributes(&mut self, q: &str) -> QueueAttributes {
        for _ in 0..5 {
            let before = self.node_attributes_raw(q).await.unwrap();
            let rust = self.rust.get_queue_attributes(q).await.unwrap();
            let after = self.node_attributes_raw(q).await.unwrap();
            let rust_json = rsmq_fields(q, serde_json::to_value(&rust).unwrap());
            if before == after {
                let diff = json_diff(&rust_json, &before);
                assert!(
                    diff.is_empty(),
                    "attributes of {q} differ ({}):\n  rust {rust_json}\n  node {before}",
                    diff.join(", ")
                );
                return rust;
            }
            let steady = |v: &Value| {
                let mut v = v.clone();
                v.as_object_mut().map(|o| o.remove("hiddenmsgs"));
                v
            };
            let diff = json_diff(&steady(&rust_json), &steady(&before));
            assert!(
                diff.is_empty() && steady(&before) == steady(&after),
                "attributes of {q} differ ({}):\n  rust {rust_json}\n  node {before} then {after}",
                diff.join(", ")
            );
            let hidden = |v: &Value| v["hiddenmsgs"].as_u64().unwrap();
            assert!(
                (hidden(&after)..=hidden(&before)).contains(&rust.hiddenmsgs),
                "hiddenmsgs of {q}: rust {rust_json}, node {before} then {after}"
            );
        }
        panic!("attributes of {q} kept changing between reads");
    }

    // ---- raw Redis -----------------------------------------------------------------

    /// A key of this namespace, e.g. `key("q:Q")`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.ns)
    }

    /// A raw field of queue `q`'s hash, as bytes.
    pub async fn field_bytes(&mut self, q: &str, field: &str) -> Option<Vec<u8>> {
        redis::cmd("HGET")
            .arg(self.key(&format!("{q}:Q")))
            .arg(field)
            .query_async(&mut self.conn)
            .await
            .unwrap()
    }

    /// A raw field of queue `q`'s hash, as text.
    pub async fn field(&mut self, q: &str, field: &str) -> Option<String> {
        self.field_bytes(q, field)
            .await
            .map(|bytes| String::from_utf8(bytes).expect("field is UTF-8"))
    }

    /// A message's score in queue `q`'s zset: when it becomes visible, Unix ms.
    pub async fn score(&mut self, q: &str, id: &str) -> Option<u64> {
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(self.key(q))
            .arg(id)
            .query_async(&mut self.conn)
            .await
            .unwrap();
        // Scores are whole ms below 2^53, so the conversion is exact.
        score.map(|s| s as u64)
    }

    /// Whether a key of this namespace exists.
    pub async fn exists(&mut self, rest: &str) -> bool {
        redis::cmd("EXISTS")
            .arg(self.key(rest))
            .query_async::<u8>(&mut self.conn)
            .await
            .unwrap()
            == 1
    }

    /// Asserts the raw receive count and first-receive time of a message.
    pub async fn assert_counters(&mut self, q: &str, id: &str, rc: u64, fr: u64) {
        let raw_rc = self.field(q, &format!("{id}:rc")).await;
        let raw_fr = self.field(q, &format!("{id}:fr")).await;
        assert_eq!(
            (raw_rc.as_deref(), raw_fr.as_deref()),
            (Some(rc.to_string().as_str()), Some(fr.to_string().as_str())),
            "raw {id}:rc and {id}:fr in {q}"
        );
    }

    /// Asserts that a message left no trace: no zset member, no `{id}`, `{id}:rc` or
    /// `{id}:fr` field.
    pub async fn assert_gone(&mut self, q: &str, id: &str) {
        let fields: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(self.key(&format!("{q}:Q")))
            .arg(id)
            .arg(format!("{id}:rc"))
            .arg(format!("{id}:fr"))
            .query_async(&mut self.conn)
            .await
            .unwrap();
        assert_eq!(fields, [None, None, None], "fields of {id} left in {q}");
        assert_eq!(
            self.score(q, id).await,
            None,
            "{id} left in the zset of {q}"
        );
    }

    /// Redis `TIME` in ms.
    pub async fn time_ms(&mut self) -> u64 {
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut self.conn)
            .await
            .unwrap();
        secs * 1000 + micros / 1000
    }

    /// Sleeps until Redis `TIME` reaches `ms`, measuring the wait on Redis's clock.
    pub async fn wait_until(&mut self, ms: u64) {
        loop {
            let now = self.time_ms().await;
            if now >= ms {
                return;
            }
            tokio::time::sleep(Duration::from_millis(ms - now)).await;
        }
    }
}

fn rust_err(err: RsmqError) -> Failure {
    Failure::rust(&err)
}

/// rsmq's options object for create and set: the name plus each option given.
fn options_json(q: &str, opts: &QueueOptions) -> Value {
    let mut args = json!({ "qname": q });
    if let Some(vt) = opts.vt {
        args["vt"] = json!(vt);
    }
    if let Some(delay) = opts.delay {
        args["delay"] = json!(delay);
    }
    if let Some(maxsize) = opts.maxsize {
        args["maxsize"] = json!(maxsize);
    }
    args
}

fn expect_eq(reply: &Value, want: &Value, method: &str) {
    assert_eq!(reply, want, "{method} replied {}", brief(reply));
}

/// deleteMessage and changeMessageVisibility answer 0 or 1.
fn node_flag(reply: &Value, method: &str) -> bool {
    match reply.as_u64() {
        Some(0) => false,
        Some(1) => true,
        _ => panic!("{method} replied {}, not 0 or 1", brief(reply)),
    }
}

/// A received message as rsmq returns it (`{}` when none), checking that `sent` is
/// the time in the id, which Node keeps fractional (µs / 1000) and Rust floors.
fn node_message(reply: &Value, method: &str) -> Option<Message> {
    let fail = |why: &str| -> ! { panic!("{method} reply {}: {why}", brief(reply)) };
    let object = reply.as_object().unwrap_or_else(|| fail("not an object"));
    if object.is_empty() {
        return None;
    }
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    if keys != ["fr", "id", "message", "rc", "sent"] {
        fail("unexpected fields");
    }
    let text = |name: &str| {
        object[name]
            .as_str()
            .unwrap_or_else(|| fail(&format!("{name} is not a string")))
            .to_owned()
    };
    let count = |name: &str| {
        object[name]
            .as_u64()
            .unwrap_or_else(|| fail(&format!("{name} is not a whole number")))
    };
    let id = text("id");
    let sent = object["sent"]
        .as_f64()
        .unwrap_or_else(|| fail("sent is not a number"));
    // µs / 1000 as a double is within a rounding error of the exact quotient; the id
    // itself is exact, so compare whole ms.
    let sent_ms = sent.floor() as u64;
    if message_sent_ms(&id) != Some(sent_ms) {
        fail(&format!(
            "sent {sent} floors to {sent_ms}, but the id says {:?}",
            message_sent_ms(&id)
        ));
    }
    Some(Message {
        message: text("message"),
        rc: count("rc"),
        fr: count("fr"),
        sent: sent_ms,
        id,
    })
}

/// rsmq's getQueueAttributes object, every field a whole number.
fn node_attributes(reply: &Value, method: &str) -> QueueAttributes {
    let object = reply
        .as_object()
        .unwrap_or_else(|| panic!("{method} replied {reply}, not an object"));
    let field = |name: &str| -> i64 {
        object
            .get(name)
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("{method} reply {reply}: {name} is not a whole number"))
    };
    let count = |name: &str| -> u64 {
        u64::try_from(field(name))
            .unwrap_or_else(|_| panic!("{method} reply {reply}: {name} is negative"))
    };
    QueueAttributes {
        vt: count("vt"),
        delay: count("delay"),
        maxsize: field("maxsize"),
        totalrecv: count("totalrecv"),
        totalsent: count("totalsent"),
        created: count("created"),
        modified: count("modified"),
        msgs: count("msgs"),
        hiddenmsgs: count("hiddenmsgs"),
        // npm rsmq knows nothing of wsmq's own attributes: a queue without them reads so.
        maxreceives: 0,
        ttl: 0,
        deadletter: None,
        totaldead: 0,
    }
}

/// wsmq's attributes as JSON without wsmq's own fields, which npm rsmq does not know; they must
/// read "off" (the queues compared here have none set).
fn rsmq_fields(q: &str, mut attrs: Value) -> Value {
    let object = attrs.as_object_mut().expect("attributes are an object");
    for (field, off) in [
        ("maxreceives", json!(0)),
        ("ttl", json!(0)),
        ("deadletter", Value::Null),
        ("totaldead", json!(0)),
    ] {
        let value = object.remove(field);
        assert_eq!(value, Some(off), "{field} of {q}");
    }
    attrs
}

/// The fields in which two JSON objects differ, as `name: left vs right`.
fn json_diff(left: &Value, right: &Value) -> Vec<String> {
    let empty = Map::new();
    let (l, r) = (
        left.as_object().unwrap_or(&empty),
        right.as_object().unwrap_or(&empty),
    );
    let mut names: Vec<&String> = l.keys().chain(r.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| l.get(*name) != r.get(*name))
        .map(|name| {
            let show = |v: Option<&Value>| v.map_or_else(|| "missing".to_owned(), Value::to_string);
            format!(
                "{name}: rust {} vs node {}",
                show(l.get(name)),
                show(r.get(name))
            )
        })
        .collect()
}
