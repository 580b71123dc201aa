//! The TOML configuration of stage 6 and later (`--config FILE`), in nginx and HAProxy's
//! vocabulary: `[server]`, `[upstreams.NAME]` with `servers` and `strategy`,
//! `[upstreams.NAME.health]` with `path`, `interval_ms`, `timeout_ms`, `rise`, `fall`.
//!
//! Every table refuses unknown keys, so a typo is an error rather than a silently ignored
//! setting, and every error names the file, line and column. `proxy.example.toml` lists every
//! key with its default.

mod check;
mod error;
mod file;
mod server;
mod upgrades;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::SectionError;
pub use file::{
    ConfigFile, FullServerEntry, HealthSection, LogSection, ServerEntry, UpstreamSection,
};
pub use server::{ServerSection, ServerSettings};

use crate::balancer::{BackendSpec, StrategyKind};
use crate::tuning::Tuning;
use crate::upstream::GroupPolicy;

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
    /// The upstream that serves requests (stages 6 to 8), and in stage 9 those no route
    /// sends elsewhere; also one of `groups`.
    pub upstream: UpstreamSettings,
    /// Every `[upstreams.NAME]` group, checked, in name order (stage 9 runs them all).
    pub groups: Vec<UpstreamSettings>,
    /// `[[routes]]` and `[routing]` (stage 9); empty when the file has no routes.
    pub routes: crate::route::RouteSettings,
    /// `[cache]` (stage 7 on).
    pub cache: crate::cache::config::CacheSettings,
    /// `[upgrades]`: WebSocket through the relay (off unless enabled).
    pub upgrades: crate::relay::UpgradeConfig,
    pub server: ServerSettings,
    /// `[access]` (stage 8), when the file has one.
    pub access: Option<crate::access::AccessSettings>,
    /// `[admin]`: the admin listener, when the file has one.
    pub admin: Option<crate::admin::AdminSettings>,
    /// `[compression]` (stage 9); off unless `enabled = true`.
    pub compression: crate::compress::CompressSettings,
    /// `[log]`'s access log.
    pub access_log: AccessLogSettings,
    /// `[tls]` (stage 9), when the file has one.
    pub tls: Option<crate::tls::config::TlsSettings>,
}

/// Where access lines go, and how they are written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessLogSettings {
    /// `None`: stderr, at `info` level.
    pub file: Option<PathBuf>,
    pub format: crate::access_log::Format,
}

