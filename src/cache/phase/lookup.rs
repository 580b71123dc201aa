//! A stored entry for a request, and whether it may serve it: fresh, stale but acceptable to
//! the client, stale while one refresh runs in the background, stale because the origin
//! failed; otherwise the request goes on, made conditional on the entry's validators. A miss
//! that may be stored waits for the one request already fetching it (as nginx's
//! `proxy_cache_lock`).

use std::sync::Arc;
use std::time::SystemTime;

use super::conditional::{has_preconditions, not_modified, Conditions};
use super::{header, CacheCtx, CachePhases, Label, Lookup};
use crate::cache::control::RequestDirectives;
use crate::cache::policy;
use crate::cache::store::{Entry, Joined};
use crate::http::head::Headers;
use crate::http::{Header, RequestHead, ResponseHead};
use crate::relay::{Reply, ReplyBody};

impl CachePhases {
    pub(super) fn lookup(&self, ctx: &mut CacheCtx, head: &mut RequestHead, key: &str) -> Lookup {
        let Some(entry) = self.store.get(key, head) else {
            return Lookup::Miss;
        };
        if entry.span.is_some() {
            return self.complete_part(ctx, head, &entry);
        }
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
    pub(super) fn serve(
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

    /// The stale entry, if the origin's failure may be answered with it (RFC 5861).
    pub(super) fn stale_if_error(&self, ctx: &mut CacheCtx) -> Option<Reply> {
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

    /// Looks `key` up: a reply from an entry, or `None` to go upstream (leading the miss
    /// when the response may be stored, after waiting for the one that leads it if any).
    pub(super) fn lookup_or_lead(
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
}

/// Whether `entry` may be served without asking the origin, for a request with `rcc`.
pub(super) fn fresh_for(entry: &Entry, rcc: &RequestDirectives) -> bool {
    let age = entry.age();
    let lifetime = entry.lifetime.duration;
    age < lifetime
        && !entry.directives.no_cache
        && !rcc.no_cache
        && rcc.max_age.is_none_or(|m| age <= m)
        && rcc.min_fresh.is_none_or(|m| lifetime - age >= m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cache_control: &str, lifetime_s: u64, age_s: u64) -> Entry {
        use crate::cache::control::ResponseDirectives;
        use crate::cache::freshness::{Lifetime, Source};
        use std::time::Duration;
        let head = ResponseHead {
            status: 200,
            reason: "OK".into(),
            minor_version: 1,
            headers: vec![Header {
                name: "Cache-Control".into(),
                value: cache_control.as_bytes().to_vec(),
            }],
        };
        let directives = ResponseDirectives::parse(&head);
        let lifetime = Lifetime {
            duration: Duration::from_secs(lifetime_s),
            source: Source::MaxAge,
        };
        Entry::new(
            head,
            b"x"[..].into(),
            Vec::new(),
            directives,
            lifetime,
            Duration::from_secs(age_s),
        )
    }

    fn asks(cache_control: &str) -> RequestDirectives {
        let headers: &[(&str, &str)] = if cache_control.is_empty() {
            &[]
        } else {
            &[("Cache-Control", cache_control)]
        };
        RequestDirectives::parse(&crate::cache::test_heads::request("GET", "/", headers))
    }

    #[test]
    fn fresh_for_weighs_the_entry_and_the_request() {
        // 100 s of life, 10 s old: fresh for a plain request.
        let young = entry("max-age=100", 100, 10);
        assert!(fresh_for(&young, &asks("")));
        assert!(fresh_for(&young, &asks("max-age=20")));
        assert!(!fresh_for(&young, &asks("max-age=5")));
        assert!(fresh_for(&young, &asks("min-fresh=80")));
        assert!(!fresh_for(&young, &asks("min-fresh=95")));
        assert!(!fresh_for(&young, &asks("no-cache")));
        // Past its lifetime, or stored with no-cache: never fresh.
        assert!(!fresh_for(&entry("max-age=100", 100, 100), &asks("")));
        assert!(!fresh_for(&entry("no-cache", 100, 0), &asks("")));
    }
}
