//! Telling tenants what happened: signed status webhooks, and the settings of suppression.
//!
//! How an event travels (see docs/webhooks.md):
//! 1. A message's status changes to sent, delivered, undelivered, bounced, failed, expired or
//!    suppressed. A database trigger (migration `…32`) writes the event and one delivery per
//!    subscribed endpoint in the same transaction: the outbox. Nothing here is on the send
//!    path, and nothing is lost if a process dies after the status commits.
//! 2. `relay` publishes outbox rows to `{ns}.webhooks` (topology in `topology`).
//! 3. `sender` attempts each (signed per Standard Webhooks by `signing`, to URLs `target`
//!    allows), records every attempt, and retries through per-tier delay queues.
//! 4. `service` runs 2 and 3 inside each worker process, apart from the send consumers.
//!
//! Suppression lives where its work is: the list in `store::suppressions`, the API in
//! `intake::suppressions`, the hot-path check in `worker::suppression`.

pub mod events;
pub mod relay;
pub mod sender;
pub mod service;
pub mod signing;
pub mod target;
pub mod topology;

pub use crate::config::{NotifySettings, parse_duration};
