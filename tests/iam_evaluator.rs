//! deploy/iam-policy.json in a real IAM policy evaluator (`@cloud-copilot/iam-simulate`,
//! testkit/iam): what a hostile tenant — or a controller bug — could make shipshape ask AWS
//! for is denied; what shipshape does to what it owns is allowed. Every request of the e2e
//! suite goes through the same evaluator in the AWS test proxy (testkit/src/gate.rs), so the
//! policy is in force in every e2e test; this file is the table of cases no e2e test makes.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use shipshape_testkit::gate::context;
use shipshape_testkit::iam::{Caller, Check, Evaluator};

const ACCOUNT: &str = "123456789012";
const OURS: &[(&str, &str)] = &[("shipshape.dev/managed-by", "shipshape"), ("shipshape.dev/owner", "team-a/api")];
const THEIRS: &[(&str, &str)] = &[("team", "payments"), ("cost-center", "42")];

fn tags(t: &[(&str, &str)]) -> BTreeMap<String, String> {
    t.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// One case: a check, the resource's tags (None: a resource without tags, or new), whether
/// the bucket's ABAC is on, and the region.
struct Case {
    what: &'static str,
    check: Check,
    resource: Option<&'static [(&'static str, &'static str)]>,
    abac: bool,
    region: &'static str,
}

fn case(what: &'static str, check: Check) -> Case {
    Case { what, check, resource: None, abac: false, region: "eu-west-1" }
}

impl Case {
    fn on(mut self, t: &'static [(&'static str, &'static str)]) -> Self {
        self.resource = Some(t);
        self
    }
    fn abac(mut self) -> Self {
        self.abac = true;
        self
    }
    fn region(mut self, r: &'static str) -> Self {
        self.region = r;
        self
    }
}

async fn verdict(e: &Evaluator, policies: &[String], c: &Case) -> String {
    let resource_tags = c.resource.map(tags).unwrap_or_default();
    let ctx = context(&c.check, &resource_tags, &Caller { account: ACCOUNT.into(), region: c.region.into() });
    e.evaluate(policies, ACCOUNT, &c.check, &ctx, c.abac).await.result
}

fn arn(s: &str) -> String {
    s.replace("R:A", &format!("eu-west-1:{ACCOUNT}"))
}

fn ownership_request() -> BTreeMap<String, String> {
    tags(&[("shipshape.dev/managed-by", "shipshape"), ("shipshape.dev/owner", "team-a/api"), ("Project", "car-rental")])
}

fn hostile() -> Vec<Case> {
    let svc = arn("arn:aws:ecs:R:A:service/prod/payments-api");
    let td = arn("arn:aws:ecs:R:A:task-definition/payments-api:7");
    let func = arn("arn:aws:lambda:R:A:function:payments-worker");
    let db = arn("arn:aws:rds:R:A:db:payments");
    let table = arn("arn:aws:dynamodb:R:A:table/payments-ledger");
    let cache = arn("arn:aws:elasticache:R:A:replicationgroup:payments-sessions");
    let forge = tags(&[("shipshape.dev/managed-by", "shipshape"), ("shipshape.dev/owner", "team-a/api")]);
    vec![
        // Another team's function, bucket, database, table, cache, service.
        case("another team's function: new code", Check::new("lambda:UpdateFunctionCode", &func)).on(THEIRS),
        case("another team's function: alias moved", Check::new("lambda:UpdateAlias", &func)).on(THEIRS),
        case("another team's function: deleted", Check::new("lambda:DeleteFunction", &func)).on(THEIRS),
        case("another team's function: its role swapped", Check::new("lambda:UpdateFunctionConfiguration", &func)).on(THEIRS),
        case(
            "another team's bucket (ABAC on): public access opened",
            Check::new("s3:PutBucketPublicAccessBlock", "arn:aws:s3:::payments-exports"),
        )
        .on(THEIRS)
        .abac(),
        case(
            "another team's bucket (ABAC off): public access opened",
            Check::new("s3:PutBucketPublicAccessBlock", "arn:aws:s3:::payments-exports"),
        )
        .on(THEIRS),
        case("another team's bucket: deleted", Check::new("s3:DeleteBucket", "arn:aws:s3:::payments-exports")).on(THEIRS).abac(),
        case("another team's bucket: versioning suspended", Check::new("s3:PutBucketVersioning", "arn:aws:s3:::payments-exports"))
            .on(THEIRS),
        case("another team's object read", Check::new("s3:GetObject", "arn:aws:s3:::payments-exports/customers.csv")).on(THEIRS),
        case("another team's database: deleted", Check::new("rds:DeleteDBInstance", &db)).on(THEIRS),
        case("another team's database: modified", Check::new("rds:ModifyDBInstance", &db)).on(THEIRS),
        case("another team's database: snapshotted", Check::new("rds:CreateDBSnapshot", &db)).on(THEIRS),
        case("another team's table: deleted", Check::new("dynamodb:DeleteTable", &table)).on(THEIRS),
        case("another team's table: PITR off", Check::new("dynamodb:UpdateContinuousBackups", &table)).on(THEIRS),
        case("another team's cache: deleted", Check::new("elasticache:DeleteReplicationGroup", &cache)).on(THEIRS),
        case(
            "another team's service: new task definition",
            Check::new("ecs:UpdateService", &svc).with("ecs:cluster", arn("arn:aws:ecs:R:A:cluster/prod")),
        )
        .on(THEIRS),
        case("another team's service: deleted", Check::new("ecs:DeleteService", &svc)).on(THEIRS),
        case("another team's service: deployment rolled back", Check::new("ecs:StopServiceDeployment", &svc)).on(THEIRS),
        case("another team's cluster: deleted", Check::new("ecs:DeleteCluster", arn("arn:aws:ecs:R:A:cluster/prod"))).on(THEIRS),
        case("another team's task definition: deregistered", Check::new("ecs:DeregisterTaskDefinition", &td)).on(THEIRS),
        case(
            "another team's task definition run as a one-off task",
            Check::new("ecs:RunTask", &td).with("ecs:cluster", arn("arn:aws:ecs:R:A:cluster/prod")),
        )
        .on(THEIRS),
        case("another team's task stopped", Check::new("ecs:StopTask", arn("arn:aws:ecs:R:A:task/prod/0123456789abcdef"))).on(THEIRS),
        case(
            "another team's database snapshotted under a pre-deploy name",
            Check::new("rds:CreateDBSnapshot", arn("arn:aws:rds:R:A:snapshot:orders-pre-3f9c2a1-20261206t120000z")),
        ),
        // Roles.
        case(
            "an admin role passed as a task role",
            Check::new("iam:PassRole", format!("arn:aws:iam::{ACCOUNT}:role/admin")).with("iam:PassedToService", "ecs-tasks.amazonaws.com"),
        ),
        case(
            "an admin role passed to Lambda",
            Check::new("iam:PassRole", format!("arn:aws:iam::{ACCOUNT}:role/OrganizationAccountAccessRole"))
                .with("iam:PassedToService", "lambda.amazonaws.com"),
        ),
        case(
            "a function role passed as a task role",
            Check::new("iam:PassRole", format!("arn:aws:iam::{ACCOUNT}:role/shipshape/lambda/worker"))
                .with("iam:PassedToService", "ecs-tasks.amazonaws.com"),
        ),
        case(
            "a task role passed to EC2",
            Check::new("iam:PassRole", format!("arn:aws:iam::{ACCOUNT}:role/shipshape/ecs-tasks/api"))
                .with("iam:PassedToService", "ec2.amazonaws.com"),
        ),
        case("any role assumed", Check::new("sts:AssumeRole", "arn:aws:iam::210987654321:role/OrganizationAccountAccessRole")),
        // Ownership tags stripped or forged.
        case(
            "ownership stripped from our service",
            Check::new("ecs:UntagResource", arn("arn:aws:ecs:R:A:service/prod/api"))
                .with("aws:TagKeys", json!(["shipshape.dev/managed-by"])),
        )
        .on(OURS),
        case(
            "our database handed to another owner",
            Check::new("rds:AddTagsToResource", &db).request_tags(&tags(&[("shipshape.dev/owner", "team-b/api")])),
        )
        .on(OURS),
        case(
            "our bucket handed to another owner",
            Check::new("s3:TagResource", "arn:aws:s3:::uploads").request_tags(&tags(&[("shipshape.dev/owner", "team-b/api")])),
        )
        .on(OURS)
        .abac(),
        case(
            "our function handed to another owner",
            Check::new("lambda:TagResource", &func).request_tags(&tags(&[("shipshape.dev/owner", "team-b/api")])),
        )
        .on(OURS),
        case(
            "our table handed to another owner",
            Check::new("dynamodb:TagResource", &table).request_tags(&tags(&[("shipshape.dev/owner", "team-b/api")])),
        )
        .on(OURS),
        case("ownership forged on another team's service", Check::new("ecs:TagResource", &svc).request_tags(&forge)).on(THEIRS),
        case("ownership forged on another team's task definition", Check::new("ecs:TagResource", &td).request_tags(&forge)).on(THEIRS),
        case(
            "ownership forged with a false create action",
            Check::new("ecs:TagResource", &svc).request_tags(&forge).with("ecs:CreateAction", "UpdateService"),
        )
        .on(THEIRS),
        case("another installation's database re-owned", Check::new("rds:AddTagsToResource", &db).request_tags(&forge))
            .on(&[("shipshape.dev/managed-by", "shipshape"), ("shipshape.dev/owner", "team-z/db")]),
        // Creates without ownership, and outside the Regions.
        case("a service created without ownership tags", Check::new("ecs:CreateService", &svc).request_tags(&tags(&[("team", "a")]))),
        case("a function created without ownership tags", Check::new("lambda:CreateFunction", &func)),
        case("a bucket created without ownership tags", Check::new("s3:CreateBucket", "arn:aws:s3:::new-bucket")),
        case("a database created without ownership tags", Check::new("rds:CreateDBInstance", arn("arn:aws:rds:R:A:db:new"))),
        case("a service created outside the Regions", Check::new("ecs:CreateService", &svc).request_tags(&ownership_request()))
            .region("ap-southeast-2"),
        case("a read outside the Regions", Check::new("rds:DescribeDBInstances", format!("arn:aws:rds:ap-southeast-2:{ACCOUNT}:db:x")))
            .region("ap-southeast-2"),
        // Beyond shipshape's job entirely.
        case("a role created", Check::new("iam:CreateRole", format!("arn:aws:iam::{ACCOUNT}:role/x"))),
        case("a secret read", Check::new("secretsmanager:GetSecretValue", arn("arn:aws:secretsmanager:R:A:secret:rds!db-payments"))),
        case("a function invoked", Check::new("lambda:InvokeFunction", &func)).on(THEIRS),
        // AWS events: only shipshape's own queue and rule, and no event but its heartbeat.
        case("another team's queue read", Check::new("sqs:ReceiveMessage", arn("arn:aws:sqs:R:A:payments-orders"))),
        case("another team's queue's policy set", Check::new("sqs:SetQueueAttributes", arn("arn:aws:sqs:R:A:shipshape-prod"))).on(THEIRS),
        case("another team's queue deleted", Check::new("sqs:DeleteQueue", arn("arn:aws:sqs:R:A:shipshape-prod"))).on(THEIRS),
        case("a queue created without ownership tags", Check::new("sqs:CreateQueue", arn("arn:aws:sqs:R:A:shipshape-new"))),
        case("a rule disabled (never granted)", Check::new("events:DisableRule", arn("arn:aws:events:R:A:rule/shipshape-prod"))).on(OURS),
        case(
            "another rule rewritten",
            Check::new("events:PutRule", arn("arn:aws:events:R:A:rule/payments-alerts")).request_tags(&ownership_request()),
        ),
        case(
            "our rule made to deliver elsewhere",
            Check::new("events:PutTargets", arn("arn:aws:events:R:A:rule/shipshape-prod"))
                .with("events:TargetArn", vec![arn("arn:aws:lambda:R:A:function:x")]),
        )
        .on(OURS),
        case("another rule deleted", Check::new("events:DeleteRule", arn("arn:aws:events:R:A:rule/shipshape-prod"))).on(THEIRS),
        case(
            "an event forged as ECS's",
            Check::new("events:PutEvents", arn("arn:aws:events:R:A:event-bus/default"))
                .with("events:source", "aws.ecs")
                .with("events:detail-type", "ECS Deployment State Change"),
        ),
        case(
            "an event put on another bus",
            Check::new("events:PutEvents", arn("arn:aws:events:R:A:event-bus/payments"))
                .with("events:source", vec!["shipshape.dev"])
                .with("events:detail-type", vec!["Shipshape Heartbeat"]),
        ),
    ]
}

/// What shipshape does to what it owns: allowed (so the denials above are not a policy that
/// denies everything).
fn own() -> Vec<Case> {
    let svc = arn("arn:aws:ecs:R:A:service/prod/api");
    let func = arn("arn:aws:lambda:R:A:function:api");
    vec![
        case("our service updated", Check::new("ecs:UpdateService", &svc)).on(OURS),
        case("our service created", Check::new("ecs:CreateService", &svc).request_tags(&ownership_request())),
        case(
            "tags on our new service",
            Check::new("ecs:TagResource", &svc).request_tags(&ownership_request()).with("ecs:CreateAction", "CreateService"),
        ),
        case("our deployment continued", Check::new("ecs:ContinueServiceDeployment", &svc)).on(OURS),
        case(
            "a migration task of our task definition",
            Check::new("ecs:RunTask", arn("arn:aws:ecs:R:A:task-definition/api:7"))
                .with("ecs:cluster", arn("arn:aws:ecs:R:A:cluster/prod")),
        )
        .on(OURS),
        case(
            "tags on our migration task",
            Check::new("ecs:TagResource", arn("arn:aws:ecs:R:A:task/prod/*"))
                .request_tags(&ownership_request())
                .with("ecs:CreateAction", "RunTask"),
        ),
        case("our migration task stopped at its timeout", Check::new("ecs:StopTask", arn("arn:aws:ecs:R:A:task/prod/0123456789abcdef")))
            .on(OURS),
        case(
            "a snapshot before our migration",
            Check::new("rds:CreateDBSnapshot", arn("arn:aws:rds:R:A:snapshot:orders-pre-3f9c2a1-20261206t120000z"))
                .request_tags(&ownership_request()),
        ),
        case(
            "our migration's output read",
            Check::new("logs:GetLogEvents", arn("arn:aws:logs:R:A:log-group:/ecs/api:log-stream:api/api/0123")),
        ),
        case(
            "our deployment, by its own ARN",
            Check::new("ecs:ContinueServiceDeployment", arn("arn:aws:ecs:R:A:service-deployment/prod/api/x1")),
        ),
        case("a Project tag on our service", Check::new("ecs:TagResource", &svc).request_tags(&tags(&[("Project", "x")]))).on(OURS),
        case("our function's code", Check::new("lambda:UpdateFunctionCode", &func)).on(OURS),
        case("our function's provisioned concurrency", Check::new("lambda:PutProvisionedConcurrencyConfig", format!("{func}:live")))
            .on(OURS),
        case("our bucket's versioning (ABAC on)", Check::new("s3:PutBucketVersioning", "arn:aws:s3:::uploads")).on(OURS).abac(),
        case("our database deleted", Check::new("rds:DeleteDBInstance", arn("arn:aws:rds:R:A:db:orders"))).on(OURS),
        case("its final snapshot", Check::new("rds:CreateDBSnapshot", arn("arn:aws:rds:R:A:snapshot:orders-final-20261206120000"))),
        case(
            "a task role passed to ECS tasks",
            Check::new("iam:PassRole", format!("arn:aws:iam::{ACCOUNT}:role/shipshape/ecs-tasks/api"))
                .with("iam:PassedToService", "ecs-tasks.amazonaws.com"),
        ),
        case(
            "the load balancer role passed to ECS",
            Check::new("iam:PassRole", format!("arn:aws:iam::{ACCOUNT}:role/shipshape/ecs/elb"))
                .with("iam:PassedToService", "ecs.amazonaws.com"),
        ),
        case(
            "a function role passed to Lambda",
            Check::new("iam:PassRole", format!("arn:aws:iam::{ACCOUNT}:role/shipshape/lambda/worker"))
                .with("iam:PassedToService", "lambda.amazonaws.com"),
        ),
        case("an Environment role assumed", Check::new("sts:AssumeRole", "arn:aws:iam::210987654321:role/shipshape/environments/prod")),
        case("function code read", Check::new("s3:GetObject", "arn:aws:s3:::car-rental-builds/bookings/abc1234.zip")),
        case(
            "our event queue created",
            Check::new("sqs:CreateQueue", arn("arn:aws:sqs:R:A:shipshape-prod")).request_tags(&ownership_request()),
        ),
        case("our event queue's policy", Check::new("sqs:SetQueueAttributes", arn("arn:aws:sqs:R:A:shipshape-prod"))).on(OURS),
        case("our event queue read", Check::new("sqs:ReceiveMessage", arn("arn:aws:sqs:R:A:shipshape-prod"))),
        case(
            "our event rule created",
            Check::new("events:PutRule", arn("arn:aws:events:R:A:rule/shipshape-prod")).request_tags(&ownership_request()),
        ),
        case(
            "our event rule put back",
            Check::new("events:PutRule", arn("arn:aws:events:R:A:rule/shipshape-prod")).request_tags(&ownership_request()),
        )
        .on(OURS),
        case(
            "our rule delivering to our queue",
            Check::new("events:PutTargets", arn("arn:aws:events:R:A:rule/shipshape-prod"))
                .with("events:TargetArn", vec![arn("arn:aws:sqs:R:A:shipshape-prod")]),
        )
        .on(OURS),
        case(
            "the heartbeat",
            Check::new("events:PutEvents", arn("arn:aws:events:R:A:event-bus/default"))
                .with("events:source", vec!["shipshape.dev"])
                .with("events:detail-type", vec!["Shipshape Heartbeat"]),
        ),
    ]
}

/// Where AWS's own design leaves IAM unable to tell: tags at creation are authorized as a
/// TagResource on a resource without tags, and these services have no create-action key
/// (README "Least privilege", src/iam.rs UNSCOPED). shipshape's own code refuses these
/// (ownership check, adopt annotation); the table pins that IAM alone does not.
fn gaps() -> Vec<Case> {
    let forge = tags(&[("shipshape.dev/managed-by", "shipshape"), ("shipshape.dev/owner", "team-a/api")]);
    vec![
        case(
            "ownership put on an untagged function",
            Check::new("lambda:TagResource", arn("arn:aws:lambda:R:A:function:legacy")).request_tags(&forge),
        ),
        case(
            "ownership put on an untagged database",
            Check::new("rds:AddTagsToResource", arn("arn:aws:rds:R:A:db:legacy")).request_tags(&forge),
        ),
        // PutRule creates and updates alike: a rule named shipshape-* without shipshape's tag
        // cannot be told from a new one (the Environment refuses it: Conflict, owner tag).
        case(
            "an untagged shipshape-named rule rewritten",
            Check::new("events:PutRule", arn("arn:aws:events:R:A:rule/shipshape-prod")).request_tags(&forge),
        )
        .on(THEIRS),
    ]
}

fn policies() -> Vec<(String, Value)> {
    vec![("deploy/iam-policy.json".to_string(), shipshape_testkit::iam::deploy_policy())]
}

async fn evaluator() -> (&'static Evaluator, Vec<String>) {
    let e = Evaluator::shared().expect("the IAM evaluator (scripts/test.sh --setup runs npm ci in testkit/iam)");
    let mut names = vec![];
    for (n, p) in policies() {
        e.register(&n, &p).await;
        names.push(n);
    }
    (e, names)
}

#[tokio::test]
async fn every_hostile_request_is_denied_and_shipshapes_own_work_is_allowed() {
    let (e, names) = evaluator().await;
    let mut wrong = vec![];
    let (mut denied, mut allowed) = (0, 0);
    for c in hostile() {
        let v = verdict(e, &names, &c).await;
        if v == "Allowed" {
            wrong.push(format!("ALLOWED {}: {} on {}", c.what, c.check.action, c.check.resource));
        } else {
            denied += 1;
        }
    }
    for c in own() {
        let v = verdict(e, &names, &c).await;
        if v != "Allowed" {
            wrong.push(format!("{v} {}: {} on {}", c.what, c.check.action, c.check.resource));
        } else {
            allowed += 1;
        }
    }
    for c in gaps() {
        let v = verdict(e, &names, &c).await;
        if v != "Allowed" {
            wrong.push(format!("the documented gap \"{}\" is closed now ({v}): update README and src/iam.rs UNSCOPED", c.what));
        }
    }
    println!("hostile cases denied: {denied}/{}; own work allowed: {allowed}/{}", hostile().len(), own().len());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn the_adoption_policy_lets_only_the_named_untagged_resources_be_taken_over() {
    let e = Evaluator::shared().expect("the IAM evaluator");
    let svc = arn("arn:aws:ecs:R:A:service/prod/legacy");
    let other = arn("arn:aws:ecs:R:A:service/prod/payments-api");
    e.register("deploy/iam-policy.json", &shipshape_testkit::iam::deploy_policy()).await;
    e.register("adopt-legacy", &shipshape::iam::adoption_policy(std::slice::from_ref(&svc))).await;
    let names = vec!["deploy/iam-policy.json".to_string(), "adopt-legacy".to_string()];
    let forge = tags(&[("shipshape.dev/managed-by", "shipshape"), ("shipshape.dev/owner", "team-a/legacy")]);
    let adopt = case("adopt the named service", Check::new("ecs:TagResource", &svc).request_tags(&forge)).on(THEIRS);
    let other = case("adopt another service", Check::new("ecs:TagResource", &other).request_tags(&forge)).on(THEIRS);
    let owned_elsewhere = case("adopt the named service once owned", Check::new("ecs:TagResource", &svc).request_tags(&forge))
        .on(&[("shipshape.dev/managed-by", "shipshape"), ("shipshape.dev/owner", "team-z/legacy")]);
    assert_eq!(verdict(e, &names, &adopt).await, "Allowed");
    assert_eq!(verdict(e, &names, &other).await, "ImplicitlyDenied");
    assert_eq!(verdict(e, &names, &owned_elsewhere).await, "ImplicitlyDenied");
    let without = vec!["deploy/iam-policy.json".to_string()];
    assert_eq!(verdict(e, &without, &adopt).await, "ImplicitlyDenied", "without the adoption policy an ECS service cannot be adopted");
}
