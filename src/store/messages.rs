//! `message_logs`, `message_events` and `dead_letters`: the API's reads, and the multi-row
//! statements of the worker's batching writer.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: Uuid,
    pub tenant_id: String,
    pub channel: String,
    pub recipient: String,
    pub status: String,
    pub provider_id: Option<Uuid>,
    pub provider_kind: Option<String>,
    pub provider_message_id: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub idempotency_key: Option<String>,
    pub metadata: Option<Value>,
    pub ttl_seconds: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub kind: String,
    pub provider_id: Option<Uuid>,
    pub detail: Option<Value>,
    pub created_at: DateTime<Utc>,
}

const MESSAGE_COLUMNS: &str = "id, tenant_id, channel, recipient, status, provider_id, \
    provider_kind, provider_message_id, attempts, last_error, idempotency_key, metadata, \
    ttl_seconds, created_at, updated_at, sent_at, completed_at";

#[tracing::instrument(skip_all)]
pub async fn get_message(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
) -> Result<Option<MessageRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM message_logs WHERE id = $1 AND tenant_id = $2"
    )))
    .bind(id)
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

#[tracing::instrument(skip_all)]
pub async fn list_events(pool: &PgPool, message_id: Uuid) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, kind, provider_id, detail, created_at FROM message_events \
         WHERE message_id = $1 ORDER BY created_at, id",
    )
    .bind(message_id)
    .fetch_all(pool)
    .await
}

/// Filters of `GET /v1/messages`.
#[derive(Debug, Default, Clone)]
pub struct MessageFilter {
    pub status: Option<String>,
    pub channel: Option<String>,
    /// The provider that sent (or last tried) the message.
    pub provider_id: Option<Uuid>,
    /// Exactly this recipient, as recorded.
    pub recipient: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Keyset cursor: rows strictly older than this (created_at, id).
    pub before: Option<(DateTime<Utc>, Uuid)>,
}

/// Newest first, keyset-paginated.
///
/// Only the filters given become conditions (no `$n IS NULL OR …`), so each combination is
/// its own prepared statement whose plan can use the index made for it: `message_logs_list`
/// (tenant, newest first), `message_logs_status`, `message_logs_recipient`. A provider filter
/// walks the tenant's newest-first index and skips other providers' rows: a tenant has few
/// providers, so a page fills after a short walk, and no extra index costs the worker's writes.
#[tracing::instrument(skip_all)]
pub async fn list_messages(
    pool: &PgPool,
    tenant: &str,
    filter: &MessageFilter,
    limit: i64,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    let mut query = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
        "SELECT {MESSAGE_COLUMNS} FROM message_logs WHERE tenant_id = "
    ));
    query.push_bind(tenant);
    if let Some(status) = &filter.status {
        query.push(" AND status = ").push_bind(status);
    }
    if let Some(channel) = &filter.channel {
        query.push(" AND channel = ").push_bind(channel);
    }
    if let Some(provider_id) = filter.provider_id {
        query.push(" AND provider_id = ").push_bind(provider_id);
    }
    if let Some(recipient) = &filter.recipient {
        query.push(" AND recipient = ").push_bind(recipient);
    }
    if let Some(since) = filter.since {
        query.push(" AND created_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        query.push(" AND created_at < ").push_bind(until);
    }
    if let Some((at, id)) = filter.before {
        query.push(" AND (created_at, id) < (").push_bind(at);
        query.push(", ").push_bind(id).push(")");
    }
    query
        .push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(limit);
    query.build_query_as().fetch_all(pool).await
}

/// A message as the worker first records it.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: Uuid,
    pub tenant_id: String,
    pub channel: String,
    pub recipient: String,
    pub idempotency_key: Option<String>,
    pub metadata: Option<Value>,
    pub ttl_seconds: Option<i64>,
    pub created_at: DateTime<Utc>,
}

/// What recording a message found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// First time seen: recorded as `queued` with an `accepted` event.
    New,
    /// Already recorded (a redelivery or a scheduled retry), with its status and tenant.
    Existing { status: String, tenant_id: String },
    /// Another message of the tenant already holds the idempotency key (or one is being
    /// recorded concurrently); this one must not be sent.
    Duplicate { of: Option<Uuid> },
}

/// One row of the claim statement: id, inserted, existing status and tenant, duplicate of.
type ClaimRow = (Uuid, bool, Option<String>, Option<String>, Option<Uuid>);

