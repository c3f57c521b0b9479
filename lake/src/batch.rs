//! Samples of one sensor type -> an Arrow record batch with typed columns from the
//! registry, sorted by (sensor_id, ts) so row-group statistics prune well. The recording
//! context of enriched samples (experiment, recording, participant, task) comes last,
//! null for samples outside any recording.

use crate::error::{Error, Result};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int64Array, Int64Builder, MapBuilder,
    MapFieldNames, StringArray, StringBuilder, TimestampMicrosecondBuilder, UInt32Array,
};
use arrow::compute::take_record_batch;
use arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use arrow::record_batch::RecordBatch;
use labstream_schemas::experiment::EnrichedSample;
use labstream_schemas::{FieldType, FieldValue, FieldValueRef, SampleView, SensorTypeSpec};
use std::collections::HashMap;
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

/// One registry field's column while rows are buffered.
enum FieldColumn {
    Double(Float64Builder),
    Long(Int64Builder),
    Boolean(BooleanBuilder),
    String(StringBuilder),
}

/// Rows of one lake file, buffered column by column straight into Arrow builders: no
/// `Sample` is kept, so buffering costs a few appends per row, the memory is the
/// columns' bytes (counted as they are appended), and the flush only sorts and encodes.
pub(crate) struct ColumnBuffer {
    spec: SensorTypeSpec,
    sensor_id: StringBuilder,
    ts: TimestampMicrosecondBuilder,
    seq: Int64Builder,
    fields: Vec<FieldColumn>,
    tags: MapBuilder<StringBuilder, StringBuilder>,
    received_at: TimestampMicrosecondBuilder,
    context: [StringBuilder; 4],
    bytes: usize,
}

impl ColumnBuffer {
    pub(crate) fn new(spec: &SensorTypeSpec) -> Self {
        let fields = spec
            .fields
            .values()
            .map(|f| match f.field_type {
                FieldType::Double => FieldColumn::Double(Float64Builder::new()),
                FieldType::Long => FieldColumn::Long(Int64Builder::new()),
                FieldType::Boolean => FieldColumn::Boolean(BooleanBuilder::new()),
                FieldType::String => FieldColumn::String(StringBuilder::new()),
            })
            .collect();
        Self {
            spec: spec.clone(),
            sensor_id: StringBuilder::new(),
            ts: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            seq: Int64Builder::new(),
            fields,
            tags: MapBuilder::new(
                Some(MapFieldNames {
                    entry: "key_value".into(),
                    key: "key".into(),
                    value: "value".into(),
                }),
                StringBuilder::new(),
                StringBuilder::new(),
            ),
            received_at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            context: Default::default(),
            bytes: 0,
        }
    }

