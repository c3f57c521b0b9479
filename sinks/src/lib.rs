//! Sink workers: consume `samples.raw` at least once and write idempotently, so the
//! effect in MongoDB and in the Parquet lake is exactly once, also across replays.

mod backoff;
mod dlq;
mod error;
pub mod lake;
mod metrics;
pub mod mongo;

pub use dlq::DeadLetters;
pub use error::{Error, Result};
pub use metrics::{SinkMetrics, SinkMetricsFamilies};
