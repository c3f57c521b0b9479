//! Token verification for every HTTP handler. A token is accepted only when it is
//! signed with the single algorithm bound to the selected public key, carries this
//! server's audience (and issuer, when configured) and is within its validity window.

use super::claims::{Claims, Scope};
use super::error::{AuthError, KeyError, Result};
use super::keys::{self, PublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// The `aud` a token must carry unless configured otherwise.
pub const DEFAULT_AUDIENCE: &str = "labstream";
/// Clock skew tolerated on `exp` and `nbf` between the issuer and this server.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Far above any real token; refuses oversized input before decoding it.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Checks tokens against one PEM public key or a JWKS. Cheap to clone; build it once
/// at startup and share it.
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: Vec<PublicKey>,
    audience: String,
    issuer: Option<String>,
    leeway: Duration,
}

impl Verifier {
    fn new(keys: Vec<PublicKey>) -> Self {
        Verifier {
            keys,
            audience: DEFAULT_AUDIENCE.to_owned(),
            issuer: None,
            leeway: DEFAULT_LEEWAY,
        }
    }

    /// From an RSA, EC P-256 or Ed25519 public key in PEM; the key type decides the
    /// one algorithm accepted (RS256, ES256, EdDSA).
    pub fn from_pem(pem: &str) -> Result<Self> {
        Ok(Self::new(vec![keys::public_key_from_pem(
            pem,
            "public key",
        )?]))
    }

    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let pem = read(path)?;
        let key = keys::public_key_from_pem(&pem, &path.display().to_string())?;
        Ok(Self::new(vec![key]))
    }

    /// From a JWKS (`{"keys": [...]}`). A token names its key with `kid`; a token
    /// without one is accepted only when the set holds exactly one key.
    pub fn from_jwks(json: &str) -> Result<Self> {
        Ok(Self::new(keys::public_keys_from_jwks(json, "JWKS")?))
    }

    pub fn from_jwks_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let json = read(path)?;
        let keys = keys::public_keys_from_jwks(&json, &path.display().to_string())?;
        Ok(Self::new(keys))
    }

    /// The audience required in `aud` (default `labstream`).
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// When set, tokens must carry exactly this `iss`; when `None`, `iss` is not checked.
    pub fn with_issuer(mut self, issuer: impl Into<Option<String>>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default 30 s); whole seconds count.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// The JWT algorithms accepted, one per configured key, for the startup log.
    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut algs: Vec<_> = self.keys.iter().map(|k| k.alg.jwt_alg()).collect();
        algs.sort_unstable();
        algs.dedup();
        algs
    }

    /// The claims of `token` when it is valid; otherwise `AuthError::Invalid` with a
    /// reason fit for the client. Scopes and sensors are checked by the caller with
    /// [`Claims::require`] and [`Claims::require_sensor`].
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::invalid("the token is too long"));
        }
        let header = peek_header(token)?;
        if header.crit.is_some() {
            // RFC 7515 4.1.11: a token whose critical extensions are not understood
            // must be refused.
            return Err(AuthError::invalid(
                "the token has critical header extensions (crit) labstream does not support",
            ));
        }
        let key = self.select(header.kid.as_deref())?;
        // Checked here as well as by jsonwebtoken, so `none`, HMAC and any algorithm
        // other than the key's are refused before a single byte is verified.
        if header.alg != key.alg.jwt_alg() {
            return Err(AuthError::invalid(
                "the token's signing algorithm is not accepted",
            ));
        }
        let validation = self.validation(key);
        jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map(|data| data.claims)
            .map_err(|e| AuthError::invalid(self.reason(e.kind())))
    }

    fn select(&self, kid: Option<&str>) -> Result<&PublicKey, AuthError> {
        match (kid, self.keys.as_slice()) {
            (Some(kid), keys) => {
                if let Some(key) = keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                    return Ok(key);
                }
                // A lone key without a kid (a PEM file): the token's kid is only a label.
                match keys {
                    [only] if only.kid.is_none() => Ok(only),
                    _ => Err(AuthError::invalid(
                        "the token's signing key (kid) is not known",
                    )),
                }
            }
            (None, [only]) => Ok(only),
            (None, _) => Err(AuthError::invalid(
                "the token names no signing key (kid), and several keys are configured",
            )),
        }
    }

    fn validation(&self, key: &PublicKey) -> Validation {
        let mut validation = Validation::new(key.alg.algorithm());
        validation.leeway = self.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_audience(&[&self.audience]);
        // jsonwebtoken checks aud and iss only when present; requiring them makes a
        // token without them fail instead of passing unchecked.
        let mut required = vec!["exp", "aud", "sub"];
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    fn reason(&self, kind: &ErrorKind) -> String {
        match kind {
            ErrorKind::ExpiredSignature => "the token has expired".into(),
            ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
            ErrorKind::InvalidAudience => {
                format!("the token's audience is not {}", self.audience)
            }
            ErrorKind::InvalidIssuer => "the token's issuer is not accepted".into(),
            ErrorKind::InvalidSignature => "the token's signature is not valid".into(),
            ErrorKind::InvalidAlgorithm
            | ErrorKind::MissingAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::UnsupportedAlgorithm => {
                "the token's signing algorithm is not accepted".into()
            }
            ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
            ErrorKind::InvalidClaimFormat(claim) => {
                format!("the token's `{claim}` claim is malformed")
            }
            ErrorKind::Json(_) => {
                "the token's claims are malformed or incomplete (required: sub, aud, exp, iat)"
                    .into()
            }
            _ => "the token is malformed".into(),
        }
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The header fields needed before choosing a key. Parsed here rather than by
/// jsonwebtoken so that an algorithm it does not know (`none`) is reported as a refused
/// algorithm, not as garbage.
#[derive(Deserialize)]
struct PeekHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

fn peek_header(token: &str) -> Result<PeekHeader, AuthError> {
    let malformed = || AuthError::invalid("the token is malformed (expected a signed JWT)");
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let json = URL_SAFE_NO_PAD.decode(header).map_err(|_| malformed())?;
    serde_json::from_slice(&json).map_err(|_| malformed())
}

/// The header and claims of `token` as JSON, WITHOUT checking the signature or any
/// claim: for `labstream token inspect` and debugging only. Never base a decision on it.
pub fn inspect_unverified(
    token: &str,
) -> Result<(serde_json::Value, serde_json::Value), AuthError> {
    let malformed = || AuthError::invalid("the token is malformed (expected a signed JWT)");
    let mut parts = token.trim().split('.');
    let (Some(header), Some(claims), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let decode = |part: &str| -> Result<serde_json::Value, AuthError> {
        let json = URL_SAFE_NO_PAD.decode(part).map_err(|_| malformed())?;
        serde_json::from_slice(&json).map_err(|_| malformed())
    };
    Ok((decode(header)?, decode(claims)?))
}

/// The token of an `Authorization` header value: `Bearer <token>`, or `Token <token>`
/// as InfluxDB clients and Telegraf send it; the scheme is case-insensitive (RFC 7235).
/// `None`, another scheme or an empty token give `AuthError::Missing`. Pass `None` when
/// the header is absent or not visible ASCII.
pub fn bearer_token(header_value: Option<&str>) -> Result<&str, AuthError> {
    let value = header_value.ok_or(AuthError::Missing)?.trim();
    let (scheme, token) = value
        .split_once(|c: char| c.is_ascii_whitespace())
        .ok_or(AuthError::Missing)?;
    let token = token.trim();
    let known = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token");
    if !known || token.is_empty() || token.contains(|c: char| c.is_ascii_whitespace()) {
        return Err(AuthError::Missing);
    }
    Ok(token)
}

/// How every HTTP surface checks a request: the token of its `Authorization` header
/// value ([`bearer_token`]) must be valid and grant one of `scopes`. Its claims, or
/// `None` when auth is disabled (`verifier` `None`, allowed on a loopback address only).
pub fn authorize(
    verifier: Option<&Verifier>,
    authorization: Option<&str>,
    scopes: &[Scope],
) -> Result<Option<Claims>, AuthError> {
    let Some(verifier) = verifier else {
        return Ok(None);
    };
    let claims = verifier.verify(bearer_token(authorization)?)?;
    claims.require_any(scopes)?;
    Ok(Some(claims))
}
