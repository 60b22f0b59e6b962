use super::*;
use chrono::TimeZone;

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
}

fn cfg(has_analysis: bool) -> Config {
    Config {
        warmup: Duration::from_secs(10),
        interval: Duration::from_secs(5),
        successful_runs: 2,
        failure_limit: 1,
        progress_deadline: Duration::from_secs(300),
        auto_rollback: true,
        has_analysis,
        history_limit: 10,
        drift_interval: Duration::from_secs(60),
        on_unavailable: UnavailablePolicy::Hold,
        steps: vec![TrafficStep { weight: 100, bake: Duration::ZERO }],
        on_failure: FailurePolicy::Rollback,
        native: false,
        pre_deploy: vec![],
        snapshot_retention: None,
        deploy_poll: DEPLOY_POLL,
    }
}

/// A simulated ECS service: what the effects do to it.
#[derive(Default)]
struct World {
    service: Option<ServiceObs>,
    n: usize,
}

impl World {
    fn apply(&mut self, effects: &[Effect], replicas: i32) -> usize {
        let mut updates = 0;
        for e in effects {
            if matches!(e, Effect::RunTask { .. } | Effect::StopTask { .. } | Effect::Snapshot { .. }) {
                // Not the service's.
                continue;
            }
            if let Effect::Resume { .. } = e {
                // ECS goes on from the pause: the test sets where it pauses next.
                updates += 1;
                if let Some(d) = self.service.as_mut().and_then(|s| s.service_deployment.as_mut()) {
                    d.paused_hook = None;
                }
                continue;
            }
            if let Effect::Halt { task_definition, .. } = e {
                // ECS moves the traffic back to the old revision, still running.
                updates += 1;
                if let Some(s) = self.service.as_mut() {
                    s.task_definition = task_definition.clone();
                    if let Some(d) = s.service_deployment.as_mut() {
                        (d.status, d.weight, d.paused_hook) = ("ROLLBACK_IN_PROGRESS".into(), Some(0), None);
                    }
                }
                continue;
            }
            if let Effect::Shift { task_definition, stable, weight } = e {
                // A Lambda alias: the stable version primary, a share on the new one, at once.
                updates += 1;
                let svc = self.service.get_or_insert_with(Default::default);
                svc.task_definition = stable.clone();
                svc.canary = Some((task_definition.clone(), *weight));
                continue;
            }
            let td = e.task_definition().to_string();
            updates += 1;
            self.n += 1;
            let mut deployments = vec![DeploymentObs {
                id: format!("ecs-svc/{}", self.n),
                task_definition: td.clone(),
                status: "PRIMARY".into(),
                rollout_state: "IN_PROGRESS".into(),
                failed_tasks: 0,
                updated_at: None,
            }];
            if let Some(s) = &self.service {
                deployments.extend(s.deployments.iter().take(1).map(|d| DeploymentObs { status: "ACTIVE".into(), ..d.clone() }));
            }
            self.service = Some(ServiceObs {
                arn: "arn:svc".into(),
                task_definition: td,
                desired_count: replicas,
                maximum_percent: Some(200),
                minimum_healthy_percent: Some(100),
                deployments,
                tags: Default::default(),
                network: None,
                canary: None,
                service_deployment: None,
            });
        }
        updates
    }
    /// The deployment finishes as `state`, ECS saying it did at `at`.
    fn complete_at(&mut self, state: &str, at: DateTime<Utc>) {
        self.complete(state);
        if let Some(d) = self.service.as_mut().and_then(|s| s.deployments.first_mut()) {
            d.updated_at = Some(at);
        }
    }
    fn complete(&mut self, state: &str) {
        if let Some(d) = self.service.as_mut().and_then(|s| s.deployments.first_mut()) {
            d.rollout_state = state.into();
            if state == "FAILED" {
                d.failed_tasks = 3;
            }
        }
    }
}

struct Run {
    world: World,
    status: ServiceReleaseStatus,
    cfg: Config,
    paused: bool,
    frozen: bool,
    /// What a new rollout waits for (promotion, order, windows).
    hold: Option<crate::core::promotion::Hold>,
    commands: Commands,
    last: Option<Decision>,
    updates: usize,
    /// ECS refuses rollbacks (as the controller would see UpdateService fail).
    refuse_rollback: Option<String>,
    /// What AWS reports of the step before traffic under way.
    obs: Option<StepObs>,
}

impl Run {
    fn new(has_analysis: bool) -> Run {
        Run {
            world: World::default(),
            status: Default::default(),
            cfg: cfg(has_analysis),
            paused: false,
            frozen: false,
            hold: None,
            commands: Default::default(),
            last: None,
            updates: 0,
            refuse_rollback: None,
            obs: None,
        }
    }
    fn step(&mut self, now: i64, sha: &str, round: Option<Verdict>) -> &Decision {
        let (spec_hash, td) = (format!("hash-{sha}"), format!("arn:td/{sha}"));
        self.step_spec(now, sha, &spec_hash, &td, round)
    }
    fn step_spec(&mut self, now: i64, sha: &str, spec_hash: &str, td: &str, round: Option<Verdict>) -> &Decision {
        let round = round.map(|v| {
            (
                v.clone(),
                vec![Measurement { at: t(now), query: "error-rate".into(), series: None, value: Some(0.0), verdict: v.word().into() }],
            )
        });
        let commands = std::mem::take(&mut self.commands);
        let inp = Inputs {
            now: t(now),
            sha,
            spec_hash,
            task_definition: td,
            replicas: 2,
            deployment_percents: (200, 100),
            service: self.world.service.as_ref(),
            network: &Network::default(),
            paused: self.paused,
            frozen: self.frozen,
            hold: self.hold.clone(),
            commands: &commands,
            round,
            config: &self.cfg,
            pre_deploy: self.obs.clone(),
        };
        let s = step(&self.status, &inp);
        self.status = s.status.clone();
        let rollback = s.effects.iter().find_map(|e| match e {
            Effect::RollBack { task_definition } | Effect::Halt { task_definition, .. } => Some(task_definition.clone()),
            _ => None,
        });
        // What the controller does with a rollback: the call, then RolledBack only if ECS
        // accepted it.
        match (&rollback, &self.refuse_rollback) {
            (Some(_), Some(err)) => self.status = rollback_refused(&self.status, err, None),
            (Some(td), None) => {
                self.updates += self.world.apply(&s.effects, 2);
                self.status = rollback_accepted(&self.status, td, t(now), self.cfg.history_limit).0;
            }
            (None, _) => self.updates += self.world.apply(&s.effects, 2),
        }
        self.last = Some(s);
        self.last.as_ref().unwrap()
    }
    /// Rolls `sha` out and promotes it (ECS completes; analysis passes).
    fn promote(&mut self, start: i64, sha: &str) {
        self.step(start, sha, None);
        self.world.complete("COMPLETED");
        self.step(start + 1, sha, None);
        if self.cfg.has_analysis {
            self.step(start + 11, sha, Some(Verdict::Pass));
            self.step(start + 16, sha, Some(Verdict::Pass));
        }
        assert_eq!(self.status.phase, Phase::Healthy, "{:?}", self.status);
        assert_eq!(self.status.stable_sha.as_deref(), Some(sha));
    }
}

#[test]
fn the_first_release_creates_the_service_and_is_promoted_when_ecs_completes() {
    let mut r = Run::new(false);
    let s = r.step(0, "aaaaaaa", None);
    assert_eq!(s.effects, vec![Effect::CreateService { task_definition: "arn:td/aaaaaaa".into() }]);
    assert_eq!(s.status.phase, Phase::Progressing);
    r.world.complete("COMPLETED");
    let s = r.step(3, "aaaaaaa", None);
    assert_eq!(s.status.phase, Phase::Healthy);
    assert!(matches!(s.readiness, Readiness::Ready { .. }));
    assert_eq!(s.status.history[0].outcome, RolloutOutcome::Promoted);
    assert_eq!(s.status.stable_task_definition_arn.as_deref(), Some("arn:td/aaaaaaa"));
}

#[test]
fn a_healthy_second_release_is_promoted_after_warmup_and_successful_runs() {
    let mut r = Run::new(true);
    r.promote(0, "aaaaaaa");
    r.step(100, "bbbbbbb", None);
    r.world.complete("COMPLETED");
    let s = r.step(101, "bbbbbbb", None).clone();
    assert_eq!(s.status.phase, Phase::Analyzing);
    assert!(!measurement_due(&s.status, t(105), &r.cfg), "warmup");
    assert!(measurement_due(&s.status, t(111), &r.cfg));
    assert_eq!(s.requeue, Duration::from_secs(10), "woken when the warmup ends");
    let s = r.step(111, "bbbbbbb", Some(Verdict::Pass)).clone();
    assert_eq!(s.status.phase, Phase::Analyzing);
    assert!(!measurement_due(&s.status, t(113), &r.cfg), "interval");
    let s = r.step(116, "bbbbbbb", Some(Verdict::Pass));
    assert_eq!(s.status.phase, Phase::Healthy);
    let shas: Vec<_> = s.status.history.iter().map(|h| h.sha.as_str()).collect();
    assert_eq!(shas, ["bbbbbbb", "aaaaaaa"]);
}

