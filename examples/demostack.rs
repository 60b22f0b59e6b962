//! The demo's stand-ins for what cannot run here: the AWS test proxy in front of moto (ECS
//! deployment dynamics, fault injection) and a small app exporter whose error rate you set,
//! for Prometheus to scrape.
//!
//! `cargo run --example demostack -- --moto http://127.0.0.1:5000 --proxy-addr 127.0.0.1:5001 --exporter-addr 127.0.0.1:5002`
//! then `curl -XPOST '127.0.0.1:5002/error-rate?service=backend&rate=0.2'`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::routing::{get, post};
use clap::Parser;
use shipshape::testing::awsproxy::AwsProxy;

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
    let rates: Rates = Default::default();
    let app = axum::Router::new().route("/metrics", get(metrics)).route("/error-rate", post(set_rate)).with_state(rates);
    let listener = tokio::net::TcpListener::bind(&args.exporter_addr).await?;
    println!("aws proxy at {} -> {}; app exporter at http://{}", proxy.url(), args.moto, args.exporter_addr);
    axum::serve(listener, app).await?;
    Ok(())
}
