//! `shipshape plan -f`: lists exactly the changed fields, exits 0/2/1, and never writes.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{eventually, proxy, unique, Cluster, Controller};

fn manifests(env: &str, ns: &str, bucket: &str, versioning: bool, retention: i32) -> String {
    format!(
        r#"apiVersion: shipshape.dev/v1alpha1
kind: Environment
metadata: {{name: {env}}}
spec:
  region: eu-west-1
  ecsCluster: {{name: {env}, create: true}}
  allowedNamespaces: [{ns}]
---
apiVersion: shipshape.dev/v1alpha1
kind: StackSpec
metadata: {{name: data, namespace: {ns}}}
spec:
  environment: {env}
  databases:
    - {{name: {bucket}-db, engine: mysql, engineVersion: "8.0.35", instanceClass: db.t4g.micro, allocatedStorageGiB: 20, backupRetentionDays: {retention}}}
  buckets:
    - {{name: {bucket}, versioning: {versioning}}}
"#
    )
}

fn plan(endpoint: &str, file: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shipshape"))
        .args(["plan", "-f", file.to_str().unwrap()])
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_lists_exactly_the_changed_fields_exits_by_the_result_and_never_writes() {
    let c = Cluster::start().await;
    let controller_proxy = proxy().await;
    let _ctl = Controller::start_at(&c, &controller_proxy.url(), &[]);
    let (env, ns, bucket) = (unique("env"), unique("team"), unique("bucket"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stack.yaml");
    std::fs::write(&file, manifests(&env, &ns, &bucket, true, 7)).unwrap();

    let planner = proxy().await;
    // Nothing exists yet: everything is a create.
    let (code, out, err) = tokio::task::spawn_blocking({
        let (u, f) = (planner.url(), file.clone());
        move || plan(&u, &f)
    })
    .await
    .unwrap();
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains(&format!("Database {bucket}-db: create")) && out.contains(&format!("Bucket {bucket}: create")), "{out}");
    assert!(out.contains(&format!("EcsCluster {env}: create")), "{out}");

    // Let the controller make it so, then plan the same manifests: nothing to do.
    c.apply(&format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n")).success();
    c.apply(&std::fs::read_to_string(&file).unwrap()).success();
    eventually(Duration::from_secs(40), "stack Ready", || (c.condition(&["stack", "data", "-n", &ns], "Ready").0 == "True").then_some(()))
        .await;
    let (code, out, err) = tokio::task::spawn_blocking({
        let (u, f) = (planner.url(), file.clone());
        move || plan(&u, &f)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no changes") && !out.contains("update"), "{out}");

    // A changed manifest: exactly the two changed fields.
    std::fs::write(&file, manifests(&env, &ns, &bucket, false, 14)).unwrap();
    let (code, out, _) = tokio::task::spawn_blocking({
        let (u, f) = (planner.url(), file.clone());
        move || plan(&u, &f)
    })
    .await
    .unwrap();
    assert_eq!(code, 2, "{out}");
    let updates: Vec<&str> = out.lines().map(str::trim).filter(|l| l.contains(": update ")).collect();
    assert_eq!(
        updates,
        [
            format!("Database {bucket}-db: update backupRetentionDays: 7 -> 14"),
            format!("Bucket {bucket}: update versioning: Enabled -> Suspended")
        ]
    );
    assert!(planner.count("DescribeDBInstances") >= 3);
    assert_eq!(planner.writes(), vec![], "plan never writes to AWS");

    // A StackSpec whose Environment is not among the manifests is an error.
    let lone = dir.path().join("lone.yaml");
    std::fs::write(&lone, manifests(&env, &ns, &bucket, true, 7).split("---").nth(1).unwrap()).unwrap();
    let (code, _, err) = tokio::task::spawn_blocking({
        let u = planner.url();
        move || plan(&u, &lone)
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("not among the manifests"), "{err}");
}
