//! revproxy: an HTTP/1.1 reverse proxy built stage by stage on blocking `std::net`.
//!
//! Every stage binary in `src/bin` is a thin composition of these modules:
//!
//! - [`access`]: access control of stage 8 (API keys, JWT, IP and path rules, rate limits).
//! - [`http`]: message heads, body framing, header rules and limits (the HTTP/1.1 core).
//! - [`relay`]: one client connection, request after request, through the phases to an
//!   upstream and back.
//! - [`upstream`]: which backend serves a request, and reusing connections to it.
//! - [`balancer`]: several backends and the strategies that choose among them.
//! - [`server`]: binding, the accept loop, and the concurrency model that runs each connection.
//! - [`sys`]: safe wrappers for the POSIX calls `std` lacks (fork, waitpid, sigaction, poll).
//! - [`stock`]: a bounded shelf of things costly to make, shared by the workers (compressors,
//!   buffers, Redis connections).
//! - [`cli`]: the flags every stage shares.
//! - [`config`]: the TOML configuration of stage 6 and later.
//! - [`tuning`]: what the flags and the file both set (client, upstream, pool, upgrades), composed
//!   from the parts' own checked types and handed to them.
//! - [`launch`]: starting a stage from its configuration file (stage 6 and later).
//! - [`route`]: stage 9's routing by Host and path (fixed pages, redirects, upstream groups).
//! - [`cache`]: stage 7's shared HTTP cache (RFC 9111), as request phases.
//! - [`compress`]: stage 9's response compression (gzip, deflate, br), as a response phase.
//! - [`health`]: active and passive health checks of backends.
//! - [`dashboard`]: the live server table of `--debug`.
//! - [`metrics`]: request counters and the Prometheus text format (stage 9's `/metrics`).
//! - [`admin`]: the admin listener: `/metrics`, the status page and `/status.json`.
//! - [`access_log`]: one Combined Log Format (or JSON) line per request, to stderr or a file.
//! - `exercise`: the chapters' rebuild exercises, stubbed at run time by the mutation check.
//! - [`lifecycle`]: signals of a running proxy: graceful shutdown, reload, log reopening.

pub mod access;
pub mod access_log;
pub mod admin;
pub mod balancer;
pub mod cache;
pub mod cli;
pub mod compress;
pub mod config;
pub mod dashboard;
mod exercise;
pub mod health;
pub mod http;
pub mod launch;
pub mod lifecycle;
pub mod metrics;
pub mod relay;
pub mod route;
pub mod server;
pub mod stock;
pub mod sys;
pub mod tls;
pub mod tuning;
pub mod upstream;
