//! The suppression check on the delivery hot path, and the suppressions a provider's refusal
//! adds.
//!
//! Before any provider is resolved or called, the recipient is looked up in the tenant's
//! suppression list; a hit ends the message `suppressed` (event `suppressed`) with no provider
//! call. The list is cached per (tenant, channel) for `COMMUNICATION_SUPPRESSION_CACHE_MS`:
//! one query per tenant and channel per period loads the whole list (most lists are empty or
//! short), so the hot path does no query per message. A list longer than
//! [`WHOLE_LIST_LIMIT`] is not held whole; its recipients are then looked up one by one, each
//! answer cached for the same period. A removal (`DELETE /v1/suppressions/{id}`, served by
//! another process) takes effect within that period; an addition by this worker is seen at
//! once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use serde_json::json;
use sqlx::PgPool;

use super::delivery::Deliverer;
use super::resolver::ResolvedProvider;
use super::settle::{Delivery, Disposition, event, update};
use super::writer::Record;
use crate::domain::{Channel, EventKind, MessageStatus, SuppressionReason, normalize_recipient};
use crate::providers::{ErrorClass, ProviderError};
use crate::queue::envelope::ValidEnvelope;
use crate::store::messages::{NewMessage, StatusUpdate};
use crate::store::suppressions::{self, NewSuppression};

/// Longest list a worker keeps whole in memory per tenant and channel.
pub const WHOLE_LIST_LIMIT: i64 = 20_000;

/// A cached suppression list of one tenant's channel.
enum CachedList {
    Whole(HashSet<String>),
    /// Longer than [`WHOLE_LIST_LIMIT`]: ask per recipient.
    TooLong,
}

type ListKey = (String, Channel);

/// The worker's view of every tenant's suppression list.
pub struct SuppressionList {
    pool: PgPool,
    /// `None` when the cache period is zero: every check asks the database.
    lists: Option<Cache<ListKey, Arc<CachedList>>>,
    /// Per-recipient answers for tenants whose list is [`CachedList::TooLong`].
    singles: Option<Cache<(String, Channel, String), bool>>,
}

impl SuppressionList {
    pub fn new(pool: PgPool, ttl: Duration) -> SuppressionList {
        let cached = !ttl.is_zero();
        SuppressionList {
            pool,
            lists: cached.then(|| {
                Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(ttl)
                    .build()
            }),
            singles: cached.then(|| {
                Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(ttl)
                    .build()
            }),
        }
    }

    /// Whether `recipient` (as sent) is on the tenant's list for the channel.
    pub async fn contains(
        &self,
        tenant: &str,
        channel: Channel,
        recipient: &str,
    ) -> Result<bool, sqlx::Error> {
        let recipient = normalize_recipient(channel, recipient);
        let Some(lists) = &self.lists else {
            return suppressions::contains(&self.pool, tenant, channel.as_str(), &recipient).await;
        };
        let list = lists
            .try_get_with((tenant.to_owned(), channel), async {
                let rows = suppressions::recipients(
                    &self.pool,
                    tenant,
                    channel.as_str(),
                    WHOLE_LIST_LIMIT + 1,
                )
                .await?;
                Ok::<_, sqlx::Error>(Arc::new(if rows.len() as i64 > WHOLE_LIST_LIMIT {
                    CachedList::TooLong
                } else {
                    CachedList::Whole(rows.into_iter().collect())
                }))
            })
            .await
            .map_err(shared_error)?;
        match (&*list, &self.singles) {
            (CachedList::Whole(set), _) => Ok(set.contains(&recipient)),
            (CachedList::TooLong, Some(singles)) => singles
                .try_get_with(
                    (tenant.to_owned(), channel, recipient.clone()),
                    suppressions::contains(&self.pool, tenant, channel.as_str(), &recipient),
                )
                .await
                .map_err(shared_error),
            (CachedList::TooLong, None) => {
                suppressions::contains(&self.pool, tenant, channel.as_str(), &recipient).await
            }
        }
    }

    /// Adds a recipient and forgets this worker's cached copy of the list.
    pub async fn add(
        &self,
        tenant: &str,
        channel: Channel,
        recipient: &str,
        reason: SuppressionReason,
        message_id: uuid::Uuid,
    ) -> Result<(), sqlx::Error> {
        let recipient = normalize_recipient(channel, recipient);
        suppressions::add(
            &self.pool,
            &NewSuppression {
                tenant_id: tenant,
                channel: channel.as_str(),
                recipient: &recipient,
                reason: reason.as_str(),
                message_id: Some(message_id),
            },
        )
        .await?;
        if let Some(lists) = &self.lists {
            lists.invalidate(&(tenant.to_owned(), channel)).await;
        }
        if let Some(singles) = &self.singles {
            singles
                .invalidate(&(tenant.to_owned(), channel, recipient))
                .await;
        }
        Ok(())
    }
}

fn shared_error(e: Arc<sqlx::Error>) -> sqlx::Error {
    sqlx::Error::Protocol(format!("suppression lookup: {e}"))
}

