//! The router: every worker consumes its channels' entry queues (`{ns}.send.{channel}`, where
//! direct publishes, retries from the delay queues and dead-letter replays land) and moves
//! each message to its lane. It reads only `tenant_id`, `channel` and `priority`
//! ([`lane_hint`]), asks [`LaneDecider`] for the lane, and republishes the same body and
//! headers (plus a fresh `x-published-at-ms`) to `{channel}.{lane}` with a publisher confirm.
//! The caller acks the entry delivery only after that confirm, and requeues it when the
//! publish fails, so nothing is lost; a crash between the confirm and the ack leaves a second
//! copy, which the worker's same-id dedup sends once.
//!
//! An envelope whose hint cannot be read goes on to the `normal` lane unchanged: the worker's
//! full validation refuses it there, records why, and dead-letters it, as for any bad envelope.

use std::sync::Arc;

use lapin::types::FieldTable;

use super::LaneDecider;
use crate::domain::{Channel, Priority};
use crate::queue::envelope::lane_hint;
use crate::queue::topology::stamp_published_at;
use crate::queue::{PublishError, Publisher, Topology};

pub struct Router {
    pub decider: Arc<LaneDecider>,
    pub publisher: Arc<Publisher>,
    pub topology: Topology,
}

impl Router {
    /// Sends one entry-queue message of `entry_channel` on to its lane; the lane it took.
    pub async fn route(
        &self,
        entry_channel: Channel,
        body: &[u8],
        headers: Option<&FieldTable>,
        message_id: Option<&str>,
    ) -> Result<Priority, PublishError> {
        let (channel, lane) = match lane_hint(body) {
            Some(hint) => {
                let lane = self
                    .decider
                    .decide(&hint.tenant_id, hint.channel, hint.priority)
                    .await;
                (hint.channel, lane)
            }
            None => (entry_channel, Priority::Normal),
        };
        let mut headers = headers.cloned().unwrap_or_default();
        stamp_published_at(&mut headers);
        self.publisher
            .publish(
                &self.topology.send_exchange(),
                &Topology::lane_routing_key(channel, lane),
                body,
                headers,
                message_id,
            )
            .await?;
        metrics::counter!("communication_routed_total",
            "channel" => channel.as_str(), "lane" => lane.as_str())
        .increment(1);
        Ok(lane)
    }
}
