//! The `shipshape` binary (also usable as `kubectl-shipshape`).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use shipshape::api::parse_duration;
use shipshape::aws::sdk::SdkProvider;
use shipshape::controller::{self, LeaseConfig, RunConfig, Settings};
use shipshape::metrics::Metrics;
use shipshape::telemetry::{self, LogFormat};
use std::time::Duration;

/// mimalloc instead of glibc's malloc: glibc kept the controller's resident memory at the
/// peak of a convergence (10,000 releases: every object read, a thousand reconciles in
/// flight) for good; mimalloc returns freed pages to the system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "shipshape",
    version,
    about = "Keeps a team's AWS footprint (ECS, Lambda, RDS, S3, DynamoDB, ElastiCache) in its declared state from Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (KUBECONFIG or in-cluster config; AWS_REGION, AWS_ENDPOINT_URL honoured).
    Controller(Box<ControllerArgs>),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
    /// A table of ServiceReleases: phase, SHA, stable SHA, last measurement, age.
    Status {
        /// Namespace (default: the kubeconfig's; -A for all).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// All namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Each promotion path (promotion.from): the SHA at each stage, its phase, the soak
        /// left, approvals pending.
        #[arg(long)]
        pipeline: bool,
    },
    /// Roll a release back to its stable SHA now.
    Rollback(Target),
    /// Promote a release's rollout now, skipping the rest of its analysis.
    Promote(Target),
    /// Start no new rollout for a release (rollbacks still happen).
    Pause(Target),
    /// Undo `pause`.
    Resume(Target),
    /// Retry a rolled-back SHA.
    Retry(Target),
    /// Approve a release's SHA (promotion.approval: Manual): sets shipshape.dev/approve.
    Approve {
        #[command(flatten)]
        target: Target,
        /// The SHA approved (default: the one the release's spec names).
        #[arg(long)]
        sha: Option<String>,
    },
    /// A web UI: every release, each rollout's steps and measurements as they happen, the
    /// Environments, StackSpecs and promotion paths, and the buttons — served locally with
    /// your kubeconfig, so it can do nothing you could not do with kubectl.
    Dashboard {
        /// Port.
        #[arg(long, default_value_t = 3100)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        address: std::net::IpAddr,
        /// Only this namespace (default: every namespace).
        #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
        namespace: Option<String>,
        /// Every namespace (the default).
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Print the IAM policy the controller's role needs (deploy/iam-policy.json is this with
    /// the defaults): every action scoped by shipshape's ownership tags.
    IamPolicy(IamPolicyArgs),
    /// Show what the controller would change in AWS for these manifests (read-only).
    /// Exit 0: nothing; 2: changes; 1: error.
    Plan {
        /// A file, a directory of *.yaml, or - for stdin.
        #[arg(short = 'f', long = "filename")]
        file: String,
    },
}

#[derive(clap::Args)]
struct IamPolicyArgs {
    /// A Region Environments use (repeat; none: any Region). Default: the examples' Regions.
    #[arg(long = "region")]
    regions: Vec<String>,
    /// Where Lambda code is read from, s3://bucket/prefix (IAM wildcards allowed; repeat):
    /// the Environments' functionCodeLocations. Default: s3://*-builds*/*.
    #[arg(long = "function-code")]
    function_code: Vec<String>,
    /// The IAM path of the roles shipshape passes (<path>ecs-tasks/, <path>lambda/, <path>ecs/)
    /// and assumes (<path>environments/).
    #[arg(long, default_value = "/shipshape/")]
    role_path: String,
    /// The AWS partition.
    #[arg(long, default_value = "aws")]
    partition: String,
    /// Print the temporary adoption policy for these resource ARNs instead (repeat).
    #[arg(long = "adopt")]
    adopt: Vec<String>,
    /// With no --region, allow any Region (no aws:RequestedRegion condition).
    #[arg(long)]
    any_region: bool,
}

