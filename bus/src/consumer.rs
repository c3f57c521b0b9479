//! A consume loop in batches with manual commit. Auto-commit is off: a caller commits
//! a batch only after writing it, so a crash re-delivers what was not written
//! (at-least-once); idempotent writers turn that into an exactly-once effect.
//! Reads committed data only (isolation.level=read_committed).

use crate::client::Role;
use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::watch::TopicWatch;
use rdkafka::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One consumed record, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Broker or producer timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// An owned copy of a received message.
    pub(crate) fn of(m: &impl Message) -> Self {
        Record {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
        }
    }
}

/// The next offset to read per topic-partition: what a commit stores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Positions {
    /// topic -> partition -> next offset (by topic first: `advance` allocates nothing
    /// for a topic it has seen).
    next: BTreeMap<String, BTreeMap<i32, i64>>,
}

impl Positions {
    /// Marks `record` (and everything before it in its partition) as done.
    pub fn advance(&mut self, record: &Record) {
        let partitions = match self.next.get_mut(record.topic.as_str()) {
            Some(p) => p,
            None => self.next.entry(record.topic.clone()).or_default(),
        };
        let next = partitions.entry(record.partition).or_insert(0);
        *next = (*next).max(record.offset + 1);
    }

    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    /// Forgets the topic-partitions for which `keep` is false (e.g. revoked ones).
    pub fn retain(&mut self, keep: impl Fn(&str, i32) -> bool) {
        for (t, partitions) in &mut self.next {
            partitions.retain(|p, _| keep(t, *p));
        }
        self.next.retain(|_, partitions| !partitions.is_empty());
    }

    pub fn clear(&mut self) {
        self.next.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.next
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |(p, o)| (t.as_str(), *p, *o)))
    }
}

/// Tracks which partitions this member owns. Rebalance callbacks run inside the
/// consumer's poll, so between two `next_batch` calls the assignment does not change.
#[derive(Default)]
struct GroupContext {
    generation: AtomicU64,
    assigned: Mutex<BTreeSet<(String, i32)>>,
    /// The generation each topic-partition was last revoked at (after the increment).
    revoked_at: Mutex<BTreeMap<(String, i32), u64>>,
    /// Writes in progress that a revocation waits for.
    writes: Arc<WritesInProgress>,
}

/// Counts the writes in progress of a member's records (e.g. a file written on another
/// thread while consuming goes on). A revocation waits until there is none, so the
/// partitions' next owner finds what they wrote before it reads anything.
#[derive(Default)]
struct WritesInProgress {
    count: Mutex<usize>,
    done: Condvar,
}

impl WritesInProgress {
    /// Waits until no write is in progress; none can begin while the guard is held.
    fn wait_until_none(&self) -> std::sync::MutexGuard<'_, usize> {
        let mut count = self.count.lock().expect("not poisoned");
        if *count > 0 {
            tracing::info!(writes = *count, "revocation waits for writes in progress");
        }
        while *count > 0 {
            count = self.done.wait(count).expect("not poisoned");
        }
        count
    }
}

/// A write in progress (see `BatchConsumer::write_in_progress`); ends when dropped.
pub struct WriteInProgress {
    writes: Arc<WritesInProgress>,
}

impl Drop for WriteInProgress {
    fn drop(&mut self) {
        let mut count = self.writes.count.lock().expect("not poisoned");
        *count -= 1;
        if *count == 0 {
            self.writes.done.notify_all();
        }
    }
}

