//! What every adapter a process builds shares.
//!
//! The [`ProviderContext`] carries what adapters share: one HTTP client (connection pools,
//! keep-alive, a timeout on every call), the operator's API bases, and whether tenant-supplied
//! hosts may be private.

use std::time::Duration;

use crate::config::ProviderBases;

/// Idle connections kept per provider host: at least as many as a worker has calls in
/// flight (its concurrency, 400 by default).
const POOL_IDLE_PER_HOST: usize = 1024;

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
            // Every connection a burst opened stays for the next one (until the idle
            // timeout): with fewer, a worker with more calls in flight than idle slots closed
            // the extra connections after each call and opened new ones (a TLS handshake
            // each with a real provider).
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
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
