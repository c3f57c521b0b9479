//! The auth module against the attacks a JWT verifier must resist: every forged,
//! stale, misdirected or wrongly signed token is refused with the right error kind,
//! and valid tokens grant exactly their scopes and sensors.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use labstream_schemas::auth::{
    AuthError, Claims, Issuer, KeyAlg, Scope, Verifier, bearer_token, generate_keypair,
    jwks_from_public_pem,
};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

/// RSA 2048 (openssl genpkey), PKCS#8. A test key: never use it anywhere else.
const RSA_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIIEugIBADANBgkqhkiG9w0BAQEFAASCBKQwggSgAgEAAoIBAQDM/gd7nhW8l36i
HIU3VGq40Ad0V71DUrg4qmuRmqfAxveNd+9CDWKbgC6fVdFIg/u9H0VpxXHqtpC6
poBrwCSZ4z7AdZySfv4X+gNiY8Pp4AXgLq3up4heEclkYoxIi/kiyEw7JB9B62RD
mV0xTbx5oM+nSbfFgqeebTAug6HKusGMCTgU2UTf8RK2pbxzhnr8QB6czVn+7qWf
EjMyF45abJCcWVKUdUVRifiATeMWAkkDJbfpCWM2gDi7q2ej0Pb2anoGm6sOfNqH
L/XlMxnoMfBZFH0/6lupUWuY8NXcH6qQvKaOO6QAssWA0AGmzRBSpZq6+H3LphAP
d4KkxuG7AgMBAAECgf8E8f2OLvfCiFBWtSzowxwIqEX5Hcu1WSGM9peguogxHNxx
wFkmKw0hMbUt+V73UC+03UFiqG5miZSyerT6fEF2/Yd8Z//lC2DgP1feqi1lQ+Rt
Cy6wndaBWTVamUTCBehNK7pwYNl1cUHsTVkSEp30Uzs+5a9VKDNlhjzPV9UAMulr
6p/KlFYHSeK3hQmKKg2CpfMBxiIvGSey+c2Igm6LGm55zhIgtnkyY35txaD29meX
9++fBazIIIselsK7ZhZm17YtEspGO4tl/+Nd6Jd0neC7CLZRD8+jGyj3QfcLz2sJ
1027RScXx6B+pj3LAQrIyxswE2ijQQYcpYIBpgUCgYEA/uRwnPXAs69WRIby60vY
SmxyqqNBPZS9D7FhytisJ1ugSjuwtWCCKar6Jmz7WKIvmrdght6Sxs7rw7LESAp8
vR6tz1uVmvRYIvVSaZQmIKmY8pcIjal6l0Gf283Wds3MxKtyYDgb+ilVHuItc1XE
vcI7+FXKDLA6fsMFgV/cB00CgYEAzeITuFqRMsTKmoNVIkCBEZEjA57I47/bxP5N
CcRSEC4rRt6Ds7u7YpJPeSQSy+0Mhl4Nm9VkW0vSghPiA8u8X0aFllB730f6QQG+
K/JCD0MRrzfQS2I0E+WY38vPqI99LQyZ5LYbc3jXxlSYMhaGg82LQLUghyPUXNuf
qw6YWScCgYBL5UVK1zoLxrePLAeE3E6IyoXSHU49wd4RoCWYOq/4ACZYNDHHr/bR
5WEas/SbTZ+TF+sb/YYCwHYfDUm4kbbWsR3b0k9Xlk3wCtABM+WucBFkmmgnlkE0
bIvm7QFg2qKQJOSnlc1uzYPU8E/MOcudHQqyRQkmggrI19T50ss3OQKBgHOnTyqd
fblGQQXhRt6x249Rt5ieBv2hVkRoEkCtTugV92udLeC2UcJCrHBBqmlx5TpJ9V0X
14NNqZg2sR0uwsfGpt5UofFAzrzbzMeFFETciT+jm9fs95JBxMnbBPEMgeXfkUeg
YPVR6exYsxJYAwJhYZtc5EPmBbKQETaXQU+7AoGAUGp47Uw5USwQOHFapwQWNlUg
7vS8j8DYLy014j4v4cazA56KGiCxJMzPRdLGTJiLoaEDmHitlSIpdgCLjX8v4+0q
xtI7r5lSCEaA+d/W4LcXPXgq9Pgy7yyO5UaCM6DuPsKtNQI1Zd2j5ZOsmnoX01Sc
WrZFOgRUqYs9z4aryHw=
-----END PRIVATE KEY-----
";
/// Its public key, SPKI.
const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAzP4He54VvJd+ohyFN1Rq
uNAHdFe9Q1K4OKprkZqnwMb3jXfvQg1im4Aun1XRSIP7vR9FacVx6raQuqaAa8Ak
meM+wHWckn7+F/oDYmPD6eAF4C6t7qeIXhHJZGKMSIv5IshMOyQfQetkQ5ldMU28
eaDPp0m3xYKnnm0wLoOhyrrBjAk4FNlE3/EStqW8c4Z6/EAenM1Z/u6lnxIzMheO
WmyQnFlSlHVFUYn4gE3jFgJJAyW36QljNoA4u6tno9D29mp6BpurDnzahy/15TMZ
6DHwWRR9P+pbqVFrmPDV3B+qkLymjjukALLFgNABps0QUqWauvh9y6YQD3eCpMbh
uwIDAQAB
-----END PUBLIC KEY-----
";
/// The same public key, PKCS#1.
const RSA_PUBLIC_PKCS1: &str = "-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEAzP4He54VvJd+ohyFN1RquNAHdFe9Q1K4OKprkZqnwMb3jXfvQg1i
m4Aun1XRSIP7vR9FacVx6raQuqaAa8AkmeM+wHWckn7+F/oDYmPD6eAF4C6t7qeI
XhHJZGKMSIv5IshMOyQfQetkQ5ldMU28eaDPp0m3xYKnnm0wLoOhyrrBjAk4FNlE
3/EStqW8c4Z6/EAenM1Z/u6lnxIzMheOWmyQnFlSlHVFUYn4gE3jFgJJAyW36Qlj
NoA4u6tno9D29mp6BpurDnzahy/15TMZ6DHwWRR9P+pbqVFrmPDV3B+qkLymjjuk
ALLFgNABps0QUqWauvh9y6YQD3eCpMbhuwIDAQAB
-----END RSA PUBLIC KEY-----
";
/// Too short to be accepted.
const RSA_1024_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCv0d26TCPAPFY28iJtv8Yb0VnQ
yoBPP+UohmTfa5C13uNaSOcnmCndX+w6+ZzFDX5u8iORjnFScb2cchthSgsw/k+Y
dJJr9uzfPqzSdrz7yGhBkOhleXNtqzSL3YVieWtYhTswvyRaxgBH9qvAV+RXFje5
A0c97UoRTDQMg+jt5wIDAQAB
-----END PUBLIC KEY-----
";
/// Ed25519 made by openssl, to check interoperability with keys not made by labstream.
const OPENSSL_ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEICqKkEXHAfO/igu3kgdtBEBDxICn3krJh8mzKaNwQ1GS
-----END PRIVATE KEY-----
";
/// Its public key.
const OPENSSL_ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEARsxWmBed89m15ye6teVDodsP02UhEqJitTuP+rTjfTc=
-----END PUBLIC KEY-----
";
/// EC P-256 made by openssl (PKCS#8 with parameters and public key).
const OPENSSL_P256_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgvdMWMhn0h8i//yvl
eQ0XkNWAAzwksFesVYyRCyrJzMShRANCAAQo2CRmWljhqEolRTAOXWpYqiplAbnL
+fIoVNvuU7h1TsiQVtGLHPo0lDPUrlSKYbK3Y8Z64yg5oblrYyFpXDvg
-----END PRIVATE KEY-----
";
/// Its public key.
const OPENSSL_P256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKNgkZlpY4ahKJUUwDl1qWKoqZQG5
y/nyKFTb7lO4dU7IkFbRixz6NJQz1K5UimGyt2PGeuMoOaG5a2MhaVw74A==
-----END PUBLIC KEY-----
";
/// EC P-384: ES384 is not accepted.
const P384_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEgTxnf4JfIudlBdJLI2cP1RVPEVJwnShn
EuZNWsAgyORVFATFx8Z/hgWk8fI3zzCED93a9rQL1Kz+JlS4Qpc0Abc59mKp/ihH
YYn9Rhsk7ucojpgMBBiOqc5J3ErZMj2c
-----END PUBLIC KEY-----
";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A private and a public PEM of each supported key type.
fn key_pairs() -> Vec<(&'static str, String, String)> {
    let (ed_private, ed_public) = generate_keypair(KeyAlg::Ed25519).unwrap();
    let (es_private, es_public) = generate_keypair(KeyAlg::Es256).unwrap();
    vec![
        ("ed25519", ed_private, ed_public),
        ("es256", es_private, es_public),
        ("rs256", RSA_PRIVATE.into(), RSA_PUBLIC.into()),
        (
            "openssl ed25519",
            OPENSSL_ED25519_PRIVATE.into(),
            OPENSSL_ED25519_PUBLIC.into(),
        ),
        (
            "openssl p256",
            OPENSSL_P256_PRIVATE.into(),
            OPENSSL_P256_PUBLIC.into(),
        ),
    ]
}

