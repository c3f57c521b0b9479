//! InfluxDB v2 line protocol (`POST /api/v2/write`), so Telegraf and the Influx client
//! libraries can send unchanged. Every line is parsed on its own straight from the
//! body's bytes: a bad line becomes a `Rejection` naming its line, the others still parse.

use crate::error::{Error, Rejection, Result};
use crate::validate::{Invalid, Parsed, Precision, RawValue, Validator};
use labstream_schemas::{Sample, Timestamp};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

/// Longest string field value InfluxDB accepts (64 KiB).
const MAX_STRING_BYTES: usize = 64 * 1024;

/// The field whose integer value becomes the sample's `seq` instead of a value.
const SEQ_FIELD: &str = "seq";

/// Parses line protocol: measurement -> `sensor_type`, the `sensor_id_tag` tag ->
/// `sensor_id`, the other tags -> `tags`, fields -> `values` (an integer field `seq` ->
/// `seq`), the timestamp in `precision` units -> `ts` (`received_at` when absent).
///
/// `total` counts the lines that hold a point: blank lines and `#` comments are skipped.
/// A rejection's `index` is the 0-based position of its line among those counted
/// lines; its reason starts with the 1-based line number in the body ("line 3: ..."),
/// which counts every line. Syntax errors are `malformed`; the validator decides the
/// rest. Fails as a whole only when the body holds no point at all.
pub fn parse_line_protocol(
    body: &[u8],
    precision: Precision,
    sensor_id_tag: &str,
    validator: &Validator<'_>,
) -> Result<Parsed> {
    let mut parsed = Parsed::default();
    // Reused across lines: `Validator::sample` drains it and keeps its capacity here.
    let mut values = Vec::new();
    let point = LinePoint {
        precision,
        sensor_id_tag,
        validator,
    };
    for (line_no, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let first = line.iter().position(|&b| b != b' ');
        match first.map(|i| line[i]) {
            None | Some(b'#') => continue,
            Some(_) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Some(_) => {}
        }
        let index = parsed.total;
        parsed.total += 1;
        match point.parse(line, &mut values) {
            Ok(sample) => parsed.samples.push(sample),
            Err(e) => parsed.rejected.push(Rejection {
                index,
                code: e.kind,
                reason: format!("line {}: {}", line_no + 1, e.reason),
            }),
        }
    }
    if parsed.total == 0 {
        return Err(Error::Empty);
    }
    Ok(parsed)
}

/// One line of line protocol (not blank, not a comment) as a sample, for readers of
/// files that report bad lines themselves (`labstream backfill`).
pub(crate) fn parse_line(
    line: &[u8],
    precision: Precision,
    sensor_id_tag: &str,
    validator: &Validator<'_>,
    values: &mut Vec<(String, RawValue)>,
) -> std::result::Result<Sample, Invalid> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    LinePoint {
        precision,
        sensor_id_tag,
        validator,
    }
    .parse(line, values)
}

/// What every line of one request is parsed with.
struct LinePoint<'v, 'r> {
    precision: Precision,
    sensor_id_tag: &'v str,
    validator: &'v Validator<'r>,
}

impl LinePoint<'_, '_> {
    fn parse(
        &self,
        line: &[u8],
        values: &mut Vec<(String, RawValue)>,
    ) -> std::result::Result<Sample, Invalid> {
        values.clear();
        let text = std::str::from_utf8(line).map_err(|e| {
            Invalid::malformed(format!(
                "invalid UTF-8 at column {}; line protocol must be UTF-8",
                e.valid_up_to() + 1
            ))
        })?;
        let mut cur = Cursor { text, pos: 0 };
        cur.skip_spaces();

        let measurement = cur.name(Part::Measurement)?;
        if measurement.is_empty() {
            return Err(cur.unexpected("a measurement name"));
        }

        let mut sensor_id = None;
        let mut tags = BTreeMap::new();
        while cur.peek() == Some(b',') {
            cur.pos += 1;
            let key = cur.name(Part::TagKey)?;
            if key.is_empty() {
                return Err(cur.unexpected("a tag key after ','"));
            }
            if cur.peek() != Some(b'=') {
                return Err(Invalid::malformed(format!(
                    "tag {key:?} has no value; write {key}=<value>, and escape spaces, commas \
                     and '=' in keys as '\\ ', '\\,' and '\\='"
                )));
            }
            cur.pos += 1;
            let value = cur.name(Part::TagValue)?;
            if value.is_empty() {
                return Err(Invalid::malformed(format!(
                    "tag {key:?} has an empty value; omit the tag instead"
                )));
            }
            if key == self.sensor_id_tag {
                if sensor_id.replace(value.into_owned()).is_some() {
                    return Err(duplicate_tag(self.sensor_id_tag));
                }
            } else {
                match tags.entry(key.into_owned()) {
                    Entry::Occupied(e) => return Err(duplicate_tag(e.key())),
                    Entry::Vacant(slot) => {
                        slot.insert(value.into_owned());
                    }
                }
            }
        }
        match cur.peek() {
            Some(b' ') => {}
            None => return Err(no_fields()),
            Some(_) => return Err(cur.unexpected("',' or a space after the measurement and tags")),
        }
        cur.skip_spaces();
        if cur.at_end() {
            return Err(no_fields());
        }

        let mut seq = None;
        loop {
            let key = cur.name(Part::FieldKey)?;
            if key.is_empty() {
                return Err(cur.unexpected("a field key"));
            }
            if cur.peek() != Some(b'=') {
                return Err(field_without_value(&key));
            }
            cur.pos += 1;
            let value = cur.field_value(&key)?;
            if key == SEQ_FIELD {
                let n = match value {
                    RawValue::Int(n) => Some(n),
                    RawValue::UInt(n) => i64::try_from(n).ok(),
                    _ => None,
                };
                let Some(n) = n else {
                    return Err(Invalid::malformed(
                        "field \"seq\" is the sample's sequence number and must be an integer \
                         up to 2^63-1, such as seq=7i",
                    ));
                };
                if seq.replace(n).is_some() {
                    return Err(Invalid::malformed("field \"seq\" is given twice"));
                }
            } else {
                values.push((key.into_owned(), value));
            }
            match cur.peek() {
                Some(b',') => cur.pos += 1,
                Some(b' ') => {
                    cur.skip_spaces();
                    break;
                }
                None => break,
                Some(_) => return Err(cur.unexpected("',' or a space after a field value")),
            }
        }

        let ts = if cur.at_end() {
            self.validator.received_at
        } else {
            cur.timestamp(self.precision)?
        };

        let Some(sensor_id) = sensor_id else {
            return Err(Invalid::malformed(format!(
                "no {tag:?} tag; every line needs one to name its sensor, e.g. \
                 {measurement},{tag}=<id> (to take the sensor id from another tag, such as \
                 Telegraf's \"host\", set ingest.sensor_id_tag)",
                tag = self.sensor_id_tag,
            )));
        };
        self.validator.sample(
            sensor_id,
            measurement.into_owned(),
            ts,
            seq,
            values.drain(..),
            tags,
        )
    }
}

