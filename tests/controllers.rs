//! The controllers in process (testkit::in_process): reconciles of a ServiceRelease, a
//! StackSpec and an Environment against the in-memory AWS and the API server double, for the
//! cases where the order of effects is the behaviour. Each test reads the journal of both
//! sides: what was written to status, and which AWS calls were made, in which order.

use std::time::Duration;

use kube::runtime::controller::Action;
use serde_json::{json, Value};
use shipshape::api::{Environment, ServiceRelease, StackSpec, OWNER_TAG};
use shipshape::aws::{AwsError, AwsProvider, Target};
use shipshape::fixtures;
use shipshape_testkit::fakes::service_request;
use shipshape_testkit::in_process::InProcess;

fn prod() -> Environment {
    fixtures::environment("prod", fixtures::environment_spec(json!({"allowedNamespaces": ["team"], "ecsCluster": {"name": "prod"}})))
}

/// `team/api` at `sha`, judged by CloudWatch alarm `api-errors` (one failed round rolls back).
fn api(sha: &str) -> ServiceRelease {
    let spec = fixtures::release_spec(json!({
        "image": {"repository": "r", "gitSha": sha},
        "rollout": {"analysis": {"warmup": "0s", "interval": "1s", "successfulRuns": 1, "failureLimit": 0, "cloudwatchAlarms": ["api-errors"]}},
    }));
    fixtures::release("team", "api", spec)
}

fn phase(w: &InProcess, r: &ServiceRelease) -> String {
    status(w, r)["phase"].as_str().unwrap_or_default().to_string()
}

fn status(w: &InProcess, r: &ServiceRelease) -> Value {
    serde_json::to_value(w.stored(r).and_then(|r| r.status)).unwrap()
}

