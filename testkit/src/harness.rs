//! The harness: a real Kubernetes control plane (scripts/control-plane.sh; or the cluster
//! of `SHIPSHAPE_E2E_KUBECONFIG`), moto behind `AWS_ENDPOINT_URL`, Prometheus, the real
//! controller binary running as the chart's ServiceAccount, the pinned kubectl.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::awsproxy::AwsProxy;
use shipshape::aws::sdk::SdkProvider;
use shipshape::aws::{AwsClients, AwsProvider, Ecs, Target};
use shipshape::metrics::Metrics;

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A plain HTTP GET on loopback (status, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}

/// The moto server of this test binary (started once; stopped by a watchdog when the
/// test process exits).
pub fn moto() -> &'static str {
    // The watchdog shell is kept (never waited on) for the life of the test process.
    static MOTO: OnceLock<(String, std::sync::Mutex<Child>)> = OnceLock::new();
    &MOTO
        .get_or_init(|| {
            let port = free_port();
            let script = format!(
                "python3 {server} -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill $m",
                // moto_server with jsonpath_ng's parses memoized (see the file).
                server = concat!(env!("CARGO_MANIFEST_DIR"), "/moto_server.py"),
                parent = std::process::id()
            );
            let child = Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdin(Stdio::null())
                .spawn()
                .expect("moto_server starts (pip install 'moto[server]')");
            let addr = format!("127.0.0.1:{port}");
            let start = Instant::now();
            while http_get(&addr, "/moto-api/").is_none_or(|(c, _)| c != 200) {
                assert!(start.elapsed() < Duration::from_secs(30), "moto_server did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
            // The test process's own AWS clients (for assertions) use the same emulator.
            std::env::set_var("AWS_ACCESS_KEY_ID", "test");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
            (format!("http://{addr}"), std::sync::Mutex::new(child))
        })
        .0
}

/// A raw query-protocol call (RDS, EC2, ...) straight to moto, for setup and checks the
/// domain traits do not offer; returns the XML answer.
pub async fn moto_query(service: &str, body: &str) -> String {
    moto_query_as("test", "eu-west-1", service, body).await
}

/// A query-protocol call to moto as the account behind `akid` (moto tells accounts apart by
/// access key), in `region`.
pub async fn moto_query_as(akid: &str, region: &str, service: &str, body: &str) -> String {
    let form = [("content-type", "application/x-www-form-urlencoded".to_string())];
    post_as(moto(), akid, region, service, &form, body.to_string()).await.text().await.unwrap()
}

/// A raw JSON-protocol ECS call straight to moto (e.g. `DescribeTaskDefinition`), for checks
/// the domain traits do not offer.
pub async fn moto_ecs(operation: &str, body: serde_json::Value) -> serde_json::Value {
    ecs_call(moto(), "test", operation, body).await.json().await.unwrap()
}

/// An ECS call (JSON protocol) to `url` (moto, or the AWS test proxy) as `akid`.
pub async fn ecs_call(url: &str, akid: &str, operation: &str, body: serde_json::Value) -> reqwest::Response {
    let headers = [
        ("content-type", "application/x-amz-json-1.1".to_string()),
        ("x-amz-target", format!("AmazonEC2ContainerServiceV20141113.{operation}")),
    ];
    post_as(url, akid, "eu-west-1", "ecs", &headers, body.to_string()).await
}

/// A POST to `url` signed in form only (moto and the AWS test proxy read the access key, the
/// Region and the service from the Authorization header; nothing checks the signature).
pub async fn post_as(url: &str, akid: &str, region: &str, service: &str, headers: &[(&str, String)], body: String) -> reqwest::Response {
    let auth = format!("AWS4-HMAC-SHA256 Credential={akid}/20260101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=x");
    let mut req = reqwest::Client::new().post(url).header("authorization", auth);
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    req.body(body).send().await.unwrap()
}

/// A VPC, subnet and security group in moto's EC2: Fargate services need them there.
pub async fn network() -> (String, String) {
    let call = |body: String| async move { moto_query("ec2", &body).await };
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

/// An Application Load Balancer in moto's ELBv2, as a team sets one up for ECS blue/green,
/// linear and canary deployments: two target groups (type ip) and a listener rule whose
/// weighted forward sends all traffic to the first.
pub struct LoadBalancer {
    /// Production target group.
    pub production: String,
    /// Alternate target group.
    pub alternate: String,
    /// The production listener rule.
    pub rule: String,
    /// A test listener rule (`/test/*`), all to the production group too.
    pub test_rule: String,
}

fn between(s: &str, a: &str, b: &str) -> String {
    s.split(a).nth(1).and_then(|r| r.split(b).next()).unwrap_or_default().to_string()
}

/// Creates a [`LoadBalancer`] (its own VPC and two subnets) in moto's default account, eu-west-1.
pub async fn load_balancer() -> LoadBalancer {
    load_balancer_in("test", "eu-west-1").await
}

/// Creates a [`LoadBalancer`] in the account behind `akid`, in `region`.
pub async fn load_balancer_in(akid: &str, region: &str) -> LoadBalancer {
    let ec2 = |body: String| async move { moto_query_as(akid, region, "ec2", &body).await };
    let elb = |body: String| async move { moto_query_as(akid, region, "elasticloadbalancing", &body).await };
    let vpc = between(&ec2("Action=CreateVpc&Version=2016-11-15&CidrBlock=10.1.0.0/16".into()).await, "<vpcId>", "</vpcId>");
    let mut subnets = vec![];
    for (i, az) in ['a', 'b'].iter().enumerate() {
        let out =
            ec2(format!("Action=CreateSubnet&Version=2016-11-15&VpcId={vpc}&CidrBlock=10.1.{i}.0/24&AvailabilityZone={region}{az}")).await;
        subnets.push(between(&out, "<subnetId>", "</subnetId>"));
    }
    let v = "Version=2015-12-01";
    let name = unique("web");
    let lb =
        elb(format!("Action=CreateLoadBalancer&{v}&Name={name}&Subnets.member.1={}&Subnets.member.2={}", subnets[0], subnets[1])).await;
    let lb = between(&lb, "<LoadBalancerArn>", "</LoadBalancerArn>");
    let mut groups = vec![];
    for color in ["blue", "green"] {
        let tg = elb(format!("Action=CreateTargetGroup&{v}&Name={}&Protocol=HTTP&Port=80&VpcId={vpc}&TargetType=ip", unique(color))).await;
        groups.push(between(&tg, "<TargetGroupArn>", "</TargetGroupArn>"));
    }
    let listener = elb(format!(
        "Action=CreateListener&{v}&LoadBalancerArn={lb}&Protocol=HTTP&Port=80&DefaultActions.member.1.Type=fixed-response&DefaultActions.member.1.FixedResponseConfig.StatusCode=404"
    ))
    .await;
    let listener = between(&listener, "<ListenerArn>", "</ListenerArn>");
    let fwd = "Actions.member.1.ForwardConfig.TargetGroups.member";
    let mut rules = vec![];
    for (priority, path) in [(2, "/test/*"), (1, "/*")] {
        let rule = elb(format!(
            "Action=CreateRule&{v}&ListenerArn={listener}&Priority={priority}&Conditions.member.1.Field=path-pattern&Conditions.member.1.Values.member.1={path}&Actions.member.1.Type=forward&{fwd}.1.TargetGroupArn={}&{fwd}.1.Weight=100&{fwd}.2.TargetGroupArn={}&{fwd}.2.Weight=0",
            groups[0], groups[1]
        ))
        .await;
        rules.push(between(&rule, "<RuleArn>", "</RuleArn>"));
    }
    assert!(
        rules.iter().all(|r| r.contains(":listener-rule/")) && groups.iter().all(|g| g.contains(":targetgroup/")),
        "{rules:?} {groups:?}"
    );
    LoadBalancer { production: groups[0].clone(), alternate: groups[1].clone(), rule: rules[1].clone(), test_rule: rules[0].clone() }
}

/// A listener rule's weighted forward as ELBv2 reports it (`aws elbv2 describe-rules`):
/// (target group, weight) pairs.
pub async fn rule_weights(rule: &str) -> Vec<(String, i64)> {
    let out = moto_query("elasticloadbalancing", &format!("Action=DescribeRules&Version=2015-12-01&RuleArns.member.1={rule}")).await;
    let forward = between(&out, "<ForwardConfig>", "</ForwardConfig>");
    forward
        .split("<member>")
        .skip(1)
        .map(|m| (between(m, "<TargetGroupArn>", "</TargetGroupArn>"), between(m, "<Weight>", "</Weight>").parse().unwrap_or(-1)))
        .collect()
}

/// YAML of `namespaces` and an Environment `env` with a Fargate network in moto's EC2 that
/// allows them, `extra` appended to its spec (e.g. "  freeze: true\n").
pub async fn namespaces_and_environment(env: &str, namespaces: &[&str], extra: &str) -> String {
    let (subnet, sg) = network().await;
    let mut yaml = String::new();
    for ns in namespaces {
        yaml += &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\n");
    }
    yaml += &format!(
        "apiVersion: shipshape.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  region: eu-west-1\n  ecsCluster: {{name: {env}, create: true}}\n  network: {{subnets: [{subnet}], securityGroups: [{sg}]}}\n  allowedNamespaces: [{}]\n{extra}",
        namespaces.join(", ")
    );
    yaml
}

/// A unique lowercase suffix for names in a test.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:06x}", rand::random::<u32>() & 0xffffff)
}

/// ECS as the controller sees it, straight from moto.
pub async fn ecs(region: &str) -> std::sync::Arc<dyn Ecs> {
    aws(region).await.ecs
}

/// All AWS clients, straight to moto (for assertions and out-of-band changes). S3 reads
/// need the proxy's fixes: use [`aws_at`] with a proxy for them.
pub async fn aws(region: &str) -> AwsClients {
    aws_at(moto(), region).await
}

/// All AWS clients at `endpoint`.
pub async fn aws_at(endpoint: &str, region: &str) -> AwsClients {
    moto();
    let p = SdkProvider::with_endpoint(Metrics::new(), 100, endpoint);
    p.clients(&Target { environment: "test".into(), region: region.into(), role_arn: None }).await.unwrap()
}

/// An AWS test proxy in front of this binary's moto.
pub async fn proxy() -> AwsProxy {
    AwsProxy::start("127.0.0.1:0", moto()).await.unwrap()
}

/// One e2e test's world: the controller (the binary, as the chart's ServiceAccount) talking
/// to the real control plane, and to moto through the AWS test proxy, which checks every
/// request. Fields drop in order: the controller, then the proxy (a request it refused fails
/// the test there), then the control plane.
pub struct E2e {
    /// The controller.
    pub ctl: Controller,
    /// The AWS test proxy.
    pub p: AwsProxy,
    /// The control plane.
    pub c: Cluster,
}

impl E2e {
    /// The control plane, the proxy, the controller with its default flags.
    pub async fn start() -> E2e {
        Self::start_with(&[]).await
    }

    /// [`E2e::start`] with `extra` controller flags.
    pub async fn start_with(extra: &[&str]) -> E2e {
        Self::start_slow(Duration::ZERO, extra).await
    }

    /// [`E2e::start_with`], ECS deployments at the proxy taking `deployments` to complete.
    pub async fn start_slow(deployments: Duration, extra: &[&str]) -> E2e {
        let c = Cluster::start().await;
        let p = proxy().await;
        if !deployments.is_zero() {
            p.set_deployment_delay(deployments);
        }
        let ctl = Controller::start_at(&c, &p.url(), extra);
        E2e { ctl, p, c }
    }
}

/// A team: its namespace and an Environment admitting it, whose ECS cluster (named as the
/// Environment) shipshape creates, tagged `Project: <project>`.
pub struct Team {
    /// The Environment.
    pub env: String,
    /// The namespace.
    pub ns: String,
}

impl Team {
    /// Applies the namespace and the Environment.
    pub fn new(c: &Cluster, project: &str) -> Team {
        let t = Team { env: unique("env"), ns: unique(project) };
        c.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: shipshape.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  region: eu-west-1\n  ecsCluster: {{name: {env}, create: true}}\n  allowedNamespaces: [{ns}]\n  tags: {{Project: {project}}}\n",
            ns = t.ns,
            env = t.env
        ))
        .success();
        t
    }

    /// The team's StackSpec `data` (outputs in ConfigMap `data-outputs`, drift checked every
    /// 2 s) declaring `resources`: YAML lines of its spec, indented by 2.
    pub fn stack(&self, resources: &str) -> String {
        format!(
            "apiVersion: shipshape.dev/v1alpha1\nkind: StackSpec\nmetadata: {{name: data, namespace: {ns}}}\nspec:\n  environment: {env}\n  outputs: data-outputs\n  driftInterval: 2s\n{resources}",
            ns = self.ns,
            env = self.env
        )
    }

    /// The message of condition `type_` of StackSpec `data`.
    pub fn stack_message(&self, c: &Cluster, type_: &str) -> String {
        c.jsonpath(&["stackspec", "data", "-n", &self.ns], &format!("{{.status.conditions[?(@.type==\"{type_}\")].message}}"))
    }

    /// Waits (at most `wait`) for condition `type_` of StackSpec `data` to be `status`;
    /// returns its reason.
    pub async fn stack_condition(&self, c: &Cluster, type_: &str, status: &str, wait: Duration) -> String {
        c.await_condition(&["stackspec", "data", "-n", &self.ns], type_, status, wait).await
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    let kit = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    kit.parent().map(Path::to_path_buf).unwrap_or(kit)
}

