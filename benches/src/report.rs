//! Writes the ingest section of `benches/RESULTS.md` from the JSON results of one
//! `benches/run`: medians of the repeated runs with their spread, the ratio to the raw
//! producer measured in the same run, the verdict against the targets, where the CPU
//! went, and the method. Only the text between this section's markers is replaced, so
//! hand-written notes and other sections of the file survive a new run.

use crate::runner::RunResult;
use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::path::Path;

pub const BEGIN: &str = "<!-- ingest:begin: written by benches/run; edit outside the markers -->";
pub const END: &str = "<!-- ingest:end -->";

/// Labels `benches/run` gives its runs; the report knows what each one means.
pub const RAW: &str = "raw";
pub const BATCH_JSON: &str = "batch-json";
pub const BATCH_LP: &str = "batch-lp";
pub const SINGLE_MAX: &str = "single-max";
pub const SINGLE_HALF: &str = "single-half";
pub const SINGLE_TARGET: &str = "single-target";
/// The classic lab load test (50 users x one sample per type every 500 ms x 60 s),
/// driven by the load generator and by k6 itself.
pub const CLASSIC: &str = "classic";
pub const CLASSIC_K6: &str = "classic-k6";

/// Targets of the ingest issue.
const BATCH_RATIO_TARGET: f64 = 0.5;
const SINGLE_RATE_TARGET: f64 = 10_000.0;
const SINGLE_P99_TARGET_US: u64 = 20_000;

/// What the report says about where and how it was measured.
#[derive(Clone, Debug, Default)]
pub struct RunContext {
    pub date: String,
    pub command: String,
    pub commit: String,
    pub rustc: String,
    pub kafka: String,
    pub librdkafka: String,
    pub machine: String,
    pub shared: String,
}

/// Reads every `*.json` result in `dir`, ordered by start time.
pub fn load_results(dir: &Path) -> anyhow::Result<Vec<RunResult>> {
    let mut results = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if text.trim().is_empty() {
            continue;
        }
        let result: RunResult = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a loadgen result", path.display()))?;
        results.push(result);
    }
    results.sort_by(|a, b| a.started_at.cmp(&b.started_at));
    Ok(results)
}

/// Median and spread of one figure over repeated runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }
}

fn runs<'a>(results: &'a [RunResult], label: &str) -> Vec<&'a RunResult> {
    results
        .iter()
        .filter(|r| r.label.as_deref() == Some(label))
        .collect()
}

fn spread(runs: &[&RunResult], f: impl Fn(&RunResult) -> f64) -> Option<Spread> {
    Spread::of(runs.iter().map(|r| f(r)))
}

/// `1234567.8` -> `1,234,568`.
pub fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

fn ms(us: f64) -> String {
    if us >= 100_000.0 {
        format!("{:.0}", us / 1000.0)
    } else {
        format!("{:.2}", us / 1000.0)
    }
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

fn ms_cell(s: Option<Spread>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.n == 1 => ms(s.median),
        Some(s) => format!("**{}** ({}-{})", ms(s.median), ms(s.min), ms(s.max)),
    }
}

fn failed(r: &RunResult) -> u64 {
    r.measured.failed_requests + r.measured.errors.values().sum::<u64>()
}

fn outcomes(r: &RunResult) -> String {
    let mut parts: Vec<String> = r
        .measured
        .outcomes
        .iter()
        .map(|(k, v)| format!("{k}: {}", thousands(*v as f64)))
        .collect();
    parts.extend(r.measured.errors.iter().map(|(k, v)| format!("{k}: {v}")));
    parts.join(", ")
}

fn describe(r: &RunResult) -> String {
    let format = match r.format {
        Some(crate::wire::Format::Json) => "JSON",
        Some(crate::wire::Format::Lp) => "line protocol",
        None => "Avro",
    };
    match (r.model.as_str(), r.concurrency, &r.schedule) {
        ("paced", Some(users), _) => format!(
            "{format}, 1 sample/request, {users} virtual users each sending one sample of every sensor type every 500 ms{}",
            if r.scenario == "k6-classic" {
                ", driven by k6"
            } else {
                ""
            }
        ),
        ("open", _, Some(s)) => format!(
            "{format}, {} sample(s)/request, open model at {} requests/s (at most {} in flight)",
            r.batch,
            thousands(s.target_rate),
            r.max_in_flight.unwrap_or_default()
        ),
        (_, Some(c), _) => format!(
            "{format}, {} sample(s)/request, closed model with {c} concurrent requests",
            r.batch
        ),
        _ => format!("{format}, {} sample(s)/request", r.batch),
    }
}

