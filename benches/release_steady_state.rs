//! ServiceRelease figures, with in-memory AWS:
//! 1. seconds from a breaching measurement to the rollback's UpdateService call, and from
//!    an observed spec change to the UpdateService call (the controller's own share:
//!    state machine + AWS call; p50/p99 over many runs);
//! 2. steady state of N releases (default 1,000 and 5,000): reconciles per second, AWS
//!    reads per drift interval (DescribeServices batched 10 per call), writes (must be 0),
//!    RSS. The controller runs in-process with the test API server, so RSS includes it.
//!
//! `cargo bench --bench release_steady_state` (SHIPSHAPE_BENCH_SIZES=1000,5000).

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use shipshape::api::{Phase, RolloutStatus, ServiceRelease, ServiceReleaseStatus};
use shipshape::aws::{AwsProvider, ServiceRequest, Target};
use shipshape::core::analysis::Verdict;
use shipshape::core::rollout::{self, Commands, Config, DeploymentObs, Effect, ServiceObs};
use shipshape::metrics::Metrics;
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
        deployments: vec![DeploymentObs {
            id: "d2".into(),
            task_definition: "td:2".into(),
            status: "PRIMARY".into(),
            rollout_state: "COMPLETED".into(),
            failed_tasks: 0,
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
                paused: false,
                frozen: false,
                commands: &commands,
                round,
                config: &cfg,
            };
            let step = rollout::step(status, &inputs);
            for e in &step.effects {
                let Effect::UpdateService { task_definition } = e else { continue };
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
    let (_server, client, ns) = common::cluster(n).await;
    let api: Api<ServiceRelease> = Api::namespaced(client.clone(), &ns);
    for i in 0..n {
        let r = json!({"apiVersion": "shipshape.dev/v1alpha1", "kind": "ServiceRelease", "metadata": {"name": format!("svc{i}")}, "spec": {
            "environment": ns, "driftInterval": format!("{DRIFT}s"),
            "image": {"repository": "r", "gitSha": "abcdef1"}, "task": {"cpu": 256, "memory": 512},
        }});
        api.create(&PostParams::default(), &serde_json::from_value(r).unwrap()).await.unwrap();
    }
    let (aws, metrics) = (FakeAws::new(), Metrics::new());
    common::start_controller(client.clone(), aws.clone(), metrics.clone());
    let started = Instant::now();
    loop {
        let list = api.list(&ListParams::default()).await.unwrap();
        let healthy = list.items.iter().filter(|r| r.status.as_ref().is_some_and(|s| s.phase == Phase::Healthy)).count();
        if healthy == n {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(900), "only {healthy}/{n} Healthy");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let converge = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(DRIFT)).await;
    aws.reset_counts();
    let r0 = common::reconciles(&metrics, "servicerelease");
    tokio::time::sleep(Duration::from_secs(2 * DRIFT)).await;
    let (reads, writes) = aws.totals();
    let describes = aws.count("DescribeServices") as f64 / 2.0;
    let per_sec = (common::reconciles(&metrics, "servicerelease") - r0) / (2.0 * DRIFT as f64);
    println!(
        "| {n} | {converge:.1} | {per_sec:.0} | {:.0} | {describes:.0} | {:.0} | {:.0} |",
        reads as f64 / 2.0,
        writes as f64 / 2.0,
        common::rss_mib()
    );
    if writes > 0 {
        std::process::exit(3);
    }
}

fn main() {
    if std::env::var("SHIPSHAPE_BENCH_ONE").is_err() {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        println!("Controller latency with in-memory AWS (2,000 runs)");
        println!("| path | p50 | p99 |");
        println!("|---|---:|---:|");
        rt.block_on(latencies(2000));
        println!();
        println!("ServiceRelease steady state, in-memory AWS, drift interval {DRIFT}s");
        println!("| releases | converge s | reconciles / s | AWS reads / interval | of which DescribeServices | AWS writes / interval | RSS MiB* |");
        println!("|---:|---:|---:|---:|---:|---:|---:|");
    }
    common::per_size("1000,5000", |n| tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(steady(n)));
    println!("* includes the in-process test API server");
}
