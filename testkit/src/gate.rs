//! The AWS test proxy's front door for the controller's requests: each one is decoded and
//! checked against AWS's API model (aws_model.rs), then authorized by the IAM evaluator
//! (iam.rs) against the policy in force. What AWS would refuse is refused here the way AWS
//! refuses it (400 with the service's validation error, 403 AccessDenied) and kept as a
//! violation: the test that caused it fails (`AwsProxy` panics when dropped with violations
//! it was not told to expect). Requests signed with the test's own key ([`ADMIN_KEY`]: the
//! tests' set-up and out-of-band changes, "someone else") pass unchecked.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method, Uri};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::iam::{self, Caller, Check, Evaluator, Record, TagsOf};

/// The access key of the tests themselves (an administrator, not shipshape).
pub const ADMIN_KEY: &str = "test";

/// The account moto gives keys it did not issue.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// What the front door checks.
#[derive(Clone, Debug)]
pub struct Gate {
    /// Check requests against AWS's API model.
    pub validate: bool,
    /// IAM policies (name, document) in force; None: IAM is not evaluated.
    pub policies: Option<Vec<(String, Value)>>,
}

impl Gate {
    /// Both checks, with deploy/iam-policy.json in force.
    pub fn strict() -> Gate {
        Gate { validate: true, policies: Some(vec![("deploy/iam-policy.json".into(), iam::deploy_policy())]) }
    }

    /// Neither (benchmarks measure the controller, not the evaluator).
    pub fn off() -> Gate {
        Gate { validate: false, policies: None }
    }
}

/// A request AWS would have refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    /// `service:Operation`.
    pub operation: String,
    /// Why: the model's complaint, or the IAM check that was denied.
    pub reason: String,
    /// Denied by IAM (true) or invalid for the API model (false).
    pub denied: bool,
}

/// What the gate decided about a request.
pub enum Verdict {
    /// Let it through.
    Pass,
    /// Refuse it: (HTTP status, AWS error code, message).
    Refuse(Violation, u16, &'static str, String),
}

/// The parts of a request the gate reads.
pub struct Request<'a> {
    /// SigV4 signing name (ecs, rds, s3, monitoring, ...).
    pub signing: &'a str,
    /// Operation.
    pub operation: &'a str,
    /// Method, URI, headers, body.
    pub method: &'a Method,
    /// URI.
    pub uri: &'a Uri,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// Body.
    pub body: &'a [u8],
}

/// The region and access key of a SigV4 Authorization header.
pub fn scope(headers: &HeaderMap) -> (String, String) {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let cred = auth.split("Credential=").nth(1).unwrap_or("");
    let mut parts = cred.split('/');
    let key = parts.next().unwrap_or("").to_string();
    let region = parts.nth(1).unwrap_or("us-east-1").to_string();
    (key, region)
}

/// Reads resources' tags (from moto, as the request's caller) and bucket ABAC states.
#[async_trait::async_trait]
pub trait Tags: Send + Sync {
    /// The tags of `of` now (empty when it does not exist) and, for a bucket, whether ABAC
    /// is on (IAM sees a bucket's tags only then).
    async fn tags(&self, of: &TagsOf, key: &str, region: &str) -> (BTreeMap<String, String>, bool);
}

