//! The cache as request phases: look up in the request phase (a hit is a reply, a stale entry
//! with a validator turns the request conditional on the entry's validators, a HEAD miss is
//! fetched as a GET), answer a `304` or an upstream failure from the entry in the
//! upstream-answer phase, and keep a copy of a storable miss with a body observer while it
//! streams to the client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::config::CacheSettings;
use super::control::{RequestDirectives, ResponseDirectives};
use super::freshness::{self, Lifetime};
use super::policy;
use super::store::{vary_key, CacheStats, Entry, Flights, Joined, Lead, Limits, Store};
use super::targeted;
use crate::http::date::parse_http_date;
use crate::http::head::Headers;
use crate::http::{Header, RequestHead, ResponseHead};
use crate::metrics::report::{CacheReport, PhaseReport};
use crate::relay::{
    BodyObserver, BodyPlan, Client, Phases, Reply, ReplyBody, Summary, UpstreamAnswer,
};

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

    /// Starts the background refresh of `key` unless one runs already.
    fn refresh_in_background(&self, proxy: SocketAddr, key: &str, head: &RequestHead) {
        let Joined::Lead(lead) = self.flights.join(&format!("refresh {key}")) else {
            return;
        };
        // The client's fields, less those about its own connection, conditions or cache
        // wishes: the refresh must reach the origin and select the same variant.
        const SKIP: &[&str] = &[
            "cache-control",
            "pragma",
            "connection",
            "keep-alive",
            "te",
            "upgrade",
            "expect",
            "content-length",
            "transfer-encoding",
            "if-none-match",
            "if-modified-since",
            "if-match",
            "if-unmodified-since",
            "if-range",
            "range",
        ];
        // The client's target, not the one a route rewrote: the refresh goes through this
        // proxy's routes again.
        let mut request = format!("GET {} HTTP/1.1\r\n", head.client_target()).into_bytes();
        for h in &head.headers {
            if !SKIP.iter().any(|n| h.name.eq_ignore_ascii_case(n)) {
                request.extend_from_slice(h.name.as_bytes());
                request.extend_from_slice(b": ");
                request.extend_from_slice(&h.value);
                request.extend_from_slice(b"\r\n");
            }
        }
        request.extend_from_slice(b"Cache-Control: max-age=0\r\nConnection: close\r\n\r\n");
        let spawned = std::thread::Builder::new()
            .name("cache-refresh".into())
            .spawn(move || {
                let _lead = lead; // released when the refresh is over
                if let Err(err) = refresh(proxy, &request) {
                    log::warn!("cache: background refresh failed: {err}");
                }
            });
        if let Err(err) = spawned {
            log::warn!("cache: cannot start a background refresh: {err}");
        }
    }

    pub fn stats(&self) -> CacheStats {
        self.store.stats.snapshot()
    }

    /// A handle on the store's counters for a reporter thread (`--debug`).
    pub fn stats_source(&self) -> impl Fn() -> CacheStats + Send + 'static {
        let store = Arc::clone(&self.store);
        move || store.stats.snapshot()
    }

    fn lookup(&self, ctx: &mut CacheCtx, head: &mut RequestHead, key: &str) -> Lookup {
        let Some(entry) = self.store.get(key, head) else {
            return Lookup::Miss;
        };
        let rcc = &ctx.request_cc;
        let age = entry.age();
        let lifetime = entry.lifetime.duration;
        let revalidate_always = entry.directives.no_cache || rcc.no_cache;
        if fresh_for(&entry, rcc) {
            return Lookup::Serve(self.serve(ctx, &entry, Label::Hit, true));
        }
        let staleness = age.saturating_sub(lifetime);
        let client_takes_stale = match rcc.max_stale {
            Some(None) => true,
            Some(Some(limit)) => staleness <= limit,
            None => false,
        };
        if age >= lifetime
            && client_takes_stale
            && !revalidate_always
            && !entry.directives.no_stale()
        {
            return Lookup::Serve(self.serve(ctx, &entry, Label::Stale, true));
        }
        // RFC 5861: within the window, this client gets the stale copy at once and one
        // request refreshes it meanwhile. Not for a client that asked for fresher.
        let while_revalidating = entry
            .directives
            .stale_while_revalidate
            .is_some_and(|window| staleness <= window);
        if let (true, Some(proxy)) = (while_revalidating, self.refresh_via) {
            let wants_fresher = rcc.max_age.is_some() || rcc.min_fresh.is_some();
            if !revalidate_always && !wants_fresher && !entry.directives.no_stale() {
                self.refresh_in_background(proxy, key, head);
                return Lookup::Serve(self.serve(ctx, &entry, Label::Stale, true));
            }
        }
        if rcc.only_if_cached {
            ctx.label = Some(Label::Miss);
            return Lookup::Serve(Reply::error(504));
        }
        ctx.label = Some(Label::Expired);
        let validator = policy::has_validator(&entry.head);
        if validator && !has_preconditions(head) {
            // Section 4.3.1: the cache validates its own entry. The client's validators say
            // what *it* holds, which may not be what is stored: they are taken off and
            // answered from the entry a 304 refreshes (section 4.3.2).
            head.headers.retain(|h| {
                !Conditions::NAMES
                    .iter()
                    .any(|n| h.name.eq_ignore_ascii_case(n))
            });
            if let Some(etag) = entry.head.header("etag") {
                head.headers.push(header("If-None-Match", etag));
            }
            if let Some(modified) = entry.head.header("last-modified") {
                head.headers.push(header("If-Modified-Since", modified));
            }
            ctx.revalidating = true;
        }
        let fallback = entry
            .directives
            .stale_if_error
            .or(rcc.stale_if_error)
            .is_some_and(|window| staleness <= window);
        if !validator && !fallback {
            // Expired and good for nothing: drop it now rather than when the LRU reaches it.
            self.store.remove_entry(key, &entry);
        } else {
            ctx.stale = Some(entry);
        }
        Lookup::Forward
    }

    /// A reply from `entry`: the stored response with its `Age`, or a `304` when
    /// `client_conditional` and the client's validators match.
    fn serve(
        &self,
        ctx: &mut CacheCtx,
        entry: &Entry,
        label: Label,
        client_conditional: bool,
    ) -> Reply {
        ctx.served = true;
        ctx.label = Some(label);
        let mut reply = if client_conditional && not_modified(&ctx.conditions, entry) {
            // RFC 9110 section 15.4.5: the fields a 200 would have had that describe it.
            const KEPT: &[&str] = &[
                "cache-control",
                "content-location",
                "date",
                "etag",
                "expires",
                "vary",
                "last-modified",
            ];
            let mut head = entry.head.clone();
            head.status = 304;
            head.reason = "Not Modified".to_owned();
            head.headers
                .retain(|h| KEPT.iter().any(|k| h.name.eq_ignore_ascii_case(k)));
            Reply {
                head,
                shared: None,
                body: ReplyBody::Shared(Arc::clone(&entry.body)),
                close: false,
            }
        } else {
            // The stored fields go as serialised when the entry was made: a hit formats only
            // its `Age` (and the relay its framing).
            Reply {
                head: ResponseHead {
                    status: entry.head.status,
                    reason: entry.head.reason.clone(),
                    minor_version: entry.head.minor_version,
                    headers: Vec::with_capacity(2),
                },
                shared: Some(Arc::clone(&entry.fields)),
                body: ReplyBody::Shared(Arc::clone(&entry.body)),
                close: false,
            }
        };
        // A 304 never sends its body, but its Content-Length is the 200's.
        reply.head.headers.push(Header {
            name: "Age".to_owned(),
            value: entry.age().as_secs().to_string().into_bytes(),
        });
        reply
    }

    /// A `Range` request: a `206` (or `416`) cut from a fresh stored `200`; anything else
    /// goes to the origin as it is, and its answer is not stored.
    fn range(
        &self,
        ctx: &mut CacheCtx,
        head: &RequestHead,
        key: &str,
        range: &[u8],
    ) -> Option<Reply> {
        ctx.label = Some(Label::Bypass);
        // If-Range needs a strong validator match: left to the origin.
        if head.header("if-range").is_some() || head.method != "GET" && head.method != "HEAD" {
            return None;
        }
        let entry = self.store.get(key, head)?;
        if entry.head.status != 200 || !fresh_for(&entry, &ctx.request_cc) {
            return None;
        }
        let spec = byte_range(range, entry.body.len());
        if spec == ByteRange::Several {
            return None;
        }
        let reply = self.serve(ctx, &entry, Label::Hit, true);
        if spec == ByteRange::Ignored || reply.status() != 200 {
            return Some(reply); // the whole body, or a 304
        }
        Some(ranged(reply, &spec))
    }

    /// The stale entry, if the origin's failure may be answered with it (RFC 5861).
    fn stale_if_error(&self, ctx: &mut CacheCtx) -> Option<Reply> {
        let entry = ctx.stale.clone()?;
        if entry.directives.must_revalidate || entry.directives.proxy_revalidate {
            return None;
        }
        let window = ctx
            .request_cc
            .stale_if_error
            .or(entry.directives.stale_if_error)?;
        if entry.staleness() > window {
            return None;
        }
        Some(self.serve(ctx, &entry, Label::Stale, true))
    }

    /// After a `304` to our revalidation: the entry with the 304's fields and a new age.
    fn refresh(&self, ctx: &CacheCtx, entry: &Entry, not_modified: &ResponseHead) -> Entry {
        let response_time = SystemTime::now();
        let mut head = entry.head.clone();
        head.headers = policy::refreshed_headers(&entry.head.headers, not_modified);
        let directives = targeted::for_this_cache(&head, &self.settings.targeted_fields);
        let lifetime =
            freshness::lifetime(&head, &directives, response_time, self.settings.default_ttl);
        let initial_age = freshness::initial_age(
            &head,
            ctx.request_time.unwrap_or(response_time),
            response_time,
        );
        Entry::new(
            head,
            Arc::clone(&entry.body),
            entry.vary.clone(),
            directives,
            lifetime,
            initial_age,
        )
    }

    /// Looks `key` up: a reply from an entry, or `None` to go upstream (leading the miss
    /// when the response may be stored, after waiting for the one that leads it if any).
    fn lookup_or_lead(
        &self,
        ctx: &mut CacheCtx,
        head: &mut RequestHead,
        key: &str,
    ) -> Option<Reply> {
        // Two turns at most: look up; on a miss another request leads, wait for it, look again.
        let mut waited = false;
        for _ in 0..2 {
            match self.lookup(ctx, head, key) {
                Lookup::Serve(reply) => return Some(reply),
                Lookup::Forward => return None,
                Lookup::Miss => {}
            }
            if ctx.request_cc.only_if_cached {
                ctx.label = Some(Label::Miss);
                return Some(Reply::error(504));
            }
            ctx.label = Some(Label::Miss);
            if waited || !ctx.may_store {
                return None;
            }
            match self.flights.join(key) {
                Joined::Lead(lead) => {
                    ctx.lead = Some(lead);
                    return None;
                }
                Joined::Wait(flight) => {
                    // Landed or not, look again; a second miss goes upstream itself.
                    flight.wait(self.settings.lock_timeout);
                    waited = true;
                    // The wait is not time in transit: the age counts from here.
                    ctx.request_time = Some(SystemTime::now());
                }
            }
        }
        None
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
                // Section 4.4: a method not known to be safe may change the resource.
                ctx.unsafe_method = !matches!(method, "OPTIONS" | "TRACE");
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

    /// A successful unsafe request: its target and the same-origin URLs its response names.
    fn invalidate(&self, ctx: &CacheCtx, response: &ResponseHead) {
        let Some(target) = &ctx.key else {
            return;
        };
        self.store.remove(target);
        let origin = &target[..ctx.origin_len];
        for name in ["location", "content-location"] {
            if let Some(key) = response
                .header(name)
                .and_then(|v| same_origin_key(origin, v))
            {
                self.store.remove(&key);
            }
        }
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
            } else if let (true, Some(key)) = (ctx.may_store, ctx.key.clone()) {
                self.plan_store(ctx, &key, request, response, plan);
            }
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

impl CachePhases {
    /// Decides on the response head whether to keep a copy, and if so observes the body.
    fn plan_store(
        &self,
        ctx: &mut CacheCtx,
        key: &str,
        request: &RequestHead,
        response: &ResponseHead,
        plan: &mut BodyPlan,
    ) {
        let response_time = SystemTime::now();
        let cc = targeted::for_this_cache(response, &self.settings.targeted_fields);
        let lifetime = freshness::lifetime(response, &cc, response_time, self.settings.default_ttl);
        let verdict = policy::storable(
            request,
            &ctx.request_cc,
            response,
            &cc,
            &lifetime,
            self.settings.max_entry_size,
        );
        if let Err(reason) = verdict {
            log::debug!("cache: not storing {key}: {reason:?}");
            // A new representation the cache may not keep makes the stored one outdated; a
            // 304 to the client's own conditional, or an error, does not.
            let replaced = (200..300).contains(&response.status) && response.status != 206;
            if let (true, Some(old)) = (replaced, ctx.stale.take()) {
                self.store.remove_entry(key, &old);
            }
            ctx.lead = None; // waiters go upstream themselves
            return;
        }
        let head = ResponseHead {
            status: response.status,
            reason: response.reason.clone(),
            minor_version: response.minor_version,
            headers: policy::kept_headers(response),
        };
        plan.observe(Fill {
            store: Arc::clone(&self.store),
            key: key.to_owned(),
            parts: Some(Parts {
                head,
                vary: vary_key(request, response),
                directives: cc,
                lifetime,
                initial_age: freshness::initial_age(
                    response,
                    ctx.request_time.unwrap_or(response_time),
                    response_time,
                ),
                stored_at: Instant::now(),
            }),
            body: Vec::new(),
            max: self.settings.max_entry_size,
            expected: response
                .header("content-length")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse().ok()),
            lead: ctx.lead.take(),
        });
    }
}

