//! Workload models. *Closed*: N workers, each sending its next request as soon as the
//! previous one is answered: it finds the maximum rate a target sustains at that
//! concurrency. *Open*: requests arrive at a constant rate whatever the answers,
//! as independent sensors do; each request's latency counts from the moment the
//! schedule wanted it sent, so queueing in the generator or the target is included.

use crate::endpoint::Target;
use crate::fleet::Fleet;
use crate::recorder::Recorder;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Runs `fleets.len()` workers (one fleet each, so keys never collide) until the
/// window ends; each sends `batch` samples per request.
pub async fn closed<T: Target>(
    target: Arc<T>,
    fleets: Vec<Fleet>,
    batch: usize,
    recorder: Arc<Recorder>,
) {
    let mut workers = tokio::task::JoinSet::new();
    for mut fleet in fleets {
        let target = target.clone();
        let recorder = recorder.clone();
        workers.spawn(async move {
            while Instant::now() < recorder.window.end {
                let samples = fleet.take(batch);
                let n = samples.len() as u64;
                let sent = Instant::now();
                recorder.started();
                let outcome = target.send(samples).await;
                recorder.record(sent, sent, outcome, n);
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        if let Err(e) = joined {
            eprintln!("loadgen: a worker failed: {e}");
        }
    }
}

/// The classic lab load test (as lab teams script it in k6): `fleets.len()` virtual
/// users, each sending `requests_per_iteration` single-sample requests one after the
/// other (one per sensor type), then waiting for the rest of `interval` before the next
/// iteration (an iteration that takes longer starts the next one at once, like k6).
pub async fn paced<T: Target>(
    target: Arc<T>,
    fleets: Vec<Fleet>,
    requests_per_iteration: usize,
    interval: Duration,
    recorder: Arc<Recorder>,
) {
    let mut users = tokio::task::JoinSet::new();
    for mut fleet in fleets {
        let target = target.clone();
        let recorder = recorder.clone();
        users.spawn(async move {
            while Instant::now() < recorder.window.end {
                let iteration = Instant::now();
                for _ in 0..requests_per_iteration {
                    let samples = fleet.take(1);
                    let sent = Instant::now();
                    recorder.started();
                    let outcome = target.send(samples).await;
                    recorder.record(sent, sent, outcome, 1);
                }
                tokio::time::sleep_until((iteration + interval).into()).await;
            }
        });
    }
    while let Some(joined) = users.join_next().await {
        if let Err(e) = joined {
            eprintln!("loadgen: a virtual user failed: {e}");
        }
    }
}

/// What the open model's scheduler did, next to what it measured.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Schedule {
    /// Requests per second the schedule asked for.
    pub target_rate: f64,
    /// Requests scheduled inside the measurement window.
    pub scheduled: u64,
    /// Requests that waited for a free in-flight slot before they could be sent.
    pub waited_for_slot: u64,
    /// Most requests in flight at once.
    pub peak_in_flight: u64,
}

/// Sends `rate` requests per second, each of `batch` samples, with at most
/// `max_in_flight` outstanding (past it the scheduler waits, and the wait shows in the
/// latency of the requests it delays). After the window, waits up to `drain` for the
/// requests still in flight.
pub async fn open<T: Target>(
    target: Arc<T>,
    mut fleet: Fleet,
    batch: usize,
    rate: f64,
    max_in_flight: usize,
    drain: Duration,
    recorder: Arc<Recorder>,
) -> Schedule {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let window = recorder.window;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut schedule = Schedule {
        target_rate: rate,
        ..Schedule::default()
    };
    let mut i: u32 = 0;
    loop {
        // Multiplying (not adding up intervals) keeps the schedule free of drift.
        let intended = window.begin + interval * i;
        if intended >= window.end {
            break;
        }
        i += 1;
        tokio::time::sleep_until(intended.into()).await;
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if intended >= window.start {
                    schedule.waited_for_slot += 1;
                }
                slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        if intended >= window.start {
            schedule.scheduled += 1;
        }
        let samples = fleet.take(batch);
        let n = samples.len() as u64;
        let target = target.clone();
        let recorder = recorder.clone();
        recorder.started();
        schedule.peak_in_flight = schedule.peak_in_flight.max(recorder.in_flight());
        tokio::spawn(async move {
            let sent = Instant::now();
            let outcome = target.send(samples).await;
            recorder.record(intended, sent, outcome, n);
            drop(permit);
        });
    }
    let all = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        recorder.abandoned(recorder.in_flight());
    }
    schedule
}
