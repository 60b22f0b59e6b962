//! The Environment controller: ECS cluster created or adopted, tags kept, caller account checked.

use std::sync::Arc;
use std::time::Instant;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::ResourceExt;
use serde_json::Value;
use tracing::{info, instrument};

use super::{error_policy, invalid_spec, key_of, next_conditions, record, stall_for, status, stored_reason, Context, Error};
use crate::api::{finalizer_name, owner_of, reasons, Environment, EnvironmentStatus, ServiceRelease, StackSpec};
use crate::aws::{AwsClients, NewCluster, Target};
use crate::core::conditions::Readiness;
use crate::core::environment::{self as plan, Action as Step, Observed};
use crate::core::requeue::{self, Category};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "environment";

/// The AWS target of an Environment.
pub fn target(env: &Environment) -> Target {
    Target { environment: env.name_any(), region: env.spec.region.clone(), role_arn: env.spec.role_arn.clone() }
}

/// Whether the Environment's ECS cluster has been created (or found) yet. Only a cluster
/// never seen makes its releases wait: later trouble with the Environment must not block a
/// rollback.
pub fn has_cluster(env: &Environment) -> bool {
    env.status.as_ref().and_then(|s| s.cluster_arn.as_deref()).is_some_and(|a| !a.is_empty())
}

/// What about an Environment its tenants care about: its spec, and whether its cluster is
/// there (a change of either wakes them; other status changes do not).
pub fn tenant_view(env: &Environment) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (env.metadata.generation, has_cluster(env)).hash(&mut h);
    Some(h.finish())
}

