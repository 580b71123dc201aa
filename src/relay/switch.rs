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
use super::poll_tunnel;
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
    /// Its place under `max_tunnels`, taken before anything goes upstream.
    slot: TunnelSlot,
}

/// The two connections of a tunnel, as the tunnel that relays them takes them.
enum Carrier {
    /// Both plain TCP: two handles on each socket, one thread per direction (`tunnel.rs`),
    /// the simplest copy loop there is, kept for the common case.
    Split(Ends),
    /// A side that cannot be split (TLS): both streams whole, one polling thread
    /// (`poll_tunnel.rs`).
    Whole(poll_tunnel::Ends),
}

impl Carrier {
    /// Splits the connections when both sockets can be shared by two threads.
    fn new(
        client: BoxedTransport,
        upstream: BoxedTransport,
        from_client: Vec<u8>,
        from_upstream: Vec<u8>,
    ) -> Carrier {
        // The upstream first: a TLS backend makes the client's duplicate useless.
        let writers = upstream
            .duplicate()
            .and_then(|upstream_writer| Some((client.duplicate()?, upstream_writer)));
        match writers {
            Some((client_writer, upstream_writer)) => Carrier::Split(Ends {
                client_reader: client,
                client_writer,
                upstream_reader: upstream,
                upstream_writer,
                from_client,
                from_upstream,
            }),
            None => Carrier::Whole(poll_tunnel::Ends {
                client,
                upstream,
                from_client,
                from_upstream,
            }),
        }
    }

    fn run(self, idle: Duration, name: &str) -> tunnel::Relayed {
        match self {
            Carrier::Split(ends) => tunnel::run(ends, idle, name),
            Carrier::Whole(ends) => poll_tunnel::run(ends, idle),
        }
    }
}

/// A tunnel and what its thread needs to log the exchange when it ends.
struct Job<P: Phases> {
    carrier: Carrier,
    slot: TunnelSlot,
    phases: Arc<P>,
    ctx: P::Ctx,
    head: RequestHead,
    peer: std::net::SocketAddr,
    backend: std::net::SocketAddr,
    started: Instant,
    idle: Duration,
    name: String,
    /// The client connection's TLS version, for the log.
    tls_version: Option<&'static str>,
}

impl<P: Phases> Job<P> {
    fn run(mut self) {
        let relayed = self.carrier.run(self.idle, &self.name);
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
            tls_version: self.tls_version,
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
    pub(super) fn upgrade_offer(
        &self,
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
        Ok(Some((protocols, Offer { slot })))
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
        let (upstream, from_upstream) = conn.into_parts();
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
        let tls_version = client.get_ref().tls_version();
        // The connection is the tunnel's from here on; the worker keeps a husk that reads
        // nothing and writes nothing (a TLS stream moves whole, cipher state and all).
        let Some(mut tunnel_client) = client.get_mut().take_over() else {
            // Only when out of descriptors; the thread sees the channel close and ends.
            log::error!("{}: cannot hand the connection to a tunnel", req.peer);
            return Err(Refusal {
                status: Some(503),
                keep_alive: false,
                upstream: Some(backend),
            });
        };
        if std::io::Write::write_all(&mut tunnel_client, &head).is_err() {
            return Err(Refusal::silent());
        }
        // What the client sent behind its request (a first frame) is the tunnel's now.
        let from_client = client.buffered().to_vec();
        client.consume(from_client.len());
        let job = Job {
            carrier: Carrier::new(tunnel_client, upstream, from_client, from_upstream),
            slot: offer.slot,
            phases: Arc::clone(&self.phases),
            ctx: std::mem::take(ctx),
            head: req.head.clone(),
            peer: req.peer,
            backend,
            started,
            idle: self.config.upgrades.idle_timeout,
            name,
            tls_version,
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
