//! The ServiceRelease controller. A release's target is a room of its own — an ECS service
//! (`ecs.rs`) or a Lambda function (`lambda.rs`) — and every target shares the round in
//! `round.rs` (commands, outputs, analysis, ownership, the state machine's decision) and the
//! metrics in `metrics.rs`. This module checks the spec and the Environment, hands the
//! release to its target, writes the decision before its calls are made, and settles what
//! they did. A third target is one more file and one more variant of [`Pending`].

mod checks;
mod ecs;
mod lambda;
mod metrics;
mod round;

pub(crate) use checks::NoMetadata;

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use serde_json::Value;
use tracing::{info, instrument};

use self::metrics::{export, forget, rollback_reason, sha_of};
use self::round::Outcome;
use super::reconcile::{finish, next_conditions, settle, Kind, Settled, Written};
use super::{environment, status, tenant, Context, Error, Settings};
use crate::api::{owner_of, reasons, Environment, Phase, ReleaseDeletionPolicy, ServiceRelease, ServiceReleaseStatus, OWNER_TAG};
use crate::aws::{AwsClients, AwsError};
use crate::core::requeue;
use crate::core::rollout::{self, Config, Effect};

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

impl Kind for ServiceRelease {
    const CONTROLLER: &'static str = CONTROLLER;

    fn api(client: Client, r: &Self) -> Api<Self> {
        Api::namespaced(client, &r.namespace().unwrap_or_default())
    }

    fn slow_recheck(settings: &Settings) -> Duration {
        settings.ecs_drift
    }

    /// Rollout work never waits for a drift slot.
    fn drift_check(&self) -> bool {
        !rollout_critical(self)
    }

    #[instrument(skip_all, fields(release = %format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any())))]
    async fn apply(r: Arc<Self>, ctx: &Context) -> Result<Action, Error> {
        // AWS events about its service or function find it from now on.
        super::events::place_release(ctx, &r);
        // A rollout in flight (its verdict, its rollback) calls AWS before rollouts being started.
        let work = if in_flight(&r) { crate::aws::Work::InFlight } else { crate::aws::Work::Rollout };
        crate::aws::as_work(work, apply(r, ctx)).await
    }

    async fn cleanup(r: Arc<Self>, ctx: &Context) -> Result<Action, Error> {
        super::events::place_release(ctx, &r);
        cleanup(r, ctx).await
    }
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
    let tags = if r.spec.function.is_some() { lambda::tags_of(&aws, &service).await? } else { ecs::tags_of(&aws, &env, &service).await? };
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

/// A hash of what a release waiting on `r` looks at: its generation and how far its status
/// has acted on it, its phase, stable SHA, latest history entry, the rollout under way and
/// a rollback decided.
pub fn gate_fingerprint(r: &ServiceRelease) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    r.metadata.generation.hash(&mut h);
    if let Some(st) = r.status.as_ref() {
        st.observed_generation.hash(&mut h);
        format!("{:?}", st.phase).hash(&mut h);
        st.stable_sha.hash(&mut h);
        st.history.first().map(|e| (e.sha.clone(), format!("{:?}", e.outcome), e.finished_at)).hash(&mut h);
        st.rollout.as_ref().map(|ro| (ro.sha.clone(), ro.held.clone())).hash(&mut h);
        st.rollback.is_some().hash(&mut h);
    }
    h.finish()
}

