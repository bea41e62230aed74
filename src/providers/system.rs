//! The `system` provider: delivers to the console (a structured log line without the body)
//! or fails on purpose. For development, demos and tests of the delivery policy.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{CheckReport, OutboundMessage, Provider, ProviderError, ProviderKind, SendReceipt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    Deliver,
    FailTransient,
    FailPermanent,
    FailRecipient,
}

#[derive(Debug)]
pub struct SystemProvider {
    behavior: Behavior,
    latency: Duration,
}

impl SystemProvider {
    pub fn from_config(config: &Map<String, Value>) -> SystemProvider {
        let behavior = match config.get("behavior").and_then(Value::as_str) {
            Some("fail_transient") => Behavior::FailTransient,
            Some("fail_permanent") => Behavior::FailPermanent,
            Some("fail_recipient") => Behavior::FailRecipient,
            _ => Behavior::Deliver,
        };
        let latency = Duration::from_millis(
            config
                .get("latency_ms")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        );
        SystemProvider { behavior, latency }
    }
}

#[async_trait]
impl Provider for SystemProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::System
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
