//! The circuit breaker of one provider, as a pure state machine over millisecond timestamps.
//!
//! The shared (Redis) form of the same machine is the Lua in `guard::scripts`; this one is
//! the per-process fallback and the specification both follow:
//!
//! - **closed**: calls go through; each failure that is the provider's fault (transient or
//!   provider-permanent) counts, a healthy answer resets the count. At `threshold` consecutive
//!   failures the breaker opens.
//! - **open** until `open_until`: calls are refused.
//! - **half-open** after `open_until`: exactly one caller claims the probe (a lock that expires
//!   after `probe_ttl`, so a crashed prober does not block the provider for good); everyone else
//!   is refused while it runs. The probe's success closes the breaker, its failure re-opens it
//!   for another cool-down. Late results of calls that started before the breaker opened do not
//!   move an open or half-open breaker, except a success, which is news that the provider works.

/// What a caller may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Closed: go. `failures` is the count seen, so a success only needs recording when > 0.
    Closed { failures: u32 },
    /// Half-open and this caller won the probe: go, and report the outcome.
    Probe,
    /// Open until `until` (ms): do not call the provider.
    Open { until: i64 },
    /// Half-open, but another caller is probing until at most `until` (ms).
    Probing { until: i64 },
}

/// What a recorded failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Counted; still closed.
    Counted { failures: u32 },
    /// This failure opened (or re-opened) the breaker until `until` (ms).
    Opened { until: i64 },
    /// The breaker was already open (or half-open with someone else probing): not counted.
    AlreadyOpen { until: i64 },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Breaker {
    failures: u32,
    /// `Some` once opened: open before this instant, half-open after it.
    open_until: Option<i64>,
    /// The probe lock: holder's token and when the lock lapses.
    probe: Option<(u64, i64)>,
}

impl Breaker {
    pub fn check(&mut self, now: i64, token: u64, probe_ttl_ms: i64) -> Check {
        let Some(open_until) = self.open_until else {
            return Check::Closed {
                failures: self.failures,
            };
        };
        if now < open_until {
            return Check::Open { until: open_until };
        }
        if let Some((_, lapses)) = self.probe
            && lapses > now
        {
            return Check::Probing { until: lapses };
        }
        self.probe = Some((token, now + probe_ttl_ms));
        Check::Probe
    }

    /// Gives the probe back unused (the caller did not call the provider after all).
    pub fn release_probe(&mut self, token: u64) {
        if self.probe.is_some_and(|(holder, _)| holder == token) {
            self.probe = None;
        }
    }

    /// The provider answered properly: closed, count reset.
    pub fn on_success(&mut self) {
        *self = Breaker::default();
    }

