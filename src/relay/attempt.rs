//! Attempts at backends for one request: pick one, send the head and body, read the final
//! response head; and the rules for when another backend may be tried.
//!
//! A request goes to another backend only when that cannot do harm: nothing reached the
//! first one (the connection was refused), or the request is replayable (an idempotent
//! method, no body) and the backend closed without a byte of answer. A timeout is a 504,
//! never a retry: the backend may still be working on it.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::duplex::{self, Upload};
use super::exchange::{Refusal, Request};
use super::phases::Phases;
use super::upgrade;
use super::Relay;
use crate::http::body::BodyError;
use crate::http::head::read_response_head;
use crate::http::headers::{client_response, upstream_request, ForwardInfo, OutFraming};
use crate::http::pump::BodyPump;
use crate::http::{BodyFraming, BufStream, HttpError, ResponseHead, Socket};
use crate::upstream::{Lease, Outcome, UpstreamConn, UpstreamTimeouts, Upstreams};

/// A backend's final response head, and what the relay must know to pass it on.
pub(super) struct Answer<'u> {
    pub(super) conn: UpstreamConn,
    pub(super) lease: Lease<'u>,
    pub(super) response: ResponseHead,
    /// What is left of the request body when the response head came.
    pub(super) request_body: RequestBody,
    /// From the start of this attempt to the final response head.
    pub(super) waited: Duration,
}

