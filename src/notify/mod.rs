//! Telling tenants what happened: settings of suppression and of signed status webhooks.
//!
//! Suppression lives where its work is: the list in `store::suppressions`, the API in
//! `intake::suppressions`, the hot-path check in `worker::suppression`.

mod settings;

pub use settings::{NotifySettings, parse_duration};
