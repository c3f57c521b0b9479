//! `/v1/alerts/...`: rules (reads with `alerts:read`, changes with `admin`), and the
//! alert streams (`alerts:read`): SSE at `/v1/alerts/stream`, resumable with
//! `Last-Event-ID`, and WebSocket at `/v1/alerts/ws`, both with the filters `rule`,
//! `severity`, `sensor` (comma-separated alternatives) and `label.<name>=<value>`.

use super::feed::{AlertFeed, FeedItem, Start, Subscription};
use super::rules::{RuleError, RuleStore};
use crate::error::{Error, Result};
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use labstream_schemas::alert_rule::RuleDefinition;
use labstream_schemas::auth::{Scope, Verifier};
use labstream_schemas::{AlertRule, Severity, Timestamp};
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct AlertsState {
    pub rules: RuleStore,
    pub feed: AlertFeed,
    /// `None` only when auth is disabled (loopback only).
    pub auth: Option<Verifier>,
    /// Ends open streams at shutdown, so the server can stop.
    pub shutdown: CancellationToken,
    /// The longest `?since=` a subscriber may ask for (the feed's window).
    pub max_since: Duration,
}

pub fn router(state: AlertsState) -> Router {
    Router::new()
        .route("/v1/alerts/rules", get(list_rules).post(create_rule))
        .route(
            "/v1/alerts/rules/{id}",
            get(get_rule).put(replace_rule).delete(delete_rule),
        )
        .route("/v1/alerts/stream", get(sse_stream))
        .route("/v1/alerts/ws", get(ws_stream))
        .with_state(Arc::new(state))
}

/// A body that is not an alert rule: well-formed JSON that is not a rule (a missing
/// field, an unknown kind) is an invalid rule (422), anything else a bad request.
fn bad_rule(e: JsonRejection) -> Error {
    match e {
        JsonRejection::JsonDataError(e) => Error::from(RuleError::BadRequest(format!(
            "the body is not a valid alert rule: {}",
            e.body_text()
        ))),
        e => Error::BadRequest(e.body_text()),
    }
}

fn authorize(state: &AlertsState, headers: &HeaderMap, scope: Scope) -> Result<()> {
    crate::http::authorize(state.auth.as_ref(), headers, &[scope])?;
    Ok(())
}

fn if_match(headers: &HeaderMap) -> Result<Option<i64>> {
    crate::http::if_match(headers).map_err(|e| match e {
        crate::http::BadIfMatch::NotText => Error::BadRequest("If-Match is not text".into()),
        crate::http::BadIfMatch::Unknown(text) => Error::BadRequest(format!(
            "If-Match {text:?} is not a revision this API gave out (an ETag like \"3\")"
        )),
    })
}

// ----------------------------------------------------------------------------- rules

/// A rule as the API shows it: the definition plus what the server keeps.
#[derive(Serialize)]
struct RuleView {
    #[serde(flatten)]
    definition: RuleDefinition,
    revision: i64,
    updated_at: Timestamp,
}

fn view(rule: &AlertRule) -> RuleView {
    RuleView {
        definition: RuleDefinition::from_wire(rule),
        revision: rule.revision,
        updated_at: rule.updated_at,
    }
}

fn rule_response(status: StatusCode, rule: &AlertRule) -> Response {
    crate::http::with_etag(status, rule.revision, view(rule))
}

async fn list_rules(State(state): State<Arc<AlertsState>>, headers: HeaderMap) -> Result<Response> {
    authorize(&state, &headers, Scope::AlertsRead)?;
    let rules: Vec<RuleView> = state.rules.list().iter().map(view).collect();
    Ok(Json(rules).into_response())
}

async fn get_rule(
    State(state): State<Arc<AlertsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    authorize(&state, &headers, Scope::AlertsRead)?;
    match state.rules.get(&id) {
        Some(rule) => Ok(rule_response(StatusCode::OK, &rule)),
        None => Err(RuleError::NotFound(format!("alert rule {id:?} does not exist")).into()),
    }
}

async fn create_rule(
    State(state): State<Arc<AlertsState>>,
    headers: HeaderMap,
    body: std::result::Result<Json<RuleDefinition>, JsonRejection>,
) -> Result<Response> {
    authorize(&state, &headers, Scope::Admin)?;
    let Json(definition) = body.map_err(bad_rule)?;
    let rule = state.rules.create(definition).await?;
    let mut response = rule_response(StatusCode::CREATED, &rule);
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/alerts/rules/{}", rule.rule_id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn replace_rule(
    State(state): State<Arc<AlertsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Json<RuleDefinition>, JsonRejection>,
) -> Result<Response> {
    authorize(&state, &headers, Scope::Admin)?;
    let expected = if_match(&headers)?;
    let Json(mut definition) = body.map_err(bad_rule)?;
    if definition.rule_id.is_empty() {
        definition.rule_id = id.clone();
    } else if definition.rule_id != id {
        return Err(RuleError::BadRequest(format!(
            "the body names rule {:?} but the path {id:?}; leave rule_id out or make them equal",
            definition.rule_id
        ))
        .into());
    }
    let (rule, created) = state.rules.replace(definition, expected).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(rule_response(status, &rule))
}

