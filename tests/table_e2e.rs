//! End to end for StackSpec `tables`: the real controller binary on the real control plane,
//! DynamoDB = moto behind the AWS test proxy, driven with kubectl. What moto does not
//! emulate (tables are ACTIVE at once; SSE changes are accepted and ignored) is covered by
//! the plan's unit and property tests (src/core/table/tests.rs) and listed in
//! docs/testing.md.

mod support;

use std::time::Duration;

use shipshape::api::{StreamView, TableEncryption};
use shipshape::aws::BackupState;
use shipshape::core::stack::TableUpdate;

use support::{aws_at, eventually, proxy, unique, Cluster, E2e, Team};

const WAIT: Duration = Duration::from_secs(40);

fn setup(c: &Cluster) -> Team {
    Team::new(c, "mobile")
}

/// A StackSpec `data` holding `tables` (YAML list items, indented by 4).
fn stack(n: &Team, tables: &str) -> String {
    n.stack(&format!("  tables:\n{tables}"))
}

fn users(name: &str, extra: &str) -> String {
    format!(
        "    - name: {name}\n      partitionKey: {{name: userId, type: S}}\n      sortKey: {{name: createdAt, type: N}}\n      globalSecondaryIndexes: [{{name: byEmail, partitionKey: {{name: email, type: S}}, projection: KeysOnly}}]\n      ttlAttribute: expiresAt\n      stream: NEW_AND_OLD_IMAGES\n      encryption: AwsManaged\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_is_created_as_declared_with_outputs_and_drift_is_put_back() {
    let E2e { c, p, ctl } = E2e::start().await;
    let n = setup(&c);
    let table = unique("users");
    c.apply(&stack(&n, &users(&table, ""))).success();
    assert_eq!(n.stack_condition(&c, "Ready", "True", WAIT).await, "Reconciled");

    let mine = proxy().await;
    let aws = aws_at(&mine.url(), "eu-west-1").await;
    let t = aws.dynamodb.describe_table(&table).await.unwrap().expect("table exists");
    assert_eq!(t.partition_key.as_ref().map(|k| k.name.as_str()), Some("userId"));
    assert_eq!(t.sort_key.as_ref().map(|k| k.name.as_str()), Some("createdAt"));
    assert_eq!(t.indexes.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["byEmail"]);
    assert!(t.point_in_time_recovery, "point-in-time recovery is on by default");
    assert_eq!(t.ttl.as_ref().map(|(a, s)| (a.as_str(), s.as_str())), Some(("expiresAt", "ENABLED")));
    assert_eq!(t.stream, Some(StreamView::NewAndOldImages));
    assert_eq!(t.encryption, TableEncryption::AwsManaged);
    assert_eq!(t.tags.get("shipshape.dev/owner"), Some(&format!("{}/data", n.ns)));
    assert_eq!(t.tags.get("Project").map(String::as_str), Some("mobile"));

    let data = c.jsonpath(&["configmap", "data-outputs", "-n", &n.ns], "{.data}");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    let key = table.to_uppercase().replace('-', "_");
    assert_eq!(data[format!("{key}_TABLE")], table.as_str());
    assert_eq!(data[format!("{key}_TABLE_ARN")], t.arn.as_str());
    assert_eq!(data[format!("{key}_STREAM_ARN")].as_str(), t.stream_arn.as_deref(), "{data}");

    // Steady state: drift passes read, never write.
    p.reset();
    eventually(Duration::from_secs(60), "two drift passes", || (p.count("DescribeTable") >= 2).then_some(())).await;
    assert_eq!(p.writes(), vec![], "a no-op reconcile makes zero AWS writes");

    // Someone turns point-in-time recovery and TTL off and deletion protection on.
    aws.dynamodb.set_point_in_time_recovery(&table, false).await.unwrap();
    aws.dynamodb.set_ttl(&table, "expiresAt", false).await.unwrap();
    aws.dynamodb.update_table(&table, &TableUpdate::DeletionProtection(true)).await.unwrap();
    eventually(WAIT, "the table put back", || {
        let t = futures::executor::block_on(aws.dynamodb.describe_table(&table)).ok()??;
        let ttl_on = t.ttl.as_ref().is_some_and(|(a, s)| a == "expiresAt" && s == "ENABLED");
        (t.point_in_time_recovery && ttl_on && !t.deletion_protection).then_some(())
    })
    .await;
    let events = eventually(WAIT, "DriftCorrected events", || {
        let out = c.kubectl(&["get", "events", "-n", &n.ns]).stdout;
        (out.contains("pointInTimeRecovery") && out.contains("ttlAttribute") && out.contains("deletionProtection")).then_some(out)
    })
    .await;
    assert!(events.contains("DriftCorrected"), "{events}");
    assert!(ctl.metric("shipshape_drift_corrections_total", &["Table"]) >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_schema_change_is_refused_and_nothing_is_written() {
    let E2e { c, p, ctl: _ctl } = E2e::start().await;
    let n = setup(&c);
    let table = unique("users");
    c.apply(&stack(&n, &users(&table, ""))).success();
    n.stack_condition(&c, "Ready", "True", WAIT).await;
    p.reset();
    let changed = users(&table, "").replace("sortKey: {name: createdAt, type: N}", "sortKey: {name: createdAt, type: S}");
    c.apply(&stack(&n, &changed)).success();
    assert_eq!(n.stack_condition(&c, "Stalled", "True", WAIT).await, "UnsupportedChange");
    let message = n.stack_message(&c, "Stalled");
    assert!(message.contains("sortKey") && message.contains("createdAt(N)") && message.contains("createdAt(S)"), "{message}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(p.writes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_keeps_backs_up_or_deletes_each_table_as_its_policy_says() {
    let E2e { c, p, ctl: _ctl } = E2e::start().await;
    let n = setup(&c);
    let (kept, backed, gone, guarded) = (unique("kept"), unique("backed"), unique("gone"), unique("guarded"));
    let key = |name: &str, extra: &str| format!("    - {{name: {name}, partitionKey: {{name: id, type: S}}{extra}}}\n");
    let tables = [
        key(&kept, ""),
        key(&backed, ", deletionPolicy: Snapshot"),
        key(&gone, ", deletionPolicy: Delete"),
        key(&guarded, ", deletionPolicy: Delete, deletionProtection: true"),
    ]
    .concat();
    c.apply(&stack(&n, &tables)).success();
    n.stack_condition(&c, "Ready", "True", WAIT).await;
    let mine = proxy().await;
    let aws = aws_at(&mine.url(), "eu-west-1").await;

    // A protected table stops the deletion until the user says otherwise.
    c.kubectl(&["delete", "stackspec", "data", "-n", &n.ns, "--wait=false"]).success();
    assert_eq!(n.stack_condition(&c, "Stalled", "True", WAIT).await, "DeletionProtected");
    assert!(aws.dynamodb.describe_table(&guarded).await.unwrap().is_some(), "the protected table is still there");
    c.kubectl(&[
        "patch",
        "stackspec",
        "data",
        "-n",
        &n.ns,
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/tables/3/deletionProtection","value":false}]"#,
    ])
    .success();
    eventually(WAIT, "the StackSpec gone", || (c.kubectl(&["get", "stackspec", "data", "-n", &n.ns]).code != 0).then_some(())).await;

    assert!(aws.dynamodb.describe_table(&kept).await.unwrap().is_some(), "Retain (the default) keeps the table");
    assert!(aws.dynamodb.describe_table(&backed).await.unwrap().is_none(), "Snapshot deletes the table");
    assert!(aws.dynamodb.describe_table(&gone).await.unwrap().is_none(), "Delete deletes the table");
    assert!(aws.dynamodb.describe_table(&guarded).await.unwrap().is_none(), "deleted once protection was lifted in the spec");
    // The final backup exists (final_backup finds it rather than making one: the table is gone).
    match aws.dynamodb.final_backup(&backed, "probe").await {
        Ok(BackupState::Available(name)) | Ok(BackupState::Creating(name)) => {
            assert!(name.starts_with(&format!("{backed}-final-")), "{name}")
        }
        other => panic!("no final backup of {backed}: {other:?}"),
    }
    let calls = p.calls();
    let at = |op: &str| calls.iter().position(|c| c.operation == op);
    assert!(at("CreateBackup") < at("DeleteTable"), "the backup comes before any deletion: {calls:?}");
    assert_eq!(calls.iter().filter(|c| c.operation == "CreateBackup").count(), 1, "one backup, for the Snapshot table");
}
