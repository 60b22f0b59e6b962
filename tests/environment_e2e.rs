//! End to end: the real `shipshape controller` binary against the test API server (or a
//! real cluster with SHIPSHAPE_E2E_KUBECONFIG) and moto, driven with kubectl.

mod support;

use std::time::Duration;

use support::{ecs, eventually, proxy, unique, Cluster, Controller, E2e};

const WAIT: Duration = Duration::from_secs(30);

fn environment(name: &str, cluster: &str, extra: &str) -> String {
    format!(
        "apiVersion: shipshape.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {name}}}\nspec:\n  region: eu-west-1\n  ecsCluster: {{name: {cluster}, create: true, capacityProviders: [FARGATE]}}\n  allowedNamespaces: [car-rental]\n{extra}"
    )
}

async fn ready(c: &Cluster, kind_name: &[&str]) {
    eventually(WAIT, &format!("{kind_name:?} Ready=True"), || {
        let (status, _) = c.condition(kind_name, "Ready");
        let gen = c.jsonpath(kind_name, "{.metadata.generation}");
        let observed = c.jsonpath(kind_name, "{.status.observedGeneration}");
        (status == "True" && !gen.is_empty() && gen == observed).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_an_environment_creates_its_ecs_cluster_with_tags_and_reports_ready() {
    let E2e { c, p: _p, ctl: _ctl } = E2e::start().await;
    let (env, cluster) = (unique("env"), unique("cluster"));
    c.apply(&environment(&env, &cluster, "  tags: {Project: car-rental}\n")).success();
    ready(&c, &["environment", &env]).await;

    let observed = ecs("eu-west-1").await.describe_cluster(&cluster).await.unwrap().expect("cluster exists in AWS");
    assert_eq!(observed.status, "ACTIVE");
    assert_eq!(observed.tags.get("Project").map(String::as_str), Some("car-rental"));
    assert_eq!(observed.tags.get("shipshape.dev/managed-by").map(String::as_str), Some("shipshape"));
    assert_eq!(observed.tags.get("shipshape.dev/owner"), Some(&env));
    assert_eq!(c.jsonpath(&["environment", &env], "{.status.clusterArn}"), observed.arn);
    assert_eq!(c.jsonpath(&["environment", &env], "{.status.callerAccountId}"), "123456789012");
    let get = c.kubectl(&["get", "env", &env]).success().stdout;
    assert!(get.contains("REGION") && get.contains(&cluster) && get.contains("True"), "{get}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_tags_updates_them_in_aws_and_removes_dropped_ones() {
    let E2e { c, p: _p, ctl: _ctl } = E2e::start().await;
    let (env, cluster) = (unique("env"), unique("cluster"));
    c.apply(&environment(&env, &cluster, "  tags: {Project: car-rental, Team: blue}\n")).success();
    ready(&c, &["environment", &env]).await;
    let ecs = ecs("eu-west-1").await;
    let arn = c.jsonpath(&["environment", &env], "{.status.clusterArn}");
    // A tag someone else put on the cluster is not shipshape's to remove.
    ecs.tag_resource(&arn, &[("CostCenter".to_string(), "42".to_string())].into()).await.unwrap();

    c.apply(&environment(&env, &cluster, "  tags: {Project: car-rental-v2}\n")).success();
    let tags = eventually(WAIT, "tags updated in AWS", || {
        let tags = futures::executor::block_on(ecs.describe_cluster(&cluster)).ok()??.tags;
        (tags.get("Project").map(String::as_str) == Some("car-rental-v2") && !tags.contains_key("Team")).then_some(tags)
    })
    .await;
    assert_eq!(tags.get("CostCenter").map(String::as_str), Some("42"));
    ready(&c, &["environment", &env]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stackspec_in_a_namespace_not_allowed_is_stalled_and_makes_no_aws_call() {
    let E2e { c, p, ctl: _ctl } = E2e::start().await;
    let (env, cluster) = (unique("env"), unique("cluster"));
    c.apply(&environment(&env, &cluster, "")).success();
    ready(&c, &["environment", &env]).await;
    // The StackSpec's calls would be S3's (the Environment's own reconciles read STS and ECS,
    // one more after its status write may still come).
    let s3_calls = || p.calls().iter().filter(|c| c.service == "s3").count();

    let ns = unique("team-b");
    c.apply(&format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n")).success();
    c.apply(&format!("apiVersion: shipshape.dev/v1alpha1\nkind: StackSpec\nmetadata: {{name: data, namespace: {ns}}}\nspec:\n  environment: {env}\n  buckets: [{{name: {ns}-uploads}}]\n")).success();
    let reason = eventually(WAIT, "StackSpec Stalled", || {
        let (s, r) = c.condition(&["stackspec", "data", "-n", &ns], "Stalled");
        (s == "True").then_some(r)
    })
    .await;
    assert_eq!(reason, "EnvironmentNotAllowed");
    let message = c.jsonpath(&["stack", "data", "-n", &ns], "{.status.conditions[?(@.type==\"Stalled\")].message}");
    assert!(message.contains("add it to spec.allowedNamespaces"), "{message}");
    let events = eventually(WAIT, "an EnvironmentNotAllowed event", || {
        let out = c.kubectl(&["get", "events", "-n", &ns]).stdout;
        out.contains("EnvironmentNotAllowed").then_some(out)
    })
    .await;
    assert!(events.contains("Warning") && events.contains("add it to spec.allowedNamespaces"), "{events}");
    // Give the controller time to misbehave, then count: not one AWS call for it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s3_calls(), 0, "{:?}", p.calls());

    // Allowing the namespace on the Environment re-reconciles the StackSpec by itself.
    let patch = format!(r#"{{"spec":{{"allowedNamespaces":["car-rental","{ns}"]}}}}"#);
    c.kubectl(&["patch", "environment", &env, "--type", "merge", "-p", &patch]).success();
    let reason = eventually(WAIT, "StackSpec no longer Stalled", || {
        let (s, r) = c.condition(&["stackspec", "data", "-n", &ns], "Stalled");
        (s == "False").then_some(r)
    })
    .await;
    assert_eq!(reason, "NotStalled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_whose_environment_is_gone_can_still_be_deleted() {
    let E2e { c, p: _p, ctl: _ctl } = E2e::start().await;
    let ns = unique("team");
    c.apply(&format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n")).success();
    c.apply(&format!(
        "apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: api, namespace: {ns}}}\nspec:\n  environment: {}\n  image: {{repository: r, gitSha: 3f9c2a1d}}\n  task: {{cpu: 256, memory: 512}}\n",
        unique("nowhere")
    ))
    .success();
    let reason = eventually(WAIT, "release Stalled", || {
        let (s, r) = c.condition(&["release", "api", "-n", &ns], "Stalled");
        (s == "True").then_some(r)
    })
    .await;
    assert_eq!(reason, "EnvironmentNotFound");
    let finalizers = c.jsonpath(&["release", "api", "-n", &ns], "{.metadata.finalizers}");
    assert_eq!(finalizers, r#"["servicereleases.shipshape.dev/cleanup"]"#);
    c.kubectl(&["delete", "release", "api", "-n", &ns, "--wait=true", "--timeout=30s"]).success();
    assert!(c.kubectl(&["get", "release", "api", "-n", &ns]).stderr.contains("NotFound"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_environment_with_retain_removes_the_object_and_keeps_the_cluster() {
    let E2e { c, p: _p, ctl: _ctl } = E2e::start().await;
    let (env, cluster) = (unique("env"), unique("cluster"));
    c.apply(&environment(&env, &cluster, "")).success();
    ready(&c, &["environment", &env]).await;
    c.kubectl(&["delete", "environment", &env, "--wait=true", "--timeout=30s"]).success();
    assert!(c.kubectl(&["get", "environment", &env]).stderr.contains("NotFound"));
    let observed = ecs("eu-west-1").await.describe_cluster(&cluster).await.unwrap().unwrap();
    assert_eq!(observed.status, "ACTIVE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_environment_with_delete_policy_deletes_the_cluster_it_created() {
    let E2e { c, p: _p, ctl: _ctl } = E2e::start().await;
    let (env, cluster) = (unique("env"), unique("cluster"));
    c.apply(&environment(&env, &cluster, "  deletionPolicy: Delete\n")).success();
    ready(&c, &["environment", &env]).await;
    c.kubectl(&["delete", "environment", &env, "--wait=true", "--timeout=30s"]).success();
    let observed = ecs("eu-west-1").await.describe_cluster(&cluster).await.unwrap();
    assert!(observed.as_ref().is_none_or(|o| o.status == "INACTIVE"), "{observed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_account_or_a_missing_cluster_to_adopt_is_stalled_without_writes() {
    let E2e { c, p: _p, ctl } = E2e::start().await;
    let (wrong, missing) = (unique("env"), unique("env"));
    let cluster = unique("cluster");
    c.apply(&environment(&wrong, &cluster, "  accountId: \"999999999999\"\n")).success();
    c.apply(&format!(
        "apiVersion: shipshape.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {missing}}}\nspec:\n  region: eu-west-1\n  ecsCluster: {{name: {}, create: false}}\n",
        unique("nope")
    ))
    .success();
    for (name, reason) in [(&wrong, "AccountMismatch"), (&missing, "ClusterNotFound")] {
        let got = eventually(WAIT, "Stalled", || {
            let (s, r) = c.condition(&["env", name], "Stalled");
            (s == "True").then_some(r)
        })
        .await;
        assert_eq!(got, reason);
    }
    assert!(ecs("eu-west-1").await.describe_cluster(&cluster).await.unwrap().is_none());
    let writes = ["CreateCluster", "TagResource", "UntagResource", "DeleteCluster"]
        .iter()
        .map(|op| ctl.metric("shipshape_aws_requests_total", &[op]))
        .sum::<f64>();
    assert_eq!(writes, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_midway_and_restarted_creates_no_duplicates() {
    let c = Cluster::start().await;
    // Every AWS request through the proxy: checked against AWS's API model and the IAM policy.
    let p = proxy().await;
    let mut first = Controller::start_at(&c, &p.url(), &[]);
    let names: Vec<(String, String)> = (0..4).map(|_| (unique("env"), unique("cluster"))).collect();
    for (env, cluster) in &names {
        c.apply(&environment(env, cluster, "")).success();
    }
    // Kill it while it is working through them.
    eventually(WAIT, "the first cluster created", || {
        (first.metric("shipshape_aws_requests_total", &["CreateCluster"]) >= 1.0).then_some(())
    })
    .await;
    first.kill();
    let second = Controller::start_at(&c, &p.url(), &[]);
    for (env, _) in &names {
        ready(&c, &["environment", env]).await;
    }
    let ecs = ecs("eu-west-1").await;
    for (env, cluster) in &names {
        let observed = ecs.describe_cluster(cluster).await.unwrap().unwrap();
        assert_eq!(c.jsonpath(&["environment", env], "{.status.clusterArn}"), observed.arn);
    }
    // Every environment's cluster was created at most once across both processes.
    let creates = second.metric("shipshape_aws_requests_total", &["CreateCluster"]);
    assert!(creates <= names.len() as f64);
    let finalizers = c.jsonpath(&["environment", &names[0].0], "{.metadata.finalizers}");
    assert_eq!(finalizers, r#"["environments.shipshape.dev/cleanup"]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over_when_it_dies() {
    let c = Cluster::start().await;
    // Every AWS request through the proxy: checked against AWS's API model and the IAM policy.
    let p = proxy().await;
    let mut a = Controller::start_at(&c, &p.url(), &[]);
    eventually(WAIT, "a leader", || (a.metric("shipshape_leader", &[]) == 1.0).then_some(())).await;
    let b = Controller::start_at(&c, &p.url(), &[]);
    let (env1, cl1) = (unique("env"), unique("cluster"));
    c.apply(&environment(&env1, &cl1, "")).success();
    ready(&c, &["environment", &env1]).await;
    assert_eq!(b.metric("shipshape_leader", &[]), 0.0);
    assert_eq!(b.metric("shipshape_reconcile_total", &[]), 0.0, "the standby must not reconcile");

    a.kill();
    let started = std::time::Instant::now();
    eventually(WAIT, "the standby to lead", || (b.metric("shipshape_leader", &[]) == 1.0).then_some(())).await;
    // The lease lasts 4s; the standby retries every 500ms: within a few lease durations,
    // however slow the machine's scrapes.
    assert!(started.elapsed() < Duration::from_secs(15), "takeover took {:?}", started.elapsed());
    let (env2, cl2) = (unique("env"), unique("cluster"));
    c.apply(&environment(&env2, &cl2, "")).success();
    ready(&c, &["environment", &env2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_work_and_releases_the_lease_for_an_immediate_takeover() {
    let c = Cluster::start().await;
    // Every AWS request through the proxy: checked against AWS's API model and the IAM policy.
    let p = proxy().await;
    let mut a = Controller::start_at(&c, &p.url(), &["--lease-duration", "60s"]);
    eventually(WAIT, "a leader", || (a.metric("shipshape_leader", &[]) == 1.0).then_some(())).await;
    let b = Controller::start_at(&c, &p.url(), &["--lease-duration", "60s"]);
    assert_eq!(a.terminate(), Some(0), "{}", a.logs());
    assert!(a.logs().contains("lease released"), "{}", a.logs());
    // Far sooner than the 60s lease would take to expire.
    eventually(Duration::from_secs(10), "the standby to lead", || (b.metric("shipshape_leader", &[]) == 1.0).then_some(())).await;
}
