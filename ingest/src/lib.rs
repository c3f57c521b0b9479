//! HTTP ingest for sensors: parses and validates samples against the sensor-type
//! registry and appends them to `samples.raw`. A 2xx answer means every sample of the
//! request was acknowledged by Kafka; any other answer means the sender must retry.

mod csv;
mod error;
mod files;
mod json;
mod line_protocol;
mod metrics;
mod routes;
mod validate;

pub use csv::CsvColumns;
pub use error::{Error, Result};
pub use files::{FileFormat, FileLine, FileSamples, open_file};
pub use json::parse_json;
pub use line_protocol::parse_line_protocol;
pub use metrics::IngestMetrics;
pub use routes::{IngestConfig, IngestState, router};
pub use validate::{Invalid, Parsed, Precision, RawValue, RejectKind, Rejection, Validator};
