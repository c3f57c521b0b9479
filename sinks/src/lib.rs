//! Sink workers: consume `samples.raw` (MongoDB), `samples.enriched` (the lake) and the
//! `alerts.<name>` topics (the lake's `alerts` table) at least once and write
//! idempotently, so the effect is exactly once, also across replays.

pub mod alerts;
mod backoff;
mod dlq;
mod error;
pub mod lake;
mod metrics;
pub mod mongo;

pub use dlq::DeadLetters;
pub use error::{Error, Result};
pub use metrics::{SinkMetrics, SinkMetricsFamilies};
