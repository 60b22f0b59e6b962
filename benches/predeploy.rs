//! Steps before traffic: the time from a step's task stopping (as DescribeTasks first reports
//! it STOPPED, from the proxy's task model) to the rollout continuing (the CreateService call
//! reaching the proxy) or failing (status Failed, seen by a watch). `n` releases are applied at
//! once, each with one migration of 1-4 s; every other one exits 1. The controller binary runs
//! in its own process against the real control plane and moto, as in the other benchmarks.
//!
//! `cargo bench --bench predeploy` (SHIPSHAPE_BENCH_SIZES=50,200 by default).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{pct, per_size, runtime, Bench};
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::watcher;
use shipshape::api::{Phase, ServiceRelease};
use shipshape_testkit::ecs_tasks::Script;

fn main() {
    if std::env::var_os("SHIPSHAPE_BENCH_ONE").is_none() {
        println!("| releases | continued (exit 0) | p50 | p90 | p99 | max | failed (exit 1) | p50 | p90 | p99 | max |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    per_size("50,200", |n| runtime().block_on(one(n)));
}

async fn one(n: usize) {
    let b = Bench::new(n).await;
    let mut docs = vec![];
    for i in 0..n {
        let command = format!("migrate r{i}");
        let runs_for = Duration::from_millis(1000 + (i as u64 * 373) % 3000);
        b.proxy.script_task(&command, Script { exit_code: (i % 2) as i32, runs_for, ..Script::default() });
        docs.push(format!(
            "apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: svc-{i}, namespace: {ns}}}\nspec:\n  environment: {env}\n  image: {{repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app, gitSha: aaaa111}}\n  task: {{cpu: 256, memory: 512}}\n  replicas: 1\n  rollout:\n    preDeploy:\n      - {{name: migrate, command: [migrate, r{i}]}}\n",
            ns = b.ns,
            env = b.env(i)
        ));
    }
    // Failed releases, as a watch sees them first.
    let failed: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let api: Api<ServiceRelease> = Api::namespaced(b.c.client().await, &b.ns);
    let seen = failed.clone();
    let watch = tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(Ok(e)) = events.next().await {
            if let watcher::Event::Apply(r) | watcher::Event::InitApply(r) = e {
                if r.status.as_ref().is_some_and(|s| s.phase == Phase::Failed) {
                    let name = r.metadata.name.clone().unwrap_or_default();
                    seen.lock().unwrap().entry(name).or_insert_with(Instant::now);
                }
            }
        }
    });
    let _ctl = b.controller(&[]);
    b.apply_all(&docs);
    b.converge::<ServiceRelease>(n, Bench::timeout(n), |r| {
        r.status.as_ref().is_some_and(|s| matches!(s.phase, Phase::Healthy | Phase::Failed))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    watch.abort();
    let stops: BTreeMap<String, Instant> = b
        .proxy
        .task_stops()
        .into_iter()
        .filter_map(|(td, at)| Some((td.rsplit_once("task-definition/")?.1.split(':').next()?.to_string(), at)))
        .collect();
    let creates: BTreeMap<String, Instant> =
        b.proxy.calls().into_iter().filter(|c| c.operation == "CreateService").filter_map(|c| Some((c.service_name?, c.at?))).collect();
    let failed = failed.lock().unwrap().clone();
    let (mut ok, mut bad) = (vec![], vec![]);
    for (svc, stopped) in &stops {
        if let Some(at) = creates.get(svc) {
            ok.push(at.saturating_duration_since(*stopped).as_secs_f64());
        } else if let Some(at) = failed.get(svc) {
            bad.push(at.saturating_duration_since(*stopped).as_secs_f64());
        }
    }
    let row = |v: &mut Vec<f64>| {
        let count = v.len();
        format!("{count} | {:.2} s | {:.2} s | {:.2} s | {:.2} s", pct(v, 0.5), pct(v, 0.9), pct(v, 0.99), pct(v, 1.0))
    };
    println!("| {n} | {} | {} |", row(&mut ok), row(&mut bad));
}
