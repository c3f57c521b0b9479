//! Kafka plumbing for labstream over rdkafka: the cluster settings, a producer that
//! answers only once Kafka acknowledged (acks=all, idempotent), a consume loop that
//! hands out batches and commits only what the caller says is written, topic admin,
//! transactions for consume-transform-produce, and consumer-group admin for ops (lag,
//! resets by offsets-for-times).

mod admin;
mod config;
mod consumer;
mod error;
mod groups;
mod log_reader;
mod producer;
mod transaction;

pub use admin::{TopicSpec, ensure_topics, probe};
pub use config::KafkaConfig;
pub use consumer::{BatchConsumer, Positions, Record, WriteInProgress};
pub use error::{Error, Result};
pub use groups::{
    GroupAdmin, GroupDescription, GroupMember, OffsetMove, PartitionOffsets, ResetTarget,
};
pub use log_reader::LogReader;
pub use producer::{Delivery, Producer};
pub use rdkafka;
pub use transaction::TransactionalProducer;
