//! The streaming k-way merge of sorted lake files into one: one record batch held per
//! input, rows in (sensor_id, ts, seq) order, repeated dedupe keys dropped (the earlier
//! offset wins), the output written whole by the lake's file routine.

use super::{LakeFile, MERGE_ROWS_BUDGET, OUTPUT_BATCH_ROWS};
use crate::error::{Error, Result};
use crate::file::{Staging, write_whole};
use crate::writer::{MAX_ROW_GROUP_ROWS, writer_properties};
use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::compute::interleave_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::path::{Path, PathBuf};

pub(super) struct MergeStats {
    pub(super) rows_in: u64,
    pub(super) rows_out: u64,
    pub(super) bytes_out: u64,
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
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
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

/// Merges `inputs` (offset order) into `dir/name`, written whole (temporary file,
/// fsync, rename, fsync of the directory). On error nothing changed.
pub(super) fn merge(
    dir: &Path,
    inputs: &[&LakeFile],
    schema: &SchemaRef,
    name: &str,
) -> Result<MergeStats> {
    let final_path = dir.join(name);
    if final_path.exists() {
        return Err(Error::Internal(format!(
            "{} exists already; it would be replaced, not written",
            final_path.display()
        )));
    }
    let (_, stats) = write_whole(dir, name, Staging::Compaction, |file, tmp_path| {
        write_merged(dir, inputs, schema, file, tmp_path)
    })?;
    Ok(stats)
}

fn write_merged(
    dir: &Path,
    inputs: &[&LakeFile],
    schema: &SchemaRef,
    file: File,
    tmp_path: &Path,
) -> Result<(File, MergeStats)> {
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
    let bytes_out = file.metadata().map_err(|e| Error::io(tmp_path, e))?.len();
    let stats = MergeStats {
        rows_in: cursors.iter().map(|c| c.rows_read).sum(),
        rows_out,
        bytes_out,
    };
    Ok((file, stats))
}

fn parquet_error(path: &Path, e: parquet::errors::ParquetError) -> Error {
    Error::Parquet(format!("{}: {e}", path.display()))
}