/// Reconciles until the phase is `want` (at most 10 rounds, a second apart at most).
async fn until_phase(w: &InProcess, r: &ServiceRelease, want: &str) {
    for _ in 0..10 {
        let action = w.reconcile(r).await;
        if phase(w, r) == want {
            return;
        }
        assert!(action.is_ok(), "{action:?}; status {}", status(w, r));
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    panic!("never {want}: {}", status(w, r));
}

/// `team/api` released at v1 and promoted (the alarm OK), then v2 applied.
async fn promoted_then(w: &InProcess, v2: &str) -> ServiceRelease {
    w.aws.set_alarm("api-errors", "OK");
    let v1 = w.put(&api("aaaa111"));
    until_phase(w, &v1, "Healthy").await;
    let mut next = w.stored(&v1).unwrap();
    next.spec = api(v2).spec;
    next.metadata.generation = Some(2);
    w.api.put(&next)
}

#[tokio::test]
async fn a_rollback_is_written_to_status_before_ecs_is_asked_for_it() {
    let w = InProcess::new(vec![prod()], vec![]);
    let r = promoted_then(&w, "bbbb222").await;
    let stable = status(&w, &r)["stableTaskDefinitionArn"].as_str().unwrap().to_string();
    until_phase(&w, &r, "Analyzing").await;
    w.aws.set_alarm("api-errors", "ALARM");
    w.journal.clear();
    w.reconcile(&r).await.unwrap();

    // The decision (RollingBack, where to) is in status before UpdateService goes out.
    let decided = w
        .journal
        .position(|e| e.side == "kube" && e.what.ends_with("/status") && e.body["status"]["phase"] == "RollingBack")
        .expect("the decision written");
    let called = w.journal.position(|e| e.side == "aws" && e.what == "UpdateService").expect("the rollback called");
    assert!(decided < called, "{:?}", w.journal.entries());
    assert_eq!(w.journal.statuses()[0]["rollback"]["taskDefinitionArn"], json!(stable));
    assert_eq!(w.aws.service("api").unwrap().task_definition, stable, "ECS points at the stable revision");
    assert_eq!(phase(&w, &r), "RolledBack");
    assert_eq!(w.ctx.metrics.rollbacks.with_label_values(&["analysis"]).get(), 1);

    // Reconciled again: the bad SHA never returns, nothing is called again.
    w.journal.clear();
    w.reconcile(&r).await.unwrap();
    assert!(w.journal.aws_writes().is_empty(), "{:?}", w.journal.aws_writes());
    assert_eq!(phase(&w, &r), "RolledBack");
}

#[tokio::test]
async fn a_rollback_ecs_refuses_is_said_in_status_and_retried_with_backoff_until_accepted() {
    let w = InProcess::new(vec![prod()], vec![]);
    let r = promoted_then(&w, "bbbb222").await;
    until_phase(&w, &r, "Analyzing").await;
    let bad = w.aws.service("api").unwrap().task_definition;
    w.aws.set_alarm("api-errors", "ALARM");
    // ECS refuses the rollback (IAM denies it for now).
    let denied = AwsError::AccessDenied { op: "UpdateService", message: "not authorized to perform ecs:UpdateService".into() };
    w.aws.fail_on("UpdateService", 1, denied);
    let action = w.reconcile(&r).await.unwrap();

    let st = status(&w, &r);
    assert_eq!(st["phase"], "RollingBack", "{st}");
    assert_eq!(st["rollback"]["failedAttempts"], 1);
    assert!(st["rollback"]["error"].as_str().unwrap().contains("not authorized"), "{st}");
    assert_eq!(w.aws.service("api").unwrap().task_definition, bad, "nothing changed in ECS");
    assert_eq!(w.ctx.metrics.rollback_failures.get(), 1);
    // Retried on the rollback's own backoff (a second or two at first), not the drift interval.
    assert!(action != Action::await_change() && action != Action::requeue(Duration::from_secs(60)), "{action:?}");
    assert_eq!(ready_reason(&st), "RollbackFailed", "{st}");
    assert!(w.api.events().iter().any(|(t, reason, note)| t == "Warning" && reason == "RollbackFailed" && note.contains("not authorized")));

    // The retry is accepted: RolledBack, the stable revision serves.
    w.reconcile(&r).await.unwrap();
    assert_eq!(phase(&w, &r), "RolledBack");
    assert_ne!(w.aws.service("api").unwrap().task_definition, bad);
    assert!(status(&w, &r).get("rollback").is_none_or(Value::is_null));
}

fn ready_reason(st: &Value) -> String {
    st["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["reason"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_service_nobody_owns_is_written_to_only_once_the_release_adopts_it() {
    let w = InProcess::new(vec![prod()], vec![]);
    let clients = w.aws.clients(&Target { environment: "prod".into(), region: "eu-west-1".into(), role_arn: None }).await.unwrap();
    clients.ecs.create_service(&service_request("prod", "api", "arn:aws:ecs:eu-west-1:123456789012:task-definition/api:1")).await.unwrap();
    w.journal.clear();

    let r = w.put(&api("aaaa111"));
    let action = w.reconcile(&r).await.unwrap();
    assert!(w.journal.aws_writes().is_empty(), "not ours: nothing written to AWS, {:?}", w.journal.aws_writes());
    let st = status(&w, &r);
    assert_eq!(ready_reason(&st), "Conflict", "{st}");
    assert!(st["conditions"].to_string().contains("shipshape.dev/adopt"), "the message names the way out: {st}");
    assert!(w.api.events().iter().any(|(t, reason, _)| t == "Warning" && reason == "Conflict"));
    assert_eq!(action, Action::requeue(Duration::from_secs(60)), "looked at again after the drift interval");

    let mut adopting = w.stored(&r).unwrap();
    adopting.metadata.annotations = Some([("shipshape.dev/adopt".to_string(), "true".to_string())].into());
    w.api.put(&adopting);
    w.journal.clear();
    w.reconcile(&r).await.unwrap();
    let writes = w.journal.aws_writes();
    assert_eq!(writes.first().map(String::as_str), Some("TagResource"), "the owner tag goes on first: {writes:?}");
    assert!(writes.contains(&"UpdateService".to_string()), "{writes:?}");
    assert_eq!(w.aws.service("api").unwrap().tags.get(OWNER_TAG).map(String::as_str), Some("team/api"));
    assert!(w.api.event_reasons().contains(&"Adopted".to_string()));
}

#[tokio::test]
async fn a_service_another_release_owns_is_never_written_to_even_when_adoption_is_asked() {
    let w = InProcess::new(vec![prod()], vec![]);
    let clients = w.aws.clients(&Target { environment: "prod".into(), region: "eu-west-1".into(), role_arn: None }).await.unwrap();
    let theirs = shipshape_testkit::fakes::service_request("prod", "api", "arn:aws:ecs:eu-west-1:123456789012:task-definition/api:1");
    let theirs = shipshape::aws::ServiceRequest { tags: fixtures::owned_by("other-team/api"), ..theirs };
    clients.ecs.create_service(&theirs).await.unwrap();
    w.journal.clear();

    let mut r = api("aaaa111");
    r.metadata.annotations = Some([("shipshape.dev/adopt".to_string(), "true".to_string())].into());
    let r = w.put(&r);
    for _ in 0..2 {
        w.reconcile(&r).await.unwrap();
    }
    assert!(w.journal.aws_writes().is_empty(), "{:?}", w.journal.aws_writes());
    let st = status(&w, &r);
    assert_eq!(ready_reason(&st), "Conflict");
    assert!(st["conditions"].to_string().contains("other-team/api"), "{st}");
    assert_eq!(w.api.events().iter().filter(|(_, reason, _)| reason == "Conflict").count(), 1, "one Event, not one per reconcile");
}

#[tokio::test]
async fn a_deleted_release_leaves_its_service_unless_its_policy_says_delete_and_it_is_its_own() {
    let w = InProcess::new(vec![prod()], vec![]);
    w.aws.set_alarm("api-errors", "OK");
    let kept = w.put(&api("aaaa111"));
    until_phase(&w, &kept, "Healthy").await;
    w.journal.clear();
    w.delete(&kept);
    w.reconcile(&kept).await.unwrap();
    assert!(w.stored(&kept).is_none(), "the finalizer went, so did the object");
    assert!(w.aws.service("api").is_some(), "Retain (the default) leaves the service running");
    assert!(w.journal.aws_writes().is_empty());
    assert!(w.api.event_reasons().contains(&"Retained".to_string()));

    let mut deleting = api("aaaa111");
    deleting.spec.deletion_policy = shipshape::api::ReleaseDeletionPolicy::Delete;
    let deleting = w.put(&deleting);
    w.reconcile(&deleting).await.unwrap();
    w.aws.tamper_service("api", |s| {
        s.tags.insert(OWNER_TAG.into(), "someone/else".into());
    });
    w.delete(&deleting);
    w.journal.clear();
    w.reconcile(&deleting).await.unwrap();
    assert!(w.aws.service("api").is_some(), "not its own any more: kept");
    assert!(w.journal.aws_writes().is_empty(), "{:?}", w.journal.aws_writes());
    assert!(w.stored(&deleting).is_none());
}

fn data(databases: Value, buckets: Value) -> StackSpec {
    fixtures::stack("team", "data", fixtures::stack_spec(json!({"databases": databases, "buckets": buckets})))
}

#[tokio::test]
async fn a_deleted_stack_snapshots_its_database_and_keeps_its_finalizer_while_a_bucket_holds_objects() {
    let db = json!([{"name": "car-rental-db", "engine": "postgres", "engineVersion": "16.4", "instanceClass": "db.t4g.micro",
        "allocatedStorageGiB": 20, "deletionPolicy": "Snapshot"}]);
    let stack = data(db, json!([{"name": "team-uploads", "deletionPolicy": "Delete"}]));
    let w = InProcess::new(vec![prod()], vec![stack.clone()]);
    let stack = w.put(&stack);
    w.reconcile(&stack).await.unwrap();
    let created = w.journal.aws_writes();
    assert!(created.contains(&"CreateDBInstance".to_string()) && created.contains(&"CreateBucket".to_string()), "{created:?}");
    w.aws.put_object("team-uploads");

    w.delete(&stack);
    w.journal.clear();
    let refused = w.reconcile(&stack).await;
    assert!(refused.is_err(), "the finalizer stays while the bucket holds objects");
    let writes = w.journal.aws_writes();
    assert!(writes.contains(&"DeleteDBInstance".to_string()), "{writes:?}");
    let s3 = w.aws.clients(&Target { environment: "prod".into(), region: "eu-west-1".into(), role_arn: None }).await.unwrap().s3;
    assert!(s3.describe_bucket("team-uploads", shipshape::aws::BucketReads::BASIC).await.unwrap().is_some(), "a bucket with objects stays");
    let stored = w.stored(&stack).expect("kept by its finalizer");
    let st = serde_json::to_value(stored.status).unwrap();
    assert!(st["conditions"].to_string().contains("BucketNotEmpty"), "{st}");
    assert!(w.api.event_reasons().contains(&"FinalSnapshot".to_string()), "{:?}", w.api.event_reasons());
    // The status says why before the error goes to the runtime's backoff.
    let said = w.journal.position(|e| e.side == "kube" && e.body.to_string().contains("BucketNotEmpty")).unwrap();
    let deleted = w.journal.position(|e| e.what == "DeleteDBInstance").unwrap();
    assert!(deleted < said);
}

#[tokio::test]
async fn an_environment_names_its_cluster_in_status_only_after_ecs_created_it() {
    let env = fixtures::environment("staging", fixtures::environment_spec(json!({"ecsCluster": {"name": "staging", "create": true}})));
    let w = InProcess::new(vec![], vec![]);
    let env = w.put(&env);
    w.reconcile(&env).await.unwrap();
    let created = w.journal.position(|e| e.what == "CreateCluster").expect("created");
    let named = w.journal.position(|e| e.side == "kube" && !e.body["status"]["clusterArn"].is_null()).expect("named in status");
    assert!(created < named, "{:?}", w.journal.entries());
    let tags = w.aws.clients(&Target { environment: "staging".into(), region: "eu-west-1".into(), role_arn: None }).await.unwrap();
    let cluster = tags.ecs.describe_cluster("staging").await.unwrap().unwrap();
    assert_eq!(cluster.tags.get(OWNER_TAG).map(String::as_str), Some("staging"));
}

/// The tasks of steps before traffic are read for a cluster's releases together: a second
/// release asking within `FRESH` of a call that included its task makes no call of its own.
#[tokio::test]
async fn one_describe_tasks_call_serves_the_releases_of_a_cluster() {
    use shipshape::aws::{Ecs, TaskRequest};
    use shipshape::controller::tasks::TaskReader;
    let aws = shipshape_testkit::fakes::FakeAws::new();
    aws.hold_tasks(true);
    let ecs: std::sync::Arc<dyn Ecs> = std::sync::Arc::new(aws.clone());
    let req = |by: &str| TaskRequest {
        cluster: "prod".into(),
        task_definition: "td:1".into(),
        container: "api".into(),
        command: vec!["migrate".into()],
        started_by: by.into(),
        client_token: by.into(),
        subnets: vec!["s".into()],
        security_groups: vec![],
        assign_public_ip: false,
        tags: Default::default(),
    };
    let a = ecs.run_task(&req("a")).await.unwrap();
    let b = ecs.run_task(&req("b")).await.unwrap();
    let reader = TaskReader::default();
    reader.describe(ecs.clone(), "prod", "prod", &a).await.unwrap();
    reader.describe(ecs.clone(), "prod", "prod", &b).await.unwrap();
    assert_eq!(aws.count("DescribeTasks"), 2, "each task once, when first asked about");
    tokio::time::sleep(shipshape::controller::tasks::FRESH).await;
    // A round of both: the first call reads both, the second is answered from it.
    let t = reader.describe(ecs.clone(), "prod", "prod", &a).await.unwrap().unwrap();
    assert_eq!(t.last_status, "RUNNING");
    reader.describe(ecs.clone(), "prod", "prod", &b).await.unwrap();
    assert_eq!(aws.count("DescribeTasks"), 3);
    ecs.stop_task("prod", &b, "done").await.unwrap();
    tokio::time::sleep(shipshape::controller::tasks::FRESH).await;
    let t = reader.describe(ecs.clone(), "prod", "prod", &b).await.unwrap().unwrap();
    assert_eq!(t.last_status, "STOPPED", "an answer older than FRESH is read again");
}
