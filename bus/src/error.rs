use labstream_schemas::ErrorKind;
use rdkafka::error::KafkaError;

/// Errors of the Kafka plumbing. Each message includes the client's error text (not
/// marked as a `source`, so that error chains do not print it twice). `is_retryable` tells the caller whether waiting and
/// trying again can help (broker unreachable, timeout) or not (bad configuration).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid Kafka client settings: {0}; check [kafka] in the configuration")]
    Config(KafkaError),
    #[error("Kafka did not acknowledge the write: {0}")]
    Produce(KafkaError),
    #[error("reading from Kafka failed: {0}")]
    Consume(KafkaError),
    #[error("committing consumer offsets failed: {0}")]
    Commit(KafkaError),
    #[error("Kafka topic administration failed: {0}")]
    Admin(String),
    #[error("Kafka transaction failed: {0}; the batch is processed again")]
    Transaction(KafkaError),
    #[error(
        "this producer was fenced: another instance took over its transactional id ({0}); stop this one"
    )]
    Fenced(KafkaError),
    #[error(
        "consumer group {group} has {members} live member(s); stop them before moving its offsets"
    )]
    GroupActive { group: String, members: usize },
    #[error("Kafka at {brokers} is not reachable: {cause}")]
    Unreachable { brokers: String, cause: KafkaError },
}

impl Error {
    /// Bad settings are the operator's to fix; a fenced producer or an active group
    /// means another instance holds what this one needs; everything else is the cluster
    /// being unreachable or busy for now.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::BadInput,
            Error::Fenced(_) | Error::GroupActive { .. } => ErrorKind::Conflict,
            Error::Produce(_)
            | Error::Consume(_)
            | Error::Commit(_)
            | Error::Admin(_)
            | Error::Transaction(_)
            | Error::Unreachable { .. } => ErrorKind::Retryable,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
