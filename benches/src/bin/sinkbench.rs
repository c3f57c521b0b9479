//! `labstream-sinkbench`: the sinks benchmark. `run` fills two fresh topics and drains
//! them round after round (consume-only, lake sink, MongoDB sink, bulk loader), each
//! phase in a process of its own (`phase`), so that its CPU and peak memory are its own;
//! one JSON result per phase. `report` turns a folder of results into the sinks section
//! of `benches/RESULTS.md`. `benches/run sinks` runs both.

/// The allocator `labstream` itself uses (src/main.rs), so labstream's code runs here as
/// it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use labstream_benches::process_stats::Watched;
use labstream_benches::sinks::meter::self_watched;
use labstream_benches::sinks::phases::{Bench, Source};
use labstream_benches::sinks::preload::{PreloadSpec, batches, preload, read_docs, write_docs};
use labstream_benches::sinks::report::{self, ReportContext};
use labstream_benches::sinks::{self as phases, PhaseResult};
use labstream_bus::{KafkaConfig, Producer, TopicSpec};
use labstream_schemas::{Codec, Registry};
use labstream_sinks::mongo::MongoSinkConfig;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "labstream-sinkbench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fill two topics, then measure consume-only, the lake sink, the MongoDB sink and a
    /// bulk loader on them, in interleaved rounds; one JSON result per phase.
    Run(RunArgs),
    /// One phase, in this process (what `run` starts for each phase).
    Phase(PhaseArgs),
    /// Write the sinks section of RESULTS.md from a folder of results.
    Report(ReportArgs),
}

#[derive(Args, Clone)]
struct Conn {
    /// Bootstrap servers.
    #[arg(
        long,
        env = "LABSTREAM__KAFKA__BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    brokers: String,
    /// MongoDB URI.
    #[arg(
        long,
        env = "LABSTREAM__MONGO__URI",
        default_value = "mongodb://127.0.0.1:27017/?directConnection=true"
    )]
    mongo_uri: String,
    /// Folder for the lake folders of the lake phases.
    #[arg(long)]
    work: PathBuf,
    /// Keep each phase's lake folder and MongoDB database (removed by default).
    #[arg(long)]
    keep: bool,
    /// Time between two progress lines on stderr.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    progress: Duration,
    /// Give up on a phase after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    phase_timeout: Duration,
    /// Also measure the CPU of this process (NAME=PID; repeatable): `kafka=PID`,
    /// `mongo=PID`.
    #[arg(long = "watch")]
    watch: Vec<Watched>,
    /// A librdkafka property for every client of the benchmark, as labstream's
    /// `[kafka.librdkafka]` (KEY=VALUE; repeatable), e.g. to try consumer tuning.
    #[arg(long = "librdkafka", value_parser = parse_property)]
    librdkafka: Vec<(String, String)>,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

#[derive(Args)]
struct PhaseArgs {
    #[command(flatten)]
    conn: Conn,
    /// consume, consume-decode, lake, consume-small, mongo or bulk.
    #[arg(long)]
    phase: String,
    #[arg(long)]
    round: usize,
    /// Unique to the run: names the consumer groups and databases.
    #[arg(long)]
    run_id: String,
    /// The topic to drain (for bulk: whose samples the documents are).
    #[arg(long)]
    topic: String,
    #[arg(long)]
    partitions: i32,
    /// Records in the topic.
    #[arg(long)]
    records: u64,
    /// The dead-letter topic for the sinks.
    #[arg(long)]
    dlq_topic: String,
    /// The bulk loader's documents (written by `run`).
    #[arg(long)]
    docs: Option<PathBuf>,
    /// Where to write the JSON result.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    conn: Conn,
    /// Records in the topic drained by consume-only and the lake sink.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Records in the topic drained by the MongoDB sink and loaded by the bulk loader
    /// (smaller: the MongoDB phases are far slower).
    #[arg(long, default_value_t = 100_000)]
    mongo_records: u64,
    /// Partitions of both topics (labstream's default for samples).
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Rounds; every phase runs once per round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Simulated sensors of each registry type, per preload worker (8 workers).
    #[arg(long, default_value_t = 100)]
    sensors_per_type: usize,
    /// Topic prefix; default `sinkbench-<timestamp>.`.
    #[arg(long)]
    prefix: Option<String>,
    /// Folder for the JSON results.
    #[arg(long)]
    results: PathBuf,
    /// Skip the phase that decodes without writing (informative, not a target).
    #[arg(long)]
    no_decode_phase: bool,
    /// Skip the enrichment processor's phase (issue #5's benchmark).
    #[arg(long)]
    no_enrich_phase: bool,
    /// Skip consume-only and the lake sink with the consumer's fetch pacing tuned
    /// (informative, not a target).
    #[arg(long)]
    no_tuned_phases: bool,
}

