//! The cache as request phases: look up in the request phase (a hit is a reply, a stale entry
//! with a validator turns the request conditional on the entry's validators, a HEAD miss is
//! fetched as a GET), answer a `304` or an upstream failure from the entry in the
//! upstream-answer phase, and keep a copy of a storable miss with a body observer while it
//! streams to the client.
//!
//! One part per job: [`lookup`] (a stored entry for a request, and whether it may serve it),
//! [`fill`] (the copy of a miss into the store, and an entry refreshed by a `304`),
//! [`background`] (the one `stale-while-revalidate` refresh, a request to this proxy),
//! [`range`] (a `206` cut from a stored `200` or part, and a part completed),
//! [`conditional`] (the client's own validators)
//! and [`key`] (the key of a request, and what an unsafe method invalidates).

mod background;
mod conditional;
mod fill;
mod key;
mod lookup;
mod range;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::config::CacheSettings;
use super::control::{RequestDirectives, ResponseDirectives};
use super::store::{CacheStats, Entry, Flights, Lead, Limits, Store};
use super::{surrogate, targeted};
use crate::http::head::Headers;
use crate::http::{Header, RequestHead, ResponseHead};
use crate::metrics::report::{CacheReport, PhaseReport};
use crate::relay::{BodyPlan, Client, Phases, Reply, Summary, UpstreamAnswer};
use conditional::Conditions;
use key::cache_key;

/// What `X-Cache` says about a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// Served from a fresh entry.
    Hit,
    /// Nothing stored: fetched.
    Miss,
    /// The entry was stale and is fetched again (or revalidated, and the origin sent a new one).
    Expired,
    /// The entry was stale, the origin said `304`: served from it, refreshed.
    Revalidated,
    /// Served stale: the client accepts it (`max-stale`) or the origin failed
    /// (`stale-if-error`).
    Stale,
    /// Not for the cache (another method, a `Range` request it cannot answer).
    Bypass,
}

impl Label {
    fn as_str(self) -> &'static str {
        match self {
            Label::Hit => "HIT",
            Label::Miss => "MISS",
            Label::Expired => "EXPIRED",
            Label::Revalidated => "REVALIDATED",
            Label::Stale => "STALE",
            Label::Bypass => "BYPASS",
        }
    }
}

/// Stage 7's phases.
pub struct CachePhases {
    store: Arc<Store>,
    flights: Arc<Flights>,
    settings: CacheSettings,
    /// The proxy's own address, where a `stale-while-revalidate` refresh is sent; `None`:
    /// no background refreshes.
    refresh_via: Option<SocketAddr>,
    /// The fields taken off every response on its way to the client (see `hidden_fields`).
    hidden: Vec<String>,
}

/// What the cache keeps between the hooks of one exchange.
#[derive(Default)]
pub struct CacheCtx {
    label: Option<Label>,
    /// The key: `scheme://host` (`origin_len` bytes), the target, and the route if any.
    key: Option<String>,
    origin_len: usize,
    request_cc: RequestDirectives,
    request_time: Option<SystemTime>,
    /// A stored entry the request could not be served from as it is: being revalidated,
    /// and the fallback when the origin fails.
    stale: Option<Arc<Entry>>,
    /// We made the request conditional on `stale`'s validators.
    revalidating: bool,
    /// A stored part whose rest we asked for (`Range`, `If-Range`): the client gets the whole.
    completing: Option<Arc<Entry>>,
    /// The client's own `If-None-Match` / `If-Modified-Since`, evaluated against the entry
    /// that answers it (a fresh one, or one a `304` just refreshed).
    conditions: Conditions,
    /// This request leads a miss that others wait for.
    lead: Option<Lead>,
    /// The reply is ours (from an entry).
    served: bool,
    /// An unsafe method: its success invalidates the target.
    unsafe_method: bool,
    /// The response may be stored (a GET without `no-store`).
    may_store: bool,
}

/// What a lookup found.
enum Lookup {
    Serve(Reply),
    Forward,
    Miss,
}

impl CachePhases {
    pub fn new(settings: &CacheSettings) -> CachePhases {
        CachePhases {
            store: Arc::new(Store::new(Limits {
                max_size: settings.max_size,
                max_entries: settings.max_entries,
            })),
            flights: Arc::new(Flights::default()),
            settings: settings.clone(),
            refresh_via: None,
            hidden: hidden_fields(settings),
        }
    }

