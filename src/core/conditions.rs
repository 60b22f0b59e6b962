//! kstatus conditions from a readiness verdict, keeping `lastTransitionTime` stable.

use chrono::{DateTime, Utc};

use crate::api::{condition_types as ct, Condition};

/// Where an object stands, as kstatus sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Actual state matches desired state.
    Ready { reason: &'static str, message: String },
    /// Work is under way; expect change without anyone acting.
    Reconciling { reason: &'static str, message: String },
    /// No progress is possible until someone changes something.
    Stalled { reason: &'static str, message: String },
    /// Neither ready nor progressing nor stuck on the user (e.g. a capability not yet built).
    NotReady { reason: &'static str, message: String },
}

impl Readiness {
    /// The reason of the verdict.
    pub fn reason(&self) -> &'static str {
        match self {
            Readiness::Ready { reason, .. }
            | Readiness::Reconciling { reason, .. }
            | Readiness::Stalled { reason, .. }
            | Readiness::NotReady { reason, .. } => reason,
        }
    }
    /// The message of the verdict.
    pub fn message(&self) -> &str {
        match self {
            Readiness::Ready { message, .. }
            | Readiness::Reconciling { message, .. }
            | Readiness::Stalled { message, .. }
            | Readiness::NotReady { message, .. } => message,
        }
    }
}

fn status_word(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// The three conditions for `readiness`; a condition whose status is unchanged keeps its
/// previous `lastTransitionTime`, as the Kubernetes API conventions require.
pub fn conditions(previous: &[Condition], readiness: &Readiness, generation: Option<i64>, now: DateTime<Utc>) -> Vec<Condition> {
    let (ready, reconciling, stalled) = match readiness {
        Readiness::Ready { .. } => (true, false, false),
        Readiness::Reconciling { .. } => (false, true, false),
        Readiness::Stalled { .. } => (false, false, true),
        Readiness::NotReady { .. } => (false, false, false),
    };
    let reason = readiness.reason();
    let message = readiness.message().to_string();
    [(ct::READY, ready), (ct::RECONCILING, reconciling), (ct::STALLED, stalled)]
        .into_iter()
        .map(|(type_, on)| {
            let status = status_word(on).to_string();
            let last_transition_time =
                previous.iter().find(|c| c.type_ == type_ && c.status == status).and_then(|c| c.last_transition_time).or(Some(now));
            // Ready carries the verdict's reason either way; the others only when True.
            let (reason, message) = if on || type_ == ct::READY {
                (reason.to_string(), message.clone())
            } else {
                (reason_for_false(type_).to_string(), String::new())
            };
            Condition { type_: type_.to_string(), status, reason, message, last_transition_time, observed_generation: generation }
        })
        .collect()
}

fn reason_for_false(type_: &str) -> &'static str {
    match type_ {
        ct::RECONCILING => "Idle",
        ct::STALLED => "NotStalled",
        _ => "NotReady",
    }
}

/// True when two condition lists differ only in timestamps: no status patch is needed.
pub fn same_ignoring_timestamps(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.type_ == y.type_
                && x.status == y.status
                && x.reason == y.reason
                && x.message == y.message
                && x.observed_generation == y.observed_generation
        })
}

/// The condition of a type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn ready_sets_ready_true_and_the_others_false() {
        let r = Readiness::Ready { reason: "Reconciled", message: "ok".into() };
        let c = conditions(&[], &r, Some(3), t(0));
        let status: Vec<_> = c.iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
        assert_eq!(status, [("Ready", "True"), ("Reconciling", "False"), ("Stalled", "False")]);
        assert!(c.iter().all(|c| c.observed_generation == Some(3)));
    }

    #[test]
    fn transition_time_changes_only_when_status_changes() {
        let stalled = Readiness::Stalled { reason: "InvalidSpec", message: "bad".into() };
        let first = conditions(&[], &stalled, Some(1), t(0));
        let again = conditions(&first, &Readiness::Stalled { reason: "AccessDenied", message: "x".into() }, Some(2), t(50));
        assert!(again.iter().all(|c| c.last_transition_time == Some(t(0))));
        let ready = conditions(&again, &Readiness::Ready { reason: "Reconciled", message: String::new() }, Some(2), t(99));
        assert_eq!(find(&ready, "Ready").unwrap().last_transition_time, Some(t(99)));
        assert_eq!(find(&ready, "Stalled").unwrap().last_transition_time, Some(t(99)));
        assert_eq!(find(&ready, "Reconciling").unwrap().last_transition_time, Some(t(0)));
    }

    #[test]
    fn recomputing_the_same_verdict_needs_no_patch() {
        let r = Readiness::Reconciling { reason: "Progressing", message: "creating".into() };
        let a = conditions(&[], &r, Some(1), t(0));
        let b = conditions(&a, &r, Some(1), t(30));
        assert!(same_ignoring_timestamps(&a, &b));
        let c = conditions(&a, &r, Some(2), t(30));
        assert!(!same_ignoring_timestamps(&a, &c));
    }
}
