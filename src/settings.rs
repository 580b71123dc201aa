//! The settings that both the flags (`cli`, stages 1 to 5) and the configuration file
//! (`config`, stage 6 on) produce, each default named once, and mapped in one place to what
//! the library's parts take (the relay, the pool, the upstream connector).

use std::sync::Arc;
use std::time::Duration;

use crate::http::Limits;
use crate::relay::{ClientTimeouts, Relay, RelayConfig};
use crate::server::pool::PoolConfig;
use crate::upstream::{Connector, UpstreamTimeouts, Upstreams};

pub use crate::http::limits::DEFAULT_MAX_BODY;
pub use crate::relay::{
    DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MIN_SEND_RATE,
    DEFAULT_SEND_TIMEOUT,
};
pub use crate::server::pool::{DEFAULT_LINGER, DEFAULT_QUEUE, DEFAULT_WORKERS};

/// Longest wait to connect to a backend (nginx `proxy_connect_timeout` is 60 s; a backend on
/// the same network that takes 5 s is down).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for each read from a backend (nginx `proxy_read_timeout`).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a graceful shutdown waits for requests in flight (`[server] shutdown_timeout_ms`):
/// long enough for an ordinary response, short enough for an orchestrator's own grace period
/// (Kubernetes waits 30 s before it kills).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Further backends tried when one cannot be reached (nginx tries every server; two more is
/// enough to ride out one dead server without tripling a client's wait).
pub const DEFAULT_RETRIES: usize = 2;

/// Timeouts, limits, retries and the pool: what flags and config files both set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// Longest pause while a client sends a request body (-> 408).
    pub body_timeout: Duration,
    /// Longest a write to a client may block, and the window of the minimum send rate.
    pub send_timeout: Duration,
    /// Bytes per second a client must read a response at (`0`: no minimum).
    pub min_send_rate: u64,
    pub max_body: u64,
    pub retries: usize,
    pub pool: PoolConfig,
    /// Forward request fields whose name holds an `_` (nginx's `underscores_in_headers`).
    pub underscores_in_headers: bool,
    /// Forward `TRACE` instead of answering 405.
    pub allow_trace: bool,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            min_send_rate: DEFAULT_MIN_SEND_RATE,
            max_body: DEFAULT_MAX_BODY,
            retries: DEFAULT_RETRIES,
            pool: PoolConfig::default(),
            underscores_in_headers: false,
            allow_trace: false,
        }
    }
}

impl Tuning {
    /// The relay's limits, client timeouts and retries.
    pub fn relay_config(&self) -> RelayConfig {
        RelayConfig {
            limits: Limits {
                max_body: self.max_body,
                ..Limits::default()
            },
            client: ClientTimeouts {
                idle: self.idle_timeout,
                head: self.header_timeout,
                body: self.body_timeout,
                write: self.send_timeout,
                min_send_rate: self.min_send_rate,
            },
            retries: self.retries,
            underscores_in_headers: self.underscores_in_headers,
            allow_trace: self.allow_trace,
            ..RelayConfig::default()
        }
    }

    pub fn upstream_timeouts(&self) -> UpstreamTimeouts {
        UpstreamTimeouts {
            connect: self.connect_timeout,
            read: self.upstream_timeout,
            write: self.upstream_timeout,
        }
    }

    /// A relay without phases to `upstreams`, with these settings.
    pub fn relay(&self, upstreams: Arc<dyn Upstreams>) -> Relay {
        Relay::new(
            self.relay_config(),
            upstreams,
            Connector::new(self.upstream_timeouts()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_reach_the_parts_they_configure() {
        let tuning = Tuning::default();
        let relay = tuning.relay_config();
        assert_eq!(relay.limits.max_body, DEFAULT_MAX_BODY);
        assert_eq!(relay.limits, Limits::default());
        assert_eq!(relay.client, ClientTimeouts::default());
        assert_eq!(relay.retries, DEFAULT_RETRIES);
        assert!(!relay.underscores_in_headers && !relay.allow_trace);
        assert_eq!(tuning.upstream_timeouts().read, DEFAULT_UPSTREAM_TIMEOUT);
        assert_eq!(tuning.pool.workers, DEFAULT_WORKERS);
    }
}
