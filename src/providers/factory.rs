//! Turns a decrypted provider configuration into a ready adapter.
//!
//! The [`ProviderContext`] carries what adapters share: one HTTP client (connection pools,
//! keep-alive, a timeout on every call), the operator's API bases, and whether tenant-supplied
//! hosts may be private.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{Provider, ProviderKind, system::SystemProvider};
use crate::config::ProviderBases;

/// Shared by every adapter a process builds.
#[derive(Clone, Debug)]
pub struct ProviderContext {
    pub http: reqwest::Client,
    pub bases: ProviderBases,
    pub allow_private_hosts: bool,
    pub timeout: Duration,
    /// `COMMUNICATION_PUBLIC_URL`: the base of status-callback URLs, when set.
    pub public_url: Option<String>,
}

impl ProviderContext {
    pub fn new(
        bases: ProviderBases,
        allow_private_hosts: bool,
        timeout: Duration,
        public_url: Option<String>,
    ) -> anyhow::Result<ProviderContext> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .user_agent(concat!(
                "logicspike-communication/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(ProviderContext {
            http,
            bases,
            allow_private_hosts,
            timeout,
            public_url,
        })
    }
}

/// Why a stored configuration could not become an adapter.
#[derive(Debug, thiserror::Error)]
#[error("provider configuration is unusable: {0}")]
pub struct BuildError(pub String);

/// Builds the adapter of `kind` from its whole (decrypted) configuration.
pub fn build_provider(
    kind: ProviderKind,
    config: &Map<String, Value>,
    ctx: &ProviderContext,
) -> Result<Arc<dyn Provider>, BuildError> {
    match kind {
        ProviderKind::System => Ok(Arc::new(SystemProvider::from_config(config))),
        ProviderKind::Twilio => super::twilio::build(config, ctx),
        ProviderKind::Vonage => super::vonage::build(config, ctx),
        ProviderKind::Resend => super::resend::build(config, ctx),
        ProviderKind::Sendgrid => super::sendgrid::build(config, ctx),
        ProviderKind::Postmark => super::postmark::build(config, ctx),
        ProviderKind::Mailgun => super::mailgun::build(config, ctx),
        ProviderKind::Smtp => super::smtp::build(config, ctx),
    }
}
