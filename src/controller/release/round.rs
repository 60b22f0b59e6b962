//! The part of a release's reconcile every target shares: its commands, the StackSpec
//! outputs it waits for, an analysis round, whose the service or function is, and the
//! decision of the rollout state machine. A target (`ecs.rs`, `lambda.rs`) brings its own
//! observation and calls; nothing here knows which target it serves.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

use kube::ResourceExt;

use super::{PAUSED_ANNOTATION, PROMOTE_ANNOTATION, RETRY_ANNOTATION, ROLLBACK_ANNOTATION};
use crate::api::{
    condition_types, owner_of, reasons, Environment, Measurement, ServiceRelease, ServiceReleaseStatus, ADOPT_ANNOTATION, MANAGED_BY,
    MANAGED_BY_TAG, OWNER_TAG,
};
use crate::aws::{AwsClients, AwsError};
use crate::controller::reconcile::Settled;
use crate::controller::{Context, Error};
use crate::core::analysis::{self, QueryResult, Verdict};
use crate::core::conditions::Readiness;
use crate::core::ownership::{self, Ownership};
use crate::core::promotion::{self, Calendar, Gate, Hold};
use crate::core::refusal::Refusal;
use crate::core::requeue::Category;
use crate::core::rollout::{self, Commands, Config, Decision, Network, ServiceObs};

/// Where a target's part of a reconcile ends.
pub(crate) enum Outcome<C> {
    /// The state machine decided; `C` are the target's calls, made once the decision is
    /// written.
    Stepped(Box<Decision>, Box<Decided<C>>),
    /// It stopped before a decision: waiting, stalled, or a failure to retry.
    Settled(Settled),
}

impl<C> Outcome<C> {
    /// What an AWS error means for a release (see `Settled::from`).
    pub(crate) fn failed(e: AwsError) -> Self {
        Outcome::Settled(e.into())
    }

    /// Stalled as InvalidSpec with `message`.
    pub(crate) fn invalid(message: String) -> Self {
        Outcome::Settled(Settled::stalled(Readiness::Stalled { reason: reasons::INVALID_SPEC, message }, Category::InvalidSpec))
    }

    /// Stalled as a Conflict with `message`.
    pub(crate) fn conflict(message: String) -> Self {
        Outcome::Settled(Settled::stalled(Readiness::Stalled { reason: reasons::CONFLICT, message }, Category::Conflict))
    }

    /// Waiting (`reason`) for something on its way: looked at again in a few seconds.
    pub(crate) fn waiting(reason: &'static str, message: String) -> Self {
        Outcome::Settled(Settled::Done { readiness: Readiness::Reconciling { reason, message }, requeue: Some(WAIT) })
    }

    /// The same outcome with other calls.
    pub(crate) fn map<D>(self, f: impl FnOnce(C) -> D) -> Outcome<D> {
        match self {
            Outcome::Stepped(d, pending) => {
                let Decided { aws, verdict_at, frozen, cfg, calls } = *pending;
                Outcome::Stepped(d, Box::new(Decided { aws, verdict_at, frozen, cfg, calls: f(calls) }))
            }
            Outcome::Settled(s) => Outcome::Settled(s),
        }
    }
}

impl<C> From<Refusal> for Outcome<C> {
    fn from(r: Refusal) -> Self {
        Outcome::Settled(r.into())
    }
}

/// How soon a release waiting for something on its way is looked at again.
const WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a decision leaves to do: the target's `calls`, and what the status needs after them.
pub(crate) struct Decided<C> {
    /// The Environment's clients.
    pub(crate) aws: AwsClients,
    /// When the verdict was reached (a rollback's latency is measured from it).
    pub(crate) verdict_at: Instant,
    /// Whether no new rollout may start (freeze, a deleting Environment).
    pub(crate) frozen: bool,
    /// The release's checked configuration.
    pub(crate) cfg: Config,
    /// The target's calls.
    pub(crate) calls: C,
}

/// The tags everything a release makes carries (the Environment's and its ownership), its
/// owner, and whether it may adopt what no one owns.
pub(crate) fn ownership_of(r: &ServiceRelease, env: &Environment) -> (String, BTreeMap<String, String>, bool) {
    let owner = owner_of(r);
    let mut tags = env.spec.tags.clone();
    tags.insert(MANAGED_BY_TAG.into(), MANAGED_BY.into());
    tags.insert(OWNER_TAG.into(), owner.clone());
    let adopt = r.annotations().get(ADOPT_ANNOTATION).map(String::as_str) == Some("true");
    (owner, tags, adopt)
}

