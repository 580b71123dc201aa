//! The stored responses: an LRU of URLs (the `lru` crate, behind one `Mutex` since its `get`
//! moves the entry), each holding the variants its `Vary` selects, bounded by bytes and by
//! entries; and the in-flight misses that concurrent requests wait on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::control::ResponseDirectives;
use super::freshness::Lifetime;
use super::partial::Span;
use crate::http::head::Headers;
use crate::http::weight::qvalue;
use crate::http::{RequestHead, ResponseHead};
use crate::relay::SharedFields;

/// Variants kept per URL: a `Vary: User-Agent` must not fill the cache with one URL.
const MAX_VARIANTS: usize = 8;

/// One stored response.
#[derive(Debug)]
pub struct Entry {
    /// Status, reason and the fields kept (`policy::kept_headers`).
    pub head: ResponseHead,
    /// The same fields, serialised once for the hits (`Reply::shared`).
    pub fields: Arc<SharedFields>,
    pub body: Arc<[u8]>,
    /// The request's value of each field the response's `Vary` names (lower-case names).
    pub vary: Vec<(String, Vec<u8>)>,
    pub directives: ResponseDirectives,
    pub lifetime: Lifetime,
    /// Its age when it arrived (RFC 9111 section 4.2.3) ...
    pub initial_age: Duration,
    /// ... and since when it is held.
    pub stored_at: Instant,
    /// For a part (a stored `206`): where its body sits in the whole representation.
    pub span: Option<Span>,
}

impl Entry {
    /// An entry held from now, its fields serialised for the hits.
    pub fn new(
        head: ResponseHead,
        body: Arc<[u8]>,
        vary: Vec<(String, Vec<u8>)>,
        directives: ResponseDirectives,
        lifetime: Lifetime,
        initial_age: Duration,
    ) -> Entry {
        Entry {
            fields: Arc::new(SharedFields::new(head.headers.clone())),
            head,
            body,
            vary,
            directives,
            lifetime,
            initial_age,
            stored_at: Instant::now(),
            span: None,
        }
    }

    /// The same entry as a part of a representation, at `span`.
    pub fn with_span(mut self, span: Option<Span>) -> Entry {
        self.span = span;
        self
    }

    /// The length of the whole representation (of which a part holds some bytes).
    pub fn complete_len(&self) -> u64 {
        self.span
            .map_or(self.body.len() as u64, |span| span.complete)
    }

    /// The same entry, its hits sent without the fields named in `hidden` (any case). The
    /// stored head keeps them, so a `304` that refreshes the entry is read with them.
    pub fn hiding(mut self, hidden: &[String]) -> Entry {
        if !hidden.is_empty() {
            let shown = self
                .head
                .headers
                .iter()
                .filter(|h| !hidden.iter().any(|n| n.eq_ignore_ascii_case(&h.name)))
                .cloned()
                .collect();
            self.fields = Arc::new(SharedFields::new(shown));
        }
        self
    }

    pub fn age(&self) -> Duration {
        self.initial_age + self.stored_at.elapsed()
    }

    /// How long past its lifetime it is; zero while fresh.
    pub fn staleness(&self) -> Duration {
        self.age().saturating_sub(self.lifetime.duration)
    }

    /// Whether the entry is good for nothing any more: stale for longer than
    /// [`KEPT_FOR_MAX_STALE`], without a validator to revalidate it, and past any window in
    /// which its origin allowed it to be served stale (`stale-while-revalidate`,
    /// `stale-if-error`). Such an entry is dropped by the sweep
    /// of [`Store::insert`] rather than left for the LRU to reach.
    pub fn is_spent(&self) -> bool {
        let staleness = self.staleness();
        let past = |window: Option<Duration>| window.is_none_or(|w| staleness > w);
        // A client may still take it with `max-stale` for a while: kept that long first.
        staleness > KEPT_FOR_MAX_STALE
            && !super::policy::has_validator(&self.head)
            && past(self.directives.stale_while_revalidate)
            && past(self.directives.stale_if_error)
    }

    /// Bytes this entry holds, roughly: the body and the stored head.
    pub fn size(&self) -> u64 {
        let head: usize = self
            .head
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum();
        (self.body.len() + head + 64) as u64
    }

