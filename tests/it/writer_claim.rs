//! The writer records a message and its first attempt in one transaction
//! (`Writer::claim_then`): what that leaves behind in each case, including a failure between
//! the two, which must leave nothing half-written.

use std::time::Duration;

use chrono::Utc;
use communication::store::messages::{ClaimOutcome, NewEvent, NewMessage, StatusUpdate};
use communication::worker::writer::{Record, Writer};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{create_database, drop_database};

fn message(tenant: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        id: Uuid::new_v4(),
        tenant_id: tenant.to_owned(),
        channel: "sms".into(),
        recipient: "+14155550100".into(),
        idempotency_key: key.map(str::to_owned),
        metadata: None,
        ttl_seconds: None,
        created_at: Utc::now(),
    }
}

fn attempt(m: &NewMessage, event_for: Uuid) -> Record {
    Record {
        update: Some(StatusUpdate {
            id: m.id,
            status: "sending".into(),
            provider_id: None,
            provider_kind: Some("system".into()),
            provider_message_id: None,
            attempts_inc: 1,
            last_error: None,
        }),
        events: vec![NewEvent {
            message_id: event_for,
            tenant_id: m.tenant_id.clone(),
            kind: "attempt",
            provider_id: None,
            detail: Some(json!({"attempt": 1})),
            at: Utc::now(),
        }],
        dead_letter: None,
    }
}

async fn row(pool: &PgPool, id: Uuid) -> Option<(String, i32)> {
    sqlx::query_as("SELECT status, attempts FROM message_logs WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .expect("query message")
}

async fn events(pool: &PgPool, id: Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT kind FROM message_events WHERE message_id = $1 ORDER BY id")
        .bind(id)
        .fetch_all(pool)
        .await
        .expect("query events")
}

#[tokio::test]
async fn claim_and_first_attempt_commit_together_or_not_at_all() {
    let (db, pool) = create_database().await;
    let (writer, task) = Writer::spawn(pool.clone(), 50, Duration::from_millis(2), 2);

    // New: the message is recorded already `sending`, with its accepted and attempt events.
    let fresh = message("t1", Some("k1"));
    let record = attempt(&fresh, fresh.id);
    let outcome = writer
        .claim_then(fresh.clone(), Some(record))
        .await
        .expect("claim");
    assert_eq!(outcome, ClaimOutcome::New);
    assert_eq!(row(&pool, fresh.id).await, Some(("sending".into(), 1)));
    assert_eq!(events(&pool, fresh.id).await, vec!["accepted", "attempt"]);

    // Redelivered while not final: the claim finds it and the attempt is recorded again.
    let again = writer
        .claim_then(fresh.clone(), Some(attempt(&fresh, fresh.id)))
        .await
        .expect("claim again");
    assert!(matches!(again, ClaimOutcome::Existing { ref status, .. } if status == "sending"));
    assert_eq!(row(&pool, fresh.id).await, Some(("sending".into(), 2)));

    // Final: nothing of the attempt is written.
    sqlx::query("UPDATE message_logs SET status = 'sent' WHERE id = $1")
        .bind(fresh.id)
        .execute(&pool)
        .await
        .expect("mark sent");
    writer
        .claim_then(fresh.clone(), Some(attempt(&fresh, fresh.id)))
        .await
        .expect("claim final");
    assert_eq!(row(&pool, fresh.id).await, Some(("sent".into(), 2)));
    assert_eq!(events(&pool, fresh.id).await.len(), 3);

    // Another tenant's message with the same id: its attempt is not written either.
    let mut foreign = fresh.clone();
    foreign.tenant_id = "t2".into();
    sqlx::query("UPDATE message_logs SET status = 'sending' WHERE id = $1")
        .bind(fresh.id)
        .execute(&pool)
        .await
        .expect("mark sending");
    writer
        .claim_then(foreign.clone(), Some(attempt(&foreign, foreign.id)))
        .await
        .expect("claim foreign");
    assert_eq!(row(&pool, fresh.id).await, Some(("sending".into(), 2)));
    assert_eq!(events(&pool, fresh.id).await.len(), 3);

    // A second message holding the same idempotency key: a duplicate, nothing written.
    let dup = message("t1", Some("k1"));
    let outcome = writer
        .claim_then(dup.clone(), Some(attempt(&dup, dup.id)))
        .await
        .expect("claim duplicate");
    assert_eq!(outcome, ClaimOutcome::Duplicate { of: Some(fresh.id) });
    assert_eq!(row(&pool, dup.id).await, None);
    assert!(events(&pool, dup.id).await.is_empty());

    // The attempt's rows fail (an event for a message that does not exist): the claim is
    // rolled back with them, so a crash or error between the two can leave nothing behind.
    let broken = message("t1", None);
    let result = writer
        .claim_then(broken.clone(), Some(attempt(&broken, Uuid::new_v4())))
        .await;
    assert!(result.is_err(), "the write must fail: {result:?}");
    assert_eq!(row(&pool, broken.id).await, None);
    assert!(events(&pool, broken.id).await.is_empty());

    drop(writer);
    task.await.expect("writer stops");
    pool.close().await;
    drop_database(&db).await;
}