/// Records many messages in one statement; returns one outcome per input, in order.
pub async fn claim_messages(
    conn: &mut PgConnection,
    rows: &[NewMessage],
) -> Result<Vec<ClaimOutcome>, sqlx::Error> {
    let rows: Vec<&NewMessage> = rows.iter().collect();
    claim_messages_as(conn, &rows, &[]).await
}

/// [`claim_messages`], with the state a new row starts in: `initial[i]`, when given, is the
/// change its first step makes (e.g. `sending` with the attempt counted), written into the
/// inserted row itself rather than by a later `UPDATE` of it — one row version and one set of
/// index entries fewer per message. A message found already recorded is left as it is (the
/// caller applies its change to it). `initial` may be shorter than `rows`.
pub async fn claim_messages_as(
    conn: &mut PgConnection,
    rows: &[&NewMessage],
    initial: &[Option<&StatusUpdate>],
) -> Result<Vec<ClaimOutcome>, sqlx::Error> {
    let first = |i: usize| initial.get(i).copied().flatten();
    let statuses: Vec<&str> = (0..rows.len())
        .map(|i| first(i).map_or("queued", |u| u.status.as_str()))
        .collect();
    let providers: Vec<Option<Uuid>> = (0..rows.len())
        .map(|i| first(i).and_then(|u| u.provider_id))
        .collect();
    let kinds: Vec<Option<&str>> = (0..rows.len())
        .map(|i| first(i).and_then(|u| u.provider_kind.as_deref()))
        .collect();
    let pmids: Vec<Option<&str>> = (0..rows.len())
        .map(|i| first(i).and_then(|u| u.provider_message_id.as_deref()))
        .collect();
    let attempts: Vec<i32> = (0..rows.len())
        .map(|i| first(i).map_or(0, |u| u.attempts_inc))
        .collect();
    let errors: Vec<Option<&str>> = (0..rows.len())
        .map(|i| first(i).and_then(|u| u.last_error.as_deref()))
        .collect();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let tenants: Vec<&str> = rows.iter().map(|r| r.tenant_id.as_str()).collect();
    let channels: Vec<&str> = rows.iter().map(|r| r.channel.as_str()).collect();
    let recipients: Vec<&str> = rows.iter().map(|r| r.recipient.as_str()).collect();
    let keys: Vec<Option<&str>> = rows.iter().map(|r| r.idempotency_key.as_deref()).collect();
    let metadata: Vec<Option<&Value>> = rows.iter().map(|r| r.metadata.as_ref()).collect();
    let ttls: Vec<Option<i64>> = rows.iter().map(|r| r.ttl_seconds).collect();
    let created: Vec<DateTime<Utc>> = rows.iter().map(|r| r.created_at).collect();
    let found: Vec<ClaimRow> = sqlx::query_as(
        "WITH input AS ( \
            SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                 $6::jsonb[], $7::bigint[], $8::timestamptz[], $9::text[], \
                                 $10::uuid[], $11::text[], $12::text[], $13::int[], $14::text[]) \
            AS t(id, tenant_id, channel, recipient, idempotency_key, metadata, ttl_seconds, created_at, \
                 status, provider_id, provider_kind, provider_message_id, attempts, last_error)), \
         ins AS ( \
            INSERT INTO message_logs (id, tenant_id, channel, recipient, status, idempotency_key, \
                                      metadata, ttl_seconds, created_at, updated_at, provider_id, \
                                      provider_kind, provider_message_id, attempts, last_error, \
                                      sent_at, completed_at) \
            SELECT id, tenant_id, channel, recipient, status, idempotency_key, metadata, \
                   ttl_seconds, created_at, now(), provider_id, provider_kind, provider_message_id, \
                   attempts, last_error, \
                   CASE WHEN status = 'sent' THEN now() END, \
                   CASE WHEN status IN ('sent', 'failed', 'expired', 'suppressed') THEN now() END \
            FROM input \
            ON CONFLICT DO NOTHING RETURNING id, tenant_id, created_at), \
         ev AS ( \
            INSERT INTO message_events (message_id, tenant_id, kind, created_at) \
            SELECT id, tenant_id, 'accepted', created_at FROM ins) \
         SELECT input.id, (ins.id IS NOT NULL), m.status, m.tenant_id, dup.id \
         FROM input \
         LEFT JOIN ins ON ins.id = input.id \
         LEFT JOIN message_logs m ON m.id = input.id \
         LEFT JOIN message_logs dup ON input.idempotency_key IS NOT NULL \
              AND dup.tenant_id = input.tenant_id AND dup.idempotency_key = input.idempotency_key \
              AND dup.id <> input.id",
    )
    .bind(&ids)
    .bind(&tenants)
    .bind(&channels)
    .bind(&recipients)
    .bind(&keys)
    .bind(&metadata)
    .bind(&ttls)
    .bind(&created)
    .bind(&statuses)
    .bind(&providers)
    .bind(&kinds)
    .bind(&pmids)
    .bind(&attempts)
    .bind(&errors)
    .fetch_all(&mut *conn)
    .await?;
    // The first row of each id (an input row can match more than one `dup`).
    let mut by_id = std::collections::HashMap::with_capacity(found.len());
    for row in &found {
        by_id.entry(row.0).or_insert(row);
    }
    let outcome_of = |id: Uuid| -> ClaimOutcome {
        match by_id.get(&id).copied() {
            Some((_, true, _, _, _)) => ClaimOutcome::New,
            Some((_, false, Some(status), Some(tenant), _)) => ClaimOutcome::Existing {
                status: status.clone(),
                tenant_id: tenant.clone(),
            },
            Some((_, false, _, _, dup)) => ClaimOutcome::Duplicate { of: *dup },
            None => ClaimOutcome::Duplicate { of: None },
        }
    };
    // The same id twice in one batch: only the first occurrence may proceed.
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    Ok(ids
        .iter()
        .map(|id| {
            if seen.insert(*id) {
                outcome_of(*id)
            } else {
                ClaimOutcome::Duplicate { of: Some(*id) }
            }
        })
        .collect())
}

