//! `Environment`: where things run (region, account, ECS cluster, network, tenancy).

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{bounds, duration_rule, Condition, GoDuration};

/// Where a team's services run: AWS region and account, ECS cluster, network and tenancy.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "shipshape.dev",
    version = "v1alpha1",
    kind = "Environment",
    shortname = "env",
    category = "shipshape",
    status = "EnvironmentStatus",
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.ecsCluster.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(oldSelf.accountId) || (has(self.accountId) && self.accountId == oldSelf.accountId)").message(
    "accountId cannot be changed or removed once set: the Environment's databases and services live in that account; create a new Environment for another account"
))]
pub struct EnvironmentSpec {
    /// AWS region, e.g. eu-west-1 (immutable).
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "region is immutable: the Environment's databases, buckets and services live in that region, and a new region would get new, empty ones; create a new Environment instead"
    ))]
    pub region: String,
    /// Refuse to act when the AWS caller identity belongs to another account (immutable once set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]{12}$"))]
    pub account_id: Option<String>,
    /// IAM role assumed for every AWS call in this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$"))]
    pub role_arn: Option<String>,
    /// The ECS cluster services run in.
    pub ecs_cluster: EcsClusterSpec,
    /// Network placement for Fargate services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,
    /// Tags applied to everything the controller creates in this environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Namespaces whose StackSpecs and ServiceReleases may use this environment (empty: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_namespaces: Vec<String>,
    /// Where rollout analysis queries go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
    /// When true no new rollout starts in this environment; rollbacks still happen.
    #[serde(default)]
    pub freeze: bool,
    /// What happens to a cluster the controller created when this object is deleted.
    #[serde(default)]
    pub deletion_policy: EnvironmentDeletionPolicy,
    /// How often the cluster is re-read to correct drift (default 60s).
    #[x_kube(validation = duration_rule(bounds::DRIFT_INTERVAL, "driftInterval"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_interval: Option<GoDuration>,
    /// The execution role of Lambda functions released here that name none themselves
    /// (`spec.function.roleArn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$"), length(max = 2048))]
    pub function_role_arn: Option<String>,
    /// Where this Environment's Lambda releases may take their code from, as
    /// `s3://bucket/` or `s3://bucket/key-prefix`: a release whose `function.s3` lies
    /// elsewhere is refused (InvalidSpec). The controller's IAM policy reads code only there
    /// too (`shipshape iam-policy --function-code`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(pattern(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^*?]*$"), length(max = 1100)))]
    pub function_code_locations: Vec<String>,
    /// Load balancer defaults for this Environment's ECS releases (typically `roleArn` and
    /// `productionListenerRule`); a release's own `loadBalancer` fields win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<crate::api::LoadBalancerSpec>,
    /// Change windows: when any are set, a new rollout starts only inside one (rollouts under
    /// way finish; rollbacks are never held). Reason `WaitingForWindow`, naming the next
    /// opening.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub windows: Vec<ChangeWindow>,
    /// Blackouts: no new rollout starts inside one (rollbacks are never held).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub blackouts: Vec<Blackout>,
    /// Where the rollouts of this Environment's releases are announced (chat, incident
    /// tooling): each sink gets the events it lists, from a bounded queue of its own, with
    /// retries, never holding a reconcile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub notifications: Vec<NotificationSink>,
    /// Learn what AWS did from its events instead of polling for it: `events: {}` makes
    /// shipshape create and own an SQS queue and an EventBridge rule in this Environment's
    /// account and Region; `events: {queueArn: …}` uses a queue you feed. While events flow
    /// (condition `EventsFlowing`), deploying releases poll every 30 s instead of 2 s and
    /// drift is read 10 times less often; when they stop, polling returns as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsSpec>,
}

/// Where an Environment's AWS events arrive.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventsSpec {
    /// An existing SQS queue (same account and Region) that receives the events; shipshape
    /// creates nothing, only reads and deletes its messages. Its rule should also deliver
    /// `source: shipshape.dev` (the heartbeat), or `EventsFlowing` stays False and polling
    /// stays as without events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^arn:aws[a-z-]*:sqs:[a-z0-9-]{1,32}:[0-9]{12}:[A-Za-z0-9_-]{1,80}$"), length(max = 200))]
    pub queue_arn: Option<String>,
}