/// One upstream group, resolved.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub name: String,
    pub servers: Vec<BackendSpec>,
    pub strategy: StrategyKind,
    /// Its connect and read timeouts and retries, which the requests it serves get.
    pub policy: GroupPolicy,
    pub health: Option<HealthSettings>,
    /// How to reach its `https://` servers; `None` when it has none.
    pub tls: Option<crate::tls::config::UpstreamTls>,
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
    /// What the flags of earlier stages set too, as the file sets it: the client policy and
    /// the pool of `[server]`, the serving group's policy, `[upgrades]`.
    pub fn tuning(&self) -> Tuning {
        Tuning {
            client: self.server.client,
            upstream: self.upstream.policy,
            pool: self.server.pool.clone(),
            upgrades: self.upgrades.clone(),
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
        let routes = if self.routes.is_empty() {
            String::new()
        } else {
            let others: Vec<String> = self
                .groups
                .iter()
                .filter(|g| g.name != up.name)
                .map(|g| format!("upstream {}: {} servers", g.name, g.servers.len()))
                .collect();
            let others: String = others.iter().map(|o| format!("; {o}")).collect();
            format!("{others}; {}", self.routes.summary())
        };
        let compression = if self.compression.enabled {
            format!("; {}", self.compression.summary())
        } else {
            String::new()
        };
        format!(
            "upstream {}: {} servers, {}, {health}{access}{routes}{compression}{admin}",
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
    let locate = |e: SectionError| ConfigError {
        path: path.to_owned(),
        position: e.span.map(|s| line_and_column(text, s.start)),
        message: e.message,
    };
    let config: ConfigFile = toml::from_str(text)
        .map_err(|e| locate(SectionError::new(e.span(), e.message().trim().to_owned())))?;
    check::Checker.settings(config).map_err(locate)
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
    fn tls_and_https_servers_are_read() {
        let text =
            "[tls]\nlisten = \"127.0.0.1:8443\"\nself_signed = true\nhsts = \"max-age=60\"\n\
                    [upstreams.app]\nservers = [\"https://localhost:9443\", \"127.0.0.1:8000\"]\n\
                    ca_file = \"ca.pem\"\n";
        let s = check(text).unwrap();
        let tls = s.tls.expect("[tls] is read");
        assert_eq!(tls.listen, "127.0.0.1:8443");
        assert_eq!(tls.hsts.as_deref(), Some("max-age=60"));
        let up = s.upstream.tls.expect("an https server");
        assert_eq!(up.servers.len(), 1);
        assert_eq!(up.servers[0].1, "localhost");
        assert_eq!(up.servers[0].0, s.upstream.servers[0].addr);
        assert!(check(MINIMAL).unwrap().tls.is_none());
        // Errors point at the key.
        let tls = "[tls]\nlisten = \"127.0.0.1:8443\"\nself_signed = true\nhsts = \"forever\"\n";
        let err = check(&format!("{tls}{MINIMAL}")).unwrap_err();
        assert_eq!(err.position, Some((4, 8)), "{err}");
        let err = check("[upstreams.app]\nservers = [\"127.0.0.1:8000\"]\ntls_verify = false\n")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("proxy.toml:3:14: [upstreams.app] tls_verify: no server is https://"),
            "{err}"
        );
    }

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let s = check(MINIMAL).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.upstream.name, "app");
        assert_eq!(s.upstream.strategy, StrategyKind::RoundRobin);
        assert_eq!(s.upstream.policy, crate::upstream::GroupPolicy::default());
        assert_eq!(s.upstream.policy.retries, 2);
        assert!(s.upstream.health.is_none());
        assert_eq!(s.server.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(s.access_log, AccessLogSettings::default());
        assert_eq!(s.tuning().client, crate::relay::ClientPolicy::default());
        assert!(!s.tuning().client.underscores_in_headers && !s.tuning().client.allow_trace);
    }

    #[test]
    fn underscores_and_trace_are_allowed_by_the_server_section() {
        let text =
            format!("[server]\nunderscores_in_headers = true\nallow_trace = true\n{MINIMAL}");
        let relay = check(&text).unwrap().tuning().relay_config();
        assert!(relay.client.underscores_in_headers && relay.client.allow_trace);
    }

    #[test]
    fn the_log_section_names_a_file_and_a_format() {
        let text = format!(
            "[server]\nshutdown_timeout_ms = 2500\n[log]\naccess_log = \"/var/log/p.log\"\nformat = \"json\"\n{MINIMAL}"
        );
        let s = check(&text).unwrap();
        assert_eq!(s.server.shutdown_timeout, Duration::from_millis(2500));
        assert_eq!(
            s.access_log.file.as_deref(),
            Some(Path::new("/var/log/p.log"))
        );
        assert_eq!(s.access_log.format, crate::access_log::Format::Json);
        let err = check(&format!("[log]\nformat = \"xml\"\n{MINIMAL}")).unwrap_err();
        assert_eq!(err.position, Some((2, 10)), "{err}");
        assert!(err.to_string().contains("unknown variant `xml`"), "{err}");
        let err = check(&format!("[log]\naccess_log = \"\"\n{MINIMAL}")).unwrap_err();
        assert_eq!(err.position, Some((2, 14)), "{err}");
    }

    #[test]
    fn upgrades_are_off_unless_the_file_enables_them() {
        assert_eq!(
            check(MINIMAL).unwrap().upgrades,
            crate::relay::UpgradeConfig::default()
        );
        let text = format!(
            "{MINIMAL}[upgrades]\nenabled = true\nmax_tunnels = 8\nidle_timeout_ms = 1500\n"
        );
        let upgrades = check(&text).unwrap().upgrades;
        assert!(upgrades.allow);
        assert_eq!(upgrades.max_tunnels, 8);
        assert_eq!(
            upgrades.idle_timeout,
            std::time::Duration::from_millis(1500)
        );
        let typo = format!("{MINIMAL}[upgrades]\nenable = true\n");
        let err = check(&typo).unwrap_err().to_string();
        assert!(
            err.contains("proxy.toml:4:1: unknown field `enable`"),
            "{err}"
        );
    }

    /// `[upgrades]` reaches the relay the way every other setting does (`Settings::tuning`),
    /// not patched into the relay's configuration by the launcher.
    #[test]
    fn upgrades_reach_the_relay_through_the_tuning() {
        let text = format!("{MINIMAL}[upgrades]\nenabled = true\nmax_tunnels = 8\n");
        let settings = check(&text).unwrap();
        assert_eq!(settings.tuning().relay_config().upgrades, settings.upgrades);
        assert!(settings.tuning().relay_config().upgrades.allow);
    }

    /// Every `[server]` key, set away from its default, reaches the part that reads it.
    #[test]
    fn every_server_key_reaches_its_part() {
        let text = format!(
            "[server]\nworkers = 3\nqueue = 5\nheader_timeout_ms = 1001\nidle_timeout_ms = 1002\n\
             body_timeout_ms = 1003\nsend_timeout_ms = 1004\nmin_send_rate = 7\n\
             max_body_bytes = 9\nunderscores_in_headers = true\nallow_trace = true\n{MINIMAL}"
        );
        let tuning = check(&text).unwrap().tuning();
        let relay = tuning.relay_config();
        let ms = Duration::from_millis;
        let timeouts = relay.client.timeouts;
        assert_eq!(
            (timeouts.head, timeouts.idle, timeouts.body, timeouts.write),
            (ms(1001), ms(1002), ms(1003), ms(1004))
        );
        assert_eq!(timeouts.min_send_rate, 7);
        assert_eq!(relay.client.limits.max_body, 9);
        assert!(relay.client.underscores_in_headers && relay.client.allow_trace);
        assert_eq!((tuning.pool.workers, tuning.pool.queue), (3, 5));
    }

    /// Each group keeps its own timeouts and retries; the serving group's are the relay's.
    #[test]
    fn each_group_has_its_own_policy() {
        let text = "[server]\nupstream = \"a\"\n\
                    [upstreams.a]\nservers = [\"127.0.0.1:8000\"]\nretries = 0\nread_timeout_ms = 300\n\
                    [upstreams.b]\nservers = [\"127.0.0.1:8001\"]\nconnect_timeout_ms = 700\n";
        let s = check(text).unwrap();
        let policy = |name: &str| s.groups.iter().find(|g| g.name == name).unwrap().policy;
        let ms = Duration::from_millis;
        assert_eq!(
            (policy("a").retries, policy("a").read_timeout),
            (0, ms(300))
        );
        assert_eq!(
            policy("b").connect_timeout,
            ms(700),
            "b keeps its own, not a's"
        );
        assert_eq!(policy("b").retries, crate::tuning::DEFAULT_RETRIES);
        assert_eq!(s.tuning().upstream, policy("a"));
        assert_eq!(s.tuning().relay_config().retries, 0);
    }

    #[test]
    fn the_send_rate_keys_reach_the_relay() {
        let defaults = check(MINIMAL)
            .unwrap()
            .tuning()
            .relay_config()
            .client
            .timeouts;
        assert_eq!(
            defaults.send_rate().min_bytes_per_sec,
            crate::tuning::DEFAULT_MIN_SEND_RATE
        );
        assert_eq!(defaults.write, crate::tuning::DEFAULT_SEND_TIMEOUT);
        let text = format!("[server]\nsend_timeout_ms = 1500\nmin_send_rate = 0\n{MINIMAL}");
        let rate = check(&text)
            .unwrap()
            .tuning()
            .relay_config()
            .client
            .timeouts
            .send_rate();
        assert_eq!(rate.window, std::time::Duration::from_millis(1500));
        assert_eq!(rate.min_bytes_per_sec, 0);
        let err = check(&format!("[server]\nsend_timeout_ms = 0\n{MINIMAL}")).unwrap_err();
        assert!(
            err.to_string()
                .contains("send_timeout_ms must be more than 0"),
            "{err}"
        );
    }

    #[test]
    fn the_body_timeout_key_reaches_the_relay() {
        let defaults = check(MINIMAL)
            .unwrap()
            .tuning()
            .relay_config()
            .client
            .timeouts;
        assert_eq!(defaults.body, crate::tuning::DEFAULT_BODY_TIMEOUT);
        let text = format!("[server]\nbody_timeout_ms = 1500\n{MINIMAL}");
        let client = check(&text)
            .unwrap()
            .tuning()
            .relay_config()
            .client
            .timeouts;
        assert_eq!(client.body, std::time::Duration::from_millis(1500));
        let err = check(&format!("[server]\nbody_timeout_ms = 0\n{MINIMAL}")).unwrap_err();
        assert!(
            err.to_string()
                .contains("body_timeout_ms must be more than 0"),
            "{err}"
        );
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
    fn the_full_example_file_is_valid_with_two_groups_and_routes() {
        let text = include_str!("../../proxy.full.toml");
        let s = check(text).expect("proxy.full.toml must stay valid");
        let names: Vec<&str> = s.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["service1", "service2"]);
        assert_eq!(s.upstream.name, "service1");
        assert_eq!(s.routes.routes.len(), 5);
        assert!(s.groups.iter().all(|g| g.health.is_some()));
    }

    /// `[[routes]]` and `[routing]` errors, each at the line and column of its cause.
    #[test]
    fn route_errors_name_line_and_column() {
        const UP: &str = "[upstreams.app]\nservers = [\"127.0.0.1:8000\"]\n";
        // (routes part of the file, after UP's two lines; message; line and column)
        let table: &[(&str, &str, (usize, usize))] = &[
            ("[[routes]]\npath = \"/\"\nupstream = \"web\"\n", "no [upstreams.web] is defined", (5, 12)),
            ("[[routes]]\nupstream = \"app\"\nreturn = { status = 200 }\n", "more than one action", (5, 10)),
            ("[[routes]]\npath = \"/x\"\n", "needs one action", (3, 1)),
            ("[[routes]]\nreturn = { status = 99 }\n", "return status 99", (4, 10)),
            ("[[routes]]\nreturn = { status = 204 }\n", "not 204 or 304", (4, 10)),
            ("[[routes]]\nredirect = { to = \"/y\", status = 200 }\n", "redirect status 200", (4, 12)),
            ("[[routes]]\nhosts = [\"ok.test\", \"a.*.test\"]\nupstream = \"app\"\n", "host \"a.*.test\" must be", (4, 21)),
            ("[[routes]]\nhosts = [\"a.test:80\"]\nupstream = \"app\"\n", "has a port", (4, 10)),
            ("[[routes]]\nname = \"x\"\nupstream = \"app\"\n[[routes]]\nname = \"x\"\npath = \"/y\"\nupstream = \"app\"\n", "route name \"x\" is used twice", (6, 1)),
            ("[[routes]]\nupstream = \"app\"\n[[routes]]\nreturn = {}\n", "same hosts and path as route route1", (5, 1)),
            ("[[routes]]\npath = \"/a/../b\"\nupstream = \"app\"\n", "write \"/b\"", (4, 8)),
            ("[[routes]]\npath = \"x\"\nupstream = \"app\"\n", "must start with '/'", (4, 8)),
            ("[[routes]]\nreturn = {}\nupstream_host = \"upstream\"\n", "upstream_host applies only", (5, 17)),
            ("[[routes]]\nupstream = \"app\"\nrequest_headers = { set = { \"Content-Length\" = \"1\" } }\n", "Content-Length is the proxy's", (5, 19)),
            ("[[routes]]\nupstream = \"app\"\nresponse_headers = { remove = [\"bad name\"] }\n", "not a header name", (5, 20)),
            ("[[routes]]\nupstream = \"app\"\nstrip = true\n", "unknown field `strip`", (5, 1)),
            ("[[routes]]\nupstream = \"app\"\n[routing]\ndefault_route = \"nope\"\n", "no route is named \"nope\"", (6, 17)),
            ("[[routes]]\nupstream = \"app\"\n[routing]\ndefault_status = 200\n", "default_status 200 must be", (6, 18)),
        ];
        for (routes, want, position) in table {
            let text = format!("{UP}{routes}");
            let err = check(&text).expect_err(routes);
            let shown = err.to_string();
            assert!(
                shown.contains(want),
                "{routes:?}\n gave {shown:?}\n want {want:?}"
            );
            assert_eq!(err.position, Some(*position), "{routes:?}: {shown}");
        }
    }

    #[test]
    fn routes_let_several_groups_go_without_a_default_named() {
        let text = "[upstreams.b]\nservers = [\"127.0.0.1:8001\"]\n\
                    [upstreams.a]\nservers = [\"127.0.0.1:8000\"]\n\
                    [[routes]]\nupstream = \"b\"\n";
        let s = check(text).unwrap();
        assert_eq!(s.upstream.name, "a");
        assert_eq!(s.groups.len(), 2);
        assert_eq!(s.routes.routes[0].name.as_ref(), "route1");
        let without = "[upstreams.b]\nservers = [\"127.0.0.1:8001\"]\n\
                       [upstreams.a]\nservers = [\"127.0.0.1:8000\"]\n";
        assert!(check(without)
            .unwrap_err()
            .to_string()
            .contains("several upstreams"));
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_and_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_and_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_and_column("é\nx", 3), (2, 1));
    }
}