#[test]
fn failing_analysis_rolls_back_to_the_stable_task_definition_and_is_not_retried() {
    let mut r = Run::new(true);
    r.promote(0, "aaaaaaa");
    r.step(100, "ccccccc", None);
    r.world.complete("COMPLETED");
    r.step(101, "ccccccc", None);
    let fail = || Verdict::Fail("error-rate = 0.2 is above max 0.01".into());
    let s = r.step(111, "ccccccc", Some(fail())).clone();
    assert_eq!(s.status.phase, Phase::Analyzing, "failureLimit 1 tolerates one failed round");
    let s = r.step(116, "ccccccc", Some(fail())).clone();
    assert_eq!(s.effects, vec![Effect::RollBack { task_definition: "arn:td/aaaaaaa".into() }]);
    assert_eq!(s.status.phase, Phase::RollingBack, "decided, not yet accepted by ECS");
    assert_eq!(s.status.current_sha.as_deref(), Some("ccccccc"), "the bad SHA serves until ECS accepts");
    assert_eq!(s.rolled_back, Some("analysis"));
    assert!(matches!(&s.readiness, Readiness::Reconciling { reason, .. } if *reason == reasons::ROLLING_BACK));
    // ECS accepted it (the Run plays the controller).
    assert_eq!(r.status.phase, Phase::RolledBack);
    assert_eq!(r.status.current_sha.as_deref(), Some("aaaaaaa"));
    assert_eq!(r.status.history[0].outcome, RolloutOutcome::RolledBack);
    assert!(r.status.history[0].reason.contains("error-rate = 0.2"));
    let s = r.step(120, "ccccccc", None).clone();
    let Readiness::Stalled { reason, message } = &s.readiness else { panic!("{:?}", s.readiness) };
    assert_eq!(*reason, reasons::ROLLED_BACK);
    assert!(message.contains("error-rate = 0.2 is above max 0.01"), "{message}");

    let updates = r.updates;
    for now in [200, 300, 400] {
        let s = r.step(now, "ccccccc", None);
        assert_eq!(s.effects, vec![], "a rolled-back SHA is not retried");
        assert_eq!(s.status.phase, Phase::RolledBack);
    }
    assert_eq!(r.updates, updates);

    r.commands.retry = Some("1".into());
    let s = r.step(500, "ccccccc", None);
    assert_eq!(s.effects, vec![Effect::UpdateService { task_definition: "arn:td/ccccccc".into() }]);
    assert_eq!(s.status.phase, Phase::Progressing);
}

#[test]
fn a_failed_ecs_deployment_rolls_back() {
    let mut r = Run::new(true);
    r.promote(0, "aaaaaaa");
    r.step(100, "ddddddd", None);
    r.world.complete("FAILED");
    let s = r.step(105, "ddddddd", None);
    assert_eq!(s.rolled_back, Some("deployment_failed"));
    assert_eq!(r.status.phase, Phase::RolledBack);
    assert!(r.status.history[0].reason.contains("FAILED"));
}

#[test]
fn no_data_holds_the_rollout_until_the_deadline_then_rolls_back() {
    let mut r = Run::new(true);
    r.cfg.progress_deadline = Duration::from_secs(60);
    r.promote(0, "aaaaaaa");
    r.step(100, "eeeeeee", None);
    r.world.complete("COMPLETED");
    r.step(101, "eeeeeee", None);
    for now in [111, 120, 130, 150] {
        let s = r.step(now, "eeeeeee", Some(Verdict::Inconclusive("error-rate returned no data".into())));
        assert_eq!(s.status.phase, Phase::Analyzing);
    }
    r.step(161, "eeeeeee", None);
    assert_eq!(r.status.phase, Phase::RolledBack);
    assert!(r.status.history[0].reason.contains("progressDeadline"));
}

#[test]
fn an_invalid_query_stalls_without_rolling_back_even_past_the_deadline() {
    let mut r = Run::new(true);
    r.cfg.progress_deadline = Duration::from_secs(60);
    r.promote(0, "aaaaaaa");
    r.step(100, "fffffff", None);
    r.world.complete("COMPLETED");
    r.step(101, "fffffff", None);
    let s = r.step(111, "fffffff", Some(Verdict::Invalid("query error-rate is invalid: parse error".into()))).clone();
    assert!(matches!(&s.readiness, Readiness::Stalled { reason, .. } if *reason == reasons::INVALID_QUERY));
    let s = r.step(400, "fffffff", None);
    assert_eq!(s.effects, vec![]);
    assert_eq!(s.status.phase, Phase::Analyzing);
}

#[test]
fn the_first_release_failing_is_failed_and_left_as_is() {
    let mut r = Run::new(false);
    r.step(0, "aaaaaaa", None);
    r.world.complete("FAILED");
    let s = r.step(5, "aaaaaaa", None);
    assert_eq!(s.status.phase, Phase::Failed);
    assert_eq!(s.effects, vec![]);
    assert!(matches!(&s.readiness, Readiness::Stalled { message, .. } if message.contains("no stable release")));
}

#[test]
fn paused_and_frozen_releases_start_nothing_but_rollbacks_still_happen() {
    let mut r = Run::new(true);
    r.promote(0, "aaaaaaa");
    r.paused = true;
    let s = r.step(100, "bbbbbbb", None);
    assert_eq!((s.effects.len(), s.status.phase), (0, Phase::Paused));
    r.paused = false;
    r.frozen = true;
    let s = r.step(110, "bbbbbbb", None);
    assert_eq!((s.effects.len(), s.status.phase), (0, Phase::Paused));
    r.frozen = false;
    r.step(120, "bbbbbbb", None);
    r.world.complete("COMPLETED");
    r.step(121, "bbbbbbb", None);
    r.frozen = true;
    r.step(131, "bbbbbbb", Some(Verdict::Fail("x".into())));
    r.step(136, "bbbbbbb", Some(Verdict::Fail("x".into())));
    assert_eq!(r.status.phase, Phase::RolledBack, "a freeze never blocks a rollback");
}

#[test]
fn an_env_only_change_is_a_new_rollout_and_its_rollback_restores_the_old_task_definition() {
    let mut r = Run::new(true);
    r.promote(0, "aaaaaaa");
    let s = r.step_spec(100, "aaaaaaa", "hash-aaaaaaa-env2", "arn:td/aaaaaaa:2", None).clone();
    assert_eq!(s.effects, vec![Effect::UpdateService { task_definition: "arn:td/aaaaaaa:2".into() }]);
    r.world.complete("COMPLETED");
    r.step_spec(101, "aaaaaaa", "hash-aaaaaaa-env2", "arn:td/aaaaaaa:2", None);
    r.step_spec(111, "aaaaaaa", "hash-aaaaaaa-env2", "arn:td/aaaaaaa:2", Some(Verdict::Fail("x".into())));
    let s = r.step_spec(116, "aaaaaaa", "hash-aaaaaaa-env2", "arn:td/aaaaaaa:2", Some(Verdict::Fail("x".into())));
    assert_eq!(s.effects, vec![Effect::RollBack { task_definition: "arn:td/aaaaaaa".into() }]);
}

#[test]
fn a_restarted_controller_resumes_from_status_without_a_second_rollback() {
    let mut r = Run::new(true);
    r.promote(0, "aaaaaaa");
    r.step(100, "ccccccc", None);
    r.world.complete("COMPLETED");
    r.step(101, "ccccccc", None);
    // Restart: only the status survives. The next step continues the analysis.
    let saved = r.status.clone();
    r.status = serde_json::from_value(serde_json::to_value(&saved).unwrap()).unwrap();
    r.step(111, "ccccccc", Some(Verdict::Fail("x".into())));
    r.step(116, "ccccccc", Some(Verdict::Fail("x".into())));
    assert_eq!(r.status.phase, Phase::RolledBack);
    let after = r.updates;
    // Restart again after the rollback: nothing more happens.
    r.status = serde_json::from_value(serde_json::to_value(&r.status).unwrap()).unwrap();
    let s = r.step(130, "ccccccc", None);
    assert_eq!(s.effects, vec![]);
    assert_eq!(r.updates, after);
    assert_eq!(r.status.history.iter().filter(|h| h.outcome == RolloutOutcome::RolledBack).count(), 1);
}

#[test]
fn a_changed_task_definition_or_count_on_a_healthy_service_is_put_back() {
    let mut r = Run::new(false);
    r.promote(0, "aaaaaaa");
    r.world.service.as_mut().unwrap().task_definition = "arn:td/hand-made".into();
    let s = r.step(100, "aaaaaaa", None);
    assert_eq!(s.effects, vec![Effect::UpdateService { task_definition: "arn:td/aaaaaaa".into() }]);
    r.world.service.as_mut().unwrap().desired_count = 7;
    let s = r.step(200, "aaaaaaa", None);
    assert_eq!(s.effects.len(), 1);
    r.world.service.as_mut().unwrap().maximum_percent = Some(150);
    let s = r.step(300, "aaaaaaa", None);
    assert_eq!(s.effects.len(), 1, "deploymentConfiguration drift is put back too");
    let s = r.step(400, "aaaaaaa", None);
    assert_eq!(s.effects.len(), 0);
}

#[test]
fn a_spec_change_mid_rollout_supersedes_it() {
    let mut r = Run::new(true);
    r.promote(0, "aaaaaaa");
    r.step(100, "bbbbbbb", None);
    let s = r.step(105, "ccccccc", None);
    assert_eq!(s.status.history[0].outcome, RolloutOutcome::Superseded);
    assert_eq!(s.status.history[0].sha, "bbbbbbb");
    assert_eq!(s.status.rollout.as_ref().unwrap().sha, "ccccccc");
}

#[test]
fn history_is_newest_first_and_capped() {
    let mut r = Run::new(false);
    r.cfg.history_limit = 3;
    for (i, sha) in ["aaaaaaa", "bbbbbbb", "ccccccc", "ddddddd", "eeeeeee"].iter().enumerate() {
        r.promote(i as i64 * 100, sha);
    }
    let shas: Vec<_> = r.status.history.iter().map(|h| h.sha.as_str()).collect();
    assert_eq!(shas, ["eeeeeee", "ddddddd", "ccccccc"]);
}

