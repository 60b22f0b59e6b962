//! The rollout as a pure state machine: previous status + observations → next status,
//! the ECS calls to make, the Events to publish, the verdict for conditions and when to be
//! woken. All its state lives in `status`, so a restarted controller resumes exactly where
//! it was.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::analysis::Verdict;
use super::conditions::Readiness;
use crate::api::{
    reasons, FailurePolicy, HistoryEntry, Measurement, Phase, RollbackStatus, RolloutOutcome, RolloutStatus, ServiceReleaseStatus,
    StepRecord, UnavailablePolicy,
};

/// One ECS deployment of the service.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct DeploymentObs {
    /// Deployment id.
    pub id: String,
    /// Its task definition.
    pub task_definition: String,
    /// PRIMARY (newest) or ACTIVE (draining).
    pub status: String,
    /// IN_PROGRESS, COMPLETED or FAILED.
    pub rollout_state: String,
    /// Tasks that failed to start.
    pub failed_tasks: i32,
    /// When ECS last changed the deployment (for a COMPLETED one: when it completed), as
    /// ECS reports it: a deadline is judged on this, not on when the controller looked.
    pub updated_at: Option<DateTime<Utc>>,
}

/// The ECS service as observed.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ServiceObs {
    /// Service ARN.
    pub arn: String,
    /// Task definition the service points at.
    pub task_definition: String,
    /// Desired count.
    pub desired_count: i32,
    /// deploymentConfiguration.maximumPercent, when ECS reports it.
    pub maximum_percent: Option<i32>,
    /// deploymentConfiguration.minimumHealthyPercent, when ECS reports it.
    pub minimum_healthy_percent: Option<i32>,
    /// Deployments, newest first.
    pub deployments: Vec<DeploymentObs>,
    /// Tags (`shipshape.dev/owner` says whose it is).
    pub tags: std::collections::BTreeMap<String, String>,
    /// awsvpc placement as ECS reports it (subnets, security groups, public IP), when it does.
    pub network: Option<Network>,
    /// Weighted routing: a second "task definition" (a Lambda version) taking this percent
    /// of the traffic beside `task_definition`. ECS services: always None.
    pub canary: Option<(String, i32)>,
    /// The service's current ECS service deployment, read for services deploying with ECS's
    /// CANARY, LINEAR or BLUE_GREEN strategy (None otherwise).
    pub service_deployment: Option<ServiceDeploymentObs>,
}

/// An ECS service deployment (DescribeServiceDeployments) as shipshape reads it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ServiceDeploymentObs {
    /// Its ARN.
    pub arn: String,
    /// PENDING, IN_PROGRESS, SUCCESSFUL, STOPPED, STOP_REQUESTED, ROLLBACK_REQUESTED,
    /// ROLLBACK_IN_PROGRESS, ROLLBACK_SUCCESSFUL or ROLLBACK_FAILED.
    pub status: String,
    /// Why, as ECS says (statusReason).
    pub reason: Option<String>,
    /// Lifecycle stage (e.g. PRODUCTION_TRAFFIC_SHIFT).
    pub stage: Option<String>,
    /// The task definition of its target service revision.
    pub task_definition: String,
    /// Percent of the production traffic on the target revision.
    pub weight: Option<i32>,
    /// The id of a PAUSE lifecycle hook awaiting action (ContinueServiceDeployment), if any.
    pub paused_hook: Option<String>,
}

impl ServiceObs {
    /// Its ECS service deployment while that is still in progress.
    pub fn deploying(&self) -> Option<&ServiceDeploymentObs> {
        self.service_deployment.as_ref().filter(|d| d.in_progress())
    }
}

impl ServiceDeploymentObs {
    /// Still moving (PENDING or IN_PROGRESS): it can be continued or stopped.
    pub fn in_progress(&self) -> bool {
        matches!(self.status.as_str(), "PENDING" | "IN_PROGRESS")
    }
}

/// awsvpc placement of a service.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Network {
    /// Subnet ids, sorted.
    pub subnets: Vec<String>,
    /// Security group ids, sorted.
    pub security_groups: Vec<String>,
    /// Public IP assigned.
    pub assign_public_ip: bool,
}

impl Network {
    /// A placement with its lists sorted, so equal placements compare equal.
    pub fn new(mut subnets: Vec<String>, mut security_groups: Vec<String>, assign_public_ip: bool) -> Network {
        subnets.sort();
        subnets.dedup();
        security_groups.sort();
        security_groups.dedup();
        Network { subnets, security_groups, assign_public_ip }
    }
}

/// One traffic step of a strategy: this percent on the new version for at least `bake`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrafficStep {
    /// Percent of the traffic on the new version (the last step: 100).
    pub weight: i32,
    /// Least time at this step, while the analysis runs.
    pub bake: Duration,
}

/// Rollout settings from the spec, with defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Before the first measurement after the deployment completes.
    pub warmup: Duration,
    /// Between rounds.
    pub interval: Duration,
    /// Passing rounds in a row to promote.
    pub successful_runs: i32,
    /// Failed rounds tolerated.
    pub failure_limit: i32,
    /// Time limit of a rollout.
    pub progress_deadline: Duration,
    /// Roll back on failure.
    pub auto_rollback: bool,
    /// Whether any query or alarm judges the rollout.
    pub has_analysis: bool,
    /// History entries kept.
    pub history_limit: usize,
    /// Steady-state recheck.
    pub drift_interval: Duration,
    /// What a round does when the metrics backend cannot answer.
    pub on_unavailable: UnavailablePolicy,
    /// Traffic steps, the last at 100 % (Rolling: that one alone, with no bake).
    pub steps: Vec<TrafficStep>,
    /// What a failed analysis does: roll back, or hold for a decision by hand.
    pub on_failure: FailurePolicy,
    /// The steps are ECS's own (an ECS service with a canary, linear or blue/green
    /// strategy): ECS shifts the traffic, pausing at shipshape's lifecycle hooks; shipshape
    /// judges each step there and continues or rolls back the service deployment.
    pub native: bool,
    /// Steps before traffic, in order.
    pub pre_deploy: Vec<PreDeploy>,
    /// Snapshots before steps kept per database (None: all).
    pub snapshot_retention: Option<usize>,
    /// How often a deployment in progress (ECS's, or a rollback waiting for ECS) is looked
    /// at: [`DEPLOY_POLL`], or longer while the Environment's AWS events flow (they wake the
    /// release when the deployment changes).
    pub deploy_poll: Duration,
}

/// How often a deployment in progress is looked at without AWS events.
pub const DEPLOY_POLL: Duration = Duration::from_secs(2);

