//! The MongoDB sink: raw samples into one collection per sensor type
//! (`samples_<type>`), with a unique index on the dedupe key (sensor_id, ts_us, seq).
//! Inserts are unordered; a duplicate-key error means "already written", so
//! re-delivery after a crash or a replay changes nothing. Offsets are committed only
//! after the write; while MongoDB is unreachable the same batch is retried with backoff.

mod document;
mod sink;

pub use document::to_document;
pub use sink::{MongoSink, MongoSinkConfig};