/// A recurring change window: it opens at each time `schedule` names and stays open for
/// `duration`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeWindow {
    /// When it opens, as a 5-field cron expression (minute hour day-of-month month
    /// day-of-week), e.g. `0 9 * * 1-4` (09:00 Monday to Thursday).
    #[schemars(length(min = 9, max = 128))]
    pub schedule: String,
    /// How long it stays open (1m to 7d).
    #[x_kube(validation = duration_rule(bounds::WINDOW_DURATION, "duration"))]
    pub duration: GoDuration,
    /// The IANA time zone the schedule is read in (default UTC), e.g. `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
}

/// A time span in which no rollout starts.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("timestamp(self.start) < timestamp(self.end)").message("a blackout's start must be before its end"))]
pub struct Blackout {
    /// Start (RFC 3339), e.g. `2026-12-20T00:00:00Z`.
    pub start: chrono::DateTime<chrono::Utc>,
    /// End (RFC 3339).
    pub end: chrono::DateTime<chrono::Utc>,
    /// Why (shown in status and Events).
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub reason: String,
}

/// One place rollouts are announced.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationSink {
    /// The sink's name (in metrics as `sink`).
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub name: String,
    /// An HTTP endpoint POSTed to.
    pub webhook: Webhook,
    /// The body: `Slack` (an incoming webhook's `{"text": ...}`), `CloudEvents` (structured
    /// mode, `application/cloudevents+json`) or `Json` (the event as shipshape sees it).
    #[serde(default)]
    pub format: NotificationFormat,
    /// The events sent (empty: all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub events: Vec<NotificationEvent>,
    /// Only the releases of these namespaces (empty: every namespace the Environment allows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 63)))]
    pub namespaces: Vec<String>,
}

/// A webhook whose URL is a secret (it often is a credential, as Slack's are).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// The Secret key holding the URL (`http://` or `https://`). Never shown in logs,
    /// status or Events.
    pub url_secret_ref: KeyedSecretRef,
}

/// A key of a Secret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyedSecretRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Secret namespace (default: the controller's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// The key (default `url`).
    #[serde(default = "default_url_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_url_key() -> String {
    "url".into()
}

/// The body a sink gets.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum NotificationFormat {
    /// `{"text": ...}` for a Slack incoming webhook.
    #[default]
    Slack,
    /// A CloudEvents 1.0 event in structured mode.
    CloudEvents,
    /// shipshape's own JSON.
    Json,
}

/// What a sink can be told.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum NotificationEvent {
    /// A rollout of a new SHA started.
    RolloutStarted,
    /// A traffic step passed its analysis.
    StepPassed,
    /// A SHA became stable.
    Promoted,
    /// A rollout failed and was rolled back.
    RolledBack,
    /// A rollout failed with nothing rolled back (or a step before traffic failed).
    Failed,
    /// AWS refused a rollback.
    RollbackFailed,
    /// A rollout failed after an irreversible step and is held.
    RollbackUnsafe,
    /// A SHA waits for `shipshape approve`.
    WaitingForApproval,
    /// A SHA was refused: its upstream stage did not prove it.
    UpstreamRejected,
    /// Something changed outside shipshape was put back.
    DriftCorrected,
}

impl EnvironmentSpec {
    /// Whether `s3://bucket/key` lies in one of the Environment's `functionCodeLocations`.
    pub fn allows_function_code(&self, bucket: &str, key: &str) -> bool {
        let url = format!("s3://{bucket}/{key}");
        self.function_code_locations.iter().any(|l| url.starts_with(l.as_str()))
    }
}

