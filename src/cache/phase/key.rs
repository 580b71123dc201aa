//! The key a request is stored under, and what a successful unsafe request invalidates (RFC
//! 9111 section 4.4): its target, and the same-origin URLs its response names.

use super::{CacheCtx, CachePhases};
use crate::http::head::Headers;
use crate::http::{RequestHead, ResponseHead};

impl CachePhases {
    /// A successful unsafe request: its target and the same-origin URLs its response names.
    pub(super) fn invalidate(&self, ctx: &CacheCtx, response: &ResponseHead) {
        let Some(target) = &ctx.key else {
            return;
        };
        self.store.remove(target);
        let origin = &target[..ctx.origin_len];
        // A key ends with the route the request took (`cache_key`). The URLs the response
        // names are paths of the same origin, behind the same route (after its prefix was
        // stripped, they are the origin's own paths, as the key's target is), so their keys
        // end the same way. A request target has no space, so the first one starts the route.
        let route = target[ctx.origin_len..]
            .find(' ')
            .map_or("", |at| &target[ctx.origin_len + at..]);
        for name in ["location", "content-location"] {
            if let Some(mut key) = response
                .header(name)
                .and_then(|v| same_origin_key(origin, v))
            {
                key.push_str(route);
                self.store.remove(&key);
            }
        }
    }
}

/// Whether `response`'s `Content-Location` names `target` itself: the same origin (the key's
/// first `origin_len` bytes), the same path and query, byte for byte. What lets a response
/// to a `POST` be stored for later `GET`s of that URI (RFC 9110 section 9.3.3).
pub(super) fn names_its_target(
    key: &str,
    origin_len: usize,
    target: &str,
    response: &ResponseHead,
) -> bool {
    let origin = &key[..origin_len];
    let mut lines = response.values("content-location");
    match (lines.next(), lines.next()) {
        (Some(value), None) => same_origin_key(origin, value)
            .is_some_and(|named| named.strip_prefix(origin) == Some(target)),
        _ => false,
    }
}

/// The key of a request: `scheme://host` (lower-case), the target, and its route if any. The
/// route is part of it: two routes that strip their prefixes can both send `/x` for one Host,
/// to different services. One allocation: it is built for every request. Also returns the
/// length of its `scheme://host` part.
pub(super) fn cache_key(proto: &str, head: &RequestHead) -> (String, usize) {
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

    use crate::cache::test_heads::request;

    #[test]
    fn a_key_is_scheme_lower_cased_host_target_and_route() {
        let mut head = request("GET", "/A?b=C", &[("Host", "Example.TEST:8080")]);
        let (key, origin_len) = cache_key("http", &head);
        assert_eq!(key, "http://example.test:8080/A?b=C");
        assert_eq!(&key[..origin_len], "http://example.test:8080");
        head.route = Some("api".into());
        let (key, origin_len) = cache_key("https", &head);
        assert_eq!(key, "https://example.test:8080/A?b=C route=api");
        assert_eq!(&key[..origin_len], "https://example.test:8080");
        // No Host (an HTTP/1.0 request): the origin part is the scheme alone.
        let (key, _) = cache_key("http", &request("GET", "/", &[]));
        assert_eq!(key, "http:///");
    }

    #[test]
    fn a_content_location_names_the_target_only_when_it_is_the_same_uri() {
        let key = "http://a.test/x?q=1 route=api";
        let origin_len = "http://a.test".len();
        let names = |values: &[&str]| {
            let fields: Vec<(&str, &str)> =
                values.iter().map(|v| ("Content-Location", *v)).collect();
            let response = crate::cache::test_heads::response(200, &fields);
            names_its_target(key, origin_len, "/x?q=1", &response)
        };
        assert!(names(&["/x?q=1"]));
        assert!(names(&[" http://A.test/x?q=1 "]));
        for other in [
            &[][..],
            &["/x"],
            &["/x?q=2"],
            &["/X?q=1"],
            &["/y/x?q=1"],
            &["http://b.test/x?q=1"],
            &["https://a.test/x?q=1"],
            &["//a.test/x?q=1"],
            &["x?q=1"],
            &["/x?q=1", "/x?q=1"],
        ] {
            assert!(!names(other), "{other:?}");
        }
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