#[derive(Args)]
struct ReportArgs {
    /// Folder with the JSON results of one `run`.
    #[arg(long)]
    results: PathBuf,
    /// The Markdown file to write; only the sinks section is replaced.
    #[arg(long, default_value = "benches/RESULTS.md")]
    out: PathBuf,
    /// The command that produced the results, quoted in the report.
    #[arg(long, default_value = "benches/run sinks")]
    command: String,
    /// labstream's git commit.
    #[arg(long, default_value = "(unknown commit)")]
    commit: String,
    /// `rustc --version` of the build.
    #[arg(long, default_value = "rustc (unknown version)")]
    rustc: String,
    /// Kafka version of the broker.
    #[arg(long, default_value = "(unknown)")]
    kafka: String,
    /// What the MongoDB-wire server is (name and version).
    #[arg(long, default_value = "(unknown)")]
    mongo_server: String,
    /// What else ran on the machine during the benchmark.
    #[arg(long, default_value = "nothing else was observed")]
    shared: String,
}

fn main() -> ExitCode {
    labstream_benches::exit::finish(sinkbench())
}

fn sinkbench() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Report(a) => write_report(&a),
        Command::Phase(a) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?
            .block_on(phase(a)),
        Command::Run(a) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?
            .block_on(run(a)),
    }
}