/// The `shipshape` binary under test: `SHIPSHAPE_BIN`, or the one cargo built beside the
/// running test or benchmark (`target/<profile>/deps/<test>` → `target/<profile>/shipshape`;
/// cargo builds a package's binaries for its integration tests and benchmarks).
pub fn shipshape_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SHIPSHAPE_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the path of the running test");
    let bin = exe.parent().and_then(Path::parent).map(|profile| profile.join("shipshape")).expect("a target directory");
    assert!(bin.exists(), "{} is missing: run through cargo test/bench, or set SHIPSHAPE_BIN", bin.display());
    bin
}

/// The Kubernetes API of this test binary: the pinned etcd + kube-apiserver +
/// kube-controller-manager (scripts/control-plane.sh, stopped when the test process exits),
/// or the cluster of `SHIPSHAPE_E2E_KUBECONFIG`; shipshape installed on it as the README
/// says (deploy/base, server-side), and a kubeconfig of the chart's ServiceAccount.
pub struct ControlPlane {
    /// Admin kubeconfig (system:masters): what the tests act as.
    pub admin: PathBuf,
    /// The chart's ServiceAccount `shipshape/shipshape` (a TokenRequest token): what the
    /// controller under test runs as, so the real authorizer checks every request.
    pub controller: PathBuf,
    /// The pinned kubectl.
    pub kubectl: PathBuf,
    /// Our own control plane's state directory (audit.log, component logs); None for an
    /// existing cluster.
    pub dir: Option<PathBuf>,
}

