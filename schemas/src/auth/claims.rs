//! The claims of a labstream token and the checks handlers make on them: which scopes
//! it grants (`admin` implies all) and which sensor ids it may write.

use super::error::{AuthError, KeyError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// One permission a token can carry in its space-separated `scope` claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// Send samples to ingest.
    #[serde(rename = "samples:write")]
    SamplesWrite,
    /// Run SQL over the lake.
    #[serde(rename = "query")]
    Query,
    /// Define experiments, start and stop recordings.
    #[serde(rename = "experiments:write")]
    ExperimentsWrite,
    /// Read alert rules and subscribe to alert streams.
    #[serde(rename = "alerts:read")]
    AlertsRead,
    /// Everything above, and ops endpoints.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::SamplesWrite,
        Scope::Query,
        Scope::ExperimentsWrite,
        Scope::AlertsRead,
        Scope::Admin,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::SamplesWrite => "samples:write",
            Scope::Query => "query",
            Scope::ExperimentsWrite => "experiments:write",
            Scope::AlertsRead => "alerts:read",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                KeyError::BadClaims(format!(
                    "unknown scope `{s}`; known scopes: {}",
                    known.join(", ")
                ))
            })
    }
}

/// The claims labstream reads from a token. Other claims (`jti`, ...) are ignored, so
/// tokens from an external identity provider work as long as these are present.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token was issued to, e.g. `gateway-lab2`; for logs and audit.
    pub sub: String,
    /// Audiences; labstream requires its own among them. A single audience is
    /// written as a plain string, as most issuers do.
    #[serde(
        deserialize_with = "string_or_array",
        serialize_with = "string_if_single"
    )]
    pub aud: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Not valid before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Space-separated scopes as in OAuth 2 (RFC 6749, section 3.3). Scopes labstream
    /// does not know are ignored rather than refused, since identity providers add
    /// their own (`openid`, `profile`).
    #[serde(default)]
    pub scope: String,
    /// When present, the only sensor ids this token may write; an entry ending in `*`
    /// matches every id with that prefix (`door-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensors: Option<Vec<String>>,
}

impl Claims {
    /// The scopes of the `scope` claim that labstream knows.
    pub fn scopes(&self) -> impl Iterator<Item = Scope> + '_ {
        self.scope
            .split_ascii_whitespace()
            .filter_map(|s| s.parse().ok())
    }

    /// Whether the token grants `scope`; `admin` grants every scope.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes().any(|s| s == scope || s == Scope::Admin)
    }

    /// Whether the token may write samples of `sensor_id`. Without a `sensors` claim
    /// every id is allowed; the claim binds admins too, so a device token stays narrow.
    pub fn may_write_sensor(&self, sensor_id: &str) -> bool {
        match &self.sensors {
            None => true,
            Some(patterns) => patterns.iter().any(|p| sensor_matches(p, sensor_id)),
        }
    }

    /// `Forbidden` unless the token grants `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(AuthError::forbidden(format!(
                "the token lacks the scope `{scope}`"
            )))
        }
    }

    /// `Forbidden` unless the token grants one of `scopes` (the error names the first).
    pub fn require_any(&self, scopes: &[Scope]) -> Result<(), AuthError> {
        match scopes {
            [] => Ok(()),
            [first, ..] if !scopes.iter().any(|s| self.has_scope(*s)) => self.require(*first),
            _ => Ok(()),
        }
    }

    /// `Forbidden` unless the token may write samples of `sensor_id`.
    pub fn require_sensor(&self, sensor_id: &str) -> Result<(), AuthError> {
        if self.may_write_sensor(sensor_id) {
            Ok(())
        } else {
            Err(AuthError::forbidden(format!(
                "the token may not write sensor `{sensor_id}`"
            )))
        }
    }
}

fn sensor_matches(pattern: &str, sensor_id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => sensor_id.starts_with(prefix),
        None => pattern == sensor_id,
    }
}

/// Refuses patterns that would not mean what their author thinks: empty ones, and a
/// `*` anywhere but at the end (matching is by prefix only, no globbing).
pub(crate) fn check_sensor_pattern(pattern: &str) -> Result<(), KeyError> {
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    if pattern.is_empty() || pattern.chars().any(char::is_whitespace) {
        return Err(KeyError::BadClaims(format!(
            "sensor pattern `{pattern}` is empty or contains whitespace"
        )));
    }
    if body.contains('*') {
        return Err(KeyError::BadClaims(format!(
            "sensor pattern `{pattern}`: `*` is allowed only at the end (prefix match)"
        )));
    }
    Ok(())
}

fn string_or_array<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn string_if_single<S: Serializer>(aud: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    match aud {
        [one] => serializer.serialize_str(one),
        many => many.serialize(serializer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_round_trip() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
            assert_eq!(
                serde_json::to_value(scope).unwrap(),
                serde_json::json!(scope.as_str())
            );
        }
        assert!("samples:read".parse::<Scope>().is_err());
    }

    #[test]
    fn sensor_patterns_must_be_prefixes() {
        assert!(check_sensor_pattern("door-3").is_ok());
        assert!(check_sensor_pattern("door-*").is_ok());
        assert!(check_sensor_pattern("*").is_ok());
        assert!(check_sensor_pattern("").is_err());
        assert!(check_sensor_pattern("do*r").is_err());
        assert!(check_sensor_pattern("door 3").is_err());
    }

    #[test]
    fn aud_accepts_string_or_array() {
        let base = serde_json::json!({"sub": "s", "exp": 1, "iat": 0});
        let mut one = base.clone();
        one["aud"] = "labstream".into();
        let claims: Claims = serde_json::from_value(one).unwrap();
        assert_eq!(claims.aud, ["labstream"]);
        assert_eq!(claims.scope, "");
        assert_eq!(serde_json::to_value(&claims).unwrap()["aud"], "labstream");

        let mut many = base;
        many["aud"] = serde_json::json!(["other", "labstream"]);
        let claims: Claims = serde_json::from_value(many).unwrap();
        assert_eq!(claims.aud, ["other", "labstream"]);
    }
}
