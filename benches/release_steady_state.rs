//! ServiceRelease figures:
//! 1. with in-memory AWS, seconds from a breaching measurement to the rollback's UpdateService call, and from
//!    an observed spec change to the UpdateService call (the controller's own share:
//!    state machine + AWS call; p50/p99 over many runs);
//! 2. N releases (default 100 and 500) applied at once to the real control plane, the
//!    controller binary in its own process as the chart's ServiceAccount, AWS = moto behind
//!    the AWS test proxy: seconds to converge, phases at the end, AWS calls per converged
//!    release, then per drift interval AWS calls by operation, writes (must be 0), API
//!    requests (kube-apiserver's audit log), the controller's CPU and RSS.
//!
//! `cargo bench --bench release_steady_state` (SHIPSHAPE_BENCH_SIZES=100,500).

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use kube::api::{Api, ListParams};
use shipshape::api::{Phase, RolloutStatus, ServiceRelease, ServiceReleaseStatus};
use shipshape::aws::{AwsProvider, ServiceRequest, Target};
use shipshape::core::analysis::Verdict;
use shipshape::core::rollout::{self, Commands, Config, DeploymentObs, Effect, ServiceObs};
use shipshape::testing::fakes::FakeAws;

const DRIFT: u64 = 10;

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn cfg() -> Config {
    Config {
        warmup: Duration::ZERO,
        interval: Duration::from_secs(30),
        successful_runs: 3,
        failure_limit: 0,
        progress_deadline: Duration::from_secs(600),
        auto_rollback: true,
        has_analysis: true,
        history_limit: 10,
        drift_interval: Duration::from_secs(60),
        on_unavailable: Default::default(),
    }
}

async fn latencies(runs: usize) {
    let aws = FakeAws::new();
    let clients = aws.clients(&Target { environment: "e".into(), region: "eu-west-1".into(), role_arn: None }).await.unwrap();
    let service = ServiceObs {
        arn: "arn".into(),
        task_definition: "td:2".into(),
        desired_count: 2,
        maximum_percent: Some(200),
        minimum_healthy_percent: Some(100),
        tags: Default::default(),
        network: None,
        deployments: vec![DeploymentObs {
            id: "d2".into(),
            task_definition: "td:2".into(),
            status: "PRIMARY".into(),
            rollout_state: "COMPLETED".into(),
            failed_tasks: 0,
            updated_at: None,
        }],
    };
    let analyzing = ServiceReleaseStatus {
        phase: Phase::Analyzing,
        stable_sha: Some("aaaaaaa".into()),
        stable_task_definition_arn: Some("td:1".into()),
        stable_spec_hash: Some("h1".into()),
        rollout: Some(RolloutStatus {
            sha: "bbbbbbb".into(),
            started_at: Utc::now(),
            deployment_id: Some("d2".into()),
            measurements: vec![],
            failures: 0,
            successes: 0,
            spec_hash: "h2".into(),
            task_definition_arn: Some("td:2".into()),
            deployed_at: Some(Utc::now()),
            last_measured_at: None,
            invalid_query: None,
            analysis_unavailable: None,
            unavailable_since: None,
            deadline_extension_seconds: 0,
        }),
        ..Default::default()
    };
    let healthy = ServiceReleaseStatus {
        phase: Phase::Healthy,
        rollout: None,
        stable_spec_hash: Some("h2".into()),
        stable_task_definition_arn: Some("td:2".into()),
        ..analyzing.clone()
    };
    let (mut breach, mut change) = (vec![], vec![]);
    let cfg = cfg();
    let commands = Commands::default();
    for i in 0..runs {
        for (status, spec_hash, td, round, out) in [
            (&analyzing, "h2", "td:2", Some((Verdict::Fail("error-rate = 0.2 is above max 0.01".into()), vec![])), &mut breach),
            (&healthy, "h3", "td:3", None, &mut change),
        ] {
            let t0 = Instant::now();
            let inputs = rollout::Inputs {
                now: Utc::now(),
                sha: "ccccccc",
                spec_hash,
                task_definition: td,
                replicas: 2,
                deployment_percents: (200, 100),
                service: Some(&service),
                network: &Default::default(),
                paused: false,
                frozen: false,
                commands: &commands,
                round,
                config: &cfg,
            };
            let step = rollout::step(status, &inputs);
            for e in &step.effects {
                let (Effect::UpdateService { task_definition } | Effect::RollBack { task_definition }) = e else { continue };
                let req = ServiceRequest {
                    cluster: "c".into(),
                    name: format!("s{i}"),
                    task_definition: task_definition.clone(),
                    desired_count: 2,
                    subnets: vec![],
                    security_groups: vec![],
                    assign_public_ip: false,
                    maximum_percent: 200,
                    minimum_healthy_percent: 100,
                    tags: Default::default(),
                    client_token: String::new(),
                };
                clients.ecs.update_service(&req).await.unwrap();
            }
            assert_eq!(step.effects.len(), 1);
            out.push(t0.elapsed().as_secs_f64());
        }
    }
    println!(
        "| breaching measurement -> rollback UpdateService | {:.1} µs | {:.1} µs |",
        percentile(&mut breach, 0.5) * 1e6,
        percentile(&mut breach, 0.99) * 1e6
    );
    println!(
        "| spec change observed -> UpdateService | {:.1} µs | {:.1} µs |",
        percentile(&mut change, 0.5) * 1e6,
        percentile(&mut change, 0.99) * 1e6
    );
}

