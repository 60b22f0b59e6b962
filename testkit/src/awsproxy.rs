//! The AWS test proxy: sits between the SDK and moto (`AWS_ENDPOINT_URL` points here), and
//! - fixes the wire differences between moto and AWS that break the Rust SDK
//!   (GetBucketVersioning's root element: moto's GetBucketVersioningResponse, S3's VersioningConfiguration);
//! - injects faults on demand: the next k calls of an operation fail with a throttle, a
//!   500 or AccessDenied in the service's own error format, or are delayed;
//! - records every call (service, operation) so tests can count reads and writes.
//!
//! - checks each request of the controller against AWS's API model and authorizes it with a
//!   real IAM policy evaluator against deploy/iam-policy.json ([`crate::gate`]): what AWS
//!   would refuse is refused, and the test that sent it fails;
//! - models S3 bucket ABAC and S3 Control tagging ([`crate::s3`]).
//!
//! Control it from Rust ([`AwsProxy::inject`], [`AwsProxy::calls`]) or over HTTP:
//! `POST /__proxy/faults` with `{"operation":"CreateBucket","fault":"throttle","times":3}`,
//! `GET /__proxy/calls`, `GET /__proxy/violations`, `POST /__proxy/reset`, `POST /__proxy/ecs/fail-next` with
//! `{"service":"api","failedTasks":3}`, `POST /__proxy/ecs/delay` with `{"ms":500}`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// A fault to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Fault {
    /// The service's throttling error (ThrottlingException, Throttling, SlowDown).
    Throttle,
    /// A 500 internal error.
    ServerError,
    /// AccessDenied.
    AccessDenied,
    /// Forward after this many milliseconds.
    DelayMs(u64),
    /// Forward (AWS does it), then answer 500 as if the answer were lost on the way back: a
    /// retry meets its own earlier success.
    LostAnswer,
}

/// One call the proxy saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// ecs, rds, s3, sts.
    pub service: String,
    /// Operation name, e.g. CreateBucket.
    pub operation: String,
    /// Whether the proxy answered it with an injected fault.
    pub faulted: bool,
    /// The task definition of an ECS CreateService/UpdateService call.
    #[serde(default)]
    pub task_definition: Option<String>,
    /// The caller's access key id (from the SigV4 credential scope): tells callers apart.
    #[serde(default)]
    pub access_key: String,
    /// The ECS service of a CreateService/UpdateService call.
    #[serde(default)]
    pub service_name: Option<String>,
    /// The services a DescribeServices call asked for (names as sent: names or ARNs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub described: Vec<String>,
    /// The bucket of an S3 call, the DB instance of an RDS call naming one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// When the proxy received it (not serialized: an Instant means nothing elsewhere).
    #[serde(skip)]
    pub at: Option<std::time::Instant>,
}

#[derive(Default)]
struct State_ {
    faults: HashMap<String, VecDeque<Fault>>,
    calls: Vec<Call>,
    ecs: EcsModel,
    /// Service deployments of traffic-shifting strategies.
    native: crate::ecs_deploy::Model,
    /// One-off tasks (RunTask).
    tasks: crate::ecs_tasks::Model,
    /// RDS manual snapshots: when each was asked for (moto makes them available at once).
    snapshots: HashMap<String, std::time::Instant>,
    /// How long an RDS snapshot stays `creating`.
    snapshot_delay: Duration,
    /// Listener rule writes as they landed in moto (ModifyRule answered), with when.
    rules_landed: Vec<(std::time::Instant, crate::ecs_deploy::RuleWrite)>,
    /// Requests AWS would have refused (invalid for the API model, or denied by IAM).
    violations: Vec<crate::gate::Violation>,
    /// The account of each access key STS issued (AssumeRole answers); others are moto's
    /// default account.
    accounts: HashMap<String, String>,
    /// Keys of roles assumed by someone other than shipshape (a test's set-up, session names
    /// other than `shipshape`): like [`crate::gate::ADMIN_KEY`], not checked.
    others: std::collections::HashSet<String>,
    /// IAM policies attached beside deploy/iam-policy.json (e.g. an adoption policy).
    attached: Vec<(String, serde_json::Value)>,
    /// Deployment events put into moto: (service ARN, when the ticker found the deployment
    /// ended, when moto answered the PutEvents). Benchmarks split a rollback's latency with it.
    announced: Vec<(String, std::time::Instant, std::time::Instant)>,
}

/// ECS deployment dynamics moto lacks: a new PRIMARY deployment per task definition
/// change, the previous one ACTIVE until the new one completes, `rolloutState`
/// IN_PROGRESS → COMPLETED after a delay, or FAILED with failed tasks on demand.
struct EcsModel {
    delay: Duration,
    /// By service ARN: names repeat across clusters, Regions and accounts.
    services: HashMap<String, Vec<Deployment>>,
    fail_next: HashMap<String, i64>,
    counter: usize,
    /// deploymentConfiguration as last set (moto accepts and drops it), by service ARN.
    configs: HashMap<String, serde_json::Value>,
    /// The long ARN of each service (what its events name).
    long_arns: HashMap<String, String>,
}

impl Default for EcsModel {
    fn default() -> Self {
        EcsModel {
            delay: Duration::from_secs(1),
            services: HashMap::new(),
            fail_next: HashMap::new(),
            counter: 0,
            configs: HashMap::new(),
            long_arns: HashMap::new(),
        }
    }
}

#[derive(Clone)]
struct Deployment {
    id: String,
    task_definition: String,
    desired: i64,
    created: std::time::Instant,
    created_epoch: f64,
    fail: Option<i64>,
    /// The Authorization header of the call that made it (its account and Region).
    auth: String,
    /// Its end was announced as an event.
    announced: bool,
}

impl EcsModel {
    #[cfg(test)]
    fn deploy(&mut self, arn: &str, service: &str, task_definition: &str, desired: i64, force: bool) {
        self.deploy_by(arn, service, task_definition, desired, force, "");
    }

    fn deploy_by(&mut self, arn: &str, service: &str, task_definition: &str, desired: i64, force: bool, auth: &str) {
        let list = self.services.entry(arn.to_string()).or_default();
        if let Some(primary) = list.first_mut() {
            if primary.task_definition == task_definition && !force {
                primary.desired = desired;
                return;
            }
        }
        self.counter += 1;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let fail = self.fail_next.remove(service);
        list.insert(
            0,
            Deployment {
                id: format!("ecs-svc/{:019}", self.counter),
                task_definition: task_definition.to_string(),
                desired,
                created: std::time::Instant::now(),
                created_epoch: now,
                fail,
                auth: auth.to_string(),
                announced: false,
            },
        );
        list.truncate(2);
    }

    /// The deployments that ended since last asked, as "ECS Deployment State Change" events.
    fn ended(&mut self) -> Vec<crate::aws_events::Emit> {
        let mut out = vec![];
        for (arn, list) in self.services.iter_mut() {
            if let Some(d) = list.first_mut().filter(|d| !d.announced && d.created.elapsed() >= self.delay) {
                d.announced = true;
                let arn = self.long_arns.get(arn).unwrap_or(arn);
                out.push(crate::aws_events::deployment_state(&d.auth, arn, &d.id, d.fail.is_some()));
            }
        }
        out
    }

