//! `tenant_limits`: the operator's limits of one tenant (accept rate, daily quota per
//! channel; NULL = unlimited). One row per tenant, or none (no limits).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantLimitsRow {
    pub tenant_id: String,
    pub accept_rate_per_second: Option<i32>,
    pub daily_quota_email: Option<i32>,
    pub daily_quota_sms: Option<i32>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "tenant_id, accept_rate_per_second, daily_quota_email, daily_quota_sms, updated_at";

/// The tenant's limits, or `None` when it has no row (no limits).
#[tracing::instrument(skip_all)]
pub async fn get(pool: &PgPool, tenant_id: &str) -> Result<Option<TenantLimitsRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tenant_limits WHERE tenant_id = $1"
    )))
    .bind(tenant_id)
    .fetch_optional(pool)
    .await
}

/// Replaces the tenant's limits (all three values; NULL = unlimited).
#[tracing::instrument(skip_all)]
pub async fn upsert(
    pool: &PgPool,
    tenant_id: &str,
    accept_rate_per_second: Option<i32>,
    daily_quota_email: Option<i32>,
    daily_quota_sms: Option<i32>,
) -> Result<TenantLimitsRow, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tenant_limits \
         (tenant_id, accept_rate_per_second, daily_quota_email, daily_quota_sms, updated_at) \
         VALUES ($1, $2, $3, $4, now()) \
         ON CONFLICT (tenant_id) DO UPDATE SET \
         accept_rate_per_second = EXCLUDED.accept_rate_per_second, \
         daily_quota_email = EXCLUDED.daily_quota_email, \
         daily_quota_sms = EXCLUDED.daily_quota_sms, updated_at = now() \
         RETURNING {COLUMNS}"
    )))
    .bind(tenant_id)
    .bind(accept_rate_per_second)
    .bind(daily_quota_email)
    .bind(daily_quota_sms)
    .fetch_one(pool)
    .await
}

/// Removes the tenant's limits; true when it had a row.
#[tracing::instrument(skip_all)]
pub async fn delete(pool: &PgPool, tenant_id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM tenant_limits WHERE tenant_id = $1")
        .bind(tenant_id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}
