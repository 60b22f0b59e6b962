//! Promotion at scale: `n` chains of two stages (`up-i` → `down-i`, `promotion.from` with a
//! soak), applied at once at one SHA, as a GitOps commit would. Measured per chain: from the
//! upstream's soak ending (its promotion time in status + the soak) to the downstream's
//! rollout starting (its CreateService call reaching the AWS proxy). And per notification
//! (every RolloutStarted and Promoted, to a healthy local webhook): from the event's time to
//! its arrival. The controller binary runs in its own process against the real control
//! plane and moto, as in the other benchmarks.
//!
//! Two runs per size: every chain applied at once (all upstreams promote within seconds of
//! each other, so each production Environment must start hundreds of services in the same
//! second, bounded by its ECS write budget, `--aws-rate`), then the steady state: a new SHA
//! committed to 5 chains a second (SHIPSHAPE_BENCH_RATE), half of what the accounts' write
//! budgets allow.
//!
//! `cargo bench --bench promotion` (SHIPSHAPE_BENCH_SIZES=100,1000 by default: chains).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use chrono::{DateTime, Utc};
use common::{pct, per_size, runtime, Bench};
use kube::api::{Api, ListParams};
use shipshape::api::{Phase, RolloutOutcome, ServiceRelease};

const SOAK_SECS: i64 = 10;
/// Chains a second given a new SHA in the steady-state half (SHIPSHAPE_BENCH_RATE, default
/// 5). Each new SHA costs two ECS writes in each stage's account (RegisterTaskDefinition,
/// UpdateService), so at `--aws-rate` 20/s an account saturates at 10 chains a second: there
/// every write waits its turn and the starts queue with them (measured: p99 48 s).
fn steady_rate() -> usize {
    std::env::var("SHIPSHAPE_BENCH_RATE").ok().and_then(|r| r.parse().ok()).filter(|r| *r > 0).unwrap_or(5)
}