async fn run(a: RunArgs) -> anyhow::Result<()> {
    if a.records == 0 || a.mongo_records == 0 || a.rounds == 0 {
        bail!("--records, --mongo-records and --rounds must be at least 1");
    }
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string();
    let prefix = a.prefix.clone().unwrap_or(format!("sinkbench-{stamp}."));
    let kafka = kafka_config(&a.conn);
    labstream_bus::probe(&kafka, Duration::from_secs(15))
        .await
        .with_context(|| format!("Kafka at {} is not reachable", a.conn.brokers))?;
    std::fs::create_dir_all(&a.results)
        .with_context(|| format!("creating {}", a.results.display()))?;
    std::fs::create_dir_all(&a.conn.work)
        .with_context(|| format!("creating {}", a.conn.work.display()))?;
    let dlq_topic = format!("{prefix}samples.dlq");
    labstream_bus::ensure_topics(&kafka, &[TopicSpec::new(&dlq_topic, 1)]).await?;

    eprintln!(
        "sinkbench: preloading {} records into {prefix}samples.raw",
        a.records
    );
    let big = preload(PreloadSpec {
        kafka: &kafka,
        topic: format!("{prefix}samples.raw"),
        partitions: a.partitions,
        records: a.records,
        sensors_per_type: a.sensors_per_type,
        keep_docs: false,
        shard_base: 0,
    })
    .await?;
    eprintln!(
        "sinkbench: preloading {} records into {prefix}samples.small (and their MongoDB documents)",
        a.mongo_records
    );
    let small = preload(PreloadSpec {
        kafka: &kafka,
        topic: format!("{prefix}samples.small"),
        partitions: a.partitions,
        records: a.mongo_records,
        sensors_per_type: a.sensors_per_type,
        keep_docs: true,
        shard_base: 1000,
    })
    .await?;
    let docs = a.conn.work.join("bulk-documents.bson");
    write_docs(&docs, &small.docs)?;
    for p in [&big, &small] {
        eprintln!(
            "sinkbench: {}: {} records, {:.1} MB of Avro, produced in {:.1} s",
            p.topic,
            p.records,
            p.payload_bytes as f64 / 1e6,
            p.seconds
        );
    }
    let big = Source {
        topic: big.topic.clone(),
        partitions: big.partitions,
        records: big.records,
    };
    let small = Source {
        topic: small.topic.clone(),
        partitions: small.partitions,
        records: small.records,
    };

    let mut plan: Vec<(&str, &Source)> = Vec::new();
    let mut index = 0;
    let mut failed = Vec::new();
    for round in 1..=a.rounds {
        eprintln!("sinkbench: round {round} of {}", a.rounds);
        plan.clear();
        plan.push((phases::CONSUME_LAKE, &big));
        if !a.no_decode_phase {
            plan.push((phases::DECODE_LAKE, &big));
        }
        plan.push((phases::LAKE, &big));
        if !a.no_enrich_phase {
            plan.push((phases::ENRICH, &big));
        }
        if !a.no_tuned_phases {
            plan.push((phases::CONSUME_TUNED, &big));
            plan.push((phases::LAKE_TUNED, &big));
        }
        plan.push((phases::CONSUME_MONGO, &small));
        // Alternate which of the two goes first, so drift hits both alike.
        if round % 2 == 1 {
            plan.extend([(phases::MONGO, &small), (phases::BULK, &small)]);
        } else {
            plan.extend([(phases::BULK, &small), (phases::MONGO, &small)]);
        }
        for (name, source) in &plan {
            index += 1;
            let out = a.results.join(format!("{index:02}-r{round}-{name}.json"));
            let status = std::process::Command::new(std::env::current_exe()?)
                .arg("phase")
                .args(conn_args(&a.conn))
                .args(["--phase", name, "--round", &round.to_string()])
                .args(["--run-id", &stamp, "--topic", &source.topic])
                .args(["--partitions", &source.partitions.to_string()])
                .args(["--records", &source.records.to_string()])
                .args(["--dlq-topic", &dlq_topic])
                .arg("--docs")
                .arg(&docs)
                .arg("--out")
                .arg(&out)
                .status()
                .context("starting a phase")?;
            if !status.success() {
                failed.push(format!("round {round} {name}"));
            }
        }
    }
    let _ = std::fs::remove_file(&docs);
    eprintln!(
        "sinkbench: results in {}; topics {} and {} stay in Kafka until their retention",
        a.results.display(),
        big.topic,
        small.topic
    );
    if !failed.is_empty() {
        bail!("phases failed: {}; see the results", failed.join(", "));
    }
    Ok(())
}

fn kafka_config(conn: &Conn) -> KafkaConfig {
    KafkaConfig {
        brokers: conn.brokers.clone(),
        client_id: "labstream-sinkbench".into(),
        librdkafka: conn.librdkafka.iter().cloned().collect(),
        ..KafkaConfig::default()
    }
}

/// `conn` as command-line arguments again, for a phase's process.
fn conn_args(conn: &Conn) -> Vec<String> {
    let mut args = vec![
        "--brokers".to_owned(),
        conn.brokers.clone(),
        "--mongo-uri".to_owned(),
        conn.mongo_uri.clone(),
        "--work".to_owned(),
        conn.work.display().to_string(),
        "--progress".to_owned(),
        humantime::format_duration(conn.progress).to_string(),
        "--phase-timeout".to_owned(),
        humantime::format_duration(conn.phase_timeout).to_string(),
    ];
    if conn.keep {
        args.push("--keep".to_owned());
    }
    for (k, v) in &conn.librdkafka {
        args.push("--librdkafka".to_owned());
        args.push(format!("{k}={v}"));
    }
    for w in &conn.watch {
        if let Some(pid) = w.pid {
            args.push("--watch".to_owned());
            args.push(format!("{}={pid}", w.name));
        }
    }
    args
}

