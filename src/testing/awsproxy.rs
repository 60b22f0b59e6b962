//! The AWS test proxy: sits between the SDK and moto (`AWS_ENDPOINT_URL` points here), and
//! - fixes the wire differences between moto and AWS that break the Rust SDK
//!   (GetBucketVersioning's root element, see TESTING.md);
//! - injects faults on demand: the next k calls of an operation fail with a throttle, a
//!   500 or AccessDenied in the service's own error format, or are delayed;
//! - records every call (service, operation) so tests can count reads and writes.
//!
//! Control it from Rust ([`AwsProxy::inject`], [`AwsProxy::calls`]) or over HTTP:
//! `POST /__proxy/faults` with `{"operation":"CreateBucket","fault":"throttle","times":3}`,
//! `GET /__proxy/calls`, `POST /__proxy/reset`.

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
}

#[derive(Default)]
struct State_ {
    faults: HashMap<String, VecDeque<Fault>>,
    calls: Vec<Call>,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    state: Mutex<State_>,
}

/// A running proxy.
pub struct AwsProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

/// Operations that change something in AWS (used to count writes).
pub fn is_write(operation: &str) -> bool {
    !["Describe", "Get", "List", "Head"].iter().any(|p| operation.starts_with(p))
}

impl AwsProxy {
    /// Starts a proxy on `addr` forwarding to `upstream` (moto's URL).
    pub async fn start(addr: &str, upstream: &str) -> std::io::Result<AwsProxy> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            state: Mutex::default(),
        });
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
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

    /// The URL to put in `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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

    /// Forgets calls and pending faults.
    pub fn reset(&self) {
        *self.shared.state.lock().unwrap() = State_::default();
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
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
fn operation_of(service: &str, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> String {
    if let Some(t) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return t.rsplit('.').next().unwrap_or(t).to_string();
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
    let sub = ["versioning", "tagging", "encryption", "publicAccessBlock", "lifecycle", "location", "policy", "acl"]
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
        Fault::DelayMs(_) => unreachable!("delays are forwarded"),
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
        ("GET", "/__proxy/calls") => axum::Json(shared.state.lock().unwrap().calls.clone()).into_response(),
        ("POST", "/__proxy/reset") => {
            *shared.state.lock().unwrap() = State_::default();
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn handle(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if uri.path().starts_with("/__proxy/") {
        return control(&shared, &method, uri.path(), &body).await;
    }
    let service = service_of(&headers);
    let operation = operation_of(&service, &method, &uri, &headers, &body);
    let fault = {
        let mut s = shared.state.lock().unwrap();
        let fault = s.faults.get_mut(&operation).and_then(VecDeque::pop_front);
        let faulted = matches!(fault, Some(f) if !matches!(f, Fault::DelayMs(_)));
        s.calls.push(Call { service: service.clone(), operation: operation.clone(), faulted });
        fault
    };
    match fault {
        Some(Fault::DelayMs(ms)) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Some(f) => return fault_response(&service, &operation, f),
        None => {}
    }
    let url = format!("{}{}", shared.upstream, uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut req = shared.http.request(method.clone(), &url).body(body.to_vec());
    for (k, v) in headers.iter() {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("aws proxy: upstream failed: {e}")).into_response(),
    };
    let status = resp.status();
    let resp_headers = resp.headers().clone();
    let mut bytes = resp.bytes().await.unwrap_or_default().to_vec();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

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
