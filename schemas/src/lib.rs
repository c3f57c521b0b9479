//! Wire contracts of labstream: the Avro schemas in `schemas/avro/` (the source of
//! truth), one Rust type per record, the single-object codec that makes every message
//! name its writer schema, the topic catalog and the sensor-type registry model.
//! The lake's naming contract and Arrow tables live in the `labstream-lake` crate.

mod alert;
pub mod alert_rule;
pub mod auth;
mod avro_body;
mod codec;
mod crash_point;
mod error;
mod error_kind;
pub mod experiment;
mod ids;
mod json_bridge;
mod registry;
mod sample;
mod sample_view;
mod sample_wire;
mod topics;

pub use alert::{
    AlertCondition, AlertEvent, AlertPhase, AlertRule, AlertState, AlertStatus, RuleId, Severity,
    alert_key,
};
pub use codec::{AvroRecord, Codec, SchemaVersion, fingerprint_of};
pub use crash_point::{CRASH_POINT_VAR, crash_point};
pub use error::{Error, Result};
pub use error_kind::ErrorKind;
pub use ids::{
    ExperimentId, ParticipantId, RecordingId, SensorConfigId, SensorId, SensorType, TaskId,
};
pub use registry::{FieldSpec, FieldType, Registry, SensorTypeSpec};
pub use sample::{FieldValue, Sample, Timestamp};
pub use sample_view::{ContextRef, FieldValueRef, SampleView};
pub use topics::Topics;
