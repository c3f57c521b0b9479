//! Topic administration: labstream creates the topics it writes to when they are
//! missing, with the configured partitions and replication.

use crate::client::{Logged, Role};
use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// A topic as labstream wants it to exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// Topic-level configs, e.g. `("cleanup.policy", "compact")`.
    pub config: Vec<(String, String)>,
}

impl TopicSpec {
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            config: Vec::new(),
        }
    }

    /// Adds a topic-level config, e.g. `.with_config("cleanup.policy", "compact")`.
    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.config.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn ensure_topics(config: &KafkaConfig, topics: &[TopicSpec]) -> Result<()> {
    let admin: AdminClient<Logged> = config
        .client(Role::Metadata, &[])
        .create_with_context(Logged)
        .map_err(Error::Config)?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let mut nt = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(i32::from(config.replication_factor)),
            );
            for (k, v) in &t.config {
                nt = nt.set(k, v);
            }
            nt
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| Error::Unreachable {
            brokers: config.brokers.clone(),
            cause: e,
        })?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::Admin(format!("creating topic {name}: {code}")));
            }
        }
    }
    Ok(())
}

/// Fetches cluster metadata: succeeds only when a broker answers within `timeout`.
pub async fn probe(config: &KafkaConfig, timeout: Duration) -> Result<()> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer<Logged> = config
            .client(Role::Metadata, &[])
            .create_with_context(Logged)
            .map_err(Error::Config)?;
        consumer
            .fetch_metadata(None, timeout)
            .map(|_| ())
            .map_err(|cause| Error::Unreachable {
                brokers: config.brokers.clone(),
                cause,
            })
    })
    .await
    .map_err(|e| Error::Admin(format!("probe task failed: {e}")))?
}
