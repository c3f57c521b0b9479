/// Sink errors by kind: `is_retryable` decides between backing off and retrying the
/// same batch (nothing committed) and stopping the sink with the reason.
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
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Bus(e) => e.is_retryable(),
            Error::Mongo(_) => true,
            Error::Lake(e) => e.is_retryable(),
            Error::Config(_) | Error::Internal(_) => false,
        }
    }
}

impl From<mongodb::error::Error> for Error {
    fn from(e: mongodb::error::Error) -> Self {
        Error::Mongo(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
