//! Lake compaction: per directory and topic-partition, merges runs of small live files
//! into one file sorted by (sensor_id, ts, seq), named by the union of their offset
//! ranges, and drops rows whose dedupe key repeats (the first by offset order stays).
//!
//! Guarantee: at every instant each row is in exactly one live file. The output is
//! written under a temporary name, synced and renamed, then the directory is synced;
//! from then on its name supersedes the inputs (`lake_layout::live_files`), so a reader
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

use crate::error::{Error, Result};
use crate::lake::batch::arrow_schema;
use crate::lake::layout::{PartFile, SAMPLES_DIR, live_files};
use crate::lake::writer::{MAX_ROW_GROUP_ROWS, io, writer_properties};
use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::compute::interleave_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use labstream_schemas::{Registry, SensorTypeSpec};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
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
const TMP_SUFFIX: &str = ".compact.tmp";
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
        .map_err(|e| io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "another compaction is running on this lake; try again when it has finished",
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&path, e)),
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
            Err(e) => return Err(io(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io(&dir, e))?;
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
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
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

/// Which live files to merge: per topic-partition with more than `min_files` live
/// files, runs of consecutive small files (by offset) of at most `max_merge_bytes` and
/// `MAX_FAN_IN` files. Only consecutive live files may be merged: the output's range
/// would otherwise contain a file that is not in it, and hide that file's rows.
fn plan<'a>(live: &'a [LakeFile], options: &CompactOptions) -> Vec<Vec<&'a LakeFile>> {
    let mut groups: BTreeMap<(&str, i32), Vec<&LakeFile>> = BTreeMap::new();
    for f in live {
        groups
            .entry((f.part.topic.as_str(), f.part.partition))
            .or_default()
            .push(f);
    }
    let large = options.max_merge_bytes / 2;
    let mut sets = Vec::new();
    for mut files in groups.into_values() {
        if files.len() <= options.min_files {
            continue;
        }
        files.sort_by_key(|f| f.part.first_offset);
        let mut run: Vec<&LakeFile> = Vec::new();
        let mut run_bytes = 0;
        for f in files {
            let full = run.len() == MAX_FAN_IN || run_bytes + f.size > options.max_merge_bytes;
            if f.size >= large || full {
                let done = std::mem::take(&mut run);
                if done.len() >= 2 {
                    sets.push(done);
                }
                run_bytes = 0;
            }
            if f.size < large {
                run_bytes += f.size;
                run.push(f);
            }
        }
        if run.len() >= 2 {
            sets.push(run);
        }
    }
    sets
}

struct MergeStats {
    rows_in: u64,
    rows_out: u64,
    bytes_out: u64,
}

/// One input of the merge: its current batch, projected to the table's schema, and the
/// sort keys of that batch.
struct Cursor {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    /// Per column of the table: its index in the file, or `None` (a field the file's
    /// registry did not have yet: all null).
    columns: Vec<Option<usize>>,
    batch: Option<RecordBatch>,
    keys: Option<Rows>,
    row: usize,
    rows_read: u64,
    /// Rows the file holds, by its footer.
    rows_in_file: u64,
}

impl Cursor {
    fn open(path: PathBuf, schema: &SchemaRef, batch_rows: usize) -> Result<Self> {
        let file = File::open(&path).map_err(|e| io(&path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(&path, e))?;
        let file_schema = builder.schema().clone();
        let rows_in_file =
            u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        for f in file_schema.fields() {
            if schema.field_with_name(f.name()).is_err() {
                return Err(Error::Parquet(format!(
                    "{} has column {:?}, which the registry no longer lists; the directory is left uncompacted so that nothing is lost",
                    path.display(),
                    f.name()
                )));
            }
        }
        let mut columns = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            match file_schema.index_of(field.name()) {
                Ok(i) if file_schema.field(i).data_type() == field.data_type() => {
                    columns.push(Some(i))
                }
                Ok(i) => {
                    return Err(Error::Parquet(format!(
                        "column {:?} of {} is {} but the registry says {}; the directory is left uncompacted",
                        field.name(),
                        path.display(),
                        file_schema.field(i).data_type(),
                        field.data_type()
                    )));
                }
                Err(_) if field.is_nullable() => columns.push(None),
                Err(_) => {
                    return Err(Error::Parquet(format!(
                        "{} lacks the column {:?}",
                        path.display(),
                        field.name()
                    )));
                }
            }
        }
        let reader = builder
            .with_batch_size(batch_rows)
            .build()
            .map_err(|e| parquet_error(&path, e))?;
        Ok(Self {
            path,
            reader,
            columns,
            batch: None,
            keys: None,
            row: 0,
            rows_read: 0,
            rows_in_file,
        })
    }

