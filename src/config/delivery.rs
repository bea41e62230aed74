//! How the worker delivers: its tuning, the retry schedule, and the circuit breakers.

use std::time::Duration;

use super::env::Env;
use crate::domain::Channel;

/// Worker tuning (`COMMUNICATION_PREFETCH`, `_WORKER_CONCURRENCY`, `_BATCH_SIZE`,
/// `_BATCH_LINGER_MS`, `_WRITER_FLUSHES`).
#[derive(Debug, Clone, Copy)]
pub struct WorkerTuning {
    /// Unacked deliveries the broker may push to one consumer (per queue).
    pub prefetch: u16,
    /// Deliveries processed at once per worker process. Unset, it is what the broker may push
    /// (prefetch × work queues): fewer leaves prefetched deliveries idle in the buffer while
    /// the tasks wait on the writer (see BENCHMARKS.md).
    pub concurrency: usize,
    /// Most rows of one kind in one batched statement.
    pub batch_size: usize,
    /// How long the writer waits to fill a batch, from its first request. Not at all when
    /// that request ends a quiet spell (nothing written or received for this long); longer
    /// while all `batch_flushes` are busy (the batch keeps growing until one frees).
    pub batch_linger: Duration,
    /// Batches the writer may have in flight (each in its own transaction and connection):
    /// one at a time leaves the writer waiting on every commit (see BENCHMARKS.md).
    pub batch_flushes: usize,
}

impl Default for WorkerTuning {
    fn default() -> Self {
        let prefetch = 200;
        WorkerTuning {
            prefetch,
            concurrency: WorkerTuning::concurrency_for(prefetch),
            batch_size: 500,
            // At a steady 1,000 msg/s, 10 ms instead of 6 took a quarter off Postgres's CPU per
            // message for about 2 ms more from accept to sent (BENCHMARKS.md, issue 13
            // session 7); a request after a quiet spell does not wait at all.
            batch_linger: Duration::from_millis(10),
            batch_flushes: 4,
        }
    }
}

impl WorkerTuning {
    /// The default concurrency: everything the broker may push to one process.
    fn concurrency_for(prefetch: u16) -> usize {
        usize::from(prefetch) * Channel::ALL.len()
    }

    pub(super) fn read(env: &mut Env) -> Self {
        let d = WorkerTuning::default();
        let at_least_1 = "must be at least 1";
        let prefetch = env.number_in(
            "COMMUNICATION_PREFETCH",
            d.prefetch,
            1..=u16::MAX,
            at_least_1,
        );
        WorkerTuning {
            prefetch,
            concurrency: env.number_in(
                "COMMUNICATION_WORKER_CONCURRENCY",
                WorkerTuning::concurrency_for(prefetch),
                1..=usize::MAX,
                at_least_1,
            ),
            batch_size: env.number_in(
                "COMMUNICATION_BATCH_SIZE",
                d.batch_size,
                1..=usize::MAX,
                at_least_1,
            ),
            batch_linger: env.millis("COMMUNICATION_BATCH_LINGER_MS", d.batch_linger),
            batch_flushes: env.number_in(
                "COMMUNICATION_WRITER_FLUSHES",
                d.batch_flushes,
                1..=usize::MAX,
                at_least_1,
            ),
        }
    }
}

/// The retry schedule (`COMMUNICATION_RETRY_BASE_MS`, `_MAX_MS`, `_ATTEMPTS`; see
/// docs/delivery.md).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
    /// Attempts per provider before failing over to the next one.
    pub attempts_per_provider: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(2000),
            max: Duration::from_millis(300_000),
            attempts_per_provider: 4,
        }
    }
}

impl RetryPolicy {
    pub(super) fn read(env: &mut Env) -> Self {
        let d = RetryPolicy::default();
        let base_ms = env.number_in(
            "COMMUNICATION_RETRY_BASE_MS",
            d.base.as_millis() as u64,
            1..=u64::MAX,
            "must be at least 1",
        );
        let max_ms = env.number("COMMUNICATION_RETRY_MAX_MS", d.max.as_millis() as u64);
        if max_ms < base_ms
            && !env.has_problem("COMMUNICATION_RETRY_MAX_MS")
            && !env.has_problem("COMMUNICATION_RETRY_BASE_MS")
        {
            env.problem(
                "COMMUNICATION_RETRY_MAX_MS",
                "must be at least COMMUNICATION_RETRY_BASE_MS",
            );
        }
        let attempts_per_provider = env.number_in(
            "COMMUNICATION_RETRY_ATTEMPTS",
            d.attempts_per_provider,
            1..=50,
            "must be 1 to 50",
        );
        RetryPolicy {
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(max_ms.max(base_ms)),
            attempts_per_provider,
        }
    }
}

/// Circuit breakers and rate limits of the worker (see `worker::guard`):
/// `COMMUNICATION_BREAKER_THRESHOLD`, `_BREAKER_COOLDOWN_MS`, `_GUARD_REDIS_TIMEOUT_MS`.
#[derive(Debug, Clone, Copy)]
pub struct GuardSettings {
    /// Consecutive provider failures that open a breaker; 0 disables breakers.
    pub threshold: u32,
    /// How long an open breaker refuses calls before one probe is let through.
    pub cooldown: Duration,
    /// How long a half-open probe may hold its lock: longer than one provider call.
    pub probe_ttl: Duration,
    /// How long one Redis call may take before the per-process state is used instead.
    pub redis_timeout: Duration,
}

/// What a half-open probe may take beyond one provider call.
const PROBE_MARGIN: Duration = Duration::from_secs(5);

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            threshold: 5,
            cooldown: Duration::from_millis(30_000),
            probe_ttl: super::ProviderSettings::default().timeout + PROBE_MARGIN,
            redis_timeout: Duration::from_millis(250),
        }
    }
}

impl GuardSettings {
    /// The half-open probe may hold its lock for one provider call (`provider_timeout`) plus
    /// a margin.
    pub(super) fn read(env: &mut Env, provider_timeout: Duration) -> Self {
        let d = GuardSettings::default();
        let cooldown_ms = env.number_in(
            "COMMUNICATION_BREAKER_COOLDOWN_MS",
            d.cooldown.as_millis() as u64,
            1..=86_400_000,
            "must be 1 to 86400000 (one day)",
        );
        let redis_timeout_ms = env.number_in(
            "COMMUNICATION_GUARD_REDIS_TIMEOUT_MS",
            d.redis_timeout.as_millis() as u64,
            1..=60_000,
            "must be 1 to 60000",
        );
        GuardSettings {
            threshold: env.number("COMMUNICATION_BREAKER_THRESHOLD", d.threshold),
            cooldown: Duration::from_millis(cooldown_ms),
            probe_ttl: provider_timeout + PROBE_MARGIN,
            redis_timeout: Duration::from_millis(redis_timeout_ms),
        }
    }
}
