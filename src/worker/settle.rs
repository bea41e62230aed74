//! Carrying out what the policy decided ([`Next`]), in one place: the events and status it
//! writes, the delay queue or dead letter it publishes to, and whether the delivery is
//! acked. The order is always record first, then publish, so a failed publish requeues the
//! delivery rather than leaving a delayed copy beside a redelivered original; a dead letter
//! is the exception (see `dead_letter`, the rest of [`Settler`]).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;

use std::sync::Arc;

use sqlx::PgPool;

use super::policy::{Delay, Next, Outcome};
use super::resolver::ResolvedProvider;
use super::writer::{Record, Writer};
use crate::crypto::Keyring;
use crate::domain::{EventKind, MessageStatus};
use crate::providers::ProviderError;
use crate::queue::envelope::ValidEnvelope;
use crate::queue::retry_state::RetryState;
use crate::queue::{Publisher, Topology};
use crate::store::messages::{NewEvent, StatusUpdate};

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

/// Everything that records and publishes a delivery's steps: the doing half of the policy.
pub struct Settler {
    pub writer: Writer,
    pub publisher: Arc<Publisher>,
    pub topology: Topology,
    /// Seals dead-letter bodies (they can hold a one-time code).
    pub keyring: Arc<Keyring>,
    /// For the rare unbatched writes: invalid envelopes, dead-letter row ids.
    pub pool: PgPool,
}

/// The delivery at hand: the envelope as received and decoded.
#[derive(Clone, Copy)]
pub(crate) struct Delivery<'a> {
    pub env: &'a ValidEnvelope,
    pub body: &'a [u8],
    pub routing_key: &'a str,
}

/// The step a decision is about.
pub(crate) struct Step<'a> {
    pub outcome: Outcome<'a>,
    /// The provider at hand (none for an expiry found before resolving providers).
    pub provider: Option<&'a ResolvedProvider>,
    /// Its position in the list, and the one after it.
    pub index: usize,
    pub next_provider: Option<&'a ResolvedProvider>,
    /// Events to record ahead of the decision's own (a breaker this failure opened).
    pub before: Vec<NewEvent>,
}

impl<'a> Step<'a> {
    pub fn new(outcome: Outcome<'a>, provider: Option<&'a ResolvedProvider>) -> Step<'a> {
        Step {
            outcome,
            provider,
            index: 0,
            next_provider: None,
            before: Vec::new(),
        }
    }
}

/// Where the delivery stands once a decision is carried out.
pub(crate) enum Settled {
    Done(Disposition),
    /// Failed over (recorded): try the next provider now.
    NextProvider,
}

