//! The delivery policy for one envelope: record, expire, resolve, attempt, then sent / retry
//! through a delay queue / fail over / fail and dead-letter. Every step is an event, and the
//! caller acks only after this returns [`Disposition::Ack`], i.e. after the writes committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backoff::backoff::Backoff;
use chrono::Utc;
use lapin::types::{AMQPValue, FieldTable, LongString};
use rand::Rng;
use serde_json::json;
use uuid::Uuid;

use super::guard::ProviderGuard;
use super::guard::policy::{Gate, HEADER_NOT_BEFORE, Position, rate_slot};
use super::resolver::{ResolvedProvider, Resolver};
use super::writer::{Record, Writer};
use crate::config::RetryPolicy;
use crate::domain::{EventKind, MessageStatus};
use crate::providers::{ErrorClass, OutboundMessage, ProviderError};
use crate::queue::envelope::{self, Rejection, ValidEnvelope};
use crate::queue::topology::{header_i64, header_str};
use crate::queue::{Publisher, Topology};
use crate::store::dead_letters;
use crate::store::messages::{ClaimOutcome, DeadLetter, NewEvent, NewMessage, StatusUpdate};
use crate::trace_context::{self, TraceContext};
use tracing::Instrument;

/// Header: attempts already made on the current provider.
pub const HEADER_ATTEMPT: &str = "x-attempt";
/// Header: position of the current provider in the resolved list.
pub const HEADER_PROVIDER_INDEX: &str = "x-provider-index";
/// Header on dead letters: why.
pub const HEADER_DEATH_REASON: &str = "x-death-reason";

/// How long a worker keeps retrying the database write that records a `sent` message before
/// it gives up and requeues the delivery (which sends it again). Well under RabbitMQ's
/// consumer timeout (30 minutes by default), so the broker does not take the delivery back
/// first.
pub const SENT_COMMIT_PATIENCE: Duration = Duration::from_secs(300);

/// What the consumer does with the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done (whatever the outcome, it is recorded): ack.
    Ack,
    /// Could not record (database or broker trouble): put it back for later.
    Requeue,
}

pub struct Deliverer {
    pub writer: Writer,
    pub resolver: Arc<Resolver>,
    pub publisher: Arc<Publisher>,
    pub topology: Topology,
    pub retry: RetryPolicy,
    pub public_url: Option<String>,
    /// Circuit breakers and rate limits (see `guard`).
    pub guard: Arc<ProviderGuard>,
    /// Recipients never sent to (see `suppression`).
    pub suppressions: Arc<super::suppression::SuppressionList>,
}

pub(crate) fn event(
    env: &ValidEnvelope,
    kind: EventKind,
    provider: Option<&ResolvedProvider>,
    detail: serde_json::Value,
) -> NewEvent {
    NewEvent {
        message_id: env.id,
        tenant_id: env.tenant_id.as_str().to_owned(),
        kind: kind.as_str(),
        provider_id: provider.map(|p| p.id),
        detail: Some(detail),
        at: Utc::now(),
    }
}

pub(crate) fn update(env: &ValidEnvelope, status: MessageStatus) -> StatusUpdate {
    StatusUpdate {
        id: env.id,
        status: status.as_str().to_owned(),
        provider_id: None,
        provider_kind: None,
        provider_message_id: None,
        attempts_inc: 0,
        last_error: None,
    }
}

/// The delay before retry number `attempt` (1-based) on the same provider: exponential from
/// the policy's base, capped, with full jitter; a provider's Retry-After is a floor, within
/// the cap. The `backoff` crate is used only as a calculator of the exponential schedule.
pub fn retry_delay(policy: &RetryPolicy, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let mut schedule = backoff::ExponentialBackoff {
        current_interval: policy.base,
        initial_interval: policy.base,
        randomization_factor: 0.0,
        multiplier: 2.0,
        max_interval: policy.max,
        max_elapsed_time: None,
        ..Default::default()
    };
    let mut ceiling = policy.base;
    for _ in 0..attempt.max(1) {
        ceiling = schedule.next_backoff().unwrap_or(policy.max);
    }
    let ceiling_ms = ceiling.as_millis().max(1) as u64;
    let jittered = Duration::from_millis(rand::rng().random_range(0..=ceiling_ms));
    let floor = retry_after.unwrap_or_default().min(policy.max);
    jittered.max(floor).min(policy.max)
}

