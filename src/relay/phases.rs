//! The fixed points of one exchange where later stages plug in, as pingora's phases do.
//!
//! ```text
//!  client ──▶ request ──▶ route ──▶ upstream ──▶ response head ──▶ response body ──▶ client
//!               │ (answer without a backend)        ▲                                  │
//!               └───────────────▶ response head ────┘                 logging ◀────────┘
//! ```
//!
//! - *request* sees the parsed head and the client; it may rewrite the head or answer itself
//!   with a [`Reply`] (access control's 401, a fixed page, a cache hit);
//! - *route* picks the upstream group from Host and path;
//! - *upgrade* (only for a request with `Connection: upgrade`) decides whether it may switch
//!   protocols, when the relay's own setting should not (a route that allows WebSocket);
//! - *upstream answer* sees what came back from the upstream (a response head, or the
//!   proxy's own 502/503/504 when none came) before anything is sent, and may answer the
//!   client with a [`Reply`] instead (a cache's stored body after a `304` to its own
//!   revalidation, a stale copy when the origin fails);
//! - *response head* may change the headers and plans the body: observers that see the
//!   payload as the origin sent it (the cache's copy), then transforms that change it for the
//!   client (a compressor);
//! - *logging* gets one [`Summary`] of every exchange, the proxy's own refusals included.
//!
//! Every method has a no-op default, so [`NoPhases`] (stages 1 to 6) compiles to the plain
//! relay. Phases know nothing of the concurrency model; the HTTP core knows nothing of phases.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::Reply;
use crate::http::{RequestHead, ResponseHead};
use crate::metrics::report::PhaseReport;
use crate::upstream::Upstreams;

/// What a phase knows about the client connection.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub peer: SocketAddr,
    /// `http` or `https`: the scheme the request arrived with.
    pub proto: &'static str,
}

/// The hooks of one exchange. `Ctx` is what a phase set keeps between its hooks for one
/// request (a cache key, the matched route); a fresh `Ctx::default()` starts each exchange.
pub trait Phases: Send + Sync + 'static {
    type Ctx: Default + Send;

    /// Before anything goes upstream: rewrite `head`, or answer with a reply of our own.
    /// The framing headers (`Content-Length`, `Transfer-Encoding`) and `Expect` are decided
    /// before this runs and must not be changed. The log shows the head as rewritten; a phase
    /// that changes the target and wants the original logged keeps it in its `Ctx`. The one
    /// method change allowed is HEAD to GET (a cache filling on a HEAD miss, as nginx's
    /// `proxy_cache_convert_head`): the client still gets the head alone, the body goes to the
    /// observers only, and the log says HEAD.
    fn request(
        &self,
        _ctx: &mut Self::Ctx,
        _head: &mut RequestHead,
        _client: &Client,
    ) -> Option<Reply> {
        None
    }

    /// The upstream group for this request; `None` leaves it to the relay's default.
    fn route<'a>(&'a self, _ctx: &mut Self::Ctx, _head: &RequestHead) -> Option<&'a dyn Upstreams> {
        None
    }

    /// Whether a request asking to switch protocols (`Upgrade: websocket`) may: `Some`
    /// decides, `None` leaves it to the relay's `upgrades.allow`. Runs after `route`, so what
    /// the route phase kept in `Ctx` can decide. `protocols` is what the request asks for,
    /// refused ones (h2c) already taken out; a request refused here goes upstream without its
    /// upgrade headers, as a plain request.
    fn upgrade(&self, _ctx: &mut Self::Ctx, _head: &RequestHead, _protocols: &str) -> Option<bool> {
        None
    }

    /// What came back from upstream, before anything is sent to the client: a reply returned
    /// here is sent instead (through `response_head`, like a request-phase reply), and the
    /// upstream's body is dropped unread (its connection is then not reused). A reply to a
    /// request whose body went upstream closes the connection.
    fn upstream_answer(
        &self,
        _ctx: &mut Self::Ctx,
        _request: &RequestHead,
        _answer: UpstreamAnswer<'_>,
    ) -> Option<Reply> {
        None
    }

    /// The response head is known and nothing is sent yet: change headers, plan the body.
    /// Also called for replies that the request phase made, so that a cache hit is compressed
    /// like a miss (such a reply's head carries its body's `Content-Length` here, as a
    /// backend's does); never for the proxy's own error replies.
    fn response_head(
        &self,
        _ctx: &mut Self::Ctx,
        _request: &RequestHead,
        _response: &mut ResponseHead,
        _body: &mut BodyPlan,
    ) {
    }

    /// Whether `response_head` reads the fields of replies that phases made (a compressor
    /// reads `Content-Type`): when no phase does, a reply's shared fields (a cache hit's
    /// stored ones, [`Reply::shared`]) are written as serialised once, never copied into its
    /// head, and `response_head` sees only the fields the reply adds. A phase that only adds
    /// fields to such replies may say `false`.
    fn reads_reply_fields(&self) -> bool {
        true
    }

    /// The exchange is over (or was refused before a request could be read). It may run on
    /// the accept loop or stage 4's parker (refusals made there), so it must never block:
    /// count, or queue the summary for another thread.
    fn logging(&self, _ctx: &mut Self::Ctx, _summary: &Summary<'_>) {}

    /// Who the client proved to be (an API key's name, a JWT subject), for the access log's
    /// user field; never a secret. Asked after `logging`.
    fn user<'c>(&self, _ctx: &'c Self::Ctx) -> Option<&'c str> {
        None
    }

    /// The cache's verdict on this exchange (`HIT`, `MISS`...), for the access log; `None`
    /// where no cache took part.
    fn cache_status(&self, _ctx: &Self::Ctx) -> Option<&'static str> {
        None
    }

    /// Adds what this phase set counts itself (a cache's hits, access decisions) to `report`,
    /// for `/metrics` and the status page. Called by the admin listener's thread, never on
    /// the request path.
    fn report(&self, _report: &mut PhaseReport) {}
}

