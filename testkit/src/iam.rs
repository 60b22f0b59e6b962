//! IAM in the AWS test proxy. moto checks no permissions, so every request the controller
//! sends is authorized here as AWS authorizes it — each IAM action the request needs (the
//! operation's own, tag-on-create's TagResource, iam:PassRole for each role it names with the
//! service it is passed to, s3:GetObject for Lambda code, ...), on each resource AWS
//! evaluates, with the request's context (request tags, tag keys, the resource's current
//! tags read from moto, service keys such as ecs:CreateAction) — by a real IAM policy
//! evaluator, `@cloud-copilot/iam-simulate` (testkit/iam/evaluate.mjs), against
//! deploy/iam-policy.json. A denied request gets AWS's AccessDenied answer and is recorded
//! (the test fails on it); every decision is written to `target/iam-replay/` (README
//! "Least privilege" counts them).
//!
//! Which actions and resources each operation needs comes from the Service Authorization
//! Reference and the services' own guides; the sources are cited next to each operation and
//! collected in docs/iam.md.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use shipshape::api::{MANAGED_BY_TAG, OWNER_TAG};

/// Whose resource's tags a check needs (read from moto before evaluating).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TagsOf {
    /// An ECS cluster, service or task definition (ListTagsForResource).
    Ecs(String),
    /// An RDS resource (ListTagsForResource).
    Rds(String),
    /// An S3 bucket (GetBucketTagging; visible to IAM only with the bucket's ABAC on).
    S3(String),
    /// A DynamoDB table (ListTagsOfResource).
    Dynamo(String),
    /// An ElastiCache resource (ListTagsForResource).
    Cache(String),
    /// A Lambda function (ListTags; versions and aliases carry the function's tags).
    Lambda(String),
    /// An SQS queue, by URL (ListQueueTags).
    Sqs(String),
    /// An EventBridge rule (ListTagsForResource).
    Events(String),
}

/// One authorization AWS makes for a request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `service:Action`.
    pub action: String,
    /// The resource ARN evaluated (`*` for actions without resource types).
    pub resource: String,
    /// Context keys from the request itself.
    pub context: BTreeMap<String, Value>,
    /// The existing resource whose tags become `aws:ResourceTag/*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags_of: Option<TagsOf>,
}

/// Who sends a request, where.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The account the credentials belong to.
    pub account: String,
    /// The Region of the SigV4 credential scope.
    pub region: String,
}

fn check(action: &str, resource: impl Into<String>) -> Check {
    Check { action: action.to_string(), resource: resource.into(), context: BTreeMap::new(), tags_of: None }
}

impl Check {
    /// `action` on `resource` with no context yet.
    pub fn new(action: &str, resource: impl Into<String>) -> Self {
        check(action, resource)
    }
    /// Adds a context key.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.context.insert(key.to_string(), value.into());
        self
    }
    fn tags(mut self, of: TagsOf) -> Self {
        self.tags_of = Some(of);
        self
    }
    /// `aws:RequestTag/*` and `aws:TagKeys` of the tags a request applies.
    pub fn request_tags(mut self, tags: &BTreeMap<String, String>) -> Self {
        for (k, v) in tags {
            self.context.insert(format!("aws:RequestTag/{k}"), Value::String(v.clone()));
        }
        if !tags.is_empty() {
            self.context.insert("aws:TagKeys".into(), tags.keys().cloned().collect::<Vec<_>>().into());
        }
        self
    }
}

