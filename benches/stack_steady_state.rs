//! N StackSpecs (one database and one bucket each) applied at once to the real control
//! plane, the controller binary in its own process as the chart's ServiceAccount, AWS = moto
//! behind the AWS test proxy: seconds to converge, then per drift interval AWS reads and
//! writes (writes must be 0), API requests (kube-apiserver's audit log), the controller's
//! CPU per reconcile and RSS.
//!
//! `cargo bench --bench stack_steady_state` (SHIPSHAPE_BENCH_SIZES=50,200).

mod common;

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
    let steady = b.steady(&ctl, pid, "stackspec", DRIFT).await;
    let all = &steady.calls;
    let rds_reads = all.iter().filter(|c| c.operation == "DescribeDBInstances").count();
    let s3_reads = all.iter().filter(|c| c.service == "s3").count();
    println!(
        "| {n} | {converge:.1} | {converge_calls:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} |",
        all.len() as f64 / 2.0,
        rds_reads as f64 / 2.0,
        s3_reads as f64 / 2.0,
        steady.writes as f64 / 2.0,
        steady.reconciles / 2.0,
        steady.api_requests as f64 / 2.0,
        steady.cpu_ms_per_reconcile(),
        common::rss_mib(pid)
    );
    if steady.writes > 0 {
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
