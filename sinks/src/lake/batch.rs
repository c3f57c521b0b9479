//! Samples of one sensor type -> an Arrow record batch with typed columns from the
//! registry, sorted by (sensor_id, ts) so row-group statistics prune well. The recording
//! context of enriched samples (experiment, recording, participant, task) comes last,
//! null for samples outside any recording.

use crate::error::{Error, Result};
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, MapBuilder, MapFieldNames,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use labstream_schemas::experiment::EnrichedSample;
use labstream_schemas::{FieldType, FieldValue, SensorTypeSpec};
use std::sync::Arc;

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn tags_type() -> DataType {
    DataType::Map(
        // The Parquet spec's names (key_value/key/value), which Spark, Hive, DuckDB and
        // pyarrow expect; Arrow's defaults (entries/keys/values) confuse some readers.
        Arc::new(Field::new(
            "key_value",
            DataType::Struct(
                vec![
                    Field::new("key", DataType::Utf8, false),
                    Field::new("value", DataType::Utf8, true),
                ]
                .into(),
            ),
            false,
        )),
        false,
    )
}

/// Columns of the table of one sensor type: the envelope, then one nullable column per
/// registry field (a field added later is simply null in older files).
pub fn arrow_schema(spec: &SensorTypeSpec) -> SchemaRef {
    let mut fields = vec![
        Field::new("sensor_id", DataType::Utf8, false),
        Field::new("ts", timestamp_type(), false),
        Field::new("seq", DataType::Int64, true),
    ];
    for (name, f) in &spec.fields {
        let dt = match f.field_type {
            FieldType::Double => DataType::Float64,
            FieldType::Long => DataType::Int64,
            FieldType::Boolean => DataType::Boolean,
            FieldType::String => DataType::Utf8,
        };
        fields.push(Field::new(name, dt, true));
    }
    fields.push(Field::new("tags", tags_type(), true));
    fields.push(Field::new("received_at", timestamp_type(), false));
    for name in CONTEXT_COLUMNS {
        fields.push(Field::new(name, DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

/// The recording context columns, in order.
pub const CONTEXT_COLUMNS: [&str; 4] =
    ["experiment_id", "recording_id", "participant_id", "task_id"];

/// Sorts `samples` by (sensor_id, ts, seq) and builds the batch.
pub fn to_record_batch(
    spec: &SensorTypeSpec,
    enriched: &mut [EnrichedSample],
) -> Result<RecordBatch> {
    enriched.sort_by(|a, b| {
        let (a, b) = (&a.sample, &b.sample);
        (a.sensor_id.as_str(), a.ts, a.seq).cmp(&(b.sensor_id.as_str(), b.ts, b.seq))
    });
    let mut context: [StringBuilder; 4] = Default::default();
    for e in enriched.iter() {
        let c = e.context.as_ref();
        context[0].append_option(c.map(|c| c.experiment_id.as_str()));
        context[1].append_option(c.map(|c| c.recording_id.as_str()));
        context[2].append_option(c.map(|c| c.participant_id.as_str()));
        context[3].append_option(c.map(|c| c.task_id.as_str()));
    }
    let samples: Vec<&labstream_schemas::Sample> = enriched.iter().map(|e| &e.sample).collect();
    let n = samples.len();
    let mut sensor_id = StringBuilder::with_capacity(n, n * 16);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut seq = Int64Builder::with_capacity(n);
    let mut received_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut tags = MapBuilder::new(
        Some(MapFieldNames {
            entry: "key_value".into(),
            key: "key".into(),
            value: "value".into(),
        }),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    for s in samples.iter().copied() {
        sensor_id.append_value(s.sensor_id.as_str());
        ts.append_value(s.ts.as_micros());
        seq.append_option(s.seq);
        received_at.append_value(s.received_at.as_micros());
        for (k, v) in &s.tags {
            tags.keys().append_value(k);
            tags.values().append_value(v);
        }
        tags.append(true)
            .map_err(|e| Error::Parquet(e.to_string()))?;
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(sensor_id.finish()),
        Arc::new(ts.finish()),
        Arc::new(seq.finish()),
    ];
    for (name, f) in &spec.fields {
        let column: ArrayRef = match f.field_type {
            FieldType::Double => {
                let mut b = Float64Builder::with_capacity(n);
                for s in samples.iter().copied() {
                    b.append_option(match s.values.get(name) {
                        Some(FieldValue::Double(v)) => Some(*v),
                        Some(FieldValue::Long(v)) => Some(*v as f64),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            FieldType::Long => {
                let mut b = Int64Builder::with_capacity(n);
                for s in samples.iter().copied() {
                    b.append_option(match s.values.get(name) {
                        Some(FieldValue::Long(v)) => Some(*v),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            FieldType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(n);
                for s in samples.iter().copied() {
                    b.append_option(match s.values.get(name) {
                        Some(FieldValue::Bool(v)) => Some(*v),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            FieldType::String => {
                let mut b = StringBuilder::new();
                for s in samples.iter().copied() {
                    b.append_option(match s.values.get(name) {
                        Some(FieldValue::Str(v)) => Some(v.as_str()),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
        };
        columns.push(column);
    }
    columns.push(Arc::new(tags.finish()));
    columns.push(Arc::new(received_at.finish()));
    for mut b in context {
        columns.push(Arc::new(b.finish()));
    }
    RecordBatch::try_new(arrow_schema(spec), columns).map_err(|e| Error::Parquet(e.to_string()))
}