    /// Keeps the entries of `running` (the cache a reload replaces) when its settings are
    /// these: a reload that did not touch `[cache]` must not send every request of the next
    /// minutes to the origins at once. Changed settings (a smaller size, another default
    /// freshness) start an empty cache, sized and judged by the new ones.
    pub fn continuing(mut self, running: Option<&CachePhases>) -> CachePhases {
        if let Some(running) = running.filter(|r| r.settings == self.settings) {
            self.store = Arc::clone(&running.store);
            self.flights = Arc::clone(&running.flights);
        }
        self
    }

    /// Turns on `stale-while-revalidate`: the one background refresh of an entry is a request
    /// to `proxy` (this proxy's listening address), which revalidates it like any request
    /// that will not take a stale copy.
    pub fn refreshing_through(mut self, proxy: Option<SocketAddr>) -> CachePhases {
        self.refresh_via = proxy;
        self
    }

    /// The directives this cache follows for `head` (see `targeted::for_this_cache`).
    fn directives(&self, head: &impl Headers) -> ResponseDirectives {
        targeted::for_this_cache(
            head,
            &self.settings.targeted_fields,
            &self.settings.surrogate_id,
        )
    }

    pub fn stats(&self) -> CacheStats {
        self.store.stats.snapshot()
    }

    /// A handle on the store's counters for a reporter thread (`--debug`).
    pub fn stats_source(&self) -> impl Fn() -> CacheStats + Send + 'static {
        let store = Arc::clone(&self.store);
        move || store.stats.snapshot()
    }

    /// The request phase once the key is known.
    fn request_with_key(
        &self,
        ctx: &mut CacheCtx,
        head: &mut RequestHead,
        key: &str,
    ) -> Option<Reply> {
        ctx.request_time = Some(SystemTime::now());
        match head.method.as_str() {
            "GET" | "HEAD" => {}
            method => {
                // Section 4.4: a method not known to be safe may change the resource. Never
                // answered from the cache; a POST's response may be stored (`plan_post_store`),
                // so its directives are read.
                ctx.unsafe_method = !matches!(method, "OPTIONS" | "TRACE");
                if method == "POST" {
                    ctx.request_cc = RequestDirectives::parse(head);
                }
                ctx.label = Some(Label::Bypass);
                return None;
            }
        }
        ctx.request_cc = RequestDirectives::parse(head);
        ctx.conditions = Conditions::of(head);
        if let Some(range) = head.header("range") {
            return self.range(ctx, head, key, range);
        }
        // A HEAD is answered from a stored GET, and fills the cache as one.
        ctx.may_store = !ctx.request_cc.no_store;
        let reply = self.lookup_or_lead(ctx, head, key);
        if reply.is_none() && ctx.may_store && head.method == "HEAD" {
            // As nginx's `proxy_cache_convert_head`: the miss is fetched with GET so that it
            // can be stored; the relay sends the client the head alone.
            head.method = "GET".to_owned();
        }
        reply
    }
}

impl Phases for CachePhases {
    type Ctx = CacheCtx;

    fn request(
        &self,
        ctx: &mut CacheCtx,
        head: &mut RequestHead,
        client: &Client,
    ) -> Option<Reply> {
        if !self.settings.enabled {
            return None;
        }
        if !self.settings.surrogate_id.is_empty() {
            // The Edge Architecture's announcement, so that an origin can target this cache
            // (`Surrogate-Control: max-age=60;revproxy`). Appended: surrogates further out
            // announced themselves on the same field. Once: a background refresh is a request
            // to this proxy that carries the announcement already.
            let ours = surrogate::capability(&self.settings.surrogate_id);
            if !head
                .values("surrogate-capability")
                .any(|v| v == ours.as_slice())
            {
                head.headers.push(header("Surrogate-Capability", &ours));
            }
        }
        let (key, origin_len) = cache_key(client.proto, head);
        ctx.origin_len = origin_len;
        let reply = self.request_with_key(ctx, head, &key);
        ctx.key = Some(key);
        reply
    }

