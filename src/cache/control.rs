//! `Cache-Control` (RFC 9111 section 5.2): the directives of requests and of responses.
//!
//! Names are case-insensitive; unknown directives are ignored (section 5.2.3), so a request
//! with a token we do not know still gets hits. A freshness value that is not plain
//! delta-seconds (quoted, negative, not a number) reads as 0, which makes the response stale
//! at once, as section 4.2.1 encourages for invalid freshness information. Values beyond
//! 2^31 are capped there (section 1.2.2).

use std::time::Duration;

use crate::http::head::Headers;

/// The largest delta-seconds value a cache must handle (RFC 9111 section 1.2.2).
pub(crate) const MAX_DELTA: u64 = 1 << 31;

/// One directive as written: its name in lower case, and its value if it had one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Directive {
    name: String,
    value: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Value {
    text: Vec<u8>,
    quoted: bool,
}

/// Splits every `Cache-Control` line of `head` into directives, keeping commas inside quoted
/// strings (`private="Set-Cookie, X-Id"`) in their value.
fn directives(head: &impl Headers) -> Vec<Directive> {
    let mut out = Vec::new();
    for line in head.values("cache-control") {
        let mut rest = line;
        // Each turn consumes one directive and its comma, so the loop ends with the line.
        while !rest.is_empty() {
            let (item, after) = split_item(rest);
            rest = after;
            let item = item.trim_ascii();
            if item.is_empty() {
                continue;
            }
            let (name, value) = match item.iter().position(|&b| b == b'=') {
                Some(eq) => (&item[..eq], Some(parse_value(item[eq + 1..].trim_ascii()))),
                None => (item, None),
            };
            out.push(Directive {
                name: String::from_utf8_lossy(name.trim_ascii()).to_ascii_lowercase(),
                value,
            });
        }
    }
    out
}

/// The first item of a comma-separated list (commas in quoted strings do not count), and
/// what follows its comma.
fn split_item(list: &[u8]) -> (&[u8], &[u8]) {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in list.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => return (&list[..i], &list[i + 1..]),
            _ => {}
        }
    }
    (list, &[])
}

fn parse_value(raw: &[u8]) -> Value {
    if raw.len() >= 2 && raw.starts_with(b"\"") && raw.ends_with(b"\"") {
        Value {
            text: raw[1..raw.len() - 1].to_vec(),
            quoted: true,
        }
    } else {
        Value {
            text: raw.to_vec(),
            quoted: false,
        }
    }
}

/// delta-seconds: digits only, unquoted. Anything else is `None`.
fn delta_seconds(value: Option<&Value>) -> Option<u64> {
    let value = value?;
    if value.quoted {
        return None;
    }
    parse_delta_seconds(&value.text)
}

/// delta-seconds as written (RFC 9111 section 1.2.2): one or more digits and nothing else,
/// a value too large read as 2^31. Shared by every field that carries one (`Age`,
/// `Surrogate-Control`).
pub(crate) fn parse_delta_seconds(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Digits only: the only failure left is overflow, which is "very large".
    let n = std::str::from_utf8(text)
        .ok()?
        .parse::<u64>()
        .unwrap_or(MAX_DELTA);
    Some(n.min(MAX_DELTA))
}

/// A freshness value: malformed reads as 0 (stale).
fn lifetime(value: Option<&Value>) -> Duration {
    Duration::from_secs(delta_seconds(value).unwrap_or(0))
}

/// A response's directives (section 5.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    pub no_store: bool,
    /// With or without a field list: we do not store partial headers, so either form means
    /// "revalidate before every reuse".
    pub no_cache: bool,
    /// With or without a field list: a shared cache stores none of it.
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub max_age: Option<Duration>,
    pub s_maxage: Option<Duration>,
    /// RFC 5861.
    pub stale_while_revalidate: Option<Duration>,
    pub stale_if_error: Option<Duration>,
    /// `must-understand` (section 5.2.2.3): stored only by a cache that knows the caching
    /// rules of the status code, which then ignores `no-store`.
    pub must_understand: bool,
    /// Read from a targeted field (`CDN-Cache-Control`, see `targeted`), which replaces
    /// `Cache-Control` and `Expires` for this cache.
    pub targeted: bool,
}