#[test]
fn a_manual_rollback_points_back_at_stable() {
    let mut r = Run::new(true);
    r.promote(0, "aaaaaaa");
    r.step(100, "bbbbbbb", None);
    r.commands.rollback = Some("now".into());
    let s = r.step(101, "bbbbbbb", None);
    assert_eq!(s.effects, vec![Effect::RollBack { task_definition: "arn:td/aaaaaaa".into() }]);
    assert_eq!(s.status.handled_commands.get("rollback").map(String::as_str), Some("now"));
    assert_eq!(r.status.phase, Phase::RolledBack);
}

#[test]
fn the_headline_measurement_of_a_round_is_the_failing_one() {
    let m = |q: &str, v: &str| Measurement { at: t(0), query: q.into(), series: None, value: Some(0.0), verdict: v.into() };
    let round = [m("error-rate", "Fail"), m("latency", "Pass"), m("jobs", "Inconclusive")];
    assert_eq!(headline(&round).unwrap().query, "error-rate");
    assert_eq!(headline(&round[1..]).unwrap().query, "jobs");
    assert_eq!(headline(&round[1..2]).unwrap().query, "latency");
    assert!(headline(&[]).is_none());
}

/// ECS refuses the rollback (the stable task definition's role is gone, AccessDenied): the
/// status never says RolledBack, says why, and every step retries until ECS accepts it.
#[test]
fn a_refused_rollback_is_never_reported_as_rolled_back_and_is_retried() {
    let mut r = Run::new(true);
    r.promote(0, "aaaaaaa");
    r.step(100, "ccccccc", None);
    r.world.complete("COMPLETED");
    r.step(101, "ccccccc", None);
    r.refuse_rollback = Some("UpdateService: access denied".into());
    r.step(111, "ccccccc", Some(Verdict::Fail("x".into())));
    r.step(116, "ccccccc", Some(Verdict::Fail("x".into())));
    assert_eq!(r.status.phase, Phase::RollingBack);
    assert_eq!(r.status.current_sha.as_deref(), Some("ccccccc"));
    for now in [120, 125, 130] {
        let s = r.step(now, "ccccccc", None).clone();
        assert_eq!(s.effects, vec![Effect::RollBack { task_definition: "arn:td/aaaaaaa".into() }], "retried");
        let Readiness::Stalled { reason, message } = &s.readiness else { panic!("{:?}", s.readiness) };
        assert_eq!(*reason, reasons::ROLLBACK_FAILED);
        assert!(message.contains("access denied") && message.contains("may still run ccccccc"), "{message}");
        assert_eq!(r.status.phase, Phase::RollingBack);
        assert!(r.status.history.iter().all(|h| h.outcome != RolloutOutcome::RolledBack));
    }
    // A new spec waits for the rollback: nothing else happens first.
    let s = r.step(131, "ddddddd", None).clone();
    assert_eq!(s.effects, vec![Effect::RollBack { task_definition: "arn:td/aaaaaaa".into() }]);
    r.refuse_rollback = None;
    r.step(140, "ccccccc", None);
    assert_eq!(r.status.phase, Phase::RolledBack);
    assert_eq!(r.status.history.iter().filter(|h| h.outcome == RolloutOutcome::RolledBack).count(), 1);
}

/// A controller stopped after ECS accepted the rollback but before recording it: the next
/// step sees the service on the stable task definition and records RolledBack without a
/// second call.
#[test]
fn a_rollback_ecs_already_accepted_is_recorded_without_a_second_call() {
    let mut r = Run::new(true);
    r.promote(0, "aaaaaaa");
    r.step(100, "ccccccc", None);
    r.world.complete("COMPLETED");
    r.step(101, "ccccccc", None);
    r.step(111, "ccccccc", Some(Verdict::Fail("x".into())));
    r.refuse_rollback = Some("the controller died".into());
    r.step(116, "ccccccc", Some(Verdict::Fail("x".into())));
    // The call reached ECS after all.
    r.world.apply(&[Effect::UpdateService { task_definition: "arn:td/aaaaaaa".into() }], 2);
    r.refuse_rollback = None;
    let s = r.step(120, "ccccccc", None).clone();
    assert_eq!(s.effects, vec![]);
    assert_eq!(s.status.phase, Phase::RolledBack);
    assert_eq!(s.events.iter().filter(|e| e.1 == reasons::ROLLED_BACK).count(), 1);
}

fn unavailable() -> Verdict {
    Verdict::Unavailable("metrics backend unavailable for error-rate: connection refused".into())
}

/// Prometheus down: the rollout holds (no rollback, even past the deadline), says why, and
/// the deadline is extended by the outage once it answers again.
#[test]
fn an_unavailable_metrics_backend_holds_the_rollout_and_extends_the_deadline() {
    let mut r = Run::new(true);
    r.cfg.progress_deadline = Duration::from_secs(60);
    r.promote(0, "aaaaaaa");
    r.step(100, "bbbbbbb", None);
    r.world.complete("COMPLETED");
    r.step(101, "bbbbbbb", None);
    r.step(111, "bbbbbbb", Some(Verdict::Pass));
    for now in [120, 150, 200, 300] {
        let s = r.step(now, "bbbbbbb", Some(unavailable())).clone();
        assert_eq!(s.effects, vec![], "never rolled back because the backend is down");
        assert_eq!(s.status.phase, Phase::Analyzing);
        let Readiness::Stalled { reason, message } = &s.readiness else { panic!("{:?}", s.readiness) };
        assert_eq!(*reason, reasons::ANALYSIS_UNAVAILABLE);
        assert!(message.contains("connection refused"), "{message}");
    }
    // Back after a 190 s outage (120 → 310): the deadline (100 + 60) moves to 350.
    let s = r.step(310, "bbbbbbb", Some(Verdict::Inconclusive("no data".into()))).clone();
    assert_eq!(s.status.phase, Phase::Analyzing);
    assert_eq!(s.status.rollout.as_ref().map(|r| r.deadline_extension_seconds), Some(190));
    assert_eq!(r.step(340, "bbbbbbb", None).status.phase, Phase::Analyzing);
    r.step(351, "bbbbbbb", None);
    assert_eq!(r.status.phase, Phase::RolledBack, "the extended deadline still applies");
}

/// `onAnalysisUnavailable: Rollback`: an unavailable round counts as a failed one.
#[test]
fn with_the_rollback_policy_an_unavailable_round_counts_as_failed() {
    let mut r = Run::new(true);
    r.cfg.on_unavailable = UnavailablePolicy::Rollback;
    r.promote(0, "aaaaaaa");
    r.step(100, "bbbbbbb", None);
    r.world.complete("COMPLETED");
    r.step(101, "bbbbbbb", None);
    r.step(111, "bbbbbbb", Some(unavailable()));
    assert_eq!(r.status.phase, Phase::Analyzing, "failureLimit 1");
    r.step(116, "bbbbbbb", Some(unavailable()));
    assert_eq!(r.status.phase, Phase::RolledBack);
    assert!(r.status.history[0].reason.contains("onAnalysisUnavailable: Rollback"), "{}", r.status.history[0].reason);
}

/// A controller starved by load reads the service long after the deadline: a deployment
/// ECS says completed in time goes on to analysis; one that completed late does not.
#[test]
fn a_deployment_completed_before_its_deadline_is_never_failed_however_late_it_is_read() {
    let mut r = Run::new(true);
    r.cfg.progress_deadline = Duration::from_secs(60);
    r.promote(0, "aaaaaaa");
    r.step(100, "bbbbbbb", None);
    r.world.complete_at("COMPLETED", t(130));
    let s = r.step(900, "bbbbbbb", None).clone();
    assert_eq!(s.status.phase, Phase::Analyzing, "completed at 130, deadline 160: judged on what ECS says");
    assert_eq!(s.effects, vec![]);

    let mut late = Run::new(true);
    late.cfg.progress_deadline = Duration::from_secs(60);
    late.promote(0, "aaaaaaa");
    late.step(100, "ccccccc", None);
    late.world.complete_at("COMPLETED", t(200));
    late.step(900, "ccccccc", None);
    assert_eq!(late.status.phase, Phase::RolledBack, "completed after the deadline");
    assert!(late.status.history[0].reason.contains("progressDeadline"));
}

fn steps(list: &[(i32, u64)]) -> Vec<TrafficStep> {
    list.iter().map(|(w, b)| TrafficStep { weight: *w, bake: Duration::from_secs(*b) }).collect()
}

/// A run whose release "aaaaaaa" is stable, with these traffic steps from now on.
fn stepped(has_analysis: bool, list: &[(i32, u64)]) -> Run {
    let mut r = Run::new(has_analysis);
    r.cfg.steps = steps(list);
    r.promote(0, "aaaaaaa");
    r
}

fn shift(td: &str, weight: i32) -> Effect {
    Effect::Shift { task_definition: td.into(), stable: "arn:td/aaaaaaa".into(), weight }
}

