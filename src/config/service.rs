//! The intake's listener and credentials, the providers' operator settings, and telemetry.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

use super::env::Env;

/// The HTTP intake (`COMMUNICATION_SERVICE_TOKEN`, `COMMUNICATION_LISTEN_ADDR`).
pub struct IntakeSettings {
    /// Bearer token of internal callers; required to serve the HTTP API.
    pub service_token: Option<SecretString>,
    pub listen_addr: SocketAddr,
    /// How long intake trusts its cached copy of a tenant's limits
    /// (`COMMUNICATION_LIMITS_CACHE_MS`): a change takes effect within this time. `0` reads
    /// Postgres on every send.
    pub limits_cache_ttl: Duration,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        IntakeSettings {
            service_token: None,
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            limits_cache_ttl: Duration::from_secs(5),
        }
    }
}

/// Shorter tokens are guessable.
const MIN_SERVICE_TOKEN_CHARS: usize = 16;

impl IntakeSettings {
    pub(super) fn read(env: &mut Env, needs_service_token: bool) -> Self {
        let d = IntakeSettings::default();
        let name = "COMMUNICATION_SERVICE_TOKEN";
        let service_token = env.get(name);
        match &service_token {
            None if needs_service_token => env.problem(name, "is required to serve the HTTP API"),
            Some(t) if t.len() < MIN_SERVICE_TOKEN_CHARS => {
                env.problem(name, "must be at least 16 characters")
            }
            _ => {}
        }
        IntakeSettings {
            service_token: service_token.map(Into::into),
            listen_addr: env
                .address("COMMUNICATION_LISTEN_ADDR")
                .unwrap_or(d.listen_addr),
            limits_cache_ttl: env.millis("COMMUNICATION_LIMITS_CACHE_MS", d.limits_cache_ttl),
        }
    }
}

/// Operator-set API bases of the HTTP providers (`<KIND>_BASE_URL`; tests point them at
/// mocks).
#[derive(Debug, Clone)]
pub struct ProviderBases {
    pub twilio: String,
    pub resend: String,
    pub sendgrid: String,
    pub postmark: String,
    pub mailgun: String,
    pub mailgun_eu: String,
    pub vonage: String,
}

impl Default for ProviderBases {
    fn default() -> Self {
        ProviderBases {
            twilio: "https://api.twilio.com".into(),
            resend: "https://api.resend.com".into(),
            sendgrid: "https://api.sendgrid.com".into(),
            postmark: "https://api.postmarkapp.com".into(),
            mailgun: "https://api.mailgun.net".into(),
            mailgun_eu: "https://api.eu.mailgun.net".into(),
            vonage: "https://rest.nexmo.com".into(),
        }
    }
}

impl ProviderBases {
    fn read(env: &mut Env) -> Self {
        let mut bases = ProviderBases::default();
        for (name, slot) in [
            ("TWILIO_BASE_URL", &mut bases.twilio),
            ("RESEND_BASE_URL", &mut bases.resend),
            ("SENDGRID_BASE_URL", &mut bases.sendgrid),
            ("POSTMARK_BASE_URL", &mut bases.postmark),
            ("VONAGE_BASE_URL", &mut bases.vonage),
        ] {
            if let Some(v) = env.http_url(name) {
                *slot = v;
            }
        }
        // One override serves both regions: it is a test or proxy endpoint.
        if let Some(v) = env.http_url("MAILGUN_BASE_URL") {
            bases.mailgun_eu = v.clone();
            bases.mailgun = v;
        }
        bases
    }
}

/// How providers are reached and called back.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub bases: ProviderBases,
    /// How long an outbound provider call may take (`COMMUNICATION_PROVIDER_TIMEOUT_MS`).
    pub timeout: Duration,
    /// How long resolved provider lists stay cached in a worker
    /// (`COMMUNICATION_PROVIDER_CACHE_MS`).
    pub cache_ttl: Duration,
    /// Tenant-supplied hosts (SMTP) may be loopback/private addresses
    /// (`COMMUNICATION_ALLOW_PRIVATE_HOSTS`; development and tests).
    pub allow_private_hosts: bool,
    /// The service's public base URL, for provider status callbacks
    /// (`COMMUNICATION_PUBLIC_URL`); unset: no callbacks requested.
    pub public_url: Option<String>,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        ProviderSettings {
            bases: ProviderBases::default(),
            timeout: Duration::from_millis(15_000),
            cache_ttl: Duration::from_millis(5_000),
            allow_private_hosts: false,
            public_url: None,
        }
    }
}

impl ProviderSettings {
    pub(super) fn read(env: &mut Env) -> Self {
        let d = ProviderSettings::default();
        ProviderSettings {
            bases: ProviderBases::read(env),
            timeout: env
                .millis("COMMUNICATION_PROVIDER_TIMEOUT_MS", d.timeout)
                .max(Duration::from_millis(1)),
            cache_ttl: env.millis("COMMUNICATION_PROVIDER_CACHE_MS", d.cache_ttl),
            allow_private_hosts: env
                .flag("COMMUNICATION_ALLOW_PRIVATE_HOSTS", d.allow_private_hosts),
            public_url: env.http_url("COMMUNICATION_PUBLIC_URL"),
        }
    }
}

/// Logs and the worker's probe/metrics port.
#[derive(Debug, Clone, Copy, Default)]
pub struct TelemetrySettings {
    /// `COMMUNICATION_LOG_FORMAT=json`: JSON log lines instead of text (read by
    /// `telemetry::init_tracing` before the rest of the configuration; validated here).
    pub json_logs: bool,
    /// Where a worker serves `/healthz` and `/metrics` (`COMMUNICATION_WORKER_METRICS_ADDR`);
    /// unset: the worker opens no port.
    pub worker_metrics_addr: Option<SocketAddr>,
}

impl TelemetrySettings {
    pub(super) fn read(env: &mut Env) -> Self {
        let json_logs = match env.get("COMMUNICATION_LOG_FORMAT").as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(_) => {
                env.problem("COMMUNICATION_LOG_FORMAT", "must be text or json");
                false
            }
        };
        TelemetrySettings {
            json_logs,
            worker_metrics_addr: env.address("COMMUNICATION_WORKER_METRICS_ADDR"),
        }
    }
}
