//! The one way the HTTP adapters call their provider: send, turn a transport failure into a
//! classified error, and read the whole answer. What an answer means stays with each adapter
//! (its own `classify`).

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;

use super::ProviderError;

/// A provider's answer, read in full.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Empty when the body could not be read: for a 2xx that must not become a retry (the
    /// provider acted), so it reads as "accepted, no id".
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The body as `T`, when it is one.
    pub fn json<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The provider's `Retry-After` (seconds), when given.
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after_seconds(&self.headers)
    }
}

/// Sends `request` and reads the answer. `provider` names the kind in error messages.
pub async fn call(
    provider: &str,
    request: reqwest::RequestBuilder,
) -> Result<Answer, ProviderError> {
    let mut response = request
        .send()
        .await
        .map_err(|e| ProviderError::from_transport(provider, &e))?;
    let status = response.status();
    // Taken, not cloned: reading the body does not need them.
    let headers = std::mem::take(response.headers_mut());
    let body = response
        .bytes()
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Parses an HTTP `Retry-After` header given in seconds.
pub fn retry_after_seconds(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The usual fallback when a provider's answer carries nothing more specific: 408, 429 and
/// 5xx are worth retrying (with the provider's hint), any other refusal is taken as a problem
/// of this provider's configuration (fail over, do not fail the message on a guess), and a
/// 1xx/3xx where a 2xx was expected means something in between misbehaved.
pub fn class_for_status(status: StatusCode, retry_after: Option<Duration>) -> super::ErrorClass {
    if status.is_client_error()
        && status != StatusCode::TOO_MANY_REQUESTS
        && status != StatusCode::REQUEST_TIMEOUT
    {
        super::ErrorClass::ProviderPermanent
    } else {
        super::ErrorClass::Transient { retry_after }
    }
}