impl Config {
    /// The step at `index` (0-based), or the last one for an index past the end (a strategy
    /// edited during a rollout), or all at once for a config with no steps.
    pub fn step_at(&self, index: usize) -> TrafficStep {
        self.steps.get(index).or(self.steps.last()).copied().unwrap_or(TrafficStep { weight: 100, bake: Duration::ZERO })
    }

    /// Whether traffic moves in steps (shown in status as step n of m).
    pub fn stepped(&self) -> bool {
        self.steps.len() > 1
    }
}

/// Commands from annotations, already filtered to the ones not yet acted on.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Commands {
    /// Retry a rejected spec.
    pub retry: Option<String>,
    /// Roll back to stable now.
    pub rollback: Option<String>,
    /// Promote the rollout now.
    pub promote: Option<String>,
}

/// Everything the step looks at.
pub struct Inputs<'a> {
    /// Now.
    pub now: DateTime<Utc>,
    /// Desired SHA.
    pub sha: &'a str,
    /// Hash of the desired task definition content and size.
    pub spec_hash: &'a str,
    /// Task definition registered for `spec_hash`.
    pub task_definition: &'a str,
    /// Desired count.
    pub replicas: i32,
    /// Declared (maximumPercent, minimumHealthyPercent).
    pub deployment_percents: (i32, i32),
    /// The service, if it exists.
    pub service: Option<&'a ServiceObs>,
    /// The Environment's awsvpc placement.
    pub network: &'a Network,
    /// spec.paused (or the pause annotation).
    pub paused: bool,
    /// The Environment's freeze.
    pub frozen: bool,
    /// What a new rollout waits for (its upstream stage, an approval, the releases it comes
    /// after, a change window), or None when it may start.
    pub hold: Option<super::promotion::Hold>,
    /// Commands to act on.
    pub commands: &'a Commands,
    /// This pass's analysis round, when one was due.
    pub round: Option<(Verdict, Vec<Measurement>)>,
    /// Settings.
    pub config: &'a Config,
    /// What AWS reports of the step before traffic under way (its snapshot or its task).
    pub pre_deploy: Option<StepObs>,
}

/// An ECS change to make.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Create the service on this task definition.
    CreateService { task_definition: String },
    /// Point the service at this task definition (and the desired count).
    UpdateService { task_definition: String },
    /// Point the service back at this stable task definition (made ACTIVE again first if it
    /// was deregistered). Only when ECS accepts it is the release RolledBack
    /// ([`rollback_accepted`]).
    RollBack { task_definition: String },
    /// Route `weight` percent of the traffic to `task_definition` and the rest to `stable`
    /// (a Lambda alias's weighted routing).
    Shift { task_definition: String, stable: String, weight: i32 },
    /// Resume an ECS service deployment paused at a lifecycle hook: CONTINUE to the next
    /// stage, or ROLLBACK (`rollback`). `task_definition`: the deployment's target.
    Resume { deployment: String, hook: String, task_definition: String, rollback: bool },
    /// Roll an ECS service deployment in progress back to the stable revision, which still
    /// runs: ContinueServiceDeployment ROLLBACK at its paused `hook`, else
    /// StopServiceDeployment ROLLBACK. `task_definition`: the stable one. Accepted like
    /// [`Effect::RollBack`].
    Halt { deployment: String, hook: Option<String>, task_definition: String },
    /// Start step `step` before traffic: a one-off task of `task_definition` (the new one)
    /// with the step's command. Idempotent per rollout and step.
    RunTask { step: usize, task_definition: String },
    /// Stop that task (its timeout passed).
    StopTask { task: String, task_definition: String },
    /// Take a manual snapshot `name` of RDS instance `database` before a step.
    Snapshot { database: String, name: String, task_definition: String },
    /// Delete this release's older snapshots of `database`, keeping the newest `keep` (with
    /// `newest`, just taken, among them).
    PruneSnapshots { database: String, keep: usize, newest: String, task_definition: String },
}

impl Effect {
    /// The task definition (or version) the effect puts traffic on.
    pub fn task_definition(&self) -> &str {
        match self {
            Effect::CreateService { task_definition }
            | Effect::UpdateService { task_definition }
            | Effect::RollBack { task_definition }
            | Effect::Shift { task_definition, .. }
            | Effect::Resume { task_definition, .. }
            | Effect::Halt { task_definition, .. }
            | Effect::RunTask { task_definition, .. }
            | Effect::StopTask { task_definition, .. }
            | Effect::Snapshot { task_definition, .. }
            | Effect::PruneSnapshots { task_definition, .. } => task_definition,
        }
    }
}

/// What a step decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The next status.
    pub status: ServiceReleaseStatus,
    /// ECS changes, in order.
    pub effects: Vec<Effect>,
    /// (warning, reason, message) Events.
    pub events: Vec<(bool, &'static str, String)>,
    /// kstatus verdict.
    pub readiness: Readiness,
    /// When to be woken.
    pub requeue: Duration,
    /// Set when this step decides a rollback: why (a static word for the metric).
    pub rolled_back: Option<&'static str>,
}

/// Whether an analysis round is due now.
pub fn measurement_due(status: &ServiceReleaseStatus, now: DateTime<Utc>, cfg: &Config) -> bool {
    let Some(r) = status.rollout.as_ref().filter(|_| status.phase == Phase::Analyzing && cfg.has_analysis) else {
        return false;
    };
    let Some(deployed) = r.deployed_at else {
        return false;
    };
    if after(deployed, cfg.warmup).is_none_or(|t| now < t) {
        return false;
    }
    r.last_measured_at.is_none_or(|t| after(t, cfg.interval).is_some_and(|due| now >= due))
}

/// `t + d`, or None when that is past what a timestamp can hold (never, in effect).
fn after(t: DateTime<Utc>, d: Duration) -> Option<DateTime<Utc>> {
    chrono::Duration::from_std(d).ok().and_then(|d| t.checked_add_signed(d))
}

/// The call that rolls back to `stable`: an ECS service deployment still in progress toward
/// another revision is rolled back by ECS (its traffic shifted back to the stable revision,
/// which still runs); otherwise the service is pointed back at `stable`.
fn rollback_effect(inp: &Inputs, stable: &str) -> Effect {
    match inp.service.and_then(ServiceObs::deploying).filter(|d| d.task_definition != stable) {
        Some(d) => Effect::Halt { deployment: d.arn.clone(), hook: d.paused_hook.clone(), task_definition: stable.to_string() },
        None => Effect::RollBack { task_definition: stable.to_string() },
    }
}

