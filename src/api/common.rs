//! Types shared by the three resources: validated newtypes, conditions, durations.

use std::{borrow::Cow, fmt, str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A git commit SHA (7–40 lowercase hex digits): the image tag of a release.
///
/// Deserializing never fails (a stored object the schema let through, or one stored before
/// a schema change, must stall only itself, not the whole watch); [`GitSha::check`] says
/// whether it is valid, and the reconcile refuses an invalid one with a message.
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

    /// Ok when it is 7 to 40 lowercase hex digits.
    pub fn check(&self) -> Result<(), InvalidGitSha> {
        let ok = (7..=40).contains(&self.0.len()) && self.0.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(())
        } else {
            Err(InvalidGitSha(self.0.chars().take(64).collect()))
        }
    }
}

impl FromStr for GitSha {
    type Err = InvalidGitSha;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let sha = GitSha(s.to_string());
        sha.check().map(|()| sha)
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
        Ok(GitSha(String::deserialize(d)?))
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
            "maxLength": 40,
            "description": "A git commit SHA, 7 to 40 lowercase hex digits; the image tag."
        })
    }
}

/// The schema pattern for git SHAs (also enforced by [`GitSha::from_str`]).
pub const GIT_SHA_PATTERN: &str = "^[0-9a-f]{7,40}$";

/// The schema pattern for Go-style durations as Kubernetes APIs write them (`30s`, `10m`, `1h30m`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// The longest duration text the schema accepts (`1h30m15s500ms` is 13).
pub const DURATION_MAX_LENGTH: usize = 16;

/// No duration shipshape reads is longer than this; every field has a smaller maximum of
/// its own (see [`Bounds`]), this one keeps the arithmetic away from overflow.
pub const DURATION_CEILING: Duration = Duration::from_secs(366 * 24 * 3600);

/// A Go-style duration string (`30s`, `10m`, `1h30m`), bounded by the schema
/// (`maxLength`, pattern, a CEL range per field) and checked again on use.
///
/// Deserializing never fails, so a bad value stalls only its own object: [`GoDuration::get`]
/// returns the length of time, or why it is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoDuration {
    text: String,
    value: Result<Duration, InvalidDuration>,
}

/// Why a string is not a duration.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InvalidDuration {
    /// Not a Go duration at all.
    #[error("`{0}` is not a duration: write it like 30s, 10m or 1h30m")]
    Syntax(String),
    /// Longer than anything shipshape accepts.
    #[error("`{0}` is too long a duration (at most {max}h)", max = DURATION_CEILING.as_secs() / 3600)]
    TooLong(String),
}

/// The range a duration field accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Shortest allowed.
    pub min: Duration,
    /// Longest allowed.
    pub max: Duration,
}

impl Bounds {
    /// Between `min` and `max` seconds.
    pub const fn secs(min: u64, max: u64) -> Bounds {
        Bounds { min: Duration::from_secs(min), max: Duration::from_secs(max) }
    }

    /// The CEL rule the schema carries for a field with these bounds.
    pub fn rule(&self) -> String {
        format!("duration(self) >= duration('{}') && duration(self) <= duration('{}')", go(self.min), go(self.max))
    }

    /// The message of that rule.
    pub fn message(&self, field: &str) -> String {
        format!("{field} must be between {} and {}", go(self.min), go(self.max))
    }
}

