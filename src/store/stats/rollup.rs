//! The write side of the rollup: what a batch (or a single change) moves, and the upserts
//! that apply it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Grain, LATENCY_BUCKETS, NO_PROVIDER, SLOTS, hour_of, latency_bucket};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CountKey {
    tenant_id: String,
    /// Start of the period (the accept hour in a delta; hour or day in a table).
    start: DateTime<Utc>,
    channel: String,
    provider_id: Uuid,
    status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LatencyKey {
    tenant_id: String,
    /// Start of the period (the accept hour in a delta; hour or day in a table).
    start: DateTime<Utc>,
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
            start: hour_of(created_at),
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
                start: hour_of(m.created_at),
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
            start: hour_of(created_at),
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
/// The lock is the one the `UPDATE` takes anyway (`FOR NO KEY UPDATE`, which does not block
/// inserting events that reference the rows), only taken a moment earlier.
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
         WHERE id = ANY($1) AND status = ANY($2) ORDER BY id FOR NO KEY UPDATE",
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
    // Any slot: receipts arrive one per transaction, many at once.
    apply_delta(conn, &delta, rand::random_range(0..SLOTS)).await
}

/// For a message recorded outside the writer's batches directly in a final status (an
/// envelope rejected by validation): counts it.
pub async fn count_new(
    conn: &mut PgConnection,
    tenant_id: &str,
    created_at: DateTime<Utc>,
    channel: &str,
    status: &str,
) -> Result<(), sqlx::Error> {
    let mut delta = RollupDelta::default();
    delta.count(tenant_id, created_at, channel, None, status, 1);
    apply_delta(conn, &delta, rand::random_range(0..SLOTS)).await
}

