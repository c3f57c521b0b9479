//! InfluxDB v2 line protocol (`POST /api/v2/write`), so Telegraf and the Influx client
//! libraries can send unchanged. Every line is parsed on its own straight from the
//! body's bytes: a bad line becomes a `Rejection` naming its line, the others still parse.

use crate::error::{Error, Result};
use crate::validate::Rejection;
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
mod tests;
