//! From the file as written to checked settings: addresses resolved, ranges checked, the
//! upstream chosen, every error placed at its line and column.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::file::{ConfigFile, HealthSection, LogSection, ServerEntry, UpstreamSection};
use super::{AccessLogSettings, HealthSettings, SectionError, Settings, UpstreamSettings};
use crate::balancer::BackendSpec;
use crate::upstream::{resolve, GroupPolicy};

pub(super) struct Checker;

impl Checker {
    fn at<T>(&self, spanned: &Spanned<T>, message: String) -> SectionError {
        SectionError::new(Some(spanned.span()), message)
    }

    pub(super) fn settings(&self, config: ConfigFile) -> Result<Settings, SectionError> {
        let server = super::server::check(&config.server)?;
        let log_level = config.log.level.get_ref().parse().map_err(|_| {
            self.at(
                &config.log.level,
                "level must be one of off, error, warn, info, debug, trace".to_owned(),
            )
        })?;
        let mut groups: Vec<UpstreamSettings> = Vec::new();
        for (name, section) in &config.upstreams {
            groups.push(self.upstream(name, section)?);
        }
        let upstream = self.pick_upstream(
            &config.upstreams,
            &groups,
            config.server.upstream.as_ref(),
            !config.routes.is_empty(),
        )?;
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        let routes = crate::route::config::check(config.routes, config.routing, &names)?;
        let access_log = self.access_log(&config.log)?;
        let cache = crate::cache::config::check(&config.cache).map_err(SectionError::from)?;
        let upgrades = super::upgrades::check(&config.upgrades).map_err(SectionError::from)?;
        let access = crate::access::config::check(config.access)?;
        let admin = crate::admin::config::check(config.admin)?;
        let compression = crate::compress::config::check(&config.compression)?;
        let tls = match &config.tls {
            None => None,
            Some(section) => Some(crate::tls::config::check(section)?),
        };
        Ok(Settings {
            admin,
            compression,
            tls,
            cache,
            upgrades,
            listen: config.server.listen.into_inner(),
            log_level,
            upstream,
            groups,
            routes,
            server,
            access,
            access_log,
        })
    }

    fn access_log(&self, log: &LogSection) -> Result<AccessLogSettings, SectionError> {
        let file = match &log.access_log {
            Some(path) if path.get_ref().trim().is_empty() => {
                return Err(self.at(path, "access_log must name a file".to_owned()));
            }
            Some(path) => Some(PathBuf::from(path.get_ref())),
            None => None,
        };
        Ok(AccessLogSettings {
            file,
            format: log.format,
        })
    }

    /// The group that serves requests no route sends elsewhere: the one named in `[server]`,
    /// the only one, or (when routes choose the group of every request) the first by name.
    fn pick_upstream(
        &self,
        upstreams: &BTreeMap<String, Spanned<UpstreamSection>>,
        groups: &[UpstreamSettings],
        wanted: Option<&Spanned<String>>,
        routed: bool,
    ) -> Result<UpstreamSettings, SectionError> {
        let name = match wanted {
            Some(name) => upstreams
                .get_key_value(name.get_ref())
                .map(|(key, _)| key)
                .ok_or_else(|| self.at(name, format!("no [upstreams.{}] is defined", name.get_ref())))?,
            None => match (upstreams.keys().next(), upstreams.len()) {
                (None, _) => return Err(SectionError::new(None, "no upstream: add an [upstreams.NAME] table with servers".to_owned())),
                (Some(first), 1) => first,
                (Some(first), _) if routed => first,
                _ => {
                    return Err(SectionError::new(
                        None,
                        "several upstreams: say which one serves requests with upstream = \"NAME\" in [server]".to_owned(),
                    ))
                }
            },
        };
        groups
            .iter()
            .find(|g| &g.name == name)
            .cloned()
            .ok_or_else(|| SectionError::new(None, format!("[upstreams.{name}] was not checked")))
    }

    fn upstream(
        &self,
        name: &str,
        section: &Spanned<UpstreamSection>,
    ) -> Result<UpstreamSettings, SectionError> {
        let group = section.get_ref();
        if group.servers.is_empty() {
            return Err(self.at(section, format!("[upstreams.{name}] has no servers")));
        }
        let mut servers: Vec<BackendSpec> = Vec::new();
        let mut tls_names = Vec::new();
        for entry in &group.servers {
            let (addr, weight) = match entry.get_ref() {
                ServerEntry::Addr(addr) => (addr.as_str(), 1),
                ServerEntry::Full(full) => (full.addr.as_str(), full.weight),
            };
            let https = crate::tls::config::https_server(addr);
            let addr = resolve(https.map_or(addr, |(host_port, _)| host_port))
                .map_err(|e| self.at(entry, e))?;
            if let Some((_, name)) = https {
                tls_names.push((addr, name.to_owned()));
            }
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
        let tls = crate::tls::config::upstream_tls(
            tls_names,
            group.ca_file.as_ref(),
            group.tls_verify.as_ref(),
        )
        .map_err(|e| SectionError::new(e.span, format!("[upstreams.{name}] {}", e.message)))?;
        Ok(UpstreamSettings {
            tls,
            name: name.to_owned(),
            servers,
            strategy: group.strategy,
            policy: GroupPolicy {
                connect_timeout: self.duration("connect_timeout_ms", group.connect_timeout_ms)?,
                read_timeout: self.duration("read_timeout_ms", group.read_timeout_ms)?,
                retries: group.retries,
            },
            health,
        })
    }

    fn health(&self, name: &str, h: &HealthSection) -> Result<HealthSettings, SectionError> {
        let table = format!("[upstreams.{name}.health]");
        if !h.path.starts_with('/') {
            return Err(SectionError::new(
                None,
                format!("{table} path must start with '/'"),
            ));
        }
        if h.rise == 0 || h.fall == 0 {
            return Err(SectionError::new(
                None,
                format!("{table} rise and fall must be at least 1"),
            ));
        }
        if h.timeout_ms > h.interval_ms {
            return Err(SectionError::new(
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

    fn duration(&self, what: &str, ms: u64) -> Result<Duration, SectionError> {
        super::server::positive_ms(what, ms)
    }
}
