//! The webhook queues of a namespace, apart from the send lanes:
//!
//! - `{ns}.webhooks` (direct exchange) → quorum queue `{ns}.webhooks` (routing key `event`):
//!   one message per delivery to attempt, body `{"delivery_id": …}`.
//! - `{ns}.webhooks.retry.{ms}`: one durable queue per retry tier
//!   (`COMMUNICATION_WEBHOOK_RETRY_SCHEDULE`); a message waits out the TTL, then dead-letters
//!   back to `{ns}.webhooks` with key `event`.
//! - `{ns}.webhooks.dead` (key `dead`): where the broker puts a webhook message it gives up on
//!   (past a quorum delivery limit), for operators to look at.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel as AmqpChannel, ExchangeKind};

/// Routing key of deliveries to attempt now.
pub const KEY_EVENT: &str = "event";
const KEY_DEAD: &str = "dead";

#[derive(Debug, Clone)]
pub struct WebhookTopology {
    pub namespace: String,
    /// The retry schedule: the wait before retry 1, 2, …
    pub retry_tiers: Vec<Duration>,
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

impl WebhookTopology {
    pub fn new(namespace: &str, retry_tiers: &[Duration]) -> WebhookTopology {
        WebhookTopology {
            namespace: namespace.to_owned(),
            retry_tiers: retry_tiers.to_vec(),
        }
    }

    pub fn exchange(&self) -> String {
        format!("{}.webhooks", self.namespace)
    }

    pub fn queue(&self) -> String {
        format!("{}.webhooks", self.namespace)
    }

    pub fn dead_queue(&self) -> String {
        format!("{}.webhooks.dead", self.namespace)
    }

    pub fn retry_queue(&self, tier: Duration) -> String {
        format!("{}.webhooks.retry.{}", self.namespace, tier.as_millis())
    }

    /// Every queue, for cleanup.
    pub fn queues(&self) -> Vec<String> {
        let mut names = vec![self.queue(), self.dead_queue()];
        names.extend(self.retry_tiers.iter().map(|t| self.retry_queue(*t)));
        names
    }

    /// Declares the exchange and queues; idempotent.
    pub async fn declare(&self, ch: &AmqpChannel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            self.exchange().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
        let queue_opts = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let bind = |queue: String, key: &'static str| {
            ch.queue_bind(
                queue.into(),
                self.exchange().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
        };
        let mut dead_args = FieldTable::default();
        dead_args.insert("x-queue-type".into(), text("quorum"));
        ch.queue_declare(self.dead_queue().into(), queue_opts, dead_args)
            .await?;
        bind(self.dead_queue(), KEY_DEAD).await?;
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), text("quorum"));
        args.insert("x-dead-letter-exchange".into(), text(&self.exchange()));
        args.insert("x-dead-letter-routing-key".into(), text(KEY_DEAD));
        ch.queue_declare(self.queue().into(), queue_opts, args)
            .await?;
        bind(self.queue(), KEY_EVENT).await?;
        for tier in &self.retry_tiers {
            let mut args = FieldTable::default();
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(tier.as_millis() as i64),
            );
            args.insert("x-dead-letter-exchange".into(), text(&self.exchange()));
            args.insert("x-dead-letter-routing-key".into(), text(KEY_EVENT));
            ch.queue_declare(self.retry_queue(*tier).into(), queue_opts, args)
                .await?;
        }
        Ok(())
    }
}