/// Whose an existing service or function (`what`, with `have` tags) is decides everything
/// else: another owner's stops the release (a Conflict); one nobody owns is adopted only with
/// the annotation; ours gets the Environment's tags it lacks. `tag` adds tags in AWS. Ok: the
/// tags added.
pub(crate) async fn claim<C, F, Fut>(
    ctx: &Context,
    r: &ServiceRelease,
    what: &str,
    have: &BTreeMap<String, String>,
    (owner, tags, adopt): (&str, &BTreeMap<String, String>, bool),
    tag: F,
) -> Result<Result<BTreeMap<String, String>, Outcome<C>>, Error>
where
    F: FnOnce(BTreeMap<String, String>) -> Fut,
    Fut: Future<Output = Result<(), AwsError>>,
{
    let (add, adopting) = match ownership::check(what, have, owner, adopt, "ServiceRelease") {
        Ownership::Conflict(message) => return Ok(Err(Outcome::conflict(message))),
        Ownership::Adopt => (tags.clone(), true),
        // Environment tags edited since: it gets them (others' tags stay).
        Ownership::Ours => (ownership::missing_tags(tags, have), false),
    };
    if add.is_empty() {
        return Ok(Ok(add));
    }
    ctx.may_act()?;
    if let Err(e) = tag(add.clone()).await {
        return Ok(Err(Outcome::failed(e)));
    }
    if adopting {
        ctx.event(r, false, reasons::ADOPTED, format!("adopted {what} (shipshape.dev/adopt); it now carries owner tag {owner}")).await;
    }
    Ok(Ok(add))
}

/// What the calls did that status keeps: the stable version a rollback points at, and the
/// task each step before traffic started.
#[derive(Default)]
pub(crate) struct Made {
    /// A rollback's target (also when AWS then refused it).
    pub(crate) rollback_to: Option<String>,
    /// (step, task ARN) started.
    pub(crate) started: Vec<(usize, String)>,
    /// (step, why) ECS did not start: it answered RunTask with `failures` (no capacity, no
    /// ENI, …): the task cannot be placed.
    pub(crate) unplaced: Vec<(usize, String)>,
    /// (step, what its synchronous invocation returned): Lambda steps before traffic.
    pub(crate) invoked: Vec<(usize, crate::aws::Invoked)>,
}

/// Deletes this release's older snapshots of `db` before steps (`<db>-pre-…`, carrying its
/// owner tag), keeping the newest `keep` with `newest` among them. A snapshot someone else
/// took, or another release's, is never touched.
pub(crate) async fn prune_snapshots(
    aws: &AwsClients,
    db: &str,
    keep: usize,
    newest: &str,
    tags: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    let owner = tags.get(OWNER_TAG);
    let prefix = format!("{db}-pre-");
    let ours: Vec<String> = aws
        .rds
        .list_snapshots(db)
        .await?
        .into_iter()
        .filter(|(name, _, t)| name.starts_with(&prefix) && owner.is_some() && t.get(OWNER_TAG) == owner)
        .map(|(name, _, _)| name)
        .filter(|name| name != newest)
        .collect();
    for name in ours.iter().skip(keep.saturating_sub(1)) {
        aws.rds.delete_snapshot(name).await?;
    }
    Ok(())
}

/// The identity of what a release asks for, as the rollout state machine compares it: the
/// content hash of its task definition (or function version), with its steps before traffic
/// when it has any (so editing them is a new rollout, never a change of the one in flight).
pub(crate) fn identity(content_hash: &str, r: &ServiceRelease) -> String {
    use sha2::{Digest, Sha256};
    let steps = r.spec.rollout.as_ref().map(|ro| ro.pre_deploy.as_slice()).unwrap_or_default();
    if steps.is_empty() {
        return content_hash.to_string();
    }
    let digest = Sha256::digest(serde_json::to_vec(steps).unwrap_or_default());
    let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{content_hash}-{short}")
}

