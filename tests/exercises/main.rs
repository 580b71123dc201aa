//! Extension exercises: tests of features the course leaves for the reader to build. Every
//! test here is `#[ignore]`d, so `cargo test --workspace` stays green while they fail; the
//! chapter that sets an exercise names its test and the command that runs it, e.g.
//!
//! ```text
//! cargo test --test exercises first_strategy -- --ignored
//! ```
//!
//! A reference solution for each is a patch under `solutions/`; `solutions/check.sh` applies
//! every patch to a scratch copy of the repository and runs its tests there, and CI runs it,
//! so every exercise is known to be solvable and its tests to pass once solved.

#[path = "../support/mod.rs"]
mod support;

mod cache_ignore_query;
mod first_strategy;
mod fork_refuse_when_full;
mod health_expect_status;
mod hide_backend_headers;
mod pool_max_parked;
mod process_fds;
mod route_rewrite_prefix;
mod rule_methods;
mod threads_per_ip;
