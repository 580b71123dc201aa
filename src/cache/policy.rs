//! What a shared cache may store (RFC 9111 section 3), and which of a response's fields it
//! keeps (section 3.1).

use super::control::{RequestDirectives, ResponseDirectives};
use super::freshness::{Lifetime, CACHEABLE_BY_DEFAULT};
use super::partial;
use crate::http::head::Headers;
use crate::http::headers::HOP_BY_HOP;
use crate::http::{Header, RequestHead, ResponseHead};

/// Why a response is not stored, for the debug log and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    Method,
    Status,
    NoStore,
    Private,
    Authorization,
    VaryStar,
    SetCookie,
    TooLarge,
    /// Nothing would ever make it reusable: no freshness and no validator.
    Useless,
}

/// Whether the response to `request` may be stored, before its body is seen.
pub fn storable(
    request: &RequestHead,
    request_cc: &RequestDirectives,
    response: &ResponseHead,
    cc: &ResponseDirectives,
    lifetime: &Lifetime,
    max_entry_size: u64,
) -> Result<(), NotStored> {
    crate::exercise::stub!("storable");
    if request.method != "GET" {
        return Err(NotStored::Method);
    }
    // A 304 is no representation. A 206 is kept as a part (section 3.3) only when it says
    // which bytes it carries (one `Content-Range` with the complete length), and when the
    // whole, which its parts may become, would fit in an entry. Statuses not cacheable by
    // default need explicit freshness or `public` (section 3). `must-understand` limits
    // storing to the statuses whose caching rules this cache knows (section 5.2.2.3).
    let by_default = CACHEABLE_BY_DEFAULT.contains(&response.status);
    if response.status == 304 || !(by_default || cc.public || lifetime.explicit()) {
        return Err(NotStored::Status);
    }
    let understood = UNDERSTOOD.contains(&response.status);
    if cc.must_understand && !understood {
        return Err(NotStored::Status);
    }
    if response.status == 206 {
        match partial::content_range(response) {
            None => return Err(NotStored::Status),
            Some(range) if range.complete > max_entry_size => return Err(NotStored::TooLarge),
            Some(_) => {}
        }
    }
    // Section 5.2.2.3: a cache that understands the status ignores a `no-store` sent beside
    // `must-understand` (for the caches that do not know the directive).
    if (cc.no_store && !(cc.must_understand && understood)) || request_cc.no_store {
        return Err(NotStored::NoStore);
    }
    if cc.private {
        return Err(NotStored::Private);
    }
    // Section 3.5: one user's authorised answer is for them, unless the origin says otherwise.
    if request.header("authorization").is_some()
        && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
    {
        return Err(NotStored::Authorization);
    }
    if response.has_token("vary", "*") {
        return Err(NotStored::VaryStar);
    }
    // Not in RFC 9111, but served to the next user a session cookie is a stolen session;
    // nginx does not cache such responses either.
    if response.header("set-cookie").is_some() {
        return Err(NotStored::SetCookie);
    }
    let declared = response
        .header("content-length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_entry_size) {
        return Err(NotStored::TooLarge);
    }
    // `no-cache` means "revalidate every time": without a validator that is "never reuse".
    if (lifetime.duration.is_zero() || cc.no_cache) && !has_validator(response) {
        return Err(NotStored::Useless);
    }
    Ok(())
}

/// The final status codes RFC 9110 section 15 defines, whose caching rules this cache
/// follows (cacheable by default or not, section 15.1): what `must-understand` asks of it.
const UNDERSTOOD: &[u16] = &[
    200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 304, 305, 307, 308, 400, 401, 402, 403,
    404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426, 500, 501,
    502, 503, 504, 505,
];

pub fn has_validator(response: &impl Headers) -> bool {
    response.header("etag").is_some() || response.header("last-modified").is_some()
}

/// Fields never stored beside the hop-by-hop ones (`http::headers::HOP_BY_HOP`, which
/// include the framing a reply writes itself): the proxy-auth pair, which belong to one hop
/// too, and `Age` (a hit computes its own).
const NOT_KEPT: &[&str] = &["proxy-authenticate", "proxy-authorization", "age"];

