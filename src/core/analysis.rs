//! Analysis: measurements and thresholds in, a verdict out. Pure; the rollout decides what
//! a verdict means.

use crate::api::{AnalysisQuery, NoDataPolicy};

/// What one query returned.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryResult {
    /// One sample.
    Value(f64),
    /// The query returned no sample.
    NoData,
    /// The query itself is wrong (PromQL parse or execution error): not the release's fault.
    Invalid(String),
    /// The metric source could not be reached.
    Unreachable(String),
}

/// The verdict on one query or a whole round.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Within thresholds.
    Pass,
    /// Outside thresholds: why.
    Fail(String),
    /// Cannot tell (no data, source down): why.
    Inconclusive(String),
    /// The query is broken: why (the rollout stalls instead of rolling back).
    Invalid(String),
}

impl Verdict {
    /// Short word for status and metrics.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Pass => "Pass",
            Verdict::Fail(_) => "Fail",
            Verdict::Inconclusive(_) => "Inconclusive",
            Verdict::Invalid(_) => "Invalid",
        }
    }
}

/// Judges one query's result against its thresholds and no-data policy.
pub fn judge(q: &AnalysisQuery, result: &QueryResult) -> Verdict {
    match result {
        QueryResult::Value(v) if v.is_nan() => judge(q, &QueryResult::NoData),
        QueryResult::Value(v) => {
            if let Some(max) = q.max.filter(|m| v > m) {
                return Verdict::Fail(format!("{} = {} is above max {}", q.name, fmt(*v), fmt(max)));
            }
            if let Some(min) = q.min.filter(|m| v < m) {
                return Verdict::Fail(format!("{} = {} is below min {}", q.name, fmt(*v), fmt(min)));
            }
            Verdict::Pass
        }
        QueryResult::NoData => match q.no_data {
            NoDataPolicy::Pass => Verdict::Pass,
            NoDataPolicy::Fail => Verdict::Fail(format!("{} returned no data (noData: Fail)", q.name)),
            NoDataPolicy::Inconclusive => Verdict::Inconclusive(format!("{} returned no data", q.name)),
        },
        QueryResult::Invalid(e) => Verdict::Invalid(format!("query {} is invalid: {e}", q.name)),
        QueryResult::Unreachable(e) => Verdict::Inconclusive(format!("metrics source unreachable for {}: {e}", q.name)),
    }
}

fn fmt(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One round: an invalid query wins (the analysis itself is broken), then any failure,
/// then any inconclusive; otherwise a pass.
pub fn round(verdicts: &[Verdict]) -> Verdict {
    let first = |pred: fn(&Verdict) -> bool| verdicts.iter().find(|v| pred(v)).cloned();
    first(|v| matches!(v, Verdict::Invalid(_)))
        .or_else(|| first(|v| matches!(v, Verdict::Fail(_))))
        .or_else(|| first(|v| matches!(v, Verdict::Inconclusive(_))))
        .unwrap_or(Verdict::Pass)
}

/// Fills the placeholders `{{service}}`, `{{namespace}}`, `{{sha}}` of a query.
pub fn render(promql: &str, service: &str, namespace: &str, sha: &str) -> String {
    promql.replace("{{service}}", service).replace("{{namespace}}", namespace).replace("{{sha}}", sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(min: Option<f64>, max: Option<f64>, no_data: NoDataPolicy) -> AnalysisQuery {
        AnalysisQuery { name: "error-rate".into(), prometheus: "x".into(), min, max, no_data }
    }

    #[test]
    fn values_are_judged_against_min_and_max() {
        let q = q(Some(0.5), Some(0.01), NoDataPolicy::Inconclusive);
        assert_eq!(judge(&q, &QueryResult::Value(0.2)), Verdict::Fail("error-rate = 0.2 is above max 0.01".into()));
        let q2 = self::q(Some(0.9), None, NoDataPolicy::Inconclusive);
        assert_eq!(judge(&q2, &QueryResult::Value(0.5)), Verdict::Fail("error-rate = 0.5 is below min 0.9".into()));
        assert_eq!(judge(&q2, &QueryResult::Value(0.95)), Verdict::Pass);
    }

    #[test]
    fn no_data_follows_the_query_policy_and_defaults_to_inconclusive() {
        assert!(matches!(judge(&q(None, Some(1.0), NoDataPolicy::Inconclusive), &QueryResult::NoData), Verdict::Inconclusive(_)));
        assert_eq!(judge(&q(None, Some(1.0), NoDataPolicy::Pass), &QueryResult::NoData), Verdict::Pass);
        assert!(matches!(judge(&q(None, Some(1.0), NoDataPolicy::Fail), &QueryResult::NoData), Verdict::Fail(_)));
        assert!(matches!(judge(&q(None, Some(1.0), NoDataPolicy::Inconclusive), &QueryResult::Value(f64::NAN)), Verdict::Inconclusive(_)));
    }

    #[test]
    fn a_bad_query_is_invalid_and_an_unreachable_source_is_inconclusive() {
        let q = q(None, Some(1.0), NoDataPolicy::Fail);
        assert!(matches!(judge(&q, &QueryResult::Invalid("parse error".into())), Verdict::Invalid(_)));
        assert!(matches!(judge(&q, &QueryResult::Unreachable("connection refused".into())), Verdict::Inconclusive(_)));
    }

    #[test]
    fn a_round_reports_the_worst_verdict() {
        let fail = Verdict::Fail("f".into());
        let inc = Verdict::Inconclusive("i".into());
        assert_eq!(round(&[Verdict::Pass, inc.clone(), fail.clone()]), fail);
        assert_eq!(round(&[Verdict::Pass, inc.clone()]), inc);
        assert_eq!(round(&[Verdict::Pass, Verdict::Invalid("q".into()), fail]), Verdict::Invalid("q".into()));
        assert_eq!(round(&[]), Verdict::Pass);
    }

    #[test]
    fn placeholders_are_filled() {
        assert_eq!(
            render(r#"up{service="{{service}}",ns="{{namespace}}",sha="{{sha}}"}"#, "api", "team", "abc1234"),
            r#"up{service="api",ns="team",sha="abc1234"}"#
        );
    }
}
