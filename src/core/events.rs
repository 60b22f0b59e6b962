//! AWS events, pure: the EventBridge rule's pattern and the queue's policy an Environment's
//! event queue gets, what an event (an SQS message's body, untrusted) points at, and whether
//! an Environment's events are flowing.
//!
//! An event is a hint, never a verdict: it names the resource that changed (a service, a
//! database, a bucket…); the controller reads that resource before acting on it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// The `source` of shipshape's own heartbeat events (not `aws.*`: those only AWS may send).
pub const HEARTBEAT_SOURCE: &str = "shipshape.dev";
/// The `detail-type` of the heartbeat.
pub const HEARTBEAT_TYPE: &str = "Shipshape Heartbeat";
/// How often a heartbeat is put on the Environment's event bus.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);
/// Events are flowing while a heartbeat came back within this time (three heartbeats).
pub const HEARTBEAT_GRACE: Duration = Duration::from_secs(45);
/// How long one ReceiveMessage waits for a message (SQS's maximum long poll).
pub const LONG_POLL: Duration = Duration::from_secs(20);
/// Messages per ReceiveMessage (SQS's maximum).
pub const BATCH: i32 = 10;
/// While events flow, a deploying release looks at ECS this often (2 s without events).
pub const EVENTS_DEPLOY_POLL: Duration = Duration::from_secs(30);
/// While events flow, drift is read this many times less often.
pub const EVENTS_DRIFT_FACTOR: u32 = 10;
/// An SQS message body is at most 256 KiB; anything longer is not an event of AWS's.
pub const MAX_BODY: usize = 256 * 1024;

/// The sources the rule matches.
pub const SOURCES: [&str; 7] = ["aws.ecs", "aws.lambda", "aws.rds", "aws.elasticache", "aws.dynamodb", "aws.s3", HEARTBEAT_SOURCE];
/// The detail types the rule matches.
pub const DETAIL_TYPES: [&str; 6] = [
    "ECS Deployment State Change",
    "ECS Service Action",
    "ECS Task State Change",
    "RDS DB Instance Event",
    "AWS API Call via CloudTrail",
    HEARTBEAT_TYPE,
];

/// The rule's event pattern: the ECS, Lambda, RDS, ElastiCache, DynamoDB and S3 events
/// shipshape acts on, CloudTrail's record of API calls to those services, and the heartbeat.
/// (Whose resource an event is, and who made a call, is judged on arrival: a pattern cannot
/// see tags.)
pub fn rule_pattern() -> String {
    json!({ "source": SOURCES, "detail-type": DETAIL_TYPES }).to_string()
}

/// The pattern of the rule shipshape keeps for one Environment: as [`rule_pattern`], but the
/// ECS events only of the Environment's cluster (`cluster`: its services' ARNs, its tasks'
/// cluster, the cluster a CloudTrail call named) and the heartbeat only of `environment`.
/// Environments sharing an account and Region then each get their own events instead of
/// every one of them (ten Environments in one account put every ECS event in ten queues).
/// Names are matched with EventBridge's `wildcard` (ECS cluster names are `[A-Za-z0-9_-]`,
/// Kubernetes names have no `*`), alternatives with `$or`.
pub fn rule_pattern_for(environment: &str, cluster: &str) -> String {
    let ecs_types = ["ECS Deployment State Change", "ECS Service Action"];
    let cluster_arn = format!("arn:aws:ecs:*:*:cluster/{cluster}");
    let service_arns = format!("arn:aws:ecs:*:*:service/{cluster}/*");
    // A call that names no cluster is about the account's `default` cluster.
    let mut named: Vec<Value> = vec![json!(cluster), json!({ "wildcard": cluster_arn })];
    if cluster == "default" {
        named.push(json!({ "exists": false }));
    }
    let others: Vec<&str> = SOURCES.iter().copied().filter(|s| *s != "aws.ecs" && *s != HEARTBEAT_SOURCE).collect();
    json!({ "$or": [
        { "source": ["aws.ecs"], "detail-type": ecs_types, "resources": [{ "wildcard": service_arns }] },
        { "source": ["aws.ecs"], "detail-type": ["ECS Task State Change"], "detail": { "clusterArn": [{ "wildcard": cluster_arn }] } },
        { "source": ["aws.ecs"], "detail-type": ["AWS API Call via CloudTrail"], "detail": { "requestParameters": { "cluster": named } } },
        { "source": ["aws.ecs"], "detail-type": ["AWS API Call via CloudTrail"], "detail": { "requestParameters": { "resourceArn": [{ "wildcard": service_arns }] } } },
        { "source": others, "detail-type": ["RDS DB Instance Event", "AWS API Call via CloudTrail"] },
        { "source": [HEARTBEAT_SOURCE], "detail-type": [HEARTBEAT_TYPE], "detail": { "environment": [environment] } },
    ]})
    .to_string()
}

