//! Steady state of N StackSpecs (one database and one bucket each) against in-memory AWS:
//! per drift interval, AWS reads and writes (writes must be 0), reconciles, CPU per
//! reconcile and RSS. The controller runs in-process with the test API server, so CPU and
//! RSS include the API server's share: read them as upper bounds.
//!
//! `cargo bench --bench stack_steady_state` (set SHIPSHAPE_BENCH_SIZES=100,500 to choose N).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use shipshape::api::StackSpec;
use shipshape::controller::{self, RunConfig, Settings};
use shipshape::metrics::Metrics;
use shipshape::testing::apiserver::ApiServer;
use shipshape::testing::fakes::FakeAws;

const DRIFT: u64 = 10;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn reconciles(m: &Metrics) -> f64 {
    m.render()
        .lines()
        .filter(|l| l.starts_with("shipshape_reconcile_total{controller=\"stackspec\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn run(n: usize) -> (usize, f64, f64, f64, f64, f64, f64) {
    let server = ApiServer::start("127.0.0.1:0").await.unwrap();
    let crds: Vec<serde_json::Value> = shipshape::api::crds().iter().map(|c| serde_json::to_value(c).unwrap()).collect();
    server.install_crds(&crds);
    let ns = format!("bench{n}");
    server.create_namespace(&ns);
    let client = server.client().await;
    let envs: Api<shipshape::api::Environment> = Api::all(client.clone());
    envs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"apiVersion": "shipshape.dev/v1alpha1", "kind": "Environment", "metadata": {"name": ns}, "spec": {"region": "eu-west-1", "ecsCluster": {"name": ns, "create": true}, "allowedNamespaces": [ns]}})).unwrap(),
    )
    .await
    .unwrap();
    let stacks: Api<StackSpec> = Api::namespaced(client.clone(), &ns);
    for i in 0..n {
        let s = json!({"apiVersion": "shipshape.dev/v1alpha1", "kind": "StackSpec", "metadata": {"name": format!("s{i}")}, "spec": {
            "environment": ns, "driftInterval": format!("{DRIFT}s"),
            "databases": [{"name": format!("db-{n}-{i}"), "engine": "postgres", "engineVersion": "16.4", "instanceClass": "db.t4g.micro", "allocatedStorageGiB": 20}],
            "buckets": [{"name": format!("bucket-{n}-{i}"), "versioning": true}],
        }});
        stacks.create(&PostParams::default(), &serde_json::from_value(s).unwrap()).await.unwrap();
    }
    let aws = FakeAws::new();
    let metrics = Metrics::new();
    let cfg = RunConfig {
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        lease: None,
        settings: Settings::default(),
        aws: Arc::new(aws.clone()),
        metrics: metrics.clone(),
        client: Some(client.clone()),
    };
    tokio::spawn(controller::run(cfg));
    let started = Instant::now();
    loop {
        let list = stacks.list(&ListParams::default()).await.unwrap();
        let ready = list
            .items
            .iter()
            .filter(|s| s.status.as_ref().is_some_and(|st| st.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")))
            .count();
        if ready == n {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "only {ready}/{n} Ready");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let converge = started.elapsed().as_secs_f64();
    // Let the first drift pass after convergence settle, then measure two intervals.
    tokio::time::sleep(Duration::from_secs(DRIFT)).await;
    aws.reset_counts();
    let (cpu0, rec0) = (cpu_seconds(), reconciles(&metrics));
    tokio::time::sleep(Duration::from_secs(2 * DRIFT)).await;
    let (reads, writes) = aws.totals();
    let (cpu1, rec1) = (cpu_seconds(), reconciles(&metrics));
    let recs = (rec1 - rec0) / 2.0;
    let cpu_ms = if recs > 0.0 { (cpu1 - cpu0) * 1000.0 / (rec1 - rec0) } else { 0.0 };
    (n, converge, reads as f64 / 2.0, writes as f64 / 2.0, recs, cpu_ms, rss_mib())
}

fn main() {
    // Each size runs in a fresh process so one size's controller cannot skew the next.
    if let Ok(n) = std::env::var("SHIPSHAPE_BENCH_ONE") {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let (n, converge, reads, writes, recs, cpu, rss) = rt.block_on(run(n.parse().unwrap()));
        println!("| {n} | {converge:.1} | {reads:.0} | {writes:.0} | {recs:.0} | {cpu:.2} | {rss:.0} |");
        std::process::exit(if writes == 0.0 { 0 } else { 3 });
    }
    let sizes: Vec<usize> = std::env::var("SHIPSHAPE_BENCH_SIZES")
        .unwrap_or_else(|_| "100,500,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("StackSpec steady state, in-memory AWS, drift interval {DRIFT}s (1 database + 1 bucket per StackSpec)");
    println!("| StackSpecs | converge s | AWS reads / interval | AWS writes / interval | reconciles / interval | CPU ms / reconcile* | RSS MiB* |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let exe = std::env::current_exe().unwrap();
    for n in sizes {
        let status = std::process::Command::new(&exe).env("SHIPSHAPE_BENCH_ONE", n.to_string()).status().unwrap();
        assert!(status.success(), "size {n} failed (exit 3: the steady state wrote to AWS)");
    }
    println!("* includes the in-process test API server");
}
