//! `labstream simulate`: a small fleet of simulated sensors, several of each type of the
//! registry, posting to ingest over HTTP like real gateways do. Used by the README's
//! demo; values drift slowly around realistic levels so queries show something sensible.

use crate::config::Settings;
use anyhow::bail;
use clap::Args;
use labstream_schemas::{FieldType, Registry};
use rand::Rng;
use serde_json::{Map, Value, json};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

#[derive(Args)]
pub(crate) struct SimulateArgs {
    /// Base URL of ingest (default: http://<http.listen>).
    #[arg(long)]
    pub(crate) url: Option<String>,
    /// Sensors of each registry type.
    #[arg(long, default_value_t = 2)]
    pub(crate) sensors_per_type: usize,
    /// Time between two readings of one sensor.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) interval: Duration,
    /// Stop after this long (0s = run until interrupted).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,
    /// Bearer token to send, if ingest requires one.
    #[arg(long, env = "LABSTREAM_TOKEN")]
    pub(crate) token: Option<String>,
}

struct Sensor {
    id: String,
    sensor_type: String,
    state: Vec<(String, FieldType, f64)>,
    seq: i64,
}

fn baseline(sensor_type: &str, field: &str) -> f64 {
    match (sensor_type, field) {
        ("temperature", _) => 21.0,
        ("humidity", _) => 45.0,
        ("co2", _) => 600.0,
        ("power", _) => 150.0,
        ("thermocouple", _) => -80.0,
        ("accelerometer", "z") => 9.81,
        _ => 0.0,
    }
}

fn fleet(registry: &Registry, per_type: usize) -> Vec<Sensor> {
    let mut sensors = Vec::new();
    for (name, spec) in registry.types() {
        for i in 1..=per_type {
            sensors.push(Sensor {
                id: format!("{name}-{i}"),
                sensor_type: name.to_owned(),
                state: spec
                    .fields
                    .iter()
                    .map(|(f, s)| (f.clone(), s.field_type, baseline(name, f)))
                    .collect(),
                seq: 0,
            });
        }
    }
    sensors
}

fn reading(sensor: &mut Sensor, rng: &mut impl Rng) -> Value {
    sensor.seq += 1;
    let mut values = Map::new();
    for (field, field_type, level) in &mut sensor.state {
        let v = match field_type {
            FieldType::Double => {
                *level += rng.random_range(-0.5..0.5) * (level.abs() * 0.01 + 0.2);
                json!((*level * 100.0).round() / 100.0)
            }
            FieldType::Long => json!(level.round() as i64),
            FieldType::Boolean => json!(rng.random_bool(0.1)),
            FieldType::String => json!("ok"),
        };
        values.insert(field.clone(), v);
    }
    json!({
        "sensor_id": sensor.id,
        "sensor_type": sensor.sensor_type,
        "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "seq": sensor.seq,
        "values": values,
        "tags": {"room": "lab-1", "source": "simulate"},
    })
}

pub(crate) async fn run(settings: &Settings, args: SimulateArgs) -> anyhow::Result<()> {
    let registry = settings.registry()?;
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", settings.http.listen));
    let url = format!("{}/v1/samples", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut sensors = fleet(&registry, args.sensors_per_type);
    if sensors.is_empty() {
        bail!("--sensors-per-type must be at least 1");
    }
    eprintln!(
        "simulating {} sensors ({} per type) every {} -> {url}",
        sensors.len(),
        args.sensors_per_type,
        humantime::format_duration(args.interval)
    );
    let started = Instant::now();
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_report = Instant::now();
    let (mut sent, mut failed) = (0usize, 0usize);
    let mut rng = rand::rng();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        if !args.duration.is_zero() && started.elapsed() >= args.duration {
            break;
        }
        let batch: Vec<Value> = sensors.iter_mut().map(|s| reading(s, &mut rng)).collect();
        let mut request = client.post(&url).json(&batch);
        if let Some(token) = &args.token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => sent += batch.len(),
            Ok(r) => {
                failed += batch.len();
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                eprintln!("ingest answered {status}: {body}");
                if status.is_client_error() {
                    bail!(
                        "ingest refused the simulated samples ({status}); check the registry and the token"
                    );
                }
            }
            Err(e) => {
                failed += batch.len();
                eprintln!("cannot reach ingest at {url}: {e}");
            }
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "simulate: {sent} samples accepted, {failed} failed, {:.0}s elapsed",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    eprintln!("simulate: done, {sent} samples accepted, {failed} failed");
    if sent == 0 {
        bail!("no sample was accepted by {url}");
    }
    Ok(())
}