/// The phases of stages 1 to 6: none.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPhases;

impl Phases for NoPhases {
    type Ctx = ();

    fn reads_reply_fields(&self) -> bool {
        false
    }
}

/// Two phase sets in a chain: `A` runs first at every point. A reply from `A`'s request phase
/// skips `B`'s; a route from `A` wins over `B`'s; both plan the body (A's observers and
/// transforms first) and both log.
impl<A: Phases, B: Phases> Phases for (A, B) {
    type Ctx = (A::Ctx, B::Ctx);

    fn request(
        &self,
        ctx: &mut Self::Ctx,
        head: &mut RequestHead,
        client: &Client,
    ) -> Option<Reply> {
        self.0
            .request(&mut ctx.0, head, client)
            .or_else(|| self.1.request(&mut ctx.1, head, client))
    }

    fn route<'a>(&'a self, ctx: &mut Self::Ctx, head: &RequestHead) -> Option<&'a dyn Upstreams> {
        match self.0.route(&mut ctx.0, head) {
            Some(upstreams) => Some(upstreams),
            None => self.1.route(&mut ctx.1, head),
        }
    }

    fn upgrade(&self, ctx: &mut Self::Ctx, head: &RequestHead, protocols: &str) -> Option<bool> {
        self.0
            .upgrade(&mut ctx.0, head, protocols)
            .or_else(|| self.1.upgrade(&mut ctx.1, head, protocols))
    }

    fn upstream_answer(
        &self,
        ctx: &mut Self::Ctx,
        request: &RequestHead,
        answer: UpstreamAnswer<'_>,
    ) -> Option<Reply> {
        self.0
            .upstream_answer(&mut ctx.0, request, answer)
            .or_else(|| self.1.upstream_answer(&mut ctx.1, request, answer))
    }

    fn response_head(
        &self,
        ctx: &mut Self::Ctx,
        request: &RequestHead,
        response: &mut ResponseHead,
        body: &mut BodyPlan,
    ) {
        self.0.response_head(&mut ctx.0, request, response, body);
        self.1.response_head(&mut ctx.1, request, response, body);
    }

    fn reads_reply_fields(&self) -> bool {
        self.0.reads_reply_fields() || self.1.reads_reply_fields()
    }

    fn logging(&self, ctx: &mut Self::Ctx, summary: &Summary<'_>) {
        self.0.logging(&mut ctx.0, summary);
        self.1.logging(&mut ctx.1, summary);
    }

    fn user<'c>(&self, ctx: &'c Self::Ctx) -> Option<&'c str> {
        self.0.user(&ctx.0).or_else(|| self.1.user(&ctx.1))
    }

    fn cache_status(&self, ctx: &Self::Ctx) -> Option<&'static str> {
        self.0
            .cache_status(&ctx.0)
            .or_else(|| self.1.cache_status(&ctx.1))
    }

    fn report(&self, report: &mut PhaseReport) {
        self.0.report(report);
        self.1.report(report);
    }
}

/// What the upstream phase of an exchange produced.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamAnswer<'a> {
    /// A backend's final response head; its body is still unread.
    Response(&'a ResponseHead),
    /// No response: the proxy's own error status (502 unreachable or broken, 503 no backend,
    /// 504 timeout; a 4xx when the client's request body failed).
    Failed(u16),
}

