//! The ServiceRelease controller: resolves the task definition for the spec (registering
//! it once per content hash), observes the ECS service, runs an analysis round when one is
//! due, and hands everything to the pure rollout state machine; then carries out its ECS
//! calls, Events and status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::ResourceExt;
use serde_json::Value;
use tracing::{info, instrument};

use super::{environment, error_policy, next_conditions, record, stall_for, status, stored_reason, tenant, Context, Error};
use crate::api::{
    condition_types, finalizer_name, owner_of, reasons, Environment, Measurement, Phase, ServiceRelease, ServiceReleaseStatus, StackSpec,
    MANAGED_BY, MANAGED_BY_TAG, OWNER_TAG,
};
use crate::aws::{AwsClients, AwsError, ServiceRequest};
use crate::core::analysis::{self, QueryResult, Verdict};
use crate::core::conditions::Readiness;
use crate::core::requeue::{self, Category};
use crate::core::rollout::{self, Commands, Config, Effect};
use crate::core::taskdef::TaskDefinitionSpec;
use crate::health::prometheus::Prometheus;

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
    let api: Api<ServiceRelease> = Api::namespaced(ctx.client.clone(), &release.namespace().unwrap_or_default());
    let result = finalizer(&api, &finalizer_name::<ServiceRelease>(), release, |event| async {
        match event {
            Finalizer::Apply(r) => apply(r, &ctx).await,
            Finalizer::Cleanup(r) => {
                // The ECS service keeps running: deleting a release must not take production down.
                let service = r.spec.service.clone().unwrap_or_else(|| r.name_any());
                ctx.event(
                    r.as_ref(),
                    false,
                    reasons::RETAINED,
                    format!("ECS service {service} left running; delete it in ECS if it should go"),
                )
                .await;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    record(&ctx, CONTROLLER, &result, started);
    result
}

/// Requeue after failure.
pub fn on_error(release: Arc<ServiceRelease>, err: &Error, ctx: Arc<Context>) -> Action {
    error_policy(release, err, ctx, CONTROLLER)
}

fn config(r: &ServiceRelease, ctx: &Context) -> Config {
    let ro = r.spec.rollout.clone();
    let an = ro.as_ref().and_then(|r| r.analysis.clone());
    let d = |x: Option<&crate::api::GoDuration>, default: u64| x.map(|d| d.duration()).unwrap_or(Duration::from_secs(default));
    Config {
        warmup: d(an.as_ref().and_then(|a| a.warmup.as_ref()), 0),
        interval: d(an.as_ref().and_then(|a| a.interval.as_ref()), 30),
        successful_runs: an.as_ref().map(|a| a.successful_runs).unwrap_or(3),
        failure_limit: an.as_ref().map(|a| a.failure_limit).unwrap_or(1),
        progress_deadline: d(ro.as_ref().and_then(|r| r.progress_deadline.as_ref()), 600),
        auto_rollback: ro.as_ref().map(|r| r.auto_rollback).unwrap_or(true),
        has_analysis: an.as_ref().is_some_and(|a| !a.queries.is_empty()),
        history_limit: r.spec.history_limit.max(1) as usize,
        drift_interval: r.spec.drift_interval.as_ref().map(|d| d.duration()).unwrap_or(ctx.settings.ecs_drift),
    }
}

fn commands(r: &ServiceRelease, st: &ServiceReleaseStatus) -> Commands {
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
    let Some(stack) = Api::<StackSpec>::namespaced(ctx.client.clone(), &ns).get_opt(name).await? else {
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
    let data = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns).get_opt(cm).await?.and_then(|c| c.data).unwrap_or_default();
    Ok(Ok(data))
}

/// One analysis round: every query, judged.
async fn measure(r: &ServiceRelease, env: &Environment, ctx: &Context, sha: &str) -> (Verdict, Vec<Measurement>) {
    let queries = r.spec.rollout.as_ref().and_then(|ro| ro.analysis.as_ref()).map(|a| a.queries.clone()).unwrap_or_default();
    let prom = env.spec.health.as_ref().and_then(|h| h.prometheus.as_ref()).map(|p| Prometheus::new(&p.url));
    let service = r.spec.service.clone().unwrap_or_else(|| r.name_any());
    let ns = r.namespace().unwrap_or_default();
    let mut verdicts = vec![];
    let mut measurements = vec![];
    for q in &queries {
        let result = match &prom {
            Some(p) => p.query(&analysis::render(&q.prometheus, &service, &ns, sha)).await,
            None => QueryResult::Unreachable(format!("Environment {} has no health.prometheus.url", env.name_any())),
        };
        let value = match result {
            QueryResult::Value(v) => Some(v),
            _ => None,
        };
        if let Some(v) = value {
            ctx.metrics.analysis_value.with_label_values(&[&ns, &r.name_any(), &q.name]).set(v);
        }
        let verdict = analysis::judge(q, &result);
        measurements.push(Measurement {
            at: chrono::Utc::now(),
            query: q.name.clone(),
            value: value.filter(|v| v.is_finite()),
            verdict: verdict.word().into(),
        });
        verdicts.push(verdict);
    }
    (analysis::round(&verdicts), measurements)
}

/// The task definition ARN for `td`, registering it once per content hash.
async fn task_definition(
    aws: &AwsClients,
    st: &ServiceReleaseStatus,
    td: &TaskDefinitionSpec,
    hash: &str,
    tags: &BTreeMap<String, String>,
) -> Result<String, AwsError> {
    if let Some(arn) = st.rollout.as_ref().filter(|r| r.spec_hash == hash).and_then(|r| r.task_definition_arn.clone()) {
        return Ok(arn);
    }
    if st.stable_spec_hash.as_deref() == Some(hash) {
        if let Some(arn) = &st.stable_task_definition_arn {
            return Ok(arn.clone());
        }
    }
    if let Some(arn) = aws.ecs.find_task_definition(&td.family, hash).await? {
        return Ok(arn);
    }
    aws.ecs.register_task_definition(td, hash, tags).await
}

/// ECS calls decided by a step, carried out after the decision is persisted.
struct Pending {
    aws: AwsClients,
    requests: Vec<(bool, ServiceRequest)>,
    verdict_at: Instant,
}

impl Pending {
    async fn execute(&self) -> Result<(), AwsError> {
        for (create, req) in &self.requests {
            if *create {
                self.aws.ecs.create_service(req).await?;
            } else {
                self.aws.ecs.update_service(req).await?;
            }
        }
        Ok(())
    }
}

enum Outcome {
    Stepped(Box<rollout::Step>, Box<Pending>),
    Stalled(Readiness, Category),
    Waiting(String),
    Transient(AwsError),
}

async fn converge(r: &ServiceRelease, env: &Environment, ctx: &Context) -> Result<Outcome, Error> {
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
    let st = r.status.clone().unwrap_or_default();
    let service = r.spec.service.clone().unwrap_or_else(|| r.name_any());
    let cluster = env.spec.ecs_cluster.name.clone();
    let mut tags = env.spec.tags.clone();
    tags.insert(MANAGED_BY_TAG.into(), MANAGED_BY.into());
    tags.insert(OWNER_TAG.into(), owner_of(r));
    let td = TaskDefinitionSpec::new(&service, &r.spec, &outputs);
    let hash = td.hash();
    let td_arn = match task_definition(&aws, &st, &td, &hash, &tags).await {
        Ok(a) => a,
        Err(e) => return Ok(fail(e)),
    };
    let observed = match ctx.services.describe(aws.ecs.clone(), &env.name_any(), &cluster, &service).await {
        Ok(o) => o,
        Err(e) => return Ok(fail(e)),
    };
    let cfg = config(r, ctx);
    let now = chrono::Utc::now();
    let sha = r.spec.image.git_sha.to_string();
    let round = if rollout::measurement_due(&st, now, &cfg) { Some(measure(r, env, ctx, &sha).await) } else { None };
    let verdict_at = Instant::now();
    let cmds = commands(r, &st);
    let paused = r.spec.paused || r.annotations().get(PAUSED_ANNOTATION).map(String::as_str) == Some("true");
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
        paused,
        frozen: env.spec.freeze,
        commands: &cmds,
        round,
        config: &cfg,
    };
    let step = rollout::step(&st, &inputs);
    let network = env.spec.network.clone().unwrap_or_default();
    let ro = r.spec.rollout.clone();
    let requests = step
        .effects
        .iter()
        .map(|effect| {
            let (create, task_definition) = match effect {
                Effect::CreateService { task_definition } => (true, task_definition.clone()),
                Effect::UpdateService { task_definition } => (false, task_definition.clone()),
            };
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
            };
            (create, req)
        })
        .collect();
    Ok(Outcome::Stepped(Box::new(step), Box::new(Pending { aws, requests, verdict_at })))
}

fn phase_word(p: Phase) -> &'static str {
    match p {
        Phase::Pending => "Pending",
        Phase::Progressing => "Progressing",
        Phase::Analyzing => "Analyzing",
        Phase::Healthy => "Healthy",
        Phase::RolledBack => "RolledBack",
        Phase::Failed => "Failed",
        Phase::Paused => "Paused",
    }
}

