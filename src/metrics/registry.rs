//! The request counters: one set of atomic cells per route and per upstream server, laid out
//! once at start from the routes and servers the configuration names, so that counting a
//! request is a hash lookup of its route name in a map nobody writes to, then relaxed atomic
//! additions. No lock is taken on the request path.
//!
//! Requests without a route (stages 6 to 8, or a stage 9 request no route took) count under
//! the route `default`; a route name the layout does not know (one added by a reload) counts
//! under `other` rather than growing the table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::histogram::{Histogram, HistogramSnapshot};
use super::text::{Exposition, Kind};

/// The routes and upstream groups to count, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub groups: Vec<GroupLayout>,
    /// Each route's name and the index in `groups` of the group it sends to (`None`: a
    /// fixed page or a redirect).
    pub routes: Vec<(String, Option<usize>)>,
    /// The group that serves requests no route took.
    pub default_group: usize,
}

/// One upstream group: its name and its servers, in the configured order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLayout {
    pub name: String,
    pub servers: Vec<SocketAddr>,
}

impl Layout {
    /// One group and no routes: stages 6 to 8.
    pub fn single(name: &str, servers: Vec<SocketAddr>) -> Layout {
        Layout {
            groups: vec![GroupLayout {
                name: name.to_owned(),
                servers,
            }],
            routes: Vec::new(),
            default_group: 0,
        }
    }
}

/// The label for requests without a route.
pub const DEFAULT_ROUTE: &str = "default";
/// The label for routes the layout does not know.
pub const OTHER_ROUTE: &str = "other";
/// The `upstream` label of requests no server answered (a cache hit, a 401, a 503).
pub const NO_UPSTREAM: &str = "none";

/// `method` label values, by [`method_class`].
pub const METHOD_CLASSES: [&str; 4] = ["GET", "HEAD", "POST", "other"];
/// `status` label values, by [`status_class`].
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into [`METHOD_CLASSES`]; a connection refused before a head was read is `other`.
pub fn method_class(method: Option<&str>) -> usize {
    match method {
        Some("GET") => 0,
        Some("HEAD") => 1,
        Some("POST") => 2,
        _ => 3,
    }
}

/// Index into [`STATUS_CLASSES`] (nginx's 499 is a 4xx; anything outside 100..=599 a 5xx).
pub fn status_class(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

const CLASSES: usize = METHOD_CLASSES.len() * STATUS_CLASSES.len();

/// One route's cells.
#[derive(Debug)]
struct RouteCells {
    name: String,
    /// The group its requests go to, when it is known.
    group: Option<usize>,
    /// `(groups + 1) * CLASSES` counters: by the group of the server that answered (the
    /// last slot: none answered), method class and status class.
    requests: Vec<AtomicU64>,
    duration: Histogram,
    bytes_out: AtomicU64,
    bytes_in: AtomicU64,
}

/// One upstream server's cells.
#[derive(Debug, Default)]
struct ServerCells {
    by_status: [AtomicU64; STATUS_CLASSES.len()],
    bytes_out: AtomicU64,
    /// Request body bytes sent to this server (as it was the one that answered, or was last
    /// tried).
    bytes_in: AtomicU64,
    /// Time to the response head (exchanges where the server answered).
    response: Histogram,
}

/// What is counted of one exchange (a [`Summary`](crate::relay::Summary), less what is not).
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub route: Option<&'a str>,
    pub method: Option<&'a str>,
    pub status: u16,
    pub upstream: Option<SocketAddr>,
    pub body_bytes: u64,
    /// Request body bytes read from the client (see `Summary::request_bytes`).
    pub request_bytes: u64,
    pub duration: Duration,
    /// From sending the request to the server's response head.
    pub upstream_time: Option<Duration>,
}

/// Writes one server's samples, given its `upstream` and `server` labels.
type ServerWriter = dyn Fn(&mut Exposition, &[(&str, &str)], &ServerCounts);

/// Every request counter of the process.
#[derive(Debug)]
pub struct Registry {
    layout: Layout,
    route_index: HashMap<String, usize>,
    /// The layout's routes, then `default`, then `other`.
    routes: Vec<RouteCells>,
    /// `servers[group][server]`.
    servers: Vec<Vec<ServerCells>>,
}

/// One server's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerCounts {
    pub by_status: [u64; STATUS_CLASSES.len()],
    pub bytes_out: u64,
    /// Request body bytes of the exchanges counted here.
    pub bytes_in: u64,
    /// Time from sending a request to the server's response head.
    pub response: HistogramSnapshot,
}

impl ServerCounts {
    pub fn requests(&self) -> u64 {
        self.by_status.iter().sum()
    }

