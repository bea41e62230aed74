//! Provider secrets: sealed at rest, masked in every response, absent from every log line.
//! The test binary captures all logs of the process at DEBUG (`log_capture`).

use crate::common;

use common::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

const TOKEN: &str = "twilio-auth-token-SECRET-9f8e7d6c";
const RESEND_KEY: &str = "re_live_SECRET_1234567890abcdef";
const OTP: &str = "OTP-739215";

#[tokio::test]
async fn provider_secrets_and_message_bodies_never_appear_in_responses_logs_or_plaintext_columns() {
    crate::log_capture::install();
    let app = TestApp::spawn().await;
    let twilio = app
        .create_provider(
            "acme",
            json!({"name": "twilio", "channel": "sms", "kind": "twilio", "priority": 5,
                   "config": {"account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": TOKEN, "from": "+15005550006"}}),
        )
        .await;
    assert_eq!(
        twilio["config"]["auth_token"],
        format!("****{}", &TOKEN[TOKEN.len() - 4..])
    );
    assert_eq!(
        twilio["config"]["account_sid"],
        "AC0123456789abcdef0123456789abcdef"
    );
    let resend = app
        .create_provider(
            "acme",
            json!({"name": "resend", "channel": "email", "kind": "resend",
                   "config": {"api_key": RESEND_KEY, "from": "Acme <no-reply@acme.test>"}}),
        )
        .await;
    let id = resend["id"].as_str().expect("id");
    let mut bodies = vec![twilio.to_string(), resend.to_string()];
    for path in ["/v1/providers".to_string(), format!("/v1/providers/{id}")] {
        let r = app
            .as_tenant(Method::GET, &path, "acme")
            .send()
            .await
            .expect("request");
        bodies.push(r.text().await.expect("text"));
    }
    let patched = app
        .as_tenant(Method::PATCH, &format!("/v1/providers/{id}"), "acme")
        .json(&json!({"priority": 3, "config": {"from": "billing@acme.test"}}))
        .send()
        .await
        .expect("request");
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.expect("json");
    assert_eq!(patched["config"]["from"], "billing@acme.test");
    assert_eq!(patched["config"]["api_key"], "****cdef");
    bodies.push(patched.to_string());
    let bad = app
        .as_tenant(Method::POST, "/v1/providers", "acme")
        .json(&json!({"name": "x", "channel": "sms", "kind": "twilio", "config": {"auth_token": TOKEN}}))
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), 422);
    bodies.push(bad.text().await.expect("text"));

    // A message whose body is a one-time code.
    app.system_provider("acme", "sms", "console", "deliver", 1)
        .await;
    let mid = app.send_sms("acme", OTP).await;
    let message = app.wait_for_status("acme", &mid, &["sent"]).await;
    bodies.push(message.to_string());

    for body in &bodies {
        assert!(
            !body.contains(TOKEN),
            "auth token leaked in a response: {body}"
        );
        assert!(
            !body.contains(RESEND_KEY),
            "API key leaked in a response: {body}"
        );
        assert!(!body.contains(OTP), "message body leaked in a response");
    }
    // The whole provider table as text holds no secret in clear.
    let dump: Vec<String> =
        sqlx::query_scalar("SELECT row_to_json(p)::text FROM provider_configs p")
            .fetch_all(&app.pool)
            .await
            .expect("dump");
    for row in &dump {
        assert!(
            !row.contains(TOKEN) && !row.contains(RESEND_KEY),
            "secret in plaintext: {row}"
        );
    }
    // PATCH kept the secret: it still decrypts to the original value.
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT secrets FROM provider_configs WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    let plain = app
        .config
        .keyring
        .decrypt(
            &sealed,
            &communication::crypto::provider_aad(Some("acme"), id.parse().expect("uuid")),
        )
        .expect("decrypts");
    assert!(String::from_utf8_lossy(&plain).contains(RESEND_KEY));

    let captured = crate::log_capture::text();
    assert!(captured.contains("provider created"), "logs were captured");
    assert!(!captured.contains(TOKEN), "auth token leaked in logs");
    assert!(!captured.contains(RESEND_KEY), "API key leaked in logs");
    assert!(!captured.contains(OTP), "message body leaked in logs");
    assert!(
        !captured.contains(common::SERVICE_TOKEN),
        "service token leaked in logs"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn keys_rotate_re_encrypts_every_secret_under_the_new_key() {
    let app = TestApp::spawn_with(common::Options {
        worker: false,
        ..Default::default()
    })
    .await;
    for i in 0..3 {
        app.create_provider(
            &format!("t{i}"),
            json!({"name": "resend", "channel": "email", "kind": "resend",
                   "config": {"api_key": format!("re_key_number_{i}_abcdef"), "from": "a@b.test"}}),
        )
        .await;
    }
    let old_key = app.config.keyring.clone();
    let old_b64_ring = old_key.active_key_id();
    // New active key, the old one still known as previous.
    let new = communication::crypto::generate_key_base64();

    let old_b64: String = app.config_secret();
    let ring = communication::crypto::Keyring::from_base64(&new, &[old_b64]).expect("ring");
    let report = communication::rotation::rotate(&app.pool, &ring)
        .await
        .expect("rotate");
    assert_eq!(report.rotated, 3);
    let ids: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT DISTINCT key_id, tenant_id FROM provider_configs")
            .fetch_all(&app.pool)
            .await
            .expect("rows");
    assert!(ids.iter().all(|(k, _)| *k == ring.active_key_id()));
    assert_ne!(ring.active_key_id(), old_b64_ring);
    // Every row opens under the new ring alone.
    let only_new = communication::crypto::Keyring::from_base64(&new, &[]).expect("ring");
    let rows: Vec<(uuid::Uuid, Option<String>, Vec<u8>)> =
        sqlx::query_as("SELECT id, tenant_id, secrets FROM provider_configs")
            .fetch_all(&app.pool)
            .await
            .expect("rows");
    for (id, tenant, blob) in rows {
        let aad = communication::crypto::provider_aad(tenant.as_deref(), id);
        assert!(only_new.decrypt(&blob, &aad).is_ok());
    }
    let again = communication::rotation::rotate(&app.pool, &ring)
        .await
        .expect("rotate");
    assert_eq!(again.rotated, 0, "a second run has nothing to do");
    app.cleanup().await;
}
