//! The delivery policy as one pure function: given what a step of a delivery found and where
//! the message stands, [`decide`] says what happens next. Nothing here writes, publishes or
//! sleeps; `settle` carries the decision out. The table (also in docs/delivery.md):
//!
//! | found | where | next |
//! |---|---|---|
//! | past its TTL | — | expire |
//! | sent | — | sent |
//! | recipient-permanent failure | — | fail (no dead letter: another provider will not help) |
//! | transient failure | budget left | retry the same provider after the backoff (at least the provider's Retry-After, within the cap) |
//! | transient failure, breaker now open | budget left, last provider | retry once the cool-down is over |
//! | transient failure, breaker now open | another provider left | fail over |
//! | transient failure | budget spent, another provider left | fail over |
//! | provider-permanent failure | another provider left | fail over |
//! | transient or provider-permanent | last provider (budget spent) | fail and dead-letter |
//! | breaker open (not called) | another provider left | fail over |
//! | breaker open (not called) | last provider, budget left | retry at the end of the cool-down (counts an attempt) |
//! | breaker open (not called) | last provider, budget spent | fail and dead-letter |
//! | half-open, another replica probing | last provider | wait the shortest delay tier (no attempt counted) |
//! | over the rate limit | — | wait for the reserved token (no attempt counted) |
//!
//! The budget is `COMMUNICATION_RETRY_ATTEMPTS` attempts per provider.

use std::time::Duration;

use backoff::backoff::Backoff;
use chrono::{DateTime, Utc};

use crate::config::RetryPolicy;
use crate::providers::{ErrorClass, ProviderError};

/// What a step of the delivery found.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// The message's TTL ran out (at `at`) before it could be sent.
    Expired { at: DateTime<Utc> },
    /// The guard held the provider back: its breaker is open until `until_ms` (epoch ms);
    /// `probing`: half-open, and another caller is probing it.
    CircuitOpen { until_ms: i64, probing: bool },
    /// The guard held the provider back: over its rate limit for `wait`; `reserved`: a token
    /// is taken for this message at the end of the wait.
    RateLimited { wait: Duration, reserved: bool },
    /// The provider accepted the message.
    Sent {
        provider_message_id: Option<&'a str>,
        latency_ms: u64,
    },
    /// The provider call failed. `breaker_open_until`: the provider's breaker is open after
    /// this failure (epoch ms).
    Failed {
        error: &'a ProviderError,
        latency_ms: u64,
        breaker_open_until: Option<i64>,
    },
}

/// Where the message stands in its provider list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// The provider at hand.
    pub index: usize,
    /// How many providers the message has.
    pub providers: usize,
    /// Attempts already counted on the provider at hand, before this step.
    pub attempts_done: u32,
}

impl Position {
    /// Another provider is left after this one.
    pub fn has_next(&self) -> bool {
        self.index + 1 < self.providers
    }
}

/// The instant of a decision and its random draw, handed in so [`decide`] stays pure.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now_ms: i64,
    /// A uniform sample in `[0, 1]`: where the backoff's full jitter lands.
    pub jitter: f64,
}

impl Clock {
    pub fn now() -> Clock {
        Clock {
            now_ms: Utc::now().timestamp_millis(),
            jitter: rand::random::<f64>(),
        }
    }
}

/// How long a message waits before the provider is asked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delay {
    pub wait: Duration,
    /// The exact end of the wait (epoch ms), when coarse delay tiers must not cut it short
    /// (a cool-down, a reserved token): carried as `x-not-before`. `None`: the wait is
    /// rounded down to a delay tier.
    pub until_ms: Option<i64>,
    /// Attempts counted on the provider once the wait is over.
    pub attempts: u32,
    /// A rate-limit token is reserved for the message at the end of the wait.
    pub rate_slot: bool,
}

/// What happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Record it as sent.
    Sent,
    /// Call the same provider again after the delay; this step counted an attempt.
    Retry(Delay),
    /// Hold the message back without counting an attempt (rate limit, someone else probing).
    Wait(Delay),
    /// Try the next provider now.
    FailOver,
    /// The message failed; `dead_letter`: its envelope goes to `{ns}.dead` too.
    Fail { dead_letter: bool },
    /// The message expired.
    Expire,
}

