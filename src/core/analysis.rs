//! Analysis: measurements and thresholds in, a verdict out. Pure; the rollout decides what
//! a verdict means.
//!
//! Rules (DESIGN.md): a failing query fails the round whatever the others say; every series
//! of a vector result is judged; `NaN` and `±Inf` are no data, never a number that passes;
//! a metrics backend that cannot answer makes the analysis *unavailable*, which is not a
//! verdict on the release.

use crate::api::{AnalysisQuery, NoDataPolicy};

/// What one query returned.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryResult {
    /// The samples: one per series (its labels as `{a="b"}`, "" for a scalar or a series
    /// without labels).
    Samples(Vec<(String, f64)>),
    /// The query returned no sample.
    NoData,
    /// The query itself is wrong (PromQL parse or execution error, a range vector): not the
    /// release's fault.
    Invalid(String),
    /// The metrics backend could not answer: unreachable, timed out, refused our
    /// credentials (401/403), or failed (5xx). Says nothing about the release.
    Unavailable(String),
}

/// The verdict on one query or a whole round.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Within thresholds.
    Pass,
    /// Outside thresholds: why.
    Fail(String),
    /// Cannot tell from the data (no data): why.
    Inconclusive(String),
    /// The query is broken: why (the rollout stalls instead of rolling back).
    Invalid(String),
    /// The metrics backend could not answer: why (the rollout holds, by default).
    Unavailable(String),
}

impl Verdict {
    /// Short word for status and metrics.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Pass => "Pass",
            Verdict::Fail(_) => "Fail",
            Verdict::Inconclusive(_) => "Inconclusive",
            Verdict::Invalid(_) => "Invalid",
            Verdict::Unavailable(_) => "Unavailable",
        }
    }
}

/// The judgement of one query: its verdict and the series that decided it (for status and
/// the `analysis_value` metric).
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    /// The verdict.
    pub verdict: Verdict,
    /// The deciding series' labels ("" for a scalar), when there was a sample.
    pub series: Option<String>,
    /// The deciding sample, when there was a finite one.
    pub value: Option<f64>,
}

/// Judges one query's result against its thresholds and no-data policy, series by series:
/// any series out of bounds fails the query (naming it); series without a finite value
/// count as no data.
pub fn judge(q: &AnalysisQuery, result: &QueryResult) -> Judged {
    let no_series = |verdict| Judged { verdict, series: None, value: None };
    match result {
        QueryResult::Samples(samples) => {
            let several = samples.len() > 1;
            let name = |series: &str| if several { format!("{}{series}", q.name) } else { q.name.clone() };
            let mut worst_pass: Option<(&str, f64)> = None;
            let mut without_data: Option<&str> = None;
            for (series, v) in samples {
                if !v.is_finite() {
                    without_data.get_or_insert(series);
                    continue;
                }
                if let Some(max) = q.max.filter(|m| v > m) {
                    let why = format!("{} = {} is above max {}", name(series), fmt(*v), fmt(max));
                    return Judged { verdict: Verdict::Fail(why), series: Some(series.clone()), value: Some(*v) };
                }
                if let Some(min) = q.min.filter(|m| v < m) {
                    let why = format!("{} = {} is below min {}", name(series), fmt(*v), fmt(min));
                    return Judged { verdict: Verdict::Fail(why), series: Some(series.clone()), value: Some(*v) };
                }
                // The passing series closest to a bound is the one worth showing.
                let closer = |a: f64, b: f64| match (q.max, q.min) {
                    (Some(_), _) => a > b,
                    (None, Some(_)) => a < b,
                    (None, None) => false,
                };
                if worst_pass.is_none_or(|(_, w)| closer(*v, w)) {
                    worst_pass = Some((series, *v));
                }
            }
            if let Some(series) = without_data.filter(|_| samples.len() > 1 || worst_pass.is_none()) {
                let j = judge(q, &QueryResult::NoData);
                if j.verdict != Verdict::Pass {
                    let verdict = match j.verdict {
                        Verdict::Fail(_) => Verdict::Fail(format!("{} returned no data (noData: Fail)", name(series))),
                        Verdict::Inconclusive(_) => Verdict::Inconclusive(format!("{} returned no data", name(series))),
                        other => other,
                    };
                    return Judged { verdict, series: Some(series.to_string()), value: None };
                }
            }
            match worst_pass {
                Some((series, v)) => Judged { verdict: Verdict::Pass, series: Some(series.to_string()), value: Some(v) },
                None => judge(q, &QueryResult::NoData),
            }
        }
        QueryResult::NoData => no_series(match q.no_data {
            NoDataPolicy::Pass => Verdict::Pass,
            NoDataPolicy::Fail => Verdict::Fail(format!("{} returned no data (noData: Fail)", q.name)),
            NoDataPolicy::Inconclusive => Verdict::Inconclusive(format!("{} returned no data", q.name)),
        }),
        QueryResult::Invalid(e) => no_series(Verdict::Invalid(format!("query {} is invalid: {e}", q.name))),
        QueryResult::Unavailable(e) => no_series(Verdict::Unavailable(format!("metrics backend unavailable for {}: {e}", q.name))),
    }
}

