//! The sinks benchmark behind `labstream-sinkbench`: fills topics with a simulated
//! fleet's samples (Avro single-object records, exactly as ingest writes them), then
//! drains them, round after round, with a plain consumer (the ceiling), the lake sink,
//! the MongoDB sink and a plain bulk loader of the same documents. Each phase runs on a
//! fresh consumer group and a fresh lake folder or database, and is checked after it
//! ends (committed offsets at the end of the topic, rows in the lake or MongoDB).

pub mod meter;
pub mod phases;
pub mod preload;
pub mod report;

use crate::process_stats::CpuUse;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Labels of the phases; the report knows what each one means.
pub const CONSUME_LAKE: &str = "consume";
pub const DECODE_LAKE: &str = "consume-decode";
pub const LAKE: &str = "lake";
/// The same as `consume` and `lake` with the consumer's fetch pacing tuned
/// (`TUNED_CONSUMER`): how much of the ceiling is the consumer's settings.
pub const CONSUME_TUNED: &str = "consume-tuned";
pub const LAKE_TUNED: &str = "lake-tuned";
/// With librdkafka's default (1 s), a consumer whose local queue went over its
/// thresholds waits that long before fetching again, and a fast reader empties the queue
/// well before: the consume-only rate is then set by this pause, not by the work.
pub const TUNED_CONSUMER: (&str, &str) = ("fetch.queue.backoff.ms", "10");
/// The enrichment processor (transactions on) on the same topic as `consume`.
pub const ENRICH: &str = "enrich";
pub const CONSUME_MONGO: &str = "consume-small";
pub const MONGO: &str = "mongo";
pub const BULK: &str = "bulk";

/// What a phase did and how long it took, written as one JSON file per phase and round.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PhaseResult {
    /// One of the labels above.
    pub phase: String,
    /// 1-based round of the run.
    pub round: usize,
    /// The topic drained (or, for the bulk loader, the topic whose samples it loads).
    pub topic: String,
    /// Records in the topic: what the phase had to get through.
    pub records: u64,
    /// Records the phase handled (consumed, committed, inserted), as it counted them.
    pub processed: u64,
    /// When the clock started (RFC 3339): the partition assignment, or the first insert.
    pub started_at: String,
    /// From creating the consumer until the group assigned it its partitions: the
    /// join, not counted in the rate.
    pub startup_s: f64,
    /// From the assignment until the phase was done: for a sink, until its final
    /// commit returned, i.e. everything written and acknowledged.
    pub elapsed_s: f64,
    /// `records / elapsed_s`.
    pub records_per_s: f64,
    /// Every check after the phase passed.
    pub ok: bool,
    /// What was checked and found right.
    pub checks: Vec<String>,
    /// What was checked and found wrong (empty when `ok`).
    pub problems: Vec<String>,
    /// Cores used from the assignment to the end: `sinkbench` (this process: the
    /// consumer, the sink or the loader), `kafka`, `mongo` and the whole machine.
    pub cpu: CpuUse,
    /// Resident memory of this process at the start of the phase and its peak during it.
    pub memory: PhaseMemory,
    /// Settings that shaped the phase (batch sizes, flush thresholds, ...).
    pub settings: BTreeMap<String, String>,
    /// The sink's own counters at the end (records consumed, rows written, ...).
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// The MongoDB server's version, for the MongoDB phases.
    #[serde(default)]
    pub server: Option<String>,
}

/// Memory of the benchmark process during one phase, in KiB.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PhaseMemory {
    /// `VmRSS` when the phase began (the preloaded bulk documents are part of it).
    pub rss_start_kib: u64,
    /// `VmHWM` at the end, after it was reset at the start: the phase's peak.
    pub peak_rss_kib: u64,
    /// Whether the peak could be reset (Linux); otherwise it is the process's peak so far.
    pub peak_is_per_phase: bool,
}
