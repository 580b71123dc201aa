//! Which backend serves a request, and the connections to it.
//!
//! `Upstreams` is the seam later stages plug balancers and health checks into; stage 1 has a
//! single backend. `Connector` opens connections with a timeout and keeps idle ones for reuse,
//! as nginx's `keepalive` does, so a busy proxy does not pay a TCP handshake per request.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::http::stream::{BoxedTransport, Transport};
use crate::http::BufStream;
use crate::tls::client::{self as tls_client, BackendTls};
use crate::tls::config::UpstreamTls;

/// A kept connection idle for longer than this is probed before it carries a request that
/// could be replayed (see [`Connector::checkout_for`]); one that could not is always probed.
pub const PROBE_AFTER: Duration = Duration::from_secs(1);

/// Resolves `host:port` to one socket address (flags and config files name backends so).
pub fn resolve(addr: &str) -> Result<SocketAddr, String> {
    // Under `cargo fuzz` (which sets `--cfg fuzzing`) names are not looked up: the config
    // fuzzer would otherwise send a DNS query for every string it invents, and wait on each.
    #[cfg(fuzzing)]
    let found = addr.parse::<SocketAddr>().map(std::iter::once);
    #[cfg(not(fuzzing))]
    let found = std::net::ToSocketAddrs::to_socket_addrs(addr);
    found
        .map_err(|e| format!("cannot resolve '{addr}': {e}"))?
        .next()
        .ok_or_else(|| format!("'{addr}' resolves to no address"))
}

/// How one use of a backend ended, for balancers and health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The TCP connection could not be opened.
    ConnectFailed,
    /// The backend did not answer in time.
    TimedOut,
    /// The backend answered with something that is not HTTP, or broke off its response.
    Failed,
    /// The backend answered in full (whatever the status).
    Answered,
    /// The client gave up or sent something invalid: says nothing about the backend.
    Abandoned,
}

impl Outcome {
    /// Whether this outcome counts against the backend's health.
    pub fn is_backend_failure(self) -> bool {
        matches!(
            self,
            Outcome::ConnectFailed | Outcome::TimedOut | Outcome::Failed
        )
    }
}

/// Chooses backends.
pub trait Upstreams: Send + Sync {
    /// The backend for the next attempt at a request from `client`, skipping those already
    /// `tried` for it; `None` when no backend is left. Every backend returned is handed back
    /// through `finished` exactly once (see `Lease`).
    fn pick(&self, client: IpAddr, tried: &[SocketAddr]) -> Option<SocketAddr>;

    /// The use of `backend` that `pick` started has ended, with `outcome`.
    fn finished(&self, _backend: SocketAddr, _outcome: Outcome) {}

    /// This group's own timeouts and retries (`[upstreams.NAME]` `connect_timeout_ms`,
    /// `read_timeout_ms`, `retries`); `None`: the relay's, which the flags of stages 1 to 5
    /// set.
    fn policy(&self) -> Option<GroupPolicy> {
        None
    }
}

/// Longest wait to connect to a backend (nginx `proxy_connect_timeout` is 60 s; a backend on
/// the same network that takes 5 s is down).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for each read from a backend (nginx `proxy_read_timeout`).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Further backends tried when one cannot be reached (nginx tries every server; two more is
/// enough to ride out one dead server without tripling a client's wait).
pub const DEFAULT_RETRIES: usize = 2;

/// What one upstream group sets for the requests it serves: checked from `[upstreams.NAME]`
/// (`connect_timeout_ms`, `read_timeout_ms`, `retries`), or from the flags of stages 1 to 5
/// for their one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPolicy {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Further servers of the group tried when one cannot be reached.
    pub retries: usize,
}

impl Default for GroupPolicy {
    fn default() -> GroupPolicy {
        GroupPolicy {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            retries: DEFAULT_RETRIES,
        }
    }
}

impl GroupPolicy {
    /// The timeouts of a connection to one of the group's servers; a write may block as long
    /// as a read may wait.
    pub fn timeouts(&self) -> UpstreamTimeouts {
        UpstreamTimeouts {
            connect: self.connect_timeout,
            read: self.read_timeout,
            write: self.read_timeout,
        }
    }
}

/// A backend picked for one attempt. Dropping it reports the outcome, so every `pick` is
/// paired with one `finished` however the attempt ends, early returns and panics included;
/// least-connections balancing counts on that pairing.
pub struct Lease<'a> {
    upstreams: &'a dyn Upstreams,
    backend: SocketAddr,
    outcome: Outcome,
}

