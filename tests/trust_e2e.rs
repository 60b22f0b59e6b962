//! The controller as a hostile tenant and an unlucky operator meet it: the real binary as
//! the chart's ServiceAccount on the real control plane, AWS through moto and the test
//! proxy. A tenant cannot crash it, take over another team's service or move an
//! Environment; a rollback ECS refuses is never reported as done; a metrics outage holds a
//! rollout instead of rolling it back; a paused leader never acts after its lease.

mod support;

use std::time::Duration;

use shipshape_testkit::awsproxy::{AwsProxy, Fault};
use support::{eventually, health, proxy, unique, Cluster, Controller};

const WAIT: Duration = Duration::from_secs(40);

struct World {
    c: Cluster,
    p: AwsProxy,
    env: String,
    /// Namespaces allowed in the Environment.
    ns: Vec<String>,
}

/// An Environment with a Fargate network allowing `n` new namespaces.
async fn world(n: usize, env_extra: &str) -> World {
    let c = Cluster::start().await;
    let p = proxy().await;
    p.set_deployment_delay(Duration::from_millis(500));
    let env = unique("env");
    let ns: Vec<String> = (0..n).map(|_| unique("team")).collect();
    let names: Vec<&str> = ns.iter().map(String::as_str).collect();
    c.apply(&support::namespaces_and_environment(&env, &names, env_extra).await).success();
    World { c, p, env, ns }
}

impl World {
    fn release(&self, ns: &str, name: &str, sha: &str, extra: &str) -> String {
        format!(
            "apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  environment: {env}\n  image: {{repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/{name}, gitSha: {sha}}}\n  task: {{cpu: 256, memory: 512}}\n{extra}",
            env = self.env
        )
    }
    fn get(&self, ns: &str, name: &str, path: &str) -> String {
        self.c.jsonpath(&["release", name, "-n", ns], path)
    }
    async fn phase(&self, ns: &str, name: &str, want: &str) {
        eventually(WAIT, &format!("{ns}/{name} phase {want}"), || (self.get(ns, name, "{.status.phase}") == want).then_some(())).await;
    }
    async fn stalled(&self, ns: &str, name: &str) -> (String, String) {
        eventually(WAIT, &format!("{ns}/{name} Stalled"), || {
            let (s, r) = self.c.condition(&["release", name, "-n", ns], "Stalled");
            (s == "True").then(|| (r, self.get(ns, name, "{.status.conditions[?(@.type==\"Stalled\")].message}")))
        })
        .await
    }
    /// The ECS service as moto has it (task definition, tags).
    async fn service(&self, name: &str) -> Option<shipshape::core::rollout::ServiceObs> {
        let aws = support::aws("eu-west-1").await;
        aws.ecs.describe_services(&self.env, &[name.to_string()]).await.unwrap().into_iter().next().map(|(_, s)| s)
    }
}