impl ResponseDirectives {
    pub fn parse(head: &impl Headers) -> ResponseDirectives {
        let mut d = ResponseDirectives::default();
        for directive in directives(head) {
            let value = directive.value.as_ref();
            match directive.name.as_str() {
                "no-store" => d.no_store = true,
                "no-cache" => d.no_cache = true,
                "private" => d.private = true,
                "public" => d.public = true,
                "must-revalidate" => d.must_revalidate = true,
                "proxy-revalidate" => d.proxy_revalidate = true,
                "must-understand" => d.must_understand = true,
                // Two values: the first is used (section 4.2.1 allows it), unless it is
                // smaller-is-safer already.
                "max-age" => d.max_age = Some(d.max_age.map_or(lifetime(value), |m| m)),
                "s-maxage" => d.s_maxage = Some(d.s_maxage.map_or(lifetime(value), |m| m)),
                "stale-while-revalidate" => {
                    d.stale_while_revalidate = delta_seconds(value).map(Duration::from_secs)
                }
                "stale-if-error" => {
                    d.stale_if_error = delta_seconds(value).map(Duration::from_secs)
                }
                _ => {} // unknown: ignored
            }
        }
        d
    }

    /// Whether a stale copy may never be served without revalidation (a shared cache obeys
    /// `proxy-revalidate` and `s-maxage` as `must-revalidate`, section 5.2.2.8 and 5.2.2.10).
    pub fn no_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some()
    }
}

/// A request's directives (section 5.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    pub no_cache: bool,
    pub no_store: bool,
    pub only_if_cached: bool,
    /// A malformed value reads as 0: the client wants a response that is fresh now.
    pub max_age: Option<Duration>,
    pub min_fresh: Option<Duration>,
    /// `Some(None)`: any staleness is acceptable; `Some(Some(d))`: at most `d`.
    pub max_stale: Option<Option<Duration>>,
    pub stale_if_error: Option<Duration>,
}

