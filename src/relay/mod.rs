//! One client connection, request after request: read a head, run it through the phases,
//! send it upstream with its body, stream the response back through the phases, and decide
//! whether the connection lives on.
//!
//! This is the code every stage shares; stages differ in how many `serve` calls run at once
//! (see `server`), in which backend `Upstreams` picks, and, from stage 7 on, in the
//! [`Phases`] plugged in. One file per job:
//!
//! - `mod.rs` (here): the connection loop, settings, logging of every exchange;
//! - `exchange.rs`: one request from its checks to its answer;
//! - `attempt.rs`: one attempt at a backend, and when another may be tried;
//! - `response.rs`: the response head and body on their way to the client;
//! - `duplex.rs`: a request body and its response at once (an origin that answers early);
//! - `pipeline.rs`: the body through observers and transforms;
//! - `pace.rs`: the minimum rate at which a client must take a response (slow readers);
//! - `reply.rs`: what the proxy answers itself;
//! - `upgrade.rs`: which requests may switch protocols (WebSocket), and how many tunnels;
//! - `switch.rs`: a `101 Switching Protocols` handed to a tunnel thread;
//! - `tunnel.rs`: the bytes of a switched connection, both ways, a thread per direction;
//! - `poll_tunnel.rs`: the same for connections that cannot be split (TLS), one thread;
//! - `phases.rs`: the hooks.

mod attempt;
mod duplex;
mod exchange;
mod pace;
pub mod phases;
mod pipeline;
mod poll_tunnel;
pub mod reply;
mod response;
mod switch;
mod tunnel;
pub mod upgrade;

use std::cell::Cell;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use pace::{SendRate, DEFAULT_MIN_SEND_RATE};
pub use phases::{
    AnsweredBy, BodyObserver, BodyPlan, BodyTransform, Client, NoPhases, Phases, Summary,
    UpstreamAnswer,
};
pub use reply::{Reply, ReplyBody, SharedFields};
pub use upgrade::UpgradeConfig;

use crate::access_log;
use crate::http::head::Headers;
use crate::http::head::{read_request_head, HeadTimeouts};
use crate::http::{BufStream, Limits, RequestHead, Socket};
use crate::lifecycle::drain::Drain;
use crate::upstream::{Connector, Upstreams};
use exchange::{Done, Refusal};

/// How long an idle keep-alive client connection is kept (nginx `keepalive_timeout`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Longest a client may take to send a head once it started (nginx `client_header_timeout`).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a write to the client may block (nginx `send_timeout`), and the window over which
/// the minimum send rate is averaged (see `pace`).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest pause while a client sends a request body (nginx `client_body_timeout`).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a client may take, at each point of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// Between requests on a keep-alive connection (nginx `keepalive_timeout`).
    pub idle: Duration,
    /// From the first byte of a head to its end (nginx `client_header_timeout`).
    pub head: Duration,
    /// Longest pause while the client sends a body (nginx `client_body_timeout`).
    pub body: Duration,
    /// Longest a write to the client may block (nginx `send_timeout`).
    pub write: Duration,
    /// Bytes per second a client must take a response at, averaged over each `write` of
    /// time spent waiting for it; `0` for no minimum (see `pace`).
    pub min_send_rate: u64,
}

impl ClientTimeouts {
    /// The slow-reader rule these timeouts make.
    pub fn send_rate(&self) -> SendRate {
        SendRate {
            min_bytes_per_sec: self.min_send_rate,
            window: self.write,
        }
    }
}

impl Default for ClientTimeouts {
    fn default() -> ClientTimeouts {
        ClientTimeouts {
            idle: DEFAULT_IDLE_TIMEOUT,
            head: DEFAULT_HEADER_TIMEOUT,
            body: DEFAULT_BODY_TIMEOUT,
            write: DEFAULT_SEND_TIMEOUT,
            min_send_rate: DEFAULT_MIN_SEND_RATE,
        }
    }
}

