//! N StackSpecs (one database and one bucket each) applied at once to the real control
//! plane, the controller binary in its own process as the chart's ServiceAccount, AWS = moto
//! behind the AWS test proxy: seconds to converge, then per drift interval AWS reads and
//! writes (writes must be 0), API requests (kube-apiserver's audit log), the controller's
//! CPU per reconcile and RSS.
//!
//! `cargo bench --bench stack_steady_state` (SHIPSHAPE_BENCH_SIZES=50,200).

mod common;

use std::time::Duration;

use shipshape::api::StackSpec;

const DRIFT: u64 = 10;

async fn run(n: usize) {
    let b = common::Bench::new(n).await;
    let docs: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "apiVersion: shipshape.dev/v1alpha1\nkind: StackSpec\nmetadata: {{name: s{i}, namespace: {ns}}}\nspec:\n  environment: {env}\n  driftInterval: {DRIFT}s\n  databases:\n    - {{name: db-{n}-{i}, engine: postgres, engineVersion: \"16.4\", instanceClass: db.t4g.micro, allocatedStorageGiB: 20}}\n  buckets:\n    - {{name: bucket-{n}-{i}, versioning: true}}\n",
                ns = b.ns,
                env = b.env(i)
            )
        })
        .collect();
    b.apply_all(&docs);
    let ctl = b.controller(&[]);
    let pid = ctl.pid().unwrap();
    let ready = |s: &StackSpec| s.status.as_ref().is_some_and(|st| st.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let converge = b.converge::<StackSpec>(n, common::Bench::timeout(n), ready).await;
    let converge_calls = b.proxy.calls().len() as f64 / n as f64;
    // Let the first drift pass after convergence settle, then measure two intervals.
    tokio::time::sleep(Duration::from_secs(DRIFT)).await;
    b.proxy.reset();
    let reconciles = || ctl.metric("shipshape_reconcile_total", &["stackspec"]);
    let (api0, cpu0, rec0) = (b.api_requests(), common::cpu_seconds(pid), reconciles());
    tokio::time::sleep(Duration::from_secs(2 * DRIFT)).await;
    let all = b.proxy.calls();
    let (calls, writes) = (all.len(), b.proxy.writes().len());
    let rds_reads = all.iter().filter(|c| c.operation == "DescribeDBInstances").count();
    let s3_reads = all.iter().filter(|c| c.service == "s3").count();
    let (cpu1, rec1) = (common::cpu_seconds(pid), reconciles());
    let cpu_ms = if rec1 > rec0 { (cpu1 - cpu0) * 1000.0 / (rec1 - rec0) } else { 0.0 };
    println!(
        "| {n} | {converge:.1} | {converge_calls:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {cpu_ms:.2} | {:.0} |",
        calls as f64 / 2.0,
        rds_reads as f64 / 2.0,
        s3_reads as f64 / 2.0,
        writes as f64 / 2.0,
        (rec1 - rec0) / 2.0,
        (b.api_requests() - api0) as f64 / 2.0,
        common::rss_mib(pid)
    );
    if writes > 0 {
        std::process::exit(3);
    }
}

fn main() {
    std::env::set_var("SHIPSHAPE_TEST_LOG", "info");
    if std::env::var("SHIPSHAPE_BENCH_ONE").is_err() {
        println!("StackSpec on the real control plane, the controller binary in its own process, AWS = moto behind the test proxy,");
        println!("drift interval {DRIFT}s (1 database + 1 bucket per StackSpec)");
        println!("| StackSpecs | converge s | AWS calls / stack to converge | AWS calls / interval | DescribeDBInstances / interval | S3 calls / interval | AWS writes / interval | reconciles / interval | API requests / interval (no Lease) | CPU ms / reconcile | RSS MiB |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    common::per_size("50,200", |n| common::runtime().block_on(run(n)));
}