impl Deliverer {
    /// Handles one delivery from a work queue, inside a span continuing the message's
    /// `traceparent` (from the intake, a direct publisher, or an earlier attempt), so every
    /// log line and republish of this delivery carries its trace id.
    pub async fn handle(
        &self,
        body: &[u8],
        headers: Option<&FieldTable>,
        routing_key: &str,
    ) -> Disposition {
        let incoming = header_str(headers, trace_context::HEADER);
        let trace = TraceContext::continue_from(incoming.as_deref());
        let span = trace.delivery_span();
        trace
            .scope(self.deliver(body, headers, routing_key))
            .instrument(span)
            .await
    }

    async fn deliver(
        &self,
        body: &[u8],
        headers: Option<&FieldTable>,
        routing_key: &str,
    ) -> Disposition {
        let env = match envelope::decode(body) {
            Ok(env) => env,
            Err(rejection) => return self.reject(body, rejection, routing_key).await,
        };
        let claim = NewMessage {
            id: env.id,
            tenant_id: env.tenant_id.as_str().to_owned(),
            channel: env.message.channel.as_str().to_owned(),
            recipient: env.message.to.as_str().to_owned(),
            idempotency_key: env.message.idempotency_key.clone(),
            metadata: env.message.metadata.clone(),
            ttl_seconds: env.message.ttl_seconds.map(|t| t as i64),
            created_at: env.created_at,
        };
        match self.writer.claim(claim).await {
            Err(e) => {
                tracing::warn!(message_id = %env.id, error = %e, "could not record message; will retry");
                return Disposition::Requeue;
            }
            Ok(ClaimOutcome::Duplicate { of }) => {
                tracing::info!(message_id = %env.id, duplicate_of = ?of, "duplicate send dropped (idempotency key or id already recorded)");
                metrics::counter!("communication_duplicates_total").increment(1);
                return Disposition::Ack;
            }
            Ok(ClaimOutcome::Existing { status, tenant_id }) => {
                if tenant_id != env.tenant_id.as_str() {
                    let rejection = Rejection {
                        reason: "id: already used by another tenant's message".into(),
                        id: None,
                        tenant_id: Some(env.tenant_id.clone()),
                        channel: None,
                        to: None,
                    };
                    return self.reject(body, rejection, routing_key).await;
                }
                let final_already = MessageStatus::parse(&status)
                    .map(|s| s.is_final())
                    .unwrap_or(true);
                if final_already {
                    tracing::info!(message_id = %env.id, status = %status, "message already final; not sending again");
                    return Disposition::Ack;
                }
            }
            Ok(ClaimOutcome::New) => {}
        }
        tracing::debug!(message_id = %env.id, channel = env.message.channel.as_str(), "delivery started");
        if let Some(expires_at) = env.message.expires_at(env.created_at)
            && Utc::now() >= expires_at
        {
            let record = Record {
                update: Some(StatusUpdate {
                    last_error: Some("expired before it could be sent".into()),
                    ..update(&env, MessageStatus::Expired)
                }),
                events: vec![event(
                    &env,
                    EventKind::Expired,
                    None,
                    json!({"ttl_seconds": env.message.ttl_seconds, "expired_at": expires_at}),
                )],
                dead_letter: None,
            };
            metrics::counter!("communication_deliveries_total", "channel" => env.message.channel.as_str(), "kind" => "none", "outcome" => "expired").increment(1);
            return self.commit(record).await;
        }
        if let Some(suppressed) = self.end_if_suppressed(&env).await {
            return suppressed;
        }
        if let Some(waiting) = self.wait_until_due(&env, body, headers).await {
            return waiting;
        }
        let providers = match self
            .resolver
            .resolve(
                env.tenant_id.as_str(),
                env.message.channel,
                env.message.provider_id,
            )
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(message_id = %env.id, error = %e, "could not resolve providers; will retry");
                return Disposition::Requeue;
            }
        };
        let mut index = header_i64(headers, HEADER_PROVIDER_INDEX)
            .unwrap_or(0)
            .max(0) as usize;
        let mut attempts_done = header_i64(headers, HEADER_ATTEMPT).unwrap_or(0).max(0) as u32;
        // A rate-limit token this message already holds (taken before it was delayed).
        let mut token_held = rate_slot(headers);
        if providers.is_empty() {
            let reason = match env.message.provider_id {
                Some(id) => format!(
                    "provider {id} is not an enabled {} provider of this tenant",
                    env.message.channel
                ),
                None => format!(
                    "no enabled {} provider is configured for this tenant or the platform",
                    env.message.channel
                ),
            };
            return self.fail(&env, body, routing_key, None, reason, true).await;
        }
        loop {
            let Some(provider) = providers.get(index) else {
                return self
                    .fail(
                        &env,
                        body,
                        routing_key,
                        None,
                        "every provider was tried".into(),
                        true,
                    )
                    .await;
            };
            let token_reserved = token_held.take() == Some(provider.id);
            let pass = match self
                .gate(
                    &env,
                    body,
                    routing_key,
                    Position {
                        providers: &providers,
                        index,
                        attempts_done,
                    },
                    token_reserved,
                )
                .await
            {
                Gate::Go(pass) => pass,
                Gate::Next => {
                    index += 1;
                    attempts_done = 0;
                    continue;
                }
                Gate::Done(disposition) => return disposition,
            };
            let attempt_no = attempts_done + 1;
            let before = Record {
                update: Some(StatusUpdate {
                    provider_id: Some(provider.id),
                    provider_kind: Some(provider.kind.as_str().to_owned()),
                    attempts_inc: 1,
                    ..update(&env, MessageStatus::Sending)
                }),
                events: vec![event(
                    &env,
                    EventKind::Attempt,
                    Some(provider),
                    json!({"provider": provider.name, "kind": provider.kind, "attempt": attempt_no}),
                )],
                dead_letter: None,
            };
            if self.commit(before).await == Disposition::Requeue {
                self.guard.release(provider.id, &pass).await;
                return Disposition::Requeue;
            }
            let outbound = OutboundMessage {
                id: env.id,
                tenant_id: env.tenant_id.as_str(),
                channel: env.message.channel,
                to: &env.message.to,
                content: &env.message.content,
                metadata: env.message.metadata.as_ref(),
                status_callback: self
                    .public_url
                    .as_ref()
                    .map(|base| format!("{base}/v1/webhooks/{}/{}", provider.kind, provider.id)),
            };
            let started = Instant::now();
            let result = provider.adapter.send(&outbound).await;
            let latency_ms = started.elapsed().as_millis() as u64;
            metrics::histogram!("communication_provider_call_seconds", "kind" => provider.kind.as_str())
                .record(started.elapsed().as_secs_f64());
            let open_until = match &result {
                Err(e) if !matches!(e.class, ErrorClass::RecipientPermanent) => {
                    match self.note_failure(&env, provider, &pass).await {
                        Ok(open) => open,
                        Err(disposition) => return disposition,
                    }
                }
                _ => {
                    // Sent, or the recipient refused: the provider itself works.
                    self.guard.record_healthy(provider.id, &pass).await;
                    None
                }
            };
            let has_next = providers.get(index + 1).is_some();
            match result {
                Ok(receipt) => {
                    let record = Record {
                        update: Some(StatusUpdate {
                            provider_message_id: receipt.provider_message_id.clone(),
                            ..update(&env, MessageStatus::Sent)
                        }),
                        events: vec![event(
                            &env,
                            EventKind::Sent,
                            Some(provider),
                            json!({"provider": provider.name, "kind": provider.kind, "latency_ms": latency_ms,
                                   "provider_message_id": receipt.provider_message_id}),
                        )],
                        dead_letter: None,
                    };
                    metrics::counter!("communication_deliveries_total", "channel" => env.message.channel.as_str(), "kind" => provider.kind.as_str(), "outcome" => "sent").increment(1);
                    let accepted_to_sent =
                        (Utc::now() - env.created_at).num_milliseconds().max(0) as f64 / 1000.0;
                    metrics::histogram!("communication_accept_to_sent_seconds")
                        .record(accepted_to_sent);
                    tracing::debug!(message_id = %env.id, provider = %provider.name, kind = %provider.kind, latency_ms, "message sent");
                    return self.commit_sent(record).await;
                }
                Err(err) => {
                    tracing::info!(message_id = %env.id, provider = %provider.name, kind = %provider.kind,
                        class = err.class.as_str(), error = %err.message, "attempt failed");
                    match err.class {
                        ErrorClass::RecipientPermanent => {
                            self.suppress_refused_recipient(&env, provider, &err).await;
                            return self
                                .fail(
                                    &env,
                                    body,
                                    routing_key,
                                    Some(provider),
                                    describe(&err),
                                    false,
                                )
                                .await;
                        }
                        // With the breaker open, retrying here is pointless while another
                        // provider is left: fail over now (below).
                        ErrorClass::Transient { retry_after }
                            if attempt_no < self.retry.attempts_per_provider
                                && !(open_until.is_some() && has_next) =>
                        {
                            return self
                                .schedule_retry(
                                    &env,
                                    body,
                                    routing_key,
                                    provider,
                                    index,
                                    attempt_no,
                                    retry_after,
                                    &err,
                                    latency_ms,
                                    open_until,
                                )
                                .await;
                        }
                        _ => {
                            // Provider-permanent, or transient with the budget spent: next one.
                            let next = providers.get(index + 1);
                            let why = describe(&err);
                            let mut events = vec![];
                            if let Some(next) = next {
                                events.push(event(
                                    &env,
                                    EventKind::Failover,
                                    Some(provider),
                                    mark_unknown_outcome(
                                        json!({"from": provider.name, "to": next.name, "reason": why,
                                               "class": err.class.as_str(), "latency_ms": latency_ms}),
                                        provider,
                                        &err,
                                    ),
                                ));
                                metrics::counter!("communication_failovers_total", "kind" => provider.kind.as_str()).increment(1);
                                let record = Record {
                                    update: Some(StatusUpdate {
                                        last_error: Some(why),
                                        ..update(&env, MessageStatus::Sending)
                                    }),
                                    events,
                                    dead_letter: None,
                                };
                                if self.commit(record).await == Disposition::Requeue {
                                    return Disposition::Requeue;
                                }
                                index += 1;
                                attempts_done = 0;
                                continue;
                            }
                            return self
                                .fail(&env, body, routing_key, Some(provider), why, true)
                                .await;
                        }
                    }
                }
            }
        }
    }

    pub(crate) async fn commit(&self, record: Record) -> Disposition {
        match self.writer.record(record).await {
            Ok(()) => Disposition::Ack,
            Err(e) => {
                tracing::warn!(error = %e, "could not record delivery step; will retry");
                Disposition::Requeue
            }
        }
    }

    /// Commits the record of a send the provider accepted. Requeueing on a database error
    /// would call the provider again (a duplicate wherever it takes no idempotency key), so
    /// the outcome, which is known, is held instead: the delivery stays unacked and the
    /// write is retried with backoff for up to [`SENT_COMMIT_PATIENCE`]; only then is it
    /// requeued (see docs/delivery.md, "Delivery guarantees").
    async fn commit_sent(&self, record: Record) -> Disposition {
        let give_up = Instant::now() + SENT_COMMIT_PATIENCE;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.writer.record(record.clone()).await {
                Ok(()) => return Disposition::Ack,
                Err(e) if Instant::now() + pause < give_up => {
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64,
                        "could not record a sent message; retrying the write, not the send");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not record a sent message in time; requeueing it");
                    return Disposition::Requeue;
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn schedule_retry(
        &self,
        env: &ValidEnvelope,
        body: &[u8],
        routing_key: &str,
        provider: &ResolvedProvider,
        index: usize,
        attempt_no: u32,
        retry_after: Option<Duration>,
        err: &ProviderError,
        latency_ms: u64,
        open_until: Option<i64>,
    ) -> Disposition {
        // The breaker is open (this is the last provider): wait out the cool-down.
        let not_before = open_until.filter(|until| *until > Utc::now().timestamp_millis());
        let wanted = match not_before {
            Some(until) => {
                Duration::from_millis((until - Utc::now().timestamp_millis()).max(0) as u64)
            }
            None => retry_delay(&self.retry, attempt_no, retry_after),
        };
        let tier = self.topology.tier_for(wanted);
        let delay_ms = match not_before {
            Some(_) => wanted.as_millis() as u64,
            None => tier.as_millis() as u64,
        };
        let mut headers = FieldTable::default();
        headers.insert(
            HEADER_ATTEMPT.into(),
            AMQPValue::LongLongInt(i64::from(attempt_no)),
        );
        headers.insert(
            HEADER_PROVIDER_INDEX.into(),
            AMQPValue::LongLongInt(index as i64),
        );
        if let Some(until) = not_before {
            headers.insert(HEADER_NOT_BEFORE.into(), AMQPValue::LongLongInt(until));
        }
        let queue = self.topology.delay_queue(env.message.channel, tier);
        let _ = routing_key;
        // Record first, then publish: if the publish fails the delivery is requeued and tried
        // again, rather than leaving a delayed copy running beside a redelivered original.
        let why = describe(err);
        let recorded = self
            .commit(Record {
                update: Some(StatusUpdate {
                    last_error: Some(why.clone()),
                    ..update(env, MessageStatus::Sending)
                }),
                events: vec![event(
                    env,
                    EventKind::RetryScheduled,
                    Some(provider),
                    mark_unknown_outcome(
                        json!({"provider": provider.name, "attempt": attempt_no, "delay_ms": delay_ms,
                               "reason": why, "latency_ms": latency_ms}),
                        provider,
                        err,
                    ),
                )],
                dead_letter: None,
            })
            .await;
        if recorded == Disposition::Requeue {
            return Disposition::Requeue;
        }
        if let Err(e) = self
            .publisher
            .publish("", &queue, body, headers, Some(&env.id.to_string()))
            .await
        {
            tracing::warn!(message_id = %env.id, error = %e, "could not schedule retry; will retry delivery");
            return Disposition::Requeue;
        }
        metrics::counter!("communication_retries_total", "kind" => provider.kind.as_str())
            .increment(1);
        Disposition::Ack
    }

    /// Marks the message failed; with `dead_letter`, also sends the envelope to `{ns}.dead`.
    pub(crate) async fn fail(
        &self,
        env: &ValidEnvelope,
        body: &[u8],
        routing_key: &str,
        provider: Option<&ResolvedProvider>,
        reason: String,
        dead_letter: bool,
    ) -> Disposition {
        if dead_letter
            && let Err(e) = self
                .publish_dead(
                    body,
                    &reason,
                    Some(env.id),
                    Some(env.tenant_id.as_str()),
                    routing_key,
                )
                .await
        {
            tracing::warn!(message_id = %env.id, error = %e, "could not dead-letter; will retry delivery");
            return Disposition::Requeue;
        }
        let mut events = vec![event(
            env,
            EventKind::Failed,
            provider,
            json!({"reason": reason}),
        )];
        if dead_letter {
            events.push(event(
                env,
                EventKind::DeadLettered,
                provider,
                json!({"reason": reason}),
            ));
        }
        metrics::counter!("communication_deliveries_total", "channel" => env.message.channel.as_str(),
            "kind" => provider.map(|p| p.kind.as_str()).unwrap_or("none"), "outcome" => "failed").increment(1);
        self.commit(Record {
            update: Some(StatusUpdate {
                last_error: Some(reason.clone()),
                ..update(env, MessageStatus::Failed)
            }),
            events,
            dead_letter: dead_letter.then(|| DeadLetter {
                message_id: Some(env.id),
                tenant_id: Some(env.tenant_id.as_str().to_owned()),
                reason,
                kind: dead_letters::KIND_FAILED,
                channel: Some(env.message.channel.as_str().to_owned()),
                routing_key: Some(routing_key.to_owned()),
                body: Some(body.to_vec()),
            }),
        })
        .await
    }

    async fn publish_dead(
        &self,
        body: &[u8],
        reason: &str,
        id: Option<Uuid>,
        tenant: Option<&str>,
        routing_key: &str,
    ) -> Result<(), crate::queue::PublishError> {
        let mut headers = FieldTable::default();
        let text = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()));
        headers.insert(HEADER_DEATH_REASON.into(), text(reason));
        headers.insert("x-original-routing-key".into(), text(routing_key));
        if let Some(t) = tenant {
            headers.insert("x-tenant-id".into(), text(t));
        }
        metrics::counter!("communication_dead_letters_total").increment(1);
        self.publisher
            .publish(
                &self.topology.dead_exchange(),
                "",
                body,
                headers,
                id.map(|i| i.to_string()).as_deref(),
            )
            .await
    }

    /// An envelope that failed validation: dead-lettered with the reason and recorded.
    async fn reject(&self, body: &[u8], rejection: Rejection, routing_key: &str) -> Disposition {
        tracing::warn!(message_id = ?rejection.id, tenant_id = ?rejection.tenant_id.as_ref().map(|t| t.as_str()),
            reason = %rejection.reason, "invalid envelope dead-lettered");
        if let Err(e) = self
            .publish_dead(
                body,
                &rejection.reason,
                rejection.id,
                rejection.tenant_id.as_ref().map(|t| t.as_str()),
                routing_key,
            )
            .await
        {
            tracing::warn!(error = %e, "could not dead-letter an invalid envelope; will retry");
            return Disposition::Requeue;
        }
        match self
            .writer
            .record_rejection(rejection, body, routing_key)
            .await
        {
            Ok(()) => Disposition::Ack,
            Err(e) => {
                tracing::warn!(error = %e, "could not record an invalid envelope; will retry");
                Disposition::Requeue
            }
        }
    }
}

