//! `labstream backfill <files>`: samples recovered from a gateway's own storage (NDJSON,
//! CSV, line protocol) go through ingest's parsers and validator, the same Avro
//! encoding and the same acknowledged producer to `samples.raw`. Without `--partial`
//! every file is checked first and nothing is sent if any line is invalid.
//! Samples already stored are skipped by MongoDB (unique dedupe key); the lake keeps a
//! second copy until compaction merges the files holding both.

use crate::config::Settings;
use anyhow::{Context, bail};
use futures::StreamExt;
use labstream_bus::{Producer, TopicCatalog};
use labstream_ingest::{FileFormat, FileSamples, Precision, RejectKind, Validator, open_file};
use labstream_schemas::{Codec, Registry, Timestamp};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
#[command(
    after_help = "Formats (from the file name, or --format for all files; `.gz` is decompressed):
  ndjson  .ndjson .jsonl .json   one JSON sample per line, as POST /v1/samples
  csv     .csv                   header sensor_id,sensor_type,ts[,seq],<field>...[,tag.<name>...];
                                 an empty cell is an absent value; ts is RFC 3339 or an integer
  lp      .lp .line .influx      InfluxDB line protocol, as POST /api/v2/write
Samples go through the same validation as ingest, except that there is no oldest event time.
Without --partial, every file is checked first and nothing is sent if any line is invalid;
the bad lines are listed as file:line: code: reason. Samples already stored:
MongoDB skips samples already stored (sensor_id, ts, seq); the lake writes them again and
compaction drops the copies when it merges the files holding both (`labstream compact
--min-files 1`): backfill only the time range that is missing."
)]
pub(crate) struct BackfillArgs {
    /// Files to send, in order.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Format of every file (default: from each file's name).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Unit of integer timestamps: s, ms, us or ns (default: ms; ns for line protocol).
    #[arg(long, value_parser = parse_precision)]
    precision: Option<Precision>,
    /// Send the valid lines even when some are invalid (they are listed); without it,
    /// one invalid line anywhere means nothing is sent.
    #[arg(long)]
    partial: bool,
    /// Only check the files and report; send nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Ndjson,
    Csv,
    Lp,
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    match s {
        "s" => Ok(Precision::S),
        "ms" => Ok(Precision::Ms),
        "us" => Ok(Precision::Us),
        "ns" => Ok(Precision::Ns),
        _ => Err(format!("{s:?} is not one of s, ms, us, ns")),
    }
}

/// Bad lines listed per file; the rest are counted.
const LIST_PER_FILE: usize = 20;
/// Samples per produce round.
const BATCH: usize = 2000;
/// Produce rounds awaited at once.
const IN_FLIGHT_BATCHES: usize = 4;

#[derive(Default)]
struct FileReport {
    lines: u64,
    valid: u64,
    bad: u64,
    listed: Vec<String>,
    by_reason: BTreeMap<&'static str, u64>,
}

impl FileReport {
    fn bad(&mut self, file: &Path, line: u64, kind: RejectKind, reason: &str) {
        self.bad += 1;
        *self.by_reason.entry(kind.as_str()).or_default() += 1;
        if self.listed.len() < LIST_PER_FILE {
            self.listed.push(format!(
                "{}:{line}: {}: {reason}",
                file.display(),
                kind.as_str()
            ));
        }
    }

    fn print(&self, file: &Path) -> std::io::Result<()> {
        for l in &self.listed {
            outln!("{l}")?;
        }
        if self.bad as usize > self.listed.len() {
            outln!(
                "{}: {} more invalid lines not listed",
                file.display(),
                self.bad as usize - self.listed.len()
            )?;
        }
        Ok(())
    }
}

struct Job {
    path: PathBuf,
    format: FileFormat,
    precision: Precision,
}

