//! One-off ECS tasks (RunTask), which moto starts but never runs or stops (and whose RunTask
//! breaks on a container without `memory` or awsvpc without security groups). This model
//! answers RunTask, DescribeTasks, ListTasks and StopTask itself, as the ECS documentation
//! describes them:
//!
//! - **Lifecycle** ("Amazon ECS task lifecycle", ECS developer guide): a Fargate task goes
//!   PROVISIONING → PENDING → RUNNING → DEPROVISIONING → STOPPED. `desiredStatus` is RUNNING
//!   until the task is told to stop or its essential container exits, then STOPPED.
//! - **Stopping** ("Amazon ECS stopped tasks error codes"): an essential container that exits
//!   stops the task with `stopCode` EssentialContainerExited and `stoppedReason` "Essential
//!   container in task exited", its `containers[].exitCode` set; StopTask stops it with
//!   `stopCode` UserInitiated and the request's `reason` as `stoppedReason` (the container
//!   gets SIGTERM: the model's containers honour it, exit code 143); a task that cannot start
//!   stops with TaskFailedToStart and no exit code ("CannotPullContainerError: …").
//! - **RunTask** (ECS API Reference): `clientToken` makes it idempotent (the same token
//!   answers the same task); Fargate needs an awsvpc `networkConfiguration` with subnets
//!   ("Network Configuration must be provided when networkMode 'awsvpc' is specified"); an
//!   override must name a container of the task definition; the task gets the request's
//!   `tags` and `startedBy`. ListTasks filters by `startedBy` and `desiredStatus` (default
//!   RUNNING); DescribeTasks lists an unknown ARN under `failures` with reason MISSING.
//! - **Output**: with the awslogs driver the container's lines go to the stream
//!   `<awslogs-stream-prefix>/<container>/<task id>` of `awslogs-group`; the model writes a
//!   task's scripted lines to moto's CloudWatch Logs when it starts ([`LogWrite`]).
//!
//! What a task does is scripted per command ([`Script`]); a command with no script exits 0
//! after a second, printing the command.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::ecs_deploy::EcsError;

/// The operations the model answers itself.
pub const OPERATIONS: [&str; 4] = ["RunTask", "DescribeTasks", "ListTasks", "StopTask"];

/// What a task running a command does.
#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    /// The container's exit code (None with `fail_to_start`).
    pub exit_code: i32,
    /// How long it runs.
    pub runs_for: Duration,
    /// Its output.
    pub lines: Vec<String>,
    /// It never starts: the stoppedReason (e.g. "CannotPullContainerError: …").
    pub fail_to_start: Option<String>,
    /// ECS cannot place it: RunTask answers this `failures[].reason` and no task.
    pub not_placed: Option<String>,
}

impl Default for Script {
    fn default() -> Self {
        Script { exit_code: 0, runs_for: Duration::from_secs(1), lines: vec![], fail_to_start: None, not_placed: None }
    }
}

/// Lines to write to CloudWatch Logs (moto's) for a task that started.
#[derive(Clone, Debug, PartialEq)]
pub struct LogWrite {
    /// The caller's Authorization header (account and Region).
    pub auth: String,
    /// Log group.
    pub group: String,
    /// Log stream.
    pub stream: String,
    /// Lines.
    pub lines: Vec<String>,
}

struct Task {
    arn: String,
    cluster_arn: String,
    task_definition_arn: String,
    started_by: Option<String>,
    client_token: Option<String>,
    container: String,
    command: Vec<String>,
    tags: Value,
    created: Instant,
    created_epoch: f64,
    script: Script,
    /// StopTask: when, and its reason.
    stop: Option<(Instant, String)>,
}

