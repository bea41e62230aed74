//! Status webhooks end to end: each event type reaches the endpoints subscribed to it, once,
//! signed so that the Standard Webhooks reference library accepts it; failures are retried
//! through the delay tiers and every attempt is listed; a dead receiver does not slow message
//! delivery.

use std::collections::HashMap;
use std::time::Duration;

use crate::common;
use crate::webhook_support::{
    black_hole, create_endpoint, verify_with_reference_library, wait_for_requests, webhook_requests,
};

use common::{Options, TestApp, envelope};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MAILGUN_KEY: &str = "mailgun-webhook-signing-key-0123";

fn mailgun_receipt(token: &str, event: &str, message_id: &str) -> Vec<u8> {
    let timestamp = chrono::Utc::now().timestamp();
    let mut mac = Hmac::<Sha256>::new_from_slice(MAILGUN_KEY.as_bytes()).expect("key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(token.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    serde_json::to_vec(&json!({
        "signature": {"timestamp": timestamp.to_string(), "token": token, "signature": signature},
        "event-data": {"id": format!("ev-{token}"), "event": event, "severity": "permanent",
                       "message": {"headers": {"message-id": message_id}},
                       "delivery-status": {"code": 550}},
    }))
    .expect("json")
}

async fn post_receipt(app: &TestApp, provider: &str, body: Vec<u8>, expect_status: &str) {
    let r = app
        .http
        .post(app.url(&format!("/v1/webhooks/mailgun/{provider}")))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("receipt");
    let code = r.status();
    let answer: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (code.as_u16(), answer["status"].as_str()),
        (200, Some(expect_status)),
        "{answer}"
    );
}

