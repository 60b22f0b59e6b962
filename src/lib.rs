//! shipshape: a Kubernetes controller that keeps a team's AWS footprint (ECS services and
//! Lambda functions, RDS, S3, DynamoDB, ElastiCache) in its declared state.
#![forbid(unsafe_code)]

pub mod api;
pub mod aws;
pub mod cli;
pub mod controller;
pub mod core;
pub mod dashboard;
#[doc(hidden)]
pub mod fixtures;
pub mod health;
pub mod http;
pub mod iam;
pub mod metrics;
pub mod plan;
pub mod telemetry;