impl<'a> Lease<'a> {
    /// Picks a backend, or `None` when none is left.
    pub fn pick(
        upstreams: &'a dyn Upstreams,
        client: IpAddr,
        tried: &[SocketAddr],
    ) -> Option<Lease<'a>> {
        upstreams.pick(client, tried).map(|backend| Lease {
            upstreams,
            backend,
            outcome: Outcome::Abandoned,
        })
    }

    pub fn backend(&self) -> SocketAddr {
        self.backend
    }

    /// Records how the attempt went; the last outcome set is the one reported.
    pub fn set(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }

    /// The policy of the group this backend was picked from.
    pub fn policy(&self) -> Option<GroupPolicy> {
        self.upstreams.policy()
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.upstreams.finished(self.backend, self.outcome);
    }
}

/// One fixed backend: stage 1's `--backend`.
#[derive(Debug, Clone, Copy)]
pub struct SingleUpstream(pub SocketAddr);

impl Upstreams for SingleUpstream {
    fn pick(&self, _client: IpAddr, tried: &[SocketAddr]) -> Option<SocketAddr> {
        (!tried.contains(&self.0)).then_some(self.0)
    }
}

/// Timeouts applied to every upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamTimeouts {
    pub connect: Duration,
    /// Longest wait for any single read (the response head, or the next piece of a body).
    pub read: Duration,
    pub write: Duration,
}

/// A connection to a backend, with its read-ahead buffer. The transport is boxed so that a
/// TLS connection to a backend (stage 9) travels the same way as a plain one.
pub type UpstreamConn = BufStream<BoxedTransport>;

struct Idle {
    conn: UpstreamConn,
    since: Instant,
}

/// Opens upstream connections and keeps idle keep-alive ones for the next request.
pub struct Connector {
    timeouts: UpstreamTimeouts,
    /// Idle connections older than this are closed rather than reused: the backend may be
    /// about to close them itself.
    max_idle_time: Duration,
    max_idle_per_backend: usize,
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>, Fast>>,
    /// Backends spoken to over TLS (`https://` servers), with their SNI name and verifier.
    tls: HashMap<SocketAddr, BackendTls, Fast>,
}

/// The hasher of both maps, each looked up on every request: foldhash instead of the default
/// SipHash, which took 3% of stage 5's instructions a request (callgrind). SipHash resists
/// keys chosen to collide; these keys are the backends of the configuration, which no client
/// chooses.
type Fast = foldhash::fast::RandomState;

impl Connector {
    pub fn new(timeouts: UpstreamTimeouts) -> Connector {
        Connector {
            timeouts,
            max_idle_time: Duration::from_secs(4),
            max_idle_per_backend: 64,
            idle: Mutex::new(HashMap::default()),
            tls: HashMap::default(),
        }
    }

    /// Speaks TLS to `backend` from now on (an `https://` server of an upstream).
    pub fn with_tls(mut self, backend: SocketAddr, tls: BackendTls) -> Connector {
        self.tls.insert(backend, tls);
        self
    }

    /// Speaks TLS to every `https://` server of a group (`UpstreamSettings::tls`), verified
    /// as the group says; fails when its `ca_file` cannot be read.
    pub fn with_tls_group(mut self, group: &UpstreamTls) -> Result<Connector, String> {
        for (backend, tls) in tls_client::backends(group)? {
            self.tls.insert(backend, tls);
        }
        Ok(self)
    }

    pub fn timeouts(&self) -> UpstreamTimeouts {
        self.timeouts
    }

    /// An idle connection to `backend` if a live one is kept (`true` = reused), else a new one.
    pub fn checkout(&self, backend: SocketAddr) -> io::Result<(UpstreamConn, bool)> {
        self.checkout_for(backend, false)
    }

    /// [`checkout`](Self::checkout) for a request that may be sent again on a new connection
    /// if a kept one turns out closed (`replayable`: the relay does so when nothing came
    /// back). Such a request skips the probe of a connection idle for less than
    /// [`PROBE_AFTER`]: a backend rarely closes a connection that soon, and when it does the
    /// replay costs what the probe would have cost on every request.
    pub fn checkout_for(
        &self,
        backend: SocketAddr,
        replayable: bool,
    ) -> io::Result<(UpstreamConn, bool)> {
        self.checkout_within(backend, replayable, self.timeouts)
    }

