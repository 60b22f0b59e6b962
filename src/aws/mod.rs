//! The AWS layer: domain traits and errors, the rate-limited and counted call path, and the
//! SDK adapters (`sdk/`, one file per service: the only place importing the AWS SDK service
//! crates).

pub mod sdk;

/// AWS tags, key → value.
pub type Tags = std::collections::BTreeMap<String, String>;

use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::api::{BucketEncryption, BucketSpec, CacheSpec, DatabaseSpec, LifecycleRule, TableSpec};
use crate::core::environment::ObservedCluster;
use crate::core::requeue::{backoff, Category};
use crate::core::rollout::{ServiceObs, TaskObs};
use crate::core::stack::{CacheModify, DbModify, ObservedBucket, ObservedCache, ObservedDatabase, ObservedTable, Placement, TableUpdate};
use crate::core::taskdef::TaskDefinitionSpec;
use crate::metrics::Metrics;

/// A failed AWS call, by what it means for the controller.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum AwsError {
    /// The resource does not exist.
    #[error("{op}: not found: {message}")]
    NotFound { op: &'static str, message: String },
    /// The resource exists or is in a conflicting state.
    #[error("{op}: conflict: {message}")]
    Conflict { op: &'static str, message: String },
    /// AWS throttled the call.
    #[error("{op}: throttled by AWS: {message}")]
    Throttled { op: &'static str, message: String },
    /// The caller lacks a permission.
    #[error("{op}: access denied ({message}); grant the controller's IAM role the permission for this action")]
    AccessDenied { op: &'static str, message: String },
    /// AWS rejected the request as invalid.
    #[error("{op}: rejected as invalid: {message}")]
    Invalid { op: &'static str, message: String },
    /// Network failure, timeout or 5xx.
    #[error("{op}: transient failure: {message}")]
    Transient { op: &'static str, message: String },
}

impl AwsError {
    /// The category deciding requeue and metrics.
    pub fn category(&self) -> Category {
        match self {
            AwsError::NotFound { .. } | AwsError::Invalid { .. } => Category::AwsValidation,
            AwsError::Conflict { .. } => Category::Conflict,
            AwsError::Throttled { .. } => Category::Throttled,
            AwsError::AccessDenied { .. } => Category::AccessDenied,
            AwsError::Transient { .. } => Category::Transient,
        }
    }
    /// The metric outcome label.
    pub fn outcome(&self) -> &'static str {
        match self {
            AwsError::NotFound { .. } => "not_found",
            AwsError::Conflict { .. } => "conflict",
            AwsError::Throttled { .. } => "throttled",
            AwsError::AccessDenied { .. } => "access_denied",
            AwsError::Invalid { .. } => "invalid",
            AwsError::Transient { .. } => "transient",
        }
    }
    fn retryable(&self) -> bool {
        matches!(self, AwsError::Throttled { .. } | AwsError::Transient { .. })
    }
}

/// A new ECS cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCluster {
    /// Name.
    pub name: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Capacity providers.
    pub capacity_providers: Vec<String>,
    /// containerInsights value.
    pub container_insights: Option<String>,
}

/// The ECS operations shipshape uses.
#[async_trait]
pub trait Ecs: Send + Sync {
    /// The cluster, or None when missing.
    async fn describe_cluster(&self, name: &str) -> Result<Option<ObservedCluster>, AwsError>;
    /// Creates a cluster; returns its ARN.
    async fn create_cluster(&self, cluster: &NewCluster) -> Result<String, AwsError>;
    /// Adds or overwrites tags.
    async fn tag_resource(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError>;
    /// Removes tags.
    async fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<(), AwsError>;
    /// Sets the capacity providers of a cluster.
    async fn put_capacity_providers(&self, cluster: &str, providers: &[String]) -> Result<(), AwsError>;
    /// Sets Container Insights.
    async fn set_container_insights(&self, cluster: &str, value: &str) -> Result<(), AwsError>;
    /// Deletes a cluster.
    async fn delete_cluster(&self, cluster: &str) -> Result<(), AwsError>;
    /// In `family` (exactly that family, not every family starting with its name): an ACTIVE
    /// revision carrying the content-hash tag and `owner`'s owner tag, if any (never another
    /// owner's revision, whatever its hash tag says), and the tags of the newest revision.
    async fn find_task_definition(&self, family: &str, spec_hash: &str, owner: &str) -> Result<FamilyLookup, AwsError>;
    /// Registers a task definition tagged with its content hash; returns its ARN.
    async fn register_task_definition(&self, td: &TaskDefinitionSpec, spec_hash: &str, tags: &Tags) -> Result<String, AwsError>;
    /// Services by name, with their tags (missing ones are left out); at most 10 names per
    /// call, as in ECS.
    async fn describe_services(&self, cluster: &str, names: &[String]) -> Result<Vec<(String, ServiceObs)>, AwsError>;
    /// The task definition itself when it is ACTIVE; when it was deregistered (INACTIVE, so
    /// no service may be pointed at it), a new revision registered with the same content
    /// and tags. Returns the ARN to use.
    async fn ensure_task_definition_active(&self, arn: &str) -> Result<String, AwsError>;
    /// Creates a Fargate service (idempotent through `client_token`).
    async fn create_service(&self, service: &ServiceRequest) -> Result<(), AwsError>;
    /// Points a service at a task definition and count.
    async fn update_service(&self, service: &ServiceRequest) -> Result<(), AwsError>;
    /// Scales a service to 0 tasks, then deletes it (its task definitions stay); a service
    /// already gone is a success.
    async fn delete_service(&self, cluster: &str, name: &str) -> Result<(), AwsError>;
    /// ContinueServiceDeployment: a service deployment paused at lifecycle hook `hook` goes
    /// on to its next stage (CONTINUE), or back to the previous revision (ROLLBACK).
    async fn continue_deployment(&self, deployment: &str, hook: &str, rollback: bool) -> Result<(), AwsError>;
    /// StopServiceDeployment with stopType ROLLBACK: ECS moves the service back to the
    /// revision it ran before the deployment.
    async fn stop_deployment(&self, deployment: &str) -> Result<(), AwsError>;

    /// RunTask: one Fargate task of `r.task_definition` with the container's command
    /// overridden (a step before traffic). Returns the task's ARN; idempotent per
    /// `r.client_token`.
    async fn run_task(&self, r: &TaskRequest) -> Result<String, AwsError>;

    /// The task `arn` (DescribeTasks), or else the newest task started with `started_by`
    /// (ListTasks, running then stopped); None when ECS knows none.
    async fn find_task(&self, cluster: &str, arn: Option<&str>, started_by: &str) -> Result<Option<TaskObs>, AwsError>;

    /// DescribeTasks of up to 100 tasks of `cluster` (those ECS does not know are left out).
    async fn describe_tasks(&self, cluster: &str, arns: &[String]) -> Result<Vec<TaskObs>, AwsError>;

    /// StopTask with a reason ECS shows in `stoppedReason`.
    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Result<(), AwsError>;
}

/// What a task definition family holds for a release.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FamilyLookup {
    /// A revision with the release's content hash and owner.
    pub found: Option<String>,
    /// The tags of the family's newest ACTIVE revision; None when it has none.
    pub newest_tags: Option<BTreeMap<String, String>>,
}

/// A service to create or update.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRequest {
    /// Cluster name.
    pub cluster: String,
    /// Service name.
    pub name: String,
    /// Task definition ARN.
    pub task_definition: String,
    /// Desired count.
    pub desired_count: i32,
    /// Subnets (awsvpc).
    pub subnets: Vec<String>,
    /// Security groups.
    pub security_groups: Vec<String>,
    /// Public IP.
    pub assign_public_ip: bool,
    /// maximumPercent.
    pub maximum_percent: i32,
    /// minimumHealthyPercent.
    pub minimum_healthy_percent: i32,
    /// Tags (on create).
    pub tags: BTreeMap<String, String>,
    /// CreateService's idempotency token (at most 36 characters): a retried create after a
    /// lost answer finds its own service instead of failing.
    pub client_token: String,
    /// The load balancer the tasks register with, if any.
    pub load_balancer: Option<LoadBalancer>,
    /// ECS's own traffic-shifting strategy, if the release has one.
    pub native: Option<NativeDeployment>,
}

/// A service's load balancer (ECS `loadBalancers[0]` and its `advancedConfiguration`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancer {
    /// Production target group.
    pub target_group: String,
    /// Alternate target group (traffic-shifting strategies).
    pub alternate_target_group: Option<String>,
    /// Production listener rule (traffic-shifting strategies).
    pub production_listener_rule: Option<String>,
    /// Test listener rule.
    pub test_listener_rule: Option<String>,
    /// The role ECS uses for Elastic Load Balancing.
    pub role_arn: Option<String>,
    /// The container that serves.
    pub container_name: String,
    /// Its port.
    pub container_port: i32,
}

/// ECS's CANARY, LINEAR or BLUE_GREEN deployment of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeDeployment {
    /// Which, with its share.
    pub strategy: NativeStrategy,
    /// PAUSE lifecycle hooks at PRE_PRODUCTION_TRAFFIC_SHIFT and POST_PRODUCTION_TRAFFIC_SHIFT:
    /// set on the deployment of a rollout shipshape judges, cleared (an empty list) on the
    /// ones it does not (a rollback, a drift correction), so ECS never waits for nobody.
    pub pause_hooks: bool,
    /// How long ECS waits at a pause before rolling back by itself (a controller that is
    /// gone never leaves a half-shifted service behind).
    pub hook_timeout_minutes: i32,
}

