//! Samples read from files (NDJSON, CSV, InfluxDB line protocol; gzip when the name
//! ends in `.gz`), for `labstream backfill`: each line goes through the same parsers
//! and validator as HTTP ingest and comes out with its line number, so a bad line is
//! reported as file:line with the reason ingest would give.

use crate::csv::CsvColumns;
use crate::json::parse_json_line;
use crate::line_protocol::parse_line;
use crate::validate::{Invalid, Precision, RawValue, Validator};
use labstream_schemas::Sample;
use std::io::{BufRead, BufReader};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON sample per line, as `POST /v1/samples` with `application/x-ndjson`.
    Ndjson,
    /// A header row, then one sample per row (see `CsvColumns`).
    Csv,
    /// InfluxDB line protocol, as `POST /api/v2/write`.
    LineProtocol,
}

impl FileFormat {
    /// From the file name: `.ndjson`/`.jsonl`/`.json`, `.csv`, `.lp`/`.line`/`.influx`,
    /// each optionally followed by `.gz`.
    pub fn detect(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let ext = name.rsplit_once('.')?.1;
        match ext {
            "ndjson" | "jsonl" | "json" => Some(Self::Ndjson),
            "csv" => Some(Self::Csv),
            "lp" | "line" | "influx" => Some(Self::LineProtocol),
            _ => None,
        }
    }

    /// Unit of integer timestamps when none is given: as ingest (`ns` for line protocol).
    pub fn default_precision(self) -> Precision {
        match self {
            Self::LineProtocol => Precision::Ns,
            Self::Ndjson | Self::Csv => Precision::Ms,
        }
    }
}

/// Opens `path` for reading, decompressing when its name ends in `.gz`.
pub fn open_file(path: &Path) -> std::io::Result<Box<dyn BufRead + Send>> {
    let file = std::fs::File::open(path)?;
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    Ok(if gz {
        Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::read::MultiGzDecoder::new(file),
        ))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, file))
    })
}

/// One line (or CSV row) of a file: its 1-based line number and the sample or why not.
pub type FileLine = (u64, Result<Sample, Invalid>);

/// The samples of one file, in order. Blank lines (and `#` comments in line protocol)
/// are skipped; a CSV file without a usable header fails at once.
pub struct FileSamples<'v, R: BufRead> {
    inner: Inner<R>,
    precision: Precision,
    sensor_id_tag: String,
    validator: &'v Validator<'v>,
    values: Vec<(String, RawValue)>,
}

enum Inner<R: BufRead> {
    Lines {
        reader: R,
        line: u64,
        buf: Vec<u8>,
        json: bool,
    },
    Csv {
        reader: csv::Reader<R>,
        columns: CsvColumns,
        record: csv::StringRecord,
    },
}

impl<'v, R: BufRead> FileSamples<'v, R> {
    pub fn new(
        reader: R,
        format: FileFormat,
        precision: Precision,
        sensor_id_tag: &str,
        validator: &'v Validator<'v>,
    ) -> Result<Self, String> {
        let inner = match format {
            FileFormat::Ndjson | FileFormat::LineProtocol => Inner::Lines {
                reader,
                line: 0,
                buf: Vec::new(),
                json: format == FileFormat::Ndjson,
            },
            FileFormat::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(true)
                    .from_reader(reader);
                let header = reader
                    .headers()
                    .map_err(|e| format!("line 1: the CSV header cannot be read: {e}"))?;
                let columns =
                    CsvColumns::from_header(header.iter()).map_err(|e| format!("line 1: {e}"))?;
                Inner::Csv {
                    reader,
                    columns,
                    record: csv::StringRecord::new(),
                }
            }
        };
        Ok(Self {
            inner,
            precision,
            sensor_id_tag: sensor_id_tag.to_owned(),
            validator,
            values: Vec::new(),
        })
    }
}

