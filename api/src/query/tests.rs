use super::*;
use arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use std::time::Duration;

/// A lake file of `sensor_type` under `date=<date>/experiment=none/` with the
/// columns sensor_id, ts and `fields` (one row).
fn write_part(lake: &Path, date: &str, name: &str, fields: &[&str]) -> PathBuf {
    let dir = lake.join(format!("samples/door/date={date}/experiment=none"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut columns: Vec<(Field, ArrayRef)> = vec![
        (
            Field::new("sensor_id", DataType::Utf8, false),
            Arc::new(StringArray::from(vec!["door-1"])),
        ),
        (
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Arc::new(TimestampMicrosecondArray::from(vec![1]).with_timezone("UTC")),
        ),
    ];
    for f in fields {
        columns.push((
            Field::new(*f, DataType::Float64, true),
            Arc::new(Float64Array::from(vec![1.5])),
        ));
    }
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap();
    let path = dir.join(name);
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    path
}

/// A live lake file name (one offset each).
fn part(offset: i64) -> String {
    format!("part-t-p0-{offset:020}-{offset:020}.parquet")
}

/// Sets the modification time of `dir` and every folder under it to an hour ago.
fn age_folders(dir: &Path) {
    let old = SystemTime::now() - Duration::from_secs(3600);
    for (folder, _) in folder_times(&FolderListings::default(), dir) {
        std::fs::File::open(&folder)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
}

fn column_names(result: &QueryResult) -> Vec<String> {
    result
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

#[tokio::test]
async fn a_cached_table_schema_follows_new_files() {
    let lake = tempfile::tempdir().unwrap();
    let table = lake.path().join("samples/door");
    write_part(lake.path(), "2026-11-23", &part(0), &["open"]);
    age_folders(&table);
    let engine = QueryEngine::new(lake.path());
    let sql = "SELECT * FROM samples_door ORDER BY date";
    let first = engine.query(sql).await.unwrap();
    assert_eq!(
        column_names(&first),
        ["sensor_id", "ts", "open", "date", "experiment"]
    );
    // Settled folders: the schema is kept, and used again.
    assert_eq!(engine.caches.schemas.lock().unwrap().len(), 1);
    assert_eq!(engine.query(sql).await.unwrap().schema, first.schema);

    // A file with a new column, in a new folder: the table shows it at once.
    write_part(lake.path(), "2026-11-24", &part(1), &["open", "angle"]);
    let second = engine.query(sql).await.unwrap();
    assert_eq!(
        column_names(&second),
        ["sensor_id", "ts", "open", "angle", "date", "experiment"]
    );
    assert_eq!(
        second.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
        2
    );

    // In a folder that already existed too, even once everything is settled again.
    age_folders(&table);
    engine.query(sql).await.unwrap();
    write_part(lake.path(), "2026-11-23", &part(2), &["open", "battery"]);
    let third = engine.query(sql).await.unwrap();
    assert!(column_names(&third).contains(&"battery".to_owned()));
    assert_eq!(third.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
}

/// `samples/door/date=2026-11-23/experiment=none` under `lake`, made.
fn door_folder(lake: &Path) -> std::path::PathBuf {
    let dir = lake.join("samples/door/date=2026-11-23/experiment=none");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The two columns every lake file starts with.
fn id_and_ts() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("sensor_id", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]))
}

/// Writes a lake file `part(offset)` in `dir` with one row per sensor id (ts 0, 1,
/// ...), row groups of at most `row_group_rows` rows, and a bloom filter on
/// `sensor_id` when `bloom` is set. Returns the file's name.
fn write_sensors(
    dir: &Path,
    offset: i64,
    sensors: &[&str],
    row_group_rows: usize,
    bloom: bool,
) -> String {
    let schema = id_and_ts();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_column_bloom_filter_enabled("sensor_id".into(), bloom)
        .set_max_row_group_row_count(Some(row_group_rows))
        .build();
    let ts: Vec<i64> = (0..sensors.len() as i64).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(sensors.to_vec())),
            Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
        ],
    )
    .unwrap();
    let name = part(offset);
    let file = std::fs::File::create(dir.join(&name)).unwrap();
    let mut w = ArrowWriter::try_new(file, schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    name
}

fn rows(result: &QueryResult) -> usize {
    result.batches.iter().map(|b| b.num_rows()).sum()
}

/// `EXPLAIN [ANALYZE] <sql>` as text.
async fn explain(engine: &QueryEngine, analyze: bool, sql: &str) -> String {
    let verb = if analyze {
        "EXPLAIN ANALYZE"
    } else {
        "EXPLAIN"
    };
    let plan = engine.query(&format!("{verb} {sql}")).await.unwrap();
    arrow::util::pretty::pretty_format_batches(&plan.batches)
        .unwrap()
        .to_string()
}

/// A query for one sensor skips the row group whose bloom filter rules it out, even
/// when the group's min/max range holds the value (lake files carry such filters).
#[tokio::test]
async fn row_groups_without_the_value_are_skipped_by_their_bloom_filters() {
    let lake = tempfile::tempdir().unwrap();
    let dir = door_folder(lake.path());
    // Two row groups: door-2 lies inside the first's range (door-1..door-3), not in
    // its filter; the second holds it, so the file itself is read.
    write_sensors(&dir, 0, &["door-1", "door-3", "door-2"], 2, true);
    let engine = QueryEngine::new(lake.path());
    let sql = "SELECT sensor_id FROM samples_door WHERE sensor_id = 'door-2'";
    assert_eq!(rows(&engine.query(sql).await.unwrap()), 1);
    let text = explain(&engine, true, sql).await;
    assert!(
        text.contains("row_groups_pruned_bloom_filter=2 total → 1 matched"),
        "{text}"
    );
}

/// Files that cannot hold a row a query asks for by its ids are left out of the
/// plan: by their bloom filters, and by their min/max statistics. Files without
/// filters are kept; the answers are those of a filter nothing can prune by.
#[tokio::test]
async fn files_the_filters_rule_out_are_not_in_the_plan() {
    let lake = tempfile::tempdir().unwrap();
    let dir = door_folder(lake.path());
    let f0 = write_sensors(&dir, 0, &["door-1", "door-3"], 1024, true);
    let f1 = write_sensors(&dir, 1, &["door-2"], 1024, true);
    let f2 = write_sensors(&dir, 2, &["door-4", "door-2"], 1024, true);
    let f3 = write_sensors(&dir, 3, &["door-1", "door-5"], 1024, false);
    let engine = QueryEngine::new(lake.path());
    let files_in_plan = |text: &str| {
        [&f0, &f1, &f2, &f3]
            .into_iter()
            .filter(|f| text.contains(f.as_str()))
            .cloned()
            .collect::<Vec<_>>()
    };
    // (filter, files in the plan, rows, files in the plan with `sensor_id` behind a
    // function, where only the other conditions can prune)
    let cases = [
        // door-2 is inside f0's min/max range, not in its filter; f3 has none.
        ("sensor_id = 'door-2'", vec![&f1, &f2, &f3], 2, 4),
        (
            "sensor_id IN ('door-3', 'door-4')",
            vec![&f0, &f2, &f3],
            2,
            4,
        ),
        // Past every file's max: statistics alone.
        ("sensor_id = 'door-9'", vec![], 0, 4),
        // Two conditions: each rules out files of its own (f1's rows all have ts 0).
        (
            "sensor_id = 'door-2' AND ts > TIMESTAMP '1970-01-01T00:00:00Z'",
            vec![&f2, &f3],
            1,
            3,
        ),
        // Not door-2: only a file that holds nothing else goes (f1, by its min/max).
        ("sensor_id <> 'door-2'", vec![&f0, &f2, &f3], 5, 4),
    ];
    for (filter, expected_files, expected_rows, unpruned_files) in cases {
        let sql = format!("SELECT sensor_id, ts FROM samples_door WHERE {filter}");
        let text = explain(&engine, false, &sql).await;
        let expected: Vec<String> = expected_files.into_iter().cloned().collect();
        assert_eq!(files_in_plan(&text), expected, "{filter}: {text}");
        let pruned = engine
            .query(&format!("{sql} ORDER BY sensor_id, ts"))
            .await
            .unwrap();
        assert_eq!(rows(&pruned), expected_rows, "{filter}");
        // The same filter with the column behind a function: nothing prunes.
        let unpruned_sql = sql.replace("sensor_id", "lower(sensor_id)").replacen(
            "SELECT lower(sensor_id)",
            "SELECT sensor_id",
            1,
        );
        let text = explain(&engine, false, &unpruned_sql).await;
        assert_eq!(
            files_in_plan(&text).len(),
            unpruned_files,
            "{unpruned_sql}: {text}"
        );
        let unpruned = engine
            .query(&format!("{unpruned_sql} ORDER BY sensor_id, ts"))
            .await
            .unwrap();
        assert_eq!(
            arrow::util::pretty::pretty_format_batches(&pruned.batches)
                .unwrap()
                .to_string(),
            arrow::util::pretty::pretty_format_batches(&unpruned.batches)
                .unwrap()
                .to_string(),
            "{filter}"
        );
    }
}

/// The engine keeps files' bloom filters across queries, but a file deleted and
/// written again under the same name is judged by its new filters.
#[tokio::test]
async fn a_file_written_again_under_its_name_is_judged_by_its_new_bloom_filters() {
    let lake = tempfile::tempdir().unwrap();
    let dir = door_folder(lake.path());
    write_sensors(&dir, 0, &["door-1", "door-3"], 1024, true);
    let engine = QueryEngine::new(lake.path());
    let sql = "SELECT sensor_id FROM samples_door WHERE sensor_id = 'door-2'";
    assert_eq!(rows(&engine.query(sql).await.unwrap()), 0);
    std::fs::remove_file(dir.join(part(0))).unwrap();
    write_sensors(
        &dir,
        0,
        &["door-1", "door-2", "door-2", "door-3"],
        1024,
        true,
    );
    assert_eq!(rows(&engine.query(sql).await.unwrap()), 2);
}

#[tokio::test]
async fn hour_and_day_buckets_of_lake_timestamps_are_exact() {
    let lake = tempfile::tempdir().unwrap();
    let dir = door_folder(lake.path());
    // Around midnight and hour boundaries, before 1970 too (µs since the epoch).
    const HOUR: i64 = 3_600_000_000;
    const DAY: i64 = 24 * HOUR;
    let base = 1_795_392_000_000_000; // 2026-11-23T00:00:00Z
    let ts: Vec<i64> = [base, -DAY * 800]
        .into_iter()
        .flat_map(|b| {
            [
                b - DAY - 1,
                b - 1,
                b,
                b + 1,
                b + HOUR - 1,
                b + HOUR,
                b + 13 * HOUR + 7,
            ]
        })
        .collect();
    let schema = id_and_ts();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["door-1"; ts.len()])),
            Arc::new(TimestampMicrosecondArray::from(ts.clone()).with_timezone("UTC")),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(dir.join(part(0))).unwrap();
    let mut w = ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();

    let engine = QueryEngine::new(lake.path());
    let result = engine
        .query(
            "SELECT ts AS t, date_trunc('hour', ts) AS hour, \
             datetrunc('DAY', ts) AS day FROM samples_door ORDER BY t",
        )
        .await
        .unwrap();
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    for field in result.schema.fields() {
        assert_eq!(field.data_type(), &utc, "{}", field.name());
    }
    let mut rows = Vec::new();
    for batch in &result.batches {
        let column = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap()
                .values()
                .to_vec()
        };
        let (t, h, d) = (column(0), column(1), column(2));
        rows.extend((0..batch.num_rows()).map(|i| (t[i], h[i], d[i])));
    }
    let mut expected: Vec<(i64, i64, i64)> = ts
        .iter()
        .map(|&t| (t, t - t.rem_euclid(HOUR), t - t.rem_euclid(DAY)))
        .collect();
    expected.sort();
    assert_eq!(rows, expected);
}