/// ECS's traffic-shifting strategies. Their bake times are 0 in ECS: the bakes are
/// shipshape's, held at its pauses while the analysis runs (with second precision).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NativeStrategy {
    /// CANARY with canaryPercent.
    Canary(f64),
    /// LINEAR with stepPercent.
    Linear(f64),
    /// BLUE_GREEN.
    BlueGreen,
}

/// The STS operations shipshape uses.
#[async_trait]
pub trait Sts: Send + Sync {
    /// The account of the caller identity.
    async fn caller_account(&self) -> Result<String, AwsError>;
    /// The caller identity's ARN (what CloudTrail records as `userIdentity.arn`), when known.
    async fn caller_arn(&self) -> Result<Option<String>, AwsError> {
        Ok(None)
    }
}

/// The RDS operations shipshape uses.
#[async_trait]
pub trait Rds: Send + Sync {
    /// The instance, or None when missing.
    async fn describe_db_instance(&self, name: &str) -> Result<Option<ObservedDatabase>, AwsError>;
    /// Every DB instance of the account in the Region, read page by page (100 per call):
    /// the one read that drift checks of a whole Environment share.
    async fn list_db_instances(&self) -> Result<Vec<ObservedDatabase>, AwsError>;
    /// Creates an instance (master password managed by RDS in Secrets Manager), in the
    /// placement's subnet group and security groups when there is one. A create retried
    /// after a lost answer that finds the instance with its owner tag is a success.
    async fn create_db_instance(&self, spec: &DatabaseSpec, tags: &Tags, placement: Option<&Placement>) -> Result<(), AwsError>;
    /// Creates the DB subnet group of a placement, or sets its subnets when they differ.
    async fn ensure_db_subnet_group(&self, placement: &Placement, tags: &BTreeMap<String, String>) -> Result<(), AwsError>;
    /// Modifies an instance, applied immediately.
    async fn modify_db_instance(&self, name: &str, modify: &DbModify) -> Result<(), AwsError>;
    /// Adds or overwrites tags.
    async fn add_tags(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError>;
    /// Deletes an instance, with a final snapshot of that name or without one.
    async fn delete_db_instance(&self, name: &str, final_snapshot: Option<&str>) -> Result<(), AwsError>;

    /// CreateDBSnapshot of instance `db` named `name`, tagged `tags`.
    async fn create_snapshot(&self, db: &str, name: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError>;

    /// The status of snapshot `name` (`creating`, `available`, …), None when RDS has none.
    async fn snapshot_status(&self, name: &str) -> Result<Option<String>, AwsError>;

    /// The manual snapshots of instance `db`: (name, created, tags), newest first.
    async fn list_snapshots(
        &self,
        db: &str,
    ) -> Result<Vec<(String, Option<chrono::DateTime<chrono::Utc>>, BTreeMap<String, String>)>, AwsError>;

    /// DeleteDBSnapshot.
    async fn delete_snapshot(&self, name: &str) -> Result<(), AwsError>;
}

/// What a bucket deletion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketDeletion {
    /// Deleted.
    Deleted,
    /// Left: it still holds objects.
    NotEmpty,
    /// It was already gone.
    Missing,
}

/// Which optional settings a bucket read fetches. Existence, region, versioning, the public
/// access block and the tags are always read (the plan judges them for every bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketReads {
    /// Default encryption.
    pub encryption: bool,
    /// Lifecycle rules.
    pub lifecycle: bool,
}

