//! Test support: the test API server and in-memory fakes (feature `test-support`).

pub mod apiserver;
pub mod awsproxy;
pub mod fakes;
