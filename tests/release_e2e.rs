//! End to end for ServiceRelease: the real controller binary, the test API server, moto
//! behind the AWS test proxy (which overlays ECS deployment dynamics), driven with kubectl.

mod support;

use std::time::Duration;

use support::{aws_at, eventually, proxy, unique, Cluster, Controller};

const WAIT: Duration = Duration::from_secs(40);

/// A VPC, subnet and security group in moto's EC2: Fargate services need them there.
async fn network() -> (String, String) {
    let http = reqwest::Client::new();
    let call = |body: String| {
        let http = http.clone();
        async move {
            http.post(support::moto())
                .header("content-type", "application/x-www-form-urlencoded")
                .header(
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=test/20260101/eu-west-1/ec2/aws4_request, SignedHeaders=host, Signature=x",
                )
                .body(body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let between = |s: &str, a: &str, b: &str| s.split(a).nth(1).and_then(|r| r.split(b).next()).unwrap_or_default().to_string();
    let vpc = call("Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0/16".into()).await;
    let vpc = between(&vpc, "<vpcId>", "</vpcId>");
    let subnet =
        call(format!("Action=CreateSubnet&Version=2016-11-15&VpcId={vpc}&CidrBlock=10.0.1.0/24&AvailabilityZone=eu-west-1a")).await;
    let subnet = between(&subnet, "<subnetId>", "</subnetId>");
    let sg =
        call(format!("Action=CreateSecurityGroup&Version=2016-11-15&VpcId={vpc}&GroupName={}&GroupDescription=test", unique("sg"))).await;
    let sg = between(&sg, "<groupId>", "</groupId>");
    assert!(subnet.starts_with("subnet-") && sg.starts_with("sg-"), "{subnet} {sg}");
    (subnet, sg)
}

struct Setup {
    c: Cluster,
    p: support_proxy::Proxy,
    ctl: Controller,
    env: String,
    ns: String,
    svc: String,
}

mod support_proxy {
    pub type Proxy = shipshape::testing::awsproxy::AwsProxy;
}

async fn setup(env_extra: &str) -> Setup {
    let c = Cluster::start().await;
    let p = proxy().await;
    p.set_deployment_delay(Duration::from_millis(500));
    let ctl = Controller::start_at(&c, &p.url(), &[]);
    let (env, ns, svc) = (unique("env"), unique("team"), unique("api"));
    let (subnet, sg) = network().await;
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
    s.c.apply(&s.release("bbbb222", "")).success();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.get("{.status.phase}"), "Paused");
    assert!(s.get("{.status.conditions[?(@.type==\"Stalled\")].message}").contains("frozen"));
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
