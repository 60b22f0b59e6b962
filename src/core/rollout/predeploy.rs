//! Steps before traffic (`spec.rollout.preDeploy`): migrations run as one-off tasks from the
//! new revision, one at a time, after its task definition is registered and before any
//! traffic moves to it; a database snapshot first where a step asks for one. The rollout's
//! traffic starts only when every step has exited 0. A step that fails fails the rollout
//! with the service untouched (`PreDeployFailed`); one marked irreversible that succeeded
//! keeps the controller from rolling the rollout back by itself ([`rollback_unsafe`]).
//!
//! All of it lives in `status.rollout.preDeploy`: a controller restarted mid-step finds its
//! task again by the step's `startedBy` (and ECS's idempotency token), never starting a
//! step twice for the same rollout.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{after, reasons, Ctx, Effect, Phase, RolloutOutcome};
use crate::api::{PreDeployStatus, RolloutStatus};

/// A step before traffic, from the spec.
#[derive(Clone, Debug, PartialEq)]
pub struct PreDeploy {
    /// Its name.
    pub name: String,
    /// How long its task may run.
    pub timeout: Duration,
    /// The RDS instance to snapshot first.
    pub snapshot: Option<String>,
    /// No automatic rollback once it succeeded.
    pub irreversible: bool,
}

/// What AWS reports of the current step: its snapshot, or its task.
#[derive(Clone, Debug, PartialEq)]
pub enum StepObs {
    /// The snapshot's status (`creating`, `available`, `failed`…), None when RDS has none.
    Snapshot(Option<String>),
    /// The step's task, None when ECS has none. (A Lambda step's invocation, once it
    /// returned, is reported as a stopped task: exit 0, or 1 with the function error.)
    Task(Option<TaskObs>),
    /// A Lambda step whose synchronous invocation was made but whose outcome was not
    /// recorded (the controller stopped meanwhile): it cannot be found again, and is not
    /// made a second time.
    Lost,
}

/// A one-off ECS task as DescribeTasks reports it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TaskObs {
    /// Task ARN.
    pub arn: String,
    /// PROVISIONING, PENDING, ACTIVATING, RUNNING, DEACTIVATING, STOPPING, DEPROVISIONING,
    /// STOPPED.
    pub last_status: String,
    /// The container's exit code, once it exited.
    pub exit_code: Option<i32>,
    /// ECS's stopCode (EssentialContainerExited, TaskFailedToStart, UserInitiated…).
    pub stop_code: Option<String>,
    /// ECS's stoppedReason, or the container's reason.
    pub stopped_reason: Option<String>,
    /// Its CloudWatch Logs stream, when the task definition logs to CloudWatch.
    pub log_stream: Option<String>,
    /// The last lines of its output (read once it stopped).
    pub log_tail: Vec<String>,
    /// When ECS created it.
    pub created_at: Option<DateTime<Utc>>,
}

/// How long a snapshot may take before the step fails (RDS takes minutes for small
/// databases, longer for large ones; the step's own timeout counts from its task).
pub const SNAPSHOT_WAIT: Duration = Duration::from_secs(2 * 3600);

/// Lines of a task's output kept in status, and characters per line.
pub const LOG_LINES: usize = 10;
/// See [`LOG_LINES`].
pub const LOG_LINE_CHARS: usize = 300;

/// The snapshot name for `db` before `sha` at `now`: `<db>-pre-<short sha>-<UTC time>`, as
/// RDS allows (letters, digits, hyphens; at most 255; no two hyphens in a row).
pub fn snapshot_name(db: &str, sha: &str, now: DateTime<Utc>) -> String {
    let short: String = sha.chars().take(7).collect();
    format!("{db}-pre-{short}-{}", now.format("%Y%m%dt%H%M%Sz"))
}

/// The steps of a rollout that are not done: the index of the first one not Succeeded, None
/// when all are.
pub(super) fn pending(r: &RolloutStatus, steps: &[PreDeploy]) -> Option<usize> {
    (0..steps.len()).find(|i| r.pre_deploy.get(*i).is_none_or(|s| s.phase != "Succeeded"))
}

/// An irreversible step of this rollout succeeded: the controller may not roll it back.
pub fn rollback_unsafe(r: &RolloutStatus) -> Option<&PreDeployStatus> {
    r.pre_deploy.iter().find(|s| s.irreversible && s.phase == "Succeeded")
}

