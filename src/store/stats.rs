//! The stats rollup behind `GET /v1/stats`: `message_stats_{hourly,daily}` (messages per
//! accept hour or day, channel, provider and current status) and
//! `message_latency_{hourly,daily}` (a fixed accept → sent latency histogram per accept hour
//! or day, channel and provider). The daily tables keep long ranges cheap to read (a month
//! is ~30 rows per provider and status instead of ~720).
//!
//! The worker's writer keeps them current inside its batch transactions: it builds a
//! [`RollupDelta`] from the batch (each status change moves one count from the old status to
//! the new one) and applies it with one upsert per table, in a fixed table order and sorted
//! by key, so concurrent batches lock rollup rows in the same order. The API reads only these
//! tables.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool};
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

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CountKey {
    tenant_id: String,
    hour: DateTime<Utc>,
    channel: String,
    provider_id: Uuid,
    status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LatencyKey {
    tenant_id: String,
    hour: DateTime<Utc>,
    channel: String,
    provider_id: Uuid,
}

/// A message's rollup coordinates and where it is counted now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CountedMessage {
    pub id: Uuid,
    pub tenant_id: String,
    pub channel: String,
    pub created_at: DateTime<Utc>,
    pub status: String,
    pub provider_id: Option<Uuid>,
}

/// What one batch changes in the rollup. Keys are ordered so the upserts lock rows in one
/// order in every transaction (no deadlocks between concurrent batches).
#[derive(Debug, Default, Clone)]
pub struct RollupDelta {
    counts: BTreeMap<CountKey, i64>,
    latencies: BTreeMap<LatencyKey, [i64; LATENCY_BUCKETS]>,
}

impl RollupDelta {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.latencies.is_empty()
    }

    /// Adds `n` (may be negative) messages to a (status, provider) of an accept hour.
    pub fn count(
        &mut self,
        tenant_id: &str,
        created_at: DateTime<Utc>,
        channel: &str,
        provider_id: Option<Uuid>,
        status: &str,
        n: i64,
    ) {
        let key = CountKey {
            tenant_id: tenant_id.to_owned(),
            hour: hour_of(created_at),
            channel: channel.to_owned(),
            provider_id: provider_id.unwrap_or(NO_PROVIDER),
            status: status.to_owned(),
        };
        *self.counts.entry(key).or_default() += n;
    }

    /// A message moved from where `before` counts it to `status` with `provider_id` (its old
    /// provider when `None`); a move to `sent` also records its accept → sent latency.
    pub fn moved(
        &mut self,
        before: &CountedMessage,
        status: &str,
        provider_id: Option<Uuid>,
        now: DateTime<Utc>,
    ) {
        let provider = provider_id.or(before.provider_id);
        let m = before;
        self.count(
            &m.tenant_id,
            m.created_at,
            &m.channel,
            m.provider_id,
            &m.status,
            -1,
        );
        self.count(&m.tenant_id, m.created_at, &m.channel, provider, status, 1);
        if status == "sent" {
            let ms = (now - m.created_at).num_milliseconds().max(0);
            let key = LatencyKey {
                tenant_id: m.tenant_id.clone(),
                hour: hour_of(m.created_at),
                channel: m.channel.clone(),
                provider_id: provider.unwrap_or(NO_PROVIDER),
            };
            self.latencies.entry(key).or_insert([0; LATENCY_BUCKETS])[latency_bucket(ms)] += 1;
        }
    }

    /// Adds a whole histogram of accept → sent latencies (e.g. a benchmark's synthetic
    /// hour) to a provider's accept hour.
    pub fn add_latencies(
        &mut self,
        tenant_id: &str,
        created_at: DateTime<Utc>,
        channel: &str,
        provider_id: Uuid,
        histogram: &[i64; LATENCY_BUCKETS],
    ) {
        let key = LatencyKey {
            tenant_id: tenant_id.to_owned(),
            hour: hour_of(created_at),
            channel: channel.to_owned(),
            provider_id,
        };
        let entry = self.latencies.entry(key).or_insert([0; LATENCY_BUCKETS]);
        for (a, b) in entry.iter_mut().zip(histogram) {
            *a += b;
        }
    }
}

/// Locks the rows of `ids` that are still in one of `movable` statuses and returns where
/// the rollup counts them. Call it in the writing transaction *before* changing them, with
/// the same status condition as the change, so the rollup moves exactly the rows changed.
pub async fn lock_counted(
    conn: &mut PgConnection,
    ids: &[Uuid],
    movable: &[&str],
) -> Result<Vec<CountedMessage>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(
        "SELECT id, tenant_id, channel, created_at, status, provider_id FROM message_logs \
         WHERE id = ANY($1) AND status = ANY($2) ORDER BY id FOR UPDATE",
    )
    .bind(ids)
    .bind(movable)
    .fetch_all(&mut *conn)
    .await
}

