//! Lambda behaviour moto lacks, modelled in the AWS test proxy: provisioned concurrency, and
//! synchronous invocations (moto runs a function's code only in Docker, which is not here).
//!
//! moto (5.2) answers 404 to Put/Get/DeleteProvisionedConcurrencyConfig. The model follows
//! the Lambda API Reference and developer guide:
//! - the configuration belongs to a qualifier, "the version number or alias name"; the
//!   unpublished version cannot have one ("You can't allocate provisioned concurrency on the
//!   $LATEST version": InvalidParameterValueException), and a qualifier that does not exist
//!   is ResourceNotFoundException (checked against moto's own alias or version);
//! - PutProvisionedConcurrencyConfig answers 202 with `Status: IN_PROGRESS` and nothing
//!   allocated yet; Lambda then allocates the environments and GetProvisionedConcurrencyConfig
//!   shows `READY` with `Allocated...` = `Available...` = the requested count (here after
//!   [`ALLOCATION`]);
//! - Get for a qualifier without one is ProvisionedConcurrencyConfigNotFoundException (404);
//!   Delete answers 204 and removes it.
//!
//! Configurations are keyed by the qualified ARN moto reports (so accounts and Regions stay
//! apart). Pinned by `lambda_provisioned_concurrency_model_follows_the_api_reference` in
//! tests/function_e2e.rs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// How long the model takes to allocate provisioned environments.
pub const ALLOCATION: Duration = Duration::from_secs(2);

/// Provisioned concurrency by qualified ARN: (requested, when it was requested).
fn configs() -> std::sync::MutexGuard<'static, HashMap<String, (i64, Instant)>> {
    static CONFIGS: std::sync::OnceLock<Mutex<HashMap<String, (i64, Instant)>>> = std::sync::OnceLock::new();
    CONFIGS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner())
}

fn error(status: u16, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"Type": "User", "message": message}).to_string();
    let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), body).into_response();
    r.headers_mut().insert("x-amzn-errortype", HeaderValue::from_str(code).unwrap_or(HeaderValue::from_static("Unknown")));
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn json(status: u16, v: serde_json::Value) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), v.to_string()).into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// Put/Get/DeleteProvisionedConcurrencyConfig against moto's functions (`upstream`), with the
/// caller's own `authorization` (moto's account).
pub async fn provisioned_concurrency(
    http: &reqwest::Client,
    upstream: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let parts: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let Some(function) = parts.get(2).map(|f| f.to_string()) else {
        return error(400, "InvalidParameterValueException", "no function name");
    };
    let qualifier = uri
        .query()
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "Qualifier").map(|(_, v)| v.into_owned()))
        .unwrap_or_default();
    if qualifier.is_empty() || qualifier == "$LATEST" {
        return error(400, "InvalidParameterValueException", "You can't allocate provisioned concurrency on the $LATEST version.");
    }
    // The qualifier as moto knows it: an alias, else a published version.
    let path = if qualifier.chars().all(|c| c.is_ascii_digit()) {
        format!("{upstream}/2015-03-31/functions/{function}/configuration?Qualifier={qualifier}")
    } else {
        format!("{upstream}/2015-03-31/functions/{function}/aliases/{qualifier}")
    };
    let mut req = http.get(path);
    if let Some(auth) = headers.get("authorization") {
        req = req.header("authorization", auth);
    }
    let found: Option<serde_json::Value> = match req.send().await {
        Ok(r) if r.status().is_success() => r.json().await.ok(),
        _ => None,
    };
    let Some(arn) = found.and_then(|v| v["AliasArn"].as_str().or(v["FunctionArn"].as_str()).map(String::from)) else {
        return error(404, "ResourceNotFoundException", &format!("Function not found: {function}:{qualifier}"));
    };
    let mut configs = configs();
    match *method {
        Method::PUT => {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let Some(n) = v["ProvisionedConcurrentExecutions"].as_i64().filter(|n| *n >= 1) else {
                return error(400, "InvalidParameterValueException", "ProvisionedConcurrentExecutions must be at least 1.");
            };
            configs.insert(arn, (n, Instant::now()));
            json(
                202,
                serde_json::json!({"RequestedProvisionedConcurrentExecutions": n, "AllocatedProvisionedConcurrentExecutions": 0,
                    "AvailableProvisionedConcurrentExecutions": 0, "Status": "IN_PROGRESS", "LastModified": chrono::Utc::now().to_rfc3339()}),
            )
        }
        Method::GET => match configs.get(&arn) {
            Some((n, at)) => {
                let ready = at.elapsed() >= ALLOCATION;
                let allocated = if ready { *n } else { 0 };
                json(
                    200,
                    serde_json::json!({"RequestedProvisionedConcurrentExecutions": n, "AllocatedProvisionedConcurrentExecutions": allocated,
                        "AvailableProvisionedConcurrentExecutions": allocated, "Status": if ready { "READY" } else { "IN_PROGRESS" },
                        "LastModified": chrono::Utc::now().to_rfc3339()}),
                )
            }
            None => {
                error(404, "ProvisionedConcurrencyConfigNotFoundException", &format!("No Provisioned Concurrency Config found for {arn}"))
            }
        },
        Method::DELETE => match configs.remove(&arn) {
            Some(_) => (StatusCode::NO_CONTENT, "").into_response(),
            None => {
                error(404, "ProvisionedConcurrencyConfigNotFoundException", &format!("No Provisioned Concurrency Config found for {arn}"))
            }
        },
        _ => error(400, "InvalidParameterValueException", "unsupported method"),
    }
}

