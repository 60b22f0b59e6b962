//! `ServiceRelease`: one ECS service or Lambda function at one git SHA, rolled out and judged
//! on health metrics.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{bounds, duration_rule, Condition, GitSha, GoDuration};

/// One ECS service or Lambda function at one git SHA.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "shipshape.dev",
    version = "v1alpha1",
    kind = "ServiceRelease",
    namespaced,
    shortname = "release",
    category = "shipshape",
    status = "ServiceReleaseStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"SHA","type":"string","jsonPath":".spec.image.gitSha"}"#,
    printcolumn = r#"{"name":"Stable","type":"string","jsonPath":".status.stableSha"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".status.rollout.weight"}"#,
    printcolumn = r#"{"name":"Step","type":"string","jsonPath":".status.rollout.stepText"}"#,
    printcolumn = r#"{"name":"Stage","type":"string","jsonPath":".status.rollout.stage"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new(
        "has(self.spec.task) != has(self.spec.function) && (has(self.spec.task) ? size(self.spec.image.repository) > 0 : has(self.spec.function.s3) || size(self.spec.image.repository) > 0)"
    ).message("a ServiceRelease has exactly one of task (an ECS service) or function (a Lambda function); image.repository is needed unless the function's code comes from s3")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.service) == has(oldSelf.service) && (!has(self.service) || self.service == oldSelf.service) && has(self.function) == has(oldSelf.function)").message(
    "service and the kind of target (task or function) are immutable: another would create a second ECS service or Lambda function and leave the old one running unmanaged; create a new ServiceRelease instead"
))]
pub struct ServiceReleaseSpec {
    /// Name of the Environment (immutable).
    #[x_kube(validation = Rule::new("self == oldSelf").message("environment is immutable; create a new ServiceRelease instead"))]
    #[schemars(length(min = 1))]
    pub environment: String,
    /// ECS service or Lambda function name (default: metadata.name; immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[A-Za-z0-9_-]{1,255}$"), length(max = 255))]
    pub service: Option<String>,
    /// A StackSpec to wait for and whose outputs join the container env.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// The git SHA, and the image repository (ECS, or a Lambda function from an image).
    pub image: ImageSpec,
    /// Task definition settings: the release is an ECS service (exactly one of `task` and
    /// `function`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskSpec>,
    /// Lambda function settings: the release is a Lambda function, released by moving its
    /// alias to a version published for the SHA (exactly one of `task` and `function`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionSpec>,
    /// Desired task count (ECS).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// How rollouts proceed and are judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,
    /// When true no new rollout starts; rollbacks still happen.
    #[serde(default)]
    pub paused: bool,
    /// How many history entries to keep.
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub history_limit: i32,
    /// What deleting the ServiceRelease does: `Retain` (default) leaves the ECS service (or
    /// Lambda function) running; `Delete` scales the ECS service to 0 and deletes it (its task
    /// definitions stay), or deletes the Lambda function (its code in S3 stays). Only what
    /// carries this release's owner tag is ever deleted.
    #[serde(default)]
    pub deletion_policy: ReleaseDeletionPolicy,
    /// How often the ECS service is re-read to correct drift (default 60s).
    #[x_kube(validation = duration_rule(bounds::DRIFT_INTERVAL, "driftInterval"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_interval: Option<GoDuration>,
    /// The load balancer of an ECS service (each field missing here comes from the
    /// Environment's `loadBalancer`): its tasks register in `targetGroupArn` on container port
    /// `task.port`. A `canary`, `linear` or `blueGreen` strategy also needs the alternate
    /// target group, the production listener rule and the role ECS uses for Elastic Load
    /// Balancing: ECS shifts the rule's weights between the two groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSpec>,
    /// Promotion across stages: a new SHA is rolled out only once the release `from` (an
    /// earlier stage, in any namespace and Environment) has been Healthy on it for `soak`,
    /// and, with `approval: Manual`, once someone approved that SHA
    /// (`shipshape approve NAME`, the annotation `shipshape.dev/approve: <sha>`). Rollbacks
    /// never wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionSpec>,
}

