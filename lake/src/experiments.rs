//! Writes the site's experiment state to the lake as the `experiments` and `recordings`
//! tables (`<lake>/experiments/*.parquet`), so SQL can join samples with recordings and
//! exports read metadata without Kafka. Each file is replaced whole: temporary name,
//! fsync, rename, fsync of the folder, so a reader sees the old or the new file, never
//! half of one.

use crate::error::{Error, Result};
use crate::file::{Staging, write_batch};
use crate::tables::{
    EXPERIMENTS_TABLE, RECORDINGS_TABLE, experiments_batch, recordings_batch, table_file,
};
use arrow::record_batch::RecordBatch;
use labstream_schemas::experiment::ExperimentState;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::path::Path;

/// Replaces both tables with the rows of `states`.
pub fn write_tables<'a>(
    lake: &Path,
    states: impl IntoIterator<Item = &'a ExperimentState> + Clone,
) -> Result<()> {
    let experiments =
        experiments_batch(states.clone()).map_err(|e| Error::Internal(e.to_string()))?;
    let recordings = recordings_batch(states).map_err(|e| Error::Internal(e.to_string()))?;
    replace(&table_file(lake, EXPERIMENTS_TABLE), &experiments)?;
    replace(&table_file(lake, RECORDINGS_TABLE), &recordings)?;
    Ok(())
}

fn replace(path: &Path, batch: &RecordBatch) -> Result<()> {
    let dir = path.parent().expect("a table file is inside the lake");
    let name = path.file_name().expect("a file name").to_string_lossy();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    write_batch(dir, &name, batch, props, Staging::Table)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use labstream_schemas::experiment::{ExperimentDefinition, ExperimentStatus};
    use labstream_schemas::{ExperimentId, Timestamp};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::fs::File;

    #[test]
    fn replaces_both_files_whole() {
        let lake = tempfile::tempdir().unwrap();
        let state = |id: &str| ExperimentState {
            experiment_id: ExperimentId::from(id),
            site_id: "default".into(),
            version: 1,
            status: ExperimentStatus::Draft,
            definition: ExperimentDefinition {
                name: id.into(),
                owner: "o".into(),
                description: None,
                sensor_config_id: "c".into(),
                tasks: vec![],
                operators: vec![],
                participants: vec![],
            },
            created_at: Timestamp::from_micros(0),
            updated_at: Timestamp::from_micros(0),
            recordings: vec![],
            logbook: vec![],
            progress: vec![],
        };
        let rows = |table: &str| -> usize {
            let file = File::open(table_file(lake.path(), table)).unwrap();
            ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap()
                .map(|b| b.unwrap().num_rows())
                .sum()
        };
        let (a, b) = (state("a"), state("b"));
        write_tables(lake.path(), [&a, &b]).unwrap();
        assert_eq!(rows(EXPERIMENTS_TABLE), 2);
        write_tables(lake.path(), [&a]).unwrap();
        assert_eq!(rows(EXPERIMENTS_TABLE), 1);
        assert_eq!(rows(RECORDINGS_TABLE), 0);
        let names: Vec<_> = std::fs::read_dir(lake.path().join("experiments"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }
}
