//! Tenant API keys, stored as SHA-256 hashes.

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
