//! The IAM policy shipshape needs (`shipshape iam-policy`; deploy/iam-policy.json is its
//! output for the examples): every action the code calls, each scoped by ownership.
//!
//! - **Creates** need the ownership tags in the request (`aws:RequestTag/shipshape.dev/managed-by`
//!   = `shipshape` and an `aws:RequestTag/shipshape.dev/owner`); so does tagging at creation.
//! - **Every later write** needs the resource to carry `shipshape.dev/managed-by: shipshape`
//!   (`aws:ResourceTag`); tagging an owned resource may never name the ownership keys
//!   (`aws:TagKeys`), so they can be neither removed nor rewritten.
//! - **iam:PassRole** per service principal, only for roles under the role path
//!   (`/shipshape/ecs-tasks/` to ECS tasks, `/shipshape/lambda/` to Lambda, `/shipshape/ecs/`
//!   to ECS itself for the load balancer role); **sts:AssumeRole** only for Environment roles
//!   under `/shipshape/environments/`; **s3:GetObject** only where function code lives.
//! - **Reads and everything else** only in the Regions given.
//!
//! What cannot be scoped, and why, is [`UNSCOPED`]; adopting a resource someone else
//! created is granted by a second, temporary policy ([`adoption_policy`]).

use serde::Serialize;
use serde_json::{json, Value};

use crate::api::{MANAGED_BY, MANAGED_BY_TAG, OWNER_TAG};

/// An IAM policy document, its members in the order a reader expects them.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Policy {
    /// "2012-10-17".
    pub version: &'static str,
    /// The statements.
    pub statement: Vec<Statement>,
}

/// One statement.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    /// What it is for.
    pub sid: String,
    /// Always Allow.
    pub effect: &'static str,
    /// Actions.
    pub action: Vec<String>,
    /// One ARN pattern or several.
    pub resource: Value,
    /// Conditions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
}

impl Policy {
    /// The document as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Every action it grants.
    pub fn actions(&self) -> std::collections::BTreeSet<String> {
        self.statement.iter().flat_map(|s| s.action.iter().cloned()).collect()
    }
}

/// What varies between installations.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyOptions {
    /// The AWS partition (aws, aws-cn, aws-us-gov).
    pub partition: String,
    /// The Regions Environments may use (`aws:RequestedRegion`); empty: any.
    pub regions: Vec<String>,
    /// Where Lambda code may be read from: `s3://bucket/prefix` (IAM wildcards allowed),
    /// matching the Environments' `functionCodeLocations`.
    pub function_code: Vec<String>,
    /// The IAM path under which the roles shipshape passes and assumes live.
    pub role_path: String,
}

impl Default for PolicyOptions {
    /// The values deploy/iam-policy.json is rendered with (the examples' Regions and build
    /// buckets).
    fn default() -> Self {
        PolicyOptions {
            partition: "aws".into(),
            regions: vec!["eu-west-1".into(), "eu-central-1".into(), "us-east-1".into()],
            function_code: vec!["s3://*-builds*/*".into()],
            role_path: "/shipshape/".into(),
        }
    }
}