fn duplicate_tag(key: &str) -> Invalid {
    Invalid::malformed(format!("tag {key:?} is given twice"))
}

fn no_fields() -> Invalid {
    Invalid::malformed(
        "no fields; a line is \
         `measurement[,tag=value...] field=value[,field=value...] [timestamp]`",
    )
}

fn field_without_value(key: &str) -> Invalid {
    Invalid::malformed(format!(
        "field {key:?} has no value; write {key}=<value>, and escape spaces, commas \
         and '=' in keys as '\\ ', '\\,' and '\\='"
    ))
}

/// The element a name is read for: it decides which characters end it and which a
/// backslash escapes (always the same set).
#[derive(Clone, Copy)]
enum Part {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
}

impl Part {
    #[inline]
    fn is_special(self, b: u8) -> bool {
        match self {
            Part::Measurement => b == b',' || b == b' ',
            Part::TagKey | Part::TagValue | Part::FieldKey => b == b',' || b == b' ' || b == b'=',
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Part::Measurement => "the measurement",
            Part::TagKey => "a tag key",
            Part::TagValue => "a tag value",
            Part::FieldKey => "a field key",
        }
    }
}

/// A read position in one line. Every position it stops at is an ASCII delimiter or
/// the end, so slicing `text` there always falls on a character boundary.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    #[inline]
    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn skip_spaces(&mut self) {
        let bytes = self.text.as_bytes();
        while bytes.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
    }

    /// The error for finding something other than `expected` at the read position.
    fn unexpected(&self, expected: &str) -> Invalid {
        let column = self.pos + 1;
        match self.text[self.pos..].chars().next() {
            None => Invalid::malformed(format!(
                "expected {expected} at column {column}, found the end of the line"
            )),
            Some(c) => Invalid::malformed(format!(
                "expected {expected} at column {column}, found {c:?}"
            )),
        }
    }

    /// Reads a measurement, key or tag value up to its first unescaped delimiter,
    /// borrowing it unless it holds an escape.
    fn name(&mut self, part: Part) -> std::result::Result<Cow<'a, str>, Invalid> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut i = start;
        let mut escaped = false;
        while let Some(&b) = bytes.get(i) {
            if b == b'\\' {
                if bytes.get(i + 1).is_some_and(|&n| part.is_special(n)) {
                    escaped = true;
                    i += 2;
                } else {
                    // A backslash before anything else is a literal backslash.
                    i += 1;
                }
                continue;
            }
            if part.is_special(b) {
                break;
            }
            if b.is_ascii_control() {
                return Err(Invalid::malformed(format!(
                    "{} holds the control character {:?} at column {}",
                    part.as_str(),
                    b as char,
                    i + 1
                )));
            }
            i += 1;
        }
        self.pos = i;
        let raw = &self.text[start..i];
        Ok(if escaped {
            Cow::Owned(unescape(raw, |b| part.is_special(b)))
        } else {
            Cow::Borrowed(raw)
        })
    }

    /// Reads a field value after its `=`.
    fn field_value(&mut self, key: &str) -> std::result::Result<RawValue, Invalid> {
        let bytes = self.text.as_bytes();
        match self.peek() {
            None | Some(b',' | b' ') => Err(field_without_value(key)),
            Some(b'"') => {
                let start = self.pos + 1;
                let mut i = start;
                let mut escaped = false;
                loop {
                    match bytes.get(i) {
                        None => {
                            return Err(Invalid::malformed(format!(
                                "the string value of field {key:?} has no closing quote \
                                 (escape quotes inside it as \\\")"
                            )));
                        }
                        Some(b'"') => break,
                        Some(b'\\') if matches!(bytes.get(i + 1), Some(b'"' | b'\\')) => {
                            escaped = true;
                            i += 2;
                        }
                        Some(_) => i += 1,
                    }
                }
                self.pos = i + 1;
                let raw = &self.text[start..i];
                let value = if escaped {
                    unescape(raw, |b| b == b'"' || b == b'\\')
                } else {
                    raw.to_owned()
                };
                if value.len() > MAX_STRING_BYTES {
                    return Err(Invalid::malformed(format!(
                        "the string value of field {key:?} is {} bytes; \
                         line protocol allows at most 64 KiB",
                        value.len()
                    )));
                }
                Ok(RawValue::Str(value))
            }
            Some(_) => {
                let start = self.pos;
                let len = bytes[start..]
                    .iter()
                    .position(|&b| b == b',' || b == b' ')
                    .unwrap_or(bytes.len() - start);
                self.pos = start + len;
                parse_unquoted(key, &self.text[start..self.pos])
            }
        }
    }

    /// Reads the timestamp and checks nothing but spaces follows it.
    fn timestamp(&mut self, precision: Precision) -> std::result::Result<Timestamp, Invalid> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let len = bytes[start..]
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(bytes.len() - start);
        self.pos = start + len;
        let token = &self.text[start..self.pos];
        if !is_integer(token) {
            return Err(Invalid::malformed(format!(
                "invalid timestamp {token:?}; expected an integer number of {} \
                 since the Unix epoch (see ?precision=)",
                unit_name(precision)
            )));
        }
        let micros = token
            .parse::<i64>()
            .ok()
            .and_then(|v| precision.to_micros(v))
            .ok_or_else(|| {
                Invalid::malformed(format!(
                    "timestamp {token} is out of range for precision {} (check ?precision=)",
                    precision.as_str()
                ))
            })?;
        self.skip_spaces();
        if !self.at_end() {
            return Err(Invalid::malformed(format!(
                "unexpected text {:?} after the timestamp",
                &self.text[self.pos..]
            )));
        }
        Ok(Timestamp::from_micros(micros))
    }
}

