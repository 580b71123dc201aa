//! A backend's response on its way to the client: framing decided from what the origin sent,
//! the response-head phase, the head, then the body, straight or through the phases' plan;
//! beside the rest of the request body when the origin answered early (`duplex.rs`).

use std::cell::RefCell;
use std::io::{Read, Write};

use super::attempt::{Answer, RequestBody};
use super::duplex::{BodyEnd, DuplexSource, SharedClient};
use super::exchange::{Done, Refusal, Request};
use super::pace::Paced;
use super::phases::{AnsweredBy, BodyPlan, Phases, UpstreamAnswer};
use super::pipeline::BodySink;
use super::Relay;
use crate::http::body::{copy_body_counting, copy_body_flushing, BodyError, Encoding};
use crate::http::framing::response_framing;
use crate::http::head::Headers;
use crate::http::headers::{client_response, OutFraming};
use crate::http::{BodyFraming, BufStream, HttpError, ResponseHead, Socket};
use crate::upstream::Outcome;

/// Largest body read whole before anything goes to the client, and then sent in the same
/// write as its head (what nginx's proxy buffering does for every body): a 16 KiB answer
/// leaves in one write instead of three, each of which wakes the client. Larger bodies stream.
const MAX_INLINE_BODY: usize = 32 * 1024;

