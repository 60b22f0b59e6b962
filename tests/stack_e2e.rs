//! End to end for StackSpec: the real controller binary, the test API server, moto behind
//! the AWS test proxy (fault injection, call counting), driven with kubectl.

mod support;

use std::time::Duration;

use support::{aws_at, eventually, proxy, unique, Cluster, Controller};

const WAIT: Duration = Duration::from_secs(40);

struct Names {
    env: String,
    ns: String,
    db: String,
    uploads: String,
    assets: String,
}

fn names() -> Names {
    Names {
        env: unique("env"),
        ns: unique("team"),
        db: unique("db"),
        uploads: unique("uploads"),
        assets: unique("assets"),
    }
}

fn setup(c: &Cluster, n: &Names) {
    c.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: shipshape.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  region: eu-west-1\n  ecsCluster: {{name: {env}, create: true}}\n  allowedNamespaces: [{ns}]\n  tags: {{Project: car-rental}}\n",
        ns = n.ns,
        env = n.env
    ))
    .success();
}

/// The car-rental stack: one Postgres database and two buckets.
fn stack(n: &Names, extra: &str, db_extra: &str, bucket_extra: &str) -> String {
    format!(
        r#"apiVersion: shipshape.dev/v1alpha1
kind: StackSpec
metadata: {{name: data, namespace: {ns}}}
spec:
  environment: {env}
  outputs: data-outputs
  driftInterval: 2s
{extra}  databases:
    - {{name: {db}, engine: postgres, engineVersion: "16.4", instanceClass: db.t4g.micro, allocatedStorageGiB: 20, backupRetentionDays: 7{db_extra}}}
  buckets:
    - {{name: {uploads}, versioning: true, lifecycle: [{{prefix: tmp/, expireDays: 7}}]{bucket_extra}}}
    - {{name: {assets}, lifecycle: [{{prefix: "", transitions: [{{days: 30, storageClass: STANDARD_IA}}, {{days: 90, storageClass: GLACIER}}]}}]}}
"#,
        ns = n.ns,
        env = n.env,
        db = n.db,
        uploads = n.uploads,
        assets = n.assets,
    )
}

async fn condition(c: &Cluster, n: &Names, type_: &str, status: &str) -> String {
    eventually(WAIT, &format!("StackSpec {type_}={status}"), || {
        let (s, r) = c.condition(&["stackspec", "data", "-n", &n.ns], type_);
        (s == status).then_some(r)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_of_one_database_and_two_buckets_is_created_with_outputs() {
    let c = Cluster::start().await;
    let p = proxy().await;
    let _ctl = Controller::start_at(&c, &p.url(), &[]);
    let n = names();
    setup(&c, &n);
    c.apply(&stack(&n, "", "", "")).success();
    assert_eq!(condition(&c, &n, "Ready", "True").await, "Reconciled");

    let mine = proxy().await;
    let aws = aws_at(&mine.url(), "eu-west-1").await;
    let db = aws
        .rds
        .describe_db_instance(&n.db)
        .await
        .unwrap()
        .expect("database exists");
    assert_eq!(
        (
            db.engine.as_str(),
            db.allocated_storage_gib,
            db.backup_retention_days
        ),
        ("postgres", 20, 7)
    );
    assert_eq!(
        db.tags.get("shipshape.dev/owner"),
        Some(&format!("{}/data", n.ns))
    );
    assert_eq!(
        db.tags.get("Project").map(String::as_str),
        Some("car-rental")
    );
    let uploads = aws
        .s3
        .describe_bucket(&n.uploads)
        .await
        .unwrap()
        .expect("bucket exists");
    assert_eq!(uploads.versioning.as_deref(), Some("Enabled"));
    assert!(
        uploads.public_access_blocked,
        "public access is blocked by default"
    );
    assert_eq!(uploads.lifecycle.len(), 1);
    let assets = aws
        .s3
        .describe_bucket(&n.assets)
        .await
        .unwrap()
        .expect("bucket exists");
    assert_eq!(assets.lifecycle[0].transitions.len(), 2);
    assert_eq!(assets.region, "eu-west-1");

    let cm = c
        .kubectl(&[
            "get",
            "configmap",
            "data-outputs",
            "-n",
            &n.ns,
            "-o",
            "json",
        ])
        .success()
        .stdout;
    let cm: serde_json::Value = serde_json::from_str(&cm).unwrap();
    let key = n.db.to_uppercase().replace('-', "_");
    let data = &cm["data"];
    assert_eq!(data[format!("{key}_ENGINE")], "postgres");
    assert!(
        data[format!("{key}_HOST")]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{data}"
    );
    assert_eq!(data[format!("{key}_PORT")], "5432");
    assert!(
        data[format!("{key}_MASTER_SECRET_ARN")]
            .as_str()
            .is_some_and(|a| a.starts_with("arn:aws:secretsmanager:")),
        "{data}"
    );
    assert!(
        !cm.to_string().to_lowercase().contains("password\":"),
        "no password in outputs: {cm}"
    );
    assert_eq!(
        data[format!("{}_BUCKET", n.uploads.to_uppercase().replace('-', "_"))],
        n.uploads.as_str()
    );
    assert_eq!(cm["metadata"]["ownerReferences"][0]["kind"], "StackSpec");

    let resources = c.jsonpath(
        &["stack", "data", "-n", &n.ns],
        "{.status.resources[*].name}",
    );
    assert_eq!(resources, format!("{} {} {}", n.db, n.uploads, n.assets));

    // Steady state: further drift passes read but never write.
    p.reset();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        p.count("DescribeDBInstances") >= 2,
        "drift passes ran: {:?}",
        p.calls()
    );
    assert_eq!(
        p.writes(),
        vec![],
        "a no-op reconcile makes zero AWS writes"
    );
}
