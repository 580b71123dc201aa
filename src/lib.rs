//! revproxy: an HTTP/1.1 reverse proxy built with blocking `std::net`, stage by stage.
//!
//! Modules:
//! - [`loadtest`]: the load generator behind `src/bin/loadtest.rs` and its `compare` of the stages.

pub mod loadtest;