/// Tags given as `[{Key, Value}]` (or `[{key, value}]`, ECS) or as a map (Lambda).
pub fn tag_map(v: &Value) -> BTreeMap<String, String> {
    match v {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|t| {
                let k = t.get("Key").or_else(|| t.get("key"))?.as_str()?;
                Some((k.to_string(), t.get("Value").or_else(|| t.get("value")).and_then(Value::as_str).unwrap_or_default().to_string()))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The last part of a name or ARN (`arn:...:cluster/prod` → `prod`).
fn last(v: &str) -> &str {
    v.rsplit(['/', ':']).next().unwrap_or(v)
}

/// The IAM checks of one request, from its decoded input (aws_model.rs).
pub fn checks(service: &str, operation: &str, input: &Value, c: &Caller) -> Vec<Check> {
    let (a, r) = (&c.account, &c.region);
    let pass = |role: &str, to: &str| check("iam:PassRole", role).with("iam:PassedToService", to);
    match service {
        "ecs" => ecs(operation, input, a, r, pass),
        "rds" => rds(operation, input, a, r),
        "s3" => s3(operation, input),
        "s3control" => s3control(operation, input),
        "dynamodb" => dynamodb(operation, input, a, r),
        "elasticache" => elasticache(operation, input, a, r),
        "lambda" => lambda(operation, input, a, r, pass),
        // GetCallerIdentity needs no permission ("No permissions are required to perform this
        // operation", STS API Reference); AssumeRole is checked on the role.
        "sts" => match operation {
            "GetCallerIdentity" => vec![],
            "AssumeRole" => vec![check("sts:AssumeRole", s(&input["RoleArn"]))],
            op => vec![check(&format!("sts:{op}"), "*")],
        },
        // GetLogEvents is authorized on the log stream.
        "logs" => vec![check(
            &format!("logs:{operation}"),
            format!("arn:aws:logs:{r}:{a}:log-group:{}:log-stream:{}", s(&input["logGroupName"]), s(&input["logStreamName"])),
        )],
        // DescribeAlarms is evaluated against alarm:* (CloudWatch permissions reference).
        "cloudwatch" => vec![check(&format!("cloudwatch:{operation}"), format!("arn:aws:cloudwatch:{r}:{a}:alarm:*"))],
        "sqs" => sqs(operation, input, a, r),
        "events" => events(operation, input, a, r),
        other => vec![check(&format!("{other}:{operation}"), "*")],
    }
}

/// SQS (Service Authorization Reference, "Actions defined by Amazon SQS": every action on
/// the `queue` resource; DeleteMessageBatch is authorized as sqs:DeleteMessage, a CreateQueue
/// with tags also needs sqs:TagQueue — "Amazon SQS cost allocation tags").
fn sqs(op: &str, i: &Value, a: &str, r: &str) -> Vec<Check> {
    let url = s(&i["QueueUrl"]);
    let (account, name) = match i["QueueName"].as_str() {
        Some(n) => (i["QueueOwnerAWSAccountId"].as_str().unwrap_or(a).to_string(), n.to_string()),
        None => {
            let mut parts = url.trim_end_matches('/').rsplit('/');
            let name = parts.next().unwrap_or_default().to_string();
            (parts.next().filter(|p| p.len() == 12).unwrap_or(a).to_string(), name)
        }
    };
    let arn = format!("arn:aws:sqs:{r}:{account}:{name}");
    let action = match op {
        "DeleteMessageBatch" => "DeleteMessage",
        other => other,
    };
    let mut c = check(&format!("sqs:{action}"), arn.clone());
    if !url.is_empty() {
        c = c.tags(TagsOf::Sqs(url));
    }
    match op {
        "CreateQueue" => {
            let tags = tag_map(&i["tags"]);
            let mut out = vec![c.request_tags(&tags)];
            if !tags.is_empty() {
                out.push(check("sqs:TagQueue", arn).request_tags(&tags));
            }
            out
        }
        _ => vec![c],
    }
}

/// EventBridge (Service Authorization Reference, "Actions defined by Amazon EventBridge":
/// rule actions on the `rule` resource with aws:ResourceTag, PutRule with tags also needing
/// events:TagResource, PutTargets with events:TargetArn, PutEvents on the event bus with
/// events:source and events:detail-type).
fn events(op: &str, i: &Value, a: &str, r: &str) -> Vec<Check> {
    let rule = i["Name"].as_str().or(i["Rule"].as_str()).unwrap_or_default();
    let rule_arn = format!("arn:aws:events:{r}:{a}:rule/{rule}");
    match op {
        "PutEvents" => i["Entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let bus = e["EventBusName"].as_str().unwrap_or("default");
                check("events:PutEvents", format!("arn:aws:events:{r}:{a}:event-bus/{}", last(bus)))
                    .with("events:source", vec![s(&e["Source"])])
                    .with("events:detail-type", vec![s(&e["DetailType"])])
            })
            .collect(),
        "ListTagsForResource" => {
            let arn = s(&i["ResourceARN"]);
            vec![check("events:ListTagsForResource", arn.clone()).tags(TagsOf::Events(arn))]
        }
        "PutRule" => {
            let tags = tag_map(&i["Tags"]);
            let mut out = vec![check("events:PutRule", rule_arn.clone()).request_tags(&tags).tags(TagsOf::Events(rule_arn.clone()))];
            if !tags.is_empty() {
                out.push(check("events:TagResource", rule_arn).request_tags(&tags));
            }
            out
        }
        "PutTargets" => i["Targets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                check("events:PutTargets", rule_arn.clone())
                    .with("events:TargetArn", vec![s(&t["Arn"])])
                    .tags(TagsOf::Events(rule_arn.clone()))
            })
            .collect(),
        other => vec![check(&format!("events:{other}"), rule_arn.clone()).tags(TagsOf::Events(rule_arn))],
    }
}

fn ecs(op: &str, i: &Value, a: &str, r: &str, pass: impl Fn(&str, &str) -> Check) -> Vec<Check> {
    let cluster_arn = |v: &Value| {
        let name = v.as_str().unwrap_or("default");
        if name.starts_with("arn:") {
            name.to_string()
        } else {
            format!("arn:aws:ecs:{r}:{a}:cluster/{name}")
        }
    };
    let service_arn = |cluster: &Value, svc: &Value| {
        let name = svc.as_str().unwrap_or_default();
        if name.starts_with("arn:") {
            name.to_string()
        } else {
            format!("arn:aws:ecs:{r}:{a}:service/{}/{name}", last(&cluster_arn(cluster)))
        }
    };
    let td_arn = |v: &Value| {
        let td = v.as_str().unwrap_or_default();
        if td.starts_with("arn:") {
            td.to_string()
        } else if td.contains(':') {
            format!("arn:aws:ecs:{r}:{a}:task-definition/{td}")
        } else {
            // A family alone means its latest ACTIVE revision.
            format!("arn:aws:ecs:{r}:{a}:task-definition/{td}:*")
        }
    };
    let tags = tag_map(&i["tags"]);
    // Tags in a create request are authorized again as ecs:TagResource with ecs:CreateAction
    // (ECS developer guide, "Grant permission to tag resources on creation").
    let tag_on_create =
        |arn: &str| (!tags.is_empty()).then(|| check("ecs:TagResource", arn).request_tags(&tags).with("ecs:CreateAction", op));
    // Roles ECS assumes to manage the load balancer or call lifecycle hooks trust
    // ecs.amazonaws.com ("Amazon ECS infrastructure IAM role for load balancers").
    let service_roles = |out: &mut Vec<Check>| {
        for lb in i["loadBalancers"].as_array().into_iter().flatten() {
            if let Some(role) = lb["advancedConfiguration"]["roleArn"].as_str() {
                out.push(pass(role, "ecs.amazonaws.com"));
            }
        }
        for hook in i["deploymentConfiguration"]["lifecycleHooks"].as_array().into_iter().flatten() {
            if let Some(role) = hook["roleArn"].as_str() {
                out.push(pass(role, "ecs.amazonaws.com"));
            }
        }
    };
    match op {
        "CreateCluster" => {
            let arn = cluster_arn(&i["clusterName"]);
            let mut out = vec![check("ecs:CreateCluster", &arn).request_tags(&tags)];
            out.extend(tag_on_create(&arn));
            out
        }
        "DescribeClusters" => i["clusters"]
            .as_array()
            .map(|cs| cs.iter().map(|c| check("ecs:DescribeClusters", cluster_arn(c))).collect())
            .unwrap_or_else(|| vec![check("ecs:DescribeClusters", cluster_arn(&Value::Null))]),
        "PutClusterCapacityProviders" | "UpdateClusterSettings" | "DeleteCluster" => {
            let arn = cluster_arn(&i["cluster"]);
            let mut c = check(&format!("ecs:{op}"), &arn).tags(TagsOf::Ecs(arn.clone()));
            if let Some(p) = i["capacityProviders"].as_array() {
                c = c.with("ecs:capacity-provider", p.clone());
            }
            vec![c]
        }
        "TagResource" => {
            let arn = s(&i["resourceArn"]);
            vec![check("ecs:TagResource", &arn).request_tags(&tags).tags(TagsOf::Ecs(arn))]
        }
        "UntagResource" => {
            let arn = s(&i["resourceArn"]);
            vec![check("ecs:UntagResource", &arn).with("aws:TagKeys", i["tagKeys"].clone()).tags(TagsOf::Ecs(arn))]
        }
        "RegisterTaskDefinition" => {
            let arn = format!("arn:aws:ecs:{r}:{a}:task-definition/{}:*", s(&i["family"]));
            let mut out = vec![check("ecs:RegisterTaskDefinition", &arn).request_tags(&tags)];
            out.extend(tag_on_create(&arn));
            // A task definition names the roles its tasks run with: passed to ECS tasks.
            for role in ["executionRoleArn", "taskRoleArn"] {
                if let Some(role) = i[role].as_str() {
                    out.push(pass(role, "ecs-tasks.amazonaws.com"));
                }
            }
            out
        }
        "DescribeTaskDefinition" | "ListTaskDefinitions" | "DeregisterTaskDefinition" => vec![check(&format!("ecs:{op}"), "*")],
        "DescribeServices" => i["services"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|svc| check("ecs:DescribeServices", service_arn(&i["cluster"], svc)).with("ecs:cluster", cluster_arn(&i["cluster"])))
            .collect(),
        "CreateService" => {
            let arn = service_arn(&i["cluster"], &i["serviceName"]);
            let mut out = vec![check("ecs:CreateService", &arn)
                .request_tags(&tags)
                .with("ecs:cluster", cluster_arn(&i["cluster"]))
                .with("ecs:task-definition", td_arn(&i["taskDefinition"]))];
            out.extend(tag_on_create(&arn));
            service_roles(&mut out);
            out
        }
        "UpdateService" | "DeleteService" => {
            let arn = service_arn(&i["cluster"], &i["service"]);
            let mut c = check(&format!("ecs:{op}"), &arn).tags(TagsOf::Ecs(arn.clone())).with("ecs:cluster", cluster_arn(&i["cluster"]));
            if i["taskDefinition"].is_string() {
                c = c.with("ecs:task-definition", td_arn(&i["taskDefinition"]));
            }
            let mut out = vec![c];
            service_roles(&mut out);
            out
        }
        // Authorized against both the service and its deployment (both resource types are
        // required in the Service Authorization Reference); the service's tags decide.
        "ContinueServiceDeployment" | "StopServiceDeployment" => {
            let dep = s(&i["serviceDeploymentArn"]);
            let service = deployment_service(&dep);
            vec![
                check(&format!("ecs:{op}"), &service).tags(TagsOf::Ecs(service.clone())),
                check(&format!("ecs:{op}"), &dep).with("ecs:service", service.clone()),
            ]
        }
        "DescribeServiceDeployments" | "DescribeServiceRevisions" => {
            let key = if op == "DescribeServiceDeployments" { "serviceDeploymentArns" } else { "serviceRevisionArns" };
            i[key]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|v| {
                    let arn = s(v);
                    let service = deployment_service(&arn);
                    [check(&format!("ecs:{op}"), &service), check(&format!("ecs:{op}"), arn).with("ecs:service", service)]
                })
                .collect()
        }
        "ListServiceDeployments" => vec![check("ecs:ListServiceDeployments", service_arn(&i["cluster"], &i["service"]))],
        // RunTask is authorized on the task definition (ecs:cluster the condition key), its
        // tags again as ecs:TagResource with ecs:CreateAction RunTask on the new task.
        "RunTask" => {
            let td = td_arn(&i["taskDefinition"]);
            let cluster = cluster_arn(&i["cluster"]);
            let task = format!("arn:aws:ecs:{r}:{a}:task/{}/*", last(&cluster));
            let mut out =
                vec![check("ecs:RunTask", &td).request_tags(&tags).with("ecs:cluster", cluster.clone()).tags(TagsOf::Ecs(td.clone()))];
            out.extend(tag_on_create(&task));
            out
        }
        "StopTask" => {
            let task = s(&i["task"]);
            vec![check("ecs:StopTask", &task).with("ecs:cluster", cluster_arn(&i["cluster"])).tags(TagsOf::Ecs(task.clone()))]
        }
        "DescribeTasks" => i["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| check("ecs:DescribeTasks", s(t)).with("ecs:cluster", cluster_arn(&i["cluster"])))
            .collect(),
        "ListTasks" => {
            let cluster = cluster_arn(&i["cluster"]);
            vec![check("ecs:ListTasks", format!("arn:aws:ecs:{r}:{a}:container-instance/{}/*", last(&cluster))).with("ecs:cluster", cluster)]
        }
        other => vec![check(&format!("ecs:{other}"), "*")],
    }
}

/// The service of a service-deployment or service-revision ARN
/// (`arn:aws:ecs:R:A:service-deployment/CLUSTER/SERVICE/ID`).
fn deployment_service(arn: &str) -> String {
    let Some((head, rest)) = arn.split_once(":service-deployment/").or_else(|| arn.split_once(":service-revision/")) else {
        return arn.to_string();
    };
    let mut parts = rest.split('/');
    let (cluster, service) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    format!("{head}:service/{cluster}/{service}")
}

fn rds(op: &str, i: &Value, a: &str, r: &str) -> Vec<Check> {
    let db = |v: &Value| format!("arn:aws:rds:{r}:{a}:db:{}", s(v));
    let subgrp = |v: &Value| format!("arn:aws:rds:{r}:{a}:subgrp:{}", s(v));
    let tags = tag_map(&i["Tags"]);
    // "If tags are specified in the create action, RDS performs additional authorization on
    // the rds:AddTagsToResource action" (RDS user guide, tags on create).
    let tag_on_create = |arn: &str| (!tags.is_empty()).then(|| check("rds:AddTagsToResource", arn).request_tags(&tags));
    match op {
        "CreateDBInstance" => {
            let arn = db(&i["DBInstanceIdentifier"]);
            let mut out = vec![check("rds:CreateDBInstance", &arn).request_tags(&tags)];
            if i["DBSubnetGroupName"].is_string() {
                out.push(check("rds:CreateDBInstance", subgrp(&i["DBSubnetGroupName"])).request_tags(&tags));
            }
            out.extend(tag_on_create(&arn));
            // The master password in Secrets Manager is created in the caller's name
            // (RDS user guide, "Permissions required for Secrets Manager integration").
            if i["ManageMasterUserPassword"].as_str() == Some("true") || i["ManageMasterUserPassword"] == true {
                let secret = format!("arn:aws:secretsmanager:{r}:{a}:secret:rds!db-{}", s(&i["DBInstanceIdentifier"]));
                out.push(check("secretsmanager:CreateSecret", &secret));
                out.push(check("secretsmanager:TagResource", &secret));
                out.push(
                    check("kms:DescribeKey", format!("arn:aws:kms:{r}:{a}:key/aws-secretsmanager"))
                        .with("kms:ViaService", format!("secretsmanager.{r}.amazonaws.com")),
                );
            }
            out
        }
        "DescribeDBInstances" => match i["DBInstanceIdentifier"].as_str() {
            Some(_) => vec![check("rds:DescribeDBInstances", db(&i["DBInstanceIdentifier"]))],
            // A describe of every instance is evaluated against db:* ("DescribeDBInstances
            // with no identifier", see docs/iam.md).
            None => vec![check("rds:DescribeDBInstances", format!("arn:aws:rds:{r}:{a}:db:*"))],
        },
        "ModifyDBInstance" => {
            let arn = db(&i["DBInstanceIdentifier"]);
            vec![check("rds:ModifyDBInstance", &arn).tags(TagsOf::Rds(arn))]
        }
        "DeleteDBInstance" => {
            let arn = db(&i["DBInstanceIdentifier"]);
            let mut out = vec![check("rds:DeleteDBInstance", &arn).tags(TagsOf::Rds(arn.clone()))];
            // Since 2024-08-15 a final snapshot also needs rds:CreateDBSnapshot, on the
            // instance and on the new snapshot (AWS's notice of that change).
            if let Some(snap) = i["FinalDBSnapshotIdentifier"].as_str() {
                out.push(check("rds:CreateDBSnapshot", &arn).tags(TagsOf::Rds(arn.clone())));
                out.push(check("rds:CreateDBSnapshot", format!("arn:aws:rds:{r}:{a}:snapshot:{snap}")));
            }
            out
        }
        "AddTagsToResource" => {
            let arn = s(&i["ResourceName"]);
            vec![check("rds:AddTagsToResource", &arn).request_tags(&tags).tags(TagsOf::Rds(arn))]
        }
        "CreateDBSubnetGroup" => {
            let arn = subgrp(&i["DBSubnetGroupName"]);
            let mut out = vec![check("rds:CreateDBSubnetGroup", &arn).request_tags(&tags)];
            out.extend(tag_on_create(&arn));
            out
        }
        "ModifyDBSubnetGroup" => {
            let arn = subgrp(&i["DBSubnetGroupName"]);
            vec![check("rds:ModifyDBSubnetGroup", &arn).tags(TagsOf::Rds(arn))]
        }
        "DescribeDBSubnetGroups" => match i["DBSubnetGroupName"].as_str() {
            Some(_) => vec![check("rds:DescribeDBSubnetGroups", subgrp(&i["DBSubnetGroupName"]))],
            None => vec![check("rds:DescribeDBSubnetGroups", format!("arn:aws:rds:{r}:{a}:subgrp:*"))],
        },
        "DeleteDBSnapshot" => {
            let snap = format!("arn:aws:rds:{r}:{a}:snapshot:{}", s(&i["DBSnapshotIdentifier"]));
            vec![check("rds:DeleteDBSnapshot", &snap).tags(TagsOf::Rds(snap.clone()))]
        }
        "DescribeDBSnapshots" => match i["DBSnapshotIdentifier"].as_str() {
            Some(id) => vec![check("rds:DescribeDBSnapshots", format!("arn:aws:rds:{r}:{a}:snapshot:{id}"))],
            None => vec![check("rds:DescribeDBSnapshots", db(&i["DBInstanceIdentifier"]))],
        },
        "CreateDBSnapshot" => {
            let arn = db(&i["DBInstanceIdentifier"]);
            let snap = format!("arn:aws:rds:{r}:{a}:snapshot:{}", s(&i["DBSnapshotIdentifier"]));
            let mut out = vec![
                check("rds:CreateDBSnapshot", &arn).request_tags(&tags).tags(TagsOf::Rds(arn.clone())),
                check("rds:CreateDBSnapshot", &snap).request_tags(&tags),
            ];
            out.extend(tag_on_create(&snap));
            out
        }
        other => vec![check(&format!("rds:{other}"), format!("arn:aws:rds:{r}:{a}:*"))],
    }
}

/// S3's IAM action of an operation (S3 names several after the configuration, not the call).
fn s3_action(op: &str) -> String {
    let a = match op {
        "HeadBucket" | "ListObjects" | "ListObjectsV2" => "ListBucket",
        "GetBucketEncryption" => "GetEncryptionConfiguration",
        "PutBucketEncryption" => "PutEncryptionConfiguration",
        "GetPublicAccessBlock" => "GetBucketPublicAccessBlock",
        "PutPublicAccessBlock" | "DeletePublicAccessBlock" => "PutBucketPublicAccessBlock",
        "GetBucketLifecycleConfiguration" => "GetLifecycleConfiguration",
        "PutBucketLifecycleConfiguration" | "DeleteBucketLifecycle" => "PutLifecycleConfiguration",
        "HeadObject" => "GetObject",
        other => other,
    };
    format!("s3:{a}")
}

fn s3(op: &str, i: &Value) -> Vec<Check> {
    let bucket = s(&i["Bucket"]);
    let arn = format!("arn:aws:s3:::{bucket}");
    match op {
        "CreateBucket" => {
            let tags = tag_map(&i["CreateBucketConfiguration"]["Tags"]);
            let mut out = vec![check("s3:CreateBucket", &arn).request_tags(&tags)];
            // Tags at creation need s3:TagResource as well (CreateBucketConfiguration.Tags).
            if !tags.is_empty() {
                out.push(check("s3:TagResource", &arn).request_tags(&tags));
            }
            out
        }
        "GetObject" | "HeadObject" | "PutObject" | "DeleteObject" => {
            vec![check(&s3_action(op), format!("{arn}/{}", s(&i["Key"]))).tags(TagsOf::S3(bucket))]
        }
        _ => vec![check(&s3_action(op), &arn).tags(TagsOf::S3(bucket))],
    }
}

fn s3control(op: &str, i: &Value) -> Vec<Check> {
    let arn = s(&i["ResourceArn"]);
    let bucket = arn.strip_prefix("arn:aws:s3:::").unwrap_or(&arn).to_string();
    let mut c = check(&format!("s3:{op}"), &arn).tags(TagsOf::S3(bucket));
    match op {
        "TagResource" => c = c.request_tags(&tag_map(&i["Tags"])),
        "UntagResource" => c = c.with("aws:TagKeys", i["TagKeys"].clone()),
        _ => {}
    }
    vec![c]
}

fn dynamodb(op: &str, i: &Value, a: &str, r: &str) -> Vec<Check> {
    let table = |v: &Value| {
        let name = v.as_str().unwrap_or_default();
        if name.starts_with("arn:") {
            name.to_string()
        } else {
            format!("arn:aws:dynamodb:{r}:{a}:table/{name}")
        }
    };
    let kms = |out: &mut Vec<Check>| {
        // A KMS-encrypted table: DynamoDB describes the key and creates a grant in the
        // caller's name ("Authorizing use of your KMS key", DynamoDB developer guide).
        if i["SSESpecification"]["SSEType"].as_str() == Some("KMS") || i["SSESpecification"]["KMSMasterKeyId"].is_string() {
            // IAM evaluates the key itself (an alias is resolved to its key first); the
            // AWS managed key of DynamoDB stands in as key/aws-dynamodb.
            let key = i["SSESpecification"]["KMSMasterKeyId"].as_str().map(String::from).unwrap_or_else(|| "aws-dynamodb".into());
            let key = if key.starts_with("arn:") && key.contains(":key/") {
                key
            } else {
                format!("arn:aws:kms:{r}:{a}:key/{}", key.rsplit(['/', ':']).next().unwrap_or("aws-dynamodb"))
            };
            for action in ["kms:DescribeKey", "kms:CreateGrant"] {
                out.push(check(action, &key).with("kms:ViaService", format!("dynamodb.{r}.amazonaws.com")));
            }
        }
    };
    match op {
        "CreateTable" => {
            let arn = table(&i["TableName"]);
            let tags = tag_map(&i["Tags"]);
            let mut out = vec![check("dynamodb:CreateTable", &arn).request_tags(&tags)];
            // CreateTable with Tags (even empty) is authorized as dynamodb:TagResource too.
            if i["Tags"].is_array() {
                out.push(check("dynamodb:TagResource", &arn).request_tags(&tags));
            }
            kms(&mut out);
            out
        }
        "TagResource" => {
            let arn = s(&i["ResourceArn"]);
            vec![check("dynamodb:TagResource", &arn).request_tags(&tag_map(&i["Tags"])).tags(TagsOf::Dynamo(arn))]
        }
        "ListTagsOfResource" => vec![check("dynamodb:ListTagsOfResource", s(&i["ResourceArn"]))],
        "ListBackups" | "ListTables" => vec![check(&format!("dynamodb:{op}"), "*")],
        "DescribeTable" | "DescribeContinuousBackups" | "DescribeTimeToLive" => {
            vec![check(&format!("dynamodb:{op}"), table(&i["TableName"]))]
        }
        _ => {
            let arn = table(&i["TableName"]);
            let mut out = vec![check(&format!("dynamodb:{op}"), &arn).tags(TagsOf::Dynamo(arn))];
            if op == "UpdateTable" {
                kms(&mut out);
            }
            out
        }
    }
}

fn elasticache(op: &str, i: &Value, a: &str, r: &str) -> Vec<Check> {
    let arn = |kind: &str, v: &Value| format!("arn:aws:elasticache:{r}:{a}:{kind}:{}", s(v));
    let tags = tag_map(&i["Tags"]);
    // Tags at creation are authorized as AddTagsToResource too (ElastiCache API permissions).
    let tag_on_create = |arn: &str| (!tags.is_empty()).then(|| check("elasticache:AddTagsToResource", arn).request_tags(&tags));
    match op {
        "CreateReplicationGroup" => {
            let rg = arn("replicationgroup", &i["ReplicationGroupId"]);
            let mut out = vec![check("elasticache:CreateReplicationGroup", &rg).request_tags(&tags)];
            // Also evaluated on its parameter group (required; the engine's default when none
            // is named) and on the subnet group it names (Service Authorization Reference).
            let pg = i["CacheParameterGroupName"].as_str().map(String::from).unwrap_or_else(|| {
                let engine = i["Engine"].as_str().unwrap_or("redis");
                let major = i["EngineVersion"].as_str().and_then(|v| v.split('.').next()).unwrap_or("7");
                format!("default.{engine}{major}")
            });
            out.push(check("elasticache:CreateReplicationGroup", format!("arn:aws:elasticache:{r}:{a}:parametergroup:{pg}")));
            if i["CacheSubnetGroupName"].is_string() {
                out.push(check("elasticache:CreateReplicationGroup", arn("subnetgroup", &i["CacheSubnetGroupName"])));
            }
            out.extend(tag_on_create(&rg));
            out
        }
        "CreateCacheSubnetGroup" => {
            let sg = arn("subnetgroup", &i["CacheSubnetGroupName"]);
            let mut out = vec![check("elasticache:CreateCacheSubnetGroup", &sg).request_tags(&tags)];
            out.extend(tag_on_create(&sg));
            out
        }
        "ModifyCacheSubnetGroup" => {
            let sg = arn("subnetgroup", &i["CacheSubnetGroupName"]);
            vec![check("elasticache:ModifyCacheSubnetGroup", &sg).tags(TagsOf::Cache(sg))]
        }
        "ModifyReplicationGroup" | "IncreaseReplicaCount" | "DecreaseReplicaCount" => {
            let rg = arn("replicationgroup", &i["ReplicationGroupId"]);
            vec![check(&format!("elasticache:{op}"), &rg).tags(TagsOf::Cache(rg))]
        }
        "DeleteReplicationGroup" => {
            let rg = arn("replicationgroup", &i["ReplicationGroupId"]);
            let mut out = vec![check("elasticache:DeleteReplicationGroup", &rg).tags(TagsOf::Cache(rg.clone()))];
            // A final snapshot: the delete is evaluated on the new snapshot too, and the
            // snapshot is one the caller creates.
            if i["FinalSnapshotIdentifier"].is_string() {
                let snap = arn("snapshot", &i["FinalSnapshotIdentifier"]);
                out.push(check("elasticache:DeleteReplicationGroup", &snap));
                out.push(check("elasticache:CreateSnapshot", &rg).tags(TagsOf::Cache(rg.clone())));
                out.push(check("elasticache:CreateSnapshot", &snap));
            }
            out
        }
        "AddTagsToResource" => {
            let res = s(&i["ResourceName"]);
            vec![check("elasticache:AddTagsToResource", &res).request_tags(&tags).tags(TagsOf::Cache(res))]
        }
        "ListTagsForResource" => vec![check("elasticache:ListTagsForResource", s(&i["ResourceName"]))],
        "DescribeReplicationGroups" => vec![check(
            "elasticache:DescribeReplicationGroups",
            i["ReplicationGroupId"]
                .as_str()
                .map_or(format!("arn:aws:elasticache:{r}:{a}:replicationgroup:*"), |_| arn("replicationgroup", &i["ReplicationGroupId"])),
        )],
        "DescribeCacheClusters" => vec![check(
            "elasticache:DescribeCacheClusters",
            i["CacheClusterId"].as_str().map_or(format!("arn:aws:elasticache:{r}:{a}:cluster:*"), |_| arn("cluster", &i["CacheClusterId"])),
        )],
        "DescribeCacheSubnetGroups" => vec![check(
            "elasticache:DescribeCacheSubnetGroups",
            i["CacheSubnetGroupName"]
                .as_str()
                .map_or(format!("arn:aws:elasticache:{r}:{a}:subnetgroup:*"), |_| arn("subnetgroup", &i["CacheSubnetGroupName"])),
        )],
        other => vec![check(&format!("elasticache:{other}"), "*")],
    }
}

fn lambda(op: &str, i: &Value, a: &str, r: &str, pass: impl Fn(&str, &str) -> Check) -> Vec<Check> {
    let name = s(&i["FunctionName"]);
    let function = if name.starts_with("arn:") {
        // A qualified ARN's function part.
        name.split(':').take(7).collect::<Vec<_>>().join(":")
    } else {
        format!("arn:aws:lambda:{r}:{a}:function:{name}")
    };
    let tags_of = TagsOf::Lambda(function.clone());
    let code = |bucket: &Value, key: &Value, out: &mut Vec<Check>| {
        // Lambda reads S3 code with the caller's permissions ("make sure your request
        // credentials have permission to GetObject").
        if let (Some(b), Some(k)) = (bucket.as_str(), key.as_str()) {
            out.push(check("s3:GetObject", format!("arn:aws:s3:::{b}/{k}")).tags(TagsOf::S3(b.to_string())));
        }
    };
    match op {
        "CreateFunction" => {
            let tags = tag_map(&i["Tags"]);
            let mut out = vec![check("lambda:CreateFunction", &function).request_tags(&tags)];
            // "lambda:TagResource – ... anyone who needs to call TagResource or perform a tag
            // on create" (Lambda developer guide, tags).
            if !tags.is_empty() {
                out.push(check("lambda:TagResource", &function).request_tags(&tags));
            }
            out.push(pass(&s(&i["Role"]), "lambda.amazonaws.com"));
            code(&i["Code"]["S3Bucket"], &i["Code"]["S3Key"], &mut out);
            out
        }
        // GetFunction of a tagged function also needs lambda:ListTags to see its tags
        // (without it Lambda answers TagsError instead of Tags).
        "GetFunction" => vec![check("lambda:GetFunction", &function), check("lambda:ListTags", &function)],
        "ListTags" => {
            let arn = s(&i["Resource"]);
            vec![check("lambda:ListTags", arn)]
        }
        "TagResource" => {
            let arn = s(&i["Resource"]);
            vec![check("lambda:TagResource", &arn).request_tags(&tag_map(&i["Tags"])).tags(TagsOf::Lambda(arn))]
        }
        "UpdateFunctionCode" => {
            let mut out = vec![check("lambda:UpdateFunctionCode", &function).tags(tags_of)];
            code(&i["S3Bucket"], &i["S3Key"], &mut out);
            out
        }
        "UpdateFunctionConfiguration" => {
            let mut out = vec![check("lambda:UpdateFunctionConfiguration", &function).tags(tags_of)];
            if let Some(role) = i["Role"].as_str() {
                out.push(pass(role, "lambda.amazonaws.com"));
            }
            out
        }
        "GetAlias" | "ListVersionsByFunction" | "ListAliases" | "GetFunctionConfiguration" => {
            vec![check(&format!("lambda:{op}"), &function)]
        }
        // Provisioned concurrency is authorized on the qualified ARN (alias or version).
        "PutProvisionedConcurrencyConfig" | "DeleteProvisionedConcurrencyConfig" => {
            vec![check(&format!("lambda:{op}"), format!("{function}:{}", s(&i["Qualifier"]))).tags(tags_of)]
        }
        "GetProvisionedConcurrencyConfig" => {
            vec![check("lambda:GetProvisionedConcurrencyConfig", format!("{function}:{}", s(&i["Qualifier"])))]
        }
        "Invoke" => {
            let q = i["Qualifier"].as_str().map(|q| format!("{function}:{q}")).unwrap_or(function);
            vec![check("lambda:InvokeFunction", q).tags(tags_of)]
        }
        _ => vec![check(&format!("lambda:{op}"), &function).tags(tags_of)],
    }
}

/// The verdict on one check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Allowed, ImplicitlyDenied, ExplicitlyDenied or Error.
    pub result: String,
    /// The statements (Sids) that allowed it.
    #[serde(default)]
    pub statements: Vec<String>,
    /// Context keys the evaluator dropped as not applicable to the action.
    #[serde(default)]
    pub ignored: Vec<String>,
    /// What went wrong, for Error.
    #[serde(default)]
    pub detail: Option<String>,
}