/// Where a release's SHAs come from, and who lets them through.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionSpec {
    /// The upstream stage: a ServiceRelease of the same image repository (or function code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ReleaseRef>,
    /// How long the upstream must have been Healthy on the SHA (0s to 7d; default 0s).
    #[x_kube(validation = duration_rule(bounds::SOAK, "soak"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<GoDuration>,
    /// `Auto` (default): a proven SHA starts by itself. `Manual`: it also waits for an
    /// approval naming it.
    #[serde(default)]
    pub approval: super::Approval,
}

/// A ServiceRelease in some namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRef {
    /// Its namespace (default: this release's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub namespace: Option<String>,
    /// Its name.
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"))]
    pub name: String,
}

/// Load balancer wiring of an ECS service (ECS `loadBalancers` and its
/// `advancedConfiguration`); every field optional so an Environment can give defaults.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    /// The production target group (the stable revision's tasks serve from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), pattern(r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:targetgroup/.+$"))]
    pub target_group_arn: Option<String>,
    /// The alternate target group: the new revision's tasks, while traffic shifts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), pattern(r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:targetgroup/.+$"))]
    pub alternate_target_group_arn: Option<String>,
    /// The listener rule (or listener) whose weighted forward ECS moves between the groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), pattern(r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:listener(-rule)?/.+$"))]
    pub production_listener_rule: Option<String>,
    /// A listener rule for test traffic, sent to the new revision before production traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), pattern(r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:listener(-rule)?/.+$"))]
    pub test_listener_rule: Option<String>,
    /// The IAM role ECS assumes to change the listener rules (ECS "infrastructure role for
    /// load balancers").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), pattern(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$"))]
    pub role_arn: Option<String>,
}

impl LoadBalancerSpec {
    /// Each field from `self`, else from `defaults`.
    pub fn or(&self, defaults: Option<&LoadBalancerSpec>) -> LoadBalancerSpec {
        let d = defaults.cloned().unwrap_or_default();
        LoadBalancerSpec {
            target_group_arn: self.target_group_arn.clone().or(d.target_group_arn),
            alternate_target_group_arn: self.alternate_target_group_arn.clone().or(d.alternate_target_group_arn),
            production_listener_rule: self.production_listener_rule.clone().or(d.production_listener_rule),
            test_listener_rule: self.test_listener_rule.clone().or(d.test_listener_rule),
            role_arn: self.role_arn.clone().or(d.role_arn),
        }
    }
}

fn default_replicas() -> i32 {
    1
}
fn default_history_limit() -> i32 {
    10
}
fn default_true() -> bool {
    true
}

/// The container image: `<repository>:<gitSha>`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Image repository, e.g. an ECR repository URI (not needed for a Lambda function whose
    /// code comes from S3).
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub repository: String,
    /// The git SHA; also the image tag.
    pub git_sha: GitSha,
}

/// Task definition settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// CPU units (256 = .25 vCPU).
    #[schemars(range(min = 128, max = 16384))]
    pub cpu: i32,
    /// Memory in MiB.
    #[schemars(range(min = 128, max = 122880))]
    pub memory: i32,
    /// Container port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Command override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Secrets injected by ECS from Secrets Manager or SSM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretEnv>,
    /// Task execution role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// Task role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    /// Container health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// CloudWatch Logs group for the container's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_group: Option<String>,
}

/// A Lambda function: its code for the SHA (a zip in S3, or the image
/// `<image.repository>:<gitSha>`) and configuration. A new SHA or configuration updates the
/// function, publishes a version (one per content hash) and moves the alias to it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionSpec {
    /// Code from S3; absent: the container image `<image.repository>:<gitSha>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Code>,
    /// Runtime, e.g. nodejs20.x (zip code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub runtime: Option<String>,
    /// Handler, e.g. index.handler (zip code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub handler: Option<String>,
    /// Memory in MB.
    #[serde(default = "default_memory")]
    #[schemars(range(min = 128, max = 10240))]
    pub memory: i32,
    /// Timeout in seconds.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 900))]
    pub timeout_seconds: i32,
    /// x86_64 (default) or arm64.
    #[serde(default)]
    pub architecture: Architecture,
    /// Environment variables (the StackSpec's outputs are added, as for ECS).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The execution role (default: the Environment's `functionRoleArn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$"), length(max = 2048))]
    pub role_arn: Option<String>,
    /// Reserved concurrency (none: the account's unreserved pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub reserved_concurrency: Option<i32>,
    /// Provisioned concurrency on the alias: execution environments kept initialized for
    /// it (none: none kept; at most `reservedConcurrency` when that is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub provisioned_concurrency: Option<i32>,
    /// The alias callers invoke (default `live`), moved to each released version.
    #[serde(default = "default_alias")]
    #[schemars(pattern(r"^[a-zA-Z][a-zA-Z0-9_-]{0,127}$"))]
    pub alias: String,
}

