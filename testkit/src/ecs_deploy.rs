//! ECS service deployments with a traffic-shifting strategy (`deploymentConfiguration.strategy`
//! CANARY, LINEAR or BLUE_GREEN). moto stores the strategy and the load balancer's
//! `advancedConfiguration` but acts on neither, and answers none of the service-deployment
//! operations; this model does, as the ECS documentation describes them:
//!
//! - a deployment per task definition change, from the running (source) revision to a new
//!   (target) one, through the lifecycle stages in their documented order;
//! - the production traffic shifted in the strategy's steps by writing the weights of the
//!   listener rule's forward action in ELBv2 (moto's, so tests read them as a user would);
//! - PAUSE lifecycle hooks: the deployment waits at their stages, listed in
//!   `lifecycleHookDetails` with a hook id and AWAITING_ACTION, until
//!   ContinueServiceDeployment (CONTINUE or ROLLBACK) or the hook's timeout;
//! - StopServiceDeployment ROLLBACK; a rollback moves all production traffic back to the
//!   source revision at once (it still runs until CLEAN_UP).
//!
//! Bake times are ECS's minutes, run as real time (shipshape sets them to 0). What the
//! documentation leaves open, and the model's choice: a new deployment while one is in
//! progress stops the older one with its traffic back on the source revision.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The operations the model answers itself.
pub const OPERATIONS: [&str; 5] = [
    "ListServiceDeployments",
    "DescribeServiceDeployments",
    "DescribeServiceRevisions",
    "ContinueServiceDeployment",
    "StopServiceDeployment",
];

/// A write of a listener rule's weighted forward action, to make in ELBv2.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleWrite {
    /// The Authorization header to send moto (the caller's account and Region).
    pub auth: String,
    /// Listener rule ARN.
    pub rule: String,
    /// (target group, weight).
    pub groups: Vec<(String, i64)>,
}

/// A write the model makes in moto: a listener rule's weights, or (a rollback) the service
/// pointed back at its source revision, as ECS leaves it.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// ELBv2 ModifyRule.
    Rule(RuleWrite),
    /// ECS UpdateService of `service` in `cluster` to `task_definition` (auth: the caller's).
    Service { auth: String, cluster: String, service: String, task_definition: String },
}

/// An ECS error answer: (HTTP status, `__type`, message).
pub type EcsError = (u16, &'static str, String);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Done as soon as it is entered (after its hooks).
    Instant,
    /// Lasts this long.
    Wait(Duration),
    /// Sets the production traffic on the target revision to this percent.
    Shift(f64),
    /// Sends all test traffic to the target revision.
    TestShift,
}

struct Revision {
    arn: String,
    service_arn: String,
    cluster_arn: String,
    task_definition: String,
    created: f64,
}

struct Deployment {
    arn: String,
    service_arn: String,
    cluster_arn: String,
    source: Option<usize>,
    target: usize,
    status: &'static str,
    reason: Option<String>,
    plan: Vec<(&'static str, Kind)>,
    at: usize,
    since: Instant,
    weight: f64,
    pause_stages: Vec<String>,
    hook_timeout: Duration,
    hook_action: String,
    awaiting: Option<(String, Instant)>,
    hooks: Vec<Value>,
    blue: String,
    green: String,
    rule: Option<String>,
    test_rule: Option<String>,
    auth: String,
    created: f64,
    updated: f64,
    finished: Option<f64>,
    config: Value,
}

/// Every traffic-shifting deployment a proxy has seen.
pub struct Model {
    deployments: Vec<Deployment>,
    revisions: Vec<Revision>,
    /// By service ARN: the target group serving production traffic now.
    live: HashMap<String, String>,
    counter: usize,
    /// How long SCALE_UP, CLEAN_UP and a rollback's scale-down take.
    pub scale: Duration,
    /// Every rule write made, with when it was decided.
    pub writes: Vec<(Instant, RuleWrite)>,
    /// Every write, in order (rules and services).
    pub all_writes: Vec<Write>,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            deployments: vec![],
            revisions: vec![],
            live: HashMap::new(),
            counter: 0,
            scale: Duration::from_millis(500),
            writes: vec![],
            all_writes: vec![],
        }
    }
}

fn epoch() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn invalid(message: String) -> EcsError {
    (400, "InvalidParameterException", message)
}

/// Whether a deploymentConfiguration shifts traffic (CANARY, LINEAR, BLUE_GREEN).
pub fn shifts_traffic(config: &Value) -> bool {
    matches!(config["strategy"].as_str(), Some("CANARY" | "LINEAR" | "BLUE_GREEN"))
}

