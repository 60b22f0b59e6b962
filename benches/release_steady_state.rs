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
use common::support::Controller;
use kube::api::{Api, ListParams};
use shipshape::api::{Phase, RolloutStatus, ServiceRelease, ServiceReleaseStatus, StackSpec};
use shipshape::aws::{AwsProvider, ServiceRequest, Target};
use shipshape::core::analysis::Verdict;
use shipshape::core::rollout::{self, Commands, Config, DeploymentObs, Effect, ServiceObs, TrafficStep};
use shipshape_testkit::fakes::FakeAws;

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
        steps: vec![TrafficStep { weight: 100, bake: Duration::ZERO }],
        on_failure: Default::default(),
        native: false,
        pre_deploy: vec![],
        snapshot_retention: None,
        deploy_poll: shipshape::core::rollout::DEPLOY_POLL,
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
        canary: None,
        service_deployment: None,
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
            spec_hash: "h2".into(),
            task_definition_arn: Some("td:2".into()),
            deployed_at: Some(Utc::now()),
            ..Default::default()
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
                hold: None,
                commands: &commands,
                round,
                config: &cfg,
                pre_deploy: None,
            };
            let step = rollout::step(status, &inputs);
            for e in &step.effects {
                let (Effect::UpdateService { task_definition } | Effect::RollBack { task_definition }) = e else { continue };
                let req = ServiceRequest {
                    desired_count: 2,
                    ..shipshape_testkit::fakes::service_request("c", &format!("s{i}"), task_definition)
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

/// Release `svc<i>` of the bench's namespace at `sha`, labelled `bench-sha: <sha>` (a group
/// of releases is waited for by its label).
fn release(b: &common::Bench, i: usize, sha: &str) -> String {
    format!(
        "apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: svc{i}, namespace: {ns}, labels: {{bench-sha: {sha}}}}}\nspec:\n  environment: {env}\n  driftInterval: {DRIFT}s\n  image: {{repository: r, gitSha: {sha}}}\n  task: {{cpu: 256, memory: 512}}\n",
        ns = b.ns,
        env = b.env(i)
    )
}

/// The bucket bound under which a fraction `q` of a histogram's observations fall (from the
/// controller's /metrics: `<name>_bucket{le="…"}` lines).
fn histogram_quantile(metrics: &str, name: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}_bucket{{le=\"")))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            Some((if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? }, count.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let total = buckets.last()?.1;
    (total > 0.0).then(|| buckets.iter().find(|(_, c)| *c >= q * total).map(|(le, _)| *le)).flatten()
}

/// When `svc`'s first accepted UpdateService (the bad SHA) and its second (the rollback) came.
fn bad_and_back(calls: &[shipshape_testkit::awsproxy::Call], svc: &str) -> Option<(Instant, Instant)> {
    let mut updates = calls.iter().filter(|c| c.operation == "UpdateService" && !c.faulted && c.service_name.as_deref() == Some(svc));
    Some((updates.next()?.at?, updates.next()?.at?))
}

/// For each service, seconds from its first UpdateService (the bad SHA) plus the ECS
/// deployment delay (when ECS reports FAILED) to the next one (the rollback).
fn rollback_latencies(calls: &[shipshape_testkit::awsproxy::Call], services: &[String], delay: Duration) -> Vec<f64> {
    services
        .iter()
        .filter_map(|svc| {
            let (bad, back) = bad_and_back(calls, svc)?;
            Some(back.checked_duration_since(bad + delay).unwrap_or_default().as_secs_f64())
        })
        .collect()
}

/// Where a rollback's time went, per service (events on): ECS FAILED -> the proxy finding the
/// deployment ended -> moto taking the PutEvents -> the controller's first DescribeServices of
/// the service after that -> the rollback's UpdateService. Printed as p50 / p99 of each part.
fn rollback_parts(
    calls: &[shipshape_testkit::awsproxy::Call],
    announced: &[(String, Instant, Instant)],
    services: &[String],
    delay: Duration,
) {
    let mut parts: [Vec<f64>; 4] = Default::default();
    let secs = |a: Instant, b: Instant| b.checked_duration_since(a).unwrap_or_default().as_secs_f64();
    for svc in services {
        let Some((bad, back)) = bad_and_back(calls, svc) else { continue };
        let failed = bad + delay;
        let Some(&(_, found, put)) = announced.iter().find(|(arn, _, _)| arn.ends_with(&format!("/{svc}"))) else { continue };
        let named = |d: &String| d == svc || d.ends_with(&format!("/{svc}"));
        let Some(read) = calls
            .iter()
            .filter(|c| {
                c.operation == "DescribeServices" && c.at.is_some_and(|t| t >= failed && t <= back) && c.described.iter().any(named)
            })
            .find_map(|c| c.at)
        else {
            continue;
        };
        for (i, v) in [secs(failed, found), secs(found, put), secs(put, read), secs(read, back)].into_iter().enumerate() {
            parts[i].push(v);
        }
    }
    let q = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN)
    };
    let names = [
        "FAILED -> found by the proxy",
        "found -> PutEvents answered",
        "put -> controller's DescribeServices",
        "read -> rollback UpdateService",
    ];
    for (name, v) in names.iter().zip(parts.iter_mut()) {
        eprintln!("rollback part {name}: n {} p50 {:.3} s p99 {:.3} s", v.len(), q(v, 0.5), q(v, 0.99));
    }
}