fn ed25519() -> (Issuer, Verifier, String) {
    let (private, public) = generate_keypair(KeyAlg::Ed25519).unwrap();
    (
        Issuer::from_pem(&private).unwrap(),
        Verifier::from_pem(&public).unwrap(),
        public,
    )
}

fn assert_invalid(result: Result<Claims, AuthError>, reason_contains: &str) {
    match result {
        Err(err @ AuthError::Invalid { .. }) => {
            assert!(
                err.reason().contains(reason_contains),
                "expected a reason containing {reason_contains:?}, got {:?}",
                err.reason()
            );
            assert_eq!(err.status_code(), 401);
            assert_eq!(err.code(), "unauthorized");
        }
        other => panic!("expected Invalid ({reason_contains}), got {other:?}"),
    }
}

fn b64(json: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).unwrap())
}

fn valid_claims_json() -> serde_json::Value {
    serde_json::json!({
        "sub": "gateway-1",
        "aud": "labstream",
        "exp": now() + 3600,
        "iat": now(),
        "scope": "samples:write",
    })
}

// ---------------------------------------------------------------- round trips

#[test]
fn every_key_type_round_trips() {
    for (name, private, public) in key_pairs() {
        let issuer = Issuer::from_pem(&private).unwrap_or_else(|e| panic!("{name}: {e}"));
        let verifier = Verifier::from_pem(&public).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(verifier.algorithms(), [issuer.alg().jwt_alg()], "{name}");
        let token = issuer
            .issue(
                "gateway-1",
                &[Scope::SamplesWrite, Scope::Query],
                Some(vec!["door-3".into()]),
                HOUR,
                None,
            )
            .unwrap();
        let claims = verifier
            .verify(&token)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(claims.sub, "gateway-1");
        assert_eq!(claims.aud, ["labstream"]);
        assert_eq!(claims.scope, "samples:write query");
        assert_eq!(claims.sensors.as_deref(), Some(&["door-3".to_string()][..]));
        assert!(claims.exp >= now() + 3590 && claims.exp <= now() + 3600);
        assert!(claims.iat <= now());
    }
}

