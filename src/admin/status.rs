//! What the admin listener shows, gathered in one pass from the parts that own it: the
//! request counters, each group's balancer and health table, the pool's gauges, and the
//! phases' own counters. `/status.json` is this, serialised; `/status` and `/metrics` are
//! written from it, so the three never disagree.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::balancer::Balancer;
use crate::health::{HealthTable, MonitoredUpstream, State};
use crate::metrics::registry::{Registry, ServerCounts, STATUS_CLASSES};
use crate::metrics::report::{AccessReport, CacheReport, PhaseReport};
use crate::metrics::tls::TlsSnapshot;
use crate::server::pool::{PoolSnapshot, PoolStatus};

/// One upstream group as the admin listener reads it.
pub struct GroupSource {
    pub name: String,
    pub balancer: Arc<Balancer>,
    pub health: Option<Arc<HealthTable>>,
}

impl GroupSource {
    pub fn new(name: &str, upstream: &MonitoredUpstream) -> GroupSource {
        GroupSource {
            name: name.to_owned(),
            balancer: Arc::clone(&upstream.balancer),
            health: upstream.health.clone(),
        }
    }
}

/// Everything the admin listener reads. Groups and phases are read anew at each request,
/// since a reload replaces them.
pub struct Sources {
    pub registry: Arc<Registry>,
    pub groups: Box<dyn Fn() -> Vec<GroupSource> + Send + Sync>,
    pub pool: Option<PoolStatus>,
    /// The phases' own counters (`Phases::report` of the stage's phase set).
    pub phases: Box<dyn Fn() -> PhaseReport + Send + Sync>,
    /// The proxy's listening address, for people reading the page.
    pub listen: String,
    pub started: Instant,
}

/// A server's state as shown: `UP` (healthy), `DOWN` (unhealthy: gets no requests),
/// `UNKNOWN` (no verdict yet, or no health checks: takes traffic).
fn state_name(state: Option<State>) -> &'static str {
    match state {
        Some(State::Healthy) => "UP",
        Some(State::Unhealthy) => "DOWN",
        Some(State::Unknown) | None => "UNKNOWN",
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub listen: String,
    pub uptime_seconds: f64,
    /// Unix time the admin listener started (the process, give or take its startup).
    pub started_unix: u64,
    pub upstreams: Vec<UpstreamStatus>,
    pub routes: Vec<RouteStatus>,
    pub pool: Option<PoolSnapshot>,
    pub cache: Option<CacheReport>,
    pub access: Option<AccessReport>,
    pub tls: TlsSnapshot,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    pub name: String,
    pub health_checks: bool,
    pub servers: Vec<ServerStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    pub addr: String,
    /// `UP`, `DOWN` or `UNKNOWN`.
    pub state: &'static str,
    /// 1 up, 0 down, `null` unknown.
    pub up: Option<u8>,
    pub weight: u32,
    /// Requests in flight now.
    pub active: usize,
    pub requests: u64,
    /// Answers of 500 and above (the proxy's 502 and 504 for this server included).
    pub errors: u64,
    pub by_status: StatusClasses,
    pub bytes_out: u64,
    /// Request body bytes sent to this server.
    pub bytes_in: u64,
    /// Time to the response head, mean and 95th percentile (from the histogram's buckets).
    pub mean_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub consecutive_failures: u32,
    pub checks_passed: u64,
    pub checks_failed: u64,
    pub last_check: Option<LastCheck>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastCheck {
    pub passed: bool,
    pub detail: String,
    pub age_seconds: f64,
}

/// Counts by status class, `1xx` to `5xx`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StatusClasses {
    #[serde(rename = "1xx")]
    pub informational: u64,
    #[serde(rename = "2xx")]
    pub success: u64,
    #[serde(rename = "3xx")]
    pub redirect: u64,
    #[serde(rename = "4xx")]
    pub client_error: u64,
    #[serde(rename = "5xx")]
    pub server_error: u64,
}

impl From<[u64; STATUS_CLASSES.len()]> for StatusClasses {
    fn from(c: [u64; STATUS_CLASSES.len()]) -> StatusClasses {
        StatusClasses {
            informational: c[0],
            success: c[1],
            redirect: c[2],
            client_error: c[3],
            server_error: c[4],
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    pub name: String,
    pub upstream: Option<String>,
    pub requests: u64,
    pub by_status: StatusClasses,
    pub bytes_out: u64,
    /// Request body bytes read from clients.
    pub bytes_in: u64,
    pub mean_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

fn millis(seconds: Option<f64>) -> Option<f64> {
    // Two decimals are all a person reads, and JSON stays short.
    seconds.map(|s| (s * 100_000.0).round() / 100.0)
}

impl Sources {
    /// Reads everything now.
    pub fn status(&self) -> Status {
        let now = SystemTime::now();
        let upstreams = (self.groups)()
            .iter()
            .map(|group| self.upstream(group, now))
            .collect();
        let routes = self
            .registry
            .routes()
            .into_iter()
            .map(|r| RouteStatus {
                mean_ms: millis(r.duration.mean_seconds()),
                p95_ms: millis(r.duration.quantile_seconds(0.95)),
                name: r.name,
                upstream: r.upstream,
                requests: r.requests,
                by_status: r.by_status.into(),
                bytes_out: r.bytes_out,
                bytes_in: r.bytes_in,
            })
            .collect();
        let phases = (self.phases)();
        let started = SystemTime::now() - self.started.elapsed();
        Status {
            version: env!("CARGO_PKG_VERSION"),
            listen: self.listen.clone(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            started_unix: started
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            upstreams,
            routes,
            pool: self.pool.as_ref().map(PoolStatus::snapshot),
            cache: phases.cache,
            access: phases.access,
            tls: crate::metrics::tls().snapshot(),
        }
    }

    fn upstream(&self, group: &GroupSource, now: SystemTime) -> UpstreamStatus {
        let health = group.health.as_ref().map(|h| h.snapshot());
        let servers = group
            .balancer
            .backends()
            .iter()
            .map(|backend| {
                let record = health
                    .as_ref()
                    .and_then(|h| h.iter().find(|r| r.addr == backend.addr));
                let counts: ServerCounts = self.registry.server_named(&group.name, backend.addr);
                let state = record.map(|r| r.state);
                ServerStatus {
                    addr: backend.addr.to_string(),
                    state: state_name(state),
                    up: match state {
                        Some(State::Healthy) => Some(1),
                        Some(State::Unhealthy) => Some(0),
                        _ => None,
                    },
                    weight: backend.weight,
                    active: backend.active(),
                    requests: counts.requests(),
                    errors: counts.errors(),
                    by_status: counts.by_status.into(),
                    bytes_out: counts.bytes_out,
                    bytes_in: counts.bytes_in,
                    mean_ms: millis(counts.response.mean_seconds()),
                    p95_ms: millis(counts.response.quantile_seconds(0.95)),
                    consecutive_failures: record.map_or(0, |r| r.consecutive_failures),
                    checks_passed: record.map_or(0, |r| r.checks_passed),
                    checks_failed: record.map_or(0, |r| r.checks_failed),
                    last_check: record
                        .and_then(|r| r.last_check.as_ref())
                        .map(|c| LastCheck {
                            passed: c.passed,
                            detail: c.detail.clone(),
                            age_seconds: now.duration_since(c.at).unwrap_or_default().as_secs_f64(),
                        }),
                }
            })
            .collect();
        UpstreamStatus {
            name: group.name.clone(),
            health_checks: group.health.is_some(),
            servers,
        }
    }
}