#[test]
fn a_canary_takes_its_share_is_judged_then_takes_all_and_is_judged_again() {
    let mut r = stepped(true, &[(10, 30), (100, 0)]);
    let s = r.step(100, "bbbbbbb", None).clone();
    assert_eq!(s.effects, vec![shift("arn:td/bbbbbbb", 10)]);
    assert_eq!(s.status.rollout.as_ref().map(|r| (r.step, r.steps, r.weight)), Some((Some(1), Some(2), None)), "not yet accepted");
    let s = r.step(101, "bbbbbbb", None).clone();
    assert_eq!(s.status.phase, Phase::Analyzing);
    assert_eq!(s.status.rollout.as_ref().and_then(|r| r.weight), Some(10));
    assert_eq!(s.status.rollout.as_ref().and_then(|r| r.step_text.clone()).as_deref(), Some("1/2"));
    r.step(111, "bbbbbbb", Some(Verdict::Pass));
    let s = r.step(116, "bbbbbbb", Some(Verdict::Pass)).clone();
    assert_eq!(s.effects, vec![], "two passing rounds, but the bake (30s from 101) is not over");
    let Readiness::Reconciling { message, .. } = &s.readiness else { panic!() };
    assert!(message.contains("step 1/2 (10% of the traffic)") && message.contains("baking"), "{message}");
    let s = r.step(131, "bbbbbbb", Some(Verdict::Pass)).clone();
    assert_eq!(s.effects, vec![Effect::UpdateService { task_definition: "arn:td/bbbbbbb".into() }], "all the traffic");
    assert!(s.events.iter().any(|e| e.1 == reasons::STEP_PASSED), "{:?}", s.events);
    assert_eq!(s.status.rollout.as_ref().map(|r| (r.step, r.successes)), Some((Some(2), 0)), "judged afresh at 100 %");
    r.world.complete("COMPLETED");
    let s = r.step(132, "bbbbbbb", None).clone();
    assert_eq!((s.status.phase, s.status.rollout.as_ref().and_then(|r| r.weight)), (Phase::Analyzing, Some(100)));
    r.step(142, "bbbbbbb", Some(Verdict::Pass));
    let s = r.step(147, "bbbbbbb", Some(Verdict::Pass));
    assert_eq!(s.status.phase, Phase::Healthy);
    let steps: Vec<(i32, i32, &str)> = s.status.history[0].steps.iter().map(|x| (x.step, x.weight, x.result.as_str())).collect();
    assert_eq!(steps, [(1, 10, "Passed"), (2, 100, "Promoted")], "history records each step");
    assert_eq!(r.world.service.as_ref().map(|s| (s.task_definition.as_str(), s.canary.is_none())), Some(("arn:td/bbbbbbb", true)));
}

#[test]
fn a_failing_canary_goes_back_to_the_stable_version_with_no_share_left() {
    let mut r = stepped(true, &[(10, 0), (100, 0)]);
    r.step(100, "ccccccc", None);
    r.step(101, "ccccccc", None);
    let fail = || Verdict::Fail("error-rate = 0.2 is above max 0.01".into());
    r.step(111, "ccccccc", Some(fail()));
    let s = r.step(116, "ccccccc", Some(fail())).clone();
    assert_eq!(s.effects, vec![Effect::RollBack { task_definition: "arn:td/aaaaaaa".into() }]);
    assert_eq!(r.status.phase, Phase::RolledBack);
    assert_eq!(r.world.service.as_ref().map(|s| s.canary.clone()), Some(None));
    assert_eq!(r.status.history[0].outcome, RolloutOutcome::RolledBack);
    let steps: Vec<(i32, i32, &str)> = r.status.history[0].steps.iter().map(|x| (x.step, x.weight, x.result.as_str())).collect();
    assert_eq!(steps, [(1, 10, "RolledBack")]);
    let s = r.step(200, "ccccccc", None);
    assert_eq!(s.effects, vec![], "not retried");
}

#[test]
fn a_rollback_is_accepted_only_once_no_share_is_left_on_the_new_version() {
    let mut r = stepped(true, &[(10, 0), (100, 0)]);
    r.step(100, "ccccccc", None);
    r.step(101, "ccccccc", None);
    r.refuse_rollback = Some("throttled".into());
    r.commands.rollback = Some("1".into());
    r.step(105, "ccccccc", None);
    assert_eq!(r.status.phase, Phase::RollingBack);
    // The primary is the stable version already, but 10 % still goes to the new one.
    r.refuse_rollback = None;
    let s = r.step(107, "ccccccc", None).clone();
    assert_eq!(s.effects, vec![Effect::RollBack { task_definition: "arn:td/aaaaaaa".into() }]);
    assert_eq!(r.status.phase, Phase::RolledBack);
}

#[test]
fn linear_steps_in_turn_and_a_failure_at_step_two_rolls_back() {
    let mut r = stepped(true, &[(25, 0), (50, 0), (75, 0), (100, 0)]);
    r.step(100, "bbbbbbb", None);
    r.step(101, "bbbbbbb", None);
    r.step(111, "bbbbbbb", Some(Verdict::Pass));
    let s = r.step(116, "bbbbbbb", Some(Verdict::Pass)).clone();
    assert_eq!(s.effects, vec![shift("arn:td/bbbbbbb", 50)]);
    let s = r.step(117, "bbbbbbb", None).clone();
    assert_eq!(s.status.rollout.as_ref().map(|r| (r.step_text.clone(), r.weight)), Some((Some("2/4".into()), Some(50))));
    let fail = || Verdict::Fail("latency".into());
    r.step(127, "bbbbbbb", Some(fail()));
    r.step(132, "bbbbbbb", Some(fail()));
    assert_eq!(r.status.phase, Phase::RolledBack);
    assert_eq!(r.world.service.as_ref().map(|s| (s.task_definition.as_str(), s.canary.is_none())), Some(("arn:td/aaaaaaa", true)));
}

#[test]
fn blue_green_promotes_only_after_the_bake_and_a_manual_promote_skips_the_steps() {
    let mut r = Run::new(false);
    r.promote(0, "aaaaaaa");
    r.cfg.steps = steps(&[(100, 60)]);
    r.step(100, "bbbbbbb", None);
    r.world.complete("COMPLETED");
    let s = r.step(101, "bbbbbbb", None).clone();
    assert_eq!(s.status.phase, Phase::Analyzing, "baking");
    assert_eq!(s.requeue, Duration::from_secs(60), "woken when the bake ends");
    assert_eq!(r.step(150, "bbbbbbb", None).status.phase, Phase::Analyzing);
    let s = r.step(161, "bbbbbbb", None);
    assert_eq!(s.status.phase, Phase::Healthy);
    assert!(s.status.history[0].reason.contains("baked 60s"), "{:?}", s.status.history[0]);

    r.cfg.steps = steps(&[(5, 600), (100, 0)]);
    r.step(200, "ccccccc", None);
    r.step(201, "ccccccc", None);
    r.commands.promote = Some("1".into());
    let s = r.step(205, "ccccccc", None).clone();
    assert_eq!(s.effects, vec![Effect::UpdateService { task_definition: "arn:td/ccccccc".into() }], "all traffic at once");
    assert_eq!(s.status.phase, Phase::Healthy);
    let s = r.step(206, "ccccccc", None);
    assert_eq!(s.effects, vec![], "no drift after the promote");
}

#[test]
fn a_share_set_by_hand_on_a_stable_release_is_drift() {
    let mut r = stepped(false, &[(10, 0), (100, 0)]);
    if let Some(svc) = r.world.service.as_mut() {
        svc.canary = Some(("arn:td/zzz".into(), 30));
    }
    let s = r.step(50, "aaaaaaa", None);
    assert_eq!(s.effects, vec![Effect::UpdateService { task_definition: "arn:td/aaaaaaa".into() }]);
    assert!(s.events.iter().any(|e| e.1 == reasons::DRIFT_CORRECTED));
}

mod stepped {
    use super::*;
    use proptest::prelude::*;

    fn strategy() -> impl proptest::strategy::Strategy<Value = Vec<TrafficStep>> {
        prop_oneof![
            Just(vec![(100, 0)]),
            (1i32..100, 0u64..40).prop_map(|(p, b)| vec![(p, b), (100, 0)]),
            (1i32..60, 0u64..20).prop_map(|(s, b)| {
                let mut v: Vec<(i32, u64)> = (1..).map(|i| i * s).take_while(|w| *w < 100).map(|w| (w, b)).collect();
                v.push((100, 0));
                v
            }),
            (0u64..60).prop_map(|b| vec![(100, b)]),
        ]
        .prop_map(|v| steps(&v))
    }