/// The ServiceAccount the chart creates, as the API server names it.
pub const CONTROLLER_USER: &str = "system:serviceaccount:shipshape:shipshape";

fn script(args: &[&str]) -> String {
    let out = Command::new(root().join("scripts/control-plane.sh"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("scripts/control-plane.sh {args:?}: {e}"));
    assert!(out.status.success(), "scripts/control-plane.sh {args:?} failed (see its output above)");
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string()
}

/// The pinned kubectl (built with the control plane on first use).
pub fn kubectl_path() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| PathBuf::from(script(&["bin"])).join("kubectl")).clone()
}

/// This test binary's control plane (started on first use).
pub fn control_plane() -> &'static ControlPlane {
    static CP: OnceLock<ControlPlane> = OnceLock::new();
    CP.get_or_init(|| {
        let (admin, dir) = match std::env::var("SHIPSHAPE_E2E_KUBECONFIG") {
            Ok(kc) => (PathBuf::from(kc), None),
            Err(_) => {
                let dir = std::env::temp_dir().join(format!("shipshape-e2e-{}", std::process::id()));
                let admin = script(&["up", dir.to_str().unwrap(), &std::process::id().to_string()]);
                (PathBuf::from(admin), Some(dir))
            }
        };
        let state = dir.clone().unwrap_or_else(|| tempfile::tempdir().unwrap().keep());
        let controller = state.join("shipshape.kubeconfig");
        script(&["install", admin.to_str().unwrap(), controller.to_str().unwrap()]);
        ControlPlane { admin, controller, kubectl: kubectl_path(), dir }
    })
}