fn default_memory() -> i32 {
    128
}
fn default_timeout() -> i32 {
    3
}
fn default_alias() -> String {
    "live".into()
}

/// A zip in S3: `key` may hold `{{sha}}`, e.g. `builds/{{sha}}.zip`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Code {
    /// Bucket.
    #[schemars(pattern(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"))]
    pub bucket: String,
    /// Object key; `{{sha}}` is replaced with the git SHA.
    #[schemars(length(min = 1, max = 1024))]
    pub key: String,
}

/// Lambda instruction set architectures.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Architecture {
    /// x86_64.
    #[default]
    #[serde(rename = "x86_64")]
    X86_64,
    /// arm64.
    #[serde(rename = "arm64")]
    Arm64,
}

/// A secret environment variable.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretEnv {
    /// Variable name.
    pub name: String,
    /// Secrets Manager or SSM parameter ARN.
    #[schemars(pattern(r"^arn:aws[a-z-]*:(secretsmanager|ssm):.+$"))]
    pub value_from: String,
}

/// A container health check.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Command, e.g. ["CMD-SHELL", "curl -f http://localhost:3000/health || exit 1"].
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// Between checks.
    #[x_kube(validation = duration_rule(bounds::HEALTH_CHECK_INTERVAL, "healthCheck.interval"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    /// Per check.
    #[x_kube(validation = duration_rule(bounds::HEALTH_CHECK_TIMEOUT, "healthCheck.timeout"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    /// Failures before unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub retries: Option<i32>,
    /// Grace period after start.
    #[x_kube(validation = duration_rule(bounds::HEALTH_CHECK_START_PERIOD, "healthCheck.startPeriod"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<GoDuration>,
}

/// How a rollout proceeds and is judged.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Extra tasks during a deployment, in percent of replicas.
    #[serde(default = "default_surge")]
    #[schemars(range(min = 0, max = 100))]
    pub max_surge_percent: i32,
    /// Tasks kept healthy during a deployment, in percent of replicas.
    #[serde(default = "default_min_healthy")]
    #[schemars(range(min = 0, max = 100))]
    pub min_healthy_percent: i32,
    /// Fail the rollout when it has not become Healthy in this time (default 10m).
    #[x_kube(validation = duration_rule(bounds::PROGRESS_DEADLINE, "progressDeadline"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<GoDuration>,
    /// Metric analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSpec>,
    /// Point the service back at the stable task definition on failure (default true).
    #[serde(default = "default_true")]
    pub auto_rollback: bool,
    /// What a round does when the metrics backend cannot answer (down, 401/403, 5xx,
    /// timeout): `Hold` (default) waits, with the progress deadline extended by the outage;
    /// `Rollback` counts it as a failed round.
    #[serde(default)]
    pub on_analysis_unavailable: UnavailablePolicy,
    /// What a failed analysis does: `Rollback` (default, with autoRollback) or `Pause`:
    /// hold the rollout where it is (its traffic step included) until `shipshape promote`
    /// or `shipshape rollback`.
    #[serde(default)]
    pub on_failure: FailurePolicy,
    /// How traffic moves to a new version: none of the three is `Rolling` (everything at
    /// once, judged by the analysis); `canary`, `linear` or `blueGreen` step the traffic and
    /// judge each step (Lambda functions: the alias's weighted routing; ECS services: ECS's
    /// own CANARY, LINEAR or BLUE_GREEN deployment on the `loadBalancer`'s listener rule,
    /// paused by shipshape's PAUSE lifecycle hooks wherever a step is judged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Steps before traffic (migrations): run one at a time, in order, after the new task
    /// definition is registered and before any traffic moves to it. Each is a one-off ECS
    /// task from the new revision (its image, environment and secrets) with the container's
    /// command overridden; the rollout goes on only when it exits 0. A step that fails (a
    /// non-zero exit, its timeout, a task that cannot start or is stopped) fails the rollout
    /// with the service untouched (reason `PreDeployFailed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub pre_deploy: Vec<PreDeployStep>,
    /// How many of this release's own snapshots before a step (`preDeploy[].snapshot`) to keep
    /// per database, the newest; older ones are deleted once a new one is available. Unset:
    /// every snapshot is kept (shipshape deletes none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub snapshot_retention: Option<i32>,
    /// Releases of this namespace that go first: a new rollout starts only when each of them
    /// is Healthy at its current generation (the API before its front end, from one commit).
    /// A cycle is InvalidSpec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(pattern(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")))]
    pub after: Vec<String>,
}

