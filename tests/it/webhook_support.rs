//! Helpers of the status-webhook tests: endpoints over HTTP, verification of received
//! requests with the Standard Webhooks reference library (Python `standardwebhooks`, run as a
//! child process), and a black-hole receiver that accepts connections and never answers.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::{MockServer, Request};

use crate::common::TestApp;

/// Creates an endpoint for `tenant`; returns (id, secret).
pub async fn create_endpoint(
    app: &TestApp,
    tenant: &str,
    url: &str,
    events: &[&str],
) -> (String, String) {
    let r = app
        .as_tenant(reqwest::Method::POST, "/v1/webhook-endpoints", tenant)
        .json(&json!({"url": url, "events": events}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.expect("json");
    (
        body["id"].as_str().expect("id").to_owned(),
        body["secret"].as_str().expect("secret").to_owned(),
    )
}

/// The webhook requests a receiver got (POSTs carrying `webhook-id`).
pub async fn webhook_requests(receiver: &MockServer) -> Vec<Request> {
    receiver
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.headers.contains_key("webhook-id"))
        .collect()
}

/// Waits until the receiver got at least `n` webhook requests (panics after `limit`).
pub async fn wait_for_requests(receiver: &MockServer, n: usize, limit: Duration) -> Vec<Request> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let got = webhook_requests(receiver).await;
        if got.len() >= n {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} webhook requests arrived: {:?}",
            got.len(),
            got.iter()
                .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn header(r: &Request, name: &str) -> String {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Verifies every request with the reference library and returns the payloads; panics if
/// any signature is refused.
pub fn verify_with_reference_library(secret: &str, requests: &[Request]) -> Vec<Value> {
    let job = json!({
        "secret": secret,
        "requests": requests.iter().map(|r| json!({
            "body": String::from_utf8_lossy(&r.body),
            "headers": {
                "webhook-id": header(r, "webhook-id"),
                "webhook-timestamp": header(r, "webhook-timestamp"),
                "webhook-signature": header(r, "webhook-signature"),
            },
        })).collect::<Vec<_>>(),
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/verify_webhooks.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (pip install standardwebhooks)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(job.to_string().as_bytes())
        .expect("write the requests");
    let out = child.wait_with_output().expect("verifier finished");
    assert!(
        out.status.success(),
        "the reference library refused a signature: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("verified payloads")
}

/// A receiver that accepts connections and never answers: `http://127.0.0.1:PORT/hook`.
pub async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}
