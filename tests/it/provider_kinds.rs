//! `GET /v1/provider-kinds` over HTTP, and the rule that a configuration is validated by the
//! same code that builds its adapter: every kind saves from its own description's examples,
//! and an SMTP host that is a private IP literal is a 422 on `config.host` at creation and at
//! patch unless the operator allows private hosts.

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::common::{self, SERVICE_TOKEN, TestApp};

const KINDS: [&str; 8] = [
    "system", "twilio", "vonage", "resend", "sendgrid", "postmark", "mailgun", "smtp",
];

async fn provider_kinds(app: &TestApp, bearer: &str) -> (u16, Value) {
    let r = app
        .http
        .get(app.url("/v1/provider-kinds"))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn kind<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|k| k["kind"] == name))
        .unwrap_or_else(|| panic!("{name} is not listed in {list}"))
}

fn field<'a>(kind: &'a Value, name: &str) -> &'a Value {
    kind["fields"]
        .as_array()
        .and_then(|fields| fields.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("{name} is not a field of {kind}"))
}

/// Every field of a kind filled with its example.
fn examples(kind: &Value) -> Map<String, Value> {
    kind["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().expect("name").to_owned(),
                f["example"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn provider_kinds_lists_every_kind_with_its_fields_to_any_authenticated_caller() {
    let app = TestApp::spawn_with(common::Options {
        worker: false,
        ..Default::default()
    })
    .await;

    let r = app
        .http
        .get(app.url("/v1/provider-kinds"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401, "credentials are required");

    // The service token, with no tenant.
    let (status, list) = provider_kinds(&app, SERVICE_TOKEN).await;
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|k| k["kind"].as_str())
        .collect();
    assert_eq!(names, KINDS);

    let twilio = kind(&list, "twilio");
    assert_eq!(twilio["label"], "Twilio");
    assert_eq!(twilio["channels"], json!(["sms"]));
    assert_eq!(twilio["receipts"], true);
    assert!(
        twilio["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    let sid = field(twilio, "account_sid");
    assert_eq!(sid["label"], "Account SID");
    assert_eq!(sid["type"], "text");
    assert_eq!(sid["required"], true);
    assert!(sid["example"].as_str().is_some_and(|e| e.starts_with("AC")));
    assert!(
        sid.get("options").is_none(),
        "options only on select fields"
    );
    assert_eq!(field(twilio, "auth_token")["type"], "secret");

    let smtp = kind(&list, "smtp");
    assert_eq!(smtp["receipts"], false);
    let tls = field(smtp, "tls");
    assert_eq!(tls["type"], "select");
    assert_eq!(tls["options"], json!(["starttls", "implicit", "none"]));
    assert_eq!(tls["example"], "starttls");
    assert_eq!(field(smtp, "port")["type"], "number");
    assert!(field(smtp, "port")["example"].is_u64());
    assert_eq!(field(smtp, "password")["type"], "secret");

    assert_eq!(kind(&list, "system")["channels"], json!(["email", "sms"]));
    for name in KINDS {
        let k = kind(&list, name);
        for f in k["fields"].as_array().expect("fields") {
            let ty = f["type"].as_str().expect("type");
            assert!(
                ["text", "secret", "select", "number", "bool"].contains(&ty),
                "{name}.{}: {ty}",
                f["name"]
            );
            assert!(f["label"].is_string() && f["help"].is_string(), "{f}");
            assert!(f["required"].is_boolean(), "{f}");
            let example = &f["example"];
            let typed = match ty {
                "number" => example.is_number(),
                "bool" => example.is_boolean(),
                _ => example.is_string(),
            };
            assert!(
                typed,
                "{name}.{}: example {example} is not a {ty}",
                f["name"]
            );
            assert_eq!(ty == "select", f.get("options").is_some(), "{f}");
        }
        // The common field every kind accepts.
        assert_eq!(field(k, "rate_per_second")["type"], "number");
    }

    // A tenant API key sees the same list.
    let created = app
        .http
        .post(app.url("/v1/api-keys"))
        .bearer_auth(SERVICE_TOKEN)
        .json(&json!({"tenant_id": "acme"}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201);
    let key: Value = created.json().await.expect("json");
    let (status, by_tenant) = provider_kinds(&app, key["key"].as_str().expect("key")).await;
    assert_eq!(status, 200);
    assert_eq!(by_tenant, list);
    app.cleanup().await;
}

#[tokio::test]
async fn every_kind_saves_from_its_own_examples_with_its_secrets_masked() {
    let app = TestApp::spawn_with(common::Options {
        worker: false,
        vars: vec![("COMMUNICATION_ALLOW_PRIVATE_HOSTS", "false".into())],
    })
    .await;
    let (_, list) = provider_kinds(&app, SERVICE_TOKEN).await;
    for name in KINDS {
        let k = kind(&list, name);
        let config = examples(k);
        let channel = k["channels"][0].clone();
        let r = app
            .as_tenant(Method::POST, "/v1/providers", "acme")
            .json(&json!({"name": name, "channel": channel, "kind": name, "config": config}))
            .send()
            .await
            .expect("request");
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert_eq!(status, 201, "{name}: {body}");
        for f in k["fields"].as_array().expect("fields") {
            let field_name = f["name"].as_str().expect("name");
            let shown = &body["config"][field_name];
            if f["type"] == "secret" {
                assert!(
                    shown.as_str().is_some_and(|s| s.starts_with("****")),
                    "{name}.{field_name} is not masked: {shown}"
                );
            } else {
                assert_eq!(shown, &f["example"], "{name}.{field_name}");
            }
        }
    }
    app.cleanup().await;
}

fn config_errors(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap_or_default().to_owned(),
                        e["message"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_private_smtp_host_is_refused_at_creation_and_patch_unless_the_operator_allows_it() {
    let app = TestApp::spawn_with(common::Options {
        worker: false,
        vars: vec![("COMMUNICATION_ALLOW_PRIVATE_HOSTS", "false".into())],
    })
    .await;
    let smtp = |host: &str| {
        json!({"name": format!("smtp {host}"), "channel": "email", "kind": "smtp",
               "config": {"host": host, "port": 587, "tls": "starttls",
                          "from": "shop@example.com"}})
    };
    for host in [
        "127.0.0.1",
        "169.254.169.254",
        "10.1.2.3",
        "192.168.0.10",
        "::1",
        "[::1]",
        "fc00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
    ] {
        let r = app
            .as_tenant(Method::POST, "/v1/providers", "acme")
            .json(&smtp(host))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let body: Value = r.json().await.expect("json");
        assert_eq!(status, 422, "{host}: {body}");
        let errors = config_errors(&body);
        assert!(
            errors
                .iter()
                .any(|(f, m)| f == "config.host" && m.contains("private or local")),
            "{host}: {body}"
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM provider_configs")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 0, "nothing refused was stored");

    // A public host saves; moving it to a private literal is refused the same way, and the
    // stored configuration stays as it was.
    let created = app.create_provider("acme", smtp("smtp.example.com")).await;
    let id = created["id"].as_str().expect("id");
    let r = app
        .as_tenant(Method::PATCH, &format!("/v1/providers/{id}"), "acme")
        .json(&json!({"config": {"host": "169.254.169.254"}}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.expect("json");
    assert!(
        config_errors(&body).iter().any(|(f, _)| f == "config.host"),
        "{body}"
    );
    let r = app
        .as_tenant(Method::GET, &format!("/v1/providers/{id}"), "acme")
        .send()
        .await
        .expect("request");
    let stored: Value = r.json().await.expect("json");
    assert_eq!(stored["config"]["host"], "smtp.example.com");
    app.cleanup().await;

    // With the operator's allowance, the same host saves.
    let allowed = TestApp::spawn_with(common::Options {
        worker: false,
        ..Default::default()
    })
    .await;
    allowed.create_provider("acme", smtp("127.0.0.1")).await;
    allowed.cleanup().await;
}

#[tokio::test]
async fn configuration_problems_are_per_field_422s() {
    let app = TestApp::spawn_with(common::Options {
        worker: false,
        ..Default::default()
    })
    .await;
    let r = app
        .as_tenant(Method::POST, "/v1/providers", "acme")
        .json(&json!({"name": "smtp", "channel": "email", "kind": "smtp",
                      "config": {"host": "smtp.example.com", "port": 70000, "tls": "maybe",
                                 "bogus": 1}}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.expect("json");
    let fields: Vec<String> = config_errors(&body).into_iter().map(|(f, _)| f).collect();
    for f in ["config.port", "config.tls", "config.bogus", "config.from"] {
        assert!(fields.iter().any(|x| x == f), "{f} missing from {body}");
    }
    let r = app
        .as_tenant(Method::POST, "/v1/providers", "acme")
        .json(&json!({"name": "x", "channel": "sms", "kind": "twilio",
                      "config": {"account_sid": "AC1/../x", "auth_token": "t0ken-0123456789",
                                 "from": "+15005550006"}}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 422, "what cannot build cannot save");
    let body: Value = r.json().await.expect("json");
    assert!(
        config_errors(&body)
            .iter()
            .any(|(f, _)| f == "config.account_sid"),
        "{body}"
    );
    assert!(!body.to_string().contains("t0ken-0123456789"), "{body}");
    app.cleanup().await;
}