impl BucketReads {
    /// Everything.
    pub const ALL: BucketReads = BucketReads { encryption: true, lifecycle: true };
    /// Only what every bucket needs (existence, region, versioning, public access, tags).
    pub const BASIC: BucketReads = BucketReads { encryption: false, lifecycle: false };

    /// What the plan of `spec` compares: a setting the spec leaves alone is not read.
    pub fn for_spec(spec: &BucketSpec) -> Self {
        BucketReads { encryption: spec.encryption.is_some(), lifecycle: !spec.lifecycle.is_empty() }
    }
}

/// The S3 operations shipshape uses.
#[async_trait]
pub trait S3: Send + Sync {
    /// The bucket's settings, or None when missing. Encryption and lifecycle are read only
    /// when `reads` asks for them (a spec that does not manage them does not pay for them).
    async fn describe_bucket(&self, name: &str, reads: BucketReads) -> Result<Option<ObservedBucket>, AwsError>;
    /// Creates a bucket in `region` with `tags`.
    async fn create_bucket(&self, name: &str, region: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError>;
    /// Turns attribute-based access control on (PutBucketAbac).
    async fn enable_abac(&self, name: &str) -> Result<(), AwsError>;
    /// Adds or overwrites tags (S3 Control TagResource: with ABAC on, PutBucketTagging is
    /// refused).
    async fn put_tags(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError>;
    /// Enables or suspends versioning.
    async fn put_versioning(&self, name: &str, enabled: bool) -> Result<(), AwsError>;
    /// Sets default encryption.
    async fn put_encryption(&self, name: &str, encryption: &BucketEncryption) -> Result<(), AwsError>;
    /// Blocks all public access (true) or removes the block (false).
    async fn set_public_access_block(&self, name: &str, block: bool) -> Result<(), AwsError>;
    /// Replaces the lifecycle rules.
    async fn put_lifecycle(&self, name: &str, rules: &[LifecycleRule]) -> Result<(), AwsError>;
    /// Deletes the bucket if it is empty.
    async fn delete_bucket(&self, name: &str) -> Result<BucketDeletion, AwsError>;
}

/// Where a table's final on-demand backup stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupState {
    /// Being created: DynamoDB refuses to delete the table until it is available.
    Creating(String),
    /// Available: the table may go.
    Available(String),
}

/// The DynamoDB operations shipshape uses.
#[async_trait]
pub trait Dynamo: Send + Sync {
    /// The table with its point-in-time recovery, TTL and tags, or None when missing.
    async fn describe_table(&self, name: &str) -> Result<Option<ObservedTable>, AwsError>;
    /// Creates a table as declared (point-in-time recovery and TTL follow once it is ACTIVE).
    /// A create retried after a lost answer that finds the table with its owner tag is a
    /// success.
    async fn create_table(&self, spec: &TableSpec, tags: &BTreeMap<String, String>) -> Result<(), AwsError>;
    /// One UpdateTable call.
    async fn update_table(&self, name: &str, update: &TableUpdate) -> Result<(), AwsError>;
    /// Turns point-in-time recovery on or off.
    async fn set_point_in_time_recovery(&self, name: &str, enabled: bool) -> Result<(), AwsError>;
    /// Turns TTL on `attribute` on or off.
    async fn set_ttl(&self, name: &str, attribute: &str, enabled: bool) -> Result<(), AwsError>;
    /// Adds or overwrites tags.
    async fn tag_table(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError>;
    /// The table's final backup: one whose name starts with `<table>-final-` if it exists,
    /// else a new one named `name`.
    async fn final_backup(&self, table: &str, name: &str) -> Result<BackupState, AwsError>;
    /// Deletes the table.
    async fn delete_table(&self, name: &str) -> Result<(), AwsError>;
}

/// The ElastiCache operations shipshape uses.
#[async_trait]
pub trait ElastiCache: Send + Sync {
    /// The replication group with its primary's version and maintenance window and its tags,
    /// or None when missing.
    async fn describe_cache(&self, name: &str) -> Result<Option<ObservedCache>, AwsError>;
    /// Creates the cache subnet group of a placement, or sets its subnets when they differ.
    async fn ensure_cache_subnet_group(&self, placement: &Placement, tags: &BTreeMap<String, String>) -> Result<(), AwsError>;
    /// Creates a replication group (in the placement's subnet group and security groups when
    /// there is one) with the AUTH token `auth` if given. A create retried after a lost
    /// answer that finds the group with its owner tag is a success.
    async fn create_cache(&self, spec: &CacheSpec, tags: &Tags, placement: Option<&Placement>, auth: Option<&str>) -> Result<(), AwsError>;
    /// ModifyReplicationGroup, applied immediately.
    async fn modify_cache(&self, name: &str, modify: &CacheModify) -> Result<(), AwsError>;
    /// IncreaseReplicaCount or DecreaseReplicaCount to `replicas`, applied immediately.
    async fn set_cache_replicas(&self, name: &str, replicas: i32, current: i32) -> Result<(), AwsError>;
    /// Adds or overwrites tags.
    async fn tag_cache(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError>;
    /// Deletes the replication group, with a final snapshot of that name or without one.
    async fn delete_cache(&self, name: &str, final_snapshot: Option<&str>) -> Result<(), AwsError>;
}

/// A Lambda function's configuration as shipshape sets it (content hashed into the
/// version's description).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FunctionConfig {
    /// Function name.
    pub name: String,
    /// Zip in S3 (bucket, key), or None for an image.
    pub s3: Option<(String, String)>,
    /// Image URI (image functions).
    pub image: Option<String>,
    /// Runtime (zip).
    pub runtime: Option<String>,
    /// Handler (zip).
    pub handler: Option<String>,
    /// Memory in MB.
    pub memory: i32,
    /// Timeout in seconds.
    pub timeout_seconds: i32,
    /// x86_64 or arm64.
    pub architecture: String,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Execution role.
    pub role_arn: String,
}

/// A Lambda function as shipshape reads it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedFunction {
    /// Unqualified ARN.
    pub arn: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// $LATEST's description (shipshape writes `shipshape <content hash>`).
    pub description: String,
    /// $LATEST's LastUpdateStatus (Successful, InProgress, Failed) and State (Active, Pending, ...).
    pub last_update_status: String,
    /// State.
    pub state: String,
    /// Reserved concurrency.
    pub reserved_concurrency: Option<i32>,
}

/// An alias as Lambda reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedAlias {
    /// Alias ARN.
    pub arn: String,
    /// The version it points at.
    pub version: String,
    /// Weighted routing to other versions (AdditionalVersionWeights).
    pub weights: BTreeMap<String, f64>,
}

