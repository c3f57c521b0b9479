//! Consume-transform-produce in Kafka transactions: the records a processor derives
//! from a batch and the batch's consumer offsets commit together or not at all, so a
//! crash at any point neither loses nor repeats an output (readers use read_committed).
//! A `transactional.id` is owned by one live producer: starting a second one with the
//! same id fences the first (its next commit fails with [`Error::Fenced`]).

use crate::client::{Logged, Role};
use crate::config::KafkaConfig;
use crate::consumer::{BatchConsumer, Positions};
use crate::error::{Error, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often `commit` checks whether the transaction's records are acknowledged.
const DELIVERY_CHECK: Duration = Duration::from_millis(1);

/// A producer whose writes become visible only when [`commit`](Self::commit) succeeds.
/// Methods block on the brokers (a few milliseconds on a healthy cluster); call them
/// from `spawn_blocking` or a dedicated task when that matters.
#[derive(Clone)]
pub struct TransactionalProducer {
    inner: Arc<ThreadedProducer<Logged>>,
    timeout: Duration,
    transactional_id: String,
}

impl std::fmt::Debug for TransactionalProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalProducer")
            .field("transactional_id", &self.transactional_id)
            .finish()
    }
}

impl TransactionalProducer {
    /// Creates the producer and registers `transactional_id` with the cluster, which
    /// aborts any transaction a previous owner of the id left open and fences it.
    pub fn new(config: &KafkaConfig, transactional_id: &str) -> Result<Self> {
        let timeout = config.produce_timeout.max(Duration::from_secs(1));
        let inner: ThreadedProducer<Logged> = config
            .client(Role::Transactional(transactional_id), &[("linger.ms", "5")])
            .create_with_context(Logged)
            .map_err(Error::Config)?;
        inner.init_transactions(timeout).map_err(txn_error)?;
        Ok(Self {
            inner: Arc::new(inner),
            timeout,
            transactional_id: transactional_id.to_owned(),
        })
    }

    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    pub fn begin(&self) -> Result<()> {
        self.inner.begin_transaction().map_err(txn_error)
    }

    /// Queues a record in the open transaction. Delivery errors surface at `commit`.
    pub fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<()> {
        self.send_with_headers(topic, key, payload, &[])
    }

    /// Queues a tombstone (a record without value) for `key` in the open transaction.
    pub fn send_tombstone(&self, topic: &str, key: &[u8]) -> Result<()> {
        self.enqueue(BaseRecord::<[u8], [u8]>::to(topic).key(key))
    }

    pub fn send_with_headers(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<()> {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (name, value) in headers {
            owned = owned.insert(Header {
                key: name,
                value: Some(*value),
            });
        }
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .key(key)
            .payload(payload);
        if !headers.is_empty() {
            record = record.headers(owned);
        }
        self.enqueue(record)
    }

    fn enqueue(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
        let deadline = std::time::Instant::now() + self.timeout;
        loop {
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if std::time::Instant::now() < deadline =>
                {
                    // The local queue drains as the brokers acknowledge; wait a little.
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(Error::Produce(e)),
            }
        }
    }

    /// Adds `positions` as `consumer`'s group offsets to the transaction and commits it:
    /// outputs and offsets become visible together. On error the transaction is not
    /// committed; call [`abort`](Self::abort) (unless the error is [`Error::Fenced`]),
    /// rewind the consumer and process the batch again.
    pub fn commit(&self, positions: &Positions, consumer: &BatchConsumer) -> Result<()> {
        if !positions.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (topic, partition, offset) in positions.iter() {
                tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
                    .map_err(Error::Commit)?;
            }
            let metadata = consumer.group_metadata().ok_or_else(|| {
                Error::Admin("the consumer has no group metadata (not in a group)".into())
            })?;
            self.inner
                .send_offsets_to_transaction(&tpl, &metadata, self.timeout)
                .map_err(txn_error)?;
        }
        self.await_deliveries();
        labstream_schemas::crash_point("kafka.transaction.before_commit");
        self.inner
            .commit_transaction(self.timeout)
            .map_err(txn_error)?;
        labstream_schemas::crash_point("kafka.transaction.after_commit");
        Ok(())
    }

    /// Commits the open transaction without consumer offsets (command handlers).
    pub fn commit_without_offsets(&self) -> Result<()> {
        self.await_deliveries();
        self.inner
            .commit_transaction(self.timeout)
            .map_err(txn_error)
    }

    /// Waits (up to the timeout) until the records of the transaction are acknowledged.
    /// rdkafka's `commit_transaction` flushes first and, while records are outstanding,
    /// polls in steps of 100 ms; with the threaded producer's own thread serving the
    /// delivery reports, each step waits its whole 100 ms, so every commit took at least
    /// 100 ms (the alerts benchmark showed 104 ms per commit). Once nothing is
    /// outstanding its flush returns at once. Delivery errors still surface at commit.
    fn await_deliveries(&self) {
        let deadline = Instant::now() + self.timeout;
        while self.inner.in_flight_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(DELIVERY_CHECK);
        }
    }

    /// Runs `body` (sends, then a commit) in a new transaction. When it fails, the
    /// transaction is aborted, unless this producer was fenced (a fenced producer can
    /// neither commit nor abort; its successor aborts what it left open).
    pub fn transact(&self, body: impl FnOnce(&Self) -> Result<()>) -> Result<()> {
        self.begin()?;
        let result = body(self);
        if let Err(e) = &result
            && !matches!(e, Error::Fenced(_))
            && let Err(abort) = self.abort()
        {
            tracing::warn!(error = %abort, transactional_id = %self.transactional_id, "aborting a failed transaction failed");
        }
        result
    }

    /// Drops everything sent since `begin`.
    pub fn abort(&self) -> Result<()> {
        self.inner
            .abort_transaction(self.timeout)
            .map_err(txn_error)
    }
}

fn txn_error(e: KafkaError) -> Error {
    match &e {
        KafkaError::Transaction(inner) if inner.is_fatal() => Error::Fenced(e),
        KafkaError::Transaction(inner)
            if matches!(
                inner.code(),
                RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch
            ) =>
        {
            Error::Fenced(e)
        }
        _ => Error::Transaction(e),
    }
}