    /// Bytes the buffered columns hold: values, offsets and validity, as appended. The
    /// builders grow by doubling, so what they have allocated is up to twice this.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn push(&mut self, s: &SampleView<'_>) -> Result<()> {
        // sensor_id (offset + bytes), ts, seq, received_at, tags offset, validity bits.
        let mut bytes = 4 + s.sensor_id.len() + 8 + 8 + 8 + 4 + 1;
        self.sensor_id.append_value(s.sensor_id);
        self.ts.append_value(s.ts.as_micros());
        self.seq.append_option(s.seq);
        self.received_at.append_value(s.received_at.as_micros());
        for ((name, _), column) in self.spec.fields.iter().zip(&mut self.fields) {
            let value = s.value(name);
            match column {
                FieldColumn::Double(b) => {
                    bytes += 8;
                    b.append_option(match value {
                        Some(FieldValueRef::Double(v)) => Some(v),
                        Some(FieldValueRef::Long(v)) => Some(v as f64),
                        _ => None,
                    });
                }
                FieldColumn::Long(b) => {
                    bytes += 8;
                    b.append_option(match value {
                        Some(FieldValueRef::Long(v)) => Some(v),
                        _ => None,
                    });
                }
                FieldColumn::Boolean(b) => b.append_option(match value {
                    Some(FieldValueRef::Bool(v)) => Some(v),
                    _ => None,
                }),
                FieldColumn::String(b) => match value {
                    Some(FieldValueRef::Str(v)) => {
                        bytes += 4 + v.len();
                        b.append_value(v);
                    }
                    _ => {
                        bytes += 4;
                        b.append_null();
                    }
                },
            }
        }
        for (k, v) in &s.tags {
            bytes += 8 + k.len() + v.len();
            self.tags.keys().append_value(k);
            self.tags.values().append_value(v);
        }
        self.tags
            .append(true)
            .map_err(|e| Error::Parquet(e.to_string()))?;
        let c = s.context.as_ref();
        let context = [
            c.map(|c| c.experiment_id),
            c.map(|c| c.recording_id),
            c.map(|c| c.participant_id),
            c.map(|c| c.task_id),
        ];
        for (b, v) in self.context.iter_mut().zip(context) {
            bytes += 4 + v.map_or(0, str::len);
            b.append_option(v);
        }
        self.bytes += bytes;
        Ok(())
    }

    /// The buffered rows as one batch, sorted by (sensor_id, ts, seq); the buffer is
    /// empty afterwards.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.sensor_id.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.seq.finish()),
        ];
        for column in &mut self.fields {
            columns.push(match column {
                FieldColumn::Double(b) => Arc::new(b.finish()),
                FieldColumn::Long(b) => Arc::new(b.finish()),
                FieldColumn::Boolean(b) => Arc::new(b.finish()),
                FieldColumn::String(b) => Arc::new(b.finish()),
            });
        }
        columns.push(Arc::new(self.tags.finish()));
        columns.push(Arc::new(self.received_at.finish()));
        for b in &mut self.context {
            columns.push(Arc::new(b.finish()));
        }
        self.bytes = 0;
        let parquet = |e: arrow::error::ArrowError| Error::Parquet(e.to_string());
        let batch = RecordBatch::try_new(arrow_schema(&self.spec), columns).map_err(parquet)?;
        let indices = sorted_order(
            batch.column(0).as_string::<i32>(),
            batch
                .column(1)
                .as_primitive::<TimestampMicrosecondType>()
                .values(),
            batch.column(2).as_primitive::<Int64Type>(),
        );
        take_record_batch(&batch, &indices).map_err(parquet)
    }
}