impl<R: BufRead> Iterator for FileSamples<'_, R> {
    /// An I/O error ends the file; anything else is a line's outcome.
    type Item = std::io::Result<FileLine>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Lines {
                reader,
                line,
                buf,
                json,
            } => loop {
                buf.clear();
                match reader.read_until(b'\n', buf) {
                    Err(e) => return Some(Err(e)),
                    Ok(0) => return None,
                    Ok(_) => {}
                }
                *line += 1;
                let text = buf.strip_suffix(b"\n").unwrap_or(buf);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                let first = text.iter().position(|b| !b.is_ascii_whitespace());
                let Some(first) = first else { continue };
                let result = if *json {
                    parse_json_line(text, self.precision, self.validator)
                } else if text[first] == b'#' {
                    continue;
                } else {
                    parse_line(
                        text,
                        self.precision,
                        &self.sensor_id_tag,
                        self.validator,
                        &mut self.values,
                    )
                };
                return Some(Ok((*line, result)));
            },
            Inner::Csv {
                reader,
                columns,
                record,
            } => loop {
                match reader.read_record(record) {
                    Ok(false) => return None,
                    Ok(true) => {
                        if record.iter().all(|c| c.trim().is_empty()) {
                            continue;
                        }
                        let line = record.position().map_or(0, |p| p.line());
                        return Some(Ok((
                            line,
                            columns.sample(record, self.precision, self.validator),
                        )));
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line());
                        return match e.into_kind() {
                            csv::ErrorKind::Io(io) => Some(Err(io)),
                            other => Some(Ok((
                                line,
                                Err(Invalid::malformed(format!("not valid CSV: {other:?}"))),
                            ))),
                        };
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use labstream_schemas::{Registry, Timestamp};

    fn lines(format: FileFormat, text: &str) -> Vec<(u64, Result<Sample, String>)> {
        let registry = Registry::default_lab();
        let v = Validator::new(&registry, Timestamp::from_micros(0));
        FileSamples::new(
            text.as_bytes(),
            format,
            format.default_precision(),
            "sensor_id",
            &v,
        )
        .unwrap()
        .map(|r| {
            let (n, s) = r.unwrap();
            (n, s.map_err(|e| e.reason))
        })
        .collect()
    }

    #[test]
    fn every_format_reports_its_file_line_numbers() {
        let nd = "{\"sensor_id\":\"t1\",\"sensor_type\":\"temperature\",\"ts\":1,\"values\":{\"celsius\":1}}\n\n{oops\n{\"sensor_id\":\"t1\",\"sensor_type\":\"temperature\",\"ts\":2,\"values\":{\"celsius\":\"x\"}}\n";
        let got = lines(FileFormat::Ndjson, nd);
        assert_eq!(got.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 3, 4]);
        assert!(got[0].1.is_ok());
        assert!(got[1].1.as_ref().unwrap_err().contains("not valid JSON"));
        assert!(got[2].1.as_ref().unwrap_err().contains("must be a double"));

        let lp =
            "# comment\ntemperature,sensor_id=t1 celsius=1 1000\r\n\ntemperature celsius=2 2000\n";
        let got = lines(FileFormat::LineProtocol, lp);
        assert_eq!(got.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [2, 4]);
        assert!(got[0].1.is_ok());
        assert!(got[1].1.as_ref().unwrap_err().contains("sensor_id"));

        let csv = "sensor_id,sensor_type,ts,celsius\nt1,temperature,1,20.5\n\"t,2\",temperature,2,abc\nt3,temperature\n";
        let got = lines(FileFormat::Csv, csv);
        assert_eq!(got.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [2, 3, 4]);
        assert!(got[0].1.is_ok());
        assert!(got[1].1.as_ref().unwrap_err().contains("must be a number"));
        assert!(got[2].1.is_err());
    }

    #[test]
    fn gzip_files_are_read_decompressed() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("labstream-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gw.lp.gz");
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(b"power,sensor_id=p1 watts=1 1000000\npower,sensor_id=p1 watts=2 2000000\n")
            .unwrap();
        gz.finish().unwrap();
        let format = FileFormat::detect(&path).unwrap();
        assert_eq!(format, FileFormat::LineProtocol);
        let registry = Registry::default_lab();
        let v = Validator::new(&registry, Timestamp::from_micros(0));
        let samples: Vec<Sample> = FileSamples::new(
            open_file(&path).unwrap(),
            format,
            Precision::Ns,
            "sensor_id",
            &v,
        )
        .unwrap()
        .map(|r| r.unwrap().1.unwrap())
        .collect();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[1].ts.as_micros(), 2000);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn formats_are_detected_from_the_name() {
        assert_eq!(
            FileFormat::detect(Path::new("a/b.jsonl.gz")),
            Some(FileFormat::Ndjson)
        );
        assert_eq!(
            FileFormat::detect(Path::new("x.CSV")),
            Some(FileFormat::Csv)
        );
        assert_eq!(
            FileFormat::detect(Path::new("x.lp")),
            Some(FileFormat::LineProtocol)
        );
        assert_eq!(FileFormat::detect(Path::new("x.txt")), None);
    }
}