/// What a target hands the state machine beside the release itself.
pub(crate) struct Seen<'a> {
    /// The content hash of what the spec asks for.
    pub(crate) spec_hash: &'a str,
    /// Its task definition (ECS) or version (Lambda) ARN.
    pub(crate) task_definition: &'a str,
    /// The service (or the alias as one), None when it does not exist yet.
    pub(crate) service: Option<&'a ServiceObs>,
    /// The network the service should have.
    pub(crate) network: &'a Network,
    /// maximumPercent and minimumHealthyPercent.
    pub(crate) deployment_percents: (i32, i32),
    /// Query placeholders of the target.
    pub(crate) vars: Vec<(&'static str, String)>,
    /// The step before traffic under way, as AWS reports it.
    pub(crate) pre_deploy: Option<rollout::StepObs>,
    /// Where smoke tests run (ECS releases).
    pub(crate) jobs: Option<super::checks::JobTarget>,
    /// The gate as the target already judged it this pass (its calls depended on it), so the
    /// decision cannot judge otherwise a moment later.
    pub(crate) gate: Option<Result<Option<Hold>, String>>,
}

/// One round of a release: an analysis when one is due, the commands, and the decision.
/// Returns it with when the verdict was reached and whether the release is frozen.
pub(crate) async fn decide(
    r: &ServiceRelease,
    env: &Environment,
    ctx: &Context,
    aws: &AwsClients,
    cfg: &Config,
    o: Seen<'_>,
) -> (Decision, Instant, bool) {
    let st = r.status.clone().unwrap_or_default();
    let now = chrono::Utc::now();
    let sha = r.spec.image.git_sha.to_string();
    let round =
        if rollout::measurement_due(&st, now, cfg) { Some(measure(r, env, ctx, aws, &sha, &o.vars, o.jobs.as_ref()).await) } else { None };
    let verdict_at = Instant::now();
    let cmds = commands(r, &st);
    // A deleting Environment starts no new rollout (rollbacks still happen).
    let frozen = env.spec.freeze || env.metadata.deletion_timestamp.is_some();
    let paused = r.spec.paused || r.annotations().get(PAUSED_ANNOTATION).map(String::as_str) == Some("true");
    // Checked before the target's part (`gate` refusing is InvalidSpec there); should it
    // fail here all the same, nothing starts.
    let (judged, now) = match o.gate.clone() {
        Some(g) => (g, now),
        None => gate_when_due(r, env, ctx).await,
    };
    let hold = judged.unwrap_or_else(|why| Some(Hold { reason: reasons::WAITING_FOR_WINDOW, message: why, until: None, upstream: None }));
    let inputs = rollout::Inputs {
        now,
        sha: &sha,
        spec_hash: o.spec_hash,
        task_definition: o.task_definition,
        replicas: r.spec.replicas,
        deployment_percents: o.deployment_percents,
        service: o.service,
        network: o.network,
        paused,
        frozen,
        hold,
        commands: &cmds,
        round,
        config: cfg,
        pre_deploy: o.pre_deploy,
    };
    (rollout::step(&st, &inputs), verdict_at, frozen)
}

/// Annotation: approves the SHA it names (`promotion.approval: Manual`).
pub const APPROVE_ANNOTATION: &str = "shipshape.dev/approve";

/// The gate now; when it opens by itself within [`WAKE_AHEAD`] and a bit (the release was
/// woken ahead of the time and has read AWS already), the gate at that time, waited for —
/// only for a release with nothing under way.
pub(crate) async fn gate_when_due(
    r: &ServiceRelease,
    env: &Environment,
    ctx: &Context,
) -> (Result<Option<Hold>, String>, chrono::DateTime<chrono::Utc>) {
    let now = chrono::Utc::now();
    let judged = gate(r, env, ctx, now);
    let idle = r.status.as_ref().is_none_or(|s| s.rollout.is_none() && s.rollback.is_none());
    let lead = promotion::WAKE_AHEAD.saturating_add(std::time::Duration::from_millis(500));
    let due = match &judged {
        Ok(Some(h)) if idle => h.until.and_then(|u| u.signed_duration_since(now).to_std().ok()).filter(|d| *d <= lead),
        _ => None,
    };
    let Some(wait) = due else { return (judged, now) };
    tokio::time::sleep(wait.saturating_add(std::time::Duration::from_millis(1))).await;
    let now = chrono::Utc::now();
    (gate(r, env, ctx, now), now)
}

