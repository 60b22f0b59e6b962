//! The rollout as a pure state machine: previous status + observations → next status,
//! the ECS calls to make, the Events to publish, the verdict for conditions and when to be
//! woken. All its state lives in `status`, so a restarted controller resumes exactly where
//! it was.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::analysis::Verdict;
use super::conditions::Readiness;
use crate::api::{reasons, HistoryEntry, Measurement, Outcome, Phase, RolloutStatus, ServiceReleaseStatus};

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
    /// spec.paused (or the pause annotation).
    pub paused: bool,
    /// The Environment's freeze.
    pub frozen: bool,
    /// Commands to act on.
    pub commands: &'a Commands,
    /// This pass's analysis round, when one was due.
    pub round: Option<(Verdict, Vec<Measurement>)>,
    /// Settings.
    pub config: &'a Config,
}

/// An ECS change to make.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Create the service on this task definition.
    CreateService { task_definition: String },
    /// Point the service at this task definition (and the desired count).
    UpdateService { task_definition: String },
}

/// What a step decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
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
    /// Set when this step rolls back: why (a static word for the metric).
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
    if now < deployed + to_chrono(cfg.warmup) {
        return false;
    }
    r.last_measured_at.is_none_or(|t| now >= t + to_chrono(cfg.interval))
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

const MEASUREMENTS_KEPT: usize = 20;

struct Ctx<'a, 'b> {
    inp: &'a Inputs<'b>,
    st: ServiceReleaseStatus,
    effects: Vec<Effect>,
    events: Vec<(bool, &'static str, String)>,
    rolled_back: Option<&'static str>,
}

impl Ctx<'_, '_> {
    fn history(&mut self, entry: HistoryEntry) {
        self.st.history.insert(0, entry);
        self.st.history.truncate(self.inp.config.history_limit.max(1));
    }

    fn finish_rollout(&mut self, outcome: Outcome, reason: String) {
        if let Some(r) = self.st.rollout.take() {
            self.history(HistoryEntry {
                sha: r.sha,
                task_definition_arn: r.task_definition_arn,
                outcome,
                started_at: r.started_at,
                finished_at: Some(self.inp.now),
                reason,
            });
        }
    }

    fn start(&mut self) {
        let inp = self.inp;
        let td = inp.task_definition.to_string();
        self.effects.push(match inp.service {
            None => Effect::CreateService { task_definition: td.clone() },
            Some(_) => Effect::UpdateService { task_definition: td.clone() },
        });
        self.st.rollout = Some(RolloutStatus {
            sha: inp.sha.to_string(),
            started_at: inp.now,
            deployment_id: None,
            measurements: vec![],
            failures: 0,
            successes: 0,
            spec_hash: inp.spec_hash.to_string(),
            task_definition_arn: Some(td.clone()),
            deployed_at: None,
            last_measured_at: None,
            invalid_query: None,
        });
        self.st.phase = Phase::Progressing;
        self.st.current_sha = Some(inp.sha.to_string());
        self.st.task_definition_arn = Some(td);
        self.events.push((false, reasons::PROGRESSING, format!("rolling out {}", inp.sha)));
    }

    fn promote(&mut self, reason: String) {
        let r = self.st.rollout.clone().expect("promote needs a rollout");
        self.st.stable_sha = Some(r.sha.clone());
        self.st.stable_task_definition_arn = r.task_definition_arn.clone();
        self.st.stable_spec_hash = Some(r.spec_hash.clone());
        self.st.rejected_spec_hash = None;
        self.st.phase = Phase::Healthy;
        self.events.push((false, reasons::PROMOTED, format!("{} promoted: {reason}", r.sha)));
        self.finish_rollout(Outcome::Promoted, reason);
    }