/// One step before traffic.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreDeployStep {
    /// Name shown in status, Events and `shipshape status`.
    #[schemars(pattern(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    pub name: String,
    /// ECS: the command the task runs instead of the container's (e.g. `["php", "artisan",
    /// "migrate", "--force"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 4096)))]
    pub command: Vec<String>,
    /// Lambda: the JSON event the new version is invoked with, synchronously (default `{}`);
    /// a function error fails the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 65536))]
    pub payload: Option<String>,
    /// How long the task may run before shipshape stops it and fails the rollout (default
    /// 30m, at most 2h).
    #[x_kube(validation = duration_rule(bounds::PRE_DEPLOY_TIMEOUT, "timeout"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    /// A database of the release's StackSpec (its `databases[].name`): a manual RDS snapshot
    /// `<db>-pre-<short sha>-<UTC time>` is taken, and waited for, before the step runs.
    /// Kept unless `snapshotRetention` says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub snapshot: Option<String>,
    /// Once this step has succeeded the rollout is never rolled back automatically: a
    /// failing verdict holds it (`RollbackUnsafe`) until a person decides (`shipshape
    /// rollback` or `promote`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub irreversible: bool,
}

/// How traffic moves to a new version (at most one of the three; none is Rolling). A
/// release's first version, with nothing stable to compare with, takes all traffic at once.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.canary) ? 1 : 0) + (has(self.linear) ? 1 : 0) + (has(self.blueGreen) ? 1 : 0) <= 1").message(
    "strategy takes at most one of canary, linear and blueGreen (none is Rolling)"
))]
pub struct Strategy {
    /// `percent` of the traffic on the new version for `bake` (judged by the analysis), then
    /// all of it (judged again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    /// `stepPercent` more of the traffic every `stepBake` while the analysis passes, then all
    /// of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear: Option<LinearStrategy>,
    /// All traffic at once, the old version kept to go back to during `bake`: promoted once
    /// the bake is over and the analysis passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
}

/// A canary step.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// Traffic on the new version during the canary, in percent.
    #[schemars(range(min = 1, max = 99))]
    pub percent: i32,
    /// Least time at `percent` (default 0s: as long as the analysis needs).
    #[x_kube(validation = duration_rule(bounds::BAKE, "canary.bake"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<GoDuration>,
}

/// Equal traffic steps.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinearStrategy {
    /// Traffic added at each step, in percent (the last step takes the rest).
    #[schemars(range(min = 1, max = 99))]
    pub step_percent: i32,
    /// Least time at each step (default 0s: as long as the analysis needs).
    #[x_kube(validation = duration_rule(bounds::BAKE, "linear.stepBake"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_bake: Option<GoDuration>,
}

/// All at once with a bake.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStrategy {
    /// Least time on the new version before it is promoted (default 0s).
    #[x_kube(validation = duration_rule(bounds::BAKE, "blueGreen.bake"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<GoDuration>,
}

/// What deleting a ServiceRelease does to what it runs.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ReleaseDeletionPolicy {
    /// Leave the ECS service or Lambda function running.
    #[default]
    Retain,
    /// Delete it (ECS: scaled to 0 first; task definitions kept).
    Delete,
}

/// What a failed analysis does.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum FailurePolicy {
    /// Roll back to the stable version (when autoRollback).
    #[default]
    Rollback,
    /// Hold where it is and wait for promote or rollback by hand.
    Pause,
}

