//! What shipshape's tests, benchmarks and demo run against, kept out of the product crate
//! (the release build never compiles it):
//! - [`awsproxy`]: the AWS test proxy in front of moto (ECS deployment dynamics moto lacks,
//!   fault injection, call counting), with [`elasticache`] the replication-group behaviour
//!   moto lacks;
//! - [`fakes`]: in-memory AWS behind shipshape's AWS traits, and [`kube_double`] the API
//!   server at the client's HTTP boundary, for the in-process controller tests and the
//!   latency benchmark;
//! - the harness (re-exported at the top): the pinned real control plane
//!   (scripts/control-plane.sh), moto, Prometheus, kubectl, and the `shipshape` binary run
//!   as the chart's ServiceAccount.

pub mod aws_events;
pub mod aws_model;
pub mod awsproxy;
pub mod browser;
pub mod cloudwatch;
pub mod ecs_deploy;
pub mod ecs_tasks;
pub mod elasticache;
pub mod fakes;
pub mod gate;
mod harness;
pub mod iam;
pub mod in_process;
pub mod kube_double;
pub mod lambda;
pub mod s3;

pub use harness::*;
