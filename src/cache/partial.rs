//! Partial content (RFC 9111 sections 3.3 and 3.4, RFC 9110 section 14): a stored `206`
//! holds one span of a representation. Spans of one representation (the same strong `ETag`
//! and the same complete length) that meet or overlap are combined into one, and a span that
//! reaches from the first byte to the last is the whole representation, stored as a `200`.
//!
//! One span per entry: two parts that do not meet are not kept side by side, the newer one
//! replaces the older (a later request for the gap fills it, and then they meet).

use crate::http::head::Headers;

/// Where a stored part's bytes sit in the whole representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Offset of the first byte held.
    pub first: u64,
    /// The representation's complete length.
    pub complete: u64,
}

/// One byte range of a representation, as a `206` says it carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub first: u64,
    pub last: u64,
    pub complete: u64,
}

impl ContentRange {
    /// Bytes in the range (never zero: the last byte is at or after the first).
    pub fn bytes(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// `Content-Range: bytes first-last/complete` (RFC 9110 section 14.4), the one form a stored
/// part may have: `None` for an unknown complete length (`*`), another unit, several lines,
/// or a range that does not fit in the length.
pub fn content_range(head: &impl Headers) -> Option<ContentRange> {
    let mut lines = head.values("content-range");
    let value = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?.trim();
    // Range units are case-insensitive (section 14.1).
    let (unit, rest) = text.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (range, complete) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let number = |t: &str| -> Option<u64> {
        (!t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (first, last, complete) = (number(first)?, number(last)?, number(complete)?);
    (first <= last && last < complete).then_some(ContentRange {
        first,
        last,
        complete,
    })
}

/// The `ETag` of `head` if it is strong (no `W/`): the only validator by which parts may be
/// combined (RFC 9111 section 3.4).
pub fn strong_etag(head: &impl Headers) -> Option<&[u8]> {
    head.header("etag")
        .map(<[u8]>::trim_ascii)
        .filter(|tag| tag.len() >= 2 && tag.starts_with(b"\"") && tag.ends_with(b"\""))
}

/// The bytes of `old` (at offset `old_first`) and `new` (at `new_first`) as one span, if
/// they meet or overlap; where they overlap, the newer bytes are kept.
pub fn combine(old_first: u64, old: &[u8], new_first: u64, new: &[u8]) -> Option<(u64, Vec<u8>)> {
    let old_end = old_first.checked_add(old.len() as u64)?;
    let new_end = new_first.checked_add(new.len() as u64)?;
    if new_first > old_end || old_first > new_end {
        return None;
    }
    let first = old_first.min(new_first);
    let end = old_end.max(new_end);
    let mut out = vec![0; usize::try_from(end - first).ok()?];
    let at = |offset: u64| (offset - first) as usize;
    out[at(old_first)..at(old_end)].copy_from_slice(old);
    out[at(new_first)..at(new_end)].copy_from_slice(new);
    Some((first, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ResponseHead;

    fn head(lines: &[(&str, &str)]) -> ResponseHead {
        crate::cache::test_heads::response(206, lines)
    }

    #[test]
    fn content_ranges_table() {
        let range = |first, last, complete| {
            Some(ContentRange {
                first,
                last,
                complete,
            })
        };
        let table: &[(&str, Option<ContentRange>)] = &[
            ("bytes 0-4/10", range(0, 4, 10)),
            ("Bytes 9-9/10", range(9, 9, 10)),
            (" bytes 2-5/6 ", range(2, 5, 6)),
            ("bytes 0-4/*", None),
            ("bytes */10", None),
            ("bytes 5-4/10", None),
            ("bytes 0-10/10", None),
            ("items 0-4/10", None),
            ("bytes 0-4", None),
            ("bytes -1-4/10", None),
            ("bytes 0-4/99999999999999999999", None),
        ];
        for (value, want) in table {
            let got = content_range(&head(&[("Content-Range", value)]));
            assert_eq!(&got, want, "{value:?}");
        }
        let two = head(&[
            ("Content-Range", "bytes 0-4/10"),
            ("Content-Range", "bytes 0-4/10"),
        ]);
        assert_eq!(content_range(&two), None, "two lines");
        assert_eq!(content_range(&head(&[])), None);
    }

    #[test]
    fn only_a_strong_etag_is_a_validator_for_combining() {
        assert_eq!(
            strong_etag(&head(&[("ETag", "\"v1\"")])),
            Some(&b"\"v1\""[..])
        );
        assert_eq!(strong_etag(&head(&[("ETag", "W/\"v1\"")])), None);
        assert_eq!(strong_etag(&head(&[("ETag", "v1")])), None);
        assert_eq!(strong_etag(&head(&[])), None);
    }

    #[test]
    fn parts_that_meet_or_overlap_combine_and_the_newer_bytes_win() {
        // (old part's offset, its bytes, new part's offset, its bytes, the combination)
        type Row = (
            u64,
            &'static str,
            u64,
            &'static str,
            Option<(u64, &'static str)>,
        );
        let table: &[Row] = &[
            (0, "0123", 4, "4567", Some((0, "01234567"))),
            (4, "4567", 0, "0123", Some((0, "01234567"))),
            (0, "0123", 2, "XY", Some((0, "01XY"))),
            (2, "23", 0, "ABCDE", Some((0, "ABCDE"))),
            (0, "0123", 3, "XYZ", Some((0, "012XYZ"))),
            (0, "01", 3, "34", None),
            (5, "56", 0, "012", None),
        ];
        for (of, old, nf, new, want) in table {
            let got = combine(*of, old.as_bytes(), *nf, new.as_bytes());
            let want = want.map(|(f, b)| (f, b.as_bytes().to_vec()));
            assert_eq!(got, want, "{old}@{of} + {new}@{nf}");
        }
    }
}