#[test]
fn key_types_are_detected() {
    let cases = [
        (
            KeyAlg::Ed25519,
            OPENSSL_ED25519_PRIVATE,
            OPENSSL_ED25519_PUBLIC,
        ),
        (KeyAlg::Es256, OPENSSL_P256_PRIVATE, OPENSSL_P256_PUBLIC),
        (KeyAlg::Rs256, RSA_PRIVATE, RSA_PUBLIC),
    ];
    for (alg, private, public) in cases {
        assert_eq!(Issuer::from_pem(private).unwrap().alg(), alg);
        assert_eq!(
            Verifier::from_pem(public).unwrap().algorithms(),
            [alg.jwt_alg()]
        );
    }
    assert_eq!(
        Verifier::from_pem(RSA_PUBLIC_PKCS1).unwrap().algorithms(),
        ["RS256"]
    );
}

#[test]
fn rsa_keygen_points_to_openssl() {
    let err = generate_keypair(KeyAlg::Rs256).unwrap_err();
    assert!(err.to_string().contains("openssl genpkey"), "{err}");
}

#[test]
fn keys_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = generate_keypair(KeyAlg::Ed25519).unwrap();
    std::fs::write(dir.path().join("private.pem"), &private).unwrap();
    std::fs::write(dir.path().join("public.pem"), &public).unwrap();
    std::fs::write(
        dir.path().join("jwks.json"),
        jwks_from_public_pem(&public, Some("k1")).unwrap(),
    )
    .unwrap();
    let issuer = Issuer::from_pem_file(dir.path().join("private.pem")).unwrap();
    let token = issuer
        .issue("s", &[Scope::Query], None, HOUR, Some("k1".into()))
        .unwrap();
    Verifier::from_pem_file(dir.path().join("public.pem"))
        .unwrap()
        .verify(&token)
        .unwrap();
    Verifier::from_jwks_file(dir.path().join("jwks.json"))
        .unwrap()
        .verify(&token)
        .unwrap();
    let missing = Verifier::from_pem_file(dir.path().join("nope.pem")).unwrap_err();
    assert!(missing.to_string().contains("nope.pem"), "{missing}");
}

