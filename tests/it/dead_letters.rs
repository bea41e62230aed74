//! Dead letters: exhaustion → `failed` + a dead letter (row and `{ns}.dead` message), then
//! inspection and replay through the operator endpoint and the `communication dlq` command.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{SERVICE_TOKEN, TestApp, envelope};
use communication::dlq::{self, ReplayOutcome};
use communication::queue::Publisher;
use communication::store::dead_letters::{self as store, ReplayClaim};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

/// A request as the operator (service token), for one tenant or for all.
fn operator(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    tenant: Option<&str>,
) -> reqwest::RequestBuilder {
    let r = app
        .http
        .request(method, app.url(path))
        .bearer_auth(SERVICE_TOKEN);
    match tenant {
        Some(t) => r.header("X-Tenant-Id", t),
        None => r,
    }
}

async fn list(app: &TestApp, query: &str, tenant: Option<&str>) -> Value {
    let r = operator(
        app,
        reqwest::Method::GET,
        &format!("/v1/dead-letters{query}"),
        tenant,
    )
    .send()
    .await
    .expect("request");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

async fn replay(app: &TestApp, id: i64, tenant: Option<&str>) -> (u16, Value) {
    let r = operator(
        app,
        reqwest::Method::POST,
        &format!("/v1/dead-letters/{id}/replay"),
        tenant,
    )
    .send()
    .await
    .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The dead letter of a message (polls: it is committed with the `failed` status, but an
/// invalid envelope has no message to wait for).
async fn dead_letter_of(app: &TestApp, message_id: &str) -> Value {
    for _ in 0..200 {
        let page = list(app, "?limit=200", None).await;
        if let Some(dl) = page["items"]
            .as_array()
            .and_then(|items| items.iter().find(|d| d["message_id"] == message_id))
        {
            return dl.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no dead letter for message {message_id}");
}

async fn wait_for_dead_queue(app: &TestApp, count: usize) -> Vec<(Vec<u8>, Option<String>)> {
    let mut dead = Vec::new();
    for _ in 0..100 {
        dead.extend(app.drain_dead().await);
        if dead.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    dead
}

async fn set_behavior(app: &TestApp, tenant: &str, provider: &str, behavior: &str) {
    let r = app
        .as_tenant(
            reqwest::Method::PATCH,
            &format!("/v1/providers/{provider}"),
            tenant,
        )
        .json(&json!({"config": {"behavior": behavior}}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "patch provider: {:?}", r.text().await);
}

#[tokio::test]
async fn an_exhausted_message_is_dead_lettered_and_a_replay_delivers_it_once() {
    let app = TestApp::spawn().await;
    let provider = app
        .system_provider("acme", "sms", "only", "fail_permanent", 1)
        .await;
    let id = app.send_sms("acme", "Your code is 481516").await;
    let failed = app.wait_for_status("acme", &id, &["failed"]).await;
    assert_eq!(
        app.event_types(&failed).await,
        vec!["accepted", "attempt", "failed", "dead_lettered"]
    );

    // The broker-side copy, with the reason.
    let dead = wait_for_dead_queue(&app, 1).await;
    assert_eq!(dead.len(), 1);
    let body: Value = serde_json::from_slice(&dead[0].0).expect("envelope");
    assert_eq!(body["id"], id.as_str());
    assert!(dead[0].1.is_some());

    // The row, listed without the content.
    let r = operator(&app, reqwest::Method::GET, "/v1/dead-letters", Some("acme"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    assert!(!text.contains("481516"), "the body is never listed");
    let page: Value = serde_json::from_str(&text).expect("json");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    let dl = &items[0];
    assert_eq!(dl["message_id"], id.as_str());
    assert_eq!(dl["tenant_id"], "acme");
    assert_eq!(dl["channel"], "sms");
    assert_eq!(dl["kind"], "failed");
    assert_eq!(dl["replayable"], true);
    assert_eq!(dl["replayed"], false);
    assert_eq!(dl["reason"], failed["last_error"]);
    let dl_id = dl["id"].as_i64().expect("id");

    set_behavior(&app, "acme", &provider, "deliver").await;
    let (status, body) = replay(&app, dl_id, None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["outcome"], "replayed");
    assert_eq!(body["message_id"], id.as_str());
    assert_eq!(body["status"], "queued");

    let sent = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(
        app.event_types(&sent).await,
        vec![
            "accepted",
            "attempt",
            "failed",
            "dead_lettered",
            "replayed",
            "attempt",
            "sent"
        ]
    );
    assert_eq!(sent["events"][4]["detail"]["dead_letter_id"], dl_id);

    // Once sent, it is never replayed again.
    let (status, body) = replay(&app, dl_id, None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "already_replayed");
    assert!(body["detail"].as_str().unwrap_or("").contains("sent"));
    let listed = list(&app, "", Some("acme")).await;
    assert_eq!(listed["items"][0]["replayed"], true);
    assert_eq!(listed["items"][0]["replayed_by"], "api");
    assert!(
        app.drain_dead().await.is_empty(),
        "nothing new was dead-lettered"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn two_concurrent_replays_of_one_dead_letter_send_the_message_once() {
    let app = TestApp::spawn().await;
    let id = app.send_sms("acme", "x").await;
    app.wait_for_status("acme", &id, &["failed"]).await;
    let dl_id = dead_letter_of(&app, &id).await["id"].as_i64().expect("id");
    app.system_provider("acme", "sms", "console", "deliver", 1)
        .await;
    let (a, b) = tokio::join!(
        replay(&app, dl_id, Some("acme")),
        replay(&app, dl_id, Some("acme"))
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [202, 409], "{a:?} {b:?}");
    let sent = app.wait_for_status("acme", &id, &["sent"]).await;
    let types = app.event_types(&sent).await;
    assert_eq!(types.iter().filter(|t| *t == "replayed").count(), 1);
    assert_eq!(types.iter().filter(|t| *t == "sent").count(), 1);
    app.cleanup().await;
}

#[tokio::test]
async fn a_replayed_message_past_its_ttl_expires_instead_of_being_sent() {
    let app = TestApp::spawn().await;
    let id = Uuid::new_v4();
    let mut env = envelope(
        "acme",
        id,
        "sms",
        "+14155550100",
        json!({"text": "code 1234"}),
    );
    let created = chrono::Utc::now();
    env["created_at"] = json!(created);
    env["ttl_seconds"] = json!(5);
    app.publish_raw("sms", &serde_json::to_vec(&env).expect("json"))
        .await;
    // No provider: it fails at once, within its TTL.
    app.wait_for_status("acme", &id.to_string(), &["failed"])
        .await;
    let dl_id = dead_letter_of(&app, &id.to_string()).await["id"]
        .as_i64()
        .expect("id");
    app.system_provider("acme", "sms", "console", "deliver", 1)
        .await;
    // Let the TTL pass: the point of the test is a replay after it.
    let expires = created + chrono::Duration::milliseconds(5100);
    if let Ok(left) = (expires - chrono::Utc::now()).to_std() {
        tokio::time::sleep(left).await;
    }
    let (status, body) = replay(&app, dl_id, Some("acme")).await;
    assert_eq!(status, 202, "{body}");
    let expired = app
        .wait_for_status("acme", &id.to_string(), &["expired", "sent"])
        .await;
    assert_eq!(expired["status"], "expired");
    let types = app.event_types(&expired).await;
    assert_eq!(types[types.len() - 2..], ["replayed", "expired"]);
    let (status, body) = replay(&app, dl_id, Some("acme")).await;
    assert_eq!(status, 409);
    assert!(body["detail"].as_str().unwrap_or("").contains("expired"));
    app.cleanup().await;
}

#[tokio::test]
async fn dead_letters_are_for_the_service_token_only() {
    let app = TestApp::spawn().await;
    let created = app
        .http
        .post(app.url("/v1/api-keys"))
        .bearer_auth(SERVICE_TOKEN)
        .json(&json!({"tenant_id": "acme"}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201);
    let key = created.json::<Value>().await.expect("json")["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let id = app.send_sms("acme", "x").await;
    app.wait_for_status("acme", &id, &["failed"]).await;
    let dl_id = dead_letter_of(&app, &id).await["id"].as_i64().expect("id");

    let r = app
        .http
        .get(app.url("/v1/dead-letters"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.expect("json")["code"], "forbidden");
    for path in [
        format!("/v1/dead-letters/{dl_id}/replay"),
        "/v1/dead-letters/replay".to_owned(),
    ] {
        let r = app
            .http
            .post(app.url(&path))
            .bearer_auth(&key)
            .json(&json!({"all": true}))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 403, "{path}");
    }
    let r = app
        .http
        .get(app.url("/v1/dead-letters"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    // The refused replays changed nothing.
    let (_, body) = app.message("acme", &id).await;
    assert_eq!(body["status"], "failed");
    app.cleanup().await;
}

#[tokio::test]
async fn listing_filters_by_tenant_and_pages_and_x_tenant_id_scopes_replay() {
    let app = TestApp::spawn().await;
    // No providers at all: every send fails and is dead-lettered.
    let acme = app.send_sms("acme", "x").await;
    let globex = app.send_sms("globex", "x").await;
    let globex2 = app.send_sms("globex", "y").await;
    for (tenant, id) in [("acme", &acme), ("globex", &globex), ("globex", &globex2)] {
        app.wait_for_status(tenant, id, &["failed"]).await;
    }
    let all = list(&app, "", None).await;
    assert_eq!(all["items"].as_array().expect("items").len(), 3);

    let only_acme = list(&app, "?tenant=acme", None).await;
    let items = only_acme["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["message_id"], acme.as_str());
    let acme_dl = items[0]["id"].as_i64().expect("id");

    let scoped = list(&app, "", Some("globex")).await;
    let items = scoped["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|d| d["tenant_id"] == "globex"));

    // Pages of one, newest first, through the cursor.
    let first = list(&app, "?limit=1", Some("globex")).await;
    assert_eq!(first["items"][0], items[0]);
    let cursor = first["next_cursor"].as_str().expect("cursor");
    let second = list(&app, &format!("?limit=1&cursor={cursor}"), Some("globex")).await;
    assert_eq!(second["items"][0], items[1]);
    assert!(second["next_cursor"].is_null());
    let mut paged = [
        first["items"][0]["message_id"].as_str().unwrap_or(""),
        second["items"][0]["message_id"].as_str().unwrap_or(""),
    ];
    paged.sort();
    let mut wanted = [globex.as_str(), globex2.as_str()];
    wanted.sort();
    assert_eq!(paged, wanted);

    // A conflicting filter, an unknown filter.
    for query in ["?tenant=acme", "?colour=red"] {
        let r = operator(
            &app,
            reqwest::Method::GET,
            &format!("/v1/dead-letters{query}"),
            Some("globex"),
        )
        .send()
        .await
        .expect("request");
        assert_eq!(r.status(), 400, "{query}");
    }

    // Another tenant's dead letter is not found through X-Tenant-Id.
    let (status, body) = replay(&app, acme_dl, Some("globex")).await;
    assert_eq!(status, 404, "{body}");
    let (_, msg) = app.message("acme", &acme).await;
    assert_eq!(msg["status"], "failed");

    // Bulk: all of globex's, with a provider now.
    app.system_provider("globex", "sms", "console", "deliver", 1)
        .await;
    let r = operator(
        &app,
        reqwest::Method::POST,
        "/v1/dead-letters/replay",
        Some("globex"),
    )
    .json(&json!({"all": true}))
    .send()
    .await
    .expect("request");
    assert_eq!(r.status(), 200);
    let bulk: Value = r.json().await.expect("json");
    assert_eq!(bulk["replayed"], 2, "{bulk}");
    assert_eq!(bulk["not_replayed"], 0);
    for id in [&globex, &globex2] {
        app.wait_for_status("globex", id, &["sent"]).await;
    }
    let (_, msg) = app.message("acme", &acme).await;
    assert_eq!(msg["status"], "failed", "acme's was not replayed");
    let pending = list(&app, "?replayed=false", None).await;
    let items = pending["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["tenant_id"], "acme");
    app.cleanup().await;
}

#[tokio::test]
async fn an_invalid_envelopes_dead_letter_is_listed_and_its_replay_is_refused() {
    let app = TestApp::spawn().await;
    let bad_id = Uuid::new_v4();
    let bad = envelope("acme", bad_id, "sms", "not-a-number", json!({"text": "hi"}));
    app.publish_raw("sms", &serde_json::to_vec(&bad).expect("json"))
        .await;
    app.publish_raw("sms", b"{this is not json").await;

    let dl = dead_letter_of(&app, &bad_id.to_string()).await;
    assert_eq!(dl["kind"], "invalid");
    assert_eq!(dl["replayable"], false);
    assert_eq!(dl["tenant_id"], "acme");
    // Delivered (and refused) from the normal lane, where the router sent it.
    assert_eq!(dl["routing_key"], "sms.normal");
    assert!(dl["reason"].as_str().unwrap_or("").starts_with("to: "));
    let (status, body) = replay(&app, dl["id"].as_i64().expect("id"), None).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "not_replayable");
    let detail = body["detail"].as_str().unwrap_or("");
    assert!(detail.contains("rejected as invalid"), "{detail}");
    assert!(detail.contains("to: "), "{detail}");

    // The one with no identity at all is listed too, and refused the same way.
    let mut garbage = None;
    for _ in 0..200 {
        let page = list(&app, "", None).await;
        garbage = page["items"]
            .as_array()
            .and_then(|items| items.iter().find(|d| d["message_id"].is_null()).cloned());
        if garbage.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let garbage = garbage.expect("the non-JSON envelope's dead letter");
    assert!(garbage["tenant_id"].is_null());
    let (status, body) = replay(&app, garbage["id"].as_i64().expect("id"), None).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "not_replayable");
    let (status, _) = replay(&app, 999_999, None).await;
    assert_eq!(status, 404);
    app.cleanup().await;
}

/// Runs `communication dlq …` against the test's database and namespace.
async fn dlq(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_communication"))
        .arg("dlq")
        .args(args)
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:5432/{}", app.db_name),
        )
        .env("AMQP_URL", common::AMQP)
        .env("COMMUNICATION_NAMESPACE", &app.namespace)
        .env("ENCRYPTION_SECRET", app.config_secret())
        // The same delay tiers as the app, so declaring the topology adds no queue.
        .env("COMMUNICATION_RETRY_BASE_MS", "100")
        .env("COMMUNICATION_RETRY_MAX_MS", "400")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run the communication binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_dlq_command_lists_and_replays_dead_letters() {
    let app = TestApp::spawn().await;
    let id = app.send_sms("acme", "Your code is 271828").await;
    let other = app.send_sms("globex", "x").await;
    app.wait_for_status("acme", &id, &["failed"]).await;
    app.wait_for_status("globex", &other, &["failed"]).await;

    let (ok, out, err) = dlq(&app, &["list", "--tenant", "acme"]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&id), "{out}");
    assert!(!out.contains(&other), "filtered by tenant: {out}");
    assert!(out.contains("no enabled sms provider"), "{out}");
    assert!(!out.contains("271828"), "never the content: {out}");
    let (ok, out, err) = dlq(&app, &["list", "--json"]).await;
    assert!(ok, "{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).expect("json output");
    assert_eq!(rows.len(), 2);
    let row = rows
        .iter()
        .find(|r| r["message_id"] == id.as_str())
        .expect("acme's row");
    assert_eq!(row["replayable"], true);
    assert!(row["replayed_at"].is_null());
    assert!(!out.contains("271828"));
    let dl_id = row["id"].as_i64().expect("id").to_string();

    app.system_provider("acme", "sms", "console", "deliver", 1)
        .await;
    let (ok, out, err) = dlq(&app, &["replay", &dl_id]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("replayed"), "{out}");
    assert!(out.contains(&id), "{out}");
    let sent = app.wait_for_status("acme", &id, &["sent"]).await;
    let types = app.event_types(&sent).await;
    assert_eq!(types[types.len() - 3..], ["replayed", "attempt", "sent"]);

    // Again: refused, with the reason and a failing exit status.
    let (ok, out, _) = dlq(&app, &["replay", &dl_id]).await;
    assert!(!ok);
    assert!(
        out.contains("already replayed; the message is now sent"),
        "{out}"
    );

    // --all for acme has nothing left; globex's is untouched.
    let (ok, out, err) = dlq(&app, &["replay", "--all", "--tenant", "acme"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("0 replayed, 0 not"), "{out}");
    let (_, msg) = app.message("globex", &other).await;
    assert_eq!(msg["status"], "failed");

    let (ok, out, err) = dlq(&app, &["list", "--json", "--tenant", "acme"]).await;
    assert!(ok, "{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).expect("json output");
    assert_eq!(rows[0]["replayed_by"], "cli");
    assert!(rows[0]["replayed_at"].is_string());

    // The broker-side copies can be purged; the table stays.
    let (ok, out, err) = dlq(&app, &["purge-queue"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("removed 2 messages"), "{out}");
    assert!(app.drain_dead().await.is_empty());
    let (ok, out, _) = dlq(&app, &["list", "--json"]).await;
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&out)
            .expect("json")
            .len(),
        2
    );
    app.cleanup().await;
}

fn publisher(app: &TestApp, url: &str) -> Arc<Publisher> {
    Arc::new(Publisher::new(
        SecretString::from(url.to_owned()),
        "test-dlq",
        app.topology(),
        1,
    ))
}

#[tokio::test]
async fn a_replay_the_broker_refuses_changes_nothing_and_can_be_run_again() {
    let app = TestApp::spawn().await;
    let id = app.send_sms("acme", "x").await;
    app.wait_for_status("acme", &id, &["failed"]).await;
    let dl_id = dead_letter_of(&app, &id).await["id"].as_i64().expect("id");
    app.system_provider("acme", "sms", "console", "deliver", 1)
        .await;
    // Nothing listens on port 1: the publish fails, the claim is undone.
    let down = publisher(&app, "amqp://guest:guest@127.0.0.1:1/%2f");
    let outcome = dlq::replay(&app.pool, &app.config.keyring, &down, dl_id, None, "test")
        .await
        .expect("database");
    assert!(
        matches!(outcome, ReplayOutcome::PublishFailed { .. }),
        "{outcome:?}"
    );
    let (_, msg) = app.message("acme", &id).await;
    assert_eq!(msg["status"], "failed");
    let types = app.event_types(&msg).await;
    assert_eq!(types[types.len() - 2..], ["replayed", "failed"]);
    let pending = list(&app, "?replayed=false", None).await;
    assert_eq!(pending["items"][0]["id"], dl_id);

    let up = publisher(&app, common::AMQP);
    let outcome = dlq::replay(&app.pool, &app.config.keyring, &up, dl_id, None, "test")
        .await
        .expect("database");
    assert!(outcome.is_replayed(), "{outcome:?}");
    app.wait_for_status("acme", &id, &["sent"]).await;
    up.close().await;
    app.cleanup().await;
}

#[tokio::test]
async fn an_interrupted_replay_is_resumed_or_completed_but_never_sent_twice() {
    let app = TestApp::spawn().await;
    let up = publisher(&app, common::AMQP);
    let stale = chrono::Duration::seconds(60);
    let age_claim = |dl_id: i64| {
        let pool = app.pool.clone();
        async move {
            sqlx::query(
                "UPDATE dead_letters SET replay_started_at = now() - interval '2 minutes' \
                 WHERE id = $1",
            )
            .bind(dl_id)
            .execute(&pool)
            .await
            .expect("age the claim");
        }
    };
    let first = app.send_sms("acme", "x").await;
    let second = app.send_sms("acme", "y").await;
    app.wait_for_status("acme", &first, &["failed"]).await;
    app.wait_for_status("acme", &second, &["failed"]).await;
    app.system_provider("acme", "sms", "console", "deliver", 1)
        .await;

    // A crash after the claim committed, before the publish.
    let dl_first = dead_letter_of(&app, &first).await["id"]
        .as_i64()
        .expect("id");
    let claim = store::claim_replay(
        &app.pool,
        &app.config.keyring,
        dl_first,
        None,
        "crashed",
        stale,
    )
    .await
    .expect("claim");
    assert!(matches!(claim, ReplayClaim::Ready { resumed: false, .. }));
    let (_, msg) = app.message("acme", &first).await;
    assert_eq!(msg["status"], "queued", "claimed, nothing published");
    // Too early to tell from a replay still running: refused.
    let (status, body) = replay(&app, dl_first, None).await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "replay_in_progress");
    // Later, it is resumed and delivered.
    age_claim(dl_first).await;
    let outcome = dlq::replay(&app.pool, &app.config.keyring, &up, dl_first, None, "test")
        .await
        .expect("database");
    assert_eq!(
        outcome,
        ReplayOutcome::Replayed {
            message_id: first.parse().expect("uuid"),
            resumed: true
        }
    );
    app.wait_for_status("acme", &first, &["sent"]).await;

    // A crash after the publish, before the row was marked.
    let dl_second = dead_letter_of(&app, &second).await["id"]
        .as_i64()
        .expect("id");
    let ReplayClaim::Ready {
        routing_key, body, ..
    } = store::claim_replay(
        &app.pool,
        &app.config.keyring,
        dl_second,
        None,
        "crashed",
        stale,
    )
    .await
    .expect("claim")
    else {
        panic!("the second dead letter could not be claimed");
    };
    up.publish(
        &app.topology().send_exchange(),
        &routing_key,
        &body,
        Default::default(),
        None,
    )
    .await
    .expect("publish");
    app.wait_for_status("acme", &second, &["sent"]).await;
    age_claim(dl_second).await;
    let outcome = dlq::replay(&app.pool, &app.config.keyring, &up, dl_second, None, "test")
        .await
        .expect("database");
    assert_eq!(
        outcome,
        ReplayOutcome::AlreadyReplayed {
            status: Some("sent".into())
        }
    );
    let (_, msg) = app.message("acme", &second).await;
    let types = app.event_types(&msg).await;
    assert_eq!(types.iter().filter(|t| *t == "sent").count(), 1);
    assert_eq!(types.iter().filter(|t| *t == "attempt").count(), 1);
    let done = list(&app, "?replayed=true", None).await;
    assert_eq!(done["items"].as_array().expect("items").len(), 2);
    up.close().await;
    app.cleanup().await;
}

/// The stored forms of a dead letter's body: (clear body, sealed body, key id).
async fn stored_body(
    app: &TestApp,
    dl_id: i64,
) -> (Option<Vec<u8>>, Option<Vec<u8>>, Option<String>) {
    sqlx::query_as("SELECT body, sealed_body, body_key_id FROM dead_letters WHERE id = $1")
        .bind(dl_id)
        .fetch_one(&app.pool)
        .await
        .expect("dead letter row")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_dead_letter_body_is_stored_sealed_for_its_row_and_replay_opens_it() {
    let app = TestApp::spawn().await;
    let provider = app
        .system_provider("acme", "sms", "only", "fail_permanent", 1)
        .await;
    let first = app.send_sms("acme", "Your code is 271828").await;
    let second = app.send_sms("acme", "Your code is 314159").await;
    app.wait_for_status("acme", &first, &["failed"]).await;
    app.wait_for_status("acme", &second, &["failed"]).await;
    let dl_first = dead_letter_of(&app, &first).await["id"]
        .as_i64()
        .expect("id");
    let dl_second = dead_letter_of(&app, &second).await["id"]
        .as_i64()
        .expect("id");

    let (clear, sealed, key_id) = stored_body(&app, dl_first).await;
    assert_eq!(clear, None, "no clear copy is kept");
    let sealed = sealed.expect("a sealed body");
    assert!(
        !contains(&sealed, b"271828"),
        "the code is not readable at rest"
    );
    assert!(!contains(&sealed, first.as_bytes()), "nor is the envelope");
    assert_eq!(key_id, Some(app.config.keyring.active_key_id()));

    // A sealed body copied onto another row does not open there: not replayable, and the
    // message stays failed.
    sqlx::query("UPDATE dead_letters SET sealed_body = $1 WHERE id = $2")
        .bind(&sealed)
        .bind(dl_second)
        .execute(&app.pool)
        .await
        .expect("copy the blob");
    let (status, body) = replay(&app, dl_second, None).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "not_replayable");
    assert!(!body.to_string().contains("314159"));
    let (_, msg) = app.message("acme", &second).await;
    assert_eq!(msg["status"], "failed");

    // Its own row opens, and the replay delivers the original envelope.
    set_behavior(&app, "acme", &provider, "deliver").await;
    let (status, body) = replay(&app, dl_first, None).await;
    assert_eq!(status, 202, "{body}");
    app.wait_for_status("acme", &first, &["sent"]).await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_clear_body_from_before_sealing_still_replays_and_keys_rotate_seals_it() {
    let app = TestApp::spawn().await;
    let provider = app
        .system_provider("acme", "sms", "only", "fail_permanent", 1)
        .await;
    let id = app.send_sms("acme", "Your code is 161803").await;
    app.wait_for_status("acme", &id, &["failed"]).await;
    let dl_id = dead_letter_of(&app, &id).await["id"].as_i64().expect("id");
    // Rewrite the row as the previous version stored it: the envelope in clear.
    let (_, sealed, _) = stored_body(&app, dl_id).await;
    let envelope = communication::store::dead_letters::SealedBody::open(
        &app.config.keyring,
        dl_id,
        &sealed.expect("sealed"),
    )
    .expect("opens for its row");
    sqlx::query(
        "UPDATE dead_letters SET body = $1, sealed_body = NULL, body_key_id = NULL WHERE id = $2",
    )
    .bind(&envelope)
    .bind(dl_id)
    .execute(&app.pool)
    .await
    .expect("legacy row");
    assert_eq!(list(&app, "", None).await["items"][0]["replayable"], true);

    let report = communication::rotation::rotate(&app.pool, &app.config.keyring)
        .await
        .expect("rotate");
    assert_eq!(report.dead_letters_sealed, 1);
    let (clear, sealed, key_id) = stored_body(&app, dl_id).await;
    assert_eq!(clear, None);
    assert!(!contains(&sealed.expect("sealed"), b"161803"));
    assert_eq!(key_id, Some(app.config.keyring.active_key_id()));
    // Nothing left to do the second time.
    let again = communication::rotation::rotate(&app.pool, &app.config.keyring)
        .await
        .expect("rotate");
    assert_eq!(again.dead_letters_sealed, 0);

    set_behavior(&app, "acme", &provider, "deliver").await;
    let (status, body) = replay(&app, dl_id, None).await;
    assert_eq!(status, 202, "{body}");
    app.wait_for_status("acme", &id, &["sent"]).await;
    app.cleanup().await;
}

#[tokio::test]
async fn keys_rotate_reseals_dead_letter_bodies_under_the_new_key() {
    let app = TestApp::spawn().await;
    app.system_provider("acme", "sms", "only", "fail_permanent", 1)
        .await;
    let id = app.send_sms("acme", "Your code is 141421").await;
    app.wait_for_status("acme", &id, &["failed"]).await;
    let dl_id = dead_letter_of(&app, &id).await["id"].as_i64().expect("id");
    let old = app.config.keyring.clone();
    let rotated = communication::crypto::Keyring::from_base64(
        &communication::crypto::generate_key_base64(),
        std::slice::from_ref(&app.secret),
    )
    .expect("keyring");
    let report = communication::rotation::rotate(&app.pool, &rotated)
        .await
        .expect("rotate");
    assert_eq!(report.dead_letters_sealed, 1);
    let (_, sealed, key_id) = stored_body(&app, dl_id).await;
    let sealed = sealed.expect("sealed");
    assert_eq!(key_id, Some(rotated.active_key_id()));
    let opened = communication::store::dead_letters::SealedBody::open(&rotated, dl_id, &sealed)
        .expect("opens under the new key");
    assert!(contains(&opened, b"141421"));
    assert!(
        communication::store::dead_letters::SealedBody::open(&old, dl_id, &sealed).is_err(),
        "the old key alone no longer opens it"
    );
    app.cleanup().await;
}
