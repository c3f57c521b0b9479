//! Writes the sinks section of `benches/RESULTS.md` from the phase results of one
//! `labstream-sinkbench run`: medians of the rounds with their spread, each sink's ratio
//! to its ceiling measured in the same run (per round and of the medians), the verdict
//! against the targets, where the CPU went, peak memory and the method. Only the text
//! between this section's markers is replaced.

use crate::report::{Spread, thousands};
use crate::sinks::{
    BULK, CONSUME_LAKE, CONSUME_MONGO, CONSUME_TUNED, DECODE_LAKE, ENRICH, LAKE, LAKE_TUNED, MONGO,
    PhaseResult, TUNED_CONSUMER,
};
use anyhow::bail;
use std::fmt::Write as _;

pub const BEGIN: &str = "<!-- sinks:begin: written by benches/run; edit outside the markers -->";
pub const END: &str = "<!-- sinks:end -->";

/// Targets of the sinks issue.
const LAKE_RATIO_TARGET: f64 = 0.5;
const MONGO_RATIO_TARGET: f64 = 0.9;

/// What the report says about where and how it was measured.
#[derive(Clone, Debug, Default)]
pub struct ReportContext {
    pub command: String,
    pub commit: String,
    pub rustc: String,
    pub kafka: String,
    pub librdkafka: String,
    pub mongo_server: String,
    pub machine: String,
    pub shared: String,
}

struct Phase {
    label: &'static str,
    what: &'static str,
}

const PHASES: &[Phase] = &[
    Phase {
        label: CONSUME_LAKE,
        what: "consume-only, the ceiling (fetch + hand out batches)",
    },
    Phase {
        label: DECODE_LAKE,
        what: "consume + Avro decode (informative)",
    },
    Phase {
        label: LAKE,
        what: "lake sink (decode, Parquet, fsync, commit)",
    },
    Phase {
        label: ENRICH,
        what: "enrichment processor (decode, recording lookup, encode, Kafka transaction with the offsets)",
    },
    Phase {
        label: CONSUME_TUNED,
        what: "consume-only, fetch pacing tuned (informative)",
    },
    Phase {
        label: LAKE_TUNED,
        what: "lake sink, fetch pacing tuned (informative)",
    },
    Phase {
        label: CONSUME_MONGO,
        what: "consume-only of the small topic",
    },
    Phase {
        label: MONGO,
        what: "MongoDB sink (decode, BSON, insert_many, commit)",
    },
    Phase {
        label: BULK,
        what: "plain bulk loader, same documents",
    },
];

fn runs<'a>(results: &'a [PhaseResult], label: &str) -> Vec<&'a PhaseResult> {
    results.iter().filter(|r| r.phase == label).collect()
}

fn spread(rs: &[&PhaseResult], f: impl Fn(&PhaseResult) -> f64) -> Option<Spread> {
    Spread::of(rs.iter().map(|r| f(r)))
}

fn rate_cell(s: Option<Spread>) -> String {
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

fn secs_cell(s: Option<Spread>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.n == 1 => format!("{:.2}", s.median),
        Some(s) => format!("**{:.2}** ({:.2}-{:.2})", s.median, s.min, s.max),
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0}", kib as f64 / 1024.0)
}

/// Ratio of the medians, and the spread of the per-round ratios (phases run in the
/// same round share the machine's state at that time).
fn ratio(results: &[PhaseResult], num: &str, den: &str) -> Option<(f64, Option<Spread>, f64, f64)> {
    let n = spread(&runs(results, num), |r| r.records_per_s)?;
    let d = spread(&runs(results, den), |r| r.records_per_s)?;
    let per_round = Spread::of(runs(results, num).iter().filter_map(|a| {
        runs(results, den)
            .iter()
            .find(|b| b.round == a.round)
            .map(|b| a.records_per_s / b.records_per_s)
    }));
    Some((n.median / d.median, per_round, n.median, d.median))
}

