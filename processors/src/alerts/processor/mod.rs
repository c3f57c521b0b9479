//! The alerts processor: consumes `samples.raw` (read_committed) in batches, runs the
//! (rule, sensor) machines, and writes each batch's transitions (`alerts.<name>`), the
//! changed machine states (`alerts.state`) and the batch's consumer offsets in ONE
//! Kafka transaction. After a crash the committed state and offsets agree, so the
//! batch is evaluated again from the same state: no transition is repeated or lost.
//! Rules are read from `alerts.rules` by a background task and apply without restart
//! (rules.rs); the machines' state and the transaction are in state.rs.

mod rules;
mod state;

use state::record_outputs;

use crate::alerts::machine::{self, Input, MachineState};
use crate::alerts::ownership::partition_for_key;
use crate::alerts::rule::Rule;
use crate::error::{Error, Result};
use labstream_bus::{
    BatchConsumer, Cluster, KafkaConfig, LogReader, Positions, Record, TopicCatalog,
    TransactionalProducer,
};
use labstream_schemas::{Codec, Registry, RuleId, Sample, SensorId, SensorType, Timestamp, Topics};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long reading `alerts.rules` or `alerts.state` to its end may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed transaction before the batch is processed again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// While a batch fills, how often its evaluated records are checked for a transition
/// (the most a transition waits before its batch is committed).
const PENDING_CHECK: Duration = Duration::from_millis(2);

/// `[processors.alerts]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Run the alerts processor inside `labstream serve`.
    pub enabled: bool,
    /// Kafka consumer group; members share the partitions of `samples.raw`.
    pub group_id: String,
    /// Unique per running instance and stable across its restarts: the Kafka
    /// transactional id is `<group_id>-<instance_id>`, so a restarted instance fences
    /// its crashed predecessor and aborts the transaction it left open. Not a setting
    /// of its own: the binary sets it from `processors.instance_id`.
    #[serde(skip)]
    pub instance_id: String,
    /// Most samples evaluated in one transaction.
    pub batch_max_records: usize,
    /// Longest wait to fill a batch. A batch with a transition is committed as soon as
    /// the transition is decided, so this delays only quiet batches (fewer, larger
    /// transactions) and transitions of time (absent sensors, `for` periods run out).
    #[serde(with = "humantime_serde")]
    pub batch_max_wait: Duration,
    /// How far event time may lag behind the newest sample (or, when idle, the clock)
    /// before a sensor counts as silent or a pending period as run out. Samples older
    /// than that are late and do not change a machine that has moved past them.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// How often `alerts.rules` is checked for changes.
    #[serde(with = "humantime_serde")]
    pub rules_refresh: Duration,
    /// Partitions of `alerts.state` and of each `alerts.<name>` labstream creates.
    pub topic_partitions: i32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            group_id: "labstream-alerts".into(),
            instance_id: "0".into(),
            batch_max_records: 2000,
            batch_max_wait: Duration::from_millis(20),
            allowed_lateness: Duration::from_secs(2),
            rules_refresh: Duration::from_millis(500),
            topic_partitions: 3,
        }
    }
}

impl AlertsConfig {
    /// Checks the settings, creates the alert topics that are missing, joins the
    /// consumer group and registers the transactional producer.
    pub async fn build(
        &self,
        kafka: &KafkaConfig,
        registry: Option<Registry>,
    ) -> Result<AlertsProcessor> {
        if self.batch_max_records == 0 {
            return Err(Error::Config("batch_max_records must be at least 1".into()));
        }
        if self.topic_partitions < 1 {
            return Err(Error::Config("topic_partitions must be at least 1".into()));
        }
        if self.group_id.is_empty() || self.instance_id.is_empty() {
            return Err(Error::Config(
                "group_id and instance_id must not be empty".into(),
            ));
        }
        let catalog = TopicCatalog::new(kafka, self.topic_partitions);
        let topics = catalog.names().clone();
        labstream_bus::ensure_topics(
            kafka,
            &[
                catalog.samples_raw(),
                catalog.alerts_rules(),
                catalog.alerts_state(),
            ],
        )
        .await?;
        let samples_partitions = Cluster::new(kafka)?
            .partition_count(&topics.samples_raw())
            .await?;
        let consumer = BatchConsumer::new(kafka, &self.group_id, &[&topics.samples_raw()])?;
        let transactional_id = format!("{}-{}", self.group_id, self.instance_id);
        let producer = {
            let kafka = kafka.clone();
            tokio::task::spawn_blocking(move || {
                TransactionalProducer::new(&kafka, &transactional_id)
            })
            .await
            .map_err(|e| Error::Config(format!("starting the producer failed: {e}")))??
        };
        let rules_reader = LogReader::new(kafka, &topics.alerts_rules()).await?;
        Ok(AlertsProcessor {
            kafka: kafka.clone(),
            config: self.clone(),
            catalog,
            topics,
            registry,
            codec: Codec::new(),
            consumer,
            producer,
            rules_reader: Some(rules_reader),
            samples_partitions,
            rules: BTreeMap::new(),
            machines: HashMap::new(),
            assigned: BTreeSet::new(),
            generation: None,
            watermark: None,
            ensured_topics: HashSet::new(),
            carry: Outbox::default(),
        })
    }
}

