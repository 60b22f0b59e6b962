//! Serves the test API server with shipshape's CRDs installed, for people and scripts:
//! `cargo run --example devcluster -- --addr 127.0.0.1:PORT --kubeconfig FILE`.

use clap::Parser;
use shipshape::testing::apiserver::ApiServer;

#[derive(Parser)]
#[command(about = "A local Kubernetes API server with shipshape's CRDs, for demos and tests")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    addr: String,
    /// Where to write a kubeconfig for kubectl and the controller.
    #[arg(long, default_value = "devcluster.kubeconfig")]
    kubeconfig: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = ApiServer::start(&args.addr).await?;
    let crds: Vec<serde_json::Value> = shipshape::api::crds().iter().map(|c| serde_json::to_value(c).expect("CRD serializes")).collect();
    server.install_crds(&crds);
    server.write_kubeconfig(&args.kubeconfig)?;
    println!("test API server at {} (kubeconfig: {})", server.url(), args.kubeconfig.display());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
