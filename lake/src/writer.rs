//! Buffers decoded samples per lake directory and topic-partition and writes each
//! buffer as one Parquet file: temporary name, fsync, rename, fsync of the directory.

use crate::batch::ColumnBuffer;
use crate::error::{Error, Result};
use crate::file::{Staging, write_batch};
use crate::layout::{NO_EXPERIMENT, PartFile, SAMPLES_DIR, table_dir};
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use labstream_schemas::experiment::EnrichedSample;
use labstream_schemas::{Registry, SampleView};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per Parquet row group in lake files: large enough for good compression and
/// few footer entries, small enough that statistics prune within a day's file.
pub(crate) const MAX_ROW_GROUP_ROWS: usize = 128 * 1024;

/// Where a sample comes from in the log: its topic-partition and offset, which name
/// the file that holds it and tell a sample already in the lake from a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogPosition<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// What `LakeWriter::add` did with a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    Buffered,
    /// A file of an earlier run already holds this record (re-delivery or replay), or
    /// it is buffered already (its partition was read again from an earlier offset).
    AlreadyInLake,
    /// The record cannot be placed: the reason, for the dead-letter queue.
    Rejected(String),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct DirKey {
    sensor_type: String,
    date: NaiveDate,
    experiment: String,
}

/// A lake directory, interned: records name it by index, so adding one allocates
/// neither a path nor a string.
struct Dir {
    key: DirKey,
    path: PathBuf,
}

/// (directory, topic, partition), all interned.
type SlotKey = (u32, u32, i32);

/// A lake directory with what a sample must have to belong in it: its sensor type, its
/// experiment and a `ts` within its day (µs, UTC).
struct LastDir {
    sensor_type: String,
    experiment: String,
    day: std::ops::Range<i64>,
    dir: u32,
}

impl LastDir {
    fn new(sensor_type: &str, experiment: &str, date: NaiveDate, dir: u32) -> Self {
        let start = date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_micros();
        Self {
            sensor_type: sensor_type.to_owned(),
            experiment: experiment.to_owned(),
            day: start..start + 86_400_000_000,
            dir,
        }
    }

    fn holds(&self, sensor_type: &str, experiment: &str, ts: i64) -> bool {
        self.day.contains(&ts) && self.sensor_type == sensor_type && self.experiment == experiment
    }
}

struct Buffer {
    first_offset: i64,
    last_offset: i64,
    rows: usize,
    bytes: usize,
    columns: ColumnBuffer,
    /// Built from `columns` by a flush whose write failed: written by the next one.
    built: Option<RecordBatch>,
}

pub struct LakeWriter {
    root: PathBuf,
    registry: Arc<Registry>,
    /// sensor type -> experiment -> date -> index in `dirs`.
    dir_ids: HashMap<String, HashMap<String, HashMap<NaiveDate, u32>>>,
    dirs: Vec<Dir>,
    /// Topic names by index (a sink reads one or two topics).
    topics: Vec<String>,
    /// By interned slot: hashed per record, so with a fast hash for small integers.
    buffers: FxHashMap<SlotKey, Buffer>,
    /// Highest offset already in a file, per directory and topic-partition.
    high_water: HashMap<(PathBuf, String, i32), i64>,
    /// `high_water` by interned key, filled on first use; cleared when it changes.
    high_water_by_slot: FxHashMap<SlotKey, Option<i64>>,
    /// The directory of the last record added: the next is usually of the same sensor
    /// type, experiment and day (a partition's records come in runs).
    last_dir: Option<LastDir>,
    rows: usize,
    bytes: usize,
    max_row_group_rows: usize,
}