/// The releases whose new SHA waits on `changed` (it is their `promotion.from` or in their
/// `rollout.after`): woken when it changes, so a soak or an order ends within a reconcile.
pub fn waiting_on(
    store: &kube::runtime::reflector::Store<ServiceRelease>,
    changed: &ServiceRelease,
) -> Vec<kube::runtime::reflector::ObjectRef<ServiceRelease>> {
    let (ns, name) = (changed.namespace().unwrap_or_default(), changed.name_any());
    store
        .state()
        .into_iter()
        // Those waiting, and those not yet acted on (a reconcile of theirs may be reading the
        // old state of `changed` right now: its result lands after this change).
        .filter(|d| {
            d.status
                .as_ref()
                .is_none_or(|s| s.waiting.is_some() || s.observed_generation != d.metadata.generation || s.phase == Phase::Pending)
        })
        .filter(|d| {
            let dns = d.namespace().unwrap_or_default();
            let from = d.spec.promotion.as_ref().and_then(|p| p.from.as_ref());
            let upstream = from.is_some_and(|f| f.name == name && f.namespace.as_deref().unwrap_or(&dns) == ns);
            let after = dns == ns && d.spec.rollout.as_ref().is_some_and(|r| r.after.contains(&name));
            upstream || after
        })
        .map(|d| kube::runtime::reflector::ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// The calls a release's decision leaves to its target, one variant per target, each with
/// only its own fields.
enum Pending {
    /// An ECS service's.
    Ecs(ecs::Calls),
    /// A Lambda alias's.
    Lambda(lambda::Calls),
}

impl Pending {
    fn effects(&self) -> Vec<&Effect> {
        match self {
            Pending::Ecs(c) => c.requests.iter().map(|(e, _)| e).collect(),
            Pending::Lambda(c) => c.effects.iter().collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.effects().is_empty()
    }

    /// Whether the calls roll back.
    fn rollback(&self) -> bool {
        self.effects().iter().any(|e| matches!(e, Effect::RollBack { .. } | Effect::Halt { .. }))
    }

    /// Makes the calls: what they did that status keeps, and what AWS said.
    async fn execute(&self, aws: &AwsClients) -> (round::Made, Result<(), AwsError>) {
        match self {
            Pending::Ecs(c) => c.execute(aws).await,
            Pending::Lambda(c) => c.execute(aws).await,
        }
    }

    /// After the calls: what was read before them is no longer true.
    fn made(&self, ctx: &Context) {
        if let Pending::Ecs(c) = self {
            if !c.requests.is_empty() {
                ctx.services.forget(&c.environment, &c.cluster, &c.service);
            }
        }
    }
}

/// The release's part of a reconcile before its target's: the Environment's cluster (ECS),
/// the StackSpec's outputs, the clients and the account; then the target's.
async fn converge(r: &ServiceRelease, env: &Environment, ctx: &Context, cfg: &Config) -> Result<Outcome<Pending>, Error> {
    // A cycle in the order or the promotion chain, or unreadable windows, never resolve by
    // waiting.
    // Only a release with nothing under way stops here: a rollout or rollback in flight goes
    // on (the decision treats the error as a hold on anything new), and one that is stable
    // on its SHA keeps its drift corrected. Looked at again at the drift interval, as the
    // cause may lie in another object (the release that closes the cycle).
    if let Err(why) = round::gate(r, env, ctx, chrono::Utc::now()) {
        let st = r.status.as_ref();
        let busy = st.is_some_and(|s| s.rollout.is_some() || s.rollback.is_some());
        let stable = st.and_then(|s| s.stable_sha.as_deref()) == Some(r.spec.image.git_sha.as_str());
        if !busy && !stable {
            return Ok(Outcome::Settled(Settled::Stalled {
                readiness: crate::core::conditions::Readiness::Stalled { reason: reasons::INVALID_SPEC, message: why },
                category: crate::core::requeue::Category::InvalidSpec,
                retry_in: Some(ctx.settings.ecs_drift),
            }));
        }
    }
    // The Environment's cluster first: a release applied with its Environment waits for
    // the cluster instead of meeting ClusterNotFound (the cluster's arrival wakes it).
    if r.spec.function.is_none() && !crate::controller::environment::has_cluster(env) {
        let message = format!("Environment {} has no ECS cluster yet; waiting for it", env.name_any());
        return Ok(Outcome::waiting(reasons::WAITING_FOR_ENVIRONMENT, message));
    }
    let outputs = match round::stack_outputs(r, ctx).await? {
        Ok(o) => o,
        Err(why) => return Ok(Outcome::waiting(reasons::WAITING_FOR_STACK, why)),
    };
    let fail = Outcome::failed;
    let aws = match ctx.aws.clients(&environment::target(env)).await {
        Ok(a) => a,
        Err(e) => return Ok(fail(e)),
    };
    match aws.sts.caller_account().await {
        Ok(caller) => {
            if let Err(x) = crate::core::environment::check_account(&env.spec, &caller) {
                return Ok(x.into());
            }
        }
        Err(e) => return Ok(fail(e)),
    }
    Ok(match &r.spec.function {
        Some(f) => lambda::converge(r, env, ctx, cfg, f, aws, outputs).await?.map(Pending::Lambda),
        None => ecs::converge(r, env, ctx, cfg, aws, outputs, rollout_critical(r)).await?.map(Pending::Ecs),
    })
}

/// Whether a reconcile of `r` is rollout work (a spec not yet acted on, a rollout or
/// rollback in flight, a command, a deletion) rather than a drift check.
fn rollout_critical(r: &ServiceRelease) -> bool {
    let Some(st) = r.status.as_ref() else { return true };
    let fresh_command = [RETRY_ANNOTATION, ROLLBACK_ANNOTATION, PROMOTE_ANNOTATION].iter().any(|a| fresh(r, st, a));
    r.metadata.deletion_timestamp.is_some()
        || st.observed_generation != r.metadata.generation
        || st.rollback.is_some()
        || fresh_command
        || matches!(st.phase, Phase::Pending | Phase::Progressing | Phase::Analyzing | Phase::RollingBack)
}

/// Whether the command annotation `a` of `r` asks for something not yet handled.
fn fresh(r: &ServiceRelease, st: &ServiceReleaseStatus, a: &str) -> bool {
    let name = a.trim_start_matches("shipshape.dev/");
    r.annotations().get(a).is_some_and(|v| st.handled_commands.get(name) != Some(v))
}

/// Whether `r` has a rollout in flight — ECS or Lambda deploying its spec, under analysis, or
/// a rollback under way (asked for, or decided and not yet accepted by AWS): the work whose
/// AWS calls go first (`crate::aws::Work::InFlight`). A new spec to start on is not.
fn in_flight(r: &ServiceRelease) -> bool {
    let Some(st) = r.status.as_ref() else { return false };
    st.rollback.is_some()
        || fresh(r, st, ROLLBACK_ANNOTATION)
        || (st.observed_generation == r.metadata.generation
            && matches!(st.phase, Phase::Progressing | Phase::Analyzing | Phase::RollingBack))
}

/// One round: the spec and the Environment checked, the target's decision written before
/// its calls are made (fenced by the resourceVersion), what AWS said settled into status.
async fn apply(r: Arc<ServiceRelease>, ctx: &Context) -> Result<Action, Error> {
    let api = ServiceRelease::api(ctx.client.clone(), &r);
    let mut stored = r.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null));
    // A Lambda release's versions are stored under their own names; the round works on the
    // state machine's (see `lambda::status_in`).
    let lambda = r.spec.function.is_some();
    let stored_form = |s: ServiceReleaseStatus| if lambda { lambda::status_out(s) } else { s };
    let r = match (&r.status, lambda) {
        (Some(st), true) => Arc::new(ServiceRelease { status: Some(lambda::status_in(st.clone())), ..r.as_ref().clone() }),
        _ => r,
    };
    let old = r.status.clone().unwrap_or_default();
    // Rollout decisions are written with the object's resourceVersion (fencing).
    let mut resource_version = r.resource_version();
    // While the Environment's AWS events flow, a deployment and drift are polled less often.
    let checked = crate::core::spec::release(&r.spec, ctx.settings.ecs_drift).map(|c| ctx.events.release_config(&r.spec.environment, c));
    let drift = checked.as_ref().map(|c| c.drift_interval).unwrap_or(ctx.settings.ecs_drift);
    let mut new = ServiceReleaseStatus { observed_generation: r.metadata.generation, ..old.clone() };
    let mut conditions = old.conditions.clone();
    let outcome = match checked {
        Err(e) => Outcome::Settled(Settled::from(&e)),
        Ok(cfg) => match tenant::resolve(ctx, r.as_ref(), &r.spec.environment).await? {
            Err(refusal) => refusal.into(),
            Ok(env) => converge(&r, &env, ctx, &cfg).await?,
        },
    };
    let settled = match outcome {
        Outcome::Settled(settled) => settled,
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
            if !pending.calls.is_empty() {
                let mut decided = new.clone();
                decided.conditions = next_conditions(&conditions, &step.readiness, r.metadata.generation);
                let value = serde_json::to_value(stored_form(decided.clone())).unwrap_or(Value::Null);
                status::write_at(&api, r.as_ref(), &mut resource_version, stored.clone(), value.clone()).await?;
                stored = Some(value);
                conditions = decided.conditions;
            }
            ctx.may_act()?;
            let (made, result) = pending.calls.execute(&pending.aws).await;
            pending.calls.made(ctx);
            let rollback_to = made.rollback_to;
            // The task a step before traffic started is kept at once (found again by its
            // startedBy should this write be lost).
            if let Some(rs) = new.rollout.as_mut() {
                for (i, arn) in made.started {
                    if let Some(s) = rs.pre_deploy.get_mut(i).filter(|s| s.task_arn.is_none()) {
                        s.task_arn = Some(arn);
                    }
                }
                // A task ECS could not place: the step failed, judged next round.
                for (i, why) in made.unplaced {
                    if let Some(s) = rs.pre_deploy.get_mut(i).filter(|s| s.task_arn.is_none()) {
                        s.reason = Some(why);
                    }
                }
                // A Lambda step's invocation returned: its outcome, judged next round.
                for (i, out) in made.invoked {
                    if let Some(s) = rs.pre_deploy.get_mut(i) {
                        s.request_id = out.request_id.clone().or(Some("unknown".into()));
                        s.exit_code = Some(i32::from(out.function_error.is_some()));
                        s.reason = out.function_error.as_ref().map(|e| format!("function error {e}: {}", out.payload));
                        s.log_tail = lambda::tail(&out.log_tail);
                    }
                }
            }
            match result.map(|()| rollback_to.clone()) {
                Ok(Some(td)) => {
                    // AWS accepted the rollback: only now is the release RolledBack.
                    let (accepted, events) = rollout::rollback_accepted(&new, &td, chrono::Utc::now(), pending.cfg.history_limit);
                    let trigger = new.rollback.as_ref().map(|rb| rb.trigger.clone()).unwrap_or_default();
                    ctx.metrics.rollback_seconds.observe(pending.verdict_at.elapsed().as_secs_f64());
                    ctx.metrics.rollbacks.with_label_values(&[rollback_reason(&trigger)]).inc();
                    for (warning, reason, note) in &events {
                        info!(reason, note, "rollout");
                        ctx.event(r.as_ref(), *warning, reason, note.clone()).await;
                    }
                    let before = std::mem::replace(&mut new, accepted);
                    export(ctx, &r, &before, &new);
                    let (readiness, requeue) = rollout::readiness(&new, &sha_of(&r), pending.frozen, chrono::Utc::now(), &pending.cfg);
                    Settled::Done { readiness, requeue: Some(requeue) }
                }
                Ok(None) => Settled::Done { readiness: step.readiness.clone(), requeue: Some(step.requeue) },
                Err(e) if pending.calls.rollback() => {
                    // AWS refused the rollback: the bad SHA may still serve. Say so, count
                    // it, and try again with backoff until AWS accepts it.
                    new = rollout::rollback_refused(&new, &e.to_string(), rollback_to.as_deref());
                    ctx.metrics.rollback_failures.inc();
                    let attempt = new.rollback.as_ref().map(|rb| rb.failed_attempts).unwrap_or(1);
                    let wait = requeue::backoff(
                        u32::try_from(attempt).unwrap_or(1),
                        Duration::from_secs(1),
                        Duration::from_secs(60),
                        rand::random(),
                    );
                    let (readiness, _) = rollout::readiness(&new, &sha_of(&r), pending.frozen, chrono::Utc::now(), &pending.cfg);
                    Settled::Stalled { readiness, category: e.category(), retry_in: Some(wait) }
                }
                Err(e) => e.into(),
            }
        }
    };
    let status = stored_form(new);
    let latest = status.clone();
    let written = Written {
        previous: &old.conditions,
        conditions: &conditions,
        stored,
        status,
        announced: &[reasons::ROLLED_BACK, reasons::ROLLOUT_FAILED, reasons::UPSTREAM_REJECTED],
        fenced: Some(&mut resource_version),
    };
    let done = finish(ctx, &api, r.as_ref(), written, settle(ctx, r.as_ref(), settled, drift)).await;
    if done.is_ok() {
        // What this controller just wrote is what the releases waiting on this one look at:
        // they see it now, not when the watch brings it back (seconds later under load).
        ctx.recent.written(&ctx.stores.releases, r.as_ref(), latest);
    }
    done
}