    fn upstream_answer(
        &self,
        ctx: &mut CacheCtx,
        _request: &RequestHead,
        answer: UpstreamAnswer<'_>,
    ) -> Option<Reply> {
        let key = ctx.key.clone()?;
        match answer {
            UpstreamAnswer::Response(head) if head.status == 304 && ctx.revalidating => {
                let old = ctx.stale.take()?;
                let entry = Arc::new(self.refresh(ctx, &old, head));
                self.store.replace(&key, &old, Arc::clone(&entry));
                Some(self.serve(ctx, &entry, Label::Revalidated, true))
            }
            // The client asked for the whole and must not get a 206 it did not ask for: an
            // origin whose answer to our request for the rest is another range or another
            // representation's cannot be spliced.
            UpstreamAnswer::Response(head) if !CachePhases::rest_fits(ctx, head) => {
                ctx.completing = None;
                Some(Reply::error(502))
            }
            UpstreamAnswer::Response(head) if head.status >= 500 => self.stale_if_error(ctx),
            UpstreamAnswer::Failed(status) if status >= 500 => self.stale_if_error(ctx),
            _ => None,
        }
    }

    fn response_head(
        &self,
        ctx: &mut CacheCtx,
        request: &RequestHead,
        response: &mut ResponseHead,
        plan: &mut BodyPlan,
    ) {
        if ctx.key.is_none() {
            return;
        }
        // Only an upstream response is stored or invalidates; a reply of ours (a hit) just
        // gets its label, without the key being copied.
        if !ctx.served {
            if ctx.unsafe_method {
                if (200..400).contains(&response.status) {
                    self.invalidate(ctx, response);
                }
                // After the invalidation, which removed the older copies; the new one is
                // stored when its body has streamed.
                if request.method == "POST" {
                    self.plan_post_store(ctx, request, response, plan);
                }
            } else if let (true, Some(key)) = (ctx.may_store, ctx.key.clone()) {
                self.plan_store(ctx, &key, request, response, plan);
            }
            CachePhases::splice(ctx, response, plan);
            // After `plan_store`, which read and stored them; a hit's stored fields were
            // filtered when the entry was made (`Entry::hiding`).
            let hidden = &self.hidden;
            response
                .headers
                .retain(|h| !hidden.iter().any(|n| n.eq_ignore_ascii_case(&h.name)));
        }
        if let Some(label) = ctx.label {
            response
                .headers
                .push(header("X-Cache", label.as_str().as_bytes()));
        }
    }

    fn logging(&self, ctx: &mut CacheCtx, _summary: &Summary<'_>) {
        let stats = &self.store.stats;
        match ctx.label {
            Some(Label::Hit | Label::Stale | Label::Revalidated) => {
                stats.hits.fetch_add(1, Ordering::Relaxed);
            }
            Some(Label::Miss | Label::Expired) => {
                stats.misses.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        // Whatever happened, waiters must not wait for a leader that is gone.
        ctx.lead = None;
    }

    /// Its `response_head` only adds `X-Cache` to the replies it made: a hit's stored fields
    /// can go as serialised.
    fn reads_reply_fields(&self) -> bool {
        false
    }

    fn cache_status(&self, ctx: &CacheCtx) -> Option<&'static str> {
        ctx.label.map(Label::as_str)
    }

    fn report(&self, report: &mut PhaseReport) {
        let s = self.stats();
        report.add_cache(CacheReport {
            hits: s.hits,
            misses: s.misses,
            stores: s.stores,
            evictions: s.evictions,
            bytes: s.bytes,
            entries: s.entries,
        });
    }
}

/// The fields taken off every response on its way to the client: the targeted fields this
/// cache obeys, when `forward_targeted = false` (RFC 9213 section 3; targeted fields it does
/// not obey always go on untouched, section 2.1), and `Surrogate-Control` when this cache
/// reads it (it is for the origin's surrogates, and the client is not one).
fn hidden_fields(settings: &CacheSettings) -> Vec<String> {
    let mut hidden = Vec::new();
    if !settings.forward_targeted {
        hidden.extend(settings.targeted_fields.iter().cloned());
    }
    if !settings.surrogate_id.is_empty() {
        hidden.push(surrogate::FIELD.to_owned());
    }
    hidden
}

pub(super) fn header(name: &str, value: &[u8]) -> Header {
    Header {
        name: name.to_owned(),
        value: value.to_vec(),
    }
}