/// The Lambda operations shipshape uses.
#[async_trait]
pub trait Lambda: Send + Sync {
    /// The function ($LATEST configuration and tags), or None when missing.
    async fn get_function(&self, name: &str) -> Result<Option<ObservedFunction>, AwsError>;
    /// Creates the function (not published) with `description` and tags.
    async fn create_function(&self, config: &FunctionConfig, description: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError>;
    /// Points $LATEST at the config's code, then sets its configuration and `description`.
    async fn update_function(&self, config: &FunctionConfig, description: &str) -> Result<(), AwsError>;
    /// The published version whose description is `description`, if any (qualified ARN).
    async fn find_version(&self, name: &str, description: &str) -> Result<Option<String>, AwsError>;
    /// Publishes $LATEST as a version with `description`; returns its qualified ARN.
    async fn publish_version(&self, name: &str, description: &str) -> Result<String, AwsError>;
    /// The alias, or None when missing.
    async fn get_alias(&self, name: &str, alias: &str) -> Result<Option<ObservedAlias>, AwsError>;
    /// Creates the alias at `version`, or points it there with no weighted routing.
    async fn set_alias(&self, name: &str, alias: &str, version: &str, create: bool) -> Result<(), AwsError>;
    /// Points the alias at `stable` with `weight` (0 to 1) of the invocations routed to
    /// `version` (weighted routing, AdditionalVersionWeights).
    async fn route_alias(&self, name: &str, alias: &str, stable: &str, version: &str, weight: f64) -> Result<(), AwsError>;
    /// The provisioned concurrency configured on `qualifier` (an alias): (requested, status
    /// IN_PROGRESS/READY/FAILED), or None when there is none.
    async fn get_provisioned_concurrency(&self, name: &str, qualifier: &str) -> Result<Option<(i32, String)>, AwsError>;
    /// Sets (Some) or removes (None) the provisioned concurrency of `qualifier`.
    async fn set_provisioned_concurrency(&self, name: &str, qualifier: &str, n: Option<i32>) -> Result<(), AwsError>;
    /// Sets (Some) or removes (None) reserved concurrency.
    async fn set_reserved_concurrency(&self, name: &str, reserved: Option<i32>) -> Result<(), AwsError>;
    /// Deletes the function with its versions and aliases (its code in S3 stays); a function
    /// already gone is a success.
    async fn delete_function(&self, name: &str) -> Result<(), AwsError>;
    /// Adds or overwrites tags.
    async fn tag_function(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError>;

    /// Invoke: `name` at version `qualifier`, synchronously (RequestResponse), with `payload`
    /// (JSON) and the log tail asked for.
    async fn invoke(&self, name: &str, qualifier: &str, payload: &str) -> Result<Invoked, AwsError>;
}

/// The CloudWatch operations shipshape uses.
#[async_trait]
pub trait CloudWatch: Send + Sync {
    /// (name, state) of each named alarm that exists (metric and composite alarms): OK,
    /// ALARM or INSUFFICIENT_DATA.
    async fn alarm_states(&self, names: &[String]) -> Result<Vec<(String, String)>, AwsError>;
}

/// The CloudWatch Logs operations shipshape uses.
#[async_trait]
pub trait Logs: Send + Sync {
    /// The last `lines` lines of a log stream (GetLogEvents from the end), oldest first.
    async fn tail(&self, group: &str, stream: &str, lines: usize) -> Result<Vec<String>, AwsError>;
}

/// What a synchronous Lambda invocation returned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Invoked {
    /// Lambda's request id.
    pub request_id: Option<String>,
    /// `X-Amz-Function-Error` (Unhandled, Handled…), when the function failed.
    pub function_error: Option<String>,
    /// The response payload, cut at 1000 characters.
    pub payload: String,
    /// The last lines of the invocation's log (LogType Tail: its last 4 KB).
    pub log_tail: Vec<String>,
}

/// How a RunTask error begins when ECS answered with `failures` and no task (it could not
/// place it).
pub const NOT_PLACED: &str = "ECS did not start the task: ";

/// A one-off task to run (a step before traffic).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRequest {
    /// Cluster name.
    pub cluster: String,
    /// Task definition ARN (the new revision).
    pub task_definition: String,
    /// The container whose command is overridden.
    pub container: String,
    /// The command.
    pub command: Vec<String>,
    /// ECS's `startedBy`: finds the task again after a restart.
    pub started_by: String,
    /// ECS's idempotency token.
    pub client_token: String,
    /// awsvpc placement (the Environment's).
    pub subnets: Vec<String>,
    /// Security groups.
    pub security_groups: Vec<String>,
    /// Public IP.
    pub assign_public_ip: bool,
    /// Tags (the release's ownership).
    pub tags: BTreeMap<String, String>,
}

