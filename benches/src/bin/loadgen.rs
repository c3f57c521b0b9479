//! `labstream-loadgen`: drives labstream's ingest (or Kafka directly, for the ceiling)
//! with a simulated sensor fleet and prints one JSON result on stdout, with a progress
//! line on stderr every few seconds. `benches/run` runs it scenario by scenario and
//! `labstream-loadgen report` turns the results into `benches/RESULTS.md`.

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use labstream_benches::endpoint::{HttpTarget, KafkaTarget};
use labstream_benches::process_stats::Watched;
use labstream_benches::report::{self, RunContext, Spread};
use labstream_benches::runner::{self, Model, RunResult, RunSpec};
use labstream_benches::wire::Format;
use labstream_bus::{KafkaConfig, TopicSpec};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "labstream-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Maximum throughput: concurrent workers posting batches of samples (closed model).
    HttpBatch(HttpBatchArgs),
    /// One sample per request: a constant arrival rate (open model) or, with
    /// `--rate max`, as fast as `--concurrency` workers go (closed model).
    HttpSingle(HttpSingleArgs),
    /// The classic lab load test: `--users` virtual users (50), each sending one sample
    /// of every registry type (one request each) every `--interval` (500 ms); run it with
    /// `--duration 60s` for the scenario as lab teams run it in k6.
    HttpClassic(HttpClassicArgs),
    /// The ceiling: the same samples, Avro-encoded, produced straight to Kafka with
    /// labstream's producer settings, in the same batches and concurrency as http-batch.
    KafkaRaw(KafkaRawArgs),
    /// Turn the JSON summary of a k6 run (benches/k6/classic.js) into a result file, so
    /// the report shows k6's own figures next to the load generator's.
    ImportK6(ImportK6Args),
    /// Print the median of a numeric field over result files (used by benches/run).
    Median(MedianArgs),
    /// Write the ingest section of RESULTS.md from a folder of results.
    Report(ReportArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// Measurement window (after the warm-up).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load sent before the window opens, not counted.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Time between two progress lines on stderr.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    progress: Duration,
    /// Simulated sensors of each registry type, per worker.
    #[arg(long, default_value_t = 100)]
    sensors_per_type: usize,
    /// Worker threads of the generator (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Name for the report to group repeated runs by.
    #[arg(long)]
    label: Option<String>,
    /// Also measure the CPU and memory of this process during the window (NAME=PID;
    /// repeatable), e.g. `--watch labstream=4242 --watch kafka=1234`.
    #[arg(long = "watch")]
    watch: Vec<Watched>,
    /// Also write the JSON result to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct HttpArgs {
    /// Base URL of labstream's ingest.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Bearer token with scope samples:write (`labstream token issue`).
    #[arg(long, env = "LABSTREAM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// JSON to /v1/samples, or line protocol to /api/v2/write.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
}

#[derive(Args)]
struct HttpBatchArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// Samples per request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Requests in flight (workers).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Clone, Copy, Debug)]
enum Rate {
    Max,
    PerSecond(f64),
}

fn parse_rate(s: &str) -> Result<Rate, String> {
    if s.eq_ignore_ascii_case("max") {
        return Ok(Rate::Max);
    }
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(Rate::PerSecond(r)),
        _ => Err(format!(
            "{s:?} is neither `max` nor a positive number of requests per second"
        )),
    }
}

