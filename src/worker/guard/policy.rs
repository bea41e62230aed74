//! The delivery policy's side of the guard: what happens to a message when its provider's
//! breaker is open or its rate limit is reached.
//!
//! - Breaker open, another provider left: skip this one at once (events `circuit_open` and
//!   `failover` with reason "circuit open"); the provider is not called.
//! - Breaker open on the last provider: the message waits in the delay queues until about the
//!   end of the cool-down (`retry_scheduled`, reason "circuit open"), and that counts as one
//!   attempt on the provider, so a provider that never recovers still ends in `failed` and a
//!   dead letter. Half-open with another replica probing: a short wait that does not count.
//! - Over the rate limit: the message waits for its reserved token (`retry_scheduled`, reason
//!   "rate limited"); not an attempt.
//!
//! A wait is carried by the `x-not-before` header (epoch ms). Delay tiers are coarse, so a
//! message may come back early; it then takes the longest tier that does not overshoot, again,
//! and waits the last few milliseconds in process. Hops record no event: the
//! `retry_scheduled` event already gave the whole wait.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::json;
use uuid::Uuid;

use super::{Admission, AfterFailure, Pass};
use crate::domain::{EventKind, MessageStatus};
use crate::queue::envelope::ValidEnvelope;
use crate::queue::topology::{header_i64, header_str};
use crate::store::messages::{NewEvent, StatusUpdate};
use crate::worker::delivery::{
    Deliverer, Disposition, HEADER_ATTEMPT, HEADER_PROVIDER_INDEX, event, update,
};
use crate::worker::resolver::ResolvedProvider;
use crate::worker::writer::Record;

/// Header: do not attempt before this instant (epoch ms).
pub const HEADER_NOT_BEFORE: &str = "x-not-before";
/// Header: the provider whose rate-limit token this message already holds.
pub const HEADER_RATE_SLOT: &str = "x-rate-slot";
/// Waits this short are waited out in process rather than through a delay queue.
const MAX_INLINE_WAIT: Duration = Duration::from_millis(20);
/// An `x-not-before` further ahead than this is not ours (no cool-down or reservation reaches
/// it): ignored rather than parking the message for days.
const MAX_NOT_BEFORE: Duration = Duration::from_secs(48 * 3600);

/// What the policy does with the provider at hand.
pub enum Gate {
    /// Call it.
    Go(Pass),
    /// Skipped (breaker open): try the next provider.
    Next,
    /// The delivery is settled (deferred or failed): return this.
    Done(Disposition),
}

/// Where a message is in its provider list.
#[derive(Clone, Copy)]
pub struct Position<'a> {
    pub providers: &'a [ResolvedProvider],
    pub index: usize,
    /// Attempts already counted on `providers[index]`.
    pub attempts_done: u32,
}

/// A message sent back to wait in the delay queues.
struct Deferral {
    attempt: u32,
    index: usize,
    wait: Duration,
    not_before: Option<i64>,
    rate_slot: Option<Uuid>,
    events: Vec<NewEvent>,
    last_error: Option<String>,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn instant(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// The policy headers of a delayed envelope (never RabbitMQ's own `x-death` bookkeeping).
pub fn policy_headers(
    attempt: u32,
    index: usize,
    not_before: Option<i64>,
    rate_slot: Option<Uuid>,
) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(
        HEADER_ATTEMPT.into(),
        AMQPValue::LongLongInt(i64::from(attempt)),
    );
    headers.insert(
        HEADER_PROVIDER_INDEX.into(),
        AMQPValue::LongLongInt(index as i64),
    );
    if let Some(at) = not_before {
        headers.insert(HEADER_NOT_BEFORE.into(), AMQPValue::LongLongInt(at));
    }
    if let Some(slot) = rate_slot {
        headers.insert(HEADER_RATE_SLOT.into(), text(&slot.to_string()));
    }
    headers
}

/// The provider whose token a delivery already holds, if any.
pub fn rate_slot(headers: Option<&FieldTable>) -> Option<Uuid> {
    header_str(headers, HEADER_RATE_SLOT).and_then(|s| Uuid::parse_str(&s).ok())
}

impl Deliverer {
    /// A delivery that came back before its `x-not-before`: sent back to wait on (or, for the
    /// last few milliseconds, waited out here). `None`: go ahead.
    pub(crate) async fn wait_until_due(
        &self,
        env: &ValidEnvelope,
        body: &[u8],
        headers: Option<&FieldTable>,
    ) -> Option<Disposition> {
        let not_before = header_i64(headers, HEADER_NOT_BEFORE)?;
        let remaining = not_before - now_ms();
        if remaining <= 0 {
            return None;
        }
        if remaining > MAX_NOT_BEFORE.as_millis() as i64 {
            tracing::warn!(message_id = %env.id, "ignoring an x-not-before header too far ahead");
            return None;
        }
        let remaining = Duration::from_millis(remaining as u64);
        if remaining <= MAX_INLINE_WAIT {
            tokio::time::sleep(remaining).await;
            return None;
        }
        let attempt = header_i64(headers, HEADER_ATTEMPT).unwrap_or(0).max(0) as u32;
        let index = header_i64(headers, HEADER_PROVIDER_INDEX)
            .unwrap_or(0)
            .max(0) as usize;
        let headers = policy_headers(attempt, index, Some(not_before), rate_slot(headers));
        Some(self.publish_delayed(env, body, remaining, headers).await)
    }

