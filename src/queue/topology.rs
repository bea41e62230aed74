//! Names and declarations of every exchange and queue of a namespace.
//!
//! - `{ns}.send` (direct): routing keys `email` and `sms` → quorum queues `{ns}.send.email`,
//!   `{ns}.send.sms`. Both dead-letter to `{ns}.dead` (e.g. past the quorum delivery limit).
//! - `{ns}.delay.{channel}.{ms}`: one durable queue per channel and delay tier. Messages wait
//!   out the queue's TTL, then dead-letter back to `{ns}.send` with the channel as routing key.
//!   Fixed tiers, never mixed delays in one queue: a short delay never waits behind a long one.
//! - `{ns}.dead` (fanout exchange and quorum queue): envelopes that failed for good, with the
//!   reason in the `x-death-reason` header.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel as AmqpChannel, ExchangeKind};

use crate::config::RetryPolicy;
use crate::domain::Channel;

#[derive(Debug, Clone)]
pub struct Topology {
    pub namespace: String,
    /// Delay tiers, shortest first.
    pub delay_tiers: Vec<Duration>,
}

impl Topology {
    pub fn new(namespace: &str, retry: &RetryPolicy) -> Topology {
        Topology {
            namespace: namespace.to_owned(),
            delay_tiers: delay_tiers(retry),
        }
    }

    pub fn send_exchange(&self) -> String {
        format!("{}.send", self.namespace)
    }

    pub fn work_queue(&self, channel: Channel) -> String {
        format!("{}.send.{}", self.namespace, channel.as_str())
    }

    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.namespace)
    }

    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.namespace)
    }

    pub fn delay_queue(&self, channel: Channel, tier: Duration) -> String {
        format!(
            "{}.delay.{}.{}",
            self.namespace,
            channel.as_str(),
            tier.as_millis()
        )
    }

    /// The tier a wanted delay is served by: the longest tier not longer than the delay (so
    /// retries never come later than the schedule says), and at least the shortest tier.
    pub fn tier_for(&self, wanted: Duration) -> Duration {
        self.delay_tiers
            .iter()
            .rev()
            .find(|t| **t <= wanted)
            .or_else(|| self.delay_tiers.first())
            .copied()
            .unwrap_or(wanted)
    }

    /// Declares everything; idempotent, so intake and every worker call it at start-up.
    pub async fn declare(&self, ch: &AmqpChannel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            self.send_exchange().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            self.dead_exchange().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
        let queue_opts = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let mut dead_args = FieldTable::default();
        dead_args.insert("x-queue-type".into(), long_str("quorum"));
        ch.queue_declare(self.dead_queue().into(), queue_opts, dead_args)
            .await?;
        ch.queue_bind(
            self.dead_queue().into(),
            self.dead_exchange().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        for channel in Channel::ALL {
            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), long_str("quorum"));
            args.insert(
                "x-dead-letter-exchange".into(),
                long_str(&self.dead_exchange()),
            );
            ch.queue_declare(self.work_queue(channel).into(), queue_opts, args)
                .await?;
            ch.queue_bind(
                self.work_queue(channel).into(),
                self.send_exchange().into(),
                channel.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
            for tier in &self.delay_tiers {
                let mut args = FieldTable::default();
                args.insert(
                    "x-message-ttl".into(),
                    AMQPValue::LongLongInt(tier.as_millis() as i64),
                );
                args.insert(
                    "x-dead-letter-exchange".into(),
                    long_str(&self.send_exchange()),
                );
                args.insert(
                    "x-dead-letter-routing-key".into(),
                    long_str(channel.as_str()),
                );
                ch.queue_declare(self.delay_queue(channel, *tier).into(), queue_opts, args)
                    .await?;
            }
        }
        Ok(())
    }
}

fn long_str(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// Header on dead letters: why the envelope was given up on.
pub const HEADER_DEATH_REASON: &str = "x-death-reason";

/// The headers of an envelope sent to `{ns}.dead`: the reason, the routing key it arrived
/// with, and its tenant when known.
pub fn dead_letter_headers(reason: &str, routing_key: &str, tenant: Option<&str>) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(HEADER_DEATH_REASON.into(), long_str(reason));
    headers.insert("x-original-routing-key".into(), long_str(routing_key));
    if let Some(t) = tenant {
        headers.insert("x-tenant-id".into(), long_str(t));
    }
    headers
}

/// A text header's value (as a publisher or the broker set it).
pub fn header_str(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    let value = headers?.inner().get(&ShortString::from(name))?;
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Delay tiers for a retry schedule: base, 2×base, 4×base, … up to and including max.
pub fn delay_tiers(retry: &RetryPolicy) -> Vec<Duration> {
    let mut tiers = Vec::new();
    let mut t = retry.base;
    while t < retry.max && tiers.len() < 32 {
        tiers.push(t);
        t = t.saturating_mul(2);
    }
    tiers.push(retry.max);
    tiers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_double_up_to_the_cap() {
        let retry = RetryPolicy {
            base: Duration::from_millis(2000),
            max: Duration::from_millis(20_000),
            attempts_per_provider: 4,
        };
        let t = Topology::new("ns", &retry);
        let ms: Vec<u128> = t.delay_tiers.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![2000, 4000, 8000, 16000, 20000]);
        assert_eq!(t.tier_for(Duration::from_millis(500)).as_millis(), 2000);
        assert_eq!(t.tier_for(Duration::from_millis(9000)).as_millis(), 8000);
        assert_eq!(t.tier_for(Duration::from_secs(999)).as_millis(), 20000);
        assert_eq!(
            t.delay_queue(Channel::Sms, Duration::from_millis(4000)),
            "ns.delay.sms.4000"
        );
    }
}