    /// Loads the next non-empty batch; false at the end of the file.
    fn load_next(&mut self, schema: &SchemaRef, converter: &RowConverter) -> Result<bool> {
        self.batch = None;
        self.keys = None;
        self.row = 0;
        for next in self.reader.by_ref() {
            let batch =
                next.map_err(|e| Error::Parquet(format!("{}: {e}", self.path.display())))?;
            if batch.num_rows() == 0 {
                continue;
            }
            let n = batch.num_rows();
            let columns: Vec<ArrayRef> = self
                .columns
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| match c {
                    Some(i) => batch.column(*i).clone(),
                    None => new_null_array(f.data_type(), n),
                })
                .collect();
            let batch = RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| Error::Parquet(format!("{}: {e}", self.path.display())))?;
            // The dedupe key: sensor_id, ts, seq are the first three columns.
            let keys = converter
                .convert_columns(&batch.columns()[..3])
                .map_err(|e| Error::Parquet(e.to_string()))?;
            self.rows_read += n as u64;
            self.batch = Some(batch);
            self.keys = Some(keys);
            return Ok(true);
        }
        Ok(false)
    }

    fn key(&self) -> Option<OwnedRow> {
        self.keys.as_ref().map(|k| k.row(self.row).owned())
    }

    fn len(&self) -> usize {
        self.batch.as_ref().map_or(0, RecordBatch::num_rows)
    }
}

/// Merges `inputs` (offset order) into `dir/name`: temporary file, fsync, rename, fsync
/// of the directory. On error the temporary file is removed and nothing changed.
fn merge(dir: &Path, inputs: &[&LakeFile], schema: &SchemaRef, name: &str) -> Result<MergeStats> {
    let final_path = dir.join(name);
    if final_path.exists() {
        return Err(Error::Internal(format!(
            "{} exists already; it would be replaced, not written",
            final_path.display()
        )));
    }
    let tmp_path = dir.join(format!(".{name}{TMP_SUFFIX}"));
    let result = write_merged(dir, inputs, schema, &tmp_path);
    let stats = match result {
        Ok(stats) => stats,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(e);
        }
    };
    labstream_schemas::crash_point("compaction.merged_before_rename");
    std::fs::rename(&tmp_path, &final_path).map_err(|e| io(&final_path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))?;
    Ok(stats)
}