    /// The deployments of a service as DescribeServices shows them now.
    fn render(&self, arn: &str) -> Option<(Vec<serde_json::Value>, i64)> {
        let list = self.services.get(arn)?;
        let primary = list.first()?;
        let done = primary.created.elapsed() >= self.delay;
        let state = match (done, primary.fail) {
            (true, Some(_)) => "FAILED",
            (true, None) => "COMPLETED",
            _ => "IN_PROGRESS",
        };
        let running = if state == "COMPLETED" { primary.desired } else { 0 };
        let delay = self.delay.as_secs_f64();
        let dep = |d: &Deployment, status: &str, state: &str, running: i64| {
            // ECS's updatedAt: when the deployment last changed — for a finished one, when
            // it completed (or failed).
            let updated = if state == "IN_PROGRESS" { d.created_epoch } else { d.created_epoch + delay };
            serde_json::json!({
                "id": d.id, "status": status, "taskDefinition": d.task_definition, "desiredCount": d.desired,
                "pendingCount": d.desired - running, "runningCount": running, "failedTasks": if state == "FAILED" { d.fail.unwrap_or(0) } else { 0 },
                "createdAt": d.created_epoch, "updatedAt": updated, "launchType": "FARGATE",
                "rolloutState": state, "rolloutStateReason": format!("ECS deployment {}", state.to_lowercase().replace('_', " ")),
            })
        };
        let mut out = vec![dep(primary, "PRIMARY", state, running)];
        if state != "COMPLETED" {
            // The previous deployment keeps serving until the new one completes.
            out.extend(list.get(1).map(|d| dep(d, "ACTIVE", "COMPLETED", d.desired)));
        }
        let total_running = out.iter().filter_map(|d| d["runningCount"].as_i64()).sum();
        Some((out, total_running))
    }
}

struct Shared {
    upstream: String,
    gate: crate::gate::Gate,
    /// Violations are expected (a test of refusals): dropping the proxy does not fail.
    expect_violations: std::sync::atomic::AtomicBool,
    http: reqwest::Client,
    state: Mutex<State_>,
    /// Listener rule writes made in ELBv2 so far (held while making them, so they land in
    /// the order the model decided them).
    rules_written: tokio::sync::Mutex<usize>,
    /// AWS's events are emitted into moto's EventBridge (crate::aws_events).
    emit_events: std::sync::atomic::AtomicBool,
    /// Caller ARNs (CloudTrail's userIdentity).
    identities: crate::aws_events::Identities,
    /// Access keys whose writes emit no CloudTrail event (benchmarks: see `unrecorded`).
    unrecorded: Mutex<Vec<String>>,
}

fn pending_writes(shared: &Shared, done: usize) -> Vec<crate::ecs_deploy::Write> {
    let mut s = shared.state.lock().unwrap();
    s.native.tick(std::time::Instant::now());
    s.native.take_writes(done)
}

/// Moves the service deployments on and makes the listener rule writes they decided, in
/// order, in moto's ELBv2 (ModifyRule with a weighted forward action).
async fn flush(shared: &Shared) {
    let mut done = shared.rules_written.lock().await;
    let writes = pending_writes(shared, *done);
    for w in writes {
        let w = match w {
            crate::ecs_deploy::Write::Rule(w) => w,
            crate::ecs_deploy::Write::Service { auth, cluster, service, task_definition } => {
                let body = serde_json::json!({"cluster": cluster, "service": service, "taskDefinition": task_definition});
                let _ = shared
                    .http
                    .post(format!("{}/", shared.upstream))
                    .header("authorization", auth)
                    .header("content-type", "application/x-amz-json-1.1")
                    .header("x-amz-target", "AmazonEC2ContainerServiceV20141113.UpdateService")
                    .body(body.to_string())
                    .send()
                    .await;
                *done += 1;
                continue;
            }
        };
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", "ModifyRule").append_pair("Version", "2015-12-01").append_pair("RuleArn", &w.rule);
            form.append_pair("Actions.member.1.Type", "forward");
            for (i, (group, weight)) in w.groups.iter().enumerate() {
                let key = format!("Actions.member.1.ForwardConfig.TargetGroups.member.{}", i + 1);
                form.append_pair(&format!("{key}.TargetGroupArn"), group).append_pair(&format!("{key}.Weight"), &weight.to_string());
            }
            form.finish()
        };
        let _ = shared
            .http
            .post(format!("{}/", shared.upstream))
            .header("authorization", &w.auth)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await;
        shared.state.lock().unwrap().rules_landed.push((std::time::Instant::now(), w));
        *done += 1;
    }
}

/// A running proxy.
pub struct AwsProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

/// Operations that change something in AWS (used to count writes).
pub fn is_write(operation: &str) -> bool {
    shipshape::aws::is_write(operation)
}

impl AwsProxy {
    /// Starts a proxy on `addr` forwarding to `upstream` (moto's URL), checking the
    /// controller's requests against AWS's API model and deploy/iam-policy.json.
    pub async fn start(addr: &str, upstream: &str) -> std::io::Result<AwsProxy> {
        Self::start_with(addr, upstream, crate::gate::Gate::strict()).await
    }

    /// [`AwsProxy::start`] with the checks of `gate`.
    pub async fn start_with(addr: &str, upstream: &str, gate: crate::gate::Gate) -> std::io::Result<AwsProxy> {
        if gate.policies.is_some() && crate::iam::Evaluator::shared().is_none() {
            return Err(std::io::Error::other(format!(
                "the IAM evaluator is not installed in {} (scripts/test.sh --setup runs npm ci there)",
                crate::iam::evaluator_dir().display()
            )));
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            gate,
            expect_violations: std::sync::atomic::AtomicBool::new(false),
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            state: Mutex::new(State_ { snapshot_delay: Duration::from_secs(2), ..State_::default() }),
            rules_written: tokio::sync::Mutex::new(0),
            emit_events: std::sync::atomic::AtomicBool::new(false),
            identities: Default::default(),
            unrecorded: Mutex::new(vec![]),
        });
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        // Bakes, scale-ups and hook timeouts run on time, whether or not anyone calls.
        let ticker = Arc::downgrade(&shared);
        tokio::spawn(async move {
            while let Some(shared) = ticker.upgrade() {
                flush(&shared).await;
                if shared.emit_events.load(std::sync::atomic::Ordering::Relaxed) {
                    let ended = shared.state.lock().unwrap().ecs.ended();
                    let found = std::time::Instant::now();
                    // Ten to a PutEvents call: 50 deployments ending together were announced
                    // one call after another over ~2 s.
                    crate::aws_events::put_all(&shared.http, &shared.upstream, &ended).await;
                    if !ended.is_empty() {
                        let put = std::time::Instant::now();
                        let mut s = shared.state.lock().unwrap();
                        s.announced.extend(ended.iter().filter_map(|e| Some((e.resources.first()?.clone(), found, put))));
                    }
                }
                drop(shared);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(AwsProxy { shared, addr, stop: Some(tx) })
    }

    /// Emits AWS's events into moto's EventBridge from now on: a deployment's end, and
    /// CloudTrail's record of every successful write (crate::aws_events).
    pub fn emit_events(&self, on: bool) {
        self.shared.emit_events.store(on, std::sync::atomic::Ordering::Relaxed);
        if on {
            // Deployments that ended before are not news.
            let mut s = self.shared.state.lock().unwrap();
            let _ = s.ecs.ended();
        }
    }

    /// Writes signed with `access_key` emit no CloudTrail event. For benchmarks only: the
    /// controller drops its own calls' events on arrival (tests/events_e2e.rs has them
    /// delivered), but moto on two shared cores cannot carry one event per write of 10,000
    /// converging releases into every Environment's queue of the account.
    pub fn unrecorded(&self, access_key: &str) {
        self.shared.unrecorded.lock().unwrap().push(access_key.to_string());
    }

    /// The URL to put in `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests of the controller that AWS would have refused so far.
    pub fn violations(&self) -> Vec<crate::gate::Violation> {
        self.shared.state.lock().unwrap().violations.clone()
    }

    /// Attaches another IAM policy to shipshape's role beside deploy/iam-policy.json (as a
    /// platform team attaches `shipshape iam-policy --adopt ARN` while adopting).
    pub fn attach_policy(&self, name: &str, policy: serde_json::Value) {
        self.shared.state.lock().unwrap().attached.push((name.to_string(), policy));
    }

    /// The violations so far, forgotten: a test that provokes refusals checks them itself.
    pub fn take_violations(&self) -> Vec<crate::gate::Violation> {
        std::mem::take(&mut self.shared.state.lock().unwrap().violations)
    }

    /// This test provokes refusals on purpose: dropping the proxy does not fail on them.
    pub fn expect_violations(&self) {
        self.shared.expect_violations.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Fails (panics) when a request of the controller was one AWS would have refused.
    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "requests AWS would refuse ({}):\n{}",
            v.len(),
            v.iter().map(|v| format!("  {}: {}", v.operation, v.reason)).collect::<Vec<_>>().join("\n")
        );
    }

    /// The next `times` calls of `operation` get `fault`.
    pub fn inject(&self, operation: &str, fault: Fault, times: usize) {
        let mut s = self.shared.state.lock().unwrap();
        s.faults.entry(operation.to_string()).or_default().extend(std::iter::repeat_n(fault, times));
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.state.lock().unwrap().calls.clone()
    }

    /// How many calls of `operation` reached the proxy (faulted ones included).
    pub fn count(&self, operation: &str) -> usize {
        self.calls().iter().filter(|c| c.operation == operation).count()
    }

    /// Calls that change something.
    pub fn writes(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| is_write(&c.operation)).collect()
    }

