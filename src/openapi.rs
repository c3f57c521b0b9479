//! `GET /openapi.json`: an OpenAPI 3.1 document of every HTTP route this process
//! serves, built from one table (`ROUTES`). A unit test checks the table against every
//! `.route(...)` registered in the source, and `tests/openapi.rs` probes each documented
//! path and method on a running server: to add a route, add one `RouteDoc` here.

use crate::roles::{Role, Roles};
use serde_json::{Map, Value, json};

/// Which role's router serves a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// Every HTTP process (`serve`, `ingest`, `api`).
    Always,
    Ingest,
    Api,
}

/// One method on one path. `path` uses the router's syntax (`{id}`), which is OpenAPI's.
#[derive(Debug)]
pub(crate) struct RouteDoc {
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    pub(crate) served: Served,
    pub(crate) tag: &'static str,
    pub(crate) summary: &'static str,
    /// Token scopes of which one is required; empty: no token needed.
    pub(crate) scopes: &'static [&'static str],
    /// `(name, description)` of query parameters.
    pub(crate) query: &'static [(&'static str, &'static str)],
    /// Accepted request body media types; empty: no body.
    pub(crate) body: &'static [&'static str],
    /// `(status, description)`; errors carry the JSON `Error` body.
    pub(crate) responses: &'static [(u16, &'static str)],
}

const AUTH_ERRORS: &[(u16, &str)] = &[
    (401, "missing or invalid token"),
    (403, "the token lacks the scope"),
];
const EXP_READ: &[&str] = &["experiments:write", "query", "admin"];
const EXP_WRITE: &[&str] = &["experiments:write", "admin"];
const JSON: &[&str] = &["application/json"];
const PRECISION: (&str, &str) = ("precision", "unit of integer timestamps: s, ms, us or ns");
const PARTIAL: (&str, &str) = (
    "partial",
    "true: store the valid samples and list the rejected ones",
);

const ALERT_FILTER: &[(&str, &str)] = &[
    ("rule", "rule ids, comma separated"),
    ("severity", "info, warning, critical (comma separated)"),
    ("sensor", "sensor ids, comma separated"),
    ("label.<name>", "only alerts with this label value"),
    (
        "since",
        "replay events from this long ago (within alerts.stream_window)",
    ),
    (
        "last_event_id",
        "resume after this event (as the Last-Event-ID header)",
    ),
];

macro_rules! route {
    ($method:literal $path:literal, $served:ident, $tag:literal, $summary:literal,
     scopes: $scopes:expr, query: $query:expr, body: $body:expr, responses: $responses:expr) => {
        RouteDoc {
            method: $method,
            path: $path,
            served: Served::$served,
            tag: $tag,
            summary: $summary,
            scopes: $scopes,
            query: $query,
            body: $body,
            responses: $responses,
        }
    };
}