/// ECS accepted the rollback to `task_definition` (the stable one, or the revision that
/// replaced it when it had been deregistered): the release is RolledBack, with its history
/// entry and Event.
pub fn rollback_accepted(
    prev: &ServiceReleaseStatus,
    task_definition: &str,
    now: DateTime<Utc>,
    history_limit: usize,
) -> (ServiceReleaseStatus, Vec<(bool, &'static str, String)>) {
    let mut st = prev.clone();
    let Some(rb) = st.rollback.take() else { return (st, vec![]) };
    st.phase = Phase::RolledBack;
    st.current_sha = st.stable_sha.clone();
    st.task_definition_arn = Some(task_definition.to_string());
    st.stable_task_definition_arn = Some(task_definition.to_string());
    let stable = st.stable_sha.clone().unwrap_or_default();
    let msg = match st.rollout.take() {
        Some(r) => {
            let msg = format!("{} rolled back to {stable}: {}", r.sha, rb.reason);
            st.history.insert(
                0,
                HistoryEntry {
                    steps: steps_of(&r, "RolledBack", now),
                    pre_deploy: r.pre_deploy.clone(),
                    sha: r.sha,
                    task_definition_arn: r.task_definition_arn,
                    function_version_arn: None,
                    outcome: RolloutOutcome::RolledBack,
                    started_at: r.started_at,
                    finished_at: Some(now),
                    reason: rb.reason.clone(),
                },
            );
            st.history.truncate(history_limit.max(1));
            msg
        }
        None => format!("rolled back to {stable}: {}", rb.reason),
    };
    (st, vec![(true, reasons::ROLLED_BACK, msg)])
}

/// A finished rollout's steps: those it passed, then the one it ended at with `result`
/// (none for a rollout that did not move in steps).
fn steps_of(r: &RolloutStatus, result: &str, now: DateTime<Utc>) -> Vec<StepRecord> {
    let Some(step) = r.step else { return vec![] };
    let mut steps = r.passed_steps.clone();
    steps.push(StepRecord {
        step,
        weight: r.weight.unwrap_or(0),
        started_at: r.step_started_at,
        finished_at: now,
        result: result.to_string(),
    });
    steps
}

/// ECS refused the rollback: the release stays RollingBack, with the error for status. When
/// the stable task definition had to be registered again (`active`), the retry uses that one.
pub fn rollback_refused(prev: &ServiceReleaseStatus, error: &str, active: Option<&str>) -> ServiceReleaseStatus {
    let mut st = prev.clone();
    if let Some(rb) = st.rollback.as_mut() {
        rb.error = Some(error.chars().take(1000).collect());
        rb.failed_attempts = rb.failed_attempts.saturating_add(1);
        if let Some(td) = active {
            rb.task_definition_arn = td.to_string();
        }
    }
    st
}

const MEASUREMENTS_KEPT: usize = 20;

struct Ctx<'a, 'b> {
    inp: &'a Inputs<'b>,
    st: ServiceReleaseStatus,
    effects: Vec<Effect>,
    events: Vec<(bool, &'static str, String)>,
    rolled_back: Option<&'static str>,
    /// What the desired SHA waited for before this pass.
    waited: Option<crate::api::WaitingStatus>,
}

impl Ctx<'_, '_> {
    fn history(&mut self, entry: HistoryEntry) {
        self.st.history.insert(0, entry);
        self.st.history.truncate(self.inp.config.history_limit.max(1));
    }

    fn finish_rollout(&mut self, outcome: RolloutOutcome, reason: String) {
        if let Some(r) = self.st.rollout.take() {
            let word = serde_json::to_value(outcome).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            self.history(HistoryEntry {
                steps: steps_of(&r, &word, self.inp.now),
                pre_deploy: r.pre_deploy.clone(),
                sha: r.sha,
                task_definition_arn: r.task_definition_arn,
                function_version_arn: None,
                outcome,
                started_at: r.started_at,
                finished_at: Some(self.inp.now),
                reason,
            });
        }
    }

    fn start(&mut self) {
        let inp = self.inp;
        let cfg = inp.config;
        let td = inp.task_definition.to_string();
        // Steps compare the new version with a stable one: a first version (nothing stable,
        // or no service) takes all the traffic at once.
        let stable = self.st.stable_task_definition_arn.clone().filter(|s| *s != td && inp.service.is_some());
        let index = if stable.is_some() { 0 } else { cfg.steps.len().saturating_sub(1) };
        let steps = i32::try_from(cfg.steps.len()).unwrap_or(i32::MAX);
        let step = i32::try_from(index).unwrap_or(0).saturating_add(1);
        self.st.rollout = Some(RolloutStatus {
            step: cfg.stepped().then_some(step),
            steps: cfg.stepped().then_some(steps),
            step_text: cfg.stepped().then(|| format!("{step}/{steps}")),
            weight: None,
            service_deployment_arn: None,
            stage: None,
            step_started_at: Some(inp.now),
            held: None,
            passed_steps: vec![],
            sha: inp.sha.to_string(),
            started_at: inp.now,
            deployment_id: None,
            measurements: vec![],
            failures: 0,
            successes: 0,
            spec_hash: inp.spec_hash.to_string(),
            task_definition_arn: Some(td.clone()),
            function_version_arn: None,
            deployed_at: None,
            last_measured_at: None,
            invalid_query: None,
            analysis_unavailable: None,
            unavailable_since: None,
            deadline_extension_seconds: 0,
            pre_deploy: vec![],
        });
        self.st.phase = Phase::Progressing;
        self.events.push((false, reasons::PROGRESSING, format!("rolling out {}", inp.sha)));
        let r = self.st.rollout.clone().unwrap_or_default();
        // The steps before traffic first, when there are any.
        if predeploy::advance(self, &r) {
            self.traffic();
        }
    }

    /// The rollout's traffic starts: the service created, updated, or its first share shifted.
    fn traffic(&mut self) {
        let inp = self.inp;
        let cfg = inp.config;
        let Some(r) = self.st.rollout.clone() else { return };
        let td = r.task_definition_arn.clone().unwrap_or_default();
        let first = cfg.step_at(step_index(&r, cfg));
        let stable = self.st.stable_task_definition_arn.clone().filter(|s| *s != td && inp.service.is_some());
        self.effects.push(match (inp.service, stable) {
            (None, _) => Effect::CreateService { task_definition: td.clone() },
            (Some(_), Some(stable)) if first.weight < 100 && !cfg.native => {
                Effect::Shift { task_definition: td.clone(), stable, weight: first.weight }
            }
            (Some(_), _) => Effect::UpdateService { task_definition: td.clone() },
        });
        self.st.phase = Phase::Progressing;
        self.st.current_sha = Some(r.sha.clone());
        self.st.task_definition_arn = Some(td);
        if let Some(rs) = self.st.rollout.as_mut() {
            rs.step_started_at = Some(inp.now);
        }
    }

    fn promote(&mut self, reason: String) {
        let Some(r) = self.st.rollout.clone() else { return };
        self.st.stable_sha = Some(r.sha.clone());
        self.st.stable_task_definition_arn = r.task_definition_arn.clone();
        self.st.stable_spec_hash = Some(r.spec_hash.clone());
        // The migrated database now goes with a stable version.
        self.st.rollback_unsafe = None;
        self.st.rejected_spec_hash = None;
        self.st.phase = Phase::Healthy;
        self.events.push((false, reasons::PROMOTED, format!("{} promoted: {reason}", r.sha)));
        self.finish_rollout(RolloutOutcome::Promoted, reason);
    }

    /// Decides a rollback to `stable_td`: persisted as RollingBack, carried out by the
    /// RollBack effect, RolledBack only once ECS accepts it.
    fn roll_back(&mut self, stable_td: String, reason: String, why: &'static str) {
        if why == "manual" {
            // A person decided, knowing the step.
            self.st.rollback_unsafe = None;
        }
        let sha = self.st.rollout.as_ref().map(|r| r.sha.clone()).or(self.st.current_sha.clone()).unwrap_or_default();
        self.effects.push(rollback_effect(self.inp, &stable_td));
        self.st.phase = Phase::RollingBack;
        self.rolled_back = Some(why);
        let stable = self.st.stable_sha.clone().unwrap_or_default();
        self.events.push((true, reasons::ROLLING_BACK, format!("rolling {sha} back to {stable}: {reason}")));
        self.st.rollback = Some(RollbackStatus {
            task_definition_arn: stable_td,
            function_version_arn: None,
            reason,
            trigger: why.to_string(),
            requested_at: self.inp.now,
            error: None,
            failed_attempts: 0,
        });
    }

    /// The rollout failed: roll back to stable when there is one (and autoRollback), else
    /// Failed; a failed analysis under `onFailure: Pause` holds instead.
    fn fail(&mut self, reason: String, why: &'static str) {
        let Some(r) = self.st.rollout.clone() else { return };
        if why == "analysis" && self.inp.config.on_failure == FailurePolicy::Pause {
            let at = match (r.step, r.steps, r.weight) {
                (Some(n), Some(of), Some(w)) => format!(" at step {n}/{of} ({w}% of the traffic)"),
                _ => String::new(),
            };
            self.events.push((
                true,
                reasons::ANALYSIS_FAILED,
                format!("{}{at} failed its analysis and is held (onFailure: Pause): {reason}; promote or roll back by hand", r.sha),
            ));
            self.st.phase = Phase::Paused;
            if let Some(rs) = self.st.rollout.as_mut() {
                rs.held = Some(reason);
            }
            return;
        }
        if let Some(past) = self.st.rollback_unsafe.clone().filter(|_| why != "manual") {
            // Past an irreversible step (this rollout's or one it superseded) the old code
            // may not read the database: a person decides (`shipshape rollback` or
            // `promote`), the controller does not.
            let msg = format!(
                "{} failed after {past} and is held, not rolled back: {reason}; `shipshape rollback` or `shipshape promote` decides",
                r.sha
            );
            self.events.push((true, reasons::ROLLBACK_UNSAFE, msg));
            self.st.phase = Phase::Paused;
            if let Some(rs) = self.st.rollout.as_mut() {
                rs.held = Some(reason);
            }
            return;
        }
        self.st.rejected_spec_hash = Some(r.spec_hash.clone());
        let stable = self.st.stable_task_definition_arn.clone().filter(|s| Some(s) != r.task_definition_arn.as_ref());
        match stable {
            Some(stable_td) if self.inp.config.auto_rollback => self.roll_back(stable_td, reason, why),
            _ => {
                self.st.phase = Phase::Failed;
                let msg = if self.st.stable_sha.is_none() {
                    format!("{} failed and there is no stable release to roll back to; the service is left as is: {reason}", r.sha)
                } else {
                    format!("{} failed (autoRollback is off; the service is left as is): {reason}", r.sha)
                };
                self.events.push((true, reasons::ROLLOUT_FAILED, msg));
                self.finish_rollout(RolloutOutcome::Failed, reason);
            }
        }
    }
}

/// One step of the rollout.
pub fn step(prev: &ServiceReleaseStatus, inp: &Inputs) -> Decision {
    let mut c = Ctx { inp, st: prev.clone(), effects: vec![], events: vec![], rolled_back: None, waited: None };
    // Kept only while the desired SHA still waits (set again by `idle`).
    c.waited = c.st.waiting.take();
    // Commands are acted on once per annotation value.
    for (name, value) in [("retry", &inp.commands.retry), ("rollback", &inp.commands.rollback), ("promote", &inp.commands.promote)] {
        if let Some(v) = value {
            c.st.handled_commands.insert(name.to_string(), v.clone());
        }
    }
    if inp.commands.retry.is_some() && c.st.rejected_spec_hash.as_deref() == Some(inp.spec_hash) {
        c.st.rejected_spec_hash = None;
    }

    // A rollback decided earlier comes first, whatever else changed: carried out until ECS
    // accepts it. A service already on the stable task definition means an earlier call
    // went through (the controller stopped before recording it).
    if let Some(rb) = c.st.rollback.clone() {
        let moving_elsewhere = |s: &ServiceObs| s.deploying().is_some_and(|d| d.task_definition != rb.task_definition_arn);
        if inp.service.is_some_and(|s| s.task_definition == rb.task_definition_arn && s.canary.is_none() && !moving_elsewhere(s)) {
            let (st, events) = rollback_accepted(&c.st, &rb.task_definition_arn, inp.now, inp.config.history_limit);
            c.st = st;
            c.events.extend(events);
        } else {
            c.st.phase = Phase::RollingBack;
            c.effects.push(rollback_effect(inp, &rb.task_definition_arn));
        }
        let (readiness, requeue) = verdict(&c.st, inp);
        return Decision { status: c.st, effects: c.effects, events: c.events, readiness, requeue, rolled_back: None };
    }

    // A rollout whose spec is no longer the desired one is superseded — once a step of it
    // that is running has ended: two migrations never run at once.
    let step_running =
        c.st.rollout
            .as_ref()
            .filter(|r| r.spec_hash != inp.spec_hash && inp.hold.is_none())
            .and_then(|r| r.pre_deploy.last().filter(|s| s.phase == "Running").map(|s| (r.sha.clone(), s.name.clone())));
    let ended = match &inp.pre_deploy {
        Some(StepObs::Task(Some(t))) => t.last_status == "STOPPED",
        _ => true,
    };
    if let (Some((sha, name)), false) = (step_running, ended) {
        let (_, requeue) = verdict(&c.st, inp);
        let message = format!("{}: waiting for preDeploy step {name} of {sha} (superseded) to end", inp.sha);
        return Decision {
            status: c.st,
            effects: c.effects,
            events: c.events,
            readiness: Readiness::Reconciling { reason: reasons::PRE_DEPLOY, message },
            requeue: requeue.min(Duration::from_secs(1)),
            rolled_back: None,
        };
    }
    // A newer spec supersedes the rollout under way, unless it may not start yet (its
    // upstream, approval, order or window): then the rollout under way finishes first, to
    // its own verdict, and the newer spec waits behind it.
    if c.st.rollout.as_ref().is_some_and(|r| r.spec_hash != inp.spec_hash) && inp.hold.is_none() {
        c.finish_rollout(RolloutOutcome::Superseded, "the spec changed before it finished".into());
        c.st.phase = Phase::Pending;
    }

    // Manual commands on a rollout in flight.
    let before_traffic = c.st.rollout.as_ref().is_some_and(|r| predeploy::pending(r, &inp.config.pre_deploy).is_some());
    if before_traffic && inp.commands.promote.is_some() {
        // Promoting code whose migrations have not run would serve it on the old schema.
        c.events.push((true, reasons::PRE_DEPLOY, "promote ignored: the steps before traffic have not all succeeded".into()));
    } else if c.st.rollout.is_some() && inp.commands.promote.is_some() {
        // Remaining steps skipped: all traffic to the new version.
        let td = c.st.rollout.as_ref().and_then(|r| r.task_definition_arn.clone()).unwrap_or_default();
        if inp.service.is_some_and(|s| s.task_definition != td || s.canary.is_some()) {
            c.effects.push(Effect::UpdateService { task_definition: td });
        } else if let Some(d) = paused(inp.service, &td) {
            // An ECS deployment paused at a hook: continued, and each later pause of it too
            // (hold(): it now deploys the stable revision).
            c.effects.push(Effect::Resume {
                deployment: d.arn.clone(),
                hook: d.paused_hook.clone().unwrap_or_default(),
                task_definition: td,
                rollback: false,
            });
        }
        c.promote("promoted by hand".into());
    } else if c.st.rollout.is_some() && inp.commands.rollback.is_some() {
        c.fail("rolled back by hand".into(), "manual");
    } else if c.st.rollout.is_none() && inp.commands.rollback.is_some() {
        if let (Some(stable_td), Some(current)) = (c.st.stable_task_definition_arn.clone(), c.st.task_definition_arn.clone()) {
            if stable_td != current || c.st.stable_spec_hash.as_deref() == Some(inp.spec_hash) {
                // Back to stable, and the desired spec is not retried until it changes.
                c.st.rejected_spec_hash = Some(inp.spec_hash.to_string());
                c.roll_back(stable_td, "rolled back by hand".into(), "manual");
            }
        }
    }

    if c.st.rollback.is_some() {
        // Decided this step: nothing else until ECS accepts it.
    } else if let Some(r) = c.st.rollout.clone() {
        advance(&mut c, r);
    } else {
        idle(&mut c);
    }

    let (readiness, mut requeue) = verdict(&c.st, inp);
    if inp.service.and_then(ServiceObs::deploying).is_some() {
        // ECS is deploying: its next pause is looked at soon, whatever the phase.
        requeue = requeue.min(inp.config.deploy_poll);
    }
    Decision { status: c.st, effects: c.effects, events: c.events, readiness, requeue, rolled_back: c.rolled_back }
}

/// No rollout in flight: hold the stable release, or start the desired one.
fn idle(c: &mut Ctx) {
    let inp = c.inp;
    let is_stable = c.st.stable_spec_hash.as_deref() == Some(inp.spec_hash);
    let rejected = c.st.rejected_spec_hash.as_deref() == Some(inp.spec_hash);
    if is_stable && inp.service.is_some() {
        c.st.phase = Phase::Healthy;
        c.st.current_sha = c.st.stable_sha.clone();
        c.st.task_definition_arn = c.st.stable_task_definition_arn.clone();
        hold(c);
        return;
    }
    if rejected {
        hold(c);
        return;
    }
    if inp.paused || inp.frozen {
        c.st.phase = Phase::Paused;
        hold(c);
        return;
    }
    if let Some(h) = &inp.hold {
        // The new SHA waits (or is refused); the stable one keeps serving, held in place.
        let waiting = h.status(inp.sha);
        let known = c.waited.as_ref().is_some_and(|w| w.sha == waiting.sha && w.reason == waiting.reason);
        if !known {
            c.events.push((h.refused(), h.reason, h.message.clone()));
        }
        c.st.phase = Phase::Pending;
        c.st.waiting = Some(waiting);
        hold(c);
        return;
    }
    if inp.service.and_then(ServiceObs::deploying).is_some() {
        // ECS is still finishing a service deployment (its bake or clean-up after the
        // promotion): the next one starts when it has ended, not by cutting it short.
        hold(c);
        return;
    }
    c.start();
}

/// An ECS service deployment of the service toward `td`, paused at a hook.
fn paused<'a>(svc: Option<&'a ServiceObs>, td: &str) -> Option<&'a ServiceDeploymentObs> {
    svc?.deploying().filter(|d| d.task_definition == td && d.paused_hook.is_some())
}