/// An entry but its body, while the body streams.
struct Parts {
    head: ResponseHead,
    vary: Vec<(String, Vec<u8>)>,
    directives: ResponseDirectives,
    lifetime: Lifetime,
    initial_age: Duration,
    stored_at: Instant,
}

/// Copies the identity body as it goes to the client, and stores it when it ended whole
/// within `max` bytes. Holds the miss's lead, so that waiters wake when it is stored (or not).
struct Fill {
    store: Arc<Store>,
    key: String,
    /// `None` once the body outgrew `max`: the copy is dropped, the stream goes on.
    parts: Option<Parts>,
    body: Vec<u8>,
    max: u64,
    /// The declared length: reaching it completes the body before its last bytes are
    /// written to the client, so a client that has the whole response finds it stored.
    expected: Option<u64>,
    lead: Option<Lead>,
}

impl Fill {
    fn store(&mut self) {
        let Some(parts) = self.parts.take() else {
            return;
        };
        let mut entry = Entry::new(
            parts.head,
            std::mem::take(&mut self.body).into(),
            parts.vary,
            parts.directives,
            parts.lifetime,
            parts.initial_age,
        );
        // Its age counts from when the response head arrived, not from the body's end.
        entry.stored_at = parts.stored_at;
        self.store.insert(&self.key, entry);
        self.lead = None;
    }
}