/// An EventBridge rule as AWS shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedRule {
    /// ARN.
    pub arn: String,
    /// Event pattern (JSON).
    pub pattern: Option<String>,
    /// ENABLED or DISABLED.
    pub state: String,
}

/// An SQS queue as AWS shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedQueue {
    /// Queue URL.
    pub url: String,
    /// Queue ARN.
    pub arn: String,
    /// Its resource policy (JSON).
    pub policy: Option<String>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// One SQS message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueMessage {
    /// Message id (for batch deletion).
    pub id: String,
    /// Receipt handle.
    pub receipt: String,
    /// Body (an EventBridge event, untrusted).
    pub body: String,
}

/// An Environment's event queue (SQS) and rule (EventBridge).
#[async_trait]
pub trait EventQueue: Send + Sync {
    /// The queue named `name` (in `account`, when given), with its ARN, policy and tags; None
    /// when it does not exist.
    async fn describe_queue(&self, name: &str, account: Option<&str>) -> Result<Option<ObservedQueue>, AwsError>;
    /// Creates the queue (encrypted, 1-day retention, 20 s long polls), tagged; returns its URL.
    async fn create_queue(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<String, AwsError>;
    /// Sets the queue's resource policy.
    async fn set_queue_policy(&self, url: &str, policy: &str) -> Result<(), AwsError>;
    /// Deletes the queue.
    async fn delete_queue(&self, url: &str) -> Result<(), AwsError>;
    /// Long-polls the queue: at most `max` messages, waiting up to `wait`.
    async fn receive(&self, url: &str, wait: Duration, max: i32) -> Result<Vec<QueueMessage>, AwsError>;
    /// Deletes handled messages (`(id, receipt)`).
    async fn delete_messages(&self, url: &str, handled: &[(String, String)]) -> Result<(), AwsError>;
    /// The rule named `name`, or None.
    async fn describe_rule(&self, name: &str) -> Result<Option<ObservedRule>, AwsError>;
    /// The rule's tags.
    async fn rule_tags(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError>;
    /// Creates or updates the rule (enabled, `pattern`), tagged on creation; returns its ARN.
    async fn put_rule(&self, name: &str, pattern: &str, tags: &BTreeMap<String, String>) -> Result<String, AwsError>;
    /// The ARNs the rule delivers to.
    async fn rule_targets(&self, rule: &str) -> Result<Vec<String>, AwsError>;
    /// Makes the rule deliver to `queue_arn`.
    async fn put_target(&self, rule: &str, queue_arn: &str) -> Result<(), AwsError>;
    /// Removes the rule's targets and the rule.
    async fn delete_rule(&self, rule: &str) -> Result<(), AwsError>;
    /// Puts a heartbeat event for `environment` on the account's default event bus.
    async fn put_heartbeat(&self, environment: &str) -> Result<(), AwsError>;
}

/// The clients of one Environment.
#[derive(Clone)]
pub struct AwsClients {
    /// ECS.
    pub ecs: Arc<dyn Ecs>,
    /// RDS.
    pub rds: Arc<dyn Rds>,
    /// S3.
    pub s3: Arc<dyn S3>,
    /// DynamoDB.
    pub dynamodb: Arc<dyn Dynamo>,
    /// ElastiCache.
    pub elasticache: Arc<dyn ElastiCache>,
    /// Lambda.
    pub lambda: Arc<dyn Lambda>,
    /// STS.
    pub sts: Arc<dyn Sts>,
    /// CloudWatch (alarms judging rollouts).
    pub cloudwatch: Arc<dyn CloudWatch>,
    /// CloudWatch Logs (the output of a step's task).
    pub logs: Arc<dyn Logs>,
    /// SQS and EventBridge (the Environment's event queue).
    pub events: Arc<dyn EventQueue>,
    /// The credentials behind these clients (to sign other requests with, e.g. Prometheus
    /// queries to Amazon Managed Service for Prometheus); None for test fakes.
    pub credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
}

/// Where an Environment's clients point.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Environment name (one rate limiter per environment and service).
    pub environment: String,
    /// Region.
    pub region: String,
    /// Role to assume.
    pub role_arn: Option<String>,
}

/// Builds (and caches) the clients of an Environment.
#[async_trait]
pub trait AwsProvider: Send + Sync {
    /// Clients for `target`.
    async fn clients(&self, target: &Target) -> Result<AwsClients, AwsError>;
}

/// How urgent a reconcile's AWS calls are. A rate limit shared by a whole Environment
/// serves the most urgent waiting call first: a rollout in flight (judging it, rolling it
/// back) before a rollout being started, and both before a drift check — so a rollback
/// never waits behind a wave of new rollouts, and a bad version serves no longer than
/// AWS's answers take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Work {
    /// A drift check: at most [`DRIFT_SHARE`] of the read rate, and only while nothing else waits.
    Drift,
    /// Anything else (a rollout started, a stack changed): the default.
    Rollout,
    /// A rollout in flight: its reads, verdict and rollback.
    InFlight,
}

