use std::collections::VecDeque;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::api::{Measurement, RolloutStatus, ServiceReleaseStatus};

fn release(ns: &str, name: &str, from: Option<&str>) -> ServiceRelease {
    let promotion = from.map(|f| format!("  promotion: {{from: {{name: {f}}}}}\n")).unwrap_or_default();
    let yaml = format!(
        "apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  environment: prod\n  image: {{repository: r, gitSha: abcdef1}}\n  task: {{cpu: 256, memory: 512}}\n{promotion}"
    );
    serde_yaml::from_str(&yaml).expect("a valid release")
}

fn measured(at: i64, query: &str, value: f64) -> Measurement {
    Measurement {
        at: Utc.timestamp_opt(at, 0).single().unwrap_or_default(),
        query: query.into(),
        series: None,
        value: Some(value),
        verdict: "Pass".into(),
    }
}

fn rolling(r: &mut ServiceRelease, sha: &str, started: i64, ms: Vec<Measurement>) {
    let st = r.status.get_or_insert_with(ServiceReleaseStatus::default);
    st.rollout = Some(RolloutStatus {
        sha: sha.into(),
        started_at: Utc.timestamp_opt(started, 0).single().unwrap_or_default(),
        measurements: ms,
        ..serde_json::from_value(serde_json::json!({"sha": sha, "startedAt": "2026-01-01T00:00:00Z", "specHash": "h"})).expect("a rollout")
    });
}

#[test]
fn a_row_names_the_target_the_upstream_in_its_namespace_and_the_step() {
    let mut r = release("shop", "api", Some("api-staging"));
    rolling(&mut r, "abcdef1", 100, vec![]);
    if let Some(ro) = r.status.as_mut().and_then(|s| s.rollout.as_mut()) {
        ro.step = Some(2);
        ro.steps = Some(4);
        ro.weight = Some(25);
    }
    let row = release_row(&r);
    assert_eq!(row.target, "ECS");
    assert_eq!(row.upstream.as_deref(), Some("shop/api-staging"));
    assert_eq!(row.step.as_deref(), Some("2/4"));
    assert_eq!(row.weight, Some(25));
    assert_eq!(row.phase, "Pending");
}

#[test]
fn measurements_are_kept_across_status_writes_once_each_per_rollout() {
    let mut r = release("shop", "api", None);
    let mut seen = VecDeque::new();
    rolling(&mut r, "aaaaaaa", 100, vec![measured(110, "errors", 0.1)]);
    remember(&mut seen, &r);
    // Status keeps the latest rounds only: the first one is gone from it, not from the page.
    rolling(&mut r, "aaaaaaa", 100, vec![measured(120, "errors", 0.2), measured(130, "errors", 0.3)]);
    remember(&mut seen, &r);
    remember(&mut seen, &r);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].measurements.iter().map(|m| m.value.unwrap_or_default()).collect::<Vec<_>>(), vec![0.1, 0.2, 0.3]);
    // A new rollout starts a new series.
    rolling(&mut r, "bbbbbbb", 200, vec![measured(210, "errors", 0.9)]);
    remember(&mut seen, &r);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].measurements.len(), 1);
}

#[test]
fn chains_run_from_each_first_stage_through_every_branch_and_stop_at_a_cycle() {
    let rows: Vec<ReleaseRow> = [
        release("a", "dev", None),
        release("a", "staging", Some("dev")),
        release("a", "prod-eu", Some("staging")),
        release("a", "prod-us", Some("staging")),
        release("a", "alone", None),
        release("b", "x", Some("y")),
        release("b", "y", Some("x")),
    ]
    .iter()
    .map(release_row)
    .collect();
    let mut got = chains(&rows);
    got.sort();
    assert_eq!(got, vec![vec!["a/dev", "a/staging", "a/prod-eu"], vec!["a/dev", "a/staging", "a/prod-us"]]);
}

proptest! {
    /// However status moves, what is remembered stays bounded, ordered and without repeats.
    #[test]
    fn what_is_remembered_is_bounded_ordered_and_unique(writes in proptest::collection::vec((0u8..5, proptest::collection::vec((0i64..3_000, 0u8..3), 0..40)), 0..60)) {
        let mut r = release("shop", "api", None);
        let mut seen = VecDeque::new();
        for (rollout, ms) in writes {
            let ms = ms.into_iter().map(|(at, q)| measured(at, ["a", "b", "c"][usize::from(q)], 1.0)).collect();
            rolling(&mut r, &format!("{rollout:07}"), i64::from(rollout), ms);
            remember(&mut seen, &r);
        }
        prop_assert!(seen.len() <= ROLLOUTS_KEPT);
        for s in &seen {
            prop_assert!(s.measurements.len() <= MEASUREMENTS_KEPT);
            prop_assert!(s.measurements.windows(2).all(|w| w[0].at <= w[1].at));
            let keys: std::collections::BTreeSet<_> = s.measurements.iter().map(|m| (m.at, m.query.clone())).collect();
            prop_assert_eq!(keys.len(), s.measurements.len());
        }
    }
}

#[test]
fn a_function_release_is_a_lambda_row() {
    let mut r = release("shop", "bookings", None);
    r.spec.function = serde_json::from_value(serde_json::json!({"alias": "live", "s3": {"bucket": "b", "key": "k"}})).ok();
    assert!(r.spec.function.is_some(), "a function spec");
    assert_eq!(release_row(&r).target, "Lambda");
}

proptest! {
    /// Whatever the `from` links (cycles, branches, upstreams out of sight), every path
    /// shown starts at a first stage, follows the links, and names no release twice.
    #[test]
    fn every_promotion_path_follows_the_links_and_never_repeats(links in proptest::collection::vec(proptest::option::of(0usize..12), 1..12)) {
        let rows: Vec<ReleaseRow> = links
            .iter()
            .enumerate()
            .map(|(i, up)| release_row(&release("a", &format!("r{i}"), up.map(|u| format!("r{u}")).as_deref())))
            .collect();
        let by: std::collections::BTreeMap<String, &ReleaseRow> = rows.iter().map(|r| (format!("{}/{}", r.namespace, r.name), r)).collect();
        for path in chains(&rows) {
            let unique: std::collections::BTreeSet<&String> = path.iter().collect();
            prop_assert_eq!(unique.len(), path.len(), "{:?}", path);
            prop_assert!(path.len() >= 2);
            let first = by[&path[0]];
            prop_assert!(first.upstream.as_ref().is_none_or(|u| !by.contains_key(u)), "{:?} starts at a first stage", path);
            for w in path.windows(2) {
                prop_assert_eq!(by[&w[1]].upstream.as_ref(), Some(&w[0]));
            }
        }
    }
}
