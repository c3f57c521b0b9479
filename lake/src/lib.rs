//! The Parquet lake of labstream, in one home: its naming contract (where a table's files
//! live, what a file name says, which files are live), the Arrow tables (samples per
//! sensor type, experiments, recordings, alerts), the sample writer and its batching,
//! compaction, and the one routine that puts a file in place whole (temporary name,
//! write, fsync, rename, fsync of the folder), so a reader sees a file complete or not
//! at all. The consume-and-commit loops that feed it live in `sinks`; the query engine in
//! `api` reads it. Nothing here knows Kafka: a row's origin is a [`LogPosition`].

pub mod alerts;
mod batch;
pub mod compact;
mod error;
pub mod experiments;
mod file;
pub mod layout;
pub mod tables;
#[cfg(test)]
mod test_support;
mod writer;

pub use batch::{CONTEXT_COLUMNS, arrow_schema, to_record_batch};
pub use compact::{
    CompactOptions, CompactReport, CompactionConfig, Compactor, DirReport, compact,
    compact_with_progress,
};
pub use error::{Error, Result};
pub use file::{Staging, write_batch, write_whole};
pub use layout::{NO_EXPERIMENT, PartFile, SAMPLES_DIR};
pub use writer::{Added, LakeWriter, LogPosition, PendingFlush};
