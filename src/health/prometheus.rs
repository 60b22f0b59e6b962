//! Instant queries against the Prometheus HTTP API (`/api/v1/query`). Everything Prometheus
//! sends is untrusted: the answer is read up to a size limit and parsed without panics, and
//! a backend that cannot answer is told apart from a query that is wrong.

use std::time::Duration;

use serde::Deserialize;

use crate::core::analysis::QueryResult;

/// The largest answer read (a query returning more series than that should aggregate).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// How long one query may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A Prometheus server.
#[derive(Clone)]
pub struct Prometheus {
    http: reqwest::Client,
    base: String,
}

/// How requests to Prometheus authenticate. Credentials live only here, in memory: never
/// in status, logs or Events (Debug prints no secret).
#[derive(Clone, Default)]
pub enum Auth {
    /// None.
    #[default]
    None,
    /// HTTP basic auth.
    Basic { username: String, password: String },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// AWS SigV4 (Amazon Managed Service for Prometheus: service `aps`), with these
    /// credentials, in this Region.
    SigV4 { region: String, credentials: aws_credential_types::provider::SharedCredentialsProvider },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => write!(f, "None"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Auth::Bearer(_) => write!(f, "Bearer(<redacted>)"),
            Auth::SigV4 { region, .. } => write!(f, "SigV4({region})"),
        }
    }
}

/// The SigV4 headers for a GET of `url` (service `aps`) at `time`.
pub fn sigv4_headers(
    url: &str,
    region: &str,
    credentials: aws_credential_types::Credentials,
    time: std::time::SystemTime,
) -> Result<Vec<(String, String)>, String> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let identity: aws_smithy_runtime_api::client::identity::Identity = credentials.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("aps")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("SigV4: {e}"))?
        .into();
    let host = url.split("://").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or_default().to_string();
    let request = SignableRequest::new("GET", url, [("host", host.as_str())].into_iter(), SignableBody::Bytes(&[]))
        .map_err(|e| format!("SigV4: {e}"))?;
    let (instructions, _) = sign(request, &params).map_err(|e| format!("SigV4: {e}"))?.into_parts();
    Ok(instructions.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

#[derive(Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// What a status code says about the backend, before the body is read.
fn unavailable_status(code: u16) -> Option<&'static str> {
    match code {
        401 => Some("Prometheus refused the request: 401 Unauthorized (credentials missing or wrong)"),
        403 => Some("Prometheus refused the request: 403 Forbidden (the credentials lack access)"),
        404 => Some("no Prometheus query API at this URL: 404 Not Found (check health.prometheus.url)"),
        407 | 429 => Some("Prometheus (or a proxy in front of it) refused the request for now"),
        500..=599 => Some("Prometheus failed to answer"),
        _ => None,
    }
}

/// The labels of a series as PromQL writes them: `{a="b",c="d"}` ("" without labels).
fn labels(metric: &serde_json::Value) -> String {
    let Some(m) = metric.as_object().filter(|m| !m.is_empty()) else { return String::new() };
    let pairs: Vec<String> = m.iter().map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or_default())).collect();
    format!("{{{}}}", pairs.join(","))
}

/// A sample's value (`[<time>, "<value>"]`); NaN when unreadable, which judges as no data.
fn value(sample: &serde_json::Value) -> f64 {
    sample.get(1).and_then(|v| v.as_str()).and_then(|s| s.parse::<f64>().ok()).unwrap_or(f64::NAN)
}

/// Parses an answer body (any bytes) into a result.
pub fn parse(code: u16, body: &[u8]) -> QueryResult {
    let parsed: Result<Response, _> = serde_json::from_slice(body);
    if let Some(why) = unavailable_status(code) {
        let detail =
            parsed.ok().and_then(|r| r.error).map(|e| format!(": {}", e.chars().take(300).collect::<String>())).unwrap_or_default();
        return QueryResult::Unavailable(format!("{why}{detail}"));
    }
    let body = match parsed {
        Ok(b) => b,
        Err(e) => return QueryResult::Unavailable(format!("HTTP {code}: not a Prometheus API answer ({e})")),
    };
    if body.status != "success" {
        let msg: String = body.error.unwrap_or_default().chars().take(500).collect();
        return match body.error_type.as_deref() {
            Some("bad_data") | Some("execution") => QueryResult::Invalid(msg),
            other => QueryResult::Unavailable(format!("HTTP {code}: {} error: {msg}", other.unwrap_or("unknown"))),
        };
    }
    let Some(data) = body.data else { return QueryResult::NoData };
    match data.result_type.as_str() {
        "vector" => {
            let samples: Vec<(String, f64)> =
                data.result.as_array().into_iter().flatten().map(|s| (labels(&s["metric"]), value(&s["value"]))).collect();
            if samples.is_empty() {
                QueryResult::NoData
            } else {
                QueryResult::Samples(samples)
            }
        }
        "scalar" => QueryResult::Samples(vec![(String::new(), value(&data.result))]),
        other => QueryResult::Invalid(format!("the query returns a {other}; analysis needs a scalar or an instant vector")),
    }
}