    /// Forgets calls and pending faults (the ECS deployments it models stay).
    pub fn reset(&self) {
        let mut s = self.shared.state.lock().unwrap();
        s.calls.clear();
        s.faults.clear();
        s.announced.clear();
    }

    /// The deployment events put into moto since the last reset: (service ARN, when the
    /// deployment's end was found, when moto took the PutEvents).
    pub fn announced(&self) -> Vec<(String, std::time::Instant, std::time::Instant)> {
        self.shared.state.lock().unwrap().announced.clone()
    }

    /// How long an ECS deployment stays IN_PROGRESS before COMPLETED (or FAILED).
    pub fn set_deployment_delay(&self, d: Duration) {
        self.shared.state.lock().unwrap().ecs.delay = d;
    }

    /// Every listener rule write the ECS service deployments made, with when it landed in
    /// ELBv2 (moto answered the ModifyRule).
    pub fn rule_writes(&self) -> Vec<(std::time::Instant, crate::ecs_deploy::RuleWrite)> {
        self.shared.state.lock().unwrap().rules_landed.clone()
    }

    /// How long SCALE_UP, CLEAN_UP and a rollback's scale-down take in the service deployments.
    pub fn set_scale_delay(&self, d: Duration) {
        self.shared.state.lock().unwrap().native.scale = d;
    }

    /// The next deployment of `service` fails with `failed_tasks` tasks that did not start.
    pub fn fail_next_deployment(&self, service: &str, failed_tasks: i64) {
        self.shared.state.lock().unwrap().ecs.fail_next.insert(service.to_string(), failed_tasks);
    }

    /// What a one-off task running `command` (its arguments joined by spaces) does.
    pub fn script_task(&self, command: &str, script: crate::ecs_tasks::Script) {
        self.shared.state.lock().unwrap().tasks.script(command, script);
    }

    /// The one-off tasks started so far: (startedBy, command).
    pub fn tasks_started(&self) -> Vec<(Option<String>, Vec<String>)> {
        self.shared.state.lock().unwrap().tasks.started()
    }

    /// Each one-off task's task definition and when it is STOPPED (as DescribeTasks says).
    pub fn task_stops(&self) -> Vec<(String, std::time::Instant)> {
        self.shared.state.lock().unwrap().tasks.stops()
    }

    /// How long an RDS manual snapshot stays `creating` (RDS takes minutes; moto none).
    pub fn set_snapshot_delay(&self, d: Duration) {
        self.shared.state.lock().unwrap().snapshot_delay = d;
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if !std::thread::panicking() && !self.shared.expect_violations.load(std::sync::atomic::Ordering::Relaxed) {
            self.assert_no_violations();
        }
    }
}

/// The service from the SigV4 credential scope (`Credential=AKID/date/region/SERVICE/aws4_request`).
fn service_of(headers: &HeaderMap) -> String {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    auth.split("Credential=").nth(1).and_then(|c| c.split('/').nth(3)).unwrap_or("unknown").to_string()
}

/// The operation: X-Amz-Target (JSON protocols), `Action=` (query protocols), or the S3
/// REST shape (method, bucket/key, subresource).
/// Lambda's REST-JSON operations by method and path (Lambda API Reference).
fn lambda_operation(method: &str, path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("POST", [_, "functions"]) => "CreateFunction",
        ("GET", [_, "functions", _]) => "GetFunction",
        ("DELETE", [_, "functions", _]) => "DeleteFunction",
        ("PUT", [_, "functions", _, "code"]) => "UpdateFunctionCode",
        ("PUT", [_, "functions", _, "configuration"]) => "UpdateFunctionConfiguration",
        ("GET", [_, "functions", _, "configuration"]) => "GetFunctionConfiguration",
        ("GET", [_, "functions", _, "versions"]) => "ListVersionsByFunction",
        ("POST", [_, "functions", _, "versions"]) => "PublishVersion",
        ("POST", [_, "functions", _, "aliases"]) => "CreateAlias",
        ("GET", [_, "functions", _, "aliases"]) => "ListAliases",
        ("GET", [_, "functions", _, "aliases", _]) => "GetAlias",
        ("PUT", [_, "functions", _, "aliases", _]) => "UpdateAlias",
        ("PUT", [_, "functions", _, "concurrency"]) => "PutFunctionConcurrency",
        ("DELETE", [_, "functions", _, "concurrency"]) => "DeleteFunctionConcurrency",
        ("PUT", [_, "functions", _, "provisioned-concurrency"]) => "PutProvisionedConcurrencyConfig",
        ("GET", [_, "functions", _, "provisioned-concurrency"]) => "GetProvisionedConcurrencyConfig",
        ("DELETE", [_, "functions", _, "provisioned-concurrency"]) => "DeleteProvisionedConcurrencyConfig",
        ("POST", [_, "functions", _, "invocations"]) => "Invoke",
        ("POST", [_, "tags", ..]) => "TagResource",
        ("GET", [_, "tags", ..]) => "ListTags",
        _ => "Unknown",
    }
}

fn operation_of(service: &str, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> String {
    if let Some(t) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return t.rsplit('.').next().unwrap_or(t).to_string();
    }
    if service == "lambda" {
        return lambda_operation(method.as_str(), uri.path()).into();
    }
    if let Some(op) = uri.path().strip_prefix(crate::cloudwatch::PREFIX) {
        return op.to_string();
    }
    if service == "s3" {
        if let Some(op) = crate::s3::control_operation(method.as_str(), uri.path()) {
            return op.into();
        }
    }
    if service != "s3" {
        let form = String::from_utf8_lossy(body);
        let query = uri.query().unwrap_or("");
        for pair in form.split('&').chain(query.split('&')) {
            if let Some(a) = pair.strip_prefix("Action=") {
                return a.to_string();
            }
        }
        return "Unknown".into();
    }
    let path = uri.path().trim_start_matches('/');
    let has_key = path.split_once('/').is_some_and(|(_, k)| !k.is_empty());
    let q: Vec<&str> = uri.query().unwrap_or("").split('&').map(|p| p.split('=').next().unwrap_or("")).collect();
    let sub = ["versioning", "tagging", "encryption", "publicAccessBlock", "lifecycle", "location", "policy", "acl", "abac"]
        .into_iter()
        .find(|s| q.contains(s));
    let name = |s: &str| match s {
        "versioning" => "BucketVersioning",
        "tagging" => "BucketTagging",
        "encryption" => "BucketEncryption",
        "publicAccessBlock" => "PublicAccessBlock",
        "lifecycle" => "BucketLifecycleConfiguration",
        "location" => "BucketLocation",
        "policy" => "BucketPolicy",
        "abac" => "BucketAbac",
        _ => "BucketAcl",
    };
    match (method.as_str(), has_key, sub) {
        ("GET", false, Some(s)) => format!("Get{}", name(s)),
        ("PUT", false, Some(s)) => format!("Put{}", name(s)),
        ("DELETE", false, Some(s)) => format!("Delete{}", name(s)),
        ("PUT", false, None) => "CreateBucket".into(),
        ("DELETE", false, None) => "DeleteBucket".into(),
        ("HEAD", false, _) => "HeadBucket".into(),
        ("GET", false, None) => "ListObjects".into(),
        ("PUT", true, _) => "PutObject".into(),
        ("GET", true, _) => "GetObject".into(),
        ("HEAD", true, _) => "HeadObject".into(),
        ("DELETE", true, _) => "DeleteObject".into(),
        ("POST", false, _) if q.contains(&"delete") => "DeleteObjects".into(),
        (m, _, _) => format!("{m}Unknown"),
    }
}