/// A change of a message's row by the worker. `None` fields keep their value.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub id: Uuid,
    pub status: String,
    pub provider_id: Option<Uuid>,
    pub provider_kind: Option<String>,
    pub provider_message_id: Option<String>,
    pub attempts_inc: i32,
    pub last_error: Option<String>,
}

/// A message [`write_steps`] changed: where the rollup counted it before (read under the
/// row lock the change took) and the status and provider it has now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChangedMessage {
    #[sqlx(flatten)]
    pub before: super::stats::CountedMessage,
    #[sqlx(rename = "new_status")]
    pub status: String,
    #[sqlx(rename = "new_provider_id")]
    pub provider_id: Option<Uuid>,
}

/// The rows of a batch of steps, in one statement: the updates (only `queued` and `sending`
/// rows change: a final status never moves back), the events and the dead letters. Returns
/// each row the updates changed, with the status and provider it had before.
///
/// The old values come from a `SELECT … ORDER BY id FOR NO KEY UPDATE` the `UPDATE` joins:
/// it locks the rows in id order (concurrent batches cannot deadlock on them) and returns
/// each row as it is once locked, i.e. as the `UPDATE` then finds it. Nothing else can
/// change it in between, so the old status is exactly the one the update moved it from
/// (Postgres 15 has no `RETURNING OLD`).
pub async fn write_steps(
    conn: &mut PgConnection,
    updates: &[&StatusUpdate],
    events: &[&NewEvent],
    dead: &[&DeadLetter],
) -> Result<Vec<ChangedMessage>, sqlx::Error> {
    if updates.is_empty() && events.is_empty() && dead.is_empty() {
        return Ok(Vec::new());
    }
    let u_ids: Vec<Uuid> = updates.iter().map(|r| r.id).collect();
    let u_statuses: Vec<&str> = updates.iter().map(|r| r.status.as_str()).collect();
    let u_providers: Vec<Option<Uuid>> = updates.iter().map(|r| r.provider_id).collect();
    let u_kinds: Vec<Option<&str>> = updates.iter().map(|r| r.provider_kind.as_deref()).collect();
    let u_pmids: Vec<Option<&str>> = updates
        .iter()
        .map(|r| r.provider_message_id.as_deref())
        .collect();
    let u_incs: Vec<i32> = updates.iter().map(|r| r.attempts_inc).collect();
    let u_errors: Vec<Option<&str>> = updates.iter().map(|r| r.last_error.as_deref()).collect();
    let e_ids: Vec<Uuid> = events.iter().map(|r| r.message_id).collect();
    let e_tenants: Vec<&str> = events.iter().map(|r| r.tenant_id.as_str()).collect();
    let e_kinds: Vec<&str> = events.iter().map(|r| r.kind).collect();
    let e_providers: Vec<Option<Uuid>> = events.iter().map(|r| r.provider_id).collect();
    let e_details: Vec<Option<&Value>> = events.iter().map(|r| r.detail.as_ref()).collect();
    let e_ats: Vec<DateTime<Utc>> = events.iter().map(|r| r.at).collect();
    let d = super::dead_letters::DeadLetterColumns::of(dead);
    sqlx::query_as(
        "WITH u AS ( \
            SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], \
                                 $6::int[], $7::text[]) \
            AS u(id, status, provider_id, provider_kind, provider_message_id, attempts_inc, \
                 last_error)), \
         old AS MATERIALIZED ( \
            SELECT id, tenant_id, channel, created_at, status, provider_id FROM message_logs \
            WHERE id = ANY($1) AND status IN ('queued', 'sending') \
            ORDER BY id FOR NO KEY UPDATE), \
         changed AS ( \
            UPDATE message_logs m SET \
                status = u.status, \
                provider_id = COALESCE(u.provider_id, m.provider_id), \
                provider_kind = COALESCE(u.provider_kind, m.provider_kind), \
                provider_message_id = COALESCE(u.provider_message_id, m.provider_message_id), \
                attempts = m.attempts + u.attempts_inc, \
                last_error = COALESCE(u.last_error, m.last_error), \
                updated_at = now(), \
                sent_at = CASE WHEN u.status = 'sent' THEN now() ELSE m.sent_at END, \
                completed_at = CASE WHEN u.status IN ('sent', 'failed', 'expired', 'suppressed') \
                                    THEN now() ELSE m.completed_at END \
            FROM u JOIN old ON old.id = u.id \
            WHERE m.id = u.id AND m.status IN ('queued', 'sending') \
            RETURNING m.id, old.tenant_id, old.channel, old.created_at, old.status, \
                      old.provider_id, m.status AS new_status, \
                      m.provider_id AS new_provider_id), \
         ev AS ( \
            INSERT INTO message_events (message_id, tenant_id, kind, provider_id, detail, created_at) \
            SELECT * FROM UNNEST($8::uuid[], $9::text[], $10::text[], $11::uuid[], $12::jsonb[], \
                                 $13::timestamptz[]) \
            ORDER BY 6), \
         dl AS ( \
            INSERT INTO dead_letters (id, message_id, tenant_id, reason, kind, channel, \
                                      routing_key, sealed_body, body_key_id) \
            SELECT * FROM UNNEST($14::bigint[], $15::uuid[], $16::text[], $17::text[], \
                                 $18::text[], $19::text[], $20::text[], $21::bytea[], \
                                 $22::text[])) \
         SELECT * FROM changed",
    )
    .bind(&u_ids)
    .bind(&u_statuses)
    .bind(&u_providers)
    .bind(&u_kinds)
    .bind(&u_pmids)
    .bind(&u_incs)
    .bind(&u_errors)
    .bind(&e_ids)
    .bind(&e_tenants)
    .bind(&e_kinds)
    .bind(&e_providers)
    .bind(&e_details)
    .bind(&e_ats)
    .bind(&d.ids)
    .bind(&d.messages)
    .bind(&d.tenants)
    .bind(&d.reasons)
    .bind(&d.kinds)
    .bind(&d.channels)
    .bind(&d.routing_keys)
    .bind(&d.bodies)
    .bind(&d.key_ids)
    .fetch_all(&mut *conn)
    .await
}

