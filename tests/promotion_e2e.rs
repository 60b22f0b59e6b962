//! End to end for promotion across stages (`spec.promotion`), approvals, order within a
//! change (`rollout.after`), change windows and blackouts: the controller binary under the
//! chart's RBAC on the real control plane, moto behind the AWS test proxy, CloudWatch alarms
//! in moto deciding the verdicts.

mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use support::{eventually, namespaces_and_environment, proxy, put_alarm, set_alarm, unique, Cluster, Controller};

const WAIT: Duration = Duration::from_secs(90);

struct Stage {
    ns: String,
    name: String,
    alarm: String,
}

struct Setup {
    c: Cluster,
    p: shipshape_testkit::awsproxy::AwsProxy,
    _ctl: Controller,
    env: String,
}

async fn setup(namespaces: &[&str], env_extra: &str) -> Setup {
    let c = Cluster::start().await;
    let p = proxy().await;
    p.set_deployment_delay(Duration::from_millis(300));
    let ctl = Controller::start_at(&c, &p.url(), &[]);
    let env = unique("env");
    c.apply(&namespaces_and_environment(&env, namespaces, env_extra).await).success();
    Setup { c, p, _ctl: ctl, env }
}

impl Setup {
    /// Applies the Environment anew with `extra` spec lines and waits until the controller has
    /// reconciled it (releases and the Environment arrive on different watches).
    async fn environment(&self, namespaces: &[&str], extra: &str) {
        self.c.apply(&namespaces_and_environment(&self.env, namespaces, extra).await).success();
        self.c.environment_observed(&self.env).await;
    }
    /// A release `st` at `sha`, judged on its own alarm, with `extra` spec lines.
    fn release(&self, st: &Stage, sha: &str, extra: &str) -> String {
        format!(
            "apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  environment: {env}\n  image: {{repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/car-rental/backend, gitSha: {sha}}}\n  task: {{cpu: 256, memory: 512, port: 8080}}\n  replicas: 1\n  rollout:\n    analysis: {{interval: 1s, successfulRuns: 1, failureLimit: 0, cloudwatchAlarms: [{alarm}]}}\n{extra}",
            name = st.name,
            ns = st.ns,
            env = self.env,
            alarm = st.alarm
        )
    }
    fn get(&self, st: &Stage, path: &str) -> String {
        self.c.jsonpath(&["release", &st.name, "-n", &st.ns], path)
    }
    async fn stable(&self, st: &Stage, sha: &str) {
        eventually(WAIT, &format!("{}/{} stable at {sha}", st.ns, st.name), || (self.get(st, "{.status.stableSha}") == sha).then_some(()))
            .await;
    }
    /// When `sha` was promoted there, and when its rollout started.
    fn promoted(&self, st: &Stage, sha: &str) -> (DateTime<Utc>, DateTime<Utc>) {
        let json = self.c.kubectl(&["get", "release", &st.name, "-n", &st.ns, "-o", "json"]).success().stdout;
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let entry = v["status"]["history"]
            .as_array()
            .and_then(|h| h.iter().find(|e| e["sha"] == sha && e["outcome"] == "Promoted").cloned())
            .unwrap_or_else(|| panic!("{sha} promoted in {}: {json}", st.name));
        let at = |k: &str| entry[k].as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok()).unwrap();
        (at("startedAt"), at("finishedAt"))
    }
    /// kstatus's verdict (Flux's library) on the release as it is now.
    fn kstatus(&self, st: &Stage) -> String {
        let json = self.c.kubectl(&["get", "release", &st.name, "-n", &st.ns, "-o", "json"]).success().stdout;
        support::kstatus(&serde_json::from_str(&json).unwrap())
    }
    fn events(&self, ns: &str) -> String {
        self.c.kubectl(&["get", "events", "-n", ns, "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}"]).stdout
    }
    fn shipshape(&self, args: &[&str]) -> String {
        let out =
            std::process::Command::new(env!("CARGO_BIN_EXE_shipshape")).args(args).env("KUBECONFIG", &self.c.kubeconfig).output().unwrap();
        assert!(out.status.success(), "shipshape {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

async fn stage(ns: &str, name: &str) -> Stage {
    let alarm = unique(&format!("{name}-errors"));
    put_alarm(&alarm, "OK").await;
    Stage { ns: ns.into(), name: name.into(), alarm }
}

fn from(st: &Stage, soak: &str) -> String {
    format!("  promotion: {{from: {{namespace: {}, name: {}}}, soak: {soak}}}\n", st.ns, st.name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sha_goes_dev_staging_production_each_after_its_soak_and_one_staging_rolled_back_never_reaches_production() {
    let (dev_ns, staging_ns, prod_ns) = (unique("dev"), unique("staging"), unique("prod"));
    let s = setup(&[&dev_ns, &staging_ns, &prod_ns], "").await;
    let dev = stage(&dev_ns, "backend-dev").await;
    let staging = stage(&staging_ns, "backend-staging").await;
    let prod = stage(&prod_ns, "backend-prod").await;
    let soak = Duration::from_secs(3);
    // One Git commit sets the SHA in all three stages at once.
    let apply_all = |sha: &str| {
        let yaml = [s.release(&dev, sha, ""), s.release(&staging, sha, &from(&dev, "3s")), s.release(&prod, sha, &from(&staging, "3s"))]
            .join("---\n");
        s.c.apply(&yaml).success();
    };
    apply_all("aaaa111");
    eventually(WAIT, "production waiting for staging", || (s.get(&prod, "{.status.waiting.reason}") == "WaitingForUpstream").then_some(()))
        .await;
    let (reconciling, reason) = s.c.condition(&["release", &prod.name, "-n", &prod.ns], "Reconciling");
    assert_eq!((reconciling.as_str(), reason.as_str()), ("True", "WaitingForUpstream"), "in progress while it waits");
    assert!(s.kstatus(&prod).starts_with("InProgress"), "kstatus: {}", s.kstatus(&prod));
    assert_eq!(s.get(&prod, "{.status.waiting.upstream}"), format!("{}/{}", staging.ns, staging.name));
    s.stable(&prod, "aaaa111").await;
    let (_, dev_done) = s.promoted(&dev, "aaaa111");
    let (staging_start, staging_done) = s.promoted(&staging, "aaaa111");
    let (prod_start, _) = s.promoted(&prod, "aaaa111");
    assert!(staging_start >= dev_done + soak, "staging started {staging_start} before dev's soak ended ({dev_done} + 3s)");
    assert!(prod_start >= staging_done + soak, "production started {prod_start} before staging's soak ended ({staging_done} + 3s)");
    assert_eq!(s.get(&prod, "{.status.waiting}"), "", "no wait left once started");

    // The path, one command.
    let path = s.shipshape(&["status", "--pipeline", "-n", &prod_ns]);
    for part in [dev.name.as_str(), staging.name.as_str(), prod.name.as_str(), "aaaa111"] {
        assert!(path.contains(part), "{part} in {path}");
    }

    // The next SHA breaks in staging: rolled back there, refused in production.
    set_alarm(&staging.alarm, "ALARM").await;
    let prod_td = s.get(&prod, "{.status.stableTaskDefinitionArn}");
    let updates_before = s.p.count("UpdateService");
    apply_all("bbbb222");
    s.stable(&dev, "bbbb222").await;
    eventually(WAIT, "staging rolled bbbb222 back", || (s.get(&staging, "{.status.phase}") == "RolledBack").then_some(())).await;
    eventually(WAIT, "production refused it", || (s.get(&prod, "{.status.waiting.reason}") == "UpstreamRejected").then_some(())).await;
    let (stalled, reason) = s.c.condition(&["release", &prod.name, "-n", &prod.ns], "Stalled");
    assert_eq!((stalled.as_str(), reason.as_str()), ("True", "UpstreamRejected"), "a refused release is stalled");
    assert!(s.kstatus(&prod).starts_with("Failed"), "kstatus: {}", s.kstatus(&prod));
    let message = s.get(&prod, "{.status.waiting.message}");
    for part in ["bbbb222 failed upstream", staging.name.as_str(), "rolled back", staging.alarm.as_str()] {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert!(s.events(&prod_ns).contains("UpstreamRejected: bbbb222 failed upstream"), "{}", s.events(&prod_ns));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.get(&prod, "{.status.stableTaskDefinitionArn}"), prod_td);
    assert_eq!(s.get(&prod, "{.status.rollout}"), "", "bbbb222 never started in production");
    let prod_updates =
        s.p.calls().iter().filter(|c| c.operation == "UpdateService" && c.service_name.as_deref() == Some(prod.name.as_str())).count();
    assert_eq!(
        prod_updates,
        0,
        "production's service untouched ({} UpdateService calls in all since)",
        s.p.count("UpdateService") - updates_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_naming_an_old_sha_does_not_count_and_shipshape_approve_lets_the_new_one_through() {
    let ns = unique("sched");
    let s = setup(&[&ns], "").await;
    let prod = stage(&ns, "scheduling").await;
    let manual = "  promotion: {approval: Manual}\n";
    s.c.apply(&s.release(&prod, "aaaa111", manual)).success();
    eventually(WAIT, "waiting for approval", || (s.get(&prod, "{.status.waiting.reason}") == "WaitingForApproval").then_some(())).await;
    assert_eq!(s.p.count("CreateService"), 0, "nothing before the approval");
    s.shipshape(&["approve", &prod.name, "-n", &ns]);
    s.stable(&prod, "aaaa111").await;
    assert_eq!(s.c.jsonpath(&["release", &prod.name, "-n", &ns], "{.metadata.annotations.shipshape\\.dev/approve}"), "aaaa111");

    // The next SHA: the approval on record names the old one.
    s.c.apply(&s.release(&prod, "bbbb222", manual)).success();
    eventually(WAIT, "waiting for approval of bbbb222", || {
        (s.get(&prod, "{.status.waiting.sha}") == "bbbb222" && s.get(&prod, "{.status.waiting.reason}") == "WaitingForApproval")
            .then_some(())
    })
    .await;
    assert!(s.get(&prod, "{.status.waiting.message}").contains("names aaaa111"), "{}", s.get(&prod, "{.status.waiting.message}"));
    assert!(s.events(&ns).contains("WaitingForApproval: bbbb222 waits for an approval"), "{}", s.events(&ns));
    let path = s.shipshape(&["status", "-n", &ns]);
    assert!(path.contains("Pending"), "{path}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.get(&prod, "{.status.stableSha}"), "aaaa111", "not started without its approval");
    // An approval for a SHA that is not a SHA is refused by the command.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_shipshape"))
        .args(["approve", &prod.name, "-n", &ns, "--sha", "not-a-sha"])
        .env("KUBECONFIG", &s.c.kubeconfig)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    s.shipshape(&["approve", &prod.name, "-n", &ns]);
    s.stable(&prod, "bbbb222").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_end_after_its_api_starts_once_the_api_is_healthy_and_a_cycle_is_invalid() {
    let ns = unique("shop");
    let s = setup(&[&ns], "").await;
    let api = stage(&ns, "shop-api").await;
    let web = stage(&ns, "shop-web").await;
    let after = |name: &str| format!("    after: [{name}]\n");
    // One commit: both at once.
    let both = |sha: &str| [s.release(&api, sha, ""), s.release(&web, sha, &after(&api.name))].join("---\n");
    s.c.apply(&both("aaaa111")).success();
    s.stable(&web, "aaaa111").await;
    let (_, api_done) = s.promoted(&api, "aaaa111");
    let (web_start, _) = s.promoted(&web, "aaaa111");
    assert!(web_start >= api_done, "the front end started {web_start} before the API was Healthy ({api_done})");
    s.c.apply(&both("bbbb222")).success();
    s.stable(&web, "bbbb222").await;
    let (_, api_done) = s.promoted(&api, "bbbb222");
    let (web_start, _) = s.promoted(&web, "bbbb222");
    assert!(web_start >= api_done, "the front end started {web_start} before the API was Healthy ({api_done})");
    assert!(s.events(&ns).contains("WaitingForOrder: bbbb222 starts after"), "{}", s.events(&ns));

    // The API made to come after the front end: a cycle, refused with its path.
    s.c.apply(&s.release(&api, "cccc333", &after(&web.name))).success();
    eventually(WAIT, "the cycle refused", || {
        let (stalled, reason) = s.c.condition(&["release", &api.name, "-n", &ns], "Stalled");
        (stalled == "True" && reason == "InvalidSpec").then_some(())
    })
    .await;
    let message = s.get(&api, "{.status.conditions[?(@.type==\"Stalled\")].message}");
    assert!(message.contains("rollout.after makes a cycle") && message.contains(&web.name), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackout_and_a_change_window_hold_new_rollouts_until_they_open() {
    let ns = unique("rental");
    let s = setup(&[&ns], "").await;
    let svc = stage(&ns, "backend").await;
    // A blackout ending 30 s from now, counted once the rest is set up.
    let end = Utc::now() + chrono::Duration::seconds(30);
    let blackout = format!(
        "  blackouts: [{{start: \"2020-01-01T00:00:00Z\", end: \"{}\", reason: quarter close}}]\n",
        end.format("%Y-%m-%dT%H:%M:%SZ")
    );
    s.environment(&[&ns], &blackout).await;
    s.c.apply(&s.release(&svc, "aaaa111", "")).success();
    eventually(WAIT, "held by the blackout", || (s.get(&svc, "{.status.waiting.reason}") == "WaitingForWindow").then_some(())).await;
    let message = s.get(&svc, "{.status.waiting.message}");
    assert!(message.contains("quarter close"), "{message}");
    s.stable(&svc, "aaaa111").await;
    let (start, _) = s.promoted(&svc, "aaaa111");
    assert!(start >= end.with_nanosecond(0).unwrap_or(end), "started {start} inside the blackout (until {end})");

    // A window that opens at the first whole minute (UTC) at least 20 s from now: the release
    // must be seen held before it opens (a minute boundary a second away would open first).
    let soon = Utc::now() + chrono::Duration::seconds(20);
    let opens = (soon + chrono::Duration::seconds(60 - i64::from(soon.second()))).with_nanosecond(0).unwrap();
    let window = format!("  windows: [{{schedule: \"{} {} * * *\", duration: 5m}}]\n", opens.minute(), opens.hour());
    s.environment(&[&ns], &window).await;
    s.c.apply(&s.release(&svc, "bbbb222", "")).success();
    eventually(WAIT, "held until the window", || {
        (s.get(&svc, "{.status.waiting.sha}") == "bbbb222" && s.get(&svc, "{.status.waiting.reason}") == "WaitingForWindow").then_some(())
    })
    .await;
    let until = s.get(&svc, "{.status.waiting.until}").parse::<DateTime<Utc>>().unwrap();
    assert_eq!(until, opens, "status names the next opening");
    s.stable(&svc, "bbbb222").await;
    let (start, _) = s.promoted(&svc, "bbbb222");
    assert!(start >= opens, "started {start} before the window opened at {opens}");
}

use chrono::Timelike;

/// A local webhook receiver: answers 503 while `down`, records every request it accepted
/// (path, Content-Type, body).
struct Receiver {
    url: String,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    got: Requests,
}

/// Requests received: path, Content-Type, body.
type Requests = std::sync::Arc<std::sync::Mutex<Vec<(String, String, serde_json::Value)>>>;

impl Receiver {
    async fn start() -> Receiver {
        use axum::http::{HeaderMap, StatusCode, Uri};
        use std::sync::atomic::Ordering;
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let got: Requests = Default::default();
        let (d, r, g) = (down.clone(), refused.clone(), got.clone());
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: String| {
            let (d, r, g) = (d.clone(), r.clone(), g.clone());
            async move {
                if d.load(Ordering::SeqCst) {
                    r.fetch_add(1, Ordering::SeqCst);
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                g.lock().unwrap().push((uri.path().to_string(), ct, serde_json::from_str(&body).unwrap_or_default()));
                StatusCode::OK
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, down, refused, got }
    }
    fn bodies(&self, path: &str) -> Vec<(String, serde_json::Value)> {
        self.got.lock().unwrap().iter().filter(|(p, _, _)| p == path).map(|(_, ct, b)| (ct.clone(), b.clone())).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_reach_slack_and_cloudevents_sinks_after_an_outage_without_holding_a_rollback() {
    use std::sync::atomic::Ordering;
    let hook = Receiver::start().await;
    let ns = unique("rental");
    // The URLs are secrets, in a namespace the controller may read Secrets in.
    let sinks = format!(
        "  notifications:\n    - {{name: team-chat, format: Slack, webhook: {{urlSecretRef: {{name: hooks, namespace: {ns}, key: slack}}}}}}\n    - {{name: incidents, format: CloudEvents, events: [RolloutStarted, Promoted, RolledBack], namespaces: [{ns}], webhook: {{urlSecretRef: {{name: hooks, namespace: {ns}, key: events}}}}}}\n"
    );
    let c = Cluster::start().await;
    c.apply(&format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n")).success();
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        "hooks",
        "-n",
        &ns,
        &format!("--from-literal=slack={}/slack", hook.url),
        &format!("--from-literal=events={}/events", hook.url),
    ])
    .success();
    c.allow_secrets(&ns);
    let p = proxy().await;
    p.set_deployment_delay(Duration::from_millis(300));
    let ctl = Controller::start_at(&c, &p.url(), &[]);
    let env = unique("env");
    c.apply(&namespaces_and_environment(&env, &[&ns], &sinks).await).success();
    let s = Setup { c, p, _ctl: ctl, env };
    let svc = stage(&ns, "backend").await;

    // The receiver is down: the rollouts and the rollback go on regardless.
    s.c.apply(&s.release(&svc, "aaaa111", "")).success();
    s.stable(&svc, "aaaa111").await;
    set_alarm(&svc.alarm, "ALARM").await;
    s.c.apply(&s.release(&svc, "bbbb222", "")).success();
    eventually(WAIT, "bbbb222 rolled back while the receiver is down", || (s.get(&svc, "{.status.phase}") == "RolledBack").then_some(()))
        .await;
    assert!(hook.refused.load(Ordering::SeqCst) > 0, "deliveries were attempted");
    assert!(hook.got.lock().unwrap().is_empty());
    assert!(s._ctl.metric("shipshape_notifications_total", &["team-chat", "failed"]) > 0.0);

    // Back up: every message arrives, in order, once each.
    hook.down.store(false, Ordering::SeqCst);
    eventually(WAIT, "every message delivered", || {
        let chat = hook.bodies("/slack");
        let events = hook.bodies("/events");
        let texts: Vec<String> = chat.iter().map(|(_, b)| b["text"].as_str().unwrap_or_default().to_string()).collect();
        let types: Vec<String> = events.iter().map(|(_, b)| b["type"].as_str().unwrap_or_default().to_string()).collect();
        (texts.iter().any(|t| t.starts_with("[RolledBack]")) && types.iter().any(|t| t.ends_with(".rolledback"))).then_some(())
    })
    .await;
    let chat = hook.bodies("/slack");
    let texts: Vec<&str> = chat.iter().map(|(_, b)| b["text"].as_str().unwrap_or_default()).collect();
    let at = |prefix: &str| texts.iter().position(|t| t.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix} in {texts:?}"));
    assert!(at("[RolloutStarted]") < at("[Promoted]") && at("[Promoted]") < at("[RolledBack]"), "in order: {texts:?}");
    let rolled_back = texts[at("[RolledBack]")];
    assert!(rolled_back.contains(&format!("{ns}/backend bbbb222 in {}", s.env)) && rolled_back.contains(&svc.alarm), "{rolled_back}");
    assert!(chat.iter().all(|(ct, _)| ct.starts_with("application/json")));

    let events = hook.bodies("/events");
    assert!(events.iter().all(|(ct, _)| ct.starts_with("application/cloudevents+json")), "{events:?}");
    let ids: std::collections::BTreeSet<&str> = events.iter().map(|(_, b)| b["id"].as_str().unwrap_or_default()).collect();
    assert_eq!(ids.len(), events.len(), "each message once, each with its own id: {events:?}");
    let rb = events.iter().map(|(_, b)| b).find(|b| b["type"] == "dev.shipshape.release.rolledback").unwrap();
    assert_eq!(rb["specversion"], "1.0");
    assert_eq!(rb["subject"], format!("{ns}/backend"));
    assert_eq!(rb["data"]["sha"], "bbbb222");
    assert!(events.iter().all(|(_, b)| b["type"] != "dev.shipshape.release.steppassed"), "only the events the sink lists");
    assert!(s._ctl.metric("shipshape_notifications_total", &["incidents", "delivered"]) >= 3.0);

    // The URL is a secret: not in the controller's logs, the Events or the status.
    let logs = s._ctl.logs();
    assert!(!logs.contains(&hook.url), "the webhook URL leaked into the logs");
    assert!(!s.events(&ns).contains(&hook.url));
    assert!(!s.c.kubectl(&["get", "release", &svc.name, "-n", &ns, "-o", "json"]).stdout.contains(&hook.url));
}
