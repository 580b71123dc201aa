//! The admin listener (stage 9's operations side, open to stages 6 to 8 as well): a separate
//! socket, loopback by default, optionally behind an API key, that serves
//!
//! - `/metrics`: Prometheus's text format (the request counters of
//!   [`metrics`](crate::metrics), servers' health, the pool, cache, access and TLS);
//! - `/status`: an HTML page in the manner of HAProxy's stats page, refreshing itself;
//! - `/status.json`: the same data for programs.
//!
//! One job per module:
//! - `config`: `[admin]` in the configuration file;
//! - `status`: [`Sources`] (what it reads) and [`Status`] (what it read, once per request);
//! - `exposition`, `html`: the status written as Prometheus text and as HTML;
//! - `listener`: the socket, its threads (one per connection, a few at most), and the few routes.
//!
//! This file only re-exports, so that `config` can name `AdminSettings` without a cycle.

pub mod config;
pub mod exposition;
pub mod html;
pub mod listener;
pub mod status;

pub use config::{AdminSection, AdminSettings};
pub use listener::start;
pub use status::{GroupSource, Sources, Status};