/// EventBridge's limit on a rule's pattern (characters).
pub const MAX_PATTERN: usize = 4096;

/// The queue policy: only `rule_arn` may send to `queue_arn`.
pub fn queue_policy(queue_arn: &str, rule_arn: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "OnlyShipshapeRule",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}
        }]
    })
    .to_string()
}

/// Whether two JSON documents (policies, patterns) say the same, however AWS formatted them.
pub fn same_json(a: &str, b: &str) -> bool {
    match (serde_json::from_str::<Value>(a), serde_json::from_str::<Value>(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The name of an Environment's queue and rule: `shipshape-<environment>`, within SQS's
/// (80) and EventBridge's (64) limits and character sets.
pub fn resource_name(environment: &str) -> String {
    let clean: String = environment.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    let name = format!("shipshape-{clean}");
    if name.len() <= 64 {
        return name;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(environment.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", &name[..55])
}

/// The queue's name in its ARN (`arn:aws:sqs:region:account:name`), and its account.
pub fn queue_of_arn(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (arn_, _partition, sqs, _region, account, name) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (arn_ == "arn" && sqs == "sqs" && !name.is_empty() && account.len() == 12).then_some((name, account))
}

/// What an event points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// An ECS service, by cluster and service name.
    Service {
        /// Cluster name (`default` when the call named none).
        cluster: String,
        /// Service name.
        service: String,
    },
    /// An RDS DB instance.
    Database(String),
    /// An S3 bucket.
    Bucket(String),
    /// A DynamoDB table.
    Table(String),
    /// An ElastiCache cache (replication group or cluster).
    Cache(String),
    /// A Lambda function.
    Function(String),
}

/// One event, as far as shipshape reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `source`, e.g. `aws.ecs` (a metric label: one of [`SOURCES`] or `other`).
    pub source: &'static str,
    /// `detail-type` (a metric label: one of [`DETAIL_TYPES`] or `other`).
    pub detail_type: &'static str,
    /// The event's `time`.
    pub time: Option<DateTime<Utc>>,
    /// The resources it points at.
    pub subjects: Vec<Subject>,
    /// The heartbeat of this Environment (its `detail.environment`).
    pub heartbeat: Option<String>,
    /// Who made the call (CloudTrail's `userIdentity.arn`).
    pub by: Option<String>,
    /// CloudTrail's `eventName`, or ECS's `eventName` (SERVICE_DEPLOYMENT_FAILED…).
    pub name: Option<String>,
}

fn label(value: Option<&str>, known: &[&'static str]) -> &'static str {
    value.and_then(|v| known.iter().find(|k| **k == v).copied()).unwrap_or("other")
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 2048).map(str::to_string)
}

/// The last path segment of a name that may be an ARN (`arn:…:service/cluster/name`,
/// `arn:…:db:name`, `arn:…:function:name[:qualifier]`) or a plain name.
fn last_name(s: &str) -> String {
    if !s.starts_with("arn:") {
        return s.to_string();
    }
    s.rsplit(['/', ':']).next().unwrap_or(s).to_string()
}

/// An ECS service ARN (`arn:aws:ecs:region:account:service/cluster/name`, or the old
/// `service/name`) as a subject.
fn service_arn(arn: &str) -> Option<Subject> {
    let resource = arn.strip_prefix("arn:")?.splitn(5, ':').nth(4)?;
    let path = resource.strip_prefix("service/")?;
    let (cluster, service) = match path.split_once('/') {
        Some((c, s)) => (c, s),
        None => ("default", path),
    };
    (!service.is_empty() && !service.contains('/')).then(|| Subject::Service { cluster: cluster.into(), service: service.into() })
}

fn function_name(s: &str) -> String {
    // arn:aws:lambda:region:account:function:name[:qualifier]
    if let Some(rest) = s.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.split(':').collect();
        if let Some(i) = parts.iter().position(|p| *p == "function") {
            return parts.get(i + 1).map(|p| p.to_string()).unwrap_or_default();
        }
    }
    s.to_string()
}

fn cloudtrail(detail: &Value) -> Vec<Subject> {
    let params = detail.get("requestParameters").filter(|p| p.is_object()).cloned().unwrap_or(Value::Null);
    let p = |k: &str| text(&params, k);
    let source = text(detail, "eventSource").unwrap_or_default();
    let mut out = vec![];
    match source.as_str() {
        "ecs.amazonaws.com" => {
            if let Some(arn) = p("resourceArn").as_deref().and_then(service_arn) {
                out.push(arn);
            } else if let Some(service) = p("service") {
                let cluster = p("cluster").map(|c| last_name(&c)).unwrap_or_else(|| "default".into());
                match service_arn(&service) {
                    Some(s) => out.push(s),
                    None => out.push(Subject::Service { cluster, service }),
                }
            }
        }
        "rds.amazonaws.com" => out.extend(p("dBInstanceIdentifier").or(p("resourceName")).map(|d| Subject::Database(last_name(&d)))),
        "s3.amazonaws.com" => out.extend(p("bucketName").map(Subject::Bucket)),
        "dynamodb.amazonaws.com" => out.extend(p("tableName").or(p("resourceArn")).map(|t| Subject::Table(last_name(&t)))),
        "elasticache.amazonaws.com" => {
            out.extend(p("replicationGroupId").or(p("cacheClusterId")).or(p("resourceName")).map(|c| Subject::Cache(last_name(&c))))
        }
        "lambda.amazonaws.com" => out.extend(p("functionName").or(p("resource")).map(|f| Subject::Function(function_name(&f)))),
        _ => {}
    }
    out
}

/// Reads an SQS message's body as an EventBridge event. Untrusted: bounded, never panics;
/// a body that is not an event is an error (the message is dropped and counted).
pub fn parse(body: &str) -> Result<Event, String> {
    if body.len() > MAX_BODY {
        return Err(format!("a message of {} bytes is not an event (at most {MAX_BODY})", body.len()));
    }
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err("not an EventBridge event (not an object)".into());
    }
    let source_text = text(&v, "source").ok_or("not an EventBridge event (no source)")?;
    let type_text = text(&v, "detail-type").ok_or("not an EventBridge event (no detail-type)")?;
    let source = label(Some(&source_text), &SOURCES);
    let detail_type = label(Some(&type_text), &DETAIL_TYPES);
    let time = text(&v, "time").and_then(|t| DateTime::parse_from_rfc3339(&t).ok()).map(|t| t.with_timezone(&Utc));
    let detail = v.get("detail").cloned().unwrap_or(Value::Null);
    let resources: Vec<String> = v
        .get("resources")
        .and_then(Value::as_array)
        .map(|a| a.iter().take(64).filter_map(|r| r.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let mut event = Event { source, detail_type, time, subjects: vec![], heartbeat: None, by: None, name: text(&detail, "eventName") };
    match (source, detail_type) {
        (HEARTBEAT_SOURCE, HEARTBEAT_TYPE) => event.heartbeat = text(&detail, "environment"),
        (_, "AWS API Call via CloudTrail") => {
            event.by = detail.get("userIdentity").and_then(|u| text(u, "arn"));
            event.subjects = cloudtrail(&detail);
        }
        ("aws.ecs", "ECS Task State Change") => {
            // A task of a service (`group: service:NAME`) or one of a release's one-off
            // tasks (`group: family:NAME`, the family being the service's name).
            let cluster = text(&detail, "clusterArn").map(|c| last_name(&c)).unwrap_or_else(|| "default".into());
            let group = text(&detail, "group").unwrap_or_default();
            if let Some(service) = group.strip_prefix("service:").or(group.strip_prefix("family:")) {
                event.subjects.push(Subject::Service { cluster, service: service.to_string() });
            }
        }
        ("aws.ecs", _) => event.subjects = resources.iter().filter_map(|r| service_arn(r)).collect(),
        ("aws.rds", _) => {
            event.subjects = text(&detail, "SourceIdentifier")
                .map(|d| vec![Subject::Database(d)])
                .unwrap_or_else(|| resources.iter().filter(|r| r.contains(":db:")).map(|r| Subject::Database(last_name(r))).collect())
        }
        _ => {}
    }
    event.subjects.sort();
    event.subjects.dedup();
    Ok(event)
}

/// Whether an Environment's events are flowing, as judged from when its last heartbeat
/// came back and when the queue last answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The heartbeat comes back: events are trusted, polling is the slow safety net.
    Flowing,
    /// No heartbeat came back yet (a queue just made, a restarted leader).
    Starting,
    /// The heartbeat stopped coming back, or the queue cannot be read: polling as without events.
    Stopped,
}

/// Judges the flow at `now` from the last heartbeat seen and the last successful receive.
pub fn flow(
    now: std::time::Instant,
    started: std::time::Instant,
    heartbeat: Option<std::time::Instant>,
    received: Option<std::time::Instant>,
) -> Flow {
    let fresh = |t: Option<std::time::Instant>, within: Duration| t.is_some_and(|t| now.saturating_duration_since(t) <= within);
    // A receive answers at least every long poll; two missed in a row is a queue in trouble.
    let queue_ok = fresh(received, LONG_POLL * 2 + Duration::from_secs(5));
    match (fresh(heartbeat, HEARTBEAT_GRACE), queue_ok) {
        (true, true) => Flow::Flowing,
        _ if heartbeat.is_none() && now.saturating_duration_since(started) <= HEARTBEAT_GRACE => Flow::Starting,
        _ => Flow::Stopped,
    }
}

#[cfg(test)]
mod tests;
