//! An upgrade request from offer to tunnel: the checks before it goes upstream (allowed?
//! a tunnel free?), and on `101 Switching Protocols` the hand-over of both connections to a
//! tunnel thread, so the worker that served the request is free again at once.
//!
//! Any other answer to an upgrade request is a plain response, relayed as usual; the offer
//! (its tunnel slot, its spare client handle) is then simply dropped. The upstream connection
//! of a tunnel is never returned to the keep-alive cache: it speaks another protocol now.
//!
//! The backend's lease ends at the `101` (its outcome is `Answered`): a balancer counting
//! requests in flight (least connections) does not count open tunnels. The tunnel's one
//! summary goes to the logging phase and the access log when it ends: status 101, the bytes
//! the client received as the body bytes, the whole life of the tunnel as the duration.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use super::attempt::Answer;
use super::exchange::{Done, Refusal, Request};
use super::phases::{AnsweredBy, BodyPlan, Phases, Summary};
use super::tunnel::{self, Ends};
use super::upgrade::{self, TunnelSlot};
use super::{log_summary, Relay};
use crate::http::headers::{client_response, OutFraming};
use crate::http::stream::BoxedTransport;
use crate::http::{BufStream, RequestHead, Socket};
use crate::upstream::Outcome;

/// Stack of a tunnel's first thread: the copy loop, then the logging phase.
const TUNNEL_STACK: usize = 256 * 1024;

/// Numbers tunnel threads, for their names in the log.
static NEXT_TUNNEL: AtomicU64 = AtomicU64::new(1);

/// What an upgrade request holds while it waits for the origin's answer.
pub(super) struct Offer {
    /// A second handle on the client connection, taken now so that a transport that cannot
    /// give one (TLS) is known before anything goes upstream.
    client_reader: BoxedTransport,
    /// Its place under `max_tunnels`, taken before anything goes upstream.
    slot: TunnelSlot,
}

/// A tunnel and what its thread needs to log the exchange when it ends.
struct Job<P: Phases> {
    ends: Ends,
    slot: TunnelSlot,
    phases: Arc<P>,
    ctx: P::Ctx,
    head: RequestHead,
    peer: std::net::SocketAddr,
    backend: std::net::SocketAddr,
    started: Instant,
    idle: Duration,
    name: String,
}

impl<P: Phases> Job<P> {
    fn run(mut self) {
        let relayed = tunnel::run(self.ends, self.idle, &self.name);
        drop(self.slot);
        log::debug!(
            "{}: tunnel {} to {} closed{}: {} bytes to the origin, {} to the client",
            self.peer,
            self.name,
            self.backend,
            if relayed.idle_closed { " (idle)" } else { "" },
            relayed.to_upstream,
            relayed.to_client
        );
        let summary = Summary {
            peer: self.peer,
            request: Some(&self.head),
            status: 101,
            body_bytes: relayed.to_client,
            // Only a request without a body may switch (see `upgrade_offer`).
            request_bytes: 0,
            duration: self.started.elapsed(),
            upstream: Some(self.backend),
            // The tunnel's lifetime says nothing about the backend's response time.
            upstream_time: None,
            answered_by: AnsweredBy::Upstream,
            // Only plain TCP switches (a TLS stream cannot be `duplicate`d).
            tls_version: None,
        };
        // A switched exchange never comes from the cache.
        log_summary(&*self.phases, &mut self.ctx, &summary, None);
    }
}

impl<P: Phases> Relay<P> {
    /// Whether the request may switch protocols, and if so the `Upgrade` value to send
    /// upstream and the offer. `Err` is the `503` of a
    /// proxy with every tunnel taken; a request that may not switch (not allowed, a body, a
    /// transport that cannot be shared) gets `Ok(None)` and goes on as a plain request.
    pub(super) fn upgrade_offer<S: Socket>(
        &self,
        client: &BufStream<S>,
        req: &Request<'_>,
        ctx: &mut P::Ctx,
    ) -> Result<Option<(String, Offer)>, Refusal> {
        let Some(protocols) = upgrade::requested(req.head) else {
            return Ok(None);
        };
        let peer = req.peer;
        if req.body_pending {
            log::debug!("{peer}: an upgrade request with a body goes on as a plain request");
            return Ok(None);
        }
        let allowed = self
            .phases
            .upgrade(ctx, req.head, &protocols)
            .unwrap_or(self.config.upgrades.allow);
        if !allowed {
            log::debug!("{peer}: upgrade to {protocols} not allowed here; a plain request");
            return Ok(None);
        }
        if self.draining() {
            // A tunnel opened now would be cut when the drain ends and the process exits.
            log::debug!("{peer}: shutting down, no new tunnels; a plain request");
            return Ok(None);
        }
        let Some(client_reader) = client.get_ref().duplicate() else {
            log::debug!("{peer}: this transport cannot carry a tunnel; a plain request");
            return Ok(None);
        };
        let Some(slot) = self.tunnels.take() else {
            log::warn!(
                "{peer}: {} tunnels open already, refusing an upgrade",
                self.config.upgrades.max_tunnels
            );
            return Err(Refusal {
                status: Some(503),
                keep_alive: req.client_keep_alive,
                upstream: None,
            });
        };
        Ok(Some((
            protocols,
            Offer {
                client_reader,
                slot,
            },
        )))
    }

