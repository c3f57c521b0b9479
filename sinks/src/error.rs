use labstream_schemas::ErrorKind;

/// Sink errors. Their `kind` decides between backing off and retrying the same batch
/// (nothing committed) and stopping the sink with the reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] labstream_bus::Error),
    #[error("MongoDB write failed: {0}")]
    Mongo(#[source] Box<mongodb::error::Error>),
    #[error(transparent)]
    Lake(#[from] labstream_lake::Error),
    #[error("invalid sink settings: {0}")]
    Config(String),
    #[error("internal sink error: {0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Bus(e) => e.kind(),
            // Duplicates are not errors (the sink counts them as written); what is left
            // is MongoDB unreachable or refusing writes for now.
            Error::Mongo(_) => ErrorKind::Retryable,
            Error::Lake(e) => e.kind(),
            Error::Config(_) => ErrorKind::BadInput,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl From<mongodb::error::Error> for Error {
    fn from(e: mongodb::error::Error) -> Self {
        Error::Mongo(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