fn export(ctx: &Context, r: &ServiceRelease, old: &ServiceReleaseStatus, new: &ServiceReleaseStatus) {
    let (ns, name) = (r.namespace().unwrap_or_default(), r.name_any());
    for p in [Phase::Pending, Phase::Progressing, Phase::Analyzing, Phase::Healthy, Phase::RolledBack, Phase::Failed, Phase::Paused] {
        ctx.metrics.release_phase.with_label_values(&[&ns, &name, phase_word(p)]).set(i64::from(new.phase == p));
    }
    let sha = |s: &ServiceReleaseStatus| (s.current_sha.clone().unwrap_or_default(), s.stable_sha.clone().unwrap_or_default());
    let (old_sha, old_stable) = sha(old);
    let (cur, stable) = sha(new);
    if (old_sha.clone(), old_stable.clone()) != (cur.clone(), stable.clone()) {
        let _ = ctx.metrics.release_info.remove_label_values(&[&ns, &name, &old_sha, &old_stable]);
    }
    ctx.metrics.release_info.with_label_values(&[&ns, &name, &cur, &stable]).set(1);
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
    let drift = r.spec.drift_interval.as_ref().map(|d| d.duration()).unwrap_or(ctx.settings.ecs_drift);
    let mut new = ServiceReleaseStatus { observed_generation: r.metadata.generation, ..old.clone() };
    let mut old_value = old_value;
    let mut prev_conditions = old.conditions.clone();
    let (readiness, action, err) = match tenant::resolve(ctx, r.as_ref(), &r.spec.environment).await? {
        Err((stalled, category)) => {
            ctx.metrics.errors.with_label_values(&[CONTROLLER, category.label()]).inc();
            (stalled, Action::await_change(), None)
        }
        Ok(env) => match converge(&r, &env, ctx).await? {
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
                    let value = serde_json::to_value(&decided).expect("status serializes");
                    status::write(&api, r.as_ref(), old_value.clone(), value.clone()).await?;
                    old_value = Some(value);
                    prev_conditions = decided.conditions;
                }
                match pending.execute().await {
                    Ok(()) => {
                        if let Some(why) = step.rolled_back {
                            ctx.metrics.rollback_seconds.observe(pending.verdict_at.elapsed().as_secs_f64());
                            ctx.metrics.rollbacks.with_label_values(&[why]).inc();
                        }
                        ctx.reset_failures(r.as_ref());
                        (step.readiness.clone(), Action::requeue(step.requeue), None)
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
                (Readiness::Reconciling { reason: reasons::WAITING_FOR_STACK, message: why }, Action::requeue(Duration::from_secs(5)), None)
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
    status::write(&api, r.as_ref(), old_value, serde_json::to_value(&new).expect("status serializes")).await?;
    match err {
        Some(e) => Err(e),
        None => Ok(action),
    }
}
