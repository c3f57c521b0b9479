//! The alert-latency benchmark's results and its section of RESULTS.md: per run, the
//! end-to-end latency of alert transitions (sample POST -> event read by a read_committed
//! consumer) and where it went, stage by stage; the section reports the median of the
//! runs with their spread, next to the load the machine carried.

use crate::process_stats::CpuUse;
use crate::report::{Spread, splice_between, thousands};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

pub const BEGIN: &str = "<!-- alerts:begin: written by benches/run; edit outside the markers -->";
pub const END: &str = "<!-- alerts:end -->";

/// Issue #6's target: p99 of the end-to-end alert latency, at 10,000 samples/s.
pub const P99_TARGET_MS: f64 = 300.0;
pub const TARGET_RATE: f64 = 10_000.0;

/// Percentiles of one latency, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// The stages of a transition's latency, each measured on its own clock pair.
pub const STAGES: &[(&str, &str)] = &[
    (
        "ingest_ack",
        "sample batch sent -> its POST answered 2xx (HTTP, parse, Kafka acks=all); every batch",
    ),
    (
        "to_decision",
        "sample batch sent -> the processor decided the transition (`emitted_at`): ingest, the processor's fetch, evaluation",
    ),
    (
        "to_send",
        "decided -> the event handed to the producer (record timestamp, ms resolution): the rest of the batch window",
    ),
    (
        "to_read",
        "handed to the producer -> read by the consumer: transaction commit, markers, the consumer's fetch",
    ),
];

/// One run of `labstream-alertbench`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AlertRun {
    pub label: String,
    pub started_at: String,
    pub rate_target: u64,
    pub rate_achieved: f64,
    pub failed_batches: u64,
    pub transitions_measured: u64,
    pub duration_s: f64,
    /// End to end: sample batch sent -> event read.
    pub latency_ms: Percentiles,
    /// See [`STAGES`].
    pub stages_ms: BTreeMap<String, Percentiles>,
    /// `/proc/loadavg` (1, 5, 15 min) at the start and the end of the measured window.
    pub load_start: String,
    pub load_end: String,
    /// Cores used in the measured window by the machine and the watched processes.
    pub cpu: CpuUse,
}

/// What the report says about where and how it was measured.
#[derive(Clone, Debug, Default)]
pub struct AlertContext {
    pub command: String,
    pub commit: String,
    pub rustc: String,
    pub kafka: String,
    pub librdkafka: String,
    pub machine: String,
    pub shared: String,
}

/// Reads every `*.json` run in `dir`, ordered by start time.
pub fn load_runs(dir: &Path) -> anyhow::Result<Vec<AlertRun>> {
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path)?;
            runs.push(
                serde_json::from_str::<AlertRun>(&text)
                    .with_context(|| format!("parsing {}", path.display()))?,
            );
        }
    }
    runs.sort_by(|a, b| a.started_at.cmp(&b.started_at));
    Ok(runs)
}

fn spread(runs: &[AlertRun], f: impl Fn(&AlertRun) -> f64) -> Option<Spread> {
    Spread::of(runs.iter().map(f))
}

fn ms_cell(s: Option<Spread>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.n == 1 => format!("{:.1}", s.median),
        Some(s) => format!("**{:.1}** ({:.1}-{:.1})", s.median, s.min, s.max),
    }
}

fn cores_cell(s: Option<Spread>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.n == 1 => format!("{:.2}", s.median),
        Some(s) => format!("**{:.2}** ({:.2}-{:.2})", s.median, s.min, s.max),
    }
}

fn count_cell(s: Option<Spread>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.n == 1 => thousands(s.median),
        Some(s) => format!(
            "**{}** ({}-{})",
            thousands(s.median),
            thousands(s.min),
            thousands(s.max)
        ),
    }
}

