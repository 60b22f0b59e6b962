//! The Environment controller: ECS cluster created or adopted, tags kept, caller account checked.

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use serde_json::Value;
use tracing::{info, instrument};

use super::reconcile::{finish, next_conditions, settle, stall_for, stored_reason, Kind, Settled, Written};
use super::{key_of, status, Context, Error, Settings};
use crate::api::{
    condition_types, owner_of, reasons, Condition, Environment, EnvironmentStatus, EventsStatus, ServiceRelease, StackSpec, OWNER_TAG,
};
use crate::aws::{AwsClients, AwsError, NewCluster, Target};
use crate::core::conditions::Readiness;
use crate::core::environment::{self as plan, ClusterCall, ObservedEnvironment};
use crate::core::events::{self, Flow};
use crate::core::requeue::Category;
use std::time::Duration;

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

impl Kind for Environment {
    const CONTROLLER: &'static str = CONTROLLER;

    fn api(client: kube::Client, _: &Self) -> Api<Self> {
        Api::all(client)
    }

    fn slow_recheck(settings: &Settings) -> std::time::Duration {
        settings.ecs_drift
    }

    #[instrument(skip_all, fields(environment = %env.name_any()))]
    async fn apply(env: Arc<Self>, ctx: &Context) -> Result<Action, Error> {
        apply(env, ctx).await
    }

    async fn cleanup(env: Arc<Self>, ctx: &Context) -> Result<Action, Error> {
        cleanup(env, ctx).await
    }
}

/// What a successful pass did.
struct Converged {
    cluster_arn: String,
    caller_account: String,
    steps: Vec<ClusterCall>,
    /// The event queue and rule, as AWS accepted them (None: no `spec.events`).
    events: Option<EventsStatus>,
    /// What was done to them (for Events).
    event_notes: Vec<String>,
}

/// The event queue of `spec.events` (and, unless it names a queue of its own, the rule
/// feeding it) brought to their declared state; an owned queue and rule are deleted when
/// `spec.events` goes away.
async fn converge_events(env: &Environment, aws: &AwsClients, owner: &str) -> Result<(Option<EventsStatus>, Vec<String>), Failure> {
    let old = env.status.as_ref().and_then(|s| s.events.clone());
    let mut notes = vec![];
    let Some(spec) = env.spec.events.as_ref() else {
        if old.is_some_and(|o| o.owned) {
            delete_events(env, aws, owner).await?;
            notes.push(format!("deleted the event queue and rule {} (spec.events removed)", events::resource_name(&env.name_any())));
        }
        return Ok((None, notes));
    };
    let conflict = |message: String| Failure::Refused(plan::Refusal { reason: reasons::CONFLICT, message, category: Category::Conflict });
    if let Some(arn) = &spec.queue_arn {
        let Some((name, account)) = events::queue_of_arn(arn) else {
            return Err(Failure::Refused(plan::Refusal {
                reason: reasons::INVALID_SPEC,
                message: format!("spec.events.queueArn {arn} is not an SQS queue ARN"),
                category: Category::InvalidSpec,
            }));
        };
        let Some(q) = aws.events.describe_queue(name, Some(account)).await? else {
            return Err(Failure::Aws(AwsError::NotFound {
                op: "GetQueueUrl",
                message: format!("SQS queue {arn} (spec.events.queueArn) does not exist"),
            }));
        };
        return Ok((
            Some(EventsStatus { queue_url: Some(q.url), queue_arn: Some(q.arn), rule_arn: None, owned: false, last_event_time: None }),
            notes,
        ));
    }
    let name = events::resource_name(&env.name_any());
    let tags = plan::desired_tags(&env.spec, owner);
    let theirs =
        |t: &std::collections::BTreeMap<String, String>| t.get(OWNER_TAG).is_some_and(|o| o != owner) || !t.contains_key(OWNER_TAG);
    let queue = match aws.events.describe_queue(&name, None).await? {
        Some(q) if theirs(&q.tags) => {
            return Err(conflict(format!("SQS queue {name} exists and is not this Environment's (tag {OWNER_TAG}); delete or rename it")))
        }
        Some(q) => q,
        None => {
            aws.events.create_queue(&name, &tags).await?;
            notes.push(format!("created SQS queue {name}"));
            aws.events.describe_queue(&name, None).await?.ok_or_else(|| {
                Failure::Aws(AwsError::Transient {
                    op: "GetQueueUrl",
                    message: format!("SQS queue {name} not found right after it was created"),
                })
            })?
        }
    };
    let pattern = events::rule_pattern_for(&env.name_any(), &env.spec.ecs_cluster.name);
    let rule_arn = match aws.events.describe_rule(&name).await? {
        None => {
            let arn = aws.events.put_rule(&name, &pattern, &tags).await?;
            notes.push(format!("created EventBridge rule {name}"));
            arn
        }
        Some(rule) => {
            if theirs(&aws.events.rule_tags(&rule.arn).await?) {
                return Err(conflict(format!(
                    "EventBridge rule {name} exists and is not this Environment's (tag {OWNER_TAG}); delete or rename it"
                )));
            }
            let same = rule.pattern.as_deref().is_some_and(|p| events::same_json(p, &pattern));
            if rule.state != "ENABLED" || !same {
                aws.events.put_rule(&name, &pattern, &tags).await?;
                notes.push(format!(
                    "put EventBridge rule {name} back (it was {}; changed outside shipshape)",
                    if same { "disabled" } else { "edited" }
                ));
            }
            rule.arn
        }
    };
    let policy = events::queue_policy(&queue.arn, &rule_arn);
    if !queue.policy.as_deref().is_some_and(|p| events::same_json(p, &policy)) {
        aws.events.set_queue_policy(&queue.url, &policy).await?;
        notes.push(format!("set the policy of SQS queue {name}: only rule {name} may send to it"));
    }
    if !aws.events.rule_targets(&name).await?.contains(&queue.arn) {
        aws.events.put_target(&name, &queue.arn).await?;
        notes.push(format!("made EventBridge rule {name} deliver to SQS queue {name}"));
    }
    Ok((
        Some(EventsStatus {
            queue_url: Some(queue.url),
            queue_arn: Some(queue.arn),
            rule_arn: Some(rule_arn),
            owned: true,
            last_event_time: None,
        }),
        notes,
    ))
}

