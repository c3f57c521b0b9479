//! The HTTP API of labstream: read-only SQL over the Parquet lake with DataFusion, and
//! health. Queries never modify anything and never read outside the lake.

mod error;
mod lake_store;
mod query;
mod routes;

pub use error::{Error, Result};
pub use query::{QueryEngine, QueryResult};
pub use routes::{ApiState, router};
