//! Mailgun, Postmark, SendGrid and Vonage through the whole pipeline (their APIs stood in for
//! by wiremock), then their delivery webhooks, verified as each provider documents, moving the
//! messages on: delivered, bounced, and refused when unsigned, wrongly signed or stale.

use crate::{common, matchers};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Options, TestApp};
use hmac::{Hmac, Mac};
use matchers::{basic_auth, post_webhook};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MAILGUN_SIGNING_KEY: &str = "mailgun-webhook-signing-key-0123";

async fn send_email(app: &TestApp, provider_id: &str) -> String {
    app.send_ok(
        "acme",
        json!({"channel": "email", "to": "ada@example.com", "provider_id": provider_id,
               "content": {"subject": "Receipt", "text": "Total: 12 EUR"}}),
    )
    .await
}

async fn post(
    app: &TestApp,
    kind: &str,
    provider_id: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Value) {
    post_webhook(app, kind, provider_id, "application/json", headers, body).await
}

fn mailgun_body(key: &str, timestamp: i64, token: &str, event: Value) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(token.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    serde_json::to_vec(&json!({
        "signature": {"timestamp": timestamp.to_string(), "token": token, "signature": signature},
        "event-data": event,
    }))
    .expect("json")
}

#[tokio::test]
async fn mailgun_webhooks_mark_a_sent_email_delivered_then_bounced() {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with(Options {
        vars: vec![("MAILGUN_BASE_URL", mock.uri())],
        worker: true,
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/v3/mg.acme.test/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "<20261125.77@mg.acme.test>", "message": "Queued. Thank you."})))
        .expect(1)
        .mount(&mock)
        .await;
    let p = app
        .create_provider(
            "acme",
            json!({"name": "mg", "channel": "email", "kind": "mailgun",
                   "config": {"api_key": "key-0123456789", "domain": "mg.acme.test",
                              "from": "shop@acme.test", "webhook_signing_key": MAILGUN_SIGNING_KEY}}),
        )
        .await;
    assert_eq!(p["config"]["webhook_signing_key"], "****0123", "{p}");
    let pid = p["id"].as_str().expect("id").to_owned();
    let id = send_email(&app, &pid).await;
    let sent = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(sent["provider_message_id"], "20261125.77@mg.acme.test");

    let now = chrono::Utc::now().timestamp();
    let event = |name: &str, id: &str| {
        json!({"id": id, "event": name, "severity": "permanent",
               "message": {"headers": {"message-id": "20261125.77@mg.acme.test"}},
               "delivery-status": {"code": 550}})
    };
    // Unsigned, wrongly signed and stale requests change nothing.
    let unsigned =
        serde_json::to_vec(&json!({"event-data": event("delivered", "e0")})).expect("json");
    assert_eq!(post(&app, "mailgun", &pid, &[], &unsigned).await.0, 401);
    let wrong = mailgun_body("another-key", now, "tok-1", event("delivered", "e0"));
    assert_eq!(post(&app, "mailgun", &pid, &[], &wrong).await.0, 401);
    let stale = mailgun_body(
        MAILGUN_SIGNING_KEY,
        now - 3600,
        "tok-2",
        event("delivered", "e0"),
    );
    assert_eq!(post(&app, "mailgun", &pid, &[], &stale).await.0, 400);
    assert_eq!(app.message("acme", &id).await.1["status"], "sent");

    let delivered = mailgun_body(MAILGUN_SIGNING_KEY, now, "tok-3", event("delivered", "e1"));
    let (code, body) = post(&app, "mailgun", &pid, &[], &delivered).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("delivered")),
        "{body}"
    );
    // The same event again is a no-op; a later permanent failure is the truth: bounced.
    assert_eq!(post(&app, "mailgun", &pid, &[], &delivered).await.0, 200);
    let failed = mailgun_body(MAILGUN_SIGNING_KEY, now, "tok-4", event("failed", "e2"));
    let (code, body) = post(&app, "mailgun", &pid, &[], &failed).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("bounced")),
        "{body}"
    );
    let done = app.wait_for_status("acme", &id, &["bounced"]).await;
    let events = app.event_types(&done).await;
    assert_eq!(
        events.iter().filter(|e| *e == "delivered").count(),
        1,
        "{events:?}"
    );
    assert!(events.contains(&"bounced".to_owned()), "{events:?}");
    app.cleanup().await;
}

