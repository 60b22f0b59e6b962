//! Steady state of N StackSpecs (one database and one bucket each) against in-memory AWS:
//! per drift interval, AWS reads and writes (writes must be 0), reconciles, CPU per
//! reconcile and RSS. The controller runs in-process with the test API server, so CPU and
//! RSS include the API server's share: read them as upper bounds.
//!
//! `cargo bench --bench stack_steady_state` (SHIPSHAPE_BENCH_SIZES=100,500,1000).

mod common;

use std::time::{Duration, Instant};

use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use shipshape::api::StackSpec;
use shipshape::metrics::Metrics;
use shipshape::testing::fakes::FakeAws;

const DRIFT: u64 = 10;

async fn run(n: usize) {
    let (_server, client, ns) = common::cluster(n).await;
    let stacks: Api<StackSpec> = Api::namespaced(client.clone(), &ns);
    for i in 0..n {
        let s = json!({"apiVersion": "shipshape.dev/v1alpha1", "kind": "StackSpec", "metadata": {"name": format!("s{i}")}, "spec": {
            "environment": ns, "driftInterval": format!("{DRIFT}s"),
            "databases": [{"name": format!("db-{n}-{i}"), "engine": "postgres", "engineVersion": "16.4", "instanceClass": "db.t4g.micro", "allocatedStorageGiB": 20}],
            "buckets": [{"name": format!("bucket-{n}-{i}"), "versioning": true}],
        }});
        stacks.create(&PostParams::default(), &serde_json::from_value(s).unwrap()).await.unwrap();
    }
    let (aws, metrics) = (FakeAws::new(), Metrics::new());
    common::start_controller(client.clone(), aws.clone(), metrics.clone());
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
    let (cpu0, rec0) = (common::cpu_seconds(), common::reconciles(&metrics, "stackspec"));
    tokio::time::sleep(Duration::from_secs(2 * DRIFT)).await;
    let (reads, writes) = aws.totals();
    let (cpu1, rec1) = (common::cpu_seconds(), common::reconciles(&metrics, "stackspec"));
    let cpu_ms = if rec1 > rec0 { (cpu1 - cpu0) * 1000.0 / (rec1 - rec0) } else { 0.0 };
    println!(
        "| {n} | {converge:.1} | {:.0} | {:.0} | {:.0} | {cpu_ms:.2} | {:.0} |",
        reads as f64 / 2.0,
        writes as f64 / 2.0,
        (rec1 - rec0) / 2.0,
        common::rss_mib()
    );
    if writes > 0 {
        std::process::exit(3);
    }
}

fn main() {
    if std::env::var("SHIPSHAPE_BENCH_ONE").is_err() {
        println!("StackSpec steady state, in-memory AWS, drift interval {DRIFT}s (1 database + 1 bucket per StackSpec)");
        println!("| StackSpecs | converge s | AWS reads / interval | AWS writes / interval | reconciles / interval | CPU ms / reconcile* | RSS MiB* |");
        println!("|---:|---:|---:|---:|---:|---:|---:|");
    }
    common::per_size("100,500,1000", |n| tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(run(n)));
    println!("* includes the in-process test API server");
}
