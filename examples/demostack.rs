//! The demo's stand-ins for what cannot run here: the AWS test proxy in front of moto (ECS
//! deployment dynamics, fault injection) and a small app exporter whose error rate you set,
//! for Prometheus to scrape: each scrape counts 100 more requests per service
//! (`http_requests_total` by code, and an `http_request_duration_seconds` histogram with a
//! p99 of 100 ms).
//!
//! `cargo run --example demostack -- --moto http://127.0.0.1:5000 --proxy-addr 127.0.0.1:5001 --exporter-addr 127.0.0.1:5002`
//! then `curl -XPOST '127.0.0.1:5002/error-rate?service=backend&rate=0.2'`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::routing::{get, post};
use clap::Parser;
use shipshape_testkit::awsproxy::AwsProxy;

#[derive(Parser)]
struct Args {
    /// moto's URL.
    #[arg(long)]
    moto: String,
    /// Where the AWS proxy listens.
    #[arg(long)]
    proxy_addr: String,
    /// Where the app exporter listens.
    #[arg(long)]
    exporter_addr: String,
}

/// Per service: (error rate, requests served, requests failed).
type Rates = Arc<Mutex<HashMap<String, (f64, u64, u64)>>>;

async fn metrics(State(rates): State<Rates>) -> String {
    let mut out = String::from("# TYPE http_requests_total counter\n");
    for (svc, (rate, ok, err)) in rates.lock().unwrap().iter_mut() {
        let failed = (rate.clamp(0.0, 1.0) * 100.0).round() as u64;
        *err += failed;
        *ok += 100 - failed;
        out += &format!(
            "http_requests_total{{service=\"{svc}\",code=\"200\"}} {ok}\nhttp_requests_total{{service=\"{svc}\",code=\"500\"}} {err}\n"
        );
    }
    out += "# TYPE http_request_duration_seconds histogram\n";
    for (svc, (_, ok, err)) in rates.lock().unwrap().iter() {
        let n = ok + err;
        // Of every 100 requests: 90 within 50 ms, 9 more within 100 ms, 1 within 250 ms.
        for (le, share) in [("0.05", 0.90), ("0.1", 0.99), ("0.25", 1.0), ("+Inf", 1.0)] {
            out +=
                &format!("http_request_duration_seconds_bucket{{service=\"{svc}\",le=\"{le}\"}} {}\n", (n as f64 * share).round() as u64);
        }
        out += &format!("http_request_duration_seconds_sum{{service=\"{svc}\"}} {:.3}\n", n as f64 * 0.04);
        out += &format!("http_request_duration_seconds_count{{service=\"{svc}\"}} {n}\n");
    }
    out
}

async fn set_rate(State(rates): State<Rates>, Query(q): Query<HashMap<String, String>>) -> &'static str {
    let svc = q.get("service").cloned().unwrap_or_default();
    let rate = q.get("rate").and_then(|r| r.parse().ok()).unwrap_or(0.0);
    rates.lock().unwrap().entry(svc).or_insert((0.0, 0, 0)).0 = rate;
    "ok\n"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let proxy = AwsProxy::start(&args.proxy_addr, &args.moto).await?;
    // AWS's events (a deployment's end, CloudTrail's record of each write) go into moto's
    // EventBridge, for an Environment with `events: {}` to receive.
    proxy.emit_events(true);
    let rates: Rates = Default::default();
    let app = axum::Router::new().route("/metrics", get(metrics)).route("/error-rate", post(set_rate)).with_state(rates);
    let listener = tokio::net::TcpListener::bind(&args.exporter_addr).await?;
    println!("aws proxy at {} -> {}; app exporter at http://{}", proxy.url(), args.moto, args.exporter_addr);
    axum::serve(listener, app).await?;
    Ok(())
}