impl LakeWriter {
    /// Opens the lake at `root`: removes temporary files of an interrupted write and
    /// reads the offset ranges of the files already there.
    pub fn open(root: &Path, registry: Arc<Registry>) -> Result<Self> {
        let high_water = scan_high_water(root)?;
        Ok(Self {
            root: root.to_owned(),
            registry,
            dir_ids: HashMap::new(),
            dirs: Vec::new(),
            topics: Vec::new(),
            buffers: FxHashMap::default(),
            high_water,
            high_water_by_slot: FxHashMap::default(),
            last_dir: None,
            rows: 0,
            bytes: 0,
            max_row_group_rows: MAX_ROW_GROUP_ROWS,
        })
    }

    /// Re-reads the offset ranges in the lake. Needed when partitions move between
    /// sink instances: files the previous owner wrote must not be written again.
    pub fn reload_high_water(&mut self) -> Result<()> {
        self.high_water = scan_high_water(&self.root)?;
        self.high_water_by_slot.clear();
        Ok(())
    }

    /// Drops the buffered records of the topic-partitions for which `keep` is false
    /// (revoked from this instance: their new owner reads them again from the last
    /// commit, so writing them here would duplicate them).
    pub fn retain_partitions(&mut self, keep: impl Fn(&str, i32) -> bool) {
        let mut dropped = 0usize;
        let topics = &self.topics;
        self.buffers.retain(|&(_, topic, partition), buffer| {
            let k = keep(&topics[topic as usize], partition);
            if !k {
                dropped += buffer.rows;
                self.rows -= buffer.rows;
                self.bytes -= buffer.bytes;
            }
            k
        });
        if dropped > 0 {
            tracing::info!(dropped, "dropped buffered records of revoked partitions");
        }
    }

    pub fn buffered_rows(&self) -> usize {
        self.rows
    }

