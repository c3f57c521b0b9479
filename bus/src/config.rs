use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How labstream reaches Kafka (`[kafka]` in labstream.toml, `LABSTREAM__KAFKA__*`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated.
    pub brokers: String,
    /// Prefix of every topic name, so deployments (or tests) can share a cluster.
    pub topic_prefix: String,
    /// Partitions of the sample topics when labstream creates them.
    pub samples_partitions: i32,
    /// Replication factor of topics labstream creates (3 in production clusters).
    pub replication_factor: i16,
    /// How long a produce may wait for Kafka's acknowledgement before the request fails.
    #[serde(with = "humantime_serde")]
    pub produce_timeout: Duration,
    /// `client.id` sent to the brokers.
    pub client_id: String,
    /// Raw librdkafka properties applied last (e.g. `security.protocol`, `sasl.*`).
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: String::new(),
            samples_partitions: 6,
            replication_factor: 1,
            produce_timeout: Duration::from_secs(10),
            client_id: "labstream".into(),
            librdkafka: BTreeMap::new(),
        }
    }
}