tokio::task_local! {
    static WORK: Work;
}

/// Runs `f` as drift work: its AWS reads wait for the drift share of the read budget
/// ([`DRIFT_SHARE`]) and for every waiting read of other work, so those always find room,
/// however many drift checks are queued.
pub async fn as_drift<F: Future>(f: F) -> F::Output {
    WORK.scope(Work::Drift, f).await
}

/// Runs `f` as `work` (its calls wait their turn as such).
pub async fn as_work<F: Future>(work: Work, f: F) -> F::Output {
    WORK.scope(work, f).await
}

/// The work the current task does (Rollout unless said otherwise).
pub fn work() -> Work {
    WORK.try_with(|w| *w).unwrap_or(Work::Rollout)
}

/// The part of an (environment, service)'s read rate that drift reads may use, in percent.
pub const DRIFT_SHARE: u32 = 75;

/// The one path every AWS call takes: rate limiters per (environment, service) — one for
/// reads, one for writes, so a rollback's UpdateService never waits behind a queue of drift
/// reads —, each serving the most urgent [`Work`] waiting first (drift reads also use at
/// most [`DRIFT_SHARE`] of the read rate), retries of throttles and transient failures with
/// jittered backoff, and a metric per attempt. A throttle slows every later call of that
/// (environment, service) down for a while: AWS throttles per account and Region, so the
/// whole Environment backs off together.
pub struct Caller {
    service: &'static str,
    reads: DefaultDirectRateLimiter,
    drift_reads: DefaultDirectRateLimiter,
    /// Reads waiting for the budget, by work (index: `Work as usize`; drift's is unused).
    reads_waiting: [AtomicUsize; 3],
    writes: DefaultDirectRateLimiter,
    /// Writes waiting for the budget, by work.
    writes_waiting: [AtomicUsize; 3],
    metrics: Metrics,
    attempts: u32,
    base_delay: Duration,
    /// Until when calls wait after a throttle (shared by every caller of the Environment's service).
    slow_until: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Counts a waiter for as long as it lives (also when its future is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Waiting(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether an operation changes something (a write) or only reads.
pub fn is_write(op: &str) -> bool {
    !["Describe", "Get", "List", "Head"].iter().any(|p| op.starts_with(p))
}

/// Takes a token of `limiter` once no more urgent call waits for one (`waiting`: the waiters
/// of every work, `work`'s own included): the most urgent waiting work goes first.
async fn take_turn(limiter: &DefaultDirectRateLimiter, waiting: &[AtomicUsize; 3], work: Work) {
    use governor::clock::{Clock, DefaultClock};
    let _me = Waiting::new(&waiting[work as usize]);
    let clock = DefaultClock::default();
    loop {
        while waiting[(work as usize).saturating_add(1)..].iter().any(|w| w.load(Ordering::Acquire) > 0) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match limiter.check() {
            Ok(()) => return,
            Err(not_until) => tokio::time::sleep(not_until.wait_time_from(clock.now())).await,
        }
    }
}

impl Caller {
    /// A caller for one (environment, service) allowing `per_second` reads and as many writes.
    pub fn new(service: &'static str, per_second: u32, metrics: Metrics) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let drift_rate = NonZeroU32::new(per_second.saturating_mul(DRIFT_SHARE) / 100).unwrap_or(NonZeroU32::MIN);
        Caller {
            service,
            reads: RateLimiter::direct(Quota::per_second(rate)),
            drift_reads: RateLimiter::direct(Quota::per_second(drift_rate)),
            reads_waiting: Default::default(),
            writes: RateLimiter::direct(Quota::per_second(rate)),
            writes_waiting: Default::default(),
            metrics,
            attempts: 4,
            base_delay: Duration::from_millis(200),
            slow_until: std::sync::Mutex::new(None),
        }
    }

    async fn wait_turn(&self, op: &str) {
        let pause = self.slow_until.lock().ok().and_then(|s| *s).and_then(|until| until.checked_duration_since(std::time::Instant::now()));
        if let Some(p) = pause {
            tokio::time::sleep(p).await;
        }
        let work = work();
        if is_write(op) {
            take_turn(&self.writes, &self.writes_waiting, work).await;
        } else {
            if work == Work::Drift {
                // Drift reads go last, within their share: while other reads wait, they hold back.
                while self.reads_waiting[Work::Rollout as usize..].iter().any(|w| w.load(Ordering::Acquire) > 0) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                self.drift_reads.until_ready().await;
            }
            take_turn(&self.reads, &self.reads_waiting, work).await;
        }
    }

    /// Runs `f` under the limiter, retrying what is retryable.
    pub async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, AwsError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, AwsError>>,
    {
        let mut attempt = 1;
        loop {
            self.wait_turn(op).await;
            let result = f().await;
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.outcome(),
            };
            self.metrics.aws_requests.with_label_values(&[self.service, op, outcome]).inc();
            if matches!(result, Err(AwsError::Throttled { .. })) {
                self.metrics.aws_throttles.with_label_values(&[self.service, op]).inc();
                let wait = backoff(attempt, self.base_delay, Duration::from_secs(5), rand::random());
                if let Ok(mut s) = self.slow_until.lock() {
                    let until = std::time::Instant::now() + wait;
                    *s = Some(s.map_or(until, |prev| prev.max(until)));
                }
            }
            match result {
                // A synchronous invocation is not idempotent: one that may have run (the
                // answer lost) is not made again; only a throttled one (refused) is.
                Err(e) if e.retryable() && attempt < self.attempts && (op != "Invoke" || matches!(e, AwsError::Throttled { .. })) => {
                    tokio::time::sleep(backoff(attempt, self.base_delay, Duration::from_secs(5), rand::random())).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// The caller identity, asked once per Environment and then remembered for a while (it
/// changes only with the credentials): every reconcile used to call GetCallerIdentity.
pub struct CachedSts {
    inner: Arc<dyn Sts>,
    ttl: Duration,
    cached: tokio::sync::Mutex<Option<(String, std::time::Instant)>>,
    arn: tokio::sync::Mutex<Option<(Option<String>, std::time::Instant)>>,
}

impl CachedSts {
    /// Remembers `inner`'s answer for `ttl`.
    pub fn new(inner: Arc<dyn Sts>, ttl: Duration) -> Self {
        CachedSts { inner, ttl, cached: tokio::sync::Mutex::new(None), arn: tokio::sync::Mutex::new(None) }
    }
}

#[async_trait]
impl Sts for CachedSts {
    async fn caller_account(&self) -> Result<String, AwsError> {
        let mut cached = self.cached.lock().await;
        if let Some((account, at)) = cached.as_ref() {
            if at.elapsed() < self.ttl {
                return Ok(account.clone());
            }
        }
        let account = self.inner.caller_account().await?;
        *cached = Some((account.clone(), std::time::Instant::now()));
        Ok(account)
    }

    async fn caller_arn(&self) -> Result<Option<String>, AwsError> {
        let mut cached = self.arn.lock().await;
        if let Some((arn, at)) = cached.as_ref() {
            if at.elapsed() < self.ttl {
                return Ok(arn.clone());
            }
        }
        let arn = self.inner.caller_arn().await?;
        *cached = Some((arn.clone(), std::time::Instant::now()));
        Ok(arn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Calls `op` on `caller` as `work` after `after`; returns when it was made.
    fn call_as(caller: &Arc<Caller>, work: Work, op: &'static str, after: Duration) -> tokio::task::JoinHandle<Instant> {
        let caller = caller.clone();
        tokio::spawn(as_work(work, async move {
            tokio::time::sleep(after).await;
            caller.call(op, || async { Ok::<_, AwsError>(Instant::now()) }).await.unwrap_or_else(|_| Instant::now())
        }))
    }

    #[tokio::test]
    async fn a_rollout_in_flight_calls_before_rollouts_being_started_and_drift_checks() {
        // Two calls a second: the burst spent, every later call waits ~500 ms for a token.
        let caller = Arc::new(Caller::new("ecs", 2, Metrics::new()));
        for _ in 0..2 {
            caller.call("UpdateService", || async { Ok::<_, AwsError>(()) }).await.ok();
            caller.call("DescribeServices", || async { Ok::<_, AwsError>(()) }).await.ok();
        }
        // Three rollouts started wait for writes, then a rollback comes: it goes first.
        let started: Vec<_> = (0..3).map(|_| call_as(&caller, Work::Rollout, "UpdateService", Duration::ZERO)).collect();
        let rollback = call_as(&caller, Work::InFlight, "UpdateService", Duration::from_millis(50));
        // Reads: a drift check and a rollout's read wait, then an in-flight read comes.
        let drift = call_as(&caller, Work::Drift, "DescribeServices", Duration::ZERO);
        let start_read = call_as(&caller, Work::Rollout, "ListTaskDefinitions", Duration::ZERO);
        let verdict_read = call_as(&caller, Work::InFlight, "DescribeServices", Duration::from_millis(50));
        let rollback = rollback.await.unwrap_or_else(|_| Instant::now());
        for s in started {
            let s = s.await.unwrap_or_else(|_| Instant::now());
            assert!(rollback < s, "the rollback waited behind a rollout being started");
        }
        let (drift, start_read, verdict_read) = (
            drift.await.unwrap_or_else(|_| Instant::now()),
            start_read.await.unwrap_or_else(|_| Instant::now()),
            verdict_read.await.unwrap_or_else(|_| Instant::now()),
        );
        assert!(verdict_read < start_read && start_read < drift, "reads in order of urgency");
    }

    #[tokio::test]
    async fn work_is_rollout_unless_said_otherwise_and_scopes_nest() {
        assert_eq!(work(), Work::Rollout);
        as_drift(async { assert_eq!(work(), Work::Drift) }).await;
        as_work(Work::InFlight, async {
            assert_eq!(work(), Work::InFlight);
            as_drift(async { assert_eq!(work(), Work::Drift) }).await;
            assert_eq!(work(), Work::InFlight);
        })
        .await;
    }
}