#[test]
fn unusable_keys_are_refused_at_load_time() {
    let (private, _) = generate_keypair(KeyAlg::Ed25519).unwrap();
    let cases = [
        (private.as_str(), "private key"),
        (P384_PUBLIC, "P-256"),
        (RSA_1024_PUBLIC, "at least 2048"),
        ("not a pem", "PUBLIC KEY"),
        (
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "not an RSA",
        ),
    ];
    for (pem, expected) in cases {
        let err = Verifier::from_pem(pem).unwrap_err();
        assert!(err.to_string().contains(expected), "{expected}: {err}");
    }
    let (_, public) = generate_keypair(KeyAlg::Es256).unwrap();
    let err = Issuer::from_pem(&public).unwrap_err();
    assert!(err.to_string().contains("public key"), "{err}");
    assert!(Issuer::from_pem("garbage").is_err());
}

#[test]
fn issuing_refuses_claims_that_cannot_work() {
    let (issuer, _, _) = ed25519();
    let issue = |sub: &str, scopes: &[Scope], sensors: Option<Vec<String>>, ttl| {
        issuer.issue(sub, scopes, sensors, ttl, None)
    };
    assert!(issue("", &[Scope::Query], None, HOUR).is_err());
    assert!(issue("s", &[], None, HOUR).is_err());
    assert!(issue("s", &[Scope::Query], Some(vec![]), HOUR).is_err());
    assert!(issue("s", &[Scope::Query], Some(vec!["do*r".into()]), HOUR).is_err());
    assert!(issue("s", &[Scope::Query], None, Duration::ZERO).is_err());
    // Repeated scopes are written once.
    let claims = issuer
        .claims("s", &[Scope::Query, Scope::Query, Scope::Admin], None, HOUR)
        .unwrap();
    assert_eq!(claims.scope, "query admin");
}

// ---------------------------------------------------------------- time and audience

#[test]
fn expired_token_is_refused() {
    let (issuer, verifier, _) = ed25519();
    let mut claims = issuer.claims("s", &[Scope::Query], None, HOUR).unwrap();
    claims.iat = now() - 7200;
    claims.exp = now() - 3600;
    assert_invalid(
        verifier.verify(&issuer.sign(&claims, None).unwrap()),
        "expired",
    );
}

#[test]
fn leeway_tolerates_small_clock_skew_only() {
    let (issuer, verifier, _) = ed25519();
    let mut claims = issuer.claims("s", &[Scope::Query], None, HOUR).unwrap();
    claims.exp = now() - 10;
    let token = issuer.sign(&claims, None).unwrap();
    verifier
        .verify(&token)
        .expect("within the default 30 s leeway");
    assert_invalid(
        verifier.with_leeway(Duration::ZERO).verify(&token),
        "expired",
    );
}

