//! The configuration file as written: one serde type per table, every table refusing
//! unknown keys, defaults taken from the checked types' own so they are written nowhere else.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::server::{millis, ServerSection};
use crate::balancer::StrategyKind;
use crate::upstream::GroupPolicy;

/// The whole file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<UpstreamSection>>,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub cache: crate::cache::config::CacheSection,
    /// WebSocket and other upgrades (stage 6 on); see `config::upgrades`.
    #[serde(default)]
    pub upgrades: super::upgrades::UpgradeSection,
    /// Stage 8; its types and checks live in `access::config`.
    #[serde(default)]
    pub access: Option<crate::access::config::AccessSection>,
    /// The admin listener (`/metrics`, `/status`); its types and checks live in `admin::config`.
    #[serde(default)]
    pub admin: Option<crate::admin::AdminSection>,
    /// Stage 9; types and checks in `route::config`.
    #[serde(default)]
    pub routes: Vec<Spanned<crate::route::config::RouteSection>>,
    #[serde(default)]
    pub routing: Option<Spanned<crate::route::config::RoutingSection>>,
    /// Stage 9's response compression; its types and checks live in `compress::config`.
    #[serde(default)]
    pub compression: crate::compress::config::CompressionSection,
    /// Stage 9; its types and checks live in `tls::config`.
    #[serde(default)]
    pub tls: Option<crate::tls::config::TlsSection>,
}

/// `[upstreams.NAME]`: a group of backends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub servers: Vec<Spanned<ServerEntry>>,
    #[serde(default = "default_strategy")]
    pub strategy: StrategyKind,
    /// Further servers to try when one fails (nginx's `proxy_next_upstream_tries` minus one).
    #[serde(default = "default_retries")]
    pub retries: usize,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
    pub health: Option<HealthSection>,
    /// For `https://` servers: the PEM file of the CA their certificates must chain to
    /// (the system's roots when left out).
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    /// `false` accepts any certificate from `https://` servers (warned about at start).
    #[serde(default)]
    pub tls_verify: Option<Spanned<bool>>,
}

fn default_strategy() -> StrategyKind {
    StrategyKind::RoundRobin
}
fn default_retries() -> usize {
    GroupPolicy::default().retries
}
fn default_connect_timeout_ms() -> u64 {
    millis(GroupPolicy::default().connect_timeout)
}
fn default_read_timeout_ms() -> u64 {
    millis(GroupPolicy::default().read_timeout)
}

/// A server: `"127.0.0.1:8000"`, or `{ addr = "127.0.0.1:8000", weight = 2 }`; an address
/// written `https://host:port` is spoken to over TLS, with `host` as the SNI name.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ServerEntry {
    Addr(String),
    Full(FullServerEntry),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullServerEntry {
    pub addr: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// `[upstreams.NAME.health]`: active checks. HAProxy's defaults: every 2 s, 2 successes to
/// rise, 3 failures to fall.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
}

impl Default for HealthSection {
    fn default() -> HealthSection {
        HealthSection {
            path: "/health".to_owned(),
            interval_ms: 2_000,
            timeout_ms: 1_000,
            rise: 2,
            fall: 3,
        }
    }
}

/// `[log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// error, warn, info (with the access log), debug, trace, off.
    pub level: Spanned<String>,
    /// A file for the access log (reopened on SIGUSR1); without it, access lines go to stderr
    /// at `info` level.
    pub access_log: Option<Spanned<String>>,
    /// `combined` (nginx's and Apache's) or `json` (one object per line).
    pub format: crate::access_log::Format,
}

impl Default for LogSection {
    fn default() -> LogSection {
        LogSection {
            level: Spanned::new(0..0, "info".to_owned()),
            access_log: None,
            format: crate::access_log::Format::default(),
        }
    }
}
