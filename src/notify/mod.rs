//! Telling tenants what happened: signed status webhooks and the settings of suppression.
//!
//! - `signing`: `whsec_` secrets (sealed with the keyring) and Standard Webhooks signatures.
//! - `target`: which URLs may receive webhooks (public https), at creation and connect time.
//!
//! Suppression lives where its work is: the list in `store::suppressions`, the API in
//! `intake::suppressions`, the hot-path check in `worker::suppression`.

pub mod events;
mod settings;
pub mod signing;
pub mod target;

pub use settings::{NotifySettings, parse_duration};