/// The delivery policy: see the module's table.
pub fn decide(outcome: &Outcome<'_>, at: Position, policy: &RetryPolicy, clock: Clock) -> Next {
    let budget = policy.attempts_per_provider;
    let attempt = at.attempts_done.saturating_add(1);
    let until = |until_ms: i64| Delay {
        wait: Duration::from_millis((until_ms - clock.now_ms).max(0) as u64),
        until_ms: Some(until_ms),
        attempts: attempt,
        rate_slot: false,
    };
    match *outcome {
        Outcome::Expired { .. } => Next::Expire,
        Outcome::Sent { .. } => Next::Sent,
        Outcome::RateLimited { wait, reserved } => Next::Wait(Delay {
            wait,
            until_ms: Some(clock.now_ms.saturating_add(wait.as_millis() as i64)),
            attempts: at.attempts_done,
            rate_slot: reserved,
        }),
        Outcome::CircuitOpen { .. } if at.has_next() => Next::FailOver,
        // Its verdict comes soon: wait the shortest tier, not counted as an attempt.
        Outcome::CircuitOpen { probing: true, .. } => Next::Wait(Delay {
            wait: Duration::ZERO,
            until_ms: None,
            attempts: at.attempts_done,
            rate_slot: false,
        }),
        // Waiting out the cool-down counts, so a provider that never recovers still fails.
        Outcome::CircuitOpen { until_ms, .. } if attempt < budget => Next::Retry(until(until_ms)),
        Outcome::CircuitOpen { .. } => Next::Fail { dead_letter: true },
        Outcome::Failed { error, .. } if matches!(error.class, ErrorClass::RecipientPermanent) => {
            Next::Fail { dead_letter: false }
        }
        Outcome::Failed {
            error,
            breaker_open_until,
            ..
        } => match error.class {
            // With the breaker open, retrying here is pointless while another provider is left.
            ErrorClass::Transient { retry_after }
                if attempt < budget && !(breaker_open_until.is_some() && at.has_next()) =>
            {
                match breaker_open_until.filter(|u| *u > clock.now_ms) {
                    Some(until_ms) => Next::Retry(until(until_ms)),
                    None => Next::Retry(Delay {
                        wait: retry_delay(policy, attempt, retry_after, clock.jitter),
                        until_ms: None,
                        attempts: attempt,
                        rate_slot: false,
                    }),
                }
            }
            _ if at.has_next() => Next::FailOver,
            _ => Next::Fail { dead_letter: true },
        },
    }
}

/// The delay before retry number `attempt` (1-based) on the same provider: exponential from
/// the policy's base (base, 2×base, 4×base, …), capped, with full jitter (`jitter` in
/// `[0, 1]` picks the point between zero and that ceiling); a provider's Retry-After is a
/// floor, within the cap. The `backoff` crate is used only as a calculator of the
/// exponential schedule.
pub fn retry_delay(
    policy: &RetryPolicy,
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let ceiling = backoff_ceiling(policy, attempt);
    let jittered = ceiling.mul_f64(jitter.clamp(0.0, 1.0));
    let floor = retry_after.unwrap_or_default().min(policy.max);
    jittered.max(floor).min(policy.max)
}