    async fn publish_delayed(
        &self,
        env: &ValidEnvelope,
        body: &[u8],
        wait: Duration,
        headers: FieldTable,
    ) -> Disposition {
        let queue = self
            .topology
            .delay_queue(env.message.channel, self.topology.tier_for(wait));
        match self
            .publisher
            .publish("", &queue, body, headers, Some(&env.id.to_string()))
            .await
        {
            Ok(()) => Disposition::Ack,
            Err(e) => {
                tracing::warn!(message_id = %env.id, error = %e, "could not delay message; will retry delivery");
                Disposition::Requeue
            }
        }
    }

    /// Records the events, then sends the envelope to wait (record first: if the publish
    /// fails, the delivery is requeued rather than leaving a delayed copy beside it).
    async fn defer(&self, env: &ValidEnvelope, body: &[u8], d: Deferral) -> Disposition {
        let recorded = self
            .commit(Record {
                update: Some(StatusUpdate {
                    last_error: d.last_error,
                    ..update(env, MessageStatus::Sending)
                }),
                events: d.events,
                dead_letter: None,
            })
            .await;
        if recorded == Disposition::Requeue {
            return Disposition::Requeue;
        }
        let headers = policy_headers(d.attempt, d.index, d.not_before, d.rate_slot);
        self.publish_delayed(env, body, d.wait, headers).await
    }

    /// Asks the guard about `providers[index]` before an attempt.
    pub(crate) async fn gate(
        &self,
        env: &ValidEnvelope,
        body: &[u8],
        routing_key: &str,
        at: Position<'_>,
        mut token_reserved: bool,
    ) -> Gate {
        let Position {
            providers,
            index,
            attempts_done,
        } = at;
        let Some(provider) = providers.get(index) else {
            return Gate::Next;
        };
        let kind = provider.kind.as_str();
        loop {
            match self
                .guard
                .admit(provider.id, provider.rate_per_second, token_reserved)
                .await
            {
                Admission::Go(pass) => return Gate::Go(pass),
                Admission::Limited { wait, reserved } => {
                    metrics::counter!("communication_rate_limited_total", "kind" => kind)
                        .increment(1);
                    if reserved && wait <= MAX_INLINE_WAIT {
                        tokio::time::sleep(wait).await;
                        token_reserved = true;
                        continue;
                    }
                    let wait_ms = wait.as_millis() as i64;
                    let events = vec![event(
                        env,
                        EventKind::RetryScheduled,
                        Some(provider),
                        json!({"provider": provider.name, "reason": "rate limited", "delay_ms": wait_ms,
                               "rate_per_second": provider.rate_per_second}),
                    )];
                    let deferral = Deferral {
                        attempt: attempts_done,
                        index,
                        wait,
                        not_before: Some(now_ms() + wait_ms),
                        rate_slot: reserved.then_some(provider.id),
                        events,
                        last_error: None,
                    };
                    return Gate::Done(self.defer(env, body, deferral).await);
                }
                Admission::Open { until_ms, probing } => {
                    metrics::counter!("communication_circuit_skips_total", "kind" => kind)
                        .increment(1);
                    return self
                        .skip_open(env, body, routing_key, at, until_ms, probing)
                        .await;
                }
            }
        }
    }

