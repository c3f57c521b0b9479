//! Key material: reading public keys from a PEM file or a JWKS file, generating key
//! pairs, and writing a public key as a JWKS. Every key is bound here to exactly one
//! algorithm, so a token can never choose how it is checked.

use super::error::{KeyError, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use std::collections::HashSet;

/// RSA keys shorter than this are refused (NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;

/// The kind of a key and, one to one, the only JWT algorithm used with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    /// Ed25519, JWT `EdDSA`. The default: small keys, fast, no parameter choices.
    Ed25519,
    /// ECDSA on P-256, JWT `ES256`.
    Es256,
    /// RSA (2048 bits or more), JWT `RS256`. Verified and used for issuing, but not
    /// generated here (see [`generate_keypair`]).
    Rs256,
}

impl KeyAlg {
    /// The JWT `alg` header value of tokens signed with this kind of key.
    pub const fn jwt_alg(self) -> &'static str {
        match self {
            KeyAlg::Ed25519 => "EdDSA",
            KeyAlg::Es256 => "ES256",
            KeyAlg::Rs256 => "RS256",
        }
    }

    pub(crate) const fn algorithm(self) -> Algorithm {
        match self {
            KeyAlg::Ed25519 => Algorithm::EdDSA,
            KeyAlg::Es256 => Algorithm::ES256,
            KeyAlg::Rs256 => Algorithm::RS256,
        }
    }
}

/// One public key able to verify tokens, with the algorithm it is bound to.
#[derive(Clone, Debug)]
pub(crate) struct PublicKey {
    pub(crate) alg: KeyAlg,
    pub(crate) kid: Option<String>,
    pub(crate) key: DecodingKey,
}

/// The label of the first PEM block (`PUBLIC KEY`, `PRIVATE KEY`, ...).
pub(crate) fn pem_label(pem: &str) -> Option<&str> {
    const BEGIN: &str = "-----BEGIN ";
    let rest = &pem[pem.find(BEGIN)? + BEGIN.len()..];
    Some(&rest[..rest.find("-----")?])
}

/// Reads an RSA, EC P-256 or Ed25519 public key (`PUBLIC KEY`, or PKCS#1
/// `RSA PUBLIC KEY`) and finds out which it is. `origin` names the file in errors.
pub(crate) fn public_key_from_pem(pem: &str, origin: &str) -> Result<PublicKey> {
    let bad = |detail: &str| KeyError::bad_key(origin, detail);
    match pem_label(pem) {
        Some("PUBLIC KEY") => {}
        Some("RSA PUBLIC KEY") => {
            let key = DecodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|_| bad("not a valid PKCS#1 RSA public key"))?;
            return rsa_public_key(key, None, origin);
        }
        Some(label) if label.contains("PRIVATE KEY") => {
            return Err(bad(
                "this is a private key; configure the public key instead (`labstream token keygen` writes it as public.pem)",
            ));
        }
        Some("CERTIFICATE") => {
            return Err(bad(
                "certificates are not read; extract the public key with `openssl x509 -pubkey -noout -in <cert.pem>`",
            ));
        }
        _ => return Err(bad("expected a PEM block `-----BEGIN PUBLIC KEY-----`")),
    }
    // The SPKI algorithm OID decides which of these succeeds; at most one does.
    if let Ok(key) = DecodingKey::from_ed_pem(pem.as_bytes()) {
        return ed25519_public_key(key, None, origin);
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
        return p256_public_key(key, None, origin);
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return rsa_public_key(key, None, origin);
    }
    Err(bad(
        "not an RSA, EC P-256 or Ed25519 public key (or the PEM is damaged)",
    ))
}

fn ed25519_public_key(key: DecodingKey, kid: Option<String>, origin: &str) -> Result<PublicKey> {
    // jsonwebtoken slices the first 32 bytes when verifying and would panic on a short
    // key, so the length and the point are checked here, once, at load time.
    let bytes = key.try_get_as_bytes().unwrap_or_default();
    let valid = <&[u8; 32]>::try_from(bytes)
        .ok()
        .is_some_and(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_ok());
    if !valid {
        return Err(KeyError::bad_key(origin, "not a valid Ed25519 public key"));
    }
    Ok(PublicKey {
        alg: KeyAlg::Ed25519,
        kid,
        key,
    })
}