impl Settled {
    pub fn disposition(self) -> Disposition {
        match self {
            Settled::Done(d) => d,
            // Only a failover asks for another provider; the caller handles it.
            Settled::NextProvider => Disposition::Requeue,
        }
    }
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

pub(crate) fn instant(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

impl Settler {
    /// Carries out `next` for `step`.
    pub(crate) async fn apply(&self, d: &Delivery<'_>, step: Step<'_>, next: Next) -> Settled {
        let env = d.env;
        let Some(provider) = step.provider else {
            return Settled::Done(match next {
                Next::Expire => self.expire(d, &step.outcome).await,
                _ => {
                    let reason = "no provider to deliver through".to_owned();
                    self.fail(d, None, reason, true, step.before).await
                }
            });
        };
        let mut events = step.before;
        // A breaker that held the provider back is an event whatever follows.
        if let Outcome::CircuitOpen { until_ms, probing } = step.outcome {
            events.push(event(
                env,
                EventKind::CircuitOpen,
                Some(provider),
                json!({"provider": provider.name, "kind": provider.kind, "action": "skipped",
                       "state": if probing { "half_open" } else { "open" }, "until": instant(until_ms)}),
            ));
        }
        let disposition = match next {
            Next::Sent => {
                let (provider_message_id, latency_ms) = match step.outcome {
                    Outcome::Sent {
                        provider_message_id,
                        latency_ms,
                    } => (provider_message_id, latency_ms),
                    _ => (None, 0),
                };
                events.push(event(
                    env,
                    EventKind::Sent,
                    Some(provider),
                    json!({"provider": provider.name, "kind": provider.kind, "latency_ms": latency_ms,
                           "provider_message_id": provider_message_id}),
                ));
                let record = Record {
                    update: Some(StatusUpdate {
                        provider_message_id: provider_message_id.map(str::to_owned),
                        ..update(env, MessageStatus::Sent)
                    }),
                    events,
                    dead_letter: None,
                };
                metrics::counter!("communication_deliveries_total", "channel" => env.message.channel.as_str(), "kind" => provider.kind.as_str(), "outcome" => "sent").increment(1);
                let accepted_to_sent =
                    (Utc::now() - env.created_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::histogram!("communication_accept_to_sent_seconds")
                    .record(accepted_to_sent);
                tracing::debug!(message_id = %env.id, provider = %provider.name, kind = %provider.kind, latency_ms, "message sent");
                self.commit_sent(record).await
            }
            Next::Retry(delay) | Next::Wait(delay) => {
                self.defer(d, provider, &step.outcome, step.index, delay, events)
                    .await
            }
            Next::FailOver => {
                let to = step.next_provider.map(|p| p.name.as_str());
                let (detail, last_error) = match step.outcome {
                    Outcome::Failed {
                        error, latency_ms, ..
                    } => {
                        let why = describe(error);
                        let detail = json!({"from": provider.name, "to": to, "reason": why,
                                            "class": error.class.as_str(), "latency_ms": latency_ms});
                        (mark_unknown_outcome(detail, provider, error), Some(why))
                    }
                    _ => (
                        json!({"from": provider.name, "to": to, "reason": "circuit open",
                               "class": "circuit_open"}),
                        None,
                    ),
                };
                events.push(event(env, EventKind::Failover, Some(provider), detail));
                metrics::counter!("communication_failovers_total", "kind" => provider.kind.as_str())
                    .increment(1);
                let record = Record {
                    update: Some(StatusUpdate {
                        last_error,
                        ..update(env, MessageStatus::Sending)
                    }),
                    events,
                    dead_letter: None,
                };
                return match self.commit(record).await {
                    Disposition::Ack => Settled::NextProvider,
                    Disposition::Requeue => Settled::Done(Disposition::Requeue),
                };
            }
            Next::Fail { dead_letter } => {
                let reason = match step.outcome {
                    Outcome::Failed { error, .. } => describe(error),
                    _ => format!("circuit open for provider {}", provider.name),
                };
                self.fail(d, Some(provider), reason, dead_letter, events)
                    .await
            }
            Next::Expire => self.expire(d, &step.outcome).await,
        };
        Settled::Done(disposition)
    }

    async fn expire(&self, d: &Delivery<'_>, outcome: &Outcome<'_>) -> Disposition {
        let env = d.env;
        let expired_at = match outcome {
            Outcome::Expired { at } => Some(*at),
            _ => None,
        };
        let record = Record {
            update: Some(StatusUpdate {
                last_error: Some("expired before it could be sent".into()),
                ..update(env, MessageStatus::Expired)
            }),
            events: vec![event(
                env,
                EventKind::Expired,
                None,
                json!({"ttl_seconds": env.message.ttl_seconds, "expired_at": expired_at}),
            )],
            dead_letter: None,
        };
        metrics::counter!("communication_deliveries_total", "channel" => env.message.channel.as_str(), "kind" => "none", "outcome" => "expired").increment(1);
        self.commit(record).await
    }

    /// Records a retry or wait (`retry_scheduled`), then sends the envelope to wait in the
    /// delay queue of its tier, carrying its [`RetryState`].
    async fn defer(
        &self,
        d: &Delivery<'_>,
        provider: &ResolvedProvider,
        outcome: &Outcome<'_>,
        index: usize,
        delay: Delay,
        mut events: Vec<NewEvent>,
    ) -> Disposition {
        let env = d.env;
        // A wait with an exact end is reported as asked; a backoff as the tier that serves it.
        let delay_ms = match delay.until_ms {
            Some(_) => delay.wait.as_millis() as u64,
            None => self.topology.tier_for(delay.wait).as_millis() as u64,
        };
        let (detail, last_error) = match *outcome {
            Outcome::Failed {
                error, latency_ms, ..
            } => {
                let why = describe(error);
                let detail = json!({"provider": provider.name, "attempt": delay.attempts,
                                    "delay_ms": delay_ms, "reason": why, "latency_ms": latency_ms});
                metrics::counter!("communication_retries_total", "kind" => provider.kind.as_str())
                    .increment(1);
                (mark_unknown_outcome(detail, provider, error), Some(why))
            }
            Outcome::CircuitOpen { probing: true, .. } => (
                json!({"provider": provider.name, "reason": "circuit half-open: probe in progress",
                       "delay_ms": delay_ms}),
                None,
            ),
            Outcome::CircuitOpen { .. } => (
                json!({"provider": provider.name, "reason": "circuit open",
                       "attempt": delay.attempts, "delay_ms": delay_ms}),
                Some(format!("circuit open for provider {}", provider.name)),
            ),
            _ => (
                json!({"provider": provider.name, "reason": "rate limited", "delay_ms": delay_ms,
                       "rate_per_second": provider.rate_per_second}),
                None,
            ),
        };
        events.push(event(
            env,
            EventKind::RetryScheduled,
            Some(provider),
            detail,
        ));
        let recorded = self
            .commit(Record {
                update: Some(StatusUpdate {
                    last_error,
                    ..update(env, MessageStatus::Sending)
                }),
                events,
                dead_letter: None,
            })
            .await;
        if recorded == Disposition::Requeue {
            return Disposition::Requeue;
        }
        let state = RetryState {
            provider_index: index,
            attempts: delay.attempts,
            not_before: delay.until_ms,
            rate_slot: delay.rate_slot.then_some(provider.id),
        };
        self.publish_delayed(d, delay.wait, &state).await
    }

    /// Sends the envelope to the delay queue whose tier serves `wait`.
    pub(crate) async fn publish_delayed(
        &self,
        d: &Delivery<'_>,
        wait: Duration,
        state: &RetryState,
    ) -> Disposition {
        let env = d.env;
        let queue = self
            .topology
            .delay_queue(env.message.channel, self.topology.tier_for(wait));
        let published = self
            .publisher
            .publish(
                "",
                &queue,
                d.body,
                state.to_headers(),
                Some(&env.id.to_string()),
            )
            .await;
        match published {
            Ok(()) => Disposition::Ack,
            Err(e) => {
                tracing::warn!(message_id = %env.id, error = %e, "could not delay message; will retry delivery");
                Disposition::Requeue
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
