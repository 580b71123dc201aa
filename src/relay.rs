//! One client connection, request after request: read a head, send it upstream with its body,
//! stream the response back, and decide whether the connection lives on.
//!
//! This is the code every stage shares; stages differ only in how many `serve` calls run at
//! once (see `server`) and in which backend `Upstreams` picks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access_log;
use crate::http::body::{copy_body, BodyError, Encoding};
use crate::http::framing::{request_framing, response_framing};
use crate::http::head::{read_request_head, read_response_head, HeadTimeouts, Headers};
use crate::http::headers::{
    client_response, local_response, upstream_request, ForwardInfo, OutFraming,
};
use crate::http::{BodyFraming, BufStream, HttpError, Limits, RequestHead, ResponseHead, Socket};
use crate::upstream::{Connector, Lease, Outcome, UpstreamConn, Upstreams};

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
}

impl Default for ClientTimeouts {
    fn default() -> ClientTimeouts {
        ClientTimeouts {
            idle: Duration::from_secs(75),
            head: Duration::from_secs(60),
            body: Duration::from_secs(60),
            write: Duration::from_secs(60),
        }
    }
}

/// Everything about a relay that is not a backend.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub limits: Limits,
    pub client: ClientTimeouts,
    /// Further backends to try when one cannot be reached, or drops a replayable request
    /// without answering.
    pub retries: usize,
    /// This proxy's name in `Via`.
    pub via_name: String,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: &'static str,
}

impl Default for RelayConfig {
    fn default() -> RelayConfig {
        RelayConfig {
            limits: Limits::default(),
            client: ClientTimeouts::default(),
            retries: 0,
            via_name: "revproxy".to_owned(),
            proto: "http",
        }
    }
}

/// Relays client connections to upstreams.
pub struct Relay {
    config: RelayConfig,
    upstream_limits: Limits,
    upstreams: Arc<dyn Upstreams>,
    connector: Connector,
}

/// How one request ended, for the access log and the connection loop.
struct Exchange {
    status: u16,
    bytes: u64,
    keep_alive: bool,
}

/// A request the proxy answers itself (or, with no status, drops).
#[derive(Debug)]
struct Refusal {
    /// `None`: the client is gone or unusable; close without a word.
    status: Option<u16>,
    /// Whether the connection stays usable for another request (its bytes are in sync).
    keep_alive: bool,
}

impl Refusal {
    fn close(status: u16) -> Refusal {
        Refusal {
            status: Some(status),
            keep_alive: false,
        }
    }

    fn silent() -> Refusal {
        Refusal {
            status: None,
            keep_alive: false,
        }
    }

    fn from_client(err: &HttpError) -> Refusal {
        Refusal {
            status: err.client_status(),
            keep_alive: false,
        }
    }
}

/// nginx's code for "the client closed the connection before a response was sent".
const CLIENT_GONE: u16 = 499;

impl Relay {
    pub fn new(config: RelayConfig, upstreams: Arc<dyn Upstreams>, connector: Connector) -> Relay {
        // A response head may legitimately be larger than a request's (cookies, CSP headers).
        let upstream_limits = Limits {
            max_head: config.limits.max_head.max(64 * 1024),
            ..config.limits
        };
        Relay {
            config,
            upstream_limits,
            upstreams,
            connector,
        }
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
        stream.set_write_timeout(Some(self.config.client.write))
    }

    /// Serves one client connection: every request on it, in order, until either side closes.
    pub fn serve<S: Socket>(&self, client: S, peer: SocketAddr) {
        let mut client = BufStream::new(client);
        while self.serve_next(&mut client, peer, self.config.client.idle) {}
    }

