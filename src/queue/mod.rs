//! RabbitMQ: the topology (exchanges, work, delay and dead-letter queues), the versioned
//! envelope that is the contract with direct publishers, and the confirmed publisher.

pub mod envelope;
pub mod publisher;
pub mod topology;

pub use envelope::{ENVELOPE_VERSION, Envelope};
pub use publisher::{PublishError, Publisher};
pub use topology::Topology;

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

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