impl<P: Phases> Relay<P> {
    /// Sends the response head and streams the body to the client.
    pub(super) fn relay_response<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        req: &Request<'_>,
        ctx: &mut P::Ctx,
        answer: Answer<'_>,
    ) -> Result<Done, Refusal> {
        let Answer {
            mut conn,
            mut lease,
            mut response,
            request_body,
            waited,
        } = answer;
        let (request_body_cut, mut pump) = match request_body {
            RequestBody::Sent => (false, None),
            RequestBody::Cut => (true, None),
            RequestBody::Streaming(pump) => (false, Some(pump)),
        };
        let backend = lease.backend();
        // Whether the whole request body went up before this head. If not, both connections
        // are out of step: unread body bytes on the client one would be read as a request.
        let body_sent_first = !request_body_cut && pump.is_none();
        // Both decided on the head as the origin sent it, before a phase changes headers.
        let framing = response_framing(&req.head.method, &response).map_err(|err| {
            log::warn!("upstream {backend}: unusable response framing: {err}");
            lease.set(Outcome::Failed);
            Refusal::status(502, req.client_keep_alive && body_sent_first, backend)
        })?;
        // A connection whose body went up beside its response is not reused either: whether
        // the body ends before the response does is up to the client.
        let reusable = body_sent_first && upstream_reusable(&response, framing);
        if let Some(reply) =
            self.phases
                .upstream_answer(ctx, req.head, UpstreamAnswer::Response(&response))
        {
            // The backend answered; its body (if any) is not read, so its connection goes.
            lease.set(Outcome::Answered);
            if reusable && framing == BodyFraming::Empty {
                self.connector.checkin(backend, conn);
            }
            return Ok(self.answer_after_upstream(client, req, ctx, reply, Some(backend)));
        }

        let mut plan = BodyPlan::default();
        self.phases
            .response_head(ctx, req.head, &mut response, &mut plan);
        // An HTTP/1.0 client cannot read chunked encoding: it gets the raw body, ended by
        // close. A transform changes the length, so a Content-Length body is re-framed too.
        let (out_framing, encoding) = match framing {
            BodyFraming::Empty => (OutFraming::NoBody, Encoding::Raw),
            BodyFraming::Length(n) if plan.keeps_length() => (OutFraming::Length(n), Encoding::Raw),
            _ if req.head.minor_version >= 1 => (OutFraming::Chunked, Encoding::Chunked),
            _ => (OutFraming::Close, Encoding::Raw),
        };
        if framing == BodyFraming::Empty && !plan.keeps_length() {
            // A HEAD whose GET would be transformed: the identity length is not the length the
            // GET's body would have, so it is not sent (RFC 9110 section 9.3.2 lets a HEAD omit
            // what is only known by generating the body).
            response
                .headers
                .retain(|h| !h.name.eq_ignore_ascii_case("content-length"));
        }
        // Asked again here, not only when the request arrived: a response that a slow backend
        // sends after a shutdown started must close its connection too.
        let keep_alive = req.client_keep_alive
            && out_framing != OutFraming::Close
            && body_sent_first
            && !self.draining();
        let mut reply_head = client_response(
            &response,
            out_framing,
            keep_alive,
            req.head.minor_version,
            &self.config.via_name,
        );
        let cache = self.phases.cache_status(ctx);
        let done = |bytes, keep_alive| Done {
            status: response.status,
            bytes,
            keep_alive,
            upstream: Some(backend),
            upstream_time: Some(waited),
            answered_by: AnsweredBy::Upstream,
            tunnel: None,
            cache,
        };
        // A small body that arrived with the head leaves in the same write as the head: one
        // system call and one TCP segment fewer per response, the common case of an API. (A
        // response without a body is the same case with nothing to add.)
        // Only when the request body went up whole first, and the client gets the body.
        let plain = pump.is_none() && !req.head_only && plan.is_empty();
        let inline = match framing {
            BodyFraming::Length(n) if plain && encoding == Encoding::Raw => {
                usize::try_from(n).ok().filter(|&n| n <= MAX_INLINE_BODY)
            }
            BodyFraming::Empty if plain => Some(0),
            _ => None,
        };
        if let Some(n) = inline {
            if let Err(err) = buffer_whole(&mut conn, n) {
                // Broke off or stalled before its end: the client gets what came and a
                // close, as from the streaming path (which would only wait again).
                log::warn!("upstream {backend}: response broke off: {err}");
                lease.set(Outcome::Failed);
                let partial = conn.buffered().len().min(n);
                reply_head.extend_from_slice(&conn.buffered()[..partial]);
                let _ = self.send_whole(client, &reply_head, req, request_body_cut);
                return Ok(done(partial as u64, false));
            }
            reply_head.extend_from_slice(&conn.buffered()[..n]);
            conn.consume(n);
            // The backend's part is over before the client's write starts: its lease ends and
            // its connection is kept first, so a least-connections pick made the moment the
            // client has its answer never counts this exchange as still open.
            lease.set(Outcome::Answered);
            drop(lease);
            if reusable {
                self.connector.checkin(backend, conn);
            }
            if !self.send_whole(client, &reply_head, req, request_body_cut) {
                return Err(Refusal::silent());
            }
            return Ok(done(n as u64, keep_alive));
        }
        if std::io::Write::write_all(client, &reply_head).is_err() {
            return Err(Refusal::silent());
        }
        let mut delivered = 0;
        let (copied, body_end) = match pump.take() {
            // The client asked HEAD and a request phase fetched a GET (a cache filling on a
            // miss): the body goes to the observers and no further, and the backend's
            // connection stays in step.
            None if req.head_only => (
                self.copy_response(
                    &mut conn,
                    &mut std::io::sink(),
                    framing,
                    Encoding::Raw,
                    plan,
                    &mut 0,
                ),
                BodyEnd::Sent,
            ),
            // A slow reader is cut off here, through the same path as a client that went
            // away. (Not yet in the duplex case below, where the per-write timeout holds.)
            None => (
                self.copy_response(
                    &mut conn,
                    &mut Paced::new(
                        &mut *client,
                        self.config.client.timeouts.send_rate(),
                        req.peer,
                    ),
                    framing,
                    encoding,
                    plan,
                    &mut delivered,
                ),
                BodyEnd::Sent,
            ),
            Some(pump) => {
                let before = pump.sent();
                let shared = RefCell::new(&mut *client);
                let mut source = BufStream::new(DuplexSource {
                    conn: &mut conn,
                    client: &shared,
                    pump,
                    bounds: self.duplex_bounds(&lease),
                    end: BodyEnd::Pending,
                });
                let mut sink = SharedClient(&shared);
                let copied = self.copy_response(
                    &mut source,
                    &mut sink,
                    framing,
                    encoding,
                    plan,
                    &mut delivered,
                );
                let (duplex, _) = source.into_parts();
                req.count_received(duplex.pump.sent() - before);
                (copied, duplex.end)
            }
        };
        if request_body_cut || matches!(body_end, BodyEnd::Pending | BodyEnd::Refused) {
            // The client may still be sending the body nobody reads: drain it a moment before
            // closing, so the kernel does not reset the connection under the answer.
            super::reply::linger(client);
        }
        if body_end == BodyEnd::ClientFailed {
            // The request body broke off (or stalled) while the origin was answering: the
            // client's doing, which says nothing of the backend.
            log::debug!("{}: request body failed during the response", req.peer);
            return Ok(done(delivered, false));
        }
        match copied {
            Ok(()) => {
                lease.set(Outcome::Answered);
                if reusable {
                    self.connector.checkin(backend, conn);
                }
                Ok(done(delivered, keep_alive))
            }
            Err(BodyError::Source(err)) => {
                // Never pass a cut-off body off as complete: closing is the only honest signal.
                log::warn!("upstream {backend}: response broke off: {err}");
                lease.set(Outcome::Failed);
                Ok(done(delivered, false))
            }
            Err(_) => {
                // The client went away: the backend did its part.
                lease.set(Outcome::Answered);
                Ok(done(delivered, false))
            }
        }
    }
}

