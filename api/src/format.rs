//! Output formats of query results and their encoders. An encoder turns record batches
//! into bytes as they come, so a result is streamed, never held whole: JSON (one array),
//! NDJSON, CSV (with a header), Arrow IPC stream, Parquet (zstd; row groups flushed at
//! 64K rows or ~32 MiB, so a result of any size is written in bounded memory).

use crate::error::{Error, Result};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use axum::body::Bytes;
use datafusion::arrow::ipc::writer::StreamWriter;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
    Csv,
    Arrow,
    Parquet,
}

const PARQUET_ROW_GROUP_ROWS: usize = 64 * 1024;
const PARQUET_ROW_GROUP_BYTES: usize = 32 * 1024 * 1024;

impl Format {
    pub const NAMES: &str = "json, ndjson, csv, arrow, parquet";

    /// `?format=` values.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "json" => Format::Json,
            "ndjson" | "jsonl" => Format::Ndjson,
            "csv" => Format::Csv,
            "arrow" | "ipc" | "arrow-ipc" => Format::Arrow,
            "parquet" => Format::Parquet,
            _ => return None,
        })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    fn from_media_type(media: &str) -> Option<Self> {
        Some(match media {
            "application/json" | "application/*" | "*/*" => Format::Json,
            "application/x-ndjson" | "application/jsonl" | "application/json-seq" => Format::Ndjson,
            "text/csv" | "text/*" => Format::Csv,
            "application/vnd.apache.arrow.stream" | "application/vnd.apache.arrow" => Format::Arrow,
            "application/vnd.apache.parquet" | "application/parquet" => Format::Parquet,
            _ => return None,
        })
    }

    /// The format an `Accept` header asks for: the acceptable media type with the
    /// highest `q` (the first among equals); JSON when there is no header.
    pub fn from_accept(accept: Option<&str>) -> Result<Self> {
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
            return Ok(Format::Json);
        };
        let mut best: Option<(f32, Format)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q <= 0.0 {
                continue;
            }
            if let Some(format) = Self::from_media_type(&media)
                && best.is_none_or(|(best_q, _)| q > best_q)
            {
                best = Some((q, format));
            }
        }
        best.map(|(_, f)| f).ok_or_else(|| {
            Error::NotAcceptable(format!(
                "no query result format matches Accept: {accept}; use application/json, application/x-ndjson, text/csv, application/vnd.apache.arrow.stream or application/vnd.apache.parquet (or ?format={})",
                Self::NAMES.replace(", ", "|")
            ))
        })
    }

    pub fn encoder(self, schema: &SchemaRef) -> Result<Encoder> {
        let internal = |e: &dyn std::fmt::Display| Error::Internal(format!("encoder: {e}"));
        let inner = match self {
            Format::Json => Inner::Json(
                arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build(Vec::new()),
            ),
            Format::Ndjson => Inner::Ndjson(
                arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build(Vec::new()),
            ),
            Format::Csv => Inner::Csv {
                schema: schema.clone(),
                header_written: false,
            },
            Format::Arrow => {
                Inner::Arrow(StreamWriter::try_new(Vec::new(), schema).map_err(|e| internal(&e))?)
            }
            Format::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP_ROWS))
                    .set_max_row_group_bytes(Some(PARQUET_ROW_GROUP_BYTES))
                    .set_created_by(format!("labstream {}", env!("CARGO_PKG_VERSION")))
                    .build();
                Inner::Parquet(
                    ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
                        .map_err(|e| internal(&e))?,
                )
            }
        };
        Ok(Encoder { inner })
    }
}

/// Encodes batches one at a time; each call returns the bytes ready to send.
pub struct Encoder {
    inner: Inner,
}

enum Inner {
    Json(arrow::json::Writer<Vec<u8>, arrow::json::writer::JsonArray>),
    Ndjson(arrow::json::Writer<Vec<u8>, arrow::json::writer::LineDelimited>),
    Csv {
        schema: SchemaRef,
        header_written: bool,
    },
    Arrow(StreamWriter<Vec<u8>>),
    Parquet(ArrowWriter<Vec<u8>>),
}

impl Encoder {
    pub fn write(&mut self, batch: &RecordBatch) -> Result<Bytes> {
        let internal = |e: &dyn std::fmt::Display| Error::Internal(format!("encoding: {e}"));
        Ok(Bytes::from(match &mut self.inner {
            Inner::Json(w) => {
                w.write(batch).map_err(|e| internal(&e))?;
                std::mem::take(w.get_mut())
            }
            Inner::Ndjson(w) => {
                w.write(batch).map_err(|e| internal(&e))?;
                std::mem::take(w.get_mut())
            }
            Inner::Csv { header_written, .. } => {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(!*header_written)
                    .build(Vec::new());
                w.write(batch).map_err(|e| internal(&e))?;
                *header_written = true;
                w.into_inner()
            }
            Inner::Arrow(w) => {
                w.write(batch).map_err(|e| internal(&e))?;
                std::mem::take(w.get_mut())
            }
            Inner::Parquet(w) => {
                w.write(batch).map_err(|e| internal(&e))?;
                std::mem::take(w.inner_mut())
            }
        }))
    }