    async fn skip_open(
        &self,
        env: &ValidEnvelope,
        body: &[u8],
        routing_key: &str,
        at: Position<'_>,
        until_ms: i64,
        probing: bool,
    ) -> Gate {
        let Position {
            providers,
            index,
            attempts_done,
        } = at;
        let Some(provider) = providers.get(index) else {
            return Gate::Next;
        };
        let skipped = event(
            env,
            EventKind::CircuitOpen,
            Some(provider),
            json!({"provider": provider.name, "kind": provider.kind, "action": "skipped",
                   "state": if probing { "half_open" } else { "open" }, "until": instant(until_ms)}),
        );
        if let Some(next) = providers.get(index + 1) {
            metrics::counter!("communication_failovers_total", "kind" => provider.kind.as_str())
                .increment(1);
            let failover = event(
                env,
                EventKind::Failover,
                Some(provider),
                json!({"from": provider.name, "to": next.name, "reason": "circuit open",
                       "class": "circuit_open"}),
            );
            let record = Record {
                update: Some(update(env, MessageStatus::Sending)),
                events: vec![skipped, failover],
                dead_letter: None,
            };
            return match self.commit(record).await {
                Disposition::Ack => Gate::Next,
                Disposition::Requeue => Gate::Done(Disposition::Requeue),
            };
        }
        let why = format!("circuit open for provider {}", provider.name);
        if probing {
            // Another replica is probing the provider; its verdict comes soon. Not an attempt.
            let wait = self.topology.tier_for(Duration::ZERO);
            let waiting = event(
                env,
                EventKind::RetryScheduled,
                Some(provider),
                json!({"provider": provider.name, "reason": "circuit half-open: probe in progress",
                       "delay_ms": wait.as_millis() as u64}),
            );
            let deferral = Deferral {
                attempt: attempts_done,
                index,
                wait,
                not_before: None,
                rate_slot: None,
                events: vec![skipped, waiting],
                last_error: None,
            };
            return Gate::Done(self.defer(env, body, deferral).await);
        }
        let attempt_no = attempts_done + 1;
        if attempt_no >= self.retry.attempts_per_provider {
            let recorded = self
                .commit(Record {
                    update: None,
                    events: vec![skipped],
                    dead_letter: None,
                })
                .await;
            if recorded == Disposition::Requeue {
                return Gate::Done(Disposition::Requeue);
            }
            return Gate::Done(
                self.fail(env, body, routing_key, Some(provider), why, true)
                    .await,
            );
        }
        let wait_ms = (until_ms - now_ms()).max(0);
        let waiting = event(
            env,
            EventKind::RetryScheduled,
            Some(provider),
            json!({"provider": provider.name, "reason": "circuit open", "attempt": attempt_no,
                   "delay_ms": wait_ms}),
        );
        let deferral = Deferral {
            attempt: attempt_no,
            index,
            wait: Duration::from_millis(wait_ms as u64),
            not_before: Some(until_ms),
            rate_slot: None,
            events: vec![skipped, waiting],
            last_error: Some(why),
        };
        Gate::Done(self.defer(env, body, deferral).await)
    }

    /// Reports a failed call to the guard. `Ok(Some(until))`: the breaker is open now (this
    /// failure may have opened it; that is recorded as a `circuit_open` event).
    pub(crate) async fn note_failure(
        &self,
        env: &ValidEnvelope,
        provider: &ResolvedProvider,
        pass: &Pass,
    ) -> Result<Option<i64>, Disposition> {
        match self.guard.record_failure(provider.id, pass).await {
            AfterFailure::Counted { .. } => Ok(None),
            AfterFailure::AlreadyOpen { until } => Ok(Some(until)),
            AfterFailure::Opened { until } => {
                metrics::counter!("communication_circuit_open_total", "kind" => provider.kind.as_str())
                    .increment(1);
                let threshold = self.guard.settings().threshold;
                tracing::warn!(provider_id = %provider.id, provider = %provider.name, kind = %provider.kind,
                    probe = pass.probe, until = ?instant(until), "circuit breaker opened");
                let opened = event(
                    env,
                    EventKind::CircuitOpen,
                    Some(provider),
                    json!({"provider": provider.name, "kind": provider.kind, "action": "opened",
                           "until": instant(until), "after_probe": pass.probe,
                           "threshold": threshold}),
                );
                let recorded = self
                    .commit(Record {
                        update: None,
                        events: vec![opened],
                        dead_letter: None,
                    })
                    .await;
                match recorded {
                    Disposition::Ack => Ok(Some(until)),
                    Disposition::Requeue => Err(Disposition::Requeue),
                }
            }
        }
    }
}
