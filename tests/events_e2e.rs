//! AWS events end to end: the controller binary creates an Environment's SQS queue and
//! EventBridge rule in moto, long-polls the queue, and is woken by the events the AWS test
//! proxy emits into moto's EventBridge (a deployment's end, CloudTrail's record of a hand
//! change: testkit/src/aws_events.rs) — moto's own rule matching delivers them to the queue.
//! Polling is the slow safety net while the heartbeat comes back, and takes over when it stops.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{ecs_call, eventually, moto, moto_ecs, post_as, proxy, unique, Cluster, Controller};

const WAIT: Duration = Duration::from_secs(60);

async fn sqs(op: &str, body: serde_json::Value) -> serde_json::Value {
    let headers = [("content-type", "application/x-amz-json-1.0".to_string()), ("x-amz-target", format!("AmazonSQS.{op}"))];
    let r = post_as(moto(), "test", "eu-west-1", "sqs", &headers, body.to_string()).await;
    r.json().await.unwrap_or_default()
}

async fn bridge(op: &str, body: serde_json::Value) -> serde_json::Value {
    let headers = [("content-type", "application/x-amz-json-1.1".to_string()), ("x-amz-target", format!("AWSEvents.{op}"))];
    let r = post_as(moto(), "test", "eu-west-1", "events", &headers, body.to_string()).await;
    r.json().await.unwrap_or_default()
}

async fn desired_count(cluster: &str, service: &str) -> i64 {
    let d = moto_ecs("DescribeServices", json!({"cluster": cluster, "services": [service]})).await;
    d["services"][0]["desiredCount"].as_i64().unwrap_or(-1)
}

