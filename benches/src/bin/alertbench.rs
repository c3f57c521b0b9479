//! labstream-alertbench: end-to-end alert latency at a steady load. It creates (or
//! replaces) one `above` rule through the API, posts temperature samples at `--rate`
//! samples/s in JSON batches (open model: a batch leaves every `--tick` whatever the
//! answers), of which `--alerting-sensors` sensors cross the threshold and recover on
//! every sample they send, and a Kafka consumer of `alerts.<topic>` (read_committed)
//! measures, per transition, the wall-clock time it read the event minus the event
//! time of the sample that caused it, which is the wall-clock time the sample's batch
//! was sent; it also splits that time into stages (see `labstream_benches::alerts`).
//! Needs a running `labstream serve` (or ingest + api + process alerts).
//! `labstream-alertbench report` writes the alerts section of RESULTS.md from the runs.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use labstream_benches::alerts::{self, AlertContext, AlertRun, Percentiles};
use labstream_benches::process_stats::{CpuSnapshot, Watched};
use labstream_schemas::{AlertEvent, Codec, Timestamp};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "labstream-alertbench",
    about = "End-to-end alert latency: sample POST -> alert event read by a Kafka consumer",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Args,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Writes the alerts section of a RESULTS.md from the runs' JSON files.
    Report(ReportArgs),
}

#[derive(clap::Args, Debug)]
struct ReportArgs {
    /// Folder of the runs' JSON files (written with --json).
    #[arg(long)]
    results: PathBuf,
    /// The Markdown file whose alerts section is replaced (appended when absent).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value = "benches/run alerts")]
    command: String,
    #[arg(long, default_value = "unknown")]
    commit: String,
    #[arg(long, default_value = "unknown")]
    rustc: String,
    #[arg(long, default_value = "unknown")]
    kafka: String,
    /// What else ran on the machine during the runs.
    #[arg(long, default_value = "not checked")]
    shared: String,
}

#[derive(clap::Args, Debug)]
struct Args {
    /// labstream HTTP base URL (ingest and API).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Token with the scopes samples:write and admin (unset: auth disabled).
    #[arg(long, env = "LABSTREAM_TOKEN")]
    token: Option<String>,
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// The server's kafka.topic_prefix.
    #[arg(long, default_value = "")]
    topic_prefix: String,
    /// Samples per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// One batch is sent every tick.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    tick: Duration,
    /// Measured time (after the warm-up).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Sensors that stay normal.
    #[arg(long, default_value_t = 1000)]
    sensors: usize,
    /// Sensors that cross and recover on each of their samples (one sample each every 100 ms).
    #[arg(long, default_value_t = 20)]
    alerting_sensors: usize,
    /// Batches in flight at most.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Write the result as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Name of the run in the report.
    #[arg(long, default_value = "1")]
    label: String,
    /// A process whose CPU use in the measured window is reported (NAME=PID; repeatable).
    #[arg(long)]
    watch: Vec<Watched>,
}

const RULE_ID: &str = "bench-latency";
const TOPIC: &str = "bench";

#[tokio::main]
async fn main() -> ExitCode {
    labstream_benches::exit::finish(alertbench().await)
}

async fn alertbench() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Report(r)) => report(r),
        None => run(cli.run).await,
    }
}

fn report(args: ReportArgs) -> anyhow::Result<()> {
    let runs = alerts::load_runs(&args.results)?;
    let ctx = AlertContext {
        command: args.command,
        commit: args.commit,
        rustc: args.rustc,
        kafka: args.kafka,
        librdkafka: rdkafka::util::get_rdkafka_version().1,
        machine: labstream_benches::process_stats::machine(),
        shared: args.shared,
    };
    let section = alerts::section(&runs, &ctx)?;
    let existing = std::fs::read_to_string(&args.out).unwrap_or_default();
    std::fs::write(&args.out, alerts::splice(&existing, &section))
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "alerts section of {} written from {} runs",
        args.out.display(),
        runs.len()
    );
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?)
}

