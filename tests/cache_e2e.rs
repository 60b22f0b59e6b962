//! End to end for StackSpec `caches`: the real controller binary on the real control plane,
//! ElastiCache = moto behind the AWS test proxy, which models what moto lacks
//! (ModifyReplicationGroup, replica counts, member clusters: testkit/src/elasticache.rs),
//! driven with kubectl.

mod support;

use std::time::Duration;

use shipshape::core::stack::CacheModify;

use support::{aws_at, eventually, moto_query, proxy, unique, Cluster, E2e, Team};

const WAIT: Duration = Duration::from_secs(40);
const TOKEN: &str = "s3cret-auth-token-of-the-shop";

fn setup(c: &Cluster) -> Team {
    let n = Team::new(c, "shop");
    // The team lets the controller read its AUTH token Secrets.
    c.allow_secrets(&n.ns);
    n
}

/// The team's replication group.
fn redis(n: &Team) -> String {
    format!("{}-redis", n.ns)
}

fn secret(n: &Team) -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: redis-auth, namespace: {}}}\nstringData: {{token: {TOKEN}}}\n", n.ns)
}

/// The shop's Redis: 3 nodes, Multi-AZ, encrypted, AUTH, 7-day snapshots 03:00–05:00,
/// Sunday maintenance.
fn stack(n: &Team) -> String {
    n.stack(&format!(
        r#"  caches:
    - name: {cache}
      engineVersion: "7.0"
      nodeType: cache.r6g.large
      replicas: 2
      multiAz: true
      authTokenSecretRef: {{name: redis-auth, key: token}}
      snapshotRetentionDays: 7
      snapshotWindow: "03:00-05:00"
      maintenanceWindow: "sun:05:00-sun:06:00"
      deletionPolicy: Delete
"#,
        cache = redis(n)
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_is_created_with_its_auth_token_and_outputs_and_drift_is_put_back() {
    let E2e { c, p, ctl } = E2e::start().await;
    let n = setup(&c);
    c.apply(&format!("{}---\n{}", secret(&n), stack(&n))).success();
    assert_eq!(n.stack_condition(&c, "Ready", "True", WAIT).await, "Reconciled");

    let mine = proxy().await;
    let aws = aws_at(&mine.url(), "eu-west-1").await;
    let g = aws.elasticache.describe_cache(&redis(&n)).await.unwrap().expect("replication group exists");
    assert_eq!(g.members.len(), 3, "a primary and two replicas: {:?}", g.members);
    assert!(g.multi_az && g.automatic_failover);
    assert!(g.at_rest_encryption && g.transit_encryption && g.auth_token_enabled);
    assert_eq!((g.snapshot_retention_days, g.snapshot_window.as_deref()), (7, Some("03:00-05:00")));
    assert_eq!(g.engine_version.as_deref(), Some("7.0"));
    assert_eq!(g.maintenance_window.as_deref(), Some("sun:05:00-sun:06:00"));
    assert_eq!(g.tags.get("shipshape.dev/owner"), Some(&format!("{}/data", n.ns)));
    assert_eq!(g.tags.get("Project").map(String::as_str), Some("shop"));
    // The token went to ElastiCache in the create call, and nowhere else.
    let create = p.calls().into_iter().filter(|c| c.operation == "CreateReplicationGroup").count();
    assert_eq!(create, 1);

    let data = c.jsonpath(&["configmap", "data-outputs", "-n", &n.ns], "{.data}");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    let key = redis(&n).to_uppercase().replace('-', "_");
    assert_eq!(data[format!("{key}_HOST")].as_str(), g.primary_endpoint.as_ref().map(|(h, _)| h.as_str()), "{data}");
    assert_eq!(data[format!("{key}_PORT")], "6379");
    assert!(data[format!("{key}_READER_HOST")].as_str().is_some_and(|h| !h.is_empty()), "{data}");
    assert_eq!(data[format!("{key}_TLS")], "true");

    // Someone shortens the snapshots and moves the window.
    let drift = CacheModify { snapshot_retention_days: Some(1), snapshot_window: Some("10:00-11:00".into()), ..Default::default() };
    aws.elasticache.modify_cache(&redis(&n), &drift).await.unwrap();
    eventually(WAIT, "snapshots put back", || {
        let g = futures::executor::block_on(aws.elasticache.describe_cache(&redis(&n))).ok()??;
        (g.snapshot_retention_days == 7 && g.snapshot_window.as_deref() == Some("03:00-05:00")).then_some(())
    })
    .await;
    let events = eventually(WAIT, "a DriftCorrected event", || {
        let out = c.kubectl(&["get", "events", "-n", &n.ns]).stdout;
        (out.contains("DriftCorrected") && out.contains("snapshotRetentionDays")).then_some(out)
    })
    .await;
    assert!(ctl.metric("shipshape_drift_corrections_total", &["Cache"]) >= 1.0);

    // The token is in no status, Event or log line.
    let status = c.kubectl(&["get", "stackspec", "data", "-n", &n.ns, "-o", "yaml"]).stdout;
    for (what, text) in [("status", status.as_str()), ("events", events.as_str()), ("logs", ctl.logs().as_str())] {
        assert!(!text.contains(TOKEN), "the AUTH token leaked into {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_auth_secret_stalls_until_it_exists_and_nothing_is_created_meanwhile() {
    let E2e { c, p, ctl: _ctl } = E2e::start().await;
    let n = setup(&c);
    c.apply(&stack(&n)).success();
    assert_eq!(n.stack_condition(&c, "Stalled", "True", WAIT).await, "SecretNotFound");
    let message = n.stack_message(&c, "Stalled");
    assert!(message.contains("redis-auth") && message.contains("token"), "{message}");
    assert_eq!(p.calls().iter().filter(|c| c.operation == "CreateReplicationGroup").count(), 0);
    // The Secret appears; the next check (the drift interval, 2s) creates the cache.
    c.apply(&secret(&n)).success();
    n.stack_condition(&c, "Ready", "True", WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_group_changes_are_made_in_the_order_elasticache_requires() {
    let E2e { c, p, ctl: _ctl } = E2e::start().await;
    let n = setup(&c);
    // A single node first, no failover.
    let single = stack(&n).replace("replicas: 2", "replicas: 0").replace("multiAz: true", "multiAz: false");
    c.apply(&format!("{}---\n{}", secret(&n), single)).success();
    n.stack_condition(&c, "Ready", "True", WAIT).await;
    let mine = proxy().await;
    let aws = aws_at(&mine.url(), "eu-west-1").await;
    assert_eq!(aws.elasticache.describe_cache(&redis(&n)).await.unwrap().unwrap().members.len(), 1);
    // Then two replicas with Multi-AZ, a bigger node type: replicas first (failover needs
    // one), then the modification; the proxy refuses the other order as ElastiCache does.
    c.apply(&stack(&n).replace("cache.r6g.large", "cache.r6g.xlarge")).success();
    eventually(WAIT, "replicas, failover and node type changed", || {
        let g = futures::executor::block_on(aws.elasticache.describe_cache(&redis(&n))).ok()??;
        (g.members.len() == 3 && g.multi_az && g.automatic_failover && g.node_type == "cache.r6g.xlarge").then_some(())
    })
    .await;
    n.stack_condition(&c, "Ready", "True", WAIT).await;
    let ops: Vec<String> = p
        .calls()
        .into_iter()
        .filter(|c| ["IncreaseReplicaCount", "ModifyReplicationGroup"].contains(&c.operation.as_str()))
        .map(|c| c.operation)
        .collect();
    assert_eq!(ops, ["IncreaseReplicaCount", "ModifyReplicationGroup"]);
    // Deleting the StackSpec deletes the cache (deletionPolicy Delete).
    c.kubectl(&["delete", "stackspec", "data", "-n", &n.ns, "--timeout=40s"]).success();
    let gone = aws.elasticache.describe_cache(&redis(&n)).await.unwrap();
    assert!(gone.as_ref().is_none_or(|g| g.status == "deleting"), "{gone:?}");
}

/// The proxy's model of what moto lacks, against the ElastiCache API Reference (quoted in
/// testkit/src/elasticache.rs): members per node, replica counts, ModifyReplicationGroup,
/// and the refusals of failover without a replica and of the last replica under failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticache_model_follows_the_api_reference() {
    let p = proxy().await;
    let aws = aws_at(&p.url(), "eu-west-1").await;
    let name = unique("model");
    let spec: shipshape::api::CacheSpec = serde_json::from_value(serde_json::json!({
        "name": name, "engineVersion": "7.0", "nodeType": "cache.t4g.micro", "transitEncryption": false,
        "maintenanceWindow": "sun:05:00-sun:06:00"}))
    .unwrap();
    let tags = [("shipshape.dev/owner".to_string(), "t/data".to_string())].into();
    aws.elasticache.create_cache(&spec, &tags, None, None).await.unwrap();
    let g = aws.elasticache.describe_cache(&name).await.unwrap().unwrap();
    assert_eq!(g.members, [format!("{name}-001")]);
    assert!(g.reader_endpoint.is_none() && !g.automatic_failover);
    assert_eq!((g.engine_version.as_deref(), g.maintenance_window.as_deref()), (Some("7.0"), Some("sun:05:00-sun:06:00")));

    // "Automatic failover ... requires at least one read replica."
    let failover = CacheModify { automatic_failover: Some(true), ..Default::default() };
    let refused = aws.elasticache.modify_cache(&name, &failover).await.expect_err("failover without a replica");
    assert!(refused.to_string().contains("InvalidParameterCombination"), "{refused}");

    aws.elasticache.set_cache_replicas(&name, 2, 0).await.unwrap();
    let g = aws.elasticache.describe_cache(&name).await.unwrap().unwrap();
    assert_eq!(g.members.len(), 3);
    assert!(g.reader_endpoint.is_some(), "a group with replicas has a reader endpoint");

    let modify = CacheModify {
        automatic_failover: Some(true),
        multi_az: Some(true),
        node_type: Some("cache.t4g.small".into()),
        snapshot_retention_days: Some(5),
        engine_version: Some("7.1".into()),
        ..Default::default()
    };
    aws.elasticache.modify_cache(&name, &modify).await.unwrap();
    let g = aws.elasticache.describe_cache(&name).await.unwrap().unwrap();
    assert!(g.automatic_failover && g.multi_az);
    assert_eq!((g.node_type.as_str(), g.snapshot_retention_days, g.engine_version.as_deref()), ("cache.t4g.small", 5, Some("7.1")));

    // "You cannot decrease the replica count to 0 while automatic failover is enabled."
    let refused = aws.elasticache.set_cache_replicas(&name, 0, 2).await.expect_err("the last replica under failover");
    assert!(refused.to_string().contains("InvalidParameterCombination"), "{refused}");

    // "ElastiCache creates the snapshot from the primary node ... After the final snapshot
    // is taken, the replication group is immediately deleted."
    let last = format!("{name}-final");
    aws.elasticache.delete_cache(&name, Some(&last)).await.unwrap();
    let gone = aws.elasticache.describe_cache(&name).await.unwrap();
    assert!(gone.as_ref().is_none_or(|g| g.status == "deleting"), "{gone:?}");
    let snapshot = moto_query("elasticache", &format!("Action=DescribeSnapshots&Version=2015-02-02&SnapshotName={last}")).await;
    assert!(snapshot.contains(&format!("<SnapshotName>{last}</SnapshotName>")), "{snapshot}");
    assert!(snapshot.contains(&format!("<ReplicationGroupId>{name}</ReplicationGroupId>")), "{snapshot}");
}

/// deletionPolicy Snapshot (the default): deleting the StackSpec deletes the group only with
/// a final snapshot, which is there afterwards; Retain leaves the group as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_cache_leaves_its_final_snapshot_and_a_retained_one_stays() {
    let E2e { c, p, ctl: _ctl } = E2e::start().await;
    let n = setup(&c);
    let kept = unique("kept-redis");
    let two = stack(&n)
        .replace("      deletionPolicy: Delete\n", "")
        .replace("replicas: 2", "replicas: 0")
        .replace("multiAz: true", "multiAz: false")
        + &format!("    - {{name: {kept}, engineVersion: \"7.0\", nodeType: cache.t4g.micro, deletionPolicy: Retain}}\n");
    c.apply(&format!("{}---\n{}", secret(&n), two)).success();
    n.stack_condition(&c, "Ready", "True", WAIT).await;
    c.kubectl(&["delete", "stackspec", "data", "-n", &n.ns, "--timeout=40s"]).success();
    let deletes: Vec<_> = p.calls().into_iter().filter(|c| c.operation == "DeleteReplicationGroup").collect();
    assert_eq!(deletes.len(), 1, "only the Snapshot cache is deleted");
    let snapshots =
        moto_query("elasticache", &format!("Action=DescribeSnapshots&Version=2015-02-02&ReplicationGroupId={}", redis(&n))).await;
    assert!(snapshots.contains(&format!("<SnapshotName>{}-final-", redis(&n))), "{snapshots}");
    let mine = proxy().await;
    let aws = aws_at(&mine.url(), "eu-west-1").await;
    let retained = aws.elasticache.describe_cache(&kept).await.unwrap().expect("the retained cache stays");
    assert_eq!(retained.status, "available");
}
