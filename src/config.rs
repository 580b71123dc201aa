//! The TOML configuration of stage 6 and later (`--config FILE`), in nginx and HAProxy's
//! vocabulary: `[server]`, `[upstreams.NAME]` with `servers` and `strategy`,
//! `[upstreams.NAME.health]` with `path`, `interval_ms`, `timeout_ms`, `rise`, `fall`.
//!
//! Every table refuses unknown keys, so a typo is an error rather than a silently ignored
//! setting, and every error names the file, line and column. `proxy.example.toml` lists every
//! key with its default.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::balancer::{BackendSpec, StrategyKind};
use crate::http::Limits;
use crate::relay::{ClientTimeouts, RelayConfig};
use crate::server::pool::PoolConfig;
use crate::upstream::UpstreamTimeouts;

/// The whole file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<UpstreamSection>>,
    #[serde(default)]
    pub log: LogSection,
}

/// `[server]`: the listener, its workers, and what clients may do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub listen: Spanned<String>,
    /// Pool threads that serve requests.
    pub workers: usize,
    /// Accepted connections waiting for a worker before new ones get 503.
    pub queue: usize,
    pub header_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_body_bytes: u64,
    /// The upstream that serves requests; may be left out when there is only one.
    pub upstream: Option<Spanned<String>>,
}

impl Default for ServerSection {
    fn default() -> ServerSection {
        ServerSection {
            listen: Spanned::new(0..0, "127.0.0.1:8080".to_owned()),
            workers: 64,
            queue: 256,
            header_timeout_ms: 60_000,
            idle_timeout_ms: 75_000,
            max_body_bytes: 1024 * 1024,
            upstream: None,
        }
    }
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
}

fn default_strategy() -> StrategyKind {
    StrategyKind::RoundRobin
}
fn default_retries() -> usize {
    2
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_read_timeout_ms() -> u64 {
    60_000
}

/// A server: `"127.0.0.1:8000"`, or `{ addr = "127.0.0.1:8000", weight = 2 }`.
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
}

impl Default for LogSection {
    fn default() -> LogSection {
        LogSection {
            level: Spanned::new(0..0, "info".to_owned()),
        }
    }
}

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based line and column, when the error has a place in the file.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(
                f,
                "{}:{line}:{column}: {}",
                self.path.display(),
                self.message
            ),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Settings checked and resolved, ready for the library.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    pub workers: usize,
    pub queue: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_body_bytes: u64,
    pub log_level: log::LevelFilter,
    pub upstream: UpstreamSettings,
}

/// One upstream group, resolved.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub name: String,
    pub servers: Vec<BackendSpec>,
    pub strategy: StrategyKind,
    pub retries: usize,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub health: Option<HealthSettings>,
}

/// Active health checks, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl Settings {
    /// The relay's limits, client timeouts and retries.
    pub fn relay_config(&self) -> RelayConfig {
        RelayConfig {
            limits: Limits {
                max_body: self.max_body_bytes,
                ..Limits::default()
            },
            client: ClientTimeouts {
                idle: self.idle_timeout,
                head: self.header_timeout,
                ..ClientTimeouts::default()
            },
            retries: self.upstream.retries,
            ..RelayConfig::default()
        }
    }

    pub fn pool_config(&self) -> PoolConfig {
        PoolConfig {
            workers: self.workers,
            queue: self.queue,
            ..PoolConfig::default()
        }
    }

    pub fn upstream_timeouts(&self) -> UpstreamTimeouts {
        UpstreamTimeouts {
            connect: self.upstream.connect_timeout,
            read: self.upstream.read_timeout,
            write: self.upstream.read_timeout,
        }
    }

    /// One line for `-t`: what the file sets up.
    pub fn summary(&self) -> String {
        let up = &self.upstream;
        let health = up
            .health
            .as_ref()
            .map_or("no health checks".to_owned(), |h| {
                format!(
                    "health checks every {:?}, rise {}, fall {}",
                    h.interval, h.rise, h.fall
                )
            });
        format!(
            "upstream {}: {} servers, {}, {health}",
            up.name,
            up.servers.len(),
            up.strategy
        )
    }
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_owned(),
        position: None,
        message: format!("cannot read the file: {e}"),
    })?;
    parse(&text, path)
}

