//! The delivery pipeline end to end against real Postgres, Redis and RabbitMQ.

use crate::common;

use std::time::Duration;

use common::{SERVICE_TOKEN, TestApp, envelope};
use communication::queue::Topology;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

#[tokio::test]
async fn a_send_over_http_reaches_sent_with_its_event_timeline() {
    let app = TestApp::spawn().await;
    let provider = app
        .system_provider("acme", "sms", "console", "deliver", 10)
        .await;
    let id = app.send_sms("acme", "Your code is 481516").await;
    let body = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(body["channel"], "sms");
    assert_eq!(body["to"], "+14155550100");
    assert_eq!(body["provider_id"], provider.as_str());
    assert_eq!(body["provider_message_id"], format!("system-{id}"));
    assert_eq!(body["attempts"], 1);
    assert!(body["sent_at"].is_string());
    assert_eq!(
        app.event_types(&body).await,
        vec!["accepted", "attempt", "sent"]
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_direct_published_envelope_reaches_sent() {
    let app = TestApp::spawn().await;
    app.system_provider("acme", "email", "console", "deliver", 10)
        .await;
    let id = Uuid::new_v4();
    let env = envelope(
        "acme",
        id,
        "email",
        "ada@example.com",
        json!({"subject": "Receipt", "text": "Thanks", "html": "<p>Thanks</p>"}),
    );
    app.publish_raw("email", &serde_json::to_vec(&env).expect("json"))
        .await;
    let body = app
        .wait_for_status("acme", &id.to_string(), &["sent"])
        .await;
    assert_eq!(body["to"], "ada@example.com");
    assert_eq!(
        app.event_types(&body).await,
        vec!["accepted", "attempt", "sent"]
    );
    app.cleanup().await;
}

#[tokio::test]
async fn an_invalid_envelope_is_dead_lettered_and_the_next_valid_one_is_still_delivered() {
    let app = TestApp::spawn().await;
    app.system_provider("acme", "sms", "console", "deliver", 10)
        .await;
    let bad_id = Uuid::new_v4();
    let bad = envelope("acme", bad_id, "sms", "not-a-number", json!({"text": "hi"}));
    app.publish_raw("sms", &serde_json::to_vec(&bad).expect("json"))
        .await;
    app.publish_raw("sms", b"{this is not json").await;
    let good_id = Uuid::new_v4();
    let good = envelope(
        "acme",
        good_id,
        "sms",
        "+447700900123",
        json!({"text": "hi"}),
    );
    app.publish_raw("sms", &serde_json::to_vec(&good).expect("json"))
        .await;

    app.wait_for_status("acme", &good_id.to_string(), &["sent"])
        .await;
    let rejected = app
        .wait_for_status("acme", &bad_id.to_string(), &["failed"])
        .await;
    assert!(
        rejected["last_error"]
            .as_str()
            .unwrap_or("")
            .starts_with("to: ")
    );
    assert_eq!(
        app.event_types(&rejected).await,
        vec!["failed", "dead_lettered"]
    );

    let mut dead = Vec::new();
    for _ in 0..50 {
        dead.extend(app.drain_dead().await);
        if dead.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        dead.len(),
        2,
        "both invalid envelopes are in the dead-letter queue"
    );
    let reasons: Vec<String> = dead.iter().filter_map(|d| d.1.clone()).collect();
    assert!(reasons.iter().any(|r| r.starts_with("to: ")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("not valid JSON")),
        "{reasons:?}"
    );
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(recorded, 2);
    app.cleanup().await;
}

#[tokio::test]
async fn a_message_redelivered_after_it_was_sent_is_not_sent_again() {
    let app = TestApp::spawn().await;
    app.system_provider("acme", "sms", "console", "deliver", 10)
        .await;
    let id = Uuid::new_v4();
    let env = serde_json::to_vec(&envelope(
        "acme",
        id,
        "sms",
        "+14155550100",
        json!({"text": "x"}),
    ))
    .expect("json");
    app.publish_raw("sms", &env).await;
    app.wait_for_status("acme", &id.to_string(), &["sent"])
        .await;
    // The same envelope again, as a broker redelivery or a publisher retry would bring it.
    app.publish_raw("sms", &env).await;
    app.publish_raw("sms", &env).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, body) = app.message("acme", &id.to_string()).await;
    assert_eq!(body["attempts"], 1);
    let sent_events = app
        .event_types(&body)
        .await
        .iter()
        .filter(|t| *t == "sent")
        .count();
    assert_eq!(sent_events, 1);
    app.cleanup().await;
}

#[tokio::test]
async fn the_same_idempotency_key_is_sent_once_even_when_redis_forgot_it() {
    let app = TestApp::spawn().await;
    app.system_provider("acme", "sms", "console", "deliver", 10)
        .await;
    let first = Uuid::new_v4();
    let mut env = envelope("acme", first, "sms", "+14155550100", json!({"text": "x"}));
    env["idempotency_key"] = json!("order-42");
    app.publish_raw("sms", &serde_json::to_vec(&env).expect("json"))
        .await;
    app.wait_for_status("acme", &first.to_string(), &["sent"])
        .await;
    let second = Uuid::new_v4();
    env["id"] = json!(second);
    app.publish_raw("sms", &serde_json::to_vec(&env).expect("json"))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, _) = app.message("acme", &second.to_string()).await;
    assert_eq!(code, 404, "the duplicate is never recorded or sent");
    let sends: i64 = sqlx::query_scalar("SELECT count(*) FROM message_events WHERE kind = 'sent'")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(sends, 1);
    app.cleanup().await;
}