fn p256_public_key(key: DecodingKey, kid: Option<String>, origin: &str) -> Result<PublicKey> {
    let bytes = key.try_get_as_bytes().unwrap_or_default();
    if p256::PublicKey::from_sec1_bytes(bytes).is_err() {
        return Err(KeyError::bad_key(
            origin,
            "an EC key that is not on P-256; labstream accepts ES256 (P-256) only",
        ));
    }
    Ok(PublicKey {
        alg: KeyAlg::Es256,
        kid,
        key,
    })
}

fn rsa_public_key(key: DecodingKey, kid: Option<String>, origin: &str) -> Result<PublicKey> {
    // Building the JWK parses the modulus, which validates the key now rather than
    // failing every token later.
    let jwk = Jwk::from_decoding_key(&key, Some(Algorithm::RS256))
        .map_err(|_| KeyError::bad_key(origin, "not a valid RSA public key"))?;
    check_rsa_size(&jwk, origin)?;
    Ok(PublicKey {
        alg: KeyAlg::Rs256,
        kid,
        key,
    })
}

/// Refuses RSA keys under [`MIN_RSA_BITS`], given the JWK derived from the key.
pub(crate) fn check_rsa_size(jwk: &Jwk, origin: &str) -> Result<()> {
    let bad = || KeyError::bad_key(origin, "not a valid RSA key");
    let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
        return Err(bad());
    };
    let modulus = URL_SAFE_NO_PAD.decode(&rsa.n).map_err(|_| bad())?;
    let bits = modulus.iter().skip_while(|b| **b == 0).count() * 8;
    if bits < MIN_RSA_BITS {
        return Err(KeyError::bad_key(
            origin,
            format!("the RSA key has about {bits} bits; at least {MIN_RSA_BITS} are required"),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

/// Reads a JWKS (`{"keys": [...]}`). Encryption keys (`"use": "enc"`) are skipped, as
/// identity providers publish them alongside signing keys; anything else labstream
/// cannot verify with is an error, so a typo does not silently drop a key.
pub(crate) fn public_keys_from_jwks(json: &str, origin: &str) -> Result<Vec<PublicKey>> {
    let raw: RawJwks = serde_json::from_str(json).map_err(|e| {
        KeyError::bad_key(origin, format!("not a JWKS (`{{\"keys\": [...]}}`): {e}"))
    })?;
    let mut keys = Vec::new();
    let mut kids = HashSet::new();
    for (i, value) in raw.keys.into_iter().enumerate() {
        if value.get("use").and_then(|u| u.as_str()) == Some("enc") {
            continue;
        }
        let name = match value.get("kid").and_then(|k| k.as_str()) {
            Some(kid) => format!("{origin}, key `{kid}`"),
            None => format!("{origin}, key #{i}"),
        };
        let jwk: Jwk = serde_json::from_value(value)
            .map_err(|e| KeyError::bad_key(&name, format!("not a JWK: {e}")))?;
        let key = public_key_from_jwk(&jwk, &name)?;
        if let Some(kid) = &key.kid
            && !kids.insert(kid.clone())
        {
            return Err(KeyError::bad_key(&name, "the kid appears twice"));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(KeyError::bad_key(origin, "the set holds no signing key"));
    }
    Ok(keys)
}

fn public_key_from_jwk(jwk: &Jwk, origin: &str) -> Result<PublicKey> {
    let bad = |detail: &str| KeyError::bad_key(origin, detail);
    let kid = jwk.common.key_id.clone();
    let key = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            let key = DecodingKey::from_ed_components(&p.x).map_err(|_| bad("bad `x`"))?;
            ed25519_public_key(key, kid, origin)?
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            let key =
                DecodingKey::from_ec_components(&p.x, &p.y).map_err(|_| bad("bad `x` or `y`"))?;
            p256_public_key(key, kid, origin)?
        }
        AlgorithmParameters::RSA(p) => {
            let key =
                DecodingKey::from_rsa_components(&p.n, &p.e).map_err(|_| bad("bad `n` or `e`"))?;
            rsa_public_key(key, kid, origin)?
        }
        AlgorithmParameters::OctetKeyPair(_) | AlgorithmParameters::EllipticCurve(_) => {
            return Err(bad(
                "unsupported curve; labstream accepts Ed25519 (EdDSA) and P-256 (ES256)",
            ));
        }
        AlgorithmParameters::OctetKey(_) => {
            // A shared secret in a key set would let anyone who can read the set
            // mint tokens; labstream verifies public-key signatures only.
            return Err(bad(
                "symmetric (`oct`) keys are refused; publish a public key",
            ));
        }
        _ => return Err(bad("unsupported key type (`kty`)")),
    };
    if let Some(declared) = jwk.common.key_algorithm
        && declared != KeyAlgorithm::from(key.alg.algorithm())
    {
        return Err(KeyError::bad_key(
            origin,
            format!(
                "declares `alg` {declared} but labstream uses {} with this kind of key",
                key.alg.jwt_alg()
            ),
        ));
    }
    Ok(key)
}

/// A new key pair as PKCS#8 `PRIVATE KEY` and SPKI `PUBLIC KEY` PEM, the formats
/// OpenSSL writes, so keys can also be made or inspected with it.
///
/// RSA is not generated here: it is slow and needs a bignum prime search this crate
/// does not otherwise carry; use `openssl genpkey` for it.
pub fn generate_keypair(alg: KeyAlg) -> Result<(String, String)> {
    use p256::pkcs8::LineEnding;
    use rand_core::OsRng;
    let encoding = |e: &dyn std::fmt::Display| KeyError::Crypto(format!("encoding the key: {e}"));
    match alg {
        KeyAlg::Ed25519 => {
            use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, KeypairBytes};
            let signing = ed25519_dalek::SigningKey::generate(&mut OsRng);
            // Version 1 PKCS#8 (no embedded public key), as `openssl genpkey` writes;
            // it is what every reader, jsonwebtoken's JWK code included, accepts.
            let bytes = KeypairBytes {
                secret_key: signing.to_bytes(),
                public_key: None,
            };
            let private = bytes
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| encoding(&e))?;
            let public = signing
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| encoding(&e))?;
            Ok((private.to_string(), public))
        }
        KeyAlg::Es256 => {
            use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
            let secret = p256::SecretKey::random(&mut OsRng);
            let private = secret
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| encoding(&e))?;
            let public = secret
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| encoding(&e))?;
            Ok((private.to_string(), public))
        }
        KeyAlg::Rs256 => Err(KeyError::Crypto(
            "RSA keys are not generated by labstream; run `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out private.pem` and `openssl pkey -in private.pem -pubout -out public.pem`".into(),
        )),
    }
}

