//! The phases of a round, each on a fresh consumer group (and a fresh lake folder or
//! database), each checked after it ends:
//! - consume-only (the ceiling): `labstream_bus::BatchConsumer`, the sinks' consumer with
//!   their settings and batch sizes, fetching and handing out batches; no decoding, no
//!   writing, no commit. Optionally decoding every record too (what both sinks pay first).
//! - the lake sink and the MongoDB sink, built as `labstream serve` builds them, with
//!   their default settings, run until every record is written and committed;
//! - the bulk loader: the MongoDB sink's documents of the same samples, `insert_many`
//!   unordered per collection in the sink's batches, one request at a time as the sink
//!   sends them, into collections with the sink's unique index.

use crate::process_stats::Watched;
use crate::sinks::PhaseResult;
use crate::sinks::meter::{Measured, Meter, Progress};
use crate::sinks::preload::DocBatch;
use anyhow::Context;
use labstream_bus::{BatchConsumer, KafkaConfig, Producer};
use labstream_schemas::{Codec, Registry, Sample};
use labstream_sinks::lake::{LakeSink, LakeSinkConfig};
use labstream_sinks::mongo::{MongoSink, MongoSinkConfig};
use labstream_sinks::{DeadLetters, SinkMetrics};
use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Database, IndexModel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A filled topic to drain.
#[derive(Clone, Debug)]
pub struct Source {
    pub topic: String,
    pub partitions: i32,
    pub records: u64,
}

/// What every phase shares.
pub struct Bench {
    pub kafka: KafkaConfig,
    pub mongo_uri: String,
    /// Lake folders go below it.
    pub work_dir: PathBuf,
    /// Makes group ids and database names unique to this run.
    pub run_id: String,
    /// This process, Kafka and MongoDB.
    pub watch: Vec<Watched>,
    pub progress_every: Duration,
    pub timeout: Duration,
    /// Keep each round's lake folder and databases instead of removing them.
    pub keep: bool,
    pub dlq_topic: String,
    pub producer: Producer,
    pub codec: Codec,
    pub registry: Arc<Registry>,
}

impl Bench {
    fn group(&self, round: usize, phase: &str) -> String {
        format!("sinkbench-{}-r{round}-{phase}", self.run_id)
    }

    fn database(&self, round: usize, phase: &str) -> String {
        format!("sinkbench_{}_r{round}_{phase}", self.run_id).replace(['-', '.'], "_")
    }

    fn meter(&self, round: usize, phase: &str) -> Meter {
        Meter::start(
            format!("round {round} {phase}"),
            &self.watch,
            self.progress_every,
            self.timeout,
        )
    }

    /// Reads the whole topic with the sinks' consumer: the ceiling of any sink. With
    /// `decode`, also decodes every record into a `Sample`, as both sinks do first.
    pub async fn consume_only(
        &self,
        round: usize,
        phase: &str,
        source: &Source,
        batch: (usize, Duration),
        decode: bool,
    ) -> anyhow::Result<PhaseResult> {
        let group = self.group(round, phase);
        let meter = self.meter(round, phase);
        let consumer = BatchConsumer::new(&self.kafka, &group, &[&source.topic])?;
        let count = Arc::new(AtomicU64::new(0));
        let cancel = CancellationToken::new();
        let work = {
            let (consumer, count, cancel) = (consumer.clone(), count.clone(), cancel.clone());
            let (codec, target) = (self.codec.clone(), source.records);
            tokio::spawn(async move {
                let mut undecodable = 0u64;
                let mut bytes = 0u64;
                while count.load(Ordering::Relaxed) < target && !cancel.is_cancelled() {
                    let records = consumer.next_batch(batch.0, batch.1, &cancel).await?;
                    for r in &records {
                        let payload = r.payload.as_deref().unwrap_or_default();
                        bytes += payload.len() as u64;
                        if decode && codec.decode::<Sample>(payload).is_err() {
                            undecodable += 1;
                        }
                    }
                    count.fetch_add(records.len() as u64, Ordering::Relaxed);
                }
                anyhow::Ok((undecodable, bytes))
            })
        };
        let done = || count.load(Ordering::Relaxed);
        let (measured, joined) = meter
            .run(
                Progress {
                    consumer: Some(&consumer),
                    done: &done,
                    target: source.records,
                },
                &cancel,
                work,
            )
            .await;
        let mut result = self.result(phase, round, source, done(), &measured);
        result
            .settings
            .insert("batch_max_records".into(), batch.0.to_string());
        result.settings.insert(
            "batch_max_wait".into(),
            humantime::format_duration(batch.1).to_string(),
        );
        result.settings.insert("decode".into(), decode.to_string());
        match joined {
            Ok(Ok((undecodable, bytes))) => {
                result.counters.insert("payload_bytes".into(), bytes);
                if decode {
                    check(
                        &mut result,
                        undecodable == 0,
                        format!("{undecodable} records not decodable"),
                        "every record decoded".into(),
                    );
                }
            }
            Ok(Err(e)) => result.problems.push(format!("consume failed: {e:#}")),
            Err(e) => result
                .problems
                .push(format!("the consume task failed: {e}")),
        }
        let n = done();
        check(
            &mut result,
            n >= source.records,
            format!("consumed {n} of {} records", source.records),
            format!("consumed all {} records", source.records),
        );
        Ok(finish(result, &measured))
    }