/// The alerts section (markers included).
pub fn section(runs: &[AlertRun], ctx: &AlertContext) -> anyhow::Result<String> {
    if runs.is_empty() {
        bail!("no alert-latency run to report");
    }
    let mut o = String::new();
    let w = &mut o;
    let first = &runs[0];
    let last = &runs[runs.len() - 1];
    writeln!(w, "{BEGIN}")?;
    writeln!(w, "## Alerts: end-to-end alert latency\n")?;
    writeln!(
        w,
        "Measured from {} to {} ({} runs) with `{}`.\n",
        first.started_at,
        last.started_at,
        runs.len(),
        ctx.command
    )?;
    writeln!(w, "- **Machine**: {}", ctx.machine)?;
    writeln!(w, "- **Also running** (shared machine): {}", ctx.shared)?;
    let loads: Vec<String> = runs
        .iter()
        .map(|r| format!("{} -> {}", r.load_start, r.load_end))
        .collect();
    writeln!(
        w,
        "- **Load average** (1/5/15 min, start -> end of each measured window): {}",
        loads.join("; ")
    )?;
    writeln!(
        w,
        "- **Versions**: labstream {}, {}, Apache Kafka {} (one KRaft node on the same machine), librdkafka {}",
        ctx.commit, ctx.rustc, ctx.kafka, ctx.librdkafka
    )?;
    writeln!(
        w,
        "- **Method**: `labstream serve` (release; alerts processor with its default settings; sinks, \
         compaction, enrichment and experiments off, so the alert path is measured alone) on its own \
         topic prefix. `labstream-alertbench` creates one `above` rule through the API, posts temperature \
         samples at {} samples/s in JSON arrays, one every 20 ms whatever the answers (open model), of \
         which 20 sensors cross the threshold or recover with each of their samples (one every 100 ms), \
         and reads `alerts.<topic>` with a read_committed Kafka consumer (`fetch.wait.max.ms=5`). The \
         latency of a transition is the wall-clock time the consumer read it minus the time the causing \
         sample's batch was sent (the sample's `ts`): everything a subscriber waits. Runs of {} s after a \
         warm-up; per run an HDR histogram (3 digits); figures are the median of the runs (min-max).",
        thousands(first.rate_target as f64),
        first.duration_s
    )?;
    writeln!(w)?;

    writeln!(
        w,
        "| samples/s (target {}) | transitions | p50 ms | p90 ms | p99 ms | max ms | failed batches | target p99 < {} ms |",
        thousands(TARGET_RATE),
        P99_TARGET_MS
    )?;
    writeln!(w, "|---|---|---|---|---|---|---|---|")?;
    let p99 = spread(runs, |r| r.latency_ms.p99).expect("runs is not empty");
    let rate = spread(runs, |r| r.rate_achieved).expect("runs is not empty");
    let failed: u64 = runs.iter().map(|r| r.failed_batches).sum();
    let met = p99.median < P99_TARGET_MS && rate.median >= TARGET_RATE * 0.98 && failed == 0;
    writeln!(
        w,
        "| {} | {} | {} | {} | {} | {} | {} | **{}** |",
        count_cell(Some(rate)),
        count_cell(spread(runs, |r| r.transitions_measured as f64)),
        ms_cell(spread(runs, |r| r.latency_ms.p50)),
        ms_cell(spread(runs, |r| r.latency_ms.p90)),
        ms_cell(Some(p99)),
        ms_cell(spread(runs, |r| r.latency_ms.max)),
        failed,
        if met { "met" } else { "missed" }
    )?;
    writeln!(w)?;

    writeln!(
        w,
        "Where the time goes (per stage, median of the runs' p50 and p99; stages are measured on \
         their own, so their percentiles do not add up exactly):\n"
    )?;
    writeln!(w, "| stage | what | p50 ms | p99 ms |")?;
    writeln!(w, "|---|---|---|---|")?;
    for (name, what) in STAGES {
        let of = |f: fn(&Percentiles) -> f64| {
            Spread::of(runs.iter().filter_map(|r| r.stages_ms.get(*name).map(f)))
        };
        writeln!(
            w,
            "| `{name}` | {what} | {} | {} |",
            ms_cell(of(|p| p.p50)),
            ms_cell(of(|p| p.p99))
        )?;
    }
    writeln!(w)?;

    let names: Vec<String> = runs
        .iter()
        .flat_map(|r| r.cpu.processes.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    writeln!(
        w,
        "Cores busy in the measured windows (median; the machine has {} cores): machine {}{}.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cores_cell(spread(runs, |r| r.cpu.machine_cores.unwrap_or(f64::NAN))),
        names
            .iter()
            .map(|n| format!(
                ", {n} {}",
                cores_cell(Spread::of(
                    runs.iter().filter_map(|r| r.cpu.processes.get(n).copied())
                ))
            ))
            .collect::<String>()
    )?;

    writeln!(w, "Every run:\n")?;
    writeln!(
        w,
        "| run | started | samples/s | transitions | p50 ms | p99 ms | max ms | load start -> end |"
    )?;
    writeln!(w, "|---|---|---|---|---|---|---|---|")?;
    for r in runs {
        writeln!(
            w,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {} -> {} |",
            r.label,
            r.started_at,
            thousands(r.rate_achieved),
            r.transitions_measured,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.latency_ms.max,
            r.load_start,
            r.load_end
        )?;
    }
    writeln!(w)?;
    writeln!(w, "{END}")?;
    Ok(o)
}

/// Replaces the alerts section of `existing` (or appends it when absent).
pub fn splice(existing: &str, section: &str) -> String {
    splice_between(existing, section, BEGIN, END)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(label: &str, p99: f64) -> AlertRun {
        AlertRun {
            label: label.into(),
            started_at: format!("2026-11-23T19:0{label}:00Z"),
            rate_target: 10_000,
            rate_achieved: 10_001.0,
            transitions_measured: 6000,
            duration_s: 30.0,
            latency_ms: Percentiles {
                p50: 50.0,
                p90: 80.0,
                p99,
                max: p99 + 10.0,
            },
            load_start: "1.00 1.00 1.00".into(),
            load_end: "1.50 1.00 1.00".into(),
            ..AlertRun::default()
        }
    }

    #[test]
    fn the_section_reports_the_median_and_replaces_its_markers_only() {
        let runs = [run("1", 100.0), run("2", 400.0), run("3", 200.0)];
        let section = section(&runs, &AlertContext::default()).unwrap();
        assert!(section.contains("**200.0** (100.0-400.0)"), "{section}");
        assert!(section.contains("**met**"));
        let doc = format!("# r\n\nbefore\n\n{BEGIN}\nstale figures\n{END}\n\nafter\n");
        let out = splice(&doc, &section);
        assert!(out.starts_with("# r\n\nbefore\n\n"));
        assert!(out.ends_with("\n\nafter\n"));
        assert!(!out.contains("stale figures"));
    }
}