/// Parses and checks configuration text; `path` only names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Settings, ConfigError> {
    let err = |span: Option<Range<usize>>, message: String| ConfigError {
        path: path.to_owned(),
        position: span.map(|s| line_and_column(text, s.start)),
        message,
    };
    let config: Config =
        toml::from_str(text).map_err(|e| err(e.span(), e.message().trim().to_owned()))?;
    Checker { err: &err }.settings(config)
}

struct Checker<'a, F: Fn(Option<Range<usize>>, String) -> ConfigError> {
    err: &'a F,
}

impl<F: Fn(Option<Range<usize>>, String) -> ConfigError> Checker<'_, F> {
    fn at<T>(&self, spanned: &Spanned<T>, message: String) -> ConfigError {
        (self.err)(Some(spanned.span()), message)
    }

    fn settings(&self, config: Config) -> Result<Settings, ConfigError> {
        let server = config.server;
        crate::cli::resolve(server.listen.get_ref())
            .map_err(|e| self.at(&server.listen, format!("listen: {e}")))?;
        if server.workers == 0 || server.queue == 0 {
            return Err((self.err)(
                None,
                "[server] workers and queue must be at least 1".to_owned(),
            ));
        }
        let log_level = config.log.level.get_ref().parse().map_err(|_| {
            self.at(
                &config.log.level,
                "level must be one of off, error, warn, info, debug, trace".to_owned(),
            )
        })?;
        let upstream = self.pick_upstream(&config.upstreams, server.upstream.as_ref())?;
        Ok(Settings {
            listen: server.listen.into_inner(),
            workers: server.workers,
            queue: server.queue,
            header_timeout: self
                .duration("[server] header_timeout_ms", server.header_timeout_ms)?,
            idle_timeout: self.duration("[server] idle_timeout_ms", server.idle_timeout_ms)?,
            max_body_bytes: server.max_body_bytes,
            log_level,
            upstream,
        })
    }

    fn pick_upstream(
        &self,
        upstreams: &BTreeMap<String, Spanned<UpstreamSection>>,
        wanted: Option<&Spanned<String>>,
    ) -> Result<UpstreamSettings, ConfigError> {
        let (name, section) = match wanted {
            Some(name) => upstreams
                .get_key_value(name.get_ref())
                .ok_or_else(|| self.at(name, format!("no [upstreams.{}] is defined", name.get_ref())))?,
            None => match upstreams.len() {
                1 => upstreams.iter().next().expect("one upstream"),
                0 => return Err((self.err)(None, "no upstream: add an [upstreams.NAME] table with servers".to_owned())),
                _ => {
                    return Err((self.err)(
                        None,
                        "several upstreams: say which one serves requests with upstream = \"NAME\" in [server]".to_owned(),
                    ))
                }
            },
        };
        self.upstream(name, section)
    }

    fn upstream(
        &self,
        name: &str,
        section: &Spanned<UpstreamSection>,
    ) -> Result<UpstreamSettings, ConfigError> {
        let group = section.get_ref();
        if group.servers.is_empty() {
            return Err(self.at(section, format!("[upstreams.{name}] has no servers")));
        }
        let mut servers: Vec<BackendSpec> = Vec::new();
        for entry in &group.servers {
            let (addr, weight) = match entry.get_ref() {
                ServerEntry::Addr(addr) => (addr.as_str(), 1),
                ServerEntry::Full(full) => (full.addr.as_str(), full.weight),
            };
            let addr = crate::cli::resolve(addr).map_err(|e| self.at(entry, e))?;
            if !(1..=1000).contains(&weight) {
                return Err(self.at(entry, format!("weight {weight} must be from 1 to 1000")));
            }
            if servers.iter().any(|s| s.addr == addr) {
                return Err(self.at(entry, format!("server {addr} is listed twice")));
            }
            servers.push(BackendSpec { addr, weight });
        }
        let health = match &group.health {
            None => None,
            Some(h) => Some(self.health(name, h)?),
        };
        Ok(UpstreamSettings {
            name: name.to_owned(),
            servers,
            strategy: group.strategy,
            retries: group.retries,
            connect_timeout: self.duration("connect_timeout_ms", group.connect_timeout_ms)?,
            read_timeout: self.duration("read_timeout_ms", group.read_timeout_ms)?,
            health,
        })
    }

    fn health(&self, name: &str, h: &HealthSection) -> Result<HealthSettings, ConfigError> {
        let table = format!("[upstreams.{name}.health]");
        if !h.path.starts_with('/') {
            return Err((self.err)(
                None,
                format!("{table} path must start with '/'"),
            ));
        }
        if h.rise == 0 || h.fall == 0 {
            return Err((self.err)(
                None,
                format!("{table} rise and fall must be at least 1"),
            ));
        }
        if h.timeout_ms > h.interval_ms {
            return Err((self.err)(
                None,
                format!("{table} timeout_ms must not exceed interval_ms"),
            ));
        }
        Ok(HealthSettings {
            path: h.path.clone(),
            interval: self.duration(&format!("{table} interval_ms"), h.interval_ms)?,
            timeout: self.duration(&format!("{table} timeout_ms"), h.timeout_ms)?,
            rise: h.rise,
            fall: h.fall,
        })
    }

    fn duration(&self, what: &str, ms: u64) -> Result<Duration, ConfigError> {
        if ms == 0 {
            return Err((self.err)(None, format!("{what} must be more than 0")));
        }
        Ok(Duration::from_millis(ms))
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Settings, ConfigError> {
        parse(text, Path::new("proxy.toml"))
    }

    const MINIMAL: &str = "[upstreams.app]\nservers = [\"127.0.0.1:8000\"]\n";

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let s = check(MINIMAL).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.upstream.name, "app");
        assert_eq!(s.upstream.strategy, StrategyKind::RoundRobin);
        assert_eq!(s.upstream.retries, 2);
        assert!(s.upstream.health.is_none());
    }

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../proxy.example.toml");
        let s = check(text).expect("proxy.example.toml must stay valid");
        let health = s
            .upstream
            .health
            .expect("the example enables health checks");
        assert_eq!((health.rise, health.fall), (2, 3));
        assert_eq!(s.upstream.servers.len(), 3);
    }

    /// Each kind of error, with the line and column it must point at.
    #[test]
    fn errors_name_line_and_column() {
        // (file, expected text of the message, expected line and column)
        type Case = (&'static str, &'static str, Option<(usize, usize)>);
        let table: &[Case] = &[
            // syntax
            ("[server]\nlisten = \n", "proxy.toml:2:", None),
            // a typo in a key
            ("[server]\nlisten = \"127.0.0.1:8080\"\nworkerz = 4\n", "proxy.toml:3:1: unknown field `workerz`", Some((3, 1))),
            // a wrong type
            ("[server]\nworkers = \"many\"\n", "proxy.toml:2:11: invalid type", Some((2, 11))),
            // an unknown strategy
            ("[upstreams.app]\nservers = [\"127.0.0.1:8000\"]\nstrategy = \"fastest\"\n", "proxy.toml:3:12: unknown variant `fastest`", Some((3, 12))),
            // a bad address
            ("[upstreams.app]\nservers = [\"127.0.0.1:8000\", \"nowhere\"]\n", "proxy.toml:2:30: cannot resolve 'nowhere'", Some((2, 30))),
            // a bad weight
            ("[upstreams.app]\nservers = [{ addr = \"127.0.0.1:8000\", weight = 0 }]\n", "proxy.toml:2:12: weight 0", Some((2, 12))),
            // an upstream that does not exist
            ("[server]\nupstream = \"web\"\n[upstreams.app]\nservers = [\"127.0.0.1:8000\"]\n", "proxy.toml:2:12: no [upstreams.web]", Some((2, 12))),
            // no servers
            ("[upstreams.app]\nservers = []\n", "has no servers", None),
            // a bad log level
            ("[log]\nlevel = \"loud\"\n[upstreams.app]\nservers = [\"127.0.0.1:8000\"]\n", "proxy.toml:2:9: level must be", Some((2, 9))),
            // health sanity
            ("[upstreams.app]\nservers = [\"127.0.0.1:8000\"]\n[upstreams.app.health]\nfall = 0\n", "rise and fall must be at least 1", None),
        ];
        for (text, want, position) in table {
            let err = check(text).expect_err(text);
            let shown = err.to_string();
            assert!(
                shown.contains(want),
                "{text:?}\n gave {shown:?}\n want {want:?}"
            );
            if position.is_some() {
                assert_eq!(err.position, *position, "{shown}");
            }
        }
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_and_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_and_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_and_column("é\nx", 3), (2, 1));
    }
}