/// The sinks section, markers included.
pub fn section(results: &[PhaseResult], ctx: &ReportContext) -> anyhow::Result<String> {
    if runs(results, CONSUME_LAKE).is_empty() {
        bail!("no {CONSUME_LAKE:?} result: the report needs the consume-only ceiling");
    }
    let mut o = String::new();
    let w = &mut o;
    let first = results
        .iter()
        .map(|r| r.started_at.as_str())
        .min()
        .unwrap_or("?");
    let last = results
        .iter()
        .map(|r| r.started_at.as_str())
        .max()
        .unwrap_or("?");
    let rounds = results.iter().map(|r| r.round).max().unwrap_or(0);
    let count = |label: &str| runs(results, label).first().map_or(0, |r| r.records);
    let server = results
        .iter()
        .find_map(|r| r.server.clone())
        .map_or(String::new(), |v| format!(", which reports version {v}"));

    writeln!(w, "{BEGIN}")?;
    writeln!(w, "## Sinks\n")?;
    writeln!(
        w,
        "Measured from {first} to {last} (start of the first and the last phase) with `benches/run sinks` (command at the end of this section).\n"
    )?;
    writeln!(w, "- **Machine**: {}", ctx.machine)?;
    writeln!(w, "- **Shared with**: {}", ctx.shared)?;
    writeln!(
        w,
        "- **Versions**: labstream {}, {}, Apache Kafka {} (one KRaft node on the same machine), librdkafka {}, \
         MongoDB-wire server: {}{server} (the local stack's; on the same machine)",
        ctx.commit, ctx.rustc, ctx.kafka, ctx.librdkafka, ctx.mongo_server
    )?;
    writeln!(
        w,
        "- **Data**: `samples.raw` with {} records for consume-only and the lake sink; `samples.small` with {} records \
         for the MongoDB sink and the bulk loader (the MongoDB phases are far slower); {rounds} rounds.\n",
        thousands(count(CONSUME_LAKE) as f64),
        thousands(count(MONGO).max(count(BULK)) as f64),
    )?;

    writeln!(w, "### Summary\n")?;
    writeln!(
        w,
        "Median of the rounds in **bold**, the spread (min-max) in brackets. A phase's time runs from the partition \
         assignment (its consumer group joined; the join is the `join s` column, not counted) until it is done: for a \
         sink, until every record is written and its offset committed.\n"
    )?;
    writeln!(
        w,
        "| phase | what | records | runs | records/s | seconds | join s | peak RSS MiB | checks |"
    )?;
    writeln!(w, "|---|---|---|---|---|---|---|---|---|")?;
    for p in PHASES {
        let rs = runs(results, p.label);
        if rs.is_empty() {
            continue;
        }
        let failed = rs.iter().filter(|r| !r.ok).count();
        writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.label,
            p.what,
            thousands(rs[0].records as f64),
            rs.len(),
            rate_cell(spread(&rs, |r| r.records_per_s)),
            secs_cell(spread(&rs, |r| r.elapsed_s)),
            secs_cell(spread(&rs, |r| r.startup_s)),
            rs.iter()
                .map(|r| r.memory.peak_rss_kib)
                .max()
                .map_or("-".into(), mib),
            if failed == 0 {
                "all passed".to_owned()
            } else {
                format!("**{failed} failed**")
            },
        )?;
    }
    writeln!(w)?;

    verdict(w, results)?;
    cpu_table(w, results)?;
    every_run(w, results)?;
    method(w, results)?;
    writeln!(w, "### Command\n")?;
    writeln!(w, "```sh\n{}\n```", ctx.command)?;
    writeln!(w, "{END}")?;
    Ok(o)
}

fn verdict(w: &mut String, results: &[PhaseResult]) -> anyhow::Result<()> {
    writeln!(w, "### Verdict against the targets\n")?;
    writeln!(w, "| target | measured | verdict |")?;
    writeln!(w, "|---|---|---|")?;
    let per_round = |p: Option<Spread>| {
        p.map(|p| format!("; per round {:.2}-{:.2}", p.min, p.max))
            .unwrap_or_default()
    };
    let all_ok = |labels: &[&str]| labels.iter().all(|l| runs(results, l).iter().all(|r| r.ok));
    if let Some((r, rounds, lake, ceiling)) = ratio(results, LAKE, CONSUME_LAKE) {
        writeln!(
            w,
            "| lake sink >= {LAKE_RATIO_TARGET}x the consume-only rate of the same topic | {r:.2}x ({} / {} records/s{}) | {} |",
            thousands(lake),
            thousands(ceiling),
            per_round(rounds),
            verdict_word(r >= LAKE_RATIO_TARGET, all_ok(&[LAKE, CONSUME_LAKE]))
        )?;
    }
    if let Some((r, rounds, lake, ceiling)) = ratio(results, LAKE_TUNED, CONSUME_TUNED) {
        writeln!(
            w,
            "| (informative) the same with the consumer's fetch pacing tuned (`{}={}`) in both | {r:.2}x ({} / {} records/s{}) | {} |",
            TUNED_CONSUMER.0,
            TUNED_CONSUMER.1,
            thousands(lake),
            thousands(ceiling),
            per_round(rounds),
            if r >= LAKE_RATIO_TARGET {
                "would be met"
            } else {
                "would be missed"
            }
        )?;
    }
    if let Some((r, rounds, enrich, ceiling)) = ratio(results, ENRICH, CONSUME_LAKE) {
        writeln!(
            w,
            "| (issue #5, no target) enrichment with transactions next to the consume-only rate of the same topic | {r:.2}x ({} / {} records/s{}) | {} |",
            thousands(enrich),
            thousands(ceiling),
            per_round(rounds),
            if all_ok(&[ENRICH]) {
                "reported"
            } else {
                "checks failed"
            }
        )?;
    }
    if let Some((r, rounds, sink, bulk)) = ratio(results, MONGO, BULK) {
        writeln!(
            w,
            "| MongoDB sink within 10% of a plain bulk loader (>= {MONGO_RATIO_TARGET}x) of the same documents into the same server | {r:.2}x ({} / {} documents/s{}) | {} |",
            thousands(sink),
            thousands(bulk),
            per_round(rounds),
            verdict_word(r >= MONGO_RATIO_TARGET, all_ok(&[MONGO, BULK]))
        )?;
    }
    writeln!(w)?;
    Ok(())
}

