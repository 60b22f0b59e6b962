//! The release commands (`shipshape status|rollback|promote|pause|resume|retry`, also as
//! `kubectl shipshape ...`). They act through annotations, never by editing the spec, so
//! GitOps tools do not fight them.

use chrono::Utc;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::{condition_types, ServiceRelease};
use crate::controller::release_annotations as ann;
use crate::core::conditions::find;

/// The annotation `shipshape approve` sets: the SHA approved.
pub const APPROVE: &str = "shipshape.dev/approve";

/// A command on one release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Point the service back at the stable task definition now.
    Rollback,
    /// Promote the rollout in flight now.
    Promote,
    /// Start no new rollout.
    Pause,
    /// Undo pause.
    Resume,
    /// Retry a rolled-back spec.
    Retry,
    /// Approve a SHA (`promotion.approval: Manual`): the one given, else the spec's.
    Approve(Option<String>),
}

/// Sets the command's annotation on the release.
pub async fn act(client: Client, namespace: &str, name: &str, cmd: Command) -> anyhow::Result<String> {
    let api: Api<ServiceRelease> = Api::namespaced(client, namespace);
    // The API server's refusal stays the error's source (the dashboard answers with its code).
    let release = api.get(name).await.map_err(|e| anyhow::Error::new(e).context(format!("servicerelease {namespace}/{name}")))?;
    let stamp = Utc::now().to_rfc3339();
    let approved;
    let (key, value, done) = match cmd {
        Command::Approve(sha) => {
            let sha = sha.unwrap_or_else(|| release.spec.image.git_sha.to_string());
            sha.parse::<crate::api::GitSha>().map_err(|e| anyhow::anyhow!("{e}"))?;
            approved = format!("{sha} approved");
            (APPROVE, json!(sha), approved.as_str())
        }
        Command::Rollback => (ann::ROLLBACK, json!(stamp), "rollback requested"),
        Command::Promote => (ann::PROMOTE, json!(stamp), "promotion requested"),
        Command::Retry => (ann::RETRY, json!(stamp), "retry requested"),
        Command::Pause => (ann::PAUSED, json!("true"), "paused"),
        Command::Resume => (ann::PAUSED, serde_json::Value::Null, "resumed"),
    };
    let patch = json!({"metadata": {"annotations": {key: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|e| anyhow::Error::new(e).context(format!("servicerelease {namespace}/{name}")))?;
    Ok(format!("servicerelease {namespace}/{name}: {done}"))
}

fn age(r: &ServiceRelease) -> String {
    let Some(t) = r.metadata.creation_timestamp.as_ref() else { return "-".into() };
    let secs = (k8s_openapi::jiff::Timestamp::now() - t.0).get_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A table of releases (one namespace, or all).
pub async fn status(client: Client, namespace: Option<&str>) -> anyhow::Result<String> {
    let api: Api<ServiceRelease> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let list = api.list(&ListParams::default()).await?;
    let mut rows =
        vec![["NAMESPACE", "NAME", "PHASE", "SHA", "STABLE", "TRAFFIC", "READY", "LAST MEASUREMENT", "AGE"].map(String::from).to_vec()];
    for r in &list.items {
        let st = r.status.clone().unwrap_or_default();
        let ready = find(&st.conditions, condition_types::READY).map(|c| c.status.clone()).unwrap_or_else(|| "-".into());
        let last = st
            .rollout
            .as_ref()
            .and_then(|ro| ro.measurements.last())
            .or(st.last_measurement.as_ref())
            .map(|m| format!("{}={} ({})", m.query, m.value.map(|v| format!("{v:.4}")).unwrap_or_else(|| "no data".into()), m.verdict))
            .unwrap_or_else(|| "-".into());
        // Share of the traffic on the rollout's version, and its step when it moves in steps.
        let traffic = match st.rollout.as_ref().map(|ro| (ro.weight, ro.step_text.as_deref())) {
            Some((Some(w), Some(step))) => format!("{w}% (step {step})"),
            Some((Some(w), None)) => format!("{w}%"),
            Some((None, Some(step))) => format!("- (step {step})"),
            _ => "-".into(),
        };
        // An ECS service deployment's lifecycle stage beside it.
        let traffic = match st.rollout.as_ref().and_then(|ro| ro.stage.as_deref()) {
            Some(stage) => format!("{traffic} at {stage}"),
            None => traffic,
        };
        // Before traffic: the step under way (or the one that failed, in the last rollout).
        let steps = r.spec.rollout.as_ref().map(|ro| ro.pre_deploy.len()).unwrap_or(0);
        let before = |list: &[crate::api::PreDeployStatus]| {
            list.iter()
                .enumerate()
                .find(|(_, s)| s.phase != "Succeeded")
                .map(|(i, s)| format!("0% (preDeploy {} {}/{steps}: {})", s.name, i + 1, s.phase))
        };
        let traffic = match (st.rollout.as_ref(), st.phase) {
            (Some(ro), crate::api::Phase::Progressing) => before(&ro.pre_deploy).unwrap_or(traffic),
            (None, crate::api::Phase::Failed) => st.history.first().and_then(|h| before(&h.pre_deploy)).unwrap_or(traffic),
            _ => traffic,
        };
        let phase = serde_json::to_value(st.phase).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        rows.push(vec![
            r.namespace().unwrap_or_default(),
            r.name_any(),
            phase,
            r.spec.image.git_sha.to_string(),
            st.stable_sha.unwrap_or_else(|| "-".into()),
            traffic,
            ready,
            last,
            age(r),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out += line.join("   ").trim_end();
        out += "\n";
    }
    Ok(out)
}

/// One stage of a promotion path, as `status --pipeline` shows it.
fn stage_line(r: &ServiceRelease, now: chrono::DateTime<Utc>) -> Vec<String> {
    let st = r.status.clone().unwrap_or_default();
    let phase = serde_json::to_value(st.phase).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
    let sha = r.spec.image.git_sha.to_string();
    let waiting = match st.waiting.as_ref().filter(|w| w.sha == sha) {
        Some(w) => {
            let left = w.until.and_then(|u| u.signed_duration_since(now).to_std().ok()).map(|d| {
                let s = d.as_secs();
                format!(" ({}h{:02}m{:02}s left)", s / 3600, (s % 3600) / 60, s % 60)
            });
            format!("{}{}", w.reason, left.unwrap_or_default())
        }
        None => find(&st.conditions, condition_types::READY).map(|c| c.reason.clone()).unwrap_or_else(|| "-".into()),
    };
    let approval = match r.spec.promotion.as_ref().map(|p| p.approval) {
        Some(crate::api::Approval::Manual) if r.annotations().get(APPROVE) == Some(&sha) => "approved".to_string(),
        Some(crate::api::Approval::Manual) => "pending".to_string(),
        _ => "-".to_string(),
    };
    vec![
        format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any()),
        r.spec.environment.clone(),
        sha,
        st.stable_sha.unwrap_or_else(|| "-".into()),
        phase,
        waiting,
        approval,
    ]
}

/// Each promotion path (`promotion.from` chains) with the SHA at each stage, its phase, the
/// soak left and approvals pending; with `namespace`, only the paths that touch it.
pub async fn pipeline(client: Client, namespace: Option<&str>) -> anyhow::Result<String> {
    let list = Api::<ServiceRelease>::all(client).list(&ListParams::default()).await?;
    Ok(pipeline_table(&list.items, namespace, Utc::now()))
}

/// [`pipeline`]'s table for these releases.
pub fn pipeline_table(all: &[ServiceRelease], namespace: Option<&str>, now: chrono::DateTime<Utc>) -> String {
    use std::collections::{BTreeMap, BTreeSet};
    let key = |r: &ServiceRelease| (r.namespace().unwrap_or_default(), r.name_any());
    let by_key: BTreeMap<(String, String), &ServiceRelease> = all.iter().map(|r| (key(r), r)).collect();
    let upstream_of = |r: &ServiceRelease| -> Option<(String, String)> {
        let f = r.spec.promotion.as_ref()?.from.as_ref()?;
        Some((f.namespace.clone().unwrap_or_else(|| r.namespace().unwrap_or_default()), f.name.clone()))
    };
    let mut downstream: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    for r in all {
        if let Some(up) = upstream_of(r) {
            downstream.entry(up).or_default().push(key(r));
        }
    }
    // Roots: stages something promotes from that promote from nothing known.
    let roots: Vec<(String, String)> = downstream
        .keys()
        .filter(|k| by_key.get(*k).is_none_or(|r| upstream_of(r).is_none_or(|u| !by_key.contains_key(&u))))
        .cloned()
        .collect();
    let mut out = String::new();
    let header = ["STAGE", "RELEASE", "ENVIRONMENT", "SHA", "STABLE", "PHASE", "WAITING", "APPROVAL"].map(String::from).to_vec();
    for root in roots {
        // Breadth-first down the path (a stage may feed several).
        let mut rows = vec![header.clone()];
        let mut seen = BTreeSet::new();
        let mut level = vec![(root.clone(), 1usize)];
        while let Some((k, depth)) = level.first().cloned() {
            level.remove(0);
            if !seen.insert(k.clone()) || seen.len() > 1000 {
                continue;
            }
            let mut line = match by_key.get(&k) {
                Some(r) => stage_line(r, now),
                None => vec![format!("{}/{}", k.0, k.1), "-".into(), "-".into(), "-".into(), "(not found)".into(), "-".into(), "-".into()],
            };
            line.insert(0, depth.to_string());
            rows.push(line);
            for d in downstream.get(&k).into_iter().flatten() {
                level.push((d.clone(), depth.saturating_add(1)));
            }
        }
        if namespace.is_some_and(|ns| !seen.iter().any(|(n, _)| n == ns)) {
            continue;
        }
        let widths: Vec<usize> =
            (0..header.len()).map(|i| rows.iter().map(|r| r.get(i).map_or(0, String::len)).max().unwrap_or(0)).collect();
        for row in rows {
            let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            out += line.join("   ").trim_end();
            out += "\n";
        }
        out += "\n";
    }
    if out.is_empty() {
        out = "no promotion paths (no release has spec.promotion.from)\n".into();
    }
    out
}