#[test]
fn not_yet_valid_token_is_refused() {
    let (issuer, verifier, _) = ed25519();
    let mut claims = issuer.claims("s", &[Scope::Query], None, HOUR).unwrap();
    claims.nbf = Some(now() + 600);
    assert_invalid(
        verifier.verify(&issuer.sign(&claims, None).unwrap()),
        "not valid yet",
    );
}

#[test]
fn wrong_audience_is_refused() {
    let (issuer, verifier, _) = ed25519();
    let token = issuer
        .clone()
        .with_audience("grafana")
        .issue("s", &[Scope::Query], None, HOUR, None)
        .unwrap();
    assert_invalid(verifier.verify(&token), "audience is not labstream");

    let mut claims = issuer.claims("s", &[Scope::Query], None, HOUR).unwrap();
    claims.aud = vec!["grafana".into(), "labstream".into()];
    verifier
        .verify(&issuer.sign(&claims, None).unwrap())
        .expect("labstream among several audiences");
}

#[test]
fn missing_audience_is_refused() {
    let (private, public) = generate_keypair(KeyAlg::Ed25519).unwrap();
    let mut claims = valid_claims_json();
    claims.as_object_mut().unwrap().remove("aud");
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_pem(private.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_invalid(Verifier::from_pem(&public).unwrap().verify(&token), "aud");
}

#[test]
fn wrong_or_missing_issuer_is_refused_when_one_is_configured() {
    let (issuer, verifier, _) = ed25519();
    let verifier = verifier.with_issuer("https://id.lab.example".to_string());
    let good = issuer
        .clone()
        .with_issuer("https://id.lab.example".to_string())
        .issue("s", &[Scope::Query], None, HOUR, None)
        .unwrap();
    verifier.verify(&good).unwrap();
    let other = issuer
        .clone()
        .with_issuer("https://evil.example".to_string())
        .issue("s", &[Scope::Query], None, HOUR, None)
        .unwrap();
    assert_invalid(verifier.verify(&other), "issuer");
    let none = issuer
        .issue("s", &[Scope::Query], None, HOUR, None)
        .unwrap();
    assert_invalid(verifier.verify(&none), "iss");
}

// ---------------------------------------------------------------- forgeries

#[test]
fn token_signed_by_another_key_is_refused() {
    for (name, private, _) in key_pairs() {
        let (_, other_public) = generate_keypair(match name {
            "es256" | "openssl p256" => KeyAlg::Es256,
            _ => KeyAlg::Ed25519,
        })
        .unwrap();
        let token = Issuer::from_pem(&private)
            .unwrap()
            .issue("s", &[Scope::Admin], None, HOUR, None)
            .unwrap();
        let verifier = Verifier::from_pem(&other_public).unwrap();
        let result = verifier.verify(&token);
        if name == "rs256" {
            // An RSA token against an Ed25519 key: refused for its algorithm.
            assert_invalid(result, "algorithm");
        } else {
            assert_invalid(result, "signature");
        }
    }
}

#[test]
fn tampered_claims_are_refused() {
    let (issuer, verifier, _) = ed25519();
    let token = issuer
        .issue("s", &[Scope::Query], None, HOUR, None)
        .unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["scope"] = "admin".into();
    let forged = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    assert_invalid(verifier.verify(&forged), "signature");
}

#[test]
fn alg_none_is_refused() {
    let (_, verifier, _) = ed25519();
    for alg in ["none", "None", "NONE"] {
        let header = serde_json::json!({"alg": alg, "typ": "JWT"});
        let unsigned = format!("{}.{}.", b64(&header), b64(&valid_claims_json()));
        assert_invalid(verifier.verify(&unsigned), "algorithm");
    }
}

#[test]
fn hmac_signed_with_the_public_key_is_refused() {
    // The classic confusion attack: the public key is public, so if a verifier let
    // the token pick HS256 it would check an HMAC keyed with the PEM bytes.
    for (name, _, public) in key_pairs() {
        let verifier = Verifier::from_pem(&public).unwrap();
        for alg in [
            jsonwebtoken::Algorithm::HS256,
            jsonwebtoken::Algorithm::HS384,
            jsonwebtoken::Algorithm::HS512,
        ] {
            let token = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(alg),
                &valid_claims_json(),
                &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
            )
            .unwrap();
            let result = verifier.verify(&token);
            assert!(
                matches!(result, Err(AuthError::Invalid { .. })),
                "{name} {alg:?}: {result:?}"
            );
        }
    }
}