impl<P: Phases> Relay<P> {
    /// Writes a head with its whole body (or what came of it) in one write, under the
    /// slow-reader rule like any body (32 KiB can outlast the socket buffers), then drains a
    /// request body nobody read; `false` when the client went away.
    fn send_whole<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        bytes: &[u8],
        req: &Request<'_>,
        request_body_cut: bool,
    ) -> bool {
        let mut paced = Paced::new(
            &mut *client,
            self.config.client.timeouts.send_rate(),
            req.peer,
        );
        if std::io::Write::write_all(&mut paced, bytes).is_err() {
            return false;
        }
        if request_body_cut {
            super::reply::linger(client);
        }
        true
    }

    /// Copies the response body from `source` (the upstream connection, or its duplex view)
    /// to `client`, straight or through the phases' plan; `delivered` counts what the client
    /// was given.
    fn copy_response<R: Read, W: Write>(
        &self,
        source: &mut BufStream<R>,
        client: &mut W,
        framing: BodyFraming,
        encoding: Encoding,
        plan: BodyPlan,
        delivered: &mut u64,
    ) -> Result<(), BodyError> {
        let limits = &self.upstream_limits;
        if framing == BodyFraming::Empty {
            plan.end_without_body();
            Ok(())
        } else if plan.is_empty() {
            copy_body_counting(source, framing, client, encoding, limits, None, delivered)
        } else {
            let mut sink = BodySink::new(client, encoding, plan);
            let mut decoded = 0;
            let copied = copy_body_flushing(source, framing, &mut sink, limits, &mut decoded)
                .and_then(|()| sink.finish(true).map_err(BodyError::Sink));
            *delivered = sink.delivered();
            copied
        }
    }
}

/// Reads until `n` body bytes are buffered (the head is consumed already).
fn buffer_whole<R: Read>(conn: &mut BufStream<R>, n: usize) -> Result<(), HttpError> {
    // Bounded: each round reads at least one byte, or ends the loop.
    while conn.buffered().len() < n {
        match conn.fill_more(n) {
            Ok(0) => return Err(HttpError::Truncated),
            Ok(_) => {}
            Err(err) => return Err(HttpError::from_read(err)),
        }
    }
    Ok(())
}

/// Whether the upstream connection can carry another request after this response.
fn upstream_reusable(response: &ResponseHead, framing: BodyFraming) -> bool {
    framing != BodyFraming::UntilClose
        && !response.has_token("connection", "close")
        && (response.minor_version >= 1 || response.has_token("connection", "keep-alive"))
}