/// The ECS cluster of an environment.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EcsClusterSpec {
    /// Cluster name (immutable).
    #[schemars(pattern(r"^[A-Za-z0-9_-]{1,255}$"), length(max = 255))]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "ecsCluster.name is immutable: the services of this Environment run in that cluster; create a new Environment for another cluster"
    ))]
    pub name: String,
    /// Create the cluster (true) or adopt an existing one (false).
    #[serde(default)]
    pub create: bool,
    /// Capacity providers of a created cluster, e.g. FARGATE, FARGATE_SPOT.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_providers: Vec<String>,
    /// CloudWatch Container Insights for a created cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_insights: Option<ContainerInsights>,
}

/// Container Insights setting of an ECS cluster.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerInsights {
    /// `enabled`
    Enabled,
    /// `disabled`
    Disabled,
    /// `enhanced`
    Enhanced,
}

impl ContainerInsights {
    /// The value ECS uses.
    pub fn as_aws(self) -> &'static str {
        match self {
            ContainerInsights::Enabled => "enabled",
            ContainerInsights::Disabled => "disabled",
            ContainerInsights::Enhanced => "enhanced",
        }
    }
}

/// awsvpc network placement.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Subnet ids.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Security group ids.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Give tasks a public IP.
    #[serde(default)]
    pub assign_public_ip: bool,
}

/// Health metric sources.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthSpec {
    /// Prometheus server for analysis queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSpec>,
}

/// A Prometheus server.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    /// Base URL, e.g. http://prometheus.monitoring:9090.
    #[schemars(pattern(r"^https?://.+"))]
    pub url: String,
    /// Secret holding credentials: keys `username` and `password` (basic auth) or `token`
    /// (bearer). Read into memory only; never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret_ref: Option<SecretRef>,
    /// Secret whose key `ca.crt` holds the CA certificate(s), PEM, that signed the server's
    /// certificate (an https URL with a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretRef>,
    /// Sign queries with AWS SigV4 using the controller's credentials for this Environment
    /// (its role when it has one): Amazon Managed Service for Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigv4: Option<SigV4Spec>,
}

/// SigV4 signing of Prometheus queries.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigV4Spec {
    /// Region of the workspace (default: the Environment's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[a-z]{2}(-[a-z]+)+-[0-9]$"))]
    pub region: Option<String>,
}

/// A reference to a Secret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Secret name.
    pub name: String,
    /// Secret namespace (default: the controller's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// What happens to a created cluster when its Environment is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum EnvironmentDeletionPolicy {
    /// Leave the cluster in AWS.
    #[default]
    Retain,
    /// Delete the cluster, if the controller created it.
    Delete,
}

/// Observed state of an Environment.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentStatus {
    /// kstatus conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// ARN of the ECS cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_arn: Option<String>,
    /// Account of the AWS caller identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_account_id: Option<String>,
    /// Tag keys the controller applied, so removing one from the spec removes it in AWS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_tag_keys: Vec<String>,
    /// The event queue and rule (`spec.events`), as AWS accepted them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsStatus>,
}

/// The event queue of an Environment, as AWS accepted it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventsStatus {
    /// The queue's URL (what is polled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_url: Option<String>,
    /// The queue's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_arn: Option<String>,
    /// The EventBridge rule shipshape created (None for a queue of `spec.events.queueArn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_arn: Option<String>,
    /// Whether shipshape created (and owns) the queue and the rule.
    #[serde(default)]
    pub owned: bool,
    /// When the last event (the heartbeat included) was handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_time: Option<chrono::DateTime<chrono::Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_code_is_allowed_only_under_a_declared_location() {
        let spec: EnvironmentSpec = serde_json::from_value(serde_json::json!({
            "region": "eu-west-1", "ecsCluster": {"name": "c"},
            "functionCodeLocations": ["s3://builds/api/", "s3://other/"]
        }))
        .unwrap();
        assert!(spec.allows_function_code("builds", "api/abc.zip"));
        assert!(spec.allows_function_code("other", "x/y.zip"));
        assert!(!spec.allows_function_code("builds", "worker/abc.zip"), "another prefix of the bucket");
        assert!(!spec.allows_function_code("builds-evil", "api/abc.zip"), "a bucket whose name only starts alike");
        assert!(!spec.allows_function_code("b", "k"), "undeclared");
    }
}
