//! Lake compaction: per directory and topic-partition, merges runs of small live files
//! into one file sorted by (sensor_id, ts, seq), named by the union of their offset
//! ranges, and drops rows whose dedupe key repeats (the first by offset order stays).
//!
//! Guarantee: at every instant each row is in exactly one live file. The output is
//! written under a temporary name, synced and renamed, then the directory is synced;
//! from then on its name supersedes the inputs (`layout::live_files`), so a reader
//! listing the directory sees the inputs or the output, never both. Inputs are deleted
//! only `delete_grace` after the output appeared, so a query that listed them just
//! before can still read them. A crash anywhere leaves at worst a temporary file (never
//! read, removed by the next run) or superseded inputs (never read, deleted later).
//!
//! Sorting with bounded memory: a streaming k-way merge. Every input is already sorted,
//! so the merge holds one record batch per input (at most `MAX_FAN_IN` inputs, batch
//! size shrinking as the fan-in grows) and the row group being encoded, whatever the
//! file sizes. `max_merge_bytes` does not bound memory: it caps the input bytes merged
//! into one output, and files of half that size or more count as compacted, so a busy
//! day's files are not rewritten over and over.

mod merge;
mod plan;

use crate::batch::arrow_schema;
use crate::error::{Error, Result};
use crate::layout::{PartFile, SAMPLES_DIR, live_files};
use labstream_schemas::{Registry, SensorTypeSpec};
use merge::merge;
use plan::plan;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// Most files merged into one output: bounds open files and batches held in memory.
const MAX_FAN_IN: usize = 64;
/// Rows held in input batches during a merge, over all inputs.
const MERGE_ROWS_BUDGET: usize = 256 * 1024;
/// Rows per output batch handed to the Parquet writer.
const OUTPUT_BATCH_ROWS: usize = 8192;
/// Suffix of the compactor's temporary files; only one compaction runs at a time
/// (lock file), so any such file at the start of a run is left from a crash.
const TMP_SUFFIX: &str = crate::file::Staging::Compaction.suffix();
/// A writer's temporary file this old is left from a crash (a write takes seconds).
const STALE_TMP_AGE: Duration = Duration::from_secs(3600);
/// Lock file in the lake root held by a running compaction.
const LOCK_FILE: &str = ".compaction.lock";

/// `[compaction]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Compact the lake on a schedule inside `labstream serve`.
    pub enabled: bool,
    /// Time between the end of one compaction run and the start of the next.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Compact a directory's topic-partition once it holds more than this many live files.
    pub min_files: usize,
    /// Most input bytes (Parquet, on disk) merged into one output file; files of at
    /// least half this size count as compacted and are left as they are.
    pub max_merge_bytes: u64,
    /// How long merged inputs stay after their output appeared, so that queries which
    /// listed them just before can finish reading them.
    #[serde(with = "humantime_serde")]
    pub delete_grace: Duration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(600),
            min_files: 8,
            max_merge_bytes: 256 * 1024 * 1024,
            delete_grace: Duration::from_secs(300),
        }
    }
}

impl CompactionConfig {
    /// Why these settings cannot work, in words for the settings file.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.interval.is_zero() {
            return Err("compaction.interval must be longer than 0s".into());
        }
        if self.max_merge_bytes < 1024 * 1024 {
            return Err("compaction.max_merge_bytes must be at least 1 MiB".into());
        }
        Ok(())
    }

    /// The options of one run.
    pub fn options(&self) -> CompactOptions {
        CompactOptions {
            min_files: self.min_files,
            max_merge_bytes: self.max_merge_bytes,
            delete_grace: self.delete_grace,
            dry_run: false,
        }
    }
}

/// What one compaction run does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactOptions {
    /// Compact a topic-partition of a directory once it has more live files than this.
    pub min_files: usize,
    /// See [`CompactionConfig::max_merge_bytes`].
    pub max_merge_bytes: u64,
    /// See [`CompactionConfig::delete_grace`].
    pub delete_grace: Duration,
    /// Plan and report only: write, rename and delete nothing.
    pub dry_run: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactionConfig::default().options()
    }
}

/// What happened in one directory. In a dry run, what would happen (rows stay 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirReport {
    pub dir: PathBuf,
    /// Live files before and after the run.
    pub files_before: usize,
    pub files_after: usize,
    /// Output files written.
    pub merges: usize,
    /// Files merged.
    pub files_merged: usize,
    pub rows_in: u64,
    pub rows_out: u64,
    pub duplicates_dropped: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Superseded files deleted (their grace period was over).
    pub deleted: usize,
    /// Superseded files kept until their grace period is over.
    pub awaiting_delete: usize,
    /// Why the directory was left (partly) uncompacted; the lake stays correct.
    pub error: Option<String>,
}

impl DirReport {
    /// Anything done or planned, or a failure.
    pub fn is_eventful(&self) -> bool {
        self.merges > 0 || self.deleted > 0 || self.error.is_some()
    }
}