/// What ECS refuses in a CreateService/UpdateService with a traffic-shifting strategy, before
/// anything is stored: "PAUSE hooks cannot be configured at TEST_TRAFFIC_SHIFT or
/// PRODUCTION_TRAFFIC_SHIFT stages. These stages are only valid for AWS_LAMBDA hooks"
/// (API Reference, DeploymentLifecycleHook); the load balancer of such a service needs an
/// `advancedConfiguration` with the alternate target group, the production listener rule and
/// the role (developer guide, "Application Load Balancer resources for blue/green, linear,
/// and canary deployments").
pub fn validate(request: &Value) -> Option<EcsError> {
    let config = &request["deploymentConfiguration"];
    if !shifts_traffic(config) {
        return None;
    }
    for hook in config["lifecycleHooks"].as_array().into_iter().flatten() {
        let pause = hook["targetType"].as_str() == Some("PAUSE");
        for stage in hook["lifecycleStages"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if pause && (stage == "TEST_TRAFFIC_SHIFT" || stage == "PRODUCTION_TRAFFIC_SHIFT") {
                return Some(invalid(format!("PAUSE hooks cannot be configured at the {stage} stage")));
            }
        }
        if !pause && hook["hookTargetArn"].as_str().is_none() {
            return Some(invalid("hookTargetArn is required for an AWS_LAMBDA lifecycle hook".into()));
        }
    }
    for lb in request["loadBalancers"].as_array().into_iter().flatten() {
        let a = &lb["advancedConfiguration"];
        for field in ["alternateTargetGroupArn", "productionListenerRule", "roleArn"] {
            if a[field].as_str().is_none() {
                return Some(invalid(format!(
                    "loadBalancers[].advancedConfiguration.{field} is required for the {} strategy",
                    config["strategy"]
                )));
            }
        }
    }
    None
}

/// The production shares of a strategy, in order, ending at 100. "traffic is shifted in two
/// phases: first to the canary percentage, then to complete the deployment" (developer guide,
/// Amazon ECS canary deployments); linear: stepPercent more at each step; blue/green: all at once.
fn shares(config: &Value) -> Vec<f64> {
    let mut out = match config["strategy"].as_str() {
        Some("CANARY") => vec![config["canaryConfiguration"]["canaryPercent"].as_f64().unwrap_or(5.0)],
        Some("LINEAR") => {
            let step = config["linearConfiguration"]["stepPercent"].as_f64().filter(|s| *s > 0.0).unwrap_or(10.0);
            (1..).map(|i| f64::from(i) * step).take_while(|w| *w < 100.0).collect()
        }
        _ => vec![],
    };
    out.push(100.0);
    out
}

/// The lifecycle stages of a deployment, in the documented order (API Reference,
/// ServiceDeployment.lifecycleStage): RECONCILE_SERVICE (only "with more than 1 service
/// revision in an ACTIVE state", never here), PRE_SCALE_UP, SCALE_UP, POST_SCALE_UP,
/// TEST_TRAFFIC_SHIFT and POST_TEST_TRAFFIC_SHIFT (with a test listener rule),
/// PRE_PRODUCTION_TRAFFIC_SHIFT — "For linear and canary deployments, this stage is invoked
/// before every traffic shift step" — PRODUCTION_TRAFFIC_SHIFT (each step, the canary or
/// step bake after it but the last), POST_PRODUCTION_TRAFFIC_SHIFT, BAKE_TIME ("both blue and
/// green service revisions are running simultaneously after the production traffic has
/// shifted"), CLEAN_UP.
fn plan(config: &Value, has_source: bool, test_rule: bool, scale: Duration) -> Vec<(&'static str, Kind)> {
    let minutes = |v: &Value, default: u64| Duration::from_secs(v.as_u64().unwrap_or(default).saturating_mul(60));
    let step_bake = match config["strategy"].as_str() {
        Some("CANARY") => minutes(&config["canaryConfiguration"]["canaryBakeTimeInMinutes"], 10),
        Some("LINEAR") => minutes(&config["linearConfiguration"]["stepBakeTimeInMinutes"], 6),
        _ => Duration::ZERO,
    };
    let mut p = vec![("PRE_SCALE_UP", Kind::Instant), ("SCALE_UP", Kind::Wait(scale)), ("POST_SCALE_UP", Kind::Instant)];
    if has_source && test_rule {
        p.push(("TEST_TRAFFIC_SHIFT", Kind::TestShift));
        p.push(("POST_TEST_TRAFFIC_SHIFT", Kind::Instant));
    }
    // A first deployment has nothing to shift from: all of it at once.
    let shares = if has_source { shares(config) } else { vec![100.0] };
    let last = shares.len().saturating_sub(1);
    for (i, w) in shares.into_iter().enumerate() {
        p.push(("PRE_PRODUCTION_TRAFFIC_SHIFT", Kind::Instant));
        p.push(("PRODUCTION_TRAFFIC_SHIFT", Kind::Shift(w)));
        if i < last && !step_bake.is_zero() {
            p.push(("PRODUCTION_TRAFFIC_SHIFT", Kind::Wait(step_bake)));
        }
    }
    p.push(("POST_PRODUCTION_TRAFFIC_SHIFT", Kind::Instant));
    p.push(("BAKE_TIME", Kind::Wait(minutes(&config["bakeTimeInMinutes"], 0))));
    p.push(("CLEAN_UP", Kind::Wait(scale)));
    p
}

