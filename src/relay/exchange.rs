//! One request, from its protocol checks to its answer: the request phase, the route, the
//! attempts at backends (`attempt.rs`), the response (`response.rs`), or a reply of our own.

use std::cell::Cell;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::pace::Paced;
use super::phases::{AnsweredBy, BodyPlan, Client, Phases, UpstreamAnswer};
use super::pipeline::BodySink;
use super::reply::{self, Reply};
use super::Relay;
use crate::http::body::{check_first_chunk_line, copy_body_counting, Encoding};
use crate::http::framing::request_framing;
use crate::http::head::Headers;
use crate::http::headers::OutFraming;
use crate::http::{BodyFraming, BufStream, Header, HttpError, RequestHead, Socket};

/// What the attempts and the response need to know about the request.
#[derive(Clone, Copy)]
pub(super) struct Request<'a> {
    pub(super) head: &'a RequestHead,
    pub(super) framing: BodyFraming,
    pub(super) expects_continue: bool,
    pub(super) body_pending: bool,
    pub(super) client_keep_alive: bool,
    pub(super) peer: SocketAddr,
    /// The protocols to offer the origin (`Upgrade`), when the request may switch.
    pub(super) upgrade: Option<&'a str>,
    /// `http` or `https`: how this connection reached us (for `X-Forwarded-Proto`).
    pub(super) proto: &'static str,
    /// The client asked with HEAD: it gets the head alone, even when the request phase
    /// turned the request into a GET (a cache that fills on a HEAD miss).
    pub(super) head_only: bool,
    /// Request body bytes read from the client so far. A cell owned by the connection loop,
    /// so that the count survives a refusal as well as an answer (neither `Done` nor
    /// `Refusal` carries it).
    pub(super) received: &'a Cell<u64>,
}

impl Request<'_> {
    /// Adds `bytes` of request body read from the client.
    pub(super) fn count_received(&self, bytes: u64) {
        self.received.set(self.received.get().saturating_add(bytes));
    }
}

/// How one exchange ended, for the log and the connection loop.
pub(super) struct Done {
    pub(super) status: u16,
    pub(super) bytes: u64,
    pub(super) keep_alive: bool,
    pub(super) upstream: Option<SocketAddr>,
    /// From sending the request to the backend that answered to its response head.
    pub(super) upstream_time: Option<Duration>,
    pub(super) answered_by: AnsweredBy,
    /// The connection went to this tunnel thread, which logs the exchange itself.
    pub(super) tunnel: Option<std::thread::JoinHandle<()>>,
    /// The cache phase's verdict on the response sent, for the access log.
    pub(super) cache: Option<&'static str>,
}

impl Done {
    /// The proxy's own answer (or silence), without a body worth counting.
    pub(super) fn proxy(status: u16, keep_alive: bool, upstream: Option<SocketAddr>) -> Done {
        Done {
            status,
            bytes: 0,
            keep_alive,
            upstream,
            upstream_time: None,
            answered_by: AnsweredBy::Proxy,
            tunnel: None,
            cache: None,
        }
    }
}

/// A request the proxy answers with an error of its own (or, with no status, drops).
#[derive(Debug)]
pub(super) struct Refusal {
    /// `None`: the client is gone or unusable; close without a word.
    pub(super) status: Option<u16>,
    /// Whether the connection stays usable for another request (its bytes are in sync).
    pub(super) keep_alive: bool,
    /// The backend involved, when one was.
    pub(super) upstream: Option<SocketAddr>,
}

impl Refusal {
    pub(super) fn close(status: u16) -> Refusal {
        Refusal {
            status: Some(status),
            keep_alive: false,
            upstream: None,
        }
    }

    pub(super) fn silent() -> Refusal {
        Refusal {
            status: None,
            keep_alive: false,
            upstream: None,
        }
    }

    pub(super) fn from_client(err: &HttpError) -> Refusal {
        Refusal {
            status: err.client_status(),
            keep_alive: false,
            upstream: None,
        }
    }

    /// An error status after which the connection lives on if `keep_alive`.
    pub(super) fn status(status: u16, keep_alive: bool, upstream: SocketAddr) -> Refusal {
        Refusal {
            status: Some(status),
            keep_alive,
            upstream: Some(upstream),
        }
    }
}

