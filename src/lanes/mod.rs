//! Priority lanes and the per-tenant fair share (issue 11; docs/delivery.md, "Lanes").
//!
//! - [`fair_share`]: which lane a message really takes — the lane asked for, unless its tenant
//!   already used its share of that lane this second (then the next lower one; `bulk` is the
//!   floor). One Lua function: the router's own round trip, or part of the intake's one
//!   script per send. Fails open (the lane asked for) when Redis does not answer.
//! - [`router`]: moves what lands in a channel's entry queue (direct publishes, retries,
//!   replays) to its lane, with a publisher confirm before the ack.
//! - [`capacity`]: the worker's permits, with capacity reserved for the higher lanes.
//!
//! The intake and the router decide with the same Lua ([`fair_share::FAIR_LANE_LUA`]).

pub mod capacity;
pub mod fair_share;
pub mod router;

pub use capacity::Capacity;
pub use fair_share::{LaneAsk, LaneDecider};
pub use router::Router;
