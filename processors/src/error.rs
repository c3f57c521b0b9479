/// Errors of the experiment and enrichment processors. Kafka errors are retryable
/// (the processor restarts its session from the committed offsets) unless this
/// instance was fenced by a newer one with the same instance id.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kafka(#[from] labstream_bus::Error),
    #[error("encoding or decoding a record failed: {0}")]
    Codec(#[from] labstream_schemas::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
