//! What a load run measured: latency in an HDR histogram (microseconds), outcomes by
//! status, and throughput over a fixed measurement window that excludes the warm-up.
//! Latency is taken from each request's *intended* start, so a generator that falls
//! behind its schedule shows the delay instead of hiding it (coordinated omission).

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest latency the histograms hold; slower requests are clamped to it.
const MAX_LATENCY_US: u64 = 120_000_000;

/// How one request (or one batch of Kafka sends) ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer with this status.
    Http(u16),
    /// Kafka acknowledged every record.
    Acked,
    /// No answer: connection error, timeout, produce failure.
    Failed(String),
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        match self {
            Outcome::Http(status) => (200..300).contains(status),
            Outcome::Acked => true,
            Outcome::Failed(_) => false,
        }
    }
}

/// The measurement window: requests intended to start before `start` are warm-up and
/// not recorded; throughput counts what completed between `start` and `end`.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub begin: Instant,
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    pub fn new(warmup: Duration, duration: Duration) -> Self {
        let begin = Instant::now();
        let start = begin + warmup;
        Self {
            begin,
            start,
            end: start + duration,
        }
    }

    pub fn measured(&self) -> Duration {
        self.end - self.start
    }
}

struct Totals {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    outcomes: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    ok_requests: u64,
    ok_samples: u64,
    failed_requests: u64,
    completed_after_end: u64,
}

/// Shared by every task of a run. Recording takes a mutex once per request, which is
/// negligible next to an HTTP round trip or a Kafka acknowledgement.
pub struct Recorder {
    pub window: Window,
    totals: Mutex<Totals>,
    // Running counters for the progress line (whole run, warm-up included).
    progress_requests: AtomicU64,
    progress_samples: AtomicU64,
    progress_failed: AtomicU64,
    in_flight: AtomicU64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

impl Recorder {
    pub fn new(window: Window) -> Self {
        Self {
            window,
            totals: Mutex::new(Totals {
                latency: histogram(),
                service: histogram(),
                outcomes: BTreeMap::new(),
                errors: BTreeMap::new(),
                ok_requests: 0,
                ok_samples: 0,
                failed_requests: 0,
                completed_after_end: 0,
            }),
            progress_requests: AtomicU64::new(0),
            progress_samples: AtomicU64::new(0),
            progress_failed: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        }
    }

    /// Call when a request is handed to the network; pairs with `record`.
    pub fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// `intended`: when the schedule wanted the request to start; `sent`: when it
    /// actually started; `samples`: how many samples it carried.
    pub fn record(&self, intended: Instant, sent: Instant, outcome: Outcome, samples: u64) {
        let done = Instant::now();
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let ok = outcome.is_success();
        if ok {
            self.progress_requests.fetch_add(1, Ordering::Relaxed);
            self.progress_samples.fetch_add(samples, Ordering::Relaxed);
        } else {
            self.progress_failed.fetch_add(1, Ordering::Relaxed);
        }
        if intended < self.window.start || intended >= self.window.end {
            return;
        }
        let micros = |d: Duration| (d.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        let mut t = self.totals.lock().expect("recorder lock");
        t.latency
            .record(micros(done.saturating_duration_since(intended)))
            .expect("clamped into the histogram's range");
        t.service
            .record(micros(done.saturating_duration_since(sent)))
            .expect("clamped into the histogram's range");
        let key = match &outcome {
            Outcome::Http(status) => status.to_string(),
            Outcome::Acked => "acked".to_owned(),
            Outcome::Failed(_) => "failed".to_owned(),
        };
        *t.outcomes.entry(key).or_default() += 1;
        if let Outcome::Failed(kind) = outcome {
            *t.errors.entry(kind).or_default() += 1;
        }
        if done > self.window.end {
            t.completed_after_end += 1;
        } else if ok {
            t.ok_requests += 1;
            t.ok_samples += samples;
        } else {
            t.failed_requests += 1;
        }
    }

    /// Requests that were in flight when the run gave up waiting for them.
    pub fn abandoned(&self, count: u64) {
        if count > 0 {
            let mut t = self.totals.lock().expect("recorder lock");
            *t.errors.entry("unfinished".to_owned()).or_default() += count;
        }
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// (successful requests, their samples, failed requests) since the run began.
    pub fn progress(&self) -> (u64, u64, u64) {
        (
            self.progress_requests.load(Ordering::Relaxed),
            self.progress_samples.load(Ordering::Relaxed),
            self.progress_failed.load(Ordering::Relaxed),
        )
    }

    pub fn summary(&self) -> Measured {
        let t = self.totals.lock().expect("recorder lock");
        let secs = self.window.measured().as_secs_f64();
        Measured {
            window_s: secs,
            requests: t.ok_requests,
            samples: t.ok_samples,
            requests_per_s: t.ok_requests as f64 / secs,
            samples_per_s: t.ok_samples as f64 / secs,
            failed_requests: t.failed_requests,
            completed_after_end: t.completed_after_end,
            latency_us: Percentiles::of(&t.latency),
            service_us: Percentiles::of(&t.service),
            outcomes: t.outcomes.clone(),
            errors: t.errors.clone(),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// The measured part of a result, the same for every scenario.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Measured {
    /// Length of the measurement window (warm-up excluded).
    pub window_s: f64,
    /// Successful requests (2xx, or a fully acknowledged Kafka batch) completed in the window.
    pub requests: u64,
    /// Samples those requests carried.
    pub samples: u64,
    pub requests_per_s: f64,
    pub samples_per_s: f64,
    /// Requests that completed in the window without success (non-2xx or no answer).
    pub failed_requests: u64,
    /// Requests started in the window that completed after it: in the latency
    /// figures, not in the throughput.
    pub completed_after_end: u64,
    /// From the intended start (the schedule) to the answer.
    pub latency_us: Percentiles,
    /// From the actual send to the answer; differs from `latency_us` by the generator's
    /// timer resolution (about 1 ms, open model only) and any slip of its schedule.
    pub service_us: Percentiles,
    /// Requests by outcome: HTTP status, `acked` or `failed`.
    pub outcomes: BTreeMap<String, u64>,
    /// Failures without an answer, by kind.
    pub errors: BTreeMap<String, u64>,
}
