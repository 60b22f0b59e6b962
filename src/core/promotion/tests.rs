use super::*;
use crate::api::{HistoryEntry, Measurement, RolloutStatus, ServiceReleaseStatus};
use crate::fixtures::{environment_spec, release, release_spec};
use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::json;

const A: &str = "aaaaaaa1";
const B: &str = "bbbbbbb2";

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
}

fn promoted(sha: &str, started: i64, finished: i64) -> HistoryEntry {
    HistoryEntry {
        sha: sha.into(),
        task_definition_arn: None,
        function_version_arn: None,
        outcome: RolloutOutcome::Promoted,
        started_at: t(started),
        finished_at: Some(t(finished)),
        reason: "analysis passed".into(),
        steps: vec![],
        pre_deploy: vec![],
    }
}

fn upstream(stable: &str, history: Vec<HistoryEntry>) -> ServiceRelease {
    let mut r = release(
        "staging",
        "api",
        release_spec(json!({"image": {"repository": "111111111111.dkr.ecr.eu-west-1.amazonaws.com/shop/api", "gitSha": stable}})),
    );
    r.status = Some(ServiceReleaseStatus { phase: Phase::Healthy, stable_sha: Some(stable.into()), history, ..Default::default() });
    r
}

fn downstream(extra: serde_json::Value) -> ServiceReleaseSpec {
    let mut base = json!({"image": {"repository": "222222222222.dkr.ecr.eu-west-1.amazonaws.com/shop/api", "gitSha": A},
        "promotion": {"from": {"namespace": "staging", "name": "api"}, "soak": "10m"}});
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    release_spec(base)
}

fn judge(spec: &ServiceReleaseSpec, up: Option<&ServiceRelease>, approved: Option<&str>, now: DateTime<Utc>) -> Option<Hold> {
    let cal = Calendar::default();
    gate(&Gate {
        now,
        sha: spec.image.git_sha.as_str(),
        spec,
        namespace: "prod",
        approved,
        own: None,
        upstream: spec.promotion.as_ref().and_then(|p| p.from.as_ref()).map(|_| ("staging/api".into(), up)),
        after: vec![],
        calendar: &cal,
    })
}

#[test]
fn a_sha_waits_for_its_soak_and_starts_when_it_ends() {
    let spec = downstream(json!({}));
    let up = upstream(A, vec![promoted(A, 0, 60)]);
    let h = judge(&spec, Some(&up), None, t(100)).expect("soaking");
    assert_eq!(h.reason, reasons::WAITING_FOR_UPSTREAM);
    assert_eq!(h.until, Some(t(660)), "the soak ends 10m after the promotion");
    assert_eq!(h.upstream.as_deref(), Some("staging/api"));
    assert!(h.message.contains("ends at"), "{}", h.message);
    assert_eq!(judge(&spec, Some(&up), None, t(659)).map(|h| h.reason), Some(reasons::WAITING_FOR_UPSTREAM));
    assert_eq!(judge(&spec, Some(&up), None, t(660)), None, "proven at the soak's end");
}

#[test]
fn a_sha_the_upstream_rolled_back_is_refused_naming_the_measurement() {
    let spec = downstream(json!({}));
    let mut up = upstream(
        B,
        vec![
            HistoryEntry { outcome: RolloutOutcome::RolledBack, reason: "error-rate 0.3 > 0.05".into(), ..promoted(A, 100, 200) },
            promoted(B, 0, 50),
        ],
    );
    if let Some(st) = up.status.as_mut() {
        st.last_measurement =
            Some(Measurement { at: t(190), query: "error-rate".into(), series: None, value: Some(0.3), verdict: "Fail".into() });
    }
    let h = judge(&spec, Some(&up), None, t(10_000)).expect("refused");
    assert_eq!(h.reason, reasons::UPSTREAM_REJECTED);
    assert!(h.refused());
    assert!(h.message.contains("rolled back") && h.message.contains("error-rate = 0.3"), "{}", h.message);
    // Retried and promoted upstream later: the newest judgement counts.
    if let Some(st) = up.status.as_mut() {
        st.history.insert(0, promoted(A, 300, 400));
        st.stable_sha = Some(A.into());
    }
    assert_eq!(judge(&spec, Some(&up), None, t(10_000)), None);
}