#[tokio::test]
async fn postmark_webhooks_with_basic_credentials_mark_a_sent_email_delivered() {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with(Options {
        vars: vec![("POSTMARK_BASE_URL", mock.uri())],
        worker: true,
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/email"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "To": "ada@example.com", "SubmittedAt": "2026-11-25T10:00:00Z",
            "MessageID": "pm-msg-77", "ErrorCode": 0, "Message": "OK"})))
        .expect(1)
        .mount(&mock)
        .await;
    let p = app
        .create_provider(
            "acme",
            json!({"name": "pm", "channel": "email", "kind": "postmark",
                   "config": {"server_token": "pm-server-token-0123", "from": "shop@acme.test",
                              "webhook_username": "hooks", "webhook_password": "hook-pass-4567"}}),
        )
        .await;
    assert_eq!(p["config"]["webhook_password"], "****4567", "{p}");
    let pid = p["id"].as_str().expect("id").to_owned();
    let id = send_email(&app, &pid).await;
    app.wait_for_status("acme", &id, &["sent"]).await;

    let record = serde_json::to_vec(&json!({"RecordType": "Delivery", "MessageID": "pm-msg-77",
        "Recipient": "ada@example.com", "DeliveredAt": "2026-11-25T10:00:01Z"}))
    .expect("json");
    let auth = |user: &str, pass: &str| vec![("authorization", basic_auth(user, pass))];
    assert_eq!(post(&app, "postmark", &pid, &[], &record).await.0, 401);
    assert_eq!(
        post(&app, "postmark", &pid, &auth("hooks", "wrong"), &record)
            .await
            .0,
        401
    );
    assert_eq!(app.message("acme", &id).await.1["status"], "sent");
    let (code, body) = post(
        &app,
        "postmark",
        &pid,
        &auth("hooks", "hook-pass-4567"),
        &record,
    )
    .await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("delivered")),
        "{body}"
    );
    let done = app.wait_for_status("acme", &id, &["delivered"]).await;
    assert!(
        app.event_types(&done)
            .await
            .contains(&"delivered".to_owned())
    );
    app.cleanup().await;
}

fn sendgrid_headers(key: &SigningKey, timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    let ts = timestamp.to_string();
    let mut signed = ts.as_bytes().to_vec();
    signed.extend_from_slice(body);
    let signature: Signature = key.sign(&signed);
    vec![
        (
            "X-Twilio-Email-Event-Webhook-Signature",
            B64.encode(signature.to_der().as_bytes()),
        ),
        ("X-Twilio-Email-Event-Webhook-Timestamp", ts),
    ]
}

