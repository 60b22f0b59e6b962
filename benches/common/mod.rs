//! What the benchmarks share: the real control plane of tests/support (etcd, kube-apiserver,
//! kube-controller-manager of the pinned version), moto behind the AWS test proxy, and the
//! release `shipshape` binary running in its own process as the chart's ServiceAccount, so
//! converge time, RSS, CPU, API and AWS requests are the controller's own.
#![allow(dead_code)]

pub use shipshape_testkit as support;

use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use shipshape_testkit::awsproxy::AwsProxy;
use support::{Cluster, Controller};

/// Objects per Environment (each its own ECS cluster): ECS allows 5,000 services per
/// cluster, and a platform of thousands of services runs them in many clusters.
pub const PER_ENV: usize = 1000;

/// One size's world: a control plane, an AWS proxy, a namespace and its Environments.
pub struct Bench {
    /// The control plane, scoped to this run.
    pub c: Cluster,
    /// The AWS test proxy the controller talks to (call counts).
    pub proxy: AwsProxy,
    /// Namespace of the objects.
    pub ns: String,
    /// Environment names (`PER_ENV` objects each).
    pub envs: Vec<String>,
}

/// Whether the benchmark runs with AWS events (`SHIPSHAPE_BENCH_EVENTS=1`).
pub fn events_on() -> bool {
    std::env::var("SHIPSHAPE_BENCH_EVENTS").is_ok_and(|v| v == "1")
}

impl Bench {
    /// A namespace `bench<n>` and `ceil(n / PER_ENV)` Environments `bench<n>-<j>`, each
    /// with its own ECS cluster and a Fargate network.
    pub async fn new(n: usize) -> Bench {
        let c = Cluster::start().await;
        // The benchmarks measure the controller: no API-model or IAM checks in the proxy (the
        // e2e suite runs with them).
        let proxy = AwsProxy::start_with("127.0.0.1:0", support::moto(), shipshape_testkit::gate::Gate::off()).await.unwrap();
        proxy.set_deployment_delay(Duration::from_millis(500));
        let (subnet, sg) = support::network().await;
        let ns = format!("bench{n}");
        c.apply(&format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n")).success();
        let envs: Vec<String> = (0..n.div_ceil(PER_ENV).max(1)).map(|j| format!("{ns}-{j}")).collect();
        // SHIPSHAPE_BENCH_EVENTS=1: every Environment has an event queue (`events: {}`) and the
        // proxy emits AWS's events into moto's EventBridge.
        let events = if events_on() {
            proxy.emit_events(true);
            // The controllers' own writes (leader and standby): their CloudTrail events would
            // only be dropped on arrival (see AwsProxy::unrecorded).
            proxy.unrecorded("shipshape");
            proxy.unrecorded("standby");
            "  events: {}\n"
        } else {
            ""
        };
        for env in &envs {
            c.apply(&format!(
                "apiVersion: shipshape.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  region: eu-west-1\n  ecsCluster: {{name: {env}, create: true}}\n  network: {{subnets: [{subnet}], securityGroups: [{sg}]}}\n  allowedNamespaces: [{ns}]\n{events}"
            ))
            .success();
        }
        Bench { c, proxy, envs, ns }
    }

    /// The Environment of object `i`.
    pub fn env(&self, i: usize) -> &str {
        &self.envs[(i / PER_ENV).min(self.envs.len() - 1)]
    }

    /// How long to wait for `n` objects to converge: generous, growing with `n`.
    pub fn timeout(n: usize) -> Duration {
        Duration::from_secs(900.max(n as u64 / 4))
    }

    /// Applies `docs` (YAML documents) in one `kubectl apply --server-side`, as a GitOps
    /// tool re-applying a repository would.
    pub fn apply_all(&self, docs: &[String]) {
        let yaml = self.c.labelled(&docs.join("---\n"));
        self.c.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &yaml).success();
    }

    /// Starts the controller binary (its own process) against the proxy.
    pub fn controller(&self, extra: &[&str]) -> Controller {
        Controller::start_at(&self.c, &self.proxy.url(), extra)
    }

