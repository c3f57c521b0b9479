//! Buffers decoded samples per lake directory and topic-partition and writes each
//! buffer as one Parquet file: temporary name, fsync, rename, fsync of the directory.

use crate::error::{Error, Result};
use crate::lake::batch::to_record_batch;
use crate::lake::layout::{NO_EXPERIMENT, PartFile, SAMPLES_DIR, table_dir};
use chrono::NaiveDate;
use labstream_bus::Record;
use labstream_schemas::Registry;
use labstream_schemas::experiment::EnrichedSample;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per Parquet row group in lake files: large enough for good compression and
/// few footer entries, small enough that statistics prune within a day's file.
pub(crate) const MAX_ROW_GROUP_ROWS: usize = 128 * 1024;

/// What `LakeWriter::add` did with a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    Buffered,
    /// A file of an earlier run already holds this record (re-delivery or replay).
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

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct BufferKey {
    dir: DirKey,
    topic: String,
    partition: i32,
}

struct Buffer {
    first_offset: i64,
    last_offset: i64,
    samples: Vec<EnrichedSample>,
}

pub struct LakeWriter {
    root: PathBuf,
    registry: Arc<Registry>,
    buffers: BTreeMap<BufferKey, Buffer>,
    /// Highest offset already in a file, per directory and topic-partition.
    high_water: HashMap<(PathBuf, String, i32), i64>,
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
            buffers: BTreeMap::new(),
            high_water,
            rows: 0,
            bytes: 0,
            max_row_group_rows: MAX_ROW_GROUP_ROWS,
        })
    }

    /// Re-reads the offset ranges in the lake. Needed when partitions move between
    /// sink instances: files the previous owner wrote must not be written again.
    pub fn reload_high_water(&mut self) -> Result<()> {
        self.high_water = scan_high_water(&self.root)?;
        Ok(())
    }

    /// Drops the buffered records of the topic-partitions for which `keep` is false
    /// (revoked from this instance: their new owner reads them again from the last
    /// commit, so writing them here would duplicate them).
    pub fn retain_partitions(&mut self, keep: impl Fn(&str, i32) -> bool) {
        let mut dropped = 0usize;
        self.buffers.retain(|key, buffer| {
            let k = keep(&key.topic, key.partition);
            if !k {
                dropped += buffer.samples.len();
                self.rows -= buffer.samples.len();
                self.bytes -= buffer.samples.iter().map(estimate_bytes).sum::<usize>();
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

    /// A rough estimate of the memory the buffered samples take.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    pub fn add(&mut self, record: &Record, enriched: impl Into<EnrichedSample>) -> Added {
        let enriched = enriched.into();
        let sample = &enriched.sample;
        if self.registry.get(sample.sensor_type.as_str()).is_none() {
            return Added::Rejected(format!(
                "sensor_type {:?} is not in the registry of the lake sink",
                sample.sensor_type.as_str()
            ));
        }
        let Some(date) = sample.ts.to_datetime().map(|dt| dt.date_naive()) else {
            return Added::Rejected(format!("ts {} is out of range", sample.ts.as_micros()));
        };
        let dir = DirKey {
            sensor_type: sample.sensor_type.as_str().to_owned(),
            date,
            experiment: enriched.context.as_ref().map_or_else(
                || NO_EXPERIMENT.to_owned(),
                |c| c.experiment_id.as_str().to_owned(),
            ),
        };
        let path = self.dir_path(&dir);
        if let Some(&hw) = self
            .high_water
            .get(&(path, record.topic.clone(), record.partition))
            && record.offset <= hw
        {
            return Added::AlreadyInLake;
        }
        self.bytes += estimate_bytes(&enriched);
        self.rows += 1;
        let key = BufferKey {
            dir,
            topic: record.topic.clone(),
            partition: record.partition,
        };
        let buffer = self.buffers.entry(key).or_insert_with(|| Buffer {
            first_offset: record.offset,
            last_offset: record.offset,
            samples: Vec::new(),
        });
        buffer.first_offset = buffer.first_offset.min(record.offset);
        buffer.last_offset = buffer.last_offset.max(record.offset);
        buffer.samples.push(enriched);
        Added::Buffered
    }

    fn dir_path(&self, dir: &DirKey) -> PathBuf {
        table_dir(&self.root, &dir.sensor_type, dir.date, &dir.experiment)
    }

    /// Writes every buffer as one file. On error the buffers not yet written stay, and
    /// a later call retries them; written ones are never written again.
    pub fn flush(&mut self) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        while let Some((key, mut buffer)) = self.buffers.pop_first() {
            let dir = self.dir_path(&key.dir);
            let part = PartFile {
                topic: key.topic.clone(),
                partition: key.partition,
                first_offset: buffer.first_offset,
                last_offset: buffer.last_offset,
            };
            let spec = self
                .registry
                .get(&key.dir.sensor_type)
                .ok_or_else(|| Error::Internal("sensor type vanished from the registry".into()))?;
            let result = to_record_batch(spec, &mut buffer.samples).and_then(|batch| {
                write_file(&dir, &part.file_name(), &batch, self.max_row_group_rows)
            });
            match result {
                Ok(path) => {
                    self.rows -= buffer.samples.len();
                    self.bytes -= buffer.samples.iter().map(estimate_bytes).sum::<usize>();
                    self.high_water
                        .insert((dir, key.topic, key.partition), buffer.last_offset);
                    written.push(path);
                }
                Err(e) => {
                    self.buffers.insert(key, buffer);
                    return Err(e);
                }
            }
        }
        self.rows = 0;
        self.bytes = 0;
        Ok(written)
    }
}

/// A temporary file older than this belongs to a write that died (a live write takes
/// seconds); younger ones may be another instance's write in progress.
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(600);

/// Highest offset in a file, per directory and topic-partition; removes stale temp files.
fn scan_high_water(root: &Path) -> Result<HashMap<(PathBuf, String, i32), i64>> {
    let samples = root.join(SAMPLES_DIR);
    std::fs::create_dir_all(&samples).map_err(|e| io(&samples, e))?;
    let mut high_water = HashMap::new();
    let mut stack = vec![samples];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().map_err(|e| io(&path, e))?.is_dir() {
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
                    std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
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

fn estimate_bytes(e: &EnrichedSample) -> usize {
    let s = &e.sample;
    let context = e.context.as_ref().map_or(0, |c| {
        96 + c.experiment_id.as_str().len()
            + c.recording_id.as_str().len()
            + c.participant_id.as_str().len()
            + c.task_id.as_str().len()
    });
    64 + context
        + s.sensor_id.as_str().len()
        + s.values.keys().map(|k| k.len() + 24).sum::<usize>()
        + s.tags
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum::<usize>()
}

pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
    Error::LakeIo {
        path: path.display().to_string(),
        source,
    }
}

/// Properties of every lake file, the compactor's outputs included: zstd, page
/// statistics, rows sorted by (sensor_id, ts) and declared so, bounded row groups.
pub(crate) fn writer_properties(max_row_group_rows: usize) -> WriterProperties {
    WriterProperties::builder()
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
        .set_created_by(format!("labstream {}", env!("CARGO_PKG_VERSION")))
        .build()
}

fn write_file(
    dir: &Path,
    name: &str,
    batch: &arrow::record_batch::RecordBatch,
    max_row_group_rows: usize,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let final_path = dir.join(name);
    let tmp_path = dir.join(format!(".{name}.tmp"));
    let props = writer_properties(max_row_group_rows);
    let file = File::create(&tmp_path).map_err(|e| io(&tmp_path, e))?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props))
        .map_err(|e| Error::Parquet(e.to_string()))?;
    writer
        .write(batch)
        .map_err(|e| Error::Parquet(e.to_string()))?;
    let file = writer
        .into_inner()
        .map_err(|e| Error::Parquet(e.to_string()))?;
    file.sync_all().map_err(|e| io(&tmp_path, e))?;
    drop(file);
    std::fs::rename(&tmp_path, &final_path).map_err(|e| io(&final_path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))?;
    Ok(final_path)
}
