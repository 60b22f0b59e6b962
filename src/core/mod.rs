//! The pure core: plans, conditions, requeue decisions. No async, no I/O.

pub mod analysis;
pub mod cache;
pub mod conditions;
pub mod environment;
pub mod ownership;
#[cfg(test)]
mod properties;
pub mod requeue;
pub mod rollout;
pub mod spec;
pub mod stack;
pub mod table;
pub mod taskdef;
pub mod tenancy;
