//! Kafka plumbing for labstream over rdkafka: the cluster settings, a producer that
//! answers only once Kafka acknowledged (acks=all, idempotent), a consume loop that
//! hands out batches and commits only what the caller says is written, and topic admin.

mod admin;
mod config;
mod consumer;
mod error;
mod producer;

pub use admin::{TopicSpec, ensure_topics, probe};
pub use config::KafkaConfig;
pub use consumer::{BatchConsumer, Positions, Record};
pub use error::{Error, Result};
pub use producer::{Delivery, Producer};
pub use rdkafka;