fn main() {
    if std::env::var_os("SHIPSHAPE_BENCH_ONE").is_none() {
        println!("| chains | releases | new SHAs | soak end → downstream start: p50 | p90 | p99 | max | notifications | event → received: p50 | p99 | max |");
        println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    per_size("100,1000", |n| runtime().block_on(one(n)));
}

/// Each notification's event time and arrival.
type Arrivals = Arc<Mutex<Vec<(DateTime<Utc>, DateTime<Utc>)>>>;

/// A local webhook: each JSON body's `time` and when it arrived.
async fn receiver() -> (String, Arrivals) {
    let got: Arrivals = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: String| {
            let seen = seen.clone();
            async move {
                let now = Utc::now();
                if let Some(at) = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["time"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()))
                {
                    seen.lock().unwrap().push((at, now));
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), got)
}

async fn one(n: usize) {
    let b = Bench::new(2 * n).await;
    let (url, received) = receiver().await;
    // Every Environment announces rollouts to the local webhook (a Secret holds its URL).
    b.c.kubectl(&["create", "secret", "generic", "hook", "-n", &b.ns, &format!("--from-literal=url={url}")]).success();
    b.c.allow_secrets(&b.ns);
    for env in &b.envs {
        b.c.kubectl(&[
            "patch",
            "environment",
            env,
            "--type",
            "merge",
            "-p",
            &format!(
                r#"{{"spec":{{"notifications":[{{"name":"bench","format":"Json","events":["RolloutStarted","Promoted"],"webhook":{{"urlSecretRef":{{"name":"hook","namespace":"{}"}}}}}}]}}}}"#,
                b.ns
            ),
        ])
        .success();
    }
    let mut docs = vec![];
    for i in 0..n {
        let release = |name: &str, env: &str, extra: &str| {
            format!(
                "apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  environment: {env}\n  image: {{repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app, gitSha: aaaa111}}\n  task: {{cpu: 256, memory: 512}}\n  replicas: 1\n{extra}",
                ns = b.ns
            )
        };
        // Staging and production in Environments of their own (as in different accounts):
        // the upstreams in the first `n` objects' Environments, the downstreams in the rest.
        docs.push(release(&format!("up-{i}"), b.env(i), ""));
        docs.push(release(&format!("down-{i}"), b.env(n + i), &format!("  promotion: {{from: {{name: up-{i}}}, soak: {SOAK_SECS}s}}\n")));
    }
    // When a watch of our own first sees each upstream promoted: how late the API server
    // delivers what the controller's own watch waits for.
    let seen_promoted: Arc<Mutex<BTreeMap<String, DateTime<Utc>>>> = Arc::default();
    let watch = {
        use futures::StreamExt;
        use kube::runtime::watcher;
        let api: Api<ServiceRelease> = Api::namespaced(b.c.client().await, &b.ns);
        let seen = seen_promoted.clone();
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).boxed();
            while let Some(e) = events.next().await {
                if let Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) = e {
                    if r.status.as_ref().is_some_and(|s| s.history.iter().any(|h| h.outcome == RolloutOutcome::Promoted)) {
                        let name = r.metadata.name.clone().unwrap_or_default();
                        seen.lock().unwrap().entry(name).or_insert_with(Utc::now);
                    }
                }
            }
        })
    };
    let _ctl = b.controller(&[]);
    // Wall clock ↔ Instant, to place the proxy's call times beside status timestamps.
    let (base_instant, base_wall) = (Instant::now(), Utc::now());
    b.apply_all(&docs);
    b.converge::<ServiceRelease>(2 * n, Bench::timeout(2 * n), |r| r.status.as_ref().is_some_and(|s| s.phase == Phase::Healthy)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let api: Api<ServiceRelease> = Api::namespaced(b.c.client().await, &b.ns);
    let list = api.list(&ListParams::default()).await.unwrap();
    let promoted: BTreeMap<String, DateTime<Utc>> = list
        .items
        .iter()
        .filter_map(|r| {
            let h = r.status.as_ref()?.history.iter().find(|h| h.outcome == RolloutOutcome::Promoted)?;
            Some((r.metadata.name.clone()?, h.finished_at?))
        })
        .collect();
    let creates: BTreeMap<String, Instant> =
        b.proxy.calls().into_iter().filter(|c| c.operation == "CreateService").filter_map(|c| Some((c.service_name?, c.at?))).collect();
    // When each downstream decided to start (its rollout's startedAt), to tell a late wake-up
    // from late AWS calls.
    let decided: BTreeMap<String, DateTime<Utc>> = list
        .items
        .iter()
        .filter_map(|r| {
            Some((r.metadata.name.clone()?, r.status.as_ref()?.history.iter().find(|h| h.outcome == RolloutOutcome::Promoted)?.started_at))
        })
        .collect();
    let mut lags = vec![];
    let mut slow = 0;
    for i in 0..n {
        let (Some(up), Some(start)) = (promoted.get(&format!("up-{i}")), creates.get(&format!("down-{i}"))) else { continue };
        let soak_end = *up + chrono::Duration::seconds(SOAK_SECS);
        let started = base_wall + chrono::Duration::from_std(start.saturating_duration_since(base_instant)).unwrap_or_default();
        let lag = (started - soak_end).num_milliseconds() as f64 / 1000.0;
        if lag > 1.0 && slow < 5 && std::env::var_os("SHIPSHAPE_BENCH_DEBUG").is_some() {
            slow += 1;
            let d = decided.get(&format!("down-{i}")).map(|d| (*d - soak_end).num_milliseconds());
            eprintln!("chain {i}: soak end {soak_end}, decided +{d:?} ms, CreateService +{lag:.2} s");
        }
        lags.push(lag);
    }
    watch.abort();
    let seen_promoted = seen_promoted.lock().unwrap().clone();
    let mut watch_lag: Vec<f64> = (0..n)
        .filter_map(|i| {
            let name = format!("up-{i}");
            Some((*seen_promoted.get(&name)? - *promoted.get(&name)?).num_milliseconds() as f64 / 1000.0)
        })
        .collect();
    if std::env::var_os("SHIPSHAPE_BENCH_DEBUG").is_some() {
        eprintln!(
            "an upstream's promotion as a watch sees it, after its time in status: p50 {:.2} s, p99 {:.2} s, max {:.2} s",
            pct(&mut watch_lag, 0.5),
            pct(&mut watch_lag, 0.99),
            pct(&mut watch_lag, 1.0)
        );
    }
    let mut notes: Vec<f64> = received.lock().unwrap().iter().map(|(at, got)| (*got - *at).num_milliseconds() as f64 / 1000.0).collect();
    println!(
        "| {n} | {} | all at once | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {} | {:.3} s | {:.3} s | {:.3} s |",
        2 * n,
        pct(&mut lags, 0.5),
        pct(&mut lags, 0.9),
        pct(&mut lags, 0.99),
        pct(&mut lags, 1.0),
        notes.len(),
        pct(&mut notes, 0.5),
        pct(&mut notes, 0.99),
        pct(&mut notes, 1.0),
    );

    // Then the platform's steady state: every chain at its stages, a new SHA committed to
    // both stages of `steady_rate()` chains a second (each service's own commits), each
    // downstream starting at its upstream's soak end.
    let (base_instant, base_wall) = (Instant::now(), Utc::now());
    let sha = "bbbb222";
    let patch = kube::api::Patch::Merge(serde_json::json!({"spec": {"image": {"gitSha": sha}}}));
    let pp = kube::api::PatchParams::default();
    let rate = steady_rate();
    let tick = Duration::from_secs_f64(1.0 / rate as f64);
    for i in 0..n {
        let started = Instant::now();
        for name in [format!("up-{i}"), format!("down-{i}")] {
            // A commit the API server drops under load is committed again.
            for _ in 0..5 {
                if api.patch(&name, &pp, &patch).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        tokio::time::sleep(tick.saturating_sub(started.elapsed())).await;
    }
    b.converge::<ServiceRelease>(2 * n, Bench::timeout(2 * n), |r| r.status.as_ref().is_some_and(|s| s.stable_sha.as_deref() == Some(sha)))
        .await;
    let list = loop {
        if let Ok(l) = api.list(&ListParams::default()).await {
            break l;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let promoted_b: BTreeMap<String, DateTime<Utc>> = list
        .items
        .iter()
        .filter_map(|r| {
            let h = r.status.as_ref()?.history.iter().find(|h| h.outcome == RolloutOutcome::Promoted && h.sha == sha)?;
            Some((r.metadata.name.clone()?, h.finished_at?))
        })
        .collect();
    let updates: BTreeMap<String, Instant> = b
        .proxy
        .calls()
        .into_iter()
        .filter(|c| c.operation == "UpdateService" && c.at.is_some_and(|at| at >= base_instant))
        .filter_map(|c| Some((c.service_name?, c.at?)))
        .fold(BTreeMap::new(), |mut m, (svc, at)| {
            m.entry(svc).or_insert(at);
            m
        });
    let mut steady = vec![];
    for i in 0..n {
        let (Some(up), Some(start)) = (promoted_b.get(&format!("up-{i}")), updates.get(&format!("down-{i}"))) else { continue };
        let soak_end = *up + chrono::Duration::seconds(SOAK_SECS);
        let started = base_wall + chrono::Duration::from_std(start.saturating_duration_since(base_instant)).unwrap_or_default();
        steady.push((started - soak_end).num_milliseconds() as f64 / 1000.0);
    }
    println!(
        "| {n} | {} | {rate} chains/s | {:.2} s | {:.2} s | {:.2} s | {:.2} s | ({} measured) | | | |",
        2 * n,
        pct(&mut steady, 0.5),
        pct(&mut steady, 0.9),
        pct(&mut steady, 0.99),
        pct(&mut steady, 1.0),
        steady.len(),
    );
}
