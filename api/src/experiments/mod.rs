//! Experiment commands and reads over HTTP, backed by the event log
//! (`experiments.events`): every accepted command is one committed event, and reads
//! serve the state folded from the log.

mod routes;
mod store;

pub use routes::{ExperimentsState, router};
pub use store::{ExperimentStore, Projection, StoreConfig, StoreError};
