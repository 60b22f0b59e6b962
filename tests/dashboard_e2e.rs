//! `shipshape dashboard` as a person uses it: Debian's headless Chromium driven over
//! WebDriver (chromedriver, the fantoccini client) against the dashboard binary, which runs
//! with a user's kubeconfig against the real control plane while the controller (under the
//! chart's RBAC) rolls releases forward and back on moto behind the AWS test proxy, judged
//! by a real Prometheus.
//!
//! With SHIPSHAPE_SCREENSHOTS=<dir>, each page is saved there as a PNG (docs/dashboard-*.png).

mod support;

use std::time::{Duration, Instant};

use fantoccini::{Client as Browser, Locator};
use support::browser::{browser, dashboard, kubeconfig_for};
use support::{eventually, health, namespaces_and_environment, unique, E2e};

const WAIT: Duration = Duration::from_secs(90);

const ERROR_RATE: &str =
    r#"sum(rate(http_requests_total{service="{{service}}",code=~"5.."}[5s])) / sum(rate(http_requests_total{service="{{service}}"}[5s]))"#;

/// The text of the first element `css` matches, or "" while there is none.
async fn text(b: &Browser, css: &str) -> String {
    match b.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the page shows `want` in the element `css` (no reload: the page is updated
/// by the pushed changes).
async fn shows(b: &Browser, css: &str, want: &str) -> String {
    let start = Instant::now();
    loop {
        let got = text(b, css).await;
        if got.contains(want) {
            return got;
        }
        assert!(start.elapsed() < WAIT, "{css} never showed {want:?}; it shows {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn screenshot(b: &Browser, name: &str) {
    if let Ok(dir) = std::env::var("SHIPSHAPE_SCREENSHOTS") {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = b.screenshot().await.expect("a screenshot");
        std::fs::write(std::path::Path::new(&dir).join(format!("dashboard-{name}.png")), png).expect("written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_rollout_break_and_roll_back_live_and_its_buttons_act_as_the_user() {
    let E2e { c, p: _p, ctl } = E2e::start_slow(Duration::from_millis(500), &[]).await;
    let (env, ns) = (unique("env"), unique("shop"));
    let h = health();
    let extra = format!("  health: {{prometheus: {{url: \"{}\"}}}}\n", h.prometheus);
    c.apply(&namespaces_and_environment(&env, &[&ns], &extra).await).success();
    let q = ERROR_RATE.replace('\'', "''");
    let release = |name: &str, sha: &str, runs: u32, more: &str| {
        format!(
            "apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  environment: {env}\n  image: {{repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop, gitSha: {sha}}}\n  task: {{cpu: 256, memory: 512, port: 8080}}\n  replicas: 1\n  rollout:\n    analysis:\n      warmup: 1s\n      interval: 1s\n      successfulRuns: {runs}\n      failureLimit: 1\n      queries:\n        - name: error-rate\n          prometheus: '{q}'\n          max: 0.05\n{more}"
        )
    };
    let (api, web) = (unique("api"), unique("web"));
    h.set_error_rate(&api, 0.0);
    h.set_error_rate(&web, 0.0);
    let stack = format!(
        "apiVersion: shipshape.dev/v1alpha1\nkind: StackSpec\nmetadata: {{name: data, namespace: {ns}}}\nspec:\n  environment: {env}\n  outputs: data-outputs\n  buckets: [{{name: {}}}]\n",
        unique("dash-assets")
    );
    let web_yaml = release(&web, "aaaa111", 2, &format!("  promotion: {{from: {{name: {api}}}}}\n"));
    c.apply(&[release(&api, "aaaa111", 2, ""), web_yaml, stack].join("---\n")).success();
    for name in [&api, &web] {
        eventually(WAIT, &format!("{name} Healthy"), || {
            (c.jsonpath(&["release", name, "-n", &ns], "{.status.phase}") == "Healthy").then_some(())
        })
        .await;
    }

    let (_dash, url) = dashboard(&c.kubeconfig, &[]);
    let (_driver, b) = browser().await;
    b.goto(&url).await.expect("the list opens");
    let row = format!("tr[data-key=\"{ns}/{api}\"]");
    shows(&b, &format!("{row} .phase-cell"), "Healthy").await;
    // The page is never reloaded from here on: a mark set now must survive.
    b.execute("window.__stayed = true; return true;", vec![]).await.expect("script runs");
    screenshot(&b, "releases").await;
    b.goto(&format!("{url}/#/pipeline")).await.expect("opens");
    shows(&b, ".chain", &format!("{ns}/{web}")).await;
    screenshot(&b, "pipeline").await;
    b.goto(&format!("{url}/#/")).await.expect("opens");
    shows(&b, &format!("{row} .phase-cell"), "Healthy").await;

    // A SHA that breaks: it appears live, is judged on the error rate and rolled back.
    h.set_error_rate(&api, 0.5);
    c.apply(&release(&api, "bbbb222", 30, "")).success();
    shows(&b, &format!("{row} td.mono"), "bbbb222").await;
    shows(&b, &format!("{row} .phase-cell"), "RolledBack").await;
    let stayed = b.execute("return window.__stayed === true;", vec![]).await.expect("script runs");
    assert_eq!(stayed, serde_json::json!(true), "the list was updated without a reload");

    // Its page: the verdict and the measurements that decided it, the Events.
    b.find(Locator::Css(&row)).await.expect("the row").click().await.expect("clicked");
    let verdict = shows(&b, "#verdict", "RolledBack").await;
    assert!(verdict.contains("error-rate"), "the verdict names the query: {verdict}");
    let timeline = shows(&b, "#timeline", "analysis round").await;
    assert!(timeline.contains("≤ 0.05"), "each measurement beside its threshold: {timeline}");
    shows(&b, "#charts .chart[data-query=\"error-rate\"]", "measurements").await;
    shows(&b, "#events", "RolledBack").await;
    screenshot(&b, "release").await;

    // A hostile Event (anyone who may create Events in the namespace): shown as text.
    let hostile = "<img src=x onerror=\"document.title='pwned'\">";
    let event = serde_json::json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": unique("hostile"), "namespace": ns},
        "involvedObject": {"apiVersion": "shipshape.dev/v1alpha1", "kind": "ServiceRelease", "name": api, "namespace": ns},
        "reason": "Hostile", "message": hostile, "type": "Warning", "count": 1,
        "firstTimestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "lastTimestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "source": {"component": "e2e"}
    });
    c.kubectl_stdin(&["create", "-f", "-"], &event.to_string()).success();
    shows(&b, "#events", hostile).await;
    assert_eq!(b.title().await.unwrap_or_default(), "shipshape", "markup in an Event never runs");

    // The rollback button, as the admin: confirmed, then the rollout in flight goes back.
    h.set_error_rate(&web, 0.0);
    c.apply(&release(&web, "cccc333", 100, &format!("  promotion: {{from: {{name: {api}}}}}\n"))).success();
    // web is promoted from api, which never proved cccc333: it waits.
    b.goto(&format!("{url}/#/r/{ns}/{web}")).await.expect("opens");
    shows(&b, ".verdict", "WaitingForUpstream").await;
    c.apply(&release(&web, "cccc333", 100, "")).success();
    shows(&b, "#title", "Analyzing").await;
    b.find(Locator::Css("button[data-action=rollback]")).await.expect("the button").click().await.expect("clicked");
    shows(&b, "#confirm-text", "back to its stable SHA").await;
    b.find(Locator::Css("#confirm-yes")).await.expect("confirm").click().await.expect("clicked");
    shows(&b, "#notice", "rollback requested").await;
    shows(&b, "#title", "RolledBack").await;
    assert_eq!(c.jsonpath(&["release", &web, "-n", &ns], "{.status.stableSha}"), "aaaa111");

    // The other pages.
    b.goto(&format!("{url}/#/environments")).await.expect("opens");
    shows(&b, "#environments", &env).await;
    screenshot(&b, "environments").await;
    b.goto(&format!("{url}/#/stacks")).await.expect("opens");
    shows(&b, "main", "Bucket").await;
    screenshot(&b, "stacks").await;

    // A user who may read releases but not patch them: the refusal, with the API server's words.
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: viewer, namespace: {ns}}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: viewer, namespace: {ns}}}\nrules:\n  - apiGroups: [shipshape.dev]\n    resources: [servicereleases, stackspecs]\n    verbs: [get, list, watch]\n  - apiGroups: [\"\"]\n    resources: [events, configmaps]\n    verbs: [get, list, watch]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: viewer, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: viewer}}\nsubjects: [{{kind: ServiceAccount, name: viewer, namespace: {ns}}}]\n"
        ),
    )
    .success();
    let viewer = kubeconfig_for(&c, &ns, "viewer");
    let (_viewer_dash, viewer_url) = dashboard(&viewer, &["-n", &ns]);
    b.goto(&format!("{viewer_url}/#/r/{ns}/{api}")).await.expect("opens");
    shows(&b, "#sha", "bbbb222").await;
    b.find(Locator::Css("button[data-action=pause]")).await.expect("the button").click().await.expect("clicked");
    let refusal = shows(&b, "#notice", "refused (403)").await;
    assert!(refusal.contains("forbidden") && refusal.contains("viewer"), "the API server's message: {refusal}");
    assert_eq!(c.jsonpath(&["release", &api, "-n", &ns], "{.metadata.annotations.shipshape\\.dev/paused}"), "", "nothing was patched");
    // Environments are cluster-scoped and not granted: the page says so instead of failing.
    b.goto(&format!("{viewer_url}/#/environments")).await.expect("opens");
    shows(&b, "#notice", "Environment").await;

    b.close().await.expect("closed");
    drop(ctl);
}
