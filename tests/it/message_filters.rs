//! `GET /v1/messages` filtered by provider and by exact recipient: the filters narrow to
//! exactly the right messages, alone and together, cursor paging walks a filtered list
//! without gaps or repeats, and another tenant's messages never appear.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestApp;

const ALICE: &str = "+14155550101";
const BOB: &str = "+14155550102";
const ADA: &str = "ada@example.com";

/// Sends an SMS to `to` pinned to `provider`, waits until it is sent, returns its id.
async fn sent_sms(app: &TestApp, tenant: &str, provider: &str, to: &str) -> String {
    let id = app
        .send_ok(
            tenant,
            json!({"channel": "sms", "to": to, "content": {"text": "hello"},
                   "provider_id": provider}),
        )
        .await;
    let message = app.wait_for_status(tenant, &id, &["sent"]).await;
    assert_eq!(message["provider_id"], provider, "{message}");
    id
}

async fn sent_email(app: &TestApp, tenant: &str, to: &str) -> String {
    let id = app
        .send_ok(
            tenant,
            json!({"channel": "email", "to": to,
                   "content": {"subject": "Hello", "text": "hello"}}),
        )
        .await;
    app.wait_for_status(tenant, &id, &["sent"]).await;
    id
}

/// Every message `query` lists for `tenant`, page by page (`limit` per page), in order.
async fn all_pages(app: &TestApp, tenant: &str, query: &str, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let mut path = format!("/v1/messages?{query}&limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = app
            .as_tenant(Method::GET, &path, tenant)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "{path}");
        let page: Value = r.json().await.expect("json");
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= limit, "{path}: {page}");
        seen.extend(
            items
                .iter()
                .map(|m| m["id"].as_str().expect("id").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return seen,
        }
    }
    panic!("{query}: paging never ended");
}

/// `ids` newest first, as the list answers.
fn newest_first(ids: &[&String]) -> Vec<String> {
    ids.iter().rev().map(|s| (*s).clone()).collect()
}

async fn refused(app: &TestApp, query: &str) -> Value {
    let r = app
        .as_tenant(Method::GET, &format!("/v1/messages?{query}"), "acme")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400, "{query}");
    r.json().await.expect("json")
}

#[tokio::test]
async fn provider_and_recipient_filters_narrow_the_list_page_by_page_within_the_tenant() {
    let app = TestApp::spawn().await;
    let first = app
        .system_provider("acme", "sms", "first", "deliver", 1)
        .await;
    let second = app
        .system_provider("acme", "sms", "second", "deliver", 2)
        .await;
    app.system_provider("acme", "email", "mail", "deliver", 1)
        .await;
    let theirs = app
        .system_provider("globex", "sms", "theirs", "deliver", 1)
        .await;
    app.system_provider("globex", "email", "mail", "deliver", 1)
        .await;

    // Sent one after the other, so their order is their creation order.
    let m1 = sent_sms(&app, "acme", &first, ALICE).await;
    let o1 = sent_sms(&app, "globex", &theirs, ALICE).await;
    let m2 = sent_sms(&app, "acme", &second, ALICE).await;
    let m3 = sent_sms(&app, "acme", &first, BOB).await;
    let e1 = sent_email(&app, "acme", ADA).await;
    let m4 = sent_sms(&app, "acme", &first, ALICE).await;
    let o2 = sent_email(&app, "globex", ADA).await;
    let m5 = sent_sms(&app, "acme", &second, BOB).await;
    let m6 = sent_sms(&app, "acme", &first, ALICE).await;

    let alice = "to=%2B14155550101";
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            format!("provider_id={first}"),
            newest_first(&[&m1, &m3, &m4, &m6]),
        ),
        (format!("provider_id={second}"), newest_first(&[&m2, &m5])),
        (
            format!("channel=sms&{alice}"),
            newest_first(&[&m1, &m2, &m4, &m6]),
        ),
        // Without a channel the recipient is matched as given.
        (alice.to_owned(), newest_first(&[&m1, &m2, &m4, &m6])),
        ("to=%2B14155550102".to_owned(), newest_first(&[&m3, &m5])),
        (
            format!("provider_id={first}&{alice}"),
            newest_first(&[&m1, &m4, &m6]),
        ),
        (
            format!("provider_id={second}&to=%2B14155550102&status=sent"),
            newest_first(&[&m5]),
        ),
        (
            "channel=email&to=ada%40example.com".to_owned(),
            vec![e1.clone()],
        ),
        ("to=ada%40example.com".to_owned(), vec![e1.clone()]),
        // The recipient the send path would record (trimmed).
        (
            "channel=sms&to=%20%2B14155550101%20".to_owned(),
            newest_first(&[&m1, &m2, &m4, &m6]),
        ),
        // No such recipient; another tenant's provider.
        ("to=%2B14155550199".to_owned(), vec![]),
        (format!("provider_id={theirs}"), vec![]),
        (format!("provider_id={theirs}&{alice}"), vec![]),
        ("channel=sms&to=%2B14155550103".to_owned(), vec![]),
    ];
    for (query, expected) in &cases {
        for limit in [1, 2, 50] {
            let seen = all_pages(&app, "acme", query, limit).await;
            assert_eq!(&seen, expected, "{query} (limit {limit})");
        }
    }

    // The other tenant sees only its own messages to the same recipients.
    assert_eq!(all_pages(&app, "globex", alice, 1).await, vec![o1.clone()]);
    assert_eq!(
        all_pages(&app, "globex", "to=ada%40example.com", 1).await,
        vec![o2.clone()]
    );
    assert_eq!(
        all_pages(&app, "globex", &format!("provider_id={first}"), 5).await,
        Vec::<String>::new()
    );

    // Bad values are refused naming the parameter.
    let body = refused(&app, "provider_id=first").await;
    assert_eq!(
        body["errors"],
        json!([{"field": "provider_id", "message": "must be a UUID"}])
    );
    let body = refused(&app, "channel=sms&to=14155550101").await;
    assert_eq!(body["errors"][0]["field"], "to", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("E.164")),
        "{body}"
    );
    let body = refused(&app, "channel=email&to=ada").await;
    assert_eq!(body["errors"][0]["field"], "to", "{body}");
    app.cleanup().await;
}