/// The row order by (sensor_id, ts, seq), a missing seq first (as `None < Some(_)`),
/// ties in row order. Each distinct sensor id is ranked once (a buffer holds a few
/// hundred sensors at most), then integer keys are sorted: far cheaper than comparing
/// the strings row against row as a general multi-column sort does.
fn sorted_order(ids: &StringArray, ts: &[i64], seq: &Int64Array) -> UInt32Array {
    let n = ids.len();
    let mut first_seen: HashMap<&str, u32> = HashMap::new();
    let mut seen_as: Vec<u32> = Vec::with_capacity(n);
    for i in 0..n {
        let next = first_seen.len() as u32;
        seen_as.push(*first_seen.entry(ids.value(i)).or_insert(next));
    }
    let mut by_name: Vec<(&str, u32)> = first_seen.into_iter().collect();
    by_name.sort_unstable();
    let mut rank = vec![0u32; by_name.len()];
    for (r, (_, seen)) in by_name.iter().enumerate() {
        rank[*seen as usize] = r as u32;
    }
    let mut keys: Vec<(u32, i64, Option<i64>, u32)> = (0..n)
        .map(|i| {
            let seq = seq.is_valid(i).then(|| seq.value(i));
            (rank[seen_as[i] as usize], ts[i], seq, i as u32)
        })
        .collect();
    keys.sort_unstable();
    UInt32Array::from_iter_values(keys.into_iter().map(|k| k.3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use labstream_schemas::experiment::RecordingContext;
    use labstream_schemas::{Registry, Sample, SensorId, SensorType, Timestamp};
    use std::collections::BTreeMap;

    fn spec() -> SensorTypeSpec {
        Registry::from_json_str(
            "test",
            r#"{"sensor_types": {"mixed": {"fields": {"d": {"type": "double"}, "l": {"type": "long"}, "b": {"type": "boolean"}, "s": {"type": "string"}}}}}"#,
        )
        .unwrap()
        .get("mixed")
        .unwrap()
        .clone()
    }

    fn samples() -> Vec<EnrichedSample> {
        let mut out = Vec::new();
        for i in 0..200i64 {
            let mut values = BTreeMap::new();
            match i % 5 {
                0 => {
                    values.insert("d".to_owned(), FieldValue::Double(i as f64 / 3.0));
                }
                1 => {
                    values.insert("d".to_owned(), FieldValue::Long(i));
                    values.insert("l".to_owned(), FieldValue::Long(-i));
                }
                2 => {
                    values.insert("b".to_owned(), FieldValue::Bool(i % 2 == 0));
                }
                3 => {
                    values.insert("s".to_owned(), FieldValue::Str(format!("v{i}")));
                    values.insert("unknown".to_owned(), FieldValue::Long(1));
                }
                _ => {}
            }
            let tags = (0..i % 3)
                .map(|t| (format!("k{t}"), format!("tag-{i}-{t}")))
                .collect();
            out.push(EnrichedSample {
                sample: Sample {
                    // Out of order, with equal ids and ts, some without seq.
                    sensor_id: SensorId::new(format!("s-{}", (i * 7) % 11)),
                    sensor_type: SensorType::new("mixed"),
                    ts: Timestamp::from_micros(1_000_000 + (i * 13) % 17),
                    seq: (i % 4 != 0).then_some((i * 5) % 9),
                    values,
                    tags,
                    received_at: Timestamp::from_micros(2_000_000 + i),
                },
                context: (i % 2 == 0).then(|| RecordingContext {
                    experiment_id: format!("e{}", i % 3).into(),
                    recording_id: format!("r{i}").into(),
                    participant_id: "P01".to_owned().into(),
                    task_id: "rest".to_owned().into(),
                }),
            });
        }
        out
    }

    /// Buffering column by column gives the very batch that building from samples gives.
    #[test]
    fn column_buffer_equals_the_batch_built_from_samples() {
        let spec = spec();
        let mut samples = samples();
        // Distinct dedupe keys, so the order of the sorted rows is unique.
        samples.sort_by_key(|e| {
            (
                e.sample.sensor_id.as_str().to_owned(),
                e.sample.ts,
                e.sample.seq,
            )
        });
        samples.dedup_by_key(|e| {
            (
                e.sample.sensor_id.as_str().to_owned(),
                e.sample.ts,
                e.sample.seq,
            )
        });
        samples.reverse();
        let mut buffer = ColumnBuffer::new(&spec);
        for e in &samples {
            buffer.push(&SampleView::of(e)).unwrap();
        }
        assert!(buffer.bytes() > 0);
        let columnar = buffer.finish().unwrap();
        assert_eq!(buffer.bytes(), 0);
        let expected = to_record_batch(&spec, &mut samples).unwrap();
        assert_eq!(columnar, expected);
        // Reusable after a flush.
        buffer.push(&SampleView::of(&samples[0])).unwrap();
        assert_eq!(buffer.finish().unwrap().num_rows(), 1);
    }

    /// The integer-key sort orders rows as a general sort by (sensor_id, ts, seq) with a
    /// missing seq first does, ties in row order.
    #[test]
    fn sorted_order_equals_a_general_sort_by_id_ts_and_seq() {
        let n = 5000;
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut ids = Vec::new();
        let mut ts = Vec::new();
        let mut seq = Vec::new();
        for _ in 0..n {
            ids.push(format!("s-{}", next() % 37));
            ts.push((next() % 50) as i64 - 25);
            let v = next();
            seq.push((v % 3 != 0).then_some((v % 5) as i64 - 2));
        }
        let order = sorted_order(
            &StringArray::from(ids.clone()),
            &ts,
            &Int64Array::from(seq.clone()),
        );
        let mut expected: Vec<usize> = (0..n).collect();
        expected.sort_by(|&a, &b| {
            (ids[a].as_str(), ts[a], seq[a]).cmp(&(ids[b].as_str(), ts[b], seq[b]))
        });
        let got: Vec<usize> = order.values().iter().map(|&i| i as usize).collect();
        assert_eq!(got, expected);
    }
}
