//! Types shared by the three resources: validated newtypes, conditions, durations.

use std::{borrow::Cow, fmt, str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A git commit SHA (7–40 lowercase hex digits): the image tag of a release.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GitSha(String);

/// Why a string is not a valid git SHA.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a git SHA: use 7 to 40 lowercase hex digits (e.g. 3f9c2a1d)")]
pub struct InvalidGitSha(pub String);

impl GitSha {
    /// The SHA as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for GitSha {
    type Err = InvalidGitSha;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (7..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(GitSha(s.to_string()))
        } else {
            Err(InvalidGitSha(s.to_string()))
        }
    }
}

impl fmt::Display for GitSha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for GitSha {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for GitSha {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for GitSha {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "GitSha".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": GIT_SHA_PATTERN,
            "description": "A git commit SHA, 7 to 40 lowercase hex digits; the image tag."
        })
    }
}

/// The schema pattern for git SHAs (also enforced by [`GitSha::from_str`]).
pub const GIT_SHA_PATTERN: &str = "^[0-9a-f]{7,40}$";

/// The schema pattern for Go-style durations as Kubernetes APIs write them (`30s`, `10m`, `1h30m`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// A Go-style duration string (`30s`, `10m`, `1h30m`), validated by the schema and on parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoDuration {
    text: String,
    value: Duration,
}

/// Why a string is not a duration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a duration: write it like 30s, 10m or 1h30m")]
pub struct InvalidDuration(pub String);

impl GoDuration {
    /// The parsed length of time.
    pub fn duration(&self) -> Duration {
        self.value
    }
}

impl FromStr for GoDuration {
    type Err = InvalidDuration;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || InvalidDuration(s.to_string());
        if s.is_empty() {
            return Err(err());
        }
        let mut total = 0f64;
        let mut rest = s;
        while !rest.is_empty() {
            let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(err)?;
            if num_len == 0 {
                return Err(err());
            }
            let n: f64 = rest[..num_len].parse().map_err(|_| err())?;
            rest = &rest[num_len..];
            let (unit, len) = if rest.starts_with("ms") {
                (0.001, 2)
            } else if rest.starts_with('s') {
                (1.0, 1)
            } else if rest.starts_with('m') {
                (60.0, 1)
            } else if rest.starts_with('h') {
                (3600.0, 1)
            } else {
                return Err(err());
            };
            total += n * unit;
            rest = &rest[len..];
        }
        Ok(GoDuration { text: s.to_string(), value: Duration::from_secs_f64(total) })
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for GoDuration {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A Go-style duration such as 30s, 10m or 1h30m."
        })
    }
}

/// A kstatus condition (`Ready`, `Reconciling`, `Stalled`), as Argo CD and Flux read them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type: Ready, Reconciling or Stalled.
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    /// A PascalCase reason from the `reasons` module.
    pub reason: String,
    /// What happened and, when something is wrong, what to change.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<DateTime<Utc>>,
    /// The generation this condition describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The three kstatus condition types every resource carries.
pub mod condition_types {
    /// Actual state matches the desired state.
    pub const READY: &str = "Ready";
    /// Work is under way.
    pub const RECONCILING: &str = "Reconciling";
    /// No progress is possible without a change by someone.
    pub const STALLED: &str = "Stalled";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_sha_accepts_7_to_40_lowercase_hex_digits() {
        assert!("3f9c2a1".parse::<GitSha>().is_ok());
        assert!("a".repeat(40).parse::<GitSha>().is_ok());
        for bad in ["3f9c2a", "3F9C2A1D", "3f9c2a1g", "", &"a".repeat(41)] {
            assert!(bad.parse::<GitSha>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn durations_parse_like_go() {
        let d = |s: &str| s.parse::<GoDuration>().map(|d| d.duration());
        assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(d("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "10", "s", "10x", "-5s", "1d"] {
            assert!(d(bad).is_err(), "{bad} should be refused");
        }
    }
}