/// What a client may send and how long it may take: the client-facing settings, which the
/// flags of every stage (`cli::TuningArgs`) and the `[server]` table of the file
/// (`config::server`) both fill, and which the relay reads as they are. A new such setting is
/// a field here with its default, and the flag or key that sets it. The defaults are the
/// field types' own (`ClientTimeouts`, `Limits`; the two switches off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientPolicy {
    pub timeouts: ClientTimeouts,
    /// Sizes of what a client may send; `max_body` is the one a flag or key sets.
    pub limits: Limits,
    /// Forward request header fields whose name holds an `_` (nginx's
    /// `underscores_in_headers`). Off by default: a backend that maps fields to CGI/WSGI
    /// variables reads `X_Foo` and `X-Foo` as the same one, so `Content_Length` or a forged
    /// `X_Forwarded_For` could pass for the field this proxy vetted.
    pub underscores_in_headers: bool,
    /// Forward `TRACE`; off by default, answered 405: a backend that echoes the request would
    /// show a page's script the cookies and credentials it cannot read (cross-site tracing).
    pub allow_trace: bool,
}

/// Everything about a relay that is not a backend.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// What clients may do.
    pub client: ClientPolicy,
    /// Further backends to try when one cannot be reached, or drops a replayable request
    /// without answering, for upstreams without a policy of their own (`Upstreams::policy`).
    pub retries: usize,
    /// This proxy's name in `Via`. (`X-Forwarded-Proto` comes from each connection's
    /// `Socket::scheme`, since one relay may serve a plain and a TLS listener.)
    pub via_name: String,
    /// WebSocket and other upgrades: off unless allowed (see [`upgrade`]).
    pub upgrades: UpgradeConfig,
    /// Set when a graceful shutdown starts: from then on every response closes its
    /// connection (`Connection: close`).
    pub drain: Drain,
}

impl Default for RelayConfig {
    fn default() -> RelayConfig {
        RelayConfig {
            client: ClientPolicy::default(),
            retries: 0,
            via_name: "revproxy".to_owned(),
            upgrades: UpgradeConfig::default(),
            drain: Drain::default(),
        }
    }
}

/// Relays client connections to upstreams, through the phases `P`.
pub struct Relay<P: Phases = NoPhases> {
    config: RelayConfig,
    upstream_limits: Limits,
    upstreams: Arc<dyn Upstreams>,
    connector: Connector,
    /// Shared with tunnel threads, which log their exchange when the tunnel ends.
    phases: Arc<P>,
    tunnels: upgrade::Tunnels,
}

/// How a request left its connection.
enum Served {
    /// Ready for the next request.
    Next,
    /// Closed, by either side.
    Closed,
    /// Switched protocols: this thread relays its bytes now.
    Tunnel(std::thread::JoinHandle<()>),
}

/// nginx's code for "the client closed the connection before a response was sent".
const CLIENT_GONE: u16 = 499;

/// What the connection loop measured of one exchange, beside how it ended (`Done`).
#[derive(Debug, Clone, Copy)]
struct Measured {
    started: Instant,
    /// Request body bytes read from the client.
    request_bytes: u64,
}

impl Measured {
    /// An exchange that read no request body.
    fn bodiless(started: Instant) -> Measured {
        Measured {
            started,
            request_bytes: 0,
        }
    }
}

impl Relay {
    /// A relay without phases: stages 1 to 6.
    pub fn new(config: RelayConfig, upstreams: Arc<dyn Upstreams>, connector: Connector) -> Relay {
        Relay::with_phases(config, upstreams, connector, NoPhases)
    }
}

impl<P: Phases> Relay<P> {
    /// A relay that runs every exchange through `phases`; `upstreams` serves the requests
    /// that the route phase leaves to the default.
    pub fn with_phases(
        config: RelayConfig,
        upstreams: Arc<dyn Upstreams>,
        connector: Connector,
        phases: P,
    ) -> Relay<P> {
        // A response head may legitimately be larger than a request's (cookies, CSP headers).
        let upstream_limits = Limits {
            max_head: config.client.limits.max_head.max(64 * 1024),
            ..config.client.limits
        };
        let tunnels = upgrade::Tunnels::new(config.upgrades.max_tunnels);
        Relay {
            config,
            upstream_limits,
            upstreams,
            connector,
            phases: Arc::new(phases),
            tunnels,
        }
    }

    /// This relay with `drain` as its shutdown flag (see [`RelayConfig::drain`]).
    pub fn with_drain(mut self, drain: Drain) -> Relay<P> {
        self.config.drain = drain;
        self
    }