fn fmt(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One round: any failure fails it, whatever the others say; then a broken query (the
/// analysis itself is wrong); then an unavailable backend; then no data; otherwise a pass.
pub fn round(verdicts: &[Verdict]) -> Verdict {
    let first = |pred: fn(&Verdict) -> bool| verdicts.iter().find(|v| pred(v)).cloned();
    first(|v| matches!(v, Verdict::Fail(_)))
        .or_else(|| first(|v| matches!(v, Verdict::Invalid(_))))
        .or_else(|| first(|v| matches!(v, Verdict::Unavailable(_))))
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
        AnalysisQuery { name: "error-rate".into(), prometheus: "x".into(), min, max, no_data, dry_run: false }
    }

    fn one(v: f64) -> QueryResult {
        QueryResult::Samples(vec![(String::new(), v)])
    }

    #[test]
    fn values_are_judged_against_min_and_max() {
        let q = q(Some(0.5), Some(0.01), NoDataPolicy::Inconclusive);
        assert_eq!(judge(&q, &one(0.2)).verdict, Verdict::Fail("error-rate = 0.2 is above max 0.01".into()));
        let q2 = self::q(Some(0.9), None, NoDataPolicy::Inconclusive);
        assert_eq!(judge(&q2, &one(0.5)).verdict, Verdict::Fail("error-rate = 0.5 is below min 0.9".into()));
        assert_eq!(judge(&q2, &one(0.95)).verdict, Verdict::Pass);
    }

    #[test]
    fn no_data_follows_the_query_policy_and_defaults_to_inconclusive() {
        let v = |p, r: &QueryResult| judge(&q(None, Some(1.0), p), r).verdict;
        assert!(matches!(v(NoDataPolicy::Inconclusive, &QueryResult::NoData), Verdict::Inconclusive(_)));
        assert_eq!(v(NoDataPolicy::Pass, &QueryResult::NoData), Verdict::Pass);
        assert!(matches!(v(NoDataPolicy::Fail, &QueryResult::NoData), Verdict::Fail(_)));
    }

    /// `errors / total` with no traffic is NaN; ±Inf likewise: no data, never a pass.
    #[test]
    fn nan_and_infinities_are_no_data_never_a_passing_number() {
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(judge(&q(None, Some(1.0), NoDataPolicy::Inconclusive), &one(x)).verdict, Verdict::Inconclusive(_)), "{x}");
            assert!(matches!(judge(&q(Some(0.0), None, NoDataPolicy::Fail), &one(x)).verdict, Verdict::Fail(_)), "{x}");
        }
    }

    #[test]
    fn a_bad_query_is_invalid_and_a_backend_that_cannot_answer_is_unavailable() {
        let q = q(None, Some(1.0), NoDataPolicy::Fail);
        assert!(matches!(judge(&q, &QueryResult::Invalid("parse error".into())).verdict, Verdict::Invalid(_)));
        let u = judge(&q, &QueryResult::Unavailable("HTTP 401".into())).verdict;
        assert_eq!(u, Verdict::Unavailable("metrics backend unavailable for error-rate: HTTP 401".into()));
    }

    /// Every series is judged: the first one healthy and the second breaching fails the
    /// query, naming the breaching series.
    #[test]
    fn every_series_of_a_vector_is_judged_and_the_breaching_one_named() {
        let q = q(None, Some(0.05), NoDataPolicy::Inconclusive);
        let r = QueryResult::Samples(vec![(r#"{az="a"}"#.into(), 0.01), (r#"{az="b"}"#.into(), 0.5)]);
        let j = judge(&q, &r);
        assert_eq!(j.verdict, Verdict::Fail(r#"error-rate{az="b"} = 0.5 is above max 0.05"#.into()));
        assert_eq!((j.series.as_deref(), j.value), (Some(r#"{az="b"}"#), Some(0.5)));
        let ok = QueryResult::Samples(vec![(r#"{az="a"}"#.into(), 0.01), (r#"{az="b"}"#.into(), 0.04)]);
        let j = judge(&q, &ok);
        assert_eq!((j.verdict, j.value), (Verdict::Pass, Some(0.04)), "the series closest to max is shown");
        let half = QueryResult::Samples(vec![(r#"{az="a"}"#.into(), 0.01), (r#"{az="b"}"#.into(), f64::NAN)]);
        assert!(matches!(judge(&q, &half).verdict, Verdict::Inconclusive(m) if m.contains(r#"{az="b"}"#)));
    }

    #[test]
    fn a_failing_query_fails_the_round_whatever_the_others_say() {
        let fail = Verdict::Fail("f".into());
        let inc = Verdict::Inconclusive("i".into());
        let invalid = Verdict::Invalid("q".into());
        let down = Verdict::Unavailable("u".into());
        assert_eq!(round(&[Verdict::Pass, inc.clone(), fail.clone()]), fail);
        assert_eq!(round(&[invalid.clone(), fail.clone()]), fail, "a broken query does not hide a failing one");
        assert_eq!(round(&[down.clone(), fail.clone()]), fail);
        assert_eq!(round(&[Verdict::Pass, down.clone(), invalid.clone()]), invalid);
        assert_eq!(round(&[Verdict::Pass, inc.clone(), down.clone()]), down);
        assert_eq!(round(&[Verdict::Pass, inc.clone()]), inc);
        assert_eq!(round(&[]), Verdict::Pass);
    }

    #[test]
    fn placeholders_are_filled() {
        assert_eq!(
            render(r#"up{service="{{service}}",ns="{{namespace}}",sha="{{sha}}"}"#, "api", "team", "abc1234"),
            r#"up{service="api",ns="team",sha="abc1234"}"#
        );
    }

    proptest::proptest! {
        /// Any samples and thresholds: judging never panics, and a breach is never a pass.
        #[test]
        fn judging_any_samples_never_panics(
            samples in proptest::collection::vec(("[a-z]{0,3}", proptest::num::f64::ANY), 0..6),
            min in proptest::option::of(proptest::num::f64::ANY),
            max in proptest::option::of(proptest::num::f64::ANY),
        ) {
            let q = AnalysisQuery { name: "q".into(), prometheus: "x".into(), min, max, no_data: NoDataPolicy::Inconclusive, dry_run: false };
            let j = judge(&q, &QueryResult::Samples(samples.clone()));
            if j.verdict == Verdict::Pass {
                for (_, v) in samples.iter().filter(|(_, v)| v.is_finite()) {
                    proptest::prop_assert!(max.is_none_or(|m| v.partial_cmp(&m) != Some(std::cmp::Ordering::Greater)));
                    proptest::prop_assert!(min.is_none_or(|m| v.partial_cmp(&m) != Some(std::cmp::Ordering::Less)));
                }
            }
        }
    }
}