    /// Whether `request` selects this variant: each field `Vary` names has the value the
    /// variant was stored for.
    pub fn matches(&self, request: &RequestHead) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| &request_value(request, name) == value)
    }

    /// Whether `request` selects this variant by its language: as [`Entry::matches`], but an
    /// `Accept-Language` of another value will do when it prefers the variant's one
    /// `Content-Language` above every other range (`language::prefers`).
    pub fn matches_by_language(&self, request: &RequestHead) -> bool {
        self.vary.iter().any(|(name, _)| name == "accept-language")
            && super::language::prefers(request, &self.head)
            && self.vary.iter().all(|(name, value)| {
                name == "accept-language" || &request_value(request, name) == value
            })
    }
}

/// The request's value of `name` as a variant key: every line, joined with commas, without
/// the whitespace around commas outside quoted strings; the preference lists normalised (see
/// [`normal_preferences`]), so two requests that say the same thing select the same variant
/// (RFC 9111 section 4.1: whitespace may be added or removed where the syntax allows it, and
/// lines combined). Joining lines already reads the field as a list, whose syntax allows
/// optional whitespace around each comma (RFC 9110 section 5.6.1), so `1,2`, ` 1, 2 ` and
/// two lines `1` and `2` are one variant.
pub fn request_value(request: &RequestHead, name: &str) -> Vec<u8> {
    let mut joined = Vec::new();
    for value in request.values(name) {
        if !joined.is_empty() {
            joined.push(b',');
        }
        joined.extend_from_slice(value);
    }
    let out = without_list_spaces(&joined);
    if PREFERENCE_LISTS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(name))
    {
        if let Some(normal) = normal_preferences(&out) {
            return normal;
        }
    }
    out
}

/// `value` without spaces and tabs next to a comma outside a quoted string, nor at its ends.
fn without_list_spaces(value: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(value.len());
    let (mut quoted, mut escaped) = (false, false);
    let mut after_comma = true; // the start trims like a comma
    for &b in value {
        if quoted {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match b {
            b' ' | b'\t' if after_comma => {}
            b',' => {
                while out.last().is_some_and(|c| matches!(c, b' ' | b'\t')) {
                    out.pop();
                }
                out.push(b',');
                after_comma = true;
            }
            _ => {
                quoted = b == b'"';
                after_comma = false;
                out.push(b);
            }
        }
    }
    if !quoted {
        while out.last().is_some_and(|c| matches!(c, b' ' | b'\t')) {
            out.pop();
        }
    }
    out
}

/// Request fields whose value is a list of case-insensitive items with optional weights
/// (RFC 9110 section 12.4.2): `Accept-Language: en-US, fr;q=0.8`.
const PREFERENCE_LISTS: [&str; 4] = [
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
];

/// A preference list in one spelling: items lower-cased (language tags, codings, charsets and
/// media types are case-insensitive), whitespace and empty elements dropped, `q` written as
/// thousandths and left out when it is 1, and the items ordered by weight, highest first
/// (the weights, not the order, say what is preferred; items of equal weight keep their
/// order, which a server may read). `None` for a value that does not parse: it is then
/// compared as sent, never guessed at.
fn normal_preferences(value: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(value).ok()?;
    let mut items: Vec<(u16, String)> = Vec::new();
    for element in text.split(',') {
        let mut parts = element.split(';');
        let item = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        if item.is_empty() {
            if parts.next().is_some() {
                return None; // parameters without an item
            }
            continue; // an empty list element, which the list syntax allows
        }
        let mut q = 1000;
        let mut normal = item;
        for param in parts {
            let (name, arg) = param.split_once('=')?;
            let (name, arg) = (name.trim().to_ascii_lowercase(), arg.trim());
            if name == "q" {
                q = qvalue(arg.as_bytes())?;
            } else {
                normal.push(';');
                normal.push_str(&name);
                normal.push('=');
                normal.push_str(arg);
            }
        }
        items.push((q, normal));
    }
    items.sort_by_key(|&(q, _)| std::cmp::Reverse(q)); // stable: equal weights keep order
    let mut out = String::new();
    for (q, item) in &items {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(item);
        if *q != 1000 {
            out.push_str(&format!(";q={}", f64::from(*q) / 1000.0));
        }
    }
    Some(out.into_bytes())
}

/// The variant key of a response about to be stored.
pub fn vary_key(request: &RequestHead, response: &ResponseHead) -> Vec<(String, Vec<u8>)> {
    crate::exercise::stub!("vary_key");
    let mut names: Vec<String> = response
        .values("vary")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let value = request_value(request, &name);
            (name, value)
        })
        .collect()
}

/// The limits of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_size: u64,
    pub max_entries: usize,
}

