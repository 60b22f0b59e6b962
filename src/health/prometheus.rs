//! Instant queries against the Prometheus HTTP API (`/api/v1/query`).

use std::time::Duration;

use serde::Deserialize;

use crate::core::analysis::QueryResult;

/// A Prometheus server.
#[derive(Clone)]
pub struct Prometheus {
    http: reqwest::Client,
    base: String,
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

impl Prometheus {
    /// A client for the server at `base` (e.g. http://prometheus.monitoring:9090).
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client");
        Prometheus { http, base: base.trim_end_matches('/').to_string() }
    }

    /// Runs an instant query. One sample is a value (the first, when a query returns
    /// several series); none is no data; a 4xx with `bad_data` is an invalid query.
    pub async fn query(&self, promql: &str) -> QueryResult {
        let url = format!("{}/api/v1/query", self.base);
        let resp = match self.http.get(&url).query(&[("query", promql)]).send().await {
            Ok(r) => r,
            Err(e) => return QueryResult::Unreachable(format!("{url}: {e}")),
        };
        let code = resp.status();
        let body: Response = match resp.json().await {
            Ok(b) => b,
            Err(e) => return QueryResult::Unreachable(format!("{url}: HTTP {code}: unreadable answer: {e}")),
        };
        if body.status != "success" {
            let msg = body.error.unwrap_or_default();
            return match body.error_type.as_deref() {
                Some("bad_data") | Some("execution") => QueryResult::Invalid(msg),
                _ => QueryResult::Unreachable(format!("{url}: {msg}")),
            };
        }
        let Some(data) = body.data else { return QueryResult::NoData };
        let sample = match data.result_type.as_str() {
            "vector" => data.result.as_array().and_then(|a| a.first()).map(|s| s["value"][1].clone()),
            "scalar" => Some(data.result[1].clone()),
            other => return QueryResult::Invalid(format!("the query returns a {other}; analysis needs a scalar or an instant vector")),
        };
        match sample.and_then(|v| v.as_str().and_then(|s| s.parse::<f64>().ok())) {
            Some(v) => QueryResult::Value(v),
            None => QueryResult::NoData,
        }
    }
}
