//! What the flags (`cli`, stages 1 to 5) and the configuration file (`config`, stage 6 on)
//! both set, as the checked types of the parts that read them: the relay's [`ClientPolicy`],
//! an upstream group's [`GroupPolicy`], the pool's [`PoolConfig`], the relay's
//! [`UpgradeConfig`]. Each default is named once, beside its type; this module holds them
//! together and hands each to its part, so a setting goes from its flag or key to the part
//! without being copied field by field on the way.

use std::sync::Arc;
use std::time::Duration;

use crate::relay::{ClientPolicy, Relay, RelayConfig, UpgradeConfig};
use crate::server::pool::PoolConfig;
use crate::upstream::{Connector, GroupPolicy, Upstreams};

pub use crate::http::limits::DEFAULT_MAX_BODY;
pub use crate::relay::{
    DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MIN_SEND_RATE,
    DEFAULT_SEND_TIMEOUT,
};
pub use crate::server::pool::{DEFAULT_QUEUE, DEFAULT_WORKERS};
pub use crate::upstream::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_RETRIES, DEFAULT_UPSTREAM_TIMEOUT};

/// Longest a graceful shutdown waits for requests in flight (`[server] shutdown_timeout_ms`):
/// long enough for an ordinary response, short enough for an orchestrator's own grace period
/// (Kubernetes waits 30 s before it kills).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// What clients may do, how the upstream is spoken to, the pool, and upgrades: what flags
/// and config files both set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tuning {
    pub client: ClientPolicy,
    /// The upstream's timeouts and retries: the flags' (stages 1 to 5), or the serving
    /// group's, which the relay also falls back on for upstreams without a policy of their
    /// own (every configured group has one, `Upstreams::policy`).
    pub upstream: GroupPolicy,
    pub pool: PoolConfig,
    /// Off for the flag stages; `[upgrades]` from stage 6 on.
    pub upgrades: UpgradeConfig,
}

impl Tuning {
    /// The relay's client policy, upgrades and retries.
    pub fn relay_config(&self) -> RelayConfig {
        RelayConfig {
            client: self.client,
            retries: self.upstream.retries,
            upgrades: self.upgrades.clone(),
            ..RelayConfig::default()
        }
    }

    /// A connector with the upstream's timeouts.
    pub fn connector(&self) -> Connector {
        Connector::new(self.upstream.timeouts())
    }

    /// A relay without phases to `upstreams`, with these settings.
    pub fn relay(&self, upstreams: Arc<dyn Upstreams>) -> Relay {
        Relay::new(self.relay_config(), upstreams, self.connector())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Limits;
    use crate::relay::ClientTimeouts;

    #[test]
    fn defaults_reach_the_parts_they_configure() {
        let tuning = Tuning::default();
        let relay = tuning.relay_config();
        assert_eq!(relay.client.limits.max_body, DEFAULT_MAX_BODY);
        assert_eq!(relay.client.limits, Limits::default());
        assert_eq!(relay.client.timeouts, ClientTimeouts::default());
        assert_eq!(relay.retries, DEFAULT_RETRIES);
        assert_eq!(relay.upgrades, UpgradeConfig::default());
        assert!(!relay.upgrades.allow);
        assert!(!relay.client.underscores_in_headers && !relay.client.allow_trace);
        assert_eq!(tuning.connector().timeouts().read, DEFAULT_UPSTREAM_TIMEOUT);
        assert_eq!(
            tuning.connector().timeouts().write,
            DEFAULT_UPSTREAM_TIMEOUT
        );
        assert_eq!(
            tuning.connector().timeouts().connect,
            DEFAULT_CONNECT_TIMEOUT
        );
        assert_eq!(tuning.pool.workers, DEFAULT_WORKERS);
    }
}
