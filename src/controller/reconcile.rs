//! The one reconcile every kind plugs into. A kind ([`Kind`]) brings its `apply` and
//! `cleanup`; the skeleton runs the finalizer around them, takes a drift slot for a drift
//! check, records the reconcile, and — in one place — settles what the kind reached
//! ([`Settled`]) into the readiness, the requeue (`core::requeue`), the error metric and the
//! failure count ([`settle`]), then writes the conditions and status with an Event when the
//! verdict changes ([`finish`]).

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{drift_slot, status, Context, Error, Settings};
use crate::api::{finalizer_name, reasons, Condition, EnvironmentStatus, ServiceReleaseStatus, StackSpecStatus};
use crate::aws::AwsError;
use crate::core::conditions::{self, Readiness};
use crate::core::refusal::Refusal;
use crate::core::requeue::{self, Category};

/// A kind the controller reconciles.
pub trait Kind: Resource<DynamicType = ()> + super::Placed + Clone + Debug + DeserializeOwned + Serialize + Send + Sync + 'static {
    /// Controller name in metrics and logs.
    const CONTROLLER: &'static str;

    /// The kind's API: namespaced or cluster-wide.
    fn api(client: Client, obj: &Self) -> Api<Self>;

    /// How long a failure that waits for no change rests before it is looked at again (the
    /// kind's default drift interval).
    fn slow_recheck(settings: &Settings) -> Duration;

    /// Whether this reconcile is a drift check (it then waits for a drift slot; rollout and
    /// spec work never does).
    fn drift_check(&self) -> bool {
        false
    }

    /// Brings AWS to the spec; writes status.
    fn apply(obj: Arc<Self>, ctx: &Context) -> impl Future<Output = Result<Action, Error>> + Send;

    /// Carries out the deletion policy.
    fn cleanup(obj: Arc<Self>, ctx: &Context) -> impl Future<Output = Result<Action, Error>> + Send;
}

/// Reconciles one object of kind `K`.
pub async fn reconcile<K: Kind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    // Drift checks share a few slots; spec and rollout work never waits for one.
    let _slot = if obj.drift_check() {
        match drift_slot(&ctx).await {
            Ok(slot) => Some(slot),
            Err(later) => return Ok(later),
        }
    } else {
        None
    };
    let api = K::api(ctx.client.clone(), &obj);
    let result = finalizer(&api, &finalizer_name::<K>(), obj, |event| async {
        match event {
            Finalizer::Apply(o) => K::apply(o, &ctx).await,
            Finalizer::Cleanup(o) => K::cleanup(o, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    let label = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics.reconciled(K::CONTROLLER, label, started.elapsed());
    result
}

/// Requeue after a failed reconcile: by its category, with jittered backoff for transient
/// ones, the kind's drift interval for those that wait.
pub fn on_error<K: Kind>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    let attempt = ctx.bump_failures(obj.as_ref());
    let category = err.category();
    ctx.metrics.errors.with_label_values(&[K::CONTROLLER, category.label()]).inc();
    tracing::warn!(object = %obj.name_any(), error = %err, category = category.label(), attempt, "reconcile failed");
    match requeue::after_failure(category, attempt, K::slow_recheck(&ctx.settings), rand::random()) {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    }
}

/// What a kind's apply reached.
#[derive(Debug)]
pub(crate) enum Settled {
    /// AWS is as declared, or on its way: looked at again after `requeue` (None: on a change).
    Done { readiness: Readiness, requeue: Option<Duration> },
    /// It cannot go on until something changes (the spec, AWS, a Secret): counted as an error
    /// of `category`, looked at again by that category — or after `retry_in` (a refused
    /// rollback's own backoff).
    Stalled { readiness: Readiness, category: Category, retry_in: Option<Duration> },
    /// AWS failed in a way a retry may cure: retried with the reconcile's backoff.
    Transient(AwsError),
}

impl Settled {
    /// Stalled, looked at again by its category.
    pub(crate) fn stalled(readiness: Readiness, category: Category) -> Self {
        Settled::Stalled { readiness, category, retry_in: None }
    }
}

impl From<AwsError> for Settled {
    /// The one mapping of an AWS error: throttles and failures on AWS's side are retried;
    /// anything else stalls the object with the reason (AccessDenied, Conflict, AWS's
    /// validation) and its message.
    fn from(e: AwsError) -> Self {
        if e.category().is_transient() {
            return Settled::Transient(e);
        }
        let category = e.category();
        Settled::stalled(stall_for(&e), category)
    }
}

impl From<Refusal> for Settled {
    fn from(r: Refusal) -> Self {
        Settled::stalled(Readiness::Stalled { reason: r.reason, message: r.message }, r.category)
    }
}

impl From<&crate::core::spec::InvalidSpec> for Settled {
    fn from(e: &crate::core::spec::InvalidSpec) -> Self {
        Settled::stalled(invalid_spec(e), Category::InvalidSpec)
    }
}

/// The one place an outcome becomes a readiness, a requeue, a metric and a failure count:
/// `drift` is the object's drift interval (a Conflict or AccessDenied is looked at again
/// after it). The error returned (a transient one) is the runtime's to back off.
pub(crate) fn settle<K: Kind>(ctx: &Context, obj: &K, settled: Settled, drift: Duration) -> (Readiness, Action, Option<Error>) {
    match settled {
        Settled::Done { readiness, requeue } => {
            ctx.reset_failures(obj);
            (readiness, requeue.map(Action::requeue).unwrap_or_else(Action::await_change), None)
        }
        Settled::Stalled { readiness, category, retry_in } => {
            ctx.metrics.errors.with_label_values(&[K::CONTROLLER, category.label()]).inc();
            let after = retry_in.or_else(|| requeue::after_failure(category, 1, drift, 0.0));
            (readiness, after.map(Action::requeue).unwrap_or_else(Action::await_change), None)
        }
        Settled::Transient(e) => (
            Readiness::Reconciling { reason: reasons::TRANSIENT_ERROR, message: format!("{e}; retrying") },
            Action::await_change(),
            Some(Error::Aws(e)),
        ),
    }
}

/// A status with kstatus conditions.
pub(crate) trait Conditioned: Serialize {
    /// Replaces the conditions.
    fn set_conditions(&mut self, conditions: Vec<Condition>);
}

impl Conditioned for EnvironmentStatus {
    /// Ready, Reconciling and Stalled, and the `EventsFlowing` condition as the reconcile set it.
    fn set_conditions(&mut self, mut conditions: Vec<Condition>) {
        conditions.extend(self.conditions.iter().filter(|c| c.type_ == crate::api::condition_types::EVENTS_FLOWING).cloned());
        self.conditions = conditions;
    }
}

impl Conditioned for StackSpecStatus {
    fn set_conditions(&mut self, conditions: Vec<Condition>) {
        self.conditions = conditions;
    }
}

impl Conditioned for ServiceReleaseStatus {
    fn set_conditions(&mut self, conditions: Vec<Condition>) {
        self.conditions = conditions;
    }
}

/// What [`finish`] writes, and against what.
pub(crate) struct Written<'a, S> {
    /// The conditions the reconcile started from (an Event is sent when the verdict differs).
    pub(crate) previous: &'a [Condition],
    /// The conditions stored so far (`previous`, or a decision's written since).
    pub(crate) conditions: &'a [Condition],
    /// The status stored so far, as JSON (None: none yet).
    pub(crate) stored: Option<Value>,
    /// The new status.
    pub(crate) status: S,
    /// Stalled reasons the kind announced with an Event of its own already.
    pub(crate) announced: &'a [&'a str],
    /// The object's resourceVersion, when the write must be fenced by it (a rollout's).
    pub(crate) fenced: Option<&'a mut Option<String>>,
}