struct Scenario {
    label: &'static str,
    title: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        label: RAW,
        title: "Raw producer (ceiling): kafka-raw",
    },
    Scenario {
        label: BATCH_JSON,
        title: "Batched ingest, JSON: http-batch",
    },
    Scenario {
        label: BATCH_LP,
        title: "Batched ingest, line protocol: http-batch --format lp",
    },
    Scenario {
        label: SINGLE_MAX,
        title: "Single-sample requests, maximum rate: http-single --rate max",
    },
    Scenario {
        label: SINGLE_HALF,
        title: "Single-sample requests at half the maximum rate: http-single --rate R",
    },
    Scenario {
        label: CLASSIC,
        title: "The classic lab scenario, load generator: http-classic --users 50 --interval 500ms",
    },
    Scenario {
        label: CLASSIC_K6,
        title: "The classic lab scenario, k6 itself: benches/k6/classic.js (k6 measures, k6 reports)",
    },
    Scenario {
        label: SINGLE_TARGET,
        title: "Single-sample requests at the target's half load (5,000/s): http-single --rate 5000",
    },
];

/// The ingest section, markers included.
pub fn ingest_section(results: &[RunResult], ctx: &RunContext) -> anyhow::Result<String> {
    if runs(results, RAW).is_empty() {
        bail!("no result labelled {RAW:?}: the report needs the raw producer's runs");
    }
    let mut o = String::new();
    let w = &mut o;
    writeln!(w, "{BEGIN}")?;
    writeln!(w, "## Ingest\n")?;
    writeln!(
        w,
        "Measured {} with `benches/run` (command at the end of this section).\n",
        ctx.date
    )?;
    writeln!(w, "- **Machine**: {}", ctx.machine)?;
    writeln!(w, "- **Shared with**: {}", ctx.shared)?;
    writeln!(
        w,
        "- **Versions**: labstream {}, {}, Apache Kafka {} (one KRaft node on the same machine), librdkafka {}\n",
        ctx.commit, ctx.rustc, ctx.kafka, ctx.librdkafka
    )?;

    // Summary.
    writeln!(w, "### Summary\n")?;
    writeln!(
        w,
        "Median of the runs in **bold**, the spread (min-max) in brackets. Latency is per request, \
         from its intended start to the answer (for an HTTP request: Kafka acknowledged every sample of it).\n"
    )?;
    writeln!(
        w,
        "| scenario | runs | samples/s | requests/s | p50 ms | p99 ms | p99.9 ms | max ms | failed |"
    )?;
    writeln!(w, "|---|---|---|---|---|---|---|---|---|")?;
    for sc in SCENARIOS {
        let rs = runs(results, sc.label);
        if rs.is_empty() {
            continue;
        }
        writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            sc.label,
            rs.len(),
            rate_cell(spread(&rs, |r| r.measured.samples_per_s)),
            rate_cell(spread(&rs, |r| r.measured.requests_per_s)),
            ms_cell(spread(&rs, |r| r.measured.latency_us.p50 as f64)),
            ms_cell(spread(&rs, |r| r.measured.latency_us.p99 as f64)),
            ms_cell(spread(&rs, |r| r.measured.latency_us.p999 as f64)),
            ms_cell(spread(&rs, |r| r.measured.latency_us.max as f64)),
            rs.iter().map(|r| failed(r)).sum::<u64>(),
        )?;
    }
    writeln!(w)?;

    verdict(w, results)?;
    cpu_table(w, results)?;

    // Per run.
    writeln!(w, "### Every run\n")?;
    for sc in SCENARIOS {
        let rs = runs(results, sc.label);
        let Some(first) = rs.first() else { continue };
        writeln!(
            w,
            "**{}** ({}; target {})\n",
            sc.title,
            describe(first),
            first.destination
        )?;
        writeln!(
            w,
            "| run | started (UTC) | samples/s | requests/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | outcomes |"
        )?;
        writeln!(w, "|---|---|---|---|---|---|---|---|---|---|")?;
        for (i, r) in rs.iter().enumerate() {
            let l = &r.measured.latency_us;
            writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                i + 1,
                r.started_at,
                thousands(r.measured.samples_per_s),
                thousands(r.measured.requests_per_s),
                ms(l.p50 as f64),
                ms(l.p90 as f64),
                ms(l.p99 as f64),
                ms(l.p999 as f64),
                ms(l.max as f64),
                outcomes(r),
            )?;
        }
        if let Some(s) = &first.schedule {
            let behind: Vec<String> = rs
                .iter()
                .filter_map(|r| r.schedule.as_ref())
                .map(|s| {
                    format!(
                        "{} of {}",
                        thousands(s.waited_for_slot as f64),
                        thousands(s.scheduled as f64)
                    )
                })
                .collect();
            let service: Vec<String> = rs
                .iter()
                .map(|r| {
                    let l = &r.measured.service_us;
                    format!(
                        "{}/{}/{}",
                        ms(l.p50 as f64),
                        ms(l.p99 as f64),
                        ms(l.p999 as f64)
                    )
                })
                .collect();
            writeln!(
                w,
                "\nOpen model at {} requests/s: requests that had to wait for a free in-flight slot: {}. \
                 Latency from the actual send instead of the intended start (`service_us`), p50/p99/p99.9 ms: {}.",
                thousands(s.target_rate),
                behind.join("; "),
                service.join("; ")
            )?;
        }
        writeln!(w)?;
    }

    method(w, results)?;
    writeln!(w, "### Command\n")?;
    writeln!(w, "```sh\n{}\n```", ctx.command)?;
    writeln!(w, "{END}")?;
    Ok(o)
}

