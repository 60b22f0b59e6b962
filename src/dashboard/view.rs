//! What the dashboard's pages show, computed from the objects the watches hold (pure: the
//! server only looks these up and serializes them).

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::ResourceExt;
use serde::Serialize;

use crate::api::{condition_types, Environment, Measurement, ServiceRelease, StackSpec};
use crate::core::conditions::find;

/// A row of the releases list.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// ECS or Lambda.
    pub target: &'static str,
    /// The Environment it deploys to.
    pub environment: String,
    /// Phase.
    pub phase: String,
    /// The SHA the spec names.
    pub sha: String,
    /// The SHA known good.
    pub stable_sha: Option<String>,
    /// Step of the rollout under way ("2/4").
    pub step: Option<String>,
    /// Share of the traffic on the new version.
    pub weight: Option<i32>,
    /// The upstream it is promoted from ("namespace/name").
    pub upstream: Option<String>,
    /// What it waits for (a reason), when its new SHA waits.
    pub waiting: Option<String>,
    /// The Ready condition's status.
    pub ready: Option<String>,
    /// The reason of Stalled, else of Reconciling, else of Ready.
    pub reason: Option<String>,
    /// When it was created (the page shows its age).
    pub created: Option<String>,
}

fn phase_text<T: Serialize>(p: &T) -> String {
    serde_json::to_value(p).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// The list's row of `r`.
pub fn release_row(r: &ServiceRelease) -> ReleaseRow {
    let st = r.status.clone().unwrap_or_default();
    let ns = r.namespace().unwrap_or_default();
    let ro = st.rollout.as_ref();
    let step = ro.and_then(|ro| match (ro.step_text.clone(), ro.step, ro.steps) {
        (Some(t), _, _) => Some(t),
        (None, Some(s), Some(n)) => Some(format!("{s}/{n}")),
        _ => None,
    });
    let reason = [condition_types::STALLED, condition_types::RECONCILING, condition_types::READY]
        .iter()
        .filter_map(|t| find(&st.conditions, t))
        .find(|c| c.status == "True" || c.type_ == condition_types::READY)
        .map(|c| c.reason.clone())
        .filter(|r| !r.is_empty());
    ReleaseRow {
        name: r.name_any(),
        target: if r.spec.function.is_some() { "Lambda" } else { "ECS" },
        environment: r.spec.environment.clone(),
        phase: phase_text(&st.phase),
        sha: r.spec.image.git_sha.to_string(),
        stable_sha: st.stable_sha.clone(),
        step,
        weight: ro.and_then(|ro| ro.weight),
        upstream: r
            .spec
            .promotion
            .as_ref()
            .and_then(|p| p.from.as_ref())
            .map(|f| format!("{}/{}", f.namespace.clone().unwrap_or_else(|| ns.clone()), f.name)),
        waiting: st.waiting.as_ref().map(|w| w.reason.clone()),
        ready: find(&st.conditions, condition_types::READY).map(|c| c.status.clone()),
        reason,
        created: r.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()),
        namespace: ns,
    }
}

/// A row of the Environments page.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentRow {
    /// Name.
    pub name: String,
    /// AWS account (when pinned).
    pub account: Option<String>,
    /// Region.
    pub region: String,
    /// ECS cluster.
    pub cluster: String,
    /// No new rollouts.
    pub freeze: bool,
    /// Change windows ("<cron> for <duration> (<zone>)").
    pub windows: Vec<String>,
    /// Blackouts ("<start> – <end>: <reason>").
    pub blackouts: Vec<String>,
    /// Namespaces allowed to deploy.
    pub allowed_namespaces: Vec<String>,
    /// The Ready condition's status.
    pub ready: Option<String>,
    /// Its message.
    pub message: Option<String>,
}

/// The Environments page's row of `e`.
pub fn environment_row(e: &Environment) -> EnvironmentRow {
    let ready = e.status.as_ref().and_then(|s| find(&s.conditions, condition_types::READY).cloned());
    EnvironmentRow {
        name: e.name_any(),
        account: e.spec.account_id.clone(),
        region: e.spec.region.clone(),
        cluster: e.spec.ecs_cluster.name.clone(),
        freeze: e.spec.freeze,
        windows: e
            .spec
            .windows
            .iter()
            .map(|w| format!("{} for {} ({})", w.schedule, w.duration, w.time_zone.as_deref().unwrap_or("UTC")))
            .collect(),
        blackouts: e.spec.blackouts.iter().map(|b| format!("{} – {}: {}", b.start.to_rfc3339(), b.end.to_rfc3339(), b.reason)).collect(),
        allowed_namespaces: e.spec.allowed_namespaces.clone(),
        ready: ready.as_ref().map(|c| c.status.clone()),
        message: ready.map(|c| c.message),
    }
}

/// A StackSpec as its page shows it: output keys, never values.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StackView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Environment.
    pub environment: String,
    /// Each resource as the status reports it.
    pub resources: Vec<crate::api::ResourceStatus>,
    /// The Ready condition's status.
    pub ready: Option<String>,
    /// The reason of Stalled, else of Ready.
    pub reason: Option<String>,
    /// Its message.
    pub message: Option<String>,
    /// The outputs ConfigMap's name.
    pub outputs: Option<String>,
    /// Its keys (the values stay in the cluster).
    pub output_keys: Vec<String>,
    /// A plan waiting for approval.
    pub plan: Vec<String>,
}

