//! Consumer-group administration for ops: who is in a group, where it stands in a
//! topic (committed offset, end offset, lag), and moving its committed offsets to a time
//! (offsets-for-times), the start or the end of the log. Moving offsets is refused while
//! the group has live members: they would overwrite the new offsets with their own.

use crate::client::{Logged, Role};
use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;

/// A group as the group coordinator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    pub group: String,
    /// `Empty`, `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Dead`, or
    /// empty/`Dead` for a group the cluster does not know.
    pub state: String,
    pub members: Vec<GroupMember>,
}

impl GroupDescription {
    /// Members currently joined: a reset now would be overwritten by their commits.
    pub fn has_live_members(&self) -> bool {
        !self.members.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
}

/// One partition of a topic from a group's point of view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub topic: String,
    pub partition: i32,
    /// The next offset the group will read; `None` when it never committed one (a
    /// labstream consumer then starts at the earliest record).
    pub committed: Option<i64>,
    /// Oldest offset still in the log (retention moves it).
    pub low: i64,
    /// The offset the next appended record will get (high watermark).
    pub end: i64,
    /// Nothing a read_committed consumer would deliver lies between the committed
    /// offset and the end: only transaction markers (or aborted records), which take
    /// offsets that consumers never commit past. The group has read everything.
    pub only_markers_left: bool,
}

impl PartitionOffsets {
    /// Records the group has still to read (from `low` when nothing is committed);
    /// offsets of transaction markers count, except when only markers are left.
    pub fn lag(&self) -> i64 {
        if self.only_markers_left {
            return 0;
        }
        let from = self.committed.unwrap_or(self.low).max(self.low);
        (self.end - from).max(0)
    }
}

/// Tails up to this many offsets long are checked for being transaction markers only.
const MARKER_CHECK_MAX: i64 = 1000;

/// Where to move a group's offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetTarget {
    /// The oldest record still in the log.
    Earliest,
    /// The end of the log: nothing is re-read.
    Latest,
    /// The first record whose timestamp is at or after this time (milliseconds since
    /// the epoch); partitions without such a record go to their end.
    Time(i64),
}

/// One partition's planned move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetMove {
    pub topic: String,
    pub partition: i32,
    pub current: Option<i64>,
    pub target: i64,
    pub low: i64,
    pub end: i64,
}

impl OffsetMove {
    /// Records read again once the group resumes (negative: records skipped).
    pub fn reread(&self) -> i64 {
        self.current.unwrap_or(self.low).max(self.low) - self.target
    }

    /// Records the group will read after the move.
    pub fn to_read(&self) -> i64 {
        (self.end - self.target).max(0)
    }
}

/// Reads and moves the offsets of one consumer group without joining it.
#[derive(Clone)]
pub struct GroupAdmin {
    config: KafkaConfig,
    consumer: Arc<BaseConsumer<Logged>>,
    group: String,
    timeout: Duration,
}

impl std::fmt::Debug for GroupAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupAdmin")
            .field("group", &self.group)
            .finish()
    }
}

impl GroupAdmin {
    /// A client bound to `group` that never subscribes, so it is not a member and
    /// commits as an outside admin would (accepted only while the group is empty).
    pub fn new(config: &KafkaConfig, group: &str) -> Result<Self> {
        let consumer: BaseConsumer<Logged> = config
            .client(Role::Admin(group), &[])
            .create_with_context(Logged)
            .map_err(Error::Config)?;
        Ok(Self {
            config: config.clone(),
            consumer: Arc::new(consumer),
            group: group.to_owned(),
            timeout: Duration::from_secs(10),
        })
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// The group's state and live members.
    pub async fn describe(&self) -> Result<GroupDescription> {
        let (c, group, timeout) = (self.consumer.clone(), self.group.clone(), self.timeout);
        blocking(move || {
            let list = c
                .fetch_group_list(Some(&group), timeout)
                .map_err(Error::Consume)?;
            let info = list.groups().iter().find(|g| g.name() == group);
            Ok(match info {
                None => GroupDescription {
                    group,
                    state: "Dead".into(),
                    members: Vec::new(),
                },
                Some(g) => GroupDescription {
                    group: group.clone(),
                    state: g.state().to_owned(),
                    members: g
                        .members()
                        .iter()
                        .map(|m| GroupMember {
                            member_id: m.id().to_owned(),
                            client_id: m.client_id().to_owned(),
                            client_host: m.client_host().to_owned(),
                        })
                        .collect(),
                },
            })
        })
        .await
    }

    /// The names of every topic in the cluster (for groups that follow a family of
    /// topics, such as the alert topics).
    pub async fn topics(&self) -> Result<Vec<String>> {
        let (c, timeout) = (self.consumer.clone(), self.timeout);
        blocking(move || {
            let metadata = c.fetch_metadata(None, timeout).map_err(Error::Consume)?;
            Ok(metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none())
                .map(|t| t.name().to_owned())
                .collect())
        })
        .await
    }