/// An error in the service's own wire format.
fn fault_response(service: &str, operation: &str, fault: Fault) -> Response {
    let (status, json_type, query_code, s3_code, message) = match fault {
        Fault::Throttle => (400, "ThrottlingException", "Throttling", "SlowDown", "Rate exceeded".to_string()),
        Fault::ServerError => {
            (500, "ServerException", "InternalFailure", "InternalError", "We encountered an internal error. Please try again.".to_string())
        }
        Fault::AccessDenied => (
            403,
            "AccessDeniedException",
            "AccessDenied",
            "AccessDenied",
            format!("User: arn:aws:sts::123456789012:assumed-role/shipshape/test is not authorized to perform: {service}:{operation}"),
        ),
        Fault::DelayMs(_) | Fault::LostAnswer => {
            (500, "ServerException", "InternalFailure", "InternalError", "We encountered an internal error. Please try again.".to_string())
        }
    };
    let (status, content_type, body) = match service {
        "ecs" => (status, "application/x-amz-json-1.1", serde_json::json!({"__type": json_type, "message": message}).to_string()),
        "s3" => {
            let status = if fault == Fault::Throttle { 503 } else { status };
            (status, "application/xml", format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{s3_code}</Code><Message>{message}</Message><RequestId>proxy</RequestId></Error>"))
        }
        _ => {
            let kind = if status >= 500 { "Receiver" } else { "Sender" };
            (
                status,
                "text/xml",
                format!("<ErrorResponse><Error><Type>{kind}</Type><Code>{query_code}</Code><Message>{message}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"),
            )
        }
    };
    let mut r = (StatusCode::from_u16(status).unwrap(), body).into_response();
    r.headers_mut().insert("content-type", content_type.parse().unwrap());
    r
}

#[derive(Deserialize)]
struct FaultRequest {
    operation: String,
    fault: Fault,
    #[serde(default = "one")]
    times: usize,
}

fn one() -> usize {
    1
}

async fn control(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Response {
    match (method.as_str(), path) {
        ("POST", "/__proxy/faults") => match serde_json::from_slice::<FaultRequest>(body) {
            Ok(f) => {
                let mut s = shared.state.lock().unwrap();
                s.faults.entry(f.operation).or_default().extend(std::iter::repeat_n(f.fault, f.times));
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        },
        ("POST", "/__proxy/ecs/fail-next") => {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let service = v["service"].as_str().unwrap_or_default().to_string();
            shared.state.lock().unwrap().ecs.fail_next.insert(service, v["failedTasks"].as_i64().unwrap_or(3));
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", "/__proxy/ecs/delay") => {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            shared.state.lock().unwrap().ecs.delay = Duration::from_millis(v["ms"].as_u64().unwrap_or(1000));
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", "/__proxy/ecs/task-script") => {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let script = crate::ecs_tasks::Script {
                exit_code: v["exitCode"].as_i64().and_then(|c| i32::try_from(c).ok()).unwrap_or(0),
                runs_for: Duration::from_millis(v["runsForMs"].as_u64().unwrap_or(1000).min(86_400_000)),
                lines: v["lines"].as_array().into_iter().flatten().filter_map(|l| l.as_str()).map(String::from).collect(),
                fail_to_start: v["failToStart"].as_str().map(String::from),
                not_placed: v["notPlaced"].as_str().map(String::from),
            };
            shared.state.lock().unwrap().tasks.script(v["command"].as_str().unwrap_or_default(), script);
            StatusCode::NO_CONTENT.into_response()
        }
        ("GET", "/__proxy/calls") => axum::Json(shared.state.lock().unwrap().calls.clone()).into_response(),
        ("GET", "/__proxy/violations") => axum::Json(shared.state.lock().unwrap().violations.clone()).into_response(),
        ("POST", "/__proxy/reset") => {
            let mut s = shared.state.lock().unwrap();
            s.calls.clear();
            s.faults.clear();
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn handle(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if uri.path().starts_with("/__proxy/") {
        return control(&shared, &method, uri.path(), &body).await;
    }
    flush(&shared).await;
    let service = service_of(&headers);
    let operation = operation_of(&service, &method, &uri, &headers, &body);
    let fault = {
        let mut s = shared.state.lock().unwrap();
        let fault = s.faults.get_mut(&operation).and_then(VecDeque::pop_front);
        let faulted = matches!(fault, Some(f) if !matches!(f, Fault::DelayMs(_)));

        let ecs_request = (service == "ecs").then(|| serde_json::from_slice::<serde_json::Value>(&body).ok()).flatten();
        let task_definition = ecs_request.as_ref().and_then(|v| v["taskDefinition"].as_str().map(String::from));
        let service_name = ecs_request
            .as_ref()
            .filter(|_| operation == "CreateService" || operation == "UpdateService")
            .and_then(|v| v["serviceName"].as_str().or(v["service"].as_str()))
            .map(|n| n.rsplit('/').next().unwrap_or(n).to_string());
        let described = ecs_request
            .as_ref()
            .filter(|_| operation == "DescribeServices")
            .and_then(|v| v["services"].as_array())
            .map(|a| a.iter().filter_map(|n| n.as_str()).map(|n| n.rsplit('/').next().unwrap_or(n).to_string()).collect())
            .unwrap_or_default();
        let resource = match service.as_str() {
            "s3" => Some(crate::s3::bucket_of(uri.path())).filter(|b| !b.is_empty()),
            "rds" => url::form_urlencoded::parse(&body).find(|(k, _)| k == "DBInstanceIdentifier").map(|(_, v)| v.into_owned()),
            _ => None,
        };
        let access_key = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|c| c.split('/').next())
            .unwrap_or("")
            .to_string();
        s.calls.push(Call {
            service: service.clone(),
            operation: operation.clone(),
            faulted,
            task_definition,
            access_key,
            service_name,
            described,
            resource,
            at: Some(std::time::Instant::now()),
        });
        fault
    };
    let mut lost = false;
    match fault {
        Some(Fault::DelayMs(ms)) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Some(Fault::LostAnswer) => lost = true,
        Some(f) => return fault_response(&service, &operation, f),
        None => {}
    }
    let (access_key, _) = crate::gate::scope(&headers);
    let (account, other, attached) = {
        let s = shared.state.lock().unwrap();
        let account = s.accounts.get(&access_key).cloned().unwrap_or_else(|| crate::gate::DEFAULT_ACCOUNT.into());
        (account, s.others.contains(&access_key), s.attached.clone())
    };
    if access_key != crate::gate::ADMIN_KEY && !other {
        let req =
            crate::gate::Request { signing: &service, operation: &operation, method: &method, uri: &uri, headers: &headers, body: &body };
        let lookups = TagLookups { shared: shared.clone() };
        let mut gate = shared.gate.clone();
        if let Some(p) = gate.policies.as_mut() {
            p.extend(attached);
        }
        if let crate::gate::Verdict::Refuse(v, status, code, message) = crate::gate::check(&gate, &req, &account, &lookups).await {
            shared.state.lock().unwrap().violations.push(v);
            return refusal(&service, &uri, status, code, &message);
        }
    }
    if service == "s3" {
        if let Some(answer) = s3_model(&shared, &operation, &method, &uri, &headers, &body).await {
            return answer;
        }
    }
    if service == "ecs" && crate::ecs_deploy::OPERATIONS.contains(&operation.as_str()) {
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let answer = shared.state.lock().unwrap().native.answer(&operation, &request, std::time::Instant::now());
        flush(&shared).await;
        return ecs_answer(answer);
    }
    if service == "ecs" && crate::ecs_tasks::OPERATIONS.contains(&operation.as_str()) {
        // The task model acts on what it received even when the answer is lost.
        let answer = one_off_task(&shared, &operation, &headers, &body, &account).await;
        return if lost { fault_response(&service, &operation, Fault::ServerError) } else { answer };
    }
    if service == "rds" && operation == "CreateDBSnapshot" {
        let id = crate::elasticache::form(&body).get("DBSnapshotIdentifier").cloned().unwrap_or_default();
        shared.state.lock().unwrap().snapshots.entry(id).or_insert_with(std::time::Instant::now);
    }
    if service == "ecs" && (operation == "CreateService" || operation == "UpdateService") {
        if let Some(refusal) = inactive_task_definition(&shared, &headers, &body).await {
            return refusal;
        }
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if let Some(e) = crate::ecs_deploy::validate(&request) {
            return ecs_answer(Err(e));
        }
    }
    if uri.path().starts_with(crate::cloudwatch::PREFIX) {
        return crate::cloudwatch::translate(&shared.http, &shared.upstream, &operation, &headers, &body).await;
    }
    if service == "lambda" && operation == "Invoke" {
        return crate::lambda::invoke(&shared.http, &shared.upstream, &uri, &headers, &body).await;
    }
    if service == "lambda" && operation.ends_with("ProvisionedConcurrencyConfig") {
        return crate::lambda::provisioned_concurrency(&shared.http, &shared.upstream, &method, &uri, &headers, &body).await;
    }
    if service == "elasticache" && operation == "DeleteReplicationGroup" {
        if let Some(refusal) = final_cache_snapshot(&shared, &headers, &body).await {
            return refusal;
        }
    }
    if service == "elasticache" {
        let answer = crate::elasticache::model().answer(&operation, &crate::elasticache::form(&body));
        if let Some((status, xml)) = answer {
            let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), xml).into_response();
            r.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("text/xml"));
            return r;
        }
    }
    let url = format!("{}{}", shared.upstream, uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut req = shared.http.request(method.clone(), &url).body(body.to_vec());
    for (k, v) in headers.iter() {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    // AWS finishes what it received even if the caller goes away (a controller killed in
    // the middle of an UpdateService): forwarding and recording the deployment run in their
    // own task, which a dropped connection does not cancel.
    let forwarded = {
        let (shared, service, operation) = (shared.clone(), service.clone(), operation.clone());
        let uri_path = uri.path().to_string();
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        tokio::spawn(async move {
            let resp = req.send().await.map_err(|e| format!("aws proxy: upstream failed: {e}"))?;
            let status = resp.status();
            let resp_headers = resp.headers().clone();
            let mut bytes = resp.bytes().await.unwrap_or_default().to_vec();
            if service == "ecs" && status.is_success() {
                bytes = ecs_overlay(&shared, &operation, &body, bytes, &auth);
                flush(&shared).await;
            }
            if status.is_success()
                && is_write(&operation)
                && crate::aws_events::RECORDED.contains(&service.as_str())
                && shared.emit_events.load(std::sync::atomic::Ordering::Relaxed)
                && !shared.unrecorded.lock().unwrap().iter().any(|k| auth.contains(&format!("Credential={k}/")))
            {
                // CloudTrail delivers after the call has answered: the caller never waits for it.
                let (shared, service, operation, uri_path, body, auth) =
                    (shared.clone(), service.clone(), operation.clone(), uri_path.clone(), body.clone(), auth.clone());
                tokio::spawn(async move {
                    let arn = shared.identities.arn(&shared.http, &shared.upstream, &auth).await;
                    let e = crate::aws_events::cloudtrail(&auth, &service, &operation, &uri_path, &body, &arn);
                    crate::aws_events::put(&shared.http, &shared.upstream, &e).await;
                });
            }
            if service == "s3" && operation == "DeleteBucket" && status.is_success() {
                crate::s3::forget(&crate::s3::bucket_of(uri_path.as_str()));
            }
            if service == "rds" && operation == "DescribeDBSnapshots" && status.is_success() {
                bytes = snapshot_creating(&shared, &body, bytes);
            }
            if service == "sts" && operation == "GetCallerIdentity" && status.is_success() {
                // moto names every plain key's caller user/moto; in AWS two keys are two users.
                bytes = crate::aws_events::distinct_users(&String::from_utf8_lossy(&bytes), &auth).into_bytes();
            }
            if service == "sts" && operation == "AssumeRole" && status.is_success() {
                learn_account(&shared, &String::from_utf8_lossy(&bytes));
            }
            if service == "elasticache" && status.is_success() {
                let mut model = crate::elasticache::model();
                match operation.as_str() {
                    "CreateReplicationGroup" => model.created(&crate::elasticache::form(&body)),
                    "DeleteReplicationGroup" => model.deleted(&crate::elasticache::form(&body)),
                    "DescribeReplicationGroups" => {
                        bytes = model.rewrite_describe(String::from_utf8_lossy(&bytes).into_owned()).into_bytes()
                    }
                    _ => {}
                }
            }
            Ok::<_, String>((status, resp_headers, bytes))
        })
    };
    let (status, resp_headers, mut bytes) = match forwarded.await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return (StatusCode::BAD_GATEWAY, e).into_response(),
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("aws proxy: forwarding task failed: {e}")).into_response(),
    };
    if lost {
        return fault_response(&service, &operation, Fault::ServerError);
    }
    if operation == "GetBucketVersioning" && status.is_success() {
        // moto names the root GetBucketVersioningResponse; S3 (and the SDK's parser) say
        // VersioningConfiguration.
        let text = String::from_utf8_lossy(&bytes).replace("GetBucketVersioningResponse", "VersioningConfiguration");
        bytes = text.into_bytes();
    }
    let mut out = Response::new(Body::from(bytes));
    *out.status_mut() = status;
    for (k, v) in resp_headers.iter() {
        if k != "content-length" && k != "transfer-encoding" && k != "connection" {
            out.headers_mut().insert(k, v.clone());
        }
    }
    out
}

/// ECS refuses to point a service at a deregistered (INACTIVE) task definition ("you can't
/// use an INACTIVE task definition revision to run new tasks or create new services, and you
/// can't update an existing service to reference an INACTIVE task definition revision": ECS
/// developer guide, Deregistering a task definition revision); moto does not. The answer
/// ECS gives: ClientException, 400.
async fn inactive_task_definition(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let req: serde_json::Value = serde_json::from_slice(body).ok()?;
    let td = req["taskDefinition"].as_str()?;
    let mut describe = shared
        .http
        .post(format!("{}/", shared.upstream))
        .header("x-amz-target", "AmazonEC2ContainerServiceV20141113.DescribeTaskDefinition")
        .body(serde_json::json!({"taskDefinition": td}).to_string());
    for (k, v) in headers.iter() {
        if k == "authorization" || k == "content-type" {
            describe = describe.header(k, v);
        }
    }
    let answer: serde_json::Value = describe.send().await.ok()?.json().await.ok()?;
    if answer["taskDefinition"]["status"] != "INACTIVE" {
        return None;
    }
    let body = serde_json::json!({"__type": "ClientException", "message": format!("TaskDefinition is inactive: {td}")}).to_string();
    let mut r = (StatusCode::BAD_REQUEST, body).into_response();
    r.headers_mut().insert("content-type", "application/x-amz-json-1.1".parse().ok()?);
    Some(r)
}

/// DeleteReplicationGroup with FinalSnapshotIdentifier: "ElastiCache creates the snapshot
/// from the primary node in the cluster ... After the final snapshot is taken, the
/// replication group is immediately deleted" (ElastiCache API Reference,
/// DeleteReplicationGroup). moto ignores the parameter; the proxy takes the snapshot with
/// moto's own CreateSnapshot first, and answers as ElastiCache does when it cannot (a name
/// taken: SnapshotAlreadyExistsFault, the group kept).
async fn final_cache_snapshot(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let f = crate::elasticache::form(body);
    let (name, group) = (f.get("FinalSnapshotIdentifier")?, f.get("ReplicationGroupId")?);
    let create: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "CreateSnapshot")
        .append_pair("Version", "2015-02-02")
        .append_pair("SnapshotName", name)
        .append_pair("ReplicationGroupId", group)
        .finish();
    let mut req = shared.http.post(format!("{}/", shared.upstream)).body(create);
    for (k, v) in headers.iter() {
        if k == "authorization" || k == "content-type" {
            req = req.header(k, v);
        }
    }
    let resp = req.send().await.ok()?;
    if resp.status().is_success() {
        return None;
    }
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    // moto says ReplicationGroupNotFoundFault for a missing group, as the delete would.
    let mut r = (status, text).into_response();
    r.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("text/xml"));
    Some(r)
}

