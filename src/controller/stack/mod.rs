//! The StackSpec controller: RDS databases, S3 buckets, DynamoDB tables and ElastiCache
//! caches created, kept as declared
//! (drift put back and announced), adopted only when asked, deleted only as the policy says,
//! with outputs in a ConfigMap and an optional manual approval of each plan.

mod cleanup;
mod outputs;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use serde_json::Value;
use tracing::{info, instrument};

use super::listing::DatabaseReader;
use super::reconcile::{finish, settle, stored_reason, Kind, Settled, Written};
use super::{environment, tenant, Context, Error, Settings};
use crate::api::{owner_of, reasons, Approval, Environment, PlanStatus, ResourceStatus, StackSpec, StackSpecStatus};
use crate::aws::{AwsClients, AwsError, BucketReads};
use crate::core::conditions::Readiness;
use crate::core::requeue::Category;
use crate::core::stack::{self as plan, Call, ObservedStack, ResourceKind, StackPlan};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "stackspec";
/// Annotation approving a Manual plan: its value is the plan hash.
pub const APPROVE_ANNOTATION: &str = "shipshape.dev/approve";
pub use crate::api::ADOPT_ANNOTATION;

impl Kind for StackSpec {
    const CONTROLLER: &'static str = CONTROLLER;

    fn api(client: kube::Client, stack: &Self) -> Api<Self> {
        Api::namespaced(client, &stack.namespace().unwrap_or_default())
    }

    fn slow_recheck(settings: &Settings) -> Duration {
        settings.stack_drift
    }

    /// A drift check: nothing changed in the spec since it was last acted on.
    fn drift_check(&self) -> bool {
        self.metadata.deletion_timestamp.is_none()
            && self.status.as_ref().is_some_and(|s| s.observed_generation == self.metadata.generation)
    }

    #[instrument(skip_all, fields(stack = %format!("{}/{}", stack.namespace().unwrap_or_default(), stack.name_any())))]
    async fn apply(stack: Arc<Self>, ctx: &Context) -> Result<Action, Error> {
        // AWS events about its data find it from now on.
        super::events::place_stack(ctx, &stack);
        apply(stack, ctx).await
    }

    async fn cleanup(stack: Arc<Self>, ctx: &Context) -> Result<Action, Error> {
        super::events::place_stack(ctx, &stack);
        cleanup::cleanup(stack, ctx).await
    }
}

/// Reads every declared database and bucket (of a bucket, only what its spec manages), all
/// now. Read-only: `shipshape plan` uses it too.
pub async fn observe(stack: &StackSpec, aws: &AwsClients) -> Result<ObservedStack, AwsError> {
    observe_with(stack, aws, None).await
}

/// A drift check's reads: databases from the Environment's listing when it is younger than
/// the age given.
type Listed<'a> = (&'a DatabaseReader, &'a str, Duration);

