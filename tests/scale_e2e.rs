//! What load must not change, on the real control plane: a reconcile that finds nothing to
//! do asks the API server nothing (kube-apiserver's own audit log says so), and its own
//! status writes do not wake it again.

mod support;

use std::time::Duration;

use support::{eventually, proxy, unique, Cluster, Controller};

/// A Healthy release with its StackSpec, drift-checked every 2 s: over several intervals its
/// reconciles make no API request (Environment, StackSpec and outputs come from caches; no
/// status write when nothing changed), and the drift reads of ECS are answered in batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_op_reconcile_makes_no_api_request() {
    let c = Cluster::start().await;
    let p = proxy().await;
    p.set_deployment_delay(Duration::from_millis(300));
    let ctl = Controller::start_at(&c, &p.url(), &[]);
    let (env, ns) = (unique("env"), unique("team"));
    let (subnet, sg) = support::network().await;
    let bucket = unique("noop");
    c.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: shipshape.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  region: eu-west-1\n  ecsCluster: {{name: {env}, create: true}}\n  network: {{subnets: [{subnet}], securityGroups: [{sg}]}}\n  allowedNamespaces: [{ns}]\n---\napiVersion: shipshape.dev/v1alpha1\nkind: StackSpec\nmetadata: {{name: data, namespace: {ns}}}\nspec:\n  environment: {env}\n  outputs: data-out\n  driftInterval: 2s\n  buckets: [{{name: {bucket}}}]\n---\napiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: api, namespace: {ns}}}\nspec:\n  environment: {env}\n  stack: data\n  driftInterval: 2s\n  image: {{repository: r, gitSha: 3f9c2a1d}}\n  task: {{cpu: 256, memory: 512}}\n"
    ))
    .success();
    eventually(Duration::from_secs(60), "release Healthy", || {
        (c.jsonpath(&["release", "api", "-n", &ns], "{.status.phase}") == "Healthy").then_some(())
    })
    .await;
    // Settle, then watch three drift intervals.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let Some(before) = c.audit_log() else {
        eprintln!("no audit log on an existing cluster; nothing to compare");
        return;
    };
    let reconciles =
        || ctl.metric("shipshape_reconcile_total", &["servicerelease"]) + ctl.metric("shipshape_reconcile_total", &["stackspec"]);
    let r0 = reconciles();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(reconciles() - r0 >= 4.0, "drift checks ran: {}", reconciles() - r0);
    let after = c.audit_log().unwrap();
    let ours: Vec<&serde_json::Value> = after[before.len()..]
        .iter()
        .filter(|e| e["user"]["username"] == support::CONTROLLER_USER && e["stage"] == "ResponseComplete")
        .filter(|e| e["objectRef"]["namespace"] == ns.as_str() || e["objectRef"]["name"] == env.as_str())
        .filter(|e| !matches!(e["verb"].as_str(), Some("watch")))
        .collect();
    assert!(
        ours.is_empty(),
        "no-op reconciles made API requests: {:#?}",
        ours.iter().map(|e| (&e["verb"], &e["objectRef"])).collect::<Vec<_>>()
    );
    // Nothing to write in AWS either.
    let writes: Vec<_> = p.writes();
    assert!(writes.iter().all(|w| w.operation != "UpdateService"), "{writes:?}");
}