/// RunTask, DescribeTasks, ListTasks and StopTask, answered by the task model
/// (`ecs_tasks.rs`): RunTask reads the task definition from moto first and writes the
/// task's output to moto's CloudWatch Logs.
async fn one_off_task(shared: &Shared, operation: &str, headers: &HeaderMap, body: &[u8], account: &str) -> Response {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let now = std::time::Instant::now();
    if operation != "RunTask" {
        let answer = shared.state.lock().unwrap().tasks.answer(operation, &request, now);
        return ecs_answer(answer);
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (_, region) = crate::gate::scope(headers);
    let td = match request["taskDefinition"].as_str() {
        Some(td) => {
            let describe = shared
                .http
                .post(format!("{}/", shared.upstream))
                .header("x-amz-target", "AmazonEC2ContainerServiceV20141113.DescribeTaskDefinition")
                .header("content-type", "application/x-amz-json-1.1")
                .header("authorization", &auth)
                .body(serde_json::json!({"taskDefinition": td}).to_string());
            match describe.send().await {
                Ok(r) => r.json::<serde_json::Value>().await.ok().and_then(|v| crate::ecs_tasks::TaskDefinition::from_answer(&v)),
                Err(_) => None,
            }
        }
        None => None,
    };
    let ran = shared.state.lock().unwrap().tasks.run(&request, td.as_ref(), account, &region, now, &auth);
    let (answer, logs) = match ran {
        Ok(a) => a,
        Err(e) => return ecs_answer(Err(e)),
    };
    if let Some(w) = logs {
        write_logs(shared, &w).await;
    }
    ecs_answer(Ok(answer))
}

/// A task's output into moto's CloudWatch Logs (its group made when missing).
async fn write_logs(shared: &Shared, w: &crate::ecs_tasks::LogWrite) {
    let auth = w.auth.replace("/ecs/aws4_request", "/logs/aws4_request");
    let call = |target: &str, body: serde_json::Value| {
        shared
            .http
            .post(format!("{}/", shared.upstream))
            .header("x-amz-target", format!("Logs_20140328.{target}"))
            .header("content-type", "application/x-amz-json-1.1")
            .header("authorization", auth.clone())
            .body(body.to_string())
            .send()
    };
    let _ = call("CreateLogGroup", serde_json::json!({"logGroupName": w.group})).await;
    let _ = call("CreateLogStream", serde_json::json!({"logGroupName": w.group, "logStreamName": w.stream})).await;
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let events: Vec<_> = w.lines.iter().map(|l| serde_json::json!({"timestamp": ms, "message": l})).collect();
    if !events.is_empty() {
        let _ = call("PutLogEvents", serde_json::json!({"logGroupName": w.group, "logStreamName": w.stream, "logEvents": events})).await;
    }
}

/// "Creating a DB snapshot … takes several minutes" (RDS user guide); moto makes a snapshot
/// available at once. A snapshot asked for less than the delay ago reads `creating`.
fn snapshot_creating(shared: &Shared, request: &[u8], response: Vec<u8>) -> Vec<u8> {
    let id = crate::elasticache::form(request).get("DBSnapshotIdentifier").cloned().unwrap_or_default();
    let young = {
        let s = shared.state.lock().unwrap();
        s.snapshots.get(&id).is_some_and(|at| at.elapsed() < s.snapshot_delay)
    };
    if !young {
        return response;
    }
    String::from_utf8_lossy(&response).replace("<Status>available</Status>", "<Status>creating</Status>").into_bytes()
}

/// An ECS answer in its JSON protocol.
fn ecs_answer(answer: Result<serde_json::Value, crate::ecs_deploy::EcsError>) -> Response {
    let (status, body) = match answer {
        Ok(v) => (StatusCode::OK, v),
        Err((status, kind, message)) => {
            (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), serde_json::json!({"__type": kind, "message": message}))
        }
    };
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("application/x-amz-json-1.1"));
    r
}