    /// The lake sink with its default settings on a fresh lake folder, until every
    /// record is in a renamed, synced file and its offset committed.
    pub async fn lake(
        &self,
        round: usize,
        phase: &str,
        source: &Source,
    ) -> anyhow::Result<PhaseResult> {
        let group = self.group(round, phase);
        let dir = self.work_dir.join(format!("{phase}-r{round}"));
        let config = LakeSinkConfig {
            group_id: group.clone(),
            ..LakeSinkConfig::default()
        };
        let meter = self.meter(round, phase);
        let consumer = BatchConsumer::new(&self.kafka, &group, &[&source.topic])?;
        let metrics = SinkMetrics::unregistered();
        let sink = LakeSink::new(
            consumer.clone(),
            dir.clone(),
            self.registry.clone(),
            self.codec.clone(),
            DeadLetters::new(self.producer.clone(), self.dlq_topic.clone(), "lake"),
            config.clone(),
            metrics.clone(),
        )?;
        let cancel = CancellationToken::new();
        let work = tokio::spawn(sink.run(cancel.clone()));
        let consumed = metrics.consumed.clone();
        let done = move || consumed.get();
        let (measured, joined) = meter
            .run(
                Progress {
                    consumer: Some(&consumer),
                    done: &done,
                    target: source.records,
                },
                &cancel,
                work,
            )
            .await;
        let written = metrics.written.get();
        let mut result = self.result(phase, round, source, written, &measured);
        for (k, v) in [
            ("flush_rows", config.flush_rows.to_string()),
            ("flush_bytes", config.flush_bytes.to_string()),
            (
                "flush_interval",
                humantime::format_duration(config.flush_interval).to_string(),
            ),
            ("batch_max_records", "10000".to_owned()),
        ] {
            result.settings.insert(k.into(), v);
        }
        sink_counters(&mut result, &metrics);
        sink_ended(&mut result, joined.map(|r| r.map_err(anyhow::Error::from)));
        self.check_committed(&mut result, &group, source).await;
        match lake_rows(&dir) {
            Ok((rows, files)) => {
                result.counters.insert("files".into(), files);
                check(
                    &mut result,
                    rows == source.records,
                    format!(
                        "the lake holds {rows} rows in {files} files, expected {}",
                        source.records
                    ),
                    format!("the lake holds all {rows} rows ({files} Parquet files)"),
                );
            }
            Err(e) => result.problems.push(format!("reading the lake: {e:#}")),
        }
        drop(consumer);
        if !self.keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(finish(result, &measured))
    }

