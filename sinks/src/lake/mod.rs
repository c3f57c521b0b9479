//! The Parquet lake sink. Layout:
//! `<lake>/samples/<sensor_type>/date=YYYY-MM-DD/experiment=<id|none>/part-<topic>-p<partition>-<first>-<last>.parquet`.
//! A file is named by the topic-partition and offset range it holds, written under a
//! temporary name, synced and renamed; offsets are committed only after that. On start
//! the writer reads the highest offset already in each directory and skips records at
//! or below it, so re-delivered records are never written twice. Compaction merges the
//! small files of a directory into sorted larger ones without a query ever seeing a row
//! twice (see `compact`).

mod batch;
mod compact;
mod layout;
mod sink;
#[cfg(test)]
mod test_support;
mod writer;

pub use batch::{CONTEXT_COLUMNS, arrow_schema, to_record_batch};
pub use compact::{
    CompactOptions, CompactReport, CompactionConfig, Compactor, DirReport, compact,
    compact_with_progress,
};
pub use layout::{PartFile, SAMPLES_DIR};
pub use sink::{LakeSink, LakeSinkConfig, LakeSource};
pub use writer::{Added, LakeWriter, PendingFlush};
