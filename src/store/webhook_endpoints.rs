//! `webhook_endpoints`: a tenant's status-webhook endpoints. Every query is scoped by tenant
//! except [`for_delivery`], which the webhook sender uses with an endpoint id it got from its
//! own queue. Secrets arrive sealed (see `notify::signing`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: Uuid,
    pub tenant_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub secret: Vec<u8>,
    pub previous_secret: Option<Vec<u8>>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for EndpointRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointRow")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("url", &self.url)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "id, tenant_id, url, events, description, enabled, disabled_reason, \
    secret, previous_secret, previous_secret_expires_at, failing_since, created_at, updated_at";

pub struct NewEndpoint<'a> {
    pub id: Uuid,
    pub tenant_id: &'a str,
    pub url: &'a str,
    pub events: &'a [String],
    pub description: Option<&'a str>,
    pub enabled: bool,
    pub sealed_secret: &'a [u8],
}

#[tracing::instrument(skip_all)]
pub async fn insert(pool: &PgPool, new: &NewEndpoint<'_>) -> Result<EndpointRow, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, events, description, enabled, secret) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    )))
    .bind(new.id)
    .bind(new.tenant_id)
    .bind(new.url)
    .bind(new.events)
    .bind(new.description)
    .bind(new.enabled)
    .bind(new.sealed_secret)
    .fetch_one(pool)
    .await
}

#[tracing::instrument(skip_all)]
pub async fn list(pool: &PgPool, tenant: &str) -> Result<Vec<EndpointRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id"
    )))
    .bind(tenant)
    .fetch_all(pool)
    .await
}

#[tracing::instrument(skip_all)]
pub async fn get(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2"
    )))
    .bind(id)
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

/// Changes of `PATCH`; `None` keeps the value. Enabling clears the disabled reason and the
/// failure streak.
#[derive(Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

#[tracing::instrument(skip_all)]
pub async fn update(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
    change: &EndpointChange,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_endpoints SET \
            url = COALESCE($3, url), \
            events = COALESCE($4, events), \
            description = CASE WHEN $5 THEN $6 ELSE description END, \
            enabled = COALESCE($7, enabled), \
            disabled_reason = CASE WHEN $7 THEN NULL WHEN $7 = false THEN 'disabled by the tenant' \
                                   ELSE disabled_reason END, \
            failing_since = CASE WHEN $7 THEN NULL ELSE failing_since END, \
            updated_at = now() \
         WHERE id = $1 AND tenant_id = $2 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(tenant)
    .bind(&change.url)
    .bind(&change.events)
    .bind(change.description.is_some())
    .bind(change.description.clone().flatten())
    .bind(change.enabled)
    .fetch_optional(pool)
    .await
}

#[tracing::instrument(skip_all)]
pub async fn delete(pool: &PgPool, tenant: &str, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Replaces the secret; the current one keeps signing until `previous_until`.
#[tracing::instrument(skip_all)]
pub async fn rotate_secret(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
    sealed_secret: &[u8],
    previous_until: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhook_endpoints SET previous_secret = secret, \
            previous_secret_expires_at = $4, secret = $3, updated_at = now() \
         WHERE id = $1 AND tenant_id = $2",
    )
    .bind(id)
    .bind(tenant)
    .bind(sealed_secret)
    .bind(previous_until)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// An endpoint by id alone, for the webhook sender.
#[tracing::instrument(skip_all)]
pub async fn for_delivery(pool: &PgPool, id: Uuid) -> Result<Option<EndpointRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Records the outcome of a delivery attempt on the endpoint's failure streak: a success ends
/// it; a failure starts it (if not running). When the streak is older than `disable_after`,
/// the endpoint is disabled with `reason`. Returns whether this call disabled it.
#[tracing::instrument(skip_all)]
pub async fn note_outcome(
    pool: &PgPool,
    id: Uuid,
    succeeded: bool,
    disable_after: std::time::Duration,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    if succeeded {
        sqlx::query(
            "UPDATE webhook_endpoints SET failing_since = NULL \
             WHERE id = $1 AND failing_since IS NOT NULL",
        )
        .bind(id)
        .execute(pool)
        .await?;
        return Ok(false);
    }
    let disabled: Option<(Uuid,)> = sqlx::query_as(
        "UPDATE webhook_endpoints SET \
            failing_since = COALESCE(failing_since, now()), \
            enabled = CASE WHEN failing_since < now() - make_interval(secs => $2) THEN false \
                           ELSE enabled END, \
            disabled_reason = CASE WHEN enabled AND failing_since < now() - make_interval(secs => $2) \
                                   THEN $3 ELSE disabled_reason END, \
            updated_at = now() \
         WHERE id = $1 \
         RETURNING CASE WHEN NOT enabled AND disabled_reason = $3 THEN id END",
    )
    .bind(id)
    .bind(disable_after.as_secs_f64())
    .bind(reason)
    .fetch_optional(pool)
    .await?
    .and_then(|(id,): (Option<Uuid>,)| id.map(|i| (i,)));
    Ok(disabled.is_some())
}

/// Every endpoint's sealed secrets: (id, tenant, secret, previous secret), for `keys rotate`.
pub async fn all_secrets(
    pool: &PgPool,
) -> Result<Vec<(Uuid, String, Vec<u8>, Option<Vec<u8>>)>, sqlx::Error> {
    sqlx::query_as("SELECT id, tenant_id, secret, previous_secret FROM webhook_endpoints")
        .fetch_all(pool)
        .await
}

/// Replaces an endpoint's sealed secrets if they are still `old` (compare-and-swap, so a
/// rotation racing a `rotate-secret` request loses nothing). True when replaced.
pub async fn replace_secrets(
    pool: &PgPool,
    id: Uuid,
    old: (&[u8], Option<&[u8]>),
    new: (&[u8], Option<&[u8]>),
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhook_endpoints SET secret = $4, previous_secret = $5 \
         WHERE id = $1 AND secret = $2 AND previous_secret IS NOT DISTINCT FROM $3",
    )
    .bind(id)
    .bind(old.0)
    .bind(old.1)
    .bind(new.0)
    .bind(new.1)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}