fn unit_name(precision: Precision) -> &'static str {
    match precision {
        Precision::S => "seconds",
        Precision::Ms => "milliseconds",
        Precision::Us => "microseconds",
        Precision::Ns => "nanoseconds",
    }
}

/// Drops the backslash in front of every byte `escapes` accepts; other backslashes stay.
fn unescape(raw: &str, escapes: impl Fn(u8) -> bool) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1).is_some_and(|&n| escapes(n)) {
            out.push_str(&raw[copied..i]);
            // The escaped byte starts the next copied run.
            copied = i + 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push_str(&raw[copied..]);
    out
}

/// Types an unquoted field value: boolean, integer (`i`), unsigned (`u`) or float.
fn parse_unquoted(key: &str, token: &str) -> std::result::Result<RawValue, Invalid> {
    let bytes = token.as_bytes();
    match bytes[0] {
        b't' | b'T' | b'f' | b'F' => match token {
            "t" | "T" | "true" | "True" | "TRUE" => Ok(RawValue::Bool(true)),
            "f" | "F" | "false" | "False" | "FALSE" => Ok(RawValue::Bool(false)),
            _ => Err(Invalid::malformed(format!(
                "field {key:?} has the value {token:?}, which is no boolean \
                 (t, T, true, True, TRUE, f, F, false, False, FALSE); quote strings as \"...\""
            ))),
        },
        b'-' | b'0'..=b'9' | b'.' => {
            let out_of_range = |kind: &str| {
                Invalid::malformed(format!(
                    "field {key:?} has the value {token}, which is out of range for {kind}"
                ))
            };
            let (digits, suffix) = bytes.split_at(bytes.len() - 1);
            match suffix[0] {
                b'i' if is_integer(&token[..digits.len()]) => token[..digits.len()]
                    .parse()
                    .map(RawValue::Int)
                    .map_err(|_| out_of_range("a 64-bit integer")),
                b'u' if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => token
                    [..digits.len()]
                    .parse()
                    .map(RawValue::UInt)
                    .map_err(|_| out_of_range("a 64-bit unsigned integer")),
                _ if is_float(bytes) => match token.parse::<f64>() {
                    Ok(v) if v.is_finite() => Ok(RawValue::Float(v)),
                    _ => Err(out_of_range("a 64-bit float")),
                },
                _ => Err(Invalid::malformed(format!(
                    "field {key:?} has the value {token:?}, which is no number; write floats \
                     as 1.5 or -1.5e3, integers as 12i, unsigned integers as 12u"
                ))),
            }
        }
        _ => Err(Invalid::malformed(format!(
            "field {key:?} has the value {token:?} of no line protocol type; quote strings \
             as \"...\", write numbers as 1.5, 12i or 12u and booleans as true or false"
        ))),
    }
}

