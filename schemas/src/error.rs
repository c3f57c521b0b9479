use std::fmt;

/// Errors of the wire contracts: a message that cannot be decoded, a registry file
/// that does not parse, or a value that does not match its schema.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not an Avro single-object message (wrong magic or too short).
    #[error("not an Avro single-object message: {0}")]
    NotSingleObject(String),
    /// The message names a writer schema this build does not know.
    #[error(
        "unknown writer schema fingerprint {0:#018x}: the message was written by a newer labstream; upgrade this reader"
    )]
    UnknownSchema(u64),
    /// Avro encoding or decoding failed.
    #[error("avro {context}: {source}")]
    Avro {
        context: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
    /// A decoded value does not have the shape of the Rust type.
    #[error("decoded {record} does not match its type: {detail}")]
    Shape {
        record: &'static str,
        detail: String,
    },
    /// The sensor-type registry file is invalid.
    #[error("sensor-type registry {origin}: {detail}")]
    Registry { origin: String, detail: String },
}

impl Error {
    /// Every such error is about the bytes or the file at hand: they will not decode or
    /// parse better next time.
    pub fn kind(&self) -> crate::ErrorKind {
        crate::ErrorKind::BadInput
    }

    pub(crate) fn avro(context: &'static str, source: apache_avro::Error) -> Self {
        Error::Avro {
            context,
            source: Box::new(source),
        }
    }

    pub(crate) fn shape(record: &'static str, detail: impl fmt::Display) -> Self {
        Error::Shape {
            record,
            detail: detail.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