/// Every route the binary serves.
pub(crate) const ROUTES: &[RouteDoc] = &[
    route!("get" "/healthz", Always, "ops", "Liveness: 200 while the process serves",
        scopes: &[], query: &[], body: &[], responses: &[(200, "serving")]),
    route!("get" "/readyz", Always, "ops", "Readiness: Kafka and (when this process runs the MongoDB sink) MongoDB reachable",
        scopes: &[], query: &[], body: &[], responses: &[(200, "ready"), (503, "a dependency is unreachable; the body names it")]),
    route!("get" "/metrics", Always, "ops", "Prometheus metrics (OpenMetrics text)",
        scopes: &[], query: &[], body: &[], responses: &[(200, "metrics")]),
    route!("get" "/openapi.json", Always, "ops", "This document",
        scopes: &[], query: &[], body: &[], responses: &[(200, "OpenAPI 3.1 document")]),
    route!("post" "/v1/samples", Ingest, "ingest", "Samples: one JSON object, an array, or NDJSON (gzip accepted)",
        scopes: &["samples:write", "admin"], query: &[PRECISION, PARTIAL],
        body: &["application/json", "application/x-ndjson"],
        responses: &[(202, "stored: {\"accepted\": n} (and \"rejected\" with ?partial=true)"), (400, "malformed body"),
            (413, "body or sample count over the limit"), (415, "content type or encoding"),
            (422, "invalid samples; nothing stored"), (429, "in-flight budget exhausted; Retry-After"),
            (503, "Kafka did not acknowledge; Retry-After")]),
    route!("post" "/api/v2/write", Ingest, "ingest", "InfluxDB v2 line protocol (Telegraf, Influx clients)",
        scopes: &["samples:write", "admin"],
        query: &[("precision", "s, ms, us or ns (default ns)"), PARTIAL, ("org", "accepted, ignored"), ("bucket", "accepted, ignored")],
        body: &["text/plain"],
        responses: &[(204, "stored"), (202, "partly stored (?partial=true)"), (400, "invalid lines; nothing stored"),
            (413, "body or line count over the limit"), (429, "in-flight budget exhausted; Retry-After"),
            (503, "Kafka did not acknowledge; Retry-After")]),
    route!("post" "/v1/query", Api, "query", "Read-only SQL over the lake, streamed",
        scopes: &["query", "admin"], query: &[("format", "json, ndjson, csv, arrow or parquet")], body: JSON,
        responses: &[(200, "the rows"), (400, "bad SQL, refused statement or memory limit"), (406, "no acceptable format"),
            (429, "too many concurrent queries; Retry-After"), (504, "query timeout")]),
    route!("get" "/v1/experiments/{id}/export", Api, "query", "An experiment (optionally a participant and/or a day) as a streamed archive",
        scopes: &["query", "admin"], query: &[("participant", "only this participant"), ("day", "only this day (YYYY-MM-DD)")], body: &[],
        responses: &[(200, "the archive"), (404, "no such experiment")]),
    route!("get" "/v1/sensor-configs", Api, "experiments", "List sensor configurations",
        scopes: EXP_READ, query: &[], body: &[], responses: &[(200, "the configurations")]),
    route!("post" "/v1/sensor-configs", Api, "experiments", "Define a sensor configuration",
        scopes: EXP_WRITE, query: &[], body: JSON, responses: &[(201, "defined"), (409, "exists"), (422, "invalid")]),
    route!("get" "/v1/sensor-configs/{id}", Api, "experiments", "Read a sensor configuration (ETag)",
        scopes: EXP_READ, query: &[], body: &[], responses: &[(200, "the configuration"), (404, "not found")]),
    route!("put" "/v1/sensor-configs/{id}", Api, "experiments", "Replace a sensor configuration (If-Match required)",
        scopes: EXP_WRITE, query: &[], body: JSON,
        responses: &[(200, "replaced"), (404, "not found"), (412, "stale If-Match"), (422, "invalid"), (428, "If-Match missing")]),
    route!("get" "/v1/experiments", Api, "experiments", "List experiments",
        scopes: EXP_READ, query: &[("status", "e.g. active")], body: &[], responses: &[(200, "the experiments")]),
    route!("post" "/v1/experiments", Api, "experiments", "Create an experiment (draft)",
        scopes: EXP_WRITE, query: &[], body: JSON, responses: &[(201, "created"), (409, "exists"), (422, "invalid")]),
    route!("get" "/v1/experiments/{id}", Api, "experiments", "Read an experiment (ETag)",
        scopes: EXP_READ, query: &[], body: &[], responses: &[(200, "the experiment"), (404, "not found")]),
    route!("put" "/v1/experiments/{id}", Api, "experiments", "Replace an experiment's definition (If-Match required)",
        scopes: EXP_WRITE, query: &[], body: JSON,
        responses: &[(200, "replaced"), (404, "not found"), (409, "not allowed now"), (412, "stale If-Match"), (428, "If-Match missing")]),
    route!("post" "/v1/experiments/{id}/activate", Api, "experiments", "Activate (one active experiment at a time)",
        scopes: EXP_WRITE, query: &[], body: &[], responses: &[(200, "active"), (404, "not found"), (409, "not allowed now")]),
    route!("post" "/v1/experiments/{id}/deactivate", Api, "experiments", "Deactivate (no running recording)",
        scopes: EXP_WRITE, query: &[], body: &[], responses: &[(200, "inactive"), (404, "not found"), (409, "not allowed now")]),
    route!("post" "/v1/experiments/{id}/archive", Api, "experiments", "Archive (final)",
        scopes: EXP_WRITE, query: &[], body: &[], responses: &[(200, "archived"), (404, "not found"), (409, "not allowed now")]),
    route!("get" "/v1/experiments/{id}/recordings", Api, "experiments", "List recordings",
        scopes: EXP_READ, query: &[], body: &[], responses: &[(200, "the recordings"), (404, "not found")]),
    route!("post" "/v1/experiments/{id}/recordings", Api, "experiments", "Start a recording for a participant and task",
        scopes: EXP_WRITE, query: &[], body: JSON, responses: &[(201, "started"), (404, "not found"), (409, "not allowed now"), (422, "invalid")]),
    route!("post" "/v1/experiments/{id}/recordings/{rid}/stop", Api, "experiments", "Stop a recording",
        scopes: EXP_WRITE, query: &[], body: &[], responses: &[(200, "stopped"), (404, "not found"), (409, "not allowed now")]),
    route!("get" "/v1/experiments/{id}/logbook", Api, "experiments", "Read the logbook",
        scopes: EXP_READ, query: &[], body: &[], responses: &[(200, "the entries"), (404, "not found")]),
    route!("post" "/v1/experiments/{id}/logbook", Api, "experiments", "Add a logbook entry (author = token subject)",
        scopes: EXP_WRITE, query: &[], body: JSON, responses: &[(201, "added"), (404, "not found"), (422, "invalid")]),
    route!("get" "/v1/experiments/{id}/progress", Api, "experiments", "Each participant's progress",
        scopes: EXP_READ, query: &[], body: &[], responses: &[(200, "the progress"), (404, "not found")]),
    route!("put" "/v1/experiments/{id}/progress/{participant}/{task}", Api, "experiments", "Record a participant's progress on a task",
        scopes: EXP_WRITE, query: &[], body: JSON, responses: &[(200, "recorded"), (404, "not found"), (409, "not allowed now"), (422, "invalid")]),
    route!("get" "/v1/experiments/{id}/events", Api, "experiments", "The experiment's event history",
        scopes: EXP_READ, query: &[], body: &[], responses: &[(200, "the events"), (404, "not found")]),
    route!("get" "/v1/alerts/rules", Api, "alerts", "List alert rules",
        scopes: &["alerts:read", "admin"], query: &[], body: &[], responses: &[(200, "the rules")]),
    route!("post" "/v1/alerts/rules", Api, "alerts", "Create an alert rule",
        scopes: &["admin"], query: &[], body: JSON, responses: &[(201, "created"), (409, "exists"), (422, "invalid")]),
    route!("get" "/v1/alerts/rules/{id}", Api, "alerts", "Read an alert rule",
        scopes: &["alerts:read", "admin"], query: &[], body: &[], responses: &[(200, "the rule"), (404, "not found")]),
    route!("put" "/v1/alerts/rules/{id}", Api, "alerts", "Create or replace an alert rule",
        scopes: &["admin"], query: &[], body: JSON, responses: &[(200, "replaced"), (201, "created"), (412, "stale If-Match"), (422, "invalid")]),
    route!("delete" "/v1/alerts/rules/{id}", Api, "alerts", "Delete an alert rule (resolves its firing alerts)",
        scopes: &["admin"], query: &[], body: &[], responses: &[(204, "deleted"), (404, "not found")]),
    route!("get" "/v1/alerts/stream", Api, "alerts", "Alert events as Server-Sent Events",
        scopes: &["alerts:read", "admin"], query: ALERT_FILTER, body: &[],
        responses: &[(200, "text/event-stream")]),
    route!("get" "/v1/alerts/ws", Api, "alerts", "Alert events over a WebSocket",
        scopes: &["alerts:read", "admin"], query: ALERT_FILTER, body: &[],
        responses: &[(101, "switching to WebSocket")]),
];

