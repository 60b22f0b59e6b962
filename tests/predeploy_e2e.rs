//! End to end for the steps before traffic (`spec.rollout.preDeploy`): the controller binary
//! on the real control plane, moto behind the AWS test proxy, whose task model
//! (testkit/src/ecs_tasks.rs) runs the one-off tasks as ECS documents them and writes their
//! output to moto's CloudWatch Logs.

mod support;

use std::time::Duration;

use shipshape_testkit::awsproxy::Fault;
use shipshape_testkit::ecs_tasks::Script;
use support::{aws_at, eventually, moto_query, proxy, put_alarm, set_alarm, unique, Cluster, Controller};

const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    c: Cluster,
    p: shipshape_testkit::awsproxy::AwsProxy,
    ctl: Controller,
    env: String,
    ns: String,
    svc: String,
}

async fn setup() -> Setup {
    let c = Cluster::start().await;
    let p = proxy().await;
    p.set_deployment_delay(Duration::from_millis(500));
    let ctl = Controller::start_at(&c, &p.url(), &[]);
    let (env, ns, svc) = (unique("env"), unique("shop"), unique("api"));
    let (subnet, sg) = support::network().await;
    c.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: shipshape.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  region: eu-west-1\n  ecsCluster: {{name: {env}, create: true, capacityProviders: [FARGATE]}}\n  network: {{subnets: [{subnet}], securityGroups: [{sg}]}}\n  allowedNamespaces: [{ns}]\n"
    ))
    .success();
    Setup { c, p, ctl, env, ns, svc }
}

impl Setup {
    /// The release at `sha` with `rollout` (YAML lines indented by 4) and `extra` spec lines.
    fn release(&self, sha: &str, rollout: &str, extra: &str) -> String {
        format!(
            "apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: {svc}, namespace: {ns}}}\nspec:\n  environment: {env}\n  image: {{repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop, gitSha: {sha}}}\n  task: {{cpu: 256, memory: 512, port: 8080, logGroup: /ecs/{svc}, env: {{APP_ENV: production}}}}\n  replicas: 2\n{extra}  rollout:\n{rollout}",
            svc = self.svc,
            ns = self.ns,
            env = self.env
        )
    }
    fn get(&self, path: &str) -> String {
        self.c.jsonpath(&["release", &self.svc, "-n", &self.ns], path)
    }
    async fn phase(&self, want: &str) {
        eventually(WAIT, &format!("phase {want}"), || (self.get("{.status.phase}") == want).then_some(())).await;
    }
    async fn service_task_definition(&self) -> String {
        let mine = proxy().await;
        let aws = aws_at(&mine.url(), "eu-west-1").await;
        let s = aws.ecs.describe_services(&self.env, std::slice::from_ref(&self.svc)).await.unwrap();
        s.first().map(|(_, s)| s.task_definition.clone()).unwrap_or_default()
    }
    fn events(&self) -> String {
        self.c.kubectl(&["get", "events", "-n", &self.ns, "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}"]).stdout
    }
}