/// Everything point 1–3 of the Trust issue says a tenant could do, tried against the real
/// binary: the absurd duration (refused by the API server: it never reaches the
/// controller), team-b releasing team-a's service name, adopting a service nobody owns
/// without asking, moving the Environment to another region. The controller keeps running
/// and team-a's service keeps its task definition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tenant_cannot_crash_the_controller_take_over_a_service_or_move_an_environment() {
    let w = world(2, "").await;
    let mut ctl = Controller::start_at(&w.c, &w.p.url(), &[]);
    let (a, b) = (w.ns[0].as_str(), w.ns[1].as_str());
    w.c.apply(&w.release(a, "api", "aaaa111", "")).success();
    w.phase(a, "api", "Healthy").await;
    let team_a_td = w.service("api").await.expect("team-a's service").task_definition;

    // 1. The duration that used to panic the process, and one just out of range.
    let out = w.c.apply(&w.release(b, "worker", "bbbb222", "  driftInterval: 99999999999999999999h\n"));
    assert_ne!(out.code, 0, "the API server refuses it");
    assert!(out.stderr.contains("spec.driftInterval") && out.stderr.contains("16"), "maxLength 16: {}", out.stderr);
    let out = w.c.apply(&w.release(b, "worker", "bbbb222", "  rollout: {progressDeadline: 25h}\n"));
    assert!(out.code != 0 && out.stderr.contains("progressDeadline must be between 1s and 24h"), "{}", out.stderr);

    // 2. team-b's release of the same service name: Conflict naming the owner, no ECS write.
    let registered = w.p.count("RegisterTaskDefinition");
    w.c.apply(&w.release(b, "api", "bbbb222", "")).success();
    let (reason, message) = w.stalled(b, "api").await;
    assert_eq!(reason, "Conflict");
    assert!(message.contains(&format!("belongs to {a}/api")), "{message}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(w.p.count("RegisterTaskDefinition"), registered, "not even a task definition in team-a's family");
    assert_eq!(w.service("api").await.unwrap().task_definition, team_a_td, "team-a's service is untouched");
    let (reason, _) = w.stalled(b, "api").await;
    assert_eq!(reason, "Conflict", "and stays so");
    let events = w.c.kubectl(&["get", "events", "-n", b]).stdout;
    assert!(events.contains("Conflict"), "{events}");

    // 3. A service that exists but that shipshape never created: untouched until adopted.
    let aws = support::aws("eu-west-1").await;
    let by_hand = shipshape::core::taskdef::TaskDefinitionSpec {
        family: "legacy".into(),
        image: "nginx:1".into(),
        cpu: 256,
        memory: 512,
        port: None,
        command: vec![],
        env: Default::default(),
        secrets: vec![],
        execution_role_arn: None,
        task_role_arn: None,
        health_check: None,
        log_group: None,
        log_region: None,
    };
    let legacy_td = aws.ecs.register_task_definition(&by_hand, "by-hand", &Default::default()).await.unwrap();
    let (subnet, sg) = support::network().await;
    aws.ecs
        .create_service(&shipshape::aws::ServiceRequest {
            subnets: vec![subnet],
            security_groups: vec![sg],
            ..shipshape_testkit::fakes::service_request(&w.env, "legacy", &legacy_td)
        })
        .await
        .unwrap();
    w.c.apply(&w.release(a, "legacy", "cccc333", "")).success();
    let (reason, message) = w.stalled(a, "legacy").await;
    assert_eq!(reason, "Conflict");
    assert!(message.contains("not managed by shipshape") && message.contains("shipshape.dev/adopt"), "{message}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.service("legacy").await.unwrap().task_definition, legacy_td, "untouched until adopted");
    w.c.kubectl(&["annotate", "release", "legacy", "-n", a, "shipshape.dev/adopt=true"]).success();
    // The annotation alone is not enough: IAM lets shipshape put its ownership tags on an
    // ECS service only at creation, so the adoption is AccessDenied, named in the status...
    let (reason, message) = eventually(WAIT, "adoption refused by IAM", || {
        let (s, r) = w.c.condition(&["release", "legacy", "-n", a], "Stalled");
        let m = w.get(a, "legacy", "{.status.conditions[?(@.type==\"Stalled\")].message}");
        (s == "True" && r == "AccessDenied").then_some((r, m))
    })
    .await;
    assert!(message.contains("TagResource"), "{reason}: {message}");
    let refused = w.p.take_violations();
    assert!(!refused.is_empty() && refused.iter().all(|v| v.denied && v.reason.starts_with("ecs:TagResource")), "{refused:?}");
    // ...until the platform team attaches the adoption policy for this service
    // (`shipshape iam-policy --adopt ARN`), and the release is looked at again.
    let arn = w.service("legacy").await.unwrap().arn;
    w.p.attach_policy("adopt-legacy", shipshape::iam::adoption_policy(&[arn]));
    w.c.kubectl(&["annotate", "release", "legacy", "-n", a, "e2e.shipshape.dev/nudge=1"]).success();
    w.phase(a, "legacy", "Healthy").await;
    let adopted = w.service("legacy").await.unwrap();
    assert_ne!(adopted.task_definition, legacy_td, "managed now: rolled to the release's task definition");
    assert_eq!(adopted.tags.get("shipshape.dev/owner"), Some(&format!("{a}/legacy")));

    // Identity: the Environment cannot move to another region or cluster.
    let out = w.c.kubectl(&["patch", "environment", &w.env, "--type", "merge", "-p", r#"{"spec":{"region":"us-east-1"}}"#]);
    assert!(out.code != 0 && out.stderr.contains("region is immutable"), "{}", out.stderr);
    let out = w.c.kubectl(&["patch", "release", "api", "-n", a, "--type", "merge", "-p", r#"{"spec":{"service":"api-2"}}"#]);
    assert!(out.code != 0 && out.stderr.contains("service and the kind of target (task or function) are immutable"), "{}", out.stderr);

    assert!(ctl.running(), "the controller never exited: {}", ctl.logs());
    assert_eq!(ctl.metric("shipshape_leader", &[]), 1.0);
}

/// The stable task definition was deregistered and ECS at first refuses the rollback: the
/// status says RollingBack / RollbackFailed (the bad SHA may be serving) until ECS accepts
/// the rollback to a re-registered copy of the stable task definition, never RolledBack
/// before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_is_reported_only_once_ecs_accepts_it_even_to_a_deregistered_task_definition() {
    use futures::StreamExt;
    use kube::runtime::{watcher, WatchStreamExt};
    let w = world(1, "").await;
    let ctl = Controller::start_at(&w.c, &w.p.url(), &[]);
    let ns = w.ns[0].clone();
    w.c.apply(&w.release(&ns, "api", "aaaa111", "")).success();
    w.phase(&ns, "api", "Healthy").await;
    let stable_td = w.get(&ns, "api", "{.status.stableTaskDefinitionArn}");
    support::moto_ecs("DeregisterTaskDefinition", serde_json::json!({"taskDefinition": stable_td})).await;

    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let api: kube::Api<shipshape::api::ServiceRelease> = kube::Api::namespaced(w.c.client().await, &ns);
    let sink = seen.clone();
    let watch = tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default()).applied_objects().boxed();
        while let Some(Ok(r)) = stream.next().await {
            let st = r.status.unwrap_or_default();
            let phase = serde_json::to_value(st.phase).unwrap().as_str().unwrap_or_default().to_string();
            let stalled = st.conditions.iter().find(|c| c.type_ == "Stalled" && c.status == "True").map(|c| c.reason.clone());
            sink.lock().unwrap().push((phase, stalled.unwrap_or_default()));
        }
    });
    w.p.fail_next_deployment("api", 3);
    w.c.apply(&w.release(&ns, "api", "bbbb222", "")).success();
    // The forward UpdateService goes through; the next two (the rollback) are refused.
    let forward = w.p.count("UpdateService");
    eventually(WAIT, "the forward update", || (w.p.count("UpdateService") > forward).then_some(())).await;
    w.p.inject("UpdateService", Fault::AccessDenied, 2);
    w.phase(&ns, "api", "RolledBack").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    watch.abort();

    let rolled_back_to = w.get(&ns, "api", "{.status.stableTaskDefinitionArn}");
    assert_ne!(rolled_back_to, stable_td, "the deregistered revision was registered again");
    assert_eq!(w.service("api").await.unwrap().task_definition, rolled_back_to);
    assert_eq!(w.get(&ns, "api", "{.status.currentSha}"), "aaaa111");
    let seen = seen.lock().unwrap().clone();
    let refused = seen.iter().rposition(|(p, r)| p == "RollingBack" && r == "RollbackFailed").expect("RollbackFailed was reported");
    let done = seen.iter().position(|(p, _)| p == "RolledBack").expect("RolledBack at the end");
    assert!(refused < done, "never RolledBack before ECS accepted it: {seen:?}");
    assert!(ctl.metric("shipshape_rollback_failures_total", &[]) >= 2.0);
    let calls: Vec<_> = w.p.calls().into_iter().filter(|c| c.operation == "UpdateService").skip(forward + 1).collect();
    assert_eq!(calls.iter().filter(|c| c.faulted).count(), 2);
    // A rollback goes to the stable revision first; ECS refuses it (INACTIVE, modelled by the
    // proxy), and the one accepted rollback points at the re-registered copy.
    let accepted: Vec<_> = calls.iter().filter(|c| !c.faulted && c.task_definition.as_deref() != Some(stable_td.as_str())).collect();
    assert_eq!(accepted.len(), 1, "one accepted rollback: {calls:?}");
    assert_eq!(accepted[0].task_definition.as_deref(), Some(rolled_back_to.as_str()));
}

const ERROR_RATE: &str =
    r#"sum(rate(http_requests_total{service="{{service}}",code=~"5.."}[5s])) / sum(rate(http_requests_total{service="{{service}}"}[5s]))"#;

/// Prometheus goes down mid-analysis: no rollback (even past the progress deadline), the
/// release says AnalysisUnavailable with the cause; back up, the rollout continues and is
/// promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_outage_holds_the_rollout_without_a_rollback_and_it_continues_when_prometheus_is_back() {
    let h = health();
    let mut prom = support::OwnPrometheus::start();
    let w = world(1, &format!("  health: {{prometheus: {{url: \"{}\"}}}}\n", prom.url)).await;
    let ctl = Controller::start_at(&w.c, &w.p.url(), &[]);
    let ns = w.ns[0].clone();
    let svc = unique("api");
    h.set_error_rate(&svc, 0.0);
    // v2 warms up long enough for Prometheus to be stopped before its first round.
    let analysis = |deadline: &str, warmup: &str| {
        format!(
            "  rollout:\n    progressDeadline: {deadline}\n    analysis:\n      warmup: {warmup}\n      interval: 2s\n      successfulRuns: 2\n      failureLimit: 0\n      queries:\n        - name: error-rate\n          prometheus: '{ERROR_RATE}'\n          max: 0.05\n"
        )
    };
    w.c.apply(&w.release(&ns, &svc, "aaaa111", &analysis("2m", "2s"))).success();
    eventually(Duration::from_secs(60), "v1 Healthy", || (w.get(&ns, &svc, "{.status.phase}") == "Healthy").then_some(())).await;
    w.c.apply(&w.release(&ns, &svc, "bbbb222", &analysis("30s", "10s"))).success();
    w.phase(&ns, &svc, "Analyzing").await;
    prom.stop();
    let (reason, message) = w.stalled(&ns, &svc).await;
    assert_eq!(reason, "AnalysisUnavailable");
    assert!(message.contains("cannot reach Prometheus") && message.contains("holds"), "{message}");
    // Well past the 30 s progress deadline: still held, nothing rolled back.
    tokio::time::sleep(Duration::from_secs(32)).await;
    assert_eq!(w.get(&ns, &svc, "{.status.phase}"), "Analyzing");
    assert_eq!(ctl.metric("shipshape_rollbacks_total", &[]), 0.0);
    assert_eq!(w.get(&ns, &svc, "{.status.currentSha}"), "bbbb222");
    prom.resume();
    eventually(Duration::from_secs(60), "v2 promoted once Prometheus answers", || {
        (w.get(&ns, &svc, "{.status.stableSha}") == "bbbb222").then_some(())
    })
    .await;
    assert_eq!(ctl.metric("shipshape_rollbacks_total", &[]), 0.0);
    assert_eq!(w.get(&ns, &svc, "{.status.history[0].outcome}"), "Promoted");
}