/// Keeps the service on the task definition it should run (drift correction).
fn hold(c: &mut Ctx) {
    let Some(svc) = c.inp.service else { return };
    let want = c.st.task_definition_arn.clone().or(c.st.stable_task_definition_arn.clone());
    if let Some(d) = svc.deploying() {
        // ECS is deploying (no rollout of shipshape's in flight): a pause is continued when
        // the deployment goes where the service should be, rolled back when not; nothing else
        // is started meanwhile.
        let resumed = c.effects.iter().any(|e| matches!(e, Effect::Resume { .. }));
        if let (Some(hook), Some(want), false) = (d.paused_hook.clone(), want, resumed) {
            let rollback = d.task_definition != want;
            c.effects.push(Effect::Resume { deployment: d.arn.clone(), hook, task_definition: d.task_definition.clone(), rollback });
        }
        return;
    }
    if let Some(want) = want {
        let count_drift = svc.desired_count != c.inp.replicas;
        let (max, min) = c.inp.deployment_percents;
        let config_drift = svc.maximum_percent.is_some_and(|m| m != max) || svc.minimum_healthy_percent.is_some_and(|m| m != min);
        // A network ECS reports and the Environment's differ: an Environment edit, or drift.
        let network_drift = svc.network.as_ref().is_some_and(|n| n != c.inp.network);
        if (svc.task_definition != want || svc.canary.is_some() || count_drift || config_drift || network_drift)
            && !c.effects.iter().any(|e| matches!(e, Effect::UpdateService { .. }))
        {
            c.effects.push(Effect::UpdateService { task_definition: want.clone() });
            c.events.push((
                false,
                reasons::DRIFT_CORRECTED,
                format!("service put back on {want} with {} tasks (changed outside shipshape)", c.inp.replicas),
            ));
        }
    }
}