/// Ends an apply: an Event when the object newly stalls (once per reason), the conditions
/// for `readiness`, the status written when it changed; then the requeue, or the error.
pub(crate) async fn finish<K: Kind, S: Conditioned>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
    w: Written<'_, S>,
    (readiness, action, err): (Readiness, Action, Option<Error>),
) -> Result<Action, Error> {
    if let Readiness::Stalled { reason, message } = &readiness {
        if !w.announced.contains(reason) && stored_reason(w.previous).as_deref() != Some(*reason) {
            ctx.event(obj, true, reason, message.clone()).await;
        }
    }
    let mut new = w.status;
    new.set_conditions(next_conditions(w.conditions, &readiness, obj.meta().generation));
    let value = serde_json::to_value(&new).unwrap_or(Value::Null);
    match w.fenced {
        Some(rv) => status::write_at(api, obj, rv, w.stored, value).await?,
        None => status::write(api, obj, w.stored, value).await?,
    };
    match err {
        Some(e) => Err(e),
        None => Ok(action),
    }
}

/// Builds the conditions for `readiness`, given the stored ones.
pub(crate) fn next_conditions(previous: &[Condition], readiness: &Readiness, generation: Option<i64>) -> Vec<Condition> {
    conditions::conditions(previous, readiness, generation, chrono::Utc::now())
}

/// The Ready reason currently stored, to emit Events only on a change of verdict.
pub(crate) fn stored_reason(conds: &[Condition]) -> Option<String> {
    conditions::find(conds, crate::api::condition_types::READY).map(|c| c.reason.clone())
}

/// A stalled verdict for a failure category, with its reason.
pub(crate) fn stall_for(e: &AwsError) -> Readiness {
    let reason = match e.category() {
        Category::AccessDenied => reasons::ACCESS_DENIED,
        Category::Conflict => reasons::CONFLICT,
        _ => reasons::AWS_VALIDATION,
    };
    Readiness::Stalled { reason, message: e.to_string() }
}

/// The stalled verdict for a spec the schema let through but shipshape cannot use.
pub(crate) fn invalid_spec(e: &crate::core::spec::InvalidSpec) -> Readiness {
    Readiness::Stalled { reason: reasons::INVALID_SPEC, message: format!("{e}; fix the spec (nothing else is affected)") }
}
