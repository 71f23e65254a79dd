//! The suite's Redis, seen from the test: its URL, a connection, the Redis clock, and waits for
//! a gateway's pub/sub subscriptions to be live.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;

/// The Redis the suite shares, from `WSMQ_TEST_REDIS_URL`.
///
/// # Panics
///
/// When it is unset: the suite is meant to run under `cargo xtask e2e`.
pub(crate) fn test_redis_url() -> String {
    std::env::var("WSMQ_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "WSMQ_TEST_REDIS_URL is not set: run this suite with `cargo xtask e2e gateway`, \
             which installs the npm packages, starts a redis-server and sets it"
        )
    })
}

/// A connection to the suite's Redis.
pub(crate) async fn connect(url: &str) -> MultiplexedConnection {
    let client = redis::Client::open(url).expect("a valid Redis URL");
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {url}: {err}"))
}

/// Waits until `channel` has at least `count` subscribers (`PUBSUB NUMSUB`): a gateway's
/// subscription to a realtime or channel key is live in Redis, so a publish now reaches it.
///
/// # Panics
///
/// When that does not happen within 5 s.
pub(crate) async fn wait_subscribers(conn: &mut MultiplexedConnection, channel: &str, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, subscribers): (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(conn)
            .await
            .expect("PUBSUB NUMSUB");
        if subscribers >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{channel}: {subscribers} subscribers after 5 s, want {count}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How many messages of `queue` are visible now: scored at or before the Redis `TIME`.
///
/// (`queue stats` cannot tell: like npm rsmq's `getQueueAttributes`, its `hiddenmsgs` counts
/// every message scored from the start of the current second on, visible or not.)
pub(crate) async fn visible_now(conn: &mut MultiplexedConnection, ns: &str, queue: &str) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await.expect("TIME");
    let now_ms = secs * 1000 + micros / 1000;
    redis::cmd("ZCOUNT")
        .arg(format!("{ns}:{queue}"))
        .arg("-inf")
        .arg(now_ms)
        .query_async(conn)
        .await
        .expect("ZCOUNT")
}

/// The Redis `TIME` clock read through the local clock: the offset between the two is measured
/// once, then any local instant converts to Redis time without a round trip.
pub(crate) struct RedisClock {
    /// Redis time minus local time, µs.
    offset_us: i64,
    /// Round trip of the sample the offset came from, µs (its uncertainty is half of it).
    pub(crate) rtt_us: i64,
}

impl RedisClock {
    /// Takes 20 samples of `TIME` and keeps the one with the shortest round trip, assuming
    /// Redis read its clock halfway through it.
    pub(crate) async fn calibrate(conn: &mut MultiplexedConnection) -> RedisClock {
        let mut best: Option<RedisClock> = None;
        for _ in 0..20 {
            let before = local_us();
            let (secs, micros): (i64, i64) =
                redis::cmd("TIME").query_async(conn).await.expect("TIME");
            let after = local_us();
            let redis_us = secs * 1_000_000 + micros;
            let sample = RedisClock {
                offset_us: redis_us - (before + after) / 2,
                rtt_us: after - before,
            };
            if best.as_ref().is_none_or(|b| sample.rtt_us < b.rtt_us) {
                best = Some(sample);
            }
        }
        best.expect("20 samples")
    }

    /// The Redis time of a local instant taken with [`local_us`], in ms (fractional).
    pub(crate) fn redis_ms(&self, local_us: i64) -> f64 {
        (local_us + self.offset_us) as f64 / 1000.0
    }

    /// Redis time minus local time, ms.
    pub(crate) fn offset_ms(&self) -> f64 {
        self.offset_us as f64 / 1000.0
    }
}

/// The local wall clock, µs since the Unix epoch.
pub(crate) fn local_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_micros() as i64
}
