//! `webhook_events`, `webhook_deliveries` and `webhook_attempts`: the outbox of status
//! webhooks and the record of every request. Rows are created by the database trigger of
//! migration `…32` in the same transaction as the message's status change; these functions
//! relay, load, and record them.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Up to `limit` deliveries still in the outbox, locked for this transaction (other relays
/// skip them).
pub async fn lock_outbox(conn: &mut PgConnection, limit: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM webhook_deliveries WHERE published_at IS NULL \
         ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn mark_published(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhook_deliveries SET published_at = now() WHERE id = ANY($1)")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// A delivery with its event, as the sender needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryJob {
    pub id: Uuid,
    pub state: String,
    pub attempts: i32,
    pub endpoint_id: Uuid,
    pub tenant_id: String,
    pub event_id: Uuid,
    pub event_type: String,
    pub message_id: Uuid,
    pub payload: Value,
}

#[tracing::instrument(skip_all)]
pub async fn load_job(
    pool: &PgPool,
    delivery_id: Uuid,
) -> Result<Option<DeliveryJob>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.id, d.state, d.attempts, d.endpoint_id, d.tenant_id, e.id AS event_id, \
                e.event_type, e.message_id, e.payload \
         FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
         WHERE d.id = $1",
    )
    .bind(delivery_id)
    .fetch_optional(pool)
    .await
}

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct NewAttempt<'a> {
    pub job: &'a DeliveryJob,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    pub succeeded: bool,
}

/// Records an attempt and moves the delivery to `state` (`pending` while retries remain).
#[tracing::instrument(skip_all)]
pub async fn record_attempt(
    pool: &PgPool,
    a: &NewAttempt<'_>,
    state: &str,
) -> Result<Uuid, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO webhook_attempts (id, delivery_id, endpoint_id, tenant_id, event_id, \
            event_type, message_id, attempt, status_code, latency_ms, error, succeeded) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(id)
    .bind(a.job.id)
    .bind(a.job.endpoint_id)
    .bind(&a.job.tenant_id)
    .bind(a.job.event_id)
    .bind(&a.job.event_type)
    .bind(a.job.message_id)
    .bind(a.attempt)
    .bind(a.status_code)
    .bind(a.latency_ms)
    .bind(&a.error)
    .bind(a.succeeded)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE webhook_deliveries SET attempts = GREATEST(attempts, $2), state = $3, \
            updated_at = now() WHERE id = $1",
    )
    .bind(a.job.id)
    .bind(a.attempt)
    .bind(state)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Ends a delivery without another attempt (its endpoint is disabled or gone).
pub async fn set_state(pool: &PgPool, delivery_id: Uuid, state: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhook_deliveries SET state = $2, updated_at = now() WHERE id = $1")
        .bind(delivery_id)
        .bind(state)
        .execute(pool)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub id: Uuid,
    pub delivery_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub message_id: Uuid,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    pub succeeded: bool,
    pub attempted_at: DateTime<Utc>,
}

/// An endpoint's attempts, newest first, keyset-paginated.
#[tracing::instrument(skip_all)]
pub async fn list_attempts(
    pool: &PgPool,
    tenant: &str,
    endpoint_id: Uuid,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, delivery_id, event_id, event_type, message_id, attempt, status_code, \
                latency_ms, error, succeeded, attempted_at \
         FROM webhook_attempts WHERE tenant_id = $1 AND endpoint_id = $2 \
         AND ($3::timestamptz IS NULL OR (attempted_at, id) < ($3, $4)) \
         ORDER BY attempted_at DESC, id DESC LIMIT $5",
    )
    .bind(tenant)
    .bind(endpoint_id)
    .bind(before.map(|b| b.0))
    .bind(before.map(|b| b.1))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Queues the event of one of the tenant's attempts again, as a new delivery in the outbox
/// (with a fresh retry schedule). `None` when the tenant has no such attempt.
#[tracing::instrument(skip_all)]
pub async fn redeliver_attempt(
    pool: &PgPool,
    tenant: &str,
    endpoint_id: Uuid,
    attempt_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, tenant_id) \
         SELECT $4, a.event_id, a.endpoint_id, a.tenant_id FROM webhook_attempts a \
         WHERE a.id = $3 AND a.endpoint_id = $2 AND a.tenant_id = $1 \
         RETURNING id",
    )
    .bind(tenant)
    .bind(endpoint_id)
    .bind(attempt_id)
    .bind(Uuid::now_v7())
    .fetch_optional(pool)
    .await
}

/// Puts back in the outbox every pending delivery that was published but has not been
/// attempted, or retried, for `older_than`: its queue message was lost (a purged queue, a
/// broker that gave up on it). Returns how many. At least once: one that was merely slow is
/// sent twice, under the same `webhook-id`.
#[tracing::instrument(skip_all)]
pub async fn requeue_stale(
    pool: &PgPool,
    older_than: std::time::Duration,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET published_at = NULL, updated_at = now() \
         WHERE state = 'pending' AND published_at IS NOT NULL \
         AND updated_at < now() - make_interval(secs => $1)",
    )
    .bind(older_than.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
