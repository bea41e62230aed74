//! One delivery from a work queue, from decode to the step that settles it: record the
//! message, expire it, wait out an `x-not-before`, resolve its providers, then for the
//! provider at hand ask the guard, record the attempt, call it, and let the policy
//! (`policy::decide`) say what is next; `settle` carries that out. The caller acks only
//! after this returns [`Disposition::Ack`], i.e. after the writes committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;
use tracing::Instrument;

use super::guard::{Admission, AfterFailure, Pass, ProviderGuard};
use super::policy::{Clock, Outcome, Position, decide};
use super::resolver::{ResolvedProvider, Resolver};
use super::settle::{Delivery, Disposition, Settled, Settler, Step, event, instant, update};
use super::writer::{self, Record, WriteError};
use crate::config::RetryPolicy;
use crate::domain::{EventKind, MessageStatus};
use crate::providers::{ErrorClass, OutboundMessage, ProviderError, SendReceipt};
use crate::queue::envelope::{self, Rejection, ValidEnvelope};
use crate::queue::retry_state::RetryState;
use crate::store::messages::{ClaimOutcome, NewEvent, NewMessage, StatusUpdate};
use crate::trace_context::{self, TraceContext};

/// Waits this short (the rest of an `x-not-before`, a token reserved a moment ahead) are
/// waited out in process rather than through a delay queue.
const MAX_INLINE_WAIT: Duration = Duration::from_millis(20);
/// An `x-not-before` further ahead than this is not ours (no cool-down or reservation reaches
/// it): ignored rather than parking the message for days.
const MAX_NOT_BEFORE: Duration = Duration::from_secs(48 * 3600);

/// Runs deliveries: the steps here, the decisions in `policy`, the doing in [`Settler`].
pub struct Deliverer {
    pub settler: Settler,
    pub resolver: Arc<Resolver>,
    pub retry: RetryPolicy,
    pub public_url: Option<String>,
    /// Circuit breakers and rate limits (see `guard`).
    pub guard: Arc<ProviderGuard>,
    /// Recipients never sent to (see `suppression`).
    pub suppressions: Arc<super::suppression::SuppressionList>,
    /// Ids being delivered by this process right now.
    pub in_flight: InFlight,
}

/// The ids this process is delivering. A second copy of a message that arrives while the first
/// is still in progress here (the router republished it after a crash before its ack, or a
/// publisher sent it twice) is acked and dropped: the first copy settles the message, and if
/// it is requeued it comes back itself. (A copy that arrives after the first settled is caught
/// by the database claim, as before.)
#[derive(Default)]
pub struct InFlight(std::sync::Mutex<std::collections::HashSet<uuid::Uuid>>);

/// Removes its id from [`InFlight`] when the delivery ends.
pub struct InFlightGuard<'a> {
    set: &'a InFlight,
    id: uuid::Uuid,
}

impl InFlight {
    /// `None` if `id` is already in progress here.
    pub fn enter(&self, id: uuid::Uuid) -> Option<InFlightGuard<'_>> {
        let fresh = self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
        // The guard is made only for a fresh id, and after the lock is released: its drop
        // takes the lock again.
        fresh.then(|| InFlightGuard { set: self, id })
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        let mut ids = self.set.0.lock().unwrap_or_else(|p| p.into_inner());
        ids.remove(&self.id);
    }
}

