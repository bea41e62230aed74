//! `suppressions`: a tenant's list of recipients no message is sent to. Every query is scoped
//! by tenant. Recipients are stored normalised (see `domain::normalize_recipient`); callers
//! pass them normalised.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SuppressionRow {
    pub id: Uuid,
    pub tenant_id: String,
    pub channel: String,
    pub recipient: String,
    pub reason: String,
    pub message_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, tenant_id, channel, recipient, reason, message_id, created_at";

/// A recipient to suppress.
#[derive(Debug, Clone)]
pub struct NewSuppression<'a> {
    pub tenant_id: &'a str,
    pub channel: &'a str,
    pub recipient: &'a str,
    pub reason: &'a str,
    pub message_id: Option<Uuid>,
}

/// Adds a recipient; when it is already suppressed, keeps the existing entry. Returns the
/// entry and whether this call created it.
#[tracing::instrument(skip_all)]
pub async fn add(
    pool: &PgPool,
    new: &NewSuppression<'_>,
) -> Result<(SuppressionRow, bool), sqlx::Error> {
    let inserted: Option<SuppressionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO suppressions (id, tenant_id, channel, recipient, reason, message_id) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (tenant_id, channel, recipient) DO NOTHING RETURNING {COLUMNS}"
    )))
    .bind(Uuid::new_v4())
    .bind(new.tenant_id)
    .bind(new.channel)
    .bind(new.recipient)
    .bind(new.reason)
    .bind(new.message_id)
    .fetch_optional(pool)
    .await?;
    if let Some(row) = inserted {
        return Ok((row, true));
    }
    let existing: SuppressionRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM suppressions \
         WHERE tenant_id = $1 AND channel = $2 AND recipient = $3"
    )))
    .bind(new.tenant_id)
    .bind(new.channel)
    .bind(new.recipient)
    .fetch_one(pool)
    .await?;
    Ok((existing, false))
}

/// Filters of `GET /v1/suppressions`.
#[derive(Debug, Default, Clone)]
pub struct SuppressionFilter {
    pub channel: Option<String>,
    pub recipient: Option<String>,
    /// Keyset cursor: rows strictly older than this (created_at, id).
    pub before: Option<(DateTime<Utc>, Uuid)>,
}

/// Newest first, keyset-paginated.
#[tracing::instrument(skip_all)]
pub async fn list(
    pool: &PgPool,
    tenant: &str,
    filter: &SuppressionFilter,
    limit: i64,
) -> Result<Vec<SuppressionRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM suppressions WHERE tenant_id = $1 \
         AND ($2::text IS NULL OR channel = $2) \
         AND ($3::text IS NULL OR recipient = $3) \
         AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5)) \
         ORDER BY created_at DESC, id DESC LIMIT $6"
    )))
    .bind(tenant)
    .bind(&filter.channel)
    .bind(&filter.recipient)
    .bind(filter.before.map(|b| b.0))
    .bind(filter.before.map(|b| b.1))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Removes one of the tenant's entries; false when the tenant has no such entry.
#[tracing::instrument(skip_all)]
pub async fn delete(pool: &PgPool, tenant: &str, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM suppressions WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Up to `limit` suppressed recipients of a tenant's channel (the worker's cached set).
#[tracing::instrument(skip_all)]
pub async fn recipients(
    pool: &PgPool,
    tenant: &str,
    channel: &str,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT recipient FROM suppressions WHERE tenant_id = $1 AND channel = $2 LIMIT $3",
    )
    .bind(tenant)
    .bind(channel)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Whether one recipient is suppressed (for tenants whose list is too long to cache whole).
#[tracing::instrument(skip_all)]
pub async fn contains(
    pool: &PgPool,
    tenant: &str,
    channel: &str,
    recipient: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM suppressions \
         WHERE tenant_id = $1 AND channel = $2 AND recipient = $3)",
    )
    .bind(tenant)
    .bind(channel)
    .bind(recipient)
    .fetch_one(pool)
    .await
}
