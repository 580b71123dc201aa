//! The copy of a miss into the store: decided on the response head (`policy::storable`),
//! taken by a body observer while the body streams to the client, stored when it ended whole
//! (a `206` as a part, combined with the part already stored when they are of one
//! representation); and an entry refreshed by a `304` to the cache's own revalidation.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::{key, CacheCtx, CachePhases};
use crate::cache::control::ResponseDirectives;
use crate::cache::freshness::{self, Lifetime};
use crate::cache::partial::{self, ContentRange, Span};
use crate::cache::policy;
use crate::cache::store::{vary_key, Entry, Lead, Store};
use crate::http::head::Headers;
use crate::http::{RequestHead, ResponseHead};
use crate::relay::{BodyObserver, BodyPlan};

impl CachePhases {
    /// Decides on the response head whether to keep a copy, and if so observes the body.
    pub(super) fn plan_store(
        &self,
        ctx: &mut CacheCtx,
        key: &str,
        request: &RequestHead,
        response: &ResponseHead,
        plan: &mut BodyPlan,
    ) {
        let response_time = SystemTime::now();
        let cc = self.directives(response);
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
        // `storable` let a 206 through only with its one Content-Range, which a part's hit
        // writes itself for the range it serves.
        let range = (response.status == 206)
            .then(|| partial::content_range(response))
            .flatten();
        let mut headers = policy::kept_headers(response);
        if range.is_some() {
            headers.retain(|h| !h.name.eq_ignore_ascii_case("content-range"));
        }
        let head = ResponseHead {
            status: response.status,
            reason: response.reason.clone(),
            minor_version: response.minor_version,
            headers,
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
                range,
            }),
            body: Vec::new(),
            hidden: self.hidden.clone(),
            max: self.settings.max_entry_size,
            expected: response
                .header("content-length")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse().ok()),
            lead: ctx.lead.take(),
        });
    }

    /// A response to a `POST` is stored for later `GET`s and `HEAD`s of the request's URI
    /// when it says it is that URI's representation and for how long (RFC 9110 section
    /// 9.3.3, RFC 9111 section 3): a `Content-Location` equal to the target
    /// (`key::names_its_target`) and explicit freshness (`max-age`, `s-maxage`, `Expires`).
    /// It is then judged as a `GET`'s response would be, under the same key, whatever the
    /// request's body was (the body is never part of the key). Any other response to a
    /// `POST` is not stored.
    pub(super) fn plan_post_store(
        &self,
        ctx: &mut CacheCtx,
        request: &RequestHead,
        response: &ResponseHead,
        plan: &mut BodyPlan,
    ) {
        let Some(key) = ctx.key.clone() else {
            return;
        };
        // A part names a range of a representation the client did not ask for.
        let whole = (200..300).contains(&response.status) && response.status != 206;
        if !whole || !key::names_its_target(&key, ctx.origin_len, &request.target, response) {
            return;
        }
        let cc = self.directives(response);
        let explicit = freshness::lifetime(response, &cc, SystemTime::now(), None).explicit();
        if !explicit {
            return;
        }
        let mut as_get = request.clone();
        as_get.method = "GET".to_owned();
        self.plan_store(ctx, &key, &as_get, response, plan);
    }

    /// After a `304` to our revalidation: the entry with the 304's fields and a new age.
    pub(super) fn refresh(
        &self,
        ctx: &CacheCtx,
        entry: &Entry,
        not_modified: &ResponseHead,
    ) -> Entry {
        let response_time = SystemTime::now();
        let mut head = entry.head.clone();
        head.headers = policy::refreshed_headers(&entry.head.headers, not_modified);
        let directives = self.directives(&head);
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
        .hiding(&self.hidden)
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
    /// A `206`'s bytes in the whole representation.
    range: Option<ContentRange>,
}

/// Copies the identity body as it goes to the client, and stores it when it ended whole
/// within `max` bytes. Holds the miss's lead, so that waiters wake when it is stored (or not).
struct Fill {
    store: Arc<Store>,
    key: String,
    /// `None` once the body outgrew `max`: the copy is dropped, the stream goes on.
    parts: Option<Parts>,
    body: Vec<u8>,
    /// Fields the hits do not send (`CachePhases::hidden`).
    hidden: Vec<String>,
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
        let body = std::mem::take(&mut self.body);
        let stored_at = parts.stored_at;
        let entry = match parts.range {
            None => Entry::new(
                parts.head,
                body.into(),
                parts.vary,
                parts.directives,
                parts.lifetime,
                parts.initial_age,
            ),
            Some(range) if range.bytes() == body.len() as u64 => {
                match combined(&self.store, &self.key, parts, range, body) {
                    Some(entry) => entry,
                    None => {
                        self.lead = None;
                        return;
                    }
                }
            }
            Some(range) => {
                log::debug!(
                    "cache: not storing {}: {range:?} but another length",
                    self.key
                );
                self.lead = None;
                return;
            }
        };
        let mut entry = entry.hiding(&self.hidden);
        // Its age counts from when the response head arrived, not from the body's end.
        entry.stored_at = stored_at;
        self.store.insert(&self.key, entry);
        self.lead = None;
    }
}

