//! What a release shows SREs in metrics: its phase, SHA and stable SHA, traffic weight, the
//! rollouts it finished; dropped when it is deleted.

use kube::ResourceExt;

use crate::api::{Phase, ServiceRelease, ServiceReleaseStatus};
use crate::controller::Context;

/// The desired SHA of a release, as text.
pub(super) fn sha_of(r: &ServiceRelease) -> String {
    r.spec.image.git_sha.to_string()
}

/// The static label of a rollback trigger (metric label values are static words).
pub(super) fn rollback_reason(trigger: &str) -> &'static str {
    match trigger {
        "analysis" => "analysis",
        "deployment_failed" => "deployment_failed",
        "deadline" => "deadline",
        "manual" => "manual",
        _ => "other",
    }
}

fn phase_word(p: Phase) -> &'static str {
    match p {
        Phase::Pending => "Pending",
        Phase::Progressing => "Progressing",
        Phase::Analyzing => "Analyzing",
        Phase::Healthy => "Healthy",
        Phase::RollingBack => "RollingBack",
        Phase::RolledBack => "RolledBack",
        Phase::Failed => "Failed",
        Phase::Paused => "Paused",
    }
}

const PHASES: [Phase; 8] = [
    Phase::Pending,
    Phase::Progressing,
    Phase::Analyzing,
    Phase::Healthy,
    Phase::RollingBack,
    Phase::RolledBack,
    Phase::Failed,
    Phase::Paused,
];

/// Drops every series of a deleted release, so no alert fires for a release that is gone.
pub(super) fn forget(ctx: &Context, r: &ServiceRelease) {
    let (ns, name) = (r.namespace().unwrap_or_default(), r.name_any());
    for p in PHASES {
        let _ = ctx.metrics.release_phase.remove_label_values(&[&ns, &name, phase_word(p)]);
    }
    let _ = ctx.metrics.rollback_unsafe.remove_label_values(&[&ns, &name]);
    let _ = ctx.metrics.release_waiting.remove_label_values(&[&ns, &name]);
    let st = r.status.clone().unwrap_or_default();
    let (cur, stable) = (st.current_sha.unwrap_or_default(), st.stable_sha.unwrap_or_default());
    let _ = ctx.metrics.release_info.remove_label_values(&[&ns, &name, &cur, &stable]);
    if let Some(ro) = st.rollout.as_ref().filter(|r| r.weight.is_some()) {
        let _ = ctx.metrics.release_traffic_weight.remove_label_values(&[&ns, &name, ro.step_text.as_deref().unwrap_or_default()]);
    }
    for q in r.spec.rollout.iter().filter_map(|ro| ro.analysis.as_ref()).flat_map(|a| &a.queries) {
        let _ = ctx.metrics.analysis_value.remove_label_values(&[&ns, &name, &q.name]);
    }
}

pub(super) fn export(ctx: &Context, r: &ServiceRelease, old: &ServiceReleaseStatus, new: &ServiceReleaseStatus) {
    let (ns, name) = (r.namespace().unwrap_or_default(), r.name_any());
    // Only the current phase's series exists (1): at 10,000 releases one series each instead
    // of eight (every query and alert asks for `== 1`).
    for p in PHASES.into_iter().filter(|p| *p != new.phase) {
        let _ = ctx.metrics.release_phase.remove_label_values(&[&ns, &name, phase_word(p)]);
    }
    ctx.metrics.release_phase.with_label_values(&[&ns, &name, phase_word(new.phase)]).set(1);
    let unsafe_hold = new.phase == Phase::Paused && new.rollback_unsafe.is_some() && new.rollout.as_ref().is_some_and(|r| r.held.is_some());
    // These two exist only while they are 1, as the phase's (alerts ask for `== 1`).
    for (gauge, on) in [(&ctx.metrics.rollback_unsafe, unsafe_hold), (&ctx.metrics.release_waiting, new.waiting.is_some())] {
        if on {
            gauge.with_label_values(&[&ns, &name]).set(1);
        } else {
            let _ = gauge.remove_label_values(&[&ns, &name]);
        }
    }
    let sha = |s: &ServiceReleaseStatus| (s.current_sha.clone().unwrap_or_default(), s.stable_sha.clone().unwrap_or_default());
    let (old_sha, old_stable) = sha(old);
    let (cur, stable) = sha(new);
    if (old_sha.clone(), old_stable.clone()) != (cur.clone(), stable.clone()) {
        let _ = ctx.metrics.release_info.remove_label_values(&[&ns, &name, &old_sha, &old_stable]);
    }
    ctx.metrics.release_info.with_label_values(&[&ns, &name, &cur, &stable]).set(1);
    let step = |s: &ServiceReleaseStatus| s.rollout.as_ref().and_then(|r| Some((r.weight?, r.step_text.clone().unwrap_or_default())));
    if let Some((_, old_step)) = step(old) {
        let _ = ctx.metrics.release_traffic_weight.remove_label_values(&[&ns, &name, &old_step]);
    }
    if let Some((weight, new_step)) = step(new) {
        ctx.metrics.release_traffic_weight.with_label_values(&[&ns, &name, &new_step]).set(i64::from(weight));
    }
    // New history entries are finished rollouts.
    let known = old.history.first().map(|h| (h.sha.clone(), h.started_at));
    for h in new.history.iter().take_while(|h| Some((h.sha.clone(), h.started_at)) != known) {
        let outcome = serde_json::to_value(h.outcome).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        ctx.metrics.rollouts.with_label_values(&[&outcome]).inc();
    }
}