/// How many releases a cycle search visits at most.
const CYCLE_LIMIT: usize = 10_000;

/// What the desired SHA waits for before it may start (see [`crate::core::promotion`]), or
/// an InvalidSpec message: a cycle in `rollout.after` or `promotion.from`, or the
/// Environment's windows unreadable.
pub(crate) fn gate(
    r: &ServiceRelease,
    env: &Environment,
    ctx: &Context,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Hold>, String> {
    let ns = r.namespace().unwrap_or_default();
    let name = r.name_any();
    let calendar = Calendar::of(&env.spec).map_err(|e| format!("Environment {}: {e}", env.name_any()))?;
    let after = r.spec.rollout.as_ref().map(|ro| ro.after.clone()).unwrap_or_default();
    if !after.is_empty() {
        let edges = |n: &str| -> Vec<String> {
            if n == name {
                return after.clone();
            }
            ctx.stores.release(&ns, n).and_then(|o| o.spec.rollout.as_ref().map(|ro| ro.after.clone())).unwrap_or_default()
        };
        if let Some(path) = promotion::cycle(&name, edges, CYCLE_LIMIT) {
            return Err(format!("rollout.after makes a cycle: {}", path.join(" → ")));
        }
    }
    let from = |ns: &str, o: &ServiceRelease| -> Option<(String, String)> {
        let f = o.spec.promotion.as_ref()?.from.as_ref()?;
        Some((f.namespace.clone().unwrap_or_else(|| ns.to_string()), f.name.clone()))
    };
    let upstream_ref = from(&ns, r);
    if let Some(first) = &upstream_ref {
        // Follow the chain up: reaching this release again is a cycle.
        let mut at = first.clone();
        let mut path = vec![format!("{ns}/{name}")];
        for _ in 0..64 {
            path.push(format!("{}/{}", at.0, at.1));
            if at == (ns.clone(), name.clone()) {
                return Err(format!("promotion.from makes a cycle: {}", path.join(" → ")));
            }
            match ctx.stores.release(&at.0, &at.1).and_then(|o| from(&at.0, &o)) {
                Some(next) => at = next,
                None => break,
            }
        }
    }
    let latest = |n: &str, m: &str| ctx.stores.release(n, m).map(|o| ctx.recent.latest(o));
    let upstream = upstream_ref.as_ref().and_then(|(n, m)| latest(n, m));
    let after_objects: Vec<Option<std::sync::Arc<ServiceRelease>>> = after.iter().map(|a| latest(&ns, a)).collect();
    let sha = r.spec.image.git_sha.to_string();
    Ok(promotion::gate(&Gate {
        now,
        sha: &sha,
        spec: &r.spec,
        namespace: &ns,
        approved: r.annotations().get(APPROVE_ANNOTATION).map(|s| s.trim()),
        own: r.status.as_ref(),
        upstream: upstream_ref.map(|(n, m)| (format!("{n}/{m}"), upstream.as_deref())),
        after: after.iter().zip(&after_objects).map(|(a, o)| (a.clone(), o.as_deref())).collect(),
        calendar: &calendar,
    }))
}

pub(crate) fn commands(r: &ServiceRelease, st: &ServiceReleaseStatus) -> Commands {
    let fresh =
        |annotation: &str, name: &str| r.annotations().get(annotation).filter(|v| st.handled_commands.get(name) != Some(*v)).cloned();
    Commands {
        retry: fresh(RETRY_ANNOTATION, "retry"),
        rollback: fresh(ROLLBACK_ANNOTATION, "rollback"),
        promote: fresh(PROMOTE_ANNOTATION, "promote"),
    }
}

/// The StackSpec outputs, or why the release must wait.
pub(crate) async fn stack_outputs(r: &ServiceRelease, ctx: &Context) -> Result<Result<BTreeMap<String, String>, String>, kube::Error> {
    let Some(name) = &r.spec.stack else { return Ok(Ok(BTreeMap::new())) };
    let ns = r.namespace().unwrap_or_default();
    let Some(stack) = ctx.stores.stack(&ns, name) else {
        return Ok(Err(format!("StackSpec {ns}/{name} does not exist yet")));
    };
    let ready = stack
        .status
        .as_ref()
        .and_then(|s| crate::core::conditions::find(&s.conditions, condition_types::READY).map(|c| c.status == "True"));
    if ready != Some(true) || stack.status.as_ref().and_then(|s| s.observed_generation) != stack.metadata.generation {
        return Ok(Err(format!("StackSpec {ns}/{name} is not Ready yet")));
    }
    let Some(cm) = &stack.spec.outputs else { return Ok(Ok(BTreeMap::new())) };
    // Only the StackSpec's own outputs, complete: a missing ConfigMap (not written yet, or
    // deleted by hand) or one someone else owns is waited for, never read as empty — that
    // would roll out a task definition without its database and bucket variables.
    let Some(config_map) = ctx.stores.output(&ns, cm) else {
        return Ok(Err(format!(
            "the outputs ConfigMap {ns}/{cm} of StackSpec {name} does not exist yet; waiting for the StackSpec to write it"
        )));
    };
    let owned = stack.uid().is_some_and(|uid| config_map.owner_references().iter().any(|o| o.uid == uid && o.kind == "StackSpec"));
    if !owned {
        return Ok(Err(format!(
            "ConfigMap {ns}/{cm} is not the outputs of StackSpec {name} (it is not owned by it); waiting for the StackSpec to own and write it"
        )));
    }
    Ok(Ok(config_map.data.clone().unwrap_or_default()))
}

/// One analysis round: every query, judged series by series. `vars` are template variables
/// beside `{{service}}`, `{{namespace}}` and `{{sha}}` (a Lambda release's `{{function}}`,
/// `{{version}}`, `{{alias}}`, `{{stableVersion}}`; an ECS release's `{{revision}}`); every
/// query also gets `{{stableSha}}`.
async fn measure(
    r: &ServiceRelease,
    env: &Environment,
    ctx: &Context,
    aws: &AwsClients,
    sha: &str,
    vars: &[(&str, String)],
    jobs: Option<&super::checks::JobTarget>,
) -> (Verdict, Vec<Measurement>) {
    let queries = r.spec.rollout.as_ref().and_then(|ro| ro.analysis.as_ref()).map(|a| a.queries.clone()).unwrap_or_default();
    let alarms = r.spec.rollout.as_ref().and_then(|ro| ro.analysis.as_ref()).map(|a| a.cloudwatch_alarms.clone()).unwrap_or_default();
    let prom = if queries.is_empty() { Err(String::new()) } else { ctx.prometheus(env).await };
    let service = r.spec.service.clone().unwrap_or_else(|| r.name_any());
    let ns = r.namespace().unwrap_or_default();
    let mut verdicts = vec![];
    let mut measurements = vec![];
    for q in &queries {
        let result = match &prom {
            Ok((p, auth)) => {
                let mut promql = analysis::render(&q.prometheus, &service, &ns, sha);
                // The stable SHA, so a query can compare the new version with the stable one.
                let stable = r.status.as_ref().and_then(|s| s.stable_sha.clone()).unwrap_or_default();
                promql = promql.replace("{{stableSha}}", &stable);
                for (k, v) in vars {
                    promql = promql.replace(&format!("{{{{{k}}}}}"), v);
                }
                p.query_as(&promql, auth).await
            }
            Err(why) => QueryResult::Unavailable(why.clone()),
        };
        let judged = analysis::judge(q, &result);
        if let Some(v) = judged.value {
            ctx.metrics.analysis_value.with_label_values(&[&ns, &r.name_any(), &q.name]).set(v);
        }
        let word = judged.verdict.word();
        measurements.push(Measurement {
            at: chrono::Utc::now(),
            query: q.name.clone(),
            series: judged.series.clone().filter(|s| !s.is_empty()),
            value: judged.value.filter(|v| v.is_finite()),
            verdict: if q.dry_run { format!("{word}{}", rollout::DRY_RUN) } else { word.into() },
        });
        // A dry-run query is measured and shown, never counted.
        if !q.dry_run {
            verdicts.push(judged.verdict);
        }
    }
    if !alarms.is_empty() {
        let states = aws.cloudwatch.alarm_states(&alarms).await;
        for name in &alarms {
            let verdict = alarm_verdict(name, states.as_ref().map(|s| s.iter().find(|(n, _)| n == name).map(|(_, st)| st.as_str())));
            measurements.push(Measurement {
                at: chrono::Utc::now(),
                query: format!("alarm:{name}"),
                series: None,
                value: None,
                verdict: verdict.word().into(),
            });
            verdicts.push(verdict);
        }
    }
    let an = r.spec.rollout.as_ref().and_then(|ro| ro.analysis.as_ref());
    let stable = r.status.as_ref().and_then(|s| s.stable_sha.clone()).unwrap_or_default();
    let mut judged = vec![];
    for h in an.map(|a| a.http.as_slice()).unwrap_or_default() {
        let mut url = analysis::render(&h.url, &service, &ns, sha).replace("{{stableSha}}", &stable);
        for (k, v) in vars {
            url = url.replace(&format!("{{{{{k}}}}}"), v);
        }
        let (verdict, value) = super::checks::http(ctx, r, h, &url).await;
        judged.push((format!("http:{}", h.name), verdict, value, h.dry_run));
    }
    let rollout = r.status.as_ref().and_then(|s| s.rollout.as_ref());
    for j in an.map(|a| a.jobs.as_slice()).unwrap_or_default() {
        let (verdict, value) = match (jobs, rollout) {
            (Some(target), Some(ro)) => super::checks::job(ctx, r, aws, ro, target, j).await,
            _ => (Verdict::Invalid(format!("job {}: smoke tests run on ECS releases only", j.name)), None),
        };
        judged.push((format!("job:{}", j.name), verdict, value, j.dry_run));
    }
    for (query, verdict, value, dry_run) in judged {
        if let Some(v) = value {
            ctx.metrics.analysis_value.with_label_values(&[&ns, &r.name_any(), &query]).set(v);
        }
        let word = verdict.word();
        measurements.push(Measurement {
            at: chrono::Utc::now(),
            query,
            series: None,
            value,
            verdict: if dry_run { format!("{word}{}", rollout::DRY_RUN) } else { word.into() },
        });
        if !dry_run {
            verdicts.push(verdict);
        }
    }
    (analysis::round(&verdicts), measurements)
}

/// A CloudWatch alarm's verdict for a round: ALARM fails it, OK passes, INSUFFICIENT_DATA
/// is no data (inconclusive: it holds, as a query without samples does by default), an
/// alarm that does not exist is invalid (the rollout holds until it is fixed), and a
/// CloudWatch that cannot answer makes the analysis unavailable.
fn alarm_verdict(name: &str, state: Result<Option<&str>, &AwsError>) -> Verdict {
    match state {
        Ok(Some("ALARM")) => Verdict::Fail(format!("CloudWatch alarm {name} is in ALARM")),
        Ok(Some("OK")) => Verdict::Pass,
        Ok(Some(other)) => Verdict::Inconclusive(format!("CloudWatch alarm {name} is {other}")),
        Ok(None) => Verdict::Invalid(format!("CloudWatch alarm {name} does not exist")),
        Err(e) if e.category().is_transient() => Verdict::Unavailable(format!("CloudWatch: {e}")),
        Err(e @ AwsError::AccessDenied { .. }) => Verdict::Unavailable(format!("CloudWatch refused DescribeAlarms: {e}")),
        Err(e) => Verdict::Unavailable(format!("CloudWatch: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alarm_in_alarm_fails_insufficient_data_holds_and_a_missing_one_is_invalid() {
        assert!(matches!(alarm_verdict("a", Ok(Some("ALARM"))), Verdict::Fail(m) if m.contains("a is in ALARM")));
        assert_eq!(alarm_verdict("a", Ok(Some("OK"))), Verdict::Pass);
        assert!(matches!(alarm_verdict("a", Ok(Some("INSUFFICIENT_DATA"))), Verdict::Inconclusive(_)));
        assert!(matches!(alarm_verdict("a", Ok(None)), Verdict::Invalid(m) if m.contains("does not exist")));
        let denied = AwsError::AccessDenied { op: "DescribeAlarms", message: "no".into() };
        assert!(matches!(alarm_verdict("a", Err(&denied)), Verdict::Unavailable(_)), "never a rollback for it");
        let down = AwsError::Transient { op: "DescribeAlarms", message: "timeout".into() };
        assert!(matches!(alarm_verdict("a", Err(&down)), Verdict::Unavailable(_)));
    }
}