/// A whole-second duration as Go writes it (`0s`, `90s`, `6h`).
fn go(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A duration field's bounds, in one place for the schema, the checks and the docs.
pub mod bounds {
    use super::Bounds;
    /// `driftInterval` of every kind: 1s to 24h.
    pub const DRIFT_INTERVAL: Bounds = Bounds::secs(1, 24 * 3600);
    /// `rollout.progressDeadline`: 1s to 24h.
    pub const PROGRESS_DEADLINE: Bounds = Bounds::secs(1, 24 * 3600);
    /// `analysis.warmup`: 0s to 6h.
    pub const WARMUP: Bounds = Bounds::secs(0, 6 * 3600);
    /// `analysis.interval`: 1s to 6h.
    pub const ANALYSIS_INTERVAL: Bounds = Bounds::secs(1, 6 * 3600);
    /// `strategy.*.bake` / `stepBake`: 0s to 24h.
    pub const BAKE: Bounds = Bounds::secs(0, 24 * 3600);
    /// `task.healthCheck.interval`: 5s to 300s (ECS's range).
    pub const HEALTH_CHECK_INTERVAL: Bounds = Bounds::secs(5, 300);
    /// `task.healthCheck.timeout`: 2s to 60s (ECS's range).
    pub const HEALTH_CHECK_TIMEOUT: Bounds = Bounds::secs(2, 60);
    /// `task.healthCheck.startPeriod`: 0s to 300s (ECS's range).
    pub const HEALTH_CHECK_START_PERIOD: Bounds = Bounds::secs(0, 300);
    /// `rollout.preDeploy[].timeout`: 1s to 2h.
    pub const PRE_DEPLOY_TIMEOUT: Bounds = Bounds::secs(1, 2 * 3600);
    /// `analysis.http[].timeout`: 1s to 60s.
    pub const HTTP_CHECK_TIMEOUT: Bounds = Bounds::secs(1, 60);
    /// Environment `windows[].duration`: 1m to 7d.
    pub const WINDOW_DURATION: Bounds = Bounds::secs(60, 7 * 24 * 3600);
    /// `promotion.soak`: 0s to 7d.
    pub const SOAK: Bounds = Bounds::secs(0, 7 * 24 * 3600);
}

/// The schema's CEL rule for a duration field with `bounds` (the server refuses a value out
/// of range with the message).
pub fn duration_rule(bounds: Bounds, field: &str) -> kube::core::Rule {
    kube::core::Rule::new(bounds.rule()).message(kube::core::Message::Message(bounds.message(field)))
}

/// Why a duration field is refused, naming the field.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct DurationError {
    /// The field, e.g. `spec.rollout.progressDeadline`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl GoDuration {
    /// The parsed length of time, or why the text is not one.
    pub fn parsed(&self) -> Result<Duration, InvalidDuration> {
        self.value.clone()
    }

    /// The length of time when valid and within `bounds`, or an error naming `field`.
    pub fn get(&self, field: &str, bounds: Bounds) -> Result<Duration, DurationError> {
        let err = |reason: String| DurationError { field: field.to_string(), reason };
        let d = self.value.clone().map_err(|e| err(e.to_string()))?;
        if d < bounds.min || d > bounds.max {
            return Err(err(format!("`{}` is out of range: {}", self.text, bounds.message("the value"))));
        }
        Ok(d)
    }

    /// [`GoDuration::get`] of an optional field, `default` when it is absent.
    pub fn get_or(d: Option<&GoDuration>, field: &str, bounds: Bounds, default: Duration) -> Result<Duration, DurationError> {
        d.map(|d| d.get(field, bounds)).unwrap_or(Ok(default))
    }
}

/// Parses a Go duration with checked integer arithmetic (nanoseconds), refusing anything
/// longer than [`DURATION_CEILING`].
pub fn parse_duration(s: &str) -> Result<Duration, InvalidDuration> {
    let syntax = || InvalidDuration::Syntax(s.chars().take(DURATION_MAX_LENGTH * 2).collect());
    let too_long = || InvalidDuration::TooLong(s.chars().take(DURATION_MAX_LENGTH * 2).collect());
    if s.is_empty() {
        return Err(syntax());
    }
    let ceiling = DURATION_CEILING.as_nanos();
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let int_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
                if n == 0 {
                    return Err(syntax());
                }
                f.split_at(n)
            }
            None => ("", after),
        };
        if int.is_empty() {
            return Err(syntax());
        }
        let (unit_nanos, unit_len): (u128, usize) = if after.starts_with("ms") {
            (1_000_000, 2)
        } else if after.starts_with('s') {
            (1_000_000_000, 1)
        } else if after.starts_with('m') {
            (60_000_000_000, 1)
        } else if after.starts_with('h') {
            (3_600_000_000_000, 1)
        } else {
            return Err(syntax());
        };
        // Digits beyond what the ceiling could need only make the number too long.
        let whole: u128 = if int.len() > 30 { return Err(too_long()) } else { int.parse().map_err(|_| syntax())? };
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(too_long)?;
        // The fraction, digit by digit, to nanosecond precision.
        let mut scale = unit_nanos;
        for c in frac.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos = nanos.checked_add(u128::from(c - b'0') * scale).ok_or_else(too_long)?;
        }
        total = total.checked_add(nanos).ok_or_else(too_long)?;
        if total > ceiling {
            return Err(too_long());
        }
        rest = &after[unit_len..];
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| too_long())?;
    let sub = u32::try_from(total % 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, sub))
}