/// The statuses this controller wrote lately, for the releases that wait on them: read in
/// place of the cache's copy until the watch has surely brought it (this process is the
/// only writer of a release's status while it leads), and the waiting releases woken at once.
#[derive(Default)]
pub struct Recent {
    statuses: std::sync::Mutex<std::collections::HashMap<(String, String), (std::time::Instant, ServiceReleaseStatus)>>,
    wake: std::sync::Mutex<Option<futures::channel::mpsc::UnboundedSender<kube::runtime::reflector::ObjectRef<ServiceRelease>>>>,
}

impl Recent {
    /// How long a written status is preferred to the cache's.
    const FRESH: Duration = Duration::from_secs(60);
    /// Past this many, the stale ones are forgotten...
    const PRUNE_AT: usize = 1_024;
    /// ...and past this many, all of them.
    const MAX: usize = 20_000;

    /// Where wakes go (the release controller's queue).
    pub fn wake_into(&self, tx: futures::channel::mpsc::UnboundedSender<kube::runtime::reflector::ObjectRef<ServiceRelease>>) {
        if let Ok(mut w) = self.wake.lock() {
            *w = Some(tx);
        }
    }

    /// `r`'s status `st` was written: kept, and the releases waiting on it woken when what
    /// they look at changed.
    fn written(&self, store: &kube::runtime::reflector::Store<ServiceRelease>, r: &ServiceRelease, st: ServiceReleaseStatus) {
        let before = gate_fingerprint(r);
        let now = ServiceRelease { status: Some(st), ..r.clone() };
        // Only a change of what waiting releases look at is kept (a drift check's pass keeps
        // nothing: memory stays flat at 10,000 releases).
        if gate_fingerprint(&now) == before {
            return;
        }
        if let (Ok(mut all), Some(st)) = (self.statuses.lock(), now.status.clone()) {
            if all.len() >= Self::PRUNE_AT {
                all.retain(|_, (at, _)| at.elapsed() < Self::FRESH);
            }
            if all.len() >= Self::MAX {
                all.clear();
            }
            all.insert((r.namespace().unwrap_or_default(), r.name_any()), (std::time::Instant::now(), st));
        }
        {
            if let Ok(w) = self.wake.lock() {
                if let Some(tx) = w.as_ref() {
                    for d in waiting_on(store, &now) {
                        let _ = tx.unbounded_send(d);
                    }
                }
            }
        }
    }

