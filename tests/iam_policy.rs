//! deploy/iam-policy.json is `shipshape iam-policy` (src/iam.rs) as committed, and grants
//! exactly the AWS actions the code calls: the actions are derived from the SDK adapters'
//! operation names, so a new call without a policy change (or a policy action no code uses)
//! fails here. Whether each call is allowed *in the cases the code makes it* — and denied on
//! what shipshape does not own — is the IAM evaluator's job: tests/iam_evaluator.rs and every
//! e2e test through the AWS test proxy.

use std::collections::BTreeSet;

/// The IAM action(s) an API operation needs. S3's differ from its operation names.
fn actions(service: &str, op: &str) -> Vec<String> {
    let s3 = |a: &str| vec![format!("s3:{a}")];
    match (service, op) {
        ("s3", "HeadBucket") => s3("ListBucket"),
        ("lambda", "Invoke") => vec!["lambda:InvokeFunction".into()],
        ("s3", "GetBucketEncryption") => s3("GetEncryptionConfiguration"),
        ("s3", "PutBucketEncryption") => s3("PutEncryptionConfiguration"),
        ("s3", "GetPublicAccessBlock") => s3("GetBucketPublicAccessBlock"),
        ("s3", "PutPublicAccessBlock" | "DeletePublicAccessBlock") => s3("PutBucketPublicAccessBlock"),
        ("s3", "GetBucketLifecycleConfiguration") => s3("GetLifecycleConfiguration"),
        ("s3", "PutBucketLifecycleConfiguration") => s3("PutLifecycleConfiguration"),
        // Tags at creation need s3:TagResource as well.
        ("s3", "CreateBucket") => vec!["s3:CreateBucket".into(), "s3:TagResource".into()],
        // A final snapshot needs rds:CreateDBSnapshot (since 2024-08-15).
        ("rds", "DeleteDBInstance") => vec!["rds:DeleteDBInstance".into(), "rds:CreateDBSnapshot".into()],
        // A tagged function's tags come back from GetFunction only with lambda:ListTags.
        ("lambda", "GetFunction") => vec!["lambda:GetFunction".into(), "lambda:ListTags".into()],
        // RDS-managed master passwords are created in Secrets Manager on the caller's behalf.
        ("rds", "CreateDBInstance") => [
            "rds:CreateDBInstance",
            "rds:AddTagsToResource",
            "secretsmanager:CreateSecret",
            "secretsmanager:TagResource",
            "kms:DescribeKey",
        ]
        .map(String::from)
        .to_vec(),
        // A KMS-encrypted table (AwsManaged, CustomerKey): DynamoDB describes the key and
        // creates a grant in the caller's name; tags on create need TagResource.
        ("dynamodb", "CreateTable") => {
            ["dynamodb:CreateTable", "dynamodb:TagResource", "kms:CreateGrant", "kms:DescribeKey"].map(String::from).to_vec()
        }
        ("dynamodb", "UpdateTable") => ["dynamodb:UpdateTable", "kms:CreateGrant", "kms:DescribeKey"].map(String::from).to_vec(),
        // A final snapshot is a snapshot the caller creates; tags on create need AddTagsToResource.
        ("elasticache", "DeleteReplicationGroup") => {
            vec!["elasticache:DeleteReplicationGroup".into(), "elasticache:CreateSnapshot".into()]
        }
        ("elasticache", "CreateReplicationGroup") => {
            vec!["elasticache:CreateReplicationGroup".into(), "elasticache:AddTagsToResource".into()]
        }
        // A function names its execution role and may take its code from S3 (read with the
        // caller's permissions); tags on create need TagResource.
        ("lambda", "CreateFunction") => {
            ["lambda:CreateFunction", "lambda:TagResource", "iam:PassRole", "s3:GetObject"].map(String::from).to_vec()
        }
        ("lambda", "UpdateFunctionCode") => vec!["lambda:UpdateFunctionCode".into(), "s3:GetObject".into()],
        ("lambda", "UpdateFunctionConfiguration") => vec!["lambda:UpdateFunctionConfiguration".into(), "iam:PassRole".into()],
        // events.rs holds both the SQS queue and the EventBridge rule (SdkSqs, SdkBridge).
        // A queue or rule created with tags needs TagQueue / TagResource; a batch deletion is
        // authorized as DeleteMessage.
        ("events", "CreateQueue") => vec!["sqs:CreateQueue".into(), "sqs:TagQueue".into()],
        ("events", "DeleteMessageBatch") => vec!["sqs:DeleteMessage".into()],
        (
            "events",
            op @ ("GetQueueUrl" | "GetQueueAttributes" | "ListQueueTags" | "SetQueueAttributes" | "DeleteQueue" | "ReceiveMessage"),
        ) => {
            vec![format!("sqs:{op}")]
        }
        ("events", "PutRule") => vec!["events:PutRule".into(), "events:TagResource".into()],
        // Task definitions name execution and task roles.
        ("ecs", "RegisterTaskDefinition") => vec!["ecs:RegisterTaskDefinition".into(), "iam:PassRole".into()],
        // A load balancer's advancedConfiguration names the role ECS uses for ELB.
        ("ecs", op @ ("CreateService" | "UpdateService")) => vec![format!("ecs:{op}"), "iam:PassRole".into()],
        (service, op) => vec![format!("{service}:{op}")],
    }
}

