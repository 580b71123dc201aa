//! A running proxy's life after startup: the operator's signals, and what they do.
//!
//! - `SIGTERM` or `SIGINT`: graceful shutdown. The listening socket stops (new connections are
//!   refused), idle keep-alive connections close at once, requests in flight finish within
//!   `[server] shutdown_timeout_ms` with `Connection: close`, and the process exits 0. A second
//!   one exits at once with [`EXIT_FORCED`].
//! - `SIGHUP`: reload. The configuration file is read again; an invalid one is logged (with
//!   file, line and column) and the running configuration stays; a valid one is built into a
//!   new relay that new requests get, while requests in flight finish on the old one.
//! - `SIGUSR1`: the access log file is reopened (after logrotate renamed it).
//!
//! [`signals`] turns signals into events on a thread of their own; [`graceful`] is the accept
//! loop that stops on them (stages 3 to 5 get shutdown alone); [`drain`] is the flag that
//! every part which decides whether a connection lives on reads. The accept loop and the
//! concurrency models honour it in `server`, the swap of a reloaded relay is
//! `server::Swappable`, and `launch` ties them together for the stages with a config file.

pub mod drain;
pub mod graceful;
pub mod signals;

/// Exit code when a second `SIGTERM`/`SIGINT` cuts a graceful shutdown short (the project's
/// "other failure": requests in flight may have been cut).
pub const EXIT_FORCED: i32 = 1;