pub(crate) async fn run(settings: &Settings, args: BackfillArgs) -> anyhow::Result<()> {
    let registry = settings.registry()?;
    let mut jobs = Vec::new();
    for path in &args.files {
        let format = match args.format {
            Some(FormatArg::Ndjson) => FileFormat::Ndjson,
            Some(FormatArg::Csv) => FileFormat::Csv,
            Some(FormatArg::Lp) => FileFormat::LineProtocol,
            None => FileFormat::detect(path).with_context(|| {
                format!(
                    "cannot tell the format of {} from its name; use --format ndjson|csv|lp",
                    path.display()
                )
            })?,
        };
        if !path.is_file() {
            bail!("{} is not a readable file", path.display());
        }
        jobs.push(Job {
            path: path.clone(),
            format,
            precision: args.precision.unwrap_or(format.default_precision()),
        });
    }
    let received_at = Timestamp::now();
    let max_future = Some(settings.ingest.max_ts_future).filter(|d| !d.is_zero());
    let tag = settings.ingest.sensor_id_tag.clone();
    let started = Instant::now();

    // Check first: without --partial nothing is sent unless every line is valid.
    if !args.partial || args.dry_run {
        let mut bad_total = 0;
        let mut valid_total = 0;
        for job in &jobs {
            let report = check_file(job, &registry, received_at, max_future, &tag).await?;
            report.print(&job.path)?;
            eprintln!(
                "{}: {} lines, {} valid, {} invalid",
                job.path.display(),
                report.lines,
                report.valid,
                report.bad
            );
            bad_total += report.bad;
            valid_total += report.valid;
        }
        if args.dry_run {
            outln!(
                "dry run: {valid_total} valid samples, {bad_total} invalid lines in {} files; nothing sent",
                jobs.len()
            )?;
            return Ok(());
        }
        if bad_total > 0 {
            bail!(
                "{bad_total} invalid lines (listed above); nothing was sent. Fix them, or send the valid lines with --partial"
            );
        }
    }

    labstream_bus::probe(&settings.kafka, Duration::from_secs(15))
        .await
        .context("start Kafka (infra/local/stack up) or set LABSTREAM__KAFKA__BROKERS")?;
    let spec = TopicCatalog::new(&settings.kafka, settings.processors.alerts.topic_partitions)
        .samples_raw();
    let topic = spec.name.clone();
    labstream_bus::ensure_topics(&settings.kafka, &[spec])
        .await
        .context("creating the topics")?;
    let producer = Producer::new(&settings.kafka)?;
    let mut sent = 0u64;
    let mut bad = 0u64;
    for job in &jobs {
        let report = send_file(
            job,
            &registry,
            received_at,
            max_future,
            &tag,
            &producer,
            &topic,
            &mut sent,
        )
        .await
        .with_context(|| {
            format!(
                "sending {} stopped after {sent} samples in all; running the same backfill again is harmless",
                job.path.display()
            )
        })?;
        report.print(&job.path)?;
        bad += report.bad;
        eprintln!(
            "{}: {} lines, {} samples sent, {} invalid lines skipped",
            job.path.display(),
            report.lines,
            report.valid,
            report.bad
        );
    }
    let secs = started.elapsed().as_secs_f64();
    outln!(
        "backfill done: {sent} samples sent to {topic} from {} files in {secs:.1} s ({:.0}/s){}",
        jobs.len(),
        sent as f64 / secs.max(0.001),
        if bad > 0 {
            format!(", {bad} invalid lines skipped (--partial)")
        } else {
            String::new()
        }
    )?;
    outln!(
        "samples that were already stored are skipped by MongoDB (unique on sensor_id, ts, seq); the lake drops such copies when compaction merges the files holding both (`labstream compact --min-files 1`)"
    )?;
    Ok(())
}

async fn check_file(
    job: &Job,
    registry: &Registry,
    received_at: Timestamp,
    max_future: Option<Duration>,
    tag: &str,
) -> anyhow::Result<FileReport> {
    let (path, format, precision) = (job.path.clone(), job.format, job.precision);
    let (registry, tag) = (registry.clone(), tag.to_owned());
    tokio::task::spawn_blocking(move || {
        let validator = validator(&registry, received_at, max_future);
        let mut report = FileReport::default();
        let reader = open_file(&path).with_context(|| format!("opening {}", path.display()))?;
        let samples = match FileSamples::new(reader, format, precision, &tag, &validator) {
            Ok(s) => s,
            Err(e) => {
                report.bad(&path, 1, RejectKind::Malformed, &e);
                return Ok(report);
            }
        };
        let mut progress = Progress::new(&path, "checked");
        for line in samples {
            let (n, result) = line.with_context(|| format!("reading {}", path.display()))?;
            report.lines += 1;
            match result {
                Ok(_) => report.valid += 1,
                Err(e) => report.bad(&path, n, e.kind, &e.reason),
            }
            progress.tick(report.lines);
        }
        Ok(report)
    })
    .await?
}