/// The StackSpecs page's entry of `s`, with the keys of its outputs ConfigMap when known.
pub fn stack_view(s: &StackSpec, outputs: Option<&ConfigMap>) -> StackView {
    let st = s.status.clone().unwrap_or_default();
    let cond = find(&st.conditions, condition_types::STALLED)
        .filter(|c| c.status == "True")
        .or_else(|| find(&st.conditions, condition_types::READY))
        .cloned();
    StackView {
        namespace: s.namespace().unwrap_or_default(),
        name: s.name_any(),
        environment: s.spec.environment.clone(),
        resources: st.resources.clone(),
        ready: find(&st.conditions, condition_types::READY).map(|c| c.status.clone()),
        reason: cond.as_ref().map(|c| c.reason.clone()),
        message: cond.map(|c| c.message),
        outputs: s.spec.outputs.clone(),
        output_keys: outputs.and_then(|c| c.data.as_ref()).map(|d| d.keys().cloned().collect()).unwrap_or_default(),
        plan: st.plan.map(|p| p.changes).unwrap_or_default(),
    }
}

/// An Event as the release page lists it.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    /// Normal or Warning.
    pub type_: String,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
    /// How many times.
    pub count: i32,
    /// When last seen.
    pub last: Option<String>,
}

/// When `e` last happened.
pub fn event_time(e: &Event) -> Option<DateTime<Utc>> {
    let jiff = e
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    DateTime::from_timestamp(jiff.as_second(), jiff.subsec_nanosecond().max(0) as u32)
}

/// The Events about one object, newest first, at most `limit`.
pub fn event_rows<'a>(events: impl Iterator<Item = &'a Event>, limit: usize) -> Vec<EventRow> {
    let mut rows: Vec<(Option<DateTime<Utc>>, EventRow)> = events
        .map(|e| {
            let at = event_time(e);
            let count = e.series.as_ref().and_then(|s| s.count).or(e.count).unwrap_or(1);
            (
                at,
                EventRow {
                    type_: e.type_.clone().unwrap_or_default(),
                    reason: e.reason.clone().unwrap_or_default(),
                    message: e.message.clone().unwrap_or_default(),
                    count,
                    last: at.map(|t| t.to_rfc3339()),
                },
            )
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    rows.into_iter().take(limit).map(|(_, r)| r).collect()
}

/// How many rollouts of a release the dashboard remembers the measurements of.
pub const ROLLOUTS_KEPT: usize = 3;
/// How many measurements of one rollout it remembers.
pub const MEASUREMENTS_KEPT: usize = 2_000;

/// The measurements of one rollout, as the watch saw them come (status keeps only the
/// latest rounds of the rollout under way; a rollout's chart needs them all).
#[derive(Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSeen {
    /// The rollout's SHA.
    pub sha: String,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// Every measurement seen, in time order.
    pub measurements: Vec<Measurement>,
}

/// Adds what `r`'s status shows of its rollout under way to what was seen before.
pub fn remember(seen: &mut VecDeque<RolloutSeen>, r: &ServiceRelease) {
    let Some(ro) = r.status.as_ref().and_then(|s| s.rollout.as_ref()) else { return };
    let same = |s: &RolloutSeen| s.sha == ro.sha && s.started_at == Some(ro.started_at);
    if !seen.back().is_some_and(same) {
        seen.push_back(RolloutSeen { sha: ro.sha.clone(), started_at: Some(ro.started_at), measurements: vec![] });
        while seen.len() > ROLLOUTS_KEPT {
            seen.pop_front();
        }
    }
    let Some(cur) = seen.back_mut() else { return };
    let mut known: std::collections::BTreeSet<(DateTime<Utc>, String, Option<String>)> =
        cur.measurements.iter().map(|m| (m.at, m.query.clone(), m.series.clone())).collect();
    for m in &ro.measurements {
        if known.insert((m.at, m.query.clone(), m.series.clone())) {
            cur.measurements.push(m.clone());
        }
    }
    cur.measurements.sort_by_key(|m| m.at);
    let extra = cur.measurements.len().saturating_sub(MEASUREMENTS_KEPT);
    cur.measurements.drain(..extra);
}

/// The release page: the object, its Events, the measurements seen, its Environment's row
/// (for the AWS console's links).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ReleasePage {
    /// The ServiceRelease as stored.
    pub release: serde_json::Value,
    /// Its row (what the list shows).
    pub row: ReleaseRow,
    /// Its Events, newest first.
    pub events: Vec<EventRow>,
    /// The measurements of its last rollouts the dashboard saw.
    pub rollouts: Vec<RolloutSeen>,
    /// Its Environment, when visible.
    pub environment: Option<EnvironmentRow>,
    /// The releases promoted from it.
    pub downstream: Vec<String>,
}

/// The promotion paths: for each release with an upstream or a downstream, its chain from
/// the first stage, as keys ("namespace/name").
pub fn chains(rows: &[ReleaseRow]) -> Vec<Vec<String>> {
    let key = |r: &ReleaseRow| format!("{}/{}", r.namespace, r.name);
    let mut next: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let known: std::collections::BTreeSet<String> = rows.iter().map(key).collect();
    for r in rows {
        if let Some(up) = &r.upstream {
            next.entry(up.clone()).or_default().push(key(r));
        }
    }
    // A first stage: downstreams but no upstream (or one not visible).
    let mut out = vec![];
    for r in rows {
        let k = key(r);
        let first = r.upstream.as_ref().is_none_or(|u| !known.contains(u));
        if !first || !next.contains_key(&k) {
            continue;
        }
        // Depth first, every path from this first stage; a cycle (refused by the controller)
        // stops where it closes.
        let mut stack = vec![vec![k]];
        while let Some(path) = stack.pop() {
            let last = path.last().cloned().unwrap_or_default();
            match next.get(&last) {
                Some(downs) if out.len() < 10_000 => {
                    for d in downs.iter().rev() {
                        if path.contains(d) {
                            out.push(path.clone());
                            continue;
                        }
                        let mut p = path.clone();
                        p.push(d.clone());
                        stack.push(p);
                    }
                }
                _ => out.push(path),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