fn verdict(w: &mut String, results: &[RunResult]) -> anyhow::Result<()> {
    writeln!(w, "### Verdict against the targets\n")?;
    writeln!(w, "| target | measured | verdict |")?;
    writeln!(w, "|---|---|---|")?;
    let raw = runs(results, RAW);
    let raw_rate = spread(&raw, |r| r.measured.samples_per_s);
    for (label, name) in [(BATCH_JSON, "JSON"), (BATCH_LP, "line protocol")] {
        let rs = runs(results, label);
        let (Some(raw_rate), Some(rate)) = (raw_rate, spread(&rs, |r| r.measured.samples_per_s))
        else {
            continue;
        };
        let ratio = rate.median / raw_rate.median;
        // Runs are interleaved (raw, JSON, line protocol, single per round), so the
        // ratio of each round shows how much of the spread is the machine's.
        let paired = Spread::of(
            rs.iter()
                .zip(&raw)
                .map(|(b, r)| b.measured.samples_per_s / r.measured.samples_per_s),
        );
        let paired = paired
            .map(|p| format!("; per round {:.2}-{:.2}", p.min, p.max))
            .unwrap_or_default();
        writeln!(
            w,
            "| batched ingest ({name}) >= {BATCH_RATIO_TARGET}x the raw producer | {:.2}x ({} / {} samples/s{paired}) | {} |",
            ratio,
            thousands(rate.median),
            thousands(raw_rate.median),
            if ratio >= BATCH_RATIO_TARGET {
                "met"
            } else {
                "**missed**"
            }
        )?;
    }
    let max = spread(&runs(results, SINGLE_MAX), |r| r.measured.requests_per_s);
    if let Some(max) = max {
        writeln!(
            w,
            "| single-sample requests >= {} /s | {} requests/s (median; {}-{}) | {} |",
            thousands(SINGLE_RATE_TARGET),
            thousands(max.median),
            thousands(max.min),
            thousands(max.max),
            if max.median >= SINGLE_RATE_TARGET {
                "met"
            } else {
                "**missed**"
            }
        )?;
    }
    // The target's "half that load" is 5,000 requests/s; the half-of-maximum runs test it
    // when the maximum reached 10,000, the target-load runs otherwise.
    let half_load = SINGLE_RATE_TARGET / 2.0;
    for label in [SINGLE_HALF, SINGLE_TARGET] {
        let rs = runs(results, label);
        let Some(rate) = rs
            .first()
            .and_then(|r| r.schedule.as_ref())
            .map(|s| s.target_rate)
        else {
            continue;
        };
        let Some(p99) = spread(&rs, |r| r.measured.latency_us.p99 as f64) else {
            continue;
        };
        let achieved = spread(&rs, |r| r.measured.requests_per_s)
            .map(|s| s.median)
            .unwrap_or(0.0);
        let counts = rate >= half_load * 0.999;
        let ok = p99.max < SINGLE_P99_TARGET_US as f64 && achieved >= rate * 0.99;
        let verdict = match (counts, ok) {
            (true, true) => "met",
            (true, false) => "**missed**",
            (false, true) => "holds at this lower load (not the target's load)",
            (false, false) => "**missed** even at this lower load",
        };
        writeln!(
            w,
            "| p99 < {} ms at half the target load ({} requests/s); measured open-model at {} requests/s ({label}) | p99 {} ms (median; worst run {} ms), {} requests/s achieved of {} scheduled | {} |",
            SINGLE_P99_TARGET_US / 1000,
            thousands(half_load),
            thousands(rate),
            ms(p99.median),
            ms(p99.max),
            thousands(achieved),
            thousands(rate),
            verdict
        )?;
    }
    writeln!(w)?;
    Ok(())
}

