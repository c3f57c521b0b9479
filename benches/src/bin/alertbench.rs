//! labstream-alertbench: end-to-end alert latency at a steady load. It creates (or
//! replaces) one `above` rule through the API, posts temperature samples at `--rate`
//! samples/s in JSON batches (open model: a batch leaves every `--tick` whatever the
//! answers), of which `--alerting-sensors` sensors cross the threshold and recover on
//! every sample they send, and a Kafka consumer of `alerts.<topic>` (read_committed)
//! measures, per transition, the wall-clock time it read the event minus the event
//! time of the sample that caused it, which is the wall-clock time the sample's batch
//! was sent. Needs a running `labstream serve` (or ingest + api + process alerts).

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use labstream_bus::rdkafka::consumer::{Consumer, StreamConsumer};
use labstream_bus::rdkafka::message::Message;
use labstream_bus::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use labstream_schemas::{AlertEvent, Codec, Timestamp};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "labstream-alertbench",
    about = "End-to-end alert latency: sample POST -> alert event read by a Kafka consumer"
)]
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
    json: Option<std::path::PathBuf>,
}

const RULE_ID: &str = "bench-latency";
const TOPIC: &str = "bench";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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
    let end = start + args.warmup + args.duration;
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn(load(
        args.url.clone(),
        args.token.clone(),
        args.rate,
        args.tick,
        args.sensors,
        args.alerting_sensors,
        args.concurrency,
        end,
        sent.clone(),
        failed.clone(),
    ));

    let codec = Codec::new();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut transitions = 0u64;
    // Events of the measured window still arrive a moment after the load stopped.
    let drain_until = end + Duration::from_secs(3);
    while Instant::now() < drain_until {
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
        latency.saturating_record(
            u64::try_from(now - event.ts.as_micros())
                .unwrap_or(1)
                .max(1),
        );
    }
    load.await??;

    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let sent = sent.load(Ordering::Relaxed);
    let total = (args.warmup + args.duration).as_secs_f64();
    let result = json!({
        "rate_target": args.rate,
        "rate_achieved": (sent as f64 / total).round(),
        "failed_batches": failed.load(Ordering::Relaxed),
        "transitions_measured": transitions,
        "latency_ms": {"p50": ms(0.50), "p90": ms(0.90), "p99": ms(0.99), "max": latency.max() as f64 / 1000.0},
        "duration_s": args.duration.as_secs_f64(),
    });
    println!(
        "{} samples/s (target {}), {} transitions measured over {:?}: alert latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} failed batches",
        result["rate_achieved"],
        args.rate,
        transitions,
        args.duration,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        latency.max() as f64 / 1000.0,
        result["failed_batches"]
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
    }
    Ok(())
}

/// Sends `rate` samples/s until `end`, one JSON array per tick.
#[allow(clippy::too_many_arguments)]
async fn load(
    url: String,
    token: Option<String>,
    rate: u64,
    tick: Duration,
    sensors: usize,
    alerting: usize,
    concurrency: usize,
    end: Instant,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> anyhow::Result<()> {
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
        let ts = Timestamp::now().to_string();
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
        let (sent, failed) = (sent.clone(), failed.clone());
        tokio::spawn(async move {
            match request.send().await {
                Ok(r) if r.status().is_success() => {
                    sent.fetch_add(count, Ordering::Relaxed);
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
