//! Putting one lake file in place whole: written under a temporary name in its folder,
//! synced, renamed to its final name, and the folder synced, so after a crash at any
//! point a reader finds the file complete or not at all (a leftover temporary file is
//! never read: its name is not a lake file's).

use crate::error::{Error, Result};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Who puts a file in place: its temporary name's suffix, and the crash point (a test
/// hook, `labstream_schemas::crash_point`) between the sync and the rename, differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staging {
    /// A sink's file of new rows (`.tmp`).
    Sink,
    /// A compaction output (`.compact.tmp`: only one compaction runs at a time, so any
    /// such file at the start of a run is left from a crash).
    Compaction,
    /// A table replaced whole (experiments, recordings) or an alerts file (`.tmp`).
    Table,
}

impl Staging {
    /// The suffix of the temporary name `.<name><suffix>`.
    pub const fn suffix(self) -> &'static str {
        match self {
            Staging::Sink | Staging::Table => ".tmp",
            Staging::Compaction => ".compact.tmp",
        }
    }

    fn crash_point(self) -> &'static str {
        match self {
            Staging::Sink => "lake.written_before_rename",
            Staging::Compaction => "compaction.merged_before_rename",
            Staging::Table => "lake.table_written_before_rename",
        }
    }
}

/// Writes `dir/name` whole: `write` fills the temporary file `dir/.<name><suffix>` and
/// hands the file back; it is synced, renamed and the folder synced. When anything
/// fails the temporary file is removed and no file of that name appears.
pub fn write_whole<T>(
    dir: &Path,
    name: &str,
    staging: Staging,
    write: impl FnOnce(File, &Path) -> Result<(File, T)>,
) -> Result<(PathBuf, T)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let final_path = dir.join(name);
    let tmp_path = dir.join(format!(".{name}{}", staging.suffix()));
    let written = File::create(&tmp_path)
        .map_err(|e| Error::io(&tmp_path, e))
        .and_then(|file| write(file, &tmp_path))
        .and_then(|(file, value)| {
            file.sync_all().map_err(|e| Error::io(&tmp_path, e))?;
            Ok(value)
        });
    let value = match written {
        Ok(value) => value,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(e);
        }
    };
    labstream_schemas::crash_point(staging.crash_point());
    if let Err(e) = std::fs::rename(&tmp_path, &final_path) {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(Error::io(&final_path, e));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))?;
    Ok((final_path, value))
}

/// Writes `batch` as the Parquet file `dir/name`, whole (see [`write_whole`]).
pub fn write_batch(
    dir: &Path,
    name: &str,
    batch: &RecordBatch,
    properties: WriterProperties,
    staging: Staging,
) -> Result<PathBuf> {
    write_whole(dir, name, staging, |file, _| {
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(properties))
            .map_err(|e| Error::Parquet(e.to_string()))?;
        writer
            .write(batch)
            .map_err(|e| Error::Parquet(e.to_string()))?;
        let file = writer
            .into_inner()
            .map_err(|e| Error::Parquet(e.to_string()))?;
        Ok((file, ()))
    })
    .map(|(path, ())| path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter([(
            "n",
            Arc::new(Int64Array::from(vec![1, 2, 3])) as arrow::array::ArrayRef,
        )])
        .unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_file_appears_whole_under_its_name_and_nothing_else_remains() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        let path = write_batch(
            &dir,
            "x.parquet",
            &batch(),
            WriterProperties::default(),
            Staging::Sink,
        )
        .unwrap();
        assert_eq!(path, dir.join("x.parquet"));
        assert_eq!(names(&dir), ["x.parquet"]);
        let rows: usize = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            File::open(&path).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
        assert_eq!(rows, 3);
    }

    #[test]
    fn a_failed_write_leaves_neither_the_file_nor_its_temporary() {
        let root = tempfile::tempdir().unwrap();
        let err = write_whole(root.path(), "x.parquet", Staging::Sink, |file, tmp| {
            assert!(tmp.exists());
            drop(file);
            Err::<(File, ()), _>(Error::Parquet("no".into()))
        })
        .unwrap_err();
        assert!(matches!(err, Error::Parquet(_)));
        assert!(names(root.path()).is_empty());
    }

    #[test]
    fn an_existing_file_is_replaced_whole() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("x.parquet"), b"old").unwrap();
        write_batch(
            root.path(),
            "x.parquet",
            &batch(),
            WriterProperties::default(),
            Staging::Table,
        )
        .unwrap();
        assert_ne!(
            std::fs::read(root.path().join("x.parquet")).unwrap(),
            b"old"
        );
        assert_eq!(names(root.path()), ["x.parquet"]);
    }
}