    /// Serves an accepted TCP connection until it closes.
    pub fn serve_tcp(&self, stream: TcpStream, peer: SocketAddr) {
        if let Err(err) = self.prepare_tcp(&stream) {
            log::warn!("{peer}: cannot set up the client socket: {err}");
            return;
        }
        self.serve(stream, peer);
    }

    /// Socket options every accepted client connection gets before its first request.
    pub fn prepare_tcp(&self, stream: &TcpStream) -> std::io::Result<()> {
        // Small heads and chunks must not wait for Nagle's algorithm.
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(self.config.client.timeouts.write))
    }

    /// Serves one client connection: every request on it, in order, until either side closes.
    ///
    /// A connection switched to a tunnel (WebSocket) keeps this call until the tunnel ends:
    /// the models that give a connection its own thread or process (stages 1 to 3, the pool's
    /// `hold` mode) account for it there, and a forked child must not exit under its tunnel.
    pub fn serve<S: Socket>(&self, client: S, peer: SocketAddr) {
        let mut client = BufStream::new(client);
        // Bounded by the connection: each turn serves one request, or ends it.
        loop {
            match self.serve_one(&mut client, peer, self.config.client.timeouts.idle) {
                Served::Next => {}
                Served::Closed => break,
                Served::Tunnel(tunnel) => {
                    // The tunnel has its own handles; this one is closed with it.
                    let _ = tunnel.join();
                    return;
                }
            }
        }
        client.finish();
    }

    /// Serves the next request on a connection, waiting at most `idle` for it to start.
    /// Returns whether the connection can carry another request.
    ///
    /// This is the unit of work for models that do not dedicate a thread to a connection for
    /// its whole life (a pool can serve one request, then park the connection while it idles).
    ///
    /// A connection switched to a tunnel (WebSocket) returns `false` at once: a tunnel
    /// thread owns it now, so a pool's worker is free for the next request.
    pub fn serve_next<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        peer: SocketAddr,
        idle: Duration,
    ) -> bool {
        matches!(self.serve_one(client, peer, idle), Served::Next)
    }

    /// Serves the next request on a connection; see [`serve_next`](Self::serve_next).
    fn serve_one<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        peer: SocketAddr,
        idle: Duration,
    ) -> Served {
        let timeouts = HeadTimeouts {
            idle: Some(idle),
            whole: Some(self.config.client.timeouts.head),
        };
        let mut head = match read_request_head(client, &self.config.client.limits, timeouts) {
            Ok(head) => head,
            Err(err) => {
                if let Some(status) = err.client_status() {
                    log::debug!("{peer}: refusing request: {err}");
                    let refusal = Refusal::close(status);
                    self.refuse(
                        client,
                        peer,
                        None,
                        &mut P::Ctx::default(),
                        &refusal,
                        Measured::bodiless(Instant::now()),
                    );
                }
                return Served::Closed;
            }
        };
        let started = Instant::now();
        let mut ctx = P::Ctx::default();
        let received = Cell::new(0);
        let asked_head = head.method == "HEAD";
        let outcome = self.exchange(client, &mut head, peer, &mut ctx, started, &received);
        if asked_head && head.method != "HEAD" {
            // A request phase fetched a HEAD as a GET (a cache filling on a miss): the client
            // asked HEAD, and its error replies and its log line say so.
            head.method = "HEAD".to_owned();
        }
        let measured = Measured {
            started,
            request_bytes: received.get(),
        };
        let done = match outcome {
            // A tunnel thread owns the connection now, and logs the exchange when it ends.
            Ok(Done {
                tunnel: Some(tunnel),
                ..
            }) => return Served::Tunnel(tunnel),
            Ok(done) => done,
            Err(refusal) => {
                let Some(status) = refusal.status else {
                    let done = Done::proxy(CLIENT_GONE, false, refusal.upstream);
                    self.log(
                        &mut ctx,
                        peer,
                        Some(&head),
                        &done,
                        measured,
                        client.get_ref().tls_version(),
                    );
                    return Served::Closed;
                };
                if !refusal.keep_alive {
                    self.refuse(client, peer, Some(&head), &mut ctx, &refusal, measured);
                    return Served::Closed;
                }
                let keep_alive = !self.draining();
                let reply = Reply::error(status).to_bytes(head.method == "HEAD", keep_alive);
                let sent = client.write_all(&reply).is_ok();
                Done::proxy(status, sent && keep_alive, refusal.upstream)
            }
        };
        self.log(
            &mut ctx,
            peer,
            Some(&head),
            &done,
            measured,
            client.get_ref().tls_version(),
        );
        if done.keep_alive {
            Served::Next
        } else {
            Served::Closed
        }
    }

    /// Whether a graceful shutdown has started: no connection is kept past its response.
    pub(super) fn draining(&self) -> bool {
        self.config.drain.is_draining()
    }

    /// The settings this relay was built with.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// The phases every exchange runs through (the admin listener asks them for their
    /// counters).
    pub fn phases(&self) -> &P {
        &self.phases
    }

    /// Tunnels (switched connections, WebSocket) open right now.
    pub fn open_tunnels(&self) -> usize {
        self.tunnels.live()
    }

    /// Records a refusal made outside [`serve_next`](Self::serve_next), where no request was
    /// read: the accept loop's or the pool's 503, the parker's 408.
    pub fn log_refusal(&self, peer: SocketAddr, status: u16, duration: Duration) {
        let done = Done::proxy(status, false, None);
        let started = Instant::now()
            .checked_sub(duration)
            .unwrap_or_else(Instant::now);
        let measured = Measured::bodiless(started);
        self.log(&mut P::Ctx::default(), peer, None, &done, measured, None);
    }

    /// Answers with the refusal's status and closes, giving the client time to read it.
    fn refuse<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        peer: SocketAddr,
        head: Option<&RequestHead>,
        ctx: &mut P::Ctx,
        refusal: &Refusal,
        measured: Measured,
    ) {
        let status = refusal.status.unwrap_or(CLIENT_GONE);
        let head_only = head.is_some_and(|h| h.method == "HEAD");
        let reply = Reply::error(status).to_bytes(head_only, false);
        let sent = client.write_all(&reply).is_ok();
        // Logged before the lingering close: its second of draining is not the exchange's.
        let done = Done::proxy(status, false, refusal.upstream);
        self.log(
            ctx,
            peer,
            head,
            &done,
            measured,
            client.get_ref().tls_version(),
        );
        if sent {
            reply::linger(client);
        }
    }

    /// One summary per exchange: to the logging phase, and to the access log.
    fn log(
        &self,
        ctx: &mut P::Ctx,
        peer: SocketAddr,
        head: Option<&RequestHead>,
        done: &Done,
        measured: Measured,
        tls_version: Option<&'static str>,
    ) {
        let summary = Summary {
            tls_version,
            peer,
            request: head,
            status: done.status,
            body_bytes: done.bytes,
            request_bytes: measured.request_bytes,
            duration: measured.started.elapsed(),
            upstream: done.upstream,
            upstream_time: done.upstream_time,
            answered_by: done.answered_by,
        };
        log_summary(&*self.phases, ctx, &summary, done.cache);
    }
}

