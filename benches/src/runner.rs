//! Runs one scenario: a target, a workload model and a window; prints a progress line
//! every few seconds on stderr while it runs and returns the result that the load
//! generator prints as JSON and the report reads back.

use crate::endpoint::Target;
use crate::fleet::Fleet;
use crate::models::{self, Schedule};
use crate::process_stats::{self, CpuSnapshot, CpuUse, Memory, Watched};
use crate::recorder::{Measured, Recorder, Window};
use crate::wire::Format;
use labstream_schemas::Registry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How requests are sent.
#[derive(Clone, Copy, Debug)]
pub enum Model {
    /// `concurrency` workers, each waiting for its answer before sending again.
    Closed { concurrency: usize },
    /// A constant arrival rate (requests per second), at most `max_in_flight` at once.
    Open { rate: f64, max_in_flight: usize },
    /// `users` virtual users, each sending one single-sample request per sensor type
    /// every `interval` (the classic k6 lab scenario).
    Paced { users: usize, interval: Duration },
}

/// What every scenario shares.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// `http-batch`, `http-single`, `kafka-raw`, ...
    pub scenario: String,
    /// Groups repeated runs in the report (e.g. `ingest-json`).
    pub label: Option<String>,
    pub format: Option<Format>,
    /// Samples per request.
    pub batch: usize,
    pub model: Model,
    pub warmup: Duration,
    pub duration: Duration,
    pub progress_every: Duration,
    pub sensors_per_type: usize,
    pub watch: Vec<Watched>,
    /// Where the samples go, for the result (URL, or brokers and topic).
    pub destination: String,
}

/// One run's result, printed as JSON on stdout.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    pub scenario: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub format: Option<Format>,
    /// `closed` or `open`.
    pub model: String,
    pub batch: usize,
    /// Workers (closed model).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Most requests in flight (open model).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    pub destination: String,
    /// When the measurement window began (RFC 3339).
    pub started_at: String,
    pub warmup_s: f64,
    #[serde(flatten)]
    pub measured: Measured,
    /// The open model's schedule.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// Cores used during the measurement window.
    pub cpu: CpuUse,
    /// Memory of the watched processes at the end of the run.
    pub memory: BTreeMap<String, Memory>,
}

pub async fn run<T: Target>(target: Arc<T>, spec: RunSpec) -> RunResult {
    let registry = Registry::default_lab();
    let window = Window::new(spec.warmup, spec.duration);
    let started_at = chrono::Utc::now()
        + chrono::TimeDelta::from_std(spec.warmup).unwrap_or(chrono::TimeDelta::zero());
    let recorder = Arc::new(Recorder::new(window));
    let mut watch = vec![Watched {
        name: "loadgen".into(),
        pid: None,
    }];
    watch.extend(spec.watch.iter().cloned());

    let cpu = tokio::spawn(measure_cpu(window, watch.clone()));
    let progress = tokio::spawn(report_progress(
        spec.scenario.clone(),
        spec.progress_every,
        recorder.clone(),
    ));

    let (schedule, concurrency, max_in_flight) = match spec.model {
        Model::Closed { concurrency } => {
            let fleets = (0..concurrency)
                .map(|shard| Fleet::new(&registry, spec.sensors_per_type, shard))
                .collect();
            models::closed(target, fleets, spec.batch, recorder.clone()).await;
            (None, Some(concurrency), None)
        }
        Model::Open {
            rate,
            max_in_flight,
        } => {
            let fleet = Fleet::new(&registry, spec.sensors_per_type, 0);
            let schedule = models::open(
                target,
                fleet,
                spec.batch,
                rate,
                max_in_flight,
                Duration::from_secs(30),
                recorder.clone(),
            )
            .await;
            (Some(schedule), None, Some(max_in_flight))
        }
        Model::Paced { users, interval } => {
            // One sensor of each type per user: an iteration sends each type once.
            let fleets = (0..users)
                .map(|shard| Fleet::new(&registry, 1, shard))
                .collect();
            let types = registry.types().count();
            models::paced(target, fleets, types, interval, recorder.clone()).await;
            (None, Some(users), None)
        }
    };
    progress.abort();
    let cpu = cpu.await.unwrap_or_default();
    let measured = recorder.summary();
    eprintln!(
        "{}: done: {:.0} samples/s, {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms, {} failed",
        spec.scenario,
        measured.samples_per_s,
        measured.requests_per_s,
        measured.latency_us.p50 as f64 / 1000.0,
        measured.latency_us.p99 as f64 / 1000.0,
        measured.latency_us.p999 as f64 / 1000.0,
        measured.latency_us.max as f64 / 1000.0,
        measured.failed_requests + measured.errors.values().sum::<u64>(),
    );
    RunResult {
        scenario: spec.scenario,
        label: spec.label,
        format: spec.format,
        model: match spec.model {
            Model::Closed { .. } => "closed",
            Model::Open { .. } => "open",
            Model::Paced { .. } => "paced",
        }
        .to_owned(),
        batch: spec.batch,
        concurrency,
        max_in_flight,
        destination: spec.destination,
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        warmup_s: spec.warmup.as_secs_f64(),
        measured,
        schedule,
        cpu,
        memory: process_stats::memory(&watch),
    }
}

async fn measure_cpu(window: Window, watch: Vec<Watched>) -> CpuUse {
    tokio::time::sleep_until(window.start.into()).await;
    let start = CpuSnapshot::take(&watch);
    tokio::time::sleep_until(window.end.into()).await;
    start.until(&CpuSnapshot::take(&watch))
}

async fn report_progress(scenario: String, every: Duration, recorder: Arc<Recorder>) {
    let begin = recorder.window.begin;
    let mut last = (Instant::now(), recorder.progress());
    let mut tick = tokio::time::interval_at((begin + every).into(), every);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let current = recorder.progress();
        let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let phase = if now < recorder.window.start {
            "warm-up"
        } else {
            "measuring"
        };
        eprintln!(
            "{scenario}: {:>5.1}s {phase}: {:>9.0} samples/s {:>8.0} requests/s, {} in flight, {} failed so far",
            now.duration_since(begin).as_secs_f64(),
            (current.1 - last.1.1) as f64 / secs,
            (current.0 - last.1.0) as f64 / secs,
            recorder.in_flight(),
            current.2,
        );
        last = (now, current);
    }
}