    /// The bytes the buffered rows take in their columns.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    fn dir_id(&mut self, sensor_type: &str, experiment: &str, date: NaiveDate) -> u32 {
        if let Some(&id) = self
            .dir_ids
            .get(sensor_type)
            .and_then(|e| e.get(experiment))
            .and_then(|d| d.get(&date))
        {
            return id;
        }
        let id = u32::try_from(self.dirs.len()).expect("fewer than 2^32 lake directories");
        let key = DirKey {
            sensor_type: sensor_type.to_owned(),
            date,
            experiment: experiment.to_owned(),
        };
        let path = table_dir(&self.root, &key.sensor_type, date, &key.experiment);
        self.dirs.push(Dir { key, path });
        self.dir_ids
            .entry(sensor_type.to_owned())
            .or_default()
            .entry(experiment.to_owned())
            .or_default()
            .insert(date, id);
        id
    }

    fn topic_id(&mut self, topic: &str) -> u32 {
        match self.topics.iter().position(|t| t == topic) {
            Some(i) => i as u32,
            None => {
                self.topics.push(topic.to_owned());
                (self.topics.len() - 1) as u32
            }
        }
    }

    pub fn add(&mut self, record: LogPosition<'_>, enriched: impl Into<EnrichedSample>) -> Added {
        let enriched = enriched.into();
        self.add_view(record, &SampleView::of(&enriched))
    }

    /// `add` of a sample borrowed from its message (`Codec::decode_view`).
    pub fn add_view(&mut self, record: LogPosition<'_>, sample: &SampleView<'_>) -> Added {
        let experiment = sample
            .context
            .as_ref()
            .map_or(NO_EXPERIMENT, |c| c.experiment_id);
        let ts = sample.ts.as_micros();
        let dir = match &self.last_dir {
            Some(last) if last.holds(sample.sensor_type, experiment, ts) => last.dir,
            _ => {
                if self.registry.get(sample.sensor_type).is_none() {
                    return Added::Rejected(format!(
                        "sensor_type {:?} is not in the registry of the lake sink",
                        sample.sensor_type
                    ));
                }
                let Some(date) = sample.ts.to_datetime().map(|dt| dt.date_naive()) else {
                    return Added::Rejected(format!("ts {ts} is out of range"));
                };
                let dir = self.dir_id(sample.sensor_type, experiment, date);
                self.last_dir = Some(LastDir::new(sample.sensor_type, experiment, date, dir));
                dir
            }
        };
        let topic = self.topic_id(record.topic);
        let slot = (dir, topic, record.partition);
        let hw = match self.high_water_by_slot.get(&slot) {
            Some(&hw) => hw,
            None => {
                let hw = self
                    .high_water
                    .get(&(
                        self.dirs[dir as usize].path.clone(),
                        record.topic.to_owned(),
                        record.partition,
                    ))
                    .copied();
                self.high_water_by_slot.insert(slot, hw);
                hw
            }
        };
        if hw.is_some_and(|hw| record.offset <= hw) {
            return Added::AlreadyInLake;
        }
        let registry = &self.registry;
        let buffer = self.buffers.entry(slot).or_insert_with(|| Buffer {
            first_offset: record.offset,
            last_offset: record.offset,
            rows: 0,
            bytes: 0,
            columns: ColumnBuffer::new(
                registry
                    .get(sample.sensor_type)
                    .expect("checked when its directory was"),
            ),
            built: None,
        });
        if buffer.rows > 0 && record.offset <= buffer.last_offset {
            return Added::AlreadyInLake;
        }
        let before = buffer.columns.bytes();
        if let Err(e) = buffer.columns.push(sample) {
            return Added::Rejected(format!("the sample does not fit its table: {e}"));
        }
        let bytes = buffer.columns.bytes() - before;
        buffer.first_offset = buffer.first_offset.min(record.offset);
        buffer.last_offset = buffer.last_offset.max(record.offset);
        buffer.rows += 1;
        buffer.bytes += bytes;
        self.rows += 1;
        self.bytes += bytes;
        Added::Buffered
    }

    /// Writes every buffer as one file. On error the buffers not yet written stay, and
    /// a later call retries them; written ones are never written again.
    pub fn flush(&mut self) -> Result<Vec<PathBuf>> {
        let mut pending = self.take_pending();
        let result = pending.write();
        let written = self.apply(&mut pending);
        if result.is_err() {
            self.put_back(pending);
        }
        result.map(|()| written)
    }

    /// Takes every buffer out, to be written while new records are buffered (by
    /// `PendingFlush::write` on another thread); `apply` then records what it wrote.
    pub fn take_pending(&mut self) -> PendingFlush {
        let mut slots: Vec<SlotKey> = self.buffers.keys().copied().collect();
        // A stable order (directory, topic, partition), as before interning.
        slots.sort_by(|a, b| {
            let (da, db) = (&self.dirs[a.0 as usize].key, &self.dirs[b.0 as usize].key);
            (da, &self.topics[a.1 as usize], a.2).cmp(&(db, &self.topics[b.1 as usize], b.2))
        });
        let files = slots
            .into_iter()
            .filter_map(|slot| {
                let buffer = self.buffers.remove(&slot)?;
                Some(PendingFile {
                    slot,
                    dir: self.dirs[slot.0 as usize].path.clone(),
                    topic: self.topics[slot.1 as usize].clone(),
                    buffer,
                })
            })
            .collect();
        let pending = PendingFlush {
            files,
            written: Vec::new(),
            rows: self.rows,
            max_row_group_rows: self.max_row_group_rows,
        };
        self.rows = 0;
        self.bytes = 0;
        pending
    }

    /// Records the files `pending` wrote (their offsets are in the lake now) and returns
    /// their paths; what it did not write yet stays in it.
    pub fn apply(&mut self, pending: &mut PendingFlush) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for done in pending.written.drain(..) {
            let hw = self
                .high_water
                .entry((done.dir, done.topic, done.slot.2))
                .or_insert(i64::MIN);
            *hw = (*hw).max(done.last_offset);
            let hw = *hw;
            self.high_water_by_slot.insert(done.slot, Some(hw));
            paths.push(done.path);
        }
        paths
    }

    /// Buffers again what `pending` could not write, for the next flush. Only right
    /// while nothing was added since `take_pending` (as in `flush`).
    fn put_back(&mut self, pending: PendingFlush) {
        for file in pending.files {
            self.rows += file.buffer.rows;
            self.bytes += file.buffer.bytes;
            let newer = self.buffers.insert(file.slot, file.buffer);
            debug_assert!(newer.is_none(), "records were added before put_back");
        }
    }
}

