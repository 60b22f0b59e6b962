//! Test support: the AWS test proxy and in-memory AWS fakes (feature `test-support`).

pub mod awsproxy;
pub mod fakes;