/// Sees the response payload as the origin sent it, decoded (never chunk framing).
pub trait BodyObserver: Send {
    fn data(&mut self, bytes: &[u8]);

    /// Called exactly once: `complete` is false when the origin broke off, or the client went
    /// away before the whole body was read. A response without a body (to a HEAD, a 204, a
    /// 304) ends at once, complete.
    fn end(&mut self, complete: bool);
}

/// Changes the payload on its way to the client. A transform may hold bytes back (a
/// compressor fills a block) and must give them up in `flush` and `finish`.
pub trait BodyTransform: Send {
    /// Transforms `input`, appending what is ready to `out`.
    fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()>;

    /// The origin has paused: append everything that `input` so far accounts for, so the
    /// client can use it now. A transform that holds nothing back has nothing to do.
    fn flush(&mut self, _out: &mut Vec<u8>) -> io::Result<()> {
        Ok(())
    }

    /// The payload has ended: append whatever is left.
    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()>;
}

type Observers = Vec<Box<dyn BodyObserver>>;
type Transforms = Vec<Box<dyn BodyTransform>>;

/// What happens to a response body on its way: observers first (they see the identity body),
/// then transforms in order. A plan with a transform re-frames the body (chunked for
/// HTTP/1.1, close-delimited for HTTP/1.0) and drops `Content-Length`, since the length
/// changes. An empty plan costs nothing: the body is copied as before.
#[derive(Default)]
pub struct BodyPlan {
    observers: Observers,
    transforms: Transforms,
}

impl BodyPlan {
    pub fn observe(&mut self, observer: impl BodyObserver + 'static) {
        self.observers.push(Box::new(observer));
    }

    pub fn transform(&mut self, transform: impl BodyTransform + 'static) {
        self.transforms.push(Box::new(transform));
    }

    /// Whether the body reaches the client as the origin sent it.
    pub fn keeps_length(&self) -> bool {
        self.transforms.is_empty()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.observers.is_empty() && self.transforms.is_empty()
    }

    /// Ends a plan for a response that has no body: observers learn it ended (complete), and
    /// transforms never run, since even an empty compressed stream has bytes that would be
    /// read as the start of the next response.
    pub(super) fn end_without_body(mut self) {
        for mut observer in std::mem::take(&mut self.observers) {
            observer.end(true);
        }
    }

    /// Hands the observers and transforms to the body pipeline, which then owns the promise
    /// to end every observer.
    pub(super) fn take(&mut self) -> (Observers, Transforms) {
        (
            std::mem::take(&mut self.observers),
            std::mem::take(&mut self.transforms),
        )
    }
}

impl Drop for BodyPlan {
    /// A plan dropped unused (the client went away before the head was written) still tells
    /// its observers that the body did not arrive: a cache waiting on one must not wait on.
    fn drop(&mut self) {
        for observer in &mut self.observers {
            observer.end(false);
        }
    }
}

/// Who produced the answer an exchange ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnsweredBy {
    /// A backend's response, relayed.
    Upstream,
    /// A reply from the request phase (a fixed page, a cache hit, a 401).
    Phase,
    /// The proxy's own refusal or error (400, 408, 413, 502, 503, 504, ...), or nothing at all
    /// when the client went away (logged as 499, as nginx does).
    Proxy,
}

/// One exchange, for the logging phase and the access log.
#[derive(Debug, Clone, Copy)]
pub struct Summary<'a> {
    pub peer: SocketAddr,
    /// `None` when no request head could be read (a 400, a 408, a refusal at accept).
    pub request: Option<&'a RequestHead>,
    pub status: u16,
    /// Body bytes sent to the client, as far as they went.
    pub body_bytes: u64,
    /// Request body bytes read from the client (decoded: a chunked body's data, not its
    /// framing), as far as they went: those sent upstream, or read and dropped for a reply of
    /// the proxy's own on a kept connection. 0 for a bodiless request, and for one whose body
    /// was left unread (a 413 on its `Content-Length`, a reply to a client still waiting for
    /// `100 Continue`, a reply on a connection that closes: its body is never parsed).
    pub request_bytes: u64,
    pub duration: Duration,
    /// The backend that answered (or was last tried).
    pub upstream: Option<SocketAddr>,
    /// From sending the request to the backend that answered to its response head (the
    /// backend's own time, plus the request body's upload); `None` when none answered.
    pub upstream_time: Option<Duration>,
    pub answered_by: AnsweredBy,
    /// The TLS version of the client connection (`TLSv1.3`), `None` over plain TCP (see
    /// `Socket::tls_version`).
    pub tls_version: Option<&'static str>,
}