/// Buffers taken out of a `LakeWriter` to be written as files, one per buffer.
pub struct PendingFlush {
    files: Vec<PendingFile>,
    written: Vec<WrittenFile>,
    rows: usize,
    max_row_group_rows: usize,
}

struct PendingFile {
    slot: SlotKey,
    dir: PathBuf,
    topic: String,
    buffer: Buffer,
}

struct WrittenFile {
    slot: SlotKey,
    dir: PathBuf,
    topic: String,
    last_offset: i64,
    path: PathBuf,
}

impl PendingFlush {
    /// Rows taken out of the writer (written or not).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Nothing left to write.
    pub fn is_done(&self) -> bool {
        self.files.is_empty()
    }

    /// Writes the files not written yet, in order: temporary name, fsync, rename, fsync
    /// of the directory. On error the rest stays for another call; written ones are
    /// never written again. Needs no `LakeWriter`, so it can run on another thread.
    pub fn write(&mut self) -> Result<()> {
        let files = std::mem::take(&mut self.files);
        let max = self.max_row_group_rows;
        let outcomes = if files.len() >= 2 && self.rows >= PARALLEL_WRITE_ROWS {
            // Two writers, taking the files (in their sorted order) by turns.
            let (mine, theirs): (Vec<_>, Vec<_>) =
                files.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
            let unindex = |v: Vec<(usize, PendingFile)>| v.into_iter().map(|(_, f)| f).collect();
            let (mine, theirs): (Vec<PendingFile>, Vec<PendingFile>) =
                (unindex(mine), unindex(theirs));
            std::thread::scope(|scope| {
                let other = scope.spawn(|| write_files(theirs, max));
                let first = write_files(mine, max);
                let second = other
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                vec![first, second]
            })
        } else {
            vec![write_files(files, max)]
        };
        let mut result = Ok(());
        for (written, left, error) in outcomes {
            self.written.extend(written);
            self.files.extend(left);
            if let (Some(e), Ok(())) = (error, &result) {
                result = Err(e);
            }
        }
        result
    }
}

/// A flush of at least this many rows writes its files on two threads: the files are
/// independent, and a large flush's write is what a reader waits for.
const PARALLEL_WRITE_ROWS: usize = 20_000;

/// Writes `files` in order until one fails: what was written, what was not (the failed
/// one first, keeping its built batch), and the error.
fn write_files(
    files: Vec<PendingFile>,
    max_row_group_rows: usize,
) -> (Vec<WrittenFile>, Vec<PendingFile>, Option<Error>) {
    let mut written = Vec::with_capacity(files.len());
    let mut files = files.into_iter();
    while let Some(mut file) = files.next() {
        let part = PartFile {
            topic: file.topic.clone(),
            partition: file.slot.2,
            first_offset: file.buffer.first_offset,
            last_offset: file.buffer.last_offset,
        };
        // A failure to build is not retryable: the sink stops, nothing is committed.
        let batch = match file.buffer.built.take() {
            Some(batch) => batch,
            None => match file.buffer.columns.finish() {
                Ok(batch) => batch,
                Err(e) => {
                    return (
                        written,
                        std::iter::once(file).chain(files).collect(),
                        Some(e),
                    );
                }
            },
        };
        match write_file(&file.dir, &part.file_name(), &batch, max_row_group_rows) {
            Ok(path) => written.push(WrittenFile {
                slot: file.slot,
                dir: file.dir,
                topic: file.topic,
                last_offset: file.buffer.last_offset,
                path,
            }),
            Err(e) => {
                file.buffer.built = Some(batch);
                return (
                    written,
                    std::iter::once(file).chain(files).collect(),
                    Some(e),
                );
            }
        }
    }
    (written, Vec::new(), None)
}

