//! The ceiling: the same samples, Avro single-object encoded with labstream's codec and
//! keyed by sensor id, produced straight to Kafka with labstream's own producer
//! (`labstream_bus::Producer`: acks=all, idempotence, lz4, linger 2 ms). A batch is
//! sent the way ingest sends a request: every record queued at once, all awaited.

use super::Target;
use crate::recorder::Outcome;
use labstream_bus::{KafkaConfig, Producer};
use labstream_schemas::{Codec, Sample};

pub struct KafkaTarget {
    producer: Producer,
    codec: Codec,
    topic: String,
}

impl KafkaTarget {
    pub fn new(config: &KafkaConfig, topic: impl Into<String>) -> anyhow::Result<Self> {
        Ok(Self {
            producer: Producer::new(config)?,
            codec: Codec::new(),
            topic: topic.into(),
        })
    }

    pub fn flush(&self) {
        let _ = self.producer.flush(std::time::Duration::from_secs(30));
    }
}

impl Target for KafkaTarget {
    async fn send(&self, samples: Vec<Sample>) -> Outcome {
        let mut encoded = Vec::with_capacity(samples.len());
        for s in &samples {
            match self.codec.encode(s) {
                Ok(bytes) => encoded.push((s.sensor_id.as_str(), bytes)),
                Err(e) => return Outcome::Failed(format!("encode: {e}")),
            }
        }
        let results = futures::future::join_all(
            encoded
                .iter()
                .map(|(key, bytes)| self.producer.send(&self.topic, key.as_bytes(), bytes)),
        )
        .await;
        match results.into_iter().find_map(Result::err) {
            None => Outcome::Acked,
            Some(e) => Outcome::Failed(produce_error_kind(&e)),
        }
    }
}

fn produce_error_kind(e: &labstream_bus::Error) -> String {
    match e {
        labstream_bus::Error::Produce(k) => match k.rdkafka_error_code() {
            Some(code) => format!("produce: {code:?}"),
            None => "produce".to_owned(),
        },
        _ => "produce".to_owned(),
    }
}
