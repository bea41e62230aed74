//! Receipts are recorded once by the database: copies of one provider webhook arriving at
//! the same moment leave one event and one status change.

use crate::common;

use std::sync::Arc;

use common::TestApp;
use communication::store::messages;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn copies_of_one_receipt_arriving_together_are_recorded_once() {
    let app = TestApp::spawn().await;
    let provider = app
        .system_provider("acme", "sms", "console", "deliver", 1)
        .await;
    let provider: Uuid = provider.parse().expect("provider id");
    let id = app.send_sms("acme", "x").await;
    app.wait_for_status("acme", &id, &["sent"]).await;
    let message: Uuid = id.parse().expect("message id");

    // Enough connections that every copy runs in its own transaction at once.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&format!(
            "postgres://postgres@127.0.0.1:5432/{}",
            app.db_name
        ))
        .await
        .expect("pool");
    let start = Arc::new(tokio::sync::Barrier::new(8));
    let copies: Vec<_> = (0..8)
        .map(|_| {
            let (pool, start) = (pool.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                messages::apply_receipt(
                    &pool,
                    message,
                    "acme",
                    provider,
                    "delivered",
                    Some("delivered"),
                    "rcpt-1",
                    json!({"provider_status": "delivered"}),
                )
                .await
            })
        })
        .collect();
    for copy in copies {
        let status = copy.await.expect("task").expect("apply receipt");
        assert_eq!(status.as_deref(), Some("delivered"));
    }
    let delivered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM message_events WHERE message_id = $1 AND kind = 'delivered'",
    )
    .bind(message)
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(delivered, 1, "one event for eight copies of one receipt");

    // Another receipt of the same kind is another event (the key is the receipt id).
    messages::apply_receipt(
        &pool,
        message,
        "acme",
        provider,
        "delivered",
        Some("delivered"),
        "rcpt-2",
        json!({"provider_status": "delivered"}),
    )
    .await
    .expect("apply receipt");
    let body = app.wait_for_status("acme", &id, &["delivered"]).await;
    let types = app.event_types(&body).await;
    assert_eq!(types.iter().filter(|t| *t == "delivered").count(), 2);
    pool.close().await;
    app.cleanup().await;
}