#[test]
fn a_sha_rolling_back_upstream_is_refused_and_one_rolling_out_waits() {
    let spec = downstream(json!({}));
    let mut up = upstream(B, vec![promoted(B, 0, 50)]);
    if let Some(st) = up.status.as_mut() {
        st.phase = Phase::Analyzing;
        st.rollout = Some(RolloutStatus { sha: A.into(), started_at: t(100), ..Default::default() });
    }
    assert_eq!(judge(&spec, Some(&up), None, t(200)).map(|h| h.reason), Some(reasons::WAITING_FOR_UPSTREAM));
    if let Some(st) = up.status.as_mut() {
        st.phase = Phase::RollingBack;
        st.rollback = Some(crate::api::RollbackStatus {
            task_definition_arn: "td".into(),
            function_version_arn: None,
            reason: "p99 latency 2.1 > 0.5".into(),
            trigger: "analysis".into(),
            requested_at: t(150),
            error: None,
            failed_attempts: 0,
        });
    }
    let h = judge(&spec, Some(&up), None, t(200)).expect("refused");
    assert_eq!(h.reason, reasons::UPSTREAM_REJECTED);
    assert!(h.message.contains("p99 latency"), "{}", h.message);
}

#[test]
fn a_sha_replaced_upstream_before_its_soak_ended_is_not_proven() {
    let spec = downstream(json!({}));
    let up = upstream(B, vec![promoted(B, 300, 360), promoted(A, 0, 60)]);
    let h = judge(&spec, Some(&up), None, t(10_000)).expect("not proven");
    assert_eq!(h.reason, reasons::WAITING_FOR_UPSTREAM);
    assert!(h.message.contains("only 4m"), "{}", h.message);
    // Replaced after its soak: proven.
    let up = upstream(B, vec![promoted(B, 700, 760), promoted(A, 0, 60)]);
    assert_eq!(judge(&spec, Some(&up), None, t(10_000)), None);
}

#[test]
fn an_unknown_upstream_or_a_sha_never_rolled_out_there_waits() {
    let spec = downstream(json!({}));
    assert_eq!(judge(&spec, None, None, t(0)).map(|h| h.reason), Some(reasons::WAITING_FOR_UPSTREAM));
    let up = upstream(B, vec![promoted(B, 0, 50)]);
    let h = judge(&spec, Some(&up), None, t(1000)).expect("waits");
    assert!(h.message.contains("has not been rolled out there"), "{}", h.message);
}

#[test]
fn an_upstream_of_another_repository_proves_nothing() {
    let spec = downstream(json!({"image": {"repository": "222222222222.dkr.ecr.eu-west-1.amazonaws.com/shop/web", "gitSha": A}}));
    let up = upstream(A, vec![promoted(A, 0, 60)]);
    let h = judge(&spec, Some(&up), None, t(10_000)).expect("refused");
    assert_eq!(h.reason, reasons::UPSTREAM_REJECTED);
    assert!(h.message.contains("repository shop/web"), "{}", h.message);
    assert!(!h.message.contains("shop/api"), "the other release's repository is not shown: {}", h.message);
}

#[test]
fn an_approval_counts_only_for_the_sha_it_names() {
    let spec = downstream(json!({"promotion": {"approval": "Manual"}}));
    let h = judge(&spec, None, Some(B), t(0)).expect("waits");
    assert_eq!(h.reason, reasons::WAITING_FOR_APPROVAL);
    assert!(h.message.contains("names bbbbbbb2"), "{}", h.message);
    assert_eq!(judge(&spec, None, Some(A), t(0)), None);
    // With an upstream, the approval is asked for once the SHA is proven.
    let spec = downstream(json!({"promotion": {"from": {"namespace": "staging", "name": "api"}, "approval": "Manual"}}));
    let up = upstream(B, vec![promoted(B, 0, 50)]);
    assert_eq!(judge(&spec, Some(&up), Some(A), t(1000)).map(|h| h.reason), Some(reasons::WAITING_FOR_UPSTREAM));
    let up = upstream(A, vec![promoted(A, 0, 50)]);
    assert_eq!(judge(&spec, Some(&up), None, t(1000)).map(|h| h.reason), Some(reasons::WAITING_FOR_APPROVAL));
    assert_eq!(judge(&spec, Some(&up), Some(A), t(1000)), None);
}

#[test]
fn a_release_waits_for_the_ones_it_comes_after_at_their_generation() {
    let spec = release_spec(json!({"image": {"repository": "r/web", "gitSha": A}, "rollout": {"after": ["api"]}}));
    let mut api = release("shop", "api", release_spec(json!({})));
    api.metadata.generation = Some(3);
    api.status = Some(ServiceReleaseStatus { phase: Phase::Healthy, observed_generation: Some(2), ..Default::default() });
    let cal = Calendar::default();
    let g = |api: Option<&ServiceRelease>| {
        gate(&Gate {
            now: t(0),
            sha: A,
            spec: &spec,
            namespace: "shop",
            approved: None,
            own: None,
            upstream: None,
            after: vec![("api".into(), api)],
            calendar: &cal,
        })
    };
    let h = g(Some(&api)).expect("its new spec is not acted on");
    assert_eq!(h.reason, reasons::WAITING_FOR_ORDER);
    assert!(h.message.contains("not yet acted on"), "{}", h.message);
    if let Some(st) = api.status.as_mut() {
        st.observed_generation = Some(3);
        st.phase = Phase::Progressing;
    }
    assert_eq!(g(Some(&api)).map(|h| h.reason), Some(reasons::WAITING_FOR_ORDER));
    if let Some(st) = api.status.as_mut() {
        st.phase = Phase::Healthy;
    }
    assert_eq!(g(Some(&api)), None);
    assert!(g(None).is_some_and(|h| h.message.contains("does not exist")));
}