    /// [`checkout_for`](Self::checkout_for) with a group's own timeouts for a new connection.
    pub fn checkout_within(
        &self,
        backend: SocketAddr,
        replayable: bool,
        timeouts: UpstreamTimeouts,
    ) -> io::Result<(UpstreamConn, bool)> {
        while let Some(mut idle) = self.take_idle(backend) {
            let idled = idle.since.elapsed();
            if idled >= self.max_idle_time {
                continue;
            }
            if (replayable && idled < PROBE_AFTER) || still_idle(idle.conn.get_mut()) {
                // A server in two groups shares its kept connections: the socket takes the
                // read timeout of the group that reuses it (a no-op when it is the same).
                idle.conn.set_read_timeout(Some(timeouts.read))?;
                return Ok((idle.conn, true));
            }
        }
        self.connect_within(backend, timeouts)
            .map(|conn| (conn, false))
    }

    /// A new connection, never a kept one.
    pub fn connect(&self, backend: SocketAddr) -> io::Result<UpstreamConn> {
        self.connect_within(backend, self.timeouts)
    }

    /// [`connect`](Self::connect) with a group's own timeouts.
    pub fn connect_within(
        &self,
        backend: SocketAddr,
        timeouts: UpstreamTimeouts,
    ) -> io::Result<UpstreamConn> {
        let stream = TcpStream::connect_timeout(&backend, timeouts.connect)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeouts.read))?;
        stream.set_write_timeout(Some(timeouts.write))?;
        let transport: BoxedTransport = match self.tls.get(&backend) {
            Some(tls) => tls.connect(stream)?,
            None => Box::new(stream),
        };
        Ok(BufStream::new(transport))
    }

    /// Keeps a connection whose last exchange ended cleanly, for the next request.
    pub fn checkin(&self, backend: SocketAddr, conn: UpstreamConn) {
        if !conn.buffered().is_empty() {
            return; // bytes beyond the response: the backend is confused, do not reuse.
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let list = idle.entry(backend).or_default();
        if list.len() < self.max_idle_per_backend {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    fn take_idle(&self, backend: SocketAddr) -> Option<Idle> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        idle.get_mut(&backend).and_then(Vec::pop)
    }
}

/// Whether an idle connection is still usable: a backend that closed it has sent a FIN (or a
/// TLS `close_notify`), and a backend that sent any payload at all while the connection idled
/// is confused. Either way it must not carry the next request.
///
/// A read without waiting answers it: on TCP one `poll` that finds nothing (rather than
/// toggling non-blocking mode around a `peek`: three system calls); over TLS it also consumes
/// records that carry no payload (a late session ticket), which must not count against the
/// connection. Whatever it reads belongs to a connection that is dropped anyway.
fn still_idle(transport: &mut dyn Transport) -> bool {
    // A failed read says nothing good about the connection: not reused.
    !transport.has_buffered() && matches!(transport.read_now(&mut [0u8; 1]), Ok(None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn timeouts() -> UpstreamTimeouts {
        let s = Duration::from_secs(2);
        UpstreamTimeouts {
            connect: s,
            read: s,
            write: s,
        }
    }

    /// A group's connections are bounded by its own timeouts, writes by its read timeout (as
    /// the flags' `--upstream-timeout` bounds both), never by another group's.
    #[test]
    fn a_group_policy_gives_its_own_connection_timeouts() {
        let policy = GroupPolicy {
            connect_timeout: Duration::from_millis(700),
            read_timeout: Duration::from_millis(300),
            retries: 0,
        };
        assert_eq!(
            policy.timeouts(),
            UpstreamTimeouts {
                connect: Duration::from_millis(700),
                read: Duration::from_millis(300),
                write: Duration::from_millis(300),
            }
        );
    }

    #[test]
    fn idle_connections_are_reused_until_the_backend_closes_them() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connector = Connector::new(timeouts());
        let (conn, reused) = connector.checkout(addr).unwrap();
        assert!(!reused);
        let (mut server_side, _) = listener.accept().unwrap();
        connector.checkin(addr, conn);
        let (conn, reused) = connector.checkout(addr).unwrap();
        assert!(reused, "a live idle connection is reused");
        connector.checkin(addr, conn);
        server_side.write_all(b"").unwrap();
        drop(server_side);
        // The FIN may take a moment to arrive on loopback; a closed socket must never be handed
        // out, so poll (bounded) until the connector notices and dials anew.
        for _ in 0..100 {
            let (conn, reused) = connector.checkout(addr).unwrap();
            if !reused {
                return;
            }
            connector.checkin(addr, conn);
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("a connection closed by the backend was still handed out");
    }

    #[test]
    fn single_upstream_is_tried_once() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let up = SingleUpstream(addr);
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(up.pick(client, &[]), Some(addr));
        assert_eq!(up.pick(client, &[addr]), None);
    }
}