fn verdict_word(met: bool, checks_passed: bool) -> &'static str {
    match (met, checks_passed) {
        (true, true) => "met",
        (false, true) => "**missed**",
        (_, false) => "**not valid**: a phase failed its checks",
    }
}

fn cpu_table(w: &mut String, results: &[PhaseResult]) -> anyhow::Result<()> {
    writeln!(w, "### Where the CPU went\n")?;
    writeln!(
        w,
        "Cores busy from the assignment to the end of each phase (median of the rounds; the machine has {} cores). \
         `sinkbench` is the benchmark process, i.e. the consumer, the sink or the loader under test; `other` is \
         everything else on the machine.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )?;
    writeln!(
        w,
        "| phase | sinkbench | kafka | mongo | other | whole machine |"
    )?;
    writeln!(w, "|---|---|---|---|---|---|")?;
    let proc = |r: &PhaseResult, name: &str| r.cpu.processes.get(name).copied().unwrap_or(0.0);
    let cell = |s: Option<Spread>| s.map_or("-".to_owned(), |s| format!("{:.2}", s.median));
    for p in PHASES {
        let rs = runs(results, p.label);
        if rs.is_empty() {
            continue;
        }
        let other = spread(&rs, |r| {
            (r.cpu.machine_cores.unwrap_or(0.0)
                - proc(r, "sinkbench")
                - proc(r, "kafka")
                - proc(r, "mongo"))
            .max(0.0)
        });
        writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} |",
            p.label,
            cell(spread(&rs, |r| proc(r, "sinkbench"))),
            cell(spread(&rs, |r| proc(r, "kafka"))),
            cell(spread(&rs, |r| proc(r, "mongo"))),
            cell(other),
            cell(spread(&rs, |r| r.cpu.machine_cores.unwrap_or(0.0))),
        )?;
    }
    writeln!(w)?;
    Ok(())
}

fn every_run(w: &mut String, results: &[PhaseResult]) -> anyhow::Result<()> {
    writeln!(w, "### Every run\n")?;
    writeln!(
        w,
        "| round | phase | started (UTC) | records/s | seconds | join s | RSS at start MiB | peak RSS MiB | checks |"
    )?;
    writeln!(w, "|---|---|---|---|---|---|---|---|---|")?;
    for r in results {
        writeln!(
            w,
            "| {} | {} | {} | {} | {:.2} | {:.2} | {} | {} | {} |",
            r.round,
            r.phase,
            r.started_at,
            thousands(r.records_per_s),
            r.elapsed_s,
            r.startup_s,
            mib(r.memory.rss_start_kib),
            mib(r.memory.peak_rss_kib),
            if r.ok {
                r.checks.join("; ")
            } else {
                format!("**failed**: {}", r.problems.join("; "))
            }
        )?;
    }
    writeln!(w)?;
    Ok(())
}

fn setting<'a>(results: &'a [PhaseResult], phase: &str, key: &str) -> &'a str {
    runs(results, phase)
        .first()
        .and_then(|r| r.settings.get(key))
        .map_or("?", String::as_str)
}