fn cpu_table(w: &mut String, results: &[RunResult]) -> anyhow::Result<()> {
    writeln!(w, "### Where the CPU went\n")?;
    writeln!(
        w,
        "Cores busy during the measurement window (median of the runs; the machine has {} cores). \
         `other` is everything else on the machine. In `raw` the load generator *is* the producer \
         (sample generation, Avro encoding, librdkafka), so its column is the ceiling's own cost.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )?;
    writeln!(
        w,
        "| scenario | loadgen | labstream | kafka | other | whole machine |"
    )?;
    writeln!(w, "|---|---|---|---|---|---|")?;
    let proc = |r: &RunResult, name: &str| r.cpu.processes.get(name).copied().unwrap_or(0.0);
    let cell = |s: Option<Spread>| s.map_or("-".to_owned(), |s| format!("{:.2}", s.median));
    for sc in SCENARIOS {
        let rs = runs(results, sc.label);
        // k6 measures itself; its process is not watched.
        if rs.is_empty() || sc.label == CLASSIC_K6 {
            continue;
        }
        let other = spread(&rs, |r| {
            r.cpu.machine_cores.unwrap_or(0.0)
                - proc(r, "loadgen")
                - proc(r, "labstream")
                - proc(r, "kafka")
        });
        writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} |",
            sc.label,
            cell(spread(&rs, |r| proc(r, "loadgen"))),
            cell(spread(&rs, |r| proc(r, "labstream"))),
            cell(spread(&rs, |r| proc(r, "kafka"))),
            cell(other.map(|s| Spread {
                median: s.median.max(0.0),
                ..s
            })),
            cell(spread(&rs, |r| r.cpu.machine_cores.unwrap_or(0.0))),
        )?;
    }
    let peak = results
        .iter()
        .filter_map(|r| r.memory.get("labstream"))
        .map(|m| m.peak_rss_kib)
        .max();
    if let Some(kib) = peak {
        writeln!(
            w,
            "\nPeak RSS of `labstream serve` over the whole benchmark (VmHWM): **{:.1} MiB**.",
            kib as f64 / 1024.0
        )?;
    }
    writeln!(w)?;
    Ok(())
}