    /// The closing bytes (`]`, the Arrow end-of-stream marker, the Parquet footer; a
    /// CSV header alone when there were no rows).
    pub fn finish(self) -> Result<Bytes> {
        let internal = |e: &dyn std::fmt::Display| Error::Internal(format!("encoding: {e}"));
        Ok(Bytes::from(match self.inner {
            Inner::Json(mut w) => {
                w.finish().map_err(|e| internal(&e))?;
                w.into_inner()
            }
            Inner::Ndjson(mut w) => {
                w.finish().map_err(|e| internal(&e))?;
                w.into_inner()
            }
            Inner::Csv {
                schema,
                header_written,
            } => {
                if header_written {
                    Vec::new()
                } else {
                    let mut w = arrow::csv::WriterBuilder::new()
                        .with_header(true)
                        .build(Vec::new());
                    w.write(&RecordBatch::new_empty(schema))
                        .map_err(|e| internal(&e))?;
                    w.into_inner()
                }
            }
            Inner::Arrow(mut w) => {
                w.finish().map_err(|e| internal(&e))?;
                w.into_inner().map_err(|e| internal(&e))?
            }
            Inner::Parquet(w) => w.into_inner().map_err(|e| internal(&e))?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batches() -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("sensor_id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
            Field::new("mean", DataType::Float64, true),
        ]));
        let a = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Float64Array::from(vec![Some(1.5), None])),
            ],
        )
        .unwrap();
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["c"])),
                Arc::new(Int64Array::from(vec![3])),
                Arc::new(Float64Array::from(vec![Some(-2.0)])),
            ],
        )
        .unwrap();
        (schema, vec![a, b])
    }

    fn encode(format: Format, schema: &SchemaRef, batches: &[RecordBatch]) -> Vec<u8> {
        let mut e = format.encoder(schema).unwrap();
        let mut out = Vec::new();
        for b in batches {
            out.extend_from_slice(&e.write(b).unwrap());
        }
        out.extend_from_slice(&e.finish().unwrap());
        out
    }

    #[test]
    fn text_formats_stream_whole_documents() {
        let (schema, batches) = batches();
        let json: serde_json::Value =
            serde_json::from_slice(&encode(Format::Json, &schema, &batches)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"sensor_id": "a", "n": 1, "mean": 1.5},
                {"sensor_id": "b", "n": 2, "mean": null},
                {"sensor_id": "c", "n": 3, "mean": -2.0},
            ])
        );
        assert_eq!(encode(Format::Json, &schema, &[]), b"[]");
        let ndjson = String::from_utf8(encode(Format::Ndjson, &schema, &batches)).unwrap();
        assert_eq!(ndjson.lines().count(), 3);
        assert_eq!(encode(Format::Ndjson, &schema, &[]), b"");
        let csv = String::from_utf8(encode(Format::Csv, &schema, &batches)).unwrap();
        assert_eq!(csv, "sensor_id,n,mean\na,1,1.5\nb,2,\nc,3,-2.0\n");
        let empty = String::from_utf8(encode(Format::Csv, &schema, &[])).unwrap();
        assert_eq!(empty, "sensor_id,n,mean\n");
    }

    #[test]
    fn binary_formats_read_back_the_same_batches() {
        let (schema, batches) = batches();
        let arrow_bytes = encode(Format::Arrow, &schema, &batches);
        let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(
            std::io::Cursor::new(arrow_bytes),
            None,
        )
        .unwrap();
        let back: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        assert_eq!(back, batches);

        let parquet_bytes = Bytes::from(encode(Format::Parquet, &schema, &batches));
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(parquet_bytes)
                .unwrap()
                .build()
                .unwrap();
        let back: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        let back = arrow::compute::concat_batches(&schema, &back).unwrap();
        assert_eq!(
            back,
            arrow::compute::concat_batches(&schema, &batches).unwrap()
        );
    }

    #[test]
    fn accept_headers_choose_the_format() {
        assert_eq!(Format::from_accept(None).unwrap(), Format::Json);
        assert_eq!(Format::from_accept(Some("*/*")).unwrap(), Format::Json);
        assert_eq!(Format::from_accept(Some("text/csv")).unwrap(), Format::Csv);
        assert_eq!(
            Format::from_accept(Some(
                "application/json;q=0.5, application/vnd.apache.arrow.stream"
            ))
            .unwrap(),
            Format::Arrow
        );
        assert_eq!(
            Format::from_accept(Some("text/html, application/vnd.apache.parquet;q=0.9")).unwrap(),
            Format::Parquet
        );
        let e = Format::from_accept(Some("image/png")).unwrap_err();
        assert!(matches!(e, Error::NotAcceptable(_)), "{e}");
        assert_eq!(Format::from_name("NDJSON"), Some(Format::Ndjson));
        assert_eq!(Format::from_name("xml"), None);
    }
}