/// How long after `since` `done()` first held (asked every 100 ms), or None within WAIT.
async fn held_after<F: std::future::Future<Output = bool>>(since: Instant, done: impl Fn() -> F) -> Option<Duration> {
    while since.elapsed() < WAIT {
        if done().await {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wake_objects_a_deleted_rule_is_put_back_and_polling_takes_over_when_they_stop() {
    let c = Cluster::start().await;
    let p = proxy().await;
    p.set_deployment_delay(Duration::from_millis(500));
    p.emit_events(true);
    let ctl = Controller::start_at(&c, &p.url(), &[]);
    let (env, ns, svc) = (unique("env"), unique("team"), unique("api"));
    let (subnet, sg) = support::network().await;
    c.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: shipshape.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  region: eu-west-1\n  ecsCluster: {{name: {env}, create: true}}\n  network: {{subnets: [{subnet}], securityGroups: [{sg}]}}\n  allowedNamespaces: [{ns}]\n  driftInterval: 5s\n  deletionPolicy: Delete\n  events: {{}}\n"
    ))
    .success();
    let envk = ["environment", env.as_str()];
    let first = Instant::now();
    while c.condition(&envk, "EventsFlowing").0 != "True" {
        if first.elapsed() > WAIT {
            let yaml = c.kubectl(&["get", "environment", &env, "-o", "yaml"]).stdout;
            let logs = ctl.logs();
            let tail: Vec<&str> = logs
                .lines()
                .filter(|l| {
                    l.contains("queue") || l.contains("panicked") || l.contains("leader") || l.contains("running") || l.contains("WARN")
                })
                .take(40)
                .collect();
            panic!("EventsFlowing never True:\n{yaml}\n{}", tail.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let queue_url = c.jsonpath(&envk, "{.status.events.queueUrl}");
    let rule_arn = c.jsonpath(&envk, "{.status.events.ruleArn}");
    assert!(
        queue_url.ends_with(&format!("shipshape-{env}")) && rule_arn.ends_with(&format!("rule/shipshape-{env}")),
        "{queue_url} {rule_arn}"
    );
    let tags = sqs("ListQueueTags", json!({"QueueUrl": queue_url})).await;
    assert_eq!(tags["Tags"]["shipshape.dev/owner"], env.as_str(), "the queue is the Environment's: {tags}");
    let attrs = sqs("GetQueueAttributes", json!({"QueueUrl": queue_url, "AttributeNames": ["Policy"]})).await;
    let policy = attrs["Attributes"]["Policy"].as_str().unwrap_or_default().to_string();
    assert!(policy.contains(&rule_arn) && policy.contains("sqs:SendMessage"), "only the rule may send: {policy}");

    // A release whose drift is read every 10 minutes: only an event can bring a change sooner.
    let release = |sha: &str| {
        format!(
            "apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: {svc}, namespace: {ns}}}\nspec:\n  environment: {env}\n  image: {{repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/api, gitSha: {sha}}}\n  task: {{cpu: 256, memory: 512, port: 3000}}\n  replicas: 2\n  driftInterval: 10m\n"
        )
    };
    let get = |path: &str| c.jsonpath(&["release", &svc, "-n", &ns], path);
    c.apply(&release("aaaa111")).success();
    eventually(WAIT, "Healthy", || (get("{.status.phase}") == "Healthy").then_some(())).await;

    // A hand change, recorded by CloudTrail: put back within seconds, not at the next drift read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let changed = Instant::now();
    let r = ecs_call(&p.url(), "test", "UpdateService", json!({"cluster": env, "service": svc, "desiredCount": 5})).await;
    assert!(r.status().is_success());
    let put_back = held_after(changed, || async { desired_count(&env, &svc).await == 2 }).await;
    let put_back = put_back.unwrap_or_else(|| {
        let logs = ctl.logs();
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains("aws event") || l.contains("WARN")).collect();
        panic!(
            "the hand change was not put back: {}\n{}",
            lines.join("\n"),
            ctl.scrape().unwrap_or_default().lines().filter(|l| l.contains("aws_event")).collect::<Vec<_>>().join("\n")
        )
    });
    println!("hand change put back after {put_back:?} (drift interval 10m)");
    assert!(ctl.metric("shipshape_aws_events_total", &["AWS API Call via CloudTrail"]) >= 1.0);

    // A bucket's versioning suspended by hand: its StackSpec is woken and puts it back.
    let (bucket, db) = (unique("uploads"), unique("shop"));
    c.apply(&format!(
        "apiVersion: shipshape.dev/v1alpha1\nkind: StackSpec\nmetadata: {{name: data, namespace: {ns}}}\nspec:\n  environment: {env}\n  driftInterval: 10m\n  databases:\n    - {{name: {db}, engine: postgres, engineVersion: \"16.4\", instanceClass: db.t4g.micro, allocatedStorageGiB: 20}}\n  buckets:\n    - {{name: {bucket}, versioning: true}}\n"
    ))
    .success();
    c.await_condition(&["stackspec", "data", "-n", &ns], "Ready", "True", WAIT).await;
    let admin = support::aws_at(&p.url(), "eu-west-1").await;
    let versioning =
        || async { admin.s3.describe_bucket(&bucket, shipshape::aws::BucketReads::ALL).await.ok().flatten().and_then(|b| b.versioning) };
    assert_eq!(versioning().await.as_deref(), Some("Enabled"));
    let changed = Instant::now();
    admin.s3.put_versioning(&bucket, false).await.unwrap();
    let restored = held_after(changed, || async { versioning().await.as_deref() == Some("Enabled") }).await;
    let restored = restored.unwrap_or_else(|| panic!("versioning was not put back: {}", ctl.logs()));
    println!("bucket versioning put back after {restored:?} (drift interval 10m)");
    assert!(ctl.metric("shipshape_aws_event_wakes_total", &["StackSpec"]) >= 1.0);

    // A database's class changed by hand (CloudTrail's ModifyDBInstance): put back. moto applies
    // a class at once and keeps the instance available; RDS keeps it `modifying` for minutes,
    // and the put-back waits for that (core::stack::database; a waiting database is re-read
    // every 30 s).
    let class = || async { admin.rds.describe_db_instance(&db).await.ok().flatten().map(|d| d.instance_class) };
    assert_eq!(class().await.as_deref(), Some("db.t4g.micro"));
    let wakes = ctl.metric("shipshape_aws_event_wakes_total", &["StackSpec"]);
    let changed = Instant::now();
    let larger = shipshape::core::stack::DbModify { instance_class: Some("db.t4g.large".into()), ..Default::default() };
    admin.rds.modify_db_instance(&db, &larger).await.unwrap();
    let restored = held_after(changed, || async { class().await.as_deref() == Some("db.t4g.micro") }).await;
    let restored = restored.unwrap_or_else(|| panic!("the database's class was not put back: {}", ctl.logs()));
    println!("database class put back after {restored:?} (drift interval 10m)");
    assert!(ctl.metric("shipshape_aws_event_wakes_total", &["StackSpec"]) > wakes, "woken by the event, not a drift read");
    assert_eq!(p.count("ModifyDBInstance"), 2, "the hand change, then the put-back");

    // The rule is the Environment's own: ECS events of another cluster in the account never
    // reach its queue (moto's own rule matching; the heartbeat's scoping is pinned by the
    // pattern's unit test).
    let task_event = |cluster: &str| {
        json!({"Source": "aws.ecs", "DetailType": "ECS Task State Change", "Detail": json!({
            "clusterArn": format!("arn:aws:ecs:eu-west-1:123456789012:cluster/{cluster}"), "group": format!("service:{svc}"), "lastStatus": "STOPPED"
        }).to_string()})
    };
    let tasks0 = ctl.metric("shipshape_aws_events_total", &["ECS Task State Change"]);
    bridge("PutEvents", json!({"Entries": [task_event(&unique("other-cluster"))]})).await;
    bridge("PutEvents", json!({"Entries": [task_event(&env)]})).await;
    eventually(WAIT, "own task event", || (ctl.metric("shipshape_aws_events_total", &["ECS Task State Change"]) > tasks0).then_some(()))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        ctl.metric("shipshape_aws_events_total", &["ECS Task State Change"]),
        tasks0 + 1.0,
        "only the own cluster's task event arrived"
    );
    let rule = bridge("DescribeRule", json!({"Name": format!("shipshape-{env}")})).await;
    let pattern = rule["EventPattern"].as_str().unwrap_or_default().to_string();
    assert!(pattern.contains(&format!("cluster/{env}")), "{pattern}");

    // A deployment that fails: its event wakes the release, polling every 30 s meanwhile.
    p.fail_next_deployment(&svc, 2);
    let started = Instant::now();
    c.apply(&release("bbbb222")).success();
    eventually(WAIT, "RolledBack", || (get("{.status.phase}") == "RolledBack").then_some(())).await;
    println!("failed deployment rolled back {:?} after the new SHA was applied (deployment 0.5 s)", started.elapsed());
    assert!(ctl.metric("shipshape_aws_events_total", &["ECS Deployment State Change"]) >= 1.0);
    assert!(ctl.metric("shipshape_aws_event_wakes_total", &["ServiceRelease"]) >= 2.0);
    assert_eq!(ctl.metric("shipshape_aws_events_flowing", &[&env]), 1.0);

    // The rule deleted by hand: the Environment's next reconcile (driftInterval 5s) puts it
    // back before the heartbeat is missed (grace 45 s), so events keep flowing.
    bridge("RemoveTargets", json!({"Rule": format!("shipshape-{env}"), "Ids": ["shipshape-queue"]})).await;
    bridge("DeleteRule", json!({"Name": format!("shipshape-{env}")})).await;
    eventually(WAIT, "rule put back", || (p.count("PutRule") >= 2).then_some(())).await;
    c.await_condition(&envk, "EventsFlowing", "True", WAIT).await;

    // The role loses sqs:ReceiveMessage: the queue cannot be read, the heartbeat is not seen;
    // the Environment says so, polling takes over; once it can read again, events flow again.
    p.inject("ReceiveMessage", shipshape_testkit::awsproxy::Fault::AccessDenied, 100_000);
    c.await_condition(&envk, "EventsFlowing", "False", Duration::from_secs(120)).await;
    let events = c.kubectl(&["get", "events", "--field-selector", &format!("involvedObject.name={env}"), "-o", "json"]).success().stdout;
    assert!(events.contains("EventsStopped"), "{events}");
    assert!(ctl.metric("shipshape_aws_event_fallbacks_total", &[&env]) >= 1.0);
    assert_eq!(ctl.metric("shipshape_aws_events_flowing", &[&env]), 0.0);
    p.reset();
    c.await_condition(&envk, "EventsFlowing", "True", Duration::from_secs(120)).await;

    // Deleted with deletionPolicy Delete: the queue and the rule go with it.
    c.kubectl(&["delete", "release", &svc, "-n", &ns, "--wait=false"]).success();
    c.kubectl(&["delete", "stackspec", "data", "-n", &ns, "--wait=false"]).success();
    eventually(WAIT, "release gone", || c.kubectl(&["get", "release", &svc, "-n", &ns]).stdout.is_empty().then_some(())).await;
    c.kubectl(&["delete", "environment", &env, "--wait=false"]).success();
    eventually(WAIT, "queue deleted", || (p.count("DeleteQueue") >= 1).then_some(())).await;
    let rule = bridge("DescribeRule", json!({"Name": format!("shipshape-{env}")})).await;
    assert!(rule["Arn"].is_null(), "rule deleted: {rule}");
    p.assert_no_violations();
    drop(ctl);
}

/// `events: {queueArn}`: a queue the platform team feeds (its own rule, routing the heartbeat
/// too) is only read; shipshape creates and deletes nothing. The role reads it through the
/// statement of deploy/events/own-queue-policy.json, attached beside the controller's policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_the_platform_team_is_read_and_nothing_is_created() {
    let c = Cluster::start().await;
    let p = proxy().await;
    p.emit_events(true);
    let ctl = Controller::start_at(&c, &p.url(), &[]);
    let (env, ns, queue) = (unique("env"), unique("team"), unique("platform-events"));
    let created = sqs("CreateQueue", json!({"QueueName": queue})).await;
    let url = created["QueueUrl"].as_str().unwrap().to_string();
    let arn = format!("arn:aws:sqs:eu-west-1:123456789012:{queue}");
    let rule = unique("platform");
    let pattern = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/events/rule-pattern.json")).unwrap();
    bridge("PutRule", json!({"Name": rule, "EventPattern": pattern})).await;
    bridge("PutTargets", json!({"Rule": rule, "Targets": [{"Id": "q", "Arn": arn}]})).await;
    let own: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/events/own-queue-policy.json")).unwrap(),
    )
    .unwrap();
    let mut read = own["Statement"][1].clone();
    read.as_object_mut().unwrap().remove("Principal");
    read["Resource"] = json!(arn);
    p.attach_policy("own-event-queue", json!({"Version": "2012-10-17", "Statement": [read]}));
    c.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: shipshape.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  region: eu-west-1\n  ecsCluster: {{name: {env}, create: true}}\n  allowedNamespaces: [{ns}]\n  deletionPolicy: Delete\n  events: {{queueArn: \"{arn}\"}}\n"
    ))
    .success();
    let envk = ["environment", env.as_str()];
    c.await_condition(&envk, "EventsFlowing", "True", WAIT).await;
    assert_eq!(c.jsonpath(&envk, "{.status.events.queueUrl}"), url);
    assert_eq!(c.jsonpath(&envk, "{.status.events.owned}"), "false");
    assert_eq!(c.jsonpath(&envk, "{.status.events.ruleArn}"), "");
    for op in ["CreateQueue", "PutRule", "PutTargets", "SetQueueAttributes"] {
        assert_eq!(p.count(op), 0, "{op}: a queue of its own is not shipshape's to change");
    }
    c.kubectl(&["delete", "environment", &env]).success();
    assert_eq!(p.count("DeleteQueue") + p.count("DeleteRule"), 0, "nothing of the platform team's is deleted");
    assert!(sqs("GetQueueUrl", json!({"QueueName": queue})).await["QueueUrl"].is_string());
    p.assert_no_violations();
    drop(ctl);
}