/// Deletes an owned event rule and queue (only when their owner tag is this Environment's).
async fn delete_events(env: &Environment, aws: &AwsClients, owner: &str) -> Result<(), Failure> {
    let name = events::resource_name(&env.name_any());
    if let Some(rule) = aws.events.describe_rule(&name).await? {
        if aws.events.rule_tags(&rule.arn).await?.get(OWNER_TAG).map(String::as_str) == Some(owner) {
            aws.events.delete_rule(&name).await?;
        }
    }
    if let Some(q) = aws.events.describe_queue(&name, None).await? {
        if q.tags.get(OWNER_TAG).map(String::as_str) == Some(owner) {
            match aws.events.delete_queue(&q.url).await {
                Ok(()) | Err(AwsError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// The `EventsFlowing` condition for what this process sees of the Environment's events.
fn events_condition(env: &Environment, ctx: &Context, previous: &[Condition]) -> Option<Condition> {
    env.spec.events.as_ref()?;
    let (status, reason, message) = match ctx.events.state(&env.name_any()).map(|s| s.0) {
        Some(Flow::Flowing) => ("True", reasons::EVENTS_FLOWING, "AWS events arrive through the event queue (the heartbeat comes back): deploying releases poll every 30 s, drift is read 10 times less often".to_string()),
        Some(Flow::Stopped) => ("False", reasons::EVENTS_STOPPED, super::events::stopped_message()),
        _ => ("Unknown", reasons::WAITING_FOR_HEARTBEAT, "waiting for the event queue and the first heartbeat: polling as without events meanwhile".to_string()),
    };
    let last = previous.iter().find(|c| c.type_ == condition_types::EVENTS_FLOWING);
    let last_transition_time = last.filter(|c| c.status == status).and_then(|c| c.last_transition_time).or(Some(chrono::Utc::now()));
    Some(Condition {
        type_: condition_types::EVENTS_FLOWING.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time,
        observed_generation: env.metadata.generation,
    })
}

enum Failure {
    Invalid(crate::core::spec::InvalidSpec),
    Refused(plan::Refusal),
    Aws(AwsError),
    /// This replica may not write (its lease lapsed): nothing is written, status included.
    NotLeader,
}

impl From<AwsError> for Failure {
    fn from(e: AwsError) -> Self {
        Failure::Aws(e)
    }
}

impl From<Failure> for Settled {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Invalid(e) => Settled::from(&e),
            Failure::Refused(r) => Settled::from(r),
            Failure::Aws(e) => Settled::from(e),
            Failure::NotLeader => unreachable!("handled before settling"),
        }
    }
}

async fn observe(env: &Environment, aws: &AwsClients) -> Result<ObservedEnvironment, Failure> {
    let caller_account = aws.sts.caller_account().await?;
    // The account is checked before anything else is read or written.
    plan::check_account(&env.spec, &caller_account).map_err(Failure::Refused)?;
    let cluster = aws.ecs.describe_cluster(&env.spec.ecs_cluster.name).await?;
    Ok(ObservedEnvironment { caller_account, cluster })
}

async fn converge(env: &Environment, ctx: &Context) -> Result<Converged, Failure> {
    let aws = ctx.aws.clients(&target(env)).await?;
    let observed = observe(env, &aws).await?;
    let managed = env.status.as_ref().map(|s| s.managed_tag_keys.clone()).unwrap_or_default();
    let steps = plan::plan(&env.spec, &owner_of(env), &observed, &managed).map_err(Failure::Refused)?;
    let name = &env.spec.ecs_cluster.name;
    let mut arn = observed.cluster.as_ref().filter(|c| c.is_live()).map(|c| c.arn.clone()).unwrap_or_default();
    if !steps.is_empty() && ctx.may_act().is_err() {
        return Err(Failure::NotLeader);
    }
    for step in &steps {
        match step {
            ClusterCall::CreateCluster { name, tags, capacity_providers, container_insights } => {
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
            ClusterCall::Tag { tags } => aws.ecs.tag_resource(&arn, tags).await?,
            ClusterCall::Untag { keys } => aws.ecs.untag_resource(&arn, keys).await?,
            ClusterCall::SetCapacityProviders { providers } => aws.ecs.put_capacity_providers(name, providers).await?,
            ClusterCall::SetContainerInsights { value } => aws.ecs.set_container_insights(name, value).await?,
        }
    }
    let (events, event_notes) = converge_events(env, &aws, &owner_of(env)).await?;
    Ok(Converged { cluster_arn: arn, caller_account: observed.caller_account, steps, events, event_notes })
}

fn describe(step: &ClusterCall) -> String {
    match step {
        ClusterCall::CreateCluster { name, .. } => format!("created ECS cluster {name}"),
        ClusterCall::Tag { tags } => format!("set tags {}", tags.keys().cloned().collect::<Vec<_>>().join(", ")),
        ClusterCall::Untag { keys } => format!("removed tags {}", keys.join(", ")),
        ClusterCall::SetCapacityProviders { providers } => {
            format!("set capacity providers {}", providers.join(", "))
        }
        ClusterCall::SetContainerInsights { value } => format!("set containerInsights {value}"),
    }
}

async fn apply(env: Arc<Environment>, ctx: &Context) -> Result<Action, Error> {
    let api: Api<Environment> = Api::all(ctx.client.clone());
    let old_status = env.status.clone().unwrap_or_default();
    let old_value = env.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null));
    let generation = env.metadata.generation;
    // Unreadable windows hold every release here: the Environment says why.
    let checked = crate::core::spec::drift_interval(env.spec.drift_interval.as_ref(), ctx.settings.ecs_drift)
        .and_then(|d| crate::core::promotion::Calendar::of(&env.spec).map(|_| d).map_err(|e| crate::core::spec::InvalidSpec(vec![e])));
    let drift = checked.clone().unwrap_or(ctx.settings.ecs_drift);
    let outcome = match checked {
        Ok(_) => converge(&env, ctx).await,
        Err(e) => Err(Failure::Invalid(e)),
    };
    let mut new_status = EnvironmentStatus { observed_generation: generation, ..old_status.clone() };
    let settled = match outcome {
        Ok(done) => {
            let spec_unchanged = old_status.observed_generation == generation
                && stored_reason(&old_status.conditions).as_deref() == Some(reasons::RECONCILED);
            for step in &done.steps {
                let (reason, note) = match step {
                    ClusterCall::CreateCluster { .. } => (reasons::CREATED, describe(step)),
                    _ if spec_unchanged => {
                        ctx.metrics.drift_corrections.with_label_values(&[CONTROLLER, "EcsCluster"]).inc();
                        (reasons::DRIFT_CORRECTED, format!("{} (changed outside shipshape)", describe(step)))
                    }
                    _ => (reasons::UPDATED, describe(step)),
                };
                info!(env = %key_of(env.as_ref()), reason, note, "applied");
                ctx.event(env.as_ref(), false, reason, note).await;
            }
            for note in &done.event_notes {
                info!(env = %key_of(env.as_ref()), note, "events");
                ctx.event(env.as_ref(), false, reasons::UPDATED, note.clone()).await;
            }
            ctx.events.manage(&env.name_any(), done.events.is_some());
            let flow = ctx.events.state(&env.name_any());
            new_status.events = done.events.map(|e| crate::api::EventsStatus { last_event_time: flow.and_then(|f| f.1), ..e });
            new_status.cluster_arn = Some(done.cluster_arn);
            new_status.caller_account_id = Some(done.caller_account);
            let mut keys: Vec<String> = plan::desired_tags(&env.spec, &owner_of(env.as_ref())).into_keys().collect();
            keys.sort();
            new_status.managed_tag_keys = keys;
            let message = format!("ECS cluster {} is in its declared state", env.spec.ecs_cluster.name);
            // While the queue waits for its first heartbeat the condition is looked at soon.
            let requeue = if env.spec.events.is_some() && flow.is_none_or(|f| f.0 == Flow::Starting) {
                drift.min(Duration::from_secs(5))
            } else {
                drift
            };
            Settled::Done { readiness: Readiness::Ready { reason: reasons::RECONCILED, message }, requeue: Some(requeue) }
        }
        Err(Failure::NotLeader) => return Err(Error::NotLeader),
        Err(f) => Settled::from(f),
    };
    new_status.conditions.retain(|c| c.type_ != condition_types::EVENTS_FLOWING);
    new_status.conditions.extend(events_condition(&env, ctx, &old_status.conditions));
    let written = Written {
        previous: &old_status.conditions,
        conditions: &old_status.conditions,
        stored: old_value,
        status: new_status,
        announced: &[],
        fenced: None,
    };
    finish(ctx, &api, env.as_ref(), written, settle(ctx, env.as_ref(), settled, drift)).await
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
    ctx.events.manage(&env.name_any(), false);
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
    // The event queue and rule follow the deletion policy too (only shipshape's own).
    let owned_events = env.status.as_ref().and_then(|s| s.events.as_ref()).is_some_and(|e| e.owned);
    if owned_events && env.spec.deletion_policy == crate::api::EnvironmentDeletionPolicy::Delete {
        ctx.may_act()?;
        let aws = ctx.aws.clients(&target(env.as_ref())).await?;
        match delete_events(env.as_ref(), &aws, &owner).await {
            Ok(()) => {
                let name = events::resource_name(&env.name_any());
                ctx.event(env.as_ref(), false, reasons::DELETED, format!("deleted the event queue and rule {name}")).await;
            }
            Err(Failure::Aws(e)) => {
                ctx.event(env.as_ref(), true, stall_for(&e).reason(), format!("could not delete the event queue and rule: {e}")).await;
                return Err(e.into());
            }
            Err(Failure::NotLeader) => return Err(Error::NotLeader),
            Err(_) => {}
        }
    }
    if env.spec.deletion_policy == crate::api::EnvironmentDeletionPolicy::Retain || !env.spec.ecs_cluster.create {
        ctx.event(
            env.as_ref(),
            false,
            reasons::RETAINED,
            format!(
                "ECS cluster {}{} left in AWS (deletionPolicy Retain or adopted cluster)",
                env.spec.ecs_cluster.name,
                if env.spec.deletion_policy == crate::api::EnvironmentDeletionPolicy::Retain
                    && env.status.as_ref().and_then(|s| s.events.as_ref()).is_some_and(|e| e.owned)
                {
                    " and the event queue and rule"
                } else {
                    ""
                }
            ),
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
        Err(Failure::NotLeader) => return Err(Error::NotLeader),
    };
    if plan::should_delete_cluster(&env.spec, &owner, observed.cluster.as_ref()) {
        ctx.may_act()?;
        match aws.ecs.delete_cluster(&env.spec.ecs_cluster.name).await {
            Ok(()) | Err(AwsError::NotFound { .. }) => {}
            Err(e) => {
                ctx.event(env.as_ref(), true, stall_for(&e).reason(), format!("could not delete ECS cluster: {e}")).await;
                return Err(e.into());
            }
        }
        ctx.event(env.as_ref(), false, reasons::DELETED, format!("deleted ECS cluster {}", env.spec.ecs_cluster.name)).await;
    }
    Ok(Action::await_change())
}