    /// Answers of 500 and above, the proxy's own 502 and 504 for this server included.
    pub fn errors(&self) -> u64 {
        self.by_status[4]
    }
}

/// One route's counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteCounts {
    pub name: String,
    /// The group it sends to, by name.
    pub upstream: Option<String>,
    pub requests: u64,
    pub by_status: [u64; STATUS_CLASSES.len()],
    pub bytes_out: u64,
    /// Request body bytes read from clients.
    pub bytes_in: u64,
    pub duration: HistogramSnapshot,
}

impl Registry {
    pub fn new(layout: Layout) -> Registry {
        let groups = layout.groups.len();
        let cells = |name: &str, group: Option<usize>| RouteCells {
            name: name.to_owned(),
            group,
            requests: (0..(groups + 1) * CLASSES)
                .map(|_| AtomicU64::new(0))
                .collect(),
            duration: Histogram::default(),
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
        };
        let mut routes: Vec<RouteCells> = layout
            .routes
            .iter()
            .map(|(name, group)| cells(name, group.filter(|g| *g < groups)))
            .collect();
        let default_group = Some(layout.default_group).filter(|g| *g < groups);
        routes.push(cells(DEFAULT_ROUTE, default_group));
        routes.push(cells(OTHER_ROUTE, None));
        let route_index = layout
            .routes
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i))
            .collect();
        let servers = layout
            .groups
            .iter()
            .map(|g| g.servers.iter().map(|_| ServerCells::default()).collect())
            .collect();
        Registry {
            layout,
            route_index,
            routes,
            servers,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Counts one exchange.
    pub fn record(&self, seen: &Observation<'_>) {
        crate::exercise::stub!("Registry::record");
        let route = match seen.route {
            None => self.routes.len() - 2,
            Some(name) => self
                .route_index
                .get(name)
                .copied()
                .unwrap_or(self.routes.len() - 1),
        };
        let cells = &self.routes[route];
        let server = seen.upstream.and_then(|addr| self.find(cells.group, addr));
        let group_slot = server.map_or(self.layout.groups.len(), |(g, _)| g);
        let status = status_class(seen.status);
        let slot = group_slot * CLASSES + method_class(seen.method) * STATUS_CLASSES.len() + status;
        cells.requests[slot].fetch_add(1, Ordering::Relaxed);
        cells.duration.observe(seen.duration);
        cells
            .bytes_out
            .fetch_add(seen.body_bytes, Ordering::Relaxed);
        cells
            .bytes_in
            .fetch_add(seen.request_bytes, Ordering::Relaxed);
        if let Some((g, s)) = server {
            let cells = &self.servers[g][s];
            cells.by_status[status].fetch_add(1, Ordering::Relaxed);
            cells
                .bytes_out
                .fetch_add(seen.body_bytes, Ordering::Relaxed);
            cells
                .bytes_in
                .fetch_add(seen.request_bytes, Ordering::Relaxed);
            if let Some(waited) = seen.upstream_time {
                cells.response.observe(waited);
            }
        }
    }

    /// The group and index of server `addr`: in the route's group first, else the first group
    /// that lists it.
    fn find(&self, group: Option<usize>, addr: SocketAddr) -> Option<(usize, usize)> {
        let position = |g: usize| {
            self.layout.groups[g]
                .servers
                .iter()
                .position(|&s| s == addr)
        };
        if let Some((g, s)) = group.and_then(|g| position(g).map(|s| (g, s))) {
            return Some((g, s));
        }
        (0..self.layout.groups.len()).find_map(|g| position(g).map(|s| (g, s)))
    }

    /// Server `index` of group `group`; zeros for one the layout does not have.
    pub fn server(&self, group: usize, index: usize) -> ServerCounts {
        let Some(cells) = self.servers.get(group).and_then(|g| g.get(index)) else {
            return ServerCounts::default();
        };
        let mut by_status = [0; STATUS_CLASSES.len()];
        for (count, cell) in by_status.iter_mut().zip(&cells.by_status) {
            *count = cell.load(Ordering::Relaxed);
        }
        ServerCounts {
            by_status,
            bytes_out: cells.bytes_out.load(Ordering::Relaxed),
            bytes_in: cells.bytes_in.load(Ordering::Relaxed),
            response: cells.response.snapshot(),
        }
    }

    /// Server `addr` of the group named `group`: zeros for one the layout does not have (a
    /// server a reload added).
    pub fn server_named(&self, group: &str, addr: SocketAddr) -> ServerCounts {
        let found = self
            .layout
            .groups
            .iter()
            .enumerate()
            .find_map(|(g, layout)| {
                let s = layout.servers.iter().position(|&a| a == addr)?;
                (layout.name == group).then_some((g, s))
            });
        found.map_or_else(ServerCounts::default, |(g, s)| self.server(g, s))
    }

    /// Every route's totals, `default` and `other` last.
    pub fn routes(&self) -> Vec<RouteCounts> {
        self.routes
            .iter()
            .map(|cells| {
                let mut by_status = [0; STATUS_CLASSES.len()];
                for (i, cell) in cells.requests.iter().enumerate() {
                    by_status[i % STATUS_CLASSES.len()] += cell.load(Ordering::Relaxed);
                }
                RouteCounts {
                    name: cells.name.clone(),
                    upstream: cells.group.map(|g| self.layout.groups[g].name.clone()),
                    requests: by_status.iter().sum(),
                    by_status,
                    bytes_out: cells.bytes_out.load(Ordering::Relaxed),
                    bytes_in: cells.bytes_in.load(Ordering::Relaxed),
                    duration: cells.duration.snapshot(),
                }
            })
            .collect()
    }

    /// Writes the request families. Every series of the layout is written, zeros included,
    /// so a dashboard sees a route before its first request.
    pub fn write(&self, e: &mut Exposition) {
        let group_name = |g: usize| {
            self.layout
                .groups
                .get(g)
                .map_or(NO_UPSTREAM, |g| g.name.as_str())
        };
        e.family(
            "revproxy_requests_total",
            Kind::Counter,
            "Requests answered, by route, upstream group that answered, method class and status class.",
        );
        for cells in &self.routes {
            for (slot, cell) in cells.requests.iter().enumerate() {
                let value = cell.load(Ordering::Relaxed);
                let group = slot / CLASSES;
                // Only the route's own group and `none` are written when they are zero:
                // the other groups' zero series would only be noise.
                if value == 0 && group != self.layout.groups.len() && Some(group) != cells.group {
                    continue;
                }
                let method = METHOD_CLASSES[(slot % CLASSES) / STATUS_CLASSES.len()];
                let status = STATUS_CLASSES[slot % STATUS_CLASSES.len()];
                let labels = [
                    ("route", cells.name.as_str()),
                    ("upstream", group_name(group)),
                    ("method", method),
                    ("status", status),
                ];
                e.sample("revproxy_requests_total", &labels, value as f64);
            }
        }
        e.family(
            "revproxy_request_duration_seconds",
            Kind::Histogram,
            "Time from a request head read to the last byte of its answer, by route.",
        );
        for cells in &self.routes {
            let labels = [("route", cells.name.as_str())];
            e.histogram(
                "revproxy_request_duration_seconds",
                &labels,
                &cells.duration.snapshot(),
            );
        }
        e.family(
            "revproxy_response_bytes_total",
            Kind::Counter,
            "Body bytes sent to clients, by route.",
        );
        for cells in &self.routes {
            let value = cells.bytes_out.load(Ordering::Relaxed) as f64;
            e.sample(
                "revproxy_response_bytes_total",
                &[("route", &cells.name)],
                value,
            );
        }
        e.family(
            "revproxy_request_bytes_total",
            Kind::Counter,
            "Request body bytes read from clients, by route (decoded: a chunked body's data, not \
             its framing). A body read and dropped before the proxy's own reply on a kept \
             connection counts; one left unread (a 413 on its Content-Length, a reply before \
             100 Continue or on a connection that closes) does not.",
        );
        for cells in &self.routes {
            let value = cells.bytes_in.load(Ordering::Relaxed) as f64;
            e.sample(
                "revproxy_request_bytes_total",
                &[("route", &cells.name)],
                value,
            );
        }
        self.write_servers(e);
    }

    fn write_servers(&self, e: &mut Exposition) {
        let each = |e: &mut Exposition, f: &ServerWriter| {
            for (g, group) in self.layout.groups.iter().enumerate() {
                for (s, addr) in group.servers.iter().enumerate() {
                    let addr = addr.to_string();
                    let labels = [("upstream", group.name.as_str()), ("server", addr.as_str())];
                    f(e, &labels, &self.server(g, s));
                }
            }
        };
        e.family(
            "revproxy_upstream_requests_total",
            Kind::Counter,
            "Requests answered by each upstream server (or failed at it: 502, 504), by status class.",
        );
        each(e, &|e, labels, counts| {
            for (class, value) in STATUS_CLASSES.iter().zip(counts.by_status) {
                let mut labels = labels.to_vec();
                labels.push(("status", class));
                e.sample("revproxy_upstream_requests_total", &labels, value as f64);
            }
        });
        e.family(
            "revproxy_upstream_response_seconds",
            Kind::Histogram,
            "Time from sending a request to each upstream server to its response head.",
        );
        each(e, &|e, labels, counts| {
            e.histogram(
                "revproxy_upstream_response_seconds",
                labels,
                &counts.response,
            );
        });
        e.family(
            "revproxy_upstream_response_bytes_total",
            Kind::Counter,
            "Body bytes relayed from each upstream server to clients.",
        );
        each(e, &|e, labels, counts| {
            e.sample(
                "revproxy_upstream_response_bytes_total",
                labels,
                counts.bytes_out as f64,
            );
        });
        e.family(
            "revproxy_upstream_request_bytes_total",
            Kind::Counter,
            "Request body bytes sent to each upstream server (the one that answered, or was last tried).",
        );
        each(e, &|e, labels, counts| {
            e.sample(
                "revproxy_upstream_request_bytes_total",
                labels,
                counts.bytes_in as f64,
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn registry() -> Registry {
        Registry::new(Layout {
            groups: vec![
                GroupLayout {
                    name: "web".into(),
                    servers: vec![addr(1), addr(2)],
                },
                GroupLayout {
                    name: "api".into(),
                    servers: vec![addr(2), addr(3)],
                },
            ],
            routes: vec![("site".into(), Some(0)), ("api".into(), Some(1))],
            default_group: 0,
        })
    }

    fn seen<'a>(
        route: Option<&'a str>,
        status: u16,
        upstream: Option<SocketAddr>,
    ) -> Observation<'a> {
        Observation {
            route,
            method: Some("GET"),
            status,
            upstream,
            body_bytes: 10,
            request_bytes: 4,
            duration: Duration::from_millis(3),
            upstream_time: upstream.map(|_| Duration::from_millis(2)),
        }
    }

    #[test]
    fn requests_count_by_route_and_by_the_server_in_the_routes_group() {
        let r = registry();
        r.record(&seen(Some("api"), 200, Some(addr(2))));
        r.record(&seen(Some("site"), 502, Some(addr(2))));
        r.record(&seen(None, 401, None));
        r.record(&seen(Some("added-by-reload"), 200, Some(addr(3))));
        // addr(2) is in both groups: each route's own group gets it.
        assert_eq!(r.server(1, 0).requests(), 1, "api's 127.0.0.1:2");
        assert_eq!(r.server(0, 1).errors(), 1, "web's 127.0.0.1:2");
        assert_eq!(
            r.server(1, 1).requests(),
            1,
            "an unknown route still finds its server"
        );
        let routes = r.routes();
        let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["site", "api", "default", "other"]);
        assert_eq!(routes[2].by_status[3], 1);
        assert_eq!(routes[3].requests, 1);
        assert_eq!(routes[1].bytes_out, 10);
        assert_eq!(routes[1].bytes_in, 4);
        assert_eq!(r.server(1, 0).bytes_in, 4, "api's 127.0.0.1:2");
        assert_eq!(r.server(0, 0).bytes_in, 0, "web's 127.0.0.1:1 saw nothing");
    }

    #[test]
    fn the_exposition_writes_the_labels_of_each_request() {
        let r = registry();
        r.record(&seen(Some("api"), 200, Some(addr(3))));
        r.record(&seen(None, 401, None));
        let mut e = Exposition::default();
        r.write(&mut e);
        let text = e.finish();
        for line in [
            "revproxy_requests_total{route=\"api\",upstream=\"api\",method=\"GET\",status=\"2xx\"} 1",
            "revproxy_requests_total{route=\"default\",upstream=\"none\",method=\"GET\",status=\"4xx\"} 1",
            "revproxy_request_duration_seconds_count{route=\"api\"} 1",
            "revproxy_upstream_requests_total{upstream=\"api\",server=\"127.0.0.1:3\",status=\"2xx\"} 1",
            "revproxy_request_bytes_total{route=\"api\"} 4",
            "revproxy_request_bytes_total{route=\"default\"} 4",
            "revproxy_request_bytes_total{route=\"site\"} 0",
            "revproxy_upstream_request_bytes_total{upstream=\"api\",server=\"127.0.0.1:3\"} 4",
            "revproxy_upstream_request_bytes_total{upstream=\"web\",server=\"127.0.0.1:1\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn classes() {
        assert_eq!(method_class(Some("GET")), 0);
        assert_eq!(method_class(Some("DELETE")), 3);
        assert_eq!(method_class(None), 3);
        let table = [(101, 0), (204, 1), (304, 2), (499, 3), (503, 4), (0, 4)];
        for (status, class) in table {
            assert_eq!(status_class(status), class, "{status}");
        }
    }
}
