//! Export of one experiment, optionally narrowed to a participant and/or a day, as a tar
//! archive streamed as it is made: `metadata.json` (the experiment's state, narrowed
//! like the rest), `logbook.json`, `progress.json`, `recordings.json`, then per sensor
//! type the experiment's samples as Parquet (`samples/<type>/part-NNNNN.parquet`), and
//! last `manifest.json` (what was asked, row and file counts). The metadata comes from
//! the lake's `experiments` table, the samples from its `experiment=<id>` folders read
//! through DataFusion, so no Kafka is needed. Memory stays bounded whatever the size:
//! rows stream from the scan into one Parquet part at a time, and a part is cut into
//! another file once it reaches `part_bytes`.

use crate::error::{Error, Result};
use crate::query::{QueryEngine, sample_tables};
use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use chrono::{NaiveDate, TimeDelta};
use datafusion::prelude::{col, lit};
use datafusion::scalar::ScalarValue;
use futures::{Stream, StreamExt};
use labstream_lake::tables::{EXPERIMENTS_TABLE, table_file};
use labstream_schemas::experiment::ExperimentState;
use labstream_schemas::{ExperimentId, ParticipantId, Timestamp};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::Serialize;
use std::path::Path;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

/// Size at which a Parquet part of the archive is closed and the next one begun (the
/// bound on what one export holds in memory, besides the scan's own buffers).
pub const DEFAULT_PART_BYTES: usize = 64 * 1024 * 1024;
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Largest piece handed to the consumer at once.
const CHUNK: usize = 1024 * 1024;

/// What to export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportRequest {
    pub experiment_id: ExperimentId,
    pub participant: Option<ParticipantId>,
    /// A UTC day (the lake's `date` partition).
    pub day: Option<NaiveDate>,
}

/// What an export has done so far, reported while the archive is written.
#[derive(Clone, Debug)]
pub enum ExportProgress {
    /// A JSON file is in the archive.
    File { path: String, bytes: u64 },
    /// Rows of a sample table read so far, and the archive's size so far.
    Rows {
        table: String,
        rows: u64,
        archive_bytes: u64,
    },
    /// A sample table is complete in the archive.
    TableDone {
        table: String,
        rows: u64,
        files: usize,
        bytes: u64,
    },
    /// The archive is complete.
    Done { archive_bytes: u64 },
}

/// Per sample table: rows and Parquet files in the archive (`manifest.json`).
#[derive(Clone, Debug, Serialize)]
struct TableManifest {
    table: String,
    rows: u64,
    files: Vec<String>,
    bytes: u64,
}

#[derive(Serialize)]
struct Manifest<'a> {
    experiment_id: &'a ExperimentId,
    participant: Option<&'a ParticipantId>,
    day: Option<String>,
    exported_at: Timestamp,
    experiment_version: i64,
    tables: Vec<TableManifest>,
}

/// An export ready to stream: the experiment exists and the sample tables are known.
pub struct Export {
    engine: QueryEngine,
    request: ExportRequest,
    state: ExperimentState,
    tables: Vec<String>,
    part_bytes: usize,
    _permit: Option<OwnedSemaphorePermit>,
}

impl QueryEngine {
    /// Looks the experiment up in the lake's `experiments` table and lists the sample
    /// tables holding its data; takes one of the engine's query slots until the export
    /// ends. `Error::NotFound` when the lake does not know the experiment.
    pub async fn export(&self, request: ExportRequest) -> Result<Export> {
        let permit = self.try_slot()?;
        let state = read_state(self.lake(), &request.experiment_id)?.ok_or_else(|| {
            Error::NotFound(format!(
                "the lake has no experiment {:?} (the experiments processor writes {} once it has read the experiment's events)",
                request.experiment_id.as_str(),
                table_file(self.lake(), EXPERIMENTS_TABLE).display()
            ))
        })?;
        let folder = format!("experiment={}", request.experiment_id.as_str());
        let day = request
            .day
            .map(|d| format!("date={}", d.format("%Y-%m-%d")));
        let tables = sample_tables(self.lake())?
            .into_iter()
            .filter(|(_, dir)| has_experiment_folder(dir, day.as_deref(), &folder))
            .map(|(name, _)| name)
            .collect();
        Ok(Export {
            engine: self.clone(),
            state: narrowed(state, &request),
            request,
            tables,
            part_bytes: DEFAULT_PART_BYTES,
            _permit: Some(permit),
        })
    }
}

impl Export {
    /// The experiment as exported (recordings, logbook and progress narrowed).
    pub fn state(&self) -> &ExperimentState {
        &self.state
    }

    /// Sample tables that hold rows of the experiment (`samples_<type>`).
    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    /// Closes a Parquet part once it reaches `bytes` (at least 64 KiB).
    pub fn with_part_bytes(mut self, bytes: usize) -> Self {
        self.part_bytes = bytes.max(64 * 1024);
        self
    }

