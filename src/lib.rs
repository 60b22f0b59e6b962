//! shipshape: a Kubernetes controller that keeps a team's AWS footprint (ECS, RDS, S3)
//! in its declared state.
#![forbid(unsafe_code)]

pub mod api;
pub mod core;
#[cfg(feature = "test-support")]
pub mod testing;
