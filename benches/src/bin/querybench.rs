//! `labstream-querybench`: the query benchmark. Builds a lake of >= 10 million
//! accelerometer samples with the lake sink's own writer (small files, as a live sink
//! writes them), times typical analyst queries with labstream's query engine and with
//! DuckDB (through the pytools venv) on the very same files, both in-process with one
//! engine (and one DuckDB connection) held per lake state as a running server holds it,
//! on 2 threads each, interleaved round by round; then compacts a copy of the lake and
//! times them again. Checks that both engines return the same results and writes the
//! query section of RESULTS.md. Nothing here asserts a time.

/// The allocator `labstream` itself uses (src/main.rs), so labstream's code runs here as
/// it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, bail};
use chrono::{Duration as ChronoDuration, NaiveDate, TimeZone, Utc};
use clap::Parser;
use labstream_api::{Format, QueryConfig, QueryEngine};
use labstream_benches::process_stats;
use labstream_benches::report::{Spread, splice_between};
use labstream_lake::{Added, CompactOptions, LakeWriter, LogPosition, compact};
use labstream_schemas::experiment::{EnrichedSample, RecordingContext};
use labstream_schemas::{FieldValue, Registry, Sample, SensorId, SensorType, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BEGIN: &str = "<!-- query:begin -->";
const END: &str = "<!-- query:end -->";
const TOPIC: &str = "samples.raw";
const PARTITIONS: i32 = 6;
const EXPERIMENT: &str = "stroop-2026";
/// Target: labstream within this factor of DuckDB.
const TARGET_RATIO: f64 = 1.5;
/// Target: the compacted lake at least this many times faster than the uncompacted one.
const TARGET_SPEEDUP: f64 = 3.0;
/// Threads of each engine: labstream's tokio workers and DataFusion partitions (its
/// engine plans with 2), DuckDB's `threads`.
const THREADS: usize = 2;
/// What a generated lake was made with, kept next to it for `--reuse-lake`.
const LAKE_INFO: &str = "lake.json";
const COMPACTED_INFO: &str = "compacted.json";

#[derive(Parser)]
#[command(
    name = "labstream-querybench",
    about = "Query benchmark: labstream vs DuckDB, uncompacted vs compacted lake"
)]
struct Args {
    /// Folder for the generated lakes (`lake`, and `lake-compacted`, a compacted copy).
    #[arg(long)]
    work: PathBuf,
    /// Keep the lakes a previous run left in `--work` if they were made with the same
    /// options (saves the minute of writing and the compaction while iterating); without
    /// it they are written anew.
    #[arg(long)]
    reuse_lake: bool,
    /// Leave the lakes in `--work` at the end (for `--reuse-lake`); by default they are
    /// removed.
    #[arg(long)]
    keep_lake: bool,
    /// The labstream binary (release) whose `labstream query` process is also timed, as
    /// an extra column (a process per query: start-up, listing, planning, running,
    /// writing the CSV). Without it only the in-process engine is timed.
    #[arg(long)]
    labstream: Option<PathBuf>,
    /// Python with duckdb and pyarrow (infra/local/pytools prints it).
    #[arg(long)]
    python: PathBuf,
    /// The DuckDB runner script (benches/querybench_duckdb.py).
    #[arg(long)]
    duckdb_script: PathBuf,
    /// Sensors (accelerometers: x, y, z).
    #[arg(long, default_value_t = 200)]
    sensors: usize,
    /// Days of data.
    #[arg(long, default_value_t = 7)]
    days: i64,
    /// Seconds between two samples of a sensor.
    #[arg(long, default_value_t = 12)]
    interval_secs: i64,
    /// Seconds of data per flush (one file per directory and partition each time).
    #[arg(long, default_value_t = 600)]
    flush_secs: i64,
    /// Measured rounds per lake state (each runs every query once on each engine).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Run only the query of this name (repeatable; default: all), e.g. to profile
    /// one of them. The report then lists only those.
    #[arg(long = "only", value_name = "NAME")]
    only: Vec<String>,
    /// Markdown file whose query section is rewritten.
    #[arg(long)]
    out: PathBuf,
    /// Raw results (JSON).
    #[arg(long)]
    results: PathBuf,
    /// The command line to print in the report.
    #[arg(long, default_value = "benches/run query")]
    command: String,
    #[arg(long, default_value = "unknown")]
    commit: String,
    #[arg(long, default_value = "unknown")]
    rustc: String,
    /// What else ran on the machine (from benches/run).
    #[arg(long, default_value = "")]
    shared: String,
}