    /// The archive's bytes as they are made. The archive is made by a task of its own,
    /// at most a few chunks ahead of the consumer; dropping the stream stops it. An
    /// error ends the stream with `Err` (the archive is then incomplete).
    pub fn into_stream(
        self,
        progress: impl FnMut(&ExportProgress) + Send + 'static,
    ) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(4);
        tokio::spawn(async move {
            let mut archive = Archive {
                tx: tx.clone(),
                bytes: 0,
                progress: Box::new(progress),
            };
            if let Err(e) = self.write(&mut archive).await
                && !matches!(e, Error::Cancelled)
            {
                tracing::warn!(error = %e, "export failed");
                let _ = tx.send(Err(e)).await;
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
    }

    async fn write(self, archive: &mut Archive) -> Result<()> {
        let state = &self.state;
        archive.json("metadata.json", state).await?;
        archive.json("logbook.json", &state.logbook).await?;
        archive.json("progress.json", &state.progress).await?;
        archive.json("recordings.json", &state.recordings).await?;
        let mut manifests = Vec::new();
        for table in &self.tables {
            manifests.push(self.table(table, archive).await?);
        }
        let manifest = Manifest {
            experiment_id: &self.request.experiment_id,
            participant: self.request.participant.as_ref(),
            day: self.request.day.map(|d| d.format("%Y-%m-%d").to_string()),
            exported_at: Timestamp::now(),
            experiment_version: state.version,
            tables: manifests,
        };
        archive.json("manifest.json", &manifest).await?;
        archive.finish().await
    }

    /// Streams one sample table's rows of the experiment into Parquet parts.
    async fn table(&self, table: &str, archive: &mut Archive) -> Result<TableManifest> {
        let df_err = Error::from_datafusion;
        let ctx = self.engine.session().await?;
        let mut filter = col("experiment").eq(lit(self.request.experiment_id.as_str()));
        if let Some(day) = self.request.day {
            let days = (day - NaiveDate::default()).num_days() as i32;
            filter = filter.and(col("date").eq(lit(ScalarValue::Date32(Some(days)))));
        }
        if let Some(p) = &self.request.participant {
            filter = filter.and(col("participant_id").eq(lit(p.as_str())));
        }
        let df = ctx
            .table(table)
            .await
            .map_err(df_err)?
            .filter(filter)
            .map_err(df_err)?
            // Partition columns are folder names in the lake; the files do not hold them.
            .drop_columns(&["date", "experiment"])
            .map_err(df_err)?;
        let mut stream = df.execute_stream().await.map_err(df_err)?;
        let schema = plain_schema(&stream.schema());
        let kind = table.strip_prefix("samples_").unwrap_or(table);
        let mut manifest = TableManifest {
            table: table.to_owned(),
            rows: 0,
            files: Vec::new(),
            bytes: 0,
        };
        let mut part: Option<ArrowWriter<Vec<u8>>> = None;
        while let Some(batch) = stream.next().await {
            let batch = plain_batch(&batch.map_err(df_err)?, &schema)?;
            if batch.num_rows() == 0 {
                continue;
            }
            let writer = match &mut part {
                Some(w) => w,
                None => part.insert(
                    ArrowWriter::try_new(Vec::new(), schema.clone(), Some(writer_properties()))
                        .map_err(parquet_err)?,
                ),
            };
            writer.write(&batch).map_err(parquet_err)?;
            manifest.rows += batch.num_rows() as u64;
            if writer.inner().len() + writer.in_progress_size() >= self.part_bytes {
                let full = part.take().expect("a part is open");
                self.close_part(kind, full, &mut manifest, archive).await?;
            }
            (archive.progress)(&ExportProgress::Rows {
                table: table.to_owned(),
                rows: manifest.rows,
                archive_bytes: archive.bytes,
            });
        }
        if let Some(last) = part {
            self.close_part(kind, last, &mut manifest, archive).await?;
        }
        (archive.progress)(&ExportProgress::TableDone {
            table: table.to_owned(),
            rows: manifest.rows,
            files: manifest.files.len(),
            bytes: manifest.bytes,
        });
        Ok(manifest)
    }

    async fn close_part(
        &self,
        kind: &str,
        writer: ArrowWriter<Vec<u8>>,
        manifest: &mut TableManifest,
        archive: &mut Archive,
    ) -> Result<()> {
        let data = writer.into_inner().map_err(parquet_err)?;
        let path = format!("samples/{kind}/part-{:05}.parquet", manifest.files.len());
        manifest.bytes += data.len() as u64;
        archive.entry(&path, Bytes::from(data)).await?;
        manifest.files.push(path);
        Ok(())
    }
}

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

fn parquet_err(e: parquet::errors::ParquetError) -> Error {
    Error::Internal(format!("writing an export part: {e}"))
}

/// The scan's schema with the types of the lake files: DataFusion reads text as
/// `Utf8View`, which not every Parquet reader maps back to a plain string.
fn plain_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let dt = match f.data_type() {
                DataType::Utf8View => DataType::Utf8,
                DataType::BinaryView => DataType::Binary,
                DataType::Dictionary(_, value) => value.as_ref().clone(),
                other => other.clone(),
            };
            f.as_ref().clone().with_data_type(dt)
        })
        .collect();
    std::sync::Arc::new(Schema::new(fields))
}