/// For a single-message change outside the writer (a receipt, a replay): moves the message's
/// count to `to` (same provider) if its status is one of `from`. Call it in the changing
/// transaction, just before the `UPDATE` with the same status condition.
pub async fn move_one(
    conn: &mut PgConnection,
    id: Uuid,
    from: &[&str],
    to: &str,
) -> Result<(), sqlx::Error> {
    let mut delta = RollupDelta::default();
    for before in lock_counted(conn, &[id], from).await? {
        delta.moved(&before, to, None, Utc::now());
    }
    apply_delta(conn, &delta).await
}

/// Applies a batch's delta: one upsert per table, hourly tables first.
pub async fn apply_delta(conn: &mut PgConnection, delta: &RollupDelta) -> Result<(), sqlx::Error> {
    for grain in [Grain::Hour, Grain::Day] {
        let mut counts: BTreeMap<CountKey, i64> = BTreeMap::new();
        for (k, n) in &delta.counts {
            let key = CountKey {
                hour: grain.start_of(k.hour),
                ..k.clone()
            };
            *counts.entry(key).or_default() += n;
        }
        counts.retain(|_, n| *n != 0);
        upsert_counts(conn, grain, &counts).await?;
        let mut latencies: BTreeMap<LatencyKey, [i64; LATENCY_BUCKETS]> = BTreeMap::new();
        for (k, h) in &delta.latencies {
            let key = LatencyKey {
                hour: grain.start_of(k.hour),
                ..k.clone()
            };
            let sum = latencies.entry(key).or_insert([0; LATENCY_BUCKETS]);
            for (a, b) in sum.iter_mut().zip(h) {
                *a += b;
            }
        }
        upsert_latencies(conn, grain, &latencies).await?;
    }
    Ok(())
}

async fn upsert_counts(
    conn: &mut PgConnection,
    grain: Grain,
    counts: &BTreeMap<CountKey, i64>,
) -> Result<(), sqlx::Error> {
    if counts.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = counts.keys().map(|k| k.tenant_id.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = counts.keys().map(|k| k.hour).collect();
    let channels: Vec<&str> = counts.keys().map(|k| k.channel.as_str()).collect();
    let providers: Vec<Uuid> = counts.keys().map(|k| k.provider_id).collect();
    let statuses: Vec<&str> = counts.keys().map(|k| k.status.as_str()).collect();
    let ns: Vec<i64> = counts.values().copied().collect();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {} AS s (tenant_id, period_start, channel, provider_id, status, count) \
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::uuid[], $5::text[], $6::bigint[]) \
         ORDER BY 1, 2, 3, 4, 5 \
         ON CONFLICT (tenant_id, period_start, channel, provider_id, status) \
         DO UPDATE SET count = s.count + EXCLUDED.count",
        grain.counts_table()
    )))
    .bind(&tenants)
    .bind(&starts)
    .bind(&channels)
    .bind(&providers)
    .bind(&statuses)
    .bind(&ns)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn upsert_latencies(
    conn: &mut PgConnection,
    grain: Grain,
    latencies: &BTreeMap<LatencyKey, [i64; LATENCY_BUCKETS]>,
) -> Result<(), sqlx::Error> {
    if latencies.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = latencies.keys().map(|k| k.tenant_id.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = latencies.keys().map(|k| k.hour).collect();
    let channels: Vec<&str> = latencies.keys().map(|k| k.channel.as_str()).collect();
    let providers: Vec<Uuid> = latencies.keys().map(|k| k.provider_id).collect();
    // One flat array (rows × buckets): Postgres arrays of arrays must be rectangular.
    let flat: Vec<i64> = latencies.values().flat_map(|h| h.iter().copied()).collect();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {} AS l (tenant_id, period_start, channel, provider_id, buckets) \
         SELECT t.tenant_id, t.period_start, t.channel, t.provider_id, \
                ($5::bigint[])[(t.n::int - 1) * $6 + 1 : t.n::int * $6] \
         FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::uuid[]) \
              WITH ORDINALITY AS t(tenant_id, period_start, channel, provider_id, n) \
         ORDER BY 1, 2, 3, 4 \
         ON CONFLICT (tenant_id, period_start, channel, provider_id) DO UPDATE SET buckets = \
            ARRAY(SELECT COALESCE(a, 0) + COALESCE(b, 0) \
                  FROM UNNEST(l.buckets, EXCLUDED.buckets) AS u(a, b))",
        grain.latency_table()
    )))
    .bind(&tenants)
    .bind(&starts)
    .bind(&channels)
    .bind(&providers)
    .bind(&flat)
    .bind(LATENCY_BUCKETS as i32)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One row of counts of a period.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CountRow {
    pub start: DateTime<Utc>,
    pub channel: String,
    pub provider_id: Uuid,
    pub status: String,
    pub count: i64,
}

