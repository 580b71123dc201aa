//! The client's own validators (`If-None-Match`, `If-Modified-Since`) answered from an entry
//! (RFC 9110 section 13.2.2), and the preconditions a cache leaves to the origin.

use crate::cache::store::Entry;
use crate::http::date::parse_http_date;
use crate::http::head::Headers;
use crate::http::{Header, RequestHead};

/// Whether the client set preconditions of its own that a cache does not evaluate
/// (`If-Match`, `If-Unmodified-Since`, `If-Range`): such a request goes upstream as it is.
pub(super) fn has_preconditions(request: &RequestHead) -> bool {
    ["if-match", "if-unmodified-since", "if-range"]
        .iter()
        .any(|n| request.header(n).is_some())
}

/// A client's cache validators: its `If-None-Match` and `If-Modified-Since` lines.
#[derive(Debug, Default)]
pub(super) struct Conditions(Vec<Header>);

impl Conditions {
    pub(super) const NAMES: [&'static str; 2] = ["if-none-match", "if-modified-since"];

    pub(super) fn of(request: &RequestHead) -> Conditions {
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
pub(super) fn not_modified(request: &Conditions, entry: &Entry) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cache::test_heads::request;

    fn entry(headers: &[(&str, &str)]) -> Entry {
        use crate::cache::control::ResponseDirectives;
        use crate::cache::freshness::{Lifetime, Source};
        let head = crate::http::ResponseHead {
            status: 200,
            reason: "OK".into(),
            minor_version: 1,
            headers: request("GET", "/", headers).headers.clone(),
        };
        let directives = ResponseDirectives::parse(&head);
        let lifetime = Lifetime {
            duration: std::time::Duration::from_secs(60),
            source: Source::MaxAge,
        };
        Entry::new(
            head,
            b"x"[..].into(),
            Vec::new(),
            directives,
            lifetime,
            Default::default(),
        )
    }

    fn conditions(headers: &[(&str, &str)]) -> Conditions {
        Conditions::of(&request("GET", "/", headers))
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists_and_a_star() {
        let stored = entry(&[("ETag", "W/\"v1\"")]);
        assert!(not_modified(
            &conditions(&[("If-None-Match", "\"v1\"")]),
            &stored
        ));
        assert!(not_modified(
            &conditions(&[("If-None-Match", "\"v0\", W/\"v1\"")]),
            &stored
        ));
        assert!(not_modified(
            &conditions(&[("If-None-Match", "*")]),
            &stored
        ));
        assert!(!not_modified(
            &conditions(&[("If-None-Match", "\"v2\"")]),
            &stored
        ));
        // If-None-Match wins over If-Modified-Since, even when the date alone would match.
        let both = conditions(&[
            ("If-None-Match", "\"v2\""),
            ("If-Modified-Since", "Sun, 06 Nov 2094 08:49:37 GMT"),
        ]);
        assert!(!not_modified(&both, &stored));
        // No ETag stored: If-None-Match cannot match.
        assert!(!not_modified(
            &conditions(&[("If-None-Match", "*")]),
            &entry(&[])
        ));
    }

    #[test]
    fn if_modified_since_reads_last_modified_or_else_date() {
        let since = |d: &str| conditions(&[("If-Modified-Since", d)]);
        let modified = entry(&[("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert!(not_modified(
            &since("Sun, 06 Nov 1994 08:49:37 GMT"),
            &modified
        ));
        assert!(!not_modified(
            &since("Sat, 05 Nov 1994 08:49:37 GMT"),
            &modified
        ));
        let dated = entry(&[("Date", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert!(not_modified(
            &since("Mon, 07 Nov 1994 08:49:37 GMT"),
            &dated
        ));
        assert!(!not_modified(&since("not a date"), &modified));
    }

    #[test]
    fn only_the_preconditions_a_cache_leaves_to_the_origin_count() {
        for name in ["If-Match", "If-Unmodified-Since", "If-Range"] {
            assert!(
                has_preconditions(&request("GET", "/", &[(name, "x")])),
                "{name}"
            );
        }
        for name in ["If-None-Match", "If-Modified-Since", "Range"] {
            assert!(
                !has_preconditions(&request("GET", "/", &[(name, "x")])),
                "{name}"
            );
        }
    }

    #[test]
    fn weak_comparison_ignores_w_slash() {
        assert!(weak_eq(b"W/\"a\"", b"\"a\""));
        assert!(weak_eq(b"\"a\"", b"W/\"a\""));
        assert!(!weak_eq(b"\"a\"", b"\"b\""));
    }
}
