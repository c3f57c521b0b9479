//! The HTTP API of labstream: read-only SQL over the Parquet lake with DataFusion, and
//! health. Queries never modify anything, never read outside the lake, and run under
//! per-query memory and time limits.

pub mod alerts;
mod config;
mod error;
pub mod experiments;
mod export;
mod format;
mod functions;
mod http;
mod lake_store;
mod lake_table;
mod query;
mod routes;
mod sandbox;

pub use config::QueryConfig;
pub use error::{Error, Result};
pub use export::{DEFAULT_PART_BYTES, Export, ExportProgress, ExportRequest};
pub use format::{Encoder, Format};
pub use query::{QueryEngine, QueryResult, QueryStream};
pub use routes::{ApiState, router};
