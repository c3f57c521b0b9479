use labstream_schemas::{FieldValue, Sample};
use mongodb::bson::{Bson, DateTime, Document, doc};

/// The stored shape of a sample. `ts` is a BSON date (milliseconds, for humans and
/// range queries); `ts_us` keeps the exact event time and is part of the dedupe key.
pub fn to_document(sample: &Sample) -> Document {
    let mut values = Document::new();
    for (k, v) in &sample.values {
        let b = match v {
            FieldValue::Double(d) => Bson::Double(*d),
            FieldValue::Long(l) => Bson::Int64(*l),
            FieldValue::Bool(b) => Bson::Boolean(*b),
            FieldValue::Str(s) => Bson::String(s.clone()),
        };
        values.insert(k.clone(), b);
    }
    let mut tags = Document::new();
    for (k, v) in &sample.tags {
        tags.insert(k.clone(), v.clone());
    }
    doc! {
        "sensor_id": sample.sensor_id.as_str(),
        "ts": DateTime::from_millis(sample.ts.as_micros().div_euclid(1000)),
        "ts_us": sample.ts.as_micros(),
        "seq": sample.seq.map_or(Bson::Null, Bson::Int64),
        "values": values,
        "tags": tags,
        "received_at": DateTime::from_millis(sample.received_at.as_micros().div_euclid(1000)),
    }
}