/// The routes `roles` serve over HTTP.
pub(crate) fn served(roles: Roles) -> impl Iterator<Item = &'static RouteDoc> {
    ROUTES.iter().filter(move |r| match r.served {
        Served::Always => roles.serve_http(),
        Served::Ingest => roles.contains(Role::Ingest),
        Served::Api => roles.contains(Role::Api),
    })
}

/// The OpenAPI 3.1 document of what `roles` serve.
pub(crate) fn document(roles: Roles) -> Value {
    let mut paths = Map::new();
    for r in served(roles) {
        let item = paths
            .entry(r.path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path items are objects");
        item.insert(r.method.to_owned(), operation(r));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "labstream",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Event-sourced sensor pipeline: HTTP ingest -> Kafka -> MongoDB and a Parquet lake queried with SQL.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "aud = labstream; the scope claim must hold one of the operation's scopes (admin grants all). Line protocol also accepts `Authorization: Token <jwt>`.",
                }
            },
            "schemas": {
                "Sample": {
                    "type": "object",
                    "required": ["sensor_id", "sensor_type", "ts", "values"],
                    "additionalProperties": false,
                    "properties": {
                        "sensor_id": {"type": "string", "maxLength": 256},
                        "sensor_type": {"type": "string", "description": "a type of the sensor-type registry"},
                        "ts": {
                            "oneOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}],
                            "description": "RFC 3339, or an integer in ?precision= units (default ms)",
                        },
                        "seq": {"type": "integer"},
                        "values": {
                            "type": "object",
                            "minProperties": 1,
                            "additionalProperties": {"type": ["number", "integer", "boolean", "string"]},
                            "description": "fields of the sensor type, typed by the registry",
                        },
                        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                    "example": {"sensor_id": "door-3", "sensor_type": "door", "ts": "2026-11-23T10:00:00.123Z",
                        "seq": 7, "values": {"open": true}, "tags": {"room": "lab-2"}},
                },
                "Query": {
                    "type": "object",
                    "required": ["sql"],
                    "properties": {"sql": {"type": "string", "description": "one read-only statement"}},
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string", "description": "stable code"},
                        "code": {"type": "string"},
                        "message": {"type": "string", "description": "what happened and what to do"},
                        "rejected": {"type": "array", "items": {"type": "object"}},
                    },
                }
            }
        }
    })
}

