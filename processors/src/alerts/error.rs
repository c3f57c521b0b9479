use std::fmt;

/// Errors of the alerts processor. A rule that does not make sense is bad input (the
/// API answers 422, the processor skips the rule and says why); Kafka errors are
/// retryable unless this instance was fenced by a newer one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    #[error(transparent)]
    Kafka(#[from] labstream_bus::Error),
    #[error("invalid alerts settings: {0}")]
    Config(String),
    #[error("writing the alerts table of the lake failed: {0}")]
    Lake(String),
}

impl Error {
    pub(crate) fn invalid_rule(rule_id: &str, problem: impl fmt::Display) -> Self {
        Error::InvalidRule {
            rule_id: rule_id.to_owned(),
            problem: problem.to_string(),
        }
    }

    /// Whether a rule or message sent by a user is at fault (not the system).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidRule { .. } | Error::UndecodableRule { .. }
        )
    }

    /// Whether waiting and trying again can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Kafka(e) => e.is_retryable(),
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
