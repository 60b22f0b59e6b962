//! The dashboard at the platform's size: `n` ServiceReleases in the real API server (one
//! `kubectl apply --server-side`), `shipshape dashboard` (this build's binary) running as a
//! ServiceAccount of its own, and headless Chromium opening the list in `TABS` tabs.
//! Measured: the list's JSON, navigation → every row in the table (the page's own
//! `performance.now()`), the JavaScript of one render, a spec change → pushed to every tab
//! and drawn in the one in view (no reload; the page's own clock), and the API requests the dashboard made (audit log: one watch per
//! kind however many tabs are open), its RSS.
//!
//! `cargo bench --bench dashboard` (SHIPSHAPE_BENCH_SIZES=1000,10000 by default: releases).

mod common;

use std::time::{Duration, Instant};

use common::{pct, per_size, rss_mib, runtime, Bench};
use fantoccini::Locator;
use shipshape_testkit::browser::{browser, dashboard, kubeconfig_for};

const TABS: usize = 5;

fn main() {
    if std::env::var_os("SHIPSHAPE_BENCH_ONE").is_none() {
        println!("| releases | tabs | list JSON | navigation → all rows: p50 | max | one render (JS) | spec change → pushed to every tab (max) / drawn in the tab in view | API requests of the dashboard (watch / list / other) | dashboard RSS MiB |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    }
    per_size("1000,10000", |n| runtime().block_on(one(n)));
}

async fn one(n: usize) {
    let b = Bench::new(n).await;
    let docs: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: svc-{i}, namespace: {ns}}}\nspec:\n  environment: {env}\n  image: {{repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app, gitSha: aaaa111}}\n  task: {{cpu: 256, memory: 512}}\n",
                ns = b.ns,
                env = b.env(i)
            )
        })
        .collect();
    b.apply_all(&docs);
    // The dashboard's own identity, reading what a watcher of releases reads.
    let user = "dash";
    b.c.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {user}, namespace: {ns}}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: bench-{user}}}\nrules:\n  - apiGroups: [shipshape.dev]\n    resources: [servicereleases, environments, stackspecs]\n    verbs: [get, list, watch]\n  - apiGroups: [\"\"]\n    resources: [events, configmaps]\n    verbs: [get, list, watch]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: bench-{user}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: bench-{user}}}\nsubjects: [{{kind: ServiceAccount, name: {user}, namespace: {ns}}}]\n",
            ns = b.ns
        ),
    )
    .success();
    let kubeconfig = kubeconfig_for(&b.c, &b.ns, user);
    let (dash, url) = dashboard(&kubeconfig, &[]);
    let username = format!("system:serviceaccount:{}:{user}", b.ns);

    // The list's JSON, once the dashboard's watch holds every release.
    let http = reqwest::Client::new();
    let start = Instant::now();
    let bytes = loop {
        let body = http.get(format!("{url}/api/releases")).send().await.unwrap().text().await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["releases"].as_array().map(Vec::len) == Some(n) {
            break body.len();
        }
        assert!(start.elapsed() < Duration::from_secs(300), "the dashboard never listed {n} releases");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let (_driver, browser) = browser().await;
    let mut firsts = vec![];
    let mut render_ms = vec![];
    let mut windows: Vec<fantoccini::wd::WindowHandle> = vec![];
    for t in 0..TABS {
        if t > 0 {
            let w = browser.new_window(true).await.unwrap();
            browser.switch_to_window(w.handle).await.unwrap();
        }
        windows.push(browser.window().await.unwrap());
        browser.goto(&url).await.unwrap();
        let start = Instant::now();
        loop {
            let got = browser
                .execute("return [window.shipshapeTimings && window.shipshapeTimings.firstList, document.querySelectorAll('#releases tbody tr').length, window.shipshapeTimings && window.shipshapeTimings.lastRenderMs];", vec![])
                .await
                .unwrap();
            if got[1].as_u64() == Some(n as u64) {
                if let (Some(at), Some(ms)) = (got[0].as_f64(), got[2].as_f64()) {
                    firsts.push(at / 1000.0);
                    render_ms.push(ms);
                    break;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(120), "tab {t} never showed {n} rows: {got}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // A spec change (a GitOps commit) → its row shows the new SHA in every tab: when the
    // change reached each tab (server-sent) and when its list was drawn again, by the page's
    // own clock (this machine's).
    let changed = format!("tr[data-key=\"{}/svc-{}\"] td.mono", b.ns, n / 2);
    let patched_ms = chrono::Utc::now().timestamp_millis() as f64;
    b.c.kubectl(&[
        "patch",
        "release",
        &format!("svc-{}", n / 2),
        "-n",
        &b.ns,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"image":{"gitSha":"bbbb222"}}}"#,
    ])
    .success();
    let (mut arrived, mut drawn) = (vec![], vec![]);
    let before = Instant::now();
    // The tab in view (the last opened) first: a tab out of view draws when it is shown.
    for w in windows.iter().rev() {
        browser.switch_to_window(w.clone()).await.unwrap();
        loop {
            let shown = match browser.find(Locator::Css(&changed)).await {
                Ok(e) => e.text().await.unwrap_or_default().contains("bbbb222"),
                Err(_) => false,
            };
            if shown {
                let t = browser
                    .execute("return [window.shipshapeTimings.lastEvent, window.shipshapeTimings.lastRender];", vec![])
                    .await
                    .unwrap();
                arrived.push((t[0].as_f64().unwrap_or(f64::NAN) - patched_ms) / 1000.0);
                drawn.push((t[1].as_f64().unwrap_or(f64::NAN) - patched_ms) / 1000.0);
                break;
            }
            assert!(before.elapsed() < Duration::from_secs(120), "the change never reached every tab");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let update = format!("{:.2} s / {:.2} s", pct(&mut arrived, 1.0), drawn.first().copied().unwrap_or(f64::NAN));

    // What the dashboard asked of the API server, its tabs open all along.
    let (mut watches, mut lists, mut other) = (0, 0, 0);
    for e in b.c.audit_log().unwrap_or_default() {
        if e["user"]["username"] != username.as_str() {
            continue;
        }
        match (e["verb"].as_str(), e["stage"].as_str()) {
            (Some("watch"), Some("ResponseStarted")) => watches += 1,
            (Some("list"), Some("ResponseComplete")) => lists += 1,
            (Some("watch"), _) => {}
            (_, Some("ResponseComplete")) => other += 1,
            _ => {}
        }
    }
    let rss = rss_mib(dash.0.id());
    let (p50, max) = (pct(&mut firsts.clone(), 0.5), pct(&mut firsts, 1.0));
    println!(
        "| {n} | {TABS} | {:.1} MB | {p50:.2} s | {max:.2} s | {:.0} ms | {update} | {watches} / {lists} / {other} | {rss:.0} |",
        bytes as f64 / 1e6,
        pct(&mut render_ms, 0.5)
    );
    let _ = browser.close().await;
}