/// A rollout in flight: follow the ECS deployment, then the analysis.
fn advance(c: &mut Ctx, r: RolloutStatus) {
    let inp = c.inp;
    let cfg = inp.config;
    if r.held.is_some() {
        // Held after a failed analysis: nothing moves until promote or rollback by hand.
        c.st.phase = Phase::Paused;
        return;
    }
    if predeploy::pending(&r, &cfg.pre_deploy).is_some() {
        // Steps before traffic: the traffic starts when the last one has succeeded.
        if predeploy::advance(c, &r) {
            c.traffic();
        }
        return;
    }
    let td = r.task_definition_arn.clone().unwrap_or_default();
    // The deadline holds while a query is invalid or the metrics backend cannot answer
    // (neither is the release's fault), and past outages extend it.
    let extension = Duration::from_secs(u64::try_from(r.deadline_extension_seconds).unwrap_or(0));
    let index = step_index(&r, cfg);
    let step = cfg.step_at(index);
    // Each step has the progress deadline, after its bake, from when it began.
    let deadline = cfg.progress_deadline.checked_add(extension).and_then(|d| d.checked_add(step.bake)).unwrap_or(cfg.progress_deadline);
    let deadline_at = after(r.step_started_at.unwrap_or(r.started_at).max(r.started_at), deadline);
    let holding = r.invalid_query.is_some() || r.analysis_unavailable.is_some();
    // What ECS reports decides, not when the controller got round to looking: a deployment
    // that completed before the deadline is never failed for a late read.
    let completed_in_time = c.st.phase != Phase::Analyzing
        && !cfg.native
        && inp.service.is_some_and(|svc| {
            svc.task_definition == td
                && svc.deployments.iter().any(|d| {
                    d.task_definition == td
                        && d.status == "PRIMARY"
                        && d.rollout_state == "COMPLETED"
                        && d.updated_at.is_some_and(|at| deadline_at.is_none_or(|deadline| at <= deadline))
                })
        });
    if !holding && !completed_in_time && deadline_at.is_some_and(|deadline| inp.now >= deadline) {
        let why = match c.st.phase {
            Phase::Analyzing => "no conclusive analysis",
            _ => "the ECS deployment did not complete",
        };
        c.fail(format!("progressDeadline {}s passed: {why}", cfg.progress_deadline.as_secs()), "deadline");
        return;
    }
    let Some(svc) = inp.service else {
        // The service is gone (deleted outside shipshape): create it again.
        c.effects.push(Effect::CreateService { task_definition: td });
        return;
    };
    if cfg.native {
        native::advance(c, &r, td, svc);
        return;
    }
    let stable = c.st.stable_task_definition_arn.clone().filter(|s| *s != td);
    if let (Some(stable), true) = (stable, step.weight < 100) {
        // A partial step: the stable version primary, this share on the new one.
        let in_place = svc.task_definition == stable && svc.canary.as_ref().is_some_and(|(v, w)| *v == td && *w == step.weight);
        if !in_place {
            c.effects.push(Effect::Shift { task_definition: td, stable, weight: step.weight });
            if c.st.phase != Phase::Analyzing {
                c.st.phase = Phase::Progressing;
            }
            return;
        }
        let Some(rs) = c.st.rollout.as_mut() else { return };
        rs.weight = Some(step.weight);
        if c.st.phase != Phase::Analyzing {
            c.st.phase = Phase::Analyzing;
            rs.deployed_at = Some(inp.now);
        }
        analyze(c);
        step_done(c, None);
        return;
    }
    let deployment = svc.deployments.iter().find(|d| d.task_definition == td && d.status == "PRIMARY");
    if svc.task_definition != td || svc.canary.is_some() {
        c.effects.push(Effect::UpdateService { task_definition: td.clone() });
        return;
    }
    if let Some(d) = deployment {
        if let Some(rs) = c.st.rollout.as_mut() {
            rs.deployment_id = Some(d.id.clone());
        }
        if d.rollout_state == "FAILED" {
            c.fail(format!("ECS deployment {} FAILED ({} tasks failed to start)", d.id, d.failed_tasks), "deployment_failed");
            return;
        }
    }
    match c.st.phase {
        Phase::Analyzing => {
            analyze(c);
            step_done(c, None);
        }
        _ => {
            c.st.phase = Phase::Progressing;
            if deployment.is_some_and(|d| d.rollout_state == "COMPLETED") {
                c.st.phase = Phase::Analyzing;
                if let Some(rs) = c.st.rollout.as_mut() {
                    rs.deployed_at = Some(inp.now);
                    rs.weight = cfg.stepped().then_some(100);
                }
                step_done(c, None);
            }
        }
    }
}