    /// The enrichment processor (issue #5) with its default settings, Kafka
    /// transactions on, until every record of the topic is in `samples.enriched` and its
    /// offset committed with it. A recording of every sensor covers the whole topic, so
    /// each sample is looked up and tagged (the costlier case).
    pub async fn enrich(
        &self,
        round: usize,
        phase: &str,
        source: &Source,
    ) -> anyhow::Result<PhaseResult> {
        use labstream_processors::enrichment::{Enrichment, EnrichmentConfig};
        use labstream_schemas::experiment::{
            Command, CommandContext, ExperimentDefinition, ProtocolTask, SiteState, decide,
        };
        let prefix = source
            .topic
            .strip_suffix("samples.raw")
            .context("the enrichment phase drains a `<prefix>samples.raw` topic")?
            .to_owned();
        let topics = labstream_schemas::Topics::new(prefix);
        labstream_bus::ensure_topics(
            &self.kafka,
            &[
                labstream_bus::TopicSpec::new(topics.experiments_events(), 1),
                labstream_bus::TopicSpec::new(topics.samples_enriched(), source.partitions),
            ],
        )
        .await?;
        // A site of its own per round: an active experiment recording every sensor
        // since long before the preloaded samples.
        let site_id = format!("sinkbench-{}-r{round}", self.run_id);
        let mut state = SiteState::default();
        let long_ago = labstream_schemas::Timestamp::from_micros(0);
        let commands = [
            Command::DefineSensorConfig {
                sensor_config_id: "all".into(),
                name: "every sensor".into(),
                description: None,
                sensors: Vec::new(),
            },
            Command::CreateExperiment {
                experiment_id: "bench".into(),
                definition: ExperimentDefinition {
                    name: "bench".into(),
                    owner: "sinkbench".into(),
                    description: None,
                    sensor_config_id: "all".into(),
                    tasks: vec![ProtocolTask {
                        task_id: "t".into(),
                        name: "t".into(),
                        description: None,
                    }],
                    operators: Vec::new(),
                    participants: vec!["p".into()],
                },
            },
            Command::Activate {
                experiment_id: "bench".into(),
            },
            Command::StartRecording {
                experiment_id: "bench".into(),
                recording_id: "rec".into(),
                participant_id: "p".into(),
                task_id: "t".into(),
                sensors: Some(Vec::new()),
                started_at: Some(long_ago),
            },
        ];
        for (i, command) in commands.into_iter().enumerate() {
            let ctx = CommandContext {
                site_id: site_id.clone(),
                actor: "sinkbench".into(),
                now: labstream_schemas::Timestamp::now(),
                event_id: format!("{site_id}-{i}"),
                expected_version: None,
                max_backdate: Duration::MAX,
            };
            let event = decide(&state, command, &ctx)
                .map_err(|e| anyhow::anyhow!("setting up the recording: {e}"))?;
            state.apply(&event);
            self.producer
                .send(
                    &topics.experiments_events(),
                    site_id.as_bytes(),
                    &self.codec.encode(&event)?,
                )
                .await?;
        }

        let group = self.group(round, phase);
        let config = EnrichmentConfig {
            group_id: group.clone(),
            ..EnrichmentConfig::default()
        };
        let enrichment = Enrichment::new(
            self.kafka.clone(),
            topics.clone(),
            site_id,
            format!("{}-r{round}-{phase}", self.run_id),
            config.clone(),
        );
        let stats = enrichment.stats();
        let cancel = CancellationToken::new();
        let work = tokio::spawn(enrichment.run(cancel.clone()));
        // The clock starts once the group assigned the partitions, as for the sinks.
        let joining = std::time::Instant::now();
        while !stats.assigned.load(Ordering::Relaxed) {
            anyhow::ensure!(
                joining.elapsed() < Duration::from_secs(60),
                "the enrichment processor got no partitions within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let startup_s = joining.elapsed().as_secs_f64();
        let meter = self.meter(round, phase);
        let committed = stats.clone();
        let done = move || committed.committed.load(Ordering::Relaxed);
        let (measured, joined) = meter
            .run(
                Progress {
                    consumer: None,
                    done: &done,
                    target: source.records,
                },
                &cancel,
                work,
            )
            .await;
        let n = done();
        let mut result = self.result(phase, round, source, n, &measured);
        result.startup_s = startup_s;
        for (k, v) in [
            ("max_batch", config.max_batch.to_string()),
            (
                "lateness",
                humantime::format_duration(config.lateness).to_string(),
            ),
            ("transactions", "on (one per batch)".to_owned()),
        ] {
            result.settings.insert(k.into(), v);
        }
        let tagged = stats.in_recording.load(Ordering::Relaxed);
        result.counters.insert("committed".into(), n);
        result.counters.insert("in_recording".into(), tagged);
        result.counters.insert(
            "transactions".into(),
            stats.transactions.load(Ordering::Relaxed),
        );
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result.problems.push(format!("enrichment failed: {e}")),
            Err(e) => result
                .problems
                .push(format!("the enrichment task failed: {e}")),
        }
        check(
            &mut result,
            n == source.records && tagged == n,
            format!("{n} of {} committed, {tagged} tagged", source.records),
            format!("all {n} samples enriched (each with its recording) and committed"),
        );
        self.check_committed(&mut result, &group, source).await;
        Ok(finish(result, &measured))
    }

    /// The MongoDB sink with its default settings on a fresh database, until every
    /// record is inserted and its offset committed.
    pub async fn mongo(&self, round: usize, source: &Source) -> anyhow::Result<PhaseResult> {
        let phase = crate::sinks::MONGO;
        let group = self.group(round, phase);
        let db = self.connect(&self.database(round, phase)).await?;
        let config = MongoSinkConfig {
            group_id: group.clone(),
            ..MongoSinkConfig::default()
        };
        let meter = self.meter(round, phase);
        let consumer = BatchConsumer::new(&self.kafka, &group, &[&source.topic])?;
        let metrics = SinkMetrics::unregistered();
        let sink = MongoSink::new(
            consumer.clone(),
            db.clone(),
            self.codec.clone(),
            DeadLetters::new(self.producer.clone(), self.dlq_topic.clone(), "mongo"),
            config.clone(),
            metrics.clone(),
        );
        let cancel = CancellationToken::new();
        let work = tokio::spawn(sink.run(cancel.clone()));
        let consumed = metrics.consumed.clone();
        let done = move || consumed.get();
        let (measured, joined) = meter
            .run(
                Progress {
                    consumer: Some(&consumer),
                    done: &done,
                    target: source.records,
                },
                &cancel,
                work,
            )
            .await;
        let written = metrics.written.get();
        let mut result = self.result(phase, round, source, written, &measured);
        result.settings.insert(
            "batch_max_records".into(),
            config.batch_max_records.to_string(),
        );
        result.settings.insert(
            "batch_max_wait".into(),
            humantime::format_duration(config.batch_max_wait).to_string(),
        );
        result.server = server_version(&db).await;
        sink_counters(&mut result, &metrics);
        sink_ended(&mut result, joined.map(|r| r.map_err(anyhow::Error::from)));
        self.check_committed(&mut result, &group, source).await;
        check_documents(&mut result, &db, source.records).await;
        drop(consumer);
        if !self.keep {
            let _ = db.drop().await;
        }
        Ok(finish(result, &measured))
    }

    /// The same documents the MongoDB sink writes, loaded by a plain loader: per
    /// sink-sized batch, one unordered `insert_many` per collection, one at a time.
    pub async fn bulk(
        &self,
        round: usize,
        source: &Source,
        batches: Arc<Vec<DocBatch>>,
        batch_records: usize,
    ) -> anyhow::Result<PhaseResult> {
        let phase = crate::sinks::BULK;
        let db = self.connect(&self.database(round, phase)).await?;
        let meter = self.meter(round, phase);
        let count = Arc::new(AtomicU64::new(0));
        let cancel = CancellationToken::new();
        let work = {
            let (db, count, cancel) = (db.clone(), count.clone(), cancel.clone());
            tokio::spawn(async move {
                let mut indexed = HashSet::new();
                for batch in batches.iter() {
                    for (collection, docs) in batch {
                        if cancel.is_cancelled() {
                            return anyhow::Ok(());
                        }
                        if indexed.insert(collection.clone()) {
                            create_dedupe_index(&db, collection).await?;
                        }
                        let coll = db.collection::<mongodb::bson::RawDocumentBuf>(collection);
                        let r = coll.insert_many(docs.iter()).ordered(false).await?;
                        count.fetch_add(r.inserted_ids.len() as u64, Ordering::Relaxed);
                    }
                }
                anyhow::Ok(())
            })
        };
        let done = || count.load(Ordering::Relaxed);
        let (measured, joined) = meter
            .run(
                Progress {
                    consumer: None,
                    done: &done,
                    target: source.records,
                },
                &cancel,
                work,
            )
            .await;
        let mut result = self.result(phase, round, source, done(), &measured);
        result
            .settings
            .insert("batch_max_records".into(), batch_records.to_string());
        result.settings.insert("in_flight".into(), "1".into());
        result.server = server_version(&db).await;
        sink_ended(&mut result, joined);
        check_documents(&mut result, &db, source.records).await;
        if !self.keep {
            let _ = db.drop().await;
        }
        Ok(finish(result, &measured))
    }

    async fn connect(&self, database: &str) -> anyhow::Result<Database> {
        // As `labstream serve` builds its client.
        let mut options = ClientOptions::parse(&self.mongo_uri)
            .await
            .with_context(|| format!("invalid MongoDB URI {:?}", self.mongo_uri))?;
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(5));
        options
            .app_name
            .get_or_insert_with(|| "labstream-sinkbench".to_owned());
        let client = mongodb::Client::with_options(options)?;
        let db = client.database(database);
        db.run_command(doc! { "ping": 1 })
            .await
            .with_context(|| format!("MongoDB at {} does not answer", self.mongo_uri))?;
        Ok(db)
    }

