//! Counters, gauges and the delivery latency histogram, rendered as Prometheus text.
//!
//! Each gateway instance owns its own [`Registry`] (prometheus-client), rather than a
//! process-global recorder, so that several gateways in one test process do not mix their
//! numbers. `GET /metrics` renders it in the OpenMetrics text format, which Prometheus reads.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tracing::{debug, warn};

use crate::engine::{DeadCounts, DeadLettered, EngineError};

/// The content type of [`Metrics::render`].
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label set of the failure counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Reason {
    /// Why: `expired`, `bad_signature`, `unregistered`, …
    pub reason: String,
}

/// Label set of the session close counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Code {
    /// The WebSocket close code, e.g. `1012` or `4008`.
    pub code: String,
}

/// Label set of the dead message counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Dead {
    /// Why the message is dead: `max_receives`, `ttl` or `nack`.
    pub reason: &'static str,
    /// What became of it: `dead_lettered` (moved to the queue's dead-letter queue) or
    /// `deleted` (the queue has none).
    pub outcome: &'static str,
}

/// Every metric the gateway keeps.
pub(crate) struct Metrics {
    /// Where the metrics below are registered.
    registry: Registry,
    /// Open WebSocket sessions.
    pub connections: Gauge,
    /// Live queue and channel subscriptions over all sessions.
    pub subscriptions: Gauge,
    /// Frames read from clients.
    pub frames_in: Counter,
    /// Frames written to clients.
    pub frames_out: Counter,
    /// Queue messages written to clients.
    pub deliveries: Counter,
    /// Deliveries with rc > 1.
    pub redeliveries: Counter,
    /// Messages deleted by acks (and legacy auto-acks).
    pub acks: Counter,
    /// Messages given back by nacks.
    pub nacks: Counter,
    /// Messages taken out of their queue as dead, by reason and outcome.
    pub dead_messages: Family<Dead, Counter>,
    /// Messages a receive skipped because their receive count is not a number.
    pub corrupt_messages: Counter,
    /// Authentication failures by reason.
    pub auth_failures: Family<Reason, Counter>,
    /// Engine errors by operation.
    pub engine_errors: Family<Reason, Counter>,
    /// Connections answered 503 because of `--max-connections`.
    pub connections_refused: Counter,
    /// Connections reset (TCP RST) because the client read nothing, not even the end of its
    /// SSE stream or the close frame of its session (see `crate::abort`).
    pub connections_reset: Counter,
    /// Sessions closed because the client did not read fast enough (4008).
    pub slow_clients: Counter,
    /// Reconnections of the Redis pub/sub connection.
    pub pubsub_reconnects: Counter,
    /// Recoveries of the Redis command connection: an engine call succeeded after calls had
    /// failed because Redis was unreachable.
    pub redis_reconnects: Counter,
    /// Seconds from a message's send time to the write of its frame.
    pub delivery_latency: Histogram,
    /// Client frames refused with `rate_limited`.
    pub rate_limited: Counter,
    /// Connections dropped because their request headers did not arrive in time.
    pub handshake_timeouts: Counter,
    /// Sessions ended, by close code.
    pub sessions_closed: Family<Code, Counter>,
    /// How long the last drain took, seconds (0 until a drain ends).
    pub drain_seconds: Gauge<f64, AtomicU64>,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("wsmq");
        let metrics = Metrics {
            connections: Gauge::default(),
            subscriptions: Gauge::default(),
            frames_in: Counter::default(),
            frames_out: Counter::default(),
            deliveries: Counter::default(),
            redeliveries: Counter::default(),
            acks: Counter::default(),
            nacks: Counter::default(),
            dead_messages: Family::default(),
            corrupt_messages: Counter::default(),
            auth_failures: Family::default(),
            engine_errors: Family::default(),
            connections_refused: Counter::default(),
            connections_reset: Counter::default(),
            slow_clients: Counter::default(),
            pubsub_reconnects: Counter::default(),
            redis_reconnects: Counter::default(),
            // 1 ms .. ~65 s.
            delivery_latency: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            rate_limited: Counter::default(),
            handshake_timeouts: Counter::default(),
            sessions_closed: Family::default(),
            drain_seconds: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "connections",
            "Open WebSocket sessions",
            metrics.connections.clone(),
        );
        r.register(
            "subscriptions",
            "Live queue and channel subscriptions",
            metrics.subscriptions.clone(),
        );
        r.register(
            "frames_in",
            "Frames read from clients",
            metrics.frames_in.clone(),
        );
        r.register(
            "frames_out",
            "Frames written to clients",
            metrics.frames_out.clone(),
        );
        r.register(
            "deliveries",
            "Queue messages written to clients",
            metrics.deliveries.clone(),
        );
        r.register(
            "redeliveries",
            "Queue messages delivered again (rc > 1)",
            metrics.redeliveries.clone(),
        );
        r.register(
            "acks",
            "Queue messages deleted after an ack",
            metrics.acks.clone(),
        );
        r.register(
            "nacks",
            "Queue messages given back by a nack",
            metrics.nacks.clone(),
        );
        r.register(
            "dead_messages",
            "Queue messages taken out as dead (reason: max_receives, ttl, nack; outcome: \
             dead_lettered, deleted)",
            metrics.dead_messages.clone(),
        );
        r.register(
            "corrupt_messages",
            "Queue messages skipped by a receive because their receive count is not a number",
            metrics.corrupt_messages.clone(),
        );
        r.register(
            "auth_failures",
            "Refused handshakes by reason",
            metrics.auth_failures.clone(),
        );
        r.register(
            "engine_errors",
            "Failed engine operations by operation",
            metrics.engine_errors.clone(),
        );
        r.register(
            "connections_refused",
            "Connections refused over --max-connections",
            metrics.connections_refused.clone(),
        );
        r.register(
            "connections_reset",
            "Connections reset because the client did not read the end of its stream or session",
            metrics.connections_reset.clone(),
        );
        r.register(
            "slow_clients",
            "Sessions closed with 4008 for not reading",
            metrics.slow_clients.clone(),
        );
        r.register(
            "pubsub_reconnects",
            "Reconnections of the Redis pub/sub connection",
            metrics.pubsub_reconnects.clone(),
        );
        r.register(
            "redis_reconnects",
            "Recoveries of the Redis command connection after Redis was unreachable",
            metrics.redis_reconnects.clone(),
        );
        r.register(
            "delivery_latency_seconds",
            "From a message's send time to the write of its frame",
            metrics.delivery_latency.clone(),
        );
        r.register(
            "rate_limited",
            "Client frames refused with rate_limited",
            metrics.rate_limited.clone(),
        );
        r.register(
            "handshake_timeouts",
            "Connections dropped for not sending their request headers in time",
            metrics.handshake_timeouts.clone(),
        );
        r.register(
            "sessions_closed",
            "Sessions ended, by WebSocket close code",
            metrics.sessions_closed.clone(),
        );
        r.register(
            "drain_seconds",
            "Duration of the last drain (SIGTERM/SIGINT)",
            metrics.drain_seconds.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Counts an authentication failure.
    pub(crate) fn auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts what a receive took out as dead or skipped as corrupt.
    pub(crate) fn dead_messages(&self, counts: &DeadCounts) {
        let outcome = dead_outcome(counts.dead_lettered);
        for (reason, n) in [
            ("max_receives", counts.max_receives),
            ("ttl", counts.expired),
        ] {
            if n > 0 {
                self.dead_messages
                    .get_or_create(&Dead { reason, outcome })
                    .inc_by(n);
            }
        }
        if counts.corrupt > 0 {
            self.corrupt_messages.inc_by(counts.corrupt);
        }
    }

    /// Counts messages a client nacked as dead.
    pub(crate) fn dead_nacked(&self, outcome: DeadLettered) {
        if outcome.count > 0 {
            let labels = Dead {
                reason: "nack",
                outcome: dead_outcome(outcome.moved),
            };
            self.dead_messages
                .get_or_create(&labels)
                .inc_by(outcome.count);
        }
    }

    /// Counts a session that ended with close code `code`.
    pub(crate) fn session_closed(&self, code: u16) {
        self.sessions_closed
            .get_or_create(&Code {
                code: code.to_string(),
            })
            .inc();
    }

    /// Counts a failed engine operation `op` on `target` (a queue, a channel, a node) and logs
    /// it: at debug level when the backend is unreachable (the engine logs an outage once, not
    /// once per caller) or when `again` says the same call failed just before; else as a
    /// warning.
    pub(crate) fn engine_failed(
        &self,
        op: &'static str,
        target: &str,
        err: &EngineError,
        again: bool,
    ) {
        self.engine_errors
            .get_or_create(&Reason {
                reason: op.to_owned(),
            })
            .inc();
        if again || err.is_unavailable() {
            debug!(op, target, cause = %err, "engine call failed");
        } else {
            warn!(op, target, cause = %err, "engine call failed");
        }
    }

    /// The Prometheus / OpenMetrics text of every metric.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

fn dead_outcome(moved: bool) -> &'static str {
    if moved { "dead_lettered" } else { "deleted" }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
