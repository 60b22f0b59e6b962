//! Metric sources for rollout analysis.

pub mod prometheus;
