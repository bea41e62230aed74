//! The stats rollup behind `GET /v1/stats`: `message_stats_{hourly,daily}` (messages per
//! accept hour or day, channel, provider and current status) and
//! `message_latency_{hourly,daily}` (a fixed accept → sent latency histogram per accept hour
//! or day, channel and provider). The daily tables keep long ranges cheap to read (a month
//! is ~30 rows per provider and status instead of ~720).
//!
//! The worker's writer keeps them current inside its batch transactions: it builds a
//! [`RollupDelta`] from the batch (each status change moves one count from the old status to
//! the new one, the old status as the change's own statement returned it) and applies it in
//! one statement whose four upserts run in a fixed table order, each sorted by key, so
//! concurrent batches lock rollup rows in the same order. The API reads only these tables.

mod read;
mod rollup;

pub use read::*;
pub use rollup::*;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use uuid::Uuid;

/// Upper bounds (inclusive, ms) of the latency histogram's buckets; one more bucket counts
/// everything above the last. Roughly ×1.5–2 apart from 10 ms to 30 minutes. Stored arrays
/// depend on these: extend only by appending (older arrays are then shorter, read as zeros).
pub const LATENCY_BOUNDS_MS: [i64; 23] = [
    10, 25, 50, 75, 100, 150, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000,
    15_000, 30_000, 60_000, 120_000, 300_000, 1_800_000,
];

/// Number of stored histogram elements.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// Slots each rollup row is split over. Batches written at the same time pass different
/// slots to [`apply_delta`], so they do not queue behind each other's commit on one hot row
/// (a tenant's busy hour is touched by every batch); readers sum over the slots.
pub const SLOTS: i16 = 2;

/// Stands for "no provider yet" in the rollup's key (primary-key columns cannot be NULL).
pub const NO_PROVIDER: Uuid = Uuid::nil();

/// The histogram element a latency falls in.
pub fn latency_bucket(ms: i64) -> usize {
    LATENCY_BOUNDS_MS.partition_point(|&bound| bound < ms)
}

/// The hour (UTC) a message accepted at `at` is counted in.
pub fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at)
}

/// The time resolution of a rollup table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Hour,
    Day,
}

impl Grain {
    /// The start (UTC) of the period `at` falls in.
    pub fn start_of(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let step = match self {
            Grain::Hour => TimeDelta::hours(1),
            Grain::Day => TimeDelta::days(1),
        };
        at.duration_trunc(step).unwrap_or(at)
    }

    fn counts_table(self) -> &'static str {
        match self {
            Grain::Hour => "message_stats_hourly",
            Grain::Day => "message_stats_daily",
        }
    }

    fn latency_table(self) -> &'static str {
        match self {
            Grain::Hour => "message_latency_hourly",
            Grain::Day => "message_latency_daily",
        }
    }
}

/// The value below which a share `q` (0–1) of a histogram's samples fall, interpolated
/// linearly inside the bucket it lands in; `None` without samples.
pub fn percentile(histogram: &[i64], q: f64) -> Option<i64> {
    let total: i64 = histogram.iter().sum();
    if total <= 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0);
    let mut seen = 0i64;
    for (i, &n) in histogram.iter().enumerate() {
        if n <= 0 {
            continue;
        }
        if (seen + n) as f64 >= rank {
            let low = if i == 0 { 0 } else { LATENCY_BOUNDS_MS[i - 1] };
            let Some(&high) = LATENCY_BOUNDS_MS.get(i) else {
                return Some(low);
            };
            let within = (rank - seen as f64) / n as f64;
            return Some(low + ((high - low) as f64 * within).round() as i64);
        }
        seen += n;
    }
    LATENCY_BOUNDS_MS.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_the_bucket_whose_bound_is_the_first_not_below_them() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(10), 0);
        assert_eq!(latency_bucket(11), 1);
        assert_eq!(latency_bucket(1_000), 10);
        assert_eq!(latency_bucket(1_001), 11);
        assert_eq!(latency_bucket(10_000_000), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn percentiles_interpolate_inside_the_bucket_they_land_in() {
        let mut h = [0i64; LATENCY_BUCKETS];
        assert_eq!(percentile(&h, 0.5), None);
        // 100 samples in (200, 300]: p50 is half-way, p95 near the top.
        h[latency_bucket(250)] = 100;
        assert_eq!(percentile(&h, 0.5), Some(250));
        assert_eq!(percentile(&h, 0.95), Some(295));
        // 90 fast and 10 slow samples: p50 fast, p95 slow.
        let mut h = [0i64; LATENCY_BUCKETS];
        h[latency_bucket(40)] = 90;
        h[latency_bucket(4_000)] = 10;
        assert!(percentile(&h, 0.5).is_some_and(|p| (25..=50).contains(&p)));
        assert!(percentile(&h, 0.95).is_some_and(|p| (3_000..=5_000).contains(&p)));
        // Overflow bucket: its lower bound.
        let mut h = [0i64; LATENCY_BUCKETS];
        h[LATENCY_BUCKETS - 1] = 1;
        assert_eq!(percentile(&h, 0.5), Some(1_800_000));
    }
}
