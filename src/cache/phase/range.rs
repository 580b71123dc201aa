//! A `Range` request answered from a fresh stored `200`, or from a stored part (a `206`)
//! that holds every byte it asks for: one byte range cut out (`206`), or `416`. Several
//! ranges, `If-Range`, a range a part does not hold, or a range of anything else go to the
//! origin, and what comes back is stored: a `206` as a part, a `200` whole.

use std::io;
use std::sync::Arc;

use super::conditional::has_preconditions;
use super::lookup::fresh_for;
use super::{header, CacheCtx, CachePhases, Label, Lookup};
use crate::cache::partial;
use crate::cache::store::Entry;
use crate::http::head::Headers;
use crate::http::{RequestHead, ResponseHead};
use crate::relay::{BodyPlan, BodyTransform, Reply, ReplyBody};

impl CachePhases {
    /// A `Range` request: a `206` (or `416`) cut from a fresh stored `200` or part; anything
    /// else goes to the origin as it is, and its answer is stored if it may be.
    pub(super) fn range(
        &self,
        ctx: &mut CacheCtx,
        head: &RequestHead,
        key: &str,
        range: &[u8],
    ) -> Option<Reply> {
        ctx.label = Some(Label::Bypass);
        // If-Range needs a strong validator match: left to the origin, and its answer to it.
        if head.header("if-range").is_some() {
            return None;
        }
        // A GET's answer is kept: a 206 as a part, a 200 (the origin ignored the range) whole.
        // Not with the miss lock: concurrent requests for other ranges do not wait on this one.
        ctx.may_store = head.method == "GET" && !ctx.request_cc.no_store;
        if ctx.may_store {
            ctx.label = Some(Label::Miss);
        }
        let entry = self.store.get(key, head)?;
        if !fresh_for(&entry, &ctx.request_cc) {
            return None;
        }
        let (first, complete) = match entry.span {
            Some(span) => (span.first, span.complete),
            None if entry.head.status == 200 => (0, entry.body.len() as u64),
            None => return None,
        };
        let end = first + entry.body.len() as u64;
        let spec = byte_range(range, complete);
        let held = match spec {
            ByteRange::Satisfiable(a, b) => first <= a && b < end,
            ByteRange::Unsatisfiable => true,
            // The whole body, which only a whole entry has.
            ByteRange::Ignored => entry.span.is_none(),
            ByteRange::Several => false,
        };
        if !held {
            return None;
        }
        let reply = self.serve(ctx, &entry, Label::Hit, true);
        if spec == ByteRange::Ignored || reply.status() == 304 {
            return Some(reply); // the whole body, or a 304
        }
        Some(ranged(reply, &spec, first, complete))
    }
}

impl CachePhases {
    /// A request for the whole representation when only a part of it is stored. A part that
    /// holds the start and has a strong validator is completed: the request asks the origin
    /// for the rest (`Range: bytes=N-`, with `If-Range` on that validator), and the client
    /// gets the stored start and the rest as one `200` ([`CachePhases::splice`]), while the
    /// rest, stored as a part, combines with the start into the whole. Otherwise a plain
    /// miss, whose answer replaces the part.
    pub(super) fn complete_part(
        &self,
        ctx: &mut CacheCtx,
        head: &mut RequestHead,
        part: &Arc<Entry>,
    ) -> Lookup {
        let completable = head.method == "GET"
            && ctx.may_store
            && !has_preconditions(head)
            && part.span.is_some_and(|span| span.first == 0);
        let Some(tag) = partial::strong_etag(&part.head).filter(|_| completable) else {
            return Lookup::Miss;
        };
        let tag = tag.to_vec();
        let rest = format!("bytes={}-", part.body.len());
        head.headers.push(header("Range", rest.as_bytes()));
        head.headers.push(header("If-Range", &tag));
        ctx.completing = Some(Arc::clone(part));
        ctx.label = Some(Label::Miss);
        Lookup::Forward
    }

    /// Whether the origin's answer to a completion may be spliced after the stored start: a
    /// `206` must carry exactly the rest, of the same representation. A `200` (the
    /// representation changed, `If-Range` failed) goes to the client as any miss does.
    pub(super) fn rest_fits(ctx: &CacheCtx, response: &ResponseHead) -> bool {
        let Some(part) = ctx.completing.as_ref() else {
            return true;
        };
        if response.status != 206 {
            return true;
        }
        let complete = part.complete_len();
        partial::content_range(response).is_some_and(|range| {
            range.first == part.body.len() as u64
                && range.complete == complete
                && range.last + 1 == complete
        }) && partial::strong_etag(response).is_some()
            && partial::strong_etag(response) == partial::strong_etag(&part.head)
    }

    /// The origin's rest of a completion (checked by `rest_fits`) becomes the client's whole
    /// `200`: the stored start goes first. Called after the rest's copy was planned, which
    /// stores it as a part, combined with the start.
    pub(super) fn splice(ctx: &mut CacheCtx, response: &mut ResponseHead, plan: &mut BodyPlan) {
        let Some(part) = ctx.completing.take() else {
            return;
        };
        if response.status != 206 {
            return;
        }
        response.status = 200;
        response.reason = "OK".to_owned();
        response
            .headers
            .retain(|h| !h.name.eq_ignore_ascii_case("content-range"));
        plan.transform(Prepend {
            start: Some(Arc::clone(&part.body)),
        });
    }
}

/// Puts a part's stored start before the origin's rest. The whole length is not known to
/// the relay's framing, which re-frames a transformed body.
struct Prepend {
    start: Option<Arc<[u8]>>,
}

impl Prepend {
    fn start(&mut self, out: &mut Vec<u8>) {
        if let Some(start) = self.start.take() {
            out.extend_from_slice(&start);
        }
    }
}

impl BodyTransform for Prepend {
    fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.start(out);
        out.extend_from_slice(input);
        Ok(())
    }

    fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.start(out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.start(out);
        Ok(())
    }
}

/// A `Range` request's one byte range, as RFC 9110 section 14.1.2 writes it.
#[derive(Debug, PartialEq, Eq)]
enum ByteRange {
    /// First and last byte, both inside the representation.
    Satisfiable(u64, u64),
    Unsatisfiable,
    /// Several ranges: left to the origin.
    Several,
    /// Not a bytes range we can read: ignored, as a server may (the whole body is sent).
    Ignored,
}

fn byte_range(value: &[u8], len: u64) -> ByteRange {
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
    let number = |t: &str| -> Option<u64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().unwrap_or(u64::MAX))
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

/// Cuts a reply from an entry (whose body holds the representation's bytes from `offset`,
/// of `len` in all) to the range (RFC 9110 section 15.3.7), or answers 416. The caller
/// checked that the entry holds the range.
fn ranged(mut reply: Reply, range: &ByteRange, offset: u64, len: u64) -> Reply {
    let body = reply.body.as_bytes();
    match *range {
        ByteRange::Satisfiable(first, last) => {
            let at = |n: u64| (n - offset) as usize;
            let part = body[at(first)..=at(last)].to_vec();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_table() {
        use ByteRange::*;
        let table: &[(&str, u64, ByteRange)] = &[
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
}
