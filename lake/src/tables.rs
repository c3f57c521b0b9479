//! The `experiments` and `recordings` tables of the lake: where their files are, their
//! Arrow schemas, and the rows of a site's experiment state. The experiments processor
//! writes them (one file each, replaced whole on every change); the query engine reads
//! them next to the sample tables, and `labstream export` takes an experiment's metadata
//! from them, so neither needs Kafka. Each experiments row also carries the whole state
//! as JSON (`state`), exactly as `GET /v1/experiments/{id}` serves it.
//! The `alerts` table (one row per alert transition) is described here too; the alerts
//! lake writer appends its files, named by the Kafka offsets they hold.

use arrow::array::{
    ArrayRef, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use labstream_schemas::experiment::ExperimentState;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Folder of the experiment tables inside the lake.
pub const EXPERIMENTS_DIR: &str = "experiments";
pub const EXPERIMENTS_TABLE: &str = "experiments";
pub const RECORDINGS_TABLE: &str = "recordings";

/// `<lake>/experiments/<table>.parquet`.
pub fn table_file(lake: &Path, table: &str) -> PathBuf {
    lake.join(EXPERIMENTS_DIR).join(format!("{table}.parquet"))
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn text_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// One row per experiment.
pub fn experiments_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("experiment_id", DataType::Utf8, false),
        Field::new("site_id", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("owner", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("sensor_config_id", DataType::Utf8, false),
        Field::new("participants", text_list(), false),
        // Task ids, in protocol order (names are in `state`).
        Field::new("tasks", text_list(), false),
        Field::new("operators", text_list(), false),
        Field::new("created_at", timestamp_type(), false),
        Field::new("updated_at", timestamp_type(), false),
        Field::new("version", DataType::Int64, false),
        Field::new("state", DataType::Utf8, false),
    ]))
}

/// One row per recording (`stopped_at` null while it runs; `sensors` empty: every sensor).
pub fn recordings_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("experiment_id", DataType::Utf8, false),
        Field::new("recording_id", DataType::Utf8, false),
        Field::new("participant_id", DataType::Utf8, false),
        Field::new("task_id", DataType::Utf8, false),
        Field::new("sensors", text_list(), false),
        Field::new("started_at", timestamp_type(), false),
        Field::new("stopped_at", timestamp_type(), true),
    ]))
}

fn list_of<'a>(b: &mut ListBuilder<StringBuilder>, items: impl IntoIterator<Item = &'a str>) {
    for item in items {
        b.values().append_value(item);
    }
    b.append(true);
}

fn utc(b: TimestampMicrosecondBuilder) -> TimestampMicrosecondBuilder {
    b.with_timezone("UTC")
}

/// The `experiments` rows of `states`, in the given order.
pub fn experiments_batch<'a>(
    states: impl IntoIterator<Item = &'a ExperimentState>,
) -> Result<RecordBatch, ArrowError> {
    let mut text: [StringBuilder; 8] = Default::default();
    let [id, site, name, owner, description, status, config, state] = &mut text;
    let mut lists: [ListBuilder<StringBuilder>; 3] = Default::default();
    let [participants, tasks, operators] = &mut lists;
    let mut created = utc(TimestampMicrosecondBuilder::new());
    let mut updated = utc(TimestampMicrosecondBuilder::new());
    let mut version = Int64Builder::new();
    for s in states {
        let d = &s.definition;
        id.append_value(s.experiment_id.as_str());
        site.append_value(&s.site_id);
        name.append_value(&d.name);
        owner.append_value(&d.owner);
        description.append_option(d.description.as_deref());
        status.append_value(s.status.as_str());
        config.append_value(d.sensor_config_id.as_str());
        list_of(participants, d.participants.iter().map(|p| p.as_str()));
        list_of(tasks, d.tasks.iter().map(|t| t.task_id.as_str()));
        list_of(operators, d.operators.iter().map(String::as_str));
        created.append_value(s.created_at.as_micros());
        updated.append_value(s.updated_at.as_micros());
        version.append_value(s.version);
        let json = serde_json::to_string(s).map_err(|e| ArrowError::ExternalError(e.into()))?;
        state.append_value(json);
    }
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(14);
    for b in text.iter_mut().take(7) {
        cols.push(Arc::new(b.finish()));
    }
    for b in &mut lists {
        cols.push(Arc::new(b.finish()));
    }
    cols.push(Arc::new(created.finish()));
    cols.push(Arc::new(updated.finish()));
    cols.push(Arc::new(version.finish()));
    cols.push(Arc::new(text[7].finish()));
    RecordBatch::try_new(experiments_schema(), cols)
}