/// Records `to - from` (µs; clamped to 1 µs, as clocks of a millisecond resolution can
/// put `to` a little before `from`).
fn record(h: &mut Histogram<u64>, from: i64, to: i64) {
    h.saturating_record(u64::try_from(to - from).unwrap_or(1).max(1));
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Percentiles {
        p50: ms(0.50),
        p90: ms(0.90),
        p99: ms(0.99),
        max: h.max() as f64 / 1000.0,
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let auth = |r: reqwest::RequestBuilder| match &args.token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    let rule = json!({
        "name": "Alert latency benchmark",
        "topic": TOPIC,
        "sensor_type": "temperature",
        "field": "celsius",
        "condition": {"kind": "above", "threshold": 50.0, "recovery": 40.0},
        "severity": "info",
    });
    let r = auth(http.put(format!("{}/v1/alerts/rules/{RULE_ID}", args.url)))
        .json(&rule)
        .send()
        .await
        .context("creating the benchmark rule")?;
    if !r.status().is_success() {
        bail!(
            "creating the rule: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }

    let topic = format!("{}alerts.{TOPIC}", args.topic_prefix);
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", "labstream-alertbench")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition_offset(&topic, p.id(), Offset::End)?;
    }
    if tpl.count() == 0 {
        bail!("topic {topic} does not exist (is the API running with this --topic-prefix?)");
    }
    consumer.assign(&tpl)?;

    let start = Instant::now();
    let measure_from = Timestamp::from_micros(
        Timestamp::now().as_micros() + i64::try_from(args.warmup.as_micros())?,
    );
    let measure_start = start + args.warmup;
    let end = measure_start + args.duration;
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let acks = Arc::new(Mutex::new(histogram()?));
    let load = tokio::spawn(load(
        Load {
            url: args.url.clone(),
            token: args.token.clone(),
            rate: args.rate,
            tick: args.tick,
            sensors: args.sensors,
            alerting: args.alerting_sensors,
            concurrency: args.concurrency,
            measure_from,
            end,
        },
        sent.clone(),
        failed.clone(),
        acks.clone(),
    ));

    let codec = Codec::new();
    let mut latency = histogram()?;
    let mut to_decision = histogram()?;
    let mut to_send = histogram()?;
    let mut to_read = histogram()?;
    let mut transitions = 0u64;
    let mut window: Option<(String, String, CpuSnapshot)> = None;
    let mut load_end = None;
    let mut cpu = None;
    // Events of the measured window still arrive a moment after the load stopped.
    let drain_until = end + Duration::from_secs(3);
    while Instant::now() < drain_until {
        if window.is_none() && Instant::now() >= measure_start {
            window = Some((
                Timestamp::now().to_string(),
                loadavg(),
                CpuSnapshot::take(&args.watch),
            ));
        }
        if let Some((_, _, at_start)) = &window
            && cpu.is_none()
            && Instant::now() >= end
        {
            cpu = Some(at_start.until(&CpuSnapshot::take(&args.watch)));
            load_end = Some(loadavg());
        }
        let m = match tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => bail!("consuming {topic}: {e}"),
            Err(_) => continue,
        };
        let now = Timestamp::now().as_micros();
        let Some(bytes) = m.payload() else { continue };
        let event: AlertEvent = codec.decode(bytes)?;
        if event.ts < measure_from {
            continue;
        }
        transitions += 1;
        let (sent_at, decided) = (event.ts.as_micros(), event.emitted_at.as_micros());
        record(&mut latency, sent_at, now);
        record(&mut to_decision, sent_at, decided);
        if let Some(produced) = m.timestamp().to_millis() {
            record(&mut to_send, decided, produced * 1000);
            record(&mut to_read, produced * 1000, now);
        }
    }
    load.await??;
    let (started_at, load_start, _) = window.context("the run ended before its window")?;

    let sent = sent.load(Ordering::Relaxed);
    let total = (args.warmup + args.duration).as_secs_f64();
    let mut stages = BTreeMap::new();
    stages.insert(
        "ingest_ack".to_owned(),
        percentiles(&acks.lock().expect("not poisoned")),
    );
    stages.insert("to_decision".to_owned(), percentiles(&to_decision));
    stages.insert("to_send".to_owned(), percentiles(&to_send));
    stages.insert("to_read".to_owned(), percentiles(&to_read));
    let result = AlertRun {
        label: args.label.clone(),
        started_at,
        rate_target: args.rate,
        rate_achieved: (sent as f64 / total).round(),
        failed_batches: failed.load(Ordering::Relaxed),
        transitions_measured: transitions,
        duration_s: args.duration.as_secs_f64(),
        latency_ms: percentiles(&latency),
        stages_ms: stages,
        load_start,
        load_end: load_end.unwrap_or_else(loadavg),
        cpu: cpu.unwrap_or_default(),
    };
    let l = &result.latency_ms;
    println!(
        "{} samples/s (target {}), {} transitions measured over {:?}: alert latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} failed batches; load {} -> {}",
        result.rate_achieved,
        args.rate,
        transitions,
        args.duration,
        l.p50,
        l.p90,
        l.p99,
        l.max,
        result.failed_batches,
        result.load_start,
        result.load_end,
    );
    for (name, p) in &result.stages_ms {
        println!(
            "  {name:<12} p50 {:>7.1} ms  p90 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
            p.p50, p.p90, p.p99, p.max
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
    }
    Ok(())
}

/// What the load task sends.
struct Load {
    url: String,
    token: Option<String>,
    rate: u64,
    tick: Duration,
    sensors: usize,
    alerting: usize,
    concurrency: usize,
    /// Batches sent from here on have their answer time recorded.
    measure_from: Timestamp,
    end: Instant,
}

/// Sends `rate` samples/s until `end`, one JSON array per tick.
async fn load(
    plan: Load,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    acks: Arc<Mutex<Histogram<u64>>>,
) -> anyhow::Result<()> {
    let Load {
        url,
        token,
        rate,
        tick,
        sensors,
        alerting,
        concurrency,
        measure_from,
        end,
    } = plan;
    let http = reqwest::Client::new();
    let per_tick = ((rate as f64) * tick.as_secs_f64()).round().max(1.0) as usize;
    let alerting_every = (Duration::from_millis(100).as_secs_f64() / tick.as_secs_f64())
        .round()
        .max(1.0) as u64;
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n: u64 = 0;
    let mut next_sensor = 0usize;
    while Instant::now() < end {
        interval.tick().await;
        n += 1;
        let sent_at = Timestamp::now();
        let ts = sent_at.to_string();
        let mut batch = Vec::with_capacity(per_tick);
        if n.is_multiple_of(alerting_every) {
            // Odd rounds above 50, even rounds below 40: every sample is a transition.
            let celsius = if (n / alerting_every) % 2 == 1 {
                60.0
            } else {
                30.0
            };
            for a in 0..alerting.min(per_tick) {
                batch.push(
                    json!({"sensor_id": format!("alarm-{a}"), "sensor_type": "temperature",
                    "ts": ts, "values": {"celsius": celsius}}),
                );
            }
        }
        while batch.len() < per_tick {
            batch.push(
                json!({"sensor_id": format!("bench-{next_sensor}"), "sensor_type": "temperature",
                "ts": ts, "values": {"celsius": 20.0}}),
            );
            next_sensor = (next_sensor + 1) % sensors.max(1);
        }
        let count = batch.len() as u64;
        let permit = permits.clone().acquire_owned().await?;
        let mut request = http
            .post(format!("{url}/v1/samples"))
            .json(&serde_json::Value::Array(batch));
        if let Some(t) = &token {
            request = request.bearer_auth(t);
        }
        let (sent, failed, acks) = (sent.clone(), failed.clone(), acks.clone());
        tokio::spawn(async move {
            match request.send().await {
                Ok(r) if r.status().is_success() => {
                    sent.fetch_add(count, Ordering::Relaxed);
                    if sent_at >= measure_from {
                        record(
                            &mut acks.lock().expect("not poisoned"),
                            sent_at.as_micros(),
                            Timestamp::now().as_micros(),
                        );
                    }
                }
                _ => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(permit);
        });
    }
    Ok(())
}
