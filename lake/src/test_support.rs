//! Helpers of the lake's unit tests: a one-type registry, records and samples as the
//! sink takes them, and a look at a written file's bloom filters.

use crate::LogPosition;
use labstream_schemas::{FieldValue, Registry, Sample, Timestamp};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

pub(crate) const TOPIC: &str = "t.samples.raw";
/// 2026-11-23T10:00:00Z
pub(crate) const T0: i64 = 1_795_428_000_000_000;

pub(crate) fn registry(with_raw: bool) -> Registry {
    let raw = if with_raw {
        r#", "raw": {"type": "long"}"#
    } else {
        ""
    };
    Registry::from_json_str(
        "test",
        &format!(
            r#"{{"sensor_types": {{"temperature": {{"fields": {{"celsius": {{"type": "double"}}{raw}}}}}}}}}"#
        ),
    )
    .unwrap()
}

pub(crate) fn record(partition: i32, offset: i64) -> LogPosition<'static> {
    LogPosition {
        topic: TOPIC,
        partition,
        offset,
    }
}

pub(crate) fn sample(
    sensor: &str,
    ts: i64,
    seq: Option<i64>,
    celsius: f64,
    raw: Option<i64>,
) -> Sample {
    let mut values = BTreeMap::from([("celsius".to_owned(), FieldValue::Double(celsius))]);
    if let Some(r) = raw {
        values.insert("raw".into(), FieldValue::Long(r));
    }
    Sample {
        sensor_id: sensor.into(),
        sensor_type: "temperature".into(),
        ts: Timestamp::from_micros(ts),
        seq,
        values,
        tags: BTreeMap::from([("room".to_owned(), format!("lab-{}", ts % 3))]),
        received_at: Timestamp::from_micros(ts + 5),
    }
}

/// Per row group of the Parquet file at `path`: whether the bloom filter of `column`
/// may hold `value` (`None`: that column chunk has no filter), and the filter's size.
pub(crate) fn bloom_filter_answers(
    path: &Path,
    column: &str,
    value: &str,
) -> Vec<(Option<bool>, u64)> {
    use parquet::file::properties::ReaderProperties;
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
    let options = ReadOptionsBuilder::new()
        .with_reader_properties(
            ReaderProperties::builder()
                .set_read_bloom_filter(true)
                .build(),
        )
        .build();
    let reader =
        SerializedFileReader::new_with_options(File::open(path).unwrap(), options).unwrap();
    let metadata = reader.metadata();
    let index = metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == column)
        .unwrap_or_else(|| panic!("{} has no column {column}", path.display()));
    (0..metadata.num_row_groups())
        .map(|i| {
            let size = metadata
                .row_group(i)
                .column(index)
                .bloom_filter_length()
                .unwrap_or(0);
            let answer = reader
                .get_row_group(i)
                .unwrap()
                .get_column_bloom_filter(index)
                .map(|f| f.check(value));
            (answer, size as u64)
        })
        .collect()
}
