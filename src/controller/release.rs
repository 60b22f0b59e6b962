//! The ServiceRelease controller. This version enforces tenancy and reports status; the
//! rollout itself (task definitions, ECS deployments, analysis, rollback) is issue 4.

use std::sync::Arc;
use std::time::Instant;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::ResourceExt;
use serde_json::Value;
use tracing::instrument;

use super::{error_policy, next_conditions, record, status, stored_reason, tenant, Context, Error};
use crate::api::{finalizer_name, reasons, ServiceRelease, ServiceReleaseStatus};
use crate::core::conditions::Readiness;

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "servicerelease";

/// Reconciles one ServiceRelease.
#[instrument(skip_all, fields(release = %format!("{}/{}", release.namespace().unwrap_or_default(), release.name_any())))]
pub async fn reconcile(release: Arc<ServiceRelease>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let api: Api<ServiceRelease> = Api::namespaced(ctx.client.clone(), &release.namespace().unwrap_or_default());
    let result = finalizer(&api, &finalizer_name::<ServiceRelease>(), release, |event| async {
        match event {
            Finalizer::Apply(r) => apply(r, &ctx).await,
            // Nothing is created in AWS yet; cleanup succeeds whatever the spec or Environment.
            Finalizer::Cleanup(_) => Ok(Action::await_change()),
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

async fn apply(release: Arc<ServiceRelease>, ctx: &Context) -> Result<Action, Error> {
    let api: Api<ServiceRelease> = Api::namespaced(ctx.client.clone(), &release.namespace().unwrap_or_default());
    let old = release.status.clone().unwrap_or_default();
    let old_value = release.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null));
    let drift = release.spec.drift_interval.as_ref().map(|d| d.duration()).unwrap_or(ctx.settings.ecs_drift);
    let (readiness, action) = match tenant::resolve(ctx, release.as_ref(), &release.spec.environment).await? {
        Err((stalled, category)) => {
            ctx.metrics.errors.with_label_values(&[CONTROLLER, category.label()]).inc();
            (stalled, Action::await_change())
        }
        Ok(_env) => (
            Readiness::NotReady {
                reason: reasons::NOT_YET_SUPPORTED,
                message: format!(
                    "the Environment accepts this release, but this shipshape version does not roll out ECS services yet; {} was not deployed",
                    release.spec.image.git_sha
                ),
            },
            Action::requeue(drift),
        ),
    };
    if let Readiness::Stalled { reason, message } = &readiness {
        if stored_reason(&old.conditions).as_deref() != Some(*reason) {
            ctx.event(release.as_ref(), true, reason, message.clone()).await;
        }
    }
    ctx.reset_failures(release.as_ref());
    let generation = release.metadata.generation;
    let new = ServiceReleaseStatus {
        conditions: next_conditions(&old.conditions, &readiness, generation),
        observed_generation: generation,
        ..old
    };
    status::write(&api, release.as_ref(), old_value, serde_json::to_value(&new).expect("status serializes")).await?;
    Ok(action)
}