/// Reconciles one Environment.
#[instrument(skip_all, fields(environment = %env.name_any()))]
pub async fn reconcile(env: Arc<Environment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let api: Api<Environment> = Api::all(ctx.client.clone());
    let result = finalizer(&api, &finalizer_name::<Environment>(), env, |event| async {
        match event {
            Finalizer::Apply(env) => apply(env, &ctx).await,
            Finalizer::Cleanup(env) => cleanup(env, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    record(&ctx, CONTROLLER, &result, started);
    result
}

/// Requeue after failure.
pub fn on_error(env: Arc<Environment>, err: &Error, ctx: Arc<Context>) -> Action {
    error_policy(env, err, ctx, CONTROLLER)
}

/// What a successful pass did.
struct Converged {
    cluster_arn: String,
    caller_account: String,
    steps: Vec<Step>,
}

enum Failure {
    Invalid(crate::core::spec::InvalidSpec),
    Refused(plan::Refusal),
    Aws(crate::aws::AwsError),
}

impl From<crate::aws::AwsError> for Failure {
    fn from(e: crate::aws::AwsError) -> Self {
        Failure::Aws(e)
    }
}

async fn observe(env: &Environment, aws: &AwsClients) -> Result<Observed, Failure> {
    let caller_account = aws.sts.caller_account().await?;
    // The account is checked before anything else is read or written.
    plan::check_account(&env.spec, &caller_account).map_err(Failure::Refused)?;
    let cluster = aws.ecs.describe_cluster(&env.spec.ecs_cluster.name).await?;
    Ok(Observed { caller_account, cluster })
}

async fn converge(env: &Environment, ctx: &Context) -> Result<Converged, Failure> {
    let aws = ctx.aws.clients(&target(env)).await?;
    let observed = observe(env, &aws).await?;
    let managed = env.status.as_ref().map(|s| s.managed_tag_keys.clone()).unwrap_or_default();
    let steps = plan::plan(&env.spec, &owner_of(env), &observed, &managed).map_err(Failure::Refused)?;
    let name = &env.spec.ecs_cluster.name;
    let mut arn = observed.cluster.as_ref().filter(|c| c.is_live()).map(|c| c.arn.clone()).unwrap_or_default();
    if !steps.is_empty() && ctx.may_act().is_err() {
        return Err(Failure::Aws(crate::aws::AwsError::Transient { op: "leadership", message: "not the leader: nothing written".into() }));
    }
    for step in &steps {
        match step {
            Step::CreateCluster { name, tags, capacity_providers, container_insights } => {
                arn = aws
                    .ecs
                    .create_cluster(&NewCluster {
                        name: name.clone(),
                        tags: tags.clone(),
                        capacity_providers: capacity_providers.clone(),
                        container_insights: container_insights.clone(),
                    })
                    .await?;
            }
            Step::Tag { tags } => aws.ecs.tag_resource(&arn, tags).await?,
            Step::Untag { keys } => aws.ecs.untag_resource(&arn, keys).await?,
            Step::SetCapacityProviders { providers } => aws.ecs.put_capacity_providers(name, providers).await?,
            Step::SetContainerInsights { value } => aws.ecs.set_container_insights(name, value).await?,
        }
    }
    Ok(Converged { cluster_arn: arn, caller_account: observed.caller_account, steps })
}

fn describe(step: &Step) -> String {
    match step {
        Step::CreateCluster { name, .. } => format!("created ECS cluster {name}"),
        Step::Tag { tags } => format!("set tags {}", tags.keys().cloned().collect::<Vec<_>>().join(", ")),
        Step::Untag { keys } => format!("removed tags {}", keys.join(", ")),
        Step::SetCapacityProviders { providers } => {
            format!("set capacity providers {}", providers.join(", "))
        }
        Step::SetContainerInsights { value } => format!("set containerInsights {value}"),
    }
}

async fn apply(env: Arc<Environment>, ctx: &Context) -> Result<Action, Error> {
    let api: Api<Environment> = Api::all(ctx.client.clone());
    let old_status = env.status.clone().unwrap_or_default();
    let old_value = env.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null));
    let generation = env.metadata.generation;
    let checked = crate::core::spec::drift_interval(env.spec.drift_interval.as_ref(), ctx.settings.ecs_drift);
    let drift = checked.clone().unwrap_or(ctx.settings.ecs_drift);
    let outcome = match checked {
        Ok(_) => converge(&env, ctx).await,
        Err(e) => Err(Failure::Invalid(e)),
    };
    let mut new_status = EnvironmentStatus { observed_generation: generation, ..old_status.clone() };
    let (readiness, action, err) = match outcome {
        Ok(done) => {
            let spec_unchanged = old_status.observed_generation == generation
                && stored_reason(&old_status.conditions).as_deref() == Some(reasons::RECONCILED);
            for step in &done.steps {
                let (reason, note) = match step {
                    Step::CreateCluster { .. } => (reasons::CREATED, describe(step)),
                    _ if spec_unchanged => {
                        ctx.metrics.drift_corrections.with_label_values(&[CONTROLLER, "EcsCluster"]).inc();
                        (reasons::DRIFT_CORRECTED, format!("{} (changed outside shipshape)", describe(step)))
                    }
                    _ => ("Updated", describe(step)),
                };
                info!(env = %key_of(env.as_ref()), reason, note, "applied");
                ctx.event(env.as_ref(), false, reason, note).await;
            }
            new_status.cluster_arn = Some(done.cluster_arn);
            new_status.caller_account_id = Some(done.caller_account);
            let mut keys: Vec<String> = plan::desired_tags(&env.spec, &owner_of(env.as_ref())).into_keys().collect();
            keys.sort();
            new_status.managed_tag_keys = keys;
            ctx.reset_failures(env.as_ref());
            let msg = format!("ECS cluster {} is in its declared state", env.spec.ecs_cluster.name);
            (Readiness::Ready { reason: reasons::RECONCILED, message: msg }, Action::requeue(drift), None)
        }
        Err(Failure::Invalid(e)) => {
            ctx.metrics.errors.with_label_values(&[CONTROLLER, Category::InvalidSpec.label()]).inc();
            (invalid_spec(&e), Action::await_change(), None)
        }
        Err(Failure::Refused(r)) => {
            ctx.metrics.errors.with_label_values(&[CONTROLLER, r.category.label()]).inc();
            let action = requeue::after_failure(r.category, 1, drift, 0.0).map(Action::requeue).unwrap_or_else(Action::await_change);
            (Readiness::Stalled { reason: r.reason, message: r.message }, action, None)
        }
        Err(Failure::Aws(e)) if e.category().is_transient() => (
            Readiness::Reconciling { reason: reasons::TRANSIENT_ERROR, message: format!("{e}; retrying") },
            Action::await_change(),
            Some(Error::Aws(e)),
        ),
        Err(Failure::Aws(e)) => {
            ctx.metrics.errors.with_label_values(&[CONTROLLER, e.category().label()]).inc();
            let action = requeue::after_failure(e.category(), 1, drift, 0.0).map(Action::requeue).unwrap_or_else(Action::await_change);
            (stall_for(&e), action, None)
        }
    };
    if let Readiness::Stalled { reason, message } = &readiness {
        if stored_reason(&old_status.conditions).as_deref() != Some(*reason) {
            ctx.event(env.as_ref(), true, reason, message.clone()).await;
        }
    }
    new_status.conditions = next_conditions(&old_status.conditions, &readiness, generation);
    status::write(&api, env.as_ref(), old_value, serde_json::to_value(&new_status).expect("status serializes")).await?;
    match err {
        Some(e) => Err(e),
        None => Ok(action),
    }
}

/// The StackSpecs and ServiceReleases that name an Environment, as `Kind ns/name`.
async fn dependents(ctx: &Context, env: &str) -> Result<Vec<String>, kube::Error> {
    let lp = kube::api::ListParams::default();
    let mut out = vec![];
    for s in Api::<StackSpec>::all(ctx.client.clone()).list(&lp).await?.items.iter().filter(|s| s.spec.environment == env) {
        out.push(format!("StackSpec {}", key_of(s)));
    }
    for r in Api::<ServiceRelease>::all(ctx.client.clone()).list(&lp).await?.items.iter().filter(|r| r.spec.environment == env) {
        out.push(format!("ServiceRelease {}", key_of(r)));
    }
    Ok(out)
}

async fn cleanup(env: Arc<Environment>, ctx: &Context) -> Result<Action, Error> {
    // Whatever runs in the Environment goes first: their own cleanup (final snapshots,
    // deletion policies) needs it, and it starts no new rollout meanwhile.
    let waiting = dependents(ctx, &env.name_any()).await?;
    if !waiting.is_empty() {
        let shown: Vec<&str> = waiting.iter().take(10).map(String::as_str).collect();
        let more = if waiting.len() > shown.len() { format!(" and {} more", waiting.len() - shown.len()) } else { String::new() };
        let message =
            format!("waiting for {} object(s) that use this Environment to be deleted first: {}{more}", waiting.len(), shown.join(", "));
        let api: Api<Environment> = Api::all(ctx.client.clone());
        let old = env.status.clone().unwrap_or_default();
        let old_value = env.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null));
        let readiness = Readiness::Reconciling { reason: reasons::WAITING_FOR_DEPENDENTS, message: message.clone() };
        if stored_reason(&old.conditions).as_deref() != Some(reasons::WAITING_FOR_DEPENDENTS) {
            ctx.event(env.as_ref(), false, reasons::WAITING_FOR_DEPENDENTS, message.clone()).await;
        }
        let new = EnvironmentStatus { conditions: next_conditions(&old.conditions, &readiness, env.metadata.generation), ..old };
        status::write(&api, env.as_ref(), old_value, serde_json::to_value(&new).unwrap_or(Value::Null)).await?;
        // Kept: rechecked when a dependent goes (watched) and at the slow interval.
        return Err(Error::Refused { category: Category::Conflict, message });
    }
    let owner = owner_of(env.as_ref());
    if env.spec.deletion_policy == crate::api::EnvironmentDeletionPolicy::Retain || !env.spec.ecs_cluster.create {
        ctx.event(
            env.as_ref(),
            false,
            reasons::RETAINED,
            format!("ECS cluster {} left in AWS (deletionPolicy Retain or adopted cluster)", env.spec.ecs_cluster.name),
        )
        .await;
        return Ok(Action::await_change());
    }
    let refuse = |message: String, category: Category| Error::Refused { category, message };
    let aws = ctx.aws.clients(&target(env.as_ref())).await?;
    let observed = match observe(env.as_ref(), &aws).await {
        Ok(o) => o,
        Err(Failure::Aws(e)) => return Err(e.into()),
        Err(Failure::Invalid(e)) => return Err(Error::Refused { category: Category::InvalidSpec, message: e.to_string() }),
        Err(Failure::Refused(r)) => {
            let msg = format!("{} To delete this Environment without touching AWS, set deletionPolicy: Retain.", r.message);
            ctx.event(env.as_ref(), true, r.reason, msg.clone()).await;
            return Err(refuse(msg, r.category));
        }
    };
    if plan::should_delete_cluster(&env.spec, &owner, observed.cluster.as_ref()) {
        ctx.may_act()?;
        match aws.ecs.delete_cluster(&env.spec.ecs_cluster.name).await {
            Ok(()) | Err(crate::aws::AwsError::NotFound { .. }) => {}
            Err(e) => {
                ctx.event(env.as_ref(), true, stall_for(&e).reason(), format!("could not delete ECS cluster: {e}")).await;
                return Err(e.into());
            }
        }
        ctx.event(env.as_ref(), false, reasons::DELETED, format!("deleted ECS cluster {}", env.spec.ecs_cluster.name)).await;
    }
    Ok(Action::await_change())
}
