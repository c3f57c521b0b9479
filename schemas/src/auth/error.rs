use std::io;
use std::path::PathBuf;

/// Why a request is not allowed. The variant decides the HTTP status; `Display` and
/// [`AuthError::reason`] are safe to send to the client (they never name internals).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer <token>` header, or one that does not parse.
    #[error("missing bearer token: send the header `Authorization: Bearer <token>`")]
    Missing,
    /// A token was sent but is not valid: bad signature, malformed, refused algorithm,
    /// wrong audience or issuer, expired or not valid yet.
    #[error("invalid token: {reason}")]
    Invalid { reason: String },
    /// The token is valid but does not grant this request (scope or sensor id).
    #[error("forbidden: {reason}")]
    Forbidden { reason: String },
}

impl AuthError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        AuthError::Invalid {
            reason: reason.into(),
        }
    }

    pub(crate) fn forbidden(reason: impl Into<String>) -> Self {
        AuthError::Forbidden {
            reason: reason.into(),
        }
    }

    /// 401 when the client must (re)authenticate, 403 when it did but lacks the right.
    pub fn status_code(&self) -> u16 {
        match self {
            AuthError::Missing | AuthError::Invalid { .. } => 401,
            AuthError::Forbidden { .. } => 403,
        }
    }

    /// Machine-readable error code for response bodies.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::Invalid { .. } => "unauthorized",
            AuthError::Forbidden { .. } => "forbidden",
        }
    }

    /// The user-facing explanation alone, without the "invalid token:" prefix.
    pub fn reason(&self) -> &str {
        match self {
            AuthError::Missing => "send the header `Authorization: Bearer <token>`",
            AuthError::Invalid { reason } | AuthError::Forbidden { reason } => reason,
        }
    }

    /// Value for the `WWW-Authenticate` header of a 401 (RFC 6750, section 3).
    pub fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing => Some(r#"Bearer realm="labstream""#),
            AuthError::Invalid { .. } => Some(r#"Bearer realm="labstream", error="invalid_token""#),
            AuthError::Forbidden { .. } => None,
        }
    }
}

/// Errors of setting auth up: loading or generating keys and issuing tokens. They
/// happen at startup or in the CLI, never per request, so they are kept apart from
/// [`AuthError`] and carry the detail an operator needs to fix the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A PEM key or a JWKS file is not a key labstream can use.
    #[error("{origin}: {detail}")]
    BadKey { origin: String, detail: String },
    /// The claims asked for cannot go into a token.
    #[error("cannot issue the token: {0}")]
    BadClaims(String),
    /// Key generation, encoding or signing failed.
    #[error("{0}")]
    Crypto(String),
}

impl KeyError {
    pub(crate) fn bad_key(origin: impl Into<String>, detail: impl Into<String>) -> Self {
        KeyError::BadKey {
            origin: origin.into(),
            detail: detail.into(),
        }
    }
}

pub type Result<T, E = KeyError> = std::result::Result<T, E>;