async fn receiver(route: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(route))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn each_event_type_reaches_its_subscribers_once_signed_as_the_reference_library_expects() {
    let mailgun = MockServer::start().await;
    let all = receiver("/all").await;
    let failed_only = receiver("/failed").await;
    let app = TestApp::spawn_with(Options {
        vars: vec![
            ("MAILGUN_BASE_URL", mailgun.uri()),
            ("COMMUNICATION_SUPPRESSION_CACHE_MS", "0".into()),
            ("COMMUNICATION_WEBHOOK_OUTBOX_POLL_MS", "50".into()),
        ],
        worker: true,
    })
    .await;
    let every_type = [
        "message.sent",
        "message.delivered",
        "message.undelivered",
        "message.bounced",
        "message.failed",
        "message.expired",
        "message.suppressed",
    ];
    let (_, secret_all) =
        create_endpoint(&app, "acme", &format!("{}/all", all.uri()), &every_type).await;
    let (_, secret_failed) = create_endpoint(
        &app,
        "acme",
        &format!("{}/failed", failed_only.uri()),
        &["message.failed"],
    )
    .await;
    // Another tenant's endpoint hears nothing of acme's messages.
    let (_, _) = create_endpoint(
        &app,
        "globex",
        &format!("{}/globex", all.uri()),
        &every_type,
    )
    .await;
    for n in 1..=2 {
        Mock::given(method("POST"))
            .and(path("/v3/mg.acme.test/messages"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": format!("<m{n}@mg.acme.test>"), "message": "Queued. Thank you."})))
            .up_to_n_times(1)
            .expect(1)
            .mount(&mailgun)
            .await;
    }
    let p = app
        .create_provider(
            "acme",
            json!({"name": "mg", "channel": "email", "kind": "mailgun",
                   "config": {"api_key": "key-0123456789", "domain": "mg.acme.test",
                              "from": "shop@acme.test", "webhook_signing_key": MAILGUN_KEY}}),
        )
        .await;
    let pid = p["id"].as_str().expect("id").to_owned();
    app.system_provider("acme", "sms", "broken", "fail_permanent", 1)
        .await;

    // m1: sent, delivered, then a late bounce. Sent with a key and metadata to correlate.
    let r = app
        .as_tenant(Method::POST, "/v1/send", "acme")
        .header("Idempotency-Key", "order-42-receipt")
        .json(
            &json!({"channel": "email", "to": "ada@example.com", "metadata": {"order": 42},
                      "content": {"subject": "Receipt", "text": "Total: 12 EUR"}}),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 202);
    let m1 = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.wait_for_status("acme", &m1, &["sent"]).await;
    post_receipt(
        &app,
        &pid,
        mailgun_receipt("t1", "delivered", "m1@mg.acme.test"),
        "delivered",
    )
    .await;
    post_receipt(
        &app,
        &pid,
        mailgun_receipt("t2", "failed", "m1@mg.acme.test"),
        "bounced",
    )
    .await;
    // m2: sent, then undelivered.
    let m2 = app
        .send_ok(
            "acme",
            json!({"channel": "email", "to": "bob@example.com",
                   "content": {"subject": "Receipt", "text": "Total: 3 EUR"}}),
        )
        .await;
    app.wait_for_status("acme", &m2, &["sent"]).await;
    post_receipt(
        &app,
        &pid,
        mailgun_receipt("t3", "rejected", "m2@mg.acme.test"),
        "undelivered",
    )
    .await;
    // m3: failed (the only SMS provider refuses for good).
    let m3 = app.send_sms("acme", "Your code is 1234").await;
    app.wait_for_status("acme", &m3, &["failed"]).await;
    // m4: suppressed.
    let (code, _) = {
        let r = app
            .as_tenant(Method::POST, "/v1/suppressions", "acme")
            .json(&json!({"channel": "email", "recipient": "gone@example.com"}))
            .send()
            .await
            .expect("suppress");
        (r.status().as_u16(), ())
    };
    assert_eq!(code, 201);
    let m4 = app
        .send_ok(
            "acme",
            json!({"channel": "email", "to": "gone@example.com",
                   "content": {"subject": "Hello", "text": "Hi"}}),
        )
        .await;
    app.wait_for_status("acme", &m4, &["suppressed"]).await;
    // m5: expired (published directly, an hour old with a one-minute ttl).
    let m5 = Uuid::now_v7();
    let mut late = envelope(
        "acme",
        m5,
        "sms",
        "+14155550100",
        json!({"text": "Your code is 9"}),
    );
    late["ttl_seconds"] = json!(60);
    late["created_at"] = json!(chrono::Utc::now() - chrono::Duration::hours(1));
    app.publish_raw("sms", late.to_string().as_bytes()).await;
    let m5 = m5.to_string();
    app.wait_for_status("acme", &m5, &["expired"]).await;

    let got = wait_for_requests(&all, 8, Duration::from_secs(30)).await;
    let to_failed = wait_for_requests(&failed_only, 1, Duration::from_secs(10)).await;
    // Nothing more arrives: each event once, and the other tenant's endpoint got nothing.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got_later = webhook_requests(&all).await;
    assert_eq!(
        got_later.len(),
        8,
        "each event exactly once: {}",
        got_later.len()
    );
    assert!(got_later.iter().all(|r| r.url.path() == "/all"));
    assert_eq!(webhook_requests(&failed_only).await.len(), 1);

    let payloads = verify_with_reference_library(&secret_all, &got);
    let only_failed = verify_with_reference_library(&secret_failed, &to_failed);
    assert_eq!(only_failed[0]["type"], "message.failed");
    assert_eq!(only_failed[0]["data"]["message_id"], m3.as_str());

    let mut by_message: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for p in &payloads {
        let d = &p["data"];
        assert_eq!(
            p["type"],
            format!("message.{}", d["status"].as_str().unwrap_or("")),
            "{p}"
        );
        assert_eq!(d["tenant_id"], "acme");
        assert!(p["timestamp"].is_string(), "{p}");
        for field in ["channel", "recipient", "event_time"] {
            assert!(d[field].is_string(), "{p}");
        }
        by_message
            .entry(d["message_id"].as_str().unwrap_or("").to_owned())
            .or_default()
            .push((
                d["sequence"].as_i64().unwrap_or(0),
                p["type"].as_str().unwrap_or("").to_owned(),
            ));
        if d["message_id"] == m1.as_str() {
            assert_eq!(d["idempotency_key"], "order-42-receipt", "{p}");
            assert_eq!(d["metadata"], json!({"order": 42}), "{p}");
            assert_eq!(d["provider_kind"], "mailgun", "{p}");
            assert_eq!(d["provider_id"], pid.as_str(), "{p}");
            assert_eq!(d["recipient"], "ada@example.com");
        }
    }
    let in_order = |id: &str| {
        let mut events = by_message.get(id).cloned().unwrap_or_default();
        events.sort();
        events
    };
    let expect = |pairs: &[(i64, &str)]| -> Vec<(i64, String)> {
        pairs.iter().map(|(s, t)| (*s, t.to_string())).collect()
    };
    assert_eq!(
        in_order(&m1),
        expect(&[
            (1, "message.sent"),
            (2, "message.delivered"),
            (3, "message.bounced")
        ])
    );
    assert_eq!(
        in_order(&m2),
        expect(&[(1, "message.sent"), (2, "message.undelivered")])
    );
    assert_eq!(in_order(&m3), expect(&[(1, "message.failed")]));
    assert_eq!(in_order(&m4), expect(&[(1, "message.suppressed")]));
    assert_eq!(in_order(&m5), expect(&[(1, "message.expired")]));
    app.cleanup().await;
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_the_event_on_the_third_try_and_the_attempts_list_all() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .mount(&hook)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .expect(2)
        .mount(&hook)
        .await;
    let app = TestApp::spawn_with(Options {
        vars: vec![
            (
                "COMMUNICATION_WEBHOOK_RETRY_SCHEDULE",
                "200ms,300ms,5s".into(),
            ),
            ("COMMUNICATION_WEBHOOK_OUTBOX_POLL_MS", "50".into()),
        ],
        worker: true,
    })
    .await;
    app.system_provider("acme", "sms", "console", "deliver", 1)
        .await;
    let (endpoint, secret) = create_endpoint(
        &app,
        "acme",
        &format!("{}/hook", hook.uri()),
        &["message.sent"],
    )
    .await;
    let id = app.send_sms("acme", "Your code is 1234").await;
    app.wait_for_status("acme", &id, &["sent"]).await;

    let got = wait_for_requests(&hook, 3, Duration::from_secs(15)).await;
    let ids: Vec<&str> = got
        .iter()
        .filter_map(|r| r.headers.get("webhook-id").and_then(|v| v.to_str().ok()))
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "one webhook-id for every try: {ids:?}"
    );
    verify_with_reference_library(&secret, &got);

    let attempts_path = format!("/v1/webhook-endpoints/{endpoint}/attempts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let page = loop {
        let r = app
            .as_tenant(Method::GET, &attempts_path, "acme")
            .send()
            .await
            .expect("list");
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.expect("json");
        if page["items"].as_array().map(Vec::len) == Some(3)
            || tokio::time::Instant::now() > deadline
        {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "{page}");
    // Newest first.
    let summary: Vec<(i64, Value, bool)> = items
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap_or(0),
                a["status_code"].clone(),
                a["succeeded"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (3, json!(200), true),
            (2, json!(503), false),
            (1, json!(503), false)
        ],
        "{page}"
    );
    for a in items {
        assert_eq!(a["event_type"], "message.sent");
        assert_eq!(a["message_id"], id.as_str());
        assert_eq!(a["webhook_id"], ids[0]);
        assert!(a["latency_ms"].is_i64());
    }
    assert_eq!(items[1]["error"], "HTTP 503");
    assert!(
        !page.to_string().contains("whsec_"),
        "never the secret: {page}"
    );
    // Another tenant cannot read them.
    let r = app
        .as_tenant(Method::GET, &attempts_path, "globex")
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 404);

    // A retry by hand sends the same event again.
    let first = items[2]["id"].as_str().expect("attempt id");
    let r = app
        .as_tenant(
            Method::POST,
            &format!("{attempts_path}/{first}/retry"),
            "acme",
        )
        .send()
        .await
        .expect("retry");
    assert_eq!(r.status(), 202);
    let again = wait_for_requests(&hook, 4, Duration::from_secs(10)).await;
    assert_eq!(
        again[3]
            .headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok()),
        Some(ids[0])
    );
    verify_with_reference_library(&secret, &again[3..]);
    let missing = format!("{attempts_path}/{}/retry", Uuid::new_v4());
    let r = app
        .as_tenant(Method::POST, &missing, "acme")
        .send()
        .await
        .expect("retry");
    assert_eq!(r.status(), 404);
    app.cleanup().await;
}