/// One pass over the steps before traffic. Returns true when every step has succeeded (the
/// traffic may move now).
pub(super) fn advance(c: &mut Ctx, r: &RolloutStatus) -> bool {
    let inp = c.inp;
    let steps = &inp.config.pre_deploy;
    let Some(i) = pending(r, steps) else { return true };
    let Some(step) = steps.get(i) else { return true };
    let td = r.task_definition_arn.clone().unwrap_or_default();
    let now = inp.now;
    c.st.phase = Phase::Progressing;
    let Some(current) = r.pre_deploy.get(i).cloned() else {
        // The step begins: its snapshot first, else its task.
        let mut s = PreDeployStatus {
            name: step.name.clone(),
            irreversible: step.irreversible,
            started_at: Some(now),
            ..PreDeployStatus::default()
        };
        match &step.snapshot {
            Some(db) => {
                let name = snapshot_name(db, &r.sha, now);
                s.phase = "Snapshotting".into();
                s.snapshot = Some(name.clone());
                c.effects.push(Effect::Snapshot { database: db.clone(), name, task_definition: td });
            }
            None => {
                s.phase = "Running".into();
                c.effects.push(Effect::RunTask { step: i, task_definition: td });
            }
        }
        set(c, i, s);
        return false;
    };
    match (current.phase.as_str(), inp.pre_deploy.as_ref()) {
        ("Snapshotting", obs) => {
            let status = match obs {
                Some(StepObs::Snapshot(s)) => s.clone(),
                _ => None,
            };
            let name = current.snapshot.clone().unwrap_or_default();
            let db = step.snapshot.clone().unwrap_or_default();
            match status.as_deref() {
                Some("available") => {
                    c.events.push((
                        false,
                        reasons::PRE_DEPLOY_SNAPSHOT,
                        format!("snapshot {name} of database {db} taken before step {}", step.name),
                    ));
                    let mut s = current;
                    s.phase = "Running".into();
                    s.started_at = Some(now);
                    set(c, i, s);
                    c.effects.push(Effect::RunTask { step: i, task_definition: td.clone() });
                    if let Some(keep) = inp.config.snapshot_retention {
                        c.effects.push(Effect::PruneSnapshots { database: db.clone(), keep, newest: name.clone(), task_definition: td });
                    }
                }
                Some(bad @ ("failed" | "incompatible-restore" | "deleted")) => {
                    fail(c, i, current, format!("snapshot {name} of database {db} is {bad}"), None);
                }
                _ if current.started_at.and_then(|t| after(t, SNAPSHOT_WAIT)).is_some_and(|t| now >= t) => {
                    let why = format!("snapshot {name} of database {db} was not available after {}h", SNAPSHOT_WAIT.as_secs() / 3600);
                    fail(c, i, current, why, None);
                }
                None if current.reason.is_none()
                    && current.started_at.and_then(|t| after(t, Duration::from_secs(60))).is_some_and(|t| now >= t) =>
                {
                    // Asked for a minute ago and still unknown to RDS: asked once more (the
                    // request may have been lost; RDS refuses a second one of the name).
                    let mut s = current;
                    s.reason = Some(format!("snapshot {name} asked for again"));
                    set(c, i, s);
                    c.effects.push(Effect::Snapshot { database: db, name, task_definition: td });
                }
                _ => {}
            }
            false
        }
        ("Running", Some(StepObs::Lost)) => {
            let why = "its outcome is unknown: the controller stopped during the synchronous invocation (it is not invoked twice; set shipshape.dev/retry to run the steps again)".to_string();
            fail(c, i, current, why, None);
            false
        }
        ("Running", obs) => {
            let task = match obs {
                Some(StepObs::Task(t)) => t.clone(),
                _ => None,
            };
            let Some(task) = task else {
                let waited = |d: Duration| current.started_at.and_then(|t| after(t, d)).is_some_and(|t| now >= t);
                if let Some(arn) = current.task_arn.clone().filter(|_| waited(Duration::from_secs(60))) {
                    // ECS keeps a stopped task visible for an hour at least: one it no longer
                    // knows (past the first minute, when DescribeTasks may not show it yet)
                    // was lost.
                    let why = format!("task {arn} is no longer known to ECS");
                    fail(c, i, current, why, None);
                } else if waited(step.timeout) {
                    let why = format!("its task never started within the timeout ({}s)", step.timeout.as_secs());
                    fail(c, i, current, why, None);
                } else if current.task_arn.is_some() {
                    // Just started: ECS may not show it yet.
                } else {
                    // Started, but not seen yet (or the start was lost): asked again with the
                    // same idempotency token, so ECS starts it once.
                    c.effects.push(Effect::RunTask { step: i, task_definition: td });
                }
                return false;
            };
            let mut s = current;
            s.task_arn = Some(task.arn.clone());
            s.log_stream = task.log_stream.clone().or(s.log_stream);
            let timed_out = s.reason.as_deref().is_some_and(|r| r.starts_with("timed out"));
            if task.last_status == "STOPPED" {
                s.exit_code = task.exit_code;
                s.log_tail = task.log_tail.clone();
                s.finished_at = Some(now);
                if task.exit_code == Some(0) && !timed_out {
                    s.phase = "Succeeded".into();
                    s.reason = None;
                    if step.irreversible {
                        let snapshot = s.snapshot.as_ref().map(|n| format!(" (snapshot before it: {n})")).unwrap_or_default();
                        c.st.rollback_unsafe = Some(format!("irreversible preDeploy step {} of {}{snapshot} succeeded", step.name, r.sha));
                    }
                    let took = s.started_at.map(|t| (now - t).num_seconds().max(0)).unwrap_or(0);
                    let msg = format!("step {} succeeded (exit 0) in {took}s, task {}", step.name, task.arn);
                    c.events.push((false, reasons::PRE_DEPLOY_SUCCEEDED, msg));
                    set(c, i, s);
                    // The next step begins in the same pass.
                    let Some(next) = c.st.rollout.clone() else { return false };
                    return advance(c, &next);
                }
                let mut why = match task.exit_code {
                    Some(code) => format!("exited {code}"),
                    None => "never ran its command".to_string(),
                };
                if timed_out {
                    why = format!("{} ({why})", s.reason.clone().unwrap_or_default());
                }
                let ecs = [task.stop_code.clone(), task.stopped_reason.clone()].into_iter().flatten().collect::<Vec<_>>().join(": ");
                if !ecs.is_empty() {
                    why = format!("{why}; ECS: {ecs}");
                }
                fail(c, i, s, why, Some(task.arn));
                return false;
            }
            let deadline = s.started_at.and_then(|t| after(t, step.timeout));
            if !timed_out && deadline.is_some_and(|d| now >= d) {
                s.reason = Some(format!("timed out after {}s", step.timeout.as_secs()));
                c.effects.push(Effect::StopTask { task: task.arn.clone(), task_definition: td });
            } else if timed_out && task.last_status != "STOPPING" && task.last_status != "DEPROVISIONING" {
                // Stop asked again until ECS stops it.
                c.effects.push(Effect::StopTask { task: task.arn.clone(), task_definition: td });
            }
            set(c, i, s);
            false
        }
        _ => false,
    }
}

