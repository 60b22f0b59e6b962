//! Error categories and the requeue each one asks for.

use std::time::Duration;

/// A static category for every failure; it decides the requeue and labels the metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// The spec cannot work as written: wait for a change.
    InvalidSpec,
    /// Tenancy or account rules forbid the action: wait for a change.
    NotAllowed,
    /// AWS denied the call: recheck slowly (IAM can change without a spec change).
    AccessDenied,
    /// AWS rejected the request as invalid: wait for a change.
    AwsValidation,
    /// Another owner holds the resource: recheck slowly.
    Conflict,
    /// AWS throttled us: back off.
    Throttled,
    /// Network, 5xx, Kubernetes API hiccups: retry soon with backoff.
    Transient,
}

impl Category {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Category::InvalidSpec => "invalid_spec",
            Category::NotAllowed => "not_allowed",
            Category::AccessDenied => "access_denied",
            Category::AwsValidation => "aws_validation",
            Category::Conflict => "conflict",
            Category::Throttled => "throttled",
            Category::Transient => "transient",
        }
    }

    /// Whether the failure clears without anyone acting (so the object is not Stalled).
    pub fn is_transient(self) -> bool {
        matches!(self, Category::Throttled | Category::Transient)
    }
}

/// What to do after a failure: `None` waits for a change to the object (or its Environment).
///
/// `attempt` counts consecutive failures (1 for the first); `jitter` is a number in [0, 1)
/// supplied by the caller so this stays pure.
pub fn after_failure(category: Category, attempt: u32, slow_recheck: Duration, jitter: f64) -> Option<Duration> {
    match category {
        Category::InvalidSpec | Category::NotAllowed | Category::AwsValidation => None,
        Category::AccessDenied | Category::Conflict => Some(slow_recheck),
        Category::Throttled => Some(backoff(attempt, Duration::from_secs(2), Duration::from_secs(300), jitter)),
        Category::Transient => Some(backoff(attempt, Duration::from_millis(500), Duration::from_secs(300), jitter)),
    }
}

/// Exponential backoff with "equal jitter": half the delay fixed, half random.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let d = exp.min(cap);
    d / 2 + d.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_spec_waits_for_a_change_instead_of_retrying() {
        for c in [Category::InvalidSpec, Category::NotAllowed, Category::AwsValidation] {
            assert_eq!(after_failure(c, 7, Duration::from_secs(60), 0.5), None);
        }
    }

    #[test]
    fn access_denied_is_rechecked_at_the_slow_interval_not_in_a_loop() {
        let d = after_failure(Category::AccessDenied, 1, Duration::from_secs(300), 0.0);
        assert_eq!(d, Some(Duration::from_secs(300)));
    }

    #[test]
    fn transient_errors_back_off_exponentially_with_jitter_and_a_cap() {
        let b = |n, j| after_failure(Category::Transient, n, Duration::ZERO, j).unwrap();
        assert_eq!(b(1, 0.0), Duration::from_millis(250));
        assert_eq!(b(1, 1.0), Duration::from_millis(500));
        assert_eq!(b(3, 0.0), Duration::from_secs(1));
        assert!(b(2, 0.3) > b(2, 0.1));
        assert_eq!(b(40, 1.0), Duration::from_secs(300));
    }
}