/// One (rule, sensor) machine with the sensor's type (for events and state records).
#[derive(Clone, Debug)]
struct Pair {
    sensor_type: SensorType,
    state: MachineState,
}

type PairKey = (RuleId, SensorId);

/// What one transaction writes besides the offsets.
#[derive(Clone, Debug, Default)]
struct Outbox {
    /// (topic, key, payload) in the order decided.
    events: Vec<(String, String, Vec<u8>)>,
    /// Latest state per key.
    states: BTreeMap<String, Vec<u8>>,
}

impl Outbox {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.states.is_empty()
    }

    fn append(&mut self, other: Outbox) {
        self.events.extend(other.events);
        self.states.extend(other.states);
    }
}

/// One transaction's worth of consumed records, evaluated as they arrive.
#[derive(Debug, Default)]
struct Batch {
    positions: Positions,
    outbox: Outbox,
    /// Event time of the newest decoded sample.
    newest: Option<Timestamp>,
    /// Records of owned partitions consumed.
    received: usize,
    ended: Ended,
}

/// Why a batch stopped filling.
#[derive(Clone, Copy, Debug, Default)]
enum Ended {
    /// A transition is pending: committed at once.
    Transition,
    /// `batch_max_records` reached.
    Full,
    /// `batch_max_wait` passed (or shutdown).
    #[default]
    Wait,
}

impl Ended {
    fn as_str(self) -> &'static str {
        match self {
            Self::Transition => "transition",
            Self::Full => "full",
            Self::Wait => "wait",
        }
    }
}

pub struct AlertsProcessor {
    kafka: KafkaConfig,
    config: AlertsConfig,
    catalog: TopicCatalog,
    topics: Topics,
    registry: Option<Registry>,
    codec: Codec,
    consumer: BatchConsumer,
    producer: TransactionalProducer,
    rules_reader: Option<LogReader>,
    samples_partitions: i32,
    rules: BTreeMap<RuleId, Rule>,
    machines: HashMap<PairKey, Pair>,
    /// Partitions of `samples.raw` this member owns.
    assigned: BTreeSet<i32>,
    generation: Option<u64>,
    /// Event time up to which every owned sensor is assumed to have reported.
    watermark: Option<Timestamp>,
    ensured_topics: HashSet<String>,
    /// Outputs decided outside a batch (rule changes) not committed yet.
    carry: Outbox,
}

impl AlertsProcessor {
    /// Runs until `cancel`; the batch in progress is committed first. Returns an error
    /// only when it cannot go on (fenced by another instance, bad settings).
    pub async fn run(mut self, cancel: CancellationToken) -> Result<()> {
        let reader = self.rules_reader.take().expect("run is called once");
        let initial = reader.read_to_end(READ_TIMEOUT).await?;
        self.apply_rule_records(initial).await;
        let (mut rules_rx, rules_task) =
            labstream_bus::follow(reader, self.config.rules_refresh, cancel.clone());
        tracing::info!(
            group = self.consumer.group_id(),
            rules = self.rules.len(),
            "alerts processor started"
        );
        let result = self.run_loop(&cancel, &mut rules_rx).await;
        cancel.cancel();
        let _ = rules_task.await;
        tracing::info!("alerts processor stopped");
        result
    }