/// Actions that take no scoping by ownership, with the reason (README, "Least privilege").
pub const UNSCOPED: &[(&str, &str)] = &[
    ("ecs:DescribeTaskDefinition, ecs:ListTaskDefinitions", "no resource types: IAM accepts only Resource \"*\" for them"),
    ("dynamodb:ListBackups, sts:GetCallerIdentity", "no resource types (GetCallerIdentity needs no permission at all)"),
    (
        "reads (Describe*, Get*, List*, HeadBucket) of clusters, services, databases, buckets, tables, caches, functions, alarms",
        "shipshape reads a name before it creates it and to learn whose it is: a tag condition would turn a missing or foreign resource into AccessDenied, so a conflict could not be named; reads are limited to the Regions",
    ),
    ("s3:PutBucketAbac", "a bucket's tags are invisible to IAM until ABAC is on, so enabling it cannot be conditioned on them"),
    (
        "lambda:TagResource, dynamodb:TagResource, rds:AddTagsToResource, elasticache:AddTagsToResource, s3:TagResource at creation",
        "AWS authorizes tags given at creation as a TagResource on a resource without tags, and these services have no create-action condition key (ECS has ecs:CreateAction, used): a resource nobody tagged can be given the ownership tags; one that carries them cannot be re-tagged",
    ),
    (
        "creating a final snapshot (rds:CreateDBSnapshot, elasticache:CreateSnapshot and DeleteReplicationGroup on the snapshot)",
        "the snapshot is new and has no tags; limited to names `*-final-*` (the delete itself needs an owned database or cache)",
    ),
    (
        "ecs:*ServiceDeployment*, ecs:DescribeServiceRevisions on service-deployment and service-revision ARNs",
        "AWS authorizes them on the service as well, where ownership is required",
    ),
    ("secretsmanager:CreateSecret, secretsmanager:TagResource, kms:DescribeKey", "RDS creates a database's managed master password in the caller's name, in secrets named rds!*"),
    ("kms:CreateGrant, kms:DescribeKey", "DynamoDB uses the table's KMS key in the caller's name (kms:ViaService dynamodb)"),
];

fn region_condition(o: &PolicyOptions, mut condition: Value) -> Value {
    if !o.regions.is_empty() {
        let eq = condition.as_object_mut().and_then(|c| {
            c.entry("StringEquals").or_insert_with(|| json!({}));
            c.get_mut("StringEquals")
        });
        if let Some(eq) = eq.and_then(Value::as_object_mut) {
            eq.insert("aws:RequestedRegion".into(), json!(o.regions));
        }
    }
    condition
}

fn statement(o: &PolicyOptions, sid: &str, actions: &[&str], resources: Value, condition: Value) -> Statement {
    let condition = region_condition(o, condition);
    Statement {
        sid: sid.into(),
        effect: "Allow",
        action: actions.iter().map(|a| a.to_string()).collect(),
        resource: resources,
        condition: condition.as_object().is_some_and(|c| !c.is_empty()).then_some(condition),
    }
}

/// A statement that is not limited to Regions (IAM and STS are global).
fn global(sid: &str, actions: &[&str], resources: Value) -> Statement {
    Statement {
        sid: sid.into(),
        effect: "Allow",
        action: actions.iter().map(|a| a.to_string()).collect(),
        resource: resources,
        condition: None,
    }
}

/// The creation condition: the ownership tags are in the request.
fn new_owned() -> Value {
    json!({
        "StringEquals": {format!("aws:RequestTag/{MANAGED_BY_TAG}"): MANAGED_BY},
        "Null": {format!("aws:RequestTag/{OWNER_TAG}"): "false"},
    })
}

/// The write condition: the resource carries shipshape's tag.
fn owned() -> Value {
    json!({"StringEquals": {format!("aws:ResourceTag/{MANAGED_BY_TAG}"): MANAGED_BY}})
}

/// Tagging an owned resource, never with the ownership keys.
fn owned_keep_ownership() -> Value {
    let mut c = owned();
    c["ForAllValues:StringNotEquals"] = json!({"aws:TagKeys": [MANAGED_BY_TAG, OWNER_TAG]});
    c
}

/// Tags at creation: the ownership tags in the request, on a resource without them.
fn tag_on_create() -> Value {
    let mut c = new_owned();
    c["Null"][format!("aws:ResourceTag/{MANAGED_BY_TAG}")] = json!("true");
    c
}

/// `list` (a JSON array) with `more` added.
fn with(list: &Value, more: String) -> Value {
    let mut v = list.as_array().cloned().unwrap_or_default();
    v.push(Value::String(more));
    Value::Array(v)
}

/// The role ARNs under the role path's `sub`folder, in any account.
fn roles(o: &PolicyOptions, sub: &str) -> String {
    format!("arn:{}:iam::*:role{}{sub}/*", o.partition, o.role_path)
}