fn method(w: &mut String, results: &[PhaseResult]) -> anyhow::Result<()> {
    writeln!(w, "### Method\n")?;
    writeln!(
        w,
        "- **What runs**: `labstream-sinkbench` (release build), each phase in a process of its own: the sinks are \
         `labstream_sinks::lake::LakeSink` and `labstream_sinks::mongo::MongoSink`, built as `labstream serve` builds \
         them, with their default settings, on `labstream_bus::BatchConsumer` with labstream's default Kafka settings. \
         Kafka and the MongoDB-wire server are the local stack's, on the same machine."
    )?;
    writeln!(
        w,
        "- **Data**: the topics are filled once before the first round with a simulated fleet of every type of the \
         default registry (the load generator's fleet: realistic values, unique dedupe keys), Avro single-object \
         encoded with `labstream_schemas::Codec` and keyed by sensor id, through `labstream_bus::Producer` (acks=all, \
         idempotence, lz4): the very records ingest appends to `samples.raw`. {} partitions each.",
        setting(results, CONSUME_LAKE, "partitions")
    )?;
    writeln!(
        w,
        "- **Every phase starts fresh**: its own consumer group (so it reads the topic from the beginning), its own \
         lake folder or MongoDB database; it is checked after it ends (the group's committed offsets equal the end \
         offsets of every partition; the lake's Parquet footers hold exactly the topic's row count; MongoDB holds \
         exactly the topic's documents; no dead letters) and its folder or database is removed."
    )?;
    writeln!(
        w,
        "- **Consume-only (the ceiling)**: `BatchConsumer::next_batch` with the lake sink's batch size ({} records, \
         at most {} wait), on a group of its own, until it has handed out every record: librdkafka's fetch, the \
         copy into owned records and the batching that every sink pays, and nothing else (no decoding, no writing, \
         no commit). That is the true ceiling of a sink on this consumer. `consume-decode` also decodes every record \
         into a `Sample` (`Codec::decode`), as both sinks do first; it is informative, not a target. \
         `consume-small` is the same on the small topic with the MongoDB sink's batch size ({} records, {}). \
         `consume-tuned` and `lake-tuned` repeat `consume` and `lake` with one librdkafka property changed, \
         `{}={}` (librdkafka's default is 1 s: how long a consumer whose local queue went over its thresholds \
         waits before fetching again); they show how much of the ceiling is set by that pause.",
        setting(results, CONSUME_LAKE, "batch_max_records"),
        setting(results, CONSUME_LAKE, "batch_max_wait"),
        setting(results, CONSUME_MONGO, "batch_max_records"),
        setting(results, CONSUME_MONGO, "batch_max_wait"),
        TUNED_CONSUMER.0,
        TUNED_CONSUMER.1,
    )?;
    writeln!(
        w,
        "- **Lake sink**: default settings (flush every {} rows, {} bytes or {}), on a fresh lake folder. The sink \
         is stopped (its cancellation token) once it has consumed every record; it then writes what it holds, syncs, \
         renames and commits, as on SIGTERM, and returns. So the time includes every write and commit, but not the \
         idle wait for the flush interval that a finite backlog would otherwise end with.",
        setting(results, LAKE, "flush_rows"),
        setting(results, LAKE, "flush_bytes"),
        setting(results, LAKE, "flush_interval"),
    )?;
    writeln!(
        w,
        "- **MongoDB sink**: default settings (batches of up to {} records, {} wait; per batch one unordered \
         `insert_many` per collection `samples_<type>`, one at a time, then the commit), on a fresh database; stopped \
         the same way once it has consumed every record (it finishes and commits the batch in hand).",
        setting(results, MONGO, "batch_max_records"),
        setting(results, MONGO, "batch_max_wait"),
    )?;
    writeln!(
        w,
        "- **Bulk loader (the MongoDB ceiling)**: the documents of the same samples, made by the sink's own \
         `labstream_sinks::mongo::to_document` and serialized to BSON before the clock starts, inserted into a fresh \
         database the way the sink inserts them: in the sink's batches ({} records, grouped by collection in the \
         same order), one unordered `insert_many` per collection, {} request in flight, with the sink's unique index \
         on (sensor_id, ts_us, seq) created on first use of a collection. It is what a plain loader achieves against \
         this server with these documents, without Kafka, decoding or commits. The MongoDB sink and the loader run \
         in alternating order from round to round.",
        setting(results, BULK, "batch_max_records"),
        setting(results, BULK, "in_flight"),
    )?;
    writeln!(
        w,
        "- **Repeats**: every phase runs once per round, the rounds one after the other, so slow drift on the machine \
         hits every phase alike; ratios are given of the medians and per round (the phases of a round run within a \
         minute or two of each other)."
    )?;
    writeln!(
        w,
        "- **CPU and memory**: CPU time of the phase's process, the Kafka broker and the MongoDB-wire server from \
         `/proc/<pid>/stat`, the machine's from `/proc/stat`, over the timed span. Peak RSS is the phase process's \
         `VmHWM`, reset once its setup is done (`/proc/self/clear_refs`); for the bulk loader the RSS at the start is \
         its documents, read before the clock starts. Raw results (one JSON per phase) are kept in `target/bench/`."
    )?;
    writeln!(w)?;
    Ok(())
}

/// Replaces the sinks section of `existing` (or appends it when absent).
pub fn splice(existing: &str, section: &str) -> String {
    crate::report::splice_between(existing, section, BEGIN, END)
}