/// The request body when the origin's final response head arrived.
pub(super) enum RequestBody {
    /// All sent (or there was none).
    Sent,
    /// The origin answered before the body was all sent, with a refusal (a 413 or 401 to a
    /// large upload): the rest of the body is still on the client connection, and the
    /// upstream connection is out of step. Neither may carry another request (RFC 9112
    /// section 9.6).
    Cut,
    /// The origin answered early with a 2xx and may read on (an echo): the rest goes up while
    /// the response is relayed (`duplex.rs`).
    Streaming(BodyPump),
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

impl<P: Phases> Relay<P> {
    /// Tries backends of `upstreams` until one answers with a final response head, or none
    /// is left to try.
    pub(super) fn attempts<'u, S: Socket>(
        &self,
        client: &mut BufStream<S>,
        req: &Request<'_>,
        upstreams: &'u dyn Upstreams,
    ) -> Result<Answer<'u>, Refusal> {
        // On the stack: a request tries one backend, or a few when they fail.
        let mut tried: SmallVec<[SocketAddr; 4]> = SmallVec::new();
        let retries = upstreams
            .policy()
            .map_or(self.config.retries, |group| group.retries);
        loop {
            let Some(mut lease) = Lease::pick(upstreams, req.peer.ip(), &tried) else {
                let status = if tried.is_empty() { 503 } else { 502 };
                return Err(Refusal {
                    status: Some(status),
                    keep_alive: req.client_keep_alive && !req.body_pending,
                    upstream: tried.last().copied(),
                });
            };
            let backend = lease.backend();
            tried.push(backend);
            let started = Instant::now();
            match self.send_request(client, req, &mut lease) {
                Ok((conn, response, request_body)) => {
                    return Ok(Answer {
                        conn,
                        lease,
                        response,
                        request_body,
                        waited: started.elapsed(),
                    })
                }
                Err(Attempt::Retry(reason)) => {
                    if let RetryReason::Connect(err) = reason {
                        log::warn!("upstream {backend}: connect failed: {err}");
                        lease.set(Outcome::ConnectFailed);
                    }
                    if tried.len() > retries {
                        return Err(Refusal::status(
                            502,
                            req.client_keep_alive && !req.body_pending,
                            backend,
                        ));
                    }
                }
                Err(Attempt::Refused(mut refusal)) => {
                    refusal.upstream = Some(backend);
                    return Err(refusal);
                }
            }
        }
    }

    /// Sends the request head and body to the lease's backend and reads the final response
    /// head.
    fn send_request<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        req: &Request<'_>,
        lease: &mut Lease<'_>,
    ) -> Result<(UpstreamConn, ResponseHead, RequestBody), Attempt> {
        let backend = lease.backend();
        let info = ForwardInfo {
            client_ip: req.peer.ip(),
            proto: req.proto,
            via_name: &self.config.via_name,
            // Formatted only when the client sent no Host: no allocation per request.
            fallback_host: backend,
        };
        let out_framing = match req.framing {
            BodyFraming::Length(n) => OutFraming::Length(n),
            BodyFraming::Chunked => OutFraming::Chunked,
            BodyFraming::Empty | BodyFraming::UntilClose => OutFraming::NoBody,
        };
        let mut request_head = upstream_request(req.head, &info, out_framing);
        if let Some(protocols) = req.upgrade {
            request_head = upgrade::with_upgrade_headers(request_head, protocols.as_bytes());
        }
        let timeouts = self.timeouts_for(lease);
        let (mut conn, mut reused) = self
            .connector
            .checkout_within(backend, replayable(req), timeouts)
            .map_err(|e| Attempt::Retry(RetryReason::Connect(e)))?;
        loop {
            if let Err(err) = conn.write_all(&request_head) {
                if reused {
                    // A kept connection the backend closed meanwhile: nothing was delivered,
                    // so sending again on a new connection is safe.
                    conn = self
                        .connector
                        .connect_within(backend, timeouts)
                        .map_err(|e| Attempt::Retry(RetryReason::Connect(e)))?;
                    reused = false;
                    continue;
                }
                log::warn!("upstream {backend}: sending the request failed: {err}");
                lease.set(Outcome::Failed);
                return Err(Attempt::Refused(Refusal::status(
                    502,
                    req.client_keep_alive && !req.body_pending,
                    backend,
                )));
            }
            if req.body_pending {
                if let Some((early, rest)) = self.send_body(client, req, &mut conn, lease)? {
                    return Ok((conn, early, rest));
                }
            }
            let mut interim_seen = false;
            let head =
                self.read_final_head(client, req, &mut conn, timeouts.read, &mut interim_seen);
            // An interim response (a 103 already forwarded) shows the backend saw the request.
            let silent =
                |err: &HttpError, conn: &UpstreamConn| !interim_seen && nothing_received(err, conn);
            match head {
                Ok(response) => return Ok((conn, response, RequestBody::Sent)),
                // A kept connection the backend closed or reset just as the request went out.
                // It may have seen the request, so only a replayable one is sent again.
                Err(err) if reused && replayable(req) && silent(&err, &conn) => {
                    conn = self
                        .connector
                        .connect_within(backend, timeouts)
                        .map_err(|e| Attempt::Retry(RetryReason::Connect(e)))?;
                    reused = false;
                }
                Err(err) if replayable(req) && silent(&err, &conn) => {
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
                    return Err(Attempt::Refused(Refusal::status(
                        504,
                        req.client_keep_alive,
                        backend,
                    )));
                }
                Err(err) => {
                    log::warn!("upstream {backend}: bad response: {err}");
                    lease.set(Outcome::Failed);
                    return Err(Attempt::Refused(Refusal::status(
                        502,
                        req.client_keep_alive,
                        backend,
                    )));
                }
            }
        }
    }

    /// Sends the request body from the client to the backend, watching for an early answer
    /// (see `duplex.rs`). Returns the origin's final response head if it came before the body
    /// was all sent, with what is left of the body. An early refusal (3xx to 5xx: a 413 or
    /// 401 to a large upload) stops the upload, and the proxy relays it instead of pushing on
    /// into a backend that has stopped reading. An early 2xx may come from a backend that
    /// streams while it reads (an echo): the response is relayed while the body goes on.
    fn send_body<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        req: &Request<'_>,
        conn: &mut UpstreamConn,
        lease: &mut Lease<'_>,
    ) -> Result<Option<(ResponseHead, RequestBody)>, Attempt> {
        if req.expects_continue && client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
            return Err(Attempt::Refused(Refusal::silent()));
        }
        client
            .set_read_timeout(Some(self.config.client.timeouts.body))
            .map_err(|_| Attempt::Refused(Refusal::silent()))?;
        let limits = &self.config.client.limits;
        let Some(mut pump) = BodyPump::new(req.framing, limits.max_body) else {
            return Ok(None);
        };
        let uploaded = duplex::upload(client, conn, &mut pump, self.duplex_bounds(lease));
        // What reached the backend was read from the client, even if the upload then failed.
        req.count_received(pump.sent());
        match uploaded {
            Ok(Upload::Sent) => Ok(None),
            Ok(Upload::Answered(head)) => {
                log::debug!(
                    "upstream {}: answered {} before the request body was sent",
                    lease.backend(),
                    head.status
                );
                let rest = if head.status >= 300 {
                    RequestBody::Cut
                } else {
                    RequestBody::Streaming(pump)
                };
                Ok(Some((head, rest)))
            }
            Err(BodyError::Source(err)) => {
                // The client's failure: the lease stays `Abandoned`, so the backend's health
                // does not pay for it.
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

    /// The timeouts for the lease's backend: its group's own, else the relay's.
    pub(super) fn timeouts_for(&self, lease: &Lease<'_>) -> UpstreamTimeouts {
        lease
            .policy()
            .map_or(self.connector.timeouts(), |group| group.timeouts())
    }

    /// What the waits of a duplex exchange with the lease's backend are bounded by.
    pub(super) fn duplex_bounds(&self, lease: &Lease<'_>) -> duplex::Bounds<'_> {
        duplex::Bounds {
            limits: &self.config.client.limits,
            upstream_limits: &self.upstream_limits,
            upstream_timeout: self.timeouts_for(lease).read,
            body_timeout: self.config.client.timeouts.body,
        }
    }
}

/// Whether a request may be sent again to another backend after it was sent once: its method
/// is idempotent (RFC 9110 section 9.2.2) and it has no body that would have to be kept.
fn replayable(req: &Request<'_>) -> bool {
    crate::exercise::stub!("replayable");
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

impl<P: Phases> Relay<P> {
    /// Reads response heads until a final one. Interim responses (RFC 9110 section 15.2) go
    /// on to an HTTP/1.1 client as they come (a `103 Early Hints` lets a browser start
    /// fetching before the page is ready); an HTTP/1.0 client cannot read them, and gets none.
    /// `100 Continue` is never forwarded: the proxy answered `Expect` itself. `101` ends the
    /// wait when the request offered an upgrade (see `switch.rs`), and is a bad response
    /// otherwise.
    fn read_final_head<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        req: &Request<'_>,
        conn: &mut UpstreamConn,
        timeout: Duration,
        interim_seen: &mut bool,
    ) -> Result<ResponseHead, HttpError> {
        // A backend streaming interim responses forever must not hold the thread.
        const MAX_INTERIM: usize = 16;
        for _ in 0..MAX_INTERIM {
            let head = read_response_head(conn, &self.upstream_limits, Some(timeout))?;
            *interim_seen |= head.status < 200;
            match head.status {
                // The switch the request offered: final for this exchange, the tunnel's start.
                101 if req.upgrade.is_some() => return Ok(head),
                101 => return Err(HttpError::BadSyntax("upgrade not requested")),
                100 => continue,
                102..=199 => {
                    if req.head.minor_version >= 1 {
                        let interim = client_response(
                            &head,
                            OutFraming::NoBody,
                            true,
                            1,
                            &self.config.via_name,
                        );
                        // A client that went away shows when the final response is written.
                        let _ = client.write_all(&interim);
                    }
                }
                200..=599 => return Ok(head),
                _ => return Err(HttpError::BadSyntax("status outside 100-599")),
            }
        }
        Err(HttpError::BadSyntax("too many interim responses"))
    }
}