fn validator(
    registry: &Registry,
    received_at: Timestamp,
    max_future: Option<Duration>,
) -> Validator<'_> {
    Validator {
        registry,
        received_at,
        // Old data is what a backfill is for; a clock far in the future is still a mistake.
        max_past: None,
        max_future,
    }
}

#[allow(clippy::too_many_arguments)]
async fn send_file(
    job: &Job,
    registry: &Registry,
    received_at: Timestamp,
    max_future: Option<Duration>,
    tag: &str,
    producer: &Producer,
    topic: &str,
    sent: &mut u64,
) -> anyhow::Result<FileReport> {
    // The reader parses and encodes on a blocking thread; a small channel bounds memory.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(String, Vec<u8>)>>(4);
    let (path, format, precision) = (job.path.clone(), job.format, job.precision);
    let (registry, tag) = (registry.clone(), tag.to_owned());
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<FileReport> {
        let validator = validator(&registry, received_at, max_future);
        let codec = Codec::new();
        let mut report = FileReport::default();
        let file = open_file(&path).with_context(|| format!("opening {}", path.display()))?;
        let samples = match FileSamples::new(file, format, precision, &tag, &validator) {
            Ok(s) => s,
            Err(e) => {
                report.bad(&path, 1, RejectKind::Malformed, &e);
                return Ok(report);
            }
        };
        let mut batch = Vec::with_capacity(BATCH);
        for line in samples {
            let (n, result) = line.with_context(|| format!("reading {}", path.display()))?;
            report.lines += 1;
            match result {
                Ok(sample) => {
                    report.valid += 1;
                    let bytes = codec.encode(&sample).context("encoding a sample")?;
                    batch.push((sample.sensor_id.as_str().to_owned(), bytes));
                    if batch.len() == BATCH
                        && tx
                            .blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                            .is_err()
                    {
                        return Ok(report); // the sender failed; its error is reported
                    }
                }
                Err(e) => report.bad(&path, n, e.kind, &e.reason),
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        Ok(report)
    });
    let mut progress = Progress::new(&job.path, "sent");
    let mut send_error = None;
    // A few batches in flight at once, so the producer never waits for a round trip idle.
    let mut in_flight = futures::stream::FuturesOrdered::new();
    let mut input_done = false;
    loop {
        tokio::select! {
            Some((n, result)) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(e) = result {
                    send_error = Some(e);
                    break;
                }
                *sent += n;
                progress.tick(*sent);
            }
            batch = rx.recv(), if !input_done && in_flight.len() < IN_FLIGHT_BATCHES => match batch {
                Some(batch) => in_flight.push_back(send_batch(producer, topic, batch)),
                None => input_done = true,
            },
            else => break,
        }
    }
    drop(rx);
    let report = reader.await??;
    if let Some(e) = send_error {
        return Err(anyhow::Error::new(e).context("Kafka did not acknowledge a batch"));
    }
    Ok(report)
}

/// Appends a batch; all its sends are queued at once and awaited together, as ingest does.
async fn send_batch(
    producer: &Producer,
    topic: &str,
    batch: Vec<(String, Vec<u8>)>,
) -> (u64, labstream_bus::Result<()>) {
    let results = futures::future::join_all(
        batch
            .iter()
            .map(|(key, bytes)| producer.send(topic, key.as_bytes(), bytes)),
    )
    .await;
    let outcome = match results.into_iter().find_map(Result::err) {
        Some(e) => Err(e),
        None => Ok(()),
    };
    (batch.len() as u64, outcome)
}

/// A line on stderr every two seconds for long files.
struct Progress {
    what: String,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(path: &Path, verb: &str) -> Self {
        Self {
            what: format!("{}: {verb}", path.display()),
            started: Instant::now(),
            last: Instant::now(),
        }
    }

    fn tick(&mut self, n: u64) {
        if self.last.elapsed() >= Duration::from_secs(2) {
            self.last = Instant::now();
            let rate = n as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            eprintln!("{} {n} ({rate:.0}/s)", self.what);
        }
    }
}