/// Counters, read by the logging phase, `--debug` and (stage 9) `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stores: AtomicU64,
    pub evictions: AtomicU64,
    pub bytes: AtomicU64,
    pub entries: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub stores: u64,
    pub evictions: u64,
    pub bytes: u64,
    pub entries: u64,
}

impl Stats {
    pub fn snapshot(&self) -> CacheStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            hits: get(&self.hits),
            misses: get(&self.misses),
            stores: get(&self.stores),
            evictions: get(&self.evictions),
            bytes: get(&self.bytes),
            entries: get(&self.entries),
        }
    }
}

/// Least recently used URLs checked for spent entries at each store.
const SWEEP_PER_STORE: usize = 4;

/// How long an entry that can no longer be revalidated or served stale by its origin's
/// leave is kept anyway, for clients that accept stale copies (`max-stale`).
const KEPT_FOR_MAX_STALE: Duration = Duration::from_secs(600);

struct Inner {
    urls: LruCache<String, Vec<Arc<Entry>>>,
    bytes: u64,
    entries: usize,
}

pub struct Store {
    inner: Mutex<Inner>,
    limits: Limits,
    pub stats: Stats,
}

impl Store {
    pub fn new(limits: Limits) -> Store {
        Store {
            // Bounded by our own byte and entry counts, not by the crate's URL count.
            inner: Mutex::new(Inner {
                urls: LruCache::unbounded(),
                bytes: 0,
                entries: 0,
            }),
            limits,
            stats: Stats::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the map half-updated in a way we rely on.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The variant of `key` that `request` selects, marked as recently used: one stored for
    /// the same values, else one in the language the request prefers.
    pub fn get(&self, key: &str, request: &RequestHead) -> Option<Arc<Entry>> {
        let mut inner = self.lock();
        let variants = inner.urls.get(key)?;
        variants
            .iter()
            .find(|e| e.matches(request))
            .or_else(|| variants.iter().find(|e| e.matches_by_language(request)))
            .cloned()
    }

    /// The stored variant of `key` whose variant key is `vary`, without marking it used.
    pub fn variant(&self, key: &str, vary: &[(String, Vec<u8>)]) -> Option<Arc<Entry>> {
        let inner = self.lock();
        inner
            .urls
            .peek(key)?
            .iter()
            .find(|e| e.vary == vary)
            .cloned()
    }

    /// Stores `entry` under `key`, replacing the variant with the same key, then evicts the
    /// least recently used until the limits hold. An entry larger than the whole cache is
    /// not stored.
    pub fn insert(&self, key: &str, entry: Entry) {
        self.insert_arc(key, Arc::new(entry));
    }

    /// Puts `new` in the place of `old` (a refreshed entry after a `304`).
    pub fn replace(&self, key: &str, old: &Arc<Entry>, new: Arc<Entry>) {
        self.remove_entry(key, old);
        self.insert_arc(key, new);
    }

    fn insert_arc(&self, key: &str, entry: Arc<Entry>) {
        let size = entry.size();
        if size > self.limits.max_size || self.limits.max_entries == 0 {
            return;
        }
        let mut inner = self.lock();
        let mut variants = inner.urls.pop(key).unwrap_or_default();
        let (mut freed, mut removed) = (0, 0);
        variants.retain(|e| {
            let same = e.vary == entry.vary;
            if same {
                freed += e.size();
                removed += 1;
            }
            !same
        });
        if variants.len() >= MAX_VARIANTS {
            let oldest = variants.remove(0);
            freed += oldest.size();
            removed += 1;
        }
        variants.push(entry);
        inner.bytes = inner.bytes - freed + size;
        inner.entries = inner.entries - removed + 1;
        inner.urls.put(key.to_owned(), variants);
        self.stats.stores.fetch_add(1, Ordering::Relaxed);
        let mut evicted = 0;
        // Each turn removes one URL, so this ends; the newest is never the least recent.
        while inner.bytes > self.limits.max_size || inner.entries > self.limits.max_entries {
            let Some((_, gone)) = inner.urls.pop_lru() else {
                break;
            };
            inner.bytes -= gone.iter().map(|e| e.size()).sum::<u64>();
            inner.entries -= gone.len();
            evicted += gone.len() as u64;
        }
        // Expired entries: the few least recently used URLs are looked at on every store, and
        // dropped when every variant is spent, so the cache sheds what it can no longer serve
        // as it goes (a bounded amount of work per store), not only when space runs out.
        let spent: Vec<String> = inner
            .urls
            .iter()
            .rev()
            .take(SWEEP_PER_STORE)
            .filter(|(url, variants)| *url != key && variants.iter().all(|e| e.is_spent()))
            .map(|(url, _)| url.clone())
            .collect();
        for url in spent {
            if let Some(gone) = inner.urls.pop(&url) {
                inner.bytes -= gone.iter().map(|e| e.size()).sum::<u64>();
                inner.entries -= gone.len();
                evicted += gone.len() as u64;
            }
        }
        self.stats.evictions.fetch_add(evicted, Ordering::Relaxed);
        self.publish(&inner);
    }

    /// Drops every variant of `key` (an unsafe request changed it, or it expired unusable).
    pub fn remove(&self, key: &str) {
        let mut inner = self.lock();
        if let Some(gone) = inner.urls.pop(key) {
            inner.bytes -= gone.iter().map(|e| e.size()).sum::<u64>();
            inner.entries -= gone.len();
            self.publish(&inner);
        }
    }

    /// Drops one variant (`entry`) of `key`, if it is still the stored one.
    pub fn remove_entry(&self, key: &str, entry: &Arc<Entry>) {
        let mut inner = self.lock();
        let Some(variants) = inner.urls.peek_mut(key) else {
            return;
        };
        let before = variants.len();
        variants.retain(|e| !Arc::ptr_eq(e, entry));
        if variants.len() < before {
            let empty = variants.is_empty();
            inner.bytes -= entry.size();
            inner.entries -= 1;
            if empty {
                inner.urls.pop(key);
            }
            self.publish(&inner);
        }
    }

    fn publish(&self, inner: &Inner) {
        self.stats.bytes.store(inner.bytes, Ordering::Relaxed);
        self.stats
            .entries
            .store(inner.entries as u64, Ordering::Relaxed);
    }
}

/// Misses in flight, by key: the first request for a key leads, the others wait on it
/// (nginx's `proxy_cache_lock`).
#[derive(Default)]
pub struct Flights {
    map: Mutex<HashMap<String, Arc<Flight>>>,
}

#[derive(Default)]
pub struct Flight {
    done: Mutex<bool>,
    landed: Condvar,
}

/// Held by the request that leads a miss; dropping it (stored or not) wakes the waiters.
pub struct Lead {
    flights: Arc<Flights>,
    key: String,
    flight: Arc<Flight>,
}

pub enum Joined {
    Lead(Lead),
    Wait(Arc<Flight>),
}

impl Flights {
    pub fn join(self: &Arc<Flights>, key: &str) -> Joined {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flight) = map.get(key) {
            return Joined::Wait(Arc::clone(flight));
        }
        let flight = Arc::new(Flight::default());
        map.insert(key.to_owned(), Arc::clone(&flight));
        Joined::Lead(Lead {
            flights: Arc::clone(self),
            key: key.to_owned(),
            flight,
        })
    }
}

impl Flight {
    /// Waits until the leader is done, at most `limit`. Returns whether it landed.
    pub fn wait(&self, limit: Duration) -> bool {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let (done, _) = self
            .landed
            .wait_timeout_while(done, limit, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        *done
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        {
            let mut map = self.flights.map.lock().unwrap_or_else(|e| e.into_inner());
            if map
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                map.remove(&self.key);
            }
        }
        *self.flight.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.flight.landed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::super::freshness::Source;
    use super::*;
    use crate::http::Header;
    use std::thread;

    /// A stored entry made from parts.
    fn entry(
        head: ResponseHead,
        body: Arc<[u8]>,
        vary: Vec<(String, Vec<u8>)>,
        lifetime: Lifetime,
        initial_age: Duration,
    ) -> Entry {
        let directives = ResponseDirectives::parse(&head);
        Entry::new(head, body, vary, directives, lifetime, initial_age)
    }

    /// One header by name, for building heads in tests.
    fn header(name: &str, value: &[u8]) -> Header {
        Header {
            name: name.to_owned(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn a_store_sweeps_spent_entries_and_keeps_those_it_can_still_use() {
        let store = Store::new(Limits {
            max_size: 1 << 20,
            max_entries: 100,
        });
        let expired = || Lifetime {
            duration: Duration::ZERO,
            source: Source::MaxAge,
        };
        let long_ago = KEPT_FOR_MAX_STALE + Duration::from_secs(1);
        let mut with_etag = head(None);
        with_etag.headers.push(header("ETag", b"\"v1\""));
        let stored = |key: &str, head: ResponseHead, lifetime: Lifetime, age: Duration| {
            store.insert(
                key,
                entry(head, b"x".to_vec().into(), vec![], lifetime, age),
            );
        };
        stored("spent", head(None), expired(), long_ago);
        stored("etag", with_etag, expired(), long_ago);
        stored("recent", head(None), expired(), Duration::ZERO);
        stored("fresh", head(None), fresh(), Duration::ZERO);
        let request = request(None);
        assert!(
            store.get("spent", &request).is_none(),
            "a spent entry is swept"
        );
        for kept in ["etag", "recent", "fresh"] {
            assert!(store.get(kept, &request).is_some(), "{kept} is kept");
        }
        assert_eq!(store.stats.snapshot().entries, 3);
    }

    fn fresh() -> Lifetime {
        Lifetime {
            duration: Duration::from_secs(60),
            source: Source::MaxAge,
        }
    }

    fn head(vary: Option<&str>) -> ResponseHead {
        ResponseHead {
            status: 200,
            reason: "OK".into(),
            minor_version: 1,
            headers: vary
                .map(|v| header("Vary", v.as_bytes()))
                .into_iter()
                .collect(),
        }
    }

    fn request(lang: Option<&str>) -> RequestHead {
        RequestHead {
            method: "GET".into(),
            target: "/".into(),
            minor_version: 1,
            headers: lang
                .map(|l| header("Accept-Language", l.as_bytes()))
                .into_iter()
                .collect(),
            route: None,
            original_target: None,
        }
    }

    fn put(store: &Store, key: &str, req: &RequestHead, res: ResponseHead, body: &[u8]) {
        let vary = vary_key(req, &res);
        store.insert(key, entry(res, body.into(), vary, fresh(), Duration::ZERO));
    }

    #[test]
    fn variants_are_chosen_by_the_request_fields_vary_names() {
        let store = Store::new(Limits {
            max_size: 1 << 20,
            max_entries: 100,
        });
        let (en, fr) = (request(Some("en")), request(Some("fr")));
        put(&store, "k", &en, head(Some("accept-language")), b"hello");
        put(&store, "k", &fr, head(Some("Accept-Language")), b"bonjour");
        assert_eq!(&*store.get("k", &en).unwrap().body, b"hello");
        assert_eq!(&*store.get("k", &fr).unwrap().body, b"bonjour");
        assert!(store.get("k", &request(None)).is_none());
        put(&store, "k", &en, head(Some("accept-language")), b"hi");
        assert_eq!(&*store.get("k", &en).unwrap().body, b"hi");
        assert_eq!(
            store.stats.snapshot().entries,
            2,
            "the en variant was replaced"
        );
    }

    /// RFC 9111 section 4.1: values that differ only in whitespace, case, how the list is
    /// split over lines, or the order of items of different weight select the same variant.
    #[test]
    fn preference_lists_select_a_variant_however_they_are_spelled() {
        let store = Store::new(Limits {
            max_size: 1 << 20,
            max_entries: 100,
        });
        let stored = request(Some("en-US,fr;q=0.8"));
        put(&store, "k", &stored, head(Some("Accept-Language")), b"en");
        let same = [
            "en-US, fr;q=0.8",
            "en-us,FR;Q=0.80",
            "fr;q=0.8, en-US",
            " en-US ,, fr ; q=0.800 ",
            "en-US;q=1.0,fr;q=0.8",
        ];
        for lang in same {
            assert!(store.get("k", &request(Some(lang))).is_some(), "{lang}");
        }
        let mut two_lines = request(Some("en-US"));
        two_lines
            .headers
            .push(header("Accept-Language", b"fr;q=0.8"));
        assert!(store.get("k", &two_lines).is_some(), "two lines");
        for other in [
            "fr,en-US",
            "en-US,fr;q=0.7",
            "en-US",
            "en-GB,fr;q=0.8",
            "en-US,fr;q=x",
        ] {
            assert!(store.get("k", &request(Some(other))).is_none(), "{other}");
        }
        assert_eq!(
            normal_preferences(b"gzip, BR;q=0"),
            Some(b"gzip,br;q=0".to_vec())
        );
        assert_eq!(normal_preferences(b"a;q=1.5"), None);
        assert_eq!(normal_preferences(b"a;q"), None);
    }

    /// A variant in one language serves a request that prefers that language above all
    /// others (`language::prefers`), when every other field `Vary` names matches; one stored
    /// for the request's very values comes first.
    #[test]
    fn a_variant_serves_a_request_that_prefers_its_one_language() {
        let store = Store::new(Limits {
            max_size: 1 << 20,
            max_entries: 100,
        });
        let german = |vary: &str| {
            let mut head = head(Some(vary));
            head.headers.push(header("Content-Language", b"de"));
            head
        };
        put(
            &store,
            "k",
            &request(Some("en, de")),
            german("Accept-Language"),
            b"de",
        );
        let get = |key, lang| {
            store
                .get(key, &request(Some(lang)))
                .map(|e| e.body.to_vec())
        };
        assert_eq!(get("k", "fr;q=0.5, de;q=1.0").as_deref(), Some(&b"de"[..]));
        assert_eq!(get("k", "DE").as_deref(), Some(&b"de"[..]));
        for other in ["en, de;q=0.9", "de, fr", "*", "de;q=0", "fr"] {
            assert_eq!(get("k", other), None, "{other}");
        }
        put(
            &store,
            "k",
            &request(Some("de")),
            german("Accept-Language"),
            b"for de",
        );
        assert_eq!(
            get("k", "de").as_deref(),
            Some(&b"for de"[..]),
            "same values first"
        );
        // Another varied field must still match as before.
        let mut gzip = request(Some("en, de"));
        gzip.headers.push(header("Accept-Encoding", b"gzip"));
        put(
            &store,
            "v",
            &gzip,
            german("Accept-Language, Accept-Encoding"),
            b"gz",
        );
        let mut asks = request(Some("de"));
        assert!(store.get("v", &asks).is_none(), "no Accept-Encoding");
        asks.headers.push(header("Accept-Encoding", b"gzip"));
        assert_eq!(
            store.get("v", &asks).map(|e| e.body.to_vec()).as_deref(),
            Some(&b"gz"[..])
        );
        // Without Accept-Language among the varied fields, the language does not count.
        put(&store, "e", &gzip, german("Accept-Encoding"), b"e");
        let mut br = request(Some("de"));
        br.headers.push(header("Accept-Encoding", b"br"));
        assert!(store.get("e", &br).is_none());
    }

    #[test]
    fn spaces_around_commas_outside_quotes_do_not_count() {
        let table: &[(&str, &str)] = &[
            ("1,2", "1,2"),
            (" 1, 2 ", "1,2"),
            ("1 ,\t2", "1,2"),
            ("a  b, c", "a  b,c"),
            ("\"x , y\", z", "\"x , y\",z"),
            ("\"a\\\" , b\" ,c", "\"a\\\" , b\",c"),
            ("", ""),
        ];
        for (value, want) in table {
            assert_eq!(
                without_list_spaces(value.as_bytes()),
                want.as_bytes(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn the_least_recently_used_goes_first_by_bytes_and_by_count() {
        let one = entry(
            head(None),
            vec![0u8; 1000].into(),
            vec![],
            fresh(),
            Duration::ZERO,
        )
        .size();
        let store = Store::new(Limits {
            max_size: one * 2,
            max_entries: 100,
        });
        let req = request(None);
        put(&store, "a", &req, head(None), &[0u8; 1000]);
        put(&store, "b", &req, head(None), &[0u8; 1000]);
        assert!(store.get("a", &req).is_some()); // a is now more recent than b
        put(&store, "c", &req, head(None), &[0u8; 1000]);
        assert!(store.get("b", &req).is_none(), "b was least recently used");
        assert!(store.get("a", &req).is_some() && store.get("c", &req).is_some());
        let s = store.stats.snapshot();
        assert_eq!((s.evictions, s.entries, s.bytes), (1, 2, one * 2));

        let store = Store::new(Limits {
            max_size: 1 << 20,
            max_entries: 2,
        });
        for key in ["a", "b", "c"] {
            put(&store, key, &req, head(None), b"x");
        }
        assert!(store.get("a", &req).is_none());
        assert_eq!(store.stats.snapshot().entries, 2);
    }

    #[test]
    fn waiters_wake_when_the_leader_is_done() {
        let flights = Arc::new(Flights::default());
        let Joined::Lead(lead) = flights.join("k") else {
            panic!("the first one leads")
        };
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let Joined::Wait(flight) = flights.join("k") else {
                    panic!("the others wait")
                };
                thread::spawn(move || flight.wait(Duration::from_secs(10)))
            })
            .collect();
        drop(lead);
        for w in waiters {
            assert!(w.join().unwrap());
        }
        assert!(
            matches!(flights.join("k"), Joined::Lead(_)),
            "the flight is over"
        );
    }
}
