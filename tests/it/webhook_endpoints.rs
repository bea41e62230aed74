//! Webhook endpoints over HTTP: the secret shown once, per-tenant scoping, validation, the
//! private-address policy, rotation.

use crate::common;

use common::{Options, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

async fn call(
    app: &TestApp,
    m: Method,
    path: &str,
    tenant: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.as_tenant(m, path, tenant);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn an_endpoint_is_created_with_its_secret_once_then_read_changed_rotated_and_deleted() {
    let app = TestApp::spawn().await;
    let (code, created) = call(
        &app,
        Method::POST,
        "/v1/webhook-endpoints",
        "acme",
        Some(json!({"url": "http://127.0.0.1:9/hook", "events": ["message.delivered", "message.failed"],
                    "description": "orders"})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let secret = created["secret"].as_str().expect("secret");
    assert!(secret.starts_with("whsec_"), "{created}");
    assert_eq!(created["enabled"], true);
    assert_eq!(
        created["events"],
        json!(["message.delivered", "message.failed"])
    );
    let id = created["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/webhook-endpoints/{id}");

    let (code, got) = call(&app, Method::GET, &path, "acme", None).await;
    assert_eq!(code, 200);
    assert!(
        got.get("secret").is_none(),
        "the secret is shown only once: {got}"
    );
    assert!(!got.to_string().contains(secret));
    let (_, all) = call(&app, Method::GET, "/v1/webhook-endpoints", "acme", None).await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(1));
    assert!(!all.to_string().contains("whsec_"));

    // Another tenant sees nothing and changes nothing.
    let (_, theirs) = call(&app, Method::GET, "/v1/webhook-endpoints", "globex", None).await;
    assert_eq!(theirs["items"], json!([]));
    assert_eq!(call(&app, Method::GET, &path, "globex", None).await.0, 404);
    assert_eq!(
        call(
            &app,
            Method::PATCH,
            &path,
            "globex",
            Some(json!({"enabled": false}))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(&app, Method::DELETE, &path, "globex", None).await.0,
        404
    );

    let (code, changed) = call(
        &app,
        Method::PATCH,
        &path,
        "acme",
        Some(json!({"events": ["message.sent"], "enabled": false, "description": null})),
    )
    .await;
    assert_eq!(code, 200, "{changed}");
    assert_eq!(changed["events"], json!(["message.sent"]));
    assert_eq!(changed["enabled"], false);
    assert_eq!(changed["disabled_reason"], "disabled by the tenant");
    assert_eq!(changed["description"], Value::Null);
    let (_, enabled) = call(
        &app,
        Method::PATCH,
        &path,
        "acme",
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(
        (
            enabled["enabled"].clone(),
            enabled["disabled_reason"].clone()
        ),
        (json!(true), Value::Null)
    );

    let (code, rotated) = call(
        &app,
        Method::POST,
        &format!("{path}/rotate-secret"),
        "acme",
        None,
    )
    .await;
    assert_eq!(code, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().expect("secret");
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    assert!(rotated["previous_secret_expires_at"].is_string());
    assert_eq!(
        call(
            &app,
            Method::POST,
            &format!("{path}/rotate-secret"),
            "globex",
            None
        )
        .await
        .0,
        404
    );

    // The secrets are stored sealed, never in clear.
    let stored: Vec<(Vec<u8>, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT secret, previous_secret FROM webhook_endpoints")
            .fetch_all(&app.pool)
            .await
            .expect("rows");
    for (current, previous) in stored {
        for blob in [Some(current), previous].into_iter().flatten() {
            let text = String::from_utf8_lossy(&blob);
            assert!(!text.contains("whsec_"));
        }
    }

    assert_eq!(call(&app, Method::DELETE, &path, "acme", None).await.0, 204);
    assert_eq!(call(&app, Method::GET, &path, "acme", None).await.0, 404);
    app.cleanup().await;
}

#[tokio::test]
async fn bad_fields_and_private_or_plain_http_urls_are_refused_when_private_hosts_are_not_allowed()
{
    let app = TestApp::spawn_with(Options {
        vars: vec![("COMMUNICATION_ALLOW_PRIVATE_HOSTS", "false".into())],
        worker: false,
    })
    .await;
    for url in [
        "https://127.0.0.1/hook",
        "https://10.0.0.7/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://localhost/hook",
        "http://hooks.example.com/hook",
        "https://user:pass@hooks.example.com/hook",
        "not a url",
    ] {
        let (code, problem) = call(
            &app,
            Method::POST,
            "/v1/webhook-endpoints",
            "acme",
            Some(json!({"url": url, "events": ["message.sent"]})),
        )
        .await;
        assert_eq!(code, 422, "{url}: {problem}");
        assert_eq!(error_fields(&problem), vec!["url"], "{url}: {problem}");
    }
    // Every semantic problem at once; an unknown field on its own.
    let (code, problem) = call(
        &app,
        Method::POST,
        "/v1/webhook-endpoints",
        "acme",
        Some(json!({"url": "https://127.0.0.1/hook", "events": ["message.opened"]})),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(error_fields(&problem), vec!["url", "events"], "{problem}");
    let (code, problem) = call(
        &app,
        Method::POST,
        "/v1/webhook-endpoints",
        "acme",
        Some(json!({"url": "https://hooks.example.com/x", "events": ["message.sent"], "extra": 1})),
    )
    .await;
    assert_eq!(
        (code, error_fields(&problem)),
        (422, vec!["extra".to_owned()]),
        "{problem}"
    );
    let (code, problem) = call(
        &app,
        Method::POST,
        "/v1/webhook-endpoints",
        "acme",
        Some(json!({"url": "https://10.0.0.7/hook", "events": []})),
    )
    .await;
    assert_eq!(code, 422, "{problem}");
    let (_, all) = call(&app, Method::GET, "/v1/webhook-endpoints", "acme", None).await;
    assert_eq!(all["items"], json!([]), "nothing was created");
    app.cleanup().await;
}

#[tokio::test]
async fn keys_rotate_reseals_endpoint_secrets_under_the_new_key() {
    use communication::crypto::{Keyring, generate_key_base64};
    let app = TestApp::spawn_with(Options {
        vars: vec![],
        worker: false,
    })
    .await;
    let (code, created) = call(
        &app,
        Method::POST,
        "/v1/webhook-endpoints",
        "acme",
        Some(json!({"url": "http://127.0.0.1:9/hook", "events": ["message.sent"]})),
    )
    .await;
    assert_eq!(code, 201);
    let id = uuid::Uuid::parse_str(created["id"].as_str().expect("id")).expect("uuid");
    let path = format!("/v1/webhook-endpoints/{id}/rotate-secret");
    assert_eq!(call(&app, Method::POST, &path, "acme", None).await.0, 200);

    let new_key = generate_key_base64();
    let rotated = Keyring::from_base64(&new_key, &[app.config_secret()]).expect("keyring");
    let report = communication::rotation::rotate(&app.pool, &rotated)
        .await
        .expect("rotate");
    assert_eq!(report.webhook_endpoints, 1);
    // Only the new key is needed now, for both the secret and the one still signing.
    let only_new = Keyring::from_base64(&new_key, &[]).expect("keyring");
    let (secret, previous): (Vec<u8>, Option<Vec<u8>>) =
        sqlx::query_as("SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    use communication::notify::signing::open_key;
    assert!(open_key(&only_new, "acme", id, &secret).is_ok());
    assert!(open_key(&only_new, "acme", id, &previous.expect("previous")).is_ok());
    let again = communication::rotation::rotate(&app.pool, &rotated)
        .await
        .expect("rotate");
    assert_eq!(again.webhook_endpoints, 0, "nothing left to do");
    app.cleanup().await;
}
