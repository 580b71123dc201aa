//! A backend's response on its way to the client: framing decided from what the origin sent,
//! the response-head phase, the head, then the body, straight or through the phases' plan.

use super::attempt::Answer;
use super::exchange::{cache_status, Done, Refusal, Request};
use super::pace::Paced;
use super::phases::{AnsweredBy, BodyPlan, Phases, UpstreamAnswer};
use super::pipeline::BodySink;
use super::Relay;
use crate::http::body::{copy_body_counting, BodyError, Encoding};
use crate::http::framing::response_framing;
use crate::http::head::Headers;
use crate::http::headers::{client_response, OutFraming};
use crate::http::{BodyFraming, BufStream, ResponseHead, Socket};
use crate::upstream::Outcome;

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
            request_body_cut,
            waited,
        } = answer;
        let backend = lease.backend();
        // Both decided on the head as the origin sent it, before a phase changes headers.
        let framing = response_framing(&req.head.method, &response).map_err(|err| {
            log::warn!("upstream {backend}: unusable response framing: {err}");
            lease.set(Outcome::Failed);
            Refusal::status(502, req.client_keep_alive, backend)
        })?;
        let reusable = !request_body_cut && upstream_reusable(&response, framing);
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
            && !request_body_cut
            && !self.draining();
        let reply_head = client_response(
            &response,
            out_framing,
            keep_alive,
            req.head.minor_version,
            &self.config.via_name,
        );
        let cache = cache_status(&response);
        let done = |bytes, keep_alive| Done {
            status: response.status,
            bytes,
            keep_alive,
            upstream: Some(backend),
            upstream_time: Some(waited),
            answered_by: AnsweredBy::Upstream,
            tunnel: None,
            cache: cache.clone(),
        };
        if std::io::Write::write_all(client, &reply_head).is_err() {
            return Err(Refusal::silent());
        }
        let limits = &self.upstream_limits;
        let mut delivered = 0;
        // A slow reader is cut off here, through the same path as a client that went away.
        let mut paced = Paced::new(&mut *client, self.config.client.send_rate(), req.peer);
        let copied = if framing == BodyFraming::Empty {
            plan.end_without_body();
            Ok(())
        } else if plan.is_empty() {
            copy_body_counting(
                &mut conn,
                framing,
                &mut paced,
                encoding,
                limits,
                None,
                &mut delivered,
            )
        } else {
            let mut sink = BodySink::new(&mut paced, encoding, plan);
            let mut decoded = 0;
            let copied = copy_body_counting(
                &mut conn,
                framing,
                &mut sink,
                Encoding::Raw,
                limits,
                None,
                &mut decoded,
            )
            .and_then(|()| sink.finish(true).map_err(BodyError::Sink));
            delivered = sink.delivered();
            copied
        };
        if request_body_cut {
            // The client may still be sending the body nobody reads: drain it a moment before
            // closing, so the kernel does not reset the connection under the answer.
            super::reply::linger(client);
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

/// Whether the upstream connection can carry another request after this response.
fn upstream_reusable(response: &ResponseHead, framing: BodyFraming) -> bool {
    framing != BodyFraming::UntilClose
        && !response.has_token("connection", "close")
        && (response.minor_version >= 1 || response.has_token("connection", "keep-alive"))
}