impl FromStr for GoDuration {
    type Err = InvalidDuration;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = parse_duration(s)?;
        Ok(GoDuration { text: s.to_string(), value: Ok(value) })
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
        let text = String::deserialize(d)?;
        let value = parse_duration(&text);
        Ok(GoDuration { text, value })
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
            "maxLength": DURATION_MAX_LENGTH,
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
    /// An Environment's AWS events arrive through its event queue (`spec.events`).
    pub const EVENTS_FLOWING: &str = "EventsFlowing";
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
        let d = |s: &str| parse_duration(s);
        assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(d("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(d("1h0.5m1.25s"), Ok(Duration::from_millis(3_600_000 + 30_000 + 1_250)));
        for bad in ["", "10", "s", "10x", "-5s", "1d", ".5s", "1.s", "5s5"] {
            assert!(d(bad).is_err(), "{bad} should be refused");
        }
    }

    /// The value that used to crash the controller (Duration::from_secs_f64 overflow), and
    /// anything past the ceiling, is an error, never a panic.
    #[test]
    fn absurd_durations_are_refused_without_panicking() {
        for absurd in ["99999999999999999999h", "9999h", "8785h", &format!("{}s", "9".repeat(200)), "1.99999999999999999999999h"] {
            let r = parse_duration(absurd);
            if absurd.starts_with("1.9") {
                assert!(r.is_ok(), "{absurd}: {r:?}");
            } else {
                assert!(matches!(r, Err(InvalidDuration::TooLong(_))), "{absurd}: {r:?}");
            }
        }
        let stored: GoDuration = serde_json::from_value(serde_json::json!("99999999999999999999h")).unwrap();
        let e = stored.get("spec.driftInterval", bounds::DRIFT_INTERVAL).unwrap_err();
        assert!(e.to_string().starts_with("spec.driftInterval: `99999999999999999999h` is too long"), "{e}");
        let short: GoDuration = "1ms".parse().unwrap();
        let e = short.get("spec.driftInterval", bounds::DRIFT_INTERVAL).unwrap_err();
        assert_eq!(e.to_string(), "spec.driftInterval: `1ms` is out of range: the value must be between 1s and 24h");
    }

    #[test]
    fn bounds_render_as_cel_rules() {
        assert_eq!(bounds::DRIFT_INTERVAL.rule(), "duration(self) >= duration('1s') && duration(self) <= duration('24h')");
        assert_eq!(bounds::HEALTH_CHECK_TIMEOUT.message("timeout"), "timeout must be between 2s and 1m");
    }

    #[test]
    fn a_stored_invalid_sha_deserializes_and_is_refused_on_check() {
        let sha: GitSha = serde_json::from_value(serde_json::json!("NOT-A-SHA")).unwrap();
        assert!(sha.check().is_err());
    }

    proptest::proptest! {
        /// Any text: parsing never panics, and what parses is within the ceiling.
        #[test]
        fn parsing_any_text_never_panics(s in "\\PC{0,40}") {
            if let Ok(d) = parse_duration(&s) {
                proptest::prop_assert!(d <= DURATION_CEILING);
            }
        }

        /// Any text of the schema's shape: parsing never panics.
        #[test]
        fn parsing_pattern_shaped_text_never_panics(s in "([0-9]{1,25}(\\.[0-9]{1,25})?(ms|s|m|h)){1,4}") {
            let _ = parse_duration(&s);
        }
    }
}
