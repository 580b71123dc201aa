//! Backend health: three states per server, moved by active probes and by what real requests
//! see (passive checks), and the thread that probes.
//!
//! A server starts `Unknown` and takes traffic; `rise` consecutive successes make it
//! `Healthy`, `fall` consecutive failures `Unhealthy`, and an unhealthy server gets no
//! requests until probes see it answer `rise` times in a row. A server that never answers
//! fails its probes like any other, so it cannot stay `Unknown`. Transitions are logged once,
//! not on every probe (pingora's and HAProxy's consecutive-count design).

use std::fmt;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::balancer::{Balancer, Eligibility};
use crate::config::{HealthSettings, UpstreamSettings};
use crate::http::head::read_response_head;
use crate::http::{BufStream, Limits};
use crate::upstream::Outcome;

/// What the proxy believes about a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No verdict yet: takes traffic until `fall` failures in a row.
    Unknown,
    Healthy,
    /// Gets no requests.
    Unhealthy,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Unknown => "unknown",
            State::Healthy => "healthy",
            State::Unhealthy => "UNHEALTHY",
        })
    }
}

/// One server's record.
#[derive(Debug, Clone)]
pub struct ServerHealth {
    pub addr: SocketAddr,
    pub state: State,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    /// When it was last seen healthy (wall clock, for people reading the table).
    pub last_healthy: Option<SystemTime>,
    /// The last active probe, for the status page.
    pub last_check: Option<Check>,
    /// Active probes that passed and failed since start, for `/metrics`.
    pub checks_passed: u64,
    pub checks_failed: u64,
}

/// What one active probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub at: SystemTime,
    pub passed: bool,
    /// The status it got (`200`), or why it failed (`connect: Connection refused`).
    pub detail: String,
}

/// The health of every server of one upstream.
#[derive(Debug)]
pub struct HealthTable {
    upstream: String,
    rise: u32,
    fall: u32,
    servers: Mutex<Vec<ServerHealth>>,
}

impl HealthTable {
    pub fn new(upstream: &str, servers: &[SocketAddr], rise: u32, fall: u32) -> HealthTable {
        HealthTable {
            upstream: upstream.to_owned(),
            rise: rise.max(1),
            fall: fall.max(1),
            servers: Mutex::new(
                servers
                    .iter()
                    .map(|&addr| ServerHealth {
                        addr,
                        state: State::Unknown,
                        consecutive_successes: 0,
                        consecutive_failures: 0,
                        last_healthy: None,
                        last_check: None,
                        checks_passed: 0,
                        checks_failed: 0,
                    })
                    .collect(),
            ),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ServerHealth>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self, index: usize) -> State {
        self.lock()[index].state
    }

    /// A copy of every server's record, for status displays.
    pub fn snapshot(&self) -> Vec<ServerHealth> {
        self.lock().clone()
    }

    /// Counts one success or failure against server `index`, from a probe or a real request.
    pub fn record(&self, index: usize, success: bool, source: &str) {
        crate::exercise::stub!("HealthTable::record");
        let mut servers = self.lock();
        let server = &mut servers[index];
        let before = server.state;
        if success {
            server.consecutive_successes = server.consecutive_successes.saturating_add(1);
            server.consecutive_failures = 0;
            if server.consecutive_successes >= self.rise {
                server.state = State::Healthy;
            }
            if server.state == State::Healthy {
                server.last_healthy = Some(SystemTime::now());
            }
        } else {
            server.consecutive_failures = server.consecutive_failures.saturating_add(1);
            server.consecutive_successes = 0;
            if server.consecutive_failures >= self.fall {
                server.state = State::Unhealthy;
            }
        }
        if server.state != before {
            let (addr, after) = (server.addr, server.state);
            drop(servers);
            let upstream = &self.upstream;
            match after {
                State::Unhealthy => {
                    log::warn!("upstream {upstream}: server {addr} is now {after} ({source})")
                }
                _ => log::info!("upstream {upstream}: server {addr} is now {after} ({source})"),
            }
        }
    }

    /// Records an active probe's result, then counts it like any success or failure.
    pub fn record_probe(&self, index: usize, result: &Result<u16, String>) {
        {
            let mut servers = self.lock();
            let server = &mut servers[index];
            match result {
                Ok(_) => server.checks_passed += 1,
                Err(_) => server.checks_failed += 1,
            }
            server.last_check = Some(Check {
                at: SystemTime::now(),
                passed: result.is_ok(),
                detail: match result {
                    Ok(status) => status.to_string(),
                    Err(why) => why.clone(),
                },
            });
        }
        self.record(index, result.is_ok(), "probe");
    }

    /// The upstream group's name.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// A real request's success only breaks a failure streak: an unhealthy server is brought
    /// back by probes, not by the odd request that still reached it.
    fn passive_success(&self, index: usize) {
        self.lock()[index].consecutive_failures = 0;
    }
}

/// Lets a balancer skip unhealthy servers, and feeds it every request's outcome (passive
/// checks: connect failures and timeouts on real traffic count toward `fall`).
impl Eligibility for Arc<HealthTable> {
    fn eligible(&self, index: usize) -> bool {
        self.state(index) != State::Unhealthy
    }

