//! Where a load run sends its samples. Each target turns one batch of samples into one
//! request (an HTTP POST, or one Kafka send per sample awaited together, as ingest
//! does) and reports how it ended; the workload models decide when to send.

mod http;
mod kafka;

pub use http::HttpTarget;
pub use kafka::KafkaTarget;

use crate::recorder::Outcome;
use labstream_schemas::Sample;
use std::future::Future;

pub trait Target: Send + Sync + 'static {
    /// Sends the samples as one request and waits for its answer.
    fn send(&self, samples: Vec<Sample>) -> impl Future<Output = Outcome> + Send;
}