/// The fields of `response` that are stored: all but the hop-by-hop ones and those that
/// its `Connection` names.
pub fn kept_headers(response: &ResponseHead) -> Vec<Header> {
    let named: Vec<Vec<u8>> = response
        .values("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| t.trim_ascii().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    response
        .headers
        .iter()
        .filter(|h| {
            let name = h.name.to_ascii_lowercase();
            !HOP_BY_HOP.contains(&name.as_str())
                && !NOT_KEPT.contains(&name.as_str())
                && !named.iter().any(|n| n == name.as_bytes())
        })
        .cloned()
        .collect()
}

/// Fields a `304` never updates (section 3.2), because the stored body depends on them or
/// the cache processed them: `Content-Length` (a MUST), `Content-Encoding` (the stored bytes
/// are in the stored coding), `Content-Range` (a part's range is the cache's own, and the
/// section lets a cache refuse it), the digests of the stored bytes (`Content-MD5`,
/// `Digest`, `Content-Digest`, `Repr-Digest`), and `ETag`: the stored validator names the
/// stored representation, and a 304 naming another one selects no stored response to update
/// (section 4.3.4).
const NOT_UPDATED: &[&str] = &[
    "content-length",
    "content-encoding",
    "content-range",
    "content-md5",
    "digest",
    "content-digest",
    "repr-digest",
    "etag",
];

/// Updates stored fields with those of a `304` (section 3.2): each field the 304 carries
/// replaces the stored field of that name; framing and hop-by-hop fields are not taken, nor
/// those of `NOT_UPDATED`.
pub fn refreshed_headers(stored: &[Header], not_modified: &ResponseHead) -> Vec<Header> {
    let mut update = kept_headers(not_modified);
    update.retain(|h| !NOT_UPDATED.contains(&h.name.to_ascii_lowercase().as_str()));
    let mut out: Vec<Header> = stored
        .iter()
        .filter(|h| !update.iter().any(|u| u.name.eq_ignore_ascii_case(&h.name)))
        .cloned()
        .collect();
    out.extend(update);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn hop_by_hop_and_connection_named_fields_are_not_kept() {
        let response = ResponseHead {
            status: 200,
            reason: "OK".into(),
            minor_version: 1,
            headers: vec![
                h("Connection", "X-Secret, keep-alive"),
                h("X-Secret", "1"),
                h("Keep-Alive", "timeout=5"),
                h("Content-Length", "3"),
                h("Age", "4"),
                h("ETag", "\"a\""),
                h("Content-Type", "text/plain"),
            ],
        };
        let kept: Vec<String> = kept_headers(&response)
            .into_iter()
            .map(|h| h.name)
            .collect();
        assert_eq!(kept, vec!["ETag", "Content-Type"]);
    }

    #[test]
    fn a_304_replaces_fields_by_name() {
        let stored = vec![
            h("ETag", "\"a\""),
            h("Cache-Control", "max-age=1"),
            h("X-Old", "1"),
        ];
        let nm = ResponseHead {
            status: 304,
            reason: String::new(),
            minor_version: 1,
            headers: vec![
                h("cache-control", "max-age=60"),
                h("X-New", "2"),
                h("Connection", "close"),
                h("ETag", "\"b\""),
                h("Content-Encoding", "gzip"),
                h("content-md5", "N7UdGUp1E+RbVvZSTy1R8g=="),
                h("Content-Range", "bytes 0-1/2"),
                h("Content-Length", "2"),
            ],
        };
        let got: Vec<(String, String)> = refreshed_headers(&stored, &nm)
            .into_iter()
            .map(|h| (h.name, String::from_utf8(h.value).unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("ETag".into(), "\"a\"".into()),
                ("X-Old".into(), "1".into()),
                ("cache-control".into(), "max-age=60".into()),
                ("X-New".into(), "2".into()),
            ]
        );
    }
}
