//! Sending a message and checking the connection ("test connection": TLS, login, NOOP, no
//! mail), each within one deadline covering resolution and the whole SMTP transaction.

use std::sync::Arc;

use async_trait::async_trait;
use lettre::AsyncTransport;
use tokio::time::{Instant, timeout_at};

use super::transport::{Target, retire};
use super::{KIND, SmtpProvider};
use crate::providers::{
    CheckReport, OutboundMessage, Provider, ProviderError, ProviderKind, SendReceipt,
};

#[async_trait]
impl Provider for SmtpProvider {
    fn kind(&self) -> ProviderKind {
        KIND
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<SendReceipt, ProviderError> {
        let (email, message_id) = self.compose(message)?;
        let deadline = Instant::now() + self.timeout;
        let target = timeout_at(deadline, self.target()).await.map_err(|_| {
            ProviderError::transient(format!("smtp: resolving {} timed out", self.host))
        })??;
        let transport = self.transport_for(&target);
        match timeout_at(deadline, transport.send(email)).await {
            Ok(Ok(_reply)) => Ok(SendReceipt {
                provider_message_id: Some(message_id),
            }),
            Ok(Err(e)) => {
                let err = self.classify(&e, Some((self.from.email.as_ref(), message.to.as_str())));
                tracing::debug!(message_id = %message.id, error = %err, "smtp send failed");
                Err(err)
            }
            Err(_) => {
                self.discard(&transport);
                // The server may have taken the message before we gave up: a retry can
                // duplicate it, as with any SMTP client.
                Err(ProviderError::transient(format!(
                    "smtp: {} did not complete the transaction within {} ms",
                    self.endpoint(),
                    self.timeout.as_millis()
                ))
                .with_unknown_outcome())
            }
        }
    }

    /// Connects (TLS, AUTH) on a fresh connection and sends NOOP; sends no mail.
    async fn check(&self) -> Result<CheckReport, ProviderError> {
        let deadline = Instant::now() + self.timeout;
        let target = timeout_at(deadline, self.target()).await.map_err(|_| {
            ProviderError::transient(format!("smtp: resolving {} timed out", self.host))
        })??;
        let addr = match target {
            Target::Configured => None,
            Target::Checked { first, .. } => Some(first),
        };
        // A transport of its own, so the check really logs in instead of reusing a connection.
        let transport = Arc::new(self.new_transport(addr));
        let outcome = timeout_at(deadline, transport.test_connection()).await;
        retire(transport);
        match outcome {
            Ok(Ok(true)) => {
                let auth = match &self.username {
                    Some(user) => format!("logged in as {user}"),
                    None => "no login configured".to_owned(),
                };
                Ok(CheckReport {
                    detail: format!(
                        "{} accepted a {} connection, {auth}, and answered NOOP",
                        self.endpoint(),
                        self.security.describe()
                    ),
                })
            }
            Ok(Ok(false)) => Err(ProviderError::transient(format!(
                "smtp: {} connected but did not answer NOOP",
                self.endpoint()
            ))),
            Ok(Err(e)) => Err(self.classify(&e, None)),
            Err(_) => Err(ProviderError::transient(format!(
                "smtp: {} did not answer within {} ms",
                self.endpoint(),
                self.timeout.as_millis()
            ))),
        }
    }
}