/// Mean accept→sent (ms) of the tenant's sent messages among `ids`.
async fn mean_accept_to_sent_ms(app: &TestApp, ids: &[String]) -> f64 {
    let ids: Vec<Uuid> = ids.iter().filter_map(|i| Uuid::parse_str(i).ok()).collect();
    sqlx::query_scalar::<_, f64>(
        "SELECT (avg(EXTRACT(EPOCH FROM (sent_at - created_at))) * 1000)::float8 \
         FROM message_logs WHERE id = ANY($1) AND status = 'sent'",
    )
    .bind(&ids)
    .fetch_one(&app.pool)
    .await
    .expect("mean")
}

async fn send_batch(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(app.send_sms("acme", &format!("Your code is {i}")).await);
    }
    for id in &ids {
        app.wait_for_status("acme", id, &["sent"]).await;
    }
    ids
}

#[tokio::test]
async fn a_black_hole_endpoint_does_not_slow_message_delivery() {
    let app = TestApp::spawn_with(Options {
        vars: vec![
            ("COMMUNICATION_WEBHOOK_TIMEOUT_MS", "3000".into()),
            ("COMMUNICATION_WEBHOOK_CONCURRENCY", "4".into()),
            ("COMMUNICATION_WEBHOOK_OUTBOX_POLL_MS", "50".into()),
        ],
        worker: true,
    })
    .await;
    app.system_provider("acme", "sms", "console", "deliver", 1)
        .await;
    // Warm up, then measure without an endpoint.
    send_batch(&app, 3).await;
    let without = send_batch(&app, 20).await;
    let baseline = mean_accept_to_sent_ms(&app, &without).await;

    let (url, _hole) = black_hole().await;
    let (endpoint, _) = create_endpoint(&app, "acme", &url, &["message.sent"]).await;
    let with = send_batch(&app, 20).await;
    let loaded = mean_accept_to_sent_ms(&app, &with).await;
    // The receiver holds every request until the timeout: its consumer is saturated, yet
    // sends are as fast as before (a generous bound for a shared 2-core machine).
    assert!(
        loaded <= baseline * 3.0 + 150.0,
        "accept→sent {loaded:.1} ms with a black-hole endpoint vs {baseline:.1} ms without"
    );
    let attempts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1::uuid")
            .bind(&endpoint)
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(
        attempts, 20,
        "every sent message has its webhook delivery in the outbox"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn an_endpoint_failing_for_longer_than_allowed_is_disabled_and_says_why() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&hook)
        .await;
    let app = TestApp::spawn_with(Options {
        vars: vec![
            (
                "COMMUNICATION_WEBHOOK_RETRY_SCHEDULE",
                "300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms".into(),
            ),
            ("COMMUNICATION_WEBHOOK_DISABLE_AFTER", "1s".into()),
            ("COMMUNICATION_WEBHOOK_OUTBOX_POLL_MS", "50".into()),
        ],
        worker: true,
    })
    .await;
    app.system_provider("acme", "sms", "console", "deliver", 1)
        .await;
    let (endpoint, _) = create_endpoint(
        &app,
        "acme",
        &format!("{}/hook", hook.uri()),
        &["message.sent"],
    )
    .await;
    let id = app.send_sms("acme", "Your code is 1234").await;
    app.wait_for_status("acme", &id, &["sent"]).await;
    let path = format!("/v1/webhook-endpoints/{endpoint}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let disabled = loop {
        let r = app
            .as_tenant(Method::GET, &path, "acme")
            .send()
            .await
            .expect("get");
        let body: Value = r.json().await.expect("json");
        if body["enabled"] == false {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never disabled: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = disabled["disabled_reason"].as_str().expect("a reason");
    assert!(
        reason.contains("every delivery failed since") && reason.contains("HTTP 500"),
        "{reason}"
    );
    assert!(disabled["failing_since"].is_string(), "{disabled}");
    // No more attempts once disabled (the delivery is abandoned), and at most the schedule.
    let tries = webhook_requests(&hook).await.len();
    assert!((4..=9).contains(&tries), "{tries} attempts");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(webhook_requests(&hook).await.len(), tries);
    let state: String = sqlx::query_scalar("SELECT state FROM webhook_deliveries")
        .fetch_one(&app.pool)
        .await
        .expect("state");
    assert_eq!(state, "abandoned");
    // Re-enabled by the tenant: the reason and the failure streak are cleared.
    let r = app
        .as_tenant(Method::PATCH, &path, "acme")
        .json(&json!({"enabled": true}))
        .send()
        .await
        .expect("patch");
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        (
            body["enabled"].clone(),
            body["disabled_reason"].clone(),
            body["failing_since"].clone()
        ),
        (json!(true), Value::Null, Value::Null)
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_redirect_is_a_failed_attempt_and_is_not_followed() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/elsewhere", hook.uri())),
        )
        .expect(1)
        .mount(&hook)
        .await;
    Mock::given(path("/elsewhere"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&hook)
        .await;
    let app = TestApp::spawn_with(Options {
        vars: vec![
            ("COMMUNICATION_WEBHOOK_RETRY_SCHEDULE", "1h".into()),
            ("COMMUNICATION_WEBHOOK_OUTBOX_POLL_MS", "50".into()),
        ],
        worker: true,
    })
    .await;
    app.system_provider("acme", "sms", "console", "deliver", 1)
        .await;
    let (endpoint, _) = create_endpoint(
        &app,
        "acme",
        &format!("{}/hook", hook.uri()),
        &["message.sent"],
    )
    .await;
    let id = app.send_sms("acme", "Your code is 1234").await;
    app.wait_for_status("acme", &id, &["sent"]).await;
    let attempts_path = format!("/v1/webhook-endpoints/{endpoint}/attempts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let attempt = loop {
        let r = app
            .as_tenant(Method::GET, &attempts_path, "acme")
            .send()
            .await
            .expect("list");
        let page: Value = r.json().await.expect("json");
        if let Some(a) = page["items"].as_array().and_then(|i| i.first()) {
            break a.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no attempt recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (
            attempt["status_code"].clone(),
            attempt["succeeded"].clone(),
            attempt["error"].clone()
        ),
        (json!(307), json!(false), json!("HTTP 307"))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    hook.verify().await;
    app.cleanup().await;
}

#[tokio::test]
async fn the_outbox_is_written_with_the_status_and_a_lost_queue_message_goes_back_to_it() {
    // No worker: only the database trigger and the store functions are at work here.
    let app = TestApp::spawn_with(Options {
        vars: vec![],
        worker: false,
    })
    .await;
    let (endpoint, _) =
        create_endpoint(&app, "acme", "http://127.0.0.1:9/hook", &["message.failed"]).await;
    let insert = |status: &'static str| {
        let pool = app.pool.clone();
        async move {
            let id = Uuid::now_v7();
            sqlx::query(
                "INSERT INTO message_logs (id, tenant_id, channel, recipient, status, created_at) \
                 VALUES ($1, 'acme', 'sms', '+14155550100', $2, now())",
            )
            .bind(id)
            .bind(status)
            .execute(&pool)
            .await
            .expect("insert");
            id
        }
    };
    // A status change writes the event in its own transaction; one nobody subscribed to does not.
    let failed = insert("failed").await;
    insert("queued").await;
    let rows: Vec<(Uuid, String, i32)> = sqlx::query_as(
        "SELECT e.message_id, e.event_type, e.sequence FROM webhook_deliveries d \
         JOIN webhook_events e ON e.id = d.event_id WHERE d.endpoint_id = $1::uuid",
    )
    .bind(&endpoint)
    .fetch_all(&app.pool)
    .await
    .expect("rows");
    assert_eq!(rows, vec![(failed, "message.failed".to_owned(), 1)]);

    // Published long ago and never attempted: its queue message was lost.
    sqlx::query(
        "UPDATE webhook_deliveries SET published_at = now() - interval '2 hours', \
         updated_at = now() - interval '2 hours'",
    )
    .execute(&app.pool)
    .await
    .expect("age it");
    let store = communication::store::webhook_deliveries::requeue_stale;
    assert_eq!(
        store(&app.pool, Duration::from_secs(3 * 3600))
            .await
            .expect("sweep"),
        0
    );
    assert_eq!(
        store(&app.pool, Duration::from_secs(3600))
            .await
            .expect("sweep"),
        1
    );
    let unpublished: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_deliveries WHERE published_at IS NULL AND state = 'pending'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(unpublished, 1, "back in the outbox");
    app.cleanup().await;
}
