//! What the steady-state benchmarks share: an in-process test API server with one
//! Environment, the controller running in-process against in-memory AWS, and the
//! per-size process runner.
#![allow(dead_code)]

use std::sync::Arc;

use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::json;
use shipshape::controller::{self, RunConfig, Settings};
use shipshape::metrics::Metrics;
use shipshape::testing::apiserver::ApiServer;
use shipshape::testing::fakes::FakeAws;

/// The test API server, a client, and a namespace `bench<n>` with an Environment of that name.
pub async fn cluster(n: usize) -> (ApiServer, Client, String) {
    let server = ApiServer::start("127.0.0.1:0").await.unwrap();
    let crds: Vec<serde_json::Value> = shipshape::api::crds().iter().map(|c| serde_json::to_value(c).unwrap()).collect();
    server.install_crds(&crds);
    let ns = format!("bench{n}");
    server.create_namespace(&ns);
    let client = server.client().await;
    let env = json!({"apiVersion": "shipshape.dev/v1alpha1", "kind": "Environment", "metadata": {"name": ns},
        "spec": {"region": "eu-west-1", "ecsCluster": {"name": ns, "create": true}, "allowedNamespaces": [ns]}});
    Api::<shipshape::api::Environment>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(env).unwrap())
        .await
        .unwrap();
    (server, client, ns)
}

/// Starts the controller in-process (no leader election) against `aws`.
pub fn start_controller(client: Client, aws: FakeAws, metrics: Metrics) {
    let cfg = RunConfig {
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        lease: None,
        settings: Settings::default(),
        aws: Arc::new(aws),
        metrics,
        client: Some(client),
    };
    tokio::spawn(controller::run(cfg));
}

/// Reconciles so far by one controller.
pub fn reconciles(m: &Metrics, controller: &str) -> f64 {
    let prefix = format!("shipshape_reconcile_total{{controller=\"{controller}\"");
    m.render().lines().filter(|l| l.starts_with(&prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// Resident memory of this process.
pub fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// CPU seconds (user + system) of this process.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The sizes to run (SHIPSHAPE_BENCH_SIZES, else `default`).
pub fn sizes(default: &str) -> Vec<usize> {
    std::env::var("SHIPSHAPE_BENCH_SIZES").unwrap_or_else(|_| default.into()).split(',').filter_map(|s| s.trim().parse().ok()).collect()
}

/// Runs each size in a fresh process (so one size's controller cannot skew the next);
/// the child runs `one(n)` and prints its table row.
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
