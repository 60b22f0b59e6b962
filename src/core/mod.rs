//! The pure core: plans, conditions, requeue decisions. No async, no I/O.

pub mod analysis;
pub mod checks;
pub mod conditions;
pub mod environment;
pub mod events;
pub mod ownership;
pub mod promotion;
#[cfg(test)]
mod properties;
pub mod refusal;
pub mod requeue;
pub mod rollout;
pub mod spec;
pub mod stack;
/// The DynamoDB and ElastiCache rooms of [`stack`], at their old paths.
pub use stack::{cache, table};
pub mod taskdef;
pub mod tenancy;