impl RequestDirectives {
    pub fn parse(head: &impl Headers) -> RequestDirectives {
        let mut d = RequestDirectives::default();
        for directive in directives(head) {
            let value = directive.value.as_ref();
            match directive.name.as_str() {
                "no-cache" => d.no_cache = true,
                "no-store" => d.no_store = true,
                "only-if-cached" => d.only_if_cached = true,
                "max-age" => d.max_age = Some(lifetime(value)),
                "min-fresh" => d.min_fresh = Some(lifetime(value)),
                // A malformed bound accepts no staleness, the safe reading.
                "max-stale" => d.max_stale = Some(value.map(|_| lifetime(value))),
                "stale-if-error" => {
                    d.stale_if_error = delta_seconds(value).map(Duration::from_secs)
                }
                _ => {}
            }
        }
        // HTTP/1.0's `Pragma: no-cache`, when no Cache-Control says otherwise (section 5.4).
        if head.header("cache-control").is_none() && head.has_token("pragma", "no-cache") {
            d.no_cache = true;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Header, ResponseHead};

    fn head(lines: &[&str]) -> ResponseHead {
        let pairs: Vec<(&str, &str)> = lines.iter().map(|v| ("Cache-Control", *v)).collect();
        crate::cache::test_heads::response(200, &pairs)
    }

    fn secs(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n))
    }

    #[test]
    fn response_directives_table() {
        type Case = (&'static [&'static str], ResponseDirectives);
        let d = ResponseDirectives::default;
        let table: &[Case] = &[
            (
                &["max-age=60"],
                ResponseDirectives {
                    max_age: secs(60),
                    ..d()
                },
            ),
            (
                &["MAX-AGE=60"],
                ResponseDirectives {
                    max_age: secs(60),
                    ..d()
                },
            ),
            (
                &["Max-Age = 60"],
                ResponseDirectives {
                    max_age: secs(60),
                    ..d()
                },
            ),
            // malformed: stale
            (
                &["max-age=\"60\""],
                ResponseDirectives {
                    max_age: secs(0),
                    ..d()
                },
            ),
            (
                &["max-age=-1"],
                ResponseDirectives {
                    max_age: secs(0),
                    ..d()
                },
            ),
            (
                &["max-age=ten"],
                ResponseDirectives {
                    max_age: secs(0),
                    ..d()
                },
            ),
            (
                &["max-age"],
                ResponseDirectives {
                    max_age: secs(0),
                    ..d()
                },
            ),
            // huge: capped
            (
                &["max-age=99999999999999999999"],
                ResponseDirectives {
                    max_age: secs(1 << 31),
                    ..d()
                },
            ),
            // first of two wins
            (
                &["max-age=5, max-age=50"],
                ResponseDirectives {
                    max_age: secs(5),
                    ..d()
                },
            ),
            (
                &["s-maxage=10, public"],
                ResponseDirectives {
                    s_maxage: secs(10),
                    public: true,
                    ..d()
                },
            ),
            (
                &["no-store"],
                ResponseDirectives {
                    no_store: true,
                    ..d()
                },
            ),
            (
                &["No-Cache"],
                ResponseDirectives {
                    no_cache: true,
                    ..d()
                },
            ),
            (
                &["no-cache=\"Set-Cookie, X-Id\", max-age=3"],
                ResponseDirectives {
                    no_cache: true,
                    max_age: secs(3),
                    ..d()
                },
            ),
            (
                &["private=\"a, b\"", "must-revalidate"],
                ResponseDirectives {
                    private: true,
                    must_revalidate: true,
                    ..d()
                },
            ),
            (
                &["proxy-revalidate"],
                ResponseDirectives {
                    proxy_revalidate: true,
                    ..d()
                },
            ),
            (
                &["stale-if-error=30, stale-while-revalidate=5"],
                ResponseDirectives {
                    stale_if_error: secs(30),
                    stale_while_revalidate: secs(5),
                    ..d()
                },
            ),
            (&["stale-if-error=\"30\""], d()),
            (
                &["community=\"UCI\", max-age=7, x-unknown"],
                ResponseDirectives {
                    max_age: secs(7),
                    ..d()
                },
            ),
            (
                &[",, ,max-age=1,"],
                ResponseDirectives {
                    max_age: secs(1),
                    ..d()
                },
            ),
            (&[], d()),
        ];
        for (lines, want) in table {
            assert_eq!(&ResponseDirectives::parse(&head(lines)), want, "{lines:?}");
        }
    }

    #[test]
    fn request_directives_table() {
        type Case = (&'static str, RequestDirectives);
        let d = RequestDirectives::default;
        let table: &[Case] = &[
            (
                "no-cache",
                RequestDirectives {
                    no_cache: true,
                    ..d()
                },
            ),
            (
                "NO-STORE",
                RequestDirectives {
                    no_store: true,
                    ..d()
                },
            ),
            (
                "only-if-cached",
                RequestDirectives {
                    only_if_cached: true,
                    ..d()
                },
            ),
            (
                "max-age=0",
                RequestDirectives {
                    max_age: secs(0),
                    ..d()
                },
            ),
            (
                "max-age=\"9\"",
                RequestDirectives {
                    max_age: secs(0),
                    ..d()
                },
            ),
            (
                "min-fresh=20",
                RequestDirectives {
                    min_fresh: secs(20),
                    ..d()
                },
            ),
            (
                "max-stale",
                RequestDirectives {
                    max_stale: Some(None),
                    ..d()
                },
            ),
            (
                "max-stale=15",
                RequestDirectives {
                    max_stale: Some(secs(15)),
                    ..d()
                },
            ),
            (
                "max-stale=x",
                RequestDirectives {
                    max_stale: Some(secs(0)),
                    ..d()
                },
            ),
            (
                "frobnicate, max-age=4",
                RequestDirectives {
                    max_age: secs(4),
                    ..d()
                },
            ),
        ];
        for (line, want) in table {
            assert_eq!(&RequestDirectives::parse(&head(&[line])), want, "{line:?}");
        }
    }

    #[test]
    fn pragma_no_cache_counts_only_without_cache_control() {
        let mut h = head(&[]);
        h.headers.push(Header {
            name: "Pragma".into(),
            value: b"no-cache".to_vec(),
        });
        assert!(RequestDirectives::parse(&h).no_cache);
        let mut h2 = head(&["max-age=5"]);
        h2.headers.push(h.headers[0].clone());
        assert!(!RequestDirectives::parse(&h2).no_cache);
    }
}