/// One phase: the result is written to `--out`; the exit status says whether its
/// checks passed.
async fn phase(a: PhaseArgs) -> anyhow::Result<()> {
    let mut kafka = kafka_config(&a.conn);
    if [phases::CONSUME_TUNED, phases::LAKE_TUNED].contains(&a.phase.as_str()) {
        let (key, value) = phases::TUNED_CONSUMER;
        kafka.librdkafka.insert(key.to_owned(), value.to_owned());
    }
    let mut watch = vec![self_watched()];
    watch.extend(a.conn.watch.iter().cloned());
    let bench = Bench {
        kafka: kafka.clone(),
        mongo_uri: a.conn.mongo_uri.clone(),
        work_dir: a.conn.work.clone(),
        run_id: a.run_id.clone(),
        watch,
        progress_every: a.conn.progress,
        timeout: a.conn.phase_timeout,
        keep: a.conn.keep,
        dlq_topic: a.dlq_topic.clone(),
        producer: Producer::new(&kafka)?,
        codec: Codec::new(),
        registry: Arc::new(Registry::default_lab()),
    };
    let source = Source {
        topic: a.topic.clone(),
        partitions: a.partitions,
        records: a.records,
    };
    // The lake sink reads batches of up to 10,000 records, waiting at most 500 ms; the
    // MongoDB sink its `batch_max_records`, waiting `batch_max_wait`.
    let lake_batch = (10_000, Duration::from_millis(500));
    let mongo = MongoSinkConfig::default();
    let mongo_batch = (mongo.batch_max_records, mongo.batch_max_wait);
    let round = a.round;
    let result = match a.phase.as_str() {
        phases::CONSUME_LAKE | phases::CONSUME_TUNED => {
            bench
                .consume_only(round, &a.phase, &source, lake_batch, false)
                .await?
        }
        phases::DECODE_LAKE => {
            bench
                .consume_only(round, &a.phase, &source, lake_batch, true)
                .await?
        }
        phases::CONSUME_MONGO => {
            bench
                .consume_only(round, &a.phase, &source, mongo_batch, false)
                .await?
        }
        phases::LAKE | phases::LAKE_TUNED => bench.lake(round, &a.phase, &source).await?,
        phases::ENRICH => bench.enrich(round, &a.phase, &source).await?,
        phases::MONGO => bench.mongo(round, &source).await?,
        phases::BULK => {
            let path = a
                .docs
                .as_deref()
                .context("--docs is needed for the bulk phase")?;
            let batches = Arc::new(batches(read_docs(path)?, mongo.batch_max_records));
            bench
                .bulk(round, &source, batches, mongo.batch_max_records)
                .await?
        }
        other => bail!("unknown phase {other:?}"),
    };
    std::fs::write(
        &a.out,
        format!("{}\n", serde_json::to_string_pretty(&result)?),
    )
    .with_context(|| format!("writing {}", a.out.display()))?;
    if !result.ok {
        bail!(
            "{} failed its checks: {}",
            a.phase,
            result.problems.join("; ")
        );
    }
    Ok(())
}

fn write_report(a: &ReportArgs) -> anyhow::Result<()> {
    let results = load(&a.results)?;
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    let ctx = ReportContext {
        command: a.command.clone(),
        commit: a.commit.clone(),
        rustc: a.rustc.clone(),
        kafka: a.kafka.clone(),
        librdkafka,
        mongo_server: a.mongo_server.clone(),
        machine: labstream_benches::process_stats::machine(),
        shared: a.shared.clone(),
    };
    let section = report::section(&results, &ctx)?;
    let existing = std::fs::read_to_string(&a.out).unwrap_or_default();
    std::fs::write(&a.out, report::splice(&existing, &section))
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

/// The results in the order they ran (their file names start with the run's index).
fn load(dir: &Path) -> anyhow::Result<Vec<PhaseResult>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut results = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)?;
        results.push(
            serde_json::from_str::<PhaseResult>(&text)
                .with_context(|| format!("{} is not a sinkbench result", path.display()))?,
        );
    }
    Ok(results)
}