fn operations(file: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(format!("{}/src/aws/sdk/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut ops = BTreeSet::new();
    for marker in ["sdk(\"", "call(\"", "map_err(\"", "let op = \"", "const OP: &str = \""] {
        for part in text.split(marker).skip(1) {
            if let Some(op) = part.split('"').next().filter(|o| o.chars().all(|c| c.is_ascii_alphanumeric())) {
                ops.insert(op.to_string());
            }
        }
    }
    ops
}

#[test]
fn the_iam_policy_grants_exactly_the_actions_the_code_calls() {
    let mut wanted = BTreeSet::new();
    for (file, service) in [
        ("ecs.rs", "ecs"),
        ("rds.rs", "rds"),
        ("s3.rs", "s3"),
        ("dynamodb.rs", "dynamodb"),
        ("elasticache.rs", "elasticache"),
        ("lambda.rs", "lambda"),
        ("cloudwatch.rs", "cloudwatch"),
        ("logs.rs", "logs"),
        ("events.rs", "events"),
        ("mod.rs", "sts"),
    ] {
        for op in operations(file) {
            wanted.extend(actions(service, &op));
        }
    }
    // Assuming an Environment's roleArn is done by the SDK's credential provider.
    wanted.insert("sts:AssumeRole".into());
    // Prometheus queries signed with SigV4 (health.prometheus.sigv4, src/health/prometheus.rs)
    // reach Amazon Managed Service for Prometheus's query API.
    let health = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/health/prometheus.rs")).unwrap();
    if health.contains(".name(\"aps\")") {
        wanted.insert("aps:QueryMetrics".into());
    }
    let granted = shipshape::iam::policy(&shipshape::iam::PolicyOptions::default()).actions();
    let missing: Vec<_> = wanted.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&wanted).collect();
    assert!(missing.is_empty() && unused.is_empty(), "deploy/iam-policy.json is off: missing {missing:?}, not used by the code {unused:?}");
    assert!(wanted.len() > 30, "the scan found the adapters' operations: {wanted:?}");
}

#[test]
fn deploy_iam_policy_json_is_the_generators_output() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/iam-policy.json")).unwrap();
    let generated = serde_json::to_string_pretty(&shipshape::iam::policy(&shipshape::iam::PolicyOptions::default())).unwrap() + "\n";
    assert!(committed == generated, "deploy/iam-policy.json is stale: run `cargo run -q -- iam-policy > deploy/iam-policy.json`");
}

#[test]
fn the_event_rule_pattern_in_deploy_is_the_one_shipshape_puts() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/events/rule-pattern.json")).unwrap();
    assert!(
        shipshape::core::events::same_json(&committed, &shipshape::core::events::rule_pattern()),
        "deploy/events/rule-pattern.json is stale: it must be core::events::rule_pattern()"
    );
}