/// Checks one request of the controller.
pub async fn check(gate: &Gate, req: &Request<'_>, account: &str, tags: &dyn Tags) -> Verdict {
    let (key, region) = scope(req.headers);
    let model_name = crate::aws_model::model_name(req.signing, req.uri.path());
    let op = format!("{model_name}:{}", req.operation);
    let Some(model) = crate::aws_model::service(model_name) else {
        // No model (botocore missing) means nothing to check against: say so once per call.
        return refuse_invalid(&op, format!("no AWS API model for signing name {:?}", req.signing));
    };
    let input = match model.decode(req.operation, req.method, req.uri, req.headers, req.body) {
        Ok(v) => v,
        Err(e) => return refuse_invalid(&op, format!("cannot decode the request: {e}")),
    };
    if gate.validate {
        let problems = model.validate(req.operation, &input);
        if !problems.is_empty() {
            return refuse_invalid(&op, problems.join("; "));
        }
    }
    let Some(policies) = &gate.policies else { return Verdict::Pass };
    let Some(evaluator) = Evaluator::shared() else {
        return Verdict::Refuse(
            Violation { operation: op, reason: "the IAM evaluator is not installed (scripts/test.sh --setup)".into(), denied: true },
            500,
            "InternalFailure",
            "IAM evaluator missing".into(),
        );
    };
    let mut names = vec![];
    for (name, doc) in policies {
        evaluator.register(name, doc).await;
        names.push(name.clone());
    }
    let caller = Caller { account: account.to_string(), region: region.clone() };
    static REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let request = REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut records = vec![];
    let mut denied = None;
    for c in iam::checks(model_name, req.operation, &input, &caller) {
        let (resource_tags, abac) = match &c.tags_of {
            Some(of) => tags.tags(of, &key, &region).await,
            None => (BTreeMap::new(), false),
        };
        let context = context(&c, &resource_tags, &caller);
        let decision = evaluator.evaluate(&names, account, &c, &context, abac).await;
        if !decision.allowed() && denied.is_none() {
            denied = Some((c.clone(), decision.clone()));
        }
        records.push(Record { request, operation: op.clone(), check: c, resource_tags, decision });
    }
    iam::record(&records);
    match denied {
        None => Verdict::Pass,
        Some((c, d)) => {
            let why = match d.result.as_str() {
                "ExplicitlyDenied" => "with an explicit deny",
                "Error" => "(the evaluator failed)",
                _ => "because no identity-based policy allows it",
            };
            let message = format!(
                "User: arn:aws:sts::{account}:assumed-role/shipshape/shipshape is not authorized to perform: {} on resource: {} {why}",
                c.action, c.resource
            );
            let reason = format!(
                "{} on {} denied ({}{}); context {:?}",
                c.action,
                c.resource,
                d.result,
                d.detail.map(|x| format!(": {x}")).unwrap_or_default(),
                c.context
            );
            Verdict::Refuse(Violation { operation: op, reason, denied: true }, 403, "AccessDenied", message)
        }
    }
}

fn refuse_invalid(op: &str, reason: String) -> Verdict {
    Verdict::Refuse(Violation { operation: op.to_string(), reason: reason.clone(), denied: false }, 400, "ValidationException", reason)
}

/// The full context of a check: the request's keys, the resource's tags, and the global
/// keys every request has.
pub fn context(c: &Check, resource_tags: &BTreeMap<String, String>, caller: &Caller) -> Map<String, Value> {
    let mut m: Map<String, Value> = c.context.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, v) in resource_tags {
        m.insert(format!("aws:ResourceTag/{k}"), Value::String(v.clone()));
    }
    m.insert("aws:RequestedRegion".into(), Value::String(caller.region.clone()));
    m.insert("aws:PrincipalAccount".into(), Value::String(caller.account.clone()));
    m
}

/// `(Key, Value)` pairs anywhere in an XML answer (RDS, ElastiCache, S3 tag lists).
pub fn xml_tags(xml: &str) -> BTreeMap<String, String> {
    let Ok(doc) = roxmltree::Document::parse(xml) else { return BTreeMap::new() };
    doc.descendants()
        .filter_map(|n| {
            let k = n.children().find(|c| c.tag_name().name() == "Key")?.text()?;
            let v = n.children().find(|c| c.tag_name().name() == "Value").and_then(|c| c.text()).unwrap_or("");
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_pairs_are_read_from_query_and_rest_xml_answers() {
        let rds = "<ListTagsForResourceResponse><ListTagsForResourceResult><TagList><Tag><Key>a</Key><Value>1</Value></Tag><Tag><Key>b</Key><Value></Value></Tag></TagList></ListTagsForResourceResult></ListTagsForResourceResponse>";
        assert_eq!(xml_tags(rds), BTreeMap::from([("a".to_string(), "1".to_string()), ("b".to_string(), String::new())]));
        let s3 = r#"<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>"#;
        assert_eq!(xml_tags(s3)["k"], "v");
    }

    #[test]
    fn the_scope_gives_key_and_region() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-1/ecs/aws4_request, SignedHeaders=host".parse().unwrap(),
        );
        assert_eq!(scope(&h), ("AKID".to_string(), "eu-west-1".to_string()));
    }
}