impl Decision {
    /// Whether AWS would let the request through.
    pub fn allowed(&self) -> bool {
        self.result == "Allowed"
    }
}

struct Process {
    stdin: ChildStdin,
    _child: Child,
}

/// The evaluator: one Node process per test process (testkit/iam/evaluate.mjs), shared by
/// every proxy in it; answers are cached (the same request in the same context gets the
/// same answer).
pub struct Evaluator {
    process: Mutex<Process>,
    pending: Arc<Mutex<HashMap<u64, tokio::sync::oneshot::Sender<Decision>>>>,
    next: std::sync::atomic::AtomicU64,
    registered: Mutex<std::collections::HashSet<String>>,
    cache: Mutex<HashMap<String, Decision>>,
}

/// The directory of the evaluator (its package.json; `npm ci` installs node_modules there).
pub fn evaluator_dir() -> std::path::PathBuf {
    crate::root().join("testkit/iam")
}

impl Evaluator {
    /// The process's evaluator, started on first use; None when Node or the npm package is
    /// missing (scripts/test.sh --setup installs them).
    pub fn shared() -> Option<&'static Evaluator> {
        static E: OnceLock<Option<Evaluator>> = OnceLock::new();
        E.get_or_init(|| {
            let dir = evaluator_dir();
            if !dir.join("node_modules/@cloud-copilot/iam-simulate").is_dir() {
                return None;
            }
            let mut child = Command::new("node")
                .arg(dir.join("evaluate.mjs"))
                .current_dir(&dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .ok()?;
            let stdin = child.stdin.take()?;
            let stdout = child.stdout.take()?;
            let pending: Arc<Mutex<HashMap<u64, tokio::sync::oneshot::Sender<Decision>>>> = Arc::default();
            let reader = pending.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                    let Some(id) = v["id"].as_u64() else { continue };
                    let decision = serde_json::from_value(v).unwrap_or(Decision {
                        result: "Error".into(),
                        statements: vec![],
                        ignored: vec![],
                        detail: Some(line.clone()),
                    });
                    if let Some(tx) = reader.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
                        let _ = tx.send(decision);
                    }
                }
            });
            Some(Evaluator {
                process: Mutex::new(Process { stdin, _child: child }),
                pending,
                next: std::sync::atomic::AtomicU64::new(1),
                registered: Mutex::default(),
                cache: Mutex::default(),
            })
        })
        .as_ref()
    }

    async fn send(&self, mut msg: Value) -> Decision {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        msg["id"] = id.into();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        {
            let mut p = self.process.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(p.stdin, "{msg}");
            let _ = p.stdin.flush();
        }
        rx.await.unwrap_or(Decision {
            result: "Error".into(),
            statements: vec![],
            ignored: vec![],
            detail: Some("evaluator exited".into()),
        })
    }

    /// Makes `policy` known under `name` (once per name).
    pub async fn register(&self, name: &str, policy: &Value) {
        if !self.registered.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string()) {
            return;
        }
        self.send(json!({"register": name, "policy": policy})).await;
    }

    /// The verdict on `check` for a principal of `account` holding `policies` (registered
    /// names), with `context` complete (request keys plus the resource's tags).
    pub async fn evaluate(
        &self,
        policies: &[String],
        account: &str,
        check: &Check,
        context: &Map<String, Value>,
        s3_abac: bool,
    ) -> Decision {
        let msg = json!({
            "policies": policies,
            "principal": format!("arn:aws:iam::{account}:role/shipshape"),
            "action": check.action,
            "resource": check.resource,
            "account": account,
            "context": context,
            "s3Abac": s3_abac,
        });
        let key = msg.to_string();
        if let Some(d) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return d.clone();
        }
        let d = self.send(msg).await;
        if d.result != "Error" {
            self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, d.clone());
        }
        d
    }
}