impl GroupContext {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The topic-partitions revoked after `generation` (some may be assigned again).
    fn revoked_since(&self, generation: u64) -> BTreeSet<(String, i32)> {
        self.revoked_at
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(_, at)| **at > generation)
            .map(|(tp, _)| tp.clone())
            .collect()
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::client::log(level, facility, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::client::error(&error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Runs inside the poll: the group waits for this member until its writes of
            // the revoked partitions' records are complete. The count stays locked until
            // the generation has moved, so no write can begin in between under the old
            // generation (`BatchConsumer::write_in_progress_at`).
            let _no_new_writes = self.writes.wait_until_none();
            let mut assigned = self.assigned.lock().expect("not poisoned");
            let mut revoked_at = self.revoked_at.lock().expect("not poisoned");
            let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
            for e in tpl.elements() {
                let tp = (e.topic().to_owned(), e.partition());
                assigned.remove(&tp);
                revoked_at.insert(tp, generation);
            }
            tracing::info!(partitions = tpl.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut assigned = self.assigned.lock().expect("not poisoned");
            for e in tpl.elements() {
                assigned.insert((e.topic().to_owned(), e.partition()));
            }
            self.generation.fetch_add(1, Ordering::SeqCst);
            tracing::info!(partitions = tpl.count(), "partitions assigned");
        }
    }
}

/// Leaves out the records received before their partition was revoked. `changes` holds
/// (index of the first record received at a generation, that generation), in order.
fn drop_revoked(
    batch: Vec<Record>,
    first_generation: u64,
    changes: &[(usize, u64)],
    context: &GroupContext,
) -> Vec<Record> {
    let revoked_at = context.revoked_at.lock().expect("not poisoned");
    let before = batch.len();
    let mut change = changes.iter().peekable();
    let mut received_at = first_generation;
    let kept: Vec<Record> = batch
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            while let Some(&&(start, generation)) = change.peek() {
                if start > i {
                    break;
                }
                received_at = generation;
                change.next();
            }
            let revoked_later = revoked_at
                .get(&(r.topic.clone(), r.partition))
                .is_some_and(|&at| at > received_at);
            (!revoked_later).then_some(r)
        })
        .collect();
    if kept.len() < before {
        tracing::info!(
            dropped = before - kept.len(),
            "records received before their partition was revoked are read again"
        );
    }
    kept
}

/// `fetch.queue.backoff.ms` of every `BatchConsumer` (librdkafka's default is 1000).
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

#[derive(Clone)]
pub struct BatchConsumer {
    inner: Arc<StreamConsumer<GroupContext>>,
    group_id: String,
    /// A topic family this consumer follows (`following`): subscribed to anew when it
    /// changes.
    family: Option<Arc<Mutex<Family>>>,
}

struct Family {
    watch: TopicWatch,
    subscribed: BTreeSet<String>,
}