/// `[-]digits`, as integer fields and timestamps are written.
fn is_integer(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s).as_bytes();
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// The float grammar of line protocol: `[-]` then `1`, `1.`, `1.5` or `.5`, then an
/// optional exponent `e[+-]digits`. Stricter than `f64::from_str`, which also takes
/// `inf`, `NaN` and a leading `+`.
fn is_float(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let (mantissa, exponent) = match bytes.iter().position(|&b| b == b'e' || b == b'E') {
        Some(i) => (&bytes[..i], Some(&bytes[i + 1..])),
        None => (bytes, None),
    };
    let (int_part, frac_part) = match mantissa.iter().position(|&b| b == b'.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, &[][..]),
    };
    let all_digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let mantissa_ok = all_digits(int_part)
        && all_digits(frac_part)
        && (!int_part.is_empty() || !frac_part.is_empty());
    let exponent_ok = match exponent {
        None => true,
        Some(e) => {
            let e = e
                .strip_prefix(b"+")
                .or_else(|| e.strip_prefix(b"-"))
                .unwrap_or(e);
            !e.is_empty() && all_digits(e)
        }
    };
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::RejectKind;
    use labstream_schemas::{FieldValue, Registry};
    use std::time::Duration;

    /// 2026-11-23T10:00:00Z, when the requests of these tests arrive.
    const NOW: Timestamp = Timestamp::from_micros(1_795_428_000_000_000);

    fn parse_with(body: &[u8], precision: Precision, tag: &str, registry: &Registry) -> Parsed {
        parse_line_protocol(body, precision, tag, &Validator::new(registry, NOW))
            .expect("the body holds points")
    }

    fn parse(body: &str) -> Parsed {
        parse_with(
            body.as_bytes(),
            Precision::Ns,
            "sensor_id",
            &Registry::default_lab(),
        )
    }

    /// The single sample of a one-line body, or its rejection as `code: reason`.
    fn one(body: &str, registry: &Registry) -> std::result::Result<Sample, String> {
        let mut p = parse_with(body.as_bytes(), Precision::Ns, "sensor_id", registry);
        assert_eq!(p.total, 1, "{body}");
        match p.rejected.pop() {
            Some(r) => Err(format!("{}: {}", r.code.as_str(), r.reason)),
            None => Ok(p.samples.pop().expect("one sample")),
        }
    }

    fn lab_one(body: &str) -> std::result::Result<Sample, String> {
        one(body, &Registry::default_lab())
    }

    fn kinds() -> Registry {
        Registry::from_json_str(
            "test",
            r#"{"sensor_types": {"note": {"fields": {
                "text": {"type": "string"},
                "count": {"type": "long"},
                "level": {"type": "double"},
                "ok": {"type": "boolean"}
            }}}}"#,
        )
        .unwrap()
    }

    fn raw(token: &str) -> std::result::Result<RawValue, String> {
        parse_unquoted("v", token).map_err(|e| e.reason)
    }

    #[test]
    fn a_telegraf_payload_parses_exactly() {
        // As Telegraf's influx serializer writes it: tags sorted, `host` names the sensor.
        let body = concat!(
            "temperature,host=lab-pi-1,room=lab\\ 2,site=a\\,b celsius=21.5 1795427990000000000\n",
            "humidity,host=lab-pi-1,room=lab\\ 2,site=a\\,b percent=41.25 1795427990000000000\n",
            "co2,host=lab-pi-2,room=cold\\=room ppm=415i 1795427995000000000\n",
            "door,host=door-3 open=true 1795427999123456789\n",
            "accelerometer,host=imu-1 x=0.01,y=-0.02,z=9.81 1795427999500000000\n",
        );
        let p = parse_with(
            body.as_bytes(),
            Precision::Ns,
            "host",
            &Registry::default_lab(),
        );
        assert_eq!(
            (p.total, p.rejected.len(), p.samples.len()),
            (5, 0, 5),
            "{:?}",
            p.rejected
        );

        let t = &p.samples[0];
        assert_eq!(t.sensor_id.as_str(), "lab-pi-1");
        assert_eq!(t.sensor_type.as_str(), "temperature");
        assert_eq!(t.ts.as_micros(), 1_795_427_990_000_000);
        assert_eq!(t.seq, None);
        assert_eq!(
            t.values,
            BTreeMap::from([("celsius".to_owned(), FieldValue::Double(21.5))])
        );
        assert_eq!(
            t.tags,
            BTreeMap::from([
                ("room".to_owned(), "lab 2".to_owned()),
                ("site".to_owned(), "a,b".to_owned()),
            ])
        );
        assert_eq!(t.received_at, NOW);

        let h = &p.samples[1];
        assert_eq!(
            (h.sensor_id.as_str(), h.sensor_type.as_str()),
            ("lab-pi-1", "humidity")
        );
        assert_eq!(h.values["percent"], FieldValue::Double(41.25));

        let c = &p.samples[2];
        assert_eq!(
            (c.sensor_id.as_str(), c.sensor_type.as_str()),
            ("lab-pi-2", "co2")
        );
        assert_eq!(c.ts.as_micros(), 1_795_427_995_000_000);
        // An integer is accepted for a double field and stored as a double.
        assert_eq!(c.values["ppm"], FieldValue::Double(415.0));
        assert_eq!(c.tags["room"], "cold=room");

        let d = &p.samples[3];
        assert_eq!(
            (d.sensor_id.as_str(), d.sensor_type.as_str()),
            ("door-3", "door")
        );
        // Nanoseconds are truncated to the microsecond.
        assert_eq!(d.ts.as_micros(), 1_795_427_999_123_456);
        assert_eq!(d.values["open"], FieldValue::Bool(true));
        assert!(d.tags.is_empty());

        let a = &p.samples[4];
        assert_eq!(a.sensor_id.as_str(), "imu-1");
        assert_eq!(
            a.values,
            BTreeMap::from([
                ("x".to_owned(), FieldValue::Double(0.01)),
                ("y".to_owned(), FieldValue::Double(-0.02)),
                ("z".to_owned(), FieldValue::Double(9.81)),
            ])
        );
    }

    #[test]
    fn escapes_in_tags_keys_and_measurements() {
        let s = lab_one(
            r"temperature,sensor_id=fridge\ 1,room\ name=lab\ 2,site=a\,b,eq=x\=y,path=C:\data,two=a\\,b celsius=4",
        )
        .unwrap();
        assert_eq!(s.sensor_id.as_str(), "fridge 1");
        assert_eq!(
            s.tags,
            BTreeMap::from([
                ("room name".to_owned(), "lab 2".to_owned()),
                ("site".to_owned(), "a,b".to_owned()),
                ("eq".to_owned(), "x=y".to_owned()),
                // A backslash before anything but ',', '=' or ' ' is kept.
                ("path".to_owned(), r"C:\data".to_owned()),
                ("two".to_owned(), r"a\,b".to_owned()),
            ])
        );
        // Registry names are identifiers, so an escaped space reaches the registry intact
        // and is refused there.
        let err = lab_one(r"room\ temperature,sensor_id=t1 celsius=4").unwrap_err();
        assert!(
            err.starts_with(
                "unknown_sensor_type: line 1: unknown sensor_type \"room temperature\""
            ),
            "{err}"
        );
        let err = lab_one(r"temperature,sensor_id=t1 cel\ si\,us\=x=4").unwrap_err();
        assert!(
            err.starts_with("unknown_field: line 1: unknown field \"cel si,us=x\""),
            "{err}"
        );
        // '=' needs no escape in a measurement name.
        let err = lab_one(r"a=b,sensor_id=t1 celsius=4").unwrap_err();
        assert!(err.contains("unknown sensor_type \"a=b\""), "{err}");
    }

    #[test]
    fn string_fields_unescape_quotes_and_backslashes() {
        let registry = kinds();
        let s = one(
            r#"note,sensor_id=n1 text="say \"hi\", a\\b, lone \ and \n stay; = and spaces too 🚀",count=3i 1795427990000000000"#,
            &registry,
        )
        .unwrap();
        assert_eq!(
            s.values["text"],
            FieldValue::Str(r#"say "hi", a\b, lone \ and \n stay; = and spaces too 🚀"#.into())
        );
        assert_eq!(s.values["count"], FieldValue::Long(3));
        let s = one(r#"note,sensor_id=n1 text="",ok=f"#, &registry).unwrap();
        assert_eq!(s.values["text"], FieldValue::Str(String::new()));
        // A string that ends in an escaped backslash is closed by the next quote.
        let s = one(r#"note,sensor_id=n1 text="dir\\""#, &registry).unwrap();
        assert_eq!(s.values["text"], FieldValue::Str(r"dir\".into()));
        // A string is never a number, even when it looks like one.
        let err = one(r#"note,sensor_id=n1 count="3""#, &registry).unwrap_err();
        assert!(err.contains("must be a long, got a string"), "{err}");
    }

    #[test]
    fn every_boolean_spelling() {
        for (token, want) in [
            ("t", true),
            ("T", true),
            ("true", true),
            ("True", true),
            ("TRUE", true),
            ("f", false),
            ("F", false),
            ("false", false),
            ("False", false),
            ("FALSE", false),
        ] {
            let s = lab_one(&format!("door,sensor_id=d1 open={token}")).unwrap();
            assert_eq!(s.values["open"], FieldValue::Bool(want), "{token}");
        }
        for bad in ["tRUE", "truth", "fa", "t1"] {
            let err = lab_one(&format!("door,sensor_id=d1 open={bad}")).unwrap_err();
            assert!(
                err.starts_with("malformed: line 1: field \"open\""),
                "{err}"
            );
            assert!(err.contains("no boolean"), "{err}");
        }
    }

    #[test]
    fn numbers_are_typed_by_their_suffix() {
        assert_eq!(raw("12i"), Ok(RawValue::Int(12)));
        assert_eq!(raw("-12i"), Ok(RawValue::Int(-12)));
        assert_eq!(raw("-9223372036854775808i"), Ok(RawValue::Int(i64::MIN)));
        assert_eq!(raw("12u"), Ok(RawValue::UInt(12)));
        assert_eq!(raw("18446744073709551615u"), Ok(RawValue::UInt(u64::MAX)));
        // Without a suffix every number is a float.
        assert_eq!(raw("12"), Ok(RawValue::Float(12.0)));
        assert_eq!(raw("-1.5e3"), Ok(RawValue::Float(-1500.0)));
        assert_eq!(raw("1E+2"), Ok(RawValue::Float(100.0)));
        assert_eq!(raw("2.5e-3"), Ok(RawValue::Float(0.0025)));
        assert_eq!(raw("1."), Ok(RawValue::Float(1.0)));
        assert_eq!(raw(".5"), Ok(RawValue::Float(0.5)));
        assert_eq!(raw("1.e2"), Ok(RawValue::Float(100.0)));
        assert_eq!(raw("-0"), Ok(RawValue::Float(-0.0)));

        for bad in ["9223372036854775808i", "18446744073709551616u", "1e309"] {
            assert!(raw(bad).unwrap_err().contains("out of range"), "{bad}");
        }
        for bad in [
            "-1u", "1.5i", "1e3i", "1.2.3", ".", "-", "1e", "1e+", "--1", "1_000", "0x10", "12a",
        ] {
            assert!(raw(bad).unwrap_err().contains("no number"), "{bad}");
        }
        for bad in ["+1", "i", "inf", "NaN", "\"x", "hello"] {
            assert!(
                raw(bad).unwrap_err().contains("no line protocol type"),
                "{bad}"
            );
        }
    }

    #[test]
    fn numbers_reach_the_registry_types() {
        let registry = kinds();
        let s = one(
            "note,sensor_id=n1 count=-7i,level=-1.5e3,ok=T 1795427990000000000",
            &registry,
        )
        .unwrap();
        assert_eq!(s.values["count"], FieldValue::Long(-7));
        assert_eq!(s.values["level"], FieldValue::Double(-1500.0));
        assert_eq!(s.values["ok"], FieldValue::Bool(true));
        let s = one("note,sensor_id=n1 count=7u,level=3u", &registry).unwrap();
        assert_eq!(s.values["count"], FieldValue::Long(7));
        assert_eq!(s.values["level"], FieldValue::Double(3.0));
        // An unsuffixed number is a float, which a long field refuses.
        let err = one("note,sensor_id=n1 count=7", &registry).unwrap_err();
        assert!(
            err.starts_with(
                "wrong_type: line 1: field \"count\" must be a long, got a fractional number"
            ),
            "{err}"
        );
        let err = one("note,sensor_id=n1 count=18446744073709551615u", &registry).unwrap_err();
        assert!(err.starts_with("wrong_type: "), "{err}");
    }

    #[test]
    fn a_missing_timestamp_is_the_arrival_time() {
        let s = lab_one("temperature,sensor_id=t1 celsius=20").unwrap();
        assert_eq!(s.ts, NOW);
        // Trailing spaces are no timestamp either.
        let s = lab_one("temperature,sensor_id=t1 celsius=20   ").unwrap();
        assert_eq!(s.ts, NOW);
    }

    #[test]
    fn timestamps_follow_the_precision() {
        let registry = Registry::default_lab();
        for (precision, ts, micros) in [
            (Precision::S, "1795427990", 1_795_427_990_000_000),
            (Precision::Ms, "1795427990123", 1_795_427_990_123_000),
            (Precision::Us, "1795427990123456", 1_795_427_990_123_456),
            (Precision::Ns, "1795427990123456789", 1_795_427_990_123_456),
            (Precision::Ns, "-1", -1),
            (Precision::S, "0", 0),
        ] {
            let body = format!("temperature,sensor_id=t1 celsius=20 {ts}");
            let p = parse_with(body.as_bytes(), precision, "sensor_id", &registry);
            assert_eq!(p.rejected, [], "{precision:?} {ts}");
            assert_eq!(p.samples[0].ts.as_micros(), micros, "{precision:?} {ts}");
        }
        // Seconds so large they overflow microseconds are refused, not wrapped.
        let body = "temperature,sensor_id=t1 celsius=20 9223372036854775807";
        let p = parse_with(body.as_bytes(), Precision::S, "sensor_id", &registry);
        assert!(
            p.rejected[0]
                .reason
                .contains("out of range for precision s"),
            "{}",
            p.rejected[0].reason
        );
    }

    #[test]
    fn comments_blank_lines_and_crlf_are_skipped() {
        let body = "# written by a script\r\n\r\n   \n\
                    temperature,sensor_id=t1 celsius=20 1795427990000000000\r\n\
                    \x20 # an indented comment\r\n\
                    \t\r\n\
                    humidity,sensor_id=h1 percent=40 1795427990000000000\r\n\
                    door,sensor_id=d1 open=maybe\r\n";
        let p = parse(body);
        assert_eq!(p.total, 3);
        assert_eq!(p.samples.len(), 2);
        assert_eq!(p.samples[0].values["celsius"], FieldValue::Double(20.0));
        assert_eq!(p.samples[1].values["percent"], FieldValue::Double(40.0));
        assert_eq!(p.samples[1].ts.as_micros(), 1_795_427_990_000_000);
        // The index counts points, the line number counts every line.
        assert_eq!(p.rejected.len(), 1);
        assert_eq!(p.rejected[0].index, 2);
        assert!(
            p.rejected[0].reason.starts_with("line 8: field \"open\""),
            "{}",
            p.rejected[0].reason
        );
        // Leading and repeated spaces between the sections are allowed.
        let s =
            lab_one("  temperature,sensor_id=t1   celsius=20   1795427990000000000  \r").unwrap();
        assert_eq!(s.ts.as_micros(), 1_795_427_990_000_000);
    }

    #[test]
    fn an_empty_body_is_empty() {
        let registry = Registry::default_lab();
        let v = Validator::new(&registry, NOW);
        for body in ["", "\n\n", "# only a comment\n  \r\n#another"] {
            let r = parse_line_protocol(body.as_bytes(), Precision::Ns, "sensor_id", &v);
            assert!(matches!(r, Err(Error::Empty)), "{body:?}: {r:?}");
        }
    }

    #[test]
    fn malformed_lines_are_rejected_and_the_rest_still_parse() {
        let body = [
            "# malformed lines between good ones",
            "temperature,sensor_id=t1 celsius=20 1795427990000000000",
            "temperature,sensor_id=t1",
            "temperature,sensor_id=t1 ",
            "temperature,sensor_id=t1 celsius 1795427990000000000",
            "temperature,sensor_id=t1 celsius= 1795427990000000000",
            "temperature,sensor_id=t1 celsius=20,",
            r#"door,sensor_id=d1 open="true"#,
            r#"door,sensor_id=d1 open="a\""#,
            "temperature,sensor_id=t1 celsius=20 yesterday",
            "temperature,sensor_id=t1 celsius=20 2026-11-23T10:00:00Z",
            "temperature,sensor_id=t1 celsius=20 1795427990000000000 extra",
            "temperature,sensor_id=t1 celsius=20 1795427990000000000 1",
            r#"temperature,sensor_id=t1 celsius=20,note="x"y"#,
            "temperature,room=lab celsius=20 1795427990000000000",
            "temperature,sensor_id=t1,room= celsius=20",
            "temperature,sensor_id=t1,room celsius=20",
            "temperature,sensor_id=t1,=lab celsius=20",
            "temperature,sensor_id=t1, celsius=20",
            "temperature,sensor_id=t1,room=lab,room=lab2 celsius=20",
            "temperature,sensor_id=t1,sensor_id=t2 celsius=20",
            "temperature,sensor_id=a=b celsius=20",
            ",sensor_id=t1 celsius=20",
            "temperature,sensor_id=t1 celsius=hot",
            "temperature,sensor_id=t1 =20",
            "temperature,sensor_id=t1\tcelsius=20",
            "humidity,sensor_id=h1 percent=40",
        ]
        .join("\n");
        let p = parse(&body);
        assert_eq!(p.total, 26);
        assert_eq!(p.samples.len(), 2);
        assert_eq!(p.samples[0].sensor_type.as_str(), "temperature");
        assert_eq!(p.samples[1].sensor_type.as_str(), "humidity");
        let expected: &[(usize, &str)] = &[
            (1, "line 3: no fields"),
            (2, "line 4: no fields"),
            (3, "line 5: field \"celsius\" has no value"),
            (4, "line 6: field \"celsius\" has no value"),
            (
                5,
                "line 7: expected a field key at column 37, found the end of the line",
            ),
            (
                6,
                "line 8: the string value of field \"open\" has no closing quote",
            ),
            (
                7,
                "line 9: the string value of field \"open\" has no closing quote",
            ),
            (
                8,
                "line 10: invalid timestamp \"yesterday\"; expected an integer number of nanoseconds",
            ),
            (9, "line 11: invalid timestamp \"2026-11-23T10:00:00Z\""),
            (10, "line 12: unexpected text \"extra\" after the timestamp"),
            (11, "line 13: unexpected text \"1\" after the timestamp"),
            (
                12,
                "line 14: expected ',' or a space after a field value at column 45, found 'y'",
            ),
            (
                13,
                "line 15: no \"sensor_id\" tag; every line needs one to name its sensor, e.g. temperature,sensor_id=<id>",
            ),
            (
                14,
                "line 16: tag \"room\" has an empty value; omit the tag instead",
            ),
            (15, "line 17: tag \"room\" has no value"),
            (
                16,
                "line 18: expected a tag key after ',' at column 26, found '='",
            ),
            (
                17,
                "line 19: expected a tag key after ',' at column 26, found ' '",
            ),
            (18, "line 20: tag \"room\" is given twice"),
            (19, "line 21: tag \"sensor_id\" is given twice"),
            (
                20,
                "line 22: expected ',' or a space after the measurement and tags at column 24, found '='",
            ),
            (
                21,
                "line 23: expected a measurement name at column 1, found ','",
            ),
            (
                22,
                "line 24: field \"celsius\" has the value \"hot\" of no line protocol type",
            ),
            (23, "line 25: expected a field key at column 26, found '='"),
            (
                24,
                "line 26: a tag value holds the control character '\\t' at column 25",
            ),
        ];
        let got: Vec<(usize, &str)> = p
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(got.len(), expected.len(), "{got:#?}");
        for ((index, reason), (want_index, want_reason)) in got.iter().zip(expected) {
            assert_eq!(index, want_index, "{reason}");
            assert!(
                reason.starts_with(want_reason),
                "{reason:?} should start with {want_reason:?}"
            );
        }
        assert!(p.rejected.iter().all(|r| r.code == RejectKind::Malformed));
        // The missing-tag reason says how to use another tag.
        assert!(p.rejected[12].reason.contains("set ingest.sensor_id_tag"));
    }

    #[test]
    fn the_sensor_id_tag_is_configurable() {
        let registry = Registry::default_lab();
        let body = "temperature,host=pi-4,sensor_id=x celsius=20";
        let p = parse_with(body.as_bytes(), Precision::Ns, "host", &registry);
        assert_eq!(p.samples[0].sensor_id.as_str(), "pi-4");
        // Any other tag, even one named sensor_id, is an ordinary tag then.
        assert_eq!(p.samples[0].tags["sensor_id"], "x");
        let body = "temperature,sensor_id=t1 celsius=20";
        let p = parse_with(body.as_bytes(), Precision::Ns, "host", &registry);
        let reason = &p.rejected[0].reason;
        assert_eq!(p.rejected[0].code, RejectKind::Malformed);
        assert!(reason.starts_with("line 1: no \"host\" tag"), "{reason}");
        assert!(reason.contains("ingest.sensor_id_tag"), "{reason}");
    }

    #[test]
    fn an_integer_seq_field_is_the_sequence_number() {
        let s = lab_one("temperature,sensor_id=t1 celsius=20,seq=7i").unwrap();
        assert_eq!(s.seq, Some(7));
        assert_eq!(s.values.len(), 1);
        assert!(!s.values.contains_key("seq"));
        let s = lab_one("temperature,sensor_id=t1 seq=8u,celsius=20").unwrap();
        assert_eq!(s.seq, Some(8));
        for bad in ["seq=7", "seq=\"7\"", "seq=true", "seq=9223372036854775808u"] {
            let err = lab_one(&format!("temperature,sensor_id=t1 celsius=20,{bad}")).unwrap_err();
            assert!(err.contains("must be an integer"), "{bad}: {err}");
        }
        let err = lab_one("temperature,sensor_id=t1 celsius=20,seq=1i,seq=2i").unwrap_err();
        assert!(err.contains("\"seq\" is given twice"), "{err}");
        // A line with only a seq has no values.
        let err = lab_one("temperature,sensor_id=t1 seq=1i").unwrap_err();
        assert!(err.contains("at least one field"), "{err}");
    }

    #[test]
    fn the_validator_decides_registry_and_time() {
        let registry = Registry::default_lab();
        let validator = Validator {
            registry: &registry,
            received_at: NOW,
            max_past: Some(Duration::from_secs(3600)),
            max_future: Some(Duration::from_secs(60)),
        };
        let body = [
            "fridge,sensor_id=f1 celsius=4",
            "temperature,sensor_id=t1 kelvin=277",
            "door,sensor_id=d1 open=1",
            "temperature,sensor_id=t1 celsius=20 1700000000",
            "temperature,sensor_id=t1 celsius=20 1795428000",
            "temperature,sensor_id=t1 celsius=20,celsius=21",
        ]
        .join("\n");
        let p =
            parse_line_protocol(body.as_bytes(), Precision::S, "sensor_id", &validator).unwrap();
        let got: Vec<(usize, RejectKind)> = p.rejected.iter().map(|r| (r.index, r.code)).collect();
        assert_eq!(
            got,
            [
                (0, RejectKind::UnknownSensorType),
                (1, RejectKind::UnknownField),
                (2, RejectKind::WrongType),
                (3, RejectKind::OutOfWindow),
                (5, RejectKind::Malformed),
            ]
        );
        assert!(
            p.rejected[0]
                .reason
                .starts_with("line 1: unknown sensor_type \"fridge\"")
        );
        assert!(p.rejected[3].reason.starts_with("line 4: ts "));
        assert!(p.rejected[4].reason.contains("given twice"));
        assert_eq!(p.samples.len(), 1);
        assert_eq!(p.samples[0].ts, NOW);
    }

    #[test]
    fn a_line_that_is_not_utf8_is_malformed() {
        let mut body = b"temperature,sensor_id=t1 celsius=20\n".to_vec();
        body.extend_from_slice(b"temperature,sensor_id=t\xff celsius=20\n");
        body.extend_from_slice(b"# a comment may hold anything: \xfe\n");
        body.extend_from_slice(b"temperature,sensor_id=t2 celsius=21\n");
        let p = parse_with(&body, Precision::Ns, "sensor_id", &Registry::default_lab());
        assert_eq!((p.total, p.samples.len()), (3, 2));
        assert_eq!(p.rejected.len(), 1);
        assert_eq!(p.rejected[0].index, 1);
        assert_eq!(p.rejected[0].code, RejectKind::Malformed);
        assert_eq!(
            p.rejected[0].reason,
            "line 2: invalid UTF-8 at column 24; line protocol must be UTF-8"
        );
    }

    #[test]
    fn long_strings_are_refused() {
        let registry = kinds();
        let ok = format!(
            "note,sensor_id=n1 text=\"{}\"",
            "a".repeat(MAX_STRING_BYTES)
        );
        assert!(one(&ok, &registry).is_ok());
        let long = format!(
            "note,sensor_id=n1 text=\"{}\"",
            "a".repeat(MAX_STRING_BYTES + 1)
        );
        let err = one(&long, &registry).unwrap_err();
        assert!(err.contains("at most 64 KiB"), "{err}");
    }

    #[test]
    fn float_grammar_matches_the_spec() {
        for ok in [
            "1", "-1", "1.", "1.5", ".5", "-.5", "1e5", "1E-5", "1.e+5", ".5e5",
        ] {
            assert!(is_float(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", "-", ".", "e5", ".e5", "1e", "1e+", "1..5", "1e5.5", "+1", "1e5e5", "1 ",
        ] {
            assert!(!is_float(bad.as_bytes()), "{bad}");
        }
    }
}