/// The policies every proxy evaluates against unless told otherwise: deploy/iam-policy.json.
pub fn deploy_policy() -> Value {
    let text = std::fs::read_to_string(crate::root().join("deploy/iam-policy.json")).expect("deploy/iam-policy.json");
    serde_json::from_str(&text).expect("deploy/iam-policy.json is JSON")
}

/// One recorded authorization (a line of `target/iam-replay/*.jsonl`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// The request's number in this test process (a request needs one check or several).
    #[serde(default)]
    pub request: u64,
    /// Service and operation of the request.
    pub operation: String,
    /// The check.
    pub check: Check,
    /// The resource's tags as read.
    #[serde(default)]
    pub resource_tags: BTreeMap<String, String>,
    /// The verdict.
    pub decision: Decision,
}

/// Appends records to `target/iam-replay/<test process>.jsonl`.
pub fn record(records: &[Record]) {
    static FILE: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
    let file = FILE.get_or_init(|| {
        let dir = std::env::var_os("SHIPSHAPE_IAM_REPLAY_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| crate::root().join("target/iam-replay"));
        std::fs::create_dir_all(&dir).ok()?;
        let exe = std::env::current_exe().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).unwrap_or_default();
        let path = dir.join(format!("{exe}-{}.jsonl", std::process::id()));
        std::fs::OpenOptions::new().create(true).append(true).open(path).ok().map(Mutex::new)
    });
    if let Some(f) = file {
        let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
        for r in records {
            if let Ok(line) = serde_json::to_string(r) {
                let _ = writeln!(f, "{line}");
            }
        }
    }
}

