//! A store kept in one Kafka topic: its state is the fold of the topic's committed
//! records, and one writer at a time appends to it. Every decision is taken on the log
//! read to its end (read_committed), then appended in a transaction under the store's
//! `transactional.id`: when two processes write, the newer one fences the older, whose
//! commit fails; the older re-registers, reads the log to its end again and decides
//! again, so no decision rests on state another writer has changed. An answer is given
//! only once the change shows in the folded state (read your writes), because the
//! brokers write a transaction's commit markers after the commit has returned, so a
//! read that starts at once may still end before the change.
//!
//! The experiment store and the alert rule store are users of it; a process that only
//! follows a topic (the alerts processor following the rules) uses [`follow`].

use crate::config::KafkaConfig;
use crate::consumer::Record;
use crate::error::{Error, Result};
use crate::log_reader::LogReader;
use crate::transaction::TransactionalProducer;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a read to the end, or a read back of a change, may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a writer looks again for the change it has just committed.
const READ_BACK_CHECK: Duration = Duration::from_millis(2);
/// Writes tried before a writer that keeps being fenced gives up.
const ATTEMPTS: u32 = 3;

/// The state a [`LogStore`] folds from its topic.
pub trait Fold: Send + Sync + 'static {
    /// Folds one committed record (a record without value is a tombstone).
    fn apply(&mut self, record: &Record);
}

/// One record a decision appends: `value` `None` is a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Append {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

impl Append {
    pub fn record(key: impl Into<Vec<u8>>, value: Vec<u8>) -> Self {
        Self {
            key: key.into(),
            value: Some(value),
        }
    }

    pub fn tombstone(key: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            value: None,
        }
    }
}

type Shown<S> = Box<dyn Fn(&S) -> bool + Send + Sync>;
type Prepare<E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send>>;

/// What a decision on the current state says: append these records and answer
/// `value` once `shown` holds of the folded state, or append nothing.
pub struct Decision<T, S, E> {
    appends: Vec<Append>,
    value: T,
    shown: Option<Shown<S>>,
    prepare: Option<Prepare<E>>,
}

impl<T, S, E> Decision<T, S, E> {
    /// Nothing to write: answer `value` at once.
    pub fn nothing(value: T) -> Self {
        Self {
            appends: Vec::new(),
            value,
            shown: None,
            prepare: None,
        }
    }

    /// Append `appends` in one transaction, then answer `value` once `shown` is true
    /// of the state (the change is folded in).
    pub fn append(
        appends: Vec<Append>,
        value: T,
        shown: impl Fn(&S) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            appends,
            value,
            shown: Some(Box::new(shown)),
            prepare: None,
        }
    }

    /// Work to finish before the records are appended (e.g. creating a topic the new
    /// state refers to); when it fails, nothing is appended and its error is answered.
    pub fn after(mut self, prepare: impl Future<Output = Result<(), E>> + Send + 'static) -> Self {
        self.prepare = Some(Box::pin(prepare));
        self
    }
}

/// Why [`LogStore::execute`] did not write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError<E> {
    /// The decision refused the change (the caller's own error).
    #[error(transparent)]
    Refused(E),
    /// Kafka could not be read or written; nothing was decided or written.
    #[error(transparent)]
    Unavailable(#[from] Error),
    /// The change is committed but did not show in the state within the read timeout.
    #[error("the change is committed but could not be read back within {} s; read it again in a moment", .waited.as_secs())]
    NotReadBack { waited: Duration },
}

impl<E> StoreError<E> {
    /// The caller's error: its own refusal, or `unavailable` of what went wrong with
    /// the log (nothing was decided, or the change is not visible yet).
    pub fn or_unavailable(self, unavailable: impl FnOnce(String) -> E) -> E {
        match self {
            StoreError::Refused(e) => e,
            StoreError::Unavailable(e) => unavailable(e.to_string()),
            StoreError::NotReadBack { waited } => unavailable(format!(
                "the change is committed but could not be read back within {} s; read it again in a moment",
                waited.as_secs()
            )),
        }
    }
}

/// A state folded from one topic, with its single writer (see the module docs).
pub struct LogStore<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for LogStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for LogStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("topic", &self.inner.topic)
            .field("transactional_id", &self.inner.transactional_id)
            .finish()
    }
}

struct Inner<S> {
    kafka: KafkaConfig,
    topic: String,
    transactional_id: String,
    state: RwLock<S>,
    writer: tokio::sync::Mutex<Writer>,
}

struct Writer {
    reader: LogReader,
    producer: Option<TransactionalProducer>,
}