/// A part (`body`, the bytes `range` names) as an entry: combined with the stored entry of the
/// same variant when both are of one representation (section 3.4: the same strong validator
/// and complete length) and their bytes meet, the new part's fields over the stored ones
/// (section 3.2); a `200` once it holds every byte. A part that cannot be combined replaces
/// a stored part, as any newer response does, but not a whole entry unless their strong
/// validators say the whole is of another representation: `None`, nothing to store.
fn combined(
    store: &Store,
    key: &str,
    parts: Parts,
    range: ContentRange,
    body: Vec<u8>,
) -> Option<Entry> {
    let mut head = parts.head;
    let (mut first, mut body) = (range.first, body);
    if let Some(old) = store.variant(key, &parts.vary) {
        let (old_tag, new_tag) = (partial::strong_etag(&old.head), partial::strong_etag(&head));
        let same = old_tag.is_some() && old_tag == new_tag && old.complete_len() == range.complete;
        let old_first = old.span.map_or(0, |span| span.first);
        match same
            .then(|| partial::combine(old_first, &old.body, first, &body))
            .flatten()
        {
            Some((at, joined)) => {
                head.headers = policy::refreshed_headers(&old.head.headers, &head);
                (first, body) = (at, joined);
            }
            // A whole entry is worth more than a part of it.
            None if old.span.is_none() && (old_tag.is_none() || new_tag.is_none() || same) => {
                return None;
            }
            None => {}
        }
    }
    let whole = first == 0 && body.len() as u64 == range.complete;
    if whole {
        head.status = 200;
        head.reason = "OK".to_owned();
    }
    let entry = Entry::new(
        head,
        body.into(),
        parts.vary,
        parts.directives,
        parts.lifetime,
        parts.initial_age,
    );
    Some(entry.with_span((!whole).then_some(Span {
        first,
        complete: range.complete,
    })))
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cache::freshness::Source;
    use crate::cache::store::Limits;
    use crate::http::Header;

    fn request() -> RequestHead {
        crate::cache::test_heads::request("GET", "/", &[])
    }

    fn fill(store: &Arc<Store>, max: u64, expected: Option<u64>) -> Fill {
        let head = ResponseHead {
            status: 200,
            reason: "OK".into(),
            minor_version: 1,
            headers: vec![Header {
                name: "Cache-Control".into(),
                value: b"max-age=60".to_vec(),
            }],
        };
        Fill {
            store: Arc::clone(store),
            key: "http://a.test/".into(),
            parts: Some(Parts {
                directives: ResponseDirectives::parse(&head),
                head,
                vary: Vec::new(),
                lifetime: Lifetime {
                    duration: Duration::from_secs(60),
                    source: Source::MaxAge,
                },
                initial_age: Duration::ZERO,
                stored_at: Instant::now(),
                range: None,
            }),
            body: Vec::new(),
            hidden: Vec::new(),
            max,
            expected,
            lead: None,
        }
    }

    fn store() -> Arc<Store> {
        Arc::new(Store::new(Limits {
            max_size: 1 << 20,
            max_entries: 16,
        }))
    }

    fn stored(store: &Store) -> Option<Vec<u8>> {
        store
            .get("http://a.test/", &request())
            .map(|e| e.body.to_vec())
    }

    #[test]
    fn a_whole_body_is_stored_when_it_ends() {
        let s = store();
        let mut f = fill(&s, 100, None);
        f.data(b"hello ");
        f.data(b"world");
        assert_eq!(stored(&s), None, "not before the end");
        f.end(true);
        assert_eq!(stored(&s).as_deref(), Some(&b"hello world"[..]));
    }

    #[test]
    fn the_declared_length_completes_the_body_before_the_end() {
        let s = store();
        let mut f = fill(&s, 100, Some(5));
        f.data(b"hello");
        assert_eq!(stored(&s).as_deref(), Some(&b"hello"[..]));
    }

    #[test]
    fn a_broken_or_oversized_body_is_not_stored() {
        let s = store();
        let mut f = fill(&s, 100, None);
        f.data(b"half");
        f.end(false);
        assert_eq!(stored(&s), None);
        let mut f = fill(&s, 8, None);
        f.data(b"12345");
        f.data(b"6789");
        f.end(true);
        assert_eq!(stored(&s), None);
    }
}
