//! A simulated fleet of sensors of the registry's types, producing realistic readings.
//! Every sample a fleet hands out has a dedupe key (sensor_id, ts, seq) no other sample
//! of the run has: each sensor's `seq` counts up and its `ts` strictly increases, and
//! fleets of concurrent workers are told apart by a shard number in the sensor ids.

use labstream_schemas::{FieldType, FieldValue, Registry, Sample, SensorId, SensorType, Timestamp};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// Sensors of every registry type; `take` hands out their next readings round robin.
pub struct Fleet {
    sensors: Vec<Sensor>,
    next: usize,
    rng: SmallRng,
}

struct Sensor {
    id: SensorId,
    sensor_type: SensorType,
    fields: Vec<Field>,
    tags: BTreeMap<String, String>,
    seq: i64,
    last_ts: i64,
}

struct Field {
    name: String,
    field_type: FieldType,
    level: f64,
}

/// Where a reading of this kind usually sits, so values look like a real lab's.
fn baseline(sensor_type: &str, field: &str) -> f64 {
    match (sensor_type, field) {
        ("temperature", _) => 21.0,
        ("humidity", _) => 45.0,
        ("co2", _) => 600.0,
        ("power", _) => 150.0,
        ("thermocouple", _) => -80.0,
        ("accelerometer", "z") => 9.81,
        _ => 0.0,
    }
}

impl Fleet {
    /// `sensors_per_type` sensors of each registry type, named `<type>-<shard>-<n>`.
    /// Give every concurrent worker its own shard so that their keys never collide.
    pub fn new(registry: &Registry, sensors_per_type: usize, shard: usize) -> Self {
        let mut sensors = Vec::new();
        for n in 1..=sensors_per_type.max(1) {
            for (name, spec) in registry.types() {
                sensors.push(Sensor {
                    id: SensorId::new(format!("{name}-{shard}-{n}")),
                    sensor_type: SensorType::new(name),
                    fields: spec
                        .fields
                        .iter()
                        .map(|(f, s)| Field {
                            name: f.clone(),
                            field_type: s.field_type,
                            level: baseline(name, f),
                        })
                        .collect(),
                    tags: BTreeMap::from([
                        ("room".to_owned(), format!("lab-{}", n % 8 + 1)),
                        ("source".to_owned(), "loadgen".to_owned()),
                    ]),
                    seq: 0,
                    last_ts: 0,
                });
            }
        }
        Self {
            sensors,
            next: 0,
            rng: SmallRng::seed_from_u64(shard as u64),
        }
    }

    pub fn sensors(&self) -> usize {
        self.sensors.len()
    }

    /// The next `n` readings, one sensor after the other; timestamped now.
    pub fn take(&mut self, n: usize) -> Vec<Sample> {
        let now = Timestamp::now().as_micros();
        let mut out = Vec::with_capacity(n);
        let len = self.sensors.len();
        for _ in 0..n {
            let sensor = &mut self.sensors[self.next];
            out.push(sensor.reading(now, &mut self.rng));
            self.next = (self.next + 1) % len;
        }
        out
    }
}

impl Sensor {
    fn reading(&mut self, now: i64, rng: &mut SmallRng) -> Sample {
        self.seq += 1;
        // Strictly increasing per sensor even when many readings share one clock tick.
        self.last_ts = now.max(self.last_ts + 1);
        let mut values = BTreeMap::new();
        for field in &mut self.fields {
            let value = match field.field_type {
                FieldType::Double => {
                    field.level += rng.random_range(-0.5..0.5) * (field.level.abs() * 0.01 + 0.2);
                    FieldValue::Double((field.level * 100.0).round() / 100.0)
                }
                FieldType::Long => FieldValue::Long(field.level.round() as i64),
                FieldType::Boolean => FieldValue::Bool(rng.random_bool(0.1)),
                FieldType::String => FieldValue::Str("ok".to_owned()),
            };
            values.insert(field.name.clone(), value);
        }
        Sample {
            sensor_id: self.id.clone(),
            sensor_type: self.sensor_type.clone(),
            ts: Timestamp::from_micros(self.last_ts),
            seq: Some(self.seq),
            values,
            tags: self.tags.clone(),
            received_at: Timestamp::from_micros(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_are_unique_across_shards_and_types_are_the_registry_s() {
        let registry = Registry::default_lab();
        let mut keys = HashSet::new();
        let mut types = HashSet::new();
        for shard in 0..3 {
            let mut fleet = Fleet::new(&registry, 2, shard);
            for s in fleet.take(500) {
                types.insert(s.sensor_type.as_str().to_owned());
                assert!(keys.insert((s.sensor_id.clone(), s.ts, s.seq)), "{s:?}");
                let spec = registry.get(s.sensor_type.as_str()).unwrap();
                assert_eq!(spec.fields.len(), s.values.len());
            }
        }
        assert_eq!(types.len(), registry.types().count());
    }
}