#[test]
fn es256_token_against_an_ed25519_key_is_refused() {
    let (_, ed_verifier, _) = ed25519();
    let (es_private, _) = generate_keypair(KeyAlg::Es256).unwrap();
    let token = Issuer::from_pem(&es_private)
        .unwrap()
        .issue("s", &[Scope::Admin], None, HOUR, None)
        .unwrap();
    assert_invalid(ed_verifier.verify(&token), "algorithm");

    // Same with an honest Ed25519 signature under a header that claims ES256.
    let (issuer, verifier, _) = ed25519();
    let token = issuer
        .issue("s", &[Scope::Admin], None, HOUR, None)
        .unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT"});
    let relabelled = format!("{}.{}.{}", b64(&header), parts[1], parts[2]);
    assert_invalid(verifier.verify(&relabelled), "algorithm");
}

#[test]
fn embedded_jwk_header_is_not_trusted() {
    // An attacker signs with their own key and ships it in the `jwk` header.
    let (_, verifier, _) = ed25519();
    let (attacker_private, attacker_public) = generate_keypair(KeyAlg::Ed25519).unwrap();
    let jwks: serde_json::Value =
        serde_json::from_str(&jwks_from_public_pem(&attacker_public, None).unwrap()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.jwk = Some(serde_json::from_value(jwks["keys"][0].clone()).unwrap());
    let token = jsonwebtoken::encode(
        &header,
        &valid_claims_json(),
        &jsonwebtoken::EncodingKey::from_ed_pem(attacker_private.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_invalid(verifier.verify(&token), "signature");
}

#[test]
fn critical_header_extensions_are_refused() {
    let (issuer, verifier, _) = ed25519();
    let token = issuer
        .issue("s", &[Scope::Admin], None, HOUR, None)
        .unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let header = serde_json::json!({"alg": "EdDSA", "crit": ["b64"], "b64": false});
    let token = format!("{}.{}.{}", b64(&header), parts[1], parts[2]);
    assert_invalid(verifier.verify(&token), "crit");
}

#[test]
fn garbage_is_refused() {
    let (_, verifier, _) = ed25519();
    let long = "a".repeat(20_000);
    let cases = [
        "",
        "garbage",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "...",
        "eyJhbGciOiJFZERTQSJ9..",
        "eyJhbGciOiJFZERTQSJ9.e30.",
        "eyJhbGciOiJFZERTQSJ9.!!!.AAAA",
        "ey.ey.ey",
        long.as_str(),
    ];
    for token in cases {
        let result = verifier.verify(token);
        assert!(
            matches!(result, Err(AuthError::Invalid { .. })),
            "{token:.40}: {result:?}"
        );
    }
}

#[test]
fn incomplete_claims_are_refused() {
    let (private, public) = generate_keypair(KeyAlg::Ed25519).unwrap();
    let verifier = Verifier::from_pem(&public).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ed_pem(private.as_bytes()).unwrap();
    for missing in ["sub", "exp", "iat"] {
        let mut claims = valid_claims_json();
        claims.as_object_mut().unwrap().remove(missing);
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
            &claims,
            &key,
        )
        .unwrap();
        let result = verifier.verify(&token);
        assert!(
            matches!(result, Err(AuthError::Invalid { .. })),
            "without {missing}: {result:?}"
        );
    }
}

// ---------------------------------------------------------------- scopes and sensors

#[test]
fn a_missing_scope_is_forbidden() {
    let (issuer, verifier, _) = ed25519();
    let token = issuer
        .issue("s", &[Scope::SamplesWrite], None, HOUR, None)
        .unwrap();
    let claims = verifier.verify(&token).unwrap();
    claims.require(Scope::SamplesWrite).unwrap();
    let err = claims.require(Scope::Query).unwrap_err();
    assert!(matches!(err, AuthError::Forbidden { .. }), "{err:?}");
    assert_eq!(err.status_code(), 403);
    assert_eq!(err.code(), "forbidden");
    assert!(err.reason().contains("query"), "{err}");
    assert!(!claims.has_scope(Scope::Admin));
}

#[test]
fn admin_implies_every_scope() {
    let (issuer, verifier, _) = ed25519();
    let token = issuer
        .issue("ops", &[Scope::Admin], None, HOUR, None)
        .unwrap();
    let claims = verifier.verify(&token).unwrap();
    for scope in Scope::ALL {
        claims.require(scope).unwrap();
    }
}

#[test]
fn unknown_scopes_are_ignored_not_fatal() {
    let (issuer, verifier, _) = ed25519();
    let mut claims = issuer.claims("s", &[Scope::Query], None, HOUR).unwrap();
    claims.scope = "openid  profile query samples:read".into();
    let claims = verifier
        .verify(&issuer.sign(&claims, None).unwrap())
        .unwrap();
    assert_eq!(claims.scopes().collect::<Vec<_>>(), [Scope::Query]);
    assert!(claims.require(Scope::SamplesWrite).is_err());
}

#[test]
fn sensors_claim_limits_writes() {
    let (issuer, verifier, _) = ed25519();
    let token = issuer
        .issue(
            "gateway",
            &[Scope::SamplesWrite],
            Some(vec!["door-3".into(), "temp-lab2-*".into()]),
            HOUR,
            None,
        )
        .unwrap();
    let claims = verifier.verify(&token).unwrap();
    for allowed in ["door-3", "temp-lab2-", "temp-lab2-7", "temp-lab2-x-y"] {
        claims.require_sensor(allowed).unwrap();
    }
    for denied in ["door-4", "door-30", "door-", "temp-lab3-1", "temp-lab2", ""] {
        let err = claims.require_sensor(denied).unwrap_err();
        assert!(matches!(err, AuthError::Forbidden { .. }), "{denied}");
        assert_eq!(err.status_code(), 403);
    }
}

#[test]
fn no_sensors_claim_allows_every_sensor_and_the_claim_binds_admins() {
    let (issuer, verifier, _) = ed25519();
    let open = issuer
        .issue("s", &[Scope::SamplesWrite], None, HOUR, None)
        .unwrap();
    assert!(verifier.verify(&open).unwrap().may_write_sensor("anything"));
    let admin = issuer
        .issue(
            "s",
            &[Scope::Admin],
            Some(vec!["door-*".into()]),
            HOUR,
            None,
        )
        .unwrap();
    let claims = verifier.verify(&admin).unwrap();
    assert!(claims.may_write_sensor("door-1"));
    assert!(!claims.may_write_sensor("window-1"));
}

// ---------------------------------------------------------------- JWKS

#[test]
fn jwks_selects_the_key_by_kid() {
    let (ed_private, ed_public) = generate_keypair(KeyAlg::Ed25519).unwrap();
    let (es_private, es_public) = generate_keypair(KeyAlg::Es256).unwrap();
    let mut keys = Vec::new();
    for (public, kid) in [
        (ed_public.as_str(), "ed-1"),
        (es_public.as_str(), "es-1"),
        (RSA_PUBLIC, "rsa-1"),
    ] {
        let set: serde_json::Value =
            serde_json::from_str(&jwks_from_public_pem(public, Some(kid)).unwrap()).unwrap();
        keys.push(set["keys"][0].clone());
    }
    let jwks = serde_json::json!({ "keys": keys }).to_string();
    let verifier = Verifier::from_jwks(&jwks).unwrap();
    assert_eq!(verifier.algorithms(), ["ES256", "EdDSA", "RS256"]);

    for (private, kid) in [
        (ed_private.as_str(), "ed-1"),
        (es_private.as_str(), "es-1"),
        (RSA_PRIVATE, "rsa-1"),
    ] {
        let issuer = Issuer::from_pem(private).unwrap();
        let token = issuer
            .issue("s", &[Scope::Query], None, HOUR, Some(kid.into()))
            .unwrap();
        verifier
            .verify(&token)
            .unwrap_or_else(|e| panic!("{kid}: {e}"));
        // Under another key's kid the token is checked with that key and fails.
        let wrong_kid = if kid == "ed-1" { "es-1" } else { "ed-1" };
        let token = issuer
            .issue("s", &[Scope::Query], None, HOUR, Some(wrong_kid.into()))
            .unwrap();
        assert!(verifier.verify(&token).is_err(), "{kid} as {wrong_kid}");
    }

    let issuer = Issuer::from_pem(&ed_private).unwrap();
    let unknown = issuer
        .issue("s", &[Scope::Query], None, HOUR, Some("ed-2".into()))
        .unwrap();
    assert_invalid(verifier.verify(&unknown), "kid");
    let no_kid = issuer
        .issue("s", &[Scope::Query], None, HOUR, None)
        .unwrap();
    assert_invalid(verifier.verify(&no_kid), "kid");
}

#[test]
fn jwks_with_one_key_accepts_a_token_without_kid() {
    let (private, public) = generate_keypair(KeyAlg::Ed25519).unwrap();
    let jwks = jwks_from_public_pem(&public, Some("only")).unwrap();
    let set: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    assert_eq!(set["keys"][0]["kty"], "OKP");
    assert_eq!(set["keys"][0]["crv"], "Ed25519");
    assert_eq!(set["keys"][0]["alg"], "EdDSA");
    assert_eq!(set["keys"][0]["use"], "sig");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(set["keys"][0]["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    let verifier = Verifier::from_jwks(&jwks).unwrap();
    let issuer = Issuer::from_pem(&private).unwrap();
    let token = issuer
        .issue("s", &[Scope::Query], None, HOUR, None)
        .unwrap();
    verifier.verify(&token).unwrap();
    let other_kid = issuer
        .issue("s", &[Scope::Query], None, HOUR, Some("other".into()))
        .unwrap();
    assert_invalid(verifier.verify(&other_kid), "kid");
}

#[test]
fn jwks_refuses_keys_it_cannot_verify_with() {
    let (_, public) = generate_keypair(KeyAlg::Ed25519).unwrap();
    let mut set: serde_json::Value =
        serde_json::from_str(&jwks_from_public_pem(&public, Some("a")).unwrap()).unwrap();
    set["keys"][0]["alg"] = "ES256".into();
    let err = Verifier::from_jwks(&set.to_string()).unwrap_err();
    assert!(err.to_string().contains("alg"), "{err}");

    let duplicate = serde_json::json!({"keys": [
        serde_json::from_str::<serde_json::Value>(&jwks_from_public_pem(&public, Some("a")).unwrap()).unwrap()["keys"][0],
        serde_json::from_str::<serde_json::Value>(&jwks_from_public_pem(RSA_PUBLIC, Some("a")).unwrap()).unwrap()["keys"][0],
    ]});
    let err = Verifier::from_jwks(&duplicate.to_string()).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");

    for bad in ["", "[]", "{}", r#"{"keys": []}"#] {
        assert!(Verifier::from_jwks(bad).is_err(), "{bad}");
    }
}

// ---------------------------------------------------------------- the header

#[test]
fn bearer_token_parsing() {
    assert_eq!(bearer_token(Some("Bearer abc.def.ghi")), Ok("abc.def.ghi"));
    assert_eq!(bearer_token(Some("bearer abc")), Ok("abc"));
    assert_eq!(bearer_token(Some("BEARER   abc  ")), Ok("abc"));
    assert_eq!(bearer_token(Some("  Bearer\tabc")), Ok("abc"));
    // InfluxDB clients and Telegraf send `Token <jwt>`; every HTTP surface takes it.
    assert_eq!(bearer_token(Some("Token abc")), Ok("abc"));
    assert_eq!(bearer_token(Some("token  abc")), Ok("abc"));
    for bad in [
        None,
        Some(""),
        Some("Bearer"),
        Some("Bearer "),
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearerabc"),
        Some("Bearer abc def"),
        Some("abc.def.ghi"),
    ] {
        let err = bearer_token(bad).unwrap_err();
        assert_eq!(err, AuthError::Missing, "{bad:?}");
        assert_eq!(err.status_code(), 401);
        assert_eq!(err.code(), "unauthorized");
    }
    assert!(AuthError::Missing.www_authenticate().is_some());
}
