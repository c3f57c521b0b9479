//! JWT auth of the real server: every attack on a token fails with 401/403 and writes
//! nothing; a device token writes only its own sensors; Telegraf's `Token` scheme works.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use labstream_schemas::auth::{Issuer, KeyAlg, Scope, generate_keypair};
use std::time::Duration;
use support::TestStack;

fn sample(sensor_id: &str) -> String {
    serde_json::json!({
        "sensor_id": sensor_id,
        "sensor_type": "door",
        "ts": chrono::Utc::now().to_rfc3339(),
        "values": {"open": true},
    })
    .to_string()
}

async fn post(
    stack: &TestStack,
    path: &str,
    auth: Option<String>,
    body: String,
) -> (u16, serde_json::Value, Option<String>) {
    let mut r = reqwest::Client::new()
        .post(format!("{}{path}", stack.url))
        .header("content-type", "application/json");
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    let resp = r.body(body).send().await.unwrap();
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (status, json, challenge)
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

fn hour() -> Duration {
    Duration::from_secs(3600)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_attacks_fail_and_write_nothing() {
    let stack = TestStack::start().await;
    let now = chrono::Utc::now().timestamp() as u64;

    // Expired (well beyond the 30 s leeway).
    let mut claims = stack
        .issuer
        .claims("gw", &[Scope::SamplesWrite], None, hour())
        .unwrap();
    claims.iat = now - 7200;
    claims.exp = now - 600;
    let expired = stack.issuer.sign(&claims, None).unwrap();

    let (private_pem, _) = generate_keypair(KeyAlg::Ed25519).unwrap();
    let other_key = Issuer::from_pem(&private_pem)
        .unwrap()
        .issue("gw", &[Scope::SamplesWrite], None, hour(), None)
        .unwrap();

    // The server's own key, but another audience.
    let mut claims = stack
        .issuer
        .claims("gw", &[Scope::SamplesWrite], None, hour())
        .unwrap();
    claims.aud = vec!["grafana".into()];
    let other_audience = stack.issuer.sign(&claims, None).unwrap();

    // alg: none, with valid claims.
    let claims_json = serde_json::to_vec(
        &stack
            .issuer
            .claims("gw", &[Scope::SamplesWrite], None, hour())
            .unwrap(),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        B64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        B64.encode(&claims_json)
    );

    // HS256 signed with the server's public key as the HMAC secret.
    let public_pem = std::fs::read(stack.dir().join("public.pem")).unwrap();
    let hmac = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &stack
            .issuer
            .claims("gw", &[Scope::SamplesWrite], None, hour())
            .unwrap(),
        &jsonwebtoken::EncodingKey::from_secret(&public_pem),
    )
    .unwrap();

    let cases = [
        ("no token", None, 401, "unauthorized"),
        (
            "not a bearer token",
            Some("Basic dXNlcjpwYXNz".to_owned()),
            401,
            "unauthorized",
        ),
        ("garbage", bearer("not.a.jwt"), 401, "unauthorized"),
        ("expired", bearer(&expired), 401, "unauthorized"),
        ("another key", bearer(&other_key), 401, "unauthorized"),
        (
            "another audience",
            bearer(&other_audience),
            401,
            "unauthorized",
        ),
        ("alg none", bearer(&none), 401, "unauthorized"),
        (
            "HS256 with the public key",
            bearer(&hmac),
            401,
            "unauthorized",
        ),
    ];
    for (name, auth, status, code) in cases {
        let (got, body, challenge) = post(&stack, "/v1/samples", auth, sample("door-1")).await;
        assert_eq!(got, status, "{name}: {body}");
        assert_eq!(body["error"], code, "{name}: {body}");
        assert!(challenge.is_some(), "{name}: a 401 names the Bearer scheme");
        assert!(!body["message"].as_str().unwrap().is_empty(), "{name}");
    }
    let (got, body, _) = post(&stack, "/v1/samples", bearer(&expired), sample("door-1")).await;
    assert_eq!(got, 401);
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    // A valid token without the scope is 403.
    let query_only = stack
        .issuer
        .issue("analyst", &[Scope::Query], None, hour(), None)
        .unwrap();
    let (got, body, _) = post(&stack, "/v1/samples", bearer(&query_only), sample("door-1")).await;
    assert_eq!(
        (got, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let writer = stack
        .issuer
        .issue("gw", &[Scope::SamplesWrite], None, hour(), None)
        .unwrap();
    let sql = serde_json::json!({"sql": "SELECT 1"}).to_string();
    let (got, _, _) = post(&stack, "/v1/query", bearer(&writer), sql.clone()).await;
    assert_eq!(got, 403);
    let (got, _, _) = post(&stack, "/v1/query", None, sql.clone()).await;
    assert_eq!(got, 401);
    let (got, _, _) = post(&stack, "/v1/query", bearer(&query_only), sql).await;
    assert_eq!(got, 200);

    assert_eq!(
        stack.topic_records(&stack.topic("samples.raw")),
        0,
        "a refused request wrote something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_token_writes_only_its_own_sensors() {
    let stack = TestStack::start().await;
    let device = stack
        .issuer
        .issue(
            "door-gateway",
            &[Scope::SamplesWrite],
            Some(vec!["door-*".into(), "hall-1".into()]),
            hour(),
            None,
        )
        .unwrap();
    let (got, body, _) = post(&stack, "/v1/samples", bearer(&device), sample("fridge-1")).await;
    assert_eq!(
        (got, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("fridge-1"),
        "{body}"
    );
    // One foreign sensor in a batch refuses the whole batch.
    let batch = format!("[{},{}]", sample("door-2"), sample("fridge-1"));
    let (got, _, _) = post(&stack, "/v1/samples", bearer(&device), batch).await;
    assert_eq!(got, 403);
    assert_eq!(stack.topic_records(&stack.topic("samples.raw")), 0);

    let batch = format!("[{},{}]", sample("door-2"), sample("hall-1"));
    let (got, body, _) = post(&stack, "/v1/samples", bearer(&device), batch).await;
    assert_eq!(got, 202, "{body}");

    // Telegraf and Influx clients send `Authorization: Token <token>`.
    let lp = format!(
        "door,sensor_id=door-7 open=false {}\n",
        chrono::Utc::now().timestamp_nanos_opt().unwrap()
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v2/write?org=lab&bucket=b", stack.url))
        .header("authorization", format!("Token {device}"))
        .body(lp)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        204,
        "{}",
        resp.text().await.unwrap()
    );
    assert_eq!(stack.topic_records(&stack.topic("samples.raw")), 3);
}
