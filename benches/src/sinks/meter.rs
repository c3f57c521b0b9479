//! The clock of one phase. It starts when the consumer group assigns the partitions
//! (joining the group is reported apart, not counted in the rate), watches a progress
//! counter, prints a progress line every few seconds, cancels the work once the counter
//! reaches the topic's record count (a sink then writes and commits what it holds and
//! returns) and stops when the work has returned. CPU is counted over the same span;
//! the process's peak RSS is reset at the start, so the peak is the phase's own.

use crate::process_stats::{self, CpuSnapshot, CpuUse, Watched};
use crate::sinks::PhaseMemory;
use labstream_bus::BatchConsumer;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the counter and the assignment are looked at: the clock's resolution.
const TICK: Duration = Duration::from_millis(5);

pub struct Meter {
    label: String,
    watch: Vec<Watched>,
    created: Instant,
    rss_start_kib: u64,
    peak_is_per_phase: bool,
    progress_every: Duration,
    timeout: Duration,
}

/// When the clock started and stopped, and what was used in between.
#[derive(Clone, Debug)]
pub struct Measured {
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub startup: Duration,
    pub elapsed: Duration,
    pub cpu: CpuUse,
    pub memory: PhaseMemory,
    /// The counter did not reach its target within the phase's time limit.
    pub timed_out: bool,
}

/// What the meter is waiting for.
pub struct Progress<'a> {
    /// The consumer whose partition assignment starts the clock; `None` starts it now.
    pub consumer: Option<&'a BatchConsumer>,
    /// Records done so far.
    pub done: &'a (dyn Fn() -> u64 + Send + Sync),
    /// Records to get through.
    pub target: u64,
}

impl Meter {
    /// Starts a phase: resets the peak RSS and notes the time (for the join).
    pub fn start(
        label: impl Into<String>,
        watch: &[Watched],
        progress_every: Duration,
        timeout: Duration,
    ) -> Self {
        let peak_is_per_phase = process_stats::reset_peak_rss();
        let me = [self_watched()];
        Self {
            label: label.into(),
            watch: watch.to_vec(),
            created: Instant::now(),
            rss_start_kib: process_stats::memory(&me)
                .get("sinkbench")
                .map_or(0, |m| m.rss_kib),
            peak_is_per_phase,
            progress_every,
            timeout,
        }
    }

    /// Waits until `progress.done()` reaches the target (or the time limit), then
    /// cancels `cancel` and waits for `work` to return; the clock stops when it has.
    pub async fn run<T>(
        &self,
        progress: Progress<'_>,
        cancel: &CancellationToken,
        work: tokio::task::JoinHandle<T>,
    ) -> (Measured, Result<T, tokio::task::JoinError>) {
        let deadline = self.created + self.timeout;
        // The clock starts at the assignment.
        let (start, started_at, cpu_start) = loop {
            let assigned = progress.consumer.is_none_or(|c| !c.assigned().is_empty());
            if assigned || (progress.done)() > 0 || Instant::now() >= deadline {
                break (
                    Instant::now(),
                    chrono::Utc::now(),
                    CpuSnapshot::take(&self.watch),
                );
            }
            tokio::time::sleep(TICK).await;
        };
        let startup = start.duration_since(self.created);
        let mut next_line = start + self.progress_every;
        let mut last = (start, 0u64);
        let mut timed_out = false;
        loop {
            let done = (progress.done)();
            let now = Instant::now();
            if done >= progress.target || work.is_finished() {
                break;
            }
            if now >= deadline {
                timed_out = true;
                break;
            }
            if now >= next_line {
                let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
                eprintln!(
                    "sinkbench: {}: {:>6.1}s {:>10} of {} records, {:>9.0} records/s",
                    self.label,
                    now.duration_since(start).as_secs_f64(),
                    done,
                    progress.target,
                    (done - last.1) as f64 / secs,
                );
                last = (now, done);
                next_line = now + self.progress_every;
            }
            tokio::time::sleep(TICK).await;
        }
        cancel.cancel();
        let joined = work.await;
        let end = Instant::now();
        let cpu = cpu_start.until(&CpuSnapshot::take(&self.watch));
        let me = [self_watched()];
        let peak = process_stats::memory(&me)
            .get("sinkbench")
            .map_or(0, |m| m.peak_rss_kib);
        (
            Measured {
                started_at,
                startup,
                elapsed: end.duration_since(start),
                cpu,
                memory: PhaseMemory {
                    rss_start_kib: self.rss_start_kib,
                    peak_rss_kib: peak,
                    peak_is_per_phase: self.peak_is_per_phase,
                },
                timed_out,
            },
            joined,
        )
    }
}

/// This process, as the CPU and memory tables name it.
pub fn self_watched() -> Watched {
    Watched {
        name: "sinkbench".into(),
        pid: None,
    }
}
