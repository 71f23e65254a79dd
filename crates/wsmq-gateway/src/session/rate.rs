//! The per-session inbound rate limit: a token bucket for frames, and a second, larger bucket
//! that tells a client over the limit from a client flooding.
//!
//! Each text or binary frame takes a token from a bucket of `--rate-burst` tokens refilled at
//! `--rate-limit` per second. A frame that finds the bucket empty is refused (`rate_limited`)
//! and takes a token from the *tolerance* bucket instead: ten times the burst, refilled at ten
//! times the rate. A client that sends faster than about eleven times the limit empties the
//! tolerance after a while and is closed with 4029: answering each of its frames with an error
//! would cost the node more than the client pays to send them. A client a little over the
//! limit only gets errors, and can slow down.
//!
//! Some ops cost the node far more than a frame: `subscribe`, `unsubscribe` and `publish`
//! are Redis round trips (and pub/sub changes), `auth` a signature check (an RS256 one takes
//! tens of microseconds). [`OpBudget`] limits those separately, to `--op-rate-limit` per
//! second with twice that as burst, `auth` counting [`AUTH_COST`]: without it one session
//! could drive ten thousand signature checks a second within the frame limit.

use tokio::time::Instant;

/// How many times the limit a client may exceed it by, sustained, before it is closed.
const TOLERANCE: f64 = 10.0;
/// What one `auth` takes from the [`OpBudget`] (a subscribe or publish takes one).
pub(super) const AUTH_COST: f64 = 10.0;

/// The budget of costly ops of one session: a token bucket of twice the rate.
#[derive(Debug)]
pub(crate) struct OpBudget {
    /// Tokens per second; `None` when the limit is off.
    rate: Option<f64>,
    /// Tokens left.
    tokens: f64,
    /// When the bucket was last refilled.
    last: Instant,
}

impl OpBudget {
    /// A budget of `rate` per second (0: unlimited), full.
    pub(crate) fn new(rate: u32) -> OpBudget {
        let rate = (rate > 0).then_some(f64::from(rate));
        OpBudget {
            rate,
            tokens: rate.map_or(0.0, |r| 2.0 * r),
            last: Instant::now(),
        }
    }

    /// Takes `cost` for an op arriving now; `false` (nothing taken) when the budget is spent.
    pub(crate) fn take(&mut self, cost: f64) -> bool {
        self.take_at(cost, Instant::now())
    }

    fn take_at(&mut self, cost: f64, now: Instant) -> bool {
        let Some(rate) = self.rate else {
            return true;
        };
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(2.0 * rate);
        if self.tokens >= cost {
            self.tokens -= cost;
            return true;
        }
        false
    }
}

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Handle it.
    Allow,
    /// Answer `rate_limited` and drop it.
    Refuse,
    /// The client floods: close with 4029.
    Close,
}

/// The two buckets of one session.
#[derive(Debug)]
pub(super) struct RateLimit {
    /// Tokens per second; `None` when the limit is off.
    rate: Option<f64>,
    /// Capacity of the frame bucket.
    burst: f64,
    /// Tokens left in the frame bucket.
    tokens: f64,
    /// Tokens left in the tolerance bucket (capacity `TOLERANCE * burst`).
    tolerance: f64,
    /// When the buckets were last refilled.
    last: Instant,
}

impl RateLimit {
    /// A limiter of `rate` frames per second with `burst`; `rate` 0 allows everything.
    pub(super) fn new(rate: u32, burst: u32) -> RateLimit {
        let burst = f64::from(burst.max(1));
        RateLimit {
            rate: (rate > 0).then_some(f64::from(rate)),
            burst,
            tokens: burst,
            tolerance: burst * TOLERANCE,
            last: Instant::now(),
        }
    }

    /// Takes a token for one frame arriving now.
    pub(super) fn check(&mut self) -> Verdict {
        self.check_at(Instant::now())
    }

    fn check_at(&mut self, now: Instant) -> Verdict {
        let Some(rate) = self.rate else {
            return Verdict::Allow;
        };
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(self.burst);
        self.tolerance = (self.tolerance + elapsed * rate * TOLERANCE).min(self.burst * TOLERANCE);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        if self.tolerance >= 1.0 {
            self.tolerance -= 1.0;
            return Verdict::Refuse;
        }
        Verdict::Close
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_passes_then_frames_are_refused_then_a_flood_is_closed() {
        let start = Instant::now();
        let mut limit = RateLimit::new(10, 20);
        for _ in 0..20 {
            assert_eq!(limit.check_at(start), Verdict::Allow);
        }
        // Refused until the tolerance (10 x 20) runs out, then closed.
        for _ in 0..200 {
            assert_eq!(limit.check_at(start), Verdict::Refuse);
        }
        assert_eq!(limit.check_at(start), Verdict::Close);
    }

    #[test]
    fn tokens_come_back_with_time_and_a_steady_client_is_never_closed() {
        let mut now = Instant::now();
        let mut limit = RateLimit::new(10, 10);
        // Twice the rate for a minute: about half refused, never closed.
        let mut refused = 0;
        for _ in 0..1200 {
            now += Duration::from_millis(50);
            match limit.check_at(now) {
                Verdict::Allow => {}
                Verdict::Refuse => refused += 1,
                Verdict::Close => panic!("a client at twice the rate is not a flood"),
            }
        }
        assert!((550..=650).contains(&refused), "{refused}");
    }

    #[test]
    fn costly_ops_have_their_own_budget_and_auth_costs_ten() {
        let mut now = Instant::now();
        let mut ops = OpBudget::new(10);
        // A burst of twice the rate, then nothing until time passes.
        for _ in 0..20 {
            assert!(ops.take_at(1.0, now));
        }
        assert!(!ops.take_at(1.0, now));
        now += Duration::from_secs(1);
        assert!(ops.take_at(AUTH_COST, now));
        assert!(!ops.take_at(AUTH_COST, now));
        assert!(OpBudget::new(0).take_at(1e9, now));
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let now = Instant::now();
        let mut limit = RateLimit::new(0, 1);
        for _ in 0..100_000 {
            assert_eq!(limit.check_at(now), Verdict::Allow);
        }
    }
}