#[tokio::test]
async fn a_signed_sendgrid_event_batch_moves_two_messages_on() {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with(Options {
        vars: vec![("SENDGRID_BASE_URL", mock.uri())],
        worker: true,
    })
    .await;
    let mut n = 0;
    for sg_id in ["sgA1", "sgB2"] {
        n += 1;
        Mock::given(method("POST"))
            .and(path("/v3/mail/send"))
            .and(wiremock::matchers::body_string_contains(format!(
                "Receipt {n}"
            )))
            .respond_with(ResponseTemplate::new(202).insert_header("X-Message-Id", sg_id))
            .expect(1)
            .mount(&mock)
            .await;
    }
    let key = SigningKey::from_slice(&[42u8; 32]).expect("key");
    let public = B64.encode(
        key.verifying_key()
            .to_public_key_der()
            .expect("der")
            .as_bytes(),
    );
    let p = app
        .create_provider(
            "acme",
            json!({"name": "sg", "channel": "email", "kind": "sendgrid",
                   "config": {"api_key": "SG.test-key-0123456789", "from": "shop@acme.test",
                              "webhook_public_key": public}}),
        )
        .await;
    let pid = p["id"].as_str().expect("id").to_owned();
    let mut ids = vec![];
    for n in 1..=2 {
        let id = app
            .send_ok(
                "acme",
                json!({"channel": "email", "to": "ada@example.com", "provider_id": pid,
                       "content": {"subject": format!("Receipt {n}"), "text": "Total"}}),
            )
            .await;
        app.wait_for_status("acme", &id, &["sent"]).await;
        ids.push(id);
    }

    let body = serde_json::to_vec(&json!([
        {"email": "ada@example.com", "timestamp": 1, "event": "processed",
         "sg_event_id": "ev-0", "sg_message_id": "sgA1.filter0001.1.2.0"},
        {"email": "ada@example.com", "timestamp": 2, "event": "delivered",
         "sg_event_id": "ev-1", "sg_message_id": "sgA1.filter0001.1.2.0"},
        {"email": "ada@example.com", "timestamp": 3, "event": "bounce", "type": "bounce",
         "status": "5.1.1", "sg_event_id": "ev-2", "sg_message_id": "sgB2.filter0002.3.4.0"},
        {"email": "ada@example.com", "timestamp": 4, "event": "open",
         "sg_event_id": "ev-3", "sg_message_id": "sgA1.filter0001.1.2.0"}
    ]))
    .expect("json");
    let now = chrono::Utc::now().timestamp();
    assert_eq!(post(&app, "sendgrid", &pid, &[], &body).await.0, 401);
    let other = SigningKey::from_slice(&[43u8; 32]).expect("key");
    assert_eq!(
        post(
            &app,
            "sendgrid",
            &pid,
            &sendgrid_headers(&other, now, &body),
            &body
        )
        .await
        .0,
        401
    );
    assert_eq!(
        post(
            &app,
            "sendgrid",
            &pid,
            &sendgrid_headers(&key, now - 3600, &body),
            &body
        )
        .await
        .0,
        400
    );
    let mut tampered = body.clone();
    let at = tampered
        .windows(9)
        .position(|w| w == b"delivered")
        .expect("word");
    tampered[at] = b'D';
    assert_eq!(
        post(
            &app,
            "sendgrid",
            &pid,
            &sendgrid_headers(&key, now, &body),
            &tampered
        )
        .await
        .0,
        401
    );
    assert_eq!(app.message("acme", &ids[0]).await.1["status"], "sent");

    let (code, answer) = post(
        &app,
        "sendgrid",
        &pid,
        &sendgrid_headers(&key, now, &body),
        &body,
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    app.wait_for_status("acme", &ids[0], &["delivered"]).await;
    let bounced = app.wait_for_status("acme", &ids[1], &["bounced"]).await;
    let events = app.event_types(&bounced).await;
    assert!(events.contains(&"bounced".to_owned()), "{events:?}");
    app.cleanup().await;
}

fn vonage_signed(secret: &str, params: &[(&str, String)]) -> Vec<(String, String)> {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    // Vonage's documented scheme: sorted `&name=value` pairs, `&`/`=` in values → `_`,
    // HMAC-SHA256 with the signature secret, upper-case hex.
    let mut sorted = owned.clone();
    sorted.sort();
    let mut data = String::new();
    for (k, v) in &sorted {
        data.push_str(&format!("&{k}={}", v.replace(['&', '='], "_")));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(data.as_bytes());
    let mut out = owned;
    out.push(("sig".into(), hex::encode_upper(mac.finalize().into_bytes())));
    out
}

#[tokio::test]
async fn vonage_asks_for_receipts_only_when_signed_and_a_signed_dlr_marks_the_sms_delivered() {
    let vonage = MockServer::start().await;
    let public = "https://comm.example.test";
    let app = TestApp::spawn_with(Options {
        vars: vec![
            ("VONAGE_BASE_URL", vonage.uri()),
            ("COMMUNICATION_PUBLIC_URL", public.into()),
        ],
        worker: true,
    })
    .await;
    let p = app
        .create_provider(
            "acme",
            json!({"name": "vonage", "channel": "sms", "kind": "vonage",
                   "config": {"api_key": "abcd1234", "api_secret": "vonage-secret-99",
                              "from": "AcmeShop", "signature_secret": "vonage-sig-secret-77"}}),
        )
        .await;
    let pid = p["id"].as_str().expect("id").to_owned();
    let callback = format!("{public}/v1/webhooks/vonage/{pid}");
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .and(wiremock::matchers::body_string_contains(format!(
            "callback={}",
            url::form_urlencoded::byte_serialize(callback.as_bytes()).collect::<String>()
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message-count": "1",
            "messages": [{"to": "14155550100", "message-id": "0A00000012345678",
                          "status": "0", "remaining-balance": "3.1", "message-price": "0.03",
                          "network": "12345"}]})))
        .expect(1)
        .mount(&vonage)
        .await;
    let id = app.send_sms("acme", "Your code is 112233").await;
    app.wait_for_status("acme", &id, &["sent"]).await;

    let now = chrono::Utc::now().timestamp();
    let dlr = |status: &str, message_id: &str, ts: i64| {
        vec![
            ("msisdn", "14155550100".to_owned()),
            ("to", "AcmeShop".to_owned()),
            ("network-code", "12345".to_owned()),
            ("messageId", message_id.to_owned()),
            ("status", status.to_owned()),
            ("err-code", "0".to_owned()),
            ("client-ref", id.clone()),
            ("message-timestamp", "2026-11-25 10:00:00".to_owned()),
            ("timestamp", ts.to_string()),
            ("nonce", "6c4a1f1e-4d1b-4b8a-9f0e-2a1b3c4d5e6f".to_owned()),
        ]
    };
    let form = |pairs: Vec<(String, String)>| {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
            .into_bytes()
    };
    let post_form = |body: Vec<u8>| {
        post_webhook(
            &app,
            "vonage",
            &pid,
            "application/x-www-form-urlencoded",
            &[],
            body,
        )
    };
    let unsigned: Vec<(String, String)> = dlr("delivered", "0A00000012345678", now)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(post_form(form(unsigned)).await.0, 401);
    let wrong = vonage_signed("not-the-secret", &dlr("delivered", "0A00000012345678", now));
    assert_eq!(post_form(form(wrong)).await.0, 401);
    let stale = vonage_signed(
        "vonage-sig-secret-77",
        &dlr("delivered", "0A00000012345678", now - 3600),
    );
    assert_eq!(post_form(form(stale)).await.0, 400);
    assert_eq!(app.message("acme", &id).await.1["status"], "sent");

    // The receipt of the second part of a long SMS has its own messageId; `client-ref` finds it.
    let part_two = vonage_signed(
        "vonage-sig-secret-77",
        &dlr("delivered", "0A00000012345679", now),
    );
    let (code, _) = post_form(form(part_two)).await;
    assert_eq!(code, 200);
    let done = app.wait_for_status("acme", &id, &["delivered"]).await;
    assert!(
        app.event_types(&done)
            .await
            .contains(&"delivered".to_owned())
    );
    app.cleanup().await;
}

#[tokio::test]
async fn vonage_without_a_signature_secret_asks_for_no_receipts_and_refuses_them() {
    let vonage = MockServer::start().await;
    let app = TestApp::spawn_with(Options {
        vars: vec![
            ("VONAGE_BASE_URL", vonage.uri()),
            (
                "COMMUNICATION_PUBLIC_URL",
                "https://comm.example.test".into(),
            ),
        ],
        worker: true,
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .and(wiremock::matchers::body_string_contains("callback="))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&vonage)
        .await;
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message-count": "1",
            "messages": [{"to": "14155550100", "message-id": "0A00000099", "status": "0"}]})))
        .expect(1)
        .mount(&vonage)
        .await;
    let p = app
        .create_provider(
            "acme",
            json!({"name": "vonage", "channel": "sms", "kind": "vonage",
                   "config": {"api_key": "abcd1234", "api_secret": "vonage-secret-99", "from": "AcmeShop"}}),
        )
        .await;
    let pid = p["id"].as_str().expect("id").to_owned();
    let id = app.send_sms("acme", "Your code is 445566").await;
    app.wait_for_status("acme", &id, &["sent"]).await;
    let (code, _) = post_webhook(
        &app,
        "vonage",
        &pid,
        "application/x-www-form-urlencoded",
        &[],
        "messageId=0A00000099&status=delivered",
    )
    .await;
    assert_eq!(code, 401);
    assert_eq!(app.message("acme", &id).await.1["status"], "sent");
    app.cleanup().await;
}