    /// The provider failed a call; `token` is the caller's (it matters if it held the probe).
    pub fn on_failure(
        &mut self,
        now: i64,
        token: u64,
        threshold: u32,
        cooldown_ms: i64,
    ) -> AfterFailure {
        let probing = self.probe.is_some_and(|(holder, _)| holder == token);
        if let Some(open_until) = self.open_until
            && !probing
        {
            return AfterFailure::AlreadyOpen {
                until: open_until.max(self.probe.map_or(0, |(_, lapses)| lapses)),
            };
        }
        self.failures = self.failures.saturating_add(1);
        if probing || self.failures >= threshold {
            let until = now + cooldown_ms;
            self.open_until = Some(until);
            self.probe = None;
            return AfterFailure::Opened { until };
        }
        AfterFailure::Counted {
            failures: self.failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: i64 = 500;

    fn fail(b: &mut Breaker, now: i64, token: u64) -> AfterFailure {
        b.on_failure(now, token, 3, 1000)
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let mut b = Breaker::default();
        assert_eq!(fail(&mut b, 0, 1), AfterFailure::Counted { failures: 1 });
        assert_eq!(fail(&mut b, 1, 1), AfterFailure::Counted { failures: 2 });
        assert_eq!(b.check(2, 1, TTL), Check::Closed { failures: 2 });
        assert_eq!(fail(&mut b, 10, 1), AfterFailure::Opened { until: 1010 });
        assert_eq!(b.check(11, 2, TTL), Check::Open { until: 1010 });
        assert_eq!(b.check(1009, 2, TTL), Check::Open { until: 1010 });
    }

    #[test]
    fn a_success_resets_the_count() {
        let mut b = Breaker::default();
        fail(&mut b, 0, 1);
        fail(&mut b, 0, 1);
        b.on_success();
        assert_eq!(b, Breaker::default(), "closed, nothing counted");
        assert_eq!(fail(&mut b, 0, 1), AfterFailure::Counted { failures: 1 });
        assert_eq!(b.check(0, 1, TTL), Check::Closed { failures: 1 });
    }

    #[test]
    fn half_open_admits_exactly_one_probe_and_its_success_closes() {
        let mut b = Breaker::default();
        for _ in 0..3 {
            fail(&mut b, 0, 1);
        }
        assert_eq!(b.check(1000, 7, TTL), Check::Probe);
        assert_eq!(b.check(1001, 8, TTL), Check::Probing { until: 1500 });
        assert_eq!(b.check(1002, 9, TTL), Check::Probing { until: 1500 });
        b.on_success();
        assert_eq!(b.check(1003, 8, TTL), Check::Closed { failures: 0 });
    }

    #[test]
    fn a_failed_probe_reopens_for_another_cooldown() {
        let mut b = Breaker::default();
        for _ in 0..3 {
            fail(&mut b, 0, 1);
        }
        assert_eq!(b.check(1200, 7, TTL), Check::Probe);
        assert_eq!(fail(&mut b, 1250, 7), AfterFailure::Opened { until: 2250 });
        assert_eq!(b.check(1300, 8, TTL), Check::Open { until: 2250 });
        assert_eq!(b.check(2250, 8, TTL), Check::Probe);
    }

    #[test]
    fn late_failures_of_calls_started_before_opening_are_not_counted() {
        let mut b = Breaker::default();
        for _ in 0..3 {
            fail(&mut b, 0, 1);
        }
        assert_eq!(
            fail(&mut b, 5, 2),
            AfterFailure::AlreadyOpen { until: 1000 }
        );
        // Half-open, someone else probing: a straggler neither re-opens nor steals the probe.
        assert_eq!(b.check(1000, 7, TTL), Check::Probe);
        assert_eq!(
            fail(&mut b, 1001, 2),
            AfterFailure::AlreadyOpen { until: 1500 }
        );
        assert_eq!(b.check(1002, 8, TTL), Check::Probing { until: 1500 });
    }

    #[test]
    fn a_lost_probe_lapses_so_another_caller_can_probe() {
        let mut b = Breaker::default();
        for _ in 0..3 {
            fail(&mut b, 0, 1);
        }
        assert_eq!(b.check(1000, 7, TTL), Check::Probe);
        assert_eq!(b.check(1499, 8, TTL), Check::Probing { until: 1500 });
        assert_eq!(b.check(1500, 8, TTL), Check::Probe);
        // The first prober's late failure no longer holds the lock: not a re-open.
        assert_eq!(
            fail(&mut b, 1501, 7),
            AfterFailure::AlreadyOpen { until: 2000 }
        );
    }

    #[test]
    fn a_released_probe_can_be_claimed_again_at_once() {
        let mut b = Breaker::default();
        for _ in 0..3 {
            fail(&mut b, 0, 1);
        }
        assert_eq!(b.check(1000, 7, TTL), Check::Probe);
        b.release_probe(8);
        assert_eq!(b.check(1001, 8, TTL), Check::Probing { until: 1500 });
        b.release_probe(7);
        assert_eq!(b.check(1002, 8, TTL), Check::Probe);
    }
}
