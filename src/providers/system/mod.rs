//! The `system` provider: delivers to the console (a structured log line without the body)
//! or fails on purpose. For development, demos and tests of the delivery policy.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::description::{
    BuildError, Example, FieldSpec, FieldType, KindSpec, Range, typed_config,
};
use super::{
    CheckReport, OutboundMessage, Provider, ProviderContext, ProviderError, ProviderKind,
    SendReceipt,
};
use crate::domain::Channel;

pub const KIND: ProviderKind = ProviderKind::new("system");

pub static SPEC: KindSpec = KindSpec {
    kind: KIND,
    label: "System (console)",
    description: "Delivers to the service's log, or fails on purpose: for development and tests",
    channels: &Channel::ALL,
    fields: &[
        FieldSpec {
            options: &[
                "deliver",
                "fail_transient",
                "fail_permanent",
                "fail_recipient",
            ],
            ..FieldSpec::new(
                "behavior",
                "Behavior",
                FieldType::Select,
                false,
                "deliver logs the message (without its body); the others fail every send the \
                 way a real provider can. Default deliver.",
                Example::Text("deliver"),
            )
        },
        FieldSpec {
            range: Some(Range {
                min: 0.0,
                exclusive: false,
                max: 60_000.0,
                message: "must be a number of milliseconds up to 60000",
            }),
            ..FieldSpec::new(
                "latency_ms",
                "Latency (ms)",
                FieldType::Number,
                false,
                "How long each send takes, to simulate a slow provider.",
                Example::Integer(0),
            )
        },
    ],
    build,
    receipts: None,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behavior {
    #[default]
    Deliver,
    FailTransient,
    FailPermanent,
    FailRecipient,
}

/// The `system` kind's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    #[serde(default)]
    pub behavior: Behavior,
    #[serde(default)]
    pub latency_ms: u64,
}

#[derive(Debug)]
pub struct SystemProvider {
    behavior: Behavior,
    latency: Duration,
}

/// Builds the adapter from its whole configuration.
pub fn build(
    config: &Map<String, Value>,
    _ctx: &ProviderContext,
) -> Result<Arc<dyn Provider>, BuildError> {
    let config: SystemConfig = typed_config(config)?;
    Ok(Arc::new(SystemProvider::new(&config)))
}

impl SystemProvider {
    pub fn new(config: &SystemConfig) -> SystemProvider {
        SystemProvider {
            behavior: config.behavior,
            latency: Duration::from_millis(config.latency_ms),
        }
    }
}

#[async_trait]
impl Provider for SystemProvider {
    fn kind(&self) -> ProviderKind {
        KIND
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<SendReceipt, ProviderError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        match self.behavior {
            Behavior::Deliver => {
                tracing::info!(
                    message_id = %message.id,
                    tenant_id = message.tenant_id,
                    channel = %message.channel,
                    to = message.to.as_str(),
                    "system provider delivered message to the console"
                );
                Ok(SendReceipt {
                    provider_message_id: Some(format!("system-{}", message.id)),
                })
            }
            Behavior::FailTransient => Err(ProviderError::transient(
                "system provider: simulated transient failure",
            )),
            Behavior::FailPermanent => Err(ProviderError::provider(
                "system provider: simulated permanent provider failure",
            )),
            Behavior::FailRecipient => Err(ProviderError::recipient(
                "system provider: simulated unreachable recipient",
            )),
        }
    }

    async fn check(&self) -> Result<CheckReport, ProviderError> {
        match self.behavior {
            Behavior::Deliver => Ok(CheckReport {
                detail: "system provider delivers to the console".into(),
            }),
            Behavior::FailRecipient => Ok(CheckReport {
                detail: "system provider is reachable (it rejects every recipient)".into(),
            }),
            Behavior::FailTransient => Err(ProviderError::transient(
                "system provider: simulated transient failure",
            )),
            Behavior::FailPermanent => Err(ProviderError::provider(
                "system provider: simulated permanent provider failure",
            )),
        }
    }
}
