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
mod tests;