fn fingerprint(body: &Value) -> String {
    hex::encode(Sha256::digest(serde_json::to_vec(body).expect("json")))
}

#[tokio::test]
async fn idempotent_replay_returns_the_same_id_and_a_different_body_is_refused() {
    let app = TestApp::spawn().await;
    app.system_provider("acme", "sms", "console", "deliver", 10)
        .await;
    let body = json!({"channel": "sms", "to": "+14155550100", "content": {"text": "one"}});
    let send = |b: Value| {
        app.as_tenant(Method::POST, "/v1/send", "acme")
            .header("Idempotency-Key", "signup-7")
            .json(&b)
            .send()
    };
    let first = send(body.clone()).await.expect("request");
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.expect("json");
    let again = send(body.clone()).await.expect("request");
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["id"], first["id"]);
    let other = send(json!({"channel": "sms", "to": "+14155550100", "content": {"text": "two"}}))
        .await
        .expect("request");
    assert_eq!(other.status(), 422);
    let problem: Value = other.json().await.expect("json");
    assert_eq!(problem["code"], "idempotency_key_reused");
    // Another tenant may use the same key freely.
    let r = app
        .as_tenant(Method::POST, "/v1/send", "globex")
        .header("Idempotency-Key", "signup-7")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 202);
    let id = first["id"].as_str().expect("id");
    app.wait_for_status("acme", id, &["sent"]).await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_key_whose_first_request_is_still_in_flight_answers_409() {
    let app = TestApp::spawn_with(common::Options {
        worker: false,
        ..Default::default()
    })
    .await;
    let body = json!({"channel": "sms", "to": "+14155550100", "content": {"text": "one"}});
    // Simulate a first request that claimed the key and has not been confirmed yet.
    let idem = communication::intake::idempotency::idem_key(&app.namespace, "acme", "k-inflight");
    let redis = redis::Client::open("redis://127.0.0.1:6379").expect("client");
    let mut conn = redis
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: () = redis::cmd("SET")
        .arg(&idem)
        .arg(format!("pending|{}|{}", fingerprint(&body), Uuid::new_v4()))
        .arg("EX")
        .arg(60)
        .query_async(&mut conn)
        .await
        .expect("set");
    let r = app
        .as_tenant(Method::POST, "/v1/send", "acme")
        .header("Idempotency-Key", "k-inflight")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 409);
    let problem: Value = r.json().await.expect("json");
    assert_eq!(problem["code"], "idempotency_key_in_flight");
    app.cleanup().await;
}