#[derive(Clone, Serialize)]
struct Query {
    name: &'static str,
    what: &'static str,
    sql: String,
    /// Numeric columns whose sums are compared between the engines.
    check: Vec<&'static str>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Outcome {
    rows: usize,
    sums: BTreeMap<String, f64>,
}

#[derive(Default, Serialize)]
struct Timings {
    /// [state][engine] -> per query: times in ms.
    ms: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    outcome: BTreeMap<String, Outcome>,
}

#[derive(Deserialize)]
struct DuckOut {
    duckdb: String,
    pyarrow: String,
    threads: serde_json::Value,
    queries: Vec<DuckQuery>,
}

/// What `generate` made, saved as `lake.json` so `--reuse-lake` can tell a matching lake.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct LakeInfo {
    sensors: usize,
    days: i64,
    interval_secs: i64,
    flush_secs: i64,
    rows: u64,
    files_written: usize,
    gen_secs: f64,
}

/// The compaction of the copy, saved as `compacted.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CompactedInfo {
    rows_out: u64,
    secs: f64,
}

#[derive(Deserialize)]
struct DuckQuery {
    name: String,
    ms: f64,
    rows: usize,
    sums: BTreeMap<String, f64>,
}

fn start_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 16).unwrap()
}

fn queries(days: i64) -> Vec<Query> {
    let first = start_date();
    let mid = first + ChronoDuration::days(days / 2);
    let last = first + ChronoDuration::days(days - 1);
    let rec_day = (days / 2).max(0);
    vec![
        Query {
            name: "day_per_sensor",
            what: "per-sensor aggregates over a day",
            sql: format!(
                "SELECT sensor_id, count(*) AS n, avg(x) AS avg_x, min(y) AS min_y, max(z) AS max_z \
                 FROM samples_accelerometer WHERE date = DATE '{mid}' GROUP BY sensor_id ORDER BY sensor_id"
            ),
            check: vec!["n", "avg_x", "min_y", "max_z"],
        },
        Query {
            name: "recording",
            what: "a participant's recording (all its rows)",
            sql: format!(
                "SELECT sensor_id, ts, x, y, z FROM samples_accelerometer \
                 WHERE experiment = '{EXPERIMENT}' AND participant_id = 'P03' AND recording_id = 'rec-P03-d{rec_day}-s1' \
                 ORDER BY sensor_id, ts"
            ),
            check: vec!["x", "y", "z"],
        },
        Query {
            name: "week_hourly",
            what: "hourly downsample of every sensor over the week",
            sql: format!(
                "SELECT sensor_id, date_trunc('hour', ts) AS hour, avg(x) AS avg_x, avg(y) AS avg_y, avg(z) AS avg_z, count(*) AS n \
                 FROM samples_accelerometer WHERE date BETWEEN DATE '{first}' AND DATE '{last}' \
                 GROUP BY 1, 2 ORDER BY 1, 2"
            ),
            check: vec!["avg_x", "avg_y", "avg_z", "n"],
        },
        Query {
            name: "sensor_week_minutes",
            what: "one sensor over the week, 1-minute buckets",
            sql: format!(
                "SELECT date_trunc('minute', ts) AS minute, avg(x) AS avg_x, max(z) AS max_z, count(*) AS n \
                 FROM samples_accelerometer WHERE sensor_id = 'acc-042' AND date BETWEEN DATE '{first}' AND DATE '{last}' \
                 GROUP BY 1 ORDER BY 1"
            ),
            check: vec!["avg_x", "max_z", "n"],
        },
    ]
}