fn write_merged(
    dir: &Path,
    inputs: &[&LakeFile],
    schema: &SchemaRef,
    tmp_path: &Path,
) -> Result<MergeStats> {
    let converter = RowConverter::new(
        schema.fields()[..3]
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )
    .map_err(|e| Error::Parquet(e.to_string()))?;
    let batch_rows = (MERGE_ROWS_BUDGET / inputs.len().max(1)).clamp(1024, OUTPUT_BATCH_ROWS);
    let mut cursors = inputs
        .iter()
        .map(|f| Cursor::open(dir.join(&f.name), schema, batch_rows))
        .collect::<Result<Vec<_>>>()?;

    let rows_in = cursors.iter().map(|c| c.rows_in_file).sum::<u64>();
    let file = File::create(tmp_path).map_err(|e| io(tmp_path, e))?;
    let mut writer = ArrowWriter::try_new(
        file,
        schema.clone(),
        Some(writer_properties(MAX_ROW_GROUP_ROWS, rows_in)),
    )
    .map_err(|e| Error::Parquet(e.to_string()))?;
    let empty = RecordBatch::new_empty(schema.clone());
    let mut rows_out = 0u64;
    let mut pending: Vec<(usize, usize)> = Vec::with_capacity(OUTPUT_BATCH_ROWS);
    let mut flush = |cursors: &[Cursor], pending: &mut Vec<(usize, usize)>| -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let batches: Vec<&RecordBatch> = cursors
            .iter()
            .map(|c| c.batch.as_ref().unwrap_or(&empty))
            .collect();
        let out = interleave_record_batch(&batches, pending)
            .map_err(|e| Error::Parquet(e.to_string()))?;
        writer
            .write(&out)
            .map_err(|e| Error::Parquet(e.to_string()))?;
        rows_out += out.num_rows() as u64;
        pending.clear();
        Ok(())
    };

    // Ties on the key go to the lower input index: the earlier offsets win.
    let mut heap: BinaryHeap<Reverse<(OwnedRow, usize)>> = BinaryHeap::new();
    for (i, c) in cursors.iter_mut().enumerate() {
        if c.load_next(schema, &converter)?
            && let Some(k) = c.key()
        {
            heap.push(Reverse((k, i)));
        }
    }
    let mut last: Option<OwnedRow> = None;
    while let Some(Reverse((key, i))) = heap.pop() {
        match &last {
            Some(l) if *l == key => {} // a duplicate of the dedupe key: dropped
            Some(l) if *l > key => {
                return Err(Error::Parquet(format!(
                    "{} is not sorted by (sensor_id, ts, seq); the directory is left uncompacted",
                    cursors[i].path.display()
                )));
            }
            _ => pending.push((i, cursors[i].row)),
        }
        last = Some(key);
        let c = &mut cursors[i];
        if c.row + 1 < c.len() {
            c.row += 1;
        } else {
            // Pending rows may point into the batch about to be replaced.
            flush(&cursors, &mut pending)?;
            if !cursors[i].load_next(schema, &converter)? {
                continue;
            }
        }
        if let Some(k) = cursors[i].key() {
            heap.push(Reverse((k, i)));
        }
        if pending.len() >= OUTPUT_BATCH_ROWS {
            flush(&cursors, &mut pending)?;
        }
    }
    flush(&cursors, &mut pending)?;
    let file = writer
        .into_inner()
        .map_err(|e| Error::Parquet(e.to_string()))?;
    file.sync_all().map_err(|e| io(tmp_path, e))?;
    let bytes_out = file.metadata().map_err(|e| io(tmp_path, e))?.len();
    Ok(MergeStats {
        rows_in: cursors.iter().map(|c| c.rows_read).sum(),
        rows_out,
        bytes_out,
    })
}

fn parquet_error(path: &Path, e: parquet::errors::ParquetError) -> Error {
    Error::Parquet(format!("{}: {e}", path.display()))
}