/// Whether a tag map holds shipshape's ownership (for reports).
pub fn owned(tags: &BTreeMap<String, String>) -> bool {
    tags.contains_key(MANAGED_BY_TAG) && tags.contains_key(OWNER_TAG)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller { account: "123456789012".into(), region: "eu-west-1".into() }
    }

    #[test]
    fn a_create_with_tags_is_also_a_tag_resource_with_its_create_action() {
        let i = json!({"cluster": "prod", "serviceName": "api", "taskDefinition": "api:3",
            "tags": [{"key": "shipshape.dev/managed-by", "value": "shipshape"}],
            "loadBalancers": [{"advancedConfiguration": {"roleArn": "arn:aws:iam::123456789012:role/shipshape/ecs/elb"}}]});
        let c = checks("ecs", "CreateService", &i, &caller());
        assert_eq!(c[0].resource, "arn:aws:ecs:eu-west-1:123456789012:service/prod/api");
        assert_eq!(c[0].context["ecs:task-definition"], "arn:aws:ecs:eu-west-1:123456789012:task-definition/api:3");
        assert_eq!((c[1].action.as_str(), c[1].context["ecs:CreateAction"].as_str()), ("ecs:TagResource", Some("CreateService")));
        assert_eq!((c[2].action.as_str(), c[2].context["iam:PassedToService"].as_str()), ("iam:PassRole", Some("ecs.amazonaws.com")));
    }

    #[test]
    fn writes_to_existing_resources_read_their_tags_and_deployments_name_their_service() {
        let c = checks(
            "ecs",
            "ContinueServiceDeployment",
            &json!({"serviceDeploymentArn": "arn:aws:ecs:eu-west-1:1:service-deployment/prod/api/abc"}),
            &caller(),
        );
        assert_eq!(c[0].resource, "arn:aws:ecs:eu-west-1:1:service/prod/api");
        assert_eq!(c[0].tags_of, Some(TagsOf::Ecs("arn:aws:ecs:eu-west-1:1:service/prod/api".into())));
        let c =
            checks("rds", "DeleteDBInstance", &json!({"DBInstanceIdentifier": "db", "FinalDBSnapshotIdentifier": "db-final-1"}), &caller());
        assert_eq!(
            c.iter().map(|c| c.action.as_str()).collect::<Vec<_>>(),
            ["rds:DeleteDBInstance", "rds:CreateDBSnapshot", "rds:CreateDBSnapshot"]
        );
        assert_eq!(c[2].resource, "arn:aws:rds:eu-west-1:123456789012:snapshot:db-final-1");
        let c = checks("lambda", "PutProvisionedConcurrencyConfig", &json!({"FunctionName": "f", "Qualifier": "live"}), &caller());
        assert_eq!(c[0].resource, "arn:aws:lambda:eu-west-1:123456789012:function:f:live");
    }
}
