//! The read side of the rollup: what `GET /v1/stats` and `GET /v1/stats/providers` query.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Grain, NO_PROVIDER};

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
        "SELECT period_start AS start, channel, provider_id, status, SUM(count)::bigint AS count \
         FROM {} WHERE tenant_id = $1 AND period_start >= $2 AND period_start < $3 \
         GROUP BY 1, 2, 3, 4 HAVING SUM(count) <> 0 ORDER BY 1, 2, 3, 4",
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