async fn steady(n: usize) {
    let b = common::Bench::new(n).await;
    let docs: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: svc{i}, namespace: {ns}}}\nspec:\n  environment: {env}\n  driftInterval: {DRIFT}s\n  image: {{repository: r, gitSha: abcdef1}}\n  task: {{cpu: 256, memory: 512}}\n",
                ns = b.ns,
                env = b.env
            )
        })
        .collect();
    b.apply_all(&docs);
    let ctl = b.controller(&[]);
    let pid = ctl.pid().unwrap();
    let healthy = |r: &ServiceRelease| r.status.as_ref().is_some_and(|s| s.phase == Phase::Healthy);
    let converge = b.converge::<ServiceRelease>(n, Duration::from_secs(900), healthy).await;
    let api: Api<ServiceRelease> = Api::namespaced(b.c.client().await, &b.ns);
    let list = api.list(&ListParams::default()).await.unwrap();
    let mut phases = std::collections::BTreeMap::<String, usize>::new();
    for r in &list.items {
        let p = r.status.as_ref().map(|s| format!("{:?}", s.phase)).unwrap_or_else(|| "none".into());
        *phases.entry(p).or_default() += 1;
    }
    if phases.len() > 1 || !phases.contains_key("Healthy") {
        // Not converged: what did the controller run into?
        let logs = ctl.logs();
        let mut seen = std::collections::BTreeSet::new();
        for line in logs.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")) {
            let key: String = line.chars().skip(30).take(160).collect();
            if seen.insert(key.clone()) && seen.len() <= 40 {
                eprintln!("controller: {key}");
            }
        }
        for r in list.items.iter().filter(|r| r.status.as_ref().is_none_or(|s| s.phase != Phase::Healthy)).take(5) {
            eprintln!("not Healthy: {}: {:?}", r.metadata.name.clone().unwrap_or_default(), r.status.as_ref().map(|s| &s.conditions));
        }
    }
    let phases: Vec<String> = phases.iter().map(|(p, c)| format!("{c} {p}")).collect();
    let converge_calls = b.proxy.calls().len() as f64 / n as f64;
    // Let the first drift pass after convergence settle, then measure two intervals.
    tokio::time::sleep(Duration::from_secs(DRIFT)).await;
    b.proxy.reset();
    let (api0, cpu0) = (b.api_requests(), common::cpu_seconds(pid));
    tokio::time::sleep(Duration::from_secs(2 * DRIFT)).await;
    let calls = b.proxy.calls();
    let writes = b.proxy.writes().len();
    let per = |op: &str| calls.iter().filter(|c| c.operation == op).count() as f64 / 2.0;
    let api_per = (b.api_requests() - api0) as f64 / 2.0;
    let cpu = common::cpu_seconds(pid) - cpu0;
    println!(
        "| {n} | {converge:.1} | {} | {converge_calls:.1} | {:.0} | {:.0} | {:.0} | {:.1} | {api_per:.0} | {:.2} | {:.0} |",
        phases.join(", "),
        calls.len() as f64 / 2.0,
        per("DescribeServices"),
        per("GetCallerIdentity"),
        writes as f64 / 2.0,
        cpu / 2.0,
        common::rss_mib(pid)
    );
    if writes > 0 {
        std::process::exit(3);
    }
}

fn main() {
    std::env::set_var("SHIPSHAPE_TEST_LOG", "info");
    if std::env::var("SHIPSHAPE_BENCH_ONE").is_err() {
        let rt = common::runtime();
        println!("Controller latency with in-memory AWS (2,000 runs)");
        println!("| path | p50 | p99 |");
        println!("|---|---:|---:|");
        rt.block_on(latencies(2000));
        println!();
        println!("ServiceRelease on the real control plane: N releases in one `kubectl apply --server-side`, the controller");
        println!("binary in its own process as the chart's ServiceAccount, AWS = moto behind the test proxy, drift interval {DRIFT}s");
        println!("| releases | converge s | phases | AWS calls / release to converge | AWS calls / interval | DescribeServices / interval | GetCallerIdentity / interval | AWS writes / interval | API requests / interval | CPU s / interval | RSS MiB |");
        println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    common::per_size("100,500", |n| common::runtime().block_on(steady(n)));
}
