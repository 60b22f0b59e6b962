//! What the schema cannot check (or what a stored object may have escaped): every duration
//! within its field's bounds, the git SHA's form. Pure. A spec that fails here is refused
//! with `Stalled=True, reason InvalidSpec` naming each problem, and stalls only itself.

use std::time::Duration;

use crate::api::{bounds, GoDuration, ServiceReleaseSpec};

use super::rollout::{Config, PreDeploy, TrafficStep};

/// Every problem found in a spec, each naming its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid spec: {}", .0.join("; "))]
pub struct InvalidSpec(pub Vec<String>);

fn collect<T>(problems: &mut Vec<String>, r: Result<T, impl ToString>) -> Option<T> {
    r.map_err(|e| problems.push(e.to_string())).ok()
}

/// The drift interval of any kind: its own `spec.driftInterval`, else `default`.
pub fn drift_interval(d: Option<&GoDuration>, default: Duration) -> Result<Duration, InvalidSpec> {
    GoDuration::get_or(d, "spec.driftInterval", bounds::DRIFT_INTERVAL, default).map_err(|e| InvalidSpec(vec![e.to_string()]))
}

/// A ServiceRelease's rollout settings with defaults applied, or every problem in it.
pub fn release(spec: &ServiceReleaseSpec, default_drift: Duration) -> Result<Config, InvalidSpec> {
    let mut p = vec![];
    collect(&mut p, spec.image.git_sha.check().map_err(|e| format!("spec.image.gitSha: {e}")));
    let ro = spec.rollout.as_ref();
    let an = ro.and_then(|r| r.analysis.as_ref());
    let warmup = collect(
        &mut p,
        GoDuration::get_or(an.and_then(|a| a.warmup.as_ref()), "spec.rollout.analysis.warmup", bounds::WARMUP, Duration::ZERO),
    );
    let interval = collect(
        &mut p,
        GoDuration::get_or(
            an.and_then(|a| a.interval.as_ref()),
            "spec.rollout.analysis.interval",
            bounds::ANALYSIS_INTERVAL,
            Duration::from_secs(30),
        ),
    );
    let deadline = collect(
        &mut p,
        GoDuration::get_or(
            ro.and_then(|r| r.progress_deadline.as_ref()),
            "spec.rollout.progressDeadline",
            bounds::PROGRESS_DEADLINE,
            Duration::from_secs(600),
        ),
    );
    let drift =
        collect(&mut p, GoDuration::get_or(spec.drift_interval.as_ref(), "spec.driftInterval", bounds::DRIFT_INTERVAL, default_drift));
    collect(
        &mut p,
        GoDuration::get_or(spec.promotion.as_ref().and_then(|pr| pr.soak.as_ref()), "spec.promotion.soak", bounds::SOAK, Duration::ZERO),
    );
    if spec.task.is_some() == spec.function.is_some() {
        p.push("exactly one of spec.task (an ECS service) or spec.function (a Lambda function) is needed".to_string());
    }
    if spec.function.as_ref().is_some_and(|f| f.s3.is_none()) && spec.image.repository.is_empty() {
        p.push("spec.image.repository is needed for a function whose code is an image (or give spec.function.s3)".to_string());
    }
    if let Some((p_, r_)) = spec.function.as_ref().and_then(|f| Some((f.provisioned_concurrency?, f.reserved_concurrency?))) {
        if p_ > r_ {
            p.push(format!(
                "spec.function.provisionedConcurrency ({p_}) exceeds reservedConcurrency ({r_}): Lambda provisions no more than a function reserves"
            ));
        }
    }
    if spec.task.is_some() && spec.image.repository.is_empty() {
        p.push("spec.image.repository is needed for an ECS service".to_string());
    }
    if let Some(h) = spec.task.as_ref().and_then(|t| t.health_check.as_ref()) {
        for (d, field, b) in [
            (&h.interval, "spec.task.healthCheck.interval", bounds::HEALTH_CHECK_INTERVAL),
            (&h.timeout, "spec.task.healthCheck.timeout", bounds::HEALTH_CHECK_TIMEOUT),
            (&h.start_period, "spec.task.healthCheck.startPeriod", bounds::HEALTH_CHECK_START_PERIOD),
        ] {
            collect(&mut p, GoDuration::get_or(d.as_ref(), field, b, Duration::ZERO));
        }
    }
    let steps = strategy_steps(spec, &mut p);
    let pre_deploy = pre_deploy_steps(spec, &mut p);
    if let Some(a) = an {
        checks(spec, a, &mut p);
    }
    match (warmup, interval, deadline, drift) {
        (Some(warmup), Some(interval), Some(progress_deadline), Some(drift_interval)) if p.is_empty() => Ok(Config {
            steps,
            on_failure: ro.map(|r| r.on_failure).unwrap_or_default(),
            native: spec.task.is_some()
                && ro.and_then(|r| r.strategy.as_ref()).is_some_and(|s| s.canary.is_some() || s.linear.is_some() || s.blue_green.is_some()),
            warmup,
            interval,
            successful_runs: an.map(|a| a.successful_runs).unwrap_or(3).max(1),
            failure_limit: an.map(|a| a.failure_limit).unwrap_or(1).max(0),
            progress_deadline,
            auto_rollback: ro.map(|r| r.auto_rollback).unwrap_or(true),
            has_analysis: an
                .is_some_and(|a| !a.queries.is_empty() || !a.cloudwatch_alarms.is_empty() || !a.jobs.is_empty() || !a.http.is_empty()),
            history_limit: usize::try_from(spec.history_limit).unwrap_or(1).max(1),
            drift_interval,
            on_unavailable: ro.map(|r| r.on_analysis_unavailable).unwrap_or_default(),
            pre_deploy,
            snapshot_retention: ro.and_then(|r| r.snapshot_retention).and_then(|n| usize::try_from(n).ok()).map(|n| n.max(1)),
            deploy_poll: super::rollout::DEPLOY_POLL,
        }),
        _ => Err(InvalidSpec(p)),
    }
}

