//! End to end for ServiceRelease: the real controller binary, the test API server, moto
//! behind the AWS test proxy (which overlays ECS deployment dynamics), driven with kubectl.

mod support;

use std::time::Duration;

use support::{aws_at, eventually, health, moto_ecs, proxy, unique, Cluster, Controller};

const WAIT: Duration = Duration::from_secs(40);

struct Setup {
    c: Cluster,
    p: support_proxy::Proxy,
    ctl: Controller,
    env: String,
    ns: String,
    svc: String,
}

mod support_proxy {
    pub type Proxy = shipshape_testkit::awsproxy::AwsProxy;
}

async fn setup(env_extra: &str) -> Setup {
    let c = Cluster::start().await;
    let p = proxy().await;
    p.set_deployment_delay(Duration::from_millis(500));
    let ctl = Controller::start_at(&c, &p.url(), &[]);
    let (env, ns, svc) = (unique("env"), unique("team"), unique("api"));
    let (subnet, sg) = support::network().await;
    c.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: shipshape.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  region: eu-west-1\n  ecsCluster: {{name: {env}, create: true, capacityProviders: [FARGATE]}}\n  network: {{subnets: [{subnet}], securityGroups: [{sg}]}}\n  allowedNamespaces: [{ns}]\n{env_extra}"
    ))
    .success();
    Setup { c, p, ctl, env, ns, svc }
}