    fn result(
        &self,
        phase: &str,
        round: usize,
        source: &Source,
        processed: u64,
        m: &Measured,
    ) -> PhaseResult {
        PhaseResult {
            phase: phase.to_owned(),
            round,
            topic: source.topic.clone(),
            records: source.records,
            processed,
            started_at: m
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            startup_s: m.startup.as_secs_f64(),
            elapsed_s: m.elapsed.as_secs_f64(),
            records_per_s: source.records as f64 / m.elapsed.as_secs_f64().max(1e-6),
            ok: false,
            checks: Vec::new(),
            problems: Vec::new(),
            cpu: m.cpu.clone(),
            memory: m.memory.clone(),
            settings: BTreeMap::from_iter(
                [("partitions".to_owned(), source.partitions.to_string())]
                    .into_iter()
                    .chain(
                        self.kafka
                            .librdkafka
                            .iter()
                            .map(|(k, v)| (format!("librdkafka.{k}"), v.clone())),
                    ),
            ),
            counters: BTreeMap::new(),
            server: None,
        }
    }

    /// The group's committed offsets are the end of every partition of the topic.
    async fn check_committed(&self, result: &mut PhaseResult, group: &str, source: &Source) {
        let (brokers, group, topic, partitions) = (
            self.kafka.brokers.clone(),
            group.to_owned(),
            source.topic.clone(),
            source.partitions,
        );
        let found = tokio::task::spawn_blocking(move || {
            committed_and_end(&brokers, &group, &topic, partitions)
        })
        .await;
        match found {
            Ok(Ok(parts)) => {
                let behind: Vec<String> = parts
                    .iter()
                    .enumerate()
                    .filter(|(_, (c, e))| c != e)
                    .map(|(p, (c, e))| format!("partition {p}: committed {c}, end {e}"))
                    .collect();
                check(
                    result,
                    behind.is_empty(),
                    format!("committed offsets short of the end: {}", behind.join("; ")),
                    format!(
                        "committed offsets at the end of all {} partitions",
                        parts.len()
                    ),
                );
            }
            Ok(Err(e)) => result
                .problems
                .push(format!("reading committed offsets: {e:#}")),
            Err(e) => result
                .problems
                .push(format!("reading committed offsets: {e}")),
        }
    }
}