#[derive(clap::Args)]
struct Target {
    /// ServiceRelease name.
    name: String,
    /// Namespace (default: the kubeconfig's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

async fn client_and_namespace(ns: Option<String>) -> anyhow::Result<(kube::Client, String)> {
    let config = kube::Config::infer().await?;
    let ns = ns.unwrap_or_else(|| config.default_namespace.clone());
    Ok((kube::Client::try_from(config)?, ns))
}

async fn act(t: Target, cmd: shipshape::cli::Command) -> anyhow::Result<()> {
    let (client, ns) = client_and_namespace(t.namespace).await?;
    println!("{}", shipshape::cli::act(client, &ns, &t.name, cmd).await?);
    Ok(())
}

#[derive(clap::Args)]
struct ControllerArgs {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "SHIPSHAPE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "SHIPSHAPE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Elect a leader on a Lease so only one replica acts.
    #[arg(long, env = "SHIPSHAPE_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Lease name.
    #[arg(long, default_value = "shipshape-controller")]
    lease_name: String,
    /// Lease namespace (default: POD_NAMESPACE, else "default").
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity (default: POD_NAME, else hostname and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// How long a lease is valid without renewal.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// How often the leader renews and followers retry.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    lease_retry_period: Duration,
    /// Default ECS drift interval (Environment, ServiceRelease).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    ecs_drift_interval: Duration,
    /// Default RDS/S3 drift interval (StackSpec).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    stack_drift_interval: Duration,
    /// AWS calls per second per environment and service.
    #[arg(long, default_value_t = 20)]
    aws_rate: u32,
    /// Reconcile only the Environments, StackSpecs and ServiceReleases whose labels match
    /// this selector (e.g. `shipshape.dev/instance=blue`), so several controllers can share
    /// one cluster; empty: all of them.
    #[arg(long, env = "SHIPSHAPE_WATCH_LABEL_SELECTOR", default_value = "")]
    watch_label_selector: String,
    /// This process's shard, N/M: it reconciles the StackSpecs and ServiceReleases whose
    /// namespace hashes to N (shard 0 also the Environments) and holds the Lease
    /// `<lease-name>-N`. Default: the only shard.
    #[arg(long, env = "SHIPSHAPE_SHARD", default_value = "0/1")]
    shard: controller::Shard,
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "shipshape".into());
    format!("{host}-{}", std::process::id())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", shipshape::api::crds_yaml());
            Ok(())
        }
        Command::Status { namespace, all_namespaces, pipeline } => {
            let (client, ns) = client_and_namespace(namespace).await?;
            let ns = (!all_namespaces).then_some(ns.as_str());
            if pipeline {
                print!("{}", shipshape::cli::pipeline(client, ns).await?);
            } else {
                print!("{}", shipshape::cli::status(client, ns).await?);
            }
            Ok(())
        }
        Command::Rollback(t) => act(t, shipshape::cli::Command::Rollback).await,
        Command::Promote(t) => act(t, shipshape::cli::Command::Promote).await,
        Command::Pause(t) => act(t, shipshape::cli::Command::Pause).await,
        Command::Resume(t) => act(t, shipshape::cli::Command::Resume).await,
        Command::Retry(t) => act(t, shipshape::cli::Command::Retry).await,
        Command::Approve { target, sha } => act(target, shipshape::cli::Command::Approve(sha)).await,
        Command::Dashboard { port, address, namespace, all_namespaces } => {
            let started = std::time::Instant::now();
            let client = kube::Client::try_from(kube::Config::infer().await?)?;
            let listener = tokio::net::TcpListener::bind((address, port)).await?;
            let addr = listener.local_addr()?;
            let scope = if all_namespaces { None } else { namespace };
            println!(
                "shipshape dashboard: http://{addr}/ ({}; serving after {} ms; Ctrl-C stops it)",
                scope.as_deref().map(|n| format!("namespace {n}")).unwrap_or_else(|| "every namespace".into()),
                started.elapsed().as_millis()
            );
            shipshape::dashboard::serve(client, listener, scope, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
        }
        Command::IamPolicy(a) => {
            let defaults = shipshape::iam::PolicyOptions::default();
            let role_path = format!("/{}/", a.role_path.trim_matches('/')).replace("//", "/");
            let o = shipshape::iam::PolicyOptions {
                partition: a.partition,
                regions: if a.regions.is_empty() && !a.any_region { defaults.regions } else { a.regions },
                function_code: if a.function_code.is_empty() { defaults.function_code } else { a.function_code },
                role_path,
            };
            let doc = if a.adopt.is_empty() {
                serde_json::to_string_pretty(&shipshape::iam::policy(&o))?
            } else {
                serde_json::to_string_pretty(&shipshape::iam::adoption_policy(&a.adopt))?
            };
            println!("{doc}");
            Ok(())
        }
        Command::Plan { file } => {
            let manifests = shipshape::plan::read(&file)?;
            let aws = SdkProvider::new(Metrics::new(), 20);
            let mut out = std::io::stdout();
            match shipshape::plan::run(&manifests, &aws, &mut out).await {
                Ok(false) => Ok(()),
                Ok(true) => std::process::exit(2),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::exit(1);
                }
            }
        }
        Command::Controller(args) => {
            telemetry::init(args.log_format);
            let metrics = Metrics::new();
            let lease = args.leader_elect.then(|| LeaseConfig {
                name: args.shard.lease_name(&args.lease_name),
                namespace: args.lease_namespace.clone(),
                identity: args.identity.clone().unwrap_or_else(default_identity),
                duration: args.lease_duration,
                retry_period: args.lease_retry_period,
            });
            let result = controller::run(RunConfig {
                metrics_addr: args.metrics_addr,
                lease,
                settings: Settings {
                    ecs_drift: args.ecs_drift_interval,
                    stack_drift: args.stack_drift_interval,
                    namespace: args.lease_namespace.clone(),
                },
                aws: Arc::new(SdkProvider::new(metrics.clone(), args.aws_rate)),
                metrics,
                client: None,
                label_selector: Some(args.watch_label_selector.clone()).filter(|s| !s.is_empty()),
                shard: args.shard,
            })
            .await;
            if let Err(e) = &result {
                tracing::error!(error = %e, "controller stopped");
            }
            result
        }
    }
}
