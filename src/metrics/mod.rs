//! Metrics for Prometheus (stage 9's `/metrics`, served by [`admin`](crate::admin)).
//!
//! - [`registry`]: the request counters, atomic cells laid out at start per route and per
//!   upstream server, so counting never takes a lock;
//! - [`histogram`]: fixed-bucket latency histograms on atomics;
//! - [`phase`]: [`MetricsPhases`], the logging phase that counts every exchange;
//! - [`report`]: what other phases count themselves (cache, access), gathered at scrape time
//!   through [`Phases::report`](crate::relay::Phases::report);
//! - [`tls`](mod@tls): the process's TLS handshake counters, `metrics::tls()`;
//! - [`text`]: the text exposition format, version 0.0.4.
//!
//! Gauges that describe the present (connections, workers, a server's health) are not
//! counted here: the admin listener reads them from their owners when it is scraped.

pub mod histogram;
pub mod phase;
pub mod registry;
pub mod report;
pub mod text;
pub mod tls;

pub use phase::MetricsPhases;
pub use registry::{GroupLayout, Layout, Registry};
pub use report::{AccessReport, CacheReport, PhaseReport};
pub use tls::tls;
