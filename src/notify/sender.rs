//! Attempting one webhook delivery: load it, sign it, POST it (one timeout per call, no
//! redirects, public hosts only unless allowed), record the attempt, then either finish it
//! or schedule the next try in the retry tier for the attempt number. An endpoint whose
//! deliveries kept failing for `COMMUNICATION_WEBHOOK_DISABLE_AFTER` is disabled, with the
//! reason on the endpoint.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use lapin::types::FieldTable;
use sqlx::PgPool;

use super::NotifySettings;
use super::relay::DeliveryRef;
use super::signing::{self, SigningKey};
use super::target::{self, PublicOnlyResolver};
use super::topology::WebhookTopology;
use crate::crypto::Keyring;
use crate::queue::Publisher;
use crate::store::webhook_deliveries::{self as store, DeliveryJob, NewAttempt};
use crate::store::webhook_endpoints::{self as endpoints, EndpointRow};

/// What the consumer does with the queue message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    Ack,
    /// The database or broker failed before the outcome was recorded: try again later.
    Requeue,
}

/// What one request came to.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// Why it failed (never the secret, never the receiver's body).
    pub error: Option<String>,
}

impl CallOutcome {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// What happens after attempt number `attempt` (1-based) of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    Succeeded,
    /// Retry after the schedule's entry at this index.
    RetryIn(usize),
    /// Every retry spent.
    GaveUp,
}

/// The pure decision after an attempt.
pub fn after_attempt(succeeded: bool, attempt: u32, schedule_len: usize) -> AfterAttempt {
    if succeeded {
        AfterAttempt::Succeeded
    } else if (attempt as usize) <= schedule_len {
        AfterAttempt::RetryIn(attempt as usize - 1)
    } else {
        AfterAttempt::GaveUp
    }
}

pub struct WebhookSender {
    pub pool: PgPool,
    pub keyring: Arc<Keyring>,
    pub http: reqwest::Client,
    pub settings: NotifySettings,
    pub allow_private: bool,
    pub publisher: Arc<Publisher>,
    pub topology: WebhookTopology,
}

/// The HTTP client of webhook requests: a timeout per call, no redirects, no proxy (a proxy
/// would resolve names out of our sight), and unless private hosts are allowed, a resolver
/// that refuses private and local addresses.
pub fn http_client(
    settings: &NotifySettings,
    allow_private: bool,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(std::time::Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!(
            "logicspike-communication-webhooks/",
            env!("CARGO_PKG_VERSION")
        ));
    if !allow_private {
        builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
    }
    Ok(builder.build()?)
}

/// A transport error in words, without the URL's query (which may carry a tenant's token).
fn describe(e: &reqwest::Error, timeout: std::time::Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {} ms", timeout.as_millis());
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let what = if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{what}: {cause}")
}

impl WebhookSender {
    /// Handles one queue message.
    pub async fn handle(&self, body: &[u8]) -> Handled {
        let Ok(DeliveryRef { delivery_id }) = serde_json::from_slice(body) else {
            tracing::warn!("dropping a malformed webhook queue message");
            return Handled::Ack;
        };
        let job = match store::load_job(&self.pool, delivery_id).await {
            Ok(Some(job)) if job.state == "pending" => job,
            Ok(_) => return Handled::Ack,
            Err(e) => {
                tracing::warn!(%delivery_id, error = %e, "could not load a webhook delivery; will retry");
                return Handled::Requeue;
            }
        };
        let endpoint = match endpoints::for_delivery(&self.pool, job.endpoint_id).await {
            Ok(Some(ep)) if ep.enabled => ep,
            Ok(_) => {
                return match store::set_state(&self.pool, job.id, "abandoned").await {
                    Ok(()) => Handled::Ack,
                    Err(_) => Handled::Requeue,
                };
            }
            Err(e) => {
                tracing::warn!(%delivery_id, error = %e, "could not load a webhook endpoint; will retry");
                return Handled::Requeue;
            }
        };
        let attempt = job.attempts.max(0) as u32 + 1;
        let outcome = self.call(&endpoint, &job).await;
        let label = if outcome.succeeded() {
            "succeeded"
        } else {
            "failed"
        };
        metrics::counter!("communication_webhook_deliveries_total", "outcome" => label)
            .increment(1);
        metrics::histogram!("communication_webhook_latency_seconds", "outcome" => label)
            .record(outcome.latency_ms as f64 / 1000.0);
        let next = after_attempt(
            outcome.succeeded(),
            attempt,
            self.settings.retry_schedule.len(),
        );
        let state = match next {
            AfterAttempt::Succeeded => "succeeded",
            AfterAttempt::RetryIn(_) => "pending",
            AfterAttempt::GaveUp => "failed",
        };
        let recorded = store::record_attempt(
            &self.pool,
            &NewAttempt {
                job: &job,
                attempt: attempt as i32,
                status_code: outcome.status_code.map(i32::from),
                latency_ms: outcome.latency_ms.min(i32::MAX as u64) as i32,
                error: outcome.error.clone(),
                succeeded: outcome.succeeded(),
            },
            state,
        )
        .await;
        if let Err(e) = recorded {
            // The request was made; requeueing makes it again (receivers dedupe on webhook-id).
            tracing::warn!(%delivery_id, error = %e, "could not record a webhook attempt; will retry");
            return Handled::Requeue;
        }
        let disabled = self.note_endpoint(&endpoint, &outcome).await;
        let AfterAttempt::RetryIn(tier) = next else {
            return Handled::Ack;
        };
        if disabled {
            let _ = store::set_state(&self.pool, job.id, "abandoned").await;
            return Handled::Ack;
        }
        let Some(wait) = self.settings.retry_schedule.get(tier) else {
            return Handled::Ack;
        };
        let queue = self.topology.retry_queue(*wait);
        let body = serde_json::to_vec(&DeliveryRef {
            delivery_id: job.id,
        })
        .unwrap_or_default();
        match self
            .publisher
            .publish(
                "",
                &queue,
                &body,
                FieldTable::default(),
                Some(&job.id.to_string()),
            )
            .await
        {
            Ok(()) => Handled::Ack,
            Err(e) => {
                tracing::warn!(%delivery_id, error = %e, "could not schedule a webhook retry; will retry now");
                Handled::Requeue
            }
        }
    }

