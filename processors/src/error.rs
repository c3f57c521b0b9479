use labstream_schemas::ErrorKind;
use std::fmt;

/// Errors of the processors (experiments, enrichment, alerts). Kafka errors are
/// retryable (the processor restarts its session from the committed offsets) unless
/// this instance was fenced by a newer one with the same instance id; a rule that does
/// not make sense is bad input (the API answers 422, the processor skips the rule and
/// says why).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kafka(#[from] labstream_bus::Error),
    #[error("encoding or decoding a record failed: {0}")]
    Codec(#[from] labstream_schemas::Error),
    #[error("alert rule {rule_id:?} is invalid: {problem}")]
    InvalidRule { rule_id: String, problem: String },
    #[error("alert rule {rule_id:?}: {source}")]
    UndecodableRule {
        rule_id: String,
        #[source]
        source: labstream_schemas::Error,
    },
    #[error("alert state {key:?} cannot be restored: {detail}")]
    BadState { key: String, detail: String },
    #[error("encoding an alert record failed: {0}")]
    Encode(#[source] labstream_schemas::Error),
    #[error("invalid settings: {0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn invalid_rule(rule_id: &str, problem: impl fmt::Display) -> Self {
        Error::InvalidRule {
            rule_id: rule_id.to_owned(),
            problem: problem.to_string(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Kafka(e) => e.kind(),
            Error::Codec(_)
            | Error::InvalidRule { .. }
            | Error::UndecodableRule { .. }
            | Error::Config(_) => ErrorKind::BadInput,
            Error::BadState { .. } | Error::Encode(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