    /// The rollout failed: roll back to stable when there is one (and autoRollback), else Failed.
    fn fail(&mut self, reason: String, why: &'static str) {
        let r = self.st.rollout.clone().expect("fail needs a rollout");
        self.st.rejected_spec_hash = Some(r.spec_hash.clone());
        let stable = self.st.stable_task_definition_arn.clone().filter(|s| Some(s) != r.task_definition_arn.as_ref());
        match stable {
            Some(stable_td) if self.inp.config.auto_rollback => {
                self.effects.push(Effect::UpdateService { task_definition: stable_td.clone() });
                self.st.phase = Phase::RolledBack;
                self.st.current_sha = self.st.stable_sha.clone();
                self.st.task_definition_arn = Some(stable_td);
                self.rolled_back = Some(why);
                let msg = format!("{} rolled back to {}: {reason}", r.sha, self.st.stable_sha.clone().unwrap_or_default());
                self.events.push((true, reasons::ROLLED_BACK, msg));
                self.finish_rollout(Outcome::RolledBack, reason);
            }
            _ => {
                self.st.phase = Phase::Failed;
                let msg = if self.st.stable_sha.is_none() {
                    format!("{} failed and there is no stable release to roll back to; the service is left as is: {reason}", r.sha)
                } else {
                    format!("{} failed (autoRollback is off; the service is left as is): {reason}", r.sha)
                };
                self.events.push((true, reasons::ROLLOUT_FAILED, msg));
                self.finish_rollout(Outcome::Failed, reason);
            }
        }
    }
}

/// One step of the rollout.
pub fn step(prev: &ServiceReleaseStatus, inp: &Inputs) -> Step {
    let mut c = Ctx { inp, st: prev.clone(), effects: vec![], events: vec![], rolled_back: None };
    // Commands are acted on once per annotation value.
    for (name, value) in [("retry", &inp.commands.retry), ("rollback", &inp.commands.rollback), ("promote", &inp.commands.promote)] {
        if let Some(v) = value {
            c.st.handled_commands.insert(name.to_string(), v.clone());
        }
    }
    if inp.commands.retry.is_some() && c.st.rejected_spec_hash.as_deref() == Some(inp.spec_hash) {
        c.st.rejected_spec_hash = None;
    }

    // A rollout whose spec is no longer the desired one is superseded.
    if c.st.rollout.as_ref().is_some_and(|r| r.spec_hash != inp.spec_hash) {
        c.finish_rollout(Outcome::Superseded, "the spec changed before it finished".into());
        c.st.phase = Phase::Pending;
    }

    // Manual commands on a rollout in flight.
    if c.st.rollout.is_some() && inp.commands.promote.is_some() {
        c.promote("promoted by hand".into());
    } else if c.st.rollout.is_some() && inp.commands.rollback.is_some() {
        c.fail("rolled back by hand".into(), "manual");
    } else if c.st.rollout.is_none() && inp.commands.rollback.is_some() {
        if let (Some(stable_td), Some(current)) = (c.st.stable_task_definition_arn.clone(), c.st.task_definition_arn.clone()) {
            if stable_td != current || c.st.stable_spec_hash.as_deref() == Some(inp.spec_hash) {
                // Back to stable, and the desired spec is not retried until it changes.
                c.effects.push(Effect::UpdateService { task_definition: stable_td.clone() });
                c.st.rejected_spec_hash = Some(inp.spec_hash.to_string());
                c.st.phase = Phase::RolledBack;
                c.st.current_sha = c.st.stable_sha.clone();
                c.st.task_definition_arn = Some(stable_td);
                c.rolled_back = Some("manual");
                c.events.push((true, reasons::ROLLED_BACK, "rolled back by hand".into()));
            }
        }
    }

    if let Some(r) = c.st.rollout.clone() {
        advance(&mut c, r);
    } else {
        idle(&mut c);
    }

    let (readiness, requeue) = verdict(&c.st, inp);
    Step { status: c.st, effects: c.effects, events: c.events, readiness, requeue, rolled_back: c.rolled_back }
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
    c.start();
}

/// Keeps the service on the task definition it should run (drift correction).
fn hold(c: &mut Ctx) {
    let Some(svc) = c.inp.service else { return };
    let want = c.st.task_definition_arn.clone().or(c.st.stable_task_definition_arn.clone());
    if let Some(want) = want {
        let count_drift = svc.desired_count != c.inp.replicas;
        let (max, min) = c.inp.deployment_percents;
        let config_drift = svc.maximum_percent.is_some_and(|m| m != max) || svc.minimum_healthy_percent.is_some_and(|m| m != min);
        if (svc.task_definition != want || count_drift || config_drift)
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
    let td = r.task_definition_arn.clone().unwrap_or_default();
    // The deadline holds while a query is invalid: a broken query is not the release's fault.
    if r.invalid_query.is_none() && inp.now >= r.started_at + to_chrono(cfg.progress_deadline) {
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
    let deployment = svc.deployments.iter().find(|d| d.task_definition == td && d.status == "PRIMARY");
    if svc.task_definition != td {
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
        Phase::Analyzing => analyze(c),
        _ => {
            c.st.phase = Phase::Progressing;
            if deployment.is_some_and(|d| d.rollout_state == "COMPLETED") {
                if !cfg.has_analysis {
                    c.promote("the ECS deployment completed (no analysis configured)".into());
                    return;
                }
                c.st.phase = Phase::Analyzing;
                if let Some(rs) = c.st.rollout.as_mut() {
                    rs.deployed_at = Some(inp.now);
                }
            }
        }
    }
}

/// The measurement of a round worth showing (`shipshape status`, LAST MEASUREMENT): the
/// first failing one, else the first that did not pass (inconclusive, invalid), else the last.
fn headline(round: &[Measurement]) -> Option<&Measurement> {
    round.iter().find(|m| m.verdict == "Fail").or_else(|| round.iter().find(|m| m.verdict != "Pass")).or(round.last())
}

fn analyze(c: &mut Ctx) {
    let inp = c.inp;
    let cfg = inp.config;
    let Some((verdict, measurements)) = inp.round.clone() else {
        return;
    };
    c.st.last_measurement = headline(&measurements).cloned().or(c.st.last_measurement.take());
    let rs = c.st.rollout.as_mut().expect("analyzing has a rollout");
    rs.last_measured_at = Some(inp.now);
    rs.measurements.extend(measurements);
    let excess = rs.measurements.len().saturating_sub(MEASUREMENTS_KEPT);
    rs.measurements.drain(..excess);
    rs.invalid_query = None;
    match verdict {
        Verdict::Pass => {
            rs.successes += 1;
            if rs.successes >= cfg.successful_runs {
                let n = rs.successes;
                c.promote(format!("{n} passing analysis rounds in a row"));
            }
        }
        Verdict::Fail(reason) => {
            rs.successes = 0;
            rs.failures += 1;
            if rs.failures > cfg.failure_limit {
                c.fail(reason, "analysis");
            }
        }
        Verdict::Inconclusive(_) => {}
        Verdict::Invalid(reason) => rs.invalid_query = Some(reason),
    }
}

/// Conditions and the wake-up time for a status.
fn verdict(st: &ServiceReleaseStatus, inp: &Inputs) -> (Readiness, Duration) {
    let cfg = inp.config;
    let sha = inp.sha;
    match st.phase {
        Phase::Healthy => (
            Readiness::Ready { reason: reasons::RECONCILED, message: format!("{} is stable", st.stable_sha.clone().unwrap_or_default()) },
            cfg.drift_interval,
        ),
        Phase::RolledBack => {
            let why = st.history.first().map(|h| h.reason.clone()).unwrap_or_default();
            let msg = format!(
                "{sha} was rolled back to {}: {why}; it is not retried until the spec changes or shipshape.dev/retry is set",
                st.stable_sha.clone().unwrap_or_default()
            );
            (Readiness::Stalled { reason: reasons::ROLLED_BACK, message: msg }, cfg.drift_interval)
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
        Phase::Paused => {
            let who = if inp.frozen { "the Environment is frozen" } else { "the release is paused" };
            (Readiness::Stalled { reason: reasons::PAUSED, message: format!("{sha} is not rolled out: {who}") }, cfg.drift_interval)
        }
        Phase::Progressing | Phase::Pending => (
            Readiness::Reconciling { reason: reasons::PROGRESSING, message: format!("rolling out {sha}: waiting for the ECS deployment") },
            Duration::from_secs(2),
        ),
        Phase::Analyzing => {
            let r = st.rollout.as_ref();
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
            let next = r
                .and_then(|r| {
                    let after_warmup = r.deployed_at? + to_chrono(cfg.warmup);
                    let after_last = r.last_measured_at.map(|t| t + to_chrono(cfg.interval)).unwrap_or(after_warmup);
                    let at = after_warmup.max(after_last);
                    (at - inp.now).to_std().ok()
                })
                .unwrap_or(Duration::from_millis(200))
                .max(Duration::from_millis(200));
            (Readiness::Reconciling { reason: reasons::ANALYZING, message: format!("analyzing {sha}: {ok}/{need} passing rounds") }, next)
        }
    }
}

#[cfg(test)]
mod tests;
