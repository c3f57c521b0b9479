//! What an error means for whoever handles it, the same in every crate: a sink's
//! back-off and dead-letter decisions, a processor's retry, and the HTTP status family
//! an API answers with all read it from the error's `kind()`.

/// The kind of an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The input is at fault (a request, a record, a setting): sending or processing it
    /// again will fail again. HTTP 4xx; a record goes to the dead-letter queue.
    BadInput,
    /// What was asked for does not exist. HTTP 404.
    NotFound,
    /// The state changed under the request, or another instance holds what it needs
    /// (a stale version, a fenced writer). HTTP 409/412.
    Conflict,
    /// A service is unavailable or busy for now: waiting and trying again can help.
    /// HTTP 429/503 with `Retry-After`; a sink backs off and retries the same batch.
    Retryable,
    /// A bug or an unexpected state of labstream itself: logged, never detailed to a
    /// client. HTTP 500; a component stops with the reason.
    Internal,
}

impl ErrorKind {
    /// Whether waiting and trying again can help.
    pub fn is_retryable(self) -> bool {
        self == ErrorKind::Retryable
    }
}