    /// Committed, oldest and end offset of every partition of `topic` for this group.
    pub async fn offsets(&self, topic: &str) -> Result<Vec<PartitionOffsets>> {
        let (c, topic, timeout) = (self.consumer.clone(), topic.to_owned(), self.timeout);
        let config = self.config.clone();
        blocking(move || {
            let partitions = partitions(&c, &topic, timeout)?;
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition(&topic, *p);
            }
            let committed = c.committed_offsets(tpl, timeout).map_err(Error::Consume)?;
            partitions
                .iter()
                .map(|p| {
                    let (low, end) = c
                        .fetch_watermarks(&topic, *p, timeout)
                        .map_err(Error::Consume)?;
                    let committed = match committed.find_partition(&topic, *p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => Some(o),
                        _ => None,
                    };
                    Ok(PartitionOffsets {
                        topic: topic.clone(),
                        partition: *p,
                        committed,
                        low,
                        end,
                        only_markers_left: false,
                    })
                })
                .collect::<Result<Vec<_>>>()
                .and_then(|mut offsets| {
                    mark_marker_tails(&config, &mut offsets, timeout)?;
                    Ok(offsets)
                })
        })
        .await
    }

    /// The per-partition moves a reset of `topic` to `target` would make. Changes nothing.
    pub async fn plan_reset(&self, topic: &str, target: ResetTarget) -> Result<Vec<OffsetMove>> {
        let current = self.offsets(topic).await?;
        let targets: Vec<i64> = match target {
            ResetTarget::Earliest => current.iter().map(|p| p.low).collect(),
            ResetTarget::Latest => current.iter().map(|p| p.end).collect(),
            ResetTarget::Time(ms) => {
                let (c, t, timeout) = (self.consumer.clone(), topic.to_owned(), self.timeout);
                let parts: Vec<(i32, i64)> = current.iter().map(|p| (p.partition, p.end)).collect();
                blocking(move || {
                    let mut tpl = TopicPartitionList::new();
                    for (p, _) in &parts {
                        tpl.add_partition_offset(&t, *p, Offset::Offset(ms))
                            .map_err(Error::Consume)?;
                    }
                    let found = c.offsets_for_times(tpl, timeout).map_err(Error::Consume)?;
                    parts
                        .iter()
                        .map(|(p, end)| {
                            match found
                                .find_partition(&t, *p)
                                .map(|e| (e.offset(), e.error()))
                            {
                                Some((_, Err(e))) => Err(Error::Consume(e)),
                                Some((Offset::Offset(o), _)) => Ok(o),
                                // No record at or after the time: the end of the partition.
                                _ => Ok(*end),
                            }
                        })
                        .collect()
                })
                .await?
            }
        };
        Ok(current
            .into_iter()
            .zip(targets)
            .map(|(p, target)| OffsetMove {
                target: target.clamp(p.low, p.end),
                topic: p.topic,
                partition: p.partition,
                current: p.committed,
                low: p.low,
                end: p.end,
            })
            .collect())
    }

    /// Commits the planned offsets for the group. Refused while the group has live
    /// members (their next commit would undo the move).
    pub async fn apply_reset(&self, moves: &[OffsetMove]) -> Result<()> {
        let description = self.describe().await?;
        if description.has_live_members() {
            return Err(Error::GroupActive {
                group: self.group.clone(),
                members: description.members.len(),
            });
        }
        if moves.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for m in moves {
            tpl.add_partition_offset(&m.topic, m.partition, Offset::Offset(m.target))
                .map_err(Error::Commit)?;
        }
        let c = self.consumer.clone();
        blocking(move || c.commit(&tpl, CommitMode::Sync).map_err(Error::Commit)).await
    }
}

/// Sets `only_markers_left` where the short tail between the committed offset and the
/// end holds no record a read_committed consumer delivers (reads that tail once).
fn mark_marker_tails(
    config: &KafkaConfig,
    offsets: &mut [PartitionOffsets],
    timeout: Duration,
) -> Result<()> {
    let tails: Vec<usize> = offsets
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            p.committed
                .is_some_and(|c| c >= p.low && c < p.end && p.end - c <= MARKER_CHECK_MAX)
        })
        .map(|(i, _)| i)
        .collect();
    if tails.is_empty() {
        return Ok(());
    }
    let reader: BaseConsumer<Logged> = config
        .client(
            Role::Reader("lag-check"),
            &[("enable.partition.eof", "true")],
        )
        .create_with_context(Logged)
        .map_err(Error::Config)?;
    let mut tpl = TopicPartitionList::new();
    for &i in &tails {
        let p = &offsets[i];
        tpl.add_partition_offset(
            &p.topic,
            p.partition,
            Offset::Offset(p.committed.unwrap_or(p.low)),
        )
        .map_err(Error::Consume)?;
    }
    reader.assign(&tpl).map_err(Error::Consume)?;
    // Undecided partitions: neither a delivered record nor the end seen yet.
    let mut open: std::collections::BTreeSet<i32> =
        tails.iter().map(|&i| offsets[i].partition).collect();
    let mut markers_only = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + timeout;
    while !open.is_empty() && std::time::Instant::now() < deadline {
        match reader.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                use rdkafka::message::Message;
                open.remove(&m.partition());
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                // EOF of a partition already decided (a record came first) changes nothing.
                let undecided = open.remove(&p);
                if undecided {
                    markers_only.insert(p);
                }
            }
            Some(Err(e)) => return Err(Error::Consume(e)),
        }
    }
    for &i in &tails {
        offsets[i].only_markers_left = markers_only.contains(&offsets[i].partition);
    }
    Ok(())
}

fn partitions(c: &BaseConsumer<Logged>, topic: &str, timeout: Duration) -> Result<Vec<i32>> {
    let metadata = c
        .fetch_metadata(Some(topic), timeout)
        .map_err(Error::Consume)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(Error::Admin(format!("topic {topic} does not exist")));
    }
    Ok(partitions)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Admin(format!("group admin task failed: {e}")))?
}
