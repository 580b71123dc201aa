//! A `Range` request answered from a fresh stored `200`: one byte range cut out (`206`), or
//! `416`; several ranges, `If-Range`, or a range of anything else go to the origin.

use super::lookup::fresh_for;
use super::{header, CacheCtx, CachePhases, Label};
use crate::http::head::Headers;
use crate::http::RequestHead;
use crate::relay::{Reply, ReplyBody};

impl CachePhases {
    /// A `Range` request: a `206` (or `416`) cut from a fresh stored `200`; anything else
    /// goes to the origin as it is, and its answer is not stored.
    pub(super) fn range(
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
}
