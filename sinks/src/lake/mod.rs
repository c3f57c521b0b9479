//! The lake sink: consumes `samples.enriched` (or `samples.raw`) at least once and
//! writes it to the lake through `labstream_lake::LakeWriter`, committing offsets only
//! once the files holding them are in place. The lake itself (layout, writer,
//! compaction) lives in the `labstream-lake` crate.

mod sink;

pub use sink::{LakeSink, LakeSinkConfig, LakeSource};