/// Records deployments on CreateService/UpdateService and shows them in DescribeServices.
fn ecs_overlay(shared: &Shared, operation: &str, request: &[u8], response: Vec<u8>, auth: &str) -> Vec<u8> {
    let req: serde_json::Value = serde_json::from_slice(request).unwrap_or_default();
    let mut resp: serde_json::Value = match serde_json::from_slice(&response) {
        Ok(v) => v,
        Err(_) => return response,
    };
    let mut state = shared.state.lock().unwrap();
    match operation {
        "CreateService" | "UpdateService" => {
            let name = req["serviceName"].as_str().or(req["service"].as_str()).unwrap_or("").rsplit('/').next().unwrap_or("").to_string();
            let td = req["taskDefinition"]
                .as_str()
                .map(String::from)
                .or_else(|| resp["service"]["taskDefinition"].as_str().map(String::from))
                .unwrap_or_default();
            let desired = req["desiredCount"].as_i64().or(resp["service"]["desiredCount"].as_i64()).unwrap_or(1);
            let force = req["forceNewDeployment"].as_bool().unwrap_or(false);
            let arn = resp["service"]["serviceArn"].as_str().map(String::from).unwrap_or_else(|| name.clone());
            let previous = state.ecs.services.get(&arn).and_then(|l| l.first()).map(|d| d.task_definition.clone());
            state.ecs.deploy_by(&arn, &name, &td, desired, force, auth);
            // ECS's events name the service by its long ARN (service/<cluster>/<name>, the
            // default since 2021); moto keeps the short one unless told otherwise.
            let cluster = resp["service"]["clusterArn"].as_str().unwrap_or("default").rsplit('/').next().unwrap_or("default").to_string();
            let long = match arn.split_once(":service/") {
                Some((head, rest)) if !rest.contains('/') => format!("{head}:service/{cluster}/{rest}"),
                _ => arn.clone(),
            };
            state.ecs.long_arns.insert(arn.clone(), long);
            if req["deploymentConfiguration"].is_object() {
                state.ecs.configs.insert(arn.clone(), req["deploymentConfiguration"].clone());
            }
            let config = state.ecs.configs.get(&arn).cloned().unwrap_or_default();
            if crate::ecs_deploy::shifts_traffic(&config) {
                let mut service = resp["service"].clone();
                service["taskDefinition"] = td.clone().into();
                state.native.deployed(&service, &config, previous.as_deref(), auth);
                state.native.overlay(&mut resp["service"]);
            }
            if let Some((deps, running)) = state.ecs.render(&arn) {
                resp["service"]["deployments"] = serde_json::Value::Array(deps);
                resp["service"]["runningCount"] = running.into();
            }
        }
        "DescribeServices" => {
            if let Some(services) = resp["services"].as_array_mut() {
                for svc in services {
                    let arn = svc["serviceArn"].as_str().or(svc["serviceName"].as_str()).unwrap_or("").to_string();
                    if let Some((deps, running)) = state.ecs.render(&arn) {
                        svc["deployments"] = serde_json::Value::Array(deps);
                        svc["runningCount"] = running.into();
                    }
                    if let Some(config) = state.ecs.configs.get(&arn) {
                        svc["deploymentConfiguration"] = config.clone();
                    }
                    state.native.overlay(svc);
                }
            }
        }
        _ => return response,
    }
    serde_json::to_vec(&resp).unwrap_or(response)
}

