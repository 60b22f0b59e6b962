//! A rollout carried by ECS's own CANARY, LINEAR or BLUE_GREEN deployment. ECS shifts the
//! production traffic between the load balancer's two target groups; shipshape's PAUSE
//! lifecycle hooks stop it before each shift (PRE_PRODUCTION_TRAFFIC_SHIFT, "invoked before
//! every traffic shift step" for linear and canary) and after the last
//! (POST_PRODUCTION_TRAFFIC_SHIFT). At each pause the share on the new revision is one of the
//! strategy's steps: the analysis judges it there, through the step's bake, and the
//! deployment is continued (ContinueServiceDeployment CONTINUE) or rolled back (ROLLBACK, the
//! old revision still running, so ECS moves the traffic back at once).

use super::{analyze, reasons, step_done, Ctx, Effect, Phase, RollbackStatus, RolloutStatus, ServiceObs};

/// One pass over a native rollout toward `td`.
pub(super) fn advance(c: &mut Ctx, r: &RolloutStatus, td: String, svc: &ServiceObs) {
    let inp = c.inp;
    let cfg = inp.config;
    let Some(d) = svc.service_deployment.as_ref().filter(|d| d.task_definition == td) else {
        if svc.task_definition != td {
            // The service deployment that carries the rollout (with shipshape's pause hooks).
            c.effects.push(Effect::UpdateService { task_definition: td });
        }
        c.st.phase = Phase::Progressing;
        return;
    };
    if let Some(rs) = c.st.rollout.as_mut() {
        rs.service_deployment_arn = Some(d.arn.clone());
        rs.stage = d.stage.clone();
        rs.weight = d.weight.or(rs.weight);
    }
    let last = cfg.steps.len().saturating_sub(1);
    match d.status.as_str() {
        "SUCCESSFUL" => {
            // ECS finished without a pause of ours left (a first version, created without
            // hooks): judged at all of the traffic, as a rolling deployment is.
            enter(c, r, last);
            analyze(c);
            step_done(c, None);
        }
        "PENDING" | "IN_PROGRESS" => {
            let Some(hook) = d.paused_hook.clone() else {
                // ECS is scaling or shifting.
                if c.st.phase != Phase::Analyzing {
                    c.st.phase = Phase::Progressing;
                }
                return;
            };
            let weight = d.weight.unwrap_or(0);
            if weight == 0 {
                // Before the first shift: nothing on the new revision to judge yet.
                c.effects.push(Effect::Resume { deployment: d.arn.clone(), hook, task_definition: td, rollback: false });
                c.st.phase = Phase::Progressing;
                return;
            }
            // The step whose share is live (a share between two steps counts as the next).
            let index = cfg.steps.iter().position(|s| s.weight >= weight).unwrap_or(last);
            let n = i32::try_from(index.saturating_add(1)).unwrap_or(i32::MAX);
            if cfg.stepped() && r.step.is_some_and(|step| n < step) {
                // A read from before the last CONTINUE took effect: never a step back.
                return;
            }
            enter(c, r, index);
            analyze(c);
            step_done(c, Some((d.arn.clone(), hook)));
        }
        _ => {
            // ECS stopped or rolled back the deployment itself (a hook timed out, its
            // circuit breaker or alarms, someone by hand): the traffic is going back.
            let why = d.reason.clone().unwrap_or_default();
            let reason = format!(
                "ECS service deployment {} is {}{}",
                d.arn,
                d.status,
                if why.is_empty() { String::new() } else { format!(": {why}") }
            );
            rolled_back_by_ecs(c, r, reason);
        }
    }
}

/// The rollout is judged at step `index` (0-based): entering it when it was not already.
fn enter(c: &mut Ctx, r: &RolloutStatus, index: usize) {
    let inp = c.inp;
    let cfg = inp.config;
    let n = i32::try_from(index.saturating_add(1)).unwrap_or(i32::MAX);
    let of = i32::try_from(cfg.steps.len()).unwrap_or(i32::MAX);
    let same_step = !cfg.stepped() || r.step == Some(n);
    if c.st.phase == Phase::Analyzing && same_step {
        return;
    }
    c.st.phase = Phase::Analyzing;
    if let Some(rs) = c.st.rollout.as_mut() {
        if cfg.stepped() && r.step != Some(n) {
            rs.step = Some(n);
            rs.steps = Some(of);
            rs.step_text = Some(format!("{n}/{of}"));
            rs.successes = 0;
            rs.step_started_at = Some(inp.now);
        }
        rs.deployed_at = Some(inp.now);
        rs.last_measured_at = None;
    }
}

/// ECS itself took the traffic back: the release is RolledBack (to the stable revision it
/// had) without a call of shipshape's, or Failed when there was no stable one.
fn rolled_back_by_ecs(c: &mut Ctx, r: &RolloutStatus, reason: String) {
    let Some(stable) = c.st.stable_task_definition_arn.clone().filter(|s| Some(s) != r.task_definition_arn.as_ref()) else {
        c.fail(reason, "deployment_failed");
        return;
    };
    c.st.rejected_spec_hash = Some(r.spec_hash.clone());
    c.events.push((true, reasons::ROLLING_BACK, format!("{} is being rolled back by ECS: {reason}", r.sha)));
    c.st.rollback = Some(RollbackStatus {
        task_definition_arn: stable.clone(),
        function_version_arn: None,
        reason,
        trigger: "deployment_failed".into(),
        requested_at: c.inp.now,
        error: None,
        failed_attempts: 0,
    });
    let (st, events) = super::rollback_accepted(&c.st, &stable, c.inp.now, c.inp.config.history_limit);
    c.st = st;
    c.events.extend(events);
}