/// A JWKS (`{"keys": [one key]}`) holding the public key of `public_pem`, with
/// `use: sig`, its `alg` and, when given, `kid`; for identity setups that want a key
/// set file rather than a PEM.
pub fn jwks_from_public_pem(public_pem: &str, kid: Option<&str>) -> Result<String> {
    let key = public_key_from_pem(public_pem, "public key")?;
    let mut jwk = Jwk::from_decoding_key(&key.key, Some(key.alg.algorithm()))
        .map_err(|e| KeyError::Crypto(format!("converting the key to a JWK: {e}")))?;
    jwk.common.key_id = kid.map(str::to_owned);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    let set = JwkSet { keys: vec![jwk] };
    serde_json::to_string_pretty(&set)
        .map_err(|e| KeyError::Crypto(format!("writing the JWKS: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_label_reads_the_first_block() {
        assert_eq!(
            pem_label("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n"),
            Some("PUBLIC KEY")
        );
        assert_eq!(pem_label("no pem here"), None);
    }

    #[test]
    fn short_ed25519_jwk_is_refused_not_a_panic() {
        let jwks = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}"#;
        let err = public_keys_from_jwks(jwks, "test").unwrap_err();
        assert!(err.to_string().contains("Ed25519"), "{err}");
    }

    #[test]
    fn encryption_keys_are_skipped_but_an_empty_set_is_an_error() {
        let jwks = r#"{"keys": [{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}]}"#;
        let err = public_keys_from_jwks(jwks, "test").unwrap_err();
        assert!(err.to_string().contains("no signing key"), "{err}");
    }

    #[test]
    fn symmetric_jwk_is_refused() {
        let jwks = r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#;
        let err = public_keys_from_jwks(jwks, "test").unwrap_err();
        assert!(err.to_string().contains("symmetric"), "{err}");
    }
}
