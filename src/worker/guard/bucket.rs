//! The token bucket of one rate-limited provider, as pure arithmetic over millisecond
//! timestamps (the per-process fallback, and the specification of the Lua in
//! `guard::scripts`).
//!
//! Capacity is `max(1, rate)` tokens, refilled at `rate` per second. A caller that finds no
//! whole token *reserves* the next one: the bucket goes below zero and the caller is told how
//! long to wait until its token exists. The message waits in the delay queues and then sends
//! without taking another token, so a burst is spread out in one pass instead of every
//! waiting message polling the bucket. Reservations are refused beyond a horizon, so a huge
//! backlog cannot book the provider for hours ahead; those callers wait and ask again.

/// What a take got.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Take {
    /// A token now.
    Granted,
    /// A token `wait_ms` from now, already taken.
    Reserved { wait_ms: i64 },
    /// Nothing: the next free token is `wait_ms` away, beyond the horizon. Ask again later.
    Refused { wait_ms: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Whole and fractional tokens; negative while tokens are reserved ahead.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: i64,
}

/// The bucket size for a rate: a burst of one second's worth, and at least one token.
pub fn capacity(rate: f64) -> f64 {
    rate.max(1.0)
}

impl Bucket {
    pub fn full(rate: f64, now: i64) -> Bucket {
        Bucket {
            tokens: capacity(rate),
            at: now,
        }
    }

    /// Takes (or reserves) one token at `now`, refilling at `rate` tokens per second.
    pub fn take(&mut self, now: i64, rate: f64, horizon_ms: i64) -> Take {
        let cap = capacity(rate);
        if now > self.at {
            self.tokens = (self.tokens + (now - self.at) as f64 * rate / 1000.0).min(cap);
            self.at = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Take::Granted;
        }
        let wait_ms = ((1.0 - self.tokens) * 1000.0 / rate).ceil() as i64;
        if wait_ms > horizon_ms {
            return Take::Refused { wait_ms };
        }
        self.tokens -= 1.0;
        Take::Reserved { wait_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_grants_its_capacity_at_once_then_reserves_at_the_rate() {
        let mut b = Bucket::full(5.0, 0);
        for _ in 0..5 {
            assert_eq!(b.take(0, 5.0, 60_000), Take::Granted);
        }
        // The next tokens come every 200 ms, each reserved by the next caller.
        assert_eq!(b.take(0, 5.0, 60_000), Take::Reserved { wait_ms: 200 });
        assert_eq!(b.take(0, 5.0, 60_000), Take::Reserved { wait_ms: 400 });
        assert_eq!(b.take(100, 5.0, 60_000), Take::Reserved { wait_ms: 500 });
    }

    #[test]
    fn tokens_refill_over_time_up_to_the_capacity() {
        let mut b = Bucket::full(2.0, 0);
        assert_eq!(b.take(0, 2.0, 1000), Take::Granted);
        assert_eq!(b.take(0, 2.0, 1000), Take::Granted);
        assert_eq!(b.take(250, 2.0, 1000), Take::Reserved { wait_ms: 250 });
        // Long idle: back to exactly the capacity, not more.
        let mut b = Bucket::full(2.0, 0);
        assert_eq!(b.take(0, 2.0, 1000), Take::Granted);
        for _ in 0..2 {
            assert_eq!(b.take(60_000, 2.0, 1000), Take::Granted);
        }
        assert!(matches!(b.take(60_000, 2.0, 1000), Take::Reserved { .. }));
    }

    #[test]
    fn slow_rates_have_a_capacity_of_one() {
        let mut b = Bucket::full(0.5, 0);
        assert_eq!(capacity(0.5), 1.0);
        assert_eq!(b.take(0, 0.5, 10_000), Take::Granted);
        assert_eq!(b.take(0, 0.5, 10_000), Take::Reserved { wait_ms: 2000 });
    }

    #[test]
    fn reservations_beyond_the_horizon_are_refused_without_taking() {
        let mut b = Bucket::full(1.0, 0);
        assert_eq!(b.take(0, 1.0, 1500), Take::Granted);
        assert_eq!(b.take(0, 1.0, 1500), Take::Reserved { wait_ms: 1000 });
        assert_eq!(b.take(0, 1.0, 1500), Take::Refused { wait_ms: 2000 });
        assert_eq!(b.take(0, 1.0, 1500), Take::Refused { wait_ms: 2000 });
        assert_eq!(b.take(1000, 1.0, 1500), Take::Reserved { wait_ms: 1000 });
    }

    #[test]
    fn no_more_than_capacity_plus_rate_times_elapsed_tokens_are_ever_handed_out() {
        // Callers arrive every 7 ms for 3 s; each is due at its grant or reservation time.
        let rate = 5.0;
        let mut b = Bucket::full(rate, 0);
        let mut due = Vec::new();
        for now in (0..3000).step_by(7) {
            match b.take(now, rate, 100_000) {
                Take::Granted => due.push(now),
                Take::Reserved { wait_ms } => due.push(now + wait_ms),
                Take::Refused { .. } => unreachable!("horizon is wide"),
            }
        }
        due.sort_unstable();
        for (i, at) in due.iter().enumerate() {
            let allowed = capacity(rate) + rate * (*at as f64) / 1000.0;
            assert!((i + 1) as f64 <= allowed + 1e-9, "token {i} at {at} ms");
        }
    }
}
