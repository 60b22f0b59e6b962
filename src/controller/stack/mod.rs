//! The StackSpec controller: RDS databases, S3 buckets, DynamoDB tables and ElastiCache
//! caches created, kept as declared
//! (drift put back and announced), adopted only when asked, deleted only as the policy says,
//! with outputs in a ConfigMap and an optional manual approval of each plan.

mod cleanup;
mod outputs;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::ResourceExt;
use serde_json::Value;
use tracing::{info, instrument};

use super::listing::DatabaseReader;
use super::{environment, error_policy, invalid_spec, next_conditions, record, stall_for, status, stored_reason, tenant, Context, Error};
use crate::api::{finalizer_name, owner_of, reasons, Approval, Environment, PlanStatus, ResourceStatus, StackSpec, StackSpecStatus};
use crate::aws::{AwsClients, AwsError, BucketReads};
use crate::core::conditions::Readiness;
use crate::core::requeue::{self, Category};
use crate::core::stack::{self as plan, Observed, StackPlan, Step};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "stackspec";
/// Annotation approving a Manual plan: its value is the plan hash.
pub const APPROVE_ANNOTATION: &str = "shipshape.dev/approve";
pub use crate::api::ADOPT_ANNOTATION;

/// Reconciles one StackSpec.
#[instrument(skip_all, fields(stack = %format!("{}/{}", stack.namespace().unwrap_or_default(), stack.name_any())))]
pub async fn reconcile(stack: Arc<StackSpec>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    // A drift check (nothing changed in the spec) takes one of the drift slots.
    let drift = stack.metadata.deletion_timestamp.is_none()
        && stack.status.as_ref().is_some_and(|s| s.observed_generation == stack.metadata.generation);
    let _slot = if drift {
        match super::drift_slot(&ctx).await {
            Ok(slot) => Some(slot),
            Err(later) => return Ok(later),
        }
    } else {
        None
    };
    let api: Api<StackSpec> = Api::namespaced(ctx.client.clone(), &stack.namespace().unwrap_or_default());
    let result = finalizer(&api, &finalizer_name::<StackSpec>(), stack, |event| async {
        match event {
            Finalizer::Apply(s) => apply(s, &ctx).await,
            Finalizer::Cleanup(s) => cleanup::cleanup(s, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    record(&ctx, CONTROLLER, &result, started);
    result
}

/// Requeue after failure.
pub fn on_error(stack: Arc<StackSpec>, err: &Error, ctx: Arc<Context>) -> Action {
    error_policy(stack, err, ctx, CONTROLLER)
}

/// Reads every declared database and bucket (of a bucket, only what its spec manages), all
/// now. Read-only: `shipshape plan` uses it too.
pub async fn observe(stack: &StackSpec, aws: &AwsClients) -> Result<Observed, AwsError> {
    observe_with(stack, aws, None).await
}

/// A drift check's reads: databases from the Environment's listing when it is younger than
/// the age given.
type Listed<'a> = (&'a DatabaseReader, &'a str, Duration);

async fn observe_with(stack: &StackSpec, aws: &AwsClients, listed: Option<Listed<'_>>) -> Result<Observed, AwsError> {
    let mut observed = Observed::default();
    for d in &stack.spec.databases {
        let db = match listed {
            None => aws.rds.describe_db_instance(&d.name).await?,
            Some((reader, env, max_age)) => reader.describe(aws.rds.as_ref(), env, &d.name, max_age).await?,
        };
        observed.databases.insert(d.name.clone(), db);
    }
    for b in &stack.spec.buckets {
        observed.buckets.insert(b.name.clone(), aws.s3.describe_bucket(&b.name, BucketReads::for_spec(b)).await?);
    }
    for t in &stack.spec.tables {
        observed.tables.insert(t.name.clone(), aws.dynamodb.describe_table(&t.name).await?);
    }
    for c in &stack.spec.caches {
        observed.caches.insert(c.name.clone(), aws.elasticache.describe_cache(&c.name).await?);
    }
    Ok(observed)
}

/// The plan of `stack` against `observed`, pure.
pub fn plan_for(stack: &StackSpec, env: &Environment, observed: &Observed) -> StackPlan {
    let adopt = stack.annotations().get(ADOPT_ANNOTATION).map(String::as_str) == Some("true");
    let owner = owner_of(stack);
    let network = env.spec.network.clone().unwrap_or_default();
    let placement = plan::Placement::of(&env.name_any(), &network.subnets, &network.security_groups);
    let ctx = plan::Context { owner: &owner, env_tags: &env.spec.tags, region: &env.spec.region, adopt, placement: placement.as_ref() };
    let declared = plan::Declared {
        databases: &stack.spec.databases,
        buckets: &stack.spec.buckets,
        tables: &stack.spec.tables,
        caches: &stack.spec.caches,
    };
    plan::plan_all(declared, observed, &ctx)
}

/// Carries out the steps of a plan, in order. `tokens` holds the AUTH tokens of the caches
/// it creates, read from their Secrets just before (never part of a plan, a log or a status).
async fn execute(p: &StackPlan, aws: &AwsClients, tokens: &BTreeMap<String, String>) -> Result<(), AwsError> {
    for r in &p.resources {
        for step in &r.steps {
            match step {
                Step::EnsureSubnetGroup { placement, tags } => aws.rds.ensure_db_subnet_group(placement, tags).await?,
                Step::CreateDatabase { spec, tags, placement } => aws.rds.create_db_instance(spec, tags, placement.as_ref()).await?,
                Step::ModifyDatabase { name, modify } => aws.rds.modify_db_instance(name, modify).await?,
                Step::TagDatabase { arn, tags, .. } => aws.rds.add_tags(arn, tags).await?,
                Step::CreateBucket { name, region, tags } => aws.s3.create_bucket(name, region, tags).await?,
                Step::EnableBucketAbac { name } => aws.s3.enable_abac(name).await?,
                Step::TagBucket { name, tags } => aws.s3.put_tags(name, tags).await?,
                Step::SetVersioning { name, enabled } => aws.s3.put_versioning(name, *enabled).await?,
                Step::SetEncryption { name, encryption } => aws.s3.put_encryption(name, encryption).await?,
                Step::SetPublicAccessBlock { name, block } => aws.s3.set_public_access_block(name, *block).await?,
                Step::SetLifecycle { name, rules } => aws.s3.put_lifecycle(name, rules).await?,
                Step::CreateTable { spec, tags } => aws.dynamodb.create_table(spec, tags).await?,
                Step::UpdateTable { name, update } => aws.dynamodb.update_table(name, update).await?,
                Step::SetPointInTimeRecovery { name, enabled } => aws.dynamodb.set_point_in_time_recovery(name, *enabled).await?,
                Step::SetTtl { name, attribute, enabled } => aws.dynamodb.set_ttl(name, attribute, *enabled).await?,
                Step::TagTable { arn, tags } => aws.dynamodb.tag_table(arn, tags).await?,
                Step::EnsureCacheSubnetGroup { placement, tags } => aws.elasticache.ensure_cache_subnet_group(placement, tags).await?,
                Step::CreateCache { spec, tags, placement } => {
                    let token = tokens.get(&spec.name).map(String::as_str);
                    aws.elasticache.create_cache(spec, tags, placement.as_ref(), token).await?
                }
                Step::ModifyCache { name, modify } => aws.elasticache.modify_cache(name, modify).await?,
                Step::SetCacheReplicas { name, replicas, from } => aws.elasticache.set_cache_replicas(name, *replicas, *from).await?,
                Step::TagCache { arn, tags } => aws.elasticache.tag_cache(arn, tags).await?,
            }
        }
    }
    Ok(())
}

enum Outcome {
    Done { observed: Observed, plan: StackPlan },
    AwaitingApproval(StackPlan),
    Stalled(Readiness, Category),
    Transient(AwsError),
}

async fn converge(stack: &StackSpec, env: &Environment, ctx: &Context, drift: Option<Duration>) -> Result<Outcome, Error> {
    let aws = match ctx.aws.clients(&environment::target(env)).await {
        Ok(a) => a,
        Err(e) => return Ok(failure(e)),
    };
    let caller = match aws.sts.caller_account().await {
        Ok(c) => c,
        Err(e) => return Ok(failure(e)),
    };
    if let Err(r) = crate::core::environment::check_account(&env.spec, &caller) {
        return Ok(Outcome::Stalled(Readiness::Stalled { reason: r.reason, message: r.message }, r.category));
    }
    let env_name = env.name_any();
    let listed = drift.map(|every| (&ctx.databases, env_name.as_str(), every / 2));
    let observed = match observe_with(stack, &aws, listed).await {
        Ok(o) => o,
        Err(e) => return Ok(failure(e)),
    };
    let p = plan_for(stack, env, &observed);
    if let Some(r) = p.refusal() {
        return Ok(Outcome::Stalled(Readiness::Stalled { reason: r.reason, message: r.message.clone() }, r.category));
    }
    if p.is_noop() {
        return Ok(Outcome::Done { observed, plan: p });
    }
    if stack.spec.approval == Approval::Manual && stack.annotations().get(APPROVE_ANNOTATION) != Some(&p.hash()) {
        return Ok(Outcome::AwaitingApproval(p));
    }
    let tokens = match auth_tokens(ctx, stack, &p).await {
        Ok(t) => t,
        // Fixed in the Secret, not the spec: rechecked at the drift interval (as a conflict is).
        Err(message) => return Ok(Outcome::Stalled(Readiness::Stalled { reason: reasons::SECRET_NOT_FOUND, message }, Category::Conflict)),
    };
    ctx.may_act()?;
    let result = execute(&p, &aws, &tokens).await;
    for r in p.resources.iter().filter(|r| r.kind == "Database" && !r.steps.is_empty()) {
        ctx.databases.changed(&env_name, &r.name).await;
    }
    if let Err(e) = result {
        return Ok(failure(e));
    }
    // Read back what was created or changed: endpoints and ARNs for status and outputs.
    match observe(stack, &aws).await {
        Ok(observed) => Ok(Outcome::Done { observed, plan: p }),
        Err(e) => Ok(failure(e)),
    }
}

/// The AUTH token of every cache the plan creates, from the Secret its spec names in the
/// StackSpec's own namespace; Err says which Secret or key is missing (never a value).
async fn auth_tokens(ctx: &Context, stack: &StackSpec, p: &StackPlan) -> Result<BTreeMap<String, String>, String> {
    let mut tokens = BTreeMap::new();
    let ns = stack.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    for step in p.resources.iter().flat_map(|r| &r.steps) {
        let Step::CreateCache { spec, .. } = step else { continue };
        let Some(r) = &spec.auth_token_secret_ref else { continue };
        let secret =
            secrets.get_opt(&r.name).await.map_err(|e| format!("Cache {}: {}", spec.name, super::secret_error(&ns, &r.name, e)))?;
        let value = secret.and_then(|s| s.data).and_then(|mut d| d.remove(&r.key)).ok_or_else(|| {
            format!(
                "Cache {}: Secret {ns}/{} has no key {} (the AUTH token); create it, then the cache is created",
                spec.name, r.name, r.key
            )
        })?;
        let token = String::from_utf8(value.0)
            .map_err(|_| format!("Cache {}: the AUTH token in Secret {ns}/{} is not UTF-8 text", spec.name, r.name))?;
        // ElastiCache: 16 to 128 printable characters, none of @ " / (CreateReplicationGroup).
        let printable = token.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '@' | '"' | '/'));
        if !(16..=128).contains(&token.len()) || !printable {
            return Err(format!(
                "Cache {}: the AUTH token in Secret {ns}/{} key {} must be 16 to 128 printable ASCII characters without @, \" or /",
                spec.name, r.name, r.key
            ));
        }
        tokens.insert(spec.name.clone(), token);
    }
    Ok(tokens)
}

fn failure(e: AwsError) -> Outcome {
    if e.category().is_transient() {
        Outcome::Transient(e)
    } else {
        Outcome::Stalled(stall_for(&e), e.category())
    }
}

/// Per-resource status after a pass.
fn resource_statuses(
    stack: &StackSpec,
    observed: &Observed,
    p: &StackPlan,
    drift: bool,
    previous: &[ResourceStatus],
) -> Vec<ResourceStatus> {
    let now = Utc::now();
    p.resources
        .iter()
        .map(|r| {
            let prev = previous.iter().find(|s| s.kind == r.kind && s.name == r.name);
            let (arn, state) = match r.kind {
                "Database" => {
                    let db = observed.databases.get(&r.name).and_then(Option::as_ref);
                    (db.map(|d| d.arn.clone()), db.map(|d| d.status.clone()))
                }
                "Table" => {
                    let t = observed.tables.get(&r.name).and_then(Option::as_ref);
                    (t.map(|t| t.arn.clone()), t.map(|t| t.status.clone()))
                }
                "Cache" => {
                    let c = observed.caches.get(&r.name).and_then(Option::as_ref);
                    (c.map(|c| c.arn.clone()), c.map(|c| c.status.clone()))
                }
                _ => {
                    let b = observed.buckets.get(&r.name).and_then(Option::as_ref);
                    (b.map(|_| format!("arn:aws:s3:::{}", r.name)), b.map(|_| "available".to_string()))
                }
            };
            let changed = !r.steps.is_empty();
            let fields: Vec<String> = r.changes.iter().map(|c| c.field.to_string()).collect();
            ResourceStatus {
                kind: r.kind.to_string(),
                name: r.name.clone(),
                arn,
                state,
                synced: r.waiting.is_none() && r.refusal.is_none(),
                drift: if drift && changed { fields } else { prev.map(|p| p.drift.clone()).unwrap_or_default() },
                last_synced_at: if changed || prev.is_none() { Some(now) } else { prev.and_then(|p| p.last_synced_at) },
            }
        })
        .filter(|s| {
            stack.spec.databases.iter().any(|d| d.name == s.name)
                || stack.spec.buckets.iter().any(|b| b.name == s.name)
                || stack.spec.tables.iter().any(|t| t.name == s.name)
                || stack.spec.caches.iter().any(|c| c.name == s.name)
        })
        .collect()
}

async fn apply(stack: Arc<StackSpec>, ctx: &Context) -> Result<Action, Error> {
    let ns = stack.namespace().unwrap_or_default();
    let api: Api<StackSpec> = Api::namespaced(ctx.client.clone(), &ns);
    let old = stack.status.clone().unwrap_or_default();
    let old_value = stack.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null));
    let generation = stack.metadata.generation;
    let mut new = StackSpecStatus { observed_generation: generation, ..old.clone() };
    let drift_every = match crate::core::spec::drift_interval(stack.spec.drift_interval.as_ref(), ctx.settings.stack_drift) {
        Ok(d) => d,
        Err(e) => {
            ctx.metrics.errors.with_label_values(&[CONTROLLER, Category::InvalidSpec.label()]).inc();
            return finish(ctx, &api, &stack, old, old_value, new, invalid_spec(&e), Action::await_change(), None).await;
        }
    };
    let env = match tenant::resolve(ctx, stack.as_ref(), &stack.spec.environment).await? {
        Ok(env) => env,
        Err((stalled, category)) => {
            ctx.metrics.errors.with_label_values(&[CONTROLLER, category.label()]).inc();
            return finish(ctx, &api, &stack, old, old_value, new, stalled, Action::await_change(), None).await;
        }
    };
    // A pass with the spec unchanged since the last success that still finds changes to
    // make is correcting drift.
    let spec_unchanged = old.observed_generation == generation && stored_reason(&old.conditions).as_deref() == Some(reasons::RECONCILED);
    let pass = converge(&stack, &env, ctx, spec_unchanged.then_some(drift_every));
    let outcome = if spec_unchanged { crate::aws::as_drift(pass).await } else { pass.await };
    let (readiness, action, err) = match outcome? {
        Outcome::Done { observed, plan: p } => {
            for r in &p.resources {
                if r.steps.is_empty() {
                    continue;
                }
                let (reason, note) = if r.create {
                    (reasons::CREATED, format!("created {} {}", r.kind.to_lowercase(), r.name))
                } else if spec_unchanged {
                    for _ in &r.changes {
                        ctx.metrics.drift_corrections.with_label_values(&[CONTROLLER, r.kind]).inc();
                    }
                    (reasons::DRIFT_CORRECTED, format!("put back {} changed outside shipshape: {}", r.name, r.lines().join("; ")))
                } else {
                    (reasons::UPDATED, r.lines().join("; "))
                };
                info!(reason, note, "applied");
                ctx.event(stack.as_ref(), false, reason, note).await;
            }
            new.resources = resource_statuses(&stack, &observed, &p, spec_unchanged, &old.resources);
            new.plan = None;
            if let Err(e) = outputs::write(ctx, &stack, &env, &observed).await {
                match e {
                    outputs::OutputError::Kube(e) => return Err(e.into()),
                    outputs::OutputError::Conflict(message) => {
                        ctx.metrics.errors.with_label_values(&[CONTROLLER, Category::Conflict.label()]).inc();
                        let stalled = Readiness::Stalled { reason: reasons::CONFLICT, message };
                        return finish(ctx, &api, &stack, old, old_value, new, stalled, Action::requeue(drift_every), None).await;
                    }
                }
            }
            ctx.reset_failures(stack.as_ref());
            if p.is_waiting() {
                let waiting: Vec<String> =
                    p.resources.iter().filter_map(|r| r.waiting.as_ref().map(|w| format!("{} {} is {w}", r.kind, r.name))).collect();
                (
                    Readiness::Reconciling { reason: reasons::PROGRESSING, message: format!("waiting for AWS: {}", waiting.join(", ")) },
                    // A DynamoDB table is ACTIVE within seconds, a cache or an RDS instance
                    // changes within minutes.
                    Action::requeue(Duration::from_secs(
                        p.resources
                            .iter()
                            .filter(|r| r.waiting.is_some())
                            .map(|r| {
                                if r.kind == "Database" {
                                    30
                                } else if r.kind == "Cache" {
                                    10
                                } else {
                                    5
                                }
                            })
                            .max()
                            .unwrap_or(5),
                    )),
                    None,
                )
            } else {
                let n = stack.spec.databases.len() + stack.spec.buckets.len() + stack.spec.tables.len() + stack.spec.caches.len();
                (
                    Readiness::Ready { reason: reasons::RECONCILED, message: format!("{n} resources in their declared state") },
                    Action::requeue(drift_every),
                    None,
                )
            }
        }
        Outcome::AwaitingApproval(p) => {
            let hash = p.hash();
            if old.plan.as_ref().map(|p| &p.hash) != Some(&hash) {
                ctx.event(
                    stack.as_ref(),
                    false,
                    reasons::AWAITING_APPROVAL,
                    format!("plan {hash} waits for approval: {}", p.lines().join("; ")),
                )
                .await;
            }
            new.plan = Some(PlanStatus { hash: hash.clone(), changes: p.lines() });
            let message = format!(
                "{} change(s) wait for approval: kubectl annotate stackspec {} {APPROVE_ANNOTATION}={hash} -n {ns}",
                p.lines().len(),
                stack.name_any()
            );
            (Readiness::NotReady { reason: reasons::AWAITING_APPROVAL, message }, Action::requeue(drift_every), None)
        }
        Outcome::Stalled(stalled, category) => {
            ctx.metrics.errors.with_label_values(&[CONTROLLER, category.label()]).inc();
            let action = requeue::after_failure(category, 1, drift_every, 0.0).map(Action::requeue).unwrap_or_else(Action::await_change);
            (stalled, action, None)
        }
        Outcome::Transient(e) => (
            Readiness::Reconciling { reason: reasons::TRANSIENT_ERROR, message: format!("{e}; retrying") },
            Action::await_change(),
            Some(Error::Aws(e)),
        ),
    };
    finish(ctx, &api, &stack, old, old_value, new, readiness, action, err).await
}

/// Writes conditions and status, announces a newly stalled state, and returns.
#[allow(clippy::too_many_arguments)]
async fn finish(
    ctx: &Context,
    api: &Api<StackSpec>,
    stack: &StackSpec,
    old: StackSpecStatus,
    old_value: Option<Value>,
    mut new: StackSpecStatus,
    readiness: Readiness,
    action: Action,
    err: Option<Error>,
) -> Result<Action, Error> {
    if let Readiness::Stalled { reason, message } = &readiness {
        if stored_reason(&old.conditions).as_deref() != Some(*reason) {
            ctx.event(stack, true, reason, message.clone()).await;
        }
    }
    new.conditions = next_conditions(&old.conditions, &readiness, stack.metadata.generation);
    status::write(api, stack, old_value, serde_json::to_value(&new).expect("status serializes")).await?;
    match err {
        Some(e) => Err(e),
        None => Ok(action),
    }
}
