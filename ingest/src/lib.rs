//! HTTP ingest for sensors: parses and validates samples against the sensor-type
//! registry and appends them to `samples.raw`. A 2xx answer means every sample of the
//! request was acknowledged by Kafka; any other answer means the sender must retry.

mod error;
mod parse;
mod routes;

pub use error::{Error, Rejection, Result};
pub use parse::{Precision, parse_json_samples};
pub use routes::{IngestConfig, IngestState, router};