/// What invoking a function with a payload does (scripted per payload, exactly as sent).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InvokeScript {
    /// `X-Amz-Function-Error` (e.g. `Unhandled`): the function failed.
    pub function_error: Option<String>,
    /// The response payload (default `null`; with an error, `{"errorMessage": …}`).
    pub body: Option<String>,
    /// Lines the function logs.
    pub lines: Vec<String>,
}

fn scripts() -> std::sync::MutexGuard<'static, HashMap<String, InvokeScript>> {
    static SCRIPTS: std::sync::OnceLock<Mutex<HashMap<String, InvokeScript>>> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner())
}

/// Scripts what an invocation with `payload` does, for every proxy of this process.
pub fn script_invoke(payload: &str, script: InvokeScript) {
    scripts().insert(payload.to_string(), script);
}

/// Invocations answered so far, by every proxy of this process: (function, qualifier, payload).
pub fn invocations() -> Vec<(String, String, String)> {
    invoked().clone()
}

fn invoked() -> std::sync::MutexGuard<'static, Vec<(String, String, String)>> {
    static INVOKED: std::sync::OnceLock<Mutex<Vec<(String, String, String)>>> = std::sync::OnceLock::new();
    INVOKED.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner())
}

/// Invoke (RequestResponse), as the Lambda API Reference describes it: the function (and its
/// `Qualifier`, a version or alias) must exist (else 404 ResourceNotFoundException, checked
/// against moto's GetFunction); the answer is 200 whether or not the function failed, a
/// failure named by `X-Amz-Function-Error` with `{"errorMessage", "errorType"}` as the
/// payload; `LogType: Tail` returns the last 4 KB of the log, base64, in `X-Amz-Log-Result`;
/// `X-Amz-Executed-Version` names the version that ran.
pub async fn invoke(http: &reqwest::Client, upstream: &str, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
    use base64::Engine;
    let parts: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let name = parts.get(2).copied().unwrap_or_default().to_string();
    let qualifier = uri
        .query()
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "Qualifier").map(|(_, v)| v.into_owned()))
        .unwrap_or_else(|| "$LATEST".into());
    let mut get = http.get(format!("{upstream}/2015-03-31/functions/{name}?Qualifier={qualifier}"));
    for (k, v) in headers.iter() {
        if k == "authorization" {
            get = get.header(k, v);
        }
    }
    let found = get.send().await.map(|r| r.status().is_success()).unwrap_or(false);
    if !found {
        return error(404, "ResourceNotFoundException", &format!("Function not found: {name}:{qualifier}"));
    }
    let payload = String::from_utf8_lossy(body).into_owned();
    invoked().push((name.clone(), qualifier.clone(), payload.clone()));
    let script = scripts().get(&payload).cloned().unwrap_or_default();
    let id = format!("{:032x}", rand::random::<u128>());
    let mut log = format!("START RequestId: {id} Version: {qualifier}\n");
    for l in &script.lines {
        log.push_str(l);
        log.push('\n');
    }
    log.push_str(&format!("END RequestId: {id}\nREPORT RequestId: {id}\tDuration: 12.00 ms\n"));
    let tail = &log.as_bytes()[log.len().saturating_sub(4096)..];
    let answer = match (&script.function_error, &script.body) {
        (_, Some(b)) => b.clone(),
        (Some(_), None) => serde_json::json!({"errorMessage": "the function failed", "errorType": "Error"}).to_string(),
        (None, None) => "null".into(),
    };
    let mut r = (StatusCode::OK, answer).into_response();
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("x-amzn-requestid", HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("x")));
    h.insert("x-amz-executed-version", HeaderValue::from_str(&qualifier).unwrap_or(HeaderValue::from_static("$LATEST")));
    if let Ok(v) = HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(tail)) {
        h.insert("x-amz-log-result", v);
    }
    if let Some(e) = script.function_error.as_deref().and_then(|e| HeaderValue::from_str(e).ok()) {
        h.insert("x-amz-function-error", e);
    }
    r
}