/// A call that timed out or broke after the request left may have sent the message. The
/// event says so, and whether the provider deduplicates on our id (then calling it again is
/// safe); otherwise the retry or failover that follows may deliver a second copy. See
/// docs/delivery.md, "Where duplicates are only unlikely".
fn mark_unknown_outcome(
    mut detail: serde_json::Value,
    provider: &ResolvedProvider,
    err: &ProviderError,
) -> serde_json::Value {
    if err.outcome_unknown {
        let deduplicates = provider.adapter.deduplicates();
        detail["outcome_unknown"] = json!(true);
        detail["provider_deduplicates"] = json!(deduplicates);
        metrics::counter!("communication_unknown_outcomes_total", "kind" => provider.kind.as_str(),
            "deduplicates" => if deduplicates { "true" } else { "false" })
        .increment(1);
    }
    detail
}

fn describe(err: &ProviderError) -> String {
    match &err.code {
        Some(code) => format!("{} (code {code})", err.message),
        None => err.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_exponentially_within_the_cap() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            attempts_per_provider: 10,
        };
        for _ in 0..200 {
            assert!(retry_delay(&policy, 1, None) <= Duration::from_millis(100));
            assert!(retry_delay(&policy, 3, None) <= Duration::from_millis(400));
            assert!(retry_delay(&policy, 9, None) <= Duration::from_millis(1000));
            assert!(
                retry_delay(&policy, 2, Some(Duration::from_millis(700)))
                    >= Duration::from_millis(700)
            );
            assert!(
                retry_delay(&policy, 2, Some(Duration::from_secs(60)))
                    <= Duration::from_millis(1000)
            );
        }
    }
}