/// The label that scopes a test: its objects carry it and its controller watches only
/// objects that do (`--watch-label-selector`), so tests sharing a control plane never see
/// each other's objects.
pub const TEST_LABEL: &str = "e2e.shipshape.dev/test";

/// One test's view of the control plane: its own label, Lease and files.
pub struct Cluster {
    cp: &'static ControlPlane,
    /// This test's id (label value, Lease name).
    pub id: String,
    dir: tempfile::TempDir,
    /// Admin kubeconfig path.
    pub kubeconfig: PathBuf,
}

impl Cluster {
    /// The control plane of this test binary, scoped to a new test.
    pub async fn start() -> Cluster {
        let cp = tokio::task::spawn_blocking(control_plane).await.expect("control plane starts");
        Cluster { cp, id: unique("t"), dir: tempfile::tempdir().unwrap(), kubeconfig: cp.admin.clone() }
    }

    /// Lets the controller read Secrets in `ns`, as a team does for its StackSpecs' AUTH
    /// tokens or its Prometheus credentials: a RoleBinding to the chart's shipshape-secrets
    /// ClusterRole (the chart binds it only in its own namespace and rbac.secretNamespaces).
    pub fn allow_secrets(&self, ns: &str) {
        self.apply(&format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: shipshape-secrets, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: shipshape-secrets}}\nsubjects: [{{kind: ServiceAccount, name: shipshape, namespace: shipshape}}]\n"
        ))
        .success();
    }

    /// The control plane under this test.
    pub fn control_plane(&self) -> &'static ControlPlane {
        self.cp
    }

    /// Runs the pinned kubectl against this cluster as admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, "")
    }

    /// Runs the pinned kubectl as admin with `stdin`.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.kubectl_as(&self.kubeconfig, args, stdin)
    }

    /// Runs the pinned kubectl with another kubeconfig (e.g. the controller's identity).
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(&self.cp.kubectl)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    /// `kubectl apply -f -` of `yaml`, every shipshape.dev object labelled with this test's
    /// label (so this test's controller, and only it, reconciles them).
    pub fn apply(&self, yaml: &str) -> Output {
        self.kubectl_stdin(&["apply", "-f", "-"], &self.labelled(yaml))
    }

    /// `yaml` with this test's label on every shipshape.dev object.
    pub fn labelled(&self, yaml: &str) -> String {
        let mut out = String::new();
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let mut v: serde_json::Value = serde::Deserialize::deserialize(doc).expect("valid YAML");
            if v.is_null() {
                continue;
            }
            if v["apiVersion"].as_str().is_some_and(|a| a.starts_with("shipshape.dev/")) {
                v["metadata"]["labels"][TEST_LABEL] = serde_json::Value::String(self.id.clone());
            }
            // As JSON (valid YAML): re-emitted YAML would leave `"on"` bare, which kubectl's
            // YAML 1.1 parser reads as a boolean.
            out.push_str("---\n");
            out.push_str(&serde_json::to_string(&v).unwrap());
            out.push('\n');
        }
        out
    }

    /// A JSONPath read of one object (`kubectl get KIND NAME -o jsonpath=...`), "" if missing.
    pub fn jsonpath(&self, kind_name: &[&str], path: &str) -> String {
        let mut args: Vec<&str> = vec!["get"];
        args.extend_from_slice(kind_name);
        let jp = format!("jsonpath={path}");
        args.extend_from_slice(&["-o", &jp]);
        let o = self.kubectl(&args);
        if o.code == 0 {
            o.stdout
        } else {
            String::new()
        }
    }

    /// A condition's status and reason, e.g. ("True", "Reconciled").
    pub fn condition(&self, kind_name: &[&str], type_: &str) -> (String, String) {
        let s = self.jsonpath(
            kind_name,
            &format!("{{.status.conditions[?(@.type==\"{type_}\")].status}}|{{.status.conditions[?(@.type==\"{type_}\")].reason}}"),
        );
        let (a, b) = s.split_once('|').unwrap_or(("", ""));
        (a.to_string(), b.to_string())
    }

    /// Waits until the controller has reconciled the Environment's current spec
    /// (status.observedGeneration = metadata.generation): a test that changes an Environment and
    /// then a release needs it, the two arriving at the controller on different watches.
    pub async fn environment_observed(&self, name: &str) {
        eventually(Duration::from_secs(90), &format!("environment {name} observed"), || {
            let env = ["environment", name];
            let observed = self.jsonpath(&env, "{.status.observedGeneration}");
            (!observed.is_empty() && observed == self.jsonpath(&env, "{.metadata.generation}")).then_some(())
        })
        .await;
    }

    /// Waits (up to `timeout`) until the object's condition `type_` has `status`; returns its
    /// reason.
    pub async fn await_condition(&self, kind_name: &[&str], type_: &str, status: &str, timeout: Duration) -> String {
        eventually(timeout, &format!("{} {type_}={status}", kind_name.join(" ")), || {
            let (s, r) = self.condition(kind_name, type_);
            (s == status).then_some(r)
        })
        .await
    }

    /// An admin kube client for this cluster.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig reads");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.expect("kubeconfig loads");
        kube::Client::try_from(cfg).expect("client builds")
    }

    /// A directory for this test's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// kube-apiserver's audit log so far (our own control plane only).
    pub fn audit_log(&self) -> Option<Vec<serde_json::Value>> {
        let text = std::fs::read_to_string(self.cp.dir.as_ref()?.join("audit.log")).ok()?;
        Some(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
    }
}