impl BodyObserver for Fill {
    fn data(&mut self, bytes: &[u8]) {
        if self.parts.is_none() {
            return;
        }
        if (self.body.len() + bytes.len()) as u64 > self.max {
            log::debug!("cache: not storing {}: body over max_entry_size", self.key);
            self.parts = None;
            self.body = Vec::new();
            return;
        }
        self.body.extend_from_slice(bytes);
        if self.expected == Some(self.body.len() as u64) {
            self.store();
        }
    }

    fn end(&mut self, complete: bool) {
        if complete {
            self.store();
        }
        self.parts = None;
        self.lead = None;
    }
}

/// One refresh request through the proxy; the answer is read to its end and dropped (the
/// proxy stored it on the way).
fn refresh(proxy: SocketAddr, request: &[u8]) -> std::io::Result<()> {
    const LIMIT: Duration = Duration::from_secs(30);
    let mut conn = TcpStream::connect_timeout(&proxy, LIMIT)?;
    conn.set_read_timeout(Some(LIMIT))?;
    conn.set_write_timeout(Some(LIMIT))?;
    conn.write_all(request)?;
    // Connection: close, so the answer ends with the connection; bounded all the same.
    std::io::copy(&mut (&mut conn).take(1 << 30), &mut std::io::sink())?;
    Ok(())
}

