//! shipshape: a Kubernetes controller that keeps a team's AWS footprint (ECS, RDS, S3)
//! in its declared state.
#![forbid(unsafe_code)]

pub mod api;
pub mod aws;
pub mod cli;
pub mod controller;
pub mod core;
pub mod health;
pub mod http;
pub mod iam;
pub mod metrics;
pub mod plan;
pub mod telemetry;
