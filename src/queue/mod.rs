//! RabbitMQ: the topology (exchanges, work, delay and dead-letter queues), the versioned
//! envelope that is the contract with direct publishers, the retry state a delayed envelope
//! carries in its headers, and the confirmed publisher.

pub mod envelope;
pub(crate) mod gather;
pub mod publisher;
pub mod retry_state;
pub mod topology;

pub use envelope::{ENVELOPE_VERSION, Envelope};
pub use publisher::{PublishError, Publisher};
pub use topology::Topology;

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

/// The name a process gives one of its AMQP connections: `{namespace}/{role}/{pid}`. RabbitMQ
/// shows it as `connection_name` in `rabbitmqctl list_connections client_properties` and in
/// the management UI, so an operator (or a test) can find, and close, the connections of one
/// namespace or one process without touching anyone else's.
pub fn connection_name(namespace: &str, role: &str) -> String {
    format!("{namespace}/{role}/{}", std::process::id())
}

/// Opens a connection with a bounded wait, so a down broker is an error, not a hang.
pub async fn connect(url: &str, name: &str) -> Result<Connection, lapin::Error> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(Duration::from_secs(5), Connection::connect(url, props)).await {
        Ok(result) => result,
        Err(_) => Err(lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connecting to RabbitMQ timed out",
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn connection_names_carry_namespace_role_and_pid() {
        let name = super::connection_name("acme-prod", "worker");
        assert_eq!(name, format!("acme-prod/worker/{}", std::process::id()));
    }
}
