//! One copy of what the provider tests share to stand in for providers and to sign like them:
//! the form-body matcher, Basic credentials, Twilio's and Svix's signatures, and posting a
//! receipt to the service's webhook endpoint.
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde_json::Value;
use wiremock::{Match, Request};

use crate::common::TestApp;

/// Matches a form-encoded body holding exactly these fields (order-insensitive, nothing more).
pub struct FormIs(Vec<(String, String)>);

impl FormIs {
    pub fn new(fields: &[(&str, &str)]) -> FormIs {
        FormIs(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }
}

impl Match for FormIs {
    fn matches(&self, request: &Request) -> bool {
        let mut got: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        got.sort();
        let mut want = self.0.clone();
        want.sort();
        got == want
    }
}

/// An `Authorization` header value with HTTP Basic credentials.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", B64.encode(format!("{user}:{password}")))
}

/// `X-Twilio-Signature` as Twilio computes it: HMAC-SHA1 keyed by the auth token over the URL
/// followed by each parameter's name and value, parameters sorted, base64.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key");
    mac.update(data.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

/// `svix-signature` as Svix documents it: HMAC-SHA256 over `id.timestamp.body` keyed by the
/// base64 after `whsec_`, as `v1,<base64>`.
pub fn svix_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = B64
        .decode(secret.trim_start_matches("whsec_"))
        .expect("test secret is base64");
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(&content);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// The three Svix headers of a signed delivery.
pub fn svix_headers(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("svix-id", id.to_owned()),
        ("svix-timestamp", timestamp.to_string()),
        (
            "svix-signature",
            svix_signature(secret, id, timestamp, body),
        ),
    ]
}

/// Posts a receipt to `/v1/webhooks/{kind}/{provider_id}`; the status and the JSON answer.
pub async fn post_webhook(
    app: &TestApp,
    kind: &str,
    provider_id: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: impl Into<Vec<u8>>,
) -> (u16, Value) {
    let mut request = app
        .http
        .post(app.url(&format!("/v1/webhooks/{kind}/{provider_id}")))
        .header("content-type", content_type)
        .body(body.into());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