impl<S: Fold> LogStore<S> {
    /// Reads `topic` (which must exist) to its end into `initial`. Writes go under
    /// `transactional_id`: one per store and deployment (prefix it like the topics).
    pub async fn open(
        kafka: &KafkaConfig,
        topic: &str,
        transactional_id: String,
        initial: S,
    ) -> Result<Self> {
        let reader = LogReader::new(kafka, topic).await?;
        let store = Self {
            inner: Arc::new(Inner {
                kafka: kafka.clone(),
                topic: topic.to_owned(),
                transactional_id,
                state: RwLock::new(initial),
                writer: tokio::sync::Mutex::new(Writer {
                    reader,
                    producer: None,
                }),
            }),
        };
        store.refresh().await?;
        Ok(store)
    }

    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// Runs `f` on the current state.
    pub fn read<T>(&self, f: impl FnOnce(&S) -> T) -> T {
        f(&self.inner.state.read().expect("not poisoned"))
    }

    /// Folds what other writers appended since the last read.
    pub async fn refresh(&self) -> Result<()> {
        let writer = self.inner.writer.lock().await;
        self.catch_up(&writer).await
    }

    /// Refreshes every `every` until `cancel`, so changes of other writers show
    /// (this process's own writes show at once). A failed read is logged and retried.
    pub async fn refresh_every(&self, every: Duration, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(topic = %self.inner.topic, error = %e, "reading the log failed; retrying");
            }
        }
    }

    async fn catch_up(&self, writer: &Writer) -> Result<()> {
        let records = writer.reader.read_to_end(READ_TIMEOUT).await?;
        if records.is_empty() {
            return Ok(());
        }
        let mut state = self.inner.state.write().expect("not poisoned");
        for record in &records {
            state.apply(record);
        }
        Ok(())
    }

    /// Decides on the state read to its end and appends the decision's records in one
    /// transaction; a writer fenced by another process re-registers, reads again and
    /// decides again. Answers the decision's value once the change shows in the state.
    pub async fn execute<T, E>(
        &self,
        mut decide: impl FnMut(&S) -> std::result::Result<Decision<T, S, E>, E>,
    ) -> std::result::Result<T, StoreError<E>> {
        let mut writer = self.inner.writer.lock().await;
        let mut attempts = 0;
        loop {
            attempts += 1;
            if writer.producer.is_none() {
                let kafka = self.inner.kafka.clone();
                let id = self.inner.transactional_id.clone();
                let producer =
                    tokio::task::spawn_blocking(move || TransactionalProducer::new(&kafka, &id))
                        .await
                        .map_err(|e| Error::Admin(format!("producer task failed: {e}")))??;
                writer.producer = Some(producer);
            }
            // Everything committed before this point (by any process) is now folded.
            self.catch_up(&writer).await?;
            let decision = {
                let state = self.inner.state.read().expect("not poisoned");
                decide(&state).map_err(StoreError::Refused)?
            };
            let Decision {
                appends,
                value,
                shown,
                prepare,
            } = decision;
            if appends.is_empty() {
                return Ok(value);
            }
            if let Some(prepare) = prepare {
                prepare.await.map_err(StoreError::Refused)?;
            }
            let producer = writer.producer.clone().expect("created above");
            let topic = self.inner.topic.clone();
            let committed = tokio::task::spawn_blocking(move || {
                producer.transact(|p| {
                    for append in &appends {
                        match &append.value {
                            Some(value) => p.send(&topic, &append.key, value)?,
                            None => p.send_tombstone(&topic, &append.key)?,
                        }
                    }
                    p.commit_without_offsets()
                })
            })
            .await
            .map_err(|e| Error::Admin(format!("transaction task failed: {e}")))?;
            match committed {
                Ok(()) => {
                    if let Some(shown) = shown {
                        self.read_back(&writer, shown.as_ref()).await?;
                    }
                    return Ok(value);
                }
                Err(Error::Fenced(e)) if attempts < ATTEMPTS => {
                    // Another process wrote in the meantime: re-register and decide again
                    // on the state that includes its records.
                    tracing::info!(topic = %self.inner.topic, error = %e, "log writer fenced by another instance; retrying");
                    writer.producer = None;
                }
                Err(e) => {
                    writer.producer = None;
                    return Err(StoreError::Unavailable(e));
                }
            }
        }
    }

    /// Reads the log until `shown` holds of the state.
    async fn read_back<E>(
        &self,
        writer: &Writer,
        shown: &(dyn Fn(&S) -> bool + Send + Sync),
    ) -> std::result::Result<(), StoreError<E>> {
        let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
        loop {
            self.catch_up(writer).await?;
            if self.read(shown) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::NotReadBack {
                    waited: READ_TIMEOUT,
                });
            }
            tokio::time::sleep(READ_BACK_CHECK).await;
        }
    }
}

/// Follows `reader`'s topic: every `every`, what was committed since the last read is
/// sent as one batch, until `cancel` or until the receiver is dropped.
pub fn follow(
    reader: LogReader,
    every: Duration,
    cancel: CancellationToken,
) -> (mpsc::Receiver<Vec<Record>>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(async move {
        while !cancel.is_cancelled() {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
            match reader.read_to_end(READ_TIMEOUT).await {
                Ok(records) if records.is_empty() => {}
                Ok(records) => {
                    if tx.send(records).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(topic = %reader.topic(), error = %e, "reading the log failed; retrying")
                }
            }
        }
    });
    (rx, task)
}
