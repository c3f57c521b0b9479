//! Minting tokens from a private key, for `labstream token issue` and tests. The
//! algorithm follows from the key, so an issued token always verifies against the
//! matching public key and nothing else.

use super::claims::{Claims, Scope, check_sensor_pattern};
use super::error::{KeyError, Result};
use super::keys::{KeyAlg, check_rsa_size, pem_label};
use super::verify::DEFAULT_AUDIENCE;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::path::Path;
use std::time::Duration;

/// Signs tokens with one private key (Ed25519, EC P-256 or RSA, PKCS#8 PEM; RSA may
/// also be PKCS#1 `RSA PRIVATE KEY`).
#[derive(Clone, Debug)]
pub struct Issuer {
    key: EncodingKey,
    alg: KeyAlg,
    audience: String,
    issuer: Option<String>,
}

impl Issuer {
    /// Reads the private key and finds out its type, which fixes the algorithm.
    pub fn from_pem(private_pem: &str) -> Result<Self> {
        let (key, alg) = encoding_key_from_pem(private_pem, "private key")?;
        Ok(Issuer {
            key,
            alg,
            audience: DEFAULT_AUDIENCE.to_owned(),
            issuer: None,
        })
    }

    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let (key, alg) = encoding_key_from_pem(&pem, &path.display().to_string())?;
        Ok(Issuer {
            key,
            alg,
            audience: DEFAULT_AUDIENCE.to_owned(),
            issuer: None,
        })
    }

    /// The `aud` written into tokens (default `labstream`).
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// The `iss` written into tokens (default none).
    pub fn with_issuer(mut self, issuer: impl Into<Option<String>>) -> Self {
        self.issuer = issuer.into();
        self
    }

    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    /// Claims for `subject` valid from now for `ttl`; `sensors` limits the sensor ids
    /// the token may write (entries ending in `*` match by prefix).
    pub fn claims(
        &self,
        subject: &str,
        scopes: &[Scope],
        sensors: Option<Vec<String>>,
        ttl: Duration,
    ) -> Result<Claims> {
        if subject.trim().is_empty() {
            return Err(KeyError::BadClaims("the subject must not be empty".into()));
        }
        if scopes.is_empty() {
            return Err(KeyError::BadClaims(
                "give at least one scope; a token without one is refused everywhere".into(),
            ));
        }
        if let Some(patterns) = &sensors {
            if patterns.is_empty() {
                return Err(KeyError::BadClaims(
                    "an empty sensors list would allow no sensor; leave it out to allow all".into(),
                ));
            }
            patterns.iter().try_for_each(|p| check_sensor_pattern(p))?;
        }
        if ttl.as_secs() == 0 {
            return Err(KeyError::BadClaims(
                "the lifetime must be at least one second".into(),
            ));
        }
        let mut names: Vec<&str> = Vec::with_capacity(scopes.len());
        for scope in scopes {
            if !names.contains(&scope.as_str()) {
                names.push(scope.as_str());
            }
        }
        let now = jsonwebtoken::get_current_timestamp();
        Ok(Claims {
            sub: subject.to_owned(),
            aud: vec![self.audience.clone()],
            exp: now.saturating_add(ttl.as_secs()),
            iat: now,
            nbf: None,
            iss: self.issuer.clone(),
            scope: names.join(" "),
            sensors,
        })
    }

    /// A signed token; see [`Issuer::claims`] for the arguments. `kid` goes into the
    /// header, for verifiers that hold a JWKS with several keys.
    pub fn issue(
        &self,
        subject: &str,
        scopes: &[Scope],
        sensors: Option<Vec<String>>,
        ttl: Duration,
        kid: Option<String>,
    ) -> Result<String> {
        let claims = self.claims(subject, scopes, sensors, ttl)?;
        self.sign(&claims, kid)
    }

    /// Signs `claims` as they are, without checking them; for tests and tools that
    /// need exact control (backdated or future tokens).
    pub fn sign(&self, claims: &Claims, kid: Option<String>) -> Result<String> {
        let mut header = Header::new(self.alg.algorithm());
        header.kid = kid;
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| KeyError::Crypto(format!("signing the token: {e}")))
    }
}

fn encoding_key_from_pem(pem: &str, origin: &str) -> Result<(EncodingKey, KeyAlg)> {
    let bad = |detail: &str| KeyError::bad_key(origin, detail);
    match pem_label(pem) {
        Some("PRIVATE KEY") => {}
        Some("RSA PRIVATE KEY") => {
            let key = EncodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|_| bad("not a valid PKCS#1 RSA private key"))?;
            return check_rsa(key, origin);
        }
        Some("EC PRIVATE KEY") => {
            return Err(bad(
                "SEC1 EC keys are not read; convert it with `openssl pkcs8 -topk8 -nocrypt -in <key> -out private.pem`",
            ));
        }
        Some("ENCRYPTED PRIVATE KEY") => {
            return Err(bad(
                "encrypted keys are not read; decrypt it with `openssl pkey -in <key> -out private.pem`",
            ));
        }
        Some(label) if label.contains("PUBLIC KEY") => {
            return Err(bad(
                "this is a public key; issuing tokens needs the private key",
            ));
        }
        _ => return Err(bad("expected a PEM block `-----BEGIN PRIVATE KEY-----`")),
    }
    // The PKCS#8 algorithm OID decides which of these succeeds; each is then parsed
    // fully, so a damaged key fails here and not at the first signature.
    if let Ok(key) = EncodingKey::from_ed_pem(pem.as_bytes()) {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        ed25519_dalek::SigningKey::from_pkcs8_der(key.as_bytes())
            .map_err(|_| bad("not a valid Ed25519 private key"))?;
        return Ok((key, KeyAlg::Ed25519));
    }
    if let Ok(key) = EncodingKey::from_ec_pem(pem.as_bytes()) {
        use p256::pkcs8::DecodePrivateKey;
        p256::SecretKey::from_pkcs8_der(key.as_bytes()).map_err(|_| {
            bad("an EC key that is not on P-256; labstream signs with ES256 (P-256) only")
        })?;
        return Ok((key, KeyAlg::Es256));
    }
    if let Ok(key) = EncodingKey::from_rsa_pem(pem.as_bytes()) {
        return check_rsa(key, origin);
    }
    Err(bad(
        "not an RSA, EC P-256 or Ed25519 private key (or the PEM is damaged)",
    ))
}

fn check_rsa(key: EncodingKey, origin: &str) -> Result<(EncodingKey, KeyAlg)> {
    // Deriving the public JWK parses the private key, so a damaged key fails here.
    let jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)
        .map_err(|_| KeyError::bad_key(origin, "not a valid RSA private key"))?;
    check_rsa_size(&jwk, origin)?;
    Ok((key, KeyAlg::Rs256))
}
