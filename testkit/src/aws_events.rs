//! The events AWS publishes to EventBridge, emitted by the test proxy into moto's EventBridge
//! (whose rule matching and SQS delivery are moto's own): AWS services emit none in moto.
//!
//! - "ECS Deployment State Change" when a deployment ends (Amazon ECS Developer Guide,
//!   "Amazon ECS service deployment state change events": `eventType` INFO / ERROR,
//!   `eventName` SERVICE_DEPLOYMENT_COMPLETED / SERVICE_DEPLOYMENT_FAILED, `deploymentId`,
//!   `updatedAt`, `reason`; `resources` the service ARN).
//! - "AWS API Call via CloudTrail" for every successful write (EventBridge User Guide,
//!   "Events from AWS services delivered via AWS CloudTrail": `detail.eventSource`,
//!   `eventName`, `userIdentity.arn`, `requestParameters` in CloudTrail's lowerCamelCase).

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value};

/// The services whose writes CloudTrail records for shipshape.
pub const RECORDED: [&str; 6] = ["ecs", "rds", "s3", "dynamodb", "lambda", "elasticache"];

/// An event to put on the caller's default bus.
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    /// The Authorization header of the request that caused it (its account and Region).
    pub auth: String,
    /// `source`.
    pub source: String,
    /// `detail-type`.
    pub detail_type: String,
    /// `resources`.
    pub resources: Vec<String>,
    /// `detail`.
    pub detail: Value,
}

/// CloudTrail's spelling of a request parameter (`DBInstanceIdentifier` → `dBInstanceIdentifier`).
fn lower_first(k: &str) -> String {
    let mut c = k.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// CloudTrail's `requestParameters` of a write, from the request as the service received it.
pub fn request_parameters(service: &str, path: &str, body: &[u8]) -> Value {
    match service {
        "ecs" | "dynamodb" => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Value::Object(m.into_iter().map(|(k, v)| (lower_first(&k), v)).collect()),
            _ => json!({}),
        },
        "rds" | "elasticache" => Value::Object(
            crate::elasticache::form(body)
                .into_iter()
                .filter(|(k, _)| k != "Action" && k != "Version")
                .map(|(k, v)| (lower_first(&k), Value::String(v)))
                .collect(),
        ),
        "s3" => json!({"bucketName": crate::s3::bucket_of(path)}),
        "lambda" => {
            let mut parts = path.split('/').skip_while(|p| *p != "functions").skip(1);
            let name: String = url::form_urlencoded::parse(format!("n={}", parts.next().unwrap_or_default()).as_bytes())
                .map(|(_, v)| v.into_owned())
                .next()
                .unwrap_or_default();
            json!({"functionName": name})
        }
        _ => json!({}),
    }
}

/// The CloudTrail event of a successful write by `caller_arn`.
pub fn cloudtrail(auth: &str, service: &str, operation: &str, path: &str, body: &[u8], caller_arn: &str) -> Emit {
    Emit {
        auth: auth.to_string(),
        source: format!("aws.{service}"),
        detail_type: "AWS API Call via CloudTrail".into(),
        resources: vec![],
        detail: json!({
            "eventVersion": "1.08",
            "eventSource": format!("{service}.amazonaws.com"),
            "eventName": operation,
            "userIdentity": {"arn": caller_arn},
            "requestParameters": request_parameters(service, path, body),
        }),
    }
}

