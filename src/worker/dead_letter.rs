//! Giving up on an envelope: a message that failed for good, and an envelope that failed
//! validation. Both go to `{ns}.dead` with the reason in the `x-death-reason` header, and
//! leave a `dead_letters` row whose body is sealed for that row (it can hold a one-time
//! code; replay opens it).
//!
//! The dead-letter publish comes before the commit: if the commit then fails the delivery is
//! requeued and may dead-letter a second copy, which an operator can tell apart by message
//! id; the other order could record a dead letter that never reached `{ns}.dead`.

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::resolver::ResolvedProvider;
use super::settle::{Delivery, Disposition, Settler, event, update};
use super::writer::Record;
use crate::domain::{Channel, EventKind, MessageStatus};
use crate::queue::envelope::Rejection;
use crate::queue::topology::dead_letter_headers;
use crate::store::dead_letters::{self, DeadLetter, SealedBody};
use crate::store::messages::{self, NewEvent, NewMessage, StatusUpdate};

impl Settler {
    /// Marks the message failed after `before`; with `dead_letter`, also sends the envelope
    /// to `{ns}.dead` and records it there.
    pub(crate) async fn fail(
        &self,
        d: &Delivery<'_>,
        provider: Option<&ResolvedProvider>,
        reason: String,
        dead_letter: bool,
        mut events: Vec<NewEvent>,
    ) -> Disposition {
        let env = d.env;
        let mut row = None;
        if dead_letter {
            let id = match dead_letters::reserve_id(&self.pool).await {
                Ok(id) => id,
                Err(e) => {
                    tracing::warn!(message_id = %env.id, error = %e, "could not record a dead letter; will retry delivery");
                    return Disposition::Requeue;
                }
            };
            let tenant = Some(env.tenant_id.as_str());
            if let Err(e) = self
                .publish_dead(d.body, &reason, Some(env.id), tenant, d.routing_key)
                .await
            {
                tracing::warn!(message_id = %env.id, error = %e, "could not dead-letter; will retry delivery");
                return Disposition::Requeue;
            }
            row = Some(DeadLetter {
                id,
                message_id: Some(env.id),
                tenant_id: Some(env.tenant_id.as_str().to_owned()),
                reason: reason.clone(),
                kind: dead_letters::KIND_FAILED,
                channel: Some(env.message.channel.as_str().to_owned()),
                routing_key: Some(d.routing_key.to_owned()),
                body: Some(SealedBody::seal(&self.keyring, id, d.body)),
            });
        }
        events.push(event(
            env,
            EventKind::Failed,
            provider,
            json!({"reason": reason}),
        ));
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
                last_error: Some(reason),
                ..update(env, MessageStatus::Failed)
            }),
            events,
            dead_letter: row,
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
        metrics::counter!("communication_dead_letters_total").increment(1);
        self.publisher
            .publish(
                &self.topology.dead_exchange(),
                "",
                body,
                dead_letter_headers(reason, routing_key, tenant),
                id.map(|i| i.to_string()).as_deref(),
            )
            .await
    }

    /// An envelope that failed validation: dead-lettered with the reason and recorded.
    pub(crate) async fn reject(
        &self,
        body: &[u8],
        rejection: Rejection,
        routing_key: &str,
    ) -> Disposition {
        tracing::warn!(message_id = ?rejection.id, tenant_id = ?rejection.tenant_id.as_ref().map(|t| t.as_str()),
            reason = %rejection.reason, "invalid envelope dead-lettered");
        let tenant = rejection.tenant_id.as_ref().map(|t| t.as_str());
        if let Err(e) = self
            .publish_dead(body, &rejection.reason, rejection.id, tenant, routing_key)
            .await
        {
            tracing::warn!(error = %e, "could not dead-letter an invalid envelope; will retry");
            return Disposition::Requeue;
        }
        match self.record_rejection(rejection, body, routing_key).await {
            Ok(()) => Disposition::Ack,
            Err(e) => {
                tracing::warn!(error = %e, "could not record an invalid envelope; will retry");
                Disposition::Requeue
            }
        }
    }

    /// Records an envelope that failed validation (unbatched: they are rare): a `failed`
    /// message with `failed` and `dead_lettered` events when it carries a usable id, tenant
    /// and channel, and a `dead_letters` row in every case (with the sealed raw body and the
    /// routing key, for operators).
    async fn record_rejection(
        &self,
        rejection: Rejection,
        body: &[u8],
        routing_key: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let channel = rejection.channel.as_deref().and_then(Channel::parse);
        if let (Some(id), Some(tenant), Some(channel)) =
            (rejection.id, &rejection.tenant_id, channel)
        {
            let row = NewMessage {
                id,
                tenant_id: tenant.as_str().to_owned(),
                channel: channel.as_str().to_owned(),
                recipient: rejection.to.clone().unwrap_or_default(),
                idempotency_key: None,
                metadata: None,
                ttl_seconds: None,
                created_at: Utc::now(),
            };
            if messages::record_rejected(&mut tx, &row, &rejection.reason).await? {
                let detail = Some(json!({"reason": rejection.reason}));
                let events: Vec<NewEvent> = [EventKind::Failed, EventKind::DeadLettered]
                    .into_iter()
                    .map(|kind| NewEvent {
                        message_id: id,
                        tenant_id: tenant.as_str().to_owned(),
                        kind: kind.as_str(),
                        provider_id: None,
                        detail: detail.clone(),
                        at: Utc::now(),
                    })
                    .collect();
                messages::insert_events(&mut tx, &events).await?;
            }
        }
        let row_id = dead_letters::reserve_id(&mut *tx).await?;
        let row = DeadLetter {
            id: row_id,
            message_id: rejection.id,
            tenant_id: rejection.tenant_id.as_ref().map(|t| t.as_str().to_owned()),
            reason: rejection.reason,
            kind: dead_letters::KIND_INVALID,
            channel: rejection.channel,
            routing_key: Some(routing_key.to_owned()),
            body: Some(SealedBody::seal(&self.keyring, row_id, body)),
        };
        dead_letters::insert_dead_letters(&mut tx, std::slice::from_ref(&row)).await?;
        tx.commit().await
    }
}