/// The smoke tests and HTTP checks of an analysis, each problem named in `p`.
fn checks(spec: &ServiceReleaseSpec, a: &crate::api::AnalysisSpec, p: &mut Vec<String>) {
    if !a.jobs.is_empty() && spec.function.is_some() {
        p.push("spec.rollout.analysis.jobs: smoke tests run as ECS tasks, on ECS releases (spec.task) only".into());
    }
    for (i, j) in a.jobs.iter().enumerate() {
        let field = format!("spec.rollout.analysis.jobs[{i}]");
        if j.command.is_empty() || j.command.iter().any(String::is_empty) {
            p.push(format!("{field}.command: a job needs a command, each argument non-empty"));
        }
        collect(
            p,
            GoDuration::get_or(j.timeout.as_ref(), &format!("{field}.timeout"), bounds::PRE_DEPLOY_TIMEOUT, Duration::from_secs(600)),
        );
    }
    for (i, h) in a.http.iter().enumerate() {
        let field = format!("spec.rollout.analysis.http[{i}]");
        if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
            p.push(format!("{field}.url: an http:// or https:// URL"));
        }
        if let Err(e) = super::checks::status_ranges(&h.expect_status) {
            p.push(format!("{field}.{e}"));
        }
        if h.body_contains.is_some() && h.json_path.is_some() {
            p.push(format!("{field}: bodyContains or jsonPath, not both"));
        }
        if h.equals.is_some() && h.json_path.is_none() {
            p.push(format!("{field}.equals needs jsonPath"));
        }
        collect(
            p,
            GoDuration::get_or(h.timeout.as_ref(), &format!("{field}.timeout"), bounds::HTTP_CHECK_TIMEOUT, Duration::from_secs(10)),
        );
    }
    let mut names = std::collections::BTreeSet::new();
    for n in a.queries.iter().map(|q| &q.name).chain(a.jobs.iter().map(|j| &j.name)).chain(a.http.iter().map(|h| &h.name)) {
        if !names.insert(n.clone()) {
            p.push(format!("spec.rollout.analysis: two queries, jobs or checks are named {n}"));
        }
    }
}

