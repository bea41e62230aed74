//! `GET|POST /v1/api-keys`, `DELETE /v1/api-keys/{id}`: a tenant key manages its own tenant's
//! keys, the service token any tenant's; a revoked key is refused at once.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{self, SERVICE_TOKEN, TestApp};

fn no_worker() -> common::Options {
    common::Options {
        worker: false,
        ..Default::default()
    }
}

/// Creates a key with the service token; returns (id, key, prefix).
async fn service_key(app: &TestApp, tenant: &str, name: &str) -> (String, String, String) {
    let r = app
        .http
        .post(app.url("/v1/api-keys"))
        .bearer_auth(SERVICE_TOKEN)
        .json(&json!({"tenant_id": tenant, "name": name}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.expect("json");
    let field = |k: &str| body[k].as_str().expect(k).to_owned();
    (field("id"), field("key"), field("prefix"))
}

async fn list(app: &TestApp, key: &str, query: &str) -> (u16, Value) {
    let r = app
        .http
        .get(app.url(&format!("/v1/api-keys{query}")))
        .bearer_auth(key)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn revoke(app: &TestApp, key: &str, id: &str) -> u16 {
    app.http
        .delete(app.url(&format!("/v1/api-keys/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_tenant_key_creates_lists_and_revokes_its_tenants_keys_and_the_revoked_key_is_refused_at_once()
 {
    let app = TestApp::spawn_with(no_worker()).await;
    let (first_id, first, first_prefix) = service_key(&app, "acme", "first").await;

    let r = app
        .http
        .post(app.url("/v1/api-keys"))
        .bearer_auth(&first)
        .json(&json!({"name": "second"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.expect("json");
    assert_eq!(created["tenant_id"], "acme");
    let second = created["key"].as_str().expect("key").to_owned();
    let second_id = created["id"].as_str().expect("id").to_owned();

    // The second key works (and its use is noted in the background).
    let (code, page) = list(&app, &second, "").await;
    assert_eq!(code, 200, "{page}");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], second_id.as_str(), "newest first");
    assert_eq!(items[0]["name"], "second");
    assert_eq!(items[1]["id"], first_id.as_str());
    assert_eq!(items[1]["prefix"], first_prefix.as_str());
    assert!(first_prefix.starts_with("lsc_") && first_prefix.len() == 10);
    assert!(items[0]["created_at"].is_string());
    assert_eq!(page["next_cursor"], Value::Null);
    let text = page.to_string();
    assert!(
        !text.contains(&first) && !text.contains(&second),
        "never the keys"
    );
    assert!(
        items
            .iter()
            .all(|i| i.get("key").is_none() && i.get("key_hash").is_none())
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, page) = list(&app, &first, "").await;
        let used = page["items"][0]["last_used_at"].as_str().map(str::to_owned);
        if used.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "last use never recorded: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Revoked: refused on the next request, though its lookup was cached a moment ago.
    assert_eq!(revoke(&app, &first, &second_id).await, 204);
    let (code, _) = list(&app, &second, "").await;
    assert_eq!(code, 401);
    assert_eq!(
        revoke(&app, &first, &second_id).await,
        404,
        "already revoked"
    );
    let (_, page) = list(&app, &first, "").await;
    let ids: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(ids, vec![first_id.as_str()]);
    let revoked_at: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT revoked_at FROM api_keys WHERE id = $1::uuid")
            .bind(&second_id)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert!(revoked_at.is_some());
    app.cleanup().await;
}

#[tokio::test]
async fn another_tenants_key_is_not_found_and_the_service_token_manages_any_tenants_keys() {
    let app = TestApp::spawn_with(no_worker()).await;
    let (_, acme, _) = service_key(&app, "acme", "acme").await;
    let (globex_id, globex, _) = service_key(&app, "globex", "globex").await;

    assert_eq!(revoke(&app, &acme, &globex_id).await, 404);
    assert_eq!(revoke(&app, &acme, "not-a-uuid").await, 404);
    let (code, page) = list(&app, &globex, "").await;
    assert_eq!(code, 200, "still valid");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let (_, page) = list(&app, &acme, "").await;
    assert!(!page.to_string().contains(&globex_id));

    // The service token names the tenant.
    let r = app
        .as_tenant(Method::GET, "/v1/api-keys", "globex")
        .send()
        .await
        .expect("request");
    let page: Value = r.json().await.expect("json");
    assert_eq!(page["items"][0]["id"], globex_id.as_str());
    let r = app
        .http
        .get(app.url("/v1/api-keys"))
        .bearer_auth(SERVICE_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400, "which tenant?");
    let r = app
        .as_tenant(Method::DELETE, &format!("/v1/api-keys/{globex_id}"), "acme")
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.status(),
        404,
        "the service token acts for the named tenant only"
    );
    let r = app
        .as_tenant(
            Method::DELETE,
            &format!("/v1/api-keys/{globex_id}"),
            "globex",
        )
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 204);
    let (code, _) = list(&app, &globex, "").await;
    assert_eq!(code, 401);
    app.cleanup().await;
}

#[tokio::test]
async fn api_keys_page_through_a_cursor_and_names_are_checked() {
    let app = TestApp::spawn_with(no_worker()).await;
    let (a, key, _) = service_key(&app, "acme", "a").await;
    let (b, _, _) = service_key(&app, "acme", "b").await;
    let (code, page) = list(&app, &key, "?limit=1").await;
    assert_eq!(code, 200);
    assert_eq!(page["items"][0]["id"], b.as_str());
    let cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
    let (_, next) = list(&app, &key, &format!("?limit=1&cursor={cursor}")).await;
    assert_eq!(next["items"][0]["id"], a.as_str());
    assert_eq!(next["next_cursor"], Value::Null);
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?cursor=zz", "cursor"),
        ("?x=1", "x"),
    ] {
        let (code, body) = list(&app, &key, query).await;
        assert_eq!(code, 400, "{query}");
        assert_eq!(body["errors"][0]["field"], field);
    }
    let r = app
        .http
        .post(app.url("/v1/api-keys"))
        .bearer_auth(&key)
        .json(&json!({"name": "x".repeat(101)}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["errors"][0]["field"], "name");
    app.cleanup().await;
}