/// Headers from (name, value) pairs, for the tests of the proxy and of the API model.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.insert(*k, v.parse().unwrap());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::awsproxy::test_headers as h;

    #[test]
    fn operations_are_named_for_json_query_and_s3_rest_protocols() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        let ecs = h(&[("x-amz-target", "AmazonEC2ContainerServiceV20141113.CreateCluster")]);
        assert_eq!(operation_of("ecs", &Method::POST, &uri("/"), &ecs, b""), "CreateCluster");
        assert_eq!(
            operation_of("rds", &Method::POST, &uri("/"), &h(&[]), b"Action=CreateDBInstance&Version=2014-10-31"),
            "CreateDBInstance"
        );
        assert_eq!(operation_of("s3", &Method::PUT, &uri("/b"), &h(&[]), b""), "CreateBucket");
        assert_eq!(operation_of("s3", &Method::GET, &uri("/b?versioning"), &h(&[]), b""), "GetBucketVersioning");
        assert_eq!(operation_of("s3", &Method::PUT, &uri("/b?lifecycle"), &h(&[]), b""), "PutBucketLifecycleConfiguration");
        assert_eq!(operation_of("s3", &Method::DELETE, &uri("/b?publicAccessBlock"), &h(&[]), b""), "DeletePublicAccessBlock");
        assert_eq!(operation_of("s3", &Method::PUT, &uri("/b/k.txt"), &h(&[]), b""), "PutObject");
        let auth = h(&[("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-1/rds/aws4_request, SignedHeaders=host")]);
        assert_eq!(service_of(&auth), "rds");
    }

    #[test]
    fn reads_and_writes_are_told_apart() {
        assert!(!is_write("DescribeDBInstances") && !is_write("GetBucketTagging") && !is_write("HeadBucket"));
        assert!(is_write("CreateBucket") && is_write("ModifyDBInstance") && is_write("PutBucketVersioning"));
    }
}

#[cfg(test)]
mod ecs_model_tests {
    use super::*;

    const API: &str = "arn:aws:ecs:eu-west-1:123456789012:service/prod/api";

    #[test]
    fn services_of_one_name_in_two_clusters_or_accounts_deploy_apart() {
        let mut m = EcsModel { delay: Duration::from_secs(60), ..Default::default() };
        let other = "arn:aws:ecs:eu-west-1:444455556666:service/prod/api";
        m.deploy(API, "api", "td:1", 2, false);
        m.deploy(other, "api", "td:9", 1, false);
        assert_eq!(m.render(API).unwrap().0[0]["taskDefinition"], "td:1");
        assert_eq!(m.render(other).unwrap().0.len(), 1, "no deployment of the other service shows here");
    }

    #[test]
    fn a_new_deployment_is_primary_in_progress_then_completed_and_the_old_one_drains() {
        let mut m = EcsModel { delay: Duration::from_millis(50), ..Default::default() };
        m.deploy(API, "api", "td:1", 2, false);
        std::thread::sleep(Duration::from_millis(60));
        m.deploy(API, "api", "td:2", 2, false);
        let (deps, _) = m.render(API).unwrap();
        assert_eq!((deps[0]["status"].as_str(), deps[0]["rolloutState"].as_str()), (Some("PRIMARY"), Some("IN_PROGRESS")));
        assert_eq!((deps[1]["status"].as_str(), deps[1]["taskDefinition"].as_str()), (Some("ACTIVE"), Some("td:1")));
        std::thread::sleep(Duration::from_millis(60));
        let (deps, running) = m.render(API).unwrap();
        assert_eq!(deps.len(), 1);
        assert_eq!(deps[0]["rolloutState"], "COMPLETED");
        assert_eq!(running, 2);
    }

    #[test]
    fn a_deployment_marked_to_fail_ends_failed_with_failed_tasks() {
        let mut m = EcsModel { delay: Duration::ZERO, ..Default::default() };
        m.fail_next.insert("api".into(), 3);
        m.deploy(API, "api", "td:1", 2, false);
        let (deps, _) = m.render(API).unwrap();
        assert_eq!((deps[0]["rolloutState"].as_str(), deps[0]["failedTasks"].as_i64()), (Some("FAILED"), Some(3)));
    }

    #[test]
    fn a_count_change_alone_makes_no_new_deployment() {
        let mut m = EcsModel::default();
        m.deploy(API, "api", "td:1", 2, false);
        m.deploy(API, "api", "td:1", 4, false);
        assert_eq!(m.services[API].len(), 1);
        assert_eq!(m.services[API][0].desired, 4);
    }
}

/// An assumed role's credentials act in the role's account (moto does the same): remember
/// the account of the access key an AssumeRole answer hands out.
fn learn_account(shared: &Shared, xml: &str) {
    let between = |a: &str, b: &str| xml.split(a).nth(1).and_then(|r| r.split(b).next()).map(str::to_string);
    if let (Some(key), Some(arn)) = (between("<AccessKeyId>", "</AccessKeyId>"), between("<Arn>", "</Arn>")) {
        if let Some(account) = arn.split(':').nth(4).filter(|a| !a.is_empty()) {
            let mut s = shared.state.lock().unwrap();
            s.accounts.insert(key.clone(), account.to_string());
            // The controller's sessions are named `shipshape` (aws/sdk/mod.rs).
            if !arn.ends_with("/shipshape") {
                s.others.insert(key);
            }
        }
    }
}

/// AWS's refusal of a request in the service's own error format.
fn refusal(service: &str, uri: &Uri, status: u16, code: &str, message: &str) -> Response {
    let st = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let json = |ct: &'static str, code: &str| {
        let mut r = (st, serde_json::json!({"__type": code, "message": message}).to_string()).into_response();
        r.headers_mut().insert("content-type", axum::http::HeaderValue::from_static(ct));
        r
    };
    if uri.path().starts_with(crate::cloudwatch::PREFIX) {
        return crate::cloudwatch::error(st, code, message);
    }
    let exception = |c: &str| if c.ends_with("Exception") { c.to_string() } else { format!("{c}Exception") };
    match service {
        "ecs" | "logs" | "sqs" | "events" => json("application/x-amz-json-1.1", &exception(code)),
        "dynamodb" => json("application/x-amz-json-1.0", &exception(code)),
        "lambda" => {
            let mut r = json("application/json", &exception(code));
            if let Ok(v) = axum::http::HeaderValue::from_str(&exception(code)) {
                r.headers_mut().insert("x-amzn-errortype", v);
            }
            r
        }
        "s3" => crate::s3::error(status, code, message),
        _ => {
            let kind = if status >= 500 { "Receiver" } else { "Sender" };
            let code = if code == "ValidationException" { "ValidationError" } else { code };
            let mut r = (st, format!("<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>")).into_response();
            r.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("text/xml"));
            r
        }
    }
}

