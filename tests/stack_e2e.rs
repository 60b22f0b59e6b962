//! End to end for StackSpec: the real controller binary, the test API server, moto behind
//! the AWS test proxy (fault injection, call counting), driven with kubectl.

mod support;

use std::time::Duration;

use shipshape::aws::BucketReads;

use support::{aws_at, eventually, proxy, unique, Cluster, Controller, E2e, Team};

const WAIT: Duration = Duration::from_secs(40);

/// The team's database and buckets.
fn db_name(n: &Team) -> String {
    format!("{}-db", n.ns)
}

fn uploads_name(n: &Team) -> String {
    format!("{}-uploads", n.ns)
}

fn assets_name(n: &Team) -> String {
    format!("{}-assets", n.ns)
}

/// A world whose car-rental team's stack is Ready.
async fn ready_stack() -> (E2e, Team) {
    let w = E2e::start().await;
    let n = Team::new(&w.c, "car-rental");
    w.c.apply(&stack(&n, "", "", "")).success();
    assert_eq!(n.stack_condition(&w.c, "Ready", "True", WAIT).await, "Reconciled");
    (w, n)
}

/// The car-rental stack: one Postgres database and two buckets.
fn stack(n: &Team, extra: &str, db_extra: &str, bucket_extra: &str) -> String {
    n.stack(&format!(
        r#"{extra}  databases:
    - {{name: {db}, engine: postgres, engineVersion: "16.4", instanceClass: db.t4g.micro, allocatedStorageGiB: 20, backupRetentionDays: 7{db_extra}}}
  buckets:
    - {{name: {uploads}, versioning: true, lifecycle: [{{prefix: tmp/, expireDays: 7}}]{bucket_extra}}}
    - {{name: {assets}, lifecycle: [{{prefix: "", transitions: [{{days: 30, storageClass: STANDARD_IA}}, {{days: 90, storageClass: GLACIER}}]}}]}}
"#,
        db = db_name(n),
        uploads = uploads_name(n),
        assets = assets_name(n),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_of_one_database_and_two_buckets_is_created_with_outputs() {
    let (E2e { c, p, ctl: _ctl }, n) = ready_stack().await;

    let mine = proxy().await;
    let aws = aws_at(&mine.url(), "eu-west-1").await;
    let db = aws.rds.describe_db_instance(&db_name(&n)).await.unwrap().expect("database exists");
    assert_eq!((db.engine.as_str(), db.allocated_storage_gib, db.backup_retention_days), ("postgres", 20, 7));
    assert_eq!(db.tags.get("shipshape.dev/owner"), Some(&format!("{}/data", n.ns)));
    assert_eq!(db.tags.get("Project").map(String::as_str), Some("car-rental"));
    let uploads = aws.s3.describe_bucket(&uploads_name(&n), BucketReads::ALL).await.unwrap().expect("bucket exists");
    assert_eq!(uploads.versioning.as_deref(), Some("Enabled"));
    assert!(uploads.public_access_blocked, "public access is blocked by default");
    assert_eq!(uploads.lifecycle.len(), 1);
    let assets = aws.s3.describe_bucket(&assets_name(&n), BucketReads::ALL).await.unwrap().expect("bucket exists");
    assert_eq!(assets.lifecycle[0].transitions.len(), 2);
    assert_eq!(assets.region, "eu-west-1");

    let cm = c.kubectl(&["get", "configmap", "data-outputs", "-n", &n.ns, "-o", "json"]).success().stdout;
    let cm: serde_json::Value = serde_json::from_str(&cm).unwrap();
    let key = db_name(&n).to_uppercase().replace('-', "_");
    let data = &cm["data"];
    assert_eq!(data[format!("{key}_ENGINE")], "postgres");
    assert!(data[format!("{key}_HOST")].as_str().is_some_and(|h| !h.is_empty()), "{data}");
    assert_eq!(data[format!("{key}_PORT")], "5432");
    assert!(data[format!("{key}_MASTER_SECRET_ARN")].as_str().is_some_and(|a| a.starts_with("arn:aws:secretsmanager:")), "{data}");
    assert!(!cm.to_string().to_lowercase().contains("password\":"), "no password in outputs: {cm}");
    assert_eq!(data[format!("{}_BUCKET", uploads_name(&n).to_uppercase().replace('-', "_"))], uploads_name(&n).as_str());
    assert_eq!(cm["metadata"]["ownerReferences"][0]["kind"], "StackSpec");

    let resources = c.jsonpath(&["stack", "data", "-n", &n.ns], "{.status.resources[*].name}");
    assert_eq!(resources, format!("{} {} {}", db_name(&n), uploads_name(&n), assets_name(&n)));

    // Steady state: further drift passes read but never write.
    p.reset();
    eventually(Duration::from_secs(60), "two drift passes", || (p.count("DescribeDBInstances") >= 2).then_some(())).await;
    assert_eq!(p.writes(), vec![], "a no-op reconcile makes zero AWS writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_outside_shipshape_are_put_back_within_one_drift_interval() {
    let (E2e { c, p: _p, ctl }, n) = ready_stack().await;

    let mine = proxy().await;
    let aws = aws_at(&mine.url(), "eu-west-1").await;
    aws.s3.put_versioning(&uploads_name(&n), false).await.unwrap();
    let shorter = shipshape::core::stack::DbModify { backup_retention_days: Some(1), ..Default::default() };
    aws.rds.modify_db_instance(&db_name(&n), &shorter).await.unwrap();

    eventually(WAIT, "versioning and backup retention restored", || {
        let v = futures::executor::block_on(aws.s3.describe_bucket(&uploads_name(&n), BucketReads::ALL)).ok()??.versioning;
        let r = futures::executor::block_on(aws.rds.describe_db_instance(&db_name(&n))).ok()??.backup_retention_days;
        (v.as_deref() == Some("Enabled") && r == 7).then_some(())
    })
    .await;
    let events = eventually(WAIT, "DriftCorrected events", || {
        let out = c.kubectl(&["get", "events", "-n", &n.ns]).stdout;
        (out.contains("versioning") && out.contains("backupRetentionDays")).then_some(out)
    })
    .await;
    assert!(events.contains("DriftCorrected"), "{events}");
    assert!(ctl.metric("shipshape_drift_corrections_total", &["stackspec"]) >= 2.0);
    let drift = c.jsonpath(&["stack", "data", "-n", &n.ns], "{.status.resources[*].drift}");
    assert!(drift.contains("versioning") && drift.contains("backupRetentionDays"), "{drift}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_storm_creates_each_resource_exactly_once_and_backs_off() {
    let E2e { c, p, ctl } = E2e::start().await;
    let n = Team::new(&c, "car-rental");
    p.inject("CreateBucket", shipshape_testkit::awsproxy::Fault::Throttle, 6);
    p.inject("CreateDBInstance", shipshape_testkit::awsproxy::Fault::Throttle, 6);
    c.apply(&stack(&n, "", "", "")).success();
    n.stack_condition(&c, "Ready", "True", WAIT).await;
    let succeeded = |op: &str| p.calls().iter().filter(|c| c.operation == op && !c.faulted).count();
    assert_eq!(succeeded("CreateDBInstance"), 1);
    assert_eq!(succeeded("CreateBucket"), 2, "one per bucket");
    assert_eq!(p.count("CreateBucket"), 8, "6 throttled + 2 created");
    assert!(ctl.metric("shipshape_aws_throttles_total", &["CreateBucket"]) >= 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_stalls_naming_the_operation_without_a_retry_storm() {
    let E2e { c, p, ctl: _ctl } = E2e::start().await;
    let n = Team::new(&c, "car-rental");
    p.inject("CreateBucket", shipshape_testkit::awsproxy::Fault::AccessDenied, 1000);
    c.apply(&stack(&n, "", "", "")).success();
    assert_eq!(n.stack_condition(&c, "Stalled", "True", WAIT).await, "AccessDenied");
    let message = n.stack_message(&c, "Stalled");
    assert!(message.contains("CreateBucket") && message.contains("s3:CreateBucket"), "{message}");
    // AccessDenied is not retried; it is rechecked once per drift interval (2s here), as
    // IAM can be fixed without touching the spec.
    let before = p.count("CreateBucket");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let more = p.count("CreateBucket") - before;
    assert!(more <= 3, "no retry storm: {more} more calls in 4s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrinking_storage_is_refused_as_unsupported_and_nothing_is_written() {
    let E2e { c, p, ctl: _ctl } = E2e::start().await;
    let n = Team::new(&c, "car-rental");
    c.apply(&stack(&n, "", ", allocatedStorageGiB: 50", "")).success();
    n.stack_condition(&c, "Ready", "True", WAIT).await;
    p.reset();
    // Shrink the database and change a bucket in the same edit: neither happens.
    c.apply(&stack(&n, "", ", allocatedStorageGiB: 30", ", blockPublicAccess: false")).success();
    assert_eq!(n.stack_condition(&c, "Stalled", "True", WAIT).await, "UnsupportedChange");
    let message = n.stack_message(&c, "Stalled");
    assert!(message.contains("allocatedStorageGiB") && message.contains("50") && message.contains("30"), "{message}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(p.writes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_storage_and_changing_class_are_applied() {
    let (E2e { c, p, ctl: _ctl }, n) = ready_stack().await;
    c.apply(&stack(&n, "", ", allocatedStorageGiB: 40, instanceClass: db.t4g.small", "")).success();
    let mine = proxy().await;
    let aws = aws_at(&mine.url(), "eu-west-1").await;
    eventually(WAIT, "database modified", || {
        let db = futures::executor::block_on(aws.rds.describe_db_instance(&db_name(&n))).ok()??;
        (db.allocated_storage_gib == 40 && db.instance_class == "db.t4g.small").then_some(())
    })
    .await;
    assert_eq!(p.count("ModifyDBInstance"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unowned_bucket_is_adopted_only_with_the_annotation() {
    let E2e { c, p: _p, ctl: _ctl } = E2e::start().await;
    let n = Team::new(&c, "car-rental");
    let mine = proxy().await;
    let aws = aws_at(&mine.url(), "eu-west-1").await;
    aws.s3.create_bucket(&uploads_name(&n), "eu-west-1", &Default::default()).await.unwrap();
    c.apply(&stack(&n, "", "", "")).success();
    assert_eq!(n.stack_condition(&c, "Stalled", "True", WAIT).await, "Conflict");
    let message = n.stack_message(&c, "Stalled");
    assert!(message.contains("shipshape.dev/adopt"), "{message}");
    assert!(aws.rds.describe_db_instance(&db_name(&n)).await.unwrap().is_none(), "nothing else changed either");

    c.kubectl(&["annotate", "stackspec", "data", "-n", &n.ns, "shipshape.dev/adopt=true"]).success();
    n.stack_condition(&c, "Ready", "True", WAIT).await;
    let b = aws.s3.describe_bucket(&uploads_name(&n), BucketReads::ALL).await.unwrap().unwrap();
    assert_eq!(b.tags.get("shipshape.dev/owner"), Some(&format!("{}/data", n.ns)));
    assert_eq!(b.versioning.as_deref(), Some("Enabled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_approval_stack_applies_only_the_approved_plan() {
    let E2e { c, p, ctl: _ctl } = E2e::start().await;
    let n = Team::new(&c, "car-rental");
    c.apply(&stack(&n, "  approval: Manual\n", "", "")).success();
    assert_eq!(n.stack_condition(&c, "Ready", "False", WAIT).await, "AwaitingApproval");
    let hash = eventually(WAIT, "a plan in status", || {
        Some(c.jsonpath(&["stack", "data", "-n", &n.ns], "{.status.plan.hash}")).filter(|h| !h.is_empty())
    })
    .await;
    let changes = c.jsonpath(&["stack", "data", "-n", &n.ns], "{.status.plan.changes}");
    assert!(changes.contains(&format!("Database {}: create", db_name(&n))), "{changes}");
    c.kubectl(&["annotate", "stackspec", "data", "-n", &n.ns, "shipshape.dev/approve=000000000000"]).success();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes: Vec<_> = p.writes().into_iter().filter(|c| c.service != "ecs").collect();
    assert_eq!(writes, vec![], "a wrong hash approves nothing");

    c.kubectl(&["annotate", "--overwrite", "stackspec", "data", "-n", &n.ns, &format!("shipshape.dev/approve={hash}")]).success();
    n.stack_condition(&c, "Ready", "True", WAIT).await;
    assert_eq!(p.count("CreateDBInstance"), 1);
    assert_eq!(c.jsonpath(&["stack", "data", "-n", &n.ns], "{.status.plan}"), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_with_default_policies_snapshots_the_database_and_keeps_the_buckets() {
    let (E2e { c, p: _p, ctl: _ctl }, n) = ready_stack().await;
    c.kubectl(&["delete", "stackspec", "data", "-n", &n.ns, "--wait=true", "--timeout=40s"]).success();
    let mine = proxy().await;
    let aws = aws_at(&mine.url(), "eu-west-1").await;
    assert!(aws.rds.describe_db_instance(&db_name(&n)).await.unwrap().is_none_or(|d| d.status == "deleting"));
    let snapshots =
        support::moto_query("rds", &format!("Action=DescribeDBSnapshots&Version=2014-10-31&DBInstanceIdentifier={}", db_name(&n))).await;
    assert!(snapshots.contains(&format!("{}-final-", db_name(&n))), "{snapshots}");
    assert!(aws.s3.describe_bucket(&uploads_name(&n), BucketReads::ALL).await.unwrap().is_some(), "buckets are retained by default");
    assert!(c.kubectl(&["get", "configmap", "data-outputs", "-n", &n.ns]).code != 0, "outputs go with the stack");
    let events = c.kubectl(&["get", "events", "-n", &n.ns]).stdout;
    assert!(events.contains("FinalSnapshot"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_empty_bucket_or_a_protected_database_is_not_deleted_until_the_user_acts() {
    let c = Cluster::start().await;
    let p = proxy().await;
    let _ctl = Controller::start_at(&c, &p.url(), &["--stack-drift-interval", "2s"]);
    let n = Team::new(&c, "car-rental");
    let delete_all = ", deletionPolicy: Delete";
    c.apply(&stack(&n, "", ", deletionProtection: true, deletionPolicy: Delete", delete_all)).success();
    n.stack_condition(&c, "Ready", "True", WAIT).await;
    // An object in the uploads bucket.
    reqwest::Client::new()
        .put(format!("{}/{}/report.pdf", support::moto(), uploads_name(&n)))
        .header("authorization", "AWS4-HMAC-SHA256 Credential=test/20260101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=x")
        .body("%PDF")
        .send()
        .await
        .unwrap();
    c.kubectl(&["delete", "stackspec", "data", "-n", &n.ns, "--wait=false"]).success();
    assert_eq!(n.stack_condition(&c, "Stalled", "True", WAIT).await, "DeletionProtected");
    let mine = proxy().await;
    let aws = aws_at(&mine.url(), "eu-west-1").await;
    assert!(aws.rds.describe_db_instance(&db_name(&n)).await.unwrap().is_some());

    // Turning protection off in the spec lets the database go; the bucket still holds data.
    c.apply(&stack(&n, "", ", deletionProtection: false, deletionPolicy: Delete", delete_all)).success();
    assert_eq!(
        eventually(WAIT, "BucketNotEmpty", || {
            let (s, r) = c.condition(&["stackspec", "data", "-n", &n.ns], "Stalled");
            (s == "True" && r == "BucketNotEmpty").then_some(r)
        })
        .await,
        "BucketNotEmpty"
    );
    assert!(aws.rds.describe_db_instance(&db_name(&n)).await.unwrap().is_none_or(|d| d.status == "deleting"));
    assert!(aws.s3.describe_bucket(&uploads_name(&n), BucketReads::ALL).await.unwrap().is_some(), "a bucket with data is never deleted");
    assert!(
        aws.s3.describe_bucket(&assets_name(&n), BucketReads::ALL).await.unwrap().is_some(),
        "a bucket without deletionPolicy Delete stays"
    );

    // Emptied (every version: the bucket is versioned), it goes, and so does the StackSpec.
    let http = reqwest::Client::new();
    let auth = "AWS4-HMAC-SHA256 Credential=test/20260101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=x";
    let listing = http
        .get(format!("{}/{}?versions", support::moto(), uploads_name(&n)))
        .header("authorization", auth)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ids: Vec<&str> = listing.split("<VersionId>").skip(1).filter_map(|s| s.split("</VersionId>").next()).collect();
    assert!(!ids.is_empty(), "{listing}");
    for id in ids {
        http.delete(format!("{}/{}/report.pdf?versionId={id}", support::moto(), uploads_name(&n)))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
    }
    eventually(WAIT, "the StackSpec gone", || {
        c.kubectl(&["get", "stackspec", "data", "-n", &n.ns]).stderr.contains("NotFound").then_some(())
    })
    .await;
    assert!(aws.s3.describe_bucket(&uploads_name(&n), BucketReads::ALL).await.unwrap().is_none());
}

/// CreateDBInstance and CreateBucket reach AWS but their answers are lost (a 500 after the
/// fact): the retries meet the resources they created, recognise them by their owner tag
/// (or S3's BucketAlreadyOwnedByYou) and go on, instead of stalling as a Conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_lost_is_recognised_by_its_retry_as_its_own() {
    let E2e { c, p, ctl: _ctl } = E2e::start().await;
    let n = Team::new(&c, "car-rental");
    p.inject("CreateDBInstance", shipshape_testkit::awsproxy::Fault::LostAnswer, 1);
    p.inject("CreateBucket", shipshape_testkit::awsproxy::Fault::LostAnswer, 1);
    c.apply(&stack(&n, "", "", "")).success();
    assert_eq!(n.stack_condition(&c, "Ready", "True", WAIT).await, "Reconciled");
    assert_eq!(p.count("CreateDBInstance"), 2, "the lost one and its retry: {:?}", p.calls());
    let (s, _) = c.condition(&["stackspec", "data", "-n", &n.ns], "Stalled");
    assert_eq!(s, "False");
}

/// With an Environment network, a database goes into a DB subnet group made from its
/// subnets, with its security groups, and is not reachable from the internet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_is_placed_in_the_environments_subnets_and_security_groups_and_is_not_public() {
    let E2e { c, p: _p, ctl: _ctl } = E2e::start().await;
    let n = Team { env: unique("env"), ns: unique("team") };
    c.apply(&support::namespaces_and_environment(&n.env, &[&n.ns], "").await).success();
    c.apply(&stack(&n, "", "", "")).success();
    assert_eq!(n.stack_condition(&c, "Ready", "True", WAIT).await, "Reconciled");
    let db =
        support::moto_query("rds", &format!("Action=DescribeDBInstances&Version=2014-10-31&DBInstanceIdentifier={}", db_name(&n))).await;
    assert!(db.contains(&format!("<DBSubnetGroupName>shipshape-{}</DBSubnetGroupName>", n.env)), "{db}");
    let sg = c.jsonpath(&["environment", &n.env], "{.spec.network.securityGroups[0]}");
    assert!(db.contains(&format!("<VpcSecurityGroupId>{sg}</VpcSecurityGroupId>")), "{db}");
    assert!(db.contains("<PubliclyAccessible>false</PubliclyAccessible>"), "{db}");
    let group =
        support::moto_query("rds", &format!("Action=DescribeDBSubnetGroups&Version=2014-10-31&DBSubnetGroupName=shipshape-{}", n.env))
            .await;
    let subnet = c.jsonpath(&["environment", &n.env], "{.spec.network.subnets[0]}");
    assert!(group.contains(&format!("<SubnetIdentifier>{subnet}</SubnetIdentifier>")), "{group}");
}