    /// The origin switched protocols: sends the `101` on, and gives both connections to a
    /// tunnel thread. The worker returns at once; the connection is not its any more.
    pub(super) fn switch<S: Socket>(
        &self,
        client: &mut BufStream<S>,
        req: &Request<'_>,
        ctx: &mut P::Ctx,
        answer: Answer<'_>,
        offer: Offer,
        started: Instant,
    ) -> Result<Done, Refusal> {
        let Answer {
            conn,
            mut lease,
            mut response,
            ..
        } = answer;
        let backend = lease.backend();
        let mut broken = |why: &str| {
            log::warn!("upstream {backend}: cannot open a tunnel: {why}");
            lease.set(Outcome::Failed);
            Err(Refusal::status(502, false, backend))
        };
        let Some(protocol) = upgrade::switched_to(&response) else {
            return broken("a 101 without Upgrade");
        };
        let (upstream_reader, from_upstream) = conn.into_parts();
        let Some(upstream_writer) = upstream_reader.duplicate() else {
            return broken("its transport cannot be shared by two threads (TLS)");
        };
        let Some(client_writer) = client.get_ref().duplicate() else {
            return broken("no second handle on the client connection");
        };
        lease.set(Outcome::Answered);
        drop(lease);

        let mut plan = BodyPlan::default();
        self.phases
            .response_head(ctx, req.head, &mut response, &mut plan);
        // No body follows a 101; observers learn so, transforms never run.
        plan.end_without_body();
        // `Close` writes no framing header (a 101 has no body), and `keep_alive` no
        // `Connection: close`: ours is `Connection: upgrade`.
        let head = client_response(
            &response,
            OutFraming::Close,
            true,
            req.head.minor_version,
            &self.config.via_name,
        );
        let head = upgrade::with_upgrade_headers(head, &protocol);

        let name = format!("tunnel-{}", NEXT_TUNNEL.fetch_add(1, Ordering::Relaxed));
        // The thread is started before the 101 goes out, so that a machine out of threads
        // answers 503 instead of switching to a tunnel nobody serves.
        let (jobs, job) = mpsc::sync_channel::<Job<P>>(1);
        let spawned = thread::Builder::new()
            .name(name.clone())
            .stack_size(TUNNEL_STACK)
            .spawn(move || {
                if let Ok(job) = job.recv() {
                    job.run();
                }
            });
        let thread = match spawned {
            Ok(thread) => thread,
            Err(err) => {
                log::error!("{}: cannot start a tunnel thread: {err}", req.peer);
                return Err(Refusal {
                    status: Some(503),
                    keep_alive: false,
                    upstream: Some(backend),
                });
            }
        };
        if std::io::Write::write_all(client, &head).is_err() {
            // The thread sees the channel close and ends.
            return Err(Refusal::silent());
        }
        // What the client sent behind its request (a first frame) is the tunnel's now.
        let from_client = client.buffered().to_vec();
        client.consume(from_client.len());
        let job = Job {
            ends: Ends {
                client_reader: offer.client_reader,
                client_writer,
                upstream_reader,
                upstream_writer,
                from_client,
                from_upstream,
            },
            slot: offer.slot,
            phases: Arc::clone(&self.phases),
            ctx: std::mem::take(ctx),
            head: req.head.clone(),
            peer: req.peer,
            backend,
            started,
            idle: self.config.upgrades.idle_timeout,
            name,
        };
        if jobs.send(job).is_err() {
            // Only if the thread died before receiving; the tunnel's handles went with it.
            log::error!("{}: the tunnel thread ended before its tunnel", req.peer);
        }
        Ok(Done {
            status: 101,
            bytes: 0,
            keep_alive: false,
            upstream: Some(backend),
            upstream_time: None,
            answered_by: AnsweredBy::Upstream,
            tunnel: Some(thread),
            cache: None,
        })
    }
}