/// Two replicas; the leader is paused (SIGSTOP) mid-rollout, past its lease. The standby
/// takes over and rolls the failed deployment back once. The old leader, resumed, makes no
/// AWS write (its leadership lapsed), cancels what it was doing and exits: exactly one
/// rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_never_acts_after_its_lease_and_the_rollback_happens_exactly_once() {
    let w = world(1, "").await;
    let ns = w.ns[0].clone();
    let mut a = Controller::start_as(&w.c, &w.p.url(), &[], "replica-a");
    eventually(WAIT, "a leads", || (a.metric("shipshape_leader", &[]) == 1.0).then_some(())).await;
    let b = Controller::start_as(&w.c, &w.p.url(), &[], "replica-b");
    w.c.apply(&w.release(&ns, "api", "aaaa111", "")).success();
    w.phase(&ns, "api", "Healthy").await;
    let stable_td = w.get(&ns, "api", "{.status.stableTaskDefinitionArn}");

    // v2's deployment will fail, 8 s after it starts: long enough to pause the leader first.
    w.p.set_deployment_delay(Duration::from_secs(8));
    w.p.fail_next_deployment("api", 3);
    let before = w.p.calls().len();
    w.c.apply(&w.release(&ns, "api", "bbbb222", "")).success();
    w.phase(&ns, "api", "Progressing").await;
    eventually(WAIT, "a's forward update", || {
        w.p.calls().iter().skip(before).any(|c| c.operation == "UpdateService" && c.access_key == "replica-a").then_some(())
    })
    .await;
    // The leader's next read of the service hangs in AWS (10 s), and the leader is paused
    // while it waits: when it resumes, that reconcile goes on with a decision made on a
    // world that has moved (the standby rolled back meanwhile). Without fencing it would
    // point the service at bbbb222 again.
    w.p.inject("DescribeServices", Fault::DelayMs(10_000), 1);
    let describes = w.p.count("DescribeServices");
    eventually(WAIT, "a's delayed read", || (w.p.count("DescribeServices") > describes).then_some(())).await;
    a.signal("STOP");
    eventually(Duration::from_secs(30), "b takes over", || (b.metric("shipshape_leader", &[]) == 1.0).then_some(())).await;
    w.phase(&ns, "api", "RolledBack").await;
    // Past the delayed answer: it waits in a's socket.
    tokio::time::sleep(Duration::from_secs(4)).await;
    a.signal("CONT");
    let code = a.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(1), "the deposed leader exits (lost leadership): {}", a.logs());
    assert!(a.logs().contains("leadership lost") || a.logs().contains("stopping"), "{}", a.logs());
    tokio::time::sleep(Duration::from_secs(3)).await;

    let writes: Vec<_> = w.p.calls().into_iter().skip(before).filter(|c| c.operation == "UpdateService").collect();
    let by = |key: &str| writes.iter().filter(|c| c.access_key == key).count();
    assert_eq!(by("replica-a"), 1, "a's only write is its forward update, before the pause: {writes:?}");
    let rollbacks: Vec<_> = writes.iter().filter(|c| c.task_definition.as_deref() == Some(stable_td.as_str())).collect();
    assert_eq!(rollbacks.len(), 1, "exactly one rollback: {writes:?}");
    assert_eq!(rollbacks[0].access_key, "replica-b");
    assert_eq!(w.get(&ns, "api", "{.status.history[*].outcome}"), "RolledBack Promoted");
    assert_eq!(w.service("api").await.unwrap().task_definition, stable_td);
}