/// One step of a message's life.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub message_id: Uuid,
    pub tenant_id: String,
    pub kind: &'static str,
    pub provider_id: Option<Uuid>,
    pub detail: Option<Value>,
    pub at: DateTime<Utc>,
}

pub async fn insert_events(conn: &mut PgConnection, rows: &[NewEvent]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.message_id).collect();
    let tenants: Vec<&str> = rows.iter().map(|r| r.tenant_id.as_str()).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
    let providers: Vec<Option<Uuid>> = rows.iter().map(|r| r.provider_id).collect();
    let details: Vec<Option<Value>> = rows.iter().map(|r| r.detail.clone()).collect();
    let ats: Vec<DateTime<Utc>> = rows.iter().map(|r| r.at).collect();
    sqlx::query(
        "INSERT INTO message_events (message_id, tenant_id, kind, provider_id, detail, created_at) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::jsonb[], $6::timestamptz[]) \
         ORDER BY 6",
    )
    .bind(&ids)
    .bind(&tenants)
    .bind(&kinds)
    .bind(&providers)
    .bind(&details)
    .bind(&ats)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub use super::dead_letters::{DeadLetter, insert_dead_letters};

/// Records an envelope that failed validation but carried a usable identity, as a `failed`
/// message, so its sender can see why through the API.
pub async fn record_rejected(
    conn: &mut PgConnection,
    row: &NewMessage,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let inserted: Option<(Uuid,)> = sqlx::query_as(
        "INSERT INTO message_logs (id, tenant_id, channel, recipient, status, last_error, \
                                   created_at, updated_at, completed_at) \
         VALUES ($1, $2, $3, $4, 'failed', $5, $6, now(), now()) \
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(row.id)
    .bind(&row.tenant_id)
    .bind(&row.channel)
    .bind(&row.recipient)
    .bind(reason)
    .bind(row.created_at)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(inserted.is_some())
}

/// The message a provider's receipt is about: (id, tenant, status).
#[tracing::instrument(skip_all)]
pub async fn find_by_provider_message(
    pool: &PgPool,
    provider_id: Uuid,
    provider_message_id: &str,
) -> Result<Option<(Uuid, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, tenant_id, status FROM message_logs \
         WHERE provider_id = $1 AND provider_message_id = $2",
    )
    .bind(provider_id)
    .bind(provider_message_id)
    .fetch_optional(pool)
    .await
}