async fn delete_rule(
    State(state): State<Arc<AlertsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    authorize(&state, &headers, Scope::Admin)?;
    let expected = if_match(&headers)?;
    state.rules.delete(&id, expected).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// --------------------------------------------------------------------------- streams

/// Which alerts a subscriber wants; every filter given must match.
#[derive(Clone, Debug, Default, PartialEq)]
struct Filter {
    rules: Vec<String>,
    severities: Vec<Severity>,
    sensors: Vec<String>,
    labels: Vec<(String, String)>,
    since: Option<Duration>,
    /// Like the `Last-Event-ID` header, for WebSocket clients that cannot set headers.
    last_event_id: Option<String>,
}

impl Filter {
    fn parse(params: &[(String, String)], max_since: Duration) -> Result<Self> {
        let mut f = Filter::default();
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        for (key, value) in params {
            match key.as_str() {
                "rule" => f.rules.extend(list(value)),
                "sensor" => f.sensors.extend(list(value)),
                "severity" => {
                    for s in list(value) {
                        f.severities.push(Severity::parse(&s).ok_or_else(|| {
                            Error::BadRequest(format!(
                                "severity {s:?} is not info, warning or critical"
                            ))
                        })?);
                    }
                }
                "since" => {
                    let d = humantime::parse_duration(value).map_err(|e| {
                        Error::BadRequest(format!(
                            "since {value:?} is not a duration like 10m: {e}"
                        ))
                    })?;
                    if d > max_since {
                        return Err(Error::BadRequest(format!(
                            "since {value} is longer than the {} the stream keeps (alerts.stream_window)",
                            humantime::format_duration(max_since)
                        )));
                    }
                    f.since = Some(d);
                }
                "last_event_id" => f.last_event_id = Some(value.clone()),
                k => match k.strip_prefix("label.") {
                    Some(name) if !name.is_empty() => {
                        f.labels.push((name.to_owned(), value.clone()))
                    }
                    _ => {
                        return Err(Error::BadRequest(format!(
                            "unknown parameter {k:?}: use rule, severity, sensor, label.<name>, since or last_event_id"
                        )));
                    }
                },
            }
        }
        Ok(f)
    }

    fn matches(&self, item: &FeedItem) -> bool {
        let e = &item.event;
        (self.rules.is_empty() || self.rules.iter().any(|r| r == e.rule_id.as_str()))
            && (self.severities.is_empty() || self.severities.contains(&e.severity))
            && (self.sensors.is_empty() || self.sensors.iter().any(|s| s == e.sensor_id.as_str()))
            && self
                .labels
                .iter()
                .all(|(k, v)| e.labels.get(k).is_some_and(|l| l == v))
    }
}

fn start_of(headers: &HeaderMap, filter: &Filter) -> Start {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .or(filter.last_event_id.as_deref())
        .filter(|v| !v.is_empty());
    match (last, filter.since) {
        (Some(id), _) => Start::After(id.to_owned()),
        (None, Some(d)) => Start::Since(d),
        (None, None) => Start::Now,
    }
}

/// The matching alerts of `sub`: its backlog, then live ones. Ends when the
/// subscriber fell too far behind (it resumes with its last event id) or at shutdown.
fn alerts(
    sub: Subscription,
    filter: Filter,
    shutdown: CancellationToken,
) -> impl futures::Stream<Item = Arc<FeedItem>> + Send {
    let Subscription { backlog, live, .. } = sub;
    let backlog = futures::stream::iter(backlog);
    let live = futures::stream::unfold(live, |mut rx| async move {
        match rx.recv().await {
            Ok(item) => Some((item, rx)),
            Err(RecvError::Lagged(n)) => {
                tracing::info!(
                    missed = n,
                    "alert stream subscriber fell behind; closing it so it resumes"
                );
                None
            }
            Err(RecvError::Closed) => None,
        }
    });
    backlog
        .chain(live)
        .filter(move |item| futures::future::ready(filter.matches(item)))
        .take_until(shutdown.cancelled_owned())
}

async fn sse_stream(
    State(state): State<Arc<AlertsState>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response> {
    authorize(&state, &headers, Scope::AlertsRead)?;
    let filter = Filter::parse(&params, state.max_since)?;
    let sub = state.feed.subscribe(&start_of(&headers, &filter));
    let notice = sub.resumed_from_unknown.then(|| {
        Ok::<_, Infallible>(Event::default().comment(
            "Last-Event-ID is older than what this server keeps: sending all it has; some alerts may be missing",
        ))
    });
    let events = alerts(sub, filter, state.shutdown.clone()).map(|item| {
        Ok::<_, Infallible>(
            Event::default()
                .id(item.event.event_id.clone())
                .event(item.event.status.as_str())
                .data(item.json.clone()),
        )
    });
    let stream = futures::stream::iter(notice).chain(events);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

async fn ws_stream(
    State(state): State<Arc<AlertsState>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
    upgrade: WebSocketUpgrade,
) -> Result<Response> {
    authorize(&state, &headers, Scope::AlertsRead)?;
    let filter = Filter::parse(&params, state.max_since)?;
    // Browsers cannot set headers on a WebSocket: `?last_event_id=` does what the header does.
    let sub = state.feed.subscribe(&start_of(&headers, &filter));
    let shutdown = state.shutdown.clone();
    Ok(upgrade.on_upgrade(move |socket| send_alerts(socket, sub, filter, shutdown)))
}

async fn send_alerts(
    mut socket: WebSocket,
    sub: Subscription,
    filter: Filter,
    shutdown: CancellationToken,
) {
    let mut alerts = Box::pin(alerts(sub, filter, shutdown));
    loop {
        tokio::select! {
            item = alerts.next() => {
                let Some(item) = item else { break };
                if socket.send(Message::Text(item.json.clone().into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                // Pings are answered by axum; text from the client is ignored.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