fn age(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or_default()
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::test_support::{T0, TOPIC, bloom_filter_answers, record, registry, sample};
    use crate::lake::writer::{Added, LakeWriter};
    use arrow::array::{Array, AsArray, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
    use labstream_schemas::lake_layout::{NO_EXPERIMENT, table_dir};

    fn dir(root: &Path) -> PathBuf {
        table_dir(
            root,
            "temperature",
            chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            NO_EXPERIMENT,
        )
    }

    /// Writes `files` flushes of `per_file` samples of partition 0, offsets from `first`,
    /// sensor ids and timestamps interleaved so that every file spans the whole key range.
    fn write_lake(root: &Path, registry: Registry, first: i64, files: i64, per_file: i64) {
        let mut w = LakeWriter::open(root, Arc::new(registry)).unwrap();
        let mut offset = first;
        for f in 0..files {
            for i in 0..per_file {
                let n = f * per_file + i;
                let s = sample(
                    &format!("s{}", n % 4),
                    T0 + (n * 7919 % 1000) * 1_000_000 + n,
                    Some(n),
                    n as f64,
                    None,
                );
                w.add(&record(0, offset), s);
                offset += 1;
            }
            w.flush().unwrap();
        }
    }

    type Row = (String, i64, Option<i64>, Option<f64>, Option<i64>);

    /// The rows of the live files of `dir`, in file order and row order.
    fn live_rows(dir: &Path) -> Vec<Row> {
        let live = list_dir(dir).unwrap().live;
        let mut out = Vec::new();
        for f in live {
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(File::open(dir.join(&f.name)).unwrap())
                    .unwrap()
                    .build()
                    .unwrap();
            for b in reader {
                let b = b.unwrap();
                let ids = b.column_by_name("sensor_id").unwrap();
                let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
                let ts = b.column_by_name("ts").unwrap();
                let ts = ts.as_primitive::<TimestampMicrosecondType>();
                let seq = b.column_by_name("seq").unwrap();
                let seq = seq.as_primitive::<Int64Type>();
                let c = b.column_by_name("celsius").unwrap();
                let c = c.as_any().downcast_ref::<Float64Array>().unwrap();
                let raw = b
                    .column_by_name("raw")
                    .map(|r| r.as_any().downcast_ref::<Int64Array>().unwrap().clone());
                for i in 0..b.num_rows() {
                    out.push((
                        ids.value(i).to_owned(),
                        ts.value(i),
                        seq.is_valid(i).then(|| seq.value(i)),
                        c.is_valid(i).then(|| c.value(i)),
                        raw.as_ref().and_then(|r| r.is_valid(i).then(|| r.value(i))),
                    ));
                }
            }
        }
        out
    }

    fn file_names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn options(min_files: usize, delete_grace: Duration) -> CompactOptions {
        CompactOptions {
            min_files,
            delete_grace,
            ..Default::default()
        }
    }

    fn key(r: &Row) -> (&str, i64, Option<i64>) {
        (r.0.as_str(), r.1, r.2)
    }

    /// A partition read again from an earlier offset (its consumer was rewound, or it
    /// was revoked and assigned again) delivers records the writer holds already: they
    /// are neither buffered twice nor written again after the flush.
    #[test]
    fn a_record_delivered_again_is_written_once() {
        let root = tempfile::tempdir().unwrap();
        let mut w = LakeWriter::open(root.path(), Arc::new(registry(false))).unwrap();
        let s = |n: i64| sample("s1", T0 + n, Some(n), n as f64, None);
        for offset in 10..13 {
            assert_eq!(w.add(&record(0, offset), s(offset)), Added::Buffered);
        }
        // Read again from offset 10 before the flush: already buffered.
        for offset in 10..13 {
            assert_eq!(w.add(&record(0, offset), s(offset)), Added::AlreadyInLake);
        }
        assert_eq!(w.add(&record(0, 13), s(13)), Added::Buffered);
        // Another partition's offsets are its own.
        assert_eq!(w.add(&record(1, 10), s(100)), Added::Buffered);
        assert_eq!(w.buffered_rows(), 5);
        w.flush().unwrap();
        // And again after the flush: in the lake already.
        assert_eq!(w.add(&record(0, 12), s(12)), Added::AlreadyInLake);
        assert_eq!(w.add(&record(0, 14), s(14)), Added::Buffered);
        w.flush().unwrap();
        let rows = live_rows(&dir(root.path()));
        let mut seqs: Vec<i64> = rows.iter().map(|r| r.2.unwrap()).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, [10, 11, 12, 13, 14, 100]);
    }

    #[test]
    fn many_small_files_become_one_sorted_file_with_the_same_rows() {
        let root = tempfile::tempdir().unwrap();
        write_lake(root.path(), registry(false), 0, 20, 50);
        let d = dir(root.path());
        let mut before = live_rows(&d);
        assert_eq!(before.len(), 1000);
        assert_eq!(list_dir(&d).unwrap().live.len(), 20);

        let mut seen = Vec::new();
        let report = compact_with_progress(
            root.path(),
            &registry(false),
            &options(8, Duration::from_secs(3600)),
            |d| seen.push(d.clone()),
        )
        .unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (report.files_before, report.files_after, report.merges),
            (20, 1, 1)
        );
        assert_eq!((report.rows_in, report.rows_out), (1000, 1000));
        assert_eq!(report.duplicates_dropped, 0);
        assert!(report.failed.is_empty());
        // The inputs stay for their grace period, superseded by the output.
        assert_eq!(report.awaiting_delete, 20);
        let names = file_names(&d);
        assert_eq!(names.len(), 21);
        assert!(
            names.contains(
                &PartFile {
                    topic: TOPIC.into(),
                    partition: 0,
                    first_offset: 0,
                    last_offset: 999
                }
                .file_name()
            )
        );

        let after = live_rows(&d);
        assert!(
            after.windows(2).all(|w| key(&w[0]) < key(&w[1])),
            "the output is sorted by (sensor_id, ts, seq)"
        );
        before.sort_by(|a, b| key(a).cmp(&key(b)));
        assert_eq!(after, before);
        // The output has the bloom filters of a lake file, with every sensor in them.
        let output = d.join(list_dir(&d).unwrap().live[0].name.clone());
        for sensor in ["s0", "s1", "s2", "s3"] {
            let answers = bloom_filter_answers(&output, "sensor_id", sensor);
            assert!(
                answers.iter().all(|(a, _)| *a == Some(true)),
                "{sensor}: {answers:?}"
            );
        }
        let answers = bloom_filter_answers(&output, "sensor_id", "s9");
        assert!(
            answers.iter().all(|(a, _)| *a == Some(false)),
            "{answers:?}"
        );

        // The next run past the grace period deletes the inputs and merges nothing.
        let report = compact(root.path(), &registry(false), &options(8, Duration::ZERO)).unwrap();
        assert_eq!((report.merges, report.deleted), (0, 20));
        assert_eq!(file_names(&d).len(), 1);
        assert_eq!(live_rows(&d), after);
    }

    #[test]
    fn few_files_are_left_alone_and_topic_partitions_merge_separately() {
        let root = tempfile::tempdir().unwrap();
        let mut w = LakeWriter::open(root.path(), Arc::new(registry(false))).unwrap();
        for f in 0..5 {
            for p in 0..2 {
                w.add(&record(p, f), sample("a", T0 + f, None, 1.0, None));
            }
            w.flush().unwrap();
        }
        let d = dir(root.path());
        let r = compact(root.path(), &registry(false), &options(5, Duration::ZERO)).unwrap();
        assert_eq!((r.merges, r.files_after), (0, 10));
        let r = compact(root.path(), &registry(false), &options(4, Duration::ZERO)).unwrap();
        assert_eq!((r.merges, r.files_before, r.files_after), (2, 10, 2));
        assert_eq!(r.deleted, 10);
        assert_eq!(
            file_names(&d),
            [
                "part-t.samples.raw-p0-00000000000000000000-00000000000000000004.parquet",
                "part-t.samples.raw-p1-00000000000000000000-00000000000000000004.parquet"
            ]
        );
        assert_eq!(live_rows(&d).len(), 10);
    }

    #[test]
    fn duplicates_of_the_dedupe_key_are_dropped_keeping_the_first_by_offset() {
        let root = tempfile::tempdir().unwrap();
        let mut w = LakeWriter::open(root.path(), Arc::new(registry(false))).unwrap();
        // The same reading posted three times (a sender's retries), twice in one file,
        // once in a later file, with a different value each time so we see which stays;
        // and a reading without seq, twice.
        w.add(&record(0, 0), sample("a", T0, Some(1), 1.0, None));
        w.add(&record(0, 1), sample("a", T0, Some(1), 2.0, None));
        w.add(&record(0, 2), sample("a", T0, None, 5.0, None));
        w.add(&record(0, 3), sample("b", T0, Some(1), 7.0, None));
        w.flush().unwrap();
        w.add(&record(0, 4), sample("a", T0, Some(1), 3.0, None));
        w.add(&record(0, 5), sample("a", T0, None, 6.0, None));
        w.add(&record(0, 6), sample("a", T0, Some(2), 4.0, None));
        w.flush().unwrap();
        let r = compact(root.path(), &registry(false), &options(1, Duration::ZERO)).unwrap();
        assert_eq!((r.rows_in, r.rows_out, r.duplicates_dropped), (7, 4, 3));
        let rows: Vec<(String, Option<i64>, Option<f64>)> = live_rows(&dir(root.path()))
            .into_iter()
            .map(|r| (r.0, r.2, r.3))
            .collect();
        assert_eq!(
            rows,
            [
                ("a".to_owned(), None, Some(5.0)),
                ("a".to_owned(), Some(1), Some(1.0)),
                ("a".to_owned(), Some(2), Some(4.0)),
                ("b".to_owned(), Some(1), Some(7.0)),
            ]
        );
    }

    #[test]
    fn files_of_an_older_registry_merge_into_the_current_schema() {
        let root = tempfile::tempdir().unwrap();
        write_lake(root.path(), registry(false), 0, 3, 10);
        let mut w = LakeWriter::open(root.path(), Arc::new(registry(true))).unwrap();
        for i in 0..10 {
            w.add(&record(0, 30 + i), sample("n", T0 + i, None, 0.5, Some(i)));
            if i % 5 == 4 {
                w.flush().unwrap();
            }
        }
        let r = compact(root.path(), &registry(true), &options(1, Duration::ZERO)).unwrap();
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        assert_eq!((r.files_before, r.files_after, r.rows_out), (5, 1, 40));
        let rows = live_rows(&dir(root.path()));
        assert_eq!(rows.iter().filter(|r| r.4.is_some()).count(), 10);
        assert!(
            rows.iter()
                .filter(|r| r.0 != "n")
                .all(|r| r.4.is_none() && r.3.is_some())
        );
        let live = list_dir(&dir(root.path())).unwrap().live;
        let file = File::open(dir(root.path()).join(&live[0].name)).unwrap();
        let schema = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .schema()
            .clone();
        assert_eq!(
            schema.fields(),
            arrow_schema(registry(true).get("temperature").unwrap()).fields()
        );
    }

    #[test]
    fn a_file_with_a_column_the_registry_lost_is_left_uncompacted() {
        let root = tempfile::tempdir().unwrap();
        let mut w = LakeWriter::open(root.path(), Arc::new(registry(true))).unwrap();
        for i in 0..3 {
            w.add(&record(0, i), sample("a", T0 + i, None, 0.5, Some(i)));
            w.flush().unwrap();
        }
        let d = dir(root.path());
        let before = file_names(&d);
        let r = compact(root.path(), &registry(false), &options(1, Duration::ZERO)).unwrap();
        assert_eq!(r.failed.len(), 1);
        let error = r.failed[0].error.as_deref().unwrap();
        assert!(error.contains("\"raw\""), "{error}");
        assert_eq!(file_names(&d), before, "nothing written, nothing deleted");
    }

    #[test]
    fn crash_leftovers_are_harmless_and_cleaned_up() {
        let root = tempfile::tempdir().unwrap();
        write_lake(root.path(), registry(false), 0, 4, 5);
        let d = dir(root.path());
        let rows = live_rows(&d);
        // A crash before the rename leaves a half-written output, and a writer's crash
        // an old temporary file; a writer's temporary file in progress is fresh.
        let half = d.join(
            ".part-t.samples.raw-p0-00000000000000000000-00000000000000000019.parquet.compact.tmp",
        );
        std::fs::write(&half, b"PAR1 half").unwrap();
        let old =
            d.join(".part-t.samples.raw-p0-00000000000000000020-00000000000000000029.parquet.tmp");
        std::fs::write(&old, b"PAR1").unwrap();
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - 2 * STALE_TMP_AGE)
            .unwrap();
        let fresh =
            d.join(".part-t.samples.raw-p0-00000000000000000030-00000000000000000039.parquet.tmp");
        std::fs::write(&fresh, b"PAR1").unwrap();
        assert_eq!(live_rows(&d), rows, "temporary files are not lake files");

        let r = compact(
            root.path(),
            &registry(false),
            &options(1, Duration::from_secs(3600)),
        )
        .unwrap();
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        assert!(!half.exists() && !old.exists() && fresh.exists());
        // A crash after the rename leaves the output and all its inputs: read once.
        assert_eq!(file_names(&d).len(), 4 + 1 + 1);
        let mut sorted = rows.clone();
        sorted.sort_by(|a, b| key(a).cmp(&key(b)));
        assert_eq!(live_rows(&d), sorted);
    }

    #[test]
    fn a_dry_run_changes_nothing() {
        let root = tempfile::tempdir().unwrap();
        write_lake(root.path(), registry(false), 0, 10, 3);
        let d = dir(root.path());
        let tmp = d.join(".x.compact.tmp");
        std::fs::write(&tmp, b"").unwrap();
        let before = file_names(&d);
        let r = compact(
            root.path(),
            &registry(false),
            &CompactOptions {
                dry_run: true,
                ..options(1, Duration::ZERO)
            },
        )
        .unwrap();
        assert_eq!((r.files_before, r.files_after, r.merges), (10, 1, 1));
        assert_eq!(r.rows_out, 0);
        assert_eq!(file_names(&d), before);
    }

    #[test]
    fn one_compaction_at_a_time() {
        let root = tempfile::tempdir().unwrap();
        write_lake(root.path(), registry(false), 0, 3, 3);
        let held = lock(root.path()).unwrap();
        let err = compact(root.path(), &registry(false), &options(1, Duration::ZERO)).unwrap_err();
        assert!(err.to_string().contains("another compaction"), "{err}");
        drop(held);
        let r = compact(root.path(), &registry(false), &options(1, Duration::ZERO)).unwrap();
        assert_eq!(r.files_after, 1);
    }

    #[test]
    fn unsorted_input_is_refused() {
        let root = tempfile::tempdir().unwrap();
        write_lake(root.path(), registry(false), 0, 2, 3);
        let d = dir(root.path());
        // A foreign file: right name, rows in reverse order.
        let spec = registry(false).get("temperature").unwrap().clone();
        let mut samples: Vec<_> = (0..3)
            .map(|i| labstream_schemas::experiment::EnrichedSample {
                sample: sample("z", T0 + i, None, 1.0, None),
                context: None,
            })
            .collect();
        let batch = crate::lake::batch::to_record_batch(&spec, &mut samples).unwrap();
        let reversed = arrow::compute::take_record_batch(
            &batch,
            &arrow::array::UInt32Array::from(vec![2, 1, 0]),
        )
        .unwrap();
        let name = PartFile {
            topic: TOPIC.into(),
            partition: 0,
            first_offset: 100,
            last_offset: 102,
        }
        .file_name();
        let mut w =
            ArrowWriter::try_new(File::create(d.join(&name)).unwrap(), batch.schema(), None)
                .unwrap();
        w.write(&reversed).unwrap();
        w.close().unwrap();
        let before = file_names(&d);
        let r = compact(root.path(), &registry(false), &options(1, Duration::ZERO)).unwrap();
        let error = r.failed[0].error.as_deref().unwrap();
        assert!(error.contains("not sorted"), "{error}");
        assert_eq!(file_names(&d), before);
    }

    #[test]
    fn plans_merge_only_consecutive_small_files() {
        let f = |first: i64, size: u64| LakeFile {
            name: String::new(),
            part: PartFile {
                topic: TOPIC.into(),
                partition: 0,
                first_offset: first,
                last_offset: first + 9,
            },
            size,
            modified: SystemTime::now(),
        };
        let o = CompactOptions {
            min_files: 1,
            max_merge_bytes: 100,
            ..Default::default()
        };
        // A large file (>= 50) splits the runs; a run stops before 100 bytes.
        let live = [
            f(0, 10),
            f(10, 10),
            f(20, 60),
            f(30, 40),
            f(40, 40),
            f(50, 40),
            f(60, 5),
        ];
        let firsts: Vec<Vec<i64>> = plan(&live, &o)
            .iter()
            .map(|s| s.iter().map(|f| f.part.first_offset).collect())
            .collect();
        assert_eq!(firsts, [vec![0, 10], vec![30, 40], vec![50, 60]]);
        // More than MAX_FAN_IN small files: several outputs.
        let many: Vec<LakeFile> = (0..(MAX_FAN_IN as i64 + 10))
            .map(|i| f(i * 10, 1))
            .collect();
        let sizes: Vec<usize> = plan(&many, &o).iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_FAN_IN, 10]);
        assert!(
            plan(
                &many,
                &CompactOptions {
                    min_files: many.len(),
                    ..o.clone()
                }
            )
            .is_empty()
        );
    }

    #[test]
    fn settings_are_validated() {
        assert!(CompactionConfig::default().validate().is_ok());
        let zero = CompactionConfig {
            interval: Duration::ZERO,
            ..Default::default()
        };
        assert!(zero.validate().unwrap_err().contains("interval"));
    }
}