fn calendar(extra: serde_json::Value) -> Result<Calendar, String> {
    Calendar::of(&environment_spec(extra))
}

#[test]
fn a_window_opens_and_closes_in_its_time_zone() {
    // 09:00 to 11:00 on weekdays, Berlin time (UTC+1 in winter).
    let cal = calendar(json!({"windows": [{"schedule": "0 9 * * 1-5", "duration": "2h", "timeZone": "Europe/Berlin"}]})).unwrap();
    let monday = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 12, 7, h, m, 0).unwrap();
    assert!(cal.closed(monday(7, 59)).is_some(), "08:59 Berlin");
    assert_eq!(cal.closed(monday(8, 0)), None, "09:00 Berlin");
    assert_eq!(cal.closed(monday(9, 59)), None);
    let h = cal.closed(monday(10, 0)).expect("11:00 Berlin: closed");
    assert_eq!(h.reason, reasons::WAITING_FOR_WINDOW);
    assert_eq!(h.until, Some(Utc.with_ymd_and_hms(2026, 12, 8, 8, 0, 0).unwrap()), "Tuesday 09:00 Berlin");
    // Saturday: next Monday.
    let h = cal.closed(Utc.with_ymd_and_hms(2026, 12, 12, 9, 0, 0).unwrap()).expect("weekend");
    assert_eq!(h.until, Some(Utc.with_ymd_and_hms(2026, 12, 14, 8, 0, 0).unwrap()));
}

#[test]
fn a_blackout_holds_and_names_the_next_opening_after_it() {
    let cal = calendar(json!({"windows": [{"schedule": "0 * * * *", "duration": "30m"}],
        "blackouts": [{"start": "2026-12-24T00:00:00Z", "end": "2026-12-26T00:10:00Z", "reason": "holidays"}]}))
    .unwrap();
    let h = cal.closed(Utc.with_ymd_and_hms(2026, 12, 25, 12, 5, 0).unwrap()).expect("blackout");
    assert!(h.message.contains("holidays"), "{}", h.message);
    assert_eq!(
        h.until,
        Some(Utc.with_ymd_and_hms(2026, 12, 26, 0, 10, 0).unwrap()),
        "inside the 00:00 window, right at the blackout's end"
    );
    assert_eq!(cal.closed(Utc.with_ymd_and_hms(2026, 12, 26, 0, 10, 0).unwrap()), None);
    // Blackouts alone: open outside them.
    let cal = calendar(json!({"blackouts": [{"start": "2026-12-24T00:00:00Z", "end": "2026-12-26T00:00:00Z"}]})).unwrap();
    assert_eq!(cal.closed(Utc.with_ymd_and_hms(2026, 12, 23, 23, 0, 0).unwrap()), None);
}

#[test]
fn bad_schedules_and_zones_name_their_field() {
    let e = calendar(json!({"windows": [{"schedule": "0 9 * * 1-5", "duration": "1h"}, {"schedule": "61 * * * *", "duration": "1h"}]}))
        .unwrap_err();
    assert!(e.starts_with("windows[1].schedule"), "{e}");
    let e = calendar(json!({"windows": [{"schedule": "0 0 9 * * 1", "duration": "1h"}]})).unwrap_err();
    assert!(e.starts_with("windows[0].schedule"), "six fields are refused: {e}");
    let e = calendar(json!({"windows": [{"schedule": "0 9 * * *", "duration": "1h", "timeZone": "Mars/Olympus"}]})).unwrap_err();
    assert!(e.starts_with("windows[0].timeZone"), "{e}");
    let e = calendar(json!({"windows": [{"schedule": "0 9 * * *", "duration": "30d"}]})).unwrap_err();
    assert!(e.starts_with("windows[0].duration"), "{e}");
    let e = calendar(json!({"windows": [{"schedule": "0 0 30 2 *", "duration": "1h"}]})).unwrap_err();
    assert!(e.contains("never opens"), "{e}");
}

