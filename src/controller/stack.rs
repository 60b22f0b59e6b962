//! The StackSpec controller. This version enforces tenancy and reports status; managing
//! RDS databases and S3 buckets is the next capability (issue 3).

use std::sync::Arc;
use std::time::Instant;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::ResourceExt;
use serde_json::Value;
use tracing::instrument;

use super::{error_policy, next_conditions, record, status, stored_reason, tenant, Context, Error};
use crate::api::{finalizer_name, reasons, StackSpec, StackSpecStatus};
use crate::core::conditions::Readiness;

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "stackspec";

/// Reconciles one StackSpec.
#[instrument(skip_all, fields(stack = %format!("{}/{}", stack.namespace().unwrap_or_default(), stack.name_any())))]
pub async fn reconcile(stack: Arc<StackSpec>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let api: Api<StackSpec> =
        Api::namespaced(ctx.client.clone(), &stack.namespace().unwrap_or_default());
    let result = finalizer(&api, &finalizer_name::<StackSpec>(), stack, |event| async {
        match event {
            Finalizer::Apply(s) => apply(s, &ctx).await,
            // Nothing is created in AWS yet, so nothing needs cleaning up; this works whether
            // or not the spec or the Environment is valid.
            Finalizer::Cleanup(_) => Ok(Action::await_change()),
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

async fn apply(stack: Arc<StackSpec>, ctx: &Context) -> Result<Action, Error> {
    let api: Api<StackSpec> =
        Api::namespaced(ctx.client.clone(), &stack.namespace().unwrap_or_default());
    let old = stack.status.clone().unwrap_or_default();
    let old_value = stack
        .status
        .as_ref()
        .map(|s| serde_json::to_value(s).unwrap_or(Value::Null));
    let drift = stack
        .spec
        .drift_interval
        .as_ref()
        .map(|d| d.duration())
        .unwrap_or(ctx.settings.stack_drift);
    let (readiness, action) = match tenant::resolve(ctx, stack.as_ref(), &stack.spec.environment).await? {
        Err((stalled, category)) => {
            ctx.metrics.errors.with_label_values(&[CONTROLLER, category.label()]).inc();
            (stalled, Action::await_change())
        }
        Ok(_env) if stack.spec.databases.is_empty() && stack.spec.buckets.is_empty() => {
            (Readiness::Ready { reason: reasons::RECONCILED, message: "nothing to manage".into() }, Action::requeue(drift))
        }
        Ok(_env) => (
            Readiness::NotReady {
                reason: reasons::NOT_YET_SUPPORTED,
                message: "the Environment accepts this StackSpec, but this shipshape version does not manage RDS databases or S3 buckets yet; nothing was changed in AWS".into(),
            },
            Action::requeue(drift),
        ),
    };
    if let Readiness::Stalled { reason, message } = &readiness {
        if stored_reason(&old.conditions).as_deref() != Some(*reason) {
            ctx.event(stack.as_ref(), true, reason, message.clone())
                .await;
        }
    }
    ctx.reset_failures(stack.as_ref());
    let generation = stack.metadata.generation;
    let new = StackSpecStatus {
        conditions: next_conditions(&old.conditions, &readiness, generation),
        observed_generation: generation,
        ..old
    };
    status::write(
        &api,
        stack.as_ref(),
        old_value,
        serde_json::to_value(&new).expect("status serializes"),
    )
    .await?;
    Ok(action)
}
