//! The TOML configuration of stage 6 and later (`--config FILE`), in nginx and HAProxy's
//! vocabulary: `[server]`, `[upstreams.NAME]` with `servers` and `strategy`,
//! `[upstreams.NAME.health]` with `path`, `interval_ms`, `timeout_ms`, `rise`, `fall`.
//!
//! Every table refuses unknown keys, so a typo is an error rather than a silently ignored
//! setting, and every error names the file, line and column. `proxy.example.toml` lists every
//! key with its default.

mod check;
mod file;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use file::{
    Config, FullServerEntry, HealthSection, LogSection, ServerEntry, ServerSection, UpstreamSection,
};

use crate::balancer::{BackendSpec, StrategyKind};
use crate::server::pool::PoolConfig;
use crate::settings::Tuning;

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
    pub log_level: log::LevelFilter,
    pub upstream: UpstreamSettings,
    /// `[cache]` (stage 7 on).
    pub cache: crate::cache::config::CacheSettings,
    pub server: ServerSettings,
    /// `[access]` (stage 8), when the file has one.
    pub access: Option<crate::access::AccessSettings>,
    /// `[admin]`: the admin listener, when the file has one.
    pub admin: Option<crate::admin::AdminSettings>,
}

/// `[server]`, resolved: what clients may do, and the pool that serves them.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_body: u64,
    pub pool: PoolConfig,
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
    /// Timeouts, limits, retries and the pool, as the flags of earlier stages set them too:
    /// the one place the file's values become the library's settings. The upstream's values
    /// are those of the upstream that serves requests.
    pub fn tuning(&self) -> Tuning {
        Tuning {
            connect_timeout: self.upstream.connect_timeout,
            upstream_timeout: self.upstream.read_timeout,
            header_timeout: self.server.header_timeout,
            idle_timeout: self.server.idle_timeout,
            max_body: self.server.max_body,
            retries: self.upstream.retries,
            pool: self.server.pool.clone(),
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
        let access = self
            .access
            .as_ref()
            .map_or(String::new(), |a| format!("; {}", a.summary()));
        let admin = self.admin.as_ref().map_or(String::new(), |a| {
            let key = if a.api_key.is_some() {
                ", with a key"
            } else {
                ""
            };
            format!("; admin on {}{key}", a.listen)
        });
        format!(
            "upstream {}: {} servers, {}, {health}{access}{admin}",
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
    check::Checker { err: &err }.settings(config)
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
        let text = include_str!("../../proxy.example.toml");
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
    fn the_admin_listener_is_loopback_unless_a_key_is_set() {
        // (the [admin] table, whether it is accepted, a piece of the error)
        let table = [
            ("[admin]\n", true, ""),
            ("[admin]\nlisten = \"127.0.0.1:0\"\n", true, ""),
            (
                "[admin]\nlisten = \"0.0.0.0:9901\"\n",
                false,
                "proxy.toml:4:10: [admin] listen = \"0.0.0.0:9901\" is not a loopback address",
            ),
            (
                "[admin]\nlisten = \"0.0.0.0:9901\"\napi_key = \"k\"\n",
                true,
                "",
            ),
            (
                "[admin]\napi_key = \"\"\n",
                false,
                "proxy.toml:4:11: [admin] api_key: a key must not be empty",
            ),
            (
                "[admin]\nlisten = \"nowhere\"\n",
                false,
                "[admin] listen: cannot resolve 'nowhere'",
            ),
            ("[admin]\nport = 1\n", false, "unknown field `port`"),
        ];
        for (admin, ok, want) in table {
            let text = format!("{MINIMAL}{admin}");
            match check(&text) {
                Ok(s) => {
                    assert!(ok, "{admin:?} was accepted");
                    let a = s.admin.expect("[admin] is there");
                    assert!(a.listen.contains(':'));
                }
                Err(e) => {
                    assert!(!ok, "{admin:?}: {e}");
                    assert!(e.to_string().contains(want), "{admin:?}: {e}");
                }
            }
        }
        assert!(check(MINIMAL).unwrap().admin.is_none());
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_and_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_and_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_and_column("é\nx", 3), (2, 1));
    }
}
