use super::*;
use arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};
use labstream_lake::tables::{RECORDINGS_TABLE, experiments_batch, recordings_batch};
use labstream_schemas::experiment::{
    ExperimentDefinition, ExperimentStatus, LogbookEntry, Recording,
};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

fn write(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

fn state() -> ExperimentState {
    let rec = |id: &str, p: &str, start: i64| Recording {
        recording_id: id.into(),
        participant_id: p.into(),
        task_id: "rest".into(),
        sensors: vec![],
        started_at: Timestamp::from_micros(start),
        stopped_at: Some(Timestamp::from_micros(start + 1_000_000_000)),
    };
    ExperimentState {
        experiment_id: "e1".into(),
        site_id: "default".into(),
        version: 7,
        status: ExperimentStatus::Active,
        definition: ExperimentDefinition {
            name: "E1".into(),
            owner: "o".into(),
            description: None,
            sensor_config_id: "c".into(),
            tasks: vec![],
            operators: vec![],
            participants: vec!["P01".into(), "P02".into()],
        },
        created_at: Timestamp::from_micros(0),
        updated_at: Timestamp::from_micros(0),
        recordings: vec![rec("r1", "P01", 0), rec("r2", "P02", 2_000_000_000)],
        logbook: vec![
            LogbookEntry {
                entry_id: "l1".into(),
                at: Timestamp::from_micros(5),
                author: "a".into(),
                text: "about P02".into(),
                recording_id: Some("r2".into()),
            },
            LogbookEntry {
                entry_id: "l2".into(),
                at: Timestamp::from_micros(6),
                author: "a".into(),
                text: "general".into(),
                recording_id: None,
            },
        ],
        progress: vec![],
    }
}

/// A lake with the experiment's tables and `rows` temperature samples per
/// participant in 1970-01-01/e1, plus samples of no experiment.
fn lake(rows: usize) -> tempfile::TempDir {
    let lake = tempfile::tempdir().unwrap();
    let s = state();
    write(
        &table_file(lake.path(), EXPERIMENTS_TABLE),
        &experiments_batch([&s]).unwrap(),
    );
    write(
        &table_file(lake.path(), RECORDINGS_TABLE),
        &recordings_batch([&s]).unwrap(),
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("sensor_id", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("celsius", DataType::Float64, true),
        Field::new("participant_id", DataType::Utf8, true),
    ]));
    for (experiment, participants) in [("e1", ["P01", "P02"]), ("none", ["", ""])] {
        let n = rows * 2;
        let p: Vec<Option<&str>> = (0..n)
            .map(|i| Some(participants[i % 2]).filter(|p| !p.is_empty()))
            .collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["t-1"; n])),
                Arc::new(
                    TimestampMicrosecondArray::from((0..n as i64).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from(
                    (0..n).map(|i| i as f64 / 3.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(p)),
            ],
        )
        .unwrap();
        write(
            &lake.path().join(format!(
                "samples/temperature/date=1970-01-01/experiment={experiment}/part-t-p0-{:020}-{:020}.parquet",
                0, n
            )),
            &batch,
        );
    }
    lake
}

async fn archive(
    engine: &QueryEngine,
    request: ExportRequest,
    part_bytes: usize,
) -> BTreeMap<String, Vec<u8>> {
    let export = engine
        .export(request)
        .await
        .unwrap()
        .with_part_bytes(part_bytes);
    let chunks: Vec<Bytes> = export
        .into_stream(|_| {})
        .map(|c| c.unwrap())
        .collect()
        .await;
    let bytes = chunks.concat();
    assert_eq!(bytes.len() % 512, 0);
    let mut files = BTreeMap::new();
    let mut tar = tar::Archive::new(&bytes[..]);
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.insert(path, data);
    }
    files
}