#[tokio::test]
async fn an_accepted_message_no_worker_has_recorded_yet_reads_as_queued() {
    let app = TestApp::spawn_with(common::Options {
        worker: false,
        ..Default::default()
    })
    .await;
    let id = app.send_sms("acme", "hello").await;
    let (code, body) = app.message("acme", &id).await;
    assert_eq!(code, 200);
    assert_eq!(body["status"], "queued");
    assert_eq!(body["channel"], "sms");
    // Another tenant still sees nothing.
    let (code, _) = app.message("globex", &id).await;
    assert_eq!(code, 404);
    app.cleanup().await;
}

#[tokio::test]
async fn send_answers_503_when_the_broker_is_unreachable_and_releases_the_key() {
    let app = TestApp::spawn_with(common::Options {
        vars: vec![("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f".into())],
        worker: false,
    })
    .await;
    let r = app
        .as_tenant(Method::POST, "/v1/send", "acme")
        .header("Idempotency-Key", "during-outage")
        .json(&json!({"channel": "sms", "to": "+14155550100", "content": {"text": "x"}}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 503);
    let problem: Value = r.json().await.expect("json");
    assert_eq!(problem["code"], "dependency_unavailable");
    let idem =
        communication::intake::idempotency::idem_key(&app.namespace, "acme", "during-outage");
    let redis = redis::Client::open("redis://127.0.0.1:6379").expect("client");
    let mut conn = redis
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&idem)
        .query_async(&mut conn)
        .await
        .expect("exists");
    assert_eq!(
        exists, 0,
        "the idempotency claim is released so the caller can retry"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn requests_without_valid_credentials_get_401() {
    let app = TestApp::spawn_with(common::Options {
        worker: false,
        ..Default::default()
    })
    .await;
    let body = json!({"channel": "sms", "to": "+14155550100", "content": {"text": "x"}});
    let none = app
        .http
        .post(app.url("/v1/send"))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(none.status(), 401);
    let problem: Value = none.json().await.expect("json");
    assert_eq!(problem["code"], "unauthorized");
    let wrong = app
        .http
        .post(app.url("/v1/send"))
        .bearer_auth("lsc_not-a-real-key")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 401);
    let providers = app
        .http
        .get(app.url("/v1/providers"))
        .send()
        .await
        .expect("request");
    assert_eq!(providers.status(), 401);
    let no_tenant = app
        .http
        .post(app.url("/v1/send"))
        .bearer_auth(SERVICE_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(no_tenant.status(), 400);
    app.cleanup().await;
}

#[tokio::test]
async fn bad_input_gets_a_4xx_naming_each_field() {
    let app = TestApp::spawn_with(common::Options {
        worker: false,
        ..Default::default()
    })
    .await;
    let cases = vec![
        (
            json!({"channel": "fax", "to": "x", "content": {"text": "x"}}),
            vec!["channel"],
        ),
        (
            json!({"channel": "sms", "to": "14155550100", "content": {"text": "x"}}),
            vec!["to"],
        ),
        (
            json!({"channel": "email", "to": "ada@example.com", "content": {"text": "x"}}),
            vec!["content.subject"],
        ),
        (
            json!({"channel": "email", "to": "ada@", "content": {"subject": "s"}}),
            vec!["to", "content"],
        ),
        (
            json!({"channel": "sms", "to": "+14155550100", "content": {}}),
            vec!["content.text"],
        ),
        (
            json!({"channel": "sms", "to": "+14155550100", "content": {"text": "x"}, "ttl_seconds": 0}),
            vec!["ttl_seconds"],
        ),
        (
            json!({"channel": "sms", "to": "+14155550100", "content": {"text": "x"}, "contnet": 1}),
            vec!["contnet"],
        ),
        (
            json!({"channel": "sms", "to": "+14155550100", "content": {"text": "x"}, "provider_id": "nope"}),
            vec!["provider_id"],
        ),
        (json!({"to": "+14155550100"}), vec!["channel", "content"]),
    ];
    for (body, fields) in cases {
        let r = app.send("acme", body.clone()).await;
        assert_eq!(r.status(), 422, "{body}");
        let problem: Value = r.json().await.expect("json");
        let named: Vec<&str> = problem["errors"]
            .as_array()
            .expect("errors list")
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        for f in fields {
            assert!(named.contains(&f), "{f} not named for {body}: {problem}");
        }
    }
    let not_json = app
        .as_tenant(Method::POST, "/v1/send", "acme")
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .expect("request");
    assert_eq!(not_json.status(), 400);
    let huge = "x".repeat(2 * 1024 * 1024);
    let too_big = app
        .send(
            "acme",
            json!({"channel": "sms", "to": "+14155550100", "content": {"text": huge}}),
        )
        .await;
    assert_eq!(too_big.status(), 413);
    let long_sms = "x".repeat(1601);
    let r = app
        .send(
            "acme",
            json!({"channel": "sms", "to": "+14155550100", "content": {"text": long_sms}}),
        )
        .await;
    assert_eq!(r.status(), 422);
    app.cleanup().await;
}

#[tokio::test]
async fn messages_can_be_listed_with_filters_and_a_cursor() {
    let app = TestApp::spawn().await;
    app.system_provider("acme", "sms", "console", "deliver", 10)
        .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.send_sms("acme", &format!("n{i}")).await);
    }
    for id in &ids {
        app.wait_for_status("acme", id, &["sent"]).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/messages?limit=2&status=sent&channel=sms".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: Value = app
            .as_tenant(Method::GET, &path, "acme")
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        for item in page["items"].as_array().expect("items") {
            seen.push(item["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, no gaps or repeats");
    let failed: Value = app
        .as_tenant(Method::GET, "/v1/messages?status=failed", "acme")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(failed["items"].as_array().map(|a| a.len()), Some(0));
    let bad = app
        .as_tenant(Method::GET, "/v1/messages?status=lost", "acme")
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), 400);
    app.cleanup().await;
}

#[tokio::test]
async fn tenant_b_cannot_see_tenant_a_providers_or_messages() {
    let app = TestApp::spawn().await;
    let provider = app
        .system_provider("tenant-a", "sms", "console", "deliver", 10)
        .await;
    let id = app.send_sms("tenant-a", "secret code 999").await;
    app.wait_for_status("tenant-a", &id, &["sent"]).await;
    let (code, _) = app.message("tenant-b", &id).await;
    assert_eq!(code, 404);
    for method in [Method::GET, Method::DELETE] {
        let r = app
            .as_tenant(method, &format!("/v1/providers/{provider}"), "tenant-b")
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 404);
    }
    let r = app
        .as_tenant(
            Method::PATCH,
            &format!("/v1/providers/{provider}"),
            "tenant-b",
        )
        .json(&json!({"enabled": false}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    let list: Value = app
        .as_tenant(Method::GET, "/v1/providers", "tenant-b")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(list["items"].as_array().map(|a| a.len()), Some(0));
    let msgs: Value = app
        .as_tenant(Method::GET, "/v1/messages", "tenant-b")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(msgs["items"].as_array().map(|a| a.len()), Some(0));
    // Tenant B's own send cannot pin tenant A's provider.
    let r = app
        .send(
            "tenant-b",
            json!({"channel": "sms", "to": "+14155550100", "content": {"text": "x"}, "provider_id": provider}),
        )
        .await;
    let body: Value = r.json().await.expect("json");
    let b_id = body["id"].as_str().expect("id");
    let failed = app.wait_for_status("tenant-b", b_id, &["failed"]).await;
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("not an enabled sms provider")
    );
    app.cleanup().await;
}

#[tokio::test]
async fn tenant_api_keys_authenticate_and_act_only_for_their_tenant() {
    let app = TestApp::spawn().await;
    let created = app
        .http
        .post(app.url("/v1/api-keys"))
        .bearer_auth(SERVICE_TOKEN)
        .json(&json!({"tenant_id": "acme", "name": "checkout"}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("json");
    let key = created["key"].as_str().expect("key").to_owned();
    let stored: Vec<u8> = sqlx::query_scalar("SELECT key_hash FROM api_keys")
        .fetch_one(&app.pool)
        .await
        .expect("row");
    assert_ne!(stored, key.as_bytes(), "only a hash is stored");
    let r = app
        .http
        .post(app.url("/v1/providers"))
        .bearer_auth(&key)
        .json(&json!({"name": "console", "channel": "sms", "kind": "system", "config": {}}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 201);
    let r = app
        .http
        .post(app.url("/v1/send"))
        .bearer_auth(&key)
        .json(&json!({"channel": "sms", "to": "+14155550100", "content": {"text": "x"}}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.wait_for_status("acme", &id, &["sent"]).await;
    let other = app
        .http
        .get(app.url(&format!("/v1/messages/{id}")))
        .bearer_auth(&key)
        .header("X-Tenant-Id", "globex")
        .send()
        .await
        .expect("request");
    assert_eq!(other.status(), 403);
    let by_key = app
        .http
        .post(app.url("/v1/api-keys"))
        .bearer_auth(&key)
        .json(&json!({"tenant_id": "globex"}))
        .send()
        .await
        .expect("request");
    assert_eq!(by_key.status(), 403);
    app.cleanup().await;
}

#[tokio::test]
async fn health_and_readiness_report_the_dependencies() {
    let app = TestApp::spawn_with(common::Options {
        worker: false,
        ..Default::default()
    })
    .await;
    let h = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("request");
    assert_eq!(h.status(), 200);
    let r = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["checks"]["postgres"], "ok");
    assert_eq!(body["checks"]["redis"], "ok");
    assert_eq!(body["checks"]["rabbitmq"], "ok");
    app.cleanup().await;

    let down = TestApp::spawn_with(common::Options {
        vars: vec![("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f".into())],
        worker: false,
    })
    .await;
    let r = down
        .http
        .get(down.url("/readyz"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["checks"]["rabbitmq"], "unavailable");
    down.cleanup().await;
}

#[tokio::test]
async fn a_failing_test_still_removes_its_database_and_queues() {
    use std::sync::{Arc, Mutex};
    let made: Arc<Mutex<Option<(String, Topology)>>> = Arc::default();
    let slot = made.clone();
    let failing = tokio::spawn(async move {
        let app = TestApp::spawn().await;
        app.system_provider("acme", "sms", "console", "deliver", 1)
            .await;
        // Delivered: the worker has declared every queue.
        let id = app.send_sms("acme", "x").await;
        app.wait_for_status("acme", &id, &["sent"]).await;
        if let Ok(mut slot) = slot.lock() {
            *slot = Some((app.db_name.clone(), app.topology()));
        }
        panic!("this test fails on purpose, before its cleanup");
    });
    let outcome = failing.await;
    assert!(outcome.is_err_and(|e| e.is_panic()));
    let (db_name, topology) = made
        .lock()
        .ok()
        .and_then(|mut m| m.take())
        .expect("the failing test got as far as its panic");

    let admin = PgPool::connect(common::PG_ADMIN).await.expect("postgres");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&db_name)
            .fetch_one(&admin)
            .await
            .expect("query");
    assert!(!exists, "database {db_name} was left behind");
    admin.close().await;

    let conn = lapin::Connection::connect(common::AMQP, Default::default())
        .await
        .expect("rabbitmq");
    for name in topology.queues() {
        // A passive declare fails (and closes its channel) when the queue does not exist.
        let ch = conn.create_channel().await.expect("channel");
        let declared = ch
            .queue_declare(
                name.clone().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await;
        assert!(declared.is_err(), "queue {name} was left behind");
    }
    let _ = conn.close(200, "done".into()).await;
}