    /// `r` with the status this controller wrote last, when that is recent.
    pub fn latest(&self, r: Arc<ServiceRelease>) -> Arc<ServiceRelease> {
        let key = (r.namespace().unwrap_or_default(), r.name_any());
        let st =
            self.statuses.lock().ok().and_then(|all| all.get(&key).filter(|(at, _)| at.elapsed() < Self::FRESH).map(|(_, st)| st.clone()));
        match st {
            Some(st) if r.status.as_ref() != Some(&st) => Arc::new(ServiceRelease { status: Some(st), ..r.as_ref().clone() }),
            _ => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{HistoryEntry, RolloutOutcome, WaitingStatus};
    use crate::fixtures::{release, release_spec};
    use futures::StreamExt;
    use serde_json::json;

    fn store_of(objects: Vec<ServiceRelease>) -> kube::runtime::reflector::Store<ServiceRelease> {
        let (store, mut writer) = kube::runtime::reflector::store();
        for o in objects {
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(o));
        }
        store
    }

    #[test]
    fn a_rollout_deploying_or_rolling_back_is_in_flight_a_new_spec_is_not() {
        let mut r = release("team", "api", release_spec(json!({})));
        r.metadata.generation = Some(2);
        assert!(!in_flight(&r), "never reconciled");
        let at = |phase: Phase, observed: i64| ServiceReleaseStatus { phase, observed_generation: Some(observed), ..Default::default() };
        for phase in [Phase::Progressing, Phase::Analyzing, Phase::RollingBack] {
            r.status = Some(at(phase, 2));
            assert!(in_flight(&r), "{phase:?}");
            // A new spec came meanwhile: starting on it is not in flight yet.
            r.status = Some(at(phase, 1));
            assert!(!in_flight(&r));
        }
        for phase in [Phase::Healthy, Phase::Pending, Phase::RolledBack, Phase::Failed] {
            r.status = Some(at(phase, 2));
            assert!(!in_flight(&r), "{phase:?}");
        }
        // A rollback asked for by hand, not yet handled, is.
        r.annotations_mut().insert(ROLLBACK_ANNOTATION.to_string(), "1".into());
        assert!(in_flight(&r));
    }

    #[test]
    fn what_the_controller_wrote_is_seen_and_wakes_the_waiting_at_once() {
        let mut up = release("staging", "api", release_spec(json!({})));
        up.status = Some(ServiceReleaseStatus { phase: Phase::Analyzing, ..Default::default() });
        let mut down = release("prod", "api", release_spec(json!({"promotion": {"from": {"namespace": "staging", "name": "api"}}})));
        down.metadata.generation = Some(1);
        down.status = Some(ServiceReleaseStatus {
            observed_generation: Some(1),
            waiting: Some(WaitingStatus {
                sha: "aaaa111".into(),
                reason: "WaitingForUpstream".into(),
                message: String::new(),
                until: None,
                upstream: None,
            }),
            ..Default::default()
        });
        let bystander = release("prod", "web", release_spec(json!({})));
        let store = store_of(vec![up.clone(), down.clone(), bystander]);
        let recent = Recent::default();
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        recent.wake_into(tx);

        // A write that changes nothing waiting releases look at: nothing kept, nobody woken.
        recent.written(&store, &up, up.status.clone().unwrap());
        assert!(rx.try_recv().is_err(), "no wake");
        assert_eq!(recent.latest(Arc::new(up.clone())).status, up.status, "nothing kept");

        // Promoted: kept, and the waiting release woken before any watch brings it back.
        let promoted = ServiceReleaseStatus {
            phase: Phase::Healthy,
            stable_sha: Some("aaaa111".into()),
            history: vec![HistoryEntry {
                sha: "aaaa111".into(),
                task_definition_arn: None,
                function_version_arn: None,
                outcome: RolloutOutcome::Promoted,
                started_at: chrono::Utc::now(),
                finished_at: Some(chrono::Utc::now()),
                reason: String::new(),
                steps: vec![],
                pre_deploy: vec![],
            }],
            ..Default::default()
        };
        recent.written(&store, &up, promoted.clone());
        let woken: Vec<_> = futures::executor::block_on(rx.by_ref().take(1).collect::<Vec<_>>());
        assert_eq!(woken, vec![kube::runtime::reflector::ObjectRef::from_obj(&down)]);
        let seen = recent.latest(store.get(&kube::runtime::reflector::ObjectRef::from_obj(&up)).unwrap());
        assert_eq!(seen.status.as_ref(), Some(&promoted), "the written status, not the cache's older copy");
    }
}