/// Hands a summary to the logging phase and the access log: for the connection loop, and
/// for a tunnel thread when its tunnel ends.
fn log_summary<P: Phases>(
    phases: &P,
    ctx: &mut P::Ctx,
    summary: &Summary<'_>,
    cache: Option<&str>,
) {
    phases.logging(ctx, summary);
    write_access_log(summary, phases.user(ctx), cache);
}

fn write_access_log(summary: &Summary<'_>, user: Option<&str>, cache: Option<&str>) {
    if !access_log::enabled() {
        return; // skip formatting the request line on the hot path
    }
    let head = summary.request;
    let request_line = head.map_or_else(
        || "-".to_owned(),
        |h| {
            format!(
                "{} {} HTTP/1.{}",
                h.method,
                h.client_target(),
                h.minor_version
            )
        },
    );
    access_log::write(&access_log::Entry {
        client: summary.peer.ip(),
        user,
        request_line: &request_line,
        status: summary.status,
        bytes: summary.body_bytes,
        request_bytes: summary.request_bytes,
        referer: head.and_then(|h| h.header("referer")),
        user_agent: head.and_then(|h| h.header("user-agent")),
        duration: summary.duration,
        method: head.map(|h| h.method.as_str()),
        target: head.map(|h| h.client_target()),
        route: head.and_then(|h| h.route.as_deref()),
        upstream: summary.upstream,
        cache,
        tls: summary.tls_version,
        upstream_time: summary.upstream_time,
    });
}