/// Applies a batch's delta to `slot` (taken modulo [`SLOTS`]): one statement whose four
/// upserts run one after the other in a fixed order (hourly counts, hourly latencies, daily
/// counts, daily latencies; each waits for the previous one's rows), each inserting its rows
/// sorted by key, so every transaction locks rollup rows in the same order.
pub async fn apply_delta(
    conn: &mut PgConnection,
    delta: &RollupDelta,
    slot: i16,
) -> Result<(), sqlx::Error> {
    if delta.is_empty() {
        return Ok(());
    }
    let slot = slot.rem_euclid(SLOTS);
    let hour_counts = counts_at(delta, Grain::Hour);
    let day_counts = counts_at(delta, Grain::Day);
    if hour_counts.is_empty() && delta.latencies.is_empty() {
        return Ok(());
    }
    let hour_latencies = latencies_at(delta, Grain::Hour);
    let day_latencies = latencies_at(delta, Grain::Day);
    let hc = CountColumns::of(&hour_counts);
    let dc = CountColumns::of(&day_counts);
    let hl = LatencyColumns::of(&hour_latencies);
    let dl = LatencyColumns::of(&day_latencies);
    sqlx::query(ROLLUP_UPSERT)
        .bind(slot)
        .bind(LATENCY_BUCKETS as i32)
        .bind(&hc.tenants)
        .bind(&hc.starts)
        .bind(&hc.channels)
        .bind(&hc.providers)
        .bind(&hc.statuses)
        .bind(&hc.ns)
        .bind(&hl.tenants)
        .bind(&hl.starts)
        .bind(&hl.channels)
        .bind(&hl.providers)
        .bind(&hl.flat)
        .bind(&dc.tenants)
        .bind(&dc.starts)
        .bind(&dc.channels)
        .bind(&dc.providers)
        .bind(&dc.statuses)
        .bind(&dc.ns)
        .bind(&dl.tenants)
        .bind(&dl.starts)
        .bind(&dl.channels)
        .bind(&dl.providers)
        .bind(&dl.flat)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The four upserts of [`apply_delta`]. Each later one reads the row count of the one
/// before it (an init plan, evaluated before its first row), so the hourly counts are
/// written, then the hourly latencies, then the daily counts, then the daily latencies,
/// whatever plan Postgres picks. `$1` is the slot, `$2` the histogram length.
const ROLLUP_UPSERT: &str = "\
WITH hc AS ( \
    INSERT INTO message_stats_hourly AS s \
        (tenant_id, period_start, channel, provider_id, status, slot, count) \
    SELECT t.tenant_id, t.period_start, t.channel, t.provider_id, t.status, $1, t.count \
    FROM UNNEST($3::text[], $4::timestamptz[], $5::text[], $6::uuid[], $7::text[], \
                $8::bigint[]) AS t(tenant_id, period_start, channel, provider_id, status, count) \
    ORDER BY 1, 2, 3, 4, 5 \
    ON CONFLICT (tenant_id, period_start, channel, provider_id, status, slot) \
    DO UPDATE SET count = s.count + EXCLUDED.count \
    RETURNING 1), \
hl AS ( \
    INSERT INTO message_latency_hourly AS l \
        (tenant_id, period_start, channel, provider_id, slot, buckets) \
    SELECT t.tenant_id, t.period_start, t.channel, t.provider_id, $1, \
           ($13::bigint[])[(t.n::int - 1) * $2 + 1 : t.n::int * $2] \
    FROM UNNEST($9::text[], $10::timestamptz[], $11::text[], $12::uuid[]) \
         WITH ORDINALITY AS t(tenant_id, period_start, channel, provider_id, n) \
    WHERE (SELECT count(*) FROM hc) >= 0 \
    ORDER BY 1, 2, 3, 4 \
    ON CONFLICT (tenant_id, period_start, channel, provider_id, slot) DO UPDATE SET buckets = \
        ARRAY(SELECT COALESCE(a, 0) + COALESCE(b, 0) \
              FROM UNNEST(l.buckets, EXCLUDED.buckets) AS u(a, b)) \
    RETURNING 1), \
dc AS ( \
    INSERT INTO message_stats_daily AS s \
        (tenant_id, period_start, channel, provider_id, status, slot, count) \
    SELECT t.tenant_id, t.period_start, t.channel, t.provider_id, t.status, $1, t.count \
    FROM UNNEST($14::text[], $15::timestamptz[], $16::text[], $17::uuid[], $18::text[], \
                $19::bigint[]) AS t(tenant_id, period_start, channel, provider_id, status, count) \
    WHERE (SELECT count(*) FROM hl) >= 0 \
    ORDER BY 1, 2, 3, 4, 5 \
    ON CONFLICT (tenant_id, period_start, channel, provider_id, status, slot) \
    DO UPDATE SET count = s.count + EXCLUDED.count \
    RETURNING 1), \
dl AS ( \
    INSERT INTO message_latency_daily AS l \
        (tenant_id, period_start, channel, provider_id, slot, buckets) \
    SELECT t.tenant_id, t.period_start, t.channel, t.provider_id, $1, \
           ($24::bigint[])[(t.n::int - 1) * $2 + 1 : t.n::int * $2] \
    FROM UNNEST($20::text[], $21::timestamptz[], $22::text[], $23::uuid[]) \
         WITH ORDINALITY AS t(tenant_id, period_start, channel, provider_id, n) \
    WHERE (SELECT count(*) FROM dc) >= 0 \
    ORDER BY 1, 2, 3, 4 \
    ON CONFLICT (tenant_id, period_start, channel, provider_id, slot) DO UPDATE SET buckets = \
        ARRAY(SELECT COALESCE(a, 0) + COALESCE(b, 0) \
              FROM UNNEST(l.buckets, EXCLUDED.buckets) AS u(a, b)) \
    RETURNING 1) \
SELECT count(*) FROM dl";

/// The delta's counts summed per period of `grain`, without the ones that cancel out.
fn counts_at(delta: &RollupDelta, grain: Grain) -> BTreeMap<CountKey, i64> {
    let mut counts: BTreeMap<CountKey, i64> = BTreeMap::new();
    for (k, n) in &delta.counts {
        let key = CountKey {
            start: grain.start_of(k.start),
            ..k.clone()
        };
        *counts.entry(key).or_default() += n;
    }
    counts.retain(|_, n| *n != 0);
    counts
}

/// The delta's latency histograms summed per period of `grain`.
fn latencies_at(delta: &RollupDelta, grain: Grain) -> BTreeMap<LatencyKey, [i64; LATENCY_BUCKETS]> {
    let mut latencies: BTreeMap<LatencyKey, [i64; LATENCY_BUCKETS]> = BTreeMap::new();
    for (k, h) in &delta.latencies {
        let key = LatencyKey {
            start: grain.start_of(k.start),
            ..k.clone()
        };
        let sum = latencies.entry(key).or_insert([0; LATENCY_BUCKETS]);
        for (a, b) in sum.iter_mut().zip(h) {
            *a += b;
        }
    }
    latencies
}

/// Count rows as arrays, in key order.
struct CountColumns<'a> {
    tenants: Vec<&'a str>,
    starts: Vec<DateTime<Utc>>,
    channels: Vec<&'a str>,
    providers: Vec<Uuid>,
    statuses: Vec<&'a str>,
    ns: Vec<i64>,
}

impl<'a> CountColumns<'a> {
    fn of(counts: &'a BTreeMap<CountKey, i64>) -> Self {
        CountColumns {
            tenants: counts.keys().map(|k| k.tenant_id.as_str()).collect(),
            starts: counts.keys().map(|k| k.start).collect(),
            channels: counts.keys().map(|k| k.channel.as_str()).collect(),
            providers: counts.keys().map(|k| k.provider_id).collect(),
            statuses: counts.keys().map(|k| k.status.as_str()).collect(),
            ns: counts.values().copied().collect(),
        }
    }
}

/// Histogram rows as arrays, in key order; the histograms as one flat array (rows ×
/// buckets): Postgres arrays of arrays must be rectangular.
struct LatencyColumns<'a> {
    tenants: Vec<&'a str>,
    starts: Vec<DateTime<Utc>>,
    channels: Vec<&'a str>,
    providers: Vec<Uuid>,
    flat: Vec<i64>,
}

impl<'a> LatencyColumns<'a> {
    fn of(latencies: &'a BTreeMap<LatencyKey, [i64; LATENCY_BUCKETS]>) -> Self {
        LatencyColumns {
            tenants: latencies.keys().map(|k| k.tenant_id.as_str()).collect(),
            starts: latencies.keys().map(|k| k.start).collect(),
            channels: latencies.keys().map(|k| k.channel.as_str()).collect(),
            providers: latencies.keys().map(|k| k.provider_id).collect(),
            flat: latencies.values().flat_map(|h| h.iter().copied()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

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
            .map(|(k, n)| (k.status.as_str(), k.provider_id, k.start, *n))
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