/// The suppression a provider's refusal of the recipient calls for, if any: the recipient
/// opted out (Twilio 21610, replied STOP), does not exist / cannot receive SMS (Twilio 21211
/// invalid number, 21614 not a mobile number), or is inactive at Postmark (406: the address
/// hard-bounced or complained there before), or has no mailbox at an SMTP server (a 5xx reply
/// with the enhanced status 5.1.1 "bad destination mailbox" or 5.1.10 "null MX"). Other
/// recipient refusals (content, a premium-rate number, a full mailbox) fail the message
/// without suppressing.
pub fn refusal_reason(kind: &str, err: &ProviderError) -> Option<SuppressionReason> {
    if !matches!(err.class, ErrorClass::RecipientPermanent) {
        return None;
    }
    match (kind, err.code.as_deref()?) {
        ("twilio", "21610") => Some(SuppressionReason::OptedOut),
        ("twilio", "21211" | "21614") => Some(SuppressionReason::InvalidRecipient),
        ("postmark", "406") => Some(SuppressionReason::HardBounce),
        ("smtp", code) if code.starts_with('5') && names_missing_mailbox(&err.message) => {
            Some(SuppressionReason::InvalidRecipient)
        }
        _ => None,
    }
}

/// Whether an SMTP refusal carries the enhanced status of a mailbox that does not exist.
fn names_missing_mailbox(message: &str) -> bool {
    message
        .split(|c: char| c.is_whitespace() || c == ':' || c == ',')
        .any(|word| word == "5.1.1" || word == "5.1.10")
}

impl Deliverer {
    /// Ends the message `suppressed` when its recipient is on the tenant's list; `None` when it
    /// is not (the delivery goes on). A failed lookup requeues: sending to a suppressed
    /// recipient is the outcome to avoid.
    pub(crate) async fn end_if_suppressed(
        &self,
        d: &Delivery<'_>,
        pending: &mut Option<NewMessage>,
    ) -> Option<Disposition> {
        let env = d.env;
        let channel = env.message.channel;
        match self
            .suppressions
            .contains(env.tenant_id.as_str(), channel, env.message.to.as_str())
            .await
        {
            Ok(false) => None,
            Ok(true) => {
                metrics::counter!("communication_deliveries_total", "channel" => channel.as_str(),
                    "kind" => "none", "outcome" => "suppressed")
                .increment(1);
                tracing::info!(message_id = %env.id, "recipient is suppressed; not sent");
                let record = Record {
                    update: Some(StatusUpdate {
                        last_error: Some("the recipient is on the suppression list".into()),
                        ..update(env, MessageStatus::Suppressed)
                    }),
                    events: vec![event(
                        env,
                        EventKind::Suppressed,
                        None,
                        json!({"reason": "the recipient is on the tenant's suppression list"}),
                    )],
                    dead_letter: None,
                };
                Some(match self.commit_first(d, pending, record).await {
                    Ok(()) => Disposition::Ack,
                    Err(stop) => stop,
                })
            }
            Err(e) => {
                tracing::warn!(message_id = %env.id, error = %e, "could not check the suppression list; will retry");
                Some(Disposition::Requeue)
            }
        }
    }

    /// Suppresses the recipient when the provider's refusal says they opted out or do not
    /// exist. Best effort: the message fails either way, and a lost suppression only means
    /// the next send to them is refused by the provider again.
    pub(crate) async fn suppress_refused_recipient(
        &self,
        env: &ValidEnvelope,
        provider: &ResolvedProvider,
        err: &ProviderError,
    ) {
        let Some(reason) = refusal_reason(provider.kind.as_str(), err) else {
            return;
        };
        if let Err(e) = self
            .suppressions
            .add(
                env.tenant_id.as_str(),
                env.message.channel,
                env.message.to.as_str(),
                reason,
                env.id,
            )
            .await
        {
            tracing::warn!(message_id = %env.id, error = %e, "could not add the refused recipient to the suppression list");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_opt_outs_and_invalid_numbers_suppress() {
        let refusal = |code: &str| ProviderError::recipient("twilio: refused").with_code(code);
        assert_eq!(
            refusal_reason("twilio", &refusal("21610")),
            Some(SuppressionReason::OptedOut)
        );
        assert_eq!(
            refusal_reason("twilio", &refusal("21211")),
            Some(SuppressionReason::InvalidRecipient)
        );
        assert_eq!(refusal_reason("twilio", &refusal("21268")), None);
        assert_eq!(
            refusal_reason("postmark", &refusal("406")),
            Some(SuppressionReason::HardBounce)
        );
        assert_eq!(refusal_reason("vonage", &refusal("21610")), None);
        let smtp = |text: &str| {
            ProviderError::recipient(format!("smtp: the server refused the recipient: {text}"))
                .with_code(&text[..3])
        };
        assert_eq!(
            refusal_reason("smtp", &smtp("550 5.1.1 <ada@example.com>: user unknown")),
            Some(SuppressionReason::InvalidRecipient)
        );
        assert_eq!(
            refusal_reason("smtp", &smtp("556 5.1.10 recipient domain has a null MX")),
            Some(SuppressionReason::InvalidRecipient)
        );
        assert_eq!(
            refusal_reason("smtp", &smtp("552 5.2.2 mailbox full")),
            None
        );
        assert_eq!(refusal_reason("smtp", &smtp("550 5.1.11 other")), None);
        let provider_side = ProviderError::provider("twilio: trial").with_code("21610");
        assert_eq!(refusal_reason("twilio", &provider_side), None);
    }
}