fn check(result: &mut PhaseResult, ok: bool, problem: String, fine: String) {
    if ok {
        result.checks.push(fine);
    } else {
        result.problems.push(problem);
    }
}

fn finish(mut result: PhaseResult, m: &Measured) -> PhaseResult {
    if m.timed_out {
        result
            .problems
            .push("not done within the phase's time limit (--phase-timeout)".into());
    }
    result.ok = result.problems.is_empty();
    let verdict = if result.ok { "ok" } else { "FAILED" };
    eprintln!(
        "sinkbench: round {} {}: {} records in {:.2} s = {:.0} records/s (join {:.2} s), {verdict}{}",
        result.round,
        result.phase,
        result.records,
        result.elapsed_s,
        result.records_per_s,
        result.startup_s,
        if result.ok {
            String::new()
        } else {
            format!(": {}", result.problems.join("; "))
        }
    );
    result
}

fn sink_counters(result: &mut PhaseResult, metrics: &SinkMetrics) {
    for (name, counter) in [
        ("consumed", &metrics.consumed),
        ("written", &metrics.written),
        ("duplicates", &metrics.duplicates),
        ("dead_letters", &metrics.dead_letters),
    ] {
        result.counters.insert(name.into(), counter.get());
    }
    let (written, records) = (metrics.written.get(), result.records);
    check(
        result,
        written == records && metrics.dead_letters.get() == 0,
        format!(
            "the sink wrote {written} of {records} rows, {} dead letters",
            metrics.dead_letters.get()
        ),
        format!("the sink counted {written} rows written, no dead letters"),
    );
}

