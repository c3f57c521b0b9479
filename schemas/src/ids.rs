use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// Stable identifier of one physical sensor, e.g. `door-3`. Kafka key of samples.
    SensorId
);
string_id!(
    /// Name of a sensor type in the registry, e.g. `temperature`.
    SensorType
);
string_id!(
    /// An experiment, e.g. `sleep-study-2026`.
    ExperimentId
);
string_id!(
    /// A sensor configuration: which sensors an experiment records.
    SensorConfigId
);
string_id!(
    /// One recording of one participant on one task (a UUID unless given).
    RecordingId
);
string_id!(
    /// A participant of an experiment (a pseudonym, never a name).
    ParticipantId
);
string_id!(
    /// A task of an experiment's protocol.
    TaskId
);
