//! Every PascalCase reason shipshape writes into a condition or an Event, in one place.

/// Desired and actual state match.
pub const RECONCILED: &str = "Reconciled";
/// The controller is working towards the desired state.
pub const PROGRESSING: &str = "Progressing";
/// The spec is invalid in a way the schema cannot catch.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// The named Environment does not exist.
pub const ENVIRONMENT_NOT_FOUND: &str = "EnvironmentNotFound";
/// The object's namespace is not in the Environment's `allowedNamespaces`.
pub const ENVIRONMENT_NOT_ALLOWED: &str = "EnvironmentNotAllowed";
/// The AWS caller identity is not the Environment's `accountId`.
pub const ACCOUNT_MISMATCH: &str = "AccountMismatch";
/// AWS refused a call for lack of permission.
pub const ACCESS_DENIED: &str = "AccessDenied";
/// AWS rejected a request as invalid.
pub const AWS_VALIDATION: &str = "AwsValidationError";
/// A transient AWS or Kubernetes error; retried with backoff.
pub const TRANSIENT_ERROR: &str = "TransientError";
/// `ecsCluster.create` is false and the cluster does not exist.
pub const CLUSTER_NOT_FOUND: &str = "ClusterNotFound";
/// A resource of that name belongs to another owner.
pub const CONFLICT: &str = "Conflict";
/// Work for this kind is accepted but not yet carried out by this version.
pub const NOT_YET_SUPPORTED: &str = "NotYetSupported";
/// The object is being deleted.
pub const DELETING: &str = "Deleting";

/// Event: something was created in AWS.
pub const CREATED: &str = "Created";
/// Event: a managed field was put back after a change outside shipshape.
pub const DRIFT_CORRECTED: &str = "DriftCorrected";
/// Event: an existing resource was adopted.
pub const ADOPTED: &str = "Adopted";
/// Event: a resource was deleted in AWS as the deletion policy asked.
pub const DELETED: &str = "Deleted";
/// Event: a resource was left in AWS as the deletion policy asked.
pub const RETAINED: &str = "Retained";
/// A declared change AWS cannot make in place (shrink storage, change encryption, ...).
pub const UNSUPPORTED_CHANGE: &str = "UnsupportedChange";
/// A bucket with objects in it was not deleted.
pub const BUCKET_NOT_EMPTY: &str = "BucketNotEmpty";
/// A database with deletion protection was not deleted.
pub const DELETION_PROTECTED: &str = "DeletionProtected";
/// A Manual-approval plan waits for `shipshape.dev/approve: <hash>`.
pub const AWAITING_APPROVAL: &str = "AwaitingApproval";
/// Event: a final snapshot was requested before deleting a database.
pub const SNAPSHOT_TAKEN: &str = "FinalSnapshot";
/// Event: declared changes were applied.
pub const UPDATED: &str = "Updated";
/// A rollout failed and the service was pointed back at the stable task definition.
pub const ROLLED_BACK: &str = "RolledBack";
/// An Environment's AWS events arrive (the heartbeat came back).
pub const EVENTS_FLOWING: &str = "EventsFlowing";
/// An Environment's AWS events stopped: polling as without them.
pub const EVENTS_STOPPED: &str = "EventsStopped";
/// An Environment's event queue waits for its first heartbeat.
pub const WAITING_FOR_HEARTBEAT: &str = "WaitingForHeartbeat";
/// A rollout failed with nothing to roll back to (or autoRollback off).
pub const ROLLOUT_FAILED: &str = "RolloutFailed";
/// A release was promoted to stable.
pub const PROMOTED: &str = "Promoted";
/// An analysis failed and the rollout is held for a decision (onFailure: Pause).
pub const ANALYSIS_FAILED: &str = "AnalysisFailed";
/// A traffic step passed; the next one starts.
pub const STEP_PASSED: &str = "StepPassed";
/// Health metrics are being judged.
pub const ANALYZING: &str = "Analyzing";
/// An analysis query is invalid (bad PromQL).
pub const INVALID_QUERY: &str = "InvalidQuery";
/// The release is paused or its Environment frozen.
pub const PAUSED: &str = "Paused";
/// The release waits for its StackSpec to be Ready.
pub const WAITING_FOR_STACK: &str = "WaitingForStack";
/// A rollback is being carried out (ECS has not accepted it yet).
pub const ROLLING_BACK: &str = "RollingBack";
/// ECS refused the rollback (the bad SHA may still be serving); retried with backoff.
pub const ROLLBACK_FAILED: &str = "RollbackFailed";
/// The metrics backend cannot answer (down, 401/403, 5xx, timeout): the rollout holds.
pub const ANALYSIS_UNAVAILABLE: &str = "AnalysisUnavailable";
/// A deleting Environment waits for the StackSpecs and ServiceReleases that use it.
pub const WAITING_FOR_DEPENDENTS: &str = "WaitingForDependents";
/// A release waits for its Environment to be Ready (its ECS cluster).
pub const WAITING_FOR_ENVIRONMENT: &str = "WaitingForEnvironment";
/// A Secret the spec names (a cache's AUTH token) is missing or unusable; rechecked at the
/// drift interval, as the Secret changes without the spec.
pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
/// A step before traffic (`preDeploy`) is running, or its snapshot being taken.
pub const PRE_DEPLOY: &str = "PreDeploy";
/// A step before traffic succeeded.
pub const PRE_DEPLOY_SUCCEEDED: &str = "PreDeploySucceeded";
/// A step before traffic failed: the rollout failed with no traffic moved.
pub const PRE_DEPLOY_FAILED: &str = "PreDeployFailed";
/// A rollout failed after an irreversible step succeeded: held, not rolled back.
pub const ROLLBACK_UNSAFE: &str = "RollbackUnsafe";
/// A snapshot before a step was taken.
pub const PRE_DEPLOY_SNAPSHOT: &str = "PreDeploySnapshot";
/// A new SHA waits for its upstream stage to be Healthy on it for its soak.
pub const WAITING_FOR_UPSTREAM: &str = "WaitingForUpstream";
/// A new SHA was rolled back or failed upstream: refused, never started.
pub const UPSTREAM_REJECTED: &str = "UpstreamRejected";
/// A new SHA waits for an approval naming it (`shipshape approve`).
pub const WAITING_FOR_APPROVAL: &str = "WaitingForApproval";
/// A new SHA waits for the releases it comes after (`rollout.after`) to be Healthy.
pub const WAITING_FOR_ORDER: &str = "WaitingForOrder";
/// A new SHA waits for a change window to open, or a blackout to end.
pub const WAITING_FOR_WINDOW: &str = "WaitingForWindow";
/// Event: a notification sink kept failing (its messages are being dropped).
pub const NOTIFICATION_FAILED: &str = "NotificationFailed";

/// The reason constant of a waiting reason read back from status.
pub fn waiting(reason: &str) -> Option<&'static str> {
    [WAITING_FOR_UPSTREAM, UPSTREAM_REJECTED, WAITING_FOR_APPROVAL, WAITING_FOR_ORDER, WAITING_FOR_WINDOW]
        .into_iter()
        .find(|r| *r == reason)
}
