//! The producer every writer to Kafka uses. `send` resolves only when the record is
//! acknowledged by all in-sync replicas (acks=all) or has definitely failed; with
//! idempotence on, librdkafka's retries never duplicate or reorder a partition.

use crate::client::{Logged, Role};
use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use std::time::Duration;

#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer<Logged>,
    timeout: Duration,
}

/// Where Kafka stored an acknowledged record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
}

impl Producer {
    pub fn new(config: &KafkaConfig) -> Result<Self> {
        let inner: FutureProducer<Logged> = config
            .client(Role::Producer, &[("linger.ms", "2")])
            .create_with_context(Logged)
            .map_err(Error::Config)?;
        Ok(Self {
            inner,
            timeout: config.produce_timeout,
        })
    }

    /// Appends one record and waits for its acknowledgement.
    pub async fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<Delivery> {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        delivered(self.inner.send(record, Timeout::After(self.timeout)).await)
    }

    /// Appends a tombstone (a record without value) for `key`: in a compacted topic
    /// it deletes the key once compaction ran.
    pub async fn send_tombstone(&self, topic: &str, key: &[u8]) -> Result<Delivery> {
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).key(key);
        delivered(self.inner.send(record, Timeout::After(self.timeout)).await)
    }

    /// Appends one record with headers (used for the dead-letter queue).
    pub async fn send_with_headers(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<Delivery> {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (name, value) in headers {
            owned = owned.insert(Header {
                key: name,
                value: Some(*value),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(topic).payload(payload).headers(owned);
        if let Some(key) = key {
            record = record.key(key);
        }
        delivered(self.inner.send(record, Timeout::After(self.timeout)).await)
    }

    /// Waits until everything queued is delivered (used at shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.inner.flush(timeout).map_err(Error::Produce)
    }
}

fn delivered(result: rdkafka::producer::future_producer::OwnedDeliveryResult) -> Result<Delivery> {
    result
        .map(|d| Delivery {
            partition: d.partition,
            offset: d.offset,
        })
        .map_err(|(e, _)| Error::Produce(e))
}