    async fn run_loop(
        &mut self,
        cancel: &CancellationToken,
        rules_rx: &mut mpsc::Receiver<Vec<Record>>,
    ) -> Result<()> {
        while !cancel.is_cancelled() {
            while let Ok(records) = rules_rx.try_recv() {
                self.apply_rule_records(records).await;
            }
            let started = Instant::now();
            let mut batch = Batch::default();
            match self.fill(&mut batch, cancel).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "alerts: consume failed; retrying");
                    pause(cancel).await;
                    continue;
                }
            }
            let filled = started.elapsed();
            let Batch {
                positions,
                mut outbox,
                newest,
                received,
                ended,
            } = batch;
            let lateness = micros(self.config.allowed_lateness);
            let candidate = match newest {
                Some(ts) => ts.as_micros().saturating_sub(lateness),
                // Caught up: event time moves on with the clock, so silent sensors fire.
                None if received == 0 => Timestamp::now().as_micros() - lateness,
                None => i64::MIN,
            };
            if self.watermark.is_none_or(|w| candidate > w.as_micros()) {
                self.watermark = Some(Timestamp::from_micros(candidate));
                self.tick(&mut outbox);
            }
            // Outputs of rule changes ride along; they are kept until committed, while
            // the batch's own outputs are decided again from the restored state.
            let carried = std::mem::take(&mut self.carry);
            outbox.append(carried.clone());
            if outbox.is_empty() && positions.is_empty() {
                continue;
            }
            let transitions = outbox.events.len();
            let states = outbox.states.len();
            let committing = Instant::now();
            let result = self.transact(outbox, positions).await;
            if result.is_err() {
                self.carry.append(carried);
            }
            match result {
                Ok(()) => {
                    // Where a transition's latency goes: filling the batch, then the commit.
                    tracing::debug!(
                        records = received,
                        transitions,
                        states,
                        ended = ended.as_str(),
                        fill_ms = millis(filled),
                        commit_ms = millis(committing.elapsed()),
                        "alerts: batch committed"
                    );
                }
                Err(e) if matches!(e, Error::Kafka(_)) && !e.kind().is_retryable() => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "alerts: transaction failed; the batch is evaluated again");
                    pause(cancel).await;
                    if let Err(e) = self.recover().await {
                        tracing::warn!(error = %e, "alerts: recovery failed; retrying");
                        self.generation = None;
                    }
                }
            }
        }
        Ok(())
    }

    /// Consumes and evaluates records into `batch` until it holds `batch_max_records`,
    /// `batch_max_wait` has passed, or a transition is pending: a transition is committed
    /// at once instead of waiting for the rest of the window, while quiet input still
    /// fills batches (fewer transactions). Returns false when the batch was dropped
    /// because the partitions moved under it; the records are then read again.
    async fn fill(&mut self, batch: &mut Batch, cancel: &CancellationToken) -> Result<bool> {
        let deadline = Instant::now() + self.config.batch_max_wait;
        loop {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(PENDING_CHECK);
            let records = match self
                .consumer
                .next_batch(
                    self.config.batch_max_records - batch.received,
                    slice,
                    cancel,
                )
                .await
            {
                Ok(records) => records,
                Err(e) if batch.received == 0 => return Err(e.into()),
                Err(e) => {
                    // What is evaluated already is committed; the rest comes next time.
                    tracing::warn!(error = %e, "alerts: consume failed after a partial batch");
                    batch.ended = Ended::Wait;
                    return Ok(true);
                }
            };
            let generation = self.consumer.assignment_generation();
            if self.generation != Some(generation) {
                if batch.received > 0 {
                    // Evaluated under the old assignment: drop it, back to the committed
                    // offsets; the next batch restores the committed state first.
                    tracing::info!(
                        records = batch.received,
                        "alerts: partitions moved during a batch; it is read again"
                    );
                    self.generation = None;
                    self.consumer.rewind_to_committed(READ_TIMEOUT).await?;
                    return Ok(false);
                }
                // Another member may have moved the machines of our new partitions on:
                // the committed state is the truth.
                self.generation = Some(generation);
                let samples = self.topics.samples_raw();
                self.assigned = self
                    .consumer
                    .assigned()
                    .into_iter()
                    .filter(|(t, _)| *t == samples)
                    .map(|(_, p)| p)
                    .collect();
                if let Err(e) = self.reload_states().await {
                    tracing::warn!(error = %e, "alerts: restoring state failed; retrying");
                    self.generation = None;
                    pause(cancel).await;
                    return Ok(false);
                }
            }
            let records: Vec<Record> = records
                .into_iter()
                .filter(|r| self.assigned.contains(&r.partition))
                .collect();
            for record in &records {
                batch.received += 1;
                batch.positions.advance(record);
                let Some(sample) = self.decode_sample(record) else {
                    continue;
                };
                batch.newest = batch.newest.max(Some(sample.ts));
                self.evaluate_sample(&sample, &mut batch.outbox);
            }
            batch.ended = if !batch.outbox.events.is_empty() {
                Ended::Transition
            } else if batch.received >= self.config.batch_max_records {
                Ended::Full
            } else if Instant::now() >= deadline || cancel.is_cancelled() {
                Ended::Wait
            } else {
                continue;
            };
            return Ok(true);
        }
    }

    fn decode_sample(&self, record: &Record) -> Option<Sample> {
        let bytes = record.payload.as_deref()?;
        match self.codec.decode::<Sample>(bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                // The sinks dead-letter such records; alerts just cannot evaluate them.
                tracing::warn!(partition = record.partition, offset = record.offset, error = %e, "alerts: skipping an undecodable sample");
                None
            }
        }
    }

    fn evaluate_sample(&mut self, sample: &Sample, outbox: &mut Outbox) {
        for rule in self.rules.values() {
            if !rule.watches(&sample.sensor_type, &sample.sensor_id) {
                continue;
            }
            let key = (rule.id.clone(), sample.sensor_id.clone());
            let pair = self.machines.entry(key).or_insert_with(|| Pair {
                sensor_type: sample.sensor_type.clone(),
                state: MachineState::new(sample.ts),
            });
            let input = Input::Sample {
                ts: sample.ts,
                value: rule.value_of(sample),
            };
            let (next, transitions) = machine::step(rule, &pair.state, input);
            if next == pair.state {
                continue;
            }
            pair.state = next;
            record_outputs(
                &self.codec,
                &self.topics,
                rule,
                &sample.sensor_id,
                pair,
                &transitions,
                outbox,
            );
        }
    }

    /// Advances the machines that wait on time (absent rules, pending periods) to the
    /// watermark. Only machines of sensors this member owns: each has one owner.
    fn tick(&mut self, outbox: &mut Outbox) {
        let Some(at) = self.watermark else {
            return;
        };
        let partitions = self.samples_partitions;
        for ((rule_id, sensor_id), pair) in &mut self.machines {
            let Some(rule) = self.rules.get(rule_id) else {
                continue;
            };
            let waits =
                rule.is_absent() || matches!(pair.state.phase, machine::Phase::Pending { .. });
            if !waits
                || !rule.enabled
                || !self.assigned.contains(&partition_for_key(
                    sensor_id.as_str().as_bytes(),
                    partitions,
                ))
            {
                continue;
            }
            let (next, transitions) = machine::step(rule, &pair.state, Input::Tick { at });
            let changed_phase = next.phase != pair.state.phase;
            pair.state = next;
            // A clock moved by a tick alone is not worth a state write: after a restart
            // the watermark is recomputed.
            if changed_phase || !transitions.is_empty() {
                record_outputs(
                    &self.codec,
                    &self.topics,
                    rule,
                    sensor_id,
                    pair,
                    &transitions,
                    outbox,
                );
            }
        }
    }

    fn event_time_now(&self) -> Timestamp {
        self.watermark.unwrap_or_else(|| {
            Timestamp::from_micros(
                Timestamp::now().as_micros() - micros(self.config.allowed_lateness),
            )
        })
    }

    fn owns(&self, sensor_id: &SensorId) -> bool {
        self.assigned.contains(&partition_for_key(
            sensor_id.as_str().as_bytes(),
            self.samples_partitions,
        ))
    }
}

async fn pause(cancel: &CancellationToken) {
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep(RETRY_PAUSE) => {}
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