/// A deleting Environment waits (finalizer kept, a condition naming them) for the
/// StackSpecs and ServiceReleases that use it, and starts no rollout meanwhile; once they
/// are gone, it goes. A deleted release's metric series go with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_environment_waits_for_what_runs_in_it_and_a_deleted_release_leaves_no_metrics() {
    let w = world(1, "").await;
    let ctl = Controller::start_at(&w.c, &w.p.url(), &[]);
    let ns = w.ns[0].clone();
    let bucket = unique("env-delete");
    w.c.apply(&format!(
        "apiVersion: shipshape.dev/v1alpha1\nkind: StackSpec\nmetadata: {{name: data, namespace: {ns}}}\nspec:\n  environment: {}\n  buckets: [{{name: {bucket}}}]\n",
        w.env
    ))
    .success();
    w.c.apply(&w.release(&ns, "api", "aaaa111", "")).success();
    w.phase(&ns, "api", "Healthy").await;
    assert!(ctl.scrape().unwrap().contains(&format!("shipshape_release_phase{{name=\"api\",namespace=\"{ns}\",phase=\"Healthy\"}} 1")));

    w.c.kubectl(&["delete", "environment", &w.env, "--wait=false"]).success();
    let message = eventually(WAIT, "WaitingForDependents", || {
        let (s, r) = w.c.condition(&["environment", &w.env], "Reconciling");
        (s == "True" && r == "WaitingForDependents")
            .then(|| w.c.jsonpath(&["environment", &w.env], "{.status.conditions[?(@.type==\"Reconciling\")].message}"))
    })
    .await;
    assert!(message.contains(&format!("StackSpec {ns}/data")) && message.contains(&format!("ServiceRelease {ns}/api")), "{message}");
    // No new rollout while the Environment is being deleted.
    let updates = w.p.count("UpdateService");
    w.c.apply(&w.release(&ns, "api", "bbbb222", "")).success();
    w.phase(&ns, "api", "Paused").await;
    assert_eq!(w.p.count("UpdateService"), updates, "no service update");
    assert_eq!(w.service("api").await.unwrap().task_definition, w.get(&ns, "api", "{.status.stableTaskDefinitionArn}"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(w.c.kubectl(&["get", "environment", &w.env]).code == 0, "still there: its dependents remain");

    w.c.kubectl(&["delete", "release", "api", "-n", &ns, "--timeout=40s"]).success();
    w.c.kubectl(&["delete", "stackspec", "data", "-n", &ns, "--timeout=40s"]).success();
    eventually(WAIT, "the Environment gone", || w.c.kubectl(&["get", "environment", &w.env]).stderr.contains("NotFound").then_some(()))
        .await;
    let metrics = ctl.scrape().unwrap();
    assert!(!metrics.contains(&format!("namespace=\"{ns}\"")), "no series left for the deleted release: {metrics}");
}

/// A release naming a StackSpec whose outputs ConfigMap is missing (deleted by hand, not
/// written yet) waits for it, instead of rolling out a task definition without the
/// database and bucket variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_waits_for_missing_stack_outputs_instead_of_rolling_out_without_them() {
    let w = world(1, "").await;
    let _ctl = Controller::start_at(&w.c, &w.p.url(), &[]);
    let ns = w.ns[0].clone();
    let bucket = unique("outputs");
    w.c.apply(&format!(
        "apiVersion: shipshape.dev/v1alpha1\nkind: StackSpec\nmetadata: {{name: data, namespace: {ns}}}\nspec:\n  environment: {}\n  outputs: data-out\n  driftInterval: 1h\n  buckets: [{{name: {bucket}}}]\n",
        w.env
    ))
    .success();
    w.c.apply(&w.release(&ns, "api", "aaaa111", "  stack: data\n")).success();
    w.phase(&ns, "api", "Healthy").await;
    w.c.kubectl(&["delete", "configmap", "data-out", "-n", &ns]).success();
    let registered = w.p.count("RegisterTaskDefinition");
    w.c.apply(&w.release(&ns, "api", "bbbb222", "  stack: data\n")).success();
    let message = eventually(WAIT, "WaitingForStack", || {
        let (s, r) = w.c.condition(&["release", "api", "-n", &ns], "Reconciling");
        (s == "True" && r == "WaitingForStack").then(|| w.get(&ns, "api", "{.status.conditions[?(@.type==\"Reconciling\")].message}"))
    })
    .await;
    assert!(message.contains("data-out") && message.contains("does not exist"), "{message}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(w.p.count("RegisterTaskDefinition"), registered, "nothing rolled out without the outputs");
    assert_eq!(w.get(&ns, "api", "{.status.stableSha}"), "aaaa111");
    // The StackSpec writes them again (any change wakes it): the rollout goes on, with them.
    w.c.kubectl(&["annotate", "stackspec", "data", "-n", &ns, "touch=1"]).success();
    eventually(WAIT, "v2 promoted", || (w.get(&ns, "api", "{.status.stableSha}") == "bbbb222").then_some(())).await;
    let td = w.get(&ns, "api", "{.status.stableTaskDefinitionArn}");
    let described = support::moto_ecs("DescribeTaskDefinition", serde_json::json!({"taskDefinition": td})).await;
    let env = described["taskDefinition"]["containerDefinitions"][0]["environment"].to_string();
    assert!(env.contains(&bucket), "{env}");
}

/// What the Environment says reaches a running service: a tag added to the Environment is
/// put on the service, a new security group goes out with the next UpdateService, and the
/// awslogs driver names the region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_edits_reach_the_running_service_and_logs_name_their_region() {
    let w = world(1, "").await;
    let _ctl = Controller::start_at(&w.c, &w.p.url(), &[]);
    let ns = w.ns[0].clone();
    w.c.apply(&w.release(&ns, "api", "aaaa111", "  driftInterval: 2s\n").replace("memory: 512}", "memory: 512, logGroup: /ecs/api}"))
        .success();
    w.phase(&ns, "api", "Healthy").await;
    let td = w.get(&ns, "api", "{.status.stableTaskDefinitionArn}");
    let described = support::moto_ecs("DescribeTaskDefinition", serde_json::json!({"taskDefinition": td})).await;
    let logs = &described["taskDefinition"]["containerDefinitions"][0]["logConfiguration"]["options"];
    assert_eq!(logs["awslogs-region"], "eu-west-1", "{logs}");
    assert_eq!(logs["awslogs-group"], "/ecs/api");

    let (subnet, sg2) = support::network().await;
    let patch = format!(r#"{{"spec":{{"tags":{{"Team":"payments"}},"network":{{"subnets":["{subnet}"],"securityGroups":["{sg2}"]}}}}}}"#);
    w.c.kubectl(&["patch", "environment", &w.env, "--type", "merge", "-p", &patch]).success();
    let updates = w.p.calls().len();
    eventually(WAIT, "the service tagged and moved", || {
        let svc = futures::executor::block_on(w.service("api"))?;
        let network = svc.network?;
        (svc.tags.get("Team").map(String::as_str) == Some("payments") && network.security_groups == vec![sg2.clone()]).then_some(())
    })
    .await;
    let update = w.p.calls().into_iter().skip(updates).find(|c| c.operation == "UpdateService").expect("an UpdateService");
    assert_eq!(update.task_definition.as_deref(), Some(td.as_str()), "same task definition, new placement");
}