/// What an analysis round does when the metrics backend cannot answer.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum UnavailablePolicy {
    /// Hold the rollout where it is until the backend answers; never roll back for it.
    #[default]
    Hold,
    /// Count the round as failed (subject to failureLimit).
    Rollback,
}

fn default_surge() -> i32 {
    100
}
fn default_min_healthy() -> i32 {
    100
}

/// Metric analysis of a rollout.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    /// Wait after the deployment completes before the first measurement.
    #[x_kube(validation = duration_rule(bounds::WARMUP, "warmup"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<GoDuration>,
    /// Between measurement rounds (default 30s).
    #[x_kube(validation = duration_rule(bounds::ANALYSIS_INTERVAL, "analysis.interval"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    /// Passing rounds in a row needed to promote.
    #[serde(default = "default_successful_runs")]
    #[schemars(range(min = 1, max = 100))]
    pub successful_runs: i32,
    /// Failed rounds tolerated; one more fails the rollout.
    #[serde(default = "default_failure_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub failure_limit: i32,
    /// Prometheus queries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<AnalysisQuery>,
    /// CloudWatch alarm names; any in ALARM is a failed round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cloudwatch_alarms: Vec<String>,
    /// Smoke tests (ECS releases): each is a one-off task of the new revision with the
    /// container's command overridden; exit 0 passes a round, anything else fails it. A
    /// round while the task runs is inconclusive; the next round starts a new task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub jobs: Vec<AnalysisJob>,
    /// HTTP checks made by the controller each round (a health endpoint of the new version).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub http: Vec<HttpCheck>,
}

/// A smoke test run as an ECS task of the new revision.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisJob {
    /// Name shown in status (`job:<name>`) and metrics.
    #[schemars(pattern(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    pub name: String,
    /// The command (e.g. `["npm", "run", "test:smoke"]`).
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 4096)))]
    pub command: Vec<String>,
    /// How long the task may run before it is stopped and the round fails (default 10m, at
    /// most 2h).
    #[x_kube(validation = duration_rule(bounds::PRE_DEPLOY_TIMEOUT, "timeout"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    /// Measured and shown, never deciding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// An HTTP check made by the controller.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.bodyContains) && has(self.jsonPath)) && (!has(self.equals) || has(self.jsonPath))").message(
    "an http check takes bodyContains or jsonPath (with equals), not both; equals needs jsonPath"
))]
pub struct HttpCheck {
    /// Name shown in status (`http:<name>`) and metrics.
    #[schemars(pattern(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    pub name: String,
    /// http(s) URL; may use the placeholders of queries ({{service}}, {{namespace}},
    /// {{sha}}, {{stableSha}}, {{revision}}, …).
    #[schemars(length(min = 1, max = 2048), pattern(r"^https?://"))]
    pub url: String,
    /// GET (default), HEAD or POST.
    #[serde(default)]
    pub method: HttpMethod,
    /// A Secret in the release's namespace whose keys are header names and values their
    /// values (e.g. Authorization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_secret_ref: Option<LocalSecretRef>,
    /// Passing status codes: codes (`"204"`) or ranges (`"200-399"`, the default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10), inner(pattern(r"^[1-5][0-9][0-9](-[1-5][0-9][0-9])?$")))]
    pub expect_status: Vec<String>,
    /// The body must contain this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub body_contains: Option<String>,
    /// A JSONPath (RFC 9535, e.g. `$.status`) into the JSON body that must match something;
    /// with `equals`, its value must equal that (a string, or a number or boolean's text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub json_path: Option<String>,
    /// The value `jsonPath` must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub equals: Option<String>,
    /// Time limit of the call (default 10s, at most 60s).
    #[x_kube(validation = duration_rule(bounds::HTTP_CHECK_TIMEOUT, "timeout"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    /// Measured and shown, never deciding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// An HTTP method of a check.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET.
    #[default]
    Get,
    /// HEAD.
    Head,
    /// POST (no body).
    Post,
}

/// A Secret in the object's own namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct LocalSecretRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn default_successful_runs() -> i32 {
    3
}
fn default_failure_limit() -> i32 {
    1
}