/// Totals of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Directories looked at.
    pub directories: usize,
    pub files_before: usize,
    pub files_after: usize,
    pub merges: usize,
    pub files_merged: usize,
    pub rows_in: u64,
    pub rows_out: u64,
    pub duplicates_dropped: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub deleted: usize,
    pub awaiting_delete: usize,
    /// Directories whose compaction failed (see their `DirReport::error`).
    pub failed: Vec<DirReport>,
    /// The run stopped early because it was cancelled.
    pub cancelled: bool,
    pub elapsed: Duration,
}

impl CompactReport {
    fn add(&mut self, d: &DirReport) {
        self.directories += 1;
        self.files_before += d.files_before;
        self.files_after += d.files_after;
        self.merges += d.merges;
        self.files_merged += d.files_merged;
        self.rows_in += d.rows_in;
        self.rows_out += d.rows_out;
        self.duplicates_dropped += d.duplicates_dropped;
        self.bytes_in += d.bytes_in;
        self.bytes_out += d.bytes_out;
        self.deleted += d.deleted;
        self.awaiting_delete += d.awaiting_delete;
        if d.error.is_some() {
            self.failed.push(d.clone());
        }
    }
}

/// Compacts every directory of the lake at `lake_root` once. Blocking: call it from a
/// blocking thread. A failure in one directory is reported in `CompactReport::failed`
/// and leaves that directory as it was; the error is for the lake as a whole (another
/// compaction holds the lock, the lake cannot be listed).
pub fn compact(
    lake_root: &Path,
    registry: &Registry,
    options: &CompactOptions,
) -> Result<CompactReport> {
    compact_with_progress(lake_root, registry, options, |_| {})
}

/// [`compact`], calling `progress` after each directory.
pub fn compact_with_progress(
    lake_root: &Path,
    registry: &Registry,
    options: &CompactOptions,
    mut progress: impl FnMut(&DirReport),
) -> Result<CompactReport> {
    run(lake_root, registry, options, &mut progress, &|| false)
}

/// Compaction on a schedule, for `labstream serve`.
pub struct Compactor {
    lake: PathBuf,
    registry: Arc<Registry>,
    config: CompactionConfig,
}

impl Compactor {
    pub fn new(lake: PathBuf, registry: Arc<Registry>, config: CompactionConfig) -> Self {
        Self {
            lake,
            registry,
            config,
        }
    }

    /// Runs compaction every `interval` until `cancel`; a run in progress stops after
    /// the merge it is writing. A failed run is logged and retried at the next one.
    pub async fn run(self, cancel: CancellationToken) -> Result<()> {
        tracing::info!(
            lake = %self.lake.display(),
            interval = ?self.config.interval,
            "lake compaction scheduled"
        );
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.config.interval) => {}
            }
            let (lake, registry, options, c) = (
                self.lake.clone(),
                self.registry.clone(),
                self.config.options(),
                cancel.clone(),
            );
            let outcome = tokio::task::spawn_blocking(move || {
                run(&lake, &registry, &options, &mut |_| {}, &|| {
                    c.is_cancelled()
                })
            })
            .await
            .map_err(|e| Error::Internal(format!("the compaction task failed: {e}")))?;
            match outcome {
                Ok(r) if r.failed.is_empty() => tracing::info!(
                    directories = r.directories,
                    files_before = r.files_before,
                    files_after = r.files_after,
                    rows = r.rows_out,
                    duplicates_dropped = r.duplicates_dropped,
                    deleted = r.deleted,
                    seconds = r.elapsed.as_secs_f64(),
                    "lake compaction run finished"
                ),
                Ok(r) => tracing::warn!(
                    failed = r.failed.len(),
                    first = r.failed[0].error.as_deref().unwrap_or_default(),
                    "lake compaction left some directories as they were; retrying at the next run"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "lake compaction failed; retrying at the next run")
                }
            }
        }
        Ok(())
    }
}

