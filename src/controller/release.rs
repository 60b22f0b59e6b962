//! The ServiceRelease controller: resolves the task definition for the spec (registering
//! it once per content hash), observes the ECS service, runs an analysis round when one is
//! due, and hands everything to the pure rollout state machine; then carries out its ECS
//! calls, Events and status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::ResourceExt;
use serde_json::Value;
use tracing::{info, instrument};

use super::{environment, error_policy, invalid_spec, next_conditions, record, stall_for, status, stored_reason, tenant, Context, Error};
use crate::api::LoadBalancerSpec;
use crate::api::ReleaseDeletionPolicy;
use crate::api::{
    condition_types, finalizer_name, owner_of, reasons, Environment, Measurement, Phase, ServiceRelease, ServiceReleaseStatus,
    ADOPT_ANNOTATION, MANAGED_BY, MANAGED_BY_TAG, OWNER_TAG,
};
use crate::aws::{AwsClients, AwsError, LoadBalancer, NativeDeployment, NativeStrategy, ServiceRequest};
use crate::core::analysis::{self, QueryResult, Verdict};
use crate::core::conditions::Readiness;
use crate::core::ownership::{self, Ownership};
use crate::core::requeue::{self, Category};
use crate::core::rollout::{self, Commands, Config, Effect, Network};
use crate::core::taskdef::TaskDefinitionSpec;

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "servicerelease";
/// Annotation: a new value retries a rolled-back spec.
pub const RETRY_ANNOTATION: &str = "shipshape.dev/retry";
/// Annotation: a new value rolls back to stable now.
pub const ROLLBACK_ANNOTATION: &str = "shipshape.dev/rollback";
/// Annotation: a new value promotes the rollout in flight now.
pub const PROMOTE_ANNOTATION: &str = "shipshape.dev/promote";
/// Annotation: "true" pauses the release (as spec.paused does), without editing the spec.
pub const PAUSED_ANNOTATION: &str = "shipshape.dev/paused";