impl<P: Phases> Relay<P> {
    /// Serves one request whose head was read; the request body bytes read from the client
    /// are added to `received`, whatever the outcome.
    pub(super) fn exchange<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        head: &mut RequestHead,
        peer: SocketAddr,
        ctx: &mut P::Ctx,
        started: Instant,
        received: &Cell<u64>,
    ) -> Result<Done, Refusal> {
        let limits = &self.config.client.limits;
        if head.method == "CONNECT" {
            // A reverse proxy does not open tunnels; forwarding CONNECT would let a client
            // reach whatever the backend can.
            return Err(Refusal::close(501));
        }
        if head.method == "TRACE" && !self.config.client.allow_trace {
            return Err(Refusal::close(405));
        }
        if !self.config.client.underscores_in_headers {
            // Dropped before anything reads them, framing included, as nginx ignores them:
            // a `Transfer_Encoding: chunked` frames nothing here and reaches no backend.
            head.headers.retain(|h| !h.name.contains('_'));
        }
        let framing = request_framing(head).map_err(|err| {
            log::debug!("{peer}: refusing {} {}: {err}", head.method, head.target);
            Refusal::from_client(&err)
        })?;
        if matches!(framing, BodyFraming::Length(n) if n > limits.max_body) {
            return Err(Refusal::close(413));
        }
        let expects_continue = expects_continue(head)?;
        let client_keep_alive = wants_keep_alive(head) && !self.draining();
        let body_pending = matches!(framing, BodyFraming::Chunked)
            || matches!(framing, BodyFraming::Length(n) if n > 0);

        let proto = client.get_ref().scheme();
        let client_info = Client { peer, proto };
        let head_only = head.method == "HEAD";
        let answer = self.phases.request(ctx, head, &client_info);
        let head: &RequestHead = head;
        let request = Request {
            head,
            framing,
            expects_continue,
            body_pending,
            client_keep_alive,
            peer,
            upgrade: None,
            proto,
            head_only,
            received,
        };
        if let Some(reply) = answer {
            return Ok(self.answer(client, &request, ctx, reply));
        }
        if framing == BodyFraming::Chunked && !expects_continue {
            // Checked before a backend is chosen, so invalid framing reaches none. A client
            // that asked `Expect: 100-continue` sends nothing before it hears 100; its first
            // line is checked as the body streams, like every later one.
            client
                .set_read_timeout(Some(self.config.client.timeouts.body))
                .map_err(|_| Refusal::silent())?;
            check_first_chunk_line(client, limits).map_err(|err| {
                log::debug!("{peer}: refusing {} {}: {err}", head.method, head.target);
                Refusal::from_client(&err)
            })?;
        }
        let upstreams = self.phases.route(ctx, head).unwrap_or(&*self.upstreams);
        let (protocols, offer) = self.upgrade_offer(&request, ctx)?.unzip();
        let request = Request {
            upgrade: protocols.as_deref(),
            ..request
        };
        let answer = match self.attempts(client, &request, upstreams) {
            Ok(answer) => answer,
            Err(refusal) => return self.failed(client, &request, ctx, refusal),
        };
        if let Some(offer) = offer {
            if answer.response.status == 101 {
                return self.switch(client, &request, ctx, answer, offer, started);
            }
        }
        self.relay_response(client, &request, ctx, answer)
    }

    /// No backend answered: the upstream-answer phase may still answer (a stale copy), else
    /// the refusal stands.
    fn failed<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        req: &Request<'_>,
        ctx: &mut P::Ctx,
        refusal: Refusal,
    ) -> Result<Done, Refusal> {
        let Some(status) = refusal.status else {
            return Err(refusal);
        };
        let Some(reply) =
            self.phases
                .upstream_answer(ctx, req.head, UpstreamAnswer::Failed(status))
        else {
            return Err(refusal);
        };
        Ok(self.answer_after_upstream(client, req, ctx, reply, refusal.upstream))
    }

    /// Sends a reply from the upstream-answer phase. A request body, if any, went upstream
    /// (or part of it did): it is not read again, and the connection closes, as nobody knows
    /// where in the client's bytes it stands.
    pub(super) fn answer_after_upstream<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        req: &Request<'_>,
        ctx: &mut P::Ctx,
        mut reply: Reply,
        upstream: Option<SocketAddr>,
    ) -> Done {
        if req.body_pending {
            reply.close = true;
        }
        let req = Request {
            body_pending: false,
            ..*req
        };
        let mut done = self.answer(client, &req, ctx, reply);
        done.upstream = upstream;
        done
    }

    /// Sends a reply that the request phase made, through the response phases like a
    /// backend's response.
    fn answer<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        req: &Request<'_>,
        ctx: &mut P::Ctx,
        mut reply: Reply,
    ) -> Done {
        let mut keep_alive = req.client_keep_alive && !reply.close && !self.draining();
        if req.body_pending {
            // The body was never read. A client waiting for `100 Continue` may never send it,
            // so the connection cannot be kept; otherwise it is read and dropped, so that the
            // next request starts where it should (nginx discards it the same way).
            keep_alive = keep_alive && !req.expects_continue && self.discard_body(client, req);
        }
        let bodiless_status = matches!(reply.status(), 204 | 304);
        if self.phases.reads_reply_fields() {
            reply.unshare();
        }
        // Only for phases that read it: a reply's shared fields never hold framing.
        let phases_read = reply.shared.is_none();
        if !bodiless_status && phases_read && reply.head.header("content-length").is_none() {
            // The response phases see a reply's length as they see a backend's (a
            // compressor's minimum length holds for a cache hit as for the miss that stored
            // it); the head written below states the framing itself, whatever this says.
            let length = reply.body.as_bytes().len().to_string();
            reply.head.headers.push(Header {
                name: "Content-Length".to_owned(),
                value: length.into_bytes(),
            });
        }
        let mut plan = BodyPlan::default();
        self.phases
            .response_head(ctx, req.head, &mut reply.head, &mut plan);
        let cache = self.phases.cache_status(ctx);
        let head_only = req.head_only || bodiless_status;
        let body = reply.body.as_bytes();
        // A 204 must not carry Content-Length (RFC 9110 section 8.6), and a 304's would
        // misstate the stored representation's; a HEAD gets the length its GET would get.
        let framing = if bodiless_status {
            OutFraming::NoBody
        } else if plan.keeps_length() {
            OutFraming::Length(body.len() as u64)
        } else if head_only {
            OutFraming::NoBody
        } else if req.head.minor_version >= 1 {
            OutFraming::Chunked
        } else {
            keep_alive = false;
            OutFraming::Close
        };
        let mut out = Vec::with_capacity(256);
        reply::write_head(
            &mut out,
            &reply.head,
            reply.shared.as_deref(),
            framing,
            keep_alive,
        );
        let status = reply.status();
        // A cache hit can be as large as any backend's body: slow readers are cut off here too.
        let mut paced = Paced::new(
            &mut *client,
            self.config.client.timeouts.send_rate(),
            req.peer,
        );
        let sent = if head_only {
            plan.end_without_body();
            paced.write_all(&out).map(|()| 0)
        } else if plan.is_empty() {
            write_head_and_body(&mut paced, out, body).map(|()| body.len() as u64)
        } else {
            paced
                .write_all(&out)
                .and_then(|()| send_through(&mut paced, framing, plan, body))
        };
        let bytes = match sent {
            Ok(bytes) => bytes,
            Err(_) => {
                keep_alive = false;
                0
            }
        };
        if !keep_alive && req.body_pending {
            reply::linger(client);
        }
        Done {
            status,
            bytes,
            keep_alive,
            upstream: None,
            upstream_time: None,
            answered_by: AnsweredBy::Phase,
            tunnel: None,
            cache,
        }
    }

    /// Reads a request body that nobody will use, within the body limit and timeout. Its
    /// bytes count as received: the client sent them, and they crossed the network.
    fn discard_body<S: Socket>(&self, client: &mut BufStream<S>, req: &Request<'_>) -> bool {
        let limits = &self.config.client.limits;
        if client
            .set_read_timeout(Some(self.config.client.timeouts.body))
            .is_err()
        {
            return false;
        }
        let mut read = 0;
        let discarded = copy_body_counting(
            client,
            req.framing,
            &mut io::sink(),
            Encoding::Raw,
            limits,
            Some(limits.max_body),
            &mut read,
        );
        req.count_received(read);
        discarded.is_ok()
    }
}

/// A head and a body from memory in one write: a small body is copied after the head, a
/// larger one (a cache hit's shared body) goes from where it is, gathered with the head.
fn write_head_and_body<W: Write>(client: &mut W, mut head: Vec<u8>, body: &[u8]) -> io::Result<()> {
    const COPY_BELOW: usize = 4096;
    if body.len() < COPY_BELOW {
        head.extend_from_slice(body);
        return client.write_all(&head);
    }
    let mut parts = [io::IoSlice::new(&head), io::IoSlice::new(body)];
    let mut parts = &mut parts[..];
    // Each turn writes at least one byte or fails, so this ends.
    while !parts.is_empty() {
        match client.write_vectored(parts) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut parts, n),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// A reply body from memory through the plan's observers and transforms.
fn send_through<W: Write>(
    client: &mut W,
    framing: OutFraming,
    plan: BodyPlan,
    body: &[u8],
) -> io::Result<u64> {
    let encoding = if framing == OutFraming::Chunked {
        Encoding::Chunked
    } else {
        Encoding::Raw
    };
    let mut sink = BodySink::new(client, encoding, plan);
    sink.write_all(body)?;
    sink.finish(true)?;
    Ok(sink.delivered())
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