fn run(
    root: &Path,
    registry: &Registry,
    options: &CompactOptions,
    progress: &mut dyn FnMut(&DirReport),
    stop: &dyn Fn() -> bool,
) -> Result<CompactReport> {
    let started = Instant::now();
    let mut report = CompactReport::default();
    let samples = root.join(SAMPLES_DIR);
    if !samples.is_dir() {
        return Ok(report);
    }
    let _lock = if options.dry_run {
        None
    } else {
        Some(lock(root)?)
    };
    for (dir, sensor_type) in data_dirs(&samples)? {
        if stop() {
            report.cancelled = true;
            break;
        }
        let mut d = DirReport {
            dir: dir.clone(),
            ..Default::default()
        };
        let outcome = match registry.get(&sensor_type) {
            Some(spec) => compact_dir(&dir, spec, options, stop, &mut d),
            None => Err(Error::Internal(format!(
                "sensor type {sensor_type:?} is not in the registry; its files are left as they are"
            ))),
        };
        if let Err(e) = outcome {
            tracing::warn!(dir = %dir.display(), error = %e, "compaction of a directory failed; it stays as it was");
            d.error = Some(e.to_string());
        }
        if d.is_eventful() {
            tracing::info!(
                dir = %dir.display(),
                files_before = d.files_before,
                files_after = d.files_after,
                rows_in = d.rows_in,
                rows_out = d.rows_out,
                duplicates_dropped = d.duplicates_dropped,
                bytes_in = d.bytes_in,
                bytes_out = d.bytes_out,
                deleted = d.deleted,
                dry_run = options.dry_run,
                "lake directory compacted"
            );
        }
        report.add(&d);
        progress(&d);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Only one compaction at a time may touch a lake: two could otherwise merge
/// overlapping runs and leave files that overlap without one containing the other.
fn lock(root: &Path) -> Result<File> {
    let path = root.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "another compaction is running on this lake; try again when it has finished",
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// Every directory under `samples/` that holds files, with its sensor type (the first
/// folder below `samples/`), in path order.
fn data_dirs(samples: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let mut stack = vec![samples.to_owned()];
    while let Some(dir) = stack.pop() {
        let mut has_files = false;
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(_) => has_files = true,
                Err(_) => {} // vanished while listing
            }
        }
        if has_files && dir != samples {
            let sensor_type = dir
                .strip_prefix(samples)
                .ok()
                .and_then(|rel| rel.components().next())
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((dir, sensor_type));
        }
    }
    out.sort();
    Ok(out)
}

struct LakeFile {
    name: String,
    part: PartFile,
    size: u64,
    modified: SystemTime,
}

/// The files of one directory.
struct Listing {
    live: Vec<LakeFile>,
    superseded: Vec<LakeFile>,
    temporary: Vec<(PathBuf, SystemTime)>,
}

fn list_dir(dir: &Path) -> Result<Listing> {
    let mut files = BTreeMap::new();
    let mut temporary = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let Ok(meta) = entry.metadata() else {
            continue; // deleted while listing
        };
        if !meta.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if name.ends_with(".tmp") {
            temporary.push((entry.path(), modified));
        } else if let Some(part) = PartFile::parse(&name) {
            files.insert(
                name.clone(),
                LakeFile {
                    name,
                    part,
                    size: meta.len(),
                    modified,
                },
            );
        }
    }
    let (live, superseded) = live_files(files.keys().cloned().collect::<Vec<_>>());
    let mut take = |names: Vec<String>| -> Vec<LakeFile> {
        names.into_iter().filter_map(|n| files.remove(&n)).collect()
    };
    Ok(Listing {
        live: take(live),
        superseded: take(superseded),
        temporary,
    })
}

fn compact_dir(
    dir: &Path,
    spec: &SensorTypeSpec,
    options: &CompactOptions,
    stop: &dyn Fn() -> bool,
    report: &mut DirReport,
) -> Result<()> {
    let Listing {
        live, temporary, ..
    } = list_dir(dir)?;
    report.files_before = live.len();
    report.files_after = live.len();
    if !options.dry_run {
        for (path, modified) in temporary {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.ends_with(TMP_SUFFIX) || age(modified) >= STALE_TMP_AGE {
                tracing::info!(path = %path.display(), "removing a temporary file of an interrupted write");
                remove(&path)?;
            }
        }
    }

    let schema = arrow_schema(spec);
    for inputs in plan(&live, options) {
        if stop() {
            break;
        }
        let output = PartFile {
            topic: inputs[0].part.topic.clone(),
            partition: inputs[0].part.partition,
            first_offset: inputs
                .iter()
                .map(|f| f.part.first_offset)
                .min()
                .unwrap_or(0),
            last_offset: inputs.iter().map(|f| f.part.last_offset).max().unwrap_or(0),
        };
        report.merges += 1;
        report.files_merged += inputs.len();
        report.files_after -= inputs.len() - 1;
        report.bytes_in += inputs.iter().map(|f| f.size).sum::<u64>();
        if options.dry_run {
            continue;
        }
        let stats = merge(dir, &inputs, &schema, &output.file_name())?;
        tracing::debug!(
            dir = %dir.display(),
            output = %output.file_name(),
            files_in = inputs.len(),
            rows_in = stats.rows_in,
            rows_out = stats.rows_out,
            "merged"
        );
        report.rows_in += stats.rows_in;
        report.rows_out += stats.rows_out;
        report.duplicates_dropped += stats.rows_in - stats.rows_out;
        report.bytes_out += stats.bytes_out;
    }

    // Superseded files go once no reader can still be using them: a reader that listed
    // the directory after their first superseding file appeared never opens them.
    labstream_schemas::crash_point("compaction.renamed_before_delete");
    let Listing {
        live, superseded, ..
    } = list_dir(dir)?;
    if !options.dry_run {
        report.files_after = live.len();
    }
    for s in superseded {
        let since = live
            .iter()
            .filter(|l| l.part.contains(&s.part))
            .map(|l| l.modified)
            .min();
        // Every superseded file has a live container; without one it would be live.
        let Some(since) = since else { continue };
        if age(since) < options.delete_grace {
            report.awaiting_delete += 1;
            continue;
        }
        report.deleted += 1;
        if !options.dry_run {
            tracing::debug!(dir = %dir.display(), file = %s.name, "deleting a superseded file");
            remove(&dir.join(&s.name))?;
        }
    }
    Ok(())
}

fn age(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or_default()
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests;
