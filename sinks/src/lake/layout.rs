//! The lake's naming contract (directories, file names, which files are live) lives in
//! `labstream_schemas::lake_layout`, shared with the compactor and the query engine.

pub(crate) use labstream_schemas::lake_layout::{NO_EXPERIMENT, live_files, table_dir};
pub use labstream_schemas::lake_layout::{PartFile, SAMPLES_DIR};
