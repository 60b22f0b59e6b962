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

/// A command on one release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// Sets the command's annotation on the release.
pub async fn act(client: Client, namespace: &str, name: &str, cmd: Command) -> anyhow::Result<String> {
    let api: Api<ServiceRelease> = Api::namespaced(client, namespace);
    api.get(name).await.map_err(|e| anyhow::anyhow!("servicerelease {namespace}/{name}: {e}"))?;
    let stamp = Utc::now().to_rfc3339();
    let (key, value, done) = match cmd {
        Command::Rollback => (ann::ROLLBACK, json!(stamp), "rollback requested"),
        Command::Promote => (ann::PROMOTE, json!(stamp), "promotion requested"),
        Command::Retry => (ann::RETRY, json!(stamp), "retry requested"),
        Command::Pause => (ann::PAUSED, json!("true"), "paused"),
        Command::Resume => (ann::PAUSED, serde_json::Value::Null, "resumed"),
    };
    let patch = json!({"metadata": {"annotations": {key: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
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