/// The `recordings` rows of `states`: per experiment, in start order.
pub fn recordings_batch<'a>(
    states: impl IntoIterator<Item = &'a ExperimentState>,
) -> Result<RecordBatch, ArrowError> {
    let mut text: [StringBuilder; 4] = Default::default();
    let [experiment, recording, participant, task] = &mut text;
    let mut sensors = ListBuilder::new(StringBuilder::new());
    let mut started = utc(TimestampMicrosecondBuilder::new());
    let mut stopped = utc(TimestampMicrosecondBuilder::new());
    for s in states {
        for r in &s.recordings {
            experiment.append_value(s.experiment_id.as_str());
            recording.append_value(r.recording_id.as_str());
            participant.append_value(r.participant_id.as_str());
            task.append_value(r.task_id.as_str());
            list_of(&mut sensors, r.sensors.iter().map(|s| s.as_str()));
            started.append_value(r.started_at.as_micros());
            stopped.append_option(r.stopped_at.map(|t| t.as_micros()));
        }
    }
    let mut cols: Vec<ArrayRef> = text
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    cols.push(Arc::new(sensors.finish()));
    cols.push(Arc::new(started.finish()));
    cols.push(Arc::new(stopped.finish()));
    RecordBatch::try_new(recordings_schema(), cols)
}

/// Folder of the `alerts` table inside the lake: `<lake>/alerts/date=YYYY-MM-DD/part-*.parquet`
/// (the date the alerts were emitted), written by the alerts lake writer.
pub const ALERTS_DIR: &str = "alerts";
pub const ALERTS_TABLE: &str = "alerts";

/// One row per alert transition (the `AlertEvent`s of every `alerts.<name>` topic);
/// `labels` is a JSON object, `topic` the Kafka topic it came from.
pub fn alerts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("sequence", DataType::Int64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("rule_id", DataType::Utf8, false),
        Field::new("rule_name", DataType::Utf8, false),
        Field::new("rule_revision", DataType::Int64, false),
        Field::new("sensor_id", DataType::Utf8, false),
        Field::new("sensor_type", DataType::Utf8, false),
        Field::new("field", DataType::Utf8, true),
        Field::new("condition", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("threshold", DataType::Float64, true),
        Field::new("severity", DataType::Utf8, false),
        Field::new("labels", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
        Field::new("ts", timestamp_type(), false),
        Field::new("since", timestamp_type(), false),
        Field::new("emitted_at", timestamp_type(), false),
        Field::new("topic", DataType::Utf8, false),
    ]))
}