/// The 0-based index of the rollout's traffic step (Rolling, or a status from before steps:
/// the last, all traffic).
fn step_index(r: &RolloutStatus, cfg: &Config) -> usize {
    let last = cfg.steps.len().saturating_sub(1);
    r.step.and_then(|n| usize::try_from(n.saturating_sub(1)).ok()).map_or(last, |i| i.min(last))
}

/// The current step is done when its bake is over and the analysis (if any) has passed
/// `successfulRuns` rounds in a row at it: the next step starts, or after the last one the
/// release is promoted. `resume`: an ECS service deployment paused at this step (its ARN and
/// hook), continued to the next step (or, after the last one, to its end) instead of
/// shifting the traffic here.
fn step_done(c: &mut Ctx, resume: Option<(String, String)>) {
    let inp = c.inp;
    let cfg = inp.config;
    let Some(r) = c.st.rollout.clone().filter(|_| c.st.phase == Phase::Analyzing && c.st.rollback.is_none()) else { return };
    let index = step_index(&r, cfg);
    let step = cfg.step_at(index);
    let Some(deployed) = r.deployed_at else { return };
    if after(deployed, step.bake).is_none_or(|t| inp.now < t) || (cfg.has_analysis && r.successes < cfg.successful_runs) {
        return;
    }
    let td = r.task_definition_arn.clone().unwrap_or_default();
    let resumed = resume.map(|(deployment, hook)| Effect::Resume { deployment, hook, task_definition: td.clone(), rollback: false });
    if index + 1 >= cfg.steps.len() {
        c.effects.extend(resumed);
        let reason = match (cfg.has_analysis, step.bake.is_zero()) {
            (true, _) => format!("{} passing analysis rounds in a row", r.successes),
            (false, true) => "the ECS deployment completed (no analysis configured)".into(),
            (false, false) => format!("baked {}s (no analysis configured)", step.bake.as_secs()),
        };
        c.promote(reason);
        return;
    }
    let next = cfg.step_at(index + 1);
    let (n, of) = (index.saturating_add(2), cfg.steps.len());
    c.effects.push(match (resumed, c.st.stable_task_definition_arn.clone().filter(|_| next.weight < 100)) {
        (Some(resume), _) => resume,
        (None, Some(stable)) => Effect::Shift { task_definition: td, stable, weight: next.weight },
        (None, None) => Effect::UpdateService { task_definition: td },
    });
    c.events.push((
        false,
        reasons::STEP_PASSED,
        format!("{} passed step {}/{of} at {}% of the traffic; step {n}/{of}: {}%", r.sha, index + 1, step.weight, next.weight),
    ));
    c.st.phase = Phase::Progressing;
    if let Some(rs) = c.st.rollout.as_mut() {
        rs.passed_steps.push(StepRecord {
            step: i32::try_from(index + 1).unwrap_or(0),
            weight: step.weight,
            started_at: rs.step_started_at,
            finished_at: inp.now,
            result: "Passed".into(),
        });
        rs.step = i32::try_from(n).ok();
        rs.step_text = Some(format!("{n}/{of}"));
        rs.successes = 0;
        rs.deployed_at = None;
        rs.last_measured_at = None;
        rs.step_started_at = Some(inp.now);
    }
}