/// What calling the provider at hand came to, before the policy decides.
enum Tried {
    /// The guard held the provider back (an open breaker, a rate limit): not called.
    HeldBack(Outcome<'static>),
    /// Called. `opened`: this failure opened the breaker (its event, to record first).
    Called {
        result: Result<SendReceipt, ProviderError>,
        latency_ms: u64,
        breaker_open_until: Option<i64>,
        opened: Option<NewEvent>,
    },
    /// The attempt could not be recorded: the provider was not called.
    NotRecorded,
    /// Claiming the message (with the attempt) found it must not be sent: a duplicate, an
    /// already final message. The provider was not called.
    Stopped(Disposition),
}

/// The `traceparent` header of a delivery, borrowed (an invalid one starts a new trace).
fn traceparent(headers: Option<&FieldTable>) -> Option<&str> {
    match headers?.inner().get(trace_context::HEADER)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// The row that records a message on first sight.
fn new_message(env: &ValidEnvelope) -> NewMessage {
    NewMessage {
        id: env.id,
        tenant_id: env.tenant_id.as_str().to_owned(),
        channel: env.message.channel.as_str().to_owned(),
        recipient: env.message.to.as_str().to_owned(),
        idempotency_key: env.message.idempotency_key.clone(),
        metadata: env.message.metadata.clone(),
        ttl_seconds: env.message.ttl_seconds.map(|t| t as i64),
        created_at: env.created_at,
    }
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
        let trace = TraceContext::continue_from(traceparent(headers));
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
            Err(rejection) => return self.settler.reject(body, rejection, routing_key).await,
        };
        let Some(_in_flight) = self.in_flight.enter(env.id) else {
            tracing::info!(message_id = %env.id, "duplicate delivery dropped (the same id is in progress here)");
            metrics::counter!("communication_duplicates_total").increment(1);
            return Disposition::Ack;
        };
        let d = Delivery {
            env: &env,
            body,
            routing_key,
        };
        // The message is recorded ("claimed") together with its first step's rows: usually
        // the attempt, in one commit. Steps that settle it before any attempt claim it alone.
        let mut pending = Some(new_message(&env));
        tracing::debug!(message_id = %env.id, channel = env.message.channel.as_str(), "delivery started");
        if let Some(at) = env.message.expires_at(env.created_at)
            && Utc::now() >= at
        {
            if let Some(settled) = self.claim_now(&d, &mut pending).await {
                return settled;
            }
            let outcome = Outcome::Expired { at };
            let next = decide(&outcome, Position::default(), &self.retry, Clock::now());
            return self
                .settler
                .apply(&d, Step::new(outcome, None), next)
                .await
                .disposition();
        }
        if let Some(suppressed) = self.end_if_suppressed(&d, &mut pending).await {
            return suppressed;
        }
        let state = RetryState::from_headers(headers);
        if state.not_before.is_some()
            && let Some(settled) = self.claim_now(&d, &mut pending).await
        {
            return settled;
        }
        if let Some(waiting) = self.wait_until_due(&d, &state).await {
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
            if let Some(settled) = self.claim_now(&d, &mut pending).await {
                return settled;
            }
            return self.settler.fail(&d, None, reason, true, Vec::new()).await;
        }
        let mut at = Position {
            index: state.provider_index,
            providers: providers.len(),
            attempts_done: state.attempts,
        };
        // A rate-limit token this message already holds (taken before it was delayed).
        let mut token_held = state.rate_slot;
        loop {
            let Some(provider) = providers.get(at.index) else {
                if let Some(settled) = self.claim_now(&d, &mut pending).await {
                    return settled;
                }
                let reason = "every provider was tried".to_owned();
                return self.settler.fail(&d, None, reason, true, Vec::new()).await;
            };
            let token_reserved = token_held.take() == Some(provider.id);
            let mut tried = self
                .attempt(&d, &mut pending, provider, at, token_reserved)
                .await;
            if let Tried::Called { result: Err(e), .. } = &tried {
                self.suppress_refused_recipient(&env, provider, e).await;
            }
            let opened = match &mut tried {
                Tried::Called { opened, .. } => opened.take(),
                _ => None,
            };
            let outcome = match &tried {
                Tried::NotRecorded => return Disposition::Requeue,
                Tried::Stopped(disposition) => return *disposition,
                Tried::HeldBack(outcome) => {
                    if let Some(settled) = self.claim_now(&d, &mut pending).await {
                        return settled;
                    }
                    *outcome
                }
                Tried::Called {
                    result,
                    latency_ms,
                    breaker_open_until,
                    ..
                } => match result {
                    Ok(receipt) => Outcome::Sent {
                        provider_message_id: receipt.provider_message_id.as_deref(),
                        latency_ms: *latency_ms,
                    },
                    Err(error) => Outcome::Failed {
                        error,
                        latency_ms: *latency_ms,
                        breaker_open_until: *breaker_open_until,
                    },
                },
            };
            let next = decide(&outcome, at, &self.retry, Clock::now());
            let mut step = Step::new(outcome, Some(provider));
            step.index = at.index;
            step.next_provider = providers.get(at.index + 1);
            step.before.extend(opened);
            match self.settler.apply(&d, step, next).await {
                Settled::Done(disposition) => return disposition,
                Settled::NextProvider => {
                    at.index += 1;
                    at.attempts_done = 0;
                }
            }
        }
    }

