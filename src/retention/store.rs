//! The queries of retention: the operator's per-tenant overrides, and one batch of removal.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// A tenant's override of the default retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRetention {
    pub tenant_id: String,
    pub days: i32,
    pub updated_at: DateTime<Utc>,
}

/// The tenant's override, if the operator set one.
pub async fn get_override(
    pool: &PgPool,
    tenant: &str,
) -> Result<Option<TenantRetention>, sqlx::Error> {
    let row: Option<(String, i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT tenant_id, days, updated_at FROM tenant_retention WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(tenant_id, days, updated_at)| TenantRetention {
        tenant_id,
        days,
        updated_at,
    }))
}

/// Sets (or replaces) the tenant's override.
pub async fn set_override(pool: &PgPool, tenant: &str, days: i32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tenant_retention (tenant_id, days, updated_at) VALUES ($1, $2, now()) \
         ON CONFLICT (tenant_id) DO UPDATE SET days = EXCLUDED.days, updated_at = now()",
    )
    .bind(tenant)
    .bind(days)
    .execute(pool)
    .await?;
    Ok(())
}

/// Removes the tenant's override (the default applies again); whether there was one.
pub async fn clear_override(pool: &PgPool, tenant: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM tenant_retention WHERE tenant_id = $1")
        .bind(tenant)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Every override, for a pass.
pub async fn all_overrides(conn: &mut PgConnection) -> Result<Vec<(String, i32)>, sqlx::Error> {
    sqlx::query_as("SELECT tenant_id, days FROM tenant_retention")
        .fetch_all(conn)
        .await
}

/// The tenants that have messages, found by skipping through the `message_logs_list` index
/// (one index probe per tenant, not a scan of the table).
pub async fn tenants_with_messages(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH RECURSIVE t(tenant_id) AS ( \
             (SELECT tenant_id FROM message_logs ORDER BY tenant_id LIMIT 1) \
             UNION ALL \
             SELECT (SELECT m.tenant_id FROM message_logs m WHERE m.tenant_id > t.tenant_id \
                     ORDER BY m.tenant_id LIMIT 1) \
             FROM t WHERE t.tenant_id IS NOT NULL) \
         SELECT tenant_id FROM t WHERE tenant_id IS NOT NULL",
    )
    .fetch_all(conn)
    .await
}

/// The statement choosing one batch: the tenant's oldest messages accepted before the cutoff,
/// through `message_logs_list`. Rows another transaction holds (a late receipt updating an old
/// message) are skipped, not waited for. A message with a webhook delivery still pending keeps
/// its rows until the delivery ends (it would otherwise vanish from the outbox).
pub const SELECT_BATCH: &str = "SELECT m.id FROM message_logs m \
     WHERE m.tenant_id = $1 AND m.created_at < $2 \
       AND NOT EXISTS (SELECT 1 FROM webhook_events e \
                       JOIN webhook_deliveries d ON d.event_id = e.id \
                       WHERE e.message_id = m.id AND d.state = 'pending') \
     ORDER BY m.created_at \
     LIMIT $3 \
     FOR UPDATE OF m SKIP LOCKED";

/// Rows one batch removed, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub message_logs: u64,
    pub message_events: u64,
    pub webhook_events: u64,
    pub webhook_deliveries: u64,
    pub webhook_attempts: u64,
    pub dead_letters: u64,
}

impl Removed {
    pub fn add(&mut self, other: &Removed) {
        self.message_logs += other.message_logs;
        self.message_events += other.message_events;
        self.webhook_events += other.webhook_events;
        self.webhook_deliveries += other.webhook_deliveries;
        self.webhook_attempts += other.webhook_attempts;
        self.dead_letters += other.dead_letters;
    }

    /// (table, rows) for reports and metrics.
    pub fn by_table(&self) -> [(&'static str, u64); 6] {
        [
            ("message_logs", self.message_logs),
            ("message_events", self.message_events),
            ("webhook_events", self.webhook_events),
            ("webhook_deliveries", self.webhook_deliveries),
            ("webhook_attempts", self.webhook_attempts),
            ("dead_letters", self.dead_letters),
        ]
    }
}

/// Removes up to `limit` of the tenant's messages accepted before `cutoff`, with their events
/// and webhook records, in one short transaction on `conn`. Children are deleted explicitly
/// (leaves first), so each count is known and the foreign keys' cascades find nothing left.
pub async fn remove_message_batch(
    conn: &mut PgConnection,
    tenant: &str,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Removed, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(SELECT_BATCH)
        .bind(tenant)
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    if ids.is_empty() {
        tx.commit().await?;
        return Ok(Removed::default());
    }
    let mut removed = Removed::default();
    let run = |sql: &'static str| sqlx::query(sql).bind(&ids);
    removed.webhook_attempts = run(
        "DELETE FROM webhook_attempts a USING webhook_deliveries d, \
             webhook_events e \
             WHERE a.delivery_id = d.id AND d.event_id = e.id AND e.message_id = ANY($1)",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    removed.webhook_deliveries = run("DELETE FROM webhook_deliveries d USING webhook_events e \
             WHERE d.event_id = e.id AND e.message_id = ANY($1)")
    .execute(&mut *tx)
    .await?
    .rows_affected();
    removed.webhook_events = run("DELETE FROM webhook_events WHERE message_id = ANY($1)")
        .execute(&mut *tx)
        .await?
        .rows_affected();
    removed.message_events = run("DELETE FROM message_events WHERE message_id = ANY($1)")
        .execute(&mut *tx)
        .await?
        .rows_affected();
    removed.message_logs = run("DELETE FROM message_logs WHERE id = ANY($1)")
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(removed)
}

/// Removes up to `limit` dead letters recorded before their tenant's cutoff (`default_days`
/// for a tenant without an override, and for invalid envelopes that name no tenant), oldest
/// first through `dead_letters_created`. Returns how many.
pub async fn remove_dead_letter_batch(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    default_days: i32,
    min_days: i32,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM dead_letters WHERE id IN ( \
             SELECT d.id FROM dead_letters d \
             LEFT JOIN tenant_retention r ON r.tenant_id = d.tenant_id \
             WHERE d.created_at < $1 - make_interval(days => $3) \
               AND d.created_at < $1 - make_interval(days => COALESCE(r.days, $2)) \
             ORDER BY d.created_at LIMIT $4)",
    )
    .bind(now)
    .bind(default_days)
    .bind(min_days)
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
