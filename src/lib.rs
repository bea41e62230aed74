//! logicspike-communication: a queue-driven delivery edge for Email and SMS.
//!
//! The intake (`intake`) authenticates, validates, claims idempotency keys in Redis and
//! publishes a versioned envelope (`queue::envelope`) to RabbitMQ with a publisher confirm.
//! Workers (`worker`) consume it, resolve the tenant's providers (`providers`, secrets sealed
//! by `crypto`), send, retry through delay queues, fail over, and record every message and
//! event in Postgres (`store`).

pub mod address_policy;
pub mod bench;
pub mod config;
pub mod crypto;
pub mod dlq;
pub mod domain;
pub mod guard_state;
pub mod intake;
pub mod lanes;
pub mod limits;
pub mod notify;
pub mod providers;
pub mod queue;
pub mod retention;
pub mod rotation;
pub mod store;
pub mod telemetry;
pub mod trace_context;
pub mod worker;