    /// Records the message now, alone, unless it is already recorded. `Some`: nothing more
    /// to do (a duplicate, an already final message, a database error, an id taken by
    /// another tenant).
    async fn claim_now(
        &self,
        d: &Delivery<'_>,
        pending: &mut Option<NewMessage>,
    ) -> Option<Disposition> {
        let claim = pending.take()?;
        let result = self.settler.writer.claim(claim).await;
        self.after_claim(d, result).await
    }

    /// Commits a step's rows, claiming the message in the same transaction when it is not
    /// recorded yet. `Err`: the rows were not written, and the delivery ends so.
    pub(crate) async fn commit_first(
        &self,
        d: &Delivery<'_>,
        pending: &mut Option<NewMessage>,
        record: Record,
    ) -> Result<(), Disposition> {
        let Some(claim) = pending.take() else {
            return match self.settler.commit(record).await {
                Disposition::Ack => Ok(()),
                requeue => Err(requeue),
            };
        };
        let result = self.settler.writer.claim_then(claim, Some(record)).await;
        let tenant = d.env.tenant_id.as_str();
        let proceeds = matches!(&result, Ok(outcome) if writer::proceeds(tenant, outcome));
        match self.after_claim(d, result).await {
            Some(stop) => Err(stop),
            // `after_claim` lets only proceeding claims through; this is the same test.
            None if proceeds => Ok(()),
            None => Err(Disposition::Requeue),
        }
    }