/// The measurement of a round worth showing (`shipshape status`, LAST MEASUREMENT): the
/// first failing one, else the first that did not pass (inconclusive, invalid), else the last.
fn headline(round: &[Measurement]) -> Option<&Measurement> {
    let deciding = || round.iter().filter(|m| !m.verdict.ends_with(DRY_RUN));
    deciding()
        .find(|m| m.verdict == "Fail")
        .or_else(|| deciding().find(|m| m.verdict != "Pass"))
        .or(deciding().next_back())
        .or(round.last())
}

/// The suffix of a dry-run query's verdict (`Fail (dry run)`): shown, never deciding.
pub const DRY_RUN: &str = " (dry run)";

fn analyze(c: &mut Ctx) {
    let inp = c.inp;
    let cfg = inp.config;
    let Some((verdict, measurements)) = inp.round.clone() else {
        return;
    };
    c.st.last_measurement = headline(&measurements).cloned().or(c.st.last_measurement.take());
    let Some(rs) = c.st.rollout.as_mut() else { return };
    rs.last_measured_at = Some(inp.now);
    rs.measurements.extend(measurements);
    let excess = rs.measurements.len().saturating_sub(MEASUREMENTS_KEPT);
    rs.measurements.drain(..excess);
    rs.invalid_query = None;
    let verdict = match verdict {
        Verdict::Unavailable(why) if cfg.on_unavailable == UnavailablePolicy::Rollback => {
            Verdict::Fail(format!("{why} (onAnalysisUnavailable: Rollback)"))
        }
        Verdict::Unavailable(why) => {
            // Hold: nothing counted, the deadline waits for the backend.
            rs.analysis_unavailable = Some(why);
            rs.unavailable_since.get_or_insert(inp.now);
            return;
        }
        other => other,
    };
    rs.analysis_unavailable = None;
    if let Some(since) = rs.unavailable_since.take() {
        let outage = (inp.now - since).num_seconds().max(0);
        rs.deadline_extension_seconds = rs.deadline_extension_seconds.saturating_add(outage);
    }
    match verdict {
        Verdict::Pass => {
            // Promoted, or on to the next step, by step_done (which also waits for the bake).
            rs.successes = rs.successes.saturating_add(1);
        }
        Verdict::Fail(reason) => {
            rs.successes = 0;
            rs.failures = rs.failures.saturating_add(1);
            if rs.failures > cfg.failure_limit {
                c.fail(reason, "analysis");
            }
        }
        Verdict::Inconclusive(_) | Verdict::Unavailable(_) => {}
        Verdict::Invalid(reason) => rs.invalid_query = Some(reason),
    }
}

/// Conditions and the wake-up time for a status.
fn verdict(st: &ServiceReleaseStatus, inp: &Inputs) -> (Readiness, Duration) {
    readiness(st, inp.sha, inp.frozen, inp.now, inp.config)
}