/// One PromQL query with its thresholds.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisQuery {
    /// Name shown in status and metrics.
    #[schemars(pattern(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    pub name: String,
    /// PromQL; may use {{service}}, {{namespace}}, {{sha}}, {{stableSha}}, and {{revision}} (the task
    /// definition revision or Lambda version judged); Lambda also {{function}}, {{version}},
    /// {{stableVersion}}, {{alias}}.
    #[schemars(length(min = 1))]
    pub prometheus: String,
    /// Lowest passing value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Highest passing value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// What a query without samples counts as.
    #[serde(default)]
    pub no_data: NoDataPolicy,
    /// Measured and shown (status, metrics), never deciding: to try a query out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// Verdict for a query that returned no sample.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum NoDataPolicy {
    /// Hold; fail only at the progress deadline.
    #[default]
    Inconclusive,
    /// Count as passing.
    Pass,
    /// Count as failing.
    Fail,
}

/// Phase of a release.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Phase {
    /// Not started.
    #[default]
    Pending,
    /// The ECS deployment is rolling out.
    Progressing,
    /// Health metrics are being judged.
    Analyzing,
    /// Promoted: this SHA is stable.
    Healthy,
    /// Failed; the service is being pointed back at the stable task definition (ECS has
    /// not accepted that yet).
    RollingBack,
    /// Failed and pointed back at the stable SHA (ECS accepted it).
    RolledBack,
    /// Failed with nothing to roll back to.
    Failed,
    /// Paused by the user.
    Paused,
}

/// Observed state of a ServiceRelease.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceReleaseStatus {
    /// Where the release is.
    #[serde(default)]
    pub phase: Phase,
    /// SHA the service runs or is moving to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_sha: Option<String>,
    /// Last promoted SHA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_sha: Option<String>,
    /// ECS: the task definition of `currentSha`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_arn: Option<String>,
    /// ECS: the task definition of `stableSha`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_task_definition_arn: Option<String>,
    /// Lambda: the published version (its ARN) of `currentSha`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_version_arn: Option<String>,
    /// Lambda: the published version (its ARN) of `stableSha`, the one the alias keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_function_version_arn: Option<String>,
    /// The rollout under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// Past rollouts, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// kstatus conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Spec hash of the stable release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_spec_hash: Option<String>,
    /// Spec hash that failed (rolled back or failed): not retried until the spec changes
    /// or `shipshape.dev/retry` gets a new value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_spec_hash: Option<String>,
    /// The most recent analysis measurement (kept after the rollout ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_measurement: Option<Measurement>,
    /// Last values of the command annotations acted on (retry, rollback, promote).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub handled_commands: std::collections::BTreeMap<String, String>,
    /// A rollback decided and not yet accepted by ECS (phase RollingBack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackStatus>,
    /// Set once an irreversible step before traffic has succeeded, until a version after it
    /// is promoted or a person rolls back: which step, of which SHA, with which snapshot.
    /// Meanwhile no failing rollout — that one or a later one — is rolled back by the
    /// controller (`RollbackUnsafe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_unsafe: Option<String>,
    /// The desired SHA has not started: what it waits for (its upstream's soak, an approval,
    /// the releases it comes after, a change window) or why it is refused, and until when
    /// where that is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitingStatus>,
}

/// Why the desired SHA has not started.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitingStatus {
    /// The SHA waiting.
    pub sha: String,
    /// WaitingForUpstream, UpstreamRejected, WaitingForApproval, WaitingForOrder or
    /// WaitingForWindow.
    pub reason: String,
    /// What it waits for, in words.
    pub message: String,
    /// When the wait ends by itself (a soak's end, a window's opening), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// The upstream stage (`namespace/name`), with `promotion.from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

/// A rollback under way: decided, persisted, then carried out until ECS accepts it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackStatus {
    /// ECS: the stable task definition the service goes back to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub task_definition_arn: String,
    /// Lambda: the stable version the alias goes back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_version_arn: Option<String>,
    /// Why the rollout failed.
    pub reason: String,
    /// What triggered it: analysis, deployment_failed, deadline, manual.
    pub trigger: String,
    /// When it was decided.
    pub requested_at: DateTime<Utc>,
    /// The last error from ECS, while it refuses the rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Attempts that failed so far.
    #[serde(default)]
    pub failed_attempts: i32,
}