/// The rows of `(topic, event)` pairs.
pub fn alerts_batch<'a>(
    events: impl IntoIterator<Item = (&'a str, &'a labstream_schemas::AlertEvent)>,
) -> Result<RecordBatch, ArrowError> {
    use arrow::array::Float64Builder;
    let mut text: [StringBuilder; 12] = Default::default();
    let mut longs: [Int64Builder; 2] = Default::default();
    let mut doubles: [Float64Builder; 2] = Default::default();
    let mut times = [
        utc(TimestampMicrosecondBuilder::new()),
        utc(TimestampMicrosecondBuilder::new()),
        utc(TimestampMicrosecondBuilder::new()),
    ];
    for (topic, e) in events {
        text[0].append_value(&e.event_id);
        longs[0].append_value(e.sequence);
        text[1].append_value(e.status.as_str());
        text[2].append_value(e.rule_id.as_str());
        text[3].append_value(&e.rule_name);
        longs[1].append_value(e.rule_revision);
        text[4].append_value(e.sensor_id.as_str());
        text[5].append_value(e.sensor_type.as_str());
        text[6].append_option(e.field.as_deref());
        text[7].append_value(&e.condition);
        doubles[0].append_option(e.value);
        doubles[1].append_option(e.threshold);
        text[8].append_value(e.severity.as_str());
        text[9].append_value(serde_json::to_string(&e.labels).unwrap_or_default());
        text[10].append_value(&e.message);
        times[0].append_value(e.ts.as_micros());
        times[1].append_value(e.since.as_micros());
        times[2].append_value(e.emitted_at.as_micros());
        text[11].append_value(topic);
    }
    let [
        event_id,
        status,
        rule_id,
        rule_name,
        sensor_id,
        sensor_type,
        field,
        condition,
        severity,
        labels,
        message,
        topic,
    ] = text.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let [sequence, rule_revision] = longs.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let [value, threshold] = doubles.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let [ts, since, emitted_at] = times.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    RecordBatch::try_new(
        alerts_schema(),
        vec![
            event_id,
            sequence,
            status,
            rule_id,
            rule_name,
            rule_revision,
            sensor_id,
            sensor_type,
            field,
            condition,
            value,
            threshold,
            severity,
            labels,
            message,
            ts,
            since,
            emitted_at,
            topic,
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use labstream_schemas::experiment::{
        ExperimentDefinition, ExperimentStatus, ProtocolTask, Recording,
    };
    use labstream_schemas::{ExperimentId, Timestamp};

    fn state() -> ExperimentState {
        ExperimentState {
            experiment_id: ExperimentId::from("stroop"),
            site_id: "default".into(),
            version: 4,
            status: ExperimentStatus::Active,
            definition: ExperimentDefinition {
                name: "Stroop".into(),
                owner: "dr-lee".into(),
                description: None,
                sensor_config_id: "bench-1".into(),
                tasks: vec![ProtocolTask {
                    task_id: "rest".into(),
                    name: "Rest".into(),
                    description: None,
                }],
                operators: vec![],
                participants: vec!["P01".into(), "P02".into()],
            },
            created_at: Timestamp::from_micros(1),
            updated_at: Timestamp::from_micros(2),
            recordings: vec![
                Recording {
                    recording_id: "r1".into(),
                    participant_id: "P01".into(),
                    task_id: "rest".into(),
                    sensors: vec![],
                    started_at: Timestamp::from_micros(10),
                    stopped_at: Some(Timestamp::from_micros(20)),
                },
                Recording {
                    recording_id: "r2".into(),
                    participant_id: "P02".into(),
                    task_id: "rest".into(),
                    sensors: vec!["temp-1".into()],
                    started_at: Timestamp::from_micros(30),
                    stopped_at: None,
                },
            ],
            logbook: vec![],
            progress: vec![],
        }
    }

    #[test]
    fn rows_follow_the_state() {
        let s = state();
        let e = experiments_batch([&s]).unwrap();
        assert_eq!(e.num_rows(), 1);
        let json = e
            .column_by_name("state")
            .unwrap()
            .as_string::<i32>()
            .value(0);
        let back: ExperimentState = serde_json::from_str(json).unwrap();
        assert_eq!(back, s);
        let participants = e.column_by_name("participants").unwrap().as_list::<i32>();
        assert_eq!(participants.value(0).len(), 2);

        let r = recordings_batch([&s]).unwrap();
        assert_eq!(r.num_rows(), 2);
        let stopped = r.column_by_name("stopped_at").unwrap();
        assert!(stopped.is_valid(0) && stopped.is_null(1));
        assert_eq!(
            r.column_by_name("participant_id")
                .unwrap()
                .as_string::<i32>()
                .value(1),
            "P02"
        );
        assert_eq!(r.schema(), recordings_schema());
        assert_eq!(experiments_batch([]).unwrap().num_rows(), 0);
    }
}