/// The longest delay before retry number `attempt`: `base × 2^(attempt-1)`, at most `max`.
fn backoff_ceiling(policy: &RetryPolicy, attempt: u32) -> Duration {
    let mut schedule = backoff::ExponentialBackoff {
        current_interval: policy.base,
        initial_interval: policy.base,
        randomization_factor: 0.0,
        multiplier: 2.0,
        max_interval: policy.max,
        max_elapsed_time: None,
        ..Default::default()
    };
    let mut ceiling = policy.base;
    for _ in 0..attempt.max(1) {
        ceiling = schedule.next_backoff().unwrap_or(policy.max);
    }
    ceiling.min(policy.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            attempts_per_provider: 3,
        }
    }

    fn error(class: ErrorClass) -> ProviderError {
        ProviderError {
            class,
            message: "boom".into(),
            code: None,
            outcome_unknown: false,
        }
    }

    fn transient(retry_after: Option<u64>) -> ProviderError {
        error(ErrorClass::Transient {
            retry_after: retry_after.map(Duration::from_millis),
        })
    }

    fn failed(error: &ProviderError, breaker_open_until: Option<i64>) -> Outcome<'_> {
        Outcome::Failed {
            error,
            latency_ms: 5,
            breaker_open_until,
        }
    }

    /// Provider `index` of `providers`, with `attempts_done` attempts counted on it.
    fn at(index: usize, providers: usize, attempts_done: u32) -> Position {
        Position {
            index,
            providers,
            attempts_done,
        }
    }

    fn retry(wait_ms: u64, until_ms: Option<i64>, attempts: u32) -> Next {
        Next::Retry(Delay {
            wait: Duration::from_millis(wait_ms),
            until_ms,
            attempts,
            rate_slot: false,
        })
    }

    #[test]
    fn the_decision_table() {
        let clock = Clock {
            now_ms: NOW,
            jitter: 0.5,
        };
        let (soft, hinted, hinted_long) = (
            transient(None),
            transient(Some(700)),
            transient(Some(60_000)),
        );
        let provider_down = error(ErrorClass::ProviderPermanent);
        let recipient_bad = error(ErrorClass::RecipientPermanent);
        let sent = Outcome::Sent {
            provider_message_id: Some("SM1"),
            latency_ms: 3,
        };
        let expired = Outcome::Expired { at: Utc::now() };
        let open = Outcome::CircuitOpen {
            until_ms: NOW + 4000,
            probing: false,
        };
        let probing = Outcome::CircuitOpen {
            until_ms: NOW + 300,
            probing: true,
        };
        let rows: Vec<(&str, Outcome<'_>, Position, Next)> = vec![
            ("sent", sent, at(0, 2, 0), Next::Sent),
            ("expired", expired, at(0, 2, 0), Next::Expire),
            // Backoff: attempt 1 → ceiling 100 ms, attempt 2 → 200 ms; jitter 0.5 halves it.
            (
                "transient, budget left",
                failed(&soft, None),
                at(0, 2, 0),
                retry(50, None, 1),
            ),
            (
                "transient, second try",
                failed(&soft, None),
                at(0, 2, 1),
                retry(100, None, 2),
            ),
            (
                "transient, Retry-After above the backoff",
                failed(&hinted, None),
                at(0, 1, 0),
                retry(700, None, 1),
            ),
            (
                "transient, Retry-After beyond the cap",
                failed(&hinted_long, None),
                at(0, 1, 1),
                retry(1000, None, 2),
            ),
            (
                "transient, budget spent, more providers",
                failed(&soft, None),
                at(0, 2, 2),
                Next::FailOver,
            ),
            (
                "transient, budget spent on the last",
                failed(&soft, None),
                at(1, 2, 2),
                Next::Fail { dead_letter: true },
            ),
            (
                "transient, breaker opened, more providers",
                failed(&soft, Some(NOW + 5000)),
                at(0, 2, 0),
                Next::FailOver,
            ),
            (
                "transient, breaker opened on the last",
                failed(&soft, Some(NOW + 5000)),
                at(1, 2, 0),
                retry(5000, Some(NOW + 5000), 1),
            ),
            (
                "transient, breaker already closed again",
                failed(&soft, Some(NOW - 1)),
                at(0, 1, 0),
                retry(50, None, 1),
            ),
            (
                "transient, breaker open, budget spent",
                failed(&soft, Some(NOW + 5000)),
                at(0, 1, 2),
                Next::Fail { dead_letter: true },
            ),
            (
                "provider-permanent, more providers",
                failed(&provider_down, None),
                at(0, 3, 0),
                Next::FailOver,
            ),
            (
                "provider-permanent on the last",
                failed(&provider_down, None),
                at(2, 3, 0),
                Next::Fail { dead_letter: true },
            ),
            (
                "recipient-permanent",
                failed(&recipient_bad, None),
                at(0, 3, 0),
                Next::Fail { dead_letter: false },
            ),
            (
                "recipient-permanent on the last",
                failed(&recipient_bad, None),
                at(2, 3, 2),
                Next::Fail { dead_letter: false },
            ),
            (
                "breaker open, more providers",
                open,
                at(0, 2, 0),
                Next::FailOver,
            ),
            (
                "breaker open on the last, budget left",
                open,
                at(1, 2, 1),
                retry(4000, Some(NOW + 4000), 2),
            ),
            (
                "breaker open on the last, budget spent",
                open,
                at(1, 2, 2),
                Next::Fail { dead_letter: true },
            ),
            (
                "half-open, someone else probing, more providers",
                probing,
                at(0, 2, 0),
                Next::FailOver,
            ),
            (
                "half-open, someone else probing, last provider",
                probing,
                at(1, 2, 1),
                Next::Wait(Delay {
                    wait: Duration::ZERO,
                    until_ms: None,
                    attempts: 1,
                    rate_slot: false,
                }),
            ),
            (
                "rate limited, token reserved",
                Outcome::RateLimited {
                    wait: Duration::from_millis(250),
                    reserved: true,
                },
                at(0, 2, 1),
                Next::Wait(Delay {
                    wait: Duration::from_millis(250),
                    until_ms: Some(NOW + 250),
                    attempts: 1,
                    rate_slot: true,
                }),
            ),
            (
                "rate limited, beyond the reservation horizon",
                Outcome::RateLimited {
                    wait: Duration::from_secs(90),
                    reserved: false,
                },
                at(0, 1, 0),
                Next::Wait(Delay {
                    wait: Duration::from_secs(90),
                    until_ms: Some(NOW + 90_000),
                    attempts: 0,
                    rate_slot: false,
                }),
            ),
        ];
        for (case, outcome, position, expected) in rows {
            assert_eq!(
                decide(&outcome, position, &policy(), clock),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn retry_delays_grow_exponentially_within_the_cap() {
        let policy = RetryPolicy {
            attempts_per_provider: 10,
            ..policy()
        };
        let ms = |attempt, jitter| retry_delay(&policy, attempt, None, jitter).as_millis();
        // The top of the jitter range doubles per attempt until the cap.
        let tops: Vec<u128> = (1..=6).map(|a| ms(a, 1.0)).collect();
        assert_eq!(tops, vec![100, 200, 400, 800, 1000, 1000]);
        // Full jitter: anywhere from zero to that top, proportionally.
        assert_eq!(ms(3, 0.0), 0);
        assert_eq!(ms(3, 0.25), 100);
        assert_eq!(ms(9, 0.5), 500);
    }

    #[test]
    fn real_retry_delays_are_spread_and_grow_with_the_attempt() {
        let policy = RetryPolicy {
            attempts_per_provider: 10,
            ..policy()
        };
        let draw = |attempt| -> Vec<Duration> {
            (0..400)
                .map(|_| retry_delay(&policy, attempt, None, Clock::now().jitter))
                .collect()
        };
        let mean = |d: &[Duration]| d.iter().sum::<Duration>() / d.len() as u32;
        let (first, third) = (draw(1), draw(3));
        assert!(first.iter().all(|d| *d <= Duration::from_millis(100)));
        assert!(third.iter().all(|d| *d <= Duration::from_millis(400)));
        // A delay function that always answered 0 (or never grew) fails here.
        assert!(
            mean(&first) >= Duration::from_millis(30),
            "{:?}",
            mean(&first)
        );
        assert!(
            mean(&third) >= Duration::from_millis(120),
            "{:?}",
            mean(&third)
        );
        assert!(mean(&third) > mean(&first) * 2);
        assert!(third.iter().any(|d| *d > Duration::from_millis(300)));
    }

    #[test]
    fn retry_after_is_a_floor_within_the_cap() {
        for jitter in [0.0, 0.3, 1.0] {
            let hinted = retry_delay(&policy(), 2, Some(Duration::from_millis(700)), jitter);
            assert!(hinted >= Duration::from_millis(700), "{hinted:?}");
            assert!(hinted <= Duration::from_millis(1000));
            let capped = retry_delay(&policy(), 2, Some(Duration::from_secs(60)), jitter);
            assert_eq!(capped, Duration::from_millis(1000));
        }
    }
}