impl Prometheus {
    /// A client for the server at `base` (e.g. http://prometheus.monitoring:9090).
    pub fn new(base: &str) -> Result<Self, String> {
        Self::with_ca(base, None)
    }

    /// A client that also trusts the CA certificate(s) `ca_pem` (https with a private CA).
    pub fn with_ca(base: &str, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder().timeout(TIMEOUT);
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("the CA certificate is not PEM: {e}"))?;
            if certs.is_empty() {
                return Err("the CA Secret holds no PEM certificate".into());
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Prometheus { http, base: base.trim_end_matches('/').to_string() })
    }

    /// Runs an instant query without credentials.
    pub async fn query(&self, promql: &str) -> QueryResult {
        self.query_as(promql, &Auth::None).await
    }

    /// Runs an instant query, authenticated by `auth`.
    pub async fn query_as(&self, promql: &str, auth: &Auth) -> QueryResult {
        let url = format!("{}/api/v1/query", self.base);
        let full = match reqwest::Url::parse_with_params(&url, &[("query", promql)]) {
            Ok(u) => u.to_string(),
            Err(e) => return QueryResult::Unavailable(format!("{url}: not a URL: {e}")),
        };
        let mut req = self.http.get(&full);
        match auth {
            Auth::None => {}
            Auth::Basic { username, password } => req = req.basic_auth(username, Some(password)),
            Auth::Bearer(token) => req = req.bearer_auth(token),
            Auth::SigV4 { region, credentials } => {
                use aws_credential_types::provider::ProvideCredentials;
                let creds = match credentials.provide_credentials().await {
                    Ok(c) => c,
                    Err(e) => return QueryResult::Unavailable(format!("{url}: no AWS credentials to sign with: {e}")),
                };
                match sigv4_headers(&full, region, creds, std::time::SystemTime::now()) {
                    Ok(headers) => {
                        for (k, v) in headers {
                            req = req.header(k, v);
                        }
                    }
                    Err(e) => return QueryResult::Unavailable(format!("{url}: {e}")),
                }
            }
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return QueryResult::Unavailable(format!("{url}: no answer within {}s", TIMEOUT.as_secs())),
            Err(e) => return QueryResult::Unavailable(format!("{url}: cannot reach Prometheus: {e}")),
        };
        let code = resp.status().as_u16();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                        return QueryResult::Invalid(format!(
                            "the answer is larger than {} MiB: aggregate the query (sum, max, topk)",
                            MAX_ANSWER_BYTES / 1024 / 1024
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return QueryResult::Unavailable(format!("{url}: no answer within {}s", TIMEOUT.as_secs())),
                Err(e) => return QueryResult::Unavailable(format!("{url}: answer cut off: {e}")),
            }
        }
        match parse(code, &body) {
            QueryResult::Unavailable(why) => QueryResult::Unavailable(format!("{url}: {why}")),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_of_a_vector_is_returned_with_its_labels() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"az":"a"},"value":[1,"0.01"]},{"metric":{"az":"b"},"value":[1,"0.5"]},{"metric":{},"value":[1,"NaN"]}]}}"#;
        let QueryResult::Samples(s) = parse(200, body) else { panic!() };
        assert_eq!(s[0], (r#"{az="a"}"#.to_string(), 0.01));
        assert_eq!(s[1], (r#"{az="b"}"#.to_string(), 0.5));
        assert!(s[2].0.is_empty() && s[2].1.is_nan());
        assert_eq!(parse(200, br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#), QueryResult::NoData);
        assert_eq!(
            parse(200, br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#),
            QueryResult::Samples(vec![(String::new(), 2.0)])
        );
    }

    #[test]
    fn a_broken_query_is_invalid_but_a_backend_failure_is_unavailable() {
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#;
        assert_eq!(parse(400, bad), QueryResult::Invalid("parse error at char 5".into()));
        let exec = br#"{"status":"error","errorType":"execution","error":"many-to-many matching"}"#;
        assert!(matches!(parse(422, exec), QueryResult::Invalid(_)));
        for (code, body) in [
            (401, &b"Unauthorized"[..]),
            (403, b"forbidden"),
            (500, b"oops"),
            (503, br#"{"status":"error","errorType":"timeout","error":"query timed out"}"#),
            (502, b"<html>bad gateway</html>"),
            (200, b"not json"),
        ] {
            assert!(matches!(parse(code, body), QueryResult::Unavailable(_)), "{code}");
        }
        let QueryResult::Unavailable(m) = parse(401, b"") else { panic!() };
        assert!(m.contains("401 Unauthorized"), "{m}");
        let range = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(matches!(parse(200, range), QueryResult::Invalid(_)));
    }

    /// A server that checks a request's SigV4 signature the way AWS does: it rebuilds the
    /// canonical request from what it received (method, host, path and query, the signed
    /// headers, x-amz-date) with the secret key it knows, and answers 403 unless the
    /// signatures match; then a Prometheus answer.
    async fn verifier(secret: &'static str) -> String {
        use axum::http::{HeaderMap, Uri};
        let app = axum::Router::new().fallback(move |headers: HeaderMap, uri: Uri| async move {
            let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let auth = header("authorization");
            let scope_ok = auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/") && auth.contains("/eu-west-1/aps/aws4_request");
            let time = chrono::NaiveDateTime::parse_from_str(&header("x-amz-date"), "%Y%m%dT%H%M%SZ")
                .map(|t| std::time::SystemTime::from(t.and_utc()))
                .unwrap_or(std::time::UNIX_EPOCH);
            let url = format!("http://{}{}", header("host"), uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
            let token = header("x-amz-security-token");
            let creds = aws_credential_types::Credentials::new("AKIDTEST", secret, Some(token).filter(|t| !t.is_empty()), None, "verifier");
            let expected = sigv4_headers(&url, "eu-west-1", creds, time).unwrap_or_default();
            let want = expected.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone()).unwrap_or_default();
            if scope_ok && !want.is_empty() && want == auth {
                (
                    axum::http::StatusCode::OK,
                    r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.25"]}]}}"#,
                )
            } else {
                (
                    axum::http::StatusCode::FORBIDDEN,
                    r#"{"message":"The request signature we calculated does not match the signature you provided."}"#,
                )
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn sigv4_signed_queries_pass_a_verifier_and_a_wrong_key_is_refused() {
        use aws_credential_types::provider::SharedCredentialsProvider;
        let url = verifier("right-secret").await;
        let p = Prometheus::new(&url).unwrap();
        let auth = |secret: &str| Auth::SigV4 {
            region: "eu-west-1".into(),
            credentials: SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
                "AKIDTEST",
                secret,
                Some("session-token".into()),
                None,
                "test",
            )),
        };
        // A query with characters that need encoding: the signature covers the canonical query.
        let q = r#"sum(rate(http_requests_total{code=~"5..", job="api"}[1m])) / 2"#;
        assert_eq!(p.query_as(q, &auth("right-secret")).await, QueryResult::Samples(vec![(String::new(), 0.25)]));
        let QueryResult::Unavailable(why) = p.query_as(q, &auth("wrong-secret")).await else { panic!("a wrong key is refused") };
        assert!(why.contains("403"), "{why}");
        assert!(!format!("{:?}", auth("right-secret")).contains("right-secret"), "Debug shows no secret");
    }

    /// Basic and bearer credentials arrive as the Authorization header Prometheus checks.
    #[tokio::test]
    async fn basic_and_bearer_credentials_are_sent_as_authorization_headers() {
        use axum::http::HeaderMap;
        let app = axum::Router::new().fallback(|headers: HeaderMap| async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            // base64("shipshape:pw") = c2hpcHNoYXBlOnB3
            if auth == "Bearer t0ken" || auth == "Basic c2hpcHNoYXBlOnB3" {
                (axum::http::StatusCode::OK, r#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}"#)
            } else {
                (axum::http::StatusCode::UNAUTHORIZED, "")
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        let p = Prometheus::new(&format!("http://{addr}")).unwrap();
        let one = QueryResult::Samples(vec![(String::new(), 1.0)]);
        assert_eq!(p.query_as("up", &Auth::Bearer("t0ken".into())).await, one);
        assert_eq!(p.query_as("up", &Auth::Basic { username: "shipshape".into(), password: "pw".into() }).await, one);
        let QueryResult::Unavailable(why) = p.query_as("up", &Auth::Bearer("wrong".into())).await else { panic!("refused") };
        assert!(why.contains("401"), "{why}");
        assert!(!format!("{:?}", Auth::Bearer("t0ken".into())).contains("t0ken"), "Debug shows no token");
    }

    proptest::proptest! {
        /// Whatever Prometheus (or something pretending to be it) answers: no panic.
        #[test]
        fn any_answer_parses_without_panicking(code in 100u16..600, body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse(code, &body);
        }

        /// Any JSON-shaped answer: no panic.
        #[test]
        fn any_json_answer_parses_without_panicking(code in 100u16..600, result in "\\PC{0,80}", kind in "(vector|scalar|matrix|string|x)") {
            let body = format!(r#"{{"status":"success","data":{{"resultType":"{kind}","result":{result}}}}}"#);
            let _ = parse(code, body.as_bytes());
        }
    }
}