/// Writes the lake: every sensor every `interval` seconds for `days` days, in time order,
/// as consumed from a 6-partition topic (partition = sensor % 6), flushed every
/// `flush_secs` of data. Sensors 0-19 are worn by participants P01-P04 (5 each) in four
/// 2-hour recordings a day from 09:00 (UTC).
fn generate(lake: &Path, args: &Args) -> anyhow::Result<(u64, usize, Duration)> {
    let started = Instant::now();
    let registry = Arc::new(Registry::default_lab());
    let mut writer = LakeWriter::open(lake, registry)?;
    let t0 = Utc
        .from_utc_datetime(&start_date().and_hms_opt(0, 0, 0).unwrap())
        .timestamp_micros();
    let steps = args.days * 86_400 / args.interval_secs;
    let per_flush = (args.flush_secs / args.interval_secs).max(1);
    let mut offsets = [0_i64; PARTITIONS as usize];
    let mut seqs = vec![0_i64; args.sensors];
    let ids: Vec<SensorId> = (0..args.sensors)
        .map(|i| SensorId::new(format!("acc-{i:03}")))
        .collect();
    let sensor_type = SensorType::new("accelerometer");
    let tasks = ["rest", "stroop", "nback", "rest2"];
    let mut rows = 0_u64;
    let mut files = 0_usize;
    for step in 0..steps {
        let base = t0 + step * args.interval_secs * 1_000_000;
        let secs_of_day = (step * args.interval_secs) % 86_400;
        let day = (step * args.interval_secs) / 86_400;
        let slot = (9 * 3600..17 * 3600)
            .contains(&secs_of_day)
            .then(|| (secs_of_day - 9 * 3600) / 7200);
        for (i, id) in ids.iter().enumerate() {
            let p = (i as i32) % PARTITIONS;
            let offset = offsets[p as usize];
            offsets[p as usize] += 1;
            seqs[i] += 1;
            let ts = base + (i as i64) * 37_000;
            let phase = (step as f64) * 0.01 + i as f64;
            let sample = Sample {
                sensor_id: id.clone(),
                sensor_type: sensor_type.clone(),
                ts: Timestamp::from_micros(ts),
                seq: Some(seqs[i]),
                values: BTreeMap::from([
                    ("x".to_owned(), FieldValue::Double(phase.sin() * 2.0)),
                    ("y".to_owned(), FieldValue::Double(phase.cos() * 2.0)),
                    (
                        "z".to_owned(),
                        FieldValue::Double(9.81 + ((step + i as i64) % 17) as f64 / 100.0),
                    ),
                ]),
                tags: BTreeMap::from([("room".to_owned(), format!("lab-{}", i % 4))]),
                received_at: Timestamp::from_micros(ts + 150_000),
            };
            let context = match slot {
                Some(s) if i < 20 => {
                    let participant = format!("P{:02}", i / 5 + 1);
                    Some(RecordingContext {
                        experiment_id: EXPERIMENT.into(),
                        recording_id: format!("rec-{participant}-d{day}-s{s}").into(),
                        participant_id: participant.into(),
                        task_id: tasks[s as usize].into(),
                    })
                }
                _ => None,
            };
            let record = LogPosition {
                topic: TOPIC,
                partition: p,
                offset,
            };
            match writer.add(record, EnrichedSample { sample, context }) {
                Added::Buffered => rows += 1,
                other => bail!("the lake writer did not take a sample: {other:?}"),
            }
        }
        if (step + 1) % per_flush == 0 {
            files += writer.flush()?.len();
        }
    }
    files += writer.flush()?.len();
    Ok((rows, files, started.elapsed()))
}

fn lake_files(lake: &Path) -> (usize, u64) {
    fn walk(dir: &Path, acc: &mut (usize, u64)) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, acc);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                acc.0 += 1;
                acc.1 += e.metadata().map_or(0, |m| m.len());
            }
        }
    }
    let mut acc = (0, 0);
    walk(&lake.join("samples"), &mut acc);
    acc
}