/// Conditions and the wake-up time for a status, given the desired SHA and whether the
/// Environment is frozen.
pub fn readiness(st: &ServiceReleaseStatus, sha: &str, frozen: bool, now: DateTime<Utc>, cfg: &Config) -> (Readiness, Duration) {
    match st.phase {
        Phase::Healthy => (
            Readiness::Ready { reason: reasons::RECONCILED, message: format!("{} is stable", st.stable_sha.clone().unwrap_or_default()) },
            cfg.drift_interval,
        ),
        Phase::RollingBack => {
            let rb = st.rollback.as_ref();
            let stable = st.stable_sha.clone().unwrap_or_default();
            match rb.and_then(|r| r.error.clone()) {
                Some(e) => (
                    Readiness::Stalled {
                        reason: reasons::ROLLBACK_FAILED,
                        message: format!(
                            "rolling {sha} back to {stable} failed: {e}; the service may still run {sha}; retrying (attempt {})",
                            rb.map(|r| r.failed_attempts).unwrap_or(0).saturating_add(1)
                        ),
                    },
                    Duration::from_secs(2),
                ),
                None => (
                    Readiness::Reconciling {
                        reason: reasons::ROLLING_BACK,
                        message: format!("rolling {sha} back to {stable}: {}", rb.map(|r| r.reason.clone()).unwrap_or_default()),
                    },
                    cfg.deploy_poll,
                ),
            }
        }
        Phase::RolledBack => {
            let why = st.history.first().map(|h| h.reason.clone()).unwrap_or_default();
            let msg = format!(
                "{sha} was rolled back to {}: {why}; it is not retried until the spec changes or shipshape.dev/retry is set",
                st.stable_sha.clone().unwrap_or_default()
            );
            (Readiness::Stalled { reason: reasons::ROLLED_BACK, message: msg }, cfg.drift_interval)
        }
        Phase::Failed if st.history.first().is_some_and(|h| h.pre_deploy.iter().any(|s| s.phase == "Failed")) => {
            let why = st.history.first().map(|h| h.reason.clone()).unwrap_or_default();
            let stable = st.current_sha.clone().or(st.stable_sha.clone()).map(|s| format!("; {s} still serves")).unwrap_or_default();
            let message =
                format!("{sha} was not rolled out: {why}{stable}; it is not retried until the spec changes or shipshape.dev/retry is set");
            (Readiness::Stalled { reason: reasons::PRE_DEPLOY_FAILED, message }, cfg.drift_interval)
        }
        Phase::Failed => {
            let why = st.history.first().map(|h| h.reason.clone()).unwrap_or_default();
            let message = if st.stable_sha.is_none() {
                format!("{sha} failed and there is no stable release to roll back to; the service is left as is: {why}")
            } else {
                format!("{sha} failed (autoRollback is off; the service is left as is): {why}")
            };
            (Readiness::Stalled { reason: reasons::ROLLOUT_FAILED, message }, cfg.drift_interval)
        }
        Phase::Paused if st.rollback_unsafe.is_some() && st.rollout.as_ref().is_some_and(|r| r.held.is_some()) => {
            let why = st.rollout.as_ref().and_then(|r| r.held.clone()).unwrap_or_default();
            let past = st.rollback_unsafe.clone().unwrap_or_default();
            let message = format!(
                "{sha} failed after {past}; not rolled back automatically: {why}; `shipshape rollback` or `shipshape promote` decides"
            );
            (Readiness::Stalled { reason: reasons::ROLLBACK_UNSAFE, message }, cfg.drift_interval)
        }
        Phase::Paused if st.rollout.as_ref().is_some_and(|r| r.held.is_some()) => {
            let r = st.rollout.as_ref();
            let why = r.and_then(|r| r.held.clone()).unwrap_or_default();
            let at = match r.and_then(|r| Some((r.step?, r.steps?, r.weight?))) {
                Some((n, of, w)) => format!(" at step {n}/{of} ({w}% of the traffic)"),
                None => String::new(),
            };
            let message = format!(
                "{sha}{at} failed its analysis and is held (onFailure: Pause): {why}; `shipshape promote` or `shipshape rollback` decides"
            );
            (Readiness::Stalled { reason: reasons::ANALYSIS_FAILED, message }, cfg.drift_interval)
        }
        Phase::Paused => {
            let who = if frozen { "the Environment is frozen (or being deleted)" } else { "the release is paused" };
            (Readiness::Stalled { reason: reasons::PAUSED, message: format!("{sha} is not rolled out: {who}") }, cfg.drift_interval)
        }
        Phase::Progressing if st.rollout.as_ref().and_then(|r| predeploy::describe(r, cfg.pre_deploy.len())).is_some() => {
            let what = st.rollout.as_ref().and_then(|r| predeploy::describe(r, cfg.pre_deploy.len())).unwrap_or_default();
            // A task's end is seen within half a second (its reads are shared: controller/tasks.rs).
            (
                Readiness::Reconciling { reason: reasons::PRE_DEPLOY, message: format!("rolling out {sha}: {what}") },
                Duration::from_millis(500),
            )
        }
        Phase::Pending if st.waiting.as_ref().is_some_and(|w| w.sha == sha) => {
            let w = st.waiting.as_ref();
            let message = w.map(|w| w.message.clone()).unwrap_or_default();
            let reason = w.and_then(|w| reasons::waiting(&w.reason)).unwrap_or(reasons::WAITING_FOR_UPSTREAM);
            // Woken by what it waits for (the upstream's or an earlier release's status, an
            // approval); a soak's end or a window's opening is a time, kept to the millisecond.
            let until = w.and_then(|w| w.until).and_then(|u| u.signed_duration_since(now).to_std().ok());
            let ahead = |u: Duration| u.saturating_sub(super::promotion::WAKE_AHEAD).max(Duration::from_millis(5));
            let requeue = until.map(|u| ahead(u).min(cfg.drift_interval)).unwrap_or(cfg.drift_interval);
            if reason == reasons::UPSTREAM_REJECTED {
                (Readiness::Stalled { reason, message }, cfg.drift_interval)
            } else {
                (Readiness::Reconciling { reason, message }, requeue)
            }
        }
        Phase::Progressing | Phase::Pending => (
            Readiness::Reconciling { reason: reasons::PROGRESSING, message: format!("rolling out {sha}: waiting for the ECS deployment") },
            cfg.deploy_poll,
        ),
        Phase::Analyzing => {
            let r = st.rollout.as_ref();
            if let Some(why) = r.and_then(|r| r.analysis_unavailable.clone()) {
                return (
                    Readiness::Stalled {
                        reason: reasons::ANALYSIS_UNAVAILABLE,
                        message: format!(
                            "{why}; the rollout holds (onAnalysisUnavailable: Hold) and resumes when the backend answers; the progress deadline is extended by the outage"
                        ),
                    },
                    cfg.interval,
                );
            }
            if let Some(q) = r.and_then(|r| r.invalid_query.clone()) {
                return (
                    Readiness::Stalled {
                        reason: reasons::INVALID_QUERY,
                        message: format!("{q}; fix the query (the rollout holds, nothing is rolled back)"),
                    },
                    cfg.interval,
                );
            }
            let (ok, need) = (r.map(|r| r.successes).unwrap_or(0), cfg.successful_runs);
            // Woken for the next round, or when the step's bake is over, whichever is first.
            let next_round = r.filter(|_| cfg.has_analysis).and_then(|r| {
                let after_warmup = after(r.deployed_at?, cfg.warmup)?;
                let after_last = match r.last_measured_at {
                    Some(t) => after(t, cfg.interval)?,
                    None => after_warmup,
                };
                Some(after_warmup.max(after_last))
            });
            let bake_end = r.and_then(|r| after(r.deployed_at?, cfg.step_at(step_index(r, cfg)).bake)).filter(|t| *t > now);
            let next = [next_round, bake_end]
                .into_iter()
                .flatten()
                .min()
                .and_then(|at| (at - now).to_std().ok())
                .unwrap_or(Duration::from_millis(200))
                .max(Duration::from_millis(200));
            let at_step = match r.and_then(|r| Some((r.step?, r.steps?, r.weight?))) {
                Some((n, of, w)) => format!(" at step {n}/{of} ({w}% of the traffic)"),
                None => String::new(),
            };
            let baking = bake_end.map(|t| format!(", baking until {}", t.format("%H:%M:%S"))).unwrap_or_default();
            let message = if cfg.has_analysis {
                format!("analyzing {sha}{at_step}: {ok}/{need} passing rounds{baking}")
            } else {
                format!("{sha}{at_step}{baking}")
            };
            (Readiness::Reconciling { reason: reasons::ANALYZING, message }, next)
        }
    }
}

mod native;
mod predeploy;

pub use predeploy::{rollback_unsafe, snapshot_name, PreDeploy, StepObs, TaskObs, LOG_LINES, LOG_LINE_CHARS};

#[cfg(test)]
mod tests;
