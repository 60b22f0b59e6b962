//! The harness of every e2e test binary: the shipshape-testkit crate.
#![allow(unused_imports)]

pub use shipshape_testkit::*;