fn method(w: &mut String, results: &[RunResult]) -> anyhow::Result<()> {
    let first = results.first();
    let warmup = first.map_or(0.0, |r| r.warmup_s);
    let window = first.map_or(0.0, |r| r.measured.window_s);
    writeln!(w, "### Method\n")?;
    writeln!(
        w,
        "- **What runs**: `labstream serve` (release build) with auth on (an EdDSA token, verified on every request), \
         its own topic prefix and lake folder, and the MongoDB and lake sinks and lake compaction **disabled**, so that \
         ingest (HTTP -> parse -> validate -> Avro -> Kafka acks=all) is measured alone. Kafka is the local \
         stack's single broker; `samples.raw` has 6 partitions. The load generator `labstream-loadgen` \
         runs on the same machine."
    )?;
    writeln!(
        w,
        "- **Samples**: a simulated fleet of every type of the default registry (temperature, humidity, co2, door, power, \
         accelerometer, thermocouple), 100 sensors per type per worker, realistic drifting values, every \
         (sensor_id, ts, seq) unique. JSON bodies use RFC 3339 timestamps; line protocol uses nanoseconds, as Telegraf does."
    )?;
    writeln!(
        w,
        "- **Raw producer (the ceiling)**: the same samples, Avro single-object encoded with `labstream_schemas::Codec`, \
         produced with `labstream_bus::Producer` (the very producer ingest uses: acks=all, idempotence, lz4, linger 2 ms) \
         to the same topic, in batches of the same size and concurrency as `http-batch`, each batch sent the way ingest \
         sends a request (every record queued, then all acknowledgements awaited). Encoding is included, as in ingest."
    )?;
    writeln!(
        w,
        "- **Closed model** (`kafka-raw`, `http-batch`, `http-single --rate max`): N workers each send the next request \
         when the previous one is answered; throughput is what they achieve. **Open model** (`http-single --rate R`): \
         requests are scheduled at a constant rate whatever the answers, many in flight over an HTTP/1.1 keep-alive pool; \
         latency counts from each request's intended start, so time a request waited because the target (or the \
         generator) fell behind is included (coordinated-omission safe). The generator's timer (1 ms resolution) adds \
         about 1 ms to the open-model latencies; `service_us`, the latency from the actual send, is given next to them."
    )?;
    writeln!(
        w,
        "- **Window**: each run has {warmup:.0} s of warm-up (sent, not counted) and a {window:.0} s measurement window. Throughput \
         counts requests answered 2xx (Kafka: fully acknowledged) inside the window; latencies are those of the requests \
         started inside it, read from an HDR histogram (microsecond resolution, 3 significant digits). Failed requests \
         (non-2xx, timeouts) are counted, never folded into the figures."
    )?;
    writeln!(
        w,
        "- **Repeats**: the key scenarios run three times in interleaved rounds (raw, JSON, line protocol, single-max, \
         repeat), so slow drift on the machine hits every scenario alike; the tables give the median and the min-max."
    )?;
    writeln!(
        w,
        "- **CPU and memory**: CPU time of the generator, labstream and the Kafka broker from `/proc/<pid>/stat` at the \
         start and end of the window, the machine's from `/proc/stat`; labstream's peak RSS is `VmHWM` from \
         `/proc/<pid>/status`. Raw results (one JSON per run) are kept in `target/bench/`."
    )?;
    writeln!(w)?;
    Ok(())
}

/// Replaces the ingest section of `existing` (or appends it when absent).
pub fn splice(existing: &str, section: &str) -> String {
    splice_between(existing, section, BEGIN, END)
}

/// Replaces the text from `begin` to `end` (markers included) in `existing` with
/// `section`, or appends `section` when the markers are absent.
pub fn splice_between(existing: &str, section: &str, begin: &str, end: &str) -> String {
    match (existing.find(begin), existing.find(end)) {
        (Some(b), Some(e)) if e > b => {
            let mut out = String::new();
            out.push_str(&existing[..b]);
            out.push_str(section.trim_end());
            out.push_str(&existing[e + end.len()..]);
            out
        }
        _ => {
            let mut out = if existing.trim().is_empty() {
                "# labstream benchmark results\n\nWritten by `benches/run`; see `benches/README.md` for the method and how to run it.\n\n".to_owned()
            } else {
                format!("{}\n\n", existing.trim_end())
            };
            out.push_str(section.trim_end());
            out.push('\n');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_and_numbers() {
        let s = Spread::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of([1.0, 2.0]).unwrap().median, 1.5);
        assert!(Spread::of(Vec::new()).is_none());
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
    }

    #[test]
    fn splice_keeps_what_is_outside_the_markers() {
        let section = format!("{BEGIN}\nnew\n{END}");
        let first = splice("", &section);
        assert!(first.contains("new"));
        let edited = format!("{first}\nhand-written notes\n");
        let again = splice(&edited, &format!("{BEGIN}\nnewer\n{END}"));
        assert!(again.contains("newer") && !again.contains("\nnew\n"));
        assert!(again.contains("hand-written notes"));
    }
}