async fn observe_with(stack: &StackSpec, aws: &AwsClients, listed: Option<Listed<'_>>) -> Result<ObservedStack, AwsError> {
    let mut observed = ObservedStack::default();
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
pub fn plan_for(stack: &StackSpec, env: &Environment, observed: &ObservedStack) -> StackPlan {
    let adopt = stack.annotations().get(ADOPT_ANNOTATION).map(String::as_str) == Some("true");
    let owner = owner_of(stack);
    let network = env.spec.network.clone().unwrap_or_default();
    let placement = plan::Placement::of(&env.name_any(), &network.subnets, &network.security_groups);
    let ctx = plan::PlanInputs { owner: &owner, env_tags: &env.spec.tags, region: &env.spec.region, adopt, placement: placement.as_ref() };
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
pub async fn execute(p: &StackPlan, aws: &AwsClients, tokens: &BTreeMap<String, String>) -> Result<(), AwsError> {
    for r in &p.resources {
        for step in &r.steps {
            match step {
                Call::EnsureSubnetGroup { placement, tags } => aws.rds.ensure_db_subnet_group(placement, tags).await?,
                Call::CreateDatabase { spec, tags, placement } => aws.rds.create_db_instance(spec, tags, placement.as_ref()).await?,
                Call::ModifyDatabase { name, modify } => aws.rds.modify_db_instance(name, modify).await?,
                Call::TagDatabase { arn, tags, .. } => aws.rds.add_tags(arn, tags).await?,
                Call::CreateBucket { name, region, tags } => aws.s3.create_bucket(name, region, tags).await?,
                Call::EnableBucketAbac { name } => aws.s3.enable_abac(name).await?,
                Call::TagBucket { name, tags } => aws.s3.put_tags(name, tags).await?,
                Call::SetVersioning { name, enabled } => aws.s3.put_versioning(name, *enabled).await?,
                Call::SetEncryption { name, encryption } => aws.s3.put_encryption(name, encryption).await?,
                Call::SetPublicAccessBlock { name, block } => aws.s3.set_public_access_block(name, *block).await?,
                Call::SetLifecycle { name, rules } => aws.s3.put_lifecycle(name, rules).await?,
                Call::CreateTable { spec, tags } => aws.dynamodb.create_table(spec, tags).await?,
                Call::UpdateTable { name, update } => aws.dynamodb.update_table(name, update).await?,
                Call::SetPointInTimeRecovery { name, enabled } => aws.dynamodb.set_point_in_time_recovery(name, *enabled).await?,
                Call::SetTtl { name, attribute, enabled } => aws.dynamodb.set_ttl(name, attribute, *enabled).await?,
                Call::TagTable { arn, tags } => aws.dynamodb.tag_table(arn, tags).await?,
                Call::EnsureCacheSubnetGroup { placement, tags } => aws.elasticache.ensure_cache_subnet_group(placement, tags).await?,
                Call::CreateCache { spec, tags, placement } => {
                    let token = tokens.get(&spec.name).map(String::as_str);
                    aws.elasticache.create_cache(spec, tags, placement.as_ref(), token).await?
                }
                Call::ModifyCache { name, modify } => aws.elasticache.modify_cache(name, modify).await?,
                Call::SetCacheReplicas { name, replicas, from } => aws.elasticache.set_cache_replicas(name, *replicas, *from).await?,
                Call::TagCache { arn, tags } => aws.elasticache.tag_cache(arn, tags).await?,
            }
        }
    }
    Ok(())
}

/// Where a pass over a StackSpec's resources ends.
enum Pass {
    /// AWS as declared (or on its way), with what was read and the plan carried out.
    Done { observed: ObservedStack, plan: StackPlan },
    /// A Manual plan waits for its approval.
    AwaitingApproval(StackPlan),
    /// It could not go on.
    Stopped(Settled),
}

async fn converge(stack: &StackSpec, env: &Environment, ctx: &Context, drift: Option<Duration>) -> Result<Pass, Error> {
    let aws = match ctx.aws.clients(&environment::target(env)).await {
        Ok(a) => a,
        Err(e) => return Ok(Pass::Stopped(Settled::from(e))),
    };
    let caller = match aws.sts.caller_account().await {
        Ok(c) => c,
        Err(e) => return Ok(Pass::Stopped(Settled::from(e))),
    };
    if let Err(r) = crate::core::environment::check_account(&env.spec, &caller) {
        return Ok(Pass::Stopped(Settled::from(r)));
    }
    let env_name = env.name_any();
    let listed = drift.map(|every| (&ctx.databases, env_name.as_str(), every / 2));
    let observed = match observe_with(stack, &aws, listed).await {
        Ok(o) => o,
        Err(e) => return Ok(Pass::Stopped(Settled::from(e))),
    };
    let p = plan_for(stack, env, &observed);
    if let Some(r) = p.refusal() {
        return Ok(Pass::Stopped(Settled::from(r.clone())));
    }
    if p.is_noop() {
        return Ok(Pass::Done { observed, plan: p });
    }
    if stack.spec.approval == Approval::Manual && stack.annotations().get(APPROVE_ANNOTATION) != Some(&p.hash()) {
        return Ok(Pass::AwaitingApproval(p));
    }
    let tokens = match auth_tokens(ctx, stack, &p).await {
        Ok(t) => t,
        // Fixed in the Secret, not the spec: rechecked at the drift interval (as a conflict is).
        Err(message) => {
            return Ok(Pass::Stopped(Settled::stalled(
                Readiness::Stalled { reason: reasons::SECRET_NOT_FOUND, message },
                Category::Conflict,
            )))
        }
    };
    ctx.may_act()?;
    let result = execute(&p, &aws, &tokens).await;
    for r in p.resources.iter().filter(|r| r.kind == ResourceKind::Database && !r.steps.is_empty()) {
        ctx.databases.changed(&env_name, &r.name).await;
    }
    if let Err(e) = result {
        return Ok(Pass::Stopped(Settled::from(e)));
    }
    // Read back what was created or changed: endpoints and ARNs for status and outputs.
    match observe(stack, &aws).await {
        Ok(observed) => Ok(Pass::Done { observed, plan: p }),
        Err(e) => Ok(Pass::Stopped(Settled::from(e))),
    }
}

/// The AUTH token of every cache the plan creates, from the Secret its spec names in the
/// StackSpec's own namespace; Err says which Secret or key is missing (never a value).
async fn auth_tokens(ctx: &Context, stack: &StackSpec, p: &StackPlan) -> Result<BTreeMap<String, String>, String> {
    let mut tokens = BTreeMap::new();
    let ns = stack.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    for step in p.resources.iter().flat_map(|r| &r.steps) {
        let Call::CreateCache { spec, .. } = step else { continue };
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

/// Per-resource status after a pass.
fn resource_statuses(
    stack: &StackSpec,
    observed: &ObservedStack,
    p: &StackPlan,
    drift: bool,
    previous: &[ResourceStatus],
) -> Vec<ResourceStatus> {
    let now = Utc::now();
    p.resources
        .iter()
        .map(|r| {
            let prev = previous.iter().find(|s| s.kind == r.kind.as_str() && s.name == r.name);
            let (arn, state) = match r.kind {
                ResourceKind::Database => {
                    let db = observed.databases.get(&r.name).and_then(Option::as_ref);
                    (db.map(|d| d.arn.clone()), db.map(|d| d.status.clone()))
                }
                ResourceKind::Table => {
                    let t = observed.tables.get(&r.name).and_then(Option::as_ref);
                    (t.map(|t| t.arn.clone()), t.map(|t| t.status.clone()))
                }
                ResourceKind::Cache => {
                    let c = observed.caches.get(&r.name).and_then(Option::as_ref);
                    (c.map(|c| c.arn.clone()), c.map(|c| c.status.clone()))
                }
                ResourceKind::Bucket => {
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
        .filter(|s| ResourceKind::ALL.iter().any(|k| plan::declared_names(&stack.spec, *k).contains(&s.name.as_str())))
        .collect()
}

async fn apply(stack: Arc<StackSpec>, ctx: &Context) -> Result<Action, Error> {
    let api = StackSpec::api(ctx.client.clone(), &stack);
    let old = stack.status.clone().unwrap_or_default();
    let old_value = stack.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null));
    let generation = stack.metadata.generation;
    let mut new = StackSpecStatus { observed_generation: generation, ..old.clone() };
    let checked = crate::core::spec::drift_interval(stack.spec.drift_interval.as_ref(), ctx.settings.stack_drift);
    let drift_every = ctx.events.drift(&stack.spec.environment, checked.clone().unwrap_or(ctx.settings.stack_drift));
    let settled = match checked {
        Err(e) => Settled::from(&e),
        Ok(_) => match tenant::resolve(ctx, stack.as_ref(), &stack.spec.environment).await? {
            Err(refusal) => Settled::from(refusal),
            Ok(env) => pass(ctx, &stack, &env, &old, &mut new, drift_every).await?,
        },
    };
    let written =
        Written { previous: &old.conditions, conditions: &old.conditions, stored: old_value, status: new, announced: &[], fenced: None };
    finish(ctx, &api, stack.as_ref(), written, settle(ctx, stack.as_ref(), settled, drift_every)).await
}

/// One pass over the StackSpec's resources: converged (drift work when the spec is unchanged
/// since its last success), then its Events, resource statuses, outputs and plan.
async fn pass(
    ctx: &Context,
    stack: &Arc<StackSpec>,
    env: &Environment,
    old: &StackSpecStatus,
    new: &mut StackSpecStatus,
    drift_every: Duration,
) -> Result<Settled, Error> {
    let ns = stack.namespace().unwrap_or_default();
    let generation = stack.metadata.generation;
    // A pass with the spec unchanged since the last success that still finds changes to
    // make is correcting drift.
    let spec_unchanged = old.observed_generation == generation && stored_reason(&old.conditions).as_deref() == Some(reasons::RECONCILED);
    let pass = converge(stack, env, ctx, spec_unchanged.then_some(drift_every));
    let outcome = if spec_unchanged { crate::aws::as_drift(pass).await } else { pass.await };
    Ok(match outcome? {
        Pass::Done { observed, plan: p } => {
            for r in &p.resources {
                if r.steps.is_empty() {
                    continue;
                }
                let (reason, note) = if r.create {
                    (reasons::CREATED, format!("created {} {}", r.kind.noun(), r.name))
                } else if spec_unchanged {
                    for _ in &r.changes {
                        ctx.metrics.drift_corrections.with_label_values(&[CONTROLLER, r.kind.as_str()]).inc();
                    }
                    (reasons::DRIFT_CORRECTED, format!("put back {} changed outside shipshape: {}", r.name, r.lines().join("; ")))
                } else {
                    (reasons::UPDATED, r.lines().join("; "))
                };
                info!(reason, note, "applied");
                ctx.event(stack.as_ref(), false, reason, note).await;
            }
            new.resources = resource_statuses(stack, &observed, &p, spec_unchanged, &old.resources);
            new.plan = None;
            if let Err(e) = outputs::write(ctx, stack, env, &observed).await {
                match e {
                    outputs::OutputError::Kube(e) => return Err(e.into()),
                    outputs::OutputError::Conflict(message) => {
                        let readiness = Readiness::Stalled { reason: reasons::CONFLICT, message };
                        return Ok(Settled::Stalled { readiness, category: Category::Conflict, retry_in: Some(drift_every) });
                    }
                }
            }
            if p.is_waiting() {
                let waiting: Vec<String> =
                    p.resources.iter().filter_map(|r| r.waiting.as_ref().map(|w| format!("{} {} is {w}", r.kind, r.name))).collect();
                // A DynamoDB table is ACTIVE within seconds, a cache or an RDS instance
                // changes within minutes.
                let secs = p
                    .resources
                    .iter()
                    .filter(|r| r.waiting.is_some())
                    .map(|r| match r.kind {
                        ResourceKind::Database => 30,
                        ResourceKind::Cache => 10,
                        ResourceKind::Bucket | ResourceKind::Table => 5,
                    })
                    .max()
                    .unwrap_or(5);
                let message = format!("waiting for AWS: {}", waiting.join(", "));
                Settled::Done {
                    readiness: Readiness::Reconciling { reason: reasons::PROGRESSING, message },
                    requeue: Some(Duration::from_secs(secs)),
                }
            } else {
                let n: usize = ResourceKind::ALL.iter().map(|k| plan::declared_names(&stack.spec, *k).len()).sum();
                let message = format!("{n} resources in their declared state");
                Settled::Done { readiness: Readiness::Ready { reason: reasons::RECONCILED, message }, requeue: Some(drift_every) }
            }
        }
        Pass::AwaitingApproval(p) => {
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
            Settled::Done { readiness: Readiness::NotReady { reason: reasons::AWAITING_APPROVAL, message }, requeue: Some(drift_every) }
        }
        Pass::Stopped(settled) => settled,
    })
}