/// The policy document.
pub fn policy(o: &PolicyOptions) -> Policy {
    let p = &o.partition;
    let arn = |service: &str, rest: &str| format!("arn:{p}:{service}:*:*:{rest}");
    let none = json!({});
    let code: Vec<String> = o
        .function_code
        .iter()
        .map(|l| {
            let path = l.strip_prefix("s3://").unwrap_or(l);
            let path = if path.ends_with('*') { path.to_string() } else { format!("{}*", path) };
            format!("arn:{p}:s3:::{path}")
        })
        .collect();
    let ecs_owned = json!([arn("ecs", "cluster/*"), arn("ecs", "service/*")]);
    let ecs_all = json!([arn("ecs", "cluster/*"), arn("ecs", "service/*"), arn("ecs", "task-definition/*")]);
    let rds_owned = json!([arn("rds", "db:*"), arn("rds", "subgrp:*")]);
    let cache_owned = json!([arn("elasticache", "replicationgroup:*"), arn("elasticache", "subnetgroup:*")]);
    let statements = vec![
        // ECS
        statement(
            o,
            "EcsCreateOwned",
            &["ecs:CreateCluster", "ecs:CreateService", "ecs:RegisterTaskDefinition"],
            ecs_all.clone(),
            new_owned(),
        ),
        statement(o, "EcsTagOnCreate", &["ecs:TagResource"], with(&ecs_all, arn("ecs", "task/*")), {
            let mut c = new_owned();
            c["StringEquals"]["ecs:CreateAction"] = json!(["CreateCluster", "CreateService", "RegisterTaskDefinition", "RunTask"]);
            c
        }),
        // Steps before traffic: one-off tasks of shipshape's own task definitions, tagged as
        // its own when started, stopped only when they carry its tag.
        statement(o, "EcsRunStepsOfOwnedTaskDefinitions", &["ecs:RunTask"], json!([arn("ecs", "task-definition/*")]), owned()),
        statement(o, "EcsStopOwnedTasks", &["ecs:StopTask"], json!([arn("ecs", "task/*")]), owned()),
        statement(
            o,
            "EcsReadTasks",
            &["ecs:DescribeTasks", "ecs:ListTasks"],
            json!([arn("ecs", "task/*"), arn("ecs", "container-instance/*")]),
            none.clone(),
        ),
        statement(
            o,
            "EcsWriteOwned",
            &[
                "ecs:ContinueServiceDeployment",
                "ecs:DeleteCluster",
                "ecs:DeleteService",
                "ecs:PutClusterCapacityProviders",
                "ecs:StopServiceDeployment",
                "ecs:UpdateClusterSettings",
                "ecs:UpdateService",
            ],
            ecs_owned,
            owned(),
        ),
        statement(
            o,
            "EcsDeploymentsOfOwnedServices",
            &["ecs:ContinueServiceDeployment", "ecs:StopServiceDeployment"],
            json!([arn("ecs", "service-deployment/*")]),
            none.clone(),
        ),
        statement(o, "EcsTagOwned", &["ecs:TagResource", "ecs:UntagResource"], ecs_all, owned_keep_ownership()),
        statement(
            o,
            "EcsRead",
            &["ecs:DescribeClusters", "ecs:DescribeServiceDeployments", "ecs:DescribeServiceRevisions", "ecs:DescribeServices"],
            json!([arn("ecs", "cluster/*"), arn("ecs", "service/*"), arn("ecs", "service-deployment/*"), arn("ecs", "service-revision/*")]),
            none.clone(),
        ),
        // No resource types: IAM takes only "*" for these.
        statement(o, "EcsReadTaskDefinitions", &["ecs:DescribeTaskDefinition", "ecs:ListTaskDefinitions"], json!("*"), none.clone()),
        // Roles
        pass_role("PassTaskRolesToEcsTasks", roles(o, "ecs-tasks"), "ecs-tasks.amazonaws.com"),
        pass_role("PassFunctionRolesToLambda", roles(o, "lambda"), "lambda.amazonaws.com"),
        pass_role("PassLoadBalancerRolesToEcs", roles(o, "ecs"), "ecs.amazonaws.com"),
        global("AssumeEnvironmentRoles", &["sts:AssumeRole"], json!(roles(o, "environments"))),
        global("CallerIdentity", &["sts:GetCallerIdentity"], json!("*")),
        // RDS
        // A new instance is also authorized on the groups it uses (the defaults included).
        statement(
            o,
            "RdsCreateOwned",
            &["rds:CreateDBInstance", "rds:CreateDBSubnetGroup"],
            json!([arn("rds", "db:*"), arn("rds", "subgrp:*"), arn("rds", "pg:*"), arn("rds", "og:*")]),
            new_owned(),
        ),
        statement(o, "RdsTagOnCreate", &["rds:AddTagsToResource"], rds_owned.clone(), tag_on_create()),
        statement(
            o,
            "RdsWriteOwned",
            &["rds:DeleteDBInstance", "rds:ModifyDBInstance", "rds:ModifyDBSubnetGroup"],
            rds_owned.clone(),
            owned(),
        ),
        // A final snapshot is authorized on the (owned) instance and on the new snapshot,
        // which has no tags yet: two statements, because the owned condition cannot hold
        // for the snapshot.
        statement(o, "RdsSnapshotsOfOwnedDatabases", &["rds:CreateDBSnapshot"], json!([arn("rds", "db:*")]), owned()),
        statement(o, "RdsFinalSnapshots", &["rds:CreateDBSnapshot"], json!([arn("rds", "snapshot:*-final-*")]), none.clone()),
        // A snapshot before a step (`<db>-pre-<sha>-<time>`) is created with the ownership tags.
        statement(o, "RdsPreDeploySnapshots", &["rds:CreateDBSnapshot"], json!([arn("rds", "snapshot:*-pre-*")]), new_owned()),
        statement(
            o,
            "RdsTagPreDeploySnapshotsOnCreate",
            &["rds:AddTagsToResource"],
            json!([arn("rds", "snapshot:*-pre-*")]),
            tag_on_create(),
        ),
        statement(o, "RdsReadSnapshots", &["rds:DescribeDBSnapshots"], json!([arn("rds", "snapshot:*"), arn("rds", "db:*")]), none.clone()),
        // snapshotRetention: only snapshots before steps that carry shipshape's tag.
        statement(o, "RdsPruneOwnPreDeploySnapshots", &["rds:DeleteDBSnapshot"], json!([arn("rds", "snapshot:*-pre-*")]), owned()),
        statement(o, "RdsTagOwned", &["rds:AddTagsToResource"], rds_owned.clone(), owned_keep_ownership()),
        statement(o, "RdsRead", &["rds:DescribeDBInstances", "rds:DescribeDBSubnetGroups"], rds_owned, none.clone()),
        statement(
            o,
            "RdsManagedMasterPasswords",
            &["secretsmanager:CreateSecret", "secretsmanager:TagResource"],
            json!(format!("arn:{p}:secretsmanager:*:*:secret:rds!*")),
            none.clone(),
        ),
        statement(
            o,
            "RdsManagedMasterPasswordKey",
            &["kms:DescribeKey"],
            json!(arn("kms", "key/*")),
            json!({"StringLike": {"kms:ViaService": "secretsmanager.*.amazonaws.com"}}),
        ),
        // CloudWatch Logs: the last lines of a step's task.
        statement(o, "LogsReadTaskOutput", &["logs:GetLogEvents"], json!([arn("logs", "log-group:*:log-stream:*")]), none.clone()),
        // S3
        statement(o, "S3CreateOwned", &["s3:CreateBucket"], json!(format!("arn:{p}:s3:::*")), new_owned()),
        statement(o, "S3TagOnCreate", &["s3:TagResource"], json!(format!("arn:{p}:s3:::*")), tag_on_create()),
        statement(o, "S3EnableAbac", &["s3:PutBucketAbac"], json!(format!("arn:{p}:s3:::*")), none.clone()),
        statement(
            o,
            "S3WriteOwned",
            &[
                "s3:DeleteBucket",
                "s3:PutBucketPublicAccessBlock",
                "s3:PutBucketVersioning",
                "s3:PutEncryptionConfiguration",
                "s3:PutLifecycleConfiguration",
            ],
            json!(format!("arn:{p}:s3:::*")),
            owned(),
        ),
        statement(o, "S3TagOwned", &["s3:TagResource"], json!(format!("arn:{p}:s3:::*")), owned_keep_ownership()),
        statement(
            o,
            "S3Read",
            &[
                "s3:GetBucketAbac",
                "s3:GetBucketLocation",
                "s3:GetBucketPublicAccessBlock",
                "s3:GetBucketTagging",
                "s3:GetBucketVersioning",
                "s3:GetEncryptionConfiguration",
                "s3:GetLifecycleConfiguration",
                "s3:ListBucket",
            ],
            json!(format!("arn:{p}:s3:::*")),
            none.clone(),
        ),
        statement(o, "ReadFunctionCode", &["s3:GetObject"], json!(code), none.clone()),
        // DynamoDB
        statement(o, "DynamoDbCreateOwned", &["dynamodb:CreateTable"], json!(arn("dynamodb", "table/*")), new_owned()),
        statement(o, "DynamoDbTagOnCreate", &["dynamodb:TagResource"], json!(arn("dynamodb", "table/*")), tag_on_create()),
        statement(
            o,
            "DynamoDbWriteOwned",
            &[
                "dynamodb:CreateBackup",
                "dynamodb:DeleteTable",
                "dynamodb:UpdateContinuousBackups",
                "dynamodb:UpdateTable",
                "dynamodb:UpdateTimeToLive",
            ],
            json!(arn("dynamodb", "table/*")),
            owned(),
        ),
        statement(o, "DynamoDbTagOwned", &["dynamodb:TagResource"], json!(arn("dynamodb", "table/*")), owned_keep_ownership()),
        statement(
            o,
            "DynamoDbRead",
            &["dynamodb:DescribeContinuousBackups", "dynamodb:DescribeTable", "dynamodb:DescribeTimeToLive", "dynamodb:ListTagsOfResource"],
            json!(arn("dynamodb", "table/*")),
            none.clone(),
        ),
        // No resource type: IAM takes only "*".
        statement(o, "DynamoDbListBackups", &["dynamodb:ListBackups"], json!("*"), none.clone()),
        statement(
            o,
            "KmsKeysOfEncryptedTables",
            &["kms:CreateGrant", "kms:DescribeKey"],
            json!(arn("kms", "key/*")),
            json!({"StringLike": {"kms:ViaService": "dynamodb.*.amazonaws.com"}}),
        ),
        // ElastiCache
        statement(
            o,
            "ElastiCacheCreateOwned",
            &["elasticache:CreateCacheSubnetGroup", "elasticache:CreateReplicationGroup"],
            cache_owned.clone(),
            new_owned(),
        ),
        // A replication group is also authorized on the parameter group it uses (the
        // engine's default) and on its subnet group, where the request's tags are not in
        // the context.
        statement(
            o,
            "ElastiCacheCreateInGroups",
            &["elasticache:CreateReplicationGroup"],
            json!([arn("elasticache", "parametergroup:*"), arn("elasticache", "subnetgroup:*")]),
            none.clone(),
        ),
        statement(o, "ElastiCacheTagOnCreate", &["elasticache:AddTagsToResource"], cache_owned.clone(), tag_on_create()),
        statement(
            o,
            "ElastiCacheWriteOwned",
            &[
                "elasticache:CreateSnapshot",
                "elasticache:DecreaseReplicaCount",
                "elasticache:DeleteReplicationGroup",
                "elasticache:IncreaseReplicaCount",
                "elasticache:ModifyCacheSubnetGroup",
                "elasticache:ModifyReplicationGroup",
            ],
            cache_owned.clone(),
            owned(),
        ),
        statement(
            o,
            "ElastiCacheFinalSnapshots",
            &["elasticache:CreateSnapshot", "elasticache:DeleteReplicationGroup"],
            json!([arn("elasticache", "snapshot:*-final-*")]),
            none.clone(),
        ),
        statement(o, "ElastiCacheTagOwned", &["elasticache:AddTagsToResource"], cache_owned.clone(), owned_keep_ownership()),
        statement(
            o,
            "ElastiCacheRead",
            &[
                "elasticache:DescribeCacheClusters",
                "elasticache:DescribeCacheSubnetGroups",
                "elasticache:DescribeReplicationGroups",
                "elasticache:ListTagsForResource",
            ],
            json!([arn("elasticache", "cluster:*"), arn("elasticache", "replicationgroup:*"), arn("elasticache", "subnetgroup:*")]),
            none.clone(),
        ),
        // Lambda
        statement(o, "LambdaCreateOwned", &["lambda:CreateFunction"], json!(arn("lambda", "function:*")), new_owned()),
        statement(o, "LambdaTagOnCreate", &["lambda:TagResource"], json!(arn("lambda", "function:*")), tag_on_create()),
        statement(
            o,
            "LambdaWriteOwned",
            &[
                "lambda:CreateAlias",
                "lambda:DeleteFunction",
                "lambda:DeleteFunctionConcurrency",
                "lambda:DeleteProvisionedConcurrencyConfig",
                "lambda:InvokeFunction",
                "lambda:PublishVersion",
                "lambda:PutFunctionConcurrency",
                "lambda:PutProvisionedConcurrencyConfig",
                "lambda:UpdateAlias",
                "lambda:UpdateFunctionCode",
                "lambda:UpdateFunctionConfiguration",
            ],
            json!(arn("lambda", "function:*")),
            owned(),
        ),
        statement(o, "LambdaTagOwned", &["lambda:TagResource"], json!(arn("lambda", "function:*")), owned_keep_ownership()),
        statement(
            o,
            "LambdaRead",
            &[
                "lambda:GetAlias",
                "lambda:GetFunction",
                "lambda:GetProvisionedConcurrencyConfig",
                "lambda:ListTags",
                "lambda:ListVersionsByFunction",
            ],
            json!(arn("lambda", "function:*")),
            none.clone(),
        ),
        // Analysis
        // AWS events (Environment `events: {}`): the Environment's queue and rule, named
        // shipshape-<environment>, created with the ownership tags and changed only while they
        // carry shipshape's tag; the rule delivers only to such a queue; the heartbeat is the
        // only event shipshape puts, with its own source.
        statement(o, "EventQueueCreateOwned", &["sqs:CreateQueue", "sqs:TagQueue"], json!(arn("sqs", "shipshape-*")), new_owned()),
        statement(o, "EventQueueWriteOwned", &["sqs:SetQueueAttributes", "sqs:DeleteQueue"], json!(arn("sqs", "shipshape-*")), owned()),
        statement(
            o,
            "EventQueueRead",
            &["sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:ListQueueTags", "sqs:ReceiveMessage", "sqs:DeleteMessage"],
            json!(arn("sqs", "shipshape-*")),
            none.clone(),
        ),
        statement(o, "EventRuleCreateOwned", &["events:PutRule", "events:TagResource"], json!(arn("events", "rule/shipshape-*")), {
            let mut c = new_owned();
            c["StringEqualsIfExists"] = json!({format!("aws:ResourceTag/{MANAGED_BY_TAG}"): MANAGED_BY});
            c
        }),
        statement(o, "EventRuleTargetsOwnQueue", &["events:PutTargets"], json!(arn("events", "rule/shipshape-*")), {
            // events:TargetArn is multivalued (one per target): every one must be such a queue.
            let mut c = owned();
            c["ForAllValues:ArnLike"] = json!({"events:TargetArn": format!("arn:{p}:sqs:*:*:shipshape-*")});
            c["Null"] = json!({"events:TargetArn": "false"});
            c
        }),
        statement(
            o,
            "EventRuleWriteOwned",
            &["events:RemoveTargets", "events:DeleteRule"],
            json!(arn("events", "rule/shipshape-*")),
            owned(),
        ),
        statement(
            o,
            "EventRuleRead",
            &["events:DescribeRule", "events:ListTagsForResource", "events:ListTargetsByRule"],
            json!(arn("events", "rule/shipshape-*")),
            none.clone(),
        ),
        statement(o, "EventHeartbeat", &["events:PutEvents"], json!(arn("events", "event-bus/default")), {
            // Multivalued keys (one per entry): every entry must be the heartbeat.
            json!({
                "ForAllValues:StringEquals": {"events:source": [crate::core::events::HEARTBEAT_SOURCE], "events:detail-type": [crate::core::events::HEARTBEAT_TYPE]},
                "Null": {"events:source": "false", "events:detail-type": "false"},
            })
        }),
        statement(o, "CloudWatchAlarmsForAnalysis", &["cloudwatch:DescribeAlarms"], json!(arn("cloudwatch", "alarm:*")), none.clone()),
        statement(o, "ManagedPrometheusQueries", &["aps:QueryMetrics"], json!(arn("aps", "workspace/*")), none),
    ];
    Policy { version: "2012-10-17", statement: statements }
}