impl Setup {
    fn release(&self, sha: &str, extra: &str) -> String {
        format!(
            "apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: {svc}, namespace: {ns}}}\nspec:\n  environment: {env}\n  image: {{repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/api, gitSha: {sha}}}\n  task: {{cpu: 256, memory: 512, port: 3000, env: {{NODE_ENV: production}}}}\n  replicas: 2\n{extra}",
            svc = self.svc,
            ns = self.ns,
            env = self.env
        )
    }
    fn get(&self, path: &str) -> String {
        self.c.jsonpath(&["release", &self.svc, "-n", &self.ns], path)
    }
    async fn phase(&self, want: &str) {
        eventually(WAIT, &format!("phase {want}"), || (self.get("{.status.phase}") == want).then_some(())).await;
    }
    async fn service_task_definition(&self) -> String {
        let mine = proxy().await;
        let aws = aws_at(&mine.url(), "eu-west-1").await;
        let s = aws.ecs.describe_services(&self.env, std::slice::from_ref(&self.svc)).await.unwrap();
        s.first().map(|(_, s)| s.task_definition.clone()).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_and_a_second_healthy_release_are_promoted_in_turn() {
    let s = setup("").await;
    s.c.apply(&s.release("aaaa111", "")).success();
    s.phase("Healthy").await;
    assert_eq!(s.get("{.status.stableSha}"), "aaaa111");
    let v1 = s.get("{.status.stableTaskDefinitionArn}");
    assert_eq!(s.service_task_definition().await, v1);
    assert_eq!(s.c.condition(&["release", &s.svc, "-n", &s.ns], "Ready").0, "True");

    s.c.apply(&s.release("bbbb222", "")).success();
    eventually(WAIT, "v2 stable", || (s.get("{.status.stableSha}") == "bbbb222").then_some(())).await;
    assert_eq!(s.get("{.status.history[*].sha}"), "bbbb222 aaaa111");
    assert_eq!(s.get("{.status.history[*].outcome}"), "Promoted Promoted");
    assert_ne!(s.get("{.status.stableTaskDefinitionArn}"), v1);
    assert_eq!(s.p.count("RegisterTaskDefinition"), 2, "one registration per spec");
    let get = s.c.kubectl(&["get", "release", "-n", &s.ns]).success().stdout;
    assert!(get.contains("Healthy") && get.contains("bbbb222"), "{get}");
    assert!(s.ctl.metric("shipshape_rollouts_total", &["Promoted"]) >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_ecs_deployment_rolls_back_to_the_stable_task_definition_and_waits_for_retry() {
    let s = setup("").await;
    s.c.apply(&s.release("aaaa111", "")).success();
    s.phase("Healthy").await;
    let stable_td = s.get("{.status.stableTaskDefinitionArn}");
    s.p.fail_next_deployment(&s.svc, 3);
    s.c.apply(&s.release("cccc333", "")).success();
    s.phase("RolledBack").await;
    assert_eq!(s.service_task_definition().await, stable_td);
    assert_eq!(s.get("{.status.currentSha}"), "aaaa111");
    assert!(s.get("{.status.history[0].reason}").contains("FAILED"), "{}", s.get("{.status.history[0].reason}"));
    let (stalled, reason) = s.c.condition(&["release", &s.svc, "-n", &s.ns], "Stalled");
    assert_eq!((stalled.as_str(), reason.as_str()), ("True", "RolledBack"));
    assert_eq!(s.ctl.metric("shipshape_rollbacks_total", &["deployment_failed"]), 1.0);

    // Not retried on its own...
    let updates = s.p.count("UpdateService");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.p.count("UpdateService"), updates);
    // ...but on request.
    s.c.kubectl(&["annotate", "release", &s.svc, "-n", &s.ns, "shipshape.dev/retry=1"]).success();
    eventually(WAIT, "v3 promoted on retry", || (s.get("{.status.stableSha}") == "cccc333").then_some(())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_and_frozen_releases_start_nothing() {
    let s = setup("").await;
    s.c.apply(&s.release("aaaa111", "")).success();
    s.phase("Healthy").await;
    s.c.apply(&s.release("bbbb222", "  paused: true\n")).success();
    s.phase("Paused").await;
    s.c.kubectl(&["patch", "environment", &s.env, "--type", "merge", "-p", r#"{"spec":{"freeze":true}}"#]).success();
    s.c.environment_observed(&s.env).await;
    s.c.apply(&s.release("bbbb222", "")).success();
    eventually(WAIT, "held by the freeze", || {
        s.get("{.status.conditions[?(@.type==\"Stalled\")].message}").contains("frozen").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.get("{.status.phase}"), "Paused");
    assert_eq!(s.get("{.status.stableSha}"), "aaaa111");
    s.c.kubectl(&["patch", "environment", &s.env, "--type", "merge", "-p", r#"{"spec":{"freeze":false}}"#]).success();
    eventually(WAIT, "v2 after the freeze", || (s.get("{.status.stableSha}") == "bbbb222").then_some(())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_env_only_change_is_a_new_rollout_and_its_rollback_restores_the_old_env() {
    let s = setup("").await;
    s.c.apply(&s.release("aaaa111", "")).success();
    s.phase("Healthy").await;
    let v1 = s.get("{.status.stableTaskDefinitionArn}");
    s.p.fail_next_deployment(&s.svc, 2);
    let changed = s.release("aaaa111", "").replace("NODE_ENV: production", "NODE_ENV: production, FEATURE_X: \"on\"");
    s.c.apply(&changed).success();
    s.phase("RolledBack").await;
    assert_eq!(s.service_task_definition().await, v1, "image, env and size revert together");
    assert_eq!(s.p.count("RegisterTaskDefinition"), 2);
}

const ERROR_RATE: &str =
    r#"sum(rate(http_requests_total{service="{{service}}",code=~"5.."}[5s])) / sum(rate(http_requests_total{service="{{service}}"}[5s]))"#;

/// Analysis settings: warmup 2s, a round every 2s, 2 passing rounds to promote, 1 failure tolerated.
fn analysis(query: &str, deadline: &str) -> String {
    let q = query.replace('\'', "''");
    format!("  rollout:\n    progressDeadline: {deadline}\n    analysis:\n      warmup: 2s\n      interval: 2s\n      successfulRuns: 2\n      failureLimit: 1\n      queries:\n        - name: error-rate\n          prometheus: '{q}'\n          max: 0.05\n")
}

async fn setup_with_health() -> Setup {
    let h = health();
    setup(&format!("  health: {{prometheus: {{url: \"{}\"}}}}\n", h.prometheus)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_with_a_20_percent_error_rate_is_rolled_back_within_the_analysis_window() {
    let s = setup_with_health().await;
    let h = health();
    h.set_error_rate(&s.svc, 0.0);
    let a = analysis(ERROR_RATE, "2m");
    s.c.apply(&s.release("aaaa111", &a)).success();
    eventually(Duration::from_secs(60), "v1 Healthy", || (s.get("{.status.phase}") == "Healthy").then_some(())).await;
    s.c.apply(&s.release("bbbb222", &a)).success();
    eventually(WAIT, "v2 Healthy", || (s.get("{.status.stableSha}") == "bbbb222").then_some(())).await;
    let stable_td = s.get("{.status.stableTaskDefinitionArn}");

    // v3 serves 20% errors from the moment it is applied.
    h.set_error_rate(&s.svc, 0.2);
    s.c.apply(&s.release("cccc333", &a)).success();
    eventually(WAIT, "v3 analyzing", || (s.get("{.status.phase}") == "Analyzing").then_some(())).await;
    let analyzing = std::time::Instant::now();
    s.phase("RolledBack").await;
    // warmup 2s + (failureLimit+1) x interval 2s, plus slack: by the analysis, well before the
    // 2m progress deadline.
    assert!(analyzing.elapsed() < Duration::from_secs(6 + 14), "rolled back after {:?}", analyzing.elapsed());
    assert_eq!(s.service_task_definition().await, stable_td);
    let reason = s.get("{.status.history[0].reason}");
    assert!(reason.contains("error-rate") && reason.contains("above max 0.05"), "{reason}");
    let message = s.get("{.status.conditions[?(@.type==\"Stalled\")].message}");
    assert!(message.contains("error-rate"), "{message}");
    assert_eq!(s.get("{.status.history[*].outcome}"), "RolledBack Promoted Promoted");
    assert!(s.get("{.status.rollout}").is_empty());
    assert_eq!(s.ctl.metric("shipshape_rollbacks_total", &["analysis"]), 1.0);
    assert_eq!(s.ctl.metric("shipshape_rollback_seconds_count", &[]), 1.0);
    let events = s.c.kubectl(&["get", "events", "-n", &s.ns]).stdout;
    assert!(events.contains("RolledBack"), "{events}");

    // Fixed, retried by annotation: promoted.
    h.set_error_rate(&s.svc, 0.0);
    tokio::time::sleep(Duration::from_secs(6)).await;
    s.c.kubectl(&["annotate", "release", &s.svc, "-n", &s.ns, "shipshape.dev/retry=1"]).success();
    eventually(Duration::from_secs(60), "v3 promoted on retry", || (s.get("{.status.stableSha}") == "cccc333").then_some(())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_holds_the_rollout_and_fails_it_at_the_deadline() {
    let s = setup_with_health().await;
    s.c.apply(&s.release("aaaa111", "")).success();
    s.phase("Healthy").await;
    let missing = r#"sum(rate(no_such_metric_total{service="{{service}}"}[5s]))"#;
    s.c.apply(&s.release("bbbb222", &analysis(missing, "12s"))).success();
    s.phase("Analyzing").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(s.get("{.status.phase}"), "Analyzing", "no data holds");
    assert!(s.get("{.status.rollout.measurements[*].verdict}").contains("Inconclusive"));
    s.phase("RolledBack").await;
    assert!(s.get("{.status.history[0].reason}").contains("progressDeadline"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_promql_query_stalls_as_invalid_query_without_a_rollback() {
    let s = setup_with_health().await;
    s.c.apply(&s.release("aaaa111", "")).success();
    s.phase("Healthy").await;
    s.c.apply(&s.release("bbbb222", &analysis("sum(rate(http_requests_total[5s]", "8s"))).success();
    let reason = eventually(WAIT, "Stalled", || {
        let (st, r) = s.c.condition(&["release", &s.svc, "-n", &s.ns], "Stalled");
        (st == "True").then_some(r)
    })
    .await;
    assert_eq!(reason, "InvalidQuery");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(s.get("{.status.phase}"), "Analyzing", "past the deadline, still no rollback");
    assert_eq!(s.get("{.status.currentSha}"), "bbbb222");
    assert_eq!(s.ctl.metric("shipshape_rollbacks_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_while_analyzing_resumes_with_one_rollback_and_history_intact() {
    let mut s = setup_with_health().await;
    let h = health();
    h.set_error_rate(&s.svc, 0.0);
    s.c.apply(&s.release("aaaa111", "")).success();
    s.phase("Healthy").await;
    h.set_error_rate(&s.svc, 0.3);
    // Long warmup: the controller dies while Analyzing, before any round.
    let a = analysis(ERROR_RATE, "2m").replace("warmup: 2s", "warmup: 5s");
    s.c.apply(&s.release("bbbb222", &a)).success();
    s.phase("Analyzing").await;
    let updates_before = s.p.count("UpdateService");
    s.ctl.kill();
    s.ctl = Controller::start_at(&s.c, &s.p.url(), &[]);
    s.phase("RolledBack").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.p.count("UpdateService") - updates_before, 1, "exactly one rollback call");
    assert_eq!(s.get("{.status.history[*].outcome}"), "RolledBack Promoted");
}

fn shipshape(s: &Setup, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shipshape")).args(args).env("KUBECONFIG", &s.c.kubeconfig).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_commands_act_through_annotations_and_status_prints_a_table() {
    let s = setup_with_health().await;
    s.c.apply(&s.release("aaaa111", "")).success();
    s.phase("Healthy").await;
    // v2 with a long warmup: in flight when we act.
    let a = analysis(ERROR_RATE, "5m").replace("warmup: 2s", "warmup: 10m");
    s.c.apply(&s.release("bbbb222", &a)).success();
    s.phase("Analyzing").await;
    let (code, out) = tokio::task::spawn_blocking({
        let (kc, ns) = (s.c.kubeconfig.clone(), s.ns.clone());
        move || {
            let o = std::process::Command::new(env!("CARGO_BIN_EXE_shipshape"))
                .args(["status", "-n", &ns])
                .env("KUBECONFIG", &kc)
                .output()
                .unwrap();
            (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).to_string())
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    let header: Vec<&str> = out.lines().next().unwrap().split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, ["NAMESPACE", "NAME", "PHASE", "SHA", "STABLE", "TRAFFIC", "READY", "LAST MEASUREMENT", "AGE"]);
    assert!(out.contains("Analyzing") && out.contains("bbbb222") && out.contains("aaaa111"), "{out}");

    let (code, out) = shipshape(&s, &["rollback", &s.svc, "-n", &s.ns]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("rollback requested"), "{out}");
    s.phase("RolledBack").await;
    assert_eq!(s.get("{.status.currentSha}"), "aaaa111");
    assert!(s.get("{.metadata.annotations}").contains("shipshape.dev/rollback"));
    assert_eq!(s.get("{.spec.image.gitSha}"), "bbbb222", "the spec is the user's: only an annotation changed");

    let (code, out) = shipshape(&s, &["pause", &s.svc, "-n", &s.ns]);
    assert_eq!((code, out.contains("paused")), (0, true), "{out}");
    assert_eq!(s.get("{.metadata.annotations.shipshape\\.dev/paused}"), "true");
    let (code, _) = shipshape(&s, &["resume", &s.svc, "-n", &s.ns]);
    assert_eq!(code, 0);
    assert_eq!(s.get("{.metadata.annotations.shipshape\\.dev/paused}"), "");
    let (code, out) = shipshape(&s, &["retry", "no-such-release", "-n", &s.ns]);
    assert_ne!(code, 0);
    assert!(out.contains("no-such-release"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_while_rolling_back_calls_the_rollback_once_and_never_redeploys_the_bad_sha() {
    let mut s = setup_with_health().await;
    let h = health();
    h.set_error_rate(&s.svc, 0.0);
    s.c.apply(&s.release("aaaa111", "")).success();
    s.phase("Healthy").await;
    let stable_td = s.get("{.status.stableTaskDefinitionArn}");
    h.set_error_rate(&s.svc, 0.3);
    s.c.apply(&s.release("bbbb222", &analysis(ERROR_RATE, "2m"))).success();
    s.phase("Analyzing").await;
    let bad_td = s.get("{.status.taskDefinitionArn}");
    // The rollback's UpdateService hangs in the proxy; the controller dies while waiting.
    s.p.inject("UpdateService", shipshape_testkit::awsproxy::Fault::DelayMs(30_000), 1);
    let before = s.p.count("UpdateService");
    eventually(WAIT, "the rollback call", || (s.p.count("UpdateService") > before).then_some(())).await;
    s.ctl.kill();
    // The decision was persisted before the call; the status does not say RolledBack before
    // ECS accepted it.
    assert_eq!(s.get("{.status.phase}"), "RollingBack");
    assert_eq!(s.get("{.status.currentSha}"), "bbbb222", "the bad SHA may still be serving");
    s.ctl = Controller::start_at(&s.c, &s.p.url(), &[]);
    eventually(WAIT, "service back on stable", || {
        let td = futures::executor::block_on(s.service_task_definition());
        (td == stable_td).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after: Vec<_> = s.p.calls().into_iter().filter(|c| c.operation == "UpdateService").skip(before).collect();
    assert!(after.iter().all(|c| c.task_definition.as_deref() == Some(stable_td.as_str())), "never back to {bad_td}: {after:?}");
    assert_eq!(after.len(), 2, "the dropped call and its one re-issue: {after:?}");
    assert_eq!(s.get("{.status.history[*].outcome}"), "RolledBack Promoted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_changed_outside_shipshape_is_put_back_on_the_drift_interval() {
    let s = setup("").await;
    s.c.apply(&s.release("aaaa111", "  driftInterval: 2s\n")).success();
    s.phase("Healthy").await;
    let stable_td = s.get("{.status.stableTaskDefinitionArn}");
    let mine = proxy().await;
    let aws = aws_at(&mine.url(), "eu-west-1").await;
    // Someone scales it down and loosens the deployment settings by hand.
    let by_hand = shipshape::aws::ServiceRequest {
        maximum_percent: 150,
        minimum_healthy_percent: 50,
        ..shipshape_testkit::fakes::service_request(&s.env, &s.svc, &stable_td)
    };
    aws.ecs.update_service(&by_hand).await.unwrap();
    let before = s.p.count("UpdateService");
    eventually(WAIT, "service put back", || (s.p.count("UpdateService") > before).then_some(())).await;
    let put_back = s.p.calls().into_iter().rfind(|c| c.operation == "UpdateService").unwrap();
    assert_eq!(put_back.task_definition.as_deref(), Some(stable_td.as_str()));
    let events = eventually(WAIT, "a DriftCorrected event", || {
        let out = s.c.kubectl(&["get", "events", "-n", &s.ns]).stdout;
        out.contains("DriftCorrected").then_some(out)
    })
    .await;
    assert!(events.contains("with 2 tasks"), "{events}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(s.p.count("UpdateService"), before + 1, "put back once, then left alone");
}

/// kstatus, as Flux and cli-utils compute it for a custom resource, plus the stricter rule
/// Flux applies to its own kinds (Current needs Ready=True): InProgress while the status
/// speaks of an older generation or Reconciling=True, Failed when Stalled=True.
fn kstatus(obj: &serde_json::Value) -> &'static str {
    let cond = |t: &str| {
        obj["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == t)
            .map(|c| c["status"] == "True")
            .unwrap_or(false)
    };
    if obj["status"]["observedGeneration"] != obj["metadata"]["generation"] {
        "InProgress"
    } else if cond("Stalled") {
        "Failed"
    } else if cond("Reconciling") || !cond("Ready") {
        "InProgress"
    } else {
        "Current"
    }
}

/// GitOps tools read kstatus: every status a ServiceRelease goes through, watched as the API
/// server sends it, says InProgress while rolling out, Current when Healthy and Failed
/// (Stalled, with the reason) when rolled back, failed or paused — and never two of
/// Ready/Reconciling/Stalled at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_walks_through_every_phase_with_kstatus_conditions() {
    use futures::StreamExt;
    use kube::runtime::{watcher, WatchStreamExt};
    let s = setup_with_health().await;
    let h = health();
    h.set_error_rate(&s.svc, 0.0);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let api: kube::Api<shipshape::api::ServiceRelease> = kube::Api::namespaced(s.c.client().await, &s.ns);
    let sink = seen.clone();
    let watch = tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default()).applied_objects().boxed();
        while let Some(Ok(r)) = stream.next().await {
            sink.lock().unwrap().push(serde_json::to_value(&r).unwrap());
        }
    });
    let a = analysis(ERROR_RATE, "2m");
    s.c.apply(&s.release("aaaa111", &a)).success();
    eventually(Duration::from_secs(60), "v1 Healthy", || (s.get("{.status.phase}") == "Healthy").then_some(())).await;
    s.c.apply(&s.release("bbbb222", &format!("  paused: true\n{a}"))).success();
    s.phase("Paused").await;
    s.c.apply(&s.release("bbbb222", &a)).success();
    eventually(WAIT, "v2 Healthy", || (s.get("{.status.stableSha}") == "bbbb222").then_some(())).await;
    h.set_error_rate(&s.svc, 0.5);
    s.c.apply(&s.release("cccc333", &a)).success();
    s.phase("RolledBack").await;
    // A first release whose deployment fails has nothing to roll back to.
    let first = format!("{svc}-new", svc = s.svc);
    s.p.fail_next_deployment(&first, 2);
    s.c.apply(&s.release("dddd444", "").replace(&format!("name: {}", s.svc), &format!("name: {first}"))).success();
    eventually(WAIT, "Failed", || (s.c.jsonpath(&["release", &first, "-n", &s.ns], "{.status.phase}") == "Failed").then_some(())).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    watch.abort();

    let seen = seen.lock().unwrap().clone();
    let mut phases = std::collections::BTreeSet::new();
    for obj in seen.iter().filter(|o| !o["status"].is_null()) {
        // Just applied, before the controller's first status write: the schema's default
        // status (observedGeneration -1), which kstatus reads as InProgress.
        if obj["status"]["observedGeneration"] == -1 {
            assert_eq!(kstatus(obj), "InProgress");
            continue;
        }
        let phase = obj["status"]["phase"].as_str().unwrap_or_default().to_string();
        let trues: Vec<&str> = obj["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "True")
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(trues.len(), 1, "exactly one of Ready/Reconciling/Stalled is True: {phase} {trues:?}");
        for c in obj["status"]["conditions"].as_array().unwrap() {
            assert!(c["reason"].as_str().is_some_and(|r| !r.is_empty()) && c["lastTransitionTime"].is_string(), "{c}");
        }
        if obj["status"]["observedGeneration"] != obj["metadata"]["generation"] {
            continue; // InProgress whatever the conditions say: they are about an older spec.
        }
        let stalled = obj["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "Stalled" && c["status"] == "True");
        let want = match phase.as_str() {
            "Pending" | "Progressing" | "Analyzing" => "InProgress",
            // Reconciling while ECS has not accepted it; Stalled (RollbackFailed) while refused.
            "RollingBack" if stalled => "Failed",
            "RollingBack" => "InProgress",
            "Healthy" => "Current",
            "RolledBack" | "Failed" | "Paused" => "Failed",
            other => panic!("unknown phase {other}"),
        };
        assert_eq!(kstatus(obj), want, "{phase}: {}", obj["status"]["conditions"]);
        if want == "Failed" {
            let stalled = obj["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Stalled").unwrap();
            let reason = match phase.as_str() {
                "Failed" => "RolloutFailed",
                "RollingBack" => "RollbackFailed",
                p => p,
            };
            assert_eq!(stalled["reason"], reason, "{stalled}");
            assert!(!stalled["message"].as_str().unwrap_or_default().is_empty());
        }
        phases.insert(phase);
    }
    for p in ["Progressing", "Analyzing", "Healthy", "Paused", "RolledBack", "Failed"] {
        assert!(phases.contains(p), "never saw {p} with a current observedGeneration: {phases:?}");
    }

    // Argo CD's view through deploy/argocd/health.lua (run by Lua 5.1, as Argo CD's gopher-lua).
    let with_status: Vec<&serde_json::Value> = seen.iter().filter(|o| !o["status"].is_null()).collect();
    let argo = argocd_health(&with_status);
    for (obj, got) in with_status.iter().zip(&argo) {
        let want = match (kstatus(obj), obj["status"]["phase"].as_str()) {
            ("Failed", Some("Paused")) if obj["status"]["observedGeneration"] == obj["metadata"]["generation"] => "Suspended",
            ("Failed", _) => "Degraded",
            ("Current", _) => "Healthy",
            _ => "Progressing",
        };
        assert_eq!(got, want, "{}: {}", obj["status"]["phase"], obj["status"]["conditions"]);
    }
}

fn lua_literal(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!("{{{}}}", a.iter().map(lua_literal).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => {
            format!("{{{}}}", m.iter().map(|(k, v)| format!("[{k:?}] = {}", lua_literal(v))).collect::<Vec<_>>().join(", "))
        }
    }
}

/// The Argo CD health status of each object, from deploy/argocd/health.lua.
fn argocd_health(objs: &[&serde_json::Value]) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/argocd/health.lua");
    let mut prog = format!("local check = assert(loadfile({script:?}))\n");
    for o in objs {
        prog.push_str(&format!("obj = {}\nprint(check().status)\n", lua_literal(o)));
    }
    // A file, not `-e`: a real server's objects (managedFields and all) outgrow one argument.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &prog).unwrap();
    let out = std::process::Command::new("lua5.1").arg(file.path()).output().expect("lua5.1 runs (apt-get install lua5.1)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

/// The chart's RBAC (as rendered in deploy/base) as (group, resource, verb).
fn chart_rbac() -> std::collections::BTreeSet<(String, String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/base/shipshape.yaml")).unwrap();
    let mut out = std::collections::BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if v["kind"] != "ClusterRole" && v["kind"] != "Role" {
            continue;
        }
        for rule in v["rules"].as_array().unwrap() {
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        out.insert((g.as_str().unwrap().into(), r.as_str().unwrap().into(), verb.as_str().unwrap().into()));
                    }
                }
            }
        }
    }
    out
}

/// What the controller's identity asked the API server for, from kube-apiserver's own audit
/// log: (group, resource[/subresource], verb), whatever the answer (a refused request shows
/// up here and not in the rules). A server-side apply that created its object (201) was
/// authorized as `create` as well as `patch`: the real authorizer checks both.
fn requested(audit: &[serde_json::Value]) -> std::collections::BTreeSet<(String, String, String)> {
    let mut out = std::collections::BTreeSet::new();
    for e in audit.iter().filter(|e| e["user"]["username"] == support::CONTROLLER_USER) {
        let Some(obj) = e["objectRef"].as_object() else { continue }; // discovery and other non-resource URLs
        let group = obj.get("apiGroup").and_then(|g| g.as_str()).unwrap_or("").to_string();
        let mut resource = obj.get("resource").and_then(|r| r.as_str()).unwrap_or("").to_string();
        if let Some(sub) = obj.get("subresource").and_then(|s| s.as_str()) {
            resource = format!("{resource}/{sub}");
        }
        let verb = e["verb"].as_str().unwrap_or("").to_string();
        if verb == "patch" && e["responseStatus"]["code"] == 201 {
            out.insert((group.clone(), resource.clone(), "create".to_string()));
        }
        out.insert((group, resource, verb));
    }
    out
}

/// The Helm chart grants exactly what the controller needs: a full lifecycle (all three
/// kinds created, a stack's outputs written and read (a cache's AUTH token read from its
/// Secret), a rollout with the stack's variables,
/// a rollback, Events, the leader Lease, everything deleted) run as the chart's
/// ServiceAccount on the real API server succeeds; kube-apiserver's audit log shows every
/// request it made was within the rules, and every rule was used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_grants_exactly_the_requests_a_full_lifecycle_makes() {
    let s = setup("").await;
    let bucket = unique("rbac-assets");
    // A cache with an AUTH token: the controller reads its Secret (the one Secret rule),
    // where the team bound the chart's shipshape-secrets ClusterRole.
    let cache = unique("rbac-redis");
    s.c.allow_secrets(&s.ns);
    s.c.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: redis-auth, namespace: {ns}}}\nstringData: {{token: a-long-enough-auth-token}}\n---\napiVersion: shipshape.dev/v1alpha1\nkind: StackSpec\nmetadata: {{name: data, namespace: {ns}}}\nspec:\n  environment: {env}\n  outputs: data-out\n  buckets:\n    - {{name: {bucket}, deletionPolicy: Delete}}\n  caches:\n    - {{name: {cache}, engineVersion: \"7.0\", nodeType: cache.t4g.micro, authTokenSecretRef: {{name: redis-auth, key: token}}, deletionPolicy: Delete}}\n",
        ns = s.ns,
        env = s.env
    ))
    .success();
    s.c.apply(&s.release("aaaa111", "  stack: data\n")).success();
    s.phase("Healthy").await;
    // The outputs reached the task: the bucket's name is in the task definition's environment.
    let td = s.get("{.status.stableTaskDefinitionArn}");
    let described = support::moto_ecs("DescribeTaskDefinition", serde_json::json!({"taskDefinition": td})).await;
    let env = described["taskDefinition"]["containerDefinitions"][0]["environment"].to_string();
    let key = format!("{}_BUCKET", bucket.to_uppercase().replace('-', "_"));
    assert!(env.contains(&key) && env.contains(&bucket), "{td}: {env}");
    s.p.fail_next_deployment(&s.svc, 2);
    s.c.apply(&s.release("bbbb222", "  stack: data\n")).success();
    s.phase("RolledBack").await;
    for (kind, name) in [("release", s.svc.as_str()), ("stackspec", "data")] {
        s.c.kubectl(&["delete", kind, name, "-n", &s.ns, "--timeout=40s"]).success();
    }
    s.c.kubectl(&["delete", "environment", &s.env, "--timeout=40s"]).success();

    let Some(audit) = s.c.audit_log() else {
        // An existing cluster (SHIPSHAPE_E2E_KUBECONFIG): its audit log is not ours to read;
        // the lifecycle above ran under the chart's RBAC, which is what can be shown there.
        eprintln!("rbac: no audit log on an existing cluster; compared nothing");
        return;
    };
    let used = requested(&audit);
    assert!(used.len() > 5, "the audit log holds the controller's requests: {used:?}");
    let granted = chart_rbac();
    let denied: Vec<_> = used.difference(&granted).collect();
    assert!(denied.is_empty(), "requests the chart's RBAC does not grant: {denied:?}\n{}", s.ctl.logs());
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(unused.is_empty(), "rules no request needed (grant less): {unused:?}\nused: {used:?}");
}

/// deletionPolicy: Retain (the default) leaves the ECS service running; Delete scales it
/// to 0 and deletes it, its task definitions kept; a service that is not the release's
/// (its owner tag changed) is never deleted. Each says so in an Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_release_deletes_its_service_only_when_the_policy_asks_and_it_is_its_own() {
    let s = setup("").await;
    let mine = proxy().await;
    let aws = aws_at(&mine.url(), "eu-west-1").await;
    let described = |name: String| {
        let (aws, cluster) = (aws.clone(), s.env.clone());
        async move {
            let found = aws.ecs.describe_services(&cluster, std::slice::from_ref(&name)).await.unwrap();
            found.into_iter().find(|(n, _)| *n == name).map(|(_, svc)| svc)
        }
    };
    let events = |s: &Setup| {
        s.c.kubectl(&["get", "events", "-n", &s.ns, "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}"]).stdout
    };

    // Delete: scaled to 0, then deleted; the task definition stays ACTIVE.
    s.c.apply(&s.release("aaaa111", "  deletionPolicy: Delete\n")).success();
    s.phase("Healthy").await;
    let td = s.get("{.status.stableTaskDefinitionArn}");
    s.c.kubectl(&["delete", "release", &s.svc, "-n", &s.ns, "--timeout=40s"]).success();
    let svc = described(s.svc.clone()).await;
    assert!(svc.as_ref().is_none_or(|svc| svc.desired_count == 0), "{svc:?}");
    let ops: Vec<String> = s.p.writes().into_iter().map(|c| c.operation).filter(|o| o.contains("Service")).collect();
    assert_eq!(ops[ops.len() - 2..], ["UpdateService".to_string(), "DeleteService".to_string()], "scaled to 0, then deleted");
    let kept = moto_ecs("DescribeTaskDefinition", serde_json::json!({"taskDefinition": td})).await;
    assert_eq!(kept["taskDefinition"]["status"], "ACTIVE", "task definitions are kept");
    assert!(events(&s).contains("Deleted: ECS service"), "{}", events(&s));

    // Retain (the default): the service keeps running.
    let retained = unique("api-kept");
    s.c.apply(&s.release("aaaa111", "").replace(&format!("name: {}", s.svc), &format!("name: {retained}"))).success();
    eventually(WAIT, "retained release Healthy", || {
        (s.c.jsonpath(&["release", &retained, "-n", &s.ns], "{.status.phase}") == "Healthy").then_some(())
    })
    .await;
    s.c.kubectl(&["delete", "release", &retained, "-n", &s.ns, "--timeout=40s"]).success();
    assert_eq!(described(retained.clone()).await.map(|svc| svc.desired_count), Some(2), "left running");

    // Delete, but the service was handed to another owner meanwhile: not deleted.
    let handed = unique("api-handed");
    s.c.apply(&s.release("aaaa111", "  deletionPolicy: Delete\n").replace(&format!("name: {}", s.svc), &format!("name: {handed}")))
        .success();
    eventually(WAIT, "handed release Healthy", || {
        (s.c.jsonpath(&["release", &handed, "-n", &s.ns], "{.status.phase}") == "Healthy").then_some(())
    })
    .await;
    let arn = described(handed.clone()).await.unwrap().arn;
    let other = [("shipshape.dev/owner".to_string(), "someone/else".to_string())].into();
    aws.ecs.tag_resource(&arn, &other).await.unwrap();
    s.c.kubectl(&["delete", "release", &handed, "-n", &s.ns, "--timeout=40s"]).success();
    assert_eq!(described(handed.clone()).await.map(|svc| svc.desired_count), Some(2), "another owner's service stays");
    let log = events(&s);
    assert!(log.contains("not this release's (owner: someone/else)") && log.contains("deletionPolicy Retain"), "{log}");
}
