//! Stream processors of labstream: experiment state (event-sourced), enrichment of
//! samples with their recording, and threshold alerts. They consume-transform-produce
//! inside Kafka transactions and read committed data only, so a restart neither loses nor
//! repeats an output.

pub mod alerts;
pub mod enrichment;
mod error;
pub mod experiments;

pub use error::{Error, Result};