/// How a task stopped: (stopCode, stoppedReason, the container's exit code).
type Stopped = (&'static str, String, Option<i32>);

/// Phases of a task's start, from RunTask.
const PROVISIONING: Duration = Duration::from_millis(100);
const PENDING: Duration = Duration::from_millis(200);
const DEPROVISIONING: Duration = Duration::from_millis(150);
/// From StopTask to STOPPED.
const STOPPING: Duration = Duration::from_millis(300);

impl Task {
    fn running_from(&self) -> Instant {
        self.created + PROVISIONING + PENDING
    }

    /// When its container exits by itself (or fails to start).
    fn exits_at(&self) -> Instant {
        match self.script.fail_to_start {
            Some(_) => self.running_from(),
            None => self.running_from() + self.script.runs_for,
        }
    }

    /// (lastStatus, desiredStatus, how it stopped, when).
    fn state(&self, now: Instant) -> (&'static str, &'static str, Option<Stopped>, Option<Instant>) {
        let exits = self.exits_at();
        let stopped_by_user = self.stop.as_ref().filter(|(at, _)| *at < exits);
        if let Some((at, reason)) = stopped_by_user {
            let done = *at + STOPPING;
            if now >= done {
                let code = (*at >= self.running_from()).then_some(143);
                return ("STOPPED", "STOPPED", Some(("UserInitiated", reason.clone(), code)), Some(done));
            }
            return ("DEPROVISIONING", "STOPPED", None, None);
        }
        if now < self.created + PROVISIONING {
            return ("PROVISIONING", "RUNNING", None, None);
        }
        if now < self.running_from() {
            return ("PENDING", "RUNNING", None, None);
        }
        if now < exits {
            return ("RUNNING", "RUNNING", None, None);
        }
        let how = match &self.script.fail_to_start {
            Some(why) => ("TaskFailedToStart", why.clone(), None),
            None => ("EssentialContainerExited", "Essential container in task exited".to_string(), Some(self.script.exit_code)),
        };
        if now < exits + DEPROVISIONING {
            return ("DEPROVISIONING", "STOPPED", None, None);
        }
        ("STOPPED", "STOPPED", Some(how), Some(exits + DEPROVISIONING))
    }

    fn render(&self, now: Instant) -> Value {
        let (last, desired, how, stopped_at) = self.state(now);
        let epoch = |at: Instant| self.created_epoch + at.saturating_duration_since(self.created).as_secs_f64();
        let mut container = json!({
            "name": self.container,
            "taskArn": self.arn,
            "lastStatus": if last == "STOPPED" { "STOPPED" } else if last == "RUNNING" { "RUNNING" } else { "PENDING" },
        });
        let mut task = json!({
            "taskArn": self.arn,
            "clusterArn": self.cluster_arn,
            "taskDefinitionArn": self.task_definition_arn,
            "lastStatus": last,
            "desiredStatus": desired,
            "launchType": "FARGATE",
            "createdAt": self.created_epoch,
            "overrides": {"containerOverrides": [{"name": self.container, "command": self.command}]},
            "tags": self.tags,
        });
        if let Some(by) = &self.started_by {
            task["startedBy"] = json!(by);
        }
        if now >= self.running_from() && self.script.fail_to_start.is_none() {
            task["startedAt"] = json!(epoch(self.running_from()));
        }
        if let Some((code, reason, exit)) = how {
            task["stopCode"] = json!(code);
            task["stoppedReason"] = json!(reason);
            if let Some(at) = stopped_at {
                task["stoppedAt"] = json!(epoch(at));
            }
            match exit {
                Some(e) => container["exitCode"] = json!(e),
                None => container["reason"] = json!(reason),
            }
        }
        task["containers"] = json!([container]);
        task
    }
}

/// The tasks of every account and Region the proxy saw (ARNs carry both).
#[derive(Default)]
pub struct Model {
    tasks: Vec<Task>,
    scripts: HashMap<String, Script>,
    counter: u64,
}

/// A task definition as RunTask needs it: (ARN, container names, awslogs (group, prefix) of
/// each container).
pub struct TaskDefinition {
    /// Its ARN.
    pub arn: String,
    /// Status (ACTIVE, INACTIVE).
    pub status: String,
    /// Container name → its awslogs (group, stream prefix).
    pub containers: BTreeMap<String, Option<(String, String)>>,
}

impl TaskDefinition {
    /// From moto's DescribeTaskDefinition answer.
    pub fn from_answer(v: &Value) -> Option<TaskDefinition> {
        let td = &v["taskDefinition"];
        let containers = td["containerDefinitions"]
            .as_array()?
            .iter()
            .map(|c| {
                let o = &c["logConfiguration"]["options"];
                let logs = match (o["awslogs-group"].as_str(), o["awslogs-stream-prefix"].as_str()) {
                    (Some(g), Some(p)) if c["logConfiguration"]["logDriver"] == "awslogs" => Some((g.to_string(), p.to_string())),
                    _ => None,
                };
                (c["name"].as_str().unwrap_or_default().to_string(), logs)
            })
            .collect();
        Some(TaskDefinition {
            arn: td["taskDefinitionArn"].as_str()?.to_string(),
            status: td["status"].as_str().unwrap_or("ACTIVE").to_string(),
            containers,
        })
    }
}

fn invalid(message: impl Into<String>) -> EcsError {
    (400, "InvalidParameterException", message.into())
}

fn epoch_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl Model {
    /// What a task running `command` (its arguments joined by spaces) does.
    pub fn script(&mut self, command: &str, mut script: Script) {
        // At most a day: `Instant + runs_for` must not overflow.
        script.runs_for = script.runs_for.min(Duration::from_secs(86_400));
        self.scripts.insert(command.to_string(), script);
    }

    /// The tags of a task the model holds (for IAM checks on it).
    pub fn tags_of(&self, arn: &str) -> Option<BTreeMap<String, String>> {
        self.tasks.iter().find(|t| t.arn == arn).map(|t| crate::iam::tag_map(&t.tags))
    }

    /// Tasks started so far: (startedBy, command).
    pub fn started(&self) -> Vec<(Option<String>, Vec<String>)> {
        self.tasks.iter().map(|t| (t.started_by.clone(), t.command.clone())).collect()
    }

    /// Each task's task definition and the instant DescribeTasks first reports it STOPPED.
    pub fn stops(&self) -> Vec<(String, Instant)> {
        self.tasks
            .iter()
            .map(|t| {
                let stopped = match t.stop.as_ref().filter(|(at, _)| *at < t.exits_at()) {
                    Some((at, _)) => *at + STOPPING,
                    None => t.exits_at() + DEPROVISIONING,
                };
                (t.task_definition_arn.clone(), stopped)
            })
            .collect()
    }

    /// RunTask of `td` (read from moto beforehand; None: no such task definition), in
    /// `account` and `region`. Returns the answer and the lines to write to CloudWatch Logs.
    pub fn run(
        &mut self,
        request: &Value,
        td: Option<&TaskDefinition>,
        account: &str,
        region: &str,
        now: Instant,
        auth: &str,
    ) -> Result<(Value, Option<LogWrite>), EcsError> {
        let token = request["clientToken"].as_str().map(String::from);
        if let Some(t) = token.as_ref().and_then(|tok| self.tasks.iter().find(|t| t.client_token.as_ref() == Some(tok))) {
            // "If you provide the same clientToken ... the same response is returned".
            return Ok((json!({"tasks": [t.render(now)], "failures": []}), None));
        }
        if token.as_ref().is_some_and(|t| t.len() > 64 || t.bytes().any(|b| !(33..=126).contains(&b))) {
            return Err(invalid("clientToken: up to 64 characters in the range 33-126"));
        }
        if let Some(by) = request["startedBy"].as_str() {
            if by.len() > 128 || !by.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'/') {
                return Err(invalid("startedBy: up to 128 letters, numbers, hyphens, forward slashes and underscores"));
            }
        }
        let Some(td) = td else {
            return Err((400, "ClientException", format!("Unable to describe task definition {}", request["taskDefinition"])));
        };
        if td.status == "INACTIVE" {
            return Err((400, "ClientException", format!("TaskDefinition is inactive: {}", td.arn)));
        }
        if request["count"].as_i64().unwrap_or(1) != 1 {
            return Err(invalid("the model runs one task per RunTask"));
        }
        let subnets = request["networkConfiguration"]["awsvpcConfiguration"]["subnets"].as_array().map(Vec::len).unwrap_or(0);
        if subnets == 0 {
            return Err(invalid("Network Configuration must be provided when networkMode 'awsvpc' is specified."));
        }
        let overrides = request["overrides"]["containerOverrides"].as_array().cloned().unwrap_or_default();
        for o in &overrides {
            let name = o["name"].as_str().unwrap_or_default();
            if !td.containers.contains_key(name) {
                return Err(invalid(format!("Override for container named {name} is not a container in the TaskDefinition.")));
            }
        }
        let container =
            overrides.first().and_then(|o| o["name"].as_str()).or(td.containers.keys().next().map(String::as_str)).unwrap_or_default();
        let command: Vec<String> = overrides
            .first()
            .and_then(|o| o["command"].as_array())
            .map(|c| c.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default();
        let cluster = request["cluster"].as_str().unwrap_or("default");
        let cluster_arn =
            if cluster.starts_with("arn:") { cluster.to_string() } else { format!("arn:aws:ecs:{region}:{account}:cluster/{cluster}") };
        let cluster_name = cluster_arn.rsplit('/').next().unwrap_or(cluster).to_string();
        if let Some(reason) = self.scripts.get(&command.join(" ")).and_then(|s| s.not_placed.clone()) {
            // "failures: Any failures associated with the call" — a task not placed is one,
            // with HTTP 200 (ECS API Reference, RunTask; API failure reasons).
            return Ok((json!({"tasks": [], "failures": [{"arn": td.arn, "reason": reason}]}), None));
        }
        self.counter += 1;
        let id = format!("{:032x}", self.counter);
        let script = self
            .scripts
            .get(&command.join(" "))
            .cloned()
            .unwrap_or_else(|| Script { lines: vec![format!("running: {}", command.join(" ")), "done".into()], ..Script::default() });
        let task = Task {
            arn: format!("arn:aws:ecs:{region}:{account}:task/{cluster_name}/{id}"),
            cluster_arn,
            task_definition_arn: td.arn.clone(),
            started_by: request["startedBy"].as_str().map(String::from),
            client_token: token,
            container: container.to_string(),
            command,
            tags: request["tags"].clone(),
            created: now,
            created_epoch: epoch_now(),
            script,
            stop: None,
        };
        let logs =
            td.containers.get(container).cloned().flatten().filter(|_| task.script.fail_to_start.is_none()).map(|(group, prefix)| {
                LogWrite { auth: auth.to_string(), group, stream: format!("{prefix}/{container}/{id}"), lines: task.script.lines.clone() }
            });
        let answer = json!({"tasks": [task.render(now)], "failures": []});
        self.tasks.push(task);
        Ok((answer, logs))
    }

    /// DescribeTasks, ListTasks and StopTask.
    pub fn answer(&mut self, op: &str, request: &Value, now: Instant) -> Result<Value, EcsError> {
        let cluster = request["cluster"].as_str().unwrap_or("default").to_string();
        let in_cluster = |t: &Task| t.cluster_arn == cluster || t.cluster_arn.ends_with(&format!("/{cluster}"));
        match op {
            "DescribeTasks" => {
                let mut tasks = vec![];
                let mut failures = vec![];
                for arn in request["tasks"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    match self.tasks.iter().find(|t| (t.arn == arn || t.arn.ends_with(&format!("/{arn}"))) && in_cluster(t)) {
                        Some(t) => tasks.push(t.render(now)),
                        None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
                    }
                }
                Ok(json!({"tasks": tasks, "failures": failures}))
            }
            "ListTasks" => {
                let desired = request["desiredStatus"].as_str().unwrap_or("RUNNING");
                let by = request["startedBy"].as_str();
                let arns: Vec<&str> = self
                    .tasks
                    .iter()
                    .filter(|t| in_cluster(t))
                    .filter(|t| by.is_none() || t.started_by.as_deref() == by)
                    .filter(|t| t.state(now).1 == desired)
                    .map(|t| t.arn.as_str())
                    .collect();
                Ok(json!({"taskArns": arns}))
            }
            "StopTask" => {
                let arn = request["task"].as_str().unwrap_or_default();
                let reason = request["reason"].as_str().unwrap_or("Task stopped by user").to_string();
                let Some(t) = self.tasks.iter_mut().find(|t| (t.arn == arn || t.arn.ends_with(&format!("/{arn}"))) && in_cluster(t)) else {
                    return Err(invalid("The referenced task was not found."));
                };
                if t.stop.is_none() && t.state(now).0 != "STOPPED" {
                    t.stop = Some((now, reason));
                }
                Ok(json!({"task": t.render(now)}))
            }
            _ => Err(invalid(format!("the task model does not answer {op}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TaskDefinition {
        TaskDefinition {
            arn: "arn:aws:ecs:eu-west-1:1:task-definition/api:3".into(),
            status: "ACTIVE".into(),
            containers: [("api".to_string(), Some(("/ecs/api".to_string(), "api".to_string())))].into_iter().collect(),
        }
    }

    fn run_request(command: &[&str], token: &str) -> Value {
        json!({
            "cluster": "prod", "taskDefinition": "arn:aws:ecs:eu-west-1:1:task-definition/api:3", "launchType": "FARGATE",
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"], "securityGroups": ["sg-1"]}},
            "overrides": {"containerOverrides": [{"name": "api", "command": command}]},
            "startedBy": "shipshape-abc-0", "clientToken": token,
        })
    }

    #[test]
    fn a_task_goes_through_its_lifecycle_and_stops_with_its_exit_code() {
        let mut m = Model::default();
        m.script("migrate", Script { exit_code: 3, runs_for: Duration::from_secs(2), lines: vec!["boom".into()], ..Script::default() });
        let t0 = Instant::now();
        let (answer, logs) = m.run(&run_request(&["migrate"], "tok"), Some(&td()), "1", "eu-west-1", t0, "auth").unwrap();
        assert_eq!(answer["tasks"][0]["lastStatus"], "PROVISIONING");
        let logs = logs.unwrap();
        assert_eq!((logs.group.as_str(), logs.lines.clone()), ("/ecs/api", vec!["boom".to_string()]));
        assert!(logs.stream.starts_with("api/api/"), "prefix/container/task id: {}", logs.stream);
        let arn = answer["tasks"][0]["taskArn"].as_str().unwrap().to_string();
        let describe =
            |m: &mut Model, at: Duration| m.answer("DescribeTasks", &json!({"cluster": "prod", "tasks": [arn]}), t0 + at).unwrap();
        assert_eq!(describe(&mut m, Duration::from_millis(150))["tasks"][0]["lastStatus"], "PENDING");
        assert_eq!(describe(&mut m, Duration::from_secs(1))["tasks"][0]["lastStatus"], "RUNNING");
        let stopped = describe(&mut m, Duration::from_secs(3))["tasks"][0].clone();
        assert_eq!(stopped["lastStatus"], "STOPPED");
        assert_eq!(stopped["stopCode"], "EssentialContainerExited");
        assert_eq!(stopped["stoppedReason"], "Essential container in task exited");
        assert_eq!(stopped["containers"][0]["exitCode"], 3);
    }

    #[test]
    fn the_same_client_token_answers_the_same_task_and_started_by_finds_it() {
        let mut m = Model::default();
        let t0 = Instant::now();
        let a = m.run(&run_request(&["migrate"], "tok"), Some(&td()), "1", "eu-west-1", t0, "").unwrap().0;
        let b = m.run(&run_request(&["migrate"], "tok"), Some(&td()), "1", "eu-west-1", t0, "").unwrap().0;
        assert_eq!(a["tasks"][0]["taskArn"], b["tasks"][0]["taskArn"]);
        assert_eq!(m.started().len(), 1);
        let running = m.answer("ListTasks", &json!({"cluster": "prod", "startedBy": "shipshape-abc-0"}), t0).unwrap();
        assert_eq!(running["taskArns"].as_array().unwrap().len(), 1);
        let stopped =
            m.answer("ListTasks", &json!({"cluster": "prod", "startedBy": "shipshape-abc-0", "desiredStatus": "STOPPED"}), t0).unwrap();
        assert!(stopped["taskArns"].as_array().unwrap().is_empty());
        let later = t0 + Duration::from_secs(5);
        let stopped =
            m.answer("ListTasks", &json!({"cluster": "prod", "startedBy": "shipshape-abc-0", "desiredStatus": "STOPPED"}), later).unwrap();
        assert_eq!(stopped["taskArns"].as_array().unwrap().len(), 1, "a task whose container exited is desired STOPPED");
    }

    #[test]
    fn stop_task_stops_it_user_initiated_with_the_reason_and_bad_requests_are_refused() {
        let mut m = Model::default();
        m.script("sleep", Script { runs_for: Duration::from_secs(3600), ..Script::default() });
        let t0 = Instant::now();
        let a = m.run(&run_request(&["sleep"], "t1"), Some(&td()), "1", "eu-west-1", t0, "").unwrap().0;
        let arn = a["tasks"][0]["taskArn"].as_str().unwrap().to_string();
        let at = t0 + Duration::from_secs(1);
        m.answer("StopTask", &json!({"cluster": "prod", "task": arn, "reason": "timed out"}), at).unwrap();
        let d = m.answer("DescribeTasks", &json!({"cluster": "prod", "tasks": [arn]}), at + Duration::from_secs(1)).unwrap();
        assert_eq!(d["tasks"][0]["stopCode"], "UserInitiated");
        assert_eq!(d["tasks"][0]["stoppedReason"], "timed out");
        assert_eq!(d["tasks"][0]["containers"][0]["exitCode"], 143);
        let missing = m.answer("DescribeTasks", &json!({"cluster": "prod", "tasks": ["nope"]}), at).unwrap();
        assert_eq!(missing["failures"][0]["reason"], "MISSING");

        let mut no_net = run_request(&["x"], "t2");
        no_net["networkConfiguration"] = json!({});
        assert!(m.run(&no_net, Some(&td()), "1", "eu-west-1", t0, "").unwrap_err().2.contains("Network Configuration"));
        let mut other = run_request(&["x"], "t3");
        other["overrides"]["containerOverrides"][0]["name"] = json!("web");
        assert!(m.run(&other, Some(&td()), "1", "eu-west-1", t0, "").unwrap_err().2.contains("not a container"));
        let inactive = TaskDefinition { status: "INACTIVE".into(), ..td() };
        assert_eq!(m.run(&run_request(&["x"], "t4"), Some(&inactive), "1", "eu-west-1", t0, "").unwrap_err().1, "ClientException");
    }

    #[test]
    fn a_task_that_cannot_start_stops_task_failed_to_start_without_an_exit_code() {
        let mut m = Model::default();
        m.script("x", Script { fail_to_start: Some("CannotPullContainerError: pull access denied".into()), ..Script::default() });
        let t0 = Instant::now();
        let a = m.run(&run_request(&["x"], "t"), Some(&td()), "1", "eu-west-1", t0, "").unwrap();
        assert!(a.1.is_none(), "no output");
        let arn = a.0["tasks"][0]["taskArn"].as_str().unwrap().to_string();
        let d = m.answer("DescribeTasks", &json!({"cluster": "prod", "tasks": [arn]}), t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(d["tasks"][0]["stopCode"], "TaskFailedToStart");
        assert!(d["tasks"][0]["containers"][0]["exitCode"].is_null());
    }
}