fn header(name: &str, value: &[u8]) -> Header {
    Header {
        name: name.to_owned(),
        value: value.to_vec(),
    }
}

/// Whether `entry` may be served without asking the origin, for a request with `rcc`.
fn fresh_for(entry: &Entry, rcc: &RequestDirectives) -> bool {
    let age = entry.age();
    let lifetime = entry.lifetime.duration;
    age < lifetime
        && !entry.directives.no_cache
        && !rcc.no_cache
        && rcc.max_age.is_none_or(|m| age <= m)
        && rcc.min_fresh.is_none_or(|m| lifetime - age >= m)
}

/// A `Range` request's one byte range, as RFC 9110 section 14.1.2 writes it.
#[derive(Debug, PartialEq, Eq)]
enum ByteRange {
    /// First and last byte, both inside the body.
    Satisfiable(usize, usize),
    Unsatisfiable,
    /// Several ranges: left to the origin.
    Several,
    /// Not a bytes range we can read: ignored, as a server may (the whole body is sent).
    Ignored,
}

fn byte_range(value: &[u8], len: usize) -> ByteRange {
    let Some(spec) = std::str::from_utf8(value).ok().and_then(|v| {
        let v = v.trim();
        v.get(..6)
            .filter(|p| p.eq_ignore_ascii_case("bytes="))
            .map(|_| &v[6..])
    }) else {
        return ByteRange::Ignored;
    };
    if spec.contains(',') {
        return ByteRange::Several;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Ignored;
    };
    let number = |t: &str| -> Option<usize> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().unwrap_or(usize::MAX))
    };
    match (number(first), number(last), first.is_empty()) {
        // bytes=-N: the last N bytes
        (None, Some(n), true) if n > 0 && len > 0 => {
            ByteRange::Satisfiable(len.saturating_sub(n), len - 1)
        }
        (None, Some(_), true) => ByteRange::Unsatisfiable,
        (Some(a), None, false) if last.is_empty() => {
            if a < len {
                ByteRange::Satisfiable(a, len - 1)
            } else {
                ByteRange::Unsatisfiable
            }
        }
        (Some(a), Some(b), _) if a <= b => {
            if a < len {
                ByteRange::Satisfiable(a, b.min(len - 1))
            } else {
                ByteRange::Unsatisfiable
            }
        }
        _ => ByteRange::Ignored,
    }
}