/// Seconds from each hand change (a write not signed by the controller, answered by AWS) of
/// `operation` on one of `names` to the controller's next accepted `operation` on it: the
/// put-back. Waits up to `within` for all of them; a change never put back counts as NaN.
async fn put_back(b: &common::Bench, operation: &str, names: &[String], within: Duration) -> Vec<f64> {
    let of = |c: &shipshape_testkit::awsproxy::Call, name: &str| {
        c.operation == operation && !c.faulted && (c.service_name.as_deref() == Some(name) || c.resource.as_deref() == Some(name))
    };
    let deadline = Instant::now() + within;
    loop {
        let calls = b.proxy.calls();
        let found: Vec<Option<f64>> = names
            .iter()
            .map(|name| {
                let hand = calls.iter().find(|c| of(c, name) && c.access_key != "shipshape")?.at?;
                let back = calls.iter().filter(|c| of(c, name) && c.access_key == "shipshape").filter_map(|c| c.at).find(|t| *t > hand)?;
                Some(back.duration_since(hand).as_secs_f64())
            })
            .collect();
        if found.iter().all(Option::is_some) || Instant::now() > deadline {
            return found.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Hand changes under the drift load, made at once by another IAM identity (CloudTrail records
/// them): `k` services' desired counts, and the versioning and instance class of `m` StackSpecs'
/// buckets and databases (applied now, one per Environment in turn). Returns the put-back
/// seconds of services, buckets and databases.
async fn hand_changes(b: &common::Bench, n: usize, k: usize) -> [Vec<f64>; 3] {
    let m = k.min(20);
    let stacks: Vec<String> = (0..m)
        .map(|j| {
            format!(
                "apiVersion: shipshape.dev/v1alpha1\nkind: StackSpec\nmetadata: {{name: hand{j}, namespace: {ns}}}\nspec:\n  environment: {env}\n  driftInterval: {DRIFT}s\n  databases:\n    - {{name: hand-db-{n}-{j}, engine: postgres, engineVersion: \"16.4\", instanceClass: db.t4g.micro, allocatedStorageGiB: 20}}\n  buckets:\n    - {{name: hand-{n}-{j}, versioning: true}}\n",
                ns = b.ns,
                env = b.envs[j % b.envs.len()]
            )
        })
        .collect();
    b.apply_all(&stacks);
    let ready = |s: &StackSpec| s.status.as_ref().is_some_and(|st| st.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    b.converge::<StackSpec>(m, common::Bench::timeout(n), ready).await;
    // Services spread over every Environment, none of those the rollbacks and the failover use.
    let step = (n.saturating_sub(2 * k) / k).max(1);
    let services: Vec<usize> = (2 * k..n).step_by(step).take(k).collect();
    let (buckets, dbs): (Vec<String>, Vec<String>) = (0..m).map(|j| (format!("hand-{n}-{j}"), format!("hand-db-{n}-{j}"))).unzip();
    let admin = common::support::aws_at(&b.proxy.url(), "eu-west-1").await;
    let larger = shipshape::core::stack::DbModify { instance_class: Some("db.t4g.large".into()), ..Default::default() };
    // A settled moment: the StackSpecs' creation is over.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let url = b.proxy.url();
    let svc_changes = services.iter().map(|&i| {
        let body = serde_json::json!({"cluster": b.env(i), "service": format!("svc{i}"), "desiredCount": 7});
        let url = url.clone();
        async move { common::support::ecs_call(&url, "test", "UpdateService", body).await.status().is_success() }
    });
    let bucket_changes = buckets.iter().map(|name| async { admin.s3.put_versioning(name, false).await.is_ok() });
    let db_changes = dbs.iter().map(|name| async { admin.rds.modify_db_instance(name, &larger).await.is_ok() });
    let (a, b2, c) = tokio::join!(
        futures::future::join_all(svc_changes),
        futures::future::join_all(bucket_changes),
        futures::future::join_all(db_changes)
    );
    let refused = [a, b2, c].iter().flatten().filter(|ok| !**ok).count();
    if refused > 0 {
        eprintln!("{refused} hand changes were refused");
    }
    let names: Vec<String> = services.iter().map(|i| format!("svc{i}")).collect();
    let within = Duration::from_secs(120);
    [
        put_back(b, "UpdateService", &names, within).await,
        put_back(b, "PutBucketVersioning", &buckets, within).await,
        put_back(b, "ModifyDBInstance", &dbs, within).await,
    ]
}

async fn steady(n: usize) {
    let b = common::Bench::new(n).await;
    let docs: Vec<String> = (0..n).map(|i| release(&b, i, "abcdef1")).collect();
    b.apply_all(&docs);
    let ctl = b.controller(&[]);
    let pid = ctl.pid().unwrap();
    let healthy = |r: &ServiceRelease| r.status.as_ref().is_some_and(|s| s.phase == Phase::Healthy);
    let converge = b.converge::<ServiceRelease>(n, common::Bench::timeout(n), healthy).await;
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
            // What went wrong, not which object: the error text after `error=`.
            let plain: String = line.split('\u{1b}').map(|part| part.split_once('m').map_or(part, |(_, rest)| rest)).collect();
            let key: String = plain.split("error=").nth(1).unwrap_or(&plain).chars().take(160).collect();
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
    // With events the drift checks come 10 times less often: measured over 20 intervals
    // instead of 2, reported per interval as without.
    let windows: u32 = if common::events_on() { 20 } else { 2 };
    if common::events_on() {
        // The convergence's 10,000 deployment events may still be arriving (moto delivers
        // them at its own pace): the steady state starts once they stopped for 30 s (each
        // wakes its release to read its service, which is not what steady state costs).
        let deployments = || ctl.metric("shipshape_aws_events_total", &["ECS Deployment State Change"]);
        let (mut last, mut since, started) = (deployments(), Instant::now(), Instant::now());
        while since.elapsed() < Duration::from_secs(30) && started.elapsed() < Duration::from_secs(900) {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let now = deployments();
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        eprintln!("deployment events drained {:.0} s after convergence ({last} handled)", started.elapsed().as_secs_f64());
    }
    let steady = b.steady(&ctl, pid, "servicerelease", DRIFT * u64::from(windows) / 2).await;
    let (calls, writes, cpu, cpu_ms) = (&steady.calls, steady.writes, steady.cpu_seconds, steady.cpu_ms_per_reconcile());
    let w = f64::from(windows);
    let per = |op: &str| calls.iter().filter(|c| c.operation == op).count() as f64 / w;
    let api_per = steady.api_requests as f64 / w;
    let rss = common::rss_mib(pid);
    if common::events_on() {
        let mut ops = std::collections::BTreeMap::<&str, usize>::new();
        for c in calls.iter() {
            *ops.entry(c.operation.as_str()).or_default() += 1;
        }
        eprintln!(
            "steady calls per interval by operation: {:?}",
            ops.iter().map(|(o, n)| format!("{o} {:.1}", *n as f64 / w)).collect::<Vec<_>>()
        );
    }
    if writes > 0 {
        eprintln!("the steady state wrote to AWS: {writes} calls");
        std::process::exit(3);
    }

    // Rollbacks under the drift load: k releases move to a SHA whose ECS deployment fails.
    let k = (n / 10).clamp(2, 50);
    let delay = Duration::from_millis(500);
    let rolled_back = |r: &ServiceRelease| r.status.as_ref().is_some_and(|s| s.phase == Phase::RolledBack);
    let bad: Vec<String> = (0..k).map(|i| format!("svc{i}")).collect();
    b.proxy.reset();
    for svc in &bad {
        b.proxy.fail_next_deployment(svc, 2);
    }
    b.apply_all(&(0..k).map(|i| release(&b, i, "badbad1")).collect::<Vec<_>>());
    b.converge_selected::<ServiceRelease>("bench-sha=badbad1", k, common::Bench::timeout(n), rolled_back).await;
    let mut seen_to_call = rollback_latencies(&b.proxy.calls(), &bad, delay);
    if common::events_on() {
        rollback_parts(&b.proxy.calls(), &b.proxy.announced(), &bad, delay);
    }
    let verdict_p99 = ctl.scrape().and_then(|m| histogram_quantile(&m, "shipshape_rollback_seconds", 0.99));
    if common::events_on() {
        // What the event queues did (to stderr: the table keeps its columns).
        let m = ctl.scrape().unwrap_or_default();
        let lag = |q| histogram_quantile(&m, "shipshape_aws_event_lag_seconds", q).map_or("-".into(), |s| format!("≤ {s} s"));
        eprintln!("event lag (event time -> handled): p50 {}, p99 {}", lag(0.5), lag(0.99));
        for l in m.lines().filter(|l| l.starts_with("shipshape_aws_event") && !l.contains("_bucket")) {
            eprintln!("{l}");
        }
    }

    // Hand changes put back: after an event (events on), at the next drift read (off).
    b.proxy.reset();
    let mut hand = hand_changes(&b, n, k).await;
    let [svc_back, bucket_back, db_back] = &mut hand;
    for (what, v) in [("services", &mut *svc_back), ("buckets", &mut *bucket_back), ("databases", &mut *db_back)] {
        let missed = v.iter().filter(|s| s.is_nan()).count();
        eprintln!(
            "hand change -> put back, {what}: n {} p50 {:.2} s p99 {:.2} s ({missed} not put back within 120 s)",
            v.len(),
            common::pct(v, 0.5),
            common::pct(v, 0.99)
        );
    }
    let hand_p99 = |v: &mut Vec<f64>| {
        if v.iter().any(|s| s.is_nan()) {
            "missed".to_string()
        } else {
            format!("{:.2}", common::pct(v, 0.99))
        }
    };
    let hand_col = format!("{} / {} / {}", hand_p99(svc_back), hand_p99(bucket_back), hand_p99(db_back));

    // Failover: the next k releases' deployments fail while the leader dies; a standby that
    // was waiting takes the lease and rolls them back.
    let standby = Controller::start_as(&b.c, &b.proxy.url(), &[], "standby");
    let standby_identity = format!("test-{}", standby.metrics_addr.rsplit(':').next().unwrap_or_default());
    let next: Vec<String> = (k..2 * k).map(|i| format!("svc{i}")).collect();
    b.proxy.reset();
    // ECS reports these failures only after the leader is gone.
    b.proxy.set_deployment_delay(Duration::from_secs(3));
    for svc in &next {
        b.proxy.fail_next_deployment(svc, 2);
    }
    b.apply_all(&(k..2 * k).map(|i| release(&b, i, "badbad2")).collect::<Vec<_>>());
    // Kill the leader once the bad deployments have started (their rollbacks are pending).
    let started = Instant::now();
    while b
        .proxy
        .calls()
        .iter()
        .filter(|c| c.operation == "UpdateService" && c.service_name.as_ref().is_some_and(|s| next.contains(s)))
        .count()
        < next.len()
        && started.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ctl = ctl;
    ctl.kill();
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(b.c.client().await, "shipshape");
    let lease_name = format!("shipshape-{}", b.c.id);
    let took_lease = loop {
        let holder = leases.get_opt(&lease_name).await.ok().flatten().and_then(|l| l.spec?.holder_identity);
        if holder.as_deref() == Some(standby_identity.as_str()) || started.elapsed() > Duration::from_secs(300) {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    b.converge_selected::<ServiceRelease>("bench-sha=badbad2", k, common::Bench::timeout(n), rolled_back).await;
    // A fresh leader confirms every release against ECS: seconds from taking the Lease until
    // its DescribeServices calls have covered all N services.
    let all_checked = {
        let deadline = Instant::now() + common::Bench::timeout(n);
        loop {
            let mut seen = std::collections::HashSet::new();
            let covered =
                b.proxy.calls().iter().filter(|c| c.operation == "DescribeServices" && c.access_key == "standby" && !c.faulted).find_map(
                    |c| {
                        seen.extend(c.described.iter().cloned());
                        (seen.len() >= n).then_some(c.at).flatten()
                    },
                );
            if let Some(at) = covered {
                break Some(at.saturating_duration_since(took_lease).as_secs_f64());
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let api: Api<ServiceRelease> = Api::namespaced(b.c.client().await, &b.ns);
    let after = api.list(&ListParams::default()).await.map(|l| l.items.iter().filter(|r| rolled_back(r)).count()).unwrap_or(0);
    let failover = b
        .proxy
        .calls()
        .iter()
        .filter(|c| c.operation == "UpdateService" && c.access_key == "standby")
        .filter_map(|c| c.at)
        .min()
        .map(|at| at.saturating_duration_since(took_lease).as_secs_f64());
    if failover.is_none() {
        let by_key: Vec<(String, Option<String>)> = b
            .proxy
            .calls()
            .iter()
            .filter(|c| c.operation == "UpdateService")
            .map(|c| (c.access_key.clone(), c.service_name.clone()))
            .collect();
        eprintln!(
            "no rollback by the standby: lease taken after {:?}; UpdateService calls: {by_key:?}",
            took_lease.duration_since(started)
        );
        eprintln!("standby: {}", standby.logs().lines().rev().take(30).collect::<Vec<_>>().join("\n"));
    }
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |s| format!("{s:.2}"));
    let (p50, p99) = if seen_to_call.is_empty() {
        (None, None)
    } else {
        (Some(percentile(&mut seen_to_call, 0.5)), Some(percentile(&mut seen_to_call, 0.99)))
    };
    println!(
        "| {n} | {converge:.1} | {} | {converge_calls:.1} | {:.0} | {:.0} | {:.0} | {:.1} | {api_per:.0} | {:.2} | {cpu_ms:.2} | {rss:.0} | {k}: {} / {} | {} | {} ({}/{k} rolled back) | {} | {hand_col} |",
        phases.join(", "),
        calls.len() as f64 / w,
        per("DescribeServices"),
        per("GetCallerIdentity"),
        writes as f64 / w,
        cpu / w,
        fmt(p50),
        fmt(p99),
        verdict_p99.map_or_else(|| "-".to_string(), |s| format!("≤ {s}")),
        fmt(failover),
        after.saturating_sub(k),
        fmt(all_checked),
    );
    drop(standby);
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
        println!(
            "ServiceRelease on the real control plane{}: N releases in one `kubectl apply --server-side`, the controller",
            if common::events_on() { ", AWS events on (SHIPSHAPE_BENCH_EVENTS=1)" } else { "" }
        );
        println!("binary in its own process as the chart's ServiceAccount, AWS = moto behind the test proxy, drift interval {DRIFT}s");
        println!("(then k releases get a SHA whose ECS deployment fails: seconds from ECS reporting FAILED to the rollback's UpdateService, p50 / p99;");
        println!(
            "the controller's own verdict -> UpdateService p99, a histogram bucket bound; then k more fail while the leader is killed:"
        );
        println!("seconds from the standby taking the Lease to its first rollback, and until it has read every service from ECS;");
        println!("before that, another identity changes k services' desired counts and the versioning and class of up to 20 StackSpecs'");
        println!("buckets and databases at once: seconds from AWS taking each change to the controller's put-back call);");
        println!("releases are spread over Environments (ECS clusters) of {} each", common::PER_ENV);
        println!("| releases | converge s | phases | AWS calls / release to converge | AWS calls / interval | DescribeServices / interval | GetCallerIdentity / interval | AWS writes / interval | API requests / interval (no Lease) | CPU s / interval | CPU ms / reconcile | RSS MiB | rollbacks under drift load: k: p50 / p99 s | verdict -> UpdateService p99 s | failover -> first rollback s | failover -> all N read s | hand change -> put back p99 s: k services / buckets / databases |");
        println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|");
    }
    common::per_size("100,500", |n| common::runtime().block_on(steady(n)));
}