fn plain_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Internal(format!("export column types: {e}")))?;
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::Internal(format!("export batch: {e}")))
}

/// Whether `<table dir>/date=*/experiment=<id>` (or the given day's) holds a file.
fn has_experiment_folder(table_dir: &Path, day: Option<&str>, folder: &str) -> bool {
    let Ok(dates) = std::fs::read_dir(table_dir) else {
        return false;
    };
    dates.flatten().any(|d| {
        let name = d.file_name();
        let name = name.to_string_lossy();
        name.starts_with("date=")
            && day.is_none_or(|day| name == day)
            && std::fs::read_dir(d.path().join(folder))
                .is_ok_and(|mut files| files.any(|f| f.is_ok_and(|f| f.path().is_file())))
    })
}

/// The experiment's state from the lake's `experiments` table, if there.
pub(crate) fn read_state(lake: &Path, id: &ExperimentId) -> Result<Option<ExperimentState>> {
    let path = table_file(lake, EXPERIMENTS_TABLE);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Internal(format!("opening {}: {e}", path.display()))),
    };
    let internal = |e: &dyn std::fmt::Display| Error::Internal(format!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| internal(&e))?;
    for batch in reader {
        let batch = batch.map_err(|e| internal(&e))?;
        let (Some(ids), Some(states)) = (
            batch.column_by_name("experiment_id"),
            batch.column_by_name("state"),
        ) else {
            return Err(internal(&"not an experiments table"));
        };
        let (ids, states) = (ids.as_string::<i32>(), states.as_string::<i32>());
        for row in 0..batch.num_rows() {
            if ids.is_valid(row) && ids.value(row) == id.as_str() {
                let state = serde_json::from_str(states.value(row)).map_err(|e| internal(&e))?;
                return Ok(Some(state));
            }
        }
    }
    Ok(None)
}

/// The state as an export of `request` shows it: recordings, progress and logbook of
/// the participant (logbook entries tied to no recording included) and of the day.
fn narrowed(mut state: ExperimentState, request: &ExportRequest) -> ExperimentState {
    let day = request.day.map(|d| {
        let start = d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        (
            Timestamp::from_datetime(start),
            Timestamp::from_datetime(start + TimeDelta::days(1)),
        )
    });
    let in_day = |t: Timestamp| day.is_none_or(|(start, end)| start <= t && t < end);
    if let Some(p) = &request.participant {
        let others: Vec<_> = state
            .recordings
            .iter()
            .filter(|r| &r.participant_id != p)
            .map(|r| r.recording_id.clone())
            .collect();
        state
            .logbook
            .retain(|e| e.recording_id.as_ref().is_none_or(|r| !others.contains(r)));
        state.recordings.retain(|r| &r.participant_id == p);
        state.progress.retain(|x| &x.participant_id == p);
    }
    if let Some((start, end)) = day {
        state
            .recordings
            .retain(|r| r.started_at < end && r.stopped_at.is_none_or(|s| s >= start));
        state.logbook.retain(|e| in_day(e.at));
    }
    state
}

/// The tar stream: 512-byte headers, data padded to 512 bytes, two zero blocks at the end.
struct Archive {
    tx: mpsc::Sender<Result<Bytes>>,
    bytes: u64,
    progress: Box<dyn FnMut(&ExportProgress) + Send>,
}

impl Archive {
    async fn send(&mut self, data: Bytes) -> Result<()> {
        self.bytes += data.len() as u64;
        self.tx.send(Ok(data)).await.map_err(|_| Error::Cancelled)
    }

    async fn entry(&mut self, path: &str, data: Bytes) -> Result<()> {
        let mut header = tar::Header::new_ustar();
        header
            .set_path(path)
            .map_err(|e| Error::Internal(format!("archive path {path:?}: {e}")))?;
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mtime(Timestamp::now().as_micros().max(0) as u64 / 1_000_000);
        header.set_cksum();
        self.send(Bytes::copy_from_slice(header.as_bytes())).await?;
        let len = data.len();
        let mut offset = 0;
        while offset < len {
            let end = (offset + CHUNK).min(len);
            self.send(data.slice(offset..end)).await?;
            offset = end;
        }
        let pad = (512 - len % 512) % 512;
        if pad > 0 {
            self.send(Bytes::from(vec![0u8; pad])).await?;
        }
        Ok(())
    }

    async fn json(&mut self, path: &str, value: &impl Serialize) -> Result<()> {
        let data = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::Internal(format!("encoding {path}: {e}")))?;
        let bytes = data.len() as u64;
        self.entry(path, Bytes::from(data)).await?;
        (self.progress)(&ExportProgress::File {
            path: path.to_owned(),
            bytes,
        });
        Ok(())
    }

    async fn finish(&mut self) -> Result<()> {
        self.send(Bytes::from(vec![0u8; 1024])).await?;
        (self.progress)(&ExportProgress::Done {
            archive_bytes: self.bytes,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
