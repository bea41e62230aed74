//! `provider_configs`: a tenant's providers, or the platform's (`tenant_id` NULL).
//! `tenant` arguments of `None` mean the platform scope.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProviderRow {
    pub id: Uuid,
    pub tenant_id: Option<String>,
    pub channel: String,
    pub kind: String,
    pub name: String,
    pub priority: i32,
    pub enabled: bool,
    pub settings: serde_json::Value,
    pub secrets: Option<Vec<u8>>,
    pub key_id: Option<String>,
    pub secret_fields: Vec<String>,
    pub last_test_at: Option<DateTime<Utc>>,
    pub last_test_ok: Option<bool>,
    pub last_test_detail: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, tenant_id, channel, kind, name, priority, enabled, settings, secrets, \
     key_id, secret_fields, last_test_at, last_test_ok, last_test_detail, created_at, updated_at";

#[tracing::instrument(skip_all)]
pub async fn insert_provider(pool: &PgPool, row: &ProviderRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO provider_configs (id, tenant_id, channel, kind, name, priority, enabled, \
         settings, secrets, key_id, secret_fields, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
    )
    .bind(row.id)
    .bind(&row.tenant_id)
    .bind(&row.channel)
    .bind(&row.kind)
    .bind(&row.name)
    .bind(row.priority)
    .bind(row.enabled)
    .bind(&row.settings)
    .bind(&row.secrets)
    .bind(&row.key_id)
    .bind(&row.secret_fields)
    .bind(row.created_at)
    .execute(pool)
    .await?;
    Ok(())
}

#[tracing::instrument(skip_all)]
pub async fn update_provider(pool: &PgPool, row: &ProviderRow) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE provider_configs SET name = $3, priority = $4, enabled = $5, settings = $6, \
         secrets = $7, key_id = $8, secret_fields = $9, updated_at = now() \
         WHERE id = $1 AND tenant_id IS NOT DISTINCT FROM $2",
    )
    .bind(row.id)
    .bind(&row.tenant_id)
    .bind(&row.name)
    .bind(row.priority)
    .bind(row.enabled)
    .bind(&row.settings)
    .bind(&row.secrets)
    .bind(&row.key_id)
    .bind(&row.secret_fields)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[tracing::instrument(skip_all)]
pub async fn get_provider(
    pool: &PgPool,
    tenant: Option<&str>,
    id: Uuid,
) -> Result<Option<ProviderRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM provider_configs WHERE id = $1 AND tenant_id IS NOT DISTINCT FROM $2"
    )))
    .bind(id)
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

#[tracing::instrument(skip_all)]
pub async fn list_providers(
    pool: &PgPool,
    tenant: Option<&str>,
) -> Result<Vec<ProviderRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM provider_configs WHERE tenant_id IS NOT DISTINCT FROM $1 \
         ORDER BY channel, priority, created_at"
    )))
    .bind(tenant)
    .fetch_all(pool)
    .await
}

#[tracing::instrument(skip_all)]
pub async fn delete_provider(
    pool: &PgPool,
    tenant: Option<&str>,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM provider_configs WHERE id = $1 AND tenant_id IS NOT DISTINCT FROM $2",
    )
    .bind(id)
    .bind(tenant)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The providers a send on `channel` may use: the tenant's enabled ones by priority, or, if
/// the tenant has none, the platform's.
#[tracing::instrument(skip_all)]
pub async fn resolve_candidates(
    pool: &PgPool,
    tenant: &str,
    channel: &str,
) -> Result<Vec<ProviderRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH own AS (SELECT {COLUMNS} FROM provider_configs \
             WHERE tenant_id = $1 AND channel = $2 AND enabled), \
         platform AS (SELECT {COLUMNS} FROM provider_configs \
             WHERE tenant_id IS NULL AND channel = $2 AND enabled \
             AND NOT EXISTS (SELECT 1 FROM own)) \
         SELECT * FROM (SELECT * FROM own UNION ALL SELECT * FROM platform) p \
         ORDER BY priority, created_at, id"
    )))
    .bind(tenant)
    .bind(channel)
    .fetch_all(pool)
    .await
}

/// A provider pinned by a send: the tenant's own or a platform one, enabled.
#[tracing::instrument(skip_all)]
pub async fn get_pinned(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
) -> Result<Option<ProviderRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM provider_configs WHERE id = $1 AND enabled \
         AND (tenant_id = $2 OR tenant_id IS NULL)"
    )))
    .bind(id)
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

/// A provider by id alone, for webhooks (the signature, checked with its secret, is the
/// credential).
#[tracing::instrument(skip_all)]
pub async fn get_provider_any_tenant(
    pool: &PgPool,
    id: Uuid,
) -> Result<Option<ProviderRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM provider_configs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

#[tracing::instrument(skip_all)]
pub async fn record_test_result(
    pool: &PgPool,
    id: Uuid,
    ok: bool,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE provider_configs SET last_test_at = now(), last_test_ok = $2, last_test_detail = $3 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(ok)
    .bind(detail)
    .execute(pool)
    .await?;
    Ok(())
}

/// Rows whose secrets are sealed under a key other than `active_key_id`.
#[tracing::instrument(skip_all)]
pub async fn rows_needing_rotation(
    pool: &PgPool,
    active_key_id: &str,
    limit: i64,
) -> Result<Vec<ProviderRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM provider_configs \
         WHERE secrets IS NOT NULL AND key_id IS DISTINCT FROM $1 ORDER BY id LIMIT $2"
    )))
    .bind(active_key_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Replaces a row's sealed secrets, only if they are still the ones that were read.
#[tracing::instrument(skip_all)]
pub async fn replace_secrets(
    pool: &PgPool,
    id: Uuid,
    old: &[u8],
    new: &[u8],
    key_id: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE provider_configs SET secrets = $3, key_id = $4 WHERE id = $1 AND secrets = $2",
    )
    .bind(id)
    .bind(old)
    .bind(new)
    .bind(key_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

impl ProviderRow {
    /// Whose secrets this row's are (the associated data of their seal).
    pub fn secrets_owner(&self) -> crate::crypto::SecretsOwner<'_> {
        crate::crypto::SecretsOwner {
            tenant: self.tenant_id.as_deref(),
            provider_id: self.id,
        }
    }

    /// The whole configuration adapters read: the settings with the opened secrets.
    pub fn open_config(
        &self,
        secrets: crate::crypto::ProviderSecrets<'_>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, crate::crypto::SecretsError> {
        let mut config = self.settings.as_object().cloned().unwrap_or_default();
        config.extend(secrets.open(self.secrets_owner(), self.secrets.as_deref())?);
        Ok(config)
    }
}
