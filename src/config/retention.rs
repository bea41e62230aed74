//! Retention of messages (`COMMUNICATION_RETENTION_…`): how old a message may get before the
//! worker removes it, and how the removal paces itself (see `crate::retention`).

use std::time::Duration;

use super::env::Env;
use super::notify::parse_duration;

/// The range of retention days, also of a tenant's override (`PUT /v1/retention`).
pub const RETENTION_DAYS: std::ops::RangeInclusive<u32> = 1..=3650;

/// Typed settings of this area; see the README's configuration table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Messages (and their events) older than this many days are removed, unless the operator
    /// set another value for the tenant (`COMMUNICATION_RETENTION_DAYS`).
    pub days: u32,
    /// How often a worker runs a pass (`COMMUNICATION_RETENTION_INTERVAL`, e.g. `1h`); the
    /// first pass comes a minute after start. Only one worker at a time runs one.
    pub interval: Duration,
    /// Messages removed per transaction (`COMMUNICATION_RETENTION_BATCH`): small enough that
    /// each transaction holds its row locks for milliseconds.
    pub batch_size: u32,
    /// Pause between two batches (`COMMUNICATION_RETENTION_PAUSE_MS`), leaving the database to
    /// the delivery path.
    pub pause: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            days: 30,
            interval: Duration::from_secs(3600),
            batch_size: 2000,
            pause: Duration::from_millis(50),
        }
    }
}

impl RetentionSettings {
    pub(super) fn read(env: &mut Env) -> Self {
        let d = RetentionSettings::default();
        let name = "COMMUNICATION_RETENTION_INTERVAL";
        let interval = match env.get(name) {
            None => d.interval,
            Some(v) => match parse_duration(&v) {
                Some(i) if i >= Duration::from_secs(1) => i,
                _ => {
                    env.problem(name, "must be a duration of at least 1s, like 30m or 1h");
                    d.interval
                }
            },
        };
        RetentionSettings {
            days: env.number_in(
                "COMMUNICATION_RETENTION_DAYS",
                d.days,
                RETENTION_DAYS,
                "must be 1 to 3650 days",
            ),
            interval,
            batch_size: env.number_in(
                "COMMUNICATION_RETENTION_BATCH",
                d.batch_size,
                1..=100_000,
                "must be 1 to 100000",
            ),
            pause: env.millis("COMMUNICATION_RETENTION_PAUSE_MS", d.pause),
        }
    }
}
