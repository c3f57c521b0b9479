//! Kafka plumbing for labstream over rdkafka, and the only crate that talks to rdkafka:
//! the cluster settings and every client's setup (role settings, then the user's
//! overrides; librdkafka's log into `tracing`), the topic catalog, a producer that
//! answers only once Kafka acknowledged (acks=all, idempotent), a consume loop that
//! hands out batches and commits only what the caller says is written, transactions for
//! consume-transform-produce, a store folded from one topic with a single fenced writer
//! ([`LogStore`]), readers of a whole topic or of a topic family from a time, a watch
//! over a growing topic family, topic admin, and consumer-group admin for ops (lag,
//! resets by offsets-for-times).

mod admin;
mod catalog;
mod client;
mod config;
mod consumer;
mod error;
mod groups;
mod log_reader;
mod log_store;
mod producer;
mod tail;
mod transaction;
mod watch;

pub use admin::{TopicSpec, ensure_topics, probe};
pub use catalog::TopicCatalog;
pub use config::KafkaConfig;
pub use consumer::{BatchConsumer, Positions, Record, WriteInProgress};
pub use error::{Error, Result};
pub use groups::{
    GroupAdmin, GroupDescription, GroupMember, OffsetMove, PartitionOffsets, ResetTarget,
};
pub use log_reader::LogReader;
pub use log_store::{Append, Decision, Fold, LogStore, StoreError, follow};
pub use producer::{Delivery, Producer};
pub use tail::Tail;
pub use transaction::TransactionalProducer;
pub use watch::{Cluster, TopicWatch};
