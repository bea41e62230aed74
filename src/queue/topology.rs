//! Names and declarations of every exchange and queue of a namespace.
//!
//! - `{ns}.send` (direct): routing keys `email` and `sms` → the ENTRY quorum queues
//!   `{ns}.send.email`, `{ns}.send.sms`, where direct publishers, retries back from the delay
//!   queues and dead-letter replays land. Every worker's router (`lanes::router`) moves each
//!   entry message to a lane.
//! - Routing keys `{channel}.high|normal|bulk` → the LANE quorum queues
//!   `{ns}.send.{channel}.high|normal|bulk`, consumed by the workers (the intake publishes
//!   straight to a lane). All work queues dead-letter to `{ns}.dead` (e.g. past the quorum
//!   delivery limit).
//! - `{ns}.delay.{channel}.{ms}`: one durable queue per channel and delay tier. Messages wait
//!   out the queue's TTL, then dead-letter back to `{ns}.send` with the channel as routing key
//!   (the entry queue: a retried message is re-laned). Fixed tiers, never mixed delays in one
//!   queue: a short delay never waits behind a long one.
//! - `{ns}.dead` (fanout exchange and quorum queue): envelopes that failed for good, with the
//!   reason in the `x-death-reason` header.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel as AmqpChannel, ExchangeKind};

use crate::config::RetryPolicy;
use crate::domain::{Channel, Priority};

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

    /// The entry queue of a channel (routing key `{channel}`): direct publishes, retries and
    /// replays land here; the router moves them to a lane.
    pub fn entry_queue(&self, channel: Channel) -> String {
        format!("{}.send.{}", self.namespace, channel.as_str())
    }

    /// The lane queue of a channel and priority (routing key [`Topology::lane_routing_key`]).
    pub fn lane_queue(&self, channel: Channel, lane: Priority) -> String {
        format!(
            "{}.send.{}.{}",
            self.namespace,
            channel.as_str(),
            lane.as_str()
        )
    }

    /// `{channel}.{lane}`: the routing key on `{ns}.send` that reaches a lane queue.
    pub fn lane_routing_key(channel: Channel, lane: Priority) -> String {
        format!("{}.{}", channel.as_str(), lane.as_str())
    }

    /// Every work queue: each channel's entry queue and its lanes (what KEDA scales on).
    pub fn work_queues(&self) -> Vec<String> {
        let mut names = Vec::new();
        for channel in Channel::ALL {
            names.push(self.entry_queue(channel));
            for lane in Priority::ALL {
                names.push(self.lane_queue(channel, lane));
            }
        }
        names
    }

    /// Every queue of the namespace: work queues, delay queues and the dead-letter queue (what
    /// a test or the benchmark deletes afterwards).
    pub fn queues(&self) -> Vec<String> {
        let mut names = self.work_queues();
        for channel in Channel::ALL {
            for tier in &self.delay_tiers {
                names.push(self.delay_queue(channel, *tier));
            }
        }
        names.push(self.dead_queue());
        names
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
        let mut work_args = FieldTable::default();
        work_args.insert("x-queue-type".into(), long_str("quorum"));
        work_args.insert(
            "x-dead-letter-exchange".into(),
            long_str(&self.dead_exchange()),
        );
        for channel in Channel::ALL {
            let mut bindings = vec![(self.entry_queue(channel), channel.as_str().to_owned())];
            for lane in Priority::ALL {
                bindings.push((
                    self.lane_queue(channel, lane),
                    Topology::lane_routing_key(channel, lane),
                ));
            }
            for (queue, key) in bindings {
                ch.queue_declare(queue.as_str().into(), queue_opts, work_args.clone())
                    .await?;
                ch.queue_bind(
                    queue.into(),
                    self.send_exchange().into(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            }
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

/// Header stamped (milliseconds since the epoch) when a message is published to a lane, by the
/// intake and the router; the worker's `communication_queue_wait_seconds` is measured from it.
pub const HEADER_PUBLISHED_AT_MS: &str = "x-published-at-ms";

/// Sets [`HEADER_PUBLISHED_AT_MS`] to now.
pub fn stamp_published_at(headers: &mut FieldTable) {
    headers.insert(
        HEADER_PUBLISHED_AT_MS.into(),
        AMQPValue::LongLongInt(chrono::Utc::now().timestamp_millis()),
    );
}

/// The channel a stored routing key names: `email`, or a lane's `email.high`.
pub fn channel_of_routing_key(key: &str) -> Option<Channel> {
    Channel::parse(key.split('.').next().unwrap_or(key))
}

/// An integer header's value.
pub fn header_i64(headers: Option<&FieldTable>, name: &str) -> Option<i64> {
    match headers?.inner().get(&ShortString::from(name))? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
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

    #[test]
    fn lanes_have_their_own_queues_and_routing_keys() {
        let t = Topology::new("ns", &RetryPolicy::default());
        assert_eq!(t.entry_queue(Channel::Email), "ns.send.email");
        assert_eq!(
            t.lane_queue(Channel::Sms, Priority::High),
            "ns.send.sms.high"
        );
        assert_eq!(
            Topology::lane_routing_key(Channel::Email, Priority::Bulk),
            "email.bulk"
        );
        assert_eq!(t.work_queues().len(), 8);
        let all = t.queues();
        assert_eq!(all.len(), 8 + 2 * t.delay_tiers.len() + 1);
        assert!(all.contains(&"ns.dead".to_owned()));
        assert_eq!(channel_of_routing_key("sms"), Some(Channel::Sms));
        assert_eq!(channel_of_routing_key("email.high"), Some(Channel::Email));
        assert_eq!(channel_of_routing_key("push.high"), None);
    }
}