/// Non-zero counts per `grain` period of accept time in `[since, until)` (both on period
/// boundaries).
#[tracing::instrument(skip_all)]
pub async fn counts(
    pool: &PgPool,
    tenant: &str,
    grain: Grain,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<CountRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT period_start AS start, channel, provider_id, status, count FROM {} \
         WHERE tenant_id = $1 AND period_start >= $2 AND period_start < $3 AND count <> 0 \
         ORDER BY 1, 2, 3, 4",
        grain.counts_table()
    )))
    .bind(tenant)
    .bind(since)
    .bind(until)
    .fetch_all(pool)
    .await
}

/// Latency histograms per (channel, provider), summed over the `grain` periods in
/// `[since, until)`.
#[tracing::instrument(skip_all)]
pub async fn latencies(
    pool: &PgPool,
    tenant: &str,
    grain: Grain,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<(String, Uuid, Vec<i64>)>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT channel, provider_id, array_agg(total ORDER BY i) FROM ( \
            SELECT channel, provider_id, i, SUM(v)::bigint AS total \
            FROM {}, UNNEST(buckets) WITH ORDINALITY AS x(v, i) \
            WHERE tenant_id = $1 AND period_start >= $2 AND period_start < $3 \
            GROUP BY 1, 2, 3) s \
         GROUP BY 1, 2",
        grain.latency_table()
    )))
    .bind(tenant)
    .bind(since)
    .bind(until)
    .fetch_all(pool)
    .await
}

/// Counts per (channel, provider, status) over accept hours in `[since, until)`.
#[tracing::instrument(skip_all)]
pub async fn provider_totals(
    pool: &PgPool,
    tenant: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<(String, Uuid, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT channel, provider_id, status, SUM(count)::bigint FROM message_stats_hourly \
         WHERE tenant_id = $1 AND period_start >= $2 AND period_start < $3 AND provider_id <> $4 \
         GROUP BY 1, 2, 3 HAVING SUM(count) <> 0",
    )
    .bind(tenant)
    .bind(since)
    .bind(until)
    .bind(NO_PROVIDER)
    .fetch_all(pool)
    .await
}

/// What the stats say about a provider besides its id.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProviderLabel {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub channel: String,
    /// The operator's provider (no tenant), used when the tenant has none of its own.
    pub platform: bool,
}

/// The tenant's own providers (all of them) and those of `ids` that are the platform's.
/// Never another tenant's.
#[tracing::instrument(skip_all)]
pub async fn provider_labels(
    pool: &PgPool,
    tenant: &str,
    ids: &[Uuid],
) -> Result<Vec<ProviderLabel>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, kind, channel, tenant_id IS NULL AS platform FROM provider_configs \
         WHERE tenant_id = $1 OR (tenant_id IS NULL AND id = ANY($2)) \
         ORDER BY tenant_id IS NULL, channel, priority, created_at",
    )
    .bind(tenant)
    .bind(ids)
    .fetch_all(pool)
    .await
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

    #[test]
    fn a_move_takes_one_count_from_the_old_status_and_gives_it_to_the_new() {
        let created = DateTime::parse_from_rfc3339("2026-12-01T10:59:59Z")
            .expect("a valid time")
            .with_timezone(&Utc);
        let provider = Uuid::from_u128(7);
        let before = CountedMessage {
            id: Uuid::from_u128(1),
            tenant_id: "t".into(),
            channel: "sms".into(),
            created_at: created,
            status: "sending".into(),
            provider_id: Some(provider),
        };
        let mut d = RollupDelta::default();
        d.moved(
            &before,
            "sent",
            None,
            created + TimeDelta::milliseconds(320),
        );
        let counts: Vec<_> = d
            .counts
            .iter()
            .map(|(k, n)| (k.status.as_str(), k.provider_id, k.hour, *n))
            .collect();
        let hour = hour_of(created);
        assert_eq!(
            counts,
            vec![("sending", provider, hour, -1), ("sent", provider, hour, 1)]
        );
        let (key, h) = d.latencies.iter().next().expect("a latency was recorded");
        assert_eq!(key.provider_id, provider);
        assert_eq!(h[latency_bucket(320)], 1);
        assert_eq!(h.iter().sum::<i64>(), 1);
    }
}