#[derive(Args)]
struct HttpSingleArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// Requests per second (open model), or `max` (closed model with --concurrency).
    #[arg(long, default_value = "max", value_parser = parse_rate)]
    rate: Rate,
    /// Workers of the closed model (`--rate max`).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Most requests in flight in the open model; past it the schedule waits and the
    /// wait counts in the latency.
    #[arg(long, default_value_t = 4096)]
    max_in_flight: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct HttpClassicArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// Virtual users.
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Each user's iteration period (one request per sensor type per iteration).
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    interval: Duration,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct KafkaRawArgs {
    /// Bootstrap servers.
    #[arg(
        long,
        env = "LABSTREAM__KAFKA__BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    brokers: String,
    /// Topic to produce to; created with --partitions when missing.
    #[arg(long)]
    topic: String,
    /// Partitions of the topic when it is created (labstream's default for samples).
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Samples per batch (as http-batch's requests).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Batches in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct ImportK6Args {
    /// The JSON file the script's handleSummary wrote.
    #[arg(long)]
    summary: PathBuf,
    /// Label of the run in the report.
    #[arg(long, default_value = "classic-k6")]
    label: String,
    /// Virtual users of the run.
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Where k6 sent the samples.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// When the run began (RFC 3339).
    #[arg(long)]
    started_at: String,
    /// Write the result here.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct MedianArgs {
    /// Field of the result, dotted for nested ones: `requests_per_s`, `latency_us.p99`.
    #[arg(long)]
    field: String,
    /// Result files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Args)]
struct ReportArgs {
    /// Folder with the JSON results of one benchmark run.
    #[arg(long)]
    results: PathBuf,
    /// The Markdown file to write; only the ingest section is replaced.
    #[arg(long, default_value = "benches/RESULTS.md")]
    out: PathBuf,
    /// The command that produced the results, quoted in the report.
    #[arg(long, default_value = "benches/run")]
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
    /// What else ran on the machine during the benchmark.
    #[arg(long, default_value = "nothing else was observed")]
    shared: String,
}

fn main() -> ExitCode {
    labstream_benches::exit::finish(loadgen())
}

fn loadgen() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::HttpBatch(a) => a.common.threads,
        Command::HttpSingle(a) => a.common.threads,
        Command::HttpClassic(a) => a.common.threads,
        Command::KafkaRaw(a) => a.common.threads,
        Command::Median(a) => return median(a),
        Command::ImportK6(a) => return import_k6(a),
        Command::Report(a) => return write_report(a),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = builder.build().context("starting the tokio runtime")?;
    runtime.block_on(run(cli.command))
}

fn spec(
    scenario: &str,
    common: &Common,
    format: Option<Format>,
    batch: usize,
    model: Model,
    destination: String,
) -> RunSpec {
    RunSpec {
        scenario: scenario.to_owned(),
        label: common.label.clone(),
        format,
        batch,
        model,
        warmup: common.warmup,
        duration: common.duration,
        progress_every: common.progress,
        sensors_per_type: common.sensors_per_type,
        watch: common.watch.clone(),
        destination,
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let (result, out) = match command {
        Command::HttpBatch(a) => {
            if a.batch == 0 || a.concurrency == 0 {
                bail!("--batch and --concurrency must be at least 1");
            }
            let target = Arc::new(HttpTarget::new(
                &a.http.url,
                a.http.format,
                a.http.token.as_deref(),
            )?);
            check_reachable(&a.http.url).await?;
            let s = spec(
                "http-batch",
                &a.common,
                Some(a.http.format),
                a.batch,
                Model::Closed {
                    concurrency: a.concurrency,
                },
                target.url().to_owned(),
            );
            (runner::run(target, s).await, a.common.out)
        }
        Command::HttpClassic(a) => {
            let target = Arc::new(HttpTarget::new(
                &a.http.url,
                a.http.format,
                a.http.token.as_deref(),
            )?);
            check_reachable(&a.http.url).await?;
            let model = Model::Paced {
                users: a.users.max(1),
                interval: a.interval,
            };
            let s = spec(
                "http-classic",
                &a.common,
                Some(a.http.format),
                1,
                model,
                target.url().to_owned(),
            );
            (runner::run(target, s).await, a.common.out)
        }
        Command::HttpSingle(a) => {
            let target = Arc::new(HttpTarget::new(
                &a.http.url,
                a.http.format,
                a.http.token.as_deref(),
            )?);
            check_reachable(&a.http.url).await?;
            let model = match a.rate {
                Rate::Max => Model::Closed {
                    concurrency: a.concurrency.max(1),
                },
                Rate::PerSecond(rate) => Model::Open {
                    rate,
                    max_in_flight: a.max_in_flight.max(1),
                },
            };
            let s = spec(
                "http-single",
                &a.common,
                Some(a.http.format),
                1,
                model,
                target.url().to_owned(),
            );
            (runner::run(target, s).await, a.common.out)
        }
        Command::KafkaRaw(a) => {
            if a.batch == 0 || a.concurrency == 0 {
                bail!("--batch and --concurrency must be at least 1");
            }
            // labstream's defaults (produce timeout, client settings) with these brokers.
            let config = KafkaConfig {
                brokers: a.brokers.clone(),
                client_id: "labstream-loadgen".into(),
                ..KafkaConfig::default()
            };
            labstream_bus::probe(&config, Duration::from_secs(15))
                .await
                .with_context(|| format!("Kafka at {} is not reachable", a.brokers))?;
            labstream_bus::ensure_topics(&config, &[TopicSpec::new(&a.topic, a.partitions)])
                .await
                .with_context(|| format!("creating topic {}", a.topic))?;
            let target = Arc::new(KafkaTarget::new(&config, &a.topic)?);
            let s = spec(
                "kafka-raw",
                &a.common,
                None,
                a.batch,
                Model::Closed {
                    concurrency: a.concurrency,
                },
                format!("kafka://{}/{}", a.brokers, a.topic),
            );
            let result = runner::run(target.clone(), s).await;
            target.flush();
            (result, a.common.out)
        }
        Command::Median(_) | Command::Report(_) | Command::ImportK6(_) => {
            unreachable!("handled before the runtime starts")
        }
    };
    let json = serde_json::to_string_pretty(&result)?;
    if let Some(path) = out {
        std::fs::write(&path, format!("{json}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{json}");
    if result.measured.requests == 0 {
        bail!("no request succeeded in the measurement window; see the outcomes above");
    }
    Ok(())
}

/// Fails early and clearly when nothing listens at the URL.
async fn check_reachable(base: &str) -> anyhow::Result<()> {
    let url = format!("{}/healthz", base.trim_end_matches('/'));
    reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| {
            format!("labstream does not answer at {url}; start `labstream serve` or pass --url")
        })?;
    Ok(())
}

fn median(args: &MedianArgs) -> anyhow::Result<()> {
    let mut values = Vec::new();
    for path in &args.files {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let pointer = format!("/{}", args.field.replace('.', "/"));
        let v = value
            .pointer(&pointer)
            .and_then(serde_json::Value::as_f64)
            .with_context(|| format!("{} has no numeric field {}", path.display(), args.field))?;
        values.push(v);
    }
    let s = Spread::of(values).context("no values")?;
    println!("{}", s.median);
    Ok(())
}

fn write_report(args: &ReportArgs) -> anyhow::Result<()> {
    let results: Vec<RunResult> = report::load_results(&args.results)?;
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    let ctx = RunContext {
        date: match (results.first(), results.last()) {
            (Some(first), Some(last)) => format!(
                "from {} to {} (start of the first and the last measurement window)",
                first.started_at, last.started_at
            ),
            _ => chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        },
        command: args.command.clone(),
        commit: args.commit.clone(),
        rustc: args.rustc.clone(),
        kafka: args.kafka.clone(),
        librdkafka,
        machine: labstream_benches::process_stats::machine(),
        shared: args.shared.clone(),
    };
    let section = report::ingest_section(&results, &ctx)?;
    let existing = std::fs::read_to_string(&args.out).unwrap_or_default();
    std::fs::write(&args.out, report::splice(&existing, &section))
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// k6's summary -> a `RunResult`: requests and their rate from `http_reqs`, latency
/// from `http_req_duration` (milliseconds in k6, microseconds here), failures from the
/// script's 202 check. k6 reports no p99.9 unless asked; the script asks for it.
fn import_k6(a: &ImportK6Args) -> anyhow::Result<()> {
    use labstream_benches::recorder::{Measured, Percentiles};
    let text = std::fs::read_to_string(&a.summary)
        .with_context(|| format!("reading {}", a.summary.display()))?;
    let summary: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not k6 JSON", a.summary.display()))?;
    let metric = |name: &str, key: &str| -> anyhow::Result<f64> {
        summary["metrics"][name]["values"][key]
            .as_f64()
            .with_context(|| format!("k6 summary has no metrics.{name}.values.{key}"))
    };
    let us = |key: &str| -> anyhow::Result<u64> {
        Ok((metric("http_req_duration", key)? * 1000.0).round() as u64)
    };
    let requests = metric("http_reqs", "count")? as u64;
    let failed = summary["metrics"]["checks"]["values"]["fails"]
        .as_f64()
        .unwrap_or(0.0) as u64;
    let window_s = summary["state"]["testRunDurationMs"]
        .as_f64()
        .unwrap_or(0.0)
        / 1000.0;
    let latency = Percentiles {
        count: requests,
        mean: metric("http_req_duration", "avg")? * 1000.0,
        p50: us("med")?,
        p90: us("p(90)")?,
        p99: us("p(99)")?,
        p999: us("p(99.9)")?,
        max: us("max")?,
    };
    let ok = requests.saturating_sub(failed);
    let result = RunResult {
        scenario: "k6-classic".into(),
        label: Some(a.label.clone()),
        format: Some(Format::Json),
        model: "paced".into(),
        batch: 1,
        concurrency: Some(a.users),
        max_in_flight: None,
        destination: a.url.clone(),
        started_at: a.started_at.clone(),
        warmup_s: 0.0,
        measured: Measured {
            window_s,
            requests: ok,
            samples: ok,
            requests_per_s: ok as f64 / window_s.max(1e-9),
            samples_per_s: ok as f64 / window_s.max(1e-9),
            failed_requests: failed,
            completed_after_end: 0,
            latency_us: latency.clone(),
            service_us: latency,
            outcomes: [("202 (k6 check)".to_owned(), ok)].into(),
            errors: Default::default(),
        },
        schedule: None,
        cpu: Default::default(),
        memory: Default::default(),
    };
    std::fs::write(
        &a.out,
        format!("{}\n", serde_json::to_string_pretty(&result)?),
    )
    .with_context(|| format!("writing {}", a.out.display()))?;
    Ok(())
}