/// A finished command.
#[derive(Debug)]
pub struct Output {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Asserts exit code 0.
    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(self.code, 0, "command failed: {}{}", self.stdout, self.stderr);
        self
    }
}

/// A running `shipshape controller`.
pub struct Controller {
    child: Option<Child>,
    /// Metrics address.
    pub metrics_addr: String,
    /// Log file.
    pub log: PathBuf,
}

impl Controller {
    /// Starts the controller binary against `cluster`, with AWS at `endpoint` (moto, or the
    /// AWS test proxy in front of it), as the chart's ServiceAccount, watching only this
    /// test's objects, on this test's Lease.
    pub fn start_at(cluster: &Cluster, endpoint: &str, extra: &[&str]) -> Controller {
        Self::start_as(cluster, endpoint, extra, "shipshape")
    }

    /// [`Controller::start_at`] with its own AWS access key id, so the AWS test proxy tells
    /// its calls apart from another replica's.
    pub fn start_as(cluster: &Cluster, endpoint: &str, extra: &[&str], access_key: &str) -> Controller {
        let port = free_port();
        let metrics_addr = format!("127.0.0.1:{port}");
        let log = cluster.dir().join(format!("controller-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let selector = format!("{TEST_LABEL}={}", cluster.id);
        let lease = format!("shipshape-{}", cluster.id);
        let child = Command::new(shipshape_binary())
            .arg("controller")
            .args(["--metrics-addr", &metrics_addr, "--identity", &format!("test-{port}")])
            .args(["--watch-label-selector", &selector, "--lease-name", &lease, "--lease-namespace", "shipshape"])
            .args(extra)
            .args(if extra.contains(&"--lease-duration") { vec![] } else { vec!["--lease-duration", "4s"] })
            .args(if extra.contains(&"--lease-retry-period") { vec![] } else { vec!["--lease-retry-period", "500ms"] })
            .env("KUBECONFIG", &cluster.control_plane().controller)
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", access_key)
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "eu-west-1")
            .env("RUST_LOG", std::env::var("SHIPSHAPE_TEST_LOG").unwrap_or_else(|_| "info,shipshape=debug".into()))
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("controller starts");
        let c = Controller { child: Some(child), metrics_addr, log };
        let start = Instant::now();
        while c.scrape().is_none() {
            assert!(start.elapsed() < Duration::from_secs(20), "controller did not serve metrics: {}", c.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    /// The process id (None once killed).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The controller's metrics text.
    pub fn scrape(&self) -> Option<String> {
        http_get(&self.metrics_addr, "/metrics").filter(|(c, _)| *c == 200).map(|(_, b)| b)
    }

    /// Sum of a metric's samples whose line contains every `filter` (0 when absent).
    pub fn metric(&self, name: &str, filters: &[&str]) -> f64 {
        self.scrape()
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(name) && (l.len() == name.len() || matches!(l.as_bytes()[name.len()], b'{' | b' ')))
            .filter(|l| filters.iter().all(|f| l.contains(f)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Kills the process at once (SIGKILL), as a crashed pod.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal (STOP, CONT, ...) to the process.
    pub fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap();
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.as_mut()?.try_wait().ok().flatten() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Sends SIGTERM and waits for exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap();
        let start = Instant::now();
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s.code();
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = c.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it returns Some, or panics with `what` after `timeout`.
pub async fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Per service: (error rate, requests served, requests failed).
type Rates = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (f64, u64, u64)>>>;

/// A test exporter whose per-service error rate the test sets, scraped every second by a
/// real Prometheus (started once per test binary; `apt-get install prometheus`).
pub struct Health {
    /// Prometheus base URL.
    pub prometheus: String,
    /// The exporter's address (host:port).
    pub exporter: String,
    rates: Rates,
}

/// A Prometheus of one test's own (scraping the binary's exporter every second), which the
/// test can stop and start again on the same port and data, as an outage of the metrics
/// backend.
pub struct OwnPrometheus {
    /// Base URL.
    pub url: String,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnPrometheus {
    /// Starts one scraping `health()`'s exporter.
    pub fn start() -> OwnPrometheus {
        let h = health();
        let dir = tempfile::tempdir().unwrap().keep();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!("global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['{}']}}]\n", h.exporter),
        )
        .unwrap();
        let port = free_port();
        let mut p = OwnPrometheus { url: format!("http://127.0.0.1:{port}"), port, dir, child: None };
        p.resume();
        p
    }

    /// Stops it (SIGKILL): queries fail with connection refused.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", self.dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", self.dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus starts (apt-get install prometheus)");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        let start = Instant::now();
        while http_get(&addr, "/-/ready").is_none_or(|(c, _)| c != 200) {
            assert!(start.elapsed() < Duration::from_secs(30), "prometheus did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for OwnPrometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Health {
    /// Sets the share of requests of `service` that fail with 500 (from the next scrape on).
    pub fn set_error_rate(&self, service: &str, rate: f64) {
        self.rates.lock().unwrap().entry(service.to_string()).or_insert((0.0, 0, 0)).0 = rate;
    }
}

/// The binary's Prometheus and exporter.
pub fn health() -> &'static Health {
    static HEALTH: OnceLock<Health> = OnceLock::new();
    HEALTH.get_or_init(|| {
        let rates: Rates = Default::default();
        let exporter_port = free_port();
        let r = rates.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let r = r.clone();
                        async move {
                            // Every scrape is 100 more requests per service, `rate` of them failing.
                            let mut out = String::from("# TYPE http_requests_total counter\n");
                            for (svc, (rate, ok, err)) in r.lock().unwrap().iter_mut() {
                                let failed = (rate.clamp(0.0, 1.0) * 100.0).round() as u64;
                                *err += failed;
                                *ok += 100 - failed;
                                out += &format!("http_requests_total{{service=\"{svc}\",code=\"200\"}} {ok}\nhttp_requests_total{{service=\"{svc}\",code=\"500\"}} {err}\n");
                            }
                            out
                        }
                    }),
                );
                let l = tokio::net::TcpListener::bind(("127.0.0.1", exporter_port)).await.unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        let port = free_port();
        let dir = tempfile::tempdir().unwrap().keep();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"),
        )
        .unwrap();
        let script = format!(
            "prometheus --config.file={} --storage.tsdb.path={} --web.listen-address=127.0.0.1:{port} >{}/prometheus.log 2>&1 & p=$!; while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill $p",
            config.display(),
            dir.join("data").display(),
            dir.display(),
            parent = std::process::id()
        );
        let child = Command::new("sh").arg("-c").arg(script).stdin(Stdio::null()).spawn().expect("prometheus starts (apt-get install prometheus)");
        std::mem::forget(child);
        let addr = format!("127.0.0.1:{port}");
        let start = Instant::now();
        while http_get(&addr, "/-/ready").is_none_or(|(c, _)| c != 200) {
            assert!(start.elapsed() < Duration::from_secs(30), "prometheus did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Health { prometheus: format!("http://{addr}"), exporter: format!("127.0.0.1:{exporter_port}"), rates }
    })
}

/// kstatus's verdict on an object (`<Status> <message>`), from the real library
/// (sigs.k8s.io/cli-utils/pkg/kstatus, testkit/kstatus), built once into ~/.cache/shipshape.
pub fn kstatus(obj: &serde_json::Value) -> String {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    let bin = BIN.get_or_init(|| {
        let src = root().join("testkit/kstatus");
        let cache = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir).join(".cache/shipshape");
        let bin = cache.join("kstatus-cli-utils-v0.37.2");
        if !bin.exists() {
            std::fs::create_dir_all(&cache).unwrap();
            let out = Command::new("go")
                .args(["build", "-o"])
                .arg(&bin)
                .arg(".")
                .current_dir(&src)
                .env("GOTOOLCHAIN", "local")
                .env("GOFLAGS", "-mod=mod")
                .output()
                .expect("go builds testkit/kstatus");
            assert!(out.status.success(), "go build testkit/kstatus: {}", String::from_utf8_lossy(&out.stderr));
        }
        bin
    });
    let mut child = Command::new(bin).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("kstatus runs");
    writeln!(child.stdin.take().unwrap(), "{obj}").unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A CloudWatch alarm `name` in moto in `state` (moto never evaluates alarms: tests set them).
pub async fn put_alarm(name: &str, state: &str) {
    let put = moto_query(
        "monitoring",
        &format!("Action=PutMetricAlarm&Version=2010-08-01&AlarmName={name}&MetricName=Errors&Namespace=AWS%2FLambda&Statistic=Sum&Period=60&EvaluationPeriods=1&Threshold=1&ComparisonOperator=GreaterThanOrEqualToThreshold"),
    )
    .await;
    assert!(put.contains("PutMetricAlarmResponse"), "{put}");
    set_alarm(name, state).await;
}

/// Sets alarm `name`'s state in moto (SetAlarmState).
pub async fn set_alarm(name: &str, state: &str) {
    let set =
        moto_query("monitoring", &format!("Action=SetAlarmState&Version=2010-08-01&AlarmName={name}&StateValue={state}&StateReason=e2e"))
            .await;
    assert!(set.contains("SetAlarmStateResponse"), "{set}");
}