    fn event() -> impl proptest::strategy::Strategy<Value = (u8, i64)> {
        (0u8..8, 1i64..20)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Whatever the verdicts, commands and timing under any strategy: the new version
        /// never gets more than its step's share, Healthy means all traffic on the stable
        /// version and RolledBack means no share left on the new one.
        #[test]
        fn traffic_never_runs_ahead_of_the_step_and_ends_whole(strategy in strategy(), events in proptest::collection::vec(event(), 1..40)) {
            let mut r = Run::new(true);
            r.promote(0, "aaaaaaa");
            r.cfg.steps = strategy;
            let mut now = 100;
            for (what, dt) in events {
                now += dt;
                let round = match what {
                    0..=2 => Some(Verdict::Pass),
                    3 => Some(Verdict::Fail("bad".into())),
                    4 => Some(Verdict::Inconclusive("no data".into())),
                    5 => {
                        r.world.complete("COMPLETED");
                        None
                    }
                    6 => {
                        r.commands.promote = Some(format!("p{now}"));
                        None
                    }
                    _ => {
                        r.commands.rollback = Some(format!("r{now}"));
                        None
                    }
                };
                let s = r.step(now, "bbbbbbb", round).clone();
                for e in &s.effects {
                    if let Effect::Shift { weight, .. } = e {
                        prop_assert!((1..100).contains(weight), "{e:?}");
                    }
                }
                let world = r.world.service.clone().unwrap_or_default();
                if let (Some((_, share)), Some(ro)) = (&world.canary, &r.status.rollout) {
                    let step = r.cfg.step_at(step_index(ro, &r.cfg));
                    prop_assert!(*share <= step.weight, "share {share} ahead of step {step:?}");
                }
                match r.status.phase {
                    Phase::Healthy | Phase::RolledBack => {
                        prop_assert_eq!(Some(world.task_definition.clone()), r.status.stable_task_definition_arn.clone());
                        prop_assert!(world.canary.is_none());
                    }
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn on_failure_pause_holds_the_step_until_a_promote_or_a_rollback_by_hand() {
    let mut r = Run::new(true);
    r.cfg.steps = steps(&[(10, 0), (100, 0)]);
    r.cfg.on_failure = FailurePolicy::Pause;
    r.cfg.progress_deadline = Duration::from_secs(60);
    r.promote(0, "aaaaaaa");
    r.step(100, "ccccccc", None);
    r.step(101, "ccccccc", None);
    let fail = || Verdict::Fail("error-rate = 0.2 is above max 0.01".into());
    r.step(111, "ccccccc", Some(fail()));
    let s = r.step(116, "ccccccc", Some(fail())).clone();
    assert_eq!(s.effects, vec![], "no rollback");
    assert_eq!(s.status.phase, Phase::Paused);
    assert!(s.events.iter().any(|e| e.1 == reasons::ANALYSIS_FAILED));
    let Readiness::Stalled { reason, message } = &s.readiness else { panic!("{:?}", s.readiness) };
    assert_eq!(*reason, reasons::ANALYSIS_FAILED);
    assert!(message.contains("step 1/2 (10% of the traffic)") && message.contains("error-rate = 0.2"), "{message}");
    assert_eq!(r.world.service.as_ref().and_then(|s| s.canary.clone()), Some(("arn:td/ccccccc".into(), 10)), "the share stays");
    // Long past the deadline: still held, nothing measured.
    let s = r.step(1000, "ccccccc", None).clone();
    assert_eq!((s.status.phase, s.effects.len()), (Phase::Paused, 0));
    assert!(!measurement_due(&s.status, t(1000), &r.cfg));
    // Promoted by hand: all traffic on the new version.
    r.commands.promote = Some("1".into());
    let s = r.step(1001, "ccccccc", None).clone();
    assert_eq!(s.effects, vec![Effect::UpdateService { task_definition: "arn:td/ccccccc".into() }]);
    assert_eq!(s.status.phase, Phase::Healthy);

    // The next one is held too, and rolled back by hand.
    r.step(1100, "ddddddd", None);
    r.step(1101, "ddddddd", None);
    r.step(1111, "ddddddd", Some(fail()));
    r.step(1116, "ddddddd", Some(fail()));
    assert_eq!(r.status.phase, Phase::Paused);
    r.commands.rollback = Some("1".into());
    let s = r.step(1120, "ddddddd", None).clone();
    assert_eq!(s.effects, vec![Effect::RollBack { task_definition: "arn:td/ccccccc".into() }]);
    assert_eq!(r.status.phase, Phase::RolledBack);
}

#[test]
fn a_dry_run_measurement_is_never_the_headline_while_a_deciding_one_exists() {
    let m = |q: &str, v: &str| Measurement { at: t(0), query: q.into(), series: None, value: Some(0.0), verdict: v.into() };
    let round = vec![m("try-me", &format!("Fail{DRY_RUN}")), m("error-rate", "Pass")];
    assert_eq!(headline(&round).map(|m| m.query.as_str()), Some("error-rate"));
    let only = vec![m("try-me", &format!("Fail{DRY_RUN}"))];
    assert_eq!(headline(&only).map(|m| m.query.as_str()), Some("try-me"));
}

/// ECS's own deployment of the service toward `td`, as DescribeServiceDeployments shows it.
fn ecs_at(r: &mut Run, td: &str, status: &str, weight: i32, hook: Option<&str>) {
    if let Some(svc) = r.world.service.as_mut() {
        svc.service_deployment = Some(ServiceDeploymentObs {
            arn: "arn:sd/1".into(),
            status: status.into(),
            reason: None,
            stage: Some(if weight == 100 { "POST_PRODUCTION_TRAFFIC_SHIFT" } else { "PRE_PRODUCTION_TRAFFIC_SHIFT" }.into()),
            task_definition: td.into(),
            weight: Some(weight),
            paused_hook: hook.map(String::from),
        });
    }
}

fn resume(hook: &str, td: &str) -> Effect {
    Effect::Resume { deployment: "arn:sd/1".into(), hook: hook.into(), task_definition: td.into(), rollback: false }
}

/// A run whose release "aaaaaaa" is stable, with ECS's own steps from now on.
fn native(list: &[(i32, u64)]) -> Run {
    let mut r = stepped(true, list);
    r.cfg.native = true;
    r
}

#[test]
fn an_ecs_canary_is_judged_at_each_pause_and_continued() {
    let b = "arn:td/bbbbbbb";
    let mut r = native(&[(5, 30), (100, 0)]);
    let s = r.step(100, "bbbbbbb", None).clone();
    assert_eq!(s.effects, vec![Effect::UpdateService { task_definition: b.into() }], "ECS shifts: one UpdateService starts it");
    ecs_at(&mut r, b, "IN_PROGRESS", 0, Some("h1"));
    let s = r.step(101, "bbbbbbb", None).clone();
    assert_eq!(s.effects, vec![resume("h1", b)], "nothing to judge before the first shift");
    assert_eq!(s.status.phase, Phase::Progressing);
    ecs_at(&mut r, b, "IN_PROGRESS", 5, Some("h2"));
    let s = r.step(102, "bbbbbbb", None).clone();
    let ro = s.status.rollout.clone().unwrap();
    assert_eq!(
        (s.status.phase, ro.step, ro.weight, ro.service_deployment_arn.as_deref()),
        (Phase::Analyzing, Some(1), Some(5), Some("arn:sd/1"))
    );
    assert_eq!(ro.stage.as_deref(), Some("PRE_PRODUCTION_TRAFFIC_SHIFT"));
    r.step(112, "bbbbbbb", Some(Verdict::Pass));
    let s = r.step(117, "bbbbbbb", Some(Verdict::Pass)).clone();
    assert_eq!(s.effects, vec![], "the bake (30s from 102) is not over: ECS stays paused");
    let s = r.step(132, "bbbbbbb", Some(Verdict::Pass)).clone();
    assert_eq!(s.effects, vec![resume("h2", b)], "step 1 passed: continued to the next shift");
    assert!(s.events.iter().any(|e| e.1 == reasons::STEP_PASSED));
    // A read from before the CONTINUE took effect never takes the rollout a step back.
    ecs_at(&mut r, b, "IN_PROGRESS", 5, Some("h2"));
    let s = r.step(133, "bbbbbbb", None).clone();
    assert_eq!((s.effects.clone(), s.status.rollout.as_ref().and_then(|r| r.step)), (vec![], Some(2)));
    ecs_at(&mut r, b, "IN_PROGRESS", 100, Some("h3"));
    let s = r.step(134, "bbbbbbb", None).clone();
    assert_eq!((s.status.phase, s.status.rollout.as_ref().and_then(|r| r.weight)), (Phase::Analyzing, Some(100)));
    r.step(144, "bbbbbbb", Some(Verdict::Pass));
    let s = r.step(149, "bbbbbbb", Some(Verdict::Pass)).clone();
    assert_eq!(s.effects, vec![resume("h3", b)]);
    assert_eq!((s.status.phase, s.status.stable_task_definition_arn.as_deref()), (Phase::Healthy, Some(b)));
    let steps: Vec<(i32, i32, &str)> = s.status.history[0].steps.iter().map(|x| (x.step, x.weight, x.result.as_str())).collect();
    assert_eq!(steps, [(1, 5, "Passed"), (2, 100, "Promoted")]);
    assert_eq!(s.requeue, Duration::from_secs(2), "ECS still cleaning up: looked at again soon");
    // The next release waits for that deployment to end instead of cutting its clean-up short.
    let s = r.step(150, "ccccccc", None).clone();
    assert_eq!((s.effects.clone(), s.status.phase), (vec![], Phase::Healthy), "ECS still deploying bbbbbbb");
    ecs_at(&mut r, b, "SUCCESSFUL", 100, None);
    let s = r.step(152, "ccccccc", None).clone();
    assert_eq!(s.effects, vec![Effect::UpdateService { task_definition: "arn:td/ccccccc".into() }]);
}

#[test]
fn a_breach_at_an_ecs_pause_rolls_the_deployment_back_there() {
    let b = "arn:td/bbbbbbb";
    let mut r = native(&[(5, 0), (100, 0)]);
    r.step(100, "bbbbbbb", None);
    ecs_at(&mut r, b, "IN_PROGRESS", 5, Some("h2"));
    r.step(101, "bbbbbbb", None);
    r.step(111, "bbbbbbb", Some(Verdict::Fail("error-rate = 0.3 is above max 0.01".into())));
    let s = r.step(116, "bbbbbbb", Some(Verdict::Fail("error-rate = 0.3 is above max 0.01".into()))).clone();
    assert_eq!(
        s.effects,
        vec![Effect::Halt { deployment: "arn:sd/1".into(), hook: Some("h2".into()), task_definition: "arn:td/aaaaaaa".into() }],
        "ContinueServiceDeployment ROLLBACK at the pause"
    );
    assert_eq!(r.status.phase, Phase::RolledBack);
    assert_eq!(r.status.history[0].outcome, RolloutOutcome::RolledBack);
    // Later passes see ECS taking the traffic back: nothing more to call.
    let s = r.step(120, "bbbbbbb", None).clone();
    assert_eq!((s.effects.clone(), s.status.phase), (vec![], Phase::RolledBack));
}

#[test]
fn a_rollback_by_hand_between_pauses_stops_the_deployment() {
    let b = "arn:td/bbbbbbb";
    let mut r = native(&[(25, 0), (50, 0), (75, 0), (100, 0)]);
    r.step(100, "bbbbbbb", None);
    ecs_at(&mut r, b, "IN_PROGRESS", 40, None);
    r.commands.rollback = Some("1".into());
    let s = r.step(101, "bbbbbbb", None).clone();
    assert_eq!(
        s.effects,
        vec![Effect::Halt { deployment: "arn:sd/1".into(), hook: None, task_definition: "arn:td/aaaaaaa".into() }],
        "StopServiceDeployment ROLLBACK while ECS shifts"
    );
    assert_eq!(r.status.phase, Phase::RolledBack);
}

#[test]
fn ecs_rolling_back_by_itself_is_recorded_without_a_call() {
    let b = "arn:td/bbbbbbb";
    let mut r = native(&[(5, 0), (100, 0)]);
    r.step(100, "bbbbbbb", None);
    ecs_at(&mut r, b, "ROLLBACK_IN_PROGRESS", 0, None);
    if let Some(d) = r.world.service.as_mut().and_then(|s| s.service_deployment.as_mut()) {
        d.reason = Some("lifecycle hook timed out".into());
    }
    let s = r.step(101, "bbbbbbb", None).clone();
    assert_eq!(s.effects, vec![]);
    assert_eq!(s.status.phase, Phase::RolledBack);
    assert!(s.status.history[0].reason.contains("ROLLBACK_IN_PROGRESS: lifecycle hook timed out"), "{:?}", s.status.history[0]);
    assert_eq!(s.status.rejected_spec_hash.as_deref(), Some("hash-bbbbbbb"), "not retried");
}

#[test]
fn a_promote_at_an_ecs_pause_continues_it_and_every_later_pause() {
    let b = "arn:td/bbbbbbb";
    let mut r = native(&[(5, 600), (100, 0)]);
    r.step(100, "bbbbbbb", None);
    ecs_at(&mut r, b, "IN_PROGRESS", 5, Some("h2"));
    r.step(101, "bbbbbbb", None);
    r.commands.promote = Some("1".into());
    let s = r.step(102, "bbbbbbb", None).clone();
    assert_eq!((s.effects.clone(), s.status.phase), (vec![resume("h2", b)], Phase::Healthy));
    ecs_at(&mut r, b, "IN_PROGRESS", 100, Some("h3"));
    let s = r.step(103, "bbbbbbb", None).clone();
    assert_eq!(s.effects, vec![resume("h3", b)], "the stable revision's deployment is continued");
}

#[test]
fn a_first_version_on_ecs_is_judged_once_ecs_reports_it_successful() {
    let mut r = Run::new(true);
    r.cfg.native = true;
    r.cfg.steps = steps(&[(5, 0), (100, 0)]);
    let s = r.step(0, "aaaaaaa", None).clone();
    assert_eq!(s.effects, vec![Effect::CreateService { task_definition: "arn:td/aaaaaaa".into() }]);
    ecs_at(&mut r, "arn:td/aaaaaaa", "SUCCESSFUL", 100, None);
    let s = r.step(1, "aaaaaaa", None).clone();
    assert_eq!(s.status.phase, Phase::Analyzing, "never promoted unjudged");
    r.step(11, "aaaaaaa", Some(Verdict::Pass));
    assert_eq!(r.step(16, "aaaaaaa", Some(Verdict::Pass)).status.phase, Phase::Healthy);
}

mod native_property {
    use super::*;
    use proptest::prelude::*;

    /// ECS's side of a native deployment, as the property drives it: after a CONTINUE it
    /// shifts to the next share and pauses again (before each shift, and after the last one);
    /// past the last pause it ends SUCCESSFUL.
    fn ecs_moves(r: &mut Run, n: &mut usize) -> bool {
        let shares: Vec<i32> = r.cfg.steps.iter().map(|s| s.weight).collect();
        let Some(d) = r.world.service.as_mut().and_then(|s| s.service_deployment.as_mut()) else { return false };
        if !d.in_progress() || d.paused_hook.is_some() {
            return false;
        }
        let at = d.weight.unwrap_or(0);
        *n += 1;
        if at >= 100 {
            d.status = "SUCCESSFUL".into();
            return true;
        }
        d.weight = Some(shares.iter().copied().find(|w| *w > at).unwrap_or(100));
        d.paused_hook = Some(format!("h{n}"));
        true
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Whatever the verdicts, commands, timing and ECS's pace: a pause with traffic on
        /// the new revision is continued only after the analysis passed there (or a promote
        /// by hand), only the pause ECS shows is ever resumed, and Healthy / RolledBack leave
        /// the service on the stable revision.
        #[test]
        fn ecs_never_passes_a_step_unjudged(
            shares in prop_oneof![Just(vec![(100, 0)]), (1i32..100).prop_map(|p| vec![(p, 0), (100, 0)]), (10i32..50).prop_map(|s| {
                let mut v: Vec<(i32, u64)> = (1..).map(|i| i * s).take_while(|w| *w < 100).map(|w| (w, 0)).collect();
                v.push((100, 0));
                v
            })],
            events in proptest::collection::vec((0u8..8, 1i64..10), 1..50),
        ) {
            let mut r = native(&shares);
            let td = "arn:td/bbbbbbb";
            let mut now = 100;
            let mut n = 0;
            let mut passes_here = 0;
            let mut promoted_by_hand = false;
            for (what, dt) in events {
                now += dt;
                let round = match what {
                    0..=2 => Some(Verdict::Pass),
                    3 => Some(Verdict::Fail("bad".into())),
                    4 => {
                        if ecs_moves(&mut r, &mut n) {
                            passes_here = 0;
                        }
                        None
                    }
                    5 => Some(Verdict::Inconclusive("no data".into())),
                    6 => {
                        r.commands.promote = Some(format!("p{now}"));
                        promoted_by_hand = true;
                        None
                    }
                    _ => {
                        r.commands.rollback = Some(format!("r{now}"));
                        None
                    }
                };
                let judged = measurement_due(&r.status, t(now), &r.cfg);
                if matches!(round, Some(Verdict::Pass)) && judged {
                    passes_here += 1;
                }
                let shown = r.world.service.as_ref().and_then(|s| s.service_deployment.clone());
                let s = r.step(now, "bbbbbbb", if judged { round } else { None }).clone();
                for e in &s.effects {
                    prop_assert!(!matches!(e, Effect::Shift { .. }), "ECS shifts, not shipshape: {e:?}");
                    if let Effect::Resume { hook, rollback: false, .. } = e {
                        let d = shown.clone().unwrap_or_default();
                        prop_assert_eq!(Some(hook.clone()), d.paused_hook.clone(), "only the pause ECS shows");
                        if d.weight.unwrap_or(0) > 0 && d.task_definition == td {
                            prop_assert!(passes_here >= r.cfg.successful_runs || promoted_by_hand, "step at {:?} passed unjudged", d.weight);
                        }
                    }
                }
                if s.effects.iter().any(|e| matches!(e, Effect::UpdateService { task_definition } if task_definition == td)) {
                    if let Some(svc) = r.world.service.as_mut() {
                        svc.service_deployment = Some(ServiceDeploymentObs {
                            arn: "arn:sd/1".into(), status: "IN_PROGRESS".into(), reason: None, stage: None,
                            task_definition: td.into(), weight: Some(0), paused_hook: Some("h0".into()),
                        });
                    }
                }
                let svc = r.world.service.clone().unwrap_or_default();
                match r.status.phase {
                    Phase::Healthy | Phase::RolledBack => {
                        prop_assert_eq!(Some(svc.task_definition.clone()), r.status.stable_task_definition_arn.clone());
                        if r.status.phase == Phase::RolledBack {
                            prop_assert!(svc.service_deployment.as_ref().is_none_or(|d| !d.in_progress() || d.task_definition != td));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn migrations(irreversible: bool, snapshot: Option<&str>) -> Vec<PreDeploy> {
    vec![
        PreDeploy { name: "migrate".into(), timeout: Duration::from_secs(60), snapshot: snapshot.map(String::from), irreversible },
        PreDeploy { name: "seed".into(), timeout: Duration::from_secs(60), snapshot: None, irreversible: false },
    ]
}

fn task(status: &str, exit: Option<i32>) -> Option<StepObs> {
    Some(StepObs::Task(Some(TaskObs {
        arn: "arn:task/1".into(),
        last_status: status.into(),
        exit_code: exit,
        stop_code: exit.map(|_| "EssentialContainerExited".into()),
        stopped_reason: exit.filter(|c| *c != 0).map(|_| "Essential container in task exited".into()),
        log_stream: Some("svc/svc/1".into()),
        log_tail: exit.map(|c| vec![format!("exit {c}")]).unwrap_or_default(),
        created_at: None,
    })))
}

#[test]
fn steps_before_traffic_run_in_order_and_the_traffic_moves_only_after_the_last() {
    let mut r = Run::new(false);
    r.promote(0, "aaaaaaa");
    r.cfg.pre_deploy = migrations(false, None);
    let s = r.step(100, "bbbbbbb", None).clone();
    assert_eq!(s.effects, vec![Effect::RunTask { step: 0, task_definition: "arn:td/bbbbbbb".into() }]);
    assert_eq!(s.status.phase, Phase::Progressing);
    assert_eq!(s.status.current_sha.as_deref(), Some("aaaaaaa"), "nothing moved yet");
    assert_eq!(s.status.task_definition_arn.as_deref(), Some("arn:td/aaaaaaa"));
    let Readiness::Reconciling { reason, message } = &s.readiness else { panic!("{:?}", s.readiness) };
    assert_eq!(*reason, reasons::PRE_DEPLOY);
    assert!(message.contains("preDeploy step migrate (1/2)"), "{message}");
    assert_eq!(s.requeue, Duration::from_millis(500));
    // ECS has not shown the task yet: asked again (same idempotency token in the controller).
    let s = r.step(101, "bbbbbbb", None).clone();
    assert_eq!(s.effects, vec![Effect::RunTask { step: 0, task_definition: "arn:td/bbbbbbb".into() }]);
    r.obs = task("RUNNING", None);
    let s = r.step(102, "bbbbbbb", None).clone();
    assert!(s.effects.is_empty(), "{:?}", s.effects);
    assert_eq!(s.status.rollout.as_ref().unwrap().pre_deploy[0].task_arn.as_deref(), Some("arn:task/1"));
    r.obs = task("STOPPED", Some(0));
    let s = r.step(110, "bbbbbbb", None).clone();
    assert_eq!(s.effects, vec![Effect::RunTask { step: 1, task_definition: "arn:td/bbbbbbb".into() }]);
    assert!(s.events.iter().any(|e| e.1 == reasons::PRE_DEPLOY_SUCCEEDED && e.2.contains("migrate succeeded (exit 0) in 10s")));
    r.obs = None;
    r.step(111, "bbbbbbb", None);
    r.obs = task("STOPPED", Some(0));
    let s = r.step(112, "bbbbbbb", None).clone();
    assert_eq!(s.effects, vec![Effect::UpdateService { task_definition: "arn:td/bbbbbbb".into() }]);
    assert_eq!(s.status.current_sha.as_deref(), Some("bbbbbbb"));
    assert_eq!(s.status.rollout.as_ref().unwrap().step_started_at, Some(t(112)), "the deadline counts from the traffic");
    r.obs = None;
    r.world.complete("COMPLETED");
    let s = r.step(113, "bbbbbbb", None).clone();
    assert_eq!(s.status.phase, Phase::Healthy);
    let phases: Vec<_> = s.status.history[0].pre_deploy.iter().map(|p| (p.name.as_str(), p.phase.as_str())).collect();
    assert_eq!(phases, [("migrate", "Succeeded"), ("seed", "Succeeded")]);
}

#[test]
fn a_failing_step_fails_the_rollout_with_the_service_untouched_and_is_not_retried() {
    let mut r = Run::new(false);
    r.promote(0, "aaaaaaa");
    r.cfg.pre_deploy = migrations(false, None);
    let updates = r.updates;
    r.step(100, "bbbbbbb", None);
    r.obs = task("STOPPED", Some(3));
    let s = r.step(105, "bbbbbbb", None).clone();
    assert!(s.effects.is_empty(), "no traffic, nothing to roll back: {:?}", s.effects);
    assert_eq!(s.status.phase, Phase::Failed);
    assert_eq!(s.status.current_sha.as_deref(), Some("aaaaaaa"));
    let (_, reason, msg) = s.events.iter().find(|e| e.1 == reasons::PRE_DEPLOY_FAILED).expect("event");
    assert_eq!(*reason, reasons::PRE_DEPLOY_FAILED);
    for part in ["step migrate failed: exited 3", "Essential container in task exited", "arn:task/1", "log stream svc/svc/1", "exit 3"] {
        assert!(msg.contains(part), "{part} in {msg}");
    }
    let Readiness::Stalled { reason, message } = &s.readiness else { panic!("{:?}", s.readiness) };
    assert_eq!(*reason, reasons::PRE_DEPLOY_FAILED);
    assert!(message.contains("aaaaaaa still serves"), "{message}");
    assert_eq!(s.status.history[0].outcome, RolloutOutcome::Failed);
    assert_eq!(s.status.history[0].pre_deploy[0].exit_code, Some(3));
    r.obs = None;
    for now in [200, 300] {
        let s = r.step(now, "bbbbbbb", None).clone();
        assert!(s.effects.is_empty(), "not retried: {:?}", s.effects);
        assert_eq!(s.status.phase, Phase::Failed);
    }
    assert_eq!(r.updates, updates, "the service was never touched");
    // The retry annotation runs the steps again.
    r.commands.retry = Some("1".into());
    let s = r.step(400, "bbbbbbb", None).clone();
    assert_eq!(s.effects, vec![Effect::RunTask { step: 0, task_definition: "arn:td/bbbbbbb".into() }]);
}

#[test]
fn a_step_past_its_timeout_is_stopped_and_fails_even_if_it_then_exits_0() {
    let mut r = Run::new(false);
    r.promote(0, "aaaaaaa");
    r.cfg.pre_deploy = migrations(false, None);
    r.step(100, "bbbbbbb", None);
    r.obs = task("RUNNING", None);
    assert!(r.step(159, "bbbbbbb", None).effects.is_empty());
    let s = r.step(160, "bbbbbbb", None).clone();
    assert_eq!(s.effects, vec![Effect::StopTask { task: "arn:task/1".into(), task_definition: "arn:td/bbbbbbb".into() }]);
    r.obs = task("STOPPED", Some(0));
    let s = r.step(161, "bbbbbbb", None).clone();
    assert_eq!(s.status.phase, Phase::Failed);
    assert!(s.status.history[0].reason.contains("timed out after 60s"), "{}", s.status.history[0].reason);
}

#[test]
fn a_snapshot_is_taken_and_waited_for_before_its_step() {
    let mut r = Run::new(false);
    r.promote(0, "aaaaaaa");
    r.cfg.pre_deploy = migrations(false, Some("orders-db"));
    let s = r.step(100, "bbbbbbb", None).clone();
    let name = snapshot_name("orders-db", "bbbbbbb", t(100));
    assert!(name.starts_with("orders-db-pre-bbbbbbb-"), "{name}");
    assert_eq!(
        s.effects,
        vec![Effect::Snapshot { database: "orders-db".into(), name: name.clone(), task_definition: "arn:td/bbbbbbb".into() }]
    );
    r.obs = Some(StepObs::Snapshot(Some("creating".into())));
    assert!(r.step(130, "bbbbbbb", None).effects.is_empty(), "waits while it is taken");
    r.obs = Some(StepObs::Snapshot(Some("available".into())));
    let s = r.step(200, "bbbbbbb", None).clone();
    assert_eq!(s.effects, vec![Effect::RunTask { step: 0, task_definition: "arn:td/bbbbbbb".into() }]);
    assert_eq!(s.status.rollout.as_ref().unwrap().pre_deploy[0].snapshot.as_deref(), Some(name.as_str()));
    assert!(s.events.iter().any(|e| e.1 == reasons::PRE_DEPLOY_SNAPSHOT && e.2.contains(&name)));
    // The step's timeout counts from its task, not from the snapshot.
    r.obs = task("RUNNING", None);
    assert!(r.step(255, "bbbbbbb", None).effects.is_empty());
}

#[test]
fn after_an_irreversible_step_a_failing_verdict_holds_and_only_a_person_rolls_back() {
    let mut r = Run::new(true);
    r.promote(0, "aaaaaaa");
    r.cfg.pre_deploy = migrations(true, Some("orders-db"));
    r.step(100, "bbbbbbb", None);
    r.obs = Some(StepObs::Snapshot(Some("available".into())));
    r.step(101, "bbbbbbb", None);
    r.obs = task("STOPPED", Some(0));
    r.step(102, "bbbbbbb", None);
    r.obs = None;
    r.step(103, "bbbbbbb", None);
    r.obs = task("STOPPED", Some(0));
    let s = r.step(104, "bbbbbbb", None).clone();
    assert_eq!(s.effects, vec![Effect::UpdateService { task_definition: "arn:td/bbbbbbb".into() }]);
    r.obs = None;
    r.world.complete("COMPLETED");
    r.step(105, "bbbbbbb", None);
    let fail = || Verdict::Fail("error-rate = 0.2 is above max 0.01".into());
    r.step(115, "bbbbbbb", Some(fail()));
    let s = r.step(120, "bbbbbbb", Some(fail())).clone();
    assert!(s.effects.is_empty(), "no rollback: {:?}", s.effects);
    assert_eq!(s.rolled_back, None);
    assert_eq!(s.status.phase, Phase::Paused);
    let Readiness::Stalled { reason, message } = &s.readiness else { panic!("{:?}", s.readiness) };
    assert_eq!(*reason, reasons::ROLLBACK_UNSAFE);
    for part in ["irreversible preDeploy step migrate", "orders-db-pre-bbbbbbb-", "error-rate = 0.2"] {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert!(s.events.iter().any(|e| e.0 && e.1 == reasons::ROLLBACK_UNSAFE));
    // Held: no rollback however long it waits.
    for now in [200, 900, 5000] {
        let s = r.step(now, "bbbbbbb", None).clone();
        assert!(s.effects.is_empty() && s.status.phase == Phase::Paused, "{:?}", s.effects);
    }
    // A person decides.
    r.commands.rollback = Some("1".into());
    let s = r.step(6000, "bbbbbbb", None).clone();
    assert_eq!(s.effects, vec![Effect::RollBack { task_definition: "arn:td/aaaaaaa".into() }]);
    assert_eq!(r.status.phase, Phase::RolledBack);
}

#[test]
fn a_reversible_step_changes_nothing_about_rollback_and_promote_waits_for_the_steps() {
    let mut r = Run::new(true);
    r.promote(0, "aaaaaaa");
    r.cfg.pre_deploy = migrations(false, None);
    r.step(100, "bbbbbbb", None);
    r.commands.promote = Some("1".into());
    r.obs = task("RUNNING", None);
    let s = r.step(101, "bbbbbbb", None).clone();
    assert!(s.effects.is_empty(), "promote does not skip the steps: {:?}", s.effects);
    assert_eq!(s.status.phase, Phase::Progressing);
    r.obs = task("STOPPED", Some(0));
    r.step(102, "bbbbbbb", None);
    r.obs = None;
    r.step(103, "bbbbbbb", None);
    r.obs = task("STOPPED", Some(0));
    r.step(104, "bbbbbbb", None);
    r.obs = None;
    r.world.complete("COMPLETED");
    r.step(105, "bbbbbbb", None);
    let fail = || Verdict::Fail("error-rate = 0.2 is above max 0.01".into());
    r.step(115, "bbbbbbb", Some(fail()));
    let s = r.step(120, "bbbbbbb", Some(fail())).clone();
    assert_eq!(s.effects, vec![Effect::RollBack { task_definition: "arn:td/aaaaaaa".into() }]);
}

#[test]
fn a_lambda_step_whose_outcome_was_never_recorded_fails_instead_of_running_twice() {
    let mut r = Run::new(false);
    r.promote(0, "aaaaaaa");
    r.cfg.pre_deploy = migrations(false, None);
    r.step(100, "bbbbbbb", None);
    r.obs = Some(StepObs::Lost);
    let s = r.step(101, "bbbbbbb", None).clone();
    assert!(s.effects.is_empty(), "not invoked again: {:?}", s.effects);
    assert_eq!(s.status.phase, Phase::Failed);
    assert!(s.status.history[0].reason.contains("outcome is unknown"), "{}", s.status.history[0].reason);
}

#[test]
fn with_snapshot_retention_older_snapshots_are_pruned_once_the_new_one_is_available() {
    let mut r = Run::new(false);
    r.promote(0, "aaaaaaa");
    r.cfg.pre_deploy = migrations(false, Some("orders-db"));
    r.cfg.snapshot_retention = Some(2);
    let s = r.step(100, "bbbbbbb", None).clone();
    assert!(!s.effects.iter().any(|e| matches!(e, Effect::PruneSnapshots { .. })), "not before the new one is available");
    r.obs = Some(StepObs::Snapshot(Some("available".into())));
    let s = r.step(130, "bbbbbbb", None).clone();
    let newest = snapshot_name("orders-db", "bbbbbbb", t(100));
    assert_eq!(
        s.effects,
        vec![
            Effect::RunTask { step: 0, task_definition: "arn:td/bbbbbbb".into() },
            Effect::PruneSnapshots { database: "orders-db".into(), keep: 2, newest, task_definition: "arn:td/bbbbbbb".into() },
        ]
    );
}

#[test]
fn past_an_irreversible_step_a_later_rollout_is_not_rolled_back_either_and_a_running_step_ends_before_it_starts() {
    let mut r = Run::new(true);
    r.promote(0, "aaaaaaa");
    r.cfg.pre_deploy = migrations(true, None);
    r.step(100, "bbbbbbb", None);
    r.obs = task("STOPPED", Some(0));
    r.step(101, "bbbbbbb", None);
    r.obs = None;
    r.step(102, "bbbbbbb", None);
    r.obs = task("STOPPED", Some(0));
    let s = r.step(103, "bbbbbbb", None).clone();
    assert!(s.status.rollback_unsafe.as_deref().is_some_and(|u| u.contains("migrate of bbbbbbb")), "{:?}", s.status.rollback_unsafe);
    r.obs = None;
    r.world.complete("COMPLETED");
    r.step(104, "bbbbbbb", None);
    // A fix forward (no steps) supersedes it; it fails its analysis: held, not rolled back.
    r.cfg.pre_deploy = vec![];
    r.step(110, "ccccccc", None);
    r.world.complete("COMPLETED");
    r.step(111, "ccccccc", None);
    let fail = || Verdict::Fail("error-rate = 0.2 is above max 0.01".into());
    r.step(121, "ccccccc", Some(fail()));
    let s = r.step(126, "ccccccc", Some(fail())).clone();
    assert!(s.effects.is_empty(), "{:?}", s.effects);
    assert!(matches!(&s.readiness, Readiness::Stalled { reason, .. } if *reason == reasons::ROLLBACK_UNSAFE), "{:?}", s.readiness);
    // Promoting a later version clears it.
    r.commands.promote = Some("1".into());
    let s = r.step(130, "ccccccc", None).clone();
    assert_eq!(s.status.phase, Phase::Healthy);
    assert_eq!(s.status.rollback_unsafe, None);

    // A step still running when its rollout is superseded ends before the next rollout starts.
    r.cfg.pre_deploy = migrations(false, None);
    r.step(200, "ddddddd", None);
    r.obs = task("RUNNING", None);
    r.step(201, "ddddddd", None);
    let s = r.step(202, "eeeeeee", None).clone();
    assert!(s.effects.is_empty(), "nothing starts while ddddddd's step runs: {:?}", s.effects);
    assert!(matches!(&s.readiness, Readiness::Reconciling { message, .. } if message.contains("superseded")), "{:?}", s.readiness);
    r.obs = task("STOPPED", Some(0));
    let s = r.step(203, "eeeeeee", None).clone();
    assert_eq!(s.effects, vec![Effect::RunTask { step: 0, task_definition: "arn:td/eeeeeee".into() }]);
}

#[test]
fn a_held_sha_waits_with_one_event_keeps_stable_serving_and_starts_when_released() {
    use crate::core::promotion::Hold;
    let mut r = Run::new(false);
    r.promote(0, "aaaaaaa");
    assert_eq!(r.status.phase, Phase::Healthy);
    let stable_td = r.world.service.as_ref().map(|s| s.task_definition.clone());
    let until = t(600);
    r.hold = Some(Hold {
        reason: reasons::WAITING_FOR_UPSTREAM,
        message: "soaking in staging".into(),
        until: Some(until),
        upstream: Some("staging/api".into()),
    });
    let d = r.step(100, "bbbbbbb", None).clone();
    assert_eq!(r.status.phase, Phase::Pending);
    assert!(d.effects.is_empty(), "nothing starts: {:?}", d.effects);
    assert_eq!(d.events.iter().filter(|e| e.1 == reasons::WAITING_FOR_UPSTREAM).count(), 1);
    assert_eq!(r.status.waiting.as_ref().map(|w| (w.sha.as_str(), w.until)), Some(("bbbbbbb", Some(until))));
    assert!(matches!(d.readiness, Readiness::Reconciling { reason: reasons::WAITING_FOR_UPSTREAM, .. }));
    assert!(d.requeue <= Duration::from_secs(60), "woken by the soak's end at the latest at the drift interval: {:?}", d.requeue);
    let d = r.step(590, "bbbbbbb", None).clone();
    assert!(d.events.is_empty(), "one Event per wait, not per pass");
    assert_eq!(d.requeue, Duration::from_millis(8_500), "woken ahead of the soak's end, to read AWS before it");
    assert_eq!(r.world.service.as_ref().map(|s| s.task_definition.clone()), stable_td, "stable keeps serving");
    // A refusal is Stalled and says so once.
    r.hold = Some(Hold { reason: reasons::UPSTREAM_REJECTED, message: "rolled back in staging".into(), until: None, upstream: None });
    let d = r.step(600, "bbbbbbb", None).clone();
    assert!(matches!(d.readiness, Readiness::Stalled { reason: reasons::UPSTREAM_REJECTED, .. }));
    assert_eq!(d.events.iter().filter(|e| e.0 && e.1 == reasons::UPSTREAM_REJECTED).count(), 1);
    // Released: it starts, and the wait is gone from status.
    r.hold = None;
    let d = r.step(610, "bbbbbbb", None).clone();
    assert!(d.effects.iter().any(|e| matches!(e, Effect::UpdateService { .. })), "{:?}", d.effects);
    assert_eq!(r.status.waiting, None);
}

#[test]
fn a_hold_never_holds_a_rollback() {
    use crate::core::promotion::Hold;
    let mut r = Run::new(true);
    r.promote(0, "aaaaaaa");
    r.step(120, "bbbbbbb", None);
    r.world.complete("COMPLETED");
    r.step(121, "bbbbbbb", None);
    // A window closes mid-rollout: the failing rollout is still rolled back.
    r.hold = Some(Hold { reason: reasons::WAITING_FOR_WINDOW, message: "closed".into(), until: None, upstream: None });
    r.step(131, "bbbbbbb", Some(Verdict::Fail("x".into())));
    r.step(136, "bbbbbbb", Some(Verdict::Fail("x".into())));
    assert_eq!(r.status.phase, Phase::RolledBack, "a window never blocks a rollback");
}

#[test]
fn a_newer_spec_that_must_wait_lets_the_rollout_under_way_finish_instead_of_superseding_it() {
    use crate::core::promotion::Hold;
    let mut r = Run::new(true);
    r.promote(0, "aaaaaaa");
    r.step(120, "bbbbbbb", None);
    r.world.complete("COMPLETED");
    r.step(121, "bbbbbbb", None);
    assert_eq!(r.status.rollout.as_ref().map(|ro| ro.sha.as_str()), Some("bbbbbbb"));
    let b_td = r.status.rollout.as_ref().and_then(|ro| ro.task_definition_arn.clone());
    // GitOps moves on to ccccccc, which waits for its upstream: bbbbbbb is still judged.
    r.hold = Some(Hold { reason: reasons::WAITING_FOR_UPSTREAM, message: "soaking".into(), until: None, upstream: None });
    let d = r.step(131, "ccccccc", Some(Verdict::Pass)).clone();
    assert!(d.events.iter().all(|e| e.1 != reasons::DRIFT_CORRECTED), "the rollout under way is not drift: {:?}", d.events);
    assert_eq!(r.status.rollout.as_ref().map(|ro| ro.sha.as_str()), Some("bbbbbbb"), "not superseded");
    assert!(r.status.history.iter().all(|h| h.outcome != RolloutOutcome::Superseded));
    r.step(136, "ccccccc", Some(Verdict::Pass));
    assert_eq!(r.status.stable_sha.as_deref(), Some("bbbbbbb"), "it finished to its own verdict");
    assert_eq!(r.status.stable_task_definition_arn, b_td);
    r.step(140, "ccccccc", None);
    assert_eq!(r.status.phase, Phase::Pending);
    assert_eq!(r.status.waiting.as_ref().map(|w| w.sha.as_str()), Some("ccccccc"));
}

#[test]
fn while_events_flow_only_the_deployment_poll_slows_down() {
    let mut c = cfg(true);
    c.deploy_poll = Duration::from_secs(30);
    let now = Utc::now();
    let progressing = ServiceReleaseStatus { phase: Phase::Progressing, ..Default::default() };
    assert_eq!(readiness(&progressing, "abc1234", false, now, &c).1, Duration::from_secs(30));
    let healthy = ServiceReleaseStatus { phase: Phase::Healthy, ..Default::default() };
    assert_eq!(readiness(&healthy, "abc1234", false, now, &c).1, c.drift_interval);
    assert_eq!(readiness(&progressing, "abc1234", false, now, &cfg(true)).1, DEPLOY_POLL, "without events: as before");
}
