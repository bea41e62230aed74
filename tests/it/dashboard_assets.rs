//! `/dashboard/`: the embedded single-page app's files, headers, fallback, and the page shown
//! when the files were not built.

use std::sync::Arc;

use communication::intake::dashboard::{self, AssetSource, StaticAssets};
use reqwest::redirect::Policy;

use crate::common::{self, TestApp};

const INDEX: &str =
    "<!doctype html><script type=\"module\" src=\"/dashboard/assets/index-4f2a.js\"></script>";

/// Serves only the dashboard's routes over `source`; returns the base URL.
async fn serve(source: impl AssetSource) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router: axum::Router = dashboard::routes(Arc::new(source));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    base
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

fn built() -> StaticAssets {
    StaticAssets::default()
        .with("index.html", INDEX)
        .with("assets/index-4f2a.js", "console.log('hi')")
        .with("assets/index-9c1d.css", "body{}")
        .with("favicon.svg", "<svg/>")
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn assert_security_headers(r: &reqwest::Response) {
    assert_eq!(
        header(r, "content-security-policy"),
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        "{}",
        r.url()
    );
    assert_eq!(header(r, "x-content-type-options"), "nosniff");
    assert_eq!(header(r, "referrer-policy"), "no-referrer");
}

#[tokio::test]
async fn the_dashboard_serves_its_files_with_types_caching_and_a_strict_policy() {
    let base = serve(built()).await;
    let http = client();
    let get = |path: &str| http.get(format!("{base}{path}")).send();

    let r = get("/dashboard").await.expect("request");
    assert_eq!(r.status(), 308);
    assert_eq!(header(&r, "location"), "/dashboard/");
    assert_security_headers(&r);

    let r = get("/dashboard/").await.expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&r, "cache-control"), "no-cache");
    assert_security_headers(&r);
    assert_eq!(r.text().await.expect("body"), INDEX);

    let r = get("/dashboard/assets/index-4f2a.js")
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/javascript; charset=utf-8");
    assert_eq!(
        header(&r, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_security_headers(&r);
    assert_eq!(r.text().await.expect("body"), "console.log('hi')");

    let r = get("/dashboard/assets/index-9c1d.css")
        .await
        .expect("request");
    assert_eq!(header(&r, "content-type"), "text/css; charset=utf-8");
    assert_eq!(
        header(&r, "cache-control"),
        "public, max-age=31536000, immutable"
    );

    let r = get("/dashboard/favicon.svg").await.expect("request");
    assert_eq!(header(&r, "content-type"), "image/svg+xml");
    assert_eq!(header(&r, "cache-control"), "no-cache", "not hashed");

    let r = http
        .head(format!("{base}/dashboard/assets/index-4f2a.js"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_security_headers(&r);
}

#[tokio::test]
async fn unknown_dashboard_paths_serve_the_page_but_missing_build_files_are_404() {
    let base = serve(built()).await;
    let http = client();
    for path in [
        "/dashboard/providers",
        "/dashboard/messages/0d6f5d3e-2c1f-4c1e-9d7e-0a1b2c3d4e5f",
        "/dashboard/..%2FCargo.toml",
        "/dashboard/.env",
    ] {
        let r = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&r, "cache-control"), "no-cache");
        assert_security_headers(&r);
        assert_eq!(r.text().await.expect("body"), INDEX, "{path}");
    }
    let r = http
        .get(format!("{base}/dashboard/assets/index-0000.js"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    assert_ne!(
        header(&r, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_security_headers(&r);
}

#[tokio::test]
async fn without_built_files_the_dashboard_says_how_to_build_them() {
    let base = serve(StaticAssets::default()).await;
    let http = client();
    for path in ["/dashboard/", "/dashboard/providers"] {
        let r = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
        assert_security_headers(&r);
        let body = r.text().await.expect("body");
        assert!(
            body.contains("cd dashboard &amp;&amp; npm ci &amp;&amp; npm run build"),
            "{body}"
        );
        assert!(
            !body.contains("<script") && !body.contains("<style"),
            "CSP-clean"
        );
    }
}

#[tokio::test]
async fn the_intake_serves_the_dashboard_beside_the_api() {
    let app = TestApp::spawn_with(common::Options {
        worker: false,
        ..Default::default()
    })
    .await;
    let http = client();
    let r = http
        .get(app.url("/dashboard/"))
        .send()
        .await
        .expect("request");
    // Built or not (this checkout may or may not have dashboard/dist), an HTML page.
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    assert_security_headers(&r);
    let r = http
        .get(app.url("/dashboard"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 308);
    // The API's own answers are unchanged: no page policy on them, JSON 404s elsewhere.
    let r = http
        .get(app.url("/v1/nothing"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    assert_eq!(header(&r, "content-security-policy"), "");
    let doc: serde_json::Value = http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.keys().all(|p| !p.starts_with("/dashboard")));
    assert!(paths.contains_key("/v1/stats") && paths.contains_key("/v1/api-keys/{id}"));
    app.cleanup().await;
}
