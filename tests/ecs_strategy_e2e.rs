//! End to end for ECS canary, linear and blue/green releases: the real controller binary on
//! the real control plane, ECS and ELBv2 = moto behind the AWS test proxy (whose model of
//! service deployments, testkit/src/ecs_deploy.rs, shifts the listener rule's weights in
//! moto's ELBv2 and pauses at lifecycle hooks), the analysis on a real Prometheus. The
//! weights are read from ELBv2 as a user would (`aws elbv2 describe-rules`).

mod support;

use std::time::{Duration, Instant};

use support::{aws_at, eventually, health, proxy, unique, Cluster, Controller};

const WAIT: Duration = Duration::from_secs(60);

/// The error rate; `* ({{revision}} > bool 0)` only parses once `{{revision}}` is filled.
const ERROR_RATE: &str = r#"sum(rate(http_requests_total{service="{{service}}",code=~"5.."}[5s])) / sum(rate(http_requests_total{service="{{service}}"}[5s])) * ({{revision}} > bool 0)"#;

struct Setup {
    c: Cluster,
    p: shipshape_testkit::awsproxy::AwsProxy,
    ctl: Controller,
    env: String,
    ns: String,
    svc: String,
    lb: support::LoadBalancer,
}

async fn setup() -> Setup {
    let c = Cluster::start().await;
    let p = proxy().await;
    p.set_deployment_delay(Duration::from_millis(300));
    p.set_scale_delay(Duration::from_millis(300));
    let ctl = Controller::start_at(&c, &p.url(), &[]);
    let (env, ns, svc) = (unique("env"), unique("shop"), unique("web"));
    let (subnet, sg) = support::network().await;
    let lb = support::load_balancer().await;
    // The role and the listener rule as the Environment's defaults; the target groups on
    // the release.
    c.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: shipshape.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  region: eu-west-1\n  ecsCluster: {{name: {env}, create: true}}\n  network: {{subnets: [{subnet}], securityGroups: [{sg}]}}\n  allowedNamespaces: [{ns}]\n  health: {{prometheus: {{url: \"{}\"}}}}\n  loadBalancer: {{roleArn: \"arn:aws:iam::123456789012:role/shipshape/ecs/ecsInfrastructureRoleForLoadBalancers\", productionListenerRule: \"{}\", testListenerRule: \"{}\"}}\n",
        health().prometheus, lb.rule, lb.test_rule
    ))
    .success();
    Setup { c, p, ctl, env, ns, svc, lb }
}

impl Setup {
    fn release(&self, sha: &str, strategy: &str) -> String {
        let q = ERROR_RATE.replace('\'', "''");
        format!(
            "apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: {svc}, namespace: {ns}}}\nspec:\n  environment: {env}\n  image: {{repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/web, gitSha: {sha}}}\n  task: {{cpu: 256, memory: 512, port: 8080}}\n  replicas: 2\n  loadBalancer: {{targetGroupArn: \"{}\", alternateTargetGroupArn: \"{}\"}}\n  rollout:\n    progressDeadline: 2m\n    strategy: {strategy}\n    analysis:\n      warmup: 1s\n      interval: 1s\n      successfulRuns: 2\n      failureLimit: 1\n      queries:\n        - name: error-rate\n          prometheus: '{q}'\n          max: 0.05\n",
            self.lb.production,
            self.lb.alternate,
            svc = self.svc,
            ns = self.ns,
            env = self.env,
        )
    }
    fn get(&self, path: &str) -> String {
        self.c.jsonpath(&["release", &self.svc, "-n", &self.ns], path)
    }
    async fn phase(&self, want: &str) {
        eventually(WAIT, &format!("phase {want}"), || (self.get("{.status.phase}") == want).then_some(())).await;
    }
    /// The listener rule's weights: (production group's, alternate group's).
    async fn weights(&self) -> (i64, i64) {
        self.weights_of(&self.lb.rule).await
    }
    async fn weights_of(&self, rule: &str) -> (i64, i64) {
        let w = support::rule_weights(rule).await;
        let of = |tg: &str| w.iter().find(|(g, _)| g == tg).map(|(_, w)| *w).unwrap_or(-1);
        (of(&self.lb.production), of(&self.lb.alternate))
    }
    /// Whether ECS wrote these weights to the production listener rule at some point.
    fn wrote(&self, want: (i64, i64)) -> bool {
        let weight = |w: &[(String, i64)], tg: &str| w.iter().find(|(g, _)| g == tg).map(|(_, w)| *w).unwrap_or(-1);
        self.p
            .rule_writes()
            .iter()
            .any(|(_, w)| w.rule == self.lb.rule && (weight(&w.groups, &self.lb.production), weight(&w.groups, &self.lb.alternate)) == want)
    }
    /// Waits until ELBv2 shows these weights.
    async fn rule_at(&self, want: (i64, i64)) {
        eventually(WAIT, &format!("the listener rule at {want:?}"), || (futures::executor::block_on(self.weights()) == want).then_some(()))
            .await;
    }
    async fn service_task_definition(&self) -> String {
        let mine = proxy().await;
        let aws = aws_at(&mine.url(), "eu-west-1").await;
        let s = aws.ecs.describe_services(&self.env, std::slice::from_ref(&self.svc)).await.unwrap();
        s.first().map(|(_, s)| s.task_definition.clone()).unwrap_or_default()
    }
    /// From the last rollback call of ECS's (ContinueServiceDeployment or
    /// StopServiceDeployment) to the listener rule write that left nothing on the new revision.
    fn rollback_to_zero(&self, new_group: &str) -> Duration {
        let call = self
            .p
            .calls()
            .into_iter()
            .rfind(|c| c.operation == "ContinueServiceDeployment" || c.operation == "StopServiceDeployment")
            .and_then(|c| c.at)
            .expect("a rollback call");
        let zero = self
            .p
            .rule_writes()
            .into_iter()
            .find(|(at, w)| *at >= call && w.groups.iter().any(|(g, w)| g == new_group && *w == 0))
            .map(|(at, _)| at)
            .expect("a write with 0 % on the new revision");
        zero.duration_since(call)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecs_canary_stops_at_5_percent_passes_and_a_breaching_one_goes_back_to_0_percent() {
    let s = setup().await;
    let h = health();
    h.set_error_rate(&s.svc, 0.0);
    let canary = "{canary: {percent: 5, bake: 3s}}";
    s.c.apply(&s.release("aaaa111", canary)).success();
    s.phase("Healthy").await;
    assert_eq!(s.weights().await, (100, 0), "a first version serves from the production group at once");

    // v2: ECS shifts 5 % to the alternate group and pauses there; judged through the bake (long
    // enough for the test to read the step everywhere), then continued to all of it and judged again.
    s.c.apply(&s.release("bbbb222", "{canary: {percent: 5, bake: 12s}}")).success();
    s.rule_at((95, 5)).await;
    eventually(WAIT, "status at step 1/2, 5 %", || {
        (s.get("{.status.rollout.stepText} {.status.rollout.weight} {.status.rollout.stage}") == "1/2 5 PRE_PRODUCTION_TRAFFIC_SHIFT")
            .then_some(())
    })
    .await;
    assert_eq!(s.weights_of(&s.lb.test_rule).await, (0, 100), "test traffic went wholly to the new revision first (TEST_TRAFFIC_SHIFT)");
    let arn = s.get("{.status.rollout.serviceDeploymentArn}");
    assert!(arn.contains(":service-deployment/"), "the ECS service deployment ARN in status: {arn}");
    let table = s.c.kubectl(&["get", "release", &s.svc, "-n", &s.ns]).success().stdout;
    assert!(table.contains("STAGE") && table.contains("PRE_PRODUCTION_TRAFFIC_SHIFT") && table.contains("1/2"), "{table}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shipshape"))
        .args(["status", "-n", &s.ns])
        .env("KUBECONFIG", &s.c.kubeconfig)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("5% (step 1/2)"), "{out}");
    eventually(WAIT, "v2 stable", || (s.get("{.status.stableSha}") == "bbbb222").then_some(())).await;
    s.rule_at((0, 100)).await;
    assert_eq!(s.get("{.status.history[0].steps[*].weight}"), "5 100", "history records each step");
    let v2 = s.get("{.status.stableTaskDefinitionArn}");
    eventually(WAIT, "the service on v2", || {
        futures::executor::block_on(async { (s.service_task_definition().await == v2).then_some(()) })
    })
    .await;

    // v3 serves 20 % errors at its 5 %: rolled back at the pause, traffic back to 0 %.
    h.set_error_rate(&s.svc, 0.2);
    s.c.apply(&s.release("cccc333", canary)).success();
    s.phase("RolledBack").await;
    s.rule_at((0, 100)).await;
    // Its 5 % lasted only until the first round: read from the rule writes, not caught by polling.
    assert!(s.wrote((5, 95)), "v3 served 5 % before its rollback: {:?}", s.p.rule_writes());
    let reason = s.get("{.status.history[0].reason}");
    assert!(reason.contains("error-rate") && reason.contains("above max 0.05"), "{reason}");
    assert_eq!(s.get("{.status.history[*].outcome}"), "RolledBack Promoted Promoted");
    assert_eq!(s.service_task_definition().await, v2, "back on the stable revision");
    let to_zero = s.rollback_to_zero(&s.lb.production);
    let verdict_to_call = s.ctl.metric("shipshape_rollback_seconds_sum", &[]);
    println!("ECS canary: verdict -> rollback call {verdict_to_call:.3}s; rollback call -> 0% on the new revision {to_zero:?}");
    assert_eq!(s.p.count("ContinueServiceDeployment"), 3 + 2, "v2: at 0 %, 5 %, 100 % continued; v3: at 0 % continued, at 5 % ROLLBACK");

    // Not retried on its own.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.get("{.status.phase}"), "RolledBack");
    assert_eq!(s.weights().await, (0, 100));

    // v4 would bake an hour at 5 %: `shipshape promote` continues ECS through its remaining
    // pauses at once.
    h.set_error_rate(&s.svc, 0.0);
    tokio::time::sleep(Duration::from_secs(6)).await; // the 5 s rate window forgets v3's errors
    s.c.apply(&s.release("dddd444", "{canary: {percent: 5, bake: 1h}}")).success();
    s.rule_at((5, 95)).await;
    eventually(WAIT, "judged at 5 %", || (s.get("{.status.phase}") == "Analyzing").then_some(())).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shipshape"))
        .args(["promote", &s.svc, "-n", &s.ns])
        .env("KUBECONFIG", &s.c.kubeconfig)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually(WAIT, "v4 promoted by hand", || (s.get("{.status.stableSha}") == "dddd444").then_some(())).await;
    s.rule_at((100, 0)).await;
    assert_eq!(s.get("{.status.history[0].reason}"), "promoted by hand");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecs_linear_release_rolls_back_at_step_2_of_4_and_blue_green_promotes_after_its_bake_or_rolls_back_in_it() {
    let s = setup().await;
    let h = health();
    h.set_error_rate(&s.svc, 0.0);
    // Each step bakes long enough for the test to see step 2 and breach in it.
    let linear = "{linear: {stepPercent: 25, stepBake: 10s}}";
    s.c.apply(&s.release("aaaa111", linear)).success();
    s.phase("Healthy").await;

    s.c.apply(&s.release("bbbb222", linear)).success();
    s.rule_at((75, 25)).await;
    s.rule_at((50, 50)).await;
    eventually(WAIT, "status at step 2/4", || (s.get("{.status.rollout.stepText} {.status.rollout.weight}") == "2/4 50").then_some(()))
        .await;
    h.set_error_rate(&s.svc, 0.3);
    s.phase("RolledBack").await;
    s.rule_at((100, 0)).await;
    assert_eq!(s.get("{.status.history[0].steps[*].weight}"), "25 50");
    assert_eq!(s.get("{.status.history[0].steps[*].result}"), "Passed RolledBack");
    let events = s.c.kubectl(&["get", "events", "-n", &s.ns, "-o", "jsonpath={.items[*].message}"]).stdout;
    assert!(events.contains("passed step 1/4 at 25% of the traffic; step 2/4: 50%"), "{events}");

    // Blue/green: all of the traffic at once, the old revision kept running through the bake.
    h.set_error_rate(&s.svc, 0.0);
    s.c.apply(&s.release("cccc333", "{blueGreen: {bake: 3s}}")).success();
    s.rule_at((0, 100)).await;
    let at_full = Instant::now();
    eventually(WAIT, "v3 stable", || (s.get("{.status.stableSha}") == "cccc333").then_some(())).await;
    assert!(at_full.elapsed() >= Duration::from_secs(2), "promoted only after its bake");
    s.c.apply(&s.release("dddd444", "{blueGreen: {bake: 1h}}")).success();
    s.rule_at((100, 0)).await;
    eventually(WAIT, "baking at POST_PRODUCTION_TRAFFIC_SHIFT", || {
        (s.get("{.status.phase} {.status.rollout.stage}") == "Analyzing POST_PRODUCTION_TRAFFIC_SHIFT").then_some(())
    })
    .await;
    h.set_error_rate(&s.svc, 0.3);
    s.phase("RolledBack").await;
    s.rule_at((0, 100)).await;
    assert_eq!(s.get("{.status.history[*].outcome}"), "RolledBack Promoted RolledBack Promoted");
    println!("ECS blue/green: rollback call -> 0% on the new revision {:?}", s.rollback_to_zero(&s.lb.production));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecs_strategy_without_its_load_balancer_is_refused_by_name() {
    let s = setup().await;
    let yaml = s.release("aaaa111", "{canary: {percent: 5}}").replace(&format!("alternateTargetGroupArn: \"{}\"", s.lb.alternate), "");
    s.c.apply(&yaml).success();
    eventually(WAIT, "InvalidSpec", || {
        let (stalled, reason) = s.c.condition(&["release", &s.svc, "-n", &s.ns], "Stalled");
        (stalled == "True" && reason == "InvalidSpec").then_some(())
    })
    .await;
    let message = s.get("{.status.conditions[?(@.type==\"Stalled\")].message}");
    assert!(message.contains("loadBalancer.alternateTargetGroupArn"), "{message}");
    assert_eq!(s.p.count("CreateService"), 0, "nothing created");
}
