//! Tenant API keys, stored as SHA-256 hashes: creation, lookup, listing, revocation and
//! the (coarse) record of last use.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

#[tracing::instrument(skip_all)]
pub async fn insert_api_key(
    pool: &PgPool,
    id: Uuid,
    tenant_id: &str,
    name: Option<&str>,
    key_prefix: &str,
    key_hash: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, name, key_prefix, key_hash) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(name)
    .bind(key_prefix)
    .bind(key_hash)
    .execute(pool)
    .await?;
    Ok(())
}

/// The tenant and stored hash of an active key with this hash, if any.
#[tracing::instrument(skip_all)]
pub async fn find_by_hash(
    pool: &PgPool,
    key_hash: &[u8],
) -> Result<Option<(String, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant_id, key_hash FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(key_hash)
    .fetch_optional(pool)
    .await
}

/// What a tenant may see of one of its keys (never the key or its hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub name: Option<String>,
    pub key_prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A tenant's active keys, newest first, keyset-paginated: rows strictly older than
/// `before` (created_at, id).
#[tracing::instrument(skip_all)]
pub async fn list_api_keys(
    pool: &PgPool,
    tenant_id: &str,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, key_prefix, created_at, last_used_at FROM api_keys \
         WHERE tenant_id = $1 AND revoked_at IS NULL \
         AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) \
         ORDER BY created_at DESC, id DESC LIMIT $4",
    )
    .bind(tenant_id)
    .bind(before.map(|b| b.0))
    .bind(before.map(|b| b.1))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Revokes one of the tenant's active keys; returns its hash (to drop it from caches), or
/// `None` when the tenant has no such active key.
#[tracing::instrument(skip_all)]
pub async fn revoke_api_key(
    pool: &PgPool,
    tenant_id: &str,
    id: Uuid,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE api_keys SET revoked_at = now() \
         WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL RETURNING key_hash",
    )
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(pool)
    .await
}

/// Notes that a key was used now, unless that was already noted within the last minute
/// (so a busy key costs at most one row write a minute).
#[tracing::instrument(skip_all)]
pub async fn note_use(pool: &PgPool, key_hash: &[u8]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api_keys SET last_used_at = now() \
         WHERE key_hash = $1 AND revoked_at IS NULL \
         AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
    )
    .bind(key_hash)
    .execute(pool)
    .await?;
    Ok(())
}