fn operation(r: &RouteDoc) -> Value {
    let mut op = Map::new();
    op.insert(
        "operationId".into(),
        json!(format!(
            "{}{}",
            r.method,
            r.path.replace(['/', '.', '-'], "_").replace(['{', '}'], "")
        )),
    );
    op.insert("summary".into(), json!(r.summary));
    op.insert("tags".into(), json!([r.tag]));
    let mut parameters: Vec<Value> = r
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    parameters.extend(r.query.iter().map(|(name, description)| {
        json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}})
    }));
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    if r.scopes.is_empty() {
        op.insert("security".into(), json!([]));
    } else {
        op.insert("security".into(), json!([{ "bearer": [] }]));
        op.insert("x-labstream-scopes".into(), json!(r.scopes));
    }
    if !r.body.is_empty() {
        let content: Map<String, Value> = r
            .body
            .iter()
            .map(|t| ((*t).to_owned(), json!({ "schema": body_schema(r, t) })))
            .collect();
        op.insert(
            "requestBody".into(),
            json!({"required": true, "content": content}),
        );
    }
    let auth: &[(u16, &str)] = if r.scopes.is_empty() {
        &[]
    } else {
        AUTH_ERRORS
    };
    let mut responses = Map::new();
    for (status, description) in r.responses.iter().chain(auth) {
        let mut resp = json!({ "description": description });
        if *status >= 400 {
            resp["content"] =
                json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
        }
        responses.insert(status.to_string(), resp);
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// The schema of a request body, where the document has one.
fn body_schema(r: &RouteDoc, media_type: &str) -> Value {
    match (r.path, media_type) {
        ("/v1/samples", "application/json") => json!({"oneOf": [
            {"$ref": "#/components/schemas/Sample"},
            {"type": "array", "items": {"$ref": "#/components/schemas/Sample"}},
        ]}),
        ("/v1/samples", _) => json!({
            "type": "string",
            "description": "one Sample object per line",
        }),
        ("/api/v2/write", _) => json!({
            "type": "string",
            "description": "InfluxDB line protocol: measurement = sensor type, the sensor id tag, fields, timestamp",
        }),
        ("/v1/query", _) => json!({"$ref": "#/components/schemas/Query"}),
        _ => json!({"type": "object"}),
    }
}

pub(crate) async fn handler(roles: Roles) -> axum::Json<Value> {
    axum::Json(document(roles))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    /// Every `(method, path)` registered with `.route("...", ...)` in the workspace's
    /// source: what the routers serve, read where they are built.
    fn registered_routes() -> BTreeSet<(String, String)> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in [
            "src",
            "ingest/src",
            "api/src",
            "processors/src",
            "sinks/src",
        ] {
            walk(&root.join(dir), &mut files);
        }
        let mut out = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let mut rest = text.as_str();
            while let Some(i) = rest.find(".route(") {
                rest = &rest[i + ".route(".len()..];
                let Some(path) = rest
                    .trim_start()
                    .strip_prefix('"')
                    .and_then(|s| s.split_once('"'))
                    .map(|(p, _)| p)
                else {
                    continue;
                };
                if !path.starts_with('/') {
                    continue; // not a route registration (e.g. this scanner's own text)
                }
                // The method routers: up to the parenthesis closing `.route(`.
                let mut depth = 1;
                let end = rest
                    .char_indices()
                    .find(|(_, c)| {
                        match c {
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            _ => {}
                        }
                        depth == 0
                    })
                    .map_or(rest.len(), |(i, _)| i);
                let args = &rest[..end];
                for method in ["get", "post", "put", "delete", "patch"] {
                    let found = args.match_indices(&format!("{method}(")).any(|(i, _)| {
                        i == 0
                            || !args.as_bytes()[i - 1].is_ascii_alphanumeric()
                                && args.as_bytes()[i - 1] != b'_'
                    });
                    if found {
                        out.insert((method.to_owned(), path.to_owned()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_document_lists_exactly_the_registered_routes() {
        let registered = registered_routes();
        assert!(registered.contains(&("post".into(), "/v1/samples".into())));
        let documented: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.path.to_owned()))
            .collect();
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let missing: Vec<_> = documented.difference(&registered).collect();
        assert!(
            undocumented.is_empty(),
            "routes served but not in src/openapi.rs ROUTES: {undocumented:?}"
        );
        assert!(
            missing.is_empty(),
            "routes in src/openapi.rs ROUTES that no router registers: {missing:?}"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_and_follows_the_roles() {
        let all = document(Roles::of([Role::Ingest, Role::Api]));
        assert_eq!(all["openapi"], "3.1.0");
        let paths = all["paths"].as_object().unwrap();
        assert_eq!(
            paths
                .values()
                .map(|p| p.as_object().unwrap().len())
                .sum::<usize>(),
            ROUTES.len()
        );
        let op = &paths["/v1/experiments/{id}/recordings/{rid}/stop"]["post"];
        let params: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(params, ["id", "rid"]);
        assert_eq!(
            op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error"
        );
        let ingest_only = document(Roles::of([Role::Ingest]));
        let paths = ingest_only["paths"].as_object().unwrap();
        assert!(paths.contains_key("/v1/samples") && paths.contains_key("/readyz"));
        assert!(!paths.contains_key("/v1/query"));
    }
}