impl Model {
    /// A CreateService/UpdateService ECS accepted (`service`: its answer's `service`), with
    /// `config` the service's deploymentConfiguration now and `previous` the task definition
    /// it ran before. Starts a deployment when the task definition changes.
    pub fn deployed(&mut self, service: &Value, config: &Value, previous: Option<&str>, auth: &str) {
        let (Some(service_arn), Some(td)) = (service["serviceArn"].as_str(), service["taskDefinition"].as_str()) else { return };
        let current = self.current(service_arn).map(|d| self.live_task_definition(d).to_string()).or(previous.map(String::from));
        if current.as_deref() == Some(td) {
            return;
        }
        let now = Instant::now();
        // An older deployment still in progress is stopped, its traffic back on its source.
        if let Some(i) =
            self.deployments.iter().rposition(|d| d.service_arn == service_arn && matches!(d.status, "PENDING" | "IN_PROGRESS"))
        {
            self.deployments[i].reason = Some("superseded by a newer service deployment".into());
            self.roll_back(i, now);
            self.deployments[i].status = "STOPPED";
            self.deployments[i].finished = Some(epoch());
        }
        let lb = &service["loadBalancers"][0];
        let a = &lb["advancedConfiguration"];
        let production = lb["targetGroupArn"].as_str().unwrap_or_default().to_string();
        let alternate = a["alternateTargetGroupArn"].as_str().unwrap_or_default().to_string();
        // A first deployment's tasks serve from the production target group; later ones from
        // whichever of the two is not serving now.
        let blue = match (self.live.get(service_arn), &current) {
            (Some(live), _) => live.clone(),
            (None, Some(_)) => production.clone(),
            (None, None) => alternate.clone(),
        };
        let green = if blue == production { alternate } else { production };
        self.counter += 1;
        let cluster_arn = service["clusterArn"].as_str().unwrap_or_default().to_string();
        let id = format!("{:020}", self.counter);
        let revision = |arn_kind: &str| service_arn.replacen(":service/", &format!(":{arn_kind}/"), 1);
        let source = current.as_deref().map(|td| {
            self.revisions.push(Revision {
                arn: format!("{}/s{id}", revision("service-revision")),
                service_arn: service_arn.into(),
                cluster_arn: cluster_arn.clone(),
                task_definition: td.into(),
                created: epoch(),
            });
            self.revisions.len() - 1
        });
        self.revisions.push(Revision {
            arn: format!("{}/{id}", revision("service-revision")),
            service_arn: service_arn.into(),
            cluster_arn: cluster_arn.clone(),
            task_definition: td.into(),
            created: epoch(),
        });
        let hooks: Vec<&Value> =
            config["lifecycleHooks"].as_array().into_iter().flatten().filter(|h| h["targetType"].as_str() == Some("PAUSE")).collect();
        let pause_stages = hooks
            .iter()
            .flat_map(|h| h["lifecycleStages"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        let timeout = hooks.first().map(|h| &h["timeoutConfiguration"]);
        let d = Deployment {
            arn: format!("{}/{id}", revision("service-deployment")),
            service_arn: service_arn.into(),
            cluster_arn,
            source,
            target: self.revisions.len() - 1,
            status: "IN_PROGRESS",
            reason: None,
            plan: plan(config, source.is_some(), a["testListenerRule"].is_string(), self.scale),
            at: 0,
            since: now,
            weight: 0.0,
            pause_stages,
            // "Default: 1440 (24 hours)" (API Reference, DeploymentLifecycleHookTimeoutConfiguration).
            hook_timeout: Duration::from_secs(timeout.and_then(|t| t["timeoutInMinutes"].as_u64()).unwrap_or(1440).saturating_mul(60)),
            hook_action: timeout.and_then(|t| t["action"].as_str()).unwrap_or("ROLLBACK").to_string(),
            awaiting: None,
            hooks: vec![],
            blue,
            green,
            rule: a["productionListenerRule"].as_str().map(String::from),
            test_rule: a["testListenerRule"].as_str().map(String::from),
            auth: auth.replace("/ecs/aws4_request", "/elasticloadbalancing/aws4_request"),
            created: epoch(),
            updated: epoch(),
            finished: None,
            config: config.clone(),
        };
        self.deployments.push(d);
        let i = self.deployments.len() - 1;
        self.enter(i, now);
    }

    fn current(&self, service_arn: &str) -> Option<&Deployment> {
        self.deployments.iter().rev().find(|d| d.service_arn == service_arn)
    }

    /// The task definition a deployment leaves the service on (its source once rolled back).
    fn live_task_definition(&self, d: &Deployment) -> &str {
        let rev = match (d.status, d.source) {
            ("ROLLBACK_REQUESTED" | "ROLLBACK_IN_PROGRESS" | "ROLLBACK_SUCCESSFUL" | "STOPPED", Some(s)) => s,
            _ => d.target,
        };
        &self.revisions[rev].task_definition
    }

    /// DescribeServices fields for a service with deployments: `currentServiceDeployment`
    /// and the task definition it is on.
    pub fn overlay(&self, service: &mut Value) {
        let Some(arn) = service["serviceArn"].as_str().map(String::from) else { return };
        if let Some(d) = self.current(&arn) {
            service["currentServiceDeployment"] = d.arn.clone().into();
            service["taskDefinition"] = self.live_task_definition(d).to_string().into();
        }
    }

    fn write(&mut self, i: usize, now: Instant) {
        let d = &self.deployments[i];
        let Some(rule) = d.rule.clone() else { return };
        let green = d.weight.round().clamp(0.0, 100.0) as i64;
        let w = RuleWrite { auth: d.auth.clone(), rule, groups: vec![(d.blue.clone(), 100 - green), (d.green.clone(), green)] };
        self.all_writes.push(Write::Rule(w.clone()));
        self.writes.push((now, w));
    }

    /// Enters the stage at `at`: its action, then its PAUSE hook if one is registered there.
    fn enter(&mut self, i: usize, now: Instant) {
        let d = &mut self.deployments[i];
        d.since = now;
        d.updated = epoch();
        let (stage, kind) = d.plan[d.at];
        match kind {
            Kind::Shift(w) => {
                d.weight = w;
                self.write(i, now);
            }
            Kind::TestShift => {
                let d = &self.deployments[i];
                if let Some(rule) = d.test_rule.clone() {
                    let w = RuleWrite { auth: d.auth.clone(), rule, groups: vec![(d.blue.clone(), 0), (d.green.clone(), 100)] };
                    self.all_writes.push(Write::Rule(w.clone()));
                    self.writes.push((now, w));
                }
            }
            Kind::Instant | Kind::Wait(_) => {}
        }
        let d = &mut self.deployments[i];
        let first_of_stage = d.at == 0 || d.plan[d.at - 1].0 != stage;
        if first_of_stage && d.pause_stages.iter().any(|s| s == stage) {
            self.counter += 1;
            let id = format!("hook-{:08}", self.counter);
            let expires = epoch() + d.hook_timeout.as_secs_f64();
            d.hooks.push(json!({"hookId": id, "targetType": "PAUSE", "status": "AWAITING_ACTION", "expiresAt": expires, "timeoutAction": d.hook_action}));
            d.awaiting = Some((id, now));
        }
    }

    fn hook_status(&mut self, i: usize, status: &str) {
        let d = &mut self.deployments[i];
        if let Some((id, _)) = d.awaiting.take() {
            for h in d.hooks.iter_mut().filter(|h| h["hookId"] == id.as_str()) {
                h["status"] = status.into();
            }
        }
    }

    /// "ROLLBACK - Rolls back the deployment to the previous service revision" (API
    /// Reference, ContinueServiceDeployment): all production traffic back on the source
    /// revision at once; its green tasks are stopped during the rollback.
    fn roll_back(&mut self, i: usize, now: Instant) {
        self.deployments[i].status = "ROLLBACK_IN_PROGRESS";
        self.deployments[i].since = now;
        self.deployments[i].updated = epoch();
        if self.deployments[i].weight > 0.0 {
            self.deployments[i].weight = 0.0;
            self.write(i, now);
        }
        let d = &self.deployments[i];
        let tested = d.plan.iter().take(d.at + 1).any(|(_, k)| *k == Kind::TestShift);
        if let (Some(rule), true) = (d.test_rule.clone(), tested) {
            // Test traffic goes back too.
            let w = RuleWrite { auth: d.auth.clone(), rule, groups: vec![(d.blue.clone(), 100), (d.green.clone(), 0)] };
            self.all_writes.push(Write::Rule(w.clone()));
            self.writes.push((now, w));
        }
        let d = &self.deployments[i];
        if let Some(source) = d.source {
            self.all_writes.push(Write::Service {
                auth: d.auth.replace("/elasticloadbalancing/aws4_request", "/ecs/aws4_request"),
                cluster: d.cluster_arn.clone(),
                service: d.service_arn.clone(),
                task_definition: self.revisions[source].task_definition.clone(),
            });
        }
    }

    /// Moves every deployment on as far as time and its pauses allow.
    pub fn tick(&mut self, now: Instant) {
        for i in 0..self.deployments.len() {
            loop {
                let d = &self.deployments[i];
                match d.status {
                    "ROLLBACK_IN_PROGRESS" if now.duration_since(d.since) >= self.scale => {
                        let d = &mut self.deployments[i];
                        (d.status, d.finished, d.updated) = ("ROLLBACK_SUCCESSFUL", Some(epoch()), epoch());
                        break;
                    }
                    "IN_PROGRESS" | "PENDING" => {}
                    _ => break,
                }
                if let Some((_, since)) = &d.awaiting {
                    if now.duration_since(*since) < d.hook_timeout {
                        break;
                    }
                    let action = d.hook_action.clone();
                    self.hook_status(i, "TIMED_OUT");
                    if action == "ROLLBACK" {
                        self.deployments[i].reason = Some("a lifecycle hook timed out".into());
                        self.roll_back(i, now);
                        continue;
                    }
                }
                let d = &self.deployments[i];
                if let (_, Kind::Wait(w)) = d.plan[d.at] {
                    if now.duration_since(d.since) < w {
                        break;
                    }
                }
                let d = &mut self.deployments[i];
                d.at += 1;
                if d.at >= d.plan.len() {
                    d.at = d.plan.len() - 1;
                    (d.status, d.finished, d.updated) = ("SUCCESSFUL", Some(epoch()), epoch());
                    let (service, green) = (d.service_arn.clone(), d.green.clone());
                    if !green.is_empty() {
                        self.live.insert(service, green);
                    }
                    break;
                }
                self.enter(i, now);
            }
        }
    }

    /// Writes decided after the first `after` (in order), to make in moto.
    pub fn take_writes(&mut self, after: usize) -> Vec<Write> {
        self.all_writes.iter().skip(after).cloned().collect()
    }

    /// Answers one of [`OPERATIONS`].
    pub fn answer(&mut self, operation: &str, request: &Value, now: Instant) -> Result<Value, EcsError> {
        self.tick(now);
        let find = |m: &Model, arn: &str| m.deployments.iter().position(|d| d.arn == arn);
        match operation {
            "ListServiceDeployments" => {
                let service = request["service"].as_str().unwrap_or_default();
                let wanted: Vec<&str> = request["status"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                let list: Vec<Value> = self
                    .deployments
                    .iter()
                    .rev()
                    .filter(|d| d.service_arn == service || d.service_arn.ends_with(&format!("/{service}")))
                    .filter(|d| wanted.is_empty() || wanted.contains(&d.status))
                    .map(|d| {
                        json!({"serviceDeploymentArn": d.arn, "serviceArn": d.service_arn, "clusterArn": d.cluster_arn,
                            "createdAt": d.created, "startedAt": d.created, "finishedAt": d.finished,
                            "targetServiceRevisionArn": self.revisions[d.target].arn, "status": d.status, "statusReason": d.reason})
                    })
                    .collect();
                Ok(json!({"serviceDeployments": list}))
            }
            "DescribeServiceDeployments" => {
                let mut found = vec![];
                let mut failures = vec![];
                for arn in request["serviceDeploymentArns"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    match find(self, arn) {
                        Some(i) => found.push(self.render(i)),
                        None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
                    }
                }
                Ok(json!({"serviceDeployments": found, "failures": failures}))
            }
            "DescribeServiceRevisions" => {
                let mut found = vec![];
                let mut failures = vec![];
                for arn in request["serviceRevisionArns"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    match self.revisions.iter().find(|r| r.arn == arn) {
                        Some(r) => found
                            .push(json!({"serviceRevisionArn": r.arn, "serviceArn": r.service_arn, "clusterArn": r.cluster_arn,
                            "taskDefinition": r.task_definition, "launchType": "FARGATE", "createdAt": r.created})),
                        None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
                    }
                }
                Ok(json!({"serviceRevisions": found, "failures": failures}))
            }
            "ContinueServiceDeployment" => {
                let arn = request["serviceDeploymentArn"].as_str().unwrap_or_default();
                let Some(i) = find(self, arn) else {
                    return Err((400, "ServiceDeploymentNotFoundException", format!("service deployment {arn} not found")));
                };
                let hook = request["hookId"].as_str().unwrap_or_default();
                if self.deployments[i].awaiting.as_ref().map(|(id, _)| id.as_str()) != Some(hook) {
                    return Err(invalid(format!("lifecycle hook {hook} of {arn} is not awaiting action")));
                }
                if request["action"].as_str() == Some("ROLLBACK") {
                    self.hook_status(i, "FAILED");
                    self.deployments[i].reason = Some("rolled back at a lifecycle hook (ContinueServiceDeployment ROLLBACK)".into());
                    self.roll_back(i, now);
                } else {
                    self.hook_status(i, "SUCCEEDED");
                    self.tick(now);
                }
                Ok(json!({"serviceDeploymentArn": arn}))
            }
            "StopServiceDeployment" => {
                let arn = request["serviceDeploymentArn"].as_str().unwrap_or_default();
                let Some(i) = find(self, arn) else {
                    return Err((400, "ServiceDeploymentNotFoundException", format!("service deployment {arn} not found")));
                };
                if !matches!(self.deployments[i].status, "PENDING" | "IN_PROGRESS") {
                    return Err((
                        400,
                        "ConflictException",
                        format!("service deployment {arn} is {}, not in progress", self.deployments[i].status),
                    ));
                }
                self.deployments[i].awaiting = None;
                if request["stopType"].as_str() == Some("ABORT") {
                    (self.deployments[i].status, self.deployments[i].finished) = ("STOPPED", Some(epoch()));
                } else {
                    self.deployments[i].reason = Some("stopped with rollback (StopServiceDeployment ROLLBACK)".into());
                    self.roll_back(i, now);
                }
                Ok(json!({"serviceDeploymentArn": arn}))
            }
            other => Err(invalid(format!("{other} is not modelled"))),
        }
    }

    fn render(&self, i: usize) -> Value {
        let d = &self.deployments[i];
        let running = |done: bool| if done { 1 } else { 0 };
        let target = &self.revisions[d.target];
        let scaled = d.plan.iter().take(d.at + 1).any(|(s, _)| *s == "POST_SCALE_UP");
        let sources: Vec<Value> = d
            .source
            .map(|s| {
                json!({"arn": self.revisions[s].arn, "requestedTaskCount": 1, "runningTaskCount": 1, "pendingTaskCount": 0,
                    "requestedProductionTrafficWeight": 100.0 - d.weight, "requestedTestTrafficWeight": 0.0})
            })
            .into_iter()
            .collect();
        json!({
            "serviceDeploymentArn": d.arn, "serviceArn": d.service_arn, "clusterArn": d.cluster_arn,
            "createdAt": d.created, "startedAt": d.created, "updatedAt": d.updated, "finishedAt": d.finished,
            "status": d.status, "statusReason": d.reason,
            "lifecycleStage": d.plan[d.at].0,
            "targetServiceRevision": {"arn": target.arn, "requestedTaskCount": 1, "runningTaskCount": running(scaled),
                "pendingTaskCount": 1 - running(scaled), "requestedProductionTrafficWeight": d.weight, "requestedTestTrafficWeight": 0.0},
            "sourceServiceRevisions": sources,
            "lifecycleHookDetails": d.hooks,
            "deploymentConfiguration": d.config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVC: &str = "arn:aws:ecs:eu-west-1:123456789012:service/prod/web";
    const BLUE: &str = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/blue/1";
    const GREEN: &str = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/green/2";
    const RULE: &str = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener-rule/app/web/1/2/3";
    const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-1/ecs/aws4_request";

    fn service(td: &str) -> Value {
        json!({"serviceArn": SVC, "clusterArn": "arn:aws:ecs:eu-west-1:123456789012:cluster/prod", "taskDefinition": td,
            "loadBalancers": [{"targetGroupArn": BLUE, "containerName": "web", "containerPort": 80,
                "advancedConfiguration": {"alternateTargetGroupArn": GREEN, "productionListenerRule": RULE, "roleArn": "arn:aws:iam::123456789012:role/elb"}}]})
    }

    fn canary(percent: f64, hooks: bool) -> Value {
        let mut c = json!({"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": percent, "canaryBakeTimeInMinutes": 0}, "bakeTimeInMinutes": 0});
        if hooks {
            c["lifecycleHooks"] = json!([{"targetType": "PAUSE", "lifecycleStages": ["PRE_PRODUCTION_TRAFFIC_SHIFT", "POST_PRODUCTION_TRAFFIC_SHIFT"],
                "timeoutConfiguration": {"timeoutInMinutes": 10, "action": "ROLLBACK"}}]);
        }
        c
    }

    fn model() -> Model {
        Model { scale: Duration::ZERO, ..Default::default() }
    }

    fn describe(m: &mut Model) -> Value {
        let arn = m.deployments.last().unwrap().arn.clone();
        m.answer("DescribeServiceDeployments", &json!({"serviceDeploymentArns": [arn]}), Instant::now()).unwrap()["serviceDeployments"][0]
            .clone()
    }

    fn paused_hook(d: &Value) -> Option<String> {
        d["lifecycleHookDetails"]
            .as_array()?
            .iter()
            .find(|h| h["status"] == "AWAITING_ACTION")
            .map(|h| h["hookId"].as_str().unwrap().to_string())
    }

    fn cont(m: &mut Model, d: &Value, action: &str) {
        let req = json!({"serviceDeploymentArn": d["serviceDeploymentArn"], "hookId": paused_hook(d).unwrap(), "action": action});
        m.answer("ContinueServiceDeployment", &req, Instant::now()).unwrap();
    }

    fn last_weights(m: &Model) -> Vec<(String, i64)> {
        m.writes.last().map(|(_, w)| w.groups.clone()).unwrap_or_default()
    }

    #[test]
    fn pause_hooks_at_traffic_shift_stages_and_a_missing_advanced_configuration_are_refused() {
        // "PAUSE hooks cannot be configured at TEST_TRAFFIC_SHIFT or PRODUCTION_TRAFFIC_SHIFT
        // stages" (API Reference, DeploymentLifecycleHook).
        let bad = json!({"deploymentConfiguration": {"strategy": "CANARY", "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["PRODUCTION_TRAFFIC_SHIFT"]}]}});
        assert_eq!(validate(&bad).map(|e| e.1), Some("InvalidParameterException"));
        let no_rule = json!({"deploymentConfiguration": {"strategy": "BLUE_GREEN"}, "loadBalancers": [{"targetGroupArn": BLUE, "advancedConfiguration": {"alternateTargetGroupArn": GREEN}}]});
        assert!(validate(&no_rule).unwrap().2.contains("productionListenerRule"));
        assert_eq!(validate(&json!({"deploymentConfiguration": {"strategy": "ROLLING"}})), None);
    }

    #[test]
    fn a_canary_pauses_before_each_shift_and_after_the_last_and_writes_the_rule_weights() {
        let mut m = model();
        m.deployed(&service("td:1"), &canary(5.0, false), None, AUTH);
        m.tick(Instant::now());
        assert_eq!(describe(&mut m)["status"], "SUCCESSFUL", "a first deployment has nothing to shift from");
        assert_eq!(last_weights(&m), vec![(GREEN.to_string(), 0), (BLUE.to_string(), 100)], "it serves from the production group");
        m.deployed(&service("td:2"), &canary(5.0, true), None, AUTH);
        let d = describe(&mut m);
        // "PRE_PRODUCTION_TRAFFIC_SHIFT ... invoked before every traffic shift step".
        assert_eq!(
            (d["lifecycleStage"].as_str(), d["targetServiceRevision"]["requestedProductionTrafficWeight"].as_f64()),
            (Some("PRE_PRODUCTION_TRAFFIC_SHIFT"), Some(0.0))
        );
        assert!(paused_hook(&d).is_some(), "AWAITING_ACTION with its hook id");
        cont(&mut m, &d, "CONTINUE");
        let d = describe(&mut m);
        assert_eq!(
            (d["lifecycleStage"].as_str(), d["targetServiceRevision"]["requestedProductionTrafficWeight"].as_f64()),
            (Some("PRE_PRODUCTION_TRAFFIC_SHIFT"), Some(5.0))
        );
        assert_eq!(last_weights(&m), vec![(BLUE.to_string(), 95), (GREEN.to_string(), 5)], "the listener rule: 95 blue, 5 green");
        cont(&mut m, &d, "CONTINUE");
        let d = describe(&mut m);
        assert_eq!(
            (d["lifecycleStage"].as_str(), d["targetServiceRevision"]["requestedProductionTrafficWeight"].as_f64()),
            (Some("POST_PRODUCTION_TRAFFIC_SHIFT"), Some(100.0))
        );
        cont(&mut m, &d, "CONTINUE");
        let d = describe(&mut m);
        assert_eq!(d["status"], "SUCCESSFUL");
        assert_eq!(last_weights(&m), vec![(BLUE.to_string(), 0), (GREEN.to_string(), 100)]);
        // The next deployment shifts from green (now production) back to blue.
        m.deployed(&service("td:3"), &canary(5.0, false), None, AUTH);
        m.tick(Instant::now());
        assert_eq!(last_weights(&m), vec![(GREEN.to_string(), 0), (BLUE.to_string(), 100)], "without hooks it runs through");
    }

    #[test]
    fn a_rollback_at_a_pause_or_by_stop_puts_all_traffic_back_at_once() {
        let mut m = model();
        m.deployed(&service("td:1"), &canary(10.0, false), None, AUTH);
        m.tick(Instant::now());
        m.deployed(&service("td:2"), &canary(10.0, true), None, AUTH);
        let d = describe(&mut m);
        cont(&mut m, &d, "CONTINUE");
        let d = describe(&mut m);
        cont(&mut m, &d, "ROLLBACK");
        assert_eq!(last_weights(&m), vec![(BLUE.to_string(), 100), (GREEN.to_string(), 0)]);
        let mut svc = service("td:2");
        m.overlay(&mut svc);
        assert_eq!(svc["taskDefinition"], "td:1", "the service is back on its previous revision");
        m.tick(Instant::now());
        assert_eq!(describe(&mut m)["status"], "ROLLBACK_SUCCESSFUL");
        // StopServiceDeployment ROLLBACK while shifting (no pause); only in progress ones.
        m.deployed(
            &service("td:4"),
            &json!({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 25.0, "stepBakeTimeInMinutes": 60}}),
            None,
            AUTH,
        );
        m.tick(Instant::now());
        assert_eq!(describe(&mut m)["targetServiceRevision"]["requestedProductionTrafficWeight"], 25.0, "baking its first step");
        let arn = describe(&mut m)["serviceDeploymentArn"].clone();
        m.answer("StopServiceDeployment", &json!({"serviceDeploymentArn": arn, "stopType": "ROLLBACK"}), Instant::now()).unwrap();
        assert_eq!(last_weights(&m), vec![(BLUE.to_string(), 100), (GREEN.to_string(), 0)]);
        m.tick(Instant::now());
        let again = m.answer("StopServiceDeployment", &json!({"serviceDeploymentArn": arn, "stopType": "ROLLBACK"}), Instant::now());
        assert_eq!(again.unwrap_err().1, "ConflictException");
    }

    #[test]
    fn a_hook_not_awaiting_is_refused_and_a_timed_out_one_takes_its_action() {
        let mut m = model();
        m.deployed(&service("td:1"), &canary(10.0, false), None, AUTH);
        m.tick(Instant::now());
        let mut c = canary(10.0, true);
        c["lifecycleHooks"][0]["timeoutConfiguration"]["timeoutInMinutes"] = json!(0);
        m.deployed(&service("td:2"), &c, None, AUTH);
        let d = describe(&mut m);
        let req = json!({"serviceDeploymentArn": d["serviceDeploymentArn"], "hookId": "hook-nope", "action": "CONTINUE"});
        assert_eq!(m.answer("ContinueServiceDeployment", &req, Instant::now()).unwrap_err().1, "InvalidParameterException");
        m.tick(Instant::now());
        let d = describe(&mut m);
        assert!(d["status"].as_str().unwrap().starts_with("ROLLBACK"), "{d}");
        assert_eq!(d["lifecycleHookDetails"][0]["status"], "TIMED_OUT");
    }

    #[test]
    fn linear_steps_are_step_percent_apart_up_to_all_of_it() {
        let c = json!({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 30.0}});
        assert_eq!(shares(&c), vec![30.0, 60.0, 90.0, 100.0]);
        assert_eq!(shares(&json!({"strategy": "BLUE_GREEN"})), vec![100.0]);
    }
}