/// The steps before traffic, each problem named in `p`.
fn pre_deploy_steps(spec: &ServiceReleaseSpec, p: &mut Vec<String>) -> Vec<PreDeploy> {
    let steps = spec.rollout.as_ref().map(|r| r.pre_deploy.as_slice()).unwrap_or_default();
    let lambda = spec.function.is_some();
    if steps.len() > 10 {
        p.push(format!("spec.rollout.preDeploy: {} steps, at most 10", steps.len()));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = vec![];
    for (i, s) in steps.iter().enumerate().take(10) {
        let field = format!("spec.rollout.preDeploy[{i}]");
        let name_ok = !s.name.is_empty()
            && s.name.len() <= 63
            && s.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.name.starts_with('-')
            && !s.name.ends_with('-');
        if !name_ok {
            p.push(format!(
                "{field}.name {:?}: lower-case letters, digits and '-', at most 63",
                s.name.chars().take(80).collect::<String>()
            ));
        } else if !seen.insert(s.name.clone()) {
            p.push(format!("{field}.name {}: two steps have this name", s.name));
        }
        if lambda {
            if !s.command.is_empty() {
                p.push(format!("{field}.command: a Lambda release's step is an invocation: give payload (JSON), not command"));
            }
            if let Some(payload) = &s.payload {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(payload) {
                    p.push(format!("{field}.payload: not JSON ({e})"));
                }
            }
        } else if s.payload.is_some() {
            p.push(format!("{field}.payload: an ECS release's step runs a command: give command, not payload"));
        } else if s.command.is_empty() || s.command.iter().any(String::is_empty) {
            p.push(format!("{field}.command: a step needs a command, each argument non-empty"));
        }
        if s.command.len() > 64 || s.command.iter().any(|a| a.len() > 4096) {
            p.push(format!("{field}.command: at most 64 arguments of 4096 characters"));
        }
        if s.snapshot.as_ref().is_some_and(|d| d.is_empty() || d.len() > 63) {
            p.push(format!("{field}.snapshot: a database name of the release's StackSpec"));
        }
        let timeout = collect(
            p,
            GoDuration::get_or(s.timeout.as_ref(), &format!("{field}.timeout"), bounds::PRE_DEPLOY_TIMEOUT, Duration::from_secs(1800)),
        );
        out.push(PreDeploy {
            name: s.name.clone(),
            timeout: timeout.unwrap_or_default(),
            snapshot: s.snapshot.clone(),
            irreversible: s.irreversible,
        });
    }
    out
}

/// The traffic steps of the release's strategy (Rolling: all at once, no bake), each
/// problem named in `p`.
fn strategy_steps(spec: &ServiceReleaseSpec, p: &mut Vec<String>) -> Vec<TrafficStep> {
    let all = |bake| vec![TrafficStep { weight: 100, bake }];
    let Some(s) = spec.rollout.as_ref().and_then(|r| r.strategy.as_ref()) else { return all(Duration::ZERO) };
    let given = [s.canary.is_some(), s.linear.is_some(), s.blue_green.is_some()].iter().filter(|x| **x).count();
    if given > 1 {
        p.push("spec.rollout.strategy: at most one of canary, linear and blueGreen".into());
    }
    if given > 0 && spec.task.as_ref().is_some_and(|t| t.port.is_none()) {
        p.push("spec.task.port: an ECS service with a canary, linear or blueGreen strategy needs the container port its load balancer sends traffic to".into());
    }
    let mut bake = |d: Option<&GoDuration>, field: &str| collect(p, GoDuration::get_or(d, field, bounds::BAKE, Duration::ZERO));
    let percent = |n: i32, field: &str, p: &mut Vec<String>| {
        if (1..=99).contains(&n) {
            Some(n)
        } else {
            p.push(format!("{field}: {n} is out of range (1 to 99)"));
            None
        }
    };
    if let Some(c) = &s.canary {
        let b = bake(c.bake.as_ref(), "spec.rollout.strategy.canary.bake").unwrap_or_default();
        let Some(w) = percent(c.percent, "spec.rollout.strategy.canary.percent", p) else { return all(Duration::ZERO) };
        return vec![TrafficStep { weight: w, bake: b }, TrafficStep { weight: 100, bake: Duration::ZERO }];
    }
    if let Some(l) = &s.linear {
        let b = bake(l.step_bake.as_ref(), "spec.rollout.strategy.linear.stepBake").unwrap_or_default();
        let Some(n) = percent(l.step_percent, "spec.rollout.strategy.linear.stepPercent", p) else { return all(Duration::ZERO) };
        let mut steps: Vec<TrafficStep> =
            (1..).map_while(|i: i32| i.checked_mul(n).filter(|w| *w < 100)).map(|w| TrafficStep { weight: w, bake: b }).collect();
        steps.push(TrafficStep { weight: 100, bake: Duration::ZERO });
        return steps;
    }
    if let Some(g) = &s.blue_green {
        return all(bake(g.bake.as_ref(), "spec.rollout.strategy.blueGreen.bake").unwrap_or_default());
    }
    all(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::fixtures::release_spec as spec;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = release(&spec(json!({})), Duration::from_secs(60)).unwrap();
        assert_eq!(
            (c.warmup, c.interval, c.progress_deadline, c.drift_interval),
            (Duration::ZERO, Duration::from_secs(30), Duration::from_secs(600), Duration::from_secs(60))
        );
    }

    #[test]
    fn every_problem_is_named_with_its_field() {
        let s = spec(json!({
            "image": {"repository": "r", "gitSha": "NOT-A-SHA"},
            "driftInterval": "99999999999999999999h",
            "rollout": {"progressDeadline": "25h", "analysis": {"interval": "0s"}},
            "task": {"cpu": 256, "memory": 512, "healthCheck": {"command": ["x"], "timeout": "1h"}},
        }));
        let e = release(&s, Duration::from_secs(60)).unwrap_err();
        let text = e.to_string();
        for field in [
            "spec.image.gitSha",
            "spec.driftInterval: `99999999999999999999h` is too long",
            "spec.rollout.progressDeadline: `25h` is out of range",
            "spec.rollout.analysis.interval",
            "spec.task.healthCheck.timeout",
        ] {
            assert!(text.contains(field), "{field} missing from: {text}");
        }
        assert_eq!(e.0.len(), 5);
    }

    #[test]
    fn steps_before_traffic_are_checked_field_by_field() {
        let s = spec(json!({
            "image": {"repository": "r", "gitSha": "3f9c2a1d"},
            "task": {"cpu": 256, "memory": 512},
            "rollout": {"preDeploy": [
                {"name": "migrate", "command": ["php", "artisan", "migrate", "--force"], "timeout": "45m", "snapshot": "orders", "irreversible": true},
                {"name": "empty", "command": []},
                {"name": "slow", "command": ["x"], "timeout": "3h"},
                {"name": "migrate", "command": ["", "y"]},
            ]},
        }));
        let text = release(&s, Duration::from_secs(60)).unwrap_err().to_string();
        for field in [
            "spec.rollout.preDeploy[1].command: a step needs a command",
            "spec.rollout.preDeploy[2].timeout: `3h` is out of range",
            "spec.rollout.preDeploy[3].name migrate: two steps have this name",
            "spec.rollout.preDeploy[3].command",
        ] {
            assert!(text.contains(field), "{field} missing from: {text}");
        }
        let ok = spec(json!({
            "image": {"repository": "r", "gitSha": "3f9c2a1d"},
            "task": {"cpu": 256, "memory": 512},
            "rollout": {"preDeploy": [{"name": "migrate", "command": ["migrate"], "snapshot": "orders", "irreversible": true}]},
        }));
        let c = release(&ok, Duration::from_secs(60)).unwrap();
        assert_eq!(
            c.pre_deploy,
            vec![PreDeploy {
                name: "migrate".into(),
                timeout: Duration::from_secs(1800),
                snapshot: Some("orders".into()),
                irreversible: true
            }]
        );
        let lambda = function(json!({"preDeploy": [{"name": "migrate", "command": ["x"]}, {"name": "seed", "payload": "{not json"}]}));
        let text = release(&lambda, Duration::from_secs(60)).unwrap_err().to_string();
        assert!(text.contains("preDeploy[0].command: a Lambda release's step is an invocation"), "{text}");
        assert!(text.contains("preDeploy[1].payload: not JSON"), "{text}");
        let lambda = function(json!({"preDeploy": [{"name": "migrate", "payload": "{\"migrate\": true}"}]}));
        assert!(release(&lambda, Duration::from_secs(60)).is_ok());
    }

    fn function(rollout: serde_json::Value) -> ServiceReleaseSpec {
        serde_json::from_value(json!({"environment": "prod", "image": {"gitSha": "3f9c2a1d"},
            "function": {"s3": {"bucket": "b", "key": "k"}}, "rollout": rollout}))
        .unwrap()
    }

    fn weights(c: &Config) -> Vec<(i32, u64)> {
        c.steps.iter().map(|s| (s.weight, s.bake.as_secs())).collect()
    }

    #[test]
    fn strategies_are_traffic_steps_ending_at_all_of_it() {
        let d = Duration::from_secs(60);
        assert_eq!(weights(&release(&function(json!({})), d).unwrap()), vec![(100, 0)], "Rolling");
        let canary = function(json!({"strategy": {"canary": {"percent": 10, "bake": "2m"}}}));
        assert_eq!(weights(&release(&canary, d).unwrap()), vec![(10, 120), (100, 0)]);
        let linear = function(json!({"strategy": {"linear": {"stepPercent": 25, "stepBake": "30s"}}}));
        assert_eq!(weights(&release(&linear, d).unwrap()), vec![(25, 30), (50, 30), (75, 30), (100, 0)]);
        let uneven = function(json!({"strategy": {"linear": {"stepPercent": 40}}}));
        assert_eq!(weights(&release(&uneven, d).unwrap()), vec![(40, 0), (80, 0), (100, 0)]);
        let bg = function(json!({"strategy": {"blueGreen": {"bake": "5m"}}}));
        assert_eq!(weights(&release(&bg, d).unwrap()), vec![(100, 300)]);
    }

    #[test]
    fn provisioned_concurrency_beyond_the_reserved_is_refused() {
        let mut s = function(json!({}));
        if let Some(f) = s.function.as_mut() {
            f.reserved_concurrency = Some(5);
            f.provisioned_concurrency = Some(10);
        }
        let text = release(&s, Duration::from_secs(60)).unwrap_err().to_string();
        assert!(text.contains("provisionedConcurrency (10) exceeds reservedConcurrency (5)"), "{text}");
        if let Some(f) = s.function.as_mut() {
            f.provisioned_concurrency = Some(5);
        }
        assert!(release(&s, Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn an_ecs_strategy_is_native_and_needs_a_port_and_two_strategies_are_refused() {
        let d = Duration::from_secs(60);
        let ecs = spec(json!({"rollout": {"strategy": {"canary": {"percent": 10}}}}));
        assert!(release(&ecs, d).unwrap_err().to_string().contains("spec.task.port"));
        let ecs = spec(json!({"rollout": {"strategy": {"canary": {"percent": 10}}}, "task": {"cpu": 256, "memory": 512, "port": 80}}));
        let c = release(&ecs, d).unwrap();
        assert!(c.native && c.stepped(), "ECS's own canary, judged at its pauses");
        assert!(!release(&function(json!({"strategy": {"canary": {"percent": 10}}})), d).unwrap().native, "Lambda: the alias");
        assert!(!release(&spec(json!({})), d).unwrap().native, "Rolling");
        let two = function(json!({"strategy": {"canary": {"percent": 10}, "blueGreen": {}}}));
        assert!(release(&two, d).unwrap_err().to_string().contains("at most one"));
        let bad = function(json!({"strategy": {"canary": {"percent": 100, "bake": "48h"}}}));
        let text = release(&bad, d).unwrap_err().to_string();
        assert!(text.contains("canary.percent: 100 is out of range") && text.contains("canary.bake"), "{text}");
    }
}