/// A temporary file older than this belongs to a write that died (a live write takes
/// seconds); younger ones may be another instance's write in progress.
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(600);

/// Highest offset in a file, per directory and topic-partition; removes stale temp files.
fn scan_high_water(root: &Path) -> Result<HashMap<(PathBuf, String, i32), i64>> {
    let samples = root.join(SAMPLES_DIR);
    std::fs::create_dir_all(&samples).map_err(|e| Error::io(&samples, e))?;
    let mut high_water = HashMap::new();
    let mut stack = vec![samples];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().map_err(|e| Error::io(&path, e))?.is_dir() {
                stack.push(path);
            } else if name.ends_with(".tmp") {
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_TMP);
                if stale {
                    tracing::info!(path = %path.display(), "removing a file of an interrupted write");
                    std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                }
            } else if let Some(part) = PartFile::parse(&name) {
                let e = high_water
                    .entry((dir.clone(), part.topic, part.partition))
                    .or_insert(i64::MIN);
                *e = (*e).max(part.last_offset);
            }
        }
    }
    Ok(high_water)
}

/// Columns of lake files that carry a bloom filter per row group: the identifiers an
/// analyst narrows a query to with `=` or `IN` (one sensor, participant or recording).
/// Min/max statistics cannot prune on them: a file sorted by (sensor_id, ts) holds
/// recordings and participants from across the id range, so nearly every range
/// contains the one asked for. A filter answers "not in this row group" instead, and
/// DataFusion then skips the row group without reading its pages.
const BLOOM_FILTER_COLUMNS: [&str; 3] = ["sensor_id", "participant_id", "recording_id"];

/// False-positive probability of the bloom filters: one row group in a hundred that
/// lacks the value is read anyway.
const BLOOM_FILTER_FPP: f64 = 0.01;

/// Properties of every lake file, the compactor's outputs included: zstd, page
/// statistics, rows sorted by (sensor_id, ts) and declared so, bounded row groups,
/// bloom filters on [`BLOOM_FILTER_COLUMNS`]. `max_rows` bounds the rows the file will
/// hold; a filter is sized for that many distinct values (at most a row group's) and
/// folded down to the values it got when its row group closes, so it ends small.
pub(crate) fn writer_properties(max_row_group_rows: usize, max_rows: u64) -> WriterProperties {
    let max_ndv = max_rows.clamp(1, max_row_group_rows as u64);
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(max_row_group_rows))
        .set_sorting_columns(Some(vec![
            SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: false,
            },
            SortingColumn {
                column_idx: 1,
                descending: false,
                nulls_first: false,
            },
        ]))
        .set_created_by(format!("labstream {}", env!("CARGO_PKG_VERSION")));
    for column in BLOOM_FILTER_COLUMNS {
        let path = ColumnPath::from(column);
        builder = builder
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), BLOOM_FILTER_FPP)
            .set_column_bloom_filter_max_ndv(path, max_ndv);
    }
    builder.build()
}