impl BatchConsumer {
    /// Joins `group_id` and subscribes to `topics`. A group without committed offsets
    /// starts from the earliest record, so a new sink sees the whole log.
    pub fn new(config: &KafkaConfig, group_id: &str, topics: &[&str]) -> Result<Self> {
        let consumer: StreamConsumer<GroupContext> = config
            .client(
                Role::Member(group_id),
                // librdkafka pauses fetching for this long once its local queue is over
                // its thresholds (default 1 s). A reader that drains the queue faster than
                // that then idles with nothing to read: throughput and latency both suffer.
                &[("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)],
            )
            .create_with_context(GroupContext::default())
            .map_err(Error::Config)?;
        if !topics.is_empty() {
            consumer.subscribe(topics).map_err(Error::Config)?;
        }
        Ok(Self {
            inner: Arc::new(consumer),
            group_id: group_id.to_owned(),
            family: None,
        })
    }

    /// Joins `group_id` and follows the topics `watch` finds (such as every alert
    /// topic): `next_batch` subscribes to the family again whenever it changed, and
    /// waits while it is empty.
    pub fn following(config: &KafkaConfig, group_id: &str, watch: TopicWatch) -> Result<Self> {
        let mut consumer = Self::new(config, group_id, &[])?;
        consumer.family = Some(Arc::new(Mutex::new(Family {
            watch,
            subscribed: BTreeSet::new(),
        })));
        Ok(consumer)
    }

    /// Subscribes to the followed family when it changed; false while it is empty.
    fn follow_family(&self) -> bool {
        let Some(family) = &self.family else {
            return true;
        };
        let mut family = family.lock().expect("not poisoned");
        if let Some(now) = family.watch.changed_now()
            && now != family.subscribed
            && !now.is_empty()
        {
            let list: Vec<&str> = now.iter().map(String::as_str).collect();
            match self.inner.subscribe(&list) {
                Ok(()) => {
                    tracing::info!(group = %self.group_id, topics = ?list, "following topics");
                    family.subscribed = now;
                }
                Err(e) => {
                    tracing::warn!(group = %self.group_id, error = %e, "subscribing failed; retrying")
                }
            }
        }
        !family.subscribed.is_empty()
    }

    /// Subscribes to `topics` instead of the topics given so far (a family of topics
    /// that grows, such as the alert topics); the group rebalances.
    pub fn subscribe(&self, topics: &[&str]) -> Result<()> {
        self.inner.subscribe(topics).map_err(Error::Consume)
    }

    /// Changes whenever partitions are assigned or revoked. A writer that buffers
    /// records must drop the buffers of revoked partitions when it changes, or it would
    /// write records another member now owns.
    pub fn assignment_generation(&self) -> u64 {
        self.inner.context().generation()
    }

    /// The topic-partitions revoked since `generation` (a value of
    /// `assignment_generation`), including those assigned again since: a partition that
    /// was revoked is read again from its committed offset, so whatever a caller buffered
    /// of it before must be dropped, even if this member owns it again.
    pub fn revoked_since(&self, generation: u64) -> BTreeSet<(String, i32)> {
        self.inner.context().revoked_since(generation)
    }

    /// Marks a write of records consumed under `generation` (a value of
    /// `assignment_generation`) as in progress until the returned value is dropped (it
    /// may move to another thread); `None` when the assignment has changed since, and the
    /// records may belong to another member now. While a write is in progress, a
    /// revocation of this member's partitions waits, so their next owner sees the write
    /// complete (e.g. a lake file renamed into place) and does not write the records
    /// again. Safe to call while another task is inside `next_batch`.
    pub fn write_in_progress_at(&self, generation: u64) -> Option<WriteInProgress> {
        let context = self.inner.context();
        let writes = context.writes.clone();
        {
            // A revocation moves the generation while holding this lock.
            let mut count = writes.count.lock().expect("not poisoned");
            if context.generation() != generation {
                return None;
            }
            *count += 1;
        }
        Some(WriteInProgress { writes })
    }

    /// The topic-partitions this member owns now.
    pub fn assigned(&self) -> BTreeSet<(String, i32)> {
        self.inner
            .context()
            .assigned
            .lock()
            .expect("not poisoned")
            .clone()
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// What a transactional producer needs to commit this member's offsets.
    pub(crate) fn group_metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata> {
        self.inner.group_metadata()
    }

    /// Moves every assigned partition back to its committed offset (the start of the
    /// log where none is committed), e.g. after an aborted transaction, so the records
    /// consumed since the last commit are delivered again.
    pub async fn rewind_to_committed(&self, timeout: Duration) -> Result<()> {
        let consumer = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let committed = consumer.committed(timeout).map_err(Error::Consume)?;
            let mut tpl = TopicPartitionList::new();
            for e in committed.elements() {
                let offset = match e.offset() {
                    Offset::Offset(o) => Offset::Offset(o),
                    _ => Offset::Beginning,
                };
                tpl.add_partition_offset(e.topic(), e.partition(), offset)
                    .map_err(Error::Consume)?;
            }
            if tpl.count() > 0 {
                consumer
                    .seek_partitions(tpl, timeout)
                    .map_err(Error::Consume)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::Admin(format!("rewind task failed: {e}")))?
    }

    /// Waits up to `max_wait` for records and returns at most `max_records` of them;
    /// an empty batch when nothing arrived or `cancel` fired, so callers can flush on time.
    ///
    /// Partitions can move while a batch is gathered (rebalance callbacks run inside the
    /// poll). A record received before its partition was revoked is left out of the
    /// batch: the partition's next owner (this member again, perhaps) reads it anew from
    /// the committed offset, so within a batch offsets rise per partition and no record
    /// of an earlier assignment follows one of the current. Callers compare
    /// `assignment_generation` and ask `revoked_since` to drop what they buffered.
    pub async fn next_batch(
        &self,
        max_records: usize,
        max_wait: Duration,
        cancel: &CancellationToken,
    ) -> Result<Vec<Record>> {
        let deadline = Instant::now() + max_wait;
        if !self.follow_family() {
            // Nothing to read yet: wait as a batch would, then look again.
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
            return Ok(Vec::new());
        }
        let context = self.inner.context();
        let first_generation = context.generation();
        let mut generation = first_generation;
        // (index of the first record received at a generation, that generation).
        let mut changes: Vec<(usize, u64)> = Vec::new();
        let mut batch = Vec::new();
        while batch.len() < max_records {
            let received = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                r = tokio::time::timeout_at(deadline, self.inner.recv()) => r,
            };
            match received {
                Err(_elapsed) => break,
                Ok(Err(e)) => {
                    if batch.is_empty() {
                        return Err(Error::Consume(e));
                    }
                    tracing::warn!(error = %e, "consume error after a partial batch");
                    break;
                }
                Ok(Ok(m)) => {
                    let now = context.generation();
                    if now != generation {
                        generation = now;
                        changes.push((batch.len(), now));
                    }
                    batch.push(Record::of(&m));
                }
            }
        }
        if context.generation() != first_generation {
            batch = drop_revoked(batch, first_generation, &changes, context);
        }
        Ok(batch)
    }

    /// Commits, for each topic-partition in `records`, the offset after the last one.
    /// Call only once everything in `records` (and before it) is durably written.
    pub async fn commit(&self, records: &[Record]) -> Result<()> {
        let mut positions = Positions::default();
        for r in records {
            positions.advance(r);
        }
        self.commit_positions(&positions).await
    }

    /// Commits `positions` (the next offset to read per topic-partition).
    pub async fn commit_positions(&self, positions: &Positions) -> Result<()> {
        if positions.next.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in positions.iter() {
            tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
                .map_err(Error::Commit)?;
        }
        let consumer = self.inner.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| Error::Admin(format!("commit task failed: {e}")))?
            .map_err(Error::Commit)
    }

    /// Records in this member's partitions that it has not consumed yet (high watermark
    /// minus position, summed). Queries the brokers: call it every few seconds, not per batch.
    pub async fn lag(&self, timeout: Duration) -> Result<i64> {
        let consumer = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let positions = consumer.position().map_err(Error::Consume)?;
            let mut lag = 0i64;
            for e in positions.elements() {
                let (low, high) = consumer
                    .fetch_watermarks(e.topic(), e.partition(), timeout)
                    .map_err(Error::Consume)?;
                let position = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => low,
                };
                lag += (high - position).max(0);
            }
            Ok(lag)
        })
        .await
        .map_err(|e| Error::Admin(format!("lag task failed: {e}")))?
    }

    /// Committed offsets of the partitions currently assigned to this member.
    pub async fn committed(&self, timeout: Duration) -> Result<Vec<(String, i32, Option<i64>)>> {
        let consumer = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let tpl = consumer.committed(timeout).map_err(Error::Consume)?;
            Ok(tpl
                .elements()
                .iter()
                .map(|e| {
                    let offset = match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    };
                    (e.topic().to_owned(), e.partition(), offset)
                })
                .collect())
        })
        .await
        .map_err(|e| Error::Admin(format!("committed task failed: {e}")))?
    }
}