/// A message by our id, if it was sent through this provider (receipts that echo our id).
pub async fn find_for_provider(
    pool: &PgPool,
    provider_id: Uuid,
    id: Uuid,
) -> Result<Option<(Uuid, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, tenant_id, status FROM message_logs WHERE id = $1 AND provider_id = $2",
    )
    .bind(id)
    .bind(provider_id)
    .fetch_optional(pool)
    .await
}

/// Applies a delivery receipt: records its event once (by `receipt_id`) and moves the status
/// only forward. `new_status` is `None` for receipts that are events only. A message moves
/// from `sending`/`sent` to a receipt status, and from `delivered` only to `bounced` (a late
/// bounce is the later truth); `failed`, `expired`, `undelivered` and `bounced` never move.
/// Returns the status after the receipt.
///
/// "Once" is the database's guarantee (unique index `message_events_receipt` on message,
/// kind and `detail->>'receipt_id'`): of two copies of one receipt arriving together, the
/// second waits for the first to commit, then inserts nothing and moves nothing.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(skip_all)]
pub async fn apply_receipt(
    pool: &PgPool,
    message_id: Uuid,
    tenant_id: &str,
    provider_id: Uuid,
    event_kind: &str,
    new_status: Option<&str>,
    receipt_id: &str,
    detail: Value,
) -> Result<Option<String>, sqlx::Error> {
    // The receipt id the index deduplicates on is the one given, whatever `detail` holds.
    let detail = match detail {
        Value::Object(mut fields) => {
            fields.insert("receipt_id".into(), Value::from(receipt_id));
            Value::Object(fields)
        }
        other => serde_json::json!({"receipt_id": receipt_id, "detail": other}),
    };
    let mut tx = pool.begin().await?;
    let recorded: Option<i64> = sqlx::query_scalar(
        "INSERT INTO message_events (message_id, tenant_id, kind, provider_id, detail) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (message_id, kind, (detail->>'receipt_id')) WHERE detail ? 'receipt_id' \
         DO NOTHING RETURNING id",
    )
    .bind(message_id)
    .bind(tenant_id)
    .bind(event_kind)
    .bind(provider_id)
    .bind(&detail)
    .fetch_optional(&mut *tx)
    .await?;
    if recorded.is_some()
        && let Some(status) = new_status
    {
        let from: &[&str] = if status == "bounced" {
            &["sending", "sent", "delivered"]
        } else {
            &["sending", "sent"]
        };
        super::stats::move_one(&mut tx, message_id, from, status).await?;
        sqlx::query(
            "UPDATE message_logs SET status = $2, updated_at = now(), completed_at = now() \
             WHERE id = $1 AND (status IN ('sending', 'sent') \
                                OR (status = 'delivered' AND $2 = 'bounced'))",
        )
        .bind(message_id)
        .bind(status)
        .execute(&mut *tx)
        .await?;
    }
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM message_logs WHERE id = $1")
            .bind(message_id)
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(status)
}
