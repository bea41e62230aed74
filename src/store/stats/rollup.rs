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

/// Applies a batch's delta to `slot` (taken modulo [`SLOTS`]): one upsert per table, hourly
/// tables first.
pub async fn apply_delta(
    conn: &mut PgConnection,
    delta: &RollupDelta,
    slot: i16,
) -> Result<(), sqlx::Error> {
    let slot = slot.rem_euclid(SLOTS);
    for grain in [Grain::Hour, Grain::Day] {
        let mut counts: BTreeMap<CountKey, i64> = BTreeMap::new();
        for (k, n) in &delta.counts {
            let key = CountKey {
                start: grain.start_of(k.start),
                ..k.clone()
            };
            *counts.entry(key).or_default() += n;
        }
        counts.retain(|_, n| *n != 0);
        upsert_counts(conn, grain, slot, &counts).await?;
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
        upsert_latencies(conn, grain, slot, &latencies).await?;
    }
    Ok(())
}

async fn upsert_counts(
    conn: &mut PgConnection,
    grain: Grain,
    slot: i16,
    counts: &BTreeMap<CountKey, i64>,
) -> Result<(), sqlx::Error> {
    if counts.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = counts.keys().map(|k| k.tenant_id.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = counts.keys().map(|k| k.start).collect();
    let channels: Vec<&str> = counts.keys().map(|k| k.channel.as_str()).collect();
    let providers: Vec<Uuid> = counts.keys().map(|k| k.provider_id).collect();
    let statuses: Vec<&str> = counts.keys().map(|k| k.status.as_str()).collect();
    let ns: Vec<i64> = counts.values().copied().collect();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {} AS s (tenant_id, period_start, channel, provider_id, status, slot, count) \
         SELECT t.tenant_id, t.period_start, t.channel, t.provider_id, t.status, $7, t.count \
         FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::uuid[], $5::text[], $6::bigint[]) \
              AS t(tenant_id, period_start, channel, provider_id, status, count) \
         ORDER BY 1, 2, 3, 4, 5 \
         ON CONFLICT (tenant_id, period_start, channel, provider_id, status, slot) \
         DO UPDATE SET count = s.count + EXCLUDED.count",
        grain.counts_table()
    )))
    .bind(&tenants)
    .bind(&starts)
    .bind(&channels)
    .bind(&providers)
    .bind(&statuses)
    .bind(&ns)
    .bind(slot)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn upsert_latencies(
    conn: &mut PgConnection,
    grain: Grain,
    slot: i16,
    latencies: &BTreeMap<LatencyKey, [i64; LATENCY_BUCKETS]>,
) -> Result<(), sqlx::Error> {
    if latencies.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = latencies.keys().map(|k| k.tenant_id.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = latencies.keys().map(|k| k.start).collect();
    let channels: Vec<&str> = latencies.keys().map(|k| k.channel.as_str()).collect();
    let providers: Vec<Uuid> = latencies.keys().map(|k| k.provider_id).collect();
    // One flat array (rows × buckets): Postgres arrays of arrays must be rectangular.
    let flat: Vec<i64> = latencies.values().flat_map(|h| h.iter().copied()).collect();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {} AS l (tenant_id, period_start, channel, provider_id, slot, buckets) \
         SELECT t.tenant_id, t.period_start, t.channel, t.provider_id, $7, \
                ($5::bigint[])[(t.n::int - 1) * $6 + 1 : t.n::int * $6] \
         FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::uuid[]) \
              WITH ORDINALITY AS t(tenant_id, period_start, channel, provider_id, n) \
         ORDER BY 1, 2, 3, 4 \
         ON CONFLICT (tenant_id, period_start, channel, provider_id, slot) DO UPDATE SET buckets = \
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
    .bind(slot)
    .execute(&mut *conn)
    .await?;
    Ok(())
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