    fn observe(&self, index: usize, outcome: Outcome) {
        match outcome {
            o if o.is_backend_failure() => self.record(index, false, "request failed"),
            Outcome::Answered => self.passive_success(index),
            _ => {}
        }
    }
}

/// Probes every server of one upstream on a background thread until dropped.
pub struct HealthChecker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl HealthChecker {
    /// Starts probing `GET settings.path` on every server of `table`, every interval.
    pub fn start(
        table: Arc<HealthTable>,
        settings: HealthSettings,
    ) -> std::io::Result<HealthChecker> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread_stop = Arc::clone(&stop);
        let name = format!("health-{}", table.upstream);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || probe_loop(&table, &settings, &thread_stop))?;
        Ok(HealthChecker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn probe_loop(table: &HealthTable, settings: &HealthSettings, stop: &(Mutex<bool>, Condvar)) {
    let servers: Vec<SocketAddr> = table.snapshot().iter().map(|s| s.addr).collect();
    loop {
        let round = Instant::now();
        for (index, &addr) in servers.iter().enumerate() {
            let result = probe(addr, &settings.path, settings.timeout);
            if let Err(why) = &result {
                log::debug!("health probe of {addr}: {why}");
            }
            table.record_probe(index, &result);
        }
        // Sleep out the rest of the interval, waking at once when asked to stop.
        let (flag, wake) = stop;
        let mut stopped = flag.lock().unwrap_or_else(|p| p.into_inner());
        while !*stopped {
            let Some(left) = settings.interval.checked_sub(round.elapsed()) else {
                break;
            };
            stopped = wake
                .wait_timeout(stopped, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if *stopped {
            return;
        }
    }
}

/// An upstream's balancer with, when the config asks for them, health checks running: the
/// balancer skips unhealthy servers and the probe thread runs until this is dropped.
pub struct MonitoredUpstream {
    pub balancer: Arc<Balancer>,
    pub health: Option<Arc<HealthTable>>,
    _checker: Option<HealthChecker>,
}

impl MonitoredUpstream {
    pub fn start(up: &UpstreamSettings) -> std::io::Result<MonitoredUpstream> {
        let strategy = up.strategy.build(up.servers.len(), None);
        let policy = up.policy;
        let Some(settings) = &up.health else {
            return Ok(MonitoredUpstream {
                balancer: Arc::new(Balancer::new(&up.servers, strategy).with_policy(policy)),
                health: None,
                _checker: None,
            });
        };
        let addrs: Vec<SocketAddr> = up.servers.iter().map(|s| s.addr).collect();
        let table = Arc::new(HealthTable::new(
            &up.name,
            &addrs,
            settings.rise,
            settings.fall,
        ));
        let eligibility = Box::new(Arc::clone(&table));
        let balancer = Arc::new(
            Balancer::with_eligibility(&up.servers, strategy, eligibility).with_policy(policy),
        );
        let checker = HealthChecker::start(Arc::clone(&table), settings.clone())?;
        Ok(MonitoredUpstream {
            balancer,
            health: Some(table),
            _checker: Some(checker),
        })
    }
}

/// One probe: `GET path` on a new connection; any 2xx or 3xx within `timeout` is a success.
pub fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Result<u16, String> {
    let deadline = Instant::now() + timeout;
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    let mut stream = BufStream::new(stream);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: revproxy-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let head = read_response_head(&mut stream, &Limits::default(), Some(left))
        .map_err(|e| format!("response: {e}"))?;
    if (200..400).contains(&head.status) {
        Ok(head.status)
    } else {
        Err(format!("status {}", head.status))
    }
}

/// Formats the server table of `--debug`: address, state, failures in a row, last healthy
/// time and requests in flight.
pub fn format_table(upstream: &str, rows: &[(ServerHealth, usize)], now: SystemTime) -> String {
    let mut out = format!(
        "upstream {upstream}\n{:<22} {:<10} {:>6} {:>14} {:>7}\n",
        "server", "state", "fails", "last healthy", "active"
    );
    for (server, active) in rows {
        let last = match server.last_healthy {
            None => "never".to_owned(),
            Some(t) => format!(
                "{:.1}s ago",
                now.duration_since(t).unwrap_or_default().as_secs_f64()
            ),
        };
        out.push_str(&format!(
            "{:<22} {:<10} {:>6} {:>14} {:>7}\n",
            server.addr.to_string(),
            server.state.to_string(),
            server.consecutive_failures,
            last,
            active
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rise: u32, fall: u32) -> HealthTable {
        HealthTable::new("app", &["127.0.0.1:1".parse().unwrap()], rise, fall)
    }

    #[test]
    fn rise_and_fall_need_consecutive_results() {
        let t = table(2, 3);
        assert_eq!(t.state(0), State::Unknown);
        t.record(0, true, "probe");
        assert_eq!(
            t.state(0),
            State::Unknown,
            "one success is not enough with rise = 2"
        );
        t.record(0, true, "probe");
        assert_eq!(t.state(0), State::Healthy);
        t.record(0, false, "probe");
        t.record(0, false, "probe");
        t.record(0, true, "probe"); // breaks the streak
        t.record(0, false, "probe");
        t.record(0, false, "probe");
        assert_eq!(t.state(0), State::Healthy);
        t.record(0, false, "probe");
        assert_eq!(t.state(0), State::Unhealthy);
        t.record(0, true, "probe");
        assert_eq!(t.state(0), State::Unhealthy);
        t.record(0, true, "probe");
        assert_eq!(t.state(0), State::Healthy);
    }

    #[test]
    fn probes_are_counted_and_the_last_one_kept() {
        let t = table(1, 1);
        t.record_probe(0, &Ok(200));
        t.record_probe(0, &Err("connect: refused".to_owned()));
        let s = &t.snapshot()[0];
        assert_eq!((s.checks_passed, s.checks_failed), (1, 1));
        let last = s.last_check.as_ref().expect("a probe was recorded");
        assert!(!last.passed);
        assert_eq!(last.detail, "connect: refused");
        assert_eq!(s.state, State::Unhealthy, "the probe counted toward fall");
    }

    #[test]
    fn a_server_that_never_answers_does_not_stay_unknown() {
        let t = table(2, 3);
        for _ in 0..3 {
            t.record(0, false, "probe");
        }
        assert_eq!(t.state(0), State::Unhealthy);
    }

    #[test]
    fn passive_failures_count_and_passive_successes_only_reset() {
        let t = Arc::new(table(2, 2));
        t.observe(0, Outcome::ConnectFailed);
        t.observe(0, Outcome::Answered);
        t.observe(0, Outcome::TimedOut);
        assert_eq!(
            t.state(0),
            State::Unknown,
            "the answered request broke the streak"
        );
        t.observe(0, Outcome::Abandoned);
        t.observe(0, Outcome::TimedOut);
        assert_eq!(t.state(0), State::Unhealthy);
        assert!(!t.eligible(0));
        t.observe(0, Outcome::Answered);
        t.observe(0, Outcome::Answered);
        assert_eq!(
            t.state(0),
            State::Unhealthy,
            "only probes bring a server back"
        );
    }

    #[test]
    fn the_table_shows_every_column() {
        let server = ServerHealth {
            addr: "127.0.0.1:8001".parse().unwrap(),
            state: State::Healthy,
            consecutive_successes: 5,
            consecutive_failures: 0,
            last_healthy: Some(SystemTime::UNIX_EPOCH),
            last_check: None,
            checks_passed: 5,
            checks_failed: 0,
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1500);
        let text = format_table("app", &[(server, 3)], now);
        assert!(text.contains("127.0.0.1:8001"), "{text}");
        assert!(text.contains("healthy"), "{text}");
        assert!(text.contains("1.5s ago"), "{text}");
        assert!(text.trim_end().ends_with('3'), "{text}");
    }
}