fn sink_ended<E: std::fmt::Display>(
    result: &mut PhaseResult,
    joined: Result<anyhow::Result<()>, E>,
) {
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(e)) => result
            .problems
            .push(format!("stopped with an error: {e:#}")),
        Err(e) => result.problems.push(format!("the task failed: {e}")),
    }
}

async fn check_documents(result: &mut PhaseResult, db: &Database, expected: u64) {
    let counted = async {
        let mut total = 0u64;
        for name in db.list_collection_names().await? {
            total += db
                .collection::<Document>(&name)
                .count_documents(doc! {})
                .await?;
        }
        anyhow::Ok(total)
    }
    .await;
    match counted {
        Ok(n) => check(
            result,
            n == expected,
            format!("MongoDB holds {n} documents, expected {expected}"),
            format!("MongoDB holds all {n} documents"),
        ),
        Err(e) => result.problems.push(format!("counting documents: {e:#}")),
    }
}

/// The MongoDB sink's index on the dedupe key, created the same way.
async fn create_dedupe_index(db: &Database, collection: &str) -> anyhow::Result<()> {
    let index = IndexModel::builder()
        .keys(doc! { "sensor_id": 1, "ts_us": 1, "seq": 1 })
        .options(
            IndexOptions::builder()
                .unique(true)
                .name("dedupe_key".to_owned())
                .build(),
        )
        .build();
    db.collection::<Document>(collection)
        .create_index(index)
        .await?;
    Ok(())
}

async fn server_version(db: &Database) -> Option<String> {
    let info = db.run_command(doc! { "buildInfo": 1 }).await.ok()?;
    info.get_str("version").ok().map(str::to_owned)
}

/// (committed, end) offset per partition of `topic` for `group`.
fn committed_and_end(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<Vec<(i64, i64)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let mut out = Vec::new();
    for p in 0..partitions {
        let c = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        };
        let (_, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        out.push((c, high));
    }
    Ok(out)
}

/// Rows and files of the live Parquet files under `root`, from their footers.
fn lake_rows(root: &Path) -> anyhow::Result<(u64, u64)> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let (mut rows, mut files) = (0u64, 0u64);
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if name.ends_with(".parquet") && !name.starts_with('.') {
                let reader = SerializedFileReader::new(std::fs::File::open(&path)?)
                    .with_context(|| format!("reading {}", path.display()))?;
                rows += reader.metadata().file_metadata().num_rows() as u64;
                files += 1;
            }
        }
    }
    Ok((rows, files))
}