/// Cuts a full reply from an entry to the range (RFC 9110 section 15.3.7), or answers 416.
fn ranged(mut reply: Reply, range: &ByteRange) -> Reply {
    let body = reply.body.as_bytes();
    let len = body.len();
    match *range {
        ByteRange::Satisfiable(first, last) => {
            let part = body[first..=last].to_vec();
            reply.head.status = 206;
            reply.head.reason = "Partial Content".to_owned();
            reply.head.headers.push(header(
                "Content-Range",
                format!("bytes {first}-{last}/{len}").as_bytes(),
            ));
            reply.body = ReplyBody::Owned(part);
            reply
        }
        _ => {
            let mut refusal = Reply::new(416);
            refusal
                .head
                .headers
                .push(header("Content-Range", format!("bytes */{len}").as_bytes()));
            refusal
        }
    }
}

/// The key of a request: `scheme://host` (lower-case), the target, and its route if any. The
/// route is part of it: two routes that strip their prefixes can both send `/x` for one Host,
/// to different services. One allocation: it is built for every request. Also returns the
/// length of its `scheme://host` part.
fn cache_key(proto: &str, head: &RequestHead) -> (String, usize) {
    let host = head.header("host").unwrap_or_default();
    let route_len = head.route.as_ref().map_or(0, |r| r.len() + 7);
    let mut key =
        String::with_capacity(proto.len() + 3 + host.len() + head.target.len() + route_len);
    key.push_str(proto);
    key.push_str("://");
    // Bytes as chars: ASCII lower-cased, anything else kept apart (a valid Host is ASCII).
    key.extend(host.iter().map(|b| char::from(b.to_ascii_lowercase())));
    let origin_len = key.len();
    key.push_str(&head.target);
    if let Some(route) = &head.route {
        key.push_str(" route=");
        key.push_str(route);
    }
    (key, origin_len)
}

/// Whether the client set preconditions of its own that a cache does not evaluate
/// (`If-Match`, `If-Unmodified-Since`, `If-Range`): such a request goes upstream as it is.
fn has_preconditions(request: &RequestHead) -> bool {
    ["if-match", "if-unmodified-since", "if-range"]
        .iter()
        .any(|n| request.header(n).is_some())
}

/// A client's cache validators: its `If-None-Match` and `If-Modified-Since` lines.
#[derive(Debug, Default)]
struct Conditions(Vec<Header>);