/// The rollout being judged.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// SHA being judged.
    pub sha: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// ECS deployment id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// Recent measurements, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
    /// Failed rounds so far.
    #[serde(default)]
    pub failures: i32,
    /// Passing rounds in a row.
    #[serde(default)]
    pub successes: i32,
    /// Hash of the task definition content and size being rolled out.
    #[serde(default)]
    pub spec_hash: String,
    /// ECS: the task definition being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_arn: Option<String>,
    /// Lambda: the version being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_version_arn: Option<String>,
    /// When ECS reported the deployment COMPLETED (analysis starts after warmup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<DateTime<Utc>>,
    /// When the last analysis round ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_measured_at: Option<DateTime<Utc>>,
    /// Set while a query is invalid: the rollout holds (no rollback, no deadline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_query: Option<String>,
    /// Set while the metrics backend cannot answer: why (the rollout holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_unavailable: Option<String>,
    /// Since when the backend has not answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_since: Option<DateTime<Utc>>,
    /// Seconds the progress deadline was extended by past outages of the backend.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deadline_extension_seconds: i64,
    /// The traffic step being judged, from 1 (stepped strategies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    /// How many traffic steps the rollout has (the last one is 100 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<i32>,
    /// `step/steps`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_text: Option<String>,
    /// Percent of the traffic on the new version, as AWS accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// An ECS service deployment (canary, linear, blue/green): its ARN, as ECS names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_deployment_arn: Option<String>,
    /// An ECS service deployment's lifecycle stage as ECS last reported it
    /// (e.g. PRODUCTION_TRAFFIC_SHIFT, BAKE_TIME).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// When the current step began (the progress deadline and the bake count from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<DateTime<Utc>>,
    /// Set when a failed analysis holds the rollout (onFailure: Pause): why. It waits for
    /// promote or rollback; no deadline runs meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// The steps passed so far (stepped strategies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passed_steps: Vec<StepRecord>,
    /// The steps before traffic, as far as they have gone (in `spec.rollout.preDeploy`'s order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_deploy: Vec<PreDeployStatus>,
}

/// One step before traffic, as it went.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreDeployStatus {
    /// The step's name.
    pub name: String,
    /// Snapshotting (its database snapshot being taken), Running, Succeeded or Failed.
    pub phase: String,
    /// The ECS task running it, once ECS has started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_arn: Option<String>,
    /// Lambda: the request id of its invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The container's exit code, once it stopped (Lambda: 0, or 1 for a function error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it failed, or what it waits for (ECS's stopCode and stoppedReason, a timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The RDS snapshot taken before it (restore it to undo the step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Whether the step is irreversible (no automatic rollback once it succeeded).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub irreversible: bool,
    /// When the step began (its snapshot, then its task; the timeout counts from the task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The CloudWatch Logs stream of the task's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_stream: Option<String>,
    /// The last lines of that output (at most 10, each cut at 300 characters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// One measurement of one query.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// Query name.
    pub query: String,
    /// The series judged (its labels), when the query returned several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    /// Value, when there was a sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Pass, Fail, Inconclusive, Invalid or Unavailable.
    pub verdict: String,
}

/// One past rollout.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// SHA.
    pub sha: String,
    /// ECS: its task definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_arn: Option<String>,
    /// Lambda: its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_version_arn: Option<String>,
    /// How it ended.
    pub outcome: RolloutOutcome,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// Its traffic steps, in order (stepped strategies only): each one's share and how it
    /// ended (`Passed`, or the rollout's outcome for the last one reached).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
    /// Its steps before traffic, as they went (with the snapshots taken).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_deploy: Vec<PreDeployStatus>,
}

/// One traffic step of a rollout.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    /// Step number, from 1.
    pub step: i32,
    /// Percent of the traffic on the new version.
    pub weight: i32,
    /// When it began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Passed, Promoted, RolledBack, Failed or Superseded.
    pub result: String,
}

/// How a rollout ended.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RolloutOutcome {
    /// Became stable.
    Promoted,
    /// Failed and was rolled back.
    RolledBack,
    /// Replaced by a newer spec before it finished.
    Superseded,
    /// Failed with nothing to roll back to.
    Failed,
}