const MIGRATE: &str = "    preDeploy:\n      - {name: migrate, command: [php, artisan, migrate, --force], timeout: 5m}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_runs_from_the_new_revision_before_any_traffic_and_its_exit_0_lets_the_rollout_go_on() {
    let s = setup().await;
    s.p.script_task(
        "php artisan migrate --force",
        Script { lines: vec!["Migrating: 2026_12_01_add_bookings".into(), "Migrated".into()], ..Script::default() },
    );
    s.c.apply(&s.release("aaaa111", MIGRATE, "")).success();
    s.phase("Healthy").await;
    // The task came first, from the release's own task definition, with the command
    // overridden; the service only after it exited 0.
    let calls = s.p.calls();
    let ops: Vec<_> = calls.iter().map(|c| c.operation.as_str()).collect();
    let run = ops.iter().position(|o| *o == "RunTask").expect("RunTask");
    let create = ops.iter().position(|o| *o == "CreateService").expect("CreateService");
    assert!(run < create, "the migration before the service: {ops:?}");
    let td = s.get("{.status.stableTaskDefinitionArn}");
    assert_eq!(calls[run].task_definition.as_deref(), Some(td.as_str()), "the new revision's task");
    let started = s.p.tasks_started();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].1, ["php", "artisan", "migrate", "--force"]);
    assert!(started[0].0.as_deref().is_some_and(|b| b.starts_with("shipshape-")), "{started:?}");
    assert_eq!(s.get("{.status.history[0].preDeploy[0].phase}"), "Succeeded");
    assert_eq!(s.get("{.status.history[0].preDeploy[0].exitCode}"), "0");
    assert!(s.get("{.status.history[0].preDeploy[0].taskArn}").contains(":task/"));
    assert_eq!(s.get("{.status.history[0].preDeploy[0].logTail}"), r#"["Migrating: 2026_12_01_add_bookings","Migrated"]"#);
    assert!(s.events().contains("PreDeploySucceeded: step migrate succeeded (exit 0)"), "{}", s.events());

    // The next SHA: its own task, the service updated after it.
    let updates = s.p.count("UpdateService");
    s.c.apply(&s.release("bbbb222", MIGRATE, "")).success();
    eventually(WAIT, "v2 stable", || (s.get("{.status.stableSha}") == "bbbb222").then_some(())).await;
    assert_eq!(s.p.tasks_started().len(), 2);
    assert!(s.p.count("UpdateService") > updates);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_migration_fails_the_rollout_and_the_service_never_moves() {
    let s = setup().await;
    s.c.apply(&s.release("aaaa111", MIGRATE, "")).success();
    s.phase("Healthy").await;
    let stable_td = s.get("{.status.stableTaskDefinitionArn}");
    let updates = s.p.count("UpdateService");
    s.p.script_task(
        "php artisan migrate --force",
        Script {
            exit_code: 1,
            lines: vec!["SQLSTATE[42S21]: Column already exists: 1060 Duplicate column name 'plate'".into()],
            ..Script::default()
        },
    );
    s.c.apply(&s.release("cccc333", MIGRATE, "")).success();
    s.phase("Failed").await;
    let (stalled, reason) = s.c.condition(&["release", &s.svc, "-n", &s.ns], "Stalled");
    assert_eq!((stalled.as_str(), reason.as_str()), ("True", "PreDeployFailed"));
    let message = s.get("{.status.conditions[?(@.type==\"Stalled\")].message}");
    for part in ["step migrate failed: exited 1", "Essential container in task exited", "Duplicate column name", "aaaa111 still serves"] {
        assert!(message.contains(part), "{part} in {message}");
    }
    // One `kubectl get` says it.
    let get = s.c.kubectl(&["get", "release", "-n", &s.ns]).success().stdout;
    assert!(get.contains("Failed") && get.contains("cccc333") && get.contains("aaaa111") && get.contains("PreDeployFailed"), "{get}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shipshape"))
        .args(["status", "-n", &s.ns])
        .env("KUBECONFIG", &s.c.kubeconfig)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("0% (preDeploy migrate 1/1: Failed)"), "{out}");
    assert!(s.events().contains("PreDeployFailed: cccc333: step migrate failed: exited 1"), "{}", s.events());
    assert_eq!(s.service_task_definition().await, stable_td, "the service never pointed at the new revision");
    assert_eq!(s.get("{.status.currentSha}"), "aaaa111");
    // Not retried, nothing moves.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.p.count("UpdateService"), updates);
    assert_eq!(s.p.tasks_started().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_ecs_cannot_place_or_start_fails_the_rollout() {
    let s = setup().await;
    s.p.script_task("php artisan migrate --force", Script { not_placed: Some("RESOURCE:ENI".into()), ..Script::default() });
    s.c.apply(&s.release("aaaa111", MIGRATE, "")).success();
    s.phase("Failed").await;
    let reason = s.get("{.status.history[0].preDeploy[0].reason}");
    assert!(reason.contains("never ran its command") && reason.contains("RESOURCE:ENI"), "{reason}");
    assert_eq!(s.p.count("RunTask"), 1, "not retried");
    s.p.script_task(
        "php artisan migrate --force",
        Script { fail_to_start: Some("CannotPullContainerError: pull access denied".into()), ..Script::default() },
    );
    s.c.kubectl(&["annotate", "release", &s.svc, "-n", &s.ns, "shipshape.dev/retry=1"]).success();
    eventually(WAIT, "the retry failed too", || {
        s.get("{.status.history[0].preDeploy[0].reason}").contains("CannotPullContainerError").then_some(())
    })
    .await;
    assert!(s.get("{.status.history[0].preDeploy[0].reason}").contains("TaskFailedToStart"));
    assert_eq!(s.p.count("CreateService"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_past_its_timeout_is_stopped_and_fails_the_rollout() {
    let s = setup().await;
    s.p.script_task("php artisan migrate --force", Script { runs_for: Duration::from_secs(3600), ..Script::default() });
    let slow = "    preDeploy:\n      - {name: migrate, command: [php, artisan, migrate, --force], timeout: 3s}\n";
    s.c.apply(&s.release("aaaa111", slow, "")).success();
    s.phase("Failed").await;
    assert_eq!(s.p.count("StopTask"), 1, "stopped once");
    let reason = s.get("{.status.history[0].preDeploy[0].reason}");
    assert!(reason.contains("timed out after 3s") && reason.contains("UserInitiated"), "{reason}");
    assert_eq!(s.p.count("CreateService"), 0, "no service for a first release whose migration failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restarted_mid_step_finds_its_task_and_a_lost_answer_starts_no_second_one() {
    let mut s = setup().await;
    // Long enough to be read mid-step and still running when the new controller comes.
    s.p.script_task("php artisan migrate --force", Script { runs_for: Duration::from_secs(20), ..Script::default() });
    // RunTask's answer lost on the way back: retried with the same token.
    s.p.inject("RunTask", Fault::LostAnswer, 1);
    s.c.apply(&s.release("aaaa111", MIGRATE, "")).success();
    eventually(WAIT, "the step running", || (s.get("{.status.rollout.preDeploy[0].phase}") == "Running").then_some(())).await;
    let (reconciling, reason) = s.c.condition(&["release", &s.svc, "-n", &s.ns], "Reconciling");
    assert_eq!((reconciling.as_str(), reason.as_str()), ("True", "PreDeploy"), "kstatus: in progress while the step runs");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shipshape"))
        .args(["status", "-n", &s.ns])
        .env("KUBECONFIG", &s.c.kubeconfig)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("0% (preDeploy migrate 1/1: Running)"));
    s.ctl.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.ctl = Controller::start_at(&s.c, &s.p.url(), &[]);
    s.phase("Healthy").await;
    assert_eq!(s.p.tasks_started().len(), 1, "one task for the step, whatever happened meanwhile");
    assert_eq!(s.get("{.status.history[0].preDeploy[0].phase}"), "Succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_comes_first_and_after_an_irreversible_migration_a_failing_verdict_holds_until_a_person_rolls_back() {
    let s = setup().await;
    let db = unique("orders");
    s.c.apply(&format!(
        "apiVersion: shipshape.dev/v1alpha1\nkind: StackSpec\nmetadata: {{name: data, namespace: {ns}}}\nspec:\n  environment: {env}\n  outputs: data-outputs\n  databases:\n    - {{name: {db}, engine: postgres, engineVersion: \"16.4\", instanceClass: db.t4g.micro, allocatedStorageGiB: 20}}\n",
        ns = s.ns,
        env = s.env
    ))
    .success();
    s.c.await_condition(&["stackspec", "data", "-n", &s.ns], "Ready", "True", WAIT).await;
    let alarm = unique("api-errors");
    put_alarm(&alarm, "OK").await;
    // `runs` rounds of 1 s: v2's analysis lasts long enough for the test to see it and fire the alarm.
    let rollout = |alarm: &str, runs: u32| {
        format!(
            "    snapshotRetention: 1\n    analysis: {{interval: 1s, successfulRuns: {runs}, failureLimit: 0, cloudwatchAlarms: [{alarm}]}}\n    preDeploy:\n      - {{name: migrate, command: [psql, -f, database/migrations/042_drop_legacy_plate.sql], snapshot: {db}, irreversible: true}}\n"
        )
    };
    s.c.apply(&s.release("aaaa111", &rollout(&alarm, 2), "  stack: data\n")).success();
    s.phase("Healthy").await;
    let snapshot = s.get("{.status.history[0].preDeploy[0].snapshot}");
    assert!(snapshot.starts_with(&format!("{db}-pre-aaaa111-")), "{snapshot}");
    let taken = moto_query("rds", &format!("Action=DescribeDBSnapshots&Version=2014-10-31&DBSnapshotIdentifier={snapshot}")).await;
    assert!(taken.contains("<Status>available</Status>") && taken.contains("shipshape.dev/owner"), "{taken}");
    let ops: Vec<_> = s.p.calls().iter().map(|c| c.operation.clone()).collect();
    let snap = ops.iter().position(|o| o == "CreateDBSnapshot").expect("snapshot");
    let run = ops.iter().position(|o| o == "RunTask").expect("task");
    assert!(snap < run, "the snapshot before the migration: {ops:?}");
    assert!(s.events().contains(&format!("PreDeploySnapshot: snapshot {snapshot}")), "{}", s.events());

    // v2: its migration succeeds, then its alarm fires: held, not rolled back.
    let stable_td = s.get("{.status.stableTaskDefinitionArn}");
    s.c.apply(&s.release("bbbb222", &rollout(&alarm, 60), "  stack: data\n")).success();
    eventually(WAIT, "v2 analyzing", || (s.get("{.status.phase}") == "Analyzing").then_some(())).await;
    set_alarm(&alarm, "ALARM").await;
    s.phase("Paused").await;
    let (stalled, reason) = s.c.condition(&["release", &s.svc, "-n", &s.ns], "Stalled");
    assert_eq!((stalled.as_str(), reason.as_str()), ("True", "RollbackUnsafe"));
    let message = s.get("{.status.conditions[?(@.type==\"Stalled\")].message}");
    for part in ["irreversible preDeploy step migrate", &format!("{db}-pre-bbbb222-"), &alarm, "shipshape rollback"] {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert!(s.events().contains("RollbackUnsafe: bbbb222 failed after irreversible preDeploy step migrate"), "{}", s.events());
    // snapshotRetention 1: v1's snapshot went once v2's was available; v2's is kept.
    let v2_snapshot = s.get("{.status.rollout.preDeploy[0].snapshot}");
    let gone = moto_query("rds", &format!("Action=DescribeDBSnapshots&Version=2014-10-31&DBSnapshotIdentifier={snapshot}")).await;
    assert!(gone.contains("DBSnapshotNotFound"), "{gone}");
    let kept = moto_query("rds", &format!("Action=DescribeDBSnapshots&Version=2014-10-31&DBSnapshotIdentifier={v2_snapshot}")).await;
    assert!(kept.contains("<Status>available</Status>"), "{kept}");
    assert_eq!(s.ctl.metric("shipshape_rollback_unsafe", &[&s.ns]), 1.0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.get("{.status.phase}"), "Paused", "held however long it waits");
    assert_ne!(s.service_task_definition().await, stable_td, "the controller did not roll back");
    // A person decides.
    s.c.kubectl(&["annotate", "release", &s.svc, "-n", &s.ns, "shipshape.dev/rollback=1"]).success();
    s.phase("RolledBack").await;
    assert_eq!(s.service_task_definition().await, stable_td);
    assert_eq!(s.ctl.metric("shipshape_rollback_unsafe", &[&s.ns]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_steps_are_invalid_spec_naming_the_field() {
    let s = setup().await;
    let no_db = "    preDeploy:\n      - {name: migrate, command: [migrate], snapshot: orders}\n";
    s.c.apply(&s.release("aaaa111", no_db, "")).success();
    let message = s.c.await_condition(&["release", &s.svc, "-n", &s.ns], "Stalled", "True", WAIT).await;
    assert_eq!(message, "InvalidSpec");
    let text = s.get("{.status.conditions[?(@.type==\"Stalled\")].message}");
    assert!(text.contains("spec.rollout.preDeploy[0].snapshot"), "{text}");
    // An ECS step without a command (a Lambda step has a payload instead).
    s.c.apply(&s.release("aaaa111", "    preDeploy:\n      - {name: migrate, command: []}\n", "")).success();
    eventually(WAIT, "the empty command named", || {
        s.get("{.status.conditions[?(@.type==\"Stalled\")].message}")
            .contains("spec.rollout.preDeploy[0].command: a step needs a command")
            .then_some(())
    })
    .await;
    // The schema refuses what it can name.
    let long = s.c.apply(&s.release("aaaa111", "    preDeploy:\n      - {name: migrate, command: [x], timeout: 3h}\n", ""));
    assert!(long.code != 0 && long.stderr.contains("timeout must be between 1s and 2h"), "{}", long.stderr);
    assert_eq!(s.p.tasks_started().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_smoke_test_fails_its_round_and_rolls_back_and_a_passing_one_promotes() {
    let s = setup().await;
    let smoke = |cmd: &str| {
        format!("    analysis: {{interval: 1s, successfulRuns: 1, failureLimit: 0, jobs: [{{name: smoke, command: [npm, run, {cmd}]}}]}}\n")
    };
    s.c.apply(&s.release("aaaa111", &smoke("test:smoke"), "")).success();
    s.phase("Healthy").await;
    let stable_td = s.get("{.status.stableTaskDefinitionArn}");
    s.p.script_task(
        "npm run test:smoke-broken",
        Script { exit_code: 1, lines: vec!["1 failing: POST /bookings returns 500".into()], ..Script::default() },
    );
    s.c.apply(&s.release("bbbb222", &smoke("test:smoke-broken"), "")).success();
    s.phase("RolledBack").await;
    let reason = s.get("{.status.history[0].reason}");
    assert!(reason.contains("job smoke exited 1") && reason.contains("POST /bookings returns 500"), "{reason}");
    assert_eq!(s.service_task_definition().await, stable_td);
    let jobs: Vec<_> = s.p.tasks_started().into_iter().filter(|(_, c)| c.join(" ").starts_with("npm run")).collect();
    assert_eq!(jobs.len(), 2, "one smoke task per rollout's round: {jobs:?}");
    // The smoke test's task ran the revision being judged.
    let runs: Vec<_> = s.p.calls().into_iter().filter(|c| c.operation == "RunTask").collect();
    assert_ne!(runs.last().and_then(|c| c.task_definition.clone()), Some(stable_td));
    assert!(s.get("{.status.lastMeasurement.query}").contains("job:smoke"));

    // A smoke test past its timeout is stopped and fails its round.
    s.p.script_task("npm run test:smoke-slow", Script { runs_for: Duration::from_secs(3600), ..Script::default() });
    let slow = "    analysis: {interval: 1s, successfulRuns: 1, failureLimit: 0, jobs: [{name: smoke, command: [npm, run, \"test:smoke-slow\"], timeout: 2s}]}\n";
    s.c.apply(&s.release("cccc333", slow, "")).success();
    eventually(WAIT, "cccc333 rolled back", || (s.get("{.status.history[0].sha}") == "cccc333").then_some(())).await;
    let reason = s.get("{.status.history[0].reason}");
    assert!(reason.contains("job smoke") && reason.contains("timed out after 2s"), "{reason}");
    assert!(s.p.count("StopTask") >= 1);
}

type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A local HTTP server answering 401 without `Authorization: Bearer t0ken`, else 503 until
/// `up` is set, then 200 with `{"status":"up"}`; it records each request line.
async fn health_server(up: std::sync::Arc<std::sync::atomic::AtomicBool>) -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let requests = seen.clone();
    tokio::spawn(async move {
        // Ends with the test's runtime; an accept error would show as failed checks below.
        while let Ok((mut sock, _)) = listener.accept().await {
            let (requests, up) = (requests.clone(), up.clone());
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                requests.lock().unwrap().push(request.lines().next().unwrap_or_default().to_string());
                let authorized = request.lines().any(|l| l.eq_ignore_ascii_case("authorization: Bearer t0ken"));
                let (status, body) = if !authorized {
                    ("401 Unauthorized", "{}")
                } else if !up.load(std::sync::atomic::Ordering::SeqCst) {
                    ("503 Service Unavailable", r#"{"status":"starting"}"#)
                } else {
                    ("200 OK", r#"{"status":"up"}"#)
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(answer.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_check_against_a_real_server_fails_rounds_while_it_answers_503_then_passes() {
    let s = setup().await;
    s.c.apply(&s.release("aaaa111", "    progressDeadline: 2m\n", "")).success();
    s.phase("Healthy").await;
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (url, seen) = health_server(up.clone()).await;
    // The token, in a Secret labelled for headers, readable by the controller in this namespace.
    s.c.allow_secrets(&s.ns);
    s.c.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: health-token, namespace: {ns}, labels: {{shipshape.dev/http-headers: \"true\"}}}}\nstringData: {{Authorization: Bearer t0ken}}\n",
        ns = s.ns
    ))
    .success();
    // `teapot` always fails (no token: 401, it expects 418) but only as a dry run.
    let check = format!(
        "    analysis:\n      interval: 1s\n      successfulRuns: 2\n      failureLimit: 30\n      http:\n        - {{name: health, url: \"{url}/health?sha={{{{sha}}}}\", headersSecretRef: {{name: health-token}}, jsonPath: $.status, equals: up, timeout: 2s}}\n        - {{name: teapot, url: \"{url}/teapot\", method: POST, expectStatus: [\"418\"], dryRun: true}}\n"
    );
    s.c.apply(&s.release("bbbb222", &check, "")).success();
    // Failed rounds counted (the dry run's never are) while the server answers 503; then it is up.
    eventually(WAIT, "a failed round", || (s.get("{.status.rollout.failures}").parse::<i32>().unwrap_or(0) >= 1).then_some(())).await;
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    eventually(WAIT, "v2 stable once the server answers 200", || (s.get("{.status.stableSha}") == "bbbb222").then_some(())).await;
    assert_eq!(s.get("{.status.history[0].outcome}"), "Promoted");
    assert_eq!(s.ctl.metric("shipshape_analysis_value", &["http:health"]), 200.0);
    assert_eq!(s.ctl.metric("shipshape_analysis_value", &["http:teapot"]), 401.0);
    let lines = seen.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.starts_with("GET /health?sha=bbbb222 ")), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("POST /teapot ")), "{lines:?}");
    let verdicts = s.get("{.status.history[0].reason}");
    assert!(!verdicts.contains("teapot"), "a dry run never decides: {verdicts}");

    // The instance metadata address is refused (the rollout holds as for an invalid query).
    let metadata =
        "    analysis:\n      interval: 1s\n      http:\n        - {name: meta, url: \"http://169.254.169.254/latest/meta-data/\"}\n";
    s.c.apply(&s.release("cccc333", metadata, "")).success();
    let reason = s.c.await_condition(&["release", &s.svc, "-n", &s.ns], "Stalled", "True", WAIT).await;
    assert_eq!(reason, "InvalidQuery");
    assert!(s.get("{.status.conditions[?(@.type==\"Stalled\")].message}").contains("link-local"));
}