/// Reads resources' tags from moto as the request's caller, for the IAM checks.
struct TagLookups {
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl crate::gate::Tags for TagLookups {
    async fn tags(&self, of: &crate::iam::TagsOf, key: &str, region: &str) -> (std::collections::BTreeMap<String, String>, bool) {
        use crate::iam::TagsOf;
        let auth =
            |svc: &str| format!("AWS4-HMAC-SHA256 Credential={key}/20260101/{region}/{svc}/aws4_request, SignedHeaders=host, Signature=x");
        let http = &self.shared.http;
        let up = &self.shared.upstream;
        let json_post = |svc: &str, target: String, ct: &'static str, body: serde_json::Value| {
            http.post(format!("{up}/"))
                .header("authorization", auth(svc))
                .header("x-amz-target", target)
                .header("content-type", ct)
                .body(body.to_string())
        };
        let form_post = |svc: &str, body: String| {
            http.post(format!("{up}/"))
                .header("authorization", auth(svc))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
        };
        let form = |pairs: &[(&str, &str)]| {
            let mut f = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs {
                f.append_pair(k, v);
            }
            f.finish()
        };
        if let TagsOf::Ecs(arn) = of {
            if let Some(tags) = self.shared.state.lock().unwrap().tasks.tags_of(arn) {
                return (tags, false);
            }
        }
        let (req, xml, abac) = match of {
            TagsOf::Ecs(arn) => (
                json_post(
                    "ecs",
                    "AmazonEC2ContainerServiceV20141113.ListTagsForResource".into(),
                    "application/x-amz-json-1.1",
                    serde_json::json!({"resourceArn": arn}),
                ),
                false,
                false,
            ),
            TagsOf::Dynamo(arn) => (
                json_post(
                    "dynamodb",
                    "DynamoDB_20120810.ListTagsOfResource".into(),
                    "application/x-amz-json-1.0",
                    serde_json::json!({"ResourceArn": arn}),
                ),
                false,
                false,
            ),
            TagsOf::Rds(arn) => (
                form_post("rds", form(&[("Action", "ListTagsForResource"), ("Version", "2014-10-31"), ("ResourceName", arn)])),
                true,
                false,
            ),
            TagsOf::Cache(arn) => (
                form_post("elasticache", form(&[("Action", "ListTagsForResource"), ("Version", "2015-02-02"), ("ResourceName", arn)])),
                true,
                false,
            ),
            TagsOf::Lambda(arn) => {
                let path: String = url::form_urlencoded::byte_serialize(arn.as_bytes()).collect();
                (http.get(format!("{up}/2017-03-31/tags/{path}")).header("authorization", auth("lambda")), false, false)
            }
            TagsOf::Sqs(url) => (
                json_post("sqs", "AmazonSQS.ListQueueTags".into(), "application/x-amz-json-1.0", serde_json::json!({"QueueUrl": url})),
                false,
                false,
            ),
            TagsOf::Events(arn) => (
                json_post(
                    "events",
                    "AWSEvents.ListTagsForResource".into(),
                    "application/x-amz-json-1.1",
                    serde_json::json!({"ResourceARN": arn}),
                ),
                false,
                false,
            ),
            TagsOf::S3(bucket) => {
                (http.get(format!("{up}/{bucket}?tagging")).header("authorization", auth("s3")), true, crate::s3::abac_enabled(bucket))
            }
        };
        let Ok(resp) = req.send().await else { return (Default::default(), abac) };
        if !resp.status().is_success() {
            return (Default::default(), abac);
        }
        let text = resp.text().await.unwrap_or_default();
        let tags = if xml {
            crate::gate::xml_tags(&text)
        } else {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let list = if v["tags"].is_null() { &v["Tags"] } else { &v["tags"] };
            crate::iam::tag_map(list)
        };
        (tags, abac)
    }
}

/// S3 behaviour moto lacks (crate::s3): bucket ABAC, tags at creation, PutBucketTagging
/// refused under ABAC, S3 Control tagging. None: forward to moto as it is.
async fn s3_model(
    shared: &Arc<Shared>,
    operation: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Response> {
    let moto = |m: Method, path: String, body: Option<String>| {
        let mut r = shared.http.request(m, format!("{}{path}", shared.upstream));
        for (k, v) in crate::s3::s3_headers(headers) {
            r = r.header(k, v);
        }
        if let Some(b) = body {
            r = r.body(b);
        }
        r
    };
    let bucket = crate::s3::bucket_of(uri.path());
    let exists =
        |b: String| async move { moto(Method::HEAD, format!("/{b}"), None).send().await.map(|r| r.status().is_success()).unwrap_or(false) };
    match operation {
        "PutBucketAbac" | "GetBucketAbac" => {
            if !exists(bucket.clone()).await {
                return Some(crate::s3::error(404, "NoSuchBucket", "The specified bucket does not exist"));
            }
            crate::s3::answer_abac(operation, &bucket, body)
        }
        "PutBucketTagging" | "DeleteBucketTagging" if crate::s3::abac_enabled(&bucket) => Some(crate::s3::error(
            400,
            "InvalidRequest",
            "ABAC is enabled for this bucket: use the S3 Control TagResource and UntagResource operations to manage its tags",
        )),
        "CreateBucket" => {
            let tags = crate::gate::xml_tags(&String::from_utf8_lossy(body));
            // moto creates the bucket and ignores CreateBucketConfiguration.Tags.
            let mut fwd = shared
                .http
                .request(method.clone(), format!("{}{}", shared.upstream, uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")));
            for (k, v) in headers.iter() {
                if k != "host" && k != "content-length" {
                    fwd = fwd.header(k, v);
                }
            }
            let resp = fwd.body(body.to_vec()).send().await.ok()?;
            let status = resp.status();
            let resp_headers = resp.headers().clone();
            let bytes = resp.bytes().await.unwrap_or_default();
            if status.is_success() && !tags.is_empty() {
                let _ = moto(Method::PUT, format!("/{bucket}?tagging"), Some(crate::s3::tagging_body(&tags))).send().await;
            }
            let mut out = Response::new(Body::from(bytes));
            *out.status_mut() = status;
            for (k, v) in resp_headers.iter() {
                if k != "content-length" && k != "transfer-encoding" && k != "connection" {
                    out.headers_mut().insert(k, v.clone());
                }
            }
            Some(out)
        }
        "TagResource" | "UntagResource" | "ListTagsForResource" => {
            let Some(b) = crate::s3::control_bucket(uri.path()) else {
                return Some(crate::s3::error(400, "InvalidRequest", "not a general purpose bucket ARN"));
            };
            let current = moto(Method::GET, format!("/{b}?tagging"), None).send().await.ok()?;
            if current.status() == StatusCode::NOT_FOUND && !exists(b.clone()).await {
                return Some(crate::s3::error(404, "NoSuchBucket", "The specified bucket does not exist"));
            }
            let mut tags = crate::gate::xml_tags(&current.text().await.unwrap_or_default());
            match operation {
                "ListTagsForResource" => return Some(crate::s3::list_answer(&tags)),
                "TagResource" => tags.extend(crate::s3::control_tags(body)),
                _ => {
                    for k in crate::s3::untag_keys(uri.query().unwrap_or("")) {
                        tags.remove(&k);
                    }
                }
            }
            let put = if tags.is_empty() {
                moto(Method::DELETE, format!("/{b}?tagging"), None)
            } else {
                moto(Method::PUT, format!("/{b}?tagging"), Some(crate::s3::tagging_body(&tags)))
            };
            let ok = put.send().await.map(|r| r.status().is_success()).unwrap_or(false);
            Some(if ok {
                StatusCode::NO_CONTENT.into_response()
            } else {
                crate::s3::error(500, "InternalError", "moto refused the tag set")
            })
        }
        _ => None,
    }
}