/// The "ECS Deployment State Change" of a deployment that ended.
pub fn deployment_state(auth: &str, service_arn: &str, deployment: &str, failed: bool) -> Emit {
    let (event_type, name, reason) = if failed {
        ("ERROR", "SERVICE_DEPLOYMENT_FAILED", "ECS deployment circuit breaker: tasks failed to start.")
    } else {
        ("INFO", "SERVICE_DEPLOYMENT_COMPLETED", "ECS deployment completed.")
    };
    Emit {
        auth: auth.to_string(),
        source: "aws.ecs".into(),
        detail_type: "ECS Deployment State Change".into(),
        resources: vec![service_arn.to_string()],
        detail: json!({"eventType": event_type, "eventName": name, "deploymentId": deployment,
            "updatedAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "reason": reason}),
    }
}

/// moto answers GetCallerIdentity for every plain access key with `user/moto`; in AWS two
/// keys are two users: `user/<access key>` here (an assumed role's ARN is kept).
pub fn distinct_users(answer: &str, auth: &str) -> String {
    let key = auth.split("Credential=").nth(1).and_then(|c| c.split('/').next()).unwrap_or_default();
    answer.replace(":user/moto<", &format!(":user/{key}<"))
}

/// Caller ARNs by access key, as moto's GetCallerIdentity answers them.
#[derive(Default)]
pub struct Identities(Mutex<HashMap<String, String>>);

impl Identities {
    /// The ARN of the caller signing with `auth`.
    pub async fn arn(&self, http: &reqwest::Client, upstream: &str, auth: &str) -> String {
        let key = auth.split("Credential=").nth(1).and_then(|c| c.split('/').next()).unwrap_or_default().to_string();
        if let Some(a) = self.0.lock().unwrap().get(&key) {
            return a.clone();
        }
        let answer = http
            .post(format!("{upstream}/"))
            .header("authorization", scoped(auth, "sts"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("Action=GetCallerIdentity&Version=2011-06-15")
            .send()
            .await;
        let text = match answer {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let text = distinct_users(&text, auth);
        let arn = text.split("<Arn>").nth(1).and_then(|t| t.split("</Arn>").next()).unwrap_or_default().to_string();
        if !arn.is_empty() {
            self.0.lock().unwrap().insert(key, arn.clone());
        }
        arn
    }
}

/// The Authorization header `auth` scoped to `service` (moto routes by the scope's service).
pub fn scoped(auth: &str, service: &str) -> String {
    match auth.split_once("/aws4_request") {
        Some((head, tail)) => match head.rsplit_once('/') {
            Some((before, _)) => format!("{before}/{service}/aws4_request{tail}"),
            None => auth.to_string(),
        },
        None => auth.to_string(),
    }
}

/// Puts `e` on the default bus of its caller's account and Region, in moto.
pub async fn put(http: &reqwest::Client, upstream: &str, e: &Emit) {
    put_all(http, upstream, std::slice::from_ref(e)).await;
}

/// Puts `events` as AWS would deliver them, in PutEvents calls of up to 10 entries (one
/// call per entry let a convergence's thousands of deployment events swamp moto; one
/// request each at once did so more).
pub async fn put_all(http: &reqwest::Client, upstream: &str, events: &[Emit]) {
    let mut by_caller: HashMap<&str, Vec<Value>> = HashMap::new();
    for e in events {
        by_caller
            .entry(e.auth.as_str())
            .or_default()
            .push(json!({"Source": e.source, "DetailType": e.detail_type, "Resources": e.resources, "Detail": e.detail.to_string()}));
    }
    for (auth, entries) in by_caller {
        for chunk in entries.chunks(10) {
            let _ = http
                .post(format!("{upstream}/"))
                .header("authorization", scoped(auth, "events"))
                .header("x-amz-target", "AWSEvents.PutEvents")
                .header("content-type", "application/x-amz-json-1.1")
                .body(json!({"Entries": chunk}).to_string())
                .send()
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_names_the_service_moto_routes_to() {
        let a = "AWS4-HMAC-SHA256 Credential=k/20260101/eu-west-1/ecs/aws4_request, SignedHeaders=host, Signature=x";
        assert_eq!(
            scoped(a, "events"),
            "AWS4-HMAC-SHA256 Credential=k/20260101/eu-west-1/events/aws4_request, SignedHeaders=host, Signature=x"
        );
    }

    #[test]
    fn request_parameters_are_spelled_as_cloudtrail_spells_them() {
        let p = request_parameters(
            "rds",
            "/",
            b"Action=ModifyDBInstance&Version=2014-10-31&DBInstanceIdentifier=shop&DBInstanceClass=db.t3.large",
        );
        assert_eq!(p, json!({"dBInstanceIdentifier": "shop", "dBInstanceClass": "db.t3.large"}));
        assert_eq!(request_parameters("s3", "/uploads", b"")["bucketName"], "uploads");
        assert_eq!(request_parameters("ecs", "/", br#"{"cluster":"prod","service":"api"}"#), json!({"cluster": "prod", "service": "api"}));
        assert_eq!(request_parameters("dynamodb", "/", br#"{"TableName":"carts"}"#), json!({"tableName": "carts"}));
        assert_eq!(request_parameters("lambda", "/2015-03-31/functions/thumbs/configuration", b"")["functionName"], "thumbs");
    }

    #[test]
    fn what_the_controller_reads_back_from_the_emitted_shapes() {
        let e = deployment_state("a", "arn:aws:ecs:eu-west-1:123456789012:service/prod/api", "ecs-svc/1", true);
        let body = json!({"source": e.source, "detail-type": e.detail_type, "resources": e.resources, "detail": e.detail, "time": "2026-12-07T00:00:00Z"});
        let parsed = shipshape::core::events::parse(&body.to_string()).unwrap();
        assert_eq!(parsed.name.as_deref(), Some("SERVICE_DEPLOYMENT_FAILED"));
        assert_eq!(parsed.subjects.len(), 1);
        let c = cloudtrail("a", "s3", "PutBucketVersioning", "/uploads", b"", "arn:aws:iam::123456789012:user/alice");
        let body = json!({"source": c.source, "detail-type": c.detail_type, "detail": c.detail});
        let parsed = shipshape::core::events::parse(&body.to_string()).unwrap();
        assert_eq!(parsed.subjects, vec![shipshape::core::events::Subject::Bucket("uploads".into())]);
        assert_eq!(parsed.by.as_deref(), Some("arn:aws:iam::123456789012:user/alice"));
    }
}