    /// Waits until `done(list)` counts `n`, polling every second; returns the seconds taken.
    pub async fn converge<K>(&self, n: usize, timeout: Duration, done: impl Fn(&K) -> bool) -> f64
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        self.converge_selected("", n, timeout, done).await
    }

    /// As `converge`, listing only the objects of a label `selector`: a few among 10,000 are
    /// waited for without the API server serializing all of them every second beside the
    /// controller being measured.
    pub async fn converge_selected<K>(&self, selector: &str, n: usize, timeout: Duration, done: impl Fn(&K) -> bool) -> f64
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        let api: Api<K> = Api::namespaced(self.c.client().await, &self.ns);
        let started = Instant::now();
        let params = ListParams::default().labels(selector);
        loop {
            // The API server under load may cut a large list short: asked again.
            let count = match api.list(&params).await {
                Ok(list) => list.items.iter().filter(|o| done(o)).count(),
                Err(_) => 0,
            };
            if count >= n || started.elapsed() > timeout {
                return started.elapsed().as_secs_f64();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The steady state of `controller` (`ctl`, process `pid`): one drift interval to settle
    /// after convergence, then two measured.
    pub async fn steady(&self, ctl: &Controller, pid: u32, controller: &str, drift: u64) -> Steady {
        tokio::time::sleep(Duration::from_secs(drift)).await;
        self.proxy.reset();
        let reconciles = || ctl.metric("shipshape_reconcile_total", &[controller]);
        let (api0, cpu0, rec0) = (self.api_requests(), cpu_seconds(pid), reconciles());
        tokio::time::sleep(Duration::from_secs(2 * drift)).await;
        Steady {
            calls: self.proxy.calls(),
            // The event queue's own traffic (ReceiveMessage, DeleteMessageBatch, the heartbeat's
            // PutEvents) changes nothing of the teams'.
            writes: self.proxy.writes().iter().filter(|c| c.service != "sqs" && c.service != "events").count(),
            reconciles: reconciles() - rec0,
            api_requests: self.api_requests().saturating_sub(api0),
            cpu_seconds: cpu_seconds(pid) - cpu0,
        }
    }

    /// Requests the controller's identity has made to the API server so far (audit log),
    /// Lease renewals left out: they are per replica, not per object (a get and an update
    /// every `--lease-retry-period`, 500 ms in the harness, 2 s by default).
    pub fn api_requests(&self) -> usize {
        self.c
            .audit_log()
            .unwrap_or_default()
            .iter()
            .filter(|e| e["user"]["username"] == support::CONTROLLER_USER && e["objectRef"]["resource"] != "leases")
            .count()
    }
}

/// Two drift intervals of a steady state.
pub struct Steady {
    /// The AWS calls made.
    pub calls: Vec<shipshape_testkit::awsproxy::Call>,
    /// How many of them wrote.
    pub writes: usize,
    /// Reconciles run.
    pub reconciles: f64,
    /// Requests to the API server.
    pub api_requests: usize,
    /// CPU the controller used.
    pub cpu_seconds: f64,
}

impl Steady {
    /// CPU milliseconds per reconcile.
    pub fn cpu_ms_per_reconcile(&self) -> f64 {
        if self.reconciles > 0.0 {
            self.cpu_seconds * 1000.0 / self.reconciles
        } else {
            0.0
        }
    }
}

/// Resident memory of a process, MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// CPU seconds (user + system) of a process.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The sizes to run (SHIPSHAPE_BENCH_SIZES, else `default`).
pub fn sizes(default: &str) -> Vec<usize> {
    std::env::var("SHIPSHAPE_BENCH_SIZES").unwrap_or_else(|_| default.into()).split(',').filter_map(|s| s.trim().parse().ok()).collect()
}

/// Runs each size in a fresh process (its own control plane and controller, so one size
/// cannot skew the next); the child runs `one(n)` and prints its table row.
pub fn per_size(default: &str, one: impl Fn(usize)) {
    if let Ok(n) = std::env::var("SHIPSHAPE_BENCH_ONE") {
        one(n.parse().unwrap());
        std::process::exit(0);
    }
    let exe = std::env::current_exe().unwrap();
    for n in sizes(default) {
        let status = std::process::Command::new(&exe).env("SHIPSHAPE_BENCH_ONE", n.to_string()).status().unwrap();
        assert!(status.success(), "size {n} failed (exit 3: the steady state wrote to AWS)");
    }
}

/// A tokio runtime for one size.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

/// The `p` quantile (0..=1) of `v` (sorted in place; NaN when empty).
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}