/// Row count and sums of the check columns of a CSV result with a header.
fn outcome_of(csv: &str, check: &[&str]) -> anyhow::Result<Outcome> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let mut idx = Vec::new();
    for col in check {
        let i = header
            .iter()
            .position(|h| h.trim_matches('"') == *col)
            .with_context(|| format!("no column {col} in the result ({header:?})"))?;
        idx.push((*col, i));
    }
    let mut out = Outcome::default();
    for (col, _) in &idx {
        out.sums.insert((*col).to_owned(), 0.0);
    }
    for line in lines {
        if line.is_empty() {
            continue;
        }
        out.rows += 1;
        let fields: Vec<&str> = line.split(',').collect();
        for (col, i) in &idx {
            let v = fields.get(*i).copied().unwrap_or_default();
            if !v.is_empty() {
                let v: f64 = v
                    .parse()
                    .with_context(|| format!("{col} = {v:?} is not a number"))?;
                *out.sums.get_mut(*col).unwrap() += v;
            }
        }
    }
    Ok(out)
}

/// `labstream query SQL --lake LAKE -f csv -o FILE`; the wall time of the process.
fn run_labstream_cli(
    bin: &Path,
    lake: &Path,
    sql: &str,
    out: &Path,
) -> anyhow::Result<(f64, String)> {
    let t = Instant::now();
    let status = Command::new(bin)
        .arg("query")
        .arg(sql)
        .arg("--lake")
        .arg(lake)
        .args(["-f", "csv", "-o"])
        .arg(out)
        .status()
        .context("running labstream query")?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if !status.success() {
        bail!("labstream query failed ({status}): {sql}");
    }
    Ok((ms, std::fs::read_to_string(out)?))
}

fn same(a: &Outcome, b: &Outcome) -> Result<(), String> {
    if a.rows != b.rows {
        return Err(format!("rows {} vs {}", a.rows, b.rows));
    }
    for (k, va) in &a.sums {
        let vb = b.sums.get(k).copied().unwrap_or(f64::NAN);
        let tol = 1e-6 * va.abs().max(vb.abs()).max(1.0);
        if (va - vb).abs() > tol {
            return Err(format!("sum({k}) {va} vs {vb}"));
        }
    }
    Ok(())
}

struct Env {
    duckdb: String,
    pyarrow: String,
    threads: String,
}

/// `engine.query(sql)`: what a user of a running server waits for (planning, running,
/// collecting the result); the result is then encoded as CSV, untimed, for the checks.
async fn run_labstream(engine: &QueryEngine, sql: &str) -> anyhow::Result<(f64, String)> {
    let t = Instant::now();
    let result = engine.query(sql).await?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let mut encoder = Format::Csv.encoder(&result.schema)?;
    let mut csv = Vec::new();
    for batch in &result.batches {
        csv.extend_from_slice(&encoder.write(batch)?);
    }
    csv.extend_from_slice(&encoder.finish()?);
    Ok((ms, String::from_utf8(csv)?))
}