fn write_file(
    dir: &Path,
    name: &str,
    batch: &RecordBatch,
    max_row_group_rows: usize,
) -> Result<PathBuf> {
    labstream_schemas::crash_point("lake.before_write");
    let props = writer_properties(max_row_group_rows, batch.num_rows() as u64);
    write_batch(dir, name, batch, props, Staging::Sink)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{T0, bloom_filter_answers, record, registry, sample};
    use labstream_schemas::experiment::RecordingContext;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use std::collections::BTreeSet;

    const DAY: i64 = 86_400_000_000;

    /// A large flush (written on two threads) into a lake where one of its folders
    /// cannot be made: the files that can be written are, the flush fails, and once the
    /// folder can be made a second flush writes only the rest; every row is in the lake
    /// once.
    #[test]
    fn a_large_flush_that_fails_part_way_writes_the_rest_once_then() {
        let root = tempfile::tempdir().unwrap();
        let mut w = LakeWriter::open(root.path(), Arc::new(registry(false))).unwrap();
        let n = 3 * PARALLEL_WRITE_ROWS as i64;
        let mut want = BTreeSet::new();
        for i in 0..n {
            // Three days and three partitions: nine files.
            let (day, partition) = (i % 3, ((i / 3) % 3) as i32);
            let ts = T0 + day * DAY + i;
            let sample = sample(&format!("s{}", i % 5), ts, None, i as f64, None);
            assert_eq!(w.add(record(partition, i), sample), Added::Buffered);
            want.insert(ts);
        }
        let blocked = table_dir(
            root.path(),
            "temperature",
            chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
            NO_EXPERIMENT,
        );
        std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
        std::fs::write(&blocked, b"not a folder").unwrap();
        let err = w.flush().unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let first = lake_files(root.path());
        assert!(!first.is_empty() && first.len() < 9, "{first:?}");
        std::fs::remove_file(&blocked).unwrap();
        let paths = w.flush().unwrap();
        assert_eq!(first.len() + paths.len(), 9);
        assert_eq!(w.buffered_rows(), 0);

        let mut got = Vec::new();
        for path in lake_files(root.path()) {
            let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
            for row in reader.get_row_iter(None).unwrap() {
                let row = row.unwrap();
                let (_, ts) = row.get_column_iter().nth(1).unwrap();
                let parquet::record::Field::TimestampMicros(ts) = ts else {
                    panic!("ts is {ts:?}");
                };
                got.push(*ts);
            }
        }
        assert_eq!(got.len(), n as usize, "rows written twice or missing");
        assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want);
    }

    fn lake_files(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "parquet") {
                    out.push(path);
                }
            }
        }
        out.sort();
        out
    }

    /// Every lake file carries a bloom filter on sensor, participant and recording ids
    /// in each row group: it holds every value written and rules out others (what lets
    /// a query for one recording skip the files of the others), folded down to the few
    /// values it got instead of sized for the file's row count.
    #[test]
    fn lake_files_carry_small_bloom_filters_on_the_ids_a_query_narrows_to() {
        let root = tempfile::tempdir().unwrap();
        let mut w = LakeWriter::open(root.path(), Arc::new(registry(false))).unwrap();
        for i in 0..2_000_i64 {
            let ts = T0 + i * 1_000_000;
            let sample = sample(&format!("s{}", i % 4), ts, None, i as f64, None);
            let participant = format!("P{:02}", i % 4);
            let context = RecordingContext {
                experiment_id: "stroop".into(),
                recording_id: format!("rec-{participant}-{}", i / 1_000).into(),
                participant_id: participant.into(),
                task_id: "rest".into(),
            };
            let enriched = EnrichedSample {
                sample,
                context: Some(context),
            };
            assert_eq!(w.add(record(0, i), enriched), Added::Buffered);
        }
        let files = w.flush().unwrap();
        assert_eq!(files.len(), 1);
        let file = &files[0];
        let answers = |column: &str, value: &str| bloom_filter_answers(file, column, value);
        for (column, present, absent) in [
            ("sensor_id", ["s0", "s3"], ["s4", "t0"]),
            ("participant_id", ["P00", "P03"], ["P04", "P10"]),
            (
                "recording_id",
                ["rec-P01-0", "rec-P02-1"],
                ["rec-P01-2", "rec-P04-0"],
            ),
        ] {
            for value in present {
                let got = answers(column, value);
                assert_eq!(got.len(), 1, "one row group");
                assert_eq!(got[0].0, Some(true), "{column} = {value}");
                assert!(
                    got[0].1 <= 256,
                    "{column}: a {} byte filter for a few values",
                    got[0].1
                );
            }
            for value in absent {
                assert_eq!(
                    answers(column, value)[0].0,
                    Some(false),
                    "{column} = {value}"
                );
            }
        }
        // Other columns carry none.
        assert_eq!(answers("task_id", "rest")[0].0, None);
    }
}
