/// Errors of the lake. A file system error (a full or read-only disk, a folder that went
/// away) may pass once the disk is fixed, so the writer keeps its rows and retries; a
/// Parquet file that cannot be encoded or read will not get better by waiting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the lake at {path} failed: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding a Parquet file failed: {0}")]
    Parquet(String),
    #[error("internal lake error: {0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> labstream_schemas::ErrorKind {
        use labstream_schemas::ErrorKind;
        match self {
            Error::Io { .. } => ErrorKind::Retryable,
            Error::Parquet(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Whether waiting and trying again can help.
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
