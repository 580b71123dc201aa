//! `/metrics`: the request counters from the registry, then the gauges and counters of the
//! status (servers' health, the pool, the cache, access control, TLS), in the text format.

use super::status::Status;
use crate::metrics::registry::Registry;
use crate::metrics::text::{Exposition, Kind};

/// The whole scrape.
pub fn render(status: &Status, registry: &Registry) -> String {
    let mut e = Exposition::default();
    e.family(
        "revproxy_build_info",
        Kind::Gauge,
        "Always 1; the version is in the label.",
    );
    e.sample("revproxy_build_info", &[("version", status.version)], 1.0);
    e.family(
        "revproxy_uptime_seconds",
        Kind::Gauge,
        "Seconds since the admin listener started.",
    );
    e.sample("revproxy_uptime_seconds", &[], status.uptime_seconds);
    registry.write(&mut e);
    servers(&mut e, status);
    pool(&mut e, status);
    phases(&mut e, status);
    e.family(
        "revproxy_tls_handshakes_total",
        Kind::Counter,
        "TLS handshakes completed with clients.",
    );
    e.sample(
        "revproxy_tls_handshakes_total",
        &[],
        status.tls.handshakes as f64,
    );
    e.family(
        "revproxy_tls_handshake_failures_total",
        Kind::Counter,
        "TLS handshakes with clients that failed.",
    );
    e.sample(
        "revproxy_tls_handshake_failures_total",
        &[],
        status.tls.failures as f64,
    );
    e.finish()
}

fn servers(e: &mut Exposition, status: &Status) {
    type Value = fn(&super::status::ServerStatus) -> f64;
    let gauges: [(&str, Kind, &str, Value); 4] = [
        (
            "revproxy_upstream_server_up",
            Kind::Gauge,
            "1 if the server takes requests (healthy, or no verdict yet), 0 if health checks took it out.",
            |s| if s.state == "DOWN" { 0.0 } else { 1.0 },
        ),
        (
            "revproxy_upstream_server_weight",
            Kind::Gauge,
            "The server's configured weight.",
            |s| f64::from(s.weight),
        ),
        (
            "revproxy_upstream_server_active_requests",
            Kind::Gauge,
            "Requests in flight at the server.",
            |s| s.active as f64,
        ),
        (
            "revproxy_upstream_server_consecutive_failures",
            Kind::Gauge,
            "Failures in a row (probes and requests) the health table counts.",
            |s| f64::from(s.consecutive_failures),
        ),
    ];
    for (name, kind, help, value) in gauges {
        e.family(name, kind, help);
        for up in &status.upstreams {
            for s in &up.servers {
                let labels = [("upstream", up.name.as_str()), ("server", s.addr.as_str())];
                e.sample(name, &labels, value(s));
            }
        }
    }
    e.family(
        "revproxy_upstream_server_state",
        Kind::Gauge,
        "1 for the server's health state (up, down, unknown), 0 for the others.",
    );
    for up in &status.upstreams {
        for s in &up.servers {
            for state in ["UP", "DOWN", "UNKNOWN"] {
                let labels = [
                    ("upstream", up.name.as_str()),
                    ("server", s.addr.as_str()),
                    ("state", &state.to_ascii_lowercase()),
                ];
                let value = if s.state == state { 1.0 } else { 0.0 };
                e.sample("revproxy_upstream_server_state", &labels, value);
            }
        }
    }
    e.family(
        "revproxy_health_checks_total",
        Kind::Counter,
        "Active health probes, by result.",
    );
    for up in status.upstreams.iter().filter(|u| u.health_checks) {
        for s in &up.servers {
            for (result, value) in [("passed", s.checks_passed), ("failed", s.checks_failed)] {
                let labels = [
                    ("upstream", up.name.as_str()),
                    ("server", s.addr.as_str()),
                    ("result", result),
                ];
                e.sample("revproxy_health_checks_total", &labels, value as f64);
            }
        }
    }
}

fn pool(e: &mut Exposition, status: &Status) {
    let Some(pool) = status.pool else {
        return;
    };
    let gauges = [
        (
            "revproxy_pool_workers",
            "Worker threads in the pool.",
            pool.workers,
        ),
        (
            "revproxy_pool_workers_busy",
            "Workers serving a request now.",
            pool.busy,
        ),
        (
            "revproxy_pool_queue_length",
            "Connections waiting for a worker.",
            pool.queued,
        ),
        (
            "revproxy_connections_open",
            "Client connections accepted and not closed.",
            pool.open,
        ),
        (
            "revproxy_connections_parked",
            "Client connections waiting in the parker for their next request.",
            pool.parked,
        ),
        (
            "revproxy_connections_idle",
            "Parked connections with no byte of a next request yet.",
            pool.idle,
        ),
    ];
    for (name, help, value) in gauges {
        e.family(name, Kind::Gauge, help);
        e.sample(name, &[], value as f64);
    }
}

fn phases(e: &mut Exposition, status: &Status) {
    if let Some(cache) = status.cache {
        let families = [
            (
                "revproxy_cache_hits_total",
                Kind::Counter,
                "Requests answered from the cache (fresh, revalidated or stale).",
                cache.hits,
            ),
            (
                "revproxy_cache_misses_total",
                Kind::Counter,
                "Cacheable requests the cache could not answer.",
                cache.misses,
            ),
            (
                "revproxy_cache_stores_total",
                Kind::Counter,
                "Responses stored.",
                cache.stores,
            ),
            (
                "revproxy_cache_evictions_total",
                Kind::Counter,
                "Entries evicted to make room.",
                cache.evictions,
            ),
            (
                "revproxy_cache_bytes",
                Kind::Gauge,
                "Bytes held in the cache.",
                cache.bytes,
            ),
            (
                "revproxy_cache_entries",
                Kind::Gauge,
                "Entries held in the cache.",
                cache.entries,
            ),
        ];
        for (name, kind, help, value) in families {
            e.family(name, kind, help);
            e.sample(name, &[], value as f64);
        }
    }
    if let Some(access) = status.access {
        let name = "revproxy_access_decisions_total";
        e.family(
            name,
            Kind::Counter,
            "Access control's decisions: allowed, bad_path (400), unauthorized (401), forbidden (403), limited (429).",
        );
        for (decision, value) in [
            ("allowed", access.allowed),
            ("bad_path", access.bad_path),
            ("unauthorized", access.unauthorized),
            ("forbidden", access.forbidden),
            ("limited", access.limited),
        ] {
            e.sample(name, &[("decision", decision)], value as f64);
        }
    }
}