    /// Updates the endpoint's failure streak; true when this attempt disabled it.
    async fn note_endpoint(&self, endpoint: &EndpointRow, outcome: &CallOutcome) -> bool {
        let since = endpoint.failing_since.unwrap_or_else(Utc::now);
        let reason = format!(
            "every delivery failed since {} (last: {}); re-enable with PATCH {{\"enabled\": true}}",
            since.to_rfc3339(),
            outcome.error.as_deref().unwrap_or("unknown")
        );
        match endpoints::note_outcome(
            &self.pool,
            endpoint.id,
            outcome.succeeded(),
            self.settings.disable_after,
            &reason,
        )
        .await
        {
            Ok(true) => {
                metrics::counter!("communication_webhook_endpoints_disabled_total").increment(1);
                tracing::warn!(endpoint_id = %endpoint.id, tenant_id = %endpoint.tenant_id,
                    "webhook endpoint disabled after failing for too long");
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(endpoint_id = %endpoint.id, error = %e, "could not update a webhook endpoint's failure streak");
                false
            }
        }
    }

    /// Signs and POSTs the event once.
    async fn call(&self, endpoint: &EndpointRow, job: &DeliveryJob) -> CallOutcome {
        let failed = |error: String| CallOutcome {
            status_code: None,
            latency_ms: 0,
            error: Some(error),
        };
        let url = match target::check_form(&endpoint.url, self.allow_private) {
            Ok(u) => u,
            Err(m) => return failed(format!("url refused: {m}")),
        };
        let keys = match self.signing_keys(endpoint) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(endpoint_id = %endpoint.id, error = %e, "cannot open a webhook signing secret");
                return failed(
                    "the signing secret cannot be opened (operator: check ENCRYPTION_SECRET)"
                        .into(),
                );
            }
        };
        let body = match serde_json::to_vec(&job.payload) {
            Ok(b) => b,
            Err(e) => return failed(format!("payload: {e}")),
        };
        let webhook_id = webhook_id(job);
        let timestamp = Utc::now().timestamp();
        let signature = signing::signature_header(&keys, &webhook_id, timestamp, &body);
        let started = Instant::now();
        let sent = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let latency_ms = started.elapsed().as_millis() as u64;
        match sent {
            Ok(r) if r.status().is_success() => CallOutcome {
                status_code: Some(r.status().as_u16()),
                latency_ms,
                error: None,
            },
            Ok(r) => CallOutcome {
                status_code: Some(r.status().as_u16()),
                latency_ms,
                error: Some(format!("HTTP {}", r.status().as_u16())),
            },
            Err(e) => CallOutcome {
                status_code: None,
                latency_ms,
                error: Some(describe(&e, self.settings.timeout)),
            },
        }
    }

    /// The current key, and the previous one while its grace period lasts.
    fn signing_keys(
        &self,
        endpoint: &EndpointRow,
    ) -> Result<Vec<SigningKey>, signing::SecretError> {
        let mut keys = vec![signing::open_key(
            &self.keyring,
            &endpoint.tenant_id,
            endpoint.id,
            &endpoint.secret,
        )?];
        if let (Some(previous), Some(until)) = (
            &endpoint.previous_secret,
            endpoint.previous_secret_expires_at,
        ) && until > Utc::now()
        {
            keys.push(signing::open_key(
                &self.keyring,
                &endpoint.tenant_id,
                endpoint.id,
                previous,
            )?);
        }
        Ok(keys)
    }
}

/// The `webhook-id` of an event: the same on every retry and for every endpoint.
pub fn webhook_id(job: &DeliveryJob) -> String {
    format!("msg_{}", job.event_id.simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_retries_through_the_schedule_then_gives_up() {
        assert_eq!(after_attempt(true, 1, 6), AfterAttempt::Succeeded);
        assert_eq!(after_attempt(false, 1, 6), AfterAttempt::RetryIn(0));
        assert_eq!(after_attempt(false, 6, 6), AfterAttempt::RetryIn(5));
        assert_eq!(after_attempt(false, 7, 6), AfterAttempt::GaveUp);
        assert_eq!(after_attempt(true, 7, 6), AfterAttempt::Succeeded);
    }
}