    /// Serves the next request on a connection, waiting at most `idle` for it to start.
    /// Returns whether the connection can carry another request.
    ///
    /// This is the unit of work for models that do not dedicate a thread to a connection for
    /// its whole life (a pool can serve one request, then park the connection while it idles).
    pub fn serve_next<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        peer: SocketAddr,
        idle: Duration,
    ) -> bool {
        let timeouts = HeadTimeouts {
            idle: Some(idle),
            whole: Some(self.config.client.head),
        };
        let head = match read_request_head(client, &self.config.limits, timeouts) {
            Ok(head) => head,
            Err(err) => {
                if let Some(status) = err.client_status() {
                    log::debug!("{peer}: refusing request: {err}");
                    self.refuse(client, peer, None, status);
                }
                return false;
            }
        };
        let started = Instant::now();
        let exchange = match self.exchange(client, &head, peer) {
            Ok(exchange) => exchange,
            Err(refusal) => {
                let status = refusal.status.unwrap_or(CLIENT_GONE);
                if refusal.status.is_some() && !refusal.keep_alive {
                    self.refuse(client, peer, Some(&head), status);
                    return false;
                }
                let mut keep_alive = refusal.keep_alive;
                if refusal.status.is_some() {
                    let reply = error_reply(status, true, &head.method);
                    keep_alive &= client.write_all(&reply).is_ok();
                }
                Exchange {
                    status,
                    bytes: 0,
                    keep_alive,
                }
            }
        };
        log_exchange(peer, Some(&head), exchange.status, exchange.bytes, started);
        exchange.keep_alive
    }

    /// The settings this relay was built with.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Answers with `status` and closes, giving the client time to read the answer.
    fn refuse<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        peer: SocketAddr,
        head: Option<&RequestHead>,
        status: u16,
    ) {
        let method = head.map_or("GET", |h| h.method.as_str());
        let reply = error_reply(status, false, method);
        if client.write_all(&reply).is_ok() {
            linger(client);
        }
        log_exchange(peer, head, status, 0, Instant::now());
    }

    fn exchange<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        head: &RequestHead,
        peer: SocketAddr,
    ) -> Result<Exchange, Refusal> {
        let limits = &self.config.limits;
        if head.method == "CONNECT" {
            // A reverse proxy does not open tunnels; forwarding CONNECT would let a client
            // reach whatever the backend can.
            return Err(Refusal::close(501));
        }
        let framing = request_framing(head).map_err(|err| {
            log::debug!("{peer}: refusing {} {}: {err}", head.method, head.target);
            Refusal::from_client(&err)
        })?;
        if matches!(framing, BodyFraming::Length(n) if n > limits.max_body) {
            return Err(Refusal::close(413));
        }
        let expects_continue = expects_continue(head)?;
        let client_keep_alive = wants_keep_alive(head);
        let body_pending = matches!(framing, BodyFraming::Chunked)
            || matches!(framing, BodyFraming::Length(n) if n > 0);

        let mut tried = Vec::new();
        let (conn, lease, response) = loop {
            let Some(mut lease) = Lease::pick(&*self.upstreams, peer.ip(), &tried) else {
                let status = if tried.is_empty() { 503 } else { 502 };
                return Err(Refusal {
                    status: Some(status),
                    keep_alive: client_keep_alive && !body_pending,
                });
            };
            let backend = lease.backend();
            tried.push(backend);
            let request = Request {
                head,
                framing,
                expects_continue,
                body_pending,
                client_keep_alive,
                peer,
            };
            match self.send_request(client, &request, &mut lease) {
                Ok((conn, response)) => break (conn, lease, response),
                Err(Attempt::Retry(reason)) => {
                    if let RetryReason::Connect(err) = reason {
                        log::warn!("upstream {backend}: connect failed: {err}");
                        lease.set(Outcome::ConnectFailed);
                    }
                    if tried.len() > self.config.retries {
                        return Err(Refusal {
                            status: Some(502),
                            keep_alive: client_keep_alive && !body_pending,
                        });
                    }
                }
                Err(Attempt::Refused(refusal)) => return Err(refusal),
            }
        };
        self.relay_response(client, head, client_keep_alive, conn, lease, &response)
    }

    /// Sends the request head and body to `backend` and reads the final response head.
    fn send_request<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        req: &Request<'_>,
        lease: &mut Lease<'_>,
    ) -> Result<(UpstreamConn, ResponseHead), Attempt> {
        let backend = lease.backend();
        let info = ForwardInfo {
            client_ip: req.peer.ip(),
            proto: self.config.proto,
            via_name: &self.config.via_name,
            // Formatted only when the client sent no Host: no allocation per request.
            fallback_host: backend,
        };
        let out_framing = match req.framing {
            BodyFraming::Length(n) => OutFraming::Length(n),
            BodyFraming::Chunked => OutFraming::Chunked,
            BodyFraming::Empty | BodyFraming::UntilClose => OutFraming::NoBody,
        };
        let request_head = upstream_request(req.head, &info, out_framing);
        let (mut conn, mut reused) = self
            .connector
            .checkout(backend)
            .map_err(|e| Attempt::Retry(RetryReason::Connect(e)))?;
        loop {
            if let Err(err) = conn.write_all(&request_head) {
                if reused {
                    // A kept connection the backend closed meanwhile: nothing was delivered,
                    // so sending again on a new connection is safe.
                    conn = self
                        .connector
                        .connect(backend)
                        .map_err(|e| Attempt::Retry(RetryReason::Connect(e)))?;
                    reused = false;
                    continue;
                }
                log::warn!("upstream {backend}: sending the request failed: {err}");
                lease.set(Outcome::Failed);
                return Err(Attempt::Refused(Refusal {
                    status: Some(502),
                    keep_alive: req.client_keep_alive && !req.body_pending,
                }));
            }
            if req.body_pending {
                self.send_body(client, req, &mut conn, lease)?;
            }
            match read_final_head(
                &mut conn,
                &self.upstream_limits,
                self.connector.timeouts().read,
            ) {
                Ok(response) => return Ok((conn, response)),
                // A kept connection the backend closed or reset just as the request went out.
                // It may have seen the request, so only a replayable one is sent again.
                Err(err) if reused && replayable(req) && nothing_received(&err, &conn) => {
                    conn = self
                        .connector
                        .connect(backend)
                        .map_err(|e| Attempt::Retry(RetryReason::Connect(e)))?;
                    reused = false;
                }
                Err(err) if replayable(req) && nothing_received(&err, &conn) => {
                    // The backend dropped the connection without a byte of response. A
                    // request without a body whose method is idempotent can safely go to
                    // the next backend; anything else might have had an effect already.
                    log::warn!("upstream {backend}: closed without answering: {err}");
                    lease.set(Outcome::Failed);
                    return Err(Attempt::Retry(RetryReason::Dropped));
                }
                Err(HttpError::Timeout | HttpError::IdleTimeout) => {
                    log::warn!("upstream {backend}: no response within the read timeout");
                    lease.set(Outcome::TimedOut);
                    return Err(Attempt::Refused(Refusal {
                        status: Some(504),
                        keep_alive: req.client_keep_alive,
                    }));
                }
                Err(err) => {
                    log::warn!("upstream {backend}: bad response: {err}");
                    lease.set(Outcome::Failed);
                    return Err(Attempt::Refused(Refusal {
                        status: Some(502),
                        keep_alive: req.client_keep_alive,
                    }));
                }
            }
        }
    }

    /// Streams the request body from the client to the backend.
    fn send_body<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        req: &Request<'_>,
        conn: &mut UpstreamConn,
        lease: &mut Lease<'_>,
    ) -> Result<(), Attempt> {
        if req.expects_continue && client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
            return Err(Attempt::Refused(Refusal::silent()));
        }
        client
            .set_read_timeout(Some(self.config.client.body))
            .map_err(|_| Attempt::Refused(Refusal::silent()))?;
        let encoding = match req.framing {
            BodyFraming::Chunked => Encoding::Chunked,
            _ => Encoding::Raw,
        };
        let limits = &self.config.limits;
        match copy_body(
            client,
            req.framing,
            conn,
            encoding,
            limits,
            Some(limits.max_body),
        ) {
            Ok(_) => Ok(()),
            Err(BodyError::Source(err)) => {
                log::debug!("{}: request body: {err}", req.peer);
                Err(Attempt::Refused(Refusal::from_client(&err)))
            }
            Err(BodyError::TooLarge) => Err(Attempt::Refused(Refusal::close(413))),
            Err(BodyError::Sink(err)) => {
                log::warn!(
                    "upstream {}: sending the request body failed: {err}",
                    lease.backend()
                );
                lease.set(Outcome::Failed);
                Err(Attempt::Refused(Refusal::close(502)))
            }
        }
    }

    /// Sends the response head and streams the body to the client.
    fn relay_response<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        head: &RequestHead,
        client_keep_alive: bool,
        mut conn: UpstreamConn,
        mut lease: Lease<'_>,
        response: &ResponseHead,
    ) -> Result<Exchange, Refusal> {
        let backend = lease.backend();
        let framing = response_framing(&head.method, response).map_err(|err| {
            log::warn!("upstream {backend}: unusable response framing: {err}");
            lease.set(Outcome::Failed);
            Refusal {
                status: Some(502),
                keep_alive: client_keep_alive,
            }
        })?;
        // An HTTP/1.0 client cannot read chunked encoding: it gets the raw body, ended by close.
        let (out_framing, encoding) = match framing {
            BodyFraming::Empty => (OutFraming::NoBody, Encoding::Raw),
            BodyFraming::Length(n) => (OutFraming::Length(n), Encoding::Raw),
            _ if head.minor_version >= 1 => (OutFraming::Chunked, Encoding::Chunked),
            _ => (OutFraming::Close, Encoding::Raw),
        };
        let keep_alive = client_keep_alive && out_framing != OutFraming::Close;
        let reply_head = client_response(
            response,
            out_framing,
            keep_alive,
            head.minor_version,
            &self.config.via_name,
        );
        if client.write_all(&reply_head).is_err() {
            return Err(Refusal::silent());
        }
        let status = response.status;
        match copy_body(
            &mut conn,
            framing,
            client,
            encoding,
            &self.upstream_limits,
            None,
        ) {
            Ok(bytes) => {
                lease.set(Outcome::Answered);
                if upstream_reusable(response, framing) {
                    self.connector.checkin(backend, conn);
                }
                Ok(Exchange {
                    status,
                    bytes,
                    keep_alive,
                })
            }
            Err(BodyError::Source(err)) => {
                // Never pass a cut-off body off as complete: closing is the only honest signal.
                log::warn!("upstream {backend}: response broke off: {err}");
                lease.set(Outcome::Failed);
                Ok(Exchange {
                    status,
                    bytes: 0,
                    keep_alive: false,
                })
            }
            Err(_) => {
                // The client went away: the backend did its part.
                lease.set(Outcome::Answered);
                Ok(Exchange {
                    status,
                    bytes: 0,
                    keep_alive: false,
                })
            }
        }
    }
}