fn set(c: &mut Ctx, i: usize, s: PreDeployStatus) {
    if let Some(rs) = c.st.rollout.as_mut() {
        rs.pre_deploy.truncate(i);
        rs.pre_deploy.push(s);
    }
}

/// Step `i` failed: so does the rollout, before any traffic moved. The service stays on the
/// stable version (nothing to roll back); the spec is not retried until it changes or the
/// retry annotation is set.
fn fail(c: &mut Ctx, i: usize, mut s: PreDeployStatus, why: String, task: Option<String>) {
    let name = s.name.clone();
    s.phase = "Failed".into();
    s.reason = Some(why.chars().take(1000).collect());
    s.finished_at = Some(c.inp.now);
    let mut msg = format!("step {name} failed: {why}; no traffic moved");
    if let Some(arn) = task {
        msg.push_str(&format!(", task {arn}"));
    }
    if let Some(stream) = &s.log_stream {
        msg.push_str(&format!(", log stream {stream}"));
    }
    if !s.log_tail.is_empty() {
        msg.push_str(&format!("; last lines: {}", s.log_tail.join(" | ")));
    }
    set(c, i, s);
    let Some(r) = c.st.rollout.clone() else { return };
    c.st.rejected_spec_hash = Some(r.spec_hash.clone());
    c.st.phase = Phase::Failed;
    // Nothing moved: the release still runs what it ran (current_sha and the task
    // definition are set only when traffic moves).
    let sha = r.sha.clone();
    c.events.push((true, reasons::PRE_DEPLOY_FAILED, format!("{sha}: {msg}")));
    c.finish_rollout(RolloutOutcome::Failed, format!("preDeploy {msg}"));
}

/// The step under way, for status messages: "step migrate (1/2) running".
pub(super) fn describe(r: &RolloutStatus, total: usize) -> Option<String> {
    let i = r.pre_deploy.iter().position(|s| s.phase == "Running" || s.phase == "Snapshotting")?;
    let s = r.pre_deploy.get(i)?;
    let what = match s.phase.as_str() {
        "Snapshotting" => format!("taking snapshot {}", s.snapshot.clone().unwrap_or_default()),
        _ => match &s.task_arn {
            Some(arn) => format!("running (task {})", arn.rsplit('/').next().unwrap_or(arn)),
            None => "starting its task".to_string(),
        },
    };
    Some(format!("preDeploy step {} ({}/{total}) {what}", s.name, i + 1))
}
