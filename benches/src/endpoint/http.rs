//! labstream's HTTP ingest as a target: one POST per batch, HTTP/1.1 keep-alive over a
//! connection pool that grows to the number of requests in flight.

use super::Target;
use crate::recorder::Outcome;
use crate::wire::Format;
use labstream_schemas::Sample;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use std::time::Duration;

pub struct HttpTarget {
    client: reqwest::Client,
    url: String,
    format: Format,
    auth: Option<HeaderValue>,
}

impl HttpTarget {
    /// `base`: ingest's base URL (`http://127.0.0.1:8080`).
    pub fn new(base: &str, format: Format, token: Option<&str>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()?;
        let auth = token
            .map(|t| HeaderValue::from_str(&format!("Bearer {}", t.trim())))
            .transpose()?;
        Ok(Self {
            client,
            url: format!("{}{}", base.trim_end_matches('/'), format.path()),
            format,
            auth,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Target for HttpTarget {
    async fn send(&self, samples: Vec<Sample>) -> Outcome {
        let body = self.format.body(&samples);
        let mut request = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, self.format.content_type())
            .body(body);
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read the answer to the end so the connection goes back to the pool.
                match response.bytes().await {
                    Ok(_) => Outcome::Http(status),
                    Err(e) => Outcome::Failed(kind(&e)),
                }
            }
            Err(e) => Outcome::Failed(kind(&e)),
        }
    }
}

fn kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    }
    .to_owned()
}