/// What `send_request` needs to know about the request it forwards.
struct Request<'a> {
    head: &'a RequestHead,
    framing: BodyFraming,
    expects_continue: bool,
    body_pending: bool,
    client_keep_alive: bool,
    peer: SocketAddr,
}

/// Why one attempt at a backend failed.
enum Attempt {
    /// Another backend may be tried: nothing was sent, or what was sent is safe to repeat.
    Retry(RetryReason),
    /// The request cannot go on; answer the client.
    Refused(Refusal),
}

enum RetryReason {
    /// The connection could not be opened.
    Connect(std::io::Error),
    /// The backend closed a replayable request's connection without answering.
    Dropped,
}

/// Whether a request may be sent again to another backend after it was sent once: its method
/// is idempotent (RFC 9110 section 9.2.2) and it has no body that would have to be kept.
fn replayable(req: &Request<'_>) -> bool {
    const IDEMPOTENT: &[&str] = &["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];
    !req.body_pending && IDEMPOTENT.contains(&req.head.method.as_str())
}

/// Whether a failed response read saw no byte of a response: the connection was closed or
/// reset before anything arrived.
fn nothing_received(err: &HttpError, conn: &UpstreamConn) -> bool {
    let dropped = match err {
        HttpError::Closed => true,
        HttpError::Io(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
        _ => false,
    };
    dropped && conn.buffered().is_empty()
}

/// Reads response heads until a final one: `100 Continue` and other interim responses are
/// consumed here (the proxy answered `Expect` itself), `101` is refused as we do not tunnel.
fn read_final_head(
    conn: &mut UpstreamConn,
    limits: &Limits,
    timeout: Duration,
) -> Result<ResponseHead, HttpError> {
    // A backend streaming interim responses forever must not hold the thread.
    const MAX_INTERIM: usize = 16;
    for _ in 0..MAX_INTERIM {
        let head = read_response_head(conn, limits, Some(timeout))?;
        match head.status {
            101 => return Err(HttpError::BadSyntax("upgrade not requested")),
            100..=199 => continue,
            200..=599 => return Ok(head),
            _ => return Err(HttpError::BadSyntax("status outside 100-599")),
        }
    }
    Err(HttpError::BadSyntax("too many interim responses"))
}

/// `Expect: 100-continue` is honoured (HTTP/1.1 only, RFC 9110 section 10.1.1); any other
/// expectation is refused with 417.
fn expects_continue(head: &RequestHead) -> Result<bool, Refusal> {
    match head.header("expect") {
        None => Ok(false),
        Some(value) if value.trim_ascii().eq_ignore_ascii_case(b"100-continue") => {
            Ok(head.minor_version >= 1)
        }
        Some(_) => Err(Refusal::from_client(&HttpError::ExpectationFailed)),
    }
}

/// HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless asked to keep it.
fn wants_keep_alive(head: &RequestHead) -> bool {
    if head.has_token("connection", "close") {
        return false;
    }
    head.minor_version >= 1 || head.has_token("connection", "keep-alive")
}

/// Whether the upstream connection can carry another request after this response.
fn upstream_reusable(response: &ResponseHead, framing: BodyFraming) -> bool {
    framing != BodyFraming::UntilClose
        && !response.has_token("connection", "close")
        && (response.minor_version >= 1 || response.has_token("connection", "keep-alive"))
}

/// After an error reply, reads (and drops) what the client is still sending for a moment before
/// closing. Closing a socket with unread data sends a reset, which can destroy the reply before
/// the client reads it; nginx calls this lingering close.
fn linger<S: Socket>(client: &mut BufStream<S>) {
    const LINGER: Duration = Duration::from_secs(1);
    const MAX_DRAINED: usize = 1024 * 1024;
    if client.shutdown_write().is_err() || client.set_read_timeout(Some(LINGER)).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut drained = 0;
    let mut sink = [0u8; 8192];
    while drained < MAX_DRAINED && Instant::now() < deadline {
        match client.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// The proxy's own answer for `status`. A 503 (no backend can take the request) says when to
/// come back, as RFC 9110 section 10.2.3 suggests.
///
/// The answer to a HEAD has the same headers and no body: a body there would be read as the
/// start of the next response on a kept connection.
fn error_reply(status: u16, keep_alive: bool, method: &str) -> Vec<u8> {
    let body = format!("{status} {}\n", crate::http::headers::reason_phrase(status));
    let extra: &[(&str, &str)] = if status == 503 {
        &[("Retry-After", "1")]
    } else {
        &[]
    };
    let mut reply = local_response(status, extra, &body, keep_alive);
    if method == "HEAD" {
        reply.truncate(reply.len() - body.len());
    }
    reply
}

fn log_exchange(
    peer: SocketAddr,
    head: Option<&RequestHead>,
    status: u16,
    bytes: u64,
    started: Instant,
) {
    if !access_log::enabled() {
        return; // skip formatting the request line on the hot path
    }
    let request_line = head.map_or_else(
        || "-".to_owned(),
        |h| format!("{} {} HTTP/1.{}", h.method, h.target, h.minor_version),
    );
    access_log::write(&access_log::Entry {
        client: peer.ip(),
        request_line: &request_line,
        status,
        bytes,
        referer: head.and_then(|h| h.header("referer")),
        user_agent: head.and_then(|h| h.header("user-agent")),
        duration: started.elapsed(),
    });
}