fn pass_role(sid: &str, roles: String, to: &str) -> Statement {
    Statement { condition: Some(json!({"StringEquals": {"iam:PassedToService": to}})), ..global(sid, &["iam:PassRole"], json!(roles)) }
}

/// A temporary policy that lets shipshape adopt the named resources (ARNs) someone else
/// created: it may add the ownership tags to them while they carry none. Attach it while an
/// object with `shipshape.dev/adopt: "true"` takes them over, then detach it. Without it,
/// adoption of an ECS cluster, service or task definition is AccessDenied (and the other
/// services' tag-on-create permission lets only untagged resources be tagged, see
/// [`UNSCOPED`]).
pub fn adoption_policy(resources: &[String]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AdoptNamedResources",
            "Effect": "Allow",
            "Action": ["ecs:TagResource", "rds:AddTagsToResource", "s3:TagResource", "dynamodb:TagResource", "elasticache:AddTagsToResource", "lambda:TagResource"],
            "Resource": resources,
            "Condition": {
                "StringEquals": {format!("aws:RequestTag/{MANAGED_BY_TAG}"): MANAGED_BY},
                "Null": {format!("aws:ResourceTag/{MANAGED_BY_TAG}"): "true"},
            },
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_regional_statement_is_limited_to_the_regions_and_iam_statements_are_not() {
        let p = policy(&PolicyOptions::default()).to_value();
        for s in p["Statement"].as_array().unwrap() {
            let regional = !s["Action"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a.as_str().unwrap().starts_with("iam:") || a.as_str().unwrap().starts_with("sts:"));
            let limited = s["Condition"]["StringEquals"]["aws:RequestedRegion"].is_array();
            assert_eq!(regional, limited, "{s}");
        }
        let any = policy(&PolicyOptions { regions: vec![], ..Default::default() }).to_value();
        assert!(!any.to_string().contains("aws:RequestedRegion"));
    }

    #[test]
    fn function_code_locations_become_object_arns() {
        let p = policy(&PolicyOptions { function_code: vec!["s3://acme-artifacts/lambda/".into()], ..Default::default() }).to_value();
        let s = p["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "ReadFunctionCode").unwrap();
        assert_eq!(s["Resource"], json!(["arn:aws:s3:::acme-artifacts/lambda/*"]));
    }
}