impl Conditions {
    const NAMES: [&'static str; 2] = ["if-none-match", "if-modified-since"];

    fn of(request: &RequestHead) -> Conditions {
        Conditions(
            request
                .headers
                .iter()
                .filter(|h| Self::NAMES.iter().any(|n| h.name.eq_ignore_ascii_case(n)))
                .cloned()
                .collect(),
        )
    }
}

impl Headers for Conditions {
    fn header_list(&self) -> &[Header] {
        &self.0
    }
}

/// Whether the client's `If-None-Match` (weak comparison), or failing that its
/// `If-Modified-Since`, says it has this entry already (RFC 9110 section 13.2.2).
fn not_modified(request: &Conditions, entry: &Entry) -> bool {
    if request.header("if-none-match").is_some() {
        let Some(etag) = entry.head.header("etag") else {
            return false;
        };
        return request
            .values("if-none-match")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .any(|tag| tag == b"*" || weak_eq(tag, etag));
    }
    let Some(since) = request
        .header("if-modified-since")
        .and_then(parse_http_date)
    else {
        return false;
    };
    let modified = entry
        .head
        .header("last-modified")
        .or_else(|| entry.head.header("date"))
        .and_then(parse_http_date);
    modified.is_some_and(|m| m <= since)
}

/// Weak comparison of entity tags: equal once any `W/` is removed (RFC 9110 section 8.8.3.2).
fn weak_eq(a: &[u8], b: &[u8]) -> bool {
    let opaque = |t: &[u8]| -> Vec<u8> {
        t.trim_ascii()
            .strip_prefix(b"W/")
            .unwrap_or(t.trim_ascii())
            .to_vec()
    };
    opaque(a) == opaque(b)
}

/// The cache key of a `Location` or `Content-Location` value if it names the same origin:
/// a path (`/x`), or an absolute URL with the same scheme and host.
fn same_origin_key(origin: &str, value: &[u8]) -> Option<String> {
    let value = std::str::from_utf8(value).ok()?.trim();
    if value.starts_with('/') && !value.starts_with("//") {
        return Some(format!("{origin}{value}"));
    }
    let scheme_end = value.find("://")? + 3;
    let authority_end = value[scheme_end..]
        .find('/')
        .map_or(value.len(), |i| scheme_end + i);
    if !value[..authority_end].eq_ignore_ascii_case(origin) {
        return None;
    }
    let path = &value[authority_end..];
    Some(format!(
        "{origin}{}",
        if path.is_empty() { "/" } else { path }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_table() {
        use ByteRange::*;
        let table: &[(&str, usize, ByteRange)] = &[
            ("bytes=0-4", 10, Satisfiable(0, 4)),
            ("Bytes=2-", 10, Satisfiable(2, 9)),
            ("bytes=-3", 10, Satisfiable(7, 9)),
            ("bytes=-30", 10, Satisfiable(0, 9)),
            ("bytes=5-100", 10, Satisfiable(5, 9)),
            ("bytes=10-", 10, Unsatisfiable),
            ("bytes=10-12", 10, Unsatisfiable),
            ("bytes=-0", 10, Unsatisfiable),
            ("bytes=0-1,4-5", 10, Several),
            ("bytes=5-2", 10, Ignored),
            ("items=0-1", 10, Ignored),
            ("bytes=a-b", 10, Ignored),
            ("bytes=-", 10, Ignored),
        ];
        for (value, len, want) in table {
            assert_eq!(&byte_range(value.as_bytes(), *len), want, "{value}");
        }
    }

    #[test]
    fn weak_comparison_ignores_w_slash() {
        assert!(weak_eq(b"W/\"a\"", b"\"a\""));
        assert!(weak_eq(b"\"a\"", b"W/\"a\""));
        assert!(!weak_eq(b"\"a\"", b"\"b\""));
    }

    #[test]
    fn same_origin_locations_only() {
        let o = "http://a.test";
        assert_eq!(same_origin_key(o, b"/x"), Some("http://a.test/x".into()));
        assert_eq!(
            same_origin_key(o, b"http://A.test/y"),
            Some("http://a.test/y".into())
        );
        assert_eq!(
            same_origin_key(o, b"http://a.test"),
            Some("http://a.test/".into())
        );
        assert_eq!(same_origin_key(o, b"http://b.test/x"), None);
        assert_eq!(same_origin_key(o, b"https://a.test/x"), None);
        assert_eq!(same_origin_key(o, b"//b.test/x"), None);
        assert_eq!(same_origin_key(o, b"x"), None);
    }
}
