//! Files of the `alerts` table: `<lake>/alerts/date=YYYY-MM-DD/part-<topic>-p<partition>-<first>-<last>.parquet`
//! (the date the first event of the file was emitted), each named by the Kafka offsets
//! of the events it holds and written whole, so a writer that skips the offsets already
//! in the lake never writes an event twice.

use crate::error::{Error, Result};
use crate::file::{Staging, write_batch};
use crate::layout::PartFile;
use crate::tables::alerts_batch;
use labstream_schemas::AlertEvent;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::collections::BTreeMap;
use std::path::Path;

/// Writes the `events` (offset, event) of one topic-partition, in offset order, as one
/// file under `root` (`<lake>/alerts`); returns the last offset written, `None` when
/// there is nothing to write.
pub fn write_events(
    root: &Path,
    topic: &str,
    partition: i32,
    events: &[(i64, AlertEvent)],
) -> Result<Option<i64>> {
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Ok(None);
    };
    let part = PartFile {
        topic: topic.to_owned(),
        partition,
        first_offset: first.0,
        last_offset: last.0,
    };
    let date = first
        .1
        .emitted_at
        .to_datetime()
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".into());
    let dir = root.join(format!("date={date}"));
    let batch = alerts_batch(events.iter().map(|(_, e)| (topic, e)))
        .map_err(|e| Error::Internal(format!("building the alerts rows: {e}")))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    write_batch(&dir, &part.file_name(), &batch, props, Staging::Table)?;
    Ok(Some(last.0))
}

/// Highest offset in the lake per topic-partition, from the file names under `root`
/// (`<lake>/alerts`); temporary files of writes that did not finish count for nothing.
pub fn written_offsets(root: &Path) -> Result<BTreeMap<(String, i32), i64>> {
    let mut out: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let Ok(dates) = std::fs::read_dir(root) else {
        return Ok(out);
    };
    for dir in dates.flatten() {
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for f in files.flatten() {
            if let Some(part) = PartFile::parse(&f.file_name().to_string_lossy()) {
                let e = out.entry((part.topic, part.partition)).or_insert(-1);
                *e = (*e).max(part.last_offset);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::ALERTS_DIR;

    #[test]
    fn offsets_already_in_the_lake_are_read_from_the_file_names() {
        let lake = tempfile::tempdir().unwrap();
        let root = lake.path().join(ALERTS_DIR);
        assert!(written_offsets(&root).unwrap().is_empty());
        for (date, part) in [
            ("2026-11-22", ("p.alerts.freezers", 0, 0, 9)),
            ("2026-11-23", ("p.alerts.freezers", 0, 10, 14)),
            ("2026-11-23", ("p.alerts.freezers", 1, 0, 3)),
        ] {
            let dir = root.join(format!("date={date}"));
            std::fs::create_dir_all(&dir).unwrap();
            let name = PartFile {
                topic: part.0.into(),
                partition: part.1,
                first_offset: part.2,
                last_offset: part.3,
            }
            .file_name();
            std::fs::write(dir.join(&name), b"").unwrap();
            // A temporary file of a write that did not finish counts for nothing.
            std::fs::write(dir.join(format!(".{name}.tmp")), b"").unwrap();
        }
        std::fs::write(
            root.join("date=2026-11-23").join(
                ".part-p.alerts.freezers-p1-00000000000000000004-00000000000000000099.parquet.tmp",
            ),
            b"",
        )
        .unwrap();
        let written = written_offsets(&root).unwrap();
        assert_eq!(written[&("p.alerts.freezers".to_owned(), 0)], 14);
        assert_eq!(written[&("p.alerts.freezers".to_owned(), 1)], 3);
    }
}