/// One DuckDB process (and connection) per lake state, as `labstream serve` holds one
/// engine: each `round` asks it to run every query once.
struct DuckDb {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl DuckDb {
    fn start(args: &Args, lake: &Path, queries_json: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(&args.python)
            .arg(&args.duckdb_script)
            .arg(lake)
            .arg(queries_json)
            .arg(THREADS.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("running the DuckDB script")?;
        let stdin = child.stdin.take().context("DuckDB script stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("DuckDB script stdout")?);
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    fn round(&mut self) -> anyhow::Result<DuckOut> {
        writeln!(self.stdin, "run")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the DuckDB script ended early (its error is above)");
        }
        Ok(serde_json::from_str(&line)?)
    }

    fn stop(mut self) -> anyhow::Result<()> {
        drop(self.stdin);
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the DuckDB script failed ({status})");
        }
        Ok(())
    }
}

/// One lake state: a `QueryEngine` and a DuckDB connection for the state, a warm-up
/// round, then `rounds` rounds; each round runs every query with labstream's engine,
/// then every query in DuckDB, then (with `--labstream`, measured rounds only) every
/// query with `labstream query`.
// The run's shared state is passed piecewise; a struct for one call site adds nothing.
#[allow(clippy::too_many_arguments)]
async fn time_state(
    state: &str,
    lake: &Path,
    qs: &[Query],
    args: &Args,
    queries_json: &Path,
    timings: &mut Timings,
    env: &mut Option<Env>,
    mismatches: &mut Vec<String>,
) -> anyhow::Result<()> {
    let csv_out = args.results.join("labstream-result.csv");
    // Built as `labstream serve` builds it, from the default `[query]` settings.
    let engine = QueryConfig::default().build(lake)?;
    let mut duckdb = DuckDb::start(args, lake, queries_json)?;
    for round in 0..=args.rounds {
        let measured = round > 0;
        for q in qs {
            let (ms, csv) = run_labstream(&engine, &q.sql)
                .await
                .with_context(|| format!("labstream: query {}", q.name))?;
            let outcome = outcome_of(&csv, &q.check)?;
            eprintln!(
                "querybench: {state} round {round} labstream {:<20} {:>9.1} ms, {} rows",
                q.name, ms, outcome.rows
            );
            check(
                timings,
                mismatches,
                &format!("{state}/labstream"),
                q.name,
                &outcome,
            );
            if measured {
                push(timings, state, "labstream", q.name, ms);
            }
        }
        let duck = duckdb.round()?;
        *env = Some(Env {
            duckdb: duck.duckdb.clone(),
            pyarrow: duck.pyarrow.clone(),
            threads: duck.threads.to_string(),
        });
        for d in duck.queries {
            eprintln!(
                "querybench: {state} round {round} duckdb    {:<20} {:>9.1} ms, {} rows",
                d.name, d.ms, d.rows
            );
            let outcome = Outcome {
                rows: d.rows,
                sums: d.sums,
            };
            let name = qs.iter().find(|q| q.name == d.name).unwrap().name;
            check(
                timings,
                mismatches,
                &format!("{state}/duckdb"),
                name,
                &outcome,
            );
            if measured {
                push(timings, state, "duckdb", name, d.ms);
            }
        }
        // A `labstream query` process starts cold each time: no warm-up round for it
        // (the files are in the page cache already).
        let Some(bin) = args.labstream.as_ref().filter(|_| measured) else {
            continue;
        };
        for q in qs {
            let (ms, csv) = run_labstream_cli(bin, lake, &q.sql, &csv_out)
                .with_context(|| format!("labstream query: {}", q.name))?;
            let outcome = outcome_of(&csv, &q.check)?;
            eprintln!(
                "querybench: {state} round {round} cli       {:<20} {:>9.1} ms, {} rows",
                q.name, ms, outcome.rows
            );
            check(
                timings,
                mismatches,
                &format!("{state}/labstream query"),
                q.name,
                &outcome,
            );
            if measured {
                push(timings, state, "cli", q.name, ms);
            }
        }
    }
    duckdb.stop()
}

/// Copies the lake folder `from` to `to` (files and folders only).
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn read_info<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The uncompacted lake in `<work>/lake`: reused with `--reuse-lake` when it was made
/// with the same options, written anew otherwise.
fn uncompacted_lake(lake: &Path, args: &Args) -> anyhow::Result<LakeInfo> {
    let info_path = args.work.join(LAKE_INFO);
    if args.reuse_lake
        && let Some(info) = read_info::<LakeInfo>(&info_path)
        && info.sensors == args.sensors
        && info.days == args.days
        && info.interval_secs == args.interval_secs
        && info.flush_secs == args.flush_secs
        && lake.is_dir()
    {
        eprintln!("querybench: reusing the lake in {}", lake.display());
        return Ok(info);
    }
    let _ = std::fs::remove_file(&info_path);
    let _ = std::fs::remove_file(args.work.join(COMPACTED_INFO));
    for dir in [lake.to_path_buf(), args.work.join("lake-compacted")] {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
    }
    std::fs::create_dir_all(lake)?;
    eprintln!("querybench: writing the lake into {}", lake.display());
    let (rows, files_written, gen_time) = generate(lake, args)?;
    let info = LakeInfo {
        sensors: args.sensors,
        days: args.days,
        interval_secs: args.interval_secs,
        flush_secs: args.flush_secs,
        rows,
        files_written,
        gen_secs: gen_time.as_secs_f64(),
    };
    std::fs::write(&info_path, serde_json::to_vec_pretty(&info)?)?;
    Ok(info)
}

/// A compacted copy of `lake` in `compacted` (the uncompacted lake stays for reuse).
async fn compacted_lake(
    lake: &Path,
    compacted: &Path,
    args: &Args,
) -> anyhow::Result<CompactedInfo> {
    let info_path = args.work.join(COMPACTED_INFO);
    if args.reuse_lake
        && let Some(info) = read_info::<CompactedInfo>(&info_path)
        && compacted.is_dir()
    {
        eprintln!(
            "querybench: reusing the compacted lake in {}",
            compacted.display()
        );
        return Ok(info);
    }
    if compacted.exists() {
        std::fs::remove_dir_all(compacted)?;
    }
    copy_dir(lake, compacted)?;
    eprintln!("querybench: compacting {}", compacted.display());
    let options = CompactOptions {
        delete_grace: Duration::ZERO,
        ..CompactOptions::default()
    };
    let registry = Registry::default_lab();
    let dir = compacted.to_path_buf();
    let report = tokio::task::spawn_blocking(move || compact(&dir, &registry, &options)).await??;
    if !report.failed.is_empty() {
        bail!("compaction failed in {} directories", report.failed.len());
    }
    let info = CompactedInfo {
        rows_out: report.rows_out,
        secs: report.elapsed.as_secs_f64(),
    };
    std::fs::write(&info_path, serde_json::to_vec_pretty(&info)?)?;
    Ok(info)
}

fn push(t: &mut Timings, state: &str, engine: &str, query: &str, ms: f64) {
    t.ms.entry(format!("{state}/{engine}"))
        .or_default()
        .entry(query.to_owned())
        .or_default()
        .push(ms);
}

/// The first result of a query is the reference; every later one (either engine, either
/// lake state) must match it.
fn check(t: &mut Timings, mismatches: &mut Vec<String>, who: &str, query: &str, o: &Outcome) {
    match t.outcome.get(query) {
        None => {
            t.outcome.insert(query.to_owned(), o.clone());
        }
        Some(reference) => {
            if let Err(e) = same(reference, o) {
                mismatches.push(format!("{query} ({who}): {e}"));
            }
        }
    }
}

fn fmt_ms(s: &Spread) -> String {
    if s.median >= 100.0 {
        format!("{:.0} ({:.0}-{:.0})", s.median, s.min, s.max)
    } else {
        format!("{:.1} ({:.1}-{:.1})", s.median, s.min, s.max)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    labstream_benches::exit::finish(querybench().await)
}

async fn querybench() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.rounds == 0 {
        bail!("--rounds must be at least 1 (a report needs a measured round)");
    }
    let lake = args.work.join("lake");
    let lake_compacted = args.work.join("lake-compacted");
    std::fs::create_dir_all(&args.work)?;
    std::fs::create_dir_all(&args.results)?;
    let mut qs = queries(args.days);
    if !args.only.is_empty() {
        if let Some(unknown) = args.only.iter().find(|n| !qs.iter().any(|q| q.name == *n)) {
            let names: Vec<_> = qs.iter().map(|q| q.name).collect();
            bail!(
                "--only {unknown}: no such query (there are {})",
                names.join(", ")
            );
        }
        qs.retain(|q| args.only.iter().any(|n| n == q.name));
    }
    let queries_json = args.results.join("queries.json");
    std::fs::write(&queries_json, serde_json::to_vec_pretty(&qs)?)?;

    let info = uncompacted_lake(&lake, &args)?;
    let (rows, files_written) = (info.rows, info.files_written);
    let gen_time = Duration::from_secs_f64(info.gen_secs);
    let (files_before, bytes_before) = lake_files(&lake);
    eprintln!(
        "querybench: {rows} samples, {files_written} files ({:.0} MB) in {:.1} s",
        bytes_before as f64 / 1e6,
        gen_time.as_secs_f64()
    );

    let mut timings = Timings::default();
    let mut env = None;
    let mut mismatches = Vec::new();
    time_state(
        "uncompacted",
        &lake,
        &qs,
        &args,
        &queries_json,
        &mut timings,
        &mut env,
        &mut mismatches,
    )
    .await?;

    let report = compacted_lake(&lake, &lake_compacted, &args).await?;
    let (files_after, bytes_after) = lake_files(&lake_compacted);
    eprintln!(
        "querybench: compacted in {:.1} s: {} -> {} files, {} rows",
        report.secs, files_before, files_after, report.rows_out
    );
    if report.rows_out != rows {
        mismatches.push(format!(
            "compaction wrote {} rows, the lake had {rows}",
            report.rows_out
        ));
    }
    time_state(
        "compacted",
        &lake_compacted,
        &qs,
        &args,
        &queries_json,
        &mut timings,
        &mut env,
        &mut mismatches,
    )
    .await?;
    std::fs::write(
        args.results.join("timings.json"),
        serde_json::to_vec_pretty(&timings)?,
    )?;
    if !args.keep_lake {
        for dir in [&lake, &lake_compacted] {
            std::fs::remove_dir_all(dir)?;
        }
        for info in [LAKE_INFO, COMPACTED_INFO] {
            let _ = std::fs::remove_file(args.work.join(info));
        }
    }

    let env = env.unwrap();
    let spread =
        |key: &str, q: &str| -> Spread { Spread::of(timings.ms[key][q].iter().copied()).unwrap() };
    let mut s = String::new();
    writeln!(s, "{BEGIN}")?;
    writeln!(
        s,
        "## Queries: labstream vs DuckDB, uncompacted vs compacted lake"
    )?;
    writeln!(s)?;
    writeln!(
        s,
        "Written by `{}` at {} UTC (commit {}).",
        args.command,
        Utc::now().format("%Y-%m-%d %H:%M"),
        args.commit
    )?;
    writeln!(s)?;
    writeln!(s, "- **Machine**: {}.", process_stats::machine())?;
    if !args.shared.is_empty() {
        writeln!(s, "- **Also running** (shared machine): {}.", args.shared)?;
    }
    writeln!(
        s,
        "- **Versions**: {}; labstream's engine is DataFusion (`labstream_api::QueryEngine` with the default `[query]` settings, as `labstream serve` builds it; 2 tokio worker threads, 2 DataFusion partitions); DuckDB {} (Python, pyarrow {}, threads {}).",
        args.rustc, env.duckdb, env.pyarrow, env.threads
    )?;
    writeln!(
        s,
        "- **Lake**: {rows} accelerometer samples (x, y, z; {} sensors every {} s for {} days, 6 topic partitions) written by `LakeWriter` with a flush every {} s of data, as a live sink does: {files_before} files, {:.0} MB. Sensors 0-19 are worn by 4 participants in 4 two-hour recordings a day (`experiment=stroop-2026`), the rest in `experiment=none`. Written in {:.0} s.",
        args.sensors,
        args.interval_secs,
        args.days,
        args.flush_secs,
        bytes_before as f64 / 1e6,
        gen_time.as_secs_f64()
    )?;
    writeln!(
        s,
        "- **Compaction** (`labstream_lake::compact`, default options, no grace): {files_before} -> {files_after} files, {:.0} MB, in {:.1} s.",
        bytes_after as f64 / 1e6,
        report.secs
    )?;
    writeln!(
        s,
        "- **Method**: both engines in-process, each held for the whole lake state as a running server holds it: one `QueryEngine` per lake state (the compacted lake is a compacted copy of the uncompacted one), one DuckDB connection in one Python process per lake state (the view creation not timed). Per lake state a warm-up round then {} measured rounds; a round runs every query once with labstream (`engine.query(sql)`: planning, running and collecting the whole result as Arrow batches, what a user of `labstream serve` waits for before the first byte of a non-streamed answer), then once in DuckDB (`execute(...).to_arrow_table()`){}. DuckDB reads a view per type, `read_parquet('<lake>/samples/accelerometer/**/*.parquet', hive_partitioning = true)` with `date` DATE and `experiment` VARCHAR, named like labstream's table, so both run the very same SQL text. Figures: wall-clock ms, median (min-max). Files are in the page cache (just written).",
        args.rounds,
        if args.labstream.is_some() {
            ", then once with the CLI (`labstream query \"<sql>\" --lake <lake> -f csv -o <file>`, release build, timed as the whole process: start-up, listing the files, planning, running, writing the CSV; a fresh engine and no cache each time; not in the warm-up round): the extra column"
        } else {
            ""
        }
    )?;
    writeln!(
        s,
        "- **Same results**: every run of every query, both engines, both lake states, has the row count and the sums of the checked columns of the first run (relative 1e-6): {}.",
        if mismatches.is_empty() {
            "yes".to_owned()
        } else {
            format!("**NO**: {}", mismatches.join("; "))
        }
    )?;
    writeln!(s)?;
    writeln!(s, "| query | SQL |")?;
    writeln!(s, "|---|---|")?;
    for q in &qs {
        writeln!(s, "| `{}`: {} | `{}` |", q.name, q.what, q.sql)?;
    }
    writeln!(s)?;
    writeln!(
        s,
        "| query | rows | lake | labstream ms | DuckDB ms | labstream / DuckDB | target <= {TARGET_RATIO}x | `labstream query` process ms |"
    )?;
    writeln!(s, "|---|---:|---|---:|---:|---:|---|---:|")?;
    let mut ratio_ok = 0;
    let mut ratio_n = 0;
    for q in &qs {
        for state in ["uncompacted", "compacted"] {
            let l = spread(&format!("{state}/labstream"), q.name);
            let d = spread(&format!("{state}/duckdb"), q.name);
            let ratio = l.median / d.median;
            ratio_n += 1;
            let ok = ratio <= TARGET_RATIO;
            ratio_ok += ok as usize;
            let cli = timings
                .ms
                .get(&format!("{state}/cli"))
                .and_then(|m| Spread::of(m.get(q.name)?.iter().copied()))
                .map_or_else(|| "-".to_owned(), |c| fmt_ms(&c));
            writeln!(
                s,
                "| `{}` | {} | {state} | {} | {} | {:.2}x | {} | {cli} |",
                q.name,
                timings.outcome[q.name].rows,
                fmt_ms(&l),
                fmt_ms(&d),
                ratio,
                if ok { "met" } else { "**missed**" }
            )?;
        }
    }
    writeln!(s)?;
    writeln!(
        s,
        "| query | labstream uncompacted / compacted | target >= {TARGET_SPEEDUP}x | DuckDB uncompacted / compacted |"
    )?;
    writeln!(s, "|---|---:|---|---:|")?;
    let mut speed_ok = 0;
    for q in &qs {
        let lu = spread("uncompacted/labstream", q.name).median;
        let lc = spread("compacted/labstream", q.name).median;
        let du = spread("uncompacted/duckdb", q.name).median;
        let dc = spread("compacted/duckdb", q.name).median;
        let ok = lu / lc >= TARGET_SPEEDUP;
        speed_ok += ok as usize;
        writeln!(
            s,
            "| `{}` | {:.1}x | {} | {:.1}x |",
            q.name,
            lu / lc,
            if ok { "met" } else { "**missed**" },
            du / dc
        )?;
    }
    writeln!(s)?;
    writeln!(
        s,
        "**Verdict**: within {TARGET_RATIO}x of DuckDB in {ratio_ok} of {ratio_n} query/lake cases; compaction >= {TARGET_SPEEDUP}x faster in {speed_ok} of {} queries. Raw timings: `{}`.",
        qs.len(),
        args.results.join("timings.json").display()
    )?;
    writeln!(s)?;
    writeln!(s, "{END}")?;

    let existing = std::fs::read_to_string(&args.out).unwrap_or_default();
    std::fs::write(&args.out, splice_between(&existing, &s, BEGIN, END))?;
    eprintln!("querybench: wrote {}", args.out.display());
    print!("{s}");
    if !mismatches.is_empty() {
        bail!("the engines disagree: {}", mismatches.join("; "));
    }
    Ok(())
}