/// Reconciles one ServiceRelease.
#[instrument(skip_all, fields(release = %format!("{}/{}", release.namespace().unwrap_or_default(), release.name_any())))]
pub async fn reconcile(release: Arc<ServiceRelease>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    // Drift checks share a few slots; rollout work never waits for one.
    let _slot = if rollout_critical(&release) {
        None
    } else {
        match super::drift_slot(&ctx).await {
            Ok(slot) => Some(slot),
            Err(later) => return Ok(later),
        }
    };
    let api: Api<ServiceRelease> = Api::namespaced(ctx.client.clone(), &release.namespace().unwrap_or_default());
    let result = finalizer(&api, &finalizer_name::<ServiceRelease>(), release, |event| async {
        match event {
            Finalizer::Apply(r) => apply(r, &ctx).await,
            Finalizer::Cleanup(r) => cleanup(r, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    record(&ctx, CONTROLLER, &result, started);
    result
}

/// A deleted ServiceRelease: `Retain` (the default) leaves what it runs, since deleting a
/// release must not take production down; `Delete` deletes the ECS service (scaled to 0
/// first, task definitions kept) or the Lambda function, only when it carries this release's
/// owner tag. A deletion AWS refuses keeps the finalizer and is retried with backoff (set
/// `deletionPolicy: Retain` to let the object go).
async fn cleanup(r: Arc<ServiceRelease>, ctx: &Context) -> Result<Action, Error> {
    let service = r.spec.service.clone().unwrap_or_else(|| r.name_any());
    let what = if r.spec.function.is_some() { format!("Lambda function {service}") } else { format!("ECS service {service}") };
    async fn retained(ctx: &Context, r: &ServiceRelease, why: String) -> Result<Action, Error> {
        forget(ctx, r);
        ctx.event(r, false, reasons::RETAINED, why).await;
        Ok(Action::await_change())
    }
    if r.spec.deletion_policy == ReleaseDeletionPolicy::Retain {
        let how = if r.spec.function.is_some() { "delete it in Lambda" } else { "delete it in ECS" };
        return retained(ctx, &r, format!("{what} left running (deletionPolicy Retain); {how} if it should go")).await;
    }
    let ns = r.namespace().unwrap_or_default();
    let env = ctx.stores.environment(&r.spec.environment);
    // A release its Environment never admitted created nothing.
    let Some(env) = env.filter(|e| crate::core::tenancy::check(&r.spec.environment, Some(&e.spec), &ns).is_ok()) else {
        return retained(
            ctx,
            &r,
            format!("{what} not deleted: Environment {} is gone or does not admit namespace {ns}", r.spec.environment),
        )
        .await;
    };
    let aws = ctx.aws.clients(&environment::target(&env)).await?;
    let owner = owner_of(r.as_ref());
    let tags = if r.spec.function.is_some() {
        aws.lambda.get_function(&service).await?.map(|f| f.tags)
    } else {
        let cluster = env.spec.ecs_cluster.name.clone();
        aws.ecs
            .describe_services(&cluster, std::slice::from_ref(&service))
            .await?
            .into_iter()
            .find(|(n, _)| *n == service)
            .map(|(_, s)| s.tags)
    };
    match tags {
        None => {
            forget(ctx, &r);
            ctx.event(r.as_ref(), false, reasons::DELETED, format!("{what} was already gone")).await;
        }
        Some(tags) if tags.get(OWNER_TAG) != Some(&owner) => {
            let whose = tags.get(OWNER_TAG).cloned().unwrap_or_else(|| "no owner tag".into());
            return retained(ctx, &r, format!("{what} not deleted: it is not this release's (owner: {whose})")).await;
        }
        Some(_) => {
            ctx.may_act()?;
            let done = if r.spec.function.is_some() {
                aws.lambda.delete_function(&service).await
            } else {
                aws.ecs.delete_service(&env.spec.ecs_cluster.name, &service).await
            };
            if let Err(e) = done {
                ctx.event(
                    r.as_ref(),
                    true,
                    reasons::DELETING,
                    format!(
                        "deleting {what} failed: {e}; retried with backoff (deletionPolicy Retain lets the ServiceRelease go without it)"
                    ),
                )
                .await;
                return Err(e.into());
            }
            ctx.services.forget(&env.name_any(), &env.spec.ecs_cluster.name, &service);
            forget(ctx, &r);
            let kept =
                if r.spec.function.is_some() { "its code in S3 is kept" } else { "scaled to 0 first; its task definitions are kept" };
            ctx.event(r.as_ref(), false, reasons::DELETED, format!("{what} deleted (deletionPolicy Delete; {kept})")).await;
        }
    }
    Ok(Action::await_change())
}

/// Requeue after failure.
pub fn on_error(release: Arc<ServiceRelease>, err: &Error, ctx: Arc<Context>) -> Action {
    error_policy(release, err, ctx, CONTROLLER)
}

pub(super) fn commands(r: &ServiceRelease, st: &ServiceReleaseStatus) -> Commands {
    let fresh =
        |annotation: &str, name: &str| r.annotations().get(annotation).filter(|v| st.handled_commands.get(name) != Some(*v)).cloned();
    Commands {
        retry: fresh(RETRY_ANNOTATION, "retry"),
        rollback: fresh(ROLLBACK_ANNOTATION, "rollback"),
        promote: fresh(PROMOTE_ANNOTATION, "promote"),
    }
}

/// The StackSpec outputs, or why the release must wait.
async fn stack_outputs(r: &ServiceRelease, ctx: &Context) -> Result<Result<BTreeMap<String, String>, String>, kube::Error> {
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
pub(super) async fn measure(
    r: &ServiceRelease,
    env: &Environment,
    ctx: &Context,
    aws: &AwsClients,
    sha: &str,
    vars: &[(&str, String)],
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
    (analysis::round(&verdicts), measurements)
}

/// A CloudWatch alarm's verdict for a round: ALARM fails it, OK passes, INSUFFICIENT_DATA
/// is no data (inconclusive: it holds, as a query without samples does by default), an
/// alarm that does not exist is invalid (the rollout holds until it is fixed), and a
/// CloudWatch that cannot answer makes the analysis unavailable.
pub(super) fn alarm_verdict(name: &str, state: Result<Option<&str>, &AwsError>) -> Verdict {
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

/// The task definition already registered for this content hash, if any: from status, or
/// found by its hash tag in ECS.
async fn known_task_definition(
    aws: &AwsClients,
    st: &ServiceReleaseStatus,
    td: &TaskDefinitionSpec,
    hash: &str,
    owner: &str,
) -> Result<Known, AwsError> {
    if let Some(arn) = st.rollout.as_ref().filter(|r| r.spec_hash == hash).and_then(|r| r.task_definition_arn.clone()) {
        return Ok(Known::Registered(arn));
    }
    if st.stable_spec_hash.as_deref() == Some(hash) {
        if let Some(arn) = &st.stable_task_definition_arn {
            return Ok(Known::Registered(arn.clone()));
        }
    }
    let family = aws.ecs.find_task_definition(&td.family, hash, owner).await?;
    match family.found {
        Some(arn) => Ok(Known::Registered(arn)),
        None => Ok(Known::Missing { newest_tags: family.newest_tags }),
    }
}

/// A task definition for a spec: registered already, or not (with the tags of its family's
/// newest revision, None when the family has none).
enum Known {
    Registered(String),
    Missing { newest_tags: Option<BTreeMap<String, String>> },
}

/// ECS (or Lambda) calls decided by a step, carried out after the decision is persisted.
pub(super) struct Pending {
    pub(super) aws: AwsClients,
    pub(super) environment: String,
    pub(super) cluster: String,
    pub(super) service: String,
    pub(super) requests: Vec<(Effect, ServiceRequest)>,
    pub(super) verdict_at: Instant,
    /// What the status verdict needs after the calls.
    pub(super) frozen: bool,
    pub(super) cfg: Config,
    /// A Lambda release: the alias that is its "service" (the request's task definition is
    /// the version's qualified ARN).
    pub(super) alias: Option<String>,
}

impl Pending {
    fn rollback(&self) -> bool {
        self.requests.iter().any(|(e, _)| matches!(e, Effect::RollBack { .. } | Effect::Halt { .. }))
    }

    /// Makes the calls in order. A rollback refused by ECS makes sure its stable task
    /// definition is ACTIVE (registering its content again if it was deregistered) and tries
    /// once more. Returns the task
    /// definition a rollback uses (also when ECS then refuses the rollback, so a retry does
    /// not register it again) and the outcome.
    async fn execute(&self) -> (Option<String>, Result<(), AwsError>) {
        if let Some(alias) = &self.alias {
            return self.execute_lambda(alias).await;
        }
        let mut rollback_to = None;
        for (effect, req) in &self.requests {
            let done = match effect {
                Effect::CreateService { .. } => self.create(req).await,
                Effect::UpdateService { .. } => self.aws.ecs.update_service(req).await,
                Effect::RollBack { task_definition } => {
                    // The rollback call first, with nothing before it; only when ECS refuses
                    // it is the stable task definition checked (and registered again if it
                    // was deregistered: ECS refuses INACTIVE revisions with a ClientException).
                    rollback_to = Some(task_definition.clone());
                    let to = |td: &str| ServiceRequest { task_definition: td.to_string(), ..req.clone() };
                    match self.aws.ecs.update_service(&to(task_definition)).await {
                        Err(refused @ AwsError::Invalid { .. }) => {
                            match self.aws.ecs.ensure_task_definition_active(task_definition).await {
                                Ok(active) if active != *task_definition => {
                                    rollback_to = Some(active.clone());
                                    self.aws.ecs.update_service(&to(&active)).await
                                }
                                Ok(_) => Err(refused),
                                Err(e) => Err(e),
                            }
                        }
                        other => other,
                    }
                }
                // An ECS service's steps are ECS's own (Resume): never a Shift.
                Effect::Shift { .. } => {
                    Err(AwsError::Invalid { op: "UpdateService", message: "an ECS service's traffic is shifted by ECS".into() })
                }
                Effect::Resume { deployment, hook, rollback, .. } => {
                    match self.aws.ecs.continue_deployment(deployment, hook, *rollback).await {
                        // No longer waiting (an earlier attempt whose answer was lost, or ECS's
                        // own timeout): nothing left to continue.
                        Err(AwsError::Invalid { .. } | AwsError::Conflict { .. }) if !rollback => Ok(()),
                        other => other,
                    }
                }
                Effect::Halt { deployment, hook, task_definition } => {
                    rollback_to = Some(task_definition.clone());
                    let halted = match hook {
                        Some(hook) => self.aws.ecs.continue_deployment(deployment, hook, true).await,
                        None => self.aws.ecs.stop_deployment(deployment).await,
                    };
                    match halted {
                        // The deployment is over (finished, or stopped by an earlier attempt):
                        // the service is pointed back at the stable revision instead.
                        Err(AwsError::Invalid { .. } | AwsError::Conflict { .. } | AwsError::NotFound { .. }) => {
                            self.aws.ecs.update_service(&ServiceRequest { task_definition: task_definition.clone(), ..req.clone() }).await
                        }
                        other => other,
                    }
                }
            };
            if let Err(e) = done {
                return (rollback_to, Err(e));
            }
        }
        (rollback_to, Ok(()))
    }

    /// A Lambda release's calls: the alias created at, or moved to, the version (with no
    /// weighted routing left), a rollback included.
    async fn execute_lambda(&self, alias: &str) -> (Option<String>, Result<(), AwsError>) {
        let mut rollback_to = None;
        for (effect, req) in &self.requests {
            let version = super::function::version_of(&req.task_definition);
            let done = match effect {
                Effect::CreateService { .. } => match self.aws.lambda.set_alias(&req.name, alias, version, true).await {
                    // Made by an earlier attempt whose answer was lost: point it.
                    Err(AwsError::Conflict { .. }) => self.aws.lambda.set_alias(&req.name, alias, version, false).await,
                    other => other,
                },
                Effect::UpdateService { .. } => self.aws.lambda.set_alias(&req.name, alias, version, false).await,
                Effect::RollBack { task_definition } => {
                    rollback_to = Some(task_definition.clone());
                    self.aws.lambda.set_alias(&req.name, alias, version, false).await
                }
                Effect::Shift { stable, weight, .. } => {
                    let share = f64::from(*weight) / 100.0;
                    self.aws.lambda.route_alias(&req.name, alias, super::function::version_of(stable), version, share).await
                }
                Effect::Resume { .. } | Effect::Halt { .. } => {
                    Err(AwsError::Invalid { op: "UpdateAlias", message: "a Lambda alias has no ECS service deployment".into() })
                }
            };
            if let Err(e) = done {
                return (rollback_to, Err(e));
            }
        }
        (rollback_to, Ok(()))
    }

    /// CreateService; a create retried after a lost answer that finds the service with our
    /// owner tag is a success.
    async fn create(&self, req: &ServiceRequest) -> Result<(), AwsError> {
        match self.aws.ecs.create_service(req).await {
            Err(e @ (AwsError::Invalid { .. } | AwsError::Conflict { .. })) => {
                let existing = self.aws.ecs.describe_services(&req.cluster, std::slice::from_ref(&req.name)).await?;
                let ours = existing.iter().any(|(_, s)| s.tags.get(OWNER_TAG) == req.tags.get(OWNER_TAG));
                if ours {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }
}

pub(super) enum Outcome {
    Stepped(Box<rollout::Step>, Box<Pending>),
    Stalled(Readiness, Category),
    Waiting(String),
    Transient(AwsError),
}

async fn converge(r: &ServiceRelease, env: &Environment, ctx: &Context, cfg: &Config) -> Result<Outcome, Error> {
    // The Environment's cluster first: a release applied with its Environment waits for
    // the cluster instead of meeting ClusterNotFound (the cluster's arrival wakes it).
    if r.spec.function.is_none() && !crate::controller::environment::has_cluster(env) {
        return Ok(Outcome::Waiting(format!("Environment {} has no ECS cluster yet; waiting for it", env.name_any())));
    }
    let outputs = match stack_outputs(r, ctx).await? {
        Ok(o) => o,
        Err(why) => return Ok(Outcome::Waiting(why)),
    };
    let fail =
        |e: AwsError| if e.category().is_transient() { Outcome::Transient(e) } else { Outcome::Stalled(stall_for(&e), e.category()) };
    let aws = match ctx.aws.clients(&environment::target(env)).await {
        Ok(a) => a,
        Err(e) => return Ok(fail(e)),
    };
    match aws.sts.caller_account().await {
        Ok(caller) => {
            if let Err(x) = crate::core::environment::check_account(&env.spec, &caller) {
                return Ok(Outcome::Stalled(Readiness::Stalled { reason: x.reason, message: x.message }, x.category));
            }
        }
        Err(e) => return Ok(fail(e)),
    }
    if let Some(f) = &r.spec.function {
        return super::function::converge(r, env, ctx, cfg, f, aws, outputs).await;
    }
    let st = r.status.clone().unwrap_or_default();
    let service = r.spec.service.clone().unwrap_or_else(|| r.name_any());
    let cluster = env.spec.ecs_cluster.name.clone();
    let owner = owner_of(r);
    let mut tags = env.spec.tags.clone();
    tags.insert(MANAGED_BY_TAG.into(), MANAGED_BY.into());
    tags.insert(OWNER_TAG.into(), owner.clone());
    let adopt = r.annotations().get(ADOPT_ANNOTATION).map(String::as_str) == Some("true");
    let conflict = |message: String| Outcome::Stalled(Readiness::Stalled { reason: reasons::CONFLICT, message }, Category::Conflict);

    // Whose the service is decides everything else: no ECS write before it is known ours.
    // A rollout in flight reads afresh; a drift check takes an answer younger than half its
    // interval (one a batched call of a neighbour brought in).
    let max_age = if rollout_critical(r) { Duration::ZERO } else { cfg.drift_interval / 2 };
    let mut observed = match ctx.services.describe(aws.ecs.clone(), &env.name_any(), &cluster, &service, max_age).await {
        Ok(o) => o,
        Err(e) => return Ok(fail(e)),
    };
    if let Some(svc) = observed.as_mut() {
        let what = format!("ECS service {service} in cluster {cluster}");
        match ownership::check(&what, &svc.tags, &owner, adopt, "ServiceRelease") {
            Ownership::Conflict(message) => return Ok(conflict(message)),
            Ownership::Adopt => {
                ctx.may_act()?;
                if let Err(e) = aws.ecs.tag_resource(&svc.arn, &tags).await {
                    return Ok(fail(e));
                }
                svc.tags.extend(tags.clone());
                ctx.services.forget(&env.name_any(), &cluster, &service);
                ctx.event(r, false, reasons::ADOPTED, format!("adopted {what} (shipshape.dev/adopt); it now carries owner tag {owner}"))
                    .await;
            }
            Ownership::Ours => {
                // Environment tags edited since: the service gets them (others' tags stay).
                let missing = ownership::missing_tags(&tags, &svc.tags);
                if !missing.is_empty() {
                    ctx.may_act()?;
                    if let Err(e) = aws.ecs.tag_resource(&svc.arn, &missing).await {
                        return Ok(fail(e));
                    }
                    svc.tags.extend(missing);
                    ctx.services.forget(&env.name_any(), &cluster, &service);
                }
            }
        }
    }

    let (load_balancer, native) = match wiring(r, env, cfg, &service) {
        Ok(w) => w,
        Err(message) => return Ok(Outcome::Stalled(Readiness::Stalled { reason: reasons::INVALID_SPEC, message }, Category::InvalidSpec)),
    };
    let Some(td) = TaskDefinitionSpec::new(&service, &r.spec, &outputs, &env.spec.region) else {
        let message = "spec.task is missing: an ECS release needs it".to_string();
        return Ok(Outcome::Stalled(Readiness::Stalled { reason: reasons::INVALID_SPEC, message }, Category::InvalidSpec));
    };
    let hash = td.hash();
    let td_arn = match known_task_definition(&aws, &st, &td, &hash, &owner).await {
        Ok(Known::Registered(arn)) => arn,
        Ok(Known::Missing { newest_tags }) => {
            // A family is account-wide: releases of the same service name in two clusters of
            // one account share it, each deploying only revisions with its own owner tag. A
            // family someone manages by hand (no owner tag) gets no revision of ours unless
            // adopted.
            if newest_tags.is_some_and(|tags| !tags.contains_key(OWNER_TAG)) && !adopt {
                return Ok(conflict(format!(
                    "task definition family {} already exists and is not managed by shipshape; to adopt it, annotate the ServiceRelease with shipshape.dev/adopt: \"true\"",
                    td.family
                )));
            }
            ctx.may_act()?;
            match aws.ecs.register_task_definition(&td, &hash, &tags).await {
                Ok(arn) => arn,
                Err(e) => return Ok(fail(e)),
            }
        }
        Err(e) => return Ok(fail(e)),
    };
    let now = chrono::Utc::now();
    let sha = r.spec.image.git_sha.to_string();
    let round = if rollout::measurement_due(&st, now, cfg) {
        {
            // {{revision}}: the task definition revision being judged.
            let revision = td_arn.rsplit(':').next().unwrap_or_default().to_string();
            Some(measure(r, env, ctx, &aws, &sha, &[("revision", revision)]).await)
        }
    } else {
        None
    };
    let verdict_at = Instant::now();
    let cmds = commands(r, &st);
    // A deleting Environment starts no new rollout (rollbacks still happen).
    let frozen = env.spec.freeze || env.metadata.deletion_timestamp.is_some();
    let paused = r.spec.paused || r.annotations().get(PAUSED_ANNOTATION).map(String::as_str) == Some("true");
    let network = env.spec.network.clone().unwrap_or_default();
    let desired_network = Network::new(network.subnets.clone(), network.security_groups.clone(), network.assign_public_ip);
    let inputs = rollout::Inputs {
        now,
        sha: &sha,
        spec_hash: &hash,
        task_definition: &td_arn,
        replicas: r.spec.replicas,
        deployment_percents: (
            100 + r.spec.rollout.as_ref().map(|r| r.max_surge_percent).unwrap_or(100),
            r.spec.rollout.as_ref().map(|r| r.min_healthy_percent).unwrap_or(100),
        ),
        service: observed.as_ref(),
        network: &desired_network,
        paused,
        frozen,
        commands: &cmds,
        round,
        config: cfg,
    };
    let step = rollout::step(&st, &inputs);
    let ro = r.spec.rollout.clone();
    let token = client_token(r, &hash);
    let judged = step.status.rollout.as_ref().and_then(|r| r.task_definition_arn.clone());
    let requests = step
        .effects
        .iter()
        .map(|effect| {
            let task_definition = effect.task_definition().to_string();
            let req = ServiceRequest {
                cluster: cluster.clone(),
                name: service.clone(),
                task_definition,
                desired_count: r.spec.replicas,
                subnets: network.subnets.clone(),
                security_groups: network.security_groups.clone(),
                assign_public_ip: network.assign_public_ip,
                maximum_percent: 100 + ro.as_ref().map(|r| r.max_surge_percent).unwrap_or(100),
                minimum_healthy_percent: ro.as_ref().map(|r| r.min_healthy_percent).unwrap_or(100),
                tags: tags.clone(),
                client_token: token.clone(),
                load_balancer: load_balancer.clone(),
                native: native.as_ref().map(|n| NativeDeployment {
                    // Pauses only on the deployment of a rollout being judged.
                    pause_hooks: matches!(effect, Effect::UpdateService { .. }) && judged.as_deref() == Some(effect.task_definition()),
                    ..n.clone()
                }),
            };
            (effect.clone(), req)
        })
        .collect();
    let pending =
        Pending { aws, environment: env.name_any(), cluster, service, requests, verdict_at, frozen, cfg: cfg.clone(), alias: None };
    Ok(Outcome::Stepped(Box::new(step), Box::new(pending)))
}

/// The release's load balancer (its own fields, else the Environment's) and ECS strategy,
/// or what is missing.
fn wiring(
    r: &ServiceRelease,
    env: &Environment,
    cfg: &Config,
    service: &str,
) -> Result<(Option<LoadBalancer>, Option<NativeDeployment>), String> {
    let defaults = env.spec.load_balancer.as_ref();
    let lb = match (&r.spec.load_balancer, cfg.native) {
        (Some(own), _) => Some(own.or(defaults)),
        (None, true) => Some(LoadBalancerSpec::default().or(defaults)),
        (None, false) => None,
    };
    let Some(lb) = lb else { return Ok((None, None)) };
    let port = r.spec.task.as_ref().and_then(|t| t.port);
    let mut missing = vec![];
    let need = |v: &Option<String>, field: &str, missing: &mut Vec<String>| {
        if v.is_none() {
            missing.push(format!("loadBalancer.{field}"));
        }
    };
    need(&lb.target_group_arn, "targetGroupArn", &mut missing);
    if cfg.native {
        need(&lb.alternate_target_group_arn, "alternateTargetGroupArn", &mut missing);
        need(&lb.production_listener_rule, "productionListenerRule", &mut missing);
        need(&lb.role_arn, "roleArn", &mut missing);
    }
    if port.is_none() {
        missing.push("task.port".into());
    }
    if !missing.is_empty() {
        let what = if cfg.native { "a canary, linear or blueGreen strategy on ECS" } else { "a load balancer" };
        return Err(format!(
            "{what} needs {} (in the ServiceRelease, or loadBalancer defaults in Environment {})",
            missing.join(", "),
            env.name_any()
        ));
    }
    let strategy = r.spec.rollout.as_ref().and_then(|ro| ro.strategy.as_ref()).and_then(|s| {
        if let Some(c) = &s.canary {
            Some(NativeStrategy::Canary(f64::from(c.percent)))
        } else if let Some(l) = &s.linear {
            Some(NativeStrategy::Linear(f64::from(l.step_percent)))
        } else {
            s.blue_green.as_ref().map(|_| NativeStrategy::BlueGreen)
        }
    });
    // ECS rolls back by itself when a pause outlives the longest a step may take (its bake,
    // then the progress deadline); a rollout held on purpose (onFailure: Pause) waits the
    // most ECS allows, 24 hours.
    let longest = cfg.steps.iter().map(|s| s.bake).max().unwrap_or_default().saturating_add(cfg.progress_deadline);
    let minutes = i32::try_from(longest.as_secs().div_ceil(60)).unwrap_or(i32::MAX).saturating_add(5);
    let hook_timeout_minutes = if cfg.on_failure == crate::api::FailurePolicy::Pause { 1440 } else { minutes.clamp(10, 1440) };
    let native = strategy.filter(|_| cfg.native).map(|strategy| NativeDeployment { strategy, pause_hooks: false, hook_timeout_minutes });
    let lb = LoadBalancer {
        target_group: lb.target_group_arn.unwrap_or_default(),
        alternate_target_group: lb.alternate_target_group_arn,
        production_listener_rule: lb.production_listener_rule,
        test_listener_rule: lb.test_listener_rule,
        role_arn: lb.role_arn,
        container_name: service.to_string(),
        container_port: port.unwrap_or(80),
    };
    Ok((Some(lb), native))
}

/// Whether a reconcile of `r` is rollout work (a spec not yet acted on, a rollout or
/// rollback in flight, a command, a deletion) rather than a drift check.
fn rollout_critical(r: &ServiceRelease) -> bool {
    let Some(st) = r.status.as_ref() else { return true };
    let fresh_command = [RETRY_ANNOTATION, ROLLBACK_ANNOTATION, PROMOTE_ANNOTATION].iter().any(|a| {
        let name = a.trim_start_matches("shipshape.dev/");
        r.annotations().get(*a).is_some_and(|v| st.handled_commands.get(name) != Some(v))
    });
    r.metadata.deletion_timestamp.is_some()
        || st.observed_generation != r.metadata.generation
        || st.rollback.is_some()
        || fresh_command
        || matches!(st.phase, Phase::Pending | Phase::Progressing | Phase::Analyzing | Phase::RollingBack)
}

/// CreateService's idempotency token for this release and spec: a create retried after a
/// lost answer is the same request (36 characters at most, as ECS allows).
fn client_token(r: &ServiceRelease, spec_hash: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}/{spec_hash}", r.uid().unwrap_or_default()));
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The desired SHA of a release, as text.
fn sha_of(r: &ServiceRelease) -> String {
    r.spec.image.git_sha.to_string()
}

/// The static label of a rollback trigger (metric label values are static words).
fn rollback_reason(trigger: &str) -> &'static str {
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
fn forget(ctx: &Context, r: &ServiceRelease) {
    let (ns, name) = (r.namespace().unwrap_or_default(), r.name_any());
    for p in PHASES {
        let _ = ctx.metrics.release_phase.remove_label_values(&[&ns, &name, phase_word(p)]);
    }
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

fn export(ctx: &Context, r: &ServiceRelease, old: &ServiceReleaseStatus, new: &ServiceReleaseStatus) {
    let (ns, name) = (r.namespace().unwrap_or_default(), r.name_any());
    for p in PHASES {
        ctx.metrics.release_phase.with_label_values(&[&ns, &name, phase_word(p)]).set(i64::from(new.phase == p));
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

async fn apply(r: Arc<ServiceRelease>, ctx: &Context) -> Result<Action, Error> {
    let api: Api<ServiceRelease> = Api::namespaced(ctx.client.clone(), &r.namespace().unwrap_or_default());
    let old = r.status.clone().unwrap_or_default();
    let old_value = r.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null));
    // Rollout decisions are written with the object's resourceVersion (fencing).
    let mut resource_version = r.resource_version();
    let checked = crate::core::spec::release(&r.spec, ctx.settings.ecs_drift);
    let drift = checked.as_ref().map(|c| c.drift_interval).unwrap_or(ctx.settings.ecs_drift);
    let mut new = ServiceReleaseStatus { observed_generation: r.metadata.generation, ..old.clone() };
    let mut old_value = old_value;
    let mut prev_conditions = old.conditions.clone();
    let resolved = match checked {
        Err(e) => Err((invalid_spec(&e), Category::InvalidSpec)),
        Ok(cfg) => tenant::resolve(ctx, r.as_ref(), &r.spec.environment).await?.map(|env| (env, cfg)),
    };
    let (readiness, action, err) = match resolved {
        Err((stalled, category)) => {
            ctx.metrics.errors.with_label_values(&[CONTROLLER, category.label()]).inc();
            (stalled, Action::await_change(), None)
        }
        Ok((env, cfg)) => match converge(&r, &env, ctx, &cfg).await? {
            Outcome::Stepped(step, pending) => {
                for (warning, reason, note) in &step.events {
                    info!(reason, note, "rollout");
                    ctx.event(r.as_ref(), *warning, reason, note.clone()).await;
                }
                new = ServiceReleaseStatus { observed_generation: r.metadata.generation, ..step.status.clone() };
                export(ctx, &r, &old, &new);
                // Persist the decision before acting on it: a controller that dies between
                // the two resumes from the decision (holding a rollback, say) instead of
                // deciding again, so a rollback is called once and the bad SHA never returns.
                if !pending.requests.is_empty() {
                    let mut decided = new.clone();
                    decided.conditions = next_conditions(&prev_conditions, &step.readiness, r.metadata.generation);
                    let value = serde_json::to_value(&decided).unwrap_or(Value::Null);
                    status::write_at(&api, r.as_ref(), &mut resource_version, old_value.clone(), value.clone()).await?;
                    old_value = Some(value);
                    prev_conditions = decided.conditions;
                }
                ctx.may_act()?;
                let (rollback_to, result) = pending.execute().await;
                if !pending.requests.is_empty() {
                    // What was read of the service before this write is no longer true.
                    ctx.services.forget(&pending.environment, &pending.cluster, &pending.service);
                }
                match result.map(|()| rollback_to.clone()) {
                    Ok(Some(td)) => {
                        // ECS accepted the rollback: only now is the release RolledBack.
                        let (accepted, events) = rollout::rollback_accepted(&new, &td, chrono::Utc::now(), pending.cfg.history_limit);
                        let trigger = new.rollback.as_ref().map(|rb| rb.trigger.clone()).unwrap_or_default();
                        ctx.metrics.rollback_seconds.observe(pending.verdict_at.elapsed().as_secs_f64());
                        ctx.metrics.rollbacks.with_label_values(&[rollback_reason(&trigger)]).inc();
                        for (warning, reason, note) in &events {
                            info!(reason, note, "rollout");
                            ctx.event(r.as_ref(), *warning, reason, note.clone()).await;
                        }
                        let before = new.clone();
                        new = accepted;
                        export(ctx, &r, &before, &new);
                        ctx.reset_failures(r.as_ref());
                        let (readiness, requeue) = rollout::readiness(&new, &sha_of(&r), pending.frozen, chrono::Utc::now(), &pending.cfg);
                        (readiness, Action::requeue(requeue), None)
                    }
                    Ok(None) => {
                        ctx.reset_failures(r.as_ref());
                        (step.readiness.clone(), Action::requeue(step.requeue), None)
                    }
                    Err(e) if pending.rollback() => {
                        // ECS refused the rollback: the bad SHA may still serve. Say so, count
                        // it, and try again with backoff until ECS accepts it.
                        new = rollout::rollback_refused(&new, &e.to_string(), rollback_to.as_deref());
                        ctx.metrics.rollback_failures.inc();
                        ctx.metrics.errors.with_label_values(&[CONTROLLER, e.category().label()]).inc();
                        let attempt = new.rollback.as_ref().map(|rb| rb.failed_attempts).unwrap_or(1);
                        let wait = requeue::backoff(
                            u32::try_from(attempt).unwrap_or(1),
                            Duration::from_secs(1),
                            Duration::from_secs(60),
                            rand::random(),
                        );
                        let (readiness, _) = rollout::readiness(&new, &sha_of(&r), pending.frozen, chrono::Utc::now(), &pending.cfg);
                        (readiness, Action::requeue(wait), None)
                    }
                    Err(e) if e.category().is_transient() => (
                        Readiness::Reconciling { reason: reasons::TRANSIENT_ERROR, message: format!("{e}; retrying") },
                        Action::await_change(),
                        Some(Error::Aws(e)),
                    ),
                    Err(e) => {
                        ctx.metrics.errors.with_label_values(&[CONTROLLER, e.category().label()]).inc();
                        let action =
                            requeue::after_failure(e.category(), 1, drift, 0.0).map(Action::requeue).unwrap_or_else(Action::await_change);
                        (stall_for(&e), action, None)
                    }
                }
            }
            Outcome::Waiting(why) => {
                let reason = if why.starts_with("Environment") { reasons::WAITING_FOR_ENVIRONMENT } else { reasons::WAITING_FOR_STACK };
                (Readiness::Reconciling { reason, message: why }, Action::requeue(Duration::from_secs(5)), None)
            }
            Outcome::Stalled(stalled, category) => {
                ctx.metrics.errors.with_label_values(&[CONTROLLER, category.label()]).inc();
                let action = requeue::after_failure(category, 1, drift, 0.0).map(Action::requeue).unwrap_or_else(Action::await_change);
                (stalled, action, None)
            }
            Outcome::Transient(e) => (
                Readiness::Reconciling { reason: reasons::TRANSIENT_ERROR, message: format!("{e}; retrying") },
                Action::await_change(),
                Some(Error::Aws(e)),
            ),
        },
    };
    if let Readiness::Stalled { reason, message } = &readiness {
        let announced = matches!(*reason, r if r == reasons::ROLLED_BACK || r == reasons::ROLLOUT_FAILED);
        if !announced && stored_reason(&old.conditions).as_deref() != Some(*reason) {
            ctx.event(r.as_ref(), true, reason, message.clone()).await;
        }
    }
    new.conditions = next_conditions(&prev_conditions, &readiness, r.metadata.generation);
    status::write_at(&api, r.as_ref(), &mut resource_version, old_value, serde_json::to_value(&new).unwrap_or(Value::Null)).await?;
    match err {
        Some(e) => Err(e),
        None => Ok(action),
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
