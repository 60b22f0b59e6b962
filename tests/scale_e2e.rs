//! What load must not change, on the real control plane: a reconcile that finds nothing to
//! do asks the API server nothing (kube-apiserver's own audit log says so), and its own
//! status writes do not wake it again.

mod support;

use std::time::Duration;

use support::{eventually, proxy, unique, Cluster, Controller, E2e};

/// A Healthy release with its StackSpec, drift-checked every 2 s: over several intervals its
/// reconciles make no API request (Environment, StackSpec and outputs come from caches; no
/// status write when nothing changed), and the drift reads of ECS are answered in batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_op_reconcile_makes_no_api_request() {
    let E2e { c, p, ctl } = E2e::start_slow(Duration::from_millis(300), &[]).await;
    let (env, ns) = (unique("env"), unique("team"));
    let bucket = unique("noop");
    let mut yaml = support::namespaces_and_environment(&env, &[&ns], "").await;
    yaml += &format!(
        "---\napiVersion: shipshape.dev/v1alpha1\nkind: StackSpec\nmetadata: {{name: data, namespace: {ns}}}\nspec:\n  environment: {env}\n  outputs: data-out\n  driftInterval: 2s\n  buckets: [{{name: {bucket}}}]\n---\napiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: api, namespace: {ns}}}\nspec:\n  environment: {env}\n  stack: data\n  driftInterval: 2s\n  image: {{repository: r, gitSha: 3f9c2a1d}}\n  task: {{cpu: 256, memory: 512}}\n"
    );
    c.apply(&yaml).success();
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

/// Two shards, shard 0 with a standby: every release is reconciled by exactly the shard its
/// namespace hashes to, each shard leads on a Lease of its own, and when shard 0's leader
/// dies its standby takes its half over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_split_the_releases_and_a_standby_takes_its_shard_over() {
    use shipshape::controller::Shard;
    let c = Cluster::start().await;
    let p = proxy().await;
    p.set_deployment_delay(Duration::from_millis(300));
    let env = unique("env");
    // Namespaces until each shard has two.
    let mut by_shard: [Vec<String>; 2] = [vec![], vec![]];
    while by_shard.iter().any(|v| v.len() < 2) {
        let ns = unique("team");
        let s = Shard::of_namespace(&ns, 2) as usize;
        if by_shard[s].len() < 2 {
            by_shard[s].push(ns);
        }
    }
    let all: Vec<&String> = by_shard.iter().flatten().collect();
    let names: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
    c.apply(&support::namespaces_and_environment(&env, &names, "").await).success();
    // One ECS cluster: each namespace's service gets a name of its own.
    let release = |ns: &str, sha: &str| {
        format!("apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: api, namespace: {ns}}}\nspec:\n  environment: {env}\n  service: api-{ns}\n  image: {{repository: r, gitSha: {sha}}}\n  task: {{cpu: 256, memory: 512}}\n")
    };
    let mut s0a = Controller::start_at(&c, &p.url(), &["--shard", "0/2"]);
    eventually(Duration::from_secs(30), "shard 0 leads", || (s0a.metric("shipshape_leader", &[]) == 1.0).then_some(())).await;
    let s0b = Controller::start_at(&c, &p.url(), &["--shard", "0/2"]);
    let s1 = Controller::start_at(&c, &p.url(), &["--shard", "1/2"]);
    eventually(Duration::from_secs(30), "shard 1 leads on its own Lease", || (s1.metric("shipshape_leader", &[]) == 1.0).then_some(()))
        .await;
    for ns in &all {
        c.apply(&release(ns, "aaaa111")).success();
    }
    let healthy = |ns: &str| c.jsonpath(&["release", "api", "-n", ns], "{.status.phase}") == "Healthy";
    eventually(Duration::from_secs(60), "every release Healthy", || all.iter().all(|ns| healthy(ns)).then_some(())).await;
    let leases = c.kubectl(&["get", "leases", "-n", "shipshape", "-o", "name"]).success().stdout;
    assert!(leases.contains(&format!("shipshape-{}-0", c.id)) && leases.contains(&format!("shipshape-{}-1", c.id)), "{leases}");
    for (shard, namespaces) in by_shard.iter().enumerate() {
        for ns in namespaces {
            let seen = |ctl: &Controller| ctl.scrape().unwrap_or_default().contains(&format!("namespace=\"{ns}\""));
            let (in0, in1) = (seen(&s0a), seen(&s1));
            assert_eq!((in0, in1), (shard == 0, shard == 1), "{ns} belongs to shard {shard} only");
            assert!(!seen(&s0b), "the standby reconciles nothing");
        }
    }
    // Shard 0's leader dies: its standby takes the shard over; shard 1 is untouched.
    s0a.kill();
    eventually(Duration::from_secs(30), "the standby leads shard 0", || (s0b.metric("shipshape_leader", &[]) == 1.0).then_some(())).await;
    let ns0 = &by_shard[0][0];
    c.apply(&release(ns0, "bbbb222")).success();
    eventually(Duration::from_secs(60), "shard 0's release rolled forward by the standby", || {
        (c.jsonpath(&["release", "api", "-n", ns0], "{.status.stableSha}") == "bbbb222").then_some(())
    })
    .await;
    assert!(!s1.scrape().unwrap_or_default().contains(&format!("namespace=\"{ns0}\"")));
}

/// An Environment and a release applied together, the cluster slow to come (CreateCluster
/// takes 3 s): the release waits for the cluster (WaitingForEnvironment) and is woken when it
/// exists, instead of meeting ClusterNotFound and stalling for good — as 7 of 300 releases
/// did in the benchmark once Environment status changes stopped waking releases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_applied_with_its_environment_waits_for_the_cluster() {
    let c = Cluster::start().await;
    let p = proxy().await;
    p.set_deployment_delay(Duration::from_millis(300));
    p.inject("CreateCluster", shipshape_testkit::awsproxy::Fault::DelayMs(3_000), 1);
    let _ctl = Controller::start_at(&c, &p.url(), &[]);
    let (env, ns) = (unique("env"), unique("team"));
    let mut yaml = support::namespaces_and_environment(&env, &[&ns], "").await;
    yaml += &format!(
        "---\napiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: api, namespace: {ns}}}\nspec:\n  environment: {env}\n  image: {{repository: r, gitSha: 3f9c2a1d}}\n  task: {{cpu: 256, memory: 512}}\n"
    );
    c.apply(&yaml).success();
    eventually(Duration::from_secs(20), "the release waiting for the cluster", || {
        (c.condition(&["release", "api", "-n", &ns], "Reconciling").1 == "WaitingForEnvironment").then_some(())
    })
    .await;
    eventually(Duration::from_secs(40), "release Healthy once the cluster exists", || {
        (c.jsonpath(&["release", "api", "-n", &ns], "{.status.phase}") == "Healthy").then_some(())
    })
    .await;
    assert_eq!(p.calls().iter().filter(|c| c.operation == "DescribeServices" && c.faulted).count(), 0);
}