#[test]
fn a_sha_this_stage_promoted_before_needs_no_new_proof_or_approval_but_keeps_its_window() {
    // Staging has long moved on (A fell out of its history); production reverts to A.
    let spec = downstream(json!({"promotion": {"from": {"namespace": "staging", "name": "api"}, "soak": "1h", "approval": "Manual"}}));
    let up = upstream(B, vec![promoted(B, 0, 50)]);
    let own =
        ServiceReleaseStatus { stable_sha: Some(B.into()), history: vec![promoted(B, 100, 160), promoted(A, 0, 60)], ..Default::default() };
    let judge_own = |cal: &Calendar| {
        gate(&Gate {
            now: t(10_000),
            sha: A,
            spec: &spec,
            namespace: "prod",
            approved: Some(B),
            own: Some(&own),
            upstream: Some(("staging/api".into(), Some(&up))),
            after: vec![],
            calendar: cal,
        })
    };
    assert_eq!(judge_own(&Calendar::default()), None);
    let closed = calendar(json!({"blackouts": [{"start": t(0).to_rfc3339(), "end": t(20_000).to_rfc3339()}]})).unwrap();
    assert_eq!(judge_own(&closed).map(|h| h.reason), Some(reasons::WAITING_FOR_WINDOW));
}

#[test]
fn an_unreadable_or_endless_soak_proves_nothing() {
    let up = upstream(A, vec![promoted(A, 0, 60)]);
    assert!(matches!(proof(&up, A, Duration::MAX, t(1_000_000)), Proof::NotYet(_)));
}

#[test]
fn cycles_are_found_with_their_path() {
    let edges = |n: &str| -> Vec<String> {
        match n {
            "web" => vec!["api".into()],
            "api" => vec!["db-migrate".into(), "web".into()],
            _ => vec![],
        }
    };
    assert_eq!(cycle("web", edges, 100), Some(vec!["web".into(), "api".into(), "web".into()]));
    assert_eq!(cycle("db-migrate", edges, 100), None);
    assert_eq!(cycle("a", |_: &str| vec!["a".to_string()], 100), Some(vec!["a".into(), "a".into()]));
}

proptest! {
    /// Whatever the upstream's history, a SHA it rolled back or failed last is never let
    /// through, and one it never promoted is never let through.
    #[test]
    fn only_a_sha_promoted_and_soaked_upstream_passes(
        entries in proptest::collection::vec((0usize..3, 0usize..4, 0i64..2000, 0i64..600), 0..8),
        stable in 0usize..3,
        soak in 0u64..1200,
        now in 0i64..5000,
    ) {
        let shas = [A, B, "ccccccc3"];
        let outcomes = [RolloutOutcome::Promoted, RolloutOutcome::RolledBack, RolloutOutcome::Failed, RolloutOutcome::Superseded];
        let history: Vec<HistoryEntry> = entries
            .iter()
            .map(|(s, o, start, len)| HistoryEntry { outcome: outcomes[*o], ..promoted(shas[*s], *start, start + len) })
            .collect();
        let up = upstream(shas[stable], history.clone());
        let latest = history.iter().find(|h| h.sha == A && h.outcome != RolloutOutcome::Superseded).map(|h| h.outcome);
        match proof(&up, A, Duration::from_secs(soak), t(now)) {
            Proof::Proven => {
                prop_assert_eq!(latest, Some(RolloutOutcome::Promoted));
                let p = history.iter().find(|h| h.sha == A && h.outcome == RolloutOutcome::Promoted).and_then(|h| h.finished_at).unwrap();
                let soak_end = p + chrono::Duration::seconds(soak as i64);
                prop_assert!(t(now) >= soak_end || history.iter().any(|h| h.outcome == RolloutOutcome::Promoted && h.started_at >= soak_end));
            }
            Proof::Rejected(_) => prop_assert!(matches!(latest, Some(RolloutOutcome::RolledBack | RolloutOutcome::Failed))),
            Proof::Soaking(until) => prop_assert!(until > t(now)),
            Proof::NotYet(_) => {}
        }
    }

    /// A window's answer is consistent: open now, or the opening named is in the future
    /// and open itself.
    #[test]
    fn a_closed_calendar_names_an_opening_that_is_open(
        minute in 0u32..60, hour in 0u32..24, dur_min in 1u64..600, at in 0i64..(14 * 86_400),
        black_start in 0i64..(14 * 86_400), black_len in 1i64..(3 * 86_400),
    ) {
        let cal = calendar(json!({
            "windows": [{"schedule": format!("{minute} {hour} * * *"), "duration": format!("{dur_min}m"), "timeZone": "America/New_York"}],
            "blackouts": [{"start": t(black_start).to_rfc3339(), "end": t(black_start + black_len).to_rfc3339()}],
        })).unwrap();
        if let Some(h) = cal.closed(t(at)) {
            let opens = h.until.expect("a daily window always opens again");
            prop_assert!(opens > t(at));
            prop_assert_eq!(cal.closed(opens), None, "the opening named is open");
        }
    }
}