    /// What a claim's outcome means for the delivery. `Some`: nothing more to do.
    async fn after_claim(
        &self,
        d: &Delivery<'_>,
        result: Result<ClaimOutcome, WriteError>,
    ) -> Option<Disposition> {
        let env = d.env;
        match result {
            Err(e) => {
                tracing::warn!(message_id = %env.id, error = %e, "could not record message; will retry");
                Some(Disposition::Requeue)
            }
            Ok(ClaimOutcome::Duplicate { of }) => {
                tracing::info!(message_id = %env.id, duplicate_of = ?of, "duplicate send dropped (idempotency key or id already recorded)");
                metrics::counter!("communication_duplicates_total").increment(1);
                Some(Disposition::Ack)
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
                    return Some(self.settler.reject(d.body, rejection, d.routing_key).await);
                }
                let final_already = MessageStatus::parse(&status)
                    .map(|s| s.is_final())
                    .unwrap_or(true);
                if final_already {
                    tracing::info!(message_id = %env.id, status = %status, "message already final; not sending again");
                    return Some(Disposition::Ack);
                }
                None
            }
            Ok(ClaimOutcome::New) => None,
        }
    }

    /// A delivery that came back before its `x-not-before` (delay tiers are coarse): sent
    /// back to wait in the longest tier that does not overshoot, or for the last few
    /// milliseconds waited out here. No event: the `retry_scheduled` event already gave the
    /// whole wait. `None`: go ahead.
    async fn wait_until_due(&self, d: &Delivery<'_>, state: &RetryState) -> Option<Disposition> {
        let remaining = state.not_before? - Utc::now().timestamp_millis();
        if remaining <= 0 {
            return None;
        }
        if remaining > MAX_NOT_BEFORE.as_millis() as i64 {
            tracing::warn!(message_id = %d.env.id, "ignoring an x-not-before header too far ahead");
            return None;
        }
        let remaining = Duration::from_millis(remaining as u64);
        if remaining <= MAX_INLINE_WAIT {
            tokio::time::sleep(remaining).await;
            return None;
        }
        Some(self.settler.publish_delayed(d, remaining, state).await)
    }

    /// Asks the guard about the provider, records the attempt and calls it.
    async fn attempt(
        &self,
        d: &Delivery<'_>,
        pending: &mut Option<NewMessage>,
        provider: &ResolvedProvider,
        at: Position,
        token_reserved: bool,
    ) -> Tried {
        let env = d.env;
        let pass = match self.admit(provider, token_reserved).await {
            Admission::Go(pass) => pass,
            Admission::Open { until_ms, probing } => {
                return Tried::HeldBack(Outcome::CircuitOpen { until_ms, probing });
            }
            Admission::Limited { wait, reserved } => {
                return Tried::HeldBack(Outcome::RateLimited { wait, reserved });
            }
        };
        let before = Record {
            update: Some(StatusUpdate {
                provider_id: Some(provider.id),
                provider_kind: Some(provider.kind.as_str().to_owned()),
                attempts_inc: 1,
                ..update(env, MessageStatus::Sending)
            }),
            events: vec![event(
                env,
                EventKind::Attempt,
                Some(provider),
                json!({"provider": provider.name, "kind": provider.kind, "attempt": at.attempts_done + 1}),
            )],
            dead_letter: None,
        };
        if let Err(disposition) = self.commit_first(d, pending, before).await {
            self.guard.release(provider.id, &pass).await;
            return match disposition {
                Disposition::Requeue => Tried::NotRecorded,
                ack => Tried::Stopped(ack),
            };
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
        if let Err(e) = &result {
            tracing::info!(message_id = %env.id, provider = %provider.name, kind = %provider.kind,
                class = e.class.as_str(), error = %e.message, "attempt failed");
        }
        let (breaker_open_until, opened) = match &result {
            Err(e) if !matches!(e.class, ErrorClass::RecipientPermanent) => {
                self.note_failure(d, provider, &pass).await
            }
            _ => {
                // Sent, or the recipient refused: the provider itself works.
                self.guard.record_healthy(provider.id, &pass).await;
                (None, None)
            }
        };
        Tried::Called {
            result,
            latency_ms,
            breaker_open_until,
            opened,
        }
    }

    /// The guard's answer for the provider; a token reserved only a moment ahead is waited
    /// for here rather than through a delay queue.
    async fn admit(&self, provider: &ResolvedProvider, mut token_reserved: bool) -> Admission {
        let kind = provider.kind.as_str();
        loop {
            let admission = self
                .guard
                .admit(provider.id, provider.rate_per_second, token_reserved)
                .await;
            match admission {
                Admission::Limited { wait, reserved } => {
                    metrics::counter!("communication_rate_limited_total", "kind" => kind)
                        .increment(1);
                    if reserved && wait <= MAX_INLINE_WAIT {
                        tokio::time::sleep(wait).await;
                        token_reserved = true;
                        continue;
                    }
                }
                Admission::Open { .. } => {
                    metrics::counter!("communication_circuit_skips_total", "kind" => kind)
                        .increment(1);
                }
                Admission::Go(_) => {}
            }
            return admission;
        }
    }

    /// Reports a failed call to the guard: whether the breaker is open now (until when), and
    /// the `circuit_open` event when this failure opened it.
    async fn note_failure(
        &self,
        d: &Delivery<'_>,
        provider: &ResolvedProvider,
        pass: &Pass,
    ) -> (Option<i64>, Option<NewEvent>) {
        match self.guard.record_failure(provider.id, pass).await {
            AfterFailure::Counted { .. } => (None, None),
            AfterFailure::AlreadyOpen { until } => (Some(until), None),
            AfterFailure::Opened { until } => {
                metrics::counter!("communication_circuit_open_total", "kind" => provider.kind.as_str())
                    .increment(1);
                tracing::warn!(provider_id = %provider.id, provider = %provider.name, kind = %provider.kind,
                    probe = pass.probe, until = ?instant(until), "circuit breaker opened");
                let opened = event(
                    d.env,
                    EventKind::CircuitOpen,
                    Some(provider),
                    json!({"provider": provider.name, "kind": provider.kind, "action": "opened",
                           "until": instant(until), "after_probe": pass.probe,
                           "threshold": self.guard.settings().threshold}),
                );
                (Some(until), Some(opened))
            }
        }
    }
}

#[cfg(test)]
mod in_flight_tests {
    use super::InFlight;

    #[test]
    fn a_second_copy_is_refused_while_the_first_is_in_progress() {
        let set = InFlight::default();
        let id = uuid::Uuid::now_v7();
        let first = set.enter(id).expect("first copy");
        assert!(set.enter(id).is_none());
        assert!(
            set.enter(id).is_none(),
            "a refused copy does not release the first"
        );
        drop(first);
        assert!(set.enter(id).is_some());
    }
}