fn celsius_of(files: &BTreeMap<String, Vec<u8>>) -> Vec<(i64, f64, String)> {
    let mut rows = Vec::new();
    for (path, data) in files.iter().filter(|(p, _)| p.ends_with(".parquet")) {
        assert!(path.starts_with("samples/temperature/part-"), "{path}");
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(data.clone()))
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            let b = b.unwrap();
            assert_eq!(
                b.schema().field_with_name("sensor_id").unwrap().data_type(),
                &DataType::Utf8
            );
            assert!(b.column_by_name("experiment").is_none());
            let ts = b
                .column_by_name("ts")
                .unwrap()
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            let c = b
                .column_by_name("celsius")
                .unwrap()
                .as_primitive::<arrow::datatypes::Float64Type>();
            let p = b
                .column_by_name("participant_id")
                .unwrap()
                .as_string::<i32>();
            for i in 0..b.num_rows() {
                rows.push((ts.value(i), c.value(i), p.value(i).to_owned()));
            }
        }
    }
    rows.sort_by_key(|a| a.0);
    rows
}

#[tokio::test]
async fn exports_the_rows_of_the_experiment_in_bounded_parts() {
    let lake = lake(50_000);
    let engine = QueryEngine::new(lake.path());
    let whole = ExportRequest {
        experiment_id: "e1".into(),
        participant: None,
        day: None,
    };
    let files = archive(&engine, whole.clone(), 64 * 1024).await;
    let rows = celsius_of(&files);
    assert_eq!(rows.len(), 100_000);
    assert_eq!(rows[3], (3, 1.0, "P02".to_owned()));
    let parts = files.keys().filter(|p| p.ends_with(".parquet")).count();
    assert!(parts > 1, "small parts: {parts}");
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(manifest["tables"][0]["rows"], 100_000);
    assert_eq!(
        manifest["tables"][0]["files"].as_array().unwrap().len(),
        parts
    );
    let meta: ExperimentState = serde_json::from_slice(&files["metadata.json"]).unwrap();
    assert_eq!(meta, state());

    let one = ExportRequest {
        participant: Some("P01".into()),
        day: NaiveDate::from_ymd_opt(1970, 1, 1),
        ..whole.clone()
    };
    let files = archive(&engine, one, DEFAULT_PART_BYTES).await;
    let rows = celsius_of(&files);
    assert_eq!(rows.len(), 50_000);
    assert!(rows.iter().all(|r| r.2 == "P01" && r.0 % 2 == 0));
    let recordings: Vec<Recording> = serde_json::from_slice(&files["recordings.json"]).unwrap();
    assert_eq!(recordings.len(), 1);
    let logbook: Vec<LogbookEntry> = serde_json::from_slice(&files["logbook.json"]).unwrap();
    assert_eq!(logbook.len(), 1, "P02's entry is left out");
    assert_eq!(logbook[0].entry_id, "l2");

    // Another day: metadata, no samples.
    let other_day = ExportRequest {
        day: NaiveDate::from_ymd_opt(2026, 1, 1),
        ..whole
    };
    let files = archive(&engine, other_day, DEFAULT_PART_BYTES).await;
    assert_eq!(celsius_of(&files).len(), 0);
    assert!(files.contains_key("metadata.json"));

    let missing = engine
        .export(ExportRequest {
            experiment_id: "nope".into(),
            participant: None,
            day: None,
        })
        .await;
    assert!(matches!(missing, Err(Error::NotFound(_))));
}

#[tokio::test]
async fn experiment_tables_join_samples_and_are_empty_before_written() {
    let empty = tempfile::tempdir().unwrap();
    let engine = QueryEngine::new(empty.path());
    let r = engine
        .query("SELECT count(*) AS n FROM experiments, recordings")
        .await
        .unwrap();
    assert_eq!(
        r.batches[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0),
        0
    );
    let lake = lake(10);
    let engine = QueryEngine::new(lake.path());
    let r = engine
        .query(
            "SELECT r.participant_id, count(*) AS n FROM samples_temperature s \
             JOIN recordings r ON r.experiment_id = s.experiment \
             AND r.participant_id = s.participant_id AND s.ts >= r.started_at AND s.ts < r.stopped_at \
             JOIN experiments e ON e.experiment_id = r.experiment_id AND e.status = 'active' \
             GROUP BY 1 ORDER BY 1",
        )
        .await
        .unwrap();
    let b = &r.batches[0];
    assert_eq!(b.num_rows(), 1);
    assert_eq!(b.column(0).as_string_view().value(0), "P01");
    assert_eq!(
        b.column(1)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0),
        10
    );
}
