//! How long a response stays fresh, and how old a stored one is (RFC 9111 section 4.2).

use std::time::{Duration, SystemTime};

use super::control::{parse_delta_seconds, ResponseDirectives, MAX_DELTA};
use crate::http::date::{parse_http_date, parse_http_date_lenient};
use crate::http::head::Headers;
use crate::http::ResponseHead;

/// The heuristic lifetime is capped, as most caches do (RFC 9111 section 4.2.2 leaves the
/// bound to us): a page unchanged for a year is not trusted for more than a day.
pub const HEURISTIC_CAP: Duration = Duration::from_secs(24 * 3600);

/// Statuses a cache may store with heuristic freshness (RFC 9110 section 15.1).
pub const CACHEABLE_BY_DEFAULT: &[u16] =
    &[200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// Where a freshness lifetime came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    SMaxAge,
    MaxAge,
    Expires,
    /// The configured `default_ttl`, for responses that say nothing.
    DefaultTtl,
    /// 10% of the time since `Last-Modified`.
    Heuristic,
    /// Nothing: stale at once (still usable with a validator).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub duration: Duration,
    pub source: Source,
}

impl Lifetime {
    /// Whether the origin said how long the response is fresh.
    pub fn explicit(&self) -> bool {
        matches!(
            self.source,
            Source::SMaxAge | Source::MaxAge | Source::Expires
        )
    }
}

/// The response's `Date`, or when it arrived if it has none (or an invalid one).
fn date_value(head: &ResponseHead, response_time: SystemTime) -> SystemTime {
    head.header("date")
        .and_then(parse_http_date)
        .unwrap_or(response_time)
}

/// The freshness lifetime (section 4.2.1): `s-maxage`, `max-age`, `Expires - Date`, then, for
/// a response that says nothing, `default_ttl` if configured, else the heuristic where the
/// status allows it.
pub fn lifetime(
    head: &ResponseHead,
    cc: &ResponseDirectives,
    response_time: SystemTime,
    default_ttl: Option<Duration>,
) -> Lifetime {
    crate::exercise::stub!("lifetime");
    // Never longer than an unknown age (an `Expires` centuries ahead would be), so that a
    // response whose age is unknown is stale.
    let of = |duration: Duration, source| Lifetime {
        duration: duration.min(UNKNOWN_AGE),
        source,
    };
    if let Some(d) = cc.s_maxage {
        return of(d, Source::SMaxAge);
    }
    if let Some(d) = cc.max_age {
        return of(d, Source::MaxAge);
    }
    // A targeted field replaces Expires as well as Cache-Control (RFC 9213 section 2.1).
    if let Some(expires) = head.header("expires").filter(|_| !cc.targeted) {
        // An invalid date (including "0") means already expired (section 5.3); one in the
        // wrong case or with the wrong weekday is read as the date it names.
        let duration = parse_http_date_lenient(expires)
            .and_then(|e| e.duration_since(date_value(head, response_time)).ok())
            .unwrap_or(Duration::ZERO);
        return of(duration, Source::Expires);
    }
    if cc.no_cache {
        return of(Duration::ZERO, Source::None);
    }
    if let Some(ttl) = default_ttl {
        return of(ttl, Source::DefaultTtl);
    }
    // Heuristics are for statuses cacheable by default and for responses marked `public`
    // (RFC 9111 section 4.2.2).
    if CACHEABLE_BY_DEFAULT.contains(&head.status) || cc.public {
        if let Some(modified) = head.header("last-modified").and_then(parse_http_date) {
            let since = date_value(head, response_time)
                .duration_since(modified)
                .unwrap_or(Duration::ZERO);
            return of((since / 10).min(HEURISTIC_CAP), Source::Heuristic);
        }
    }
    of(Duration::ZERO, Source::None)
}

/// The age a response had when it arrived (section 4.2.3): the larger of what its `Date`
/// says and what its `Age` says plus the time the request and response took. A stored
/// response's current age is this plus the time it has been held since. An `Age` that
/// cannot be read (`age_value`) makes it [`UNKNOWN_AGE`] old: stale on arrival.
pub fn initial_age(
    head: &ResponseHead,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let Some(age_value) = age_value(head) else {
        return UNKNOWN_AGE;
    };
    let apparent = response_time
        .duration_since(date_value(head, response_time))
        .unwrap_or(Duration::ZERO);
    let delay = response_time
        .duration_since(request_time)
        .unwrap_or(Duration::ZERO);
    apparent.max(age_value + delay)
}

/// The age of a response whose `Age` cannot be read: 2^31 seconds, the value RFC 9111
/// section 1.2.2 gives a delta too large to represent ("infinity"). [`lifetime`] never
/// exceeds it, so such a response is stale however long it was said to be fresh, and past
/// any `stale-while-revalidate` or `stale-if-error` window.
pub const UNKNOWN_AGE: Duration = Duration::from_secs(MAX_DELTA);

/// The `Age` field's value, `Some(0)` when there is none, `None` when it cannot be read.
///
/// `Age` is a singleton (RFC 9111 section 5.1): anything but exactly one field line holding
/// one non-negative integer (whitespace around it allowed) cannot be read. That is two field
/// lines, a comma list (`0, 0`, `3600, 3600`, `0,7200`), `abc`, `-7200`, `7200.0`,
/// `7200;foo=bar`, or an empty value. Such a response is stored as already stale
/// ([`UNKNOWN_AGE`]): it is revalidated, or fetched again, before it is reused, and kept
/// meanwhile so that its validator can revalidate it.
///
/// Section 5.1 says a cache SHOULD take a list's first member and SHOULD ignore an invalid
/// value. Both guesses can serve an old response as fresh: an upstream cache that appended
/// its age after another's (`0, 7200`), or wrote it in a form we do not read (`7200.0`),
/// said the response is old. Reading "unknown" as "stale" deviates from those SHOULDs in the
/// safe direction only: at worst one revalidation more, never an old response served as
/// fresh. A value too large for a cache is 2^31 (section 1.2.2).
fn age_value(head: &ResponseHead) -> Option<Duration> {
    let mut lines = head.values("age");
    let Some(line) = lines.next() else {
        return Some(Duration::ZERO);
    };
    if lines.next().is_some() {
        return None;
    }
    parse_delta_seconds(line.trim_ascii()).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::date::imf_fixdate;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn date(secs: u64) -> String {
        String::from_utf8(imf_fixdate(at(secs)).to_vec()).unwrap()
    }

    fn response(status: u16, headers: &[(&str, &str)]) -> ResponseHead {
        crate::cache::test_heads::response(status, headers)
    }

    #[test]
    fn lifetime_table() {
        let now = at(1000);
        let d1000 = date(1000);
        let d1060 = date(1060);
        let d0 = date(0);
        let ttl = Some(Duration::from_secs(30));
        // (status, headers, default_ttl, want seconds, want source)
        type Case<'a> = (u16, Vec<(&'a str, &'a str)>, Option<Duration>, u64, Source);
        let table: Vec<Case> = vec![
            (
                200,
                vec![("cache-control", "s-maxage=5, max-age=50")],
                None,
                5,
                Source::SMaxAge,
            ),
            (
                200,
                vec![("cache-control", "max-age=50"), ("expires", &d1060)],
                None,
                50,
                Source::MaxAge,
            ),
            (
                200,
                vec![("date", &d1000), ("expires", &d1060)],
                None,
                60,
                Source::Expires,
            ),
            // Expires in the past, or invalid: stale
            (
                200,
                vec![("date", &d1000), ("expires", &d0)],
                None,
                0,
                Source::Expires,
            ),
            (
                200,
                vec![("date", &d1000), ("expires", "0")],
                None,
                0,
                Source::Expires,
            ),
            (
                200,
                vec![
                    ("date", &d1000),
                    ("expires", "Mon, 32 Jan 2024 00:00:00 GMT"),
                ],
                None,
                0,
                Source::Expires,
            ),
            // never longer than 2^31 s, the longest age (section 1.2.2)
            (
                200,
                vec![
                    ("date", &d1000),
                    ("expires", "Fri, 31 Dec 9999 23:59:59 GMT"),
                ],
                None,
                1 << 31,
                Source::Expires,
            ),
            // heuristic: 10% of 1000 s since Last-Modified
            (
                200,
                vec![("date", &d1000), ("last-modified", &d0)],
                None,
                100,
                Source::Heuristic,
            ),
            (
                404,
                vec![("date", &d1000), ("last-modified", &d0)],
                None,
                100,
                Source::Heuristic,
            ),
            // not for a status that is not cacheable by default
            (
                302,
                vec![("date", &d1000), ("last-modified", &d0)],
                None,
                0,
                Source::None,
            ),
            // default_ttl wins over the heuristic, never over what the origin said
            (
                200,
                vec![("last-modified", &d0)],
                ttl,
                30,
                Source::DefaultTtl,
            ),
            (
                200,
                vec![("cache-control", "max-age=2")],
                ttl,
                2,
                Source::MaxAge,
            ),
            (
                200,
                vec![("cache-control", "no-cache")],
                ttl,
                0,
                Source::None,
            ),
            (200, vec![], None, 0, Source::None),
        ];
        for (status, headers, ttl, want, source) in table {
            let head = response(status, &headers);
            let cc = ResponseDirectives::parse(&head);
            let got = lifetime(&head, &cc, now, ttl);
            assert_eq!(
                (got.duration, got.source),
                (Duration::from_secs(want), source),
                "{status} {headers:?}"
            );
        }
    }

    #[test]
    fn heuristic_is_capped_at_a_day() {
        let head = response(
            200,
            &[("date", &date(100 * 86400)), ("last-modified", &date(0))],
        );
        let got = lifetime(&head, &ResponseDirectives::default(), at(100 * 86400), None);
        assert_eq!(got.duration, HEURISTIC_CAP);
    }

    #[test]
    fn age_is_one_non_negative_integer_or_unknown() {
        let secs = |n| Some(Duration::from_secs(n));
        let table: &[(&[&str], Option<Duration>)] = &[
            (&[], secs(0)),
            (&["7200"], secs(7200)),
            (&[" 60 "], secs(60)),
            (&["\t60"], secs(60)),
            (&["0"], secs(0)),
            (&["99999999999999999999"], secs(1 << 31)),
            // A list, on one line or on two: unknown, whichever member comes first.
            (&["7200,0"], None),
            (&["0,7200"], None),
            (&["0, 7200"], None),
            (&["0, 0"], None),
            (&["3600, 3600"], None),
            (&["0", "7200"], None),
            (&["7200", "0"], None),
            (&["60", "60"], None),
            (&[",7200"], None),
            (&["7200,"], None),
            // Not an integer.
            (&["abc"], None),
            (&["-7200"], None),
            (&["+7200"], None),
            (&["7200.0"], None),
            (&["7200;foo=bar"], None),
            (&["72 00"], None),
            (&[""], None),
            (&["  "], None),
        ];
        for (lines, want) in table {
            let headers: Vec<(&str, &str)> = lines.iter().map(|l| ("age", *l)).collect();
            assert_eq!(age_value(&response(200, &headers)), *want, "{lines:?}");
        }
    }

    #[test]
    fn an_unknown_age_is_stale_for_any_lifetime() {
        // An `Expires` far ahead gives a lifetime no longer than an unknown age.
        let now = at(1000);
        let head = response(
            200,
            &[
                ("date", &date(1000)),
                ("expires", "Fri, 31 Dec 9999 23:59:59 GMT"),
                ("age", "0, 0"),
            ],
        );
        let life = lifetime(&head, &ResponseDirectives::parse(&head), now, None);
        assert_eq!(life.duration, UNKNOWN_AGE);
        assert_eq!(initial_age(&head, now, now), UNKNOWN_AGE);
        assert!(initial_age(&head, now, now) >= life.duration, "not fresh");
        for age in ["abc", "-5", "7200;foo=bar", ""] {
            let head = response(200, &[("date", &date(1000)), ("age", age)]);
            assert_eq!(initial_age(&head, now, now), UNKNOWN_AGE, "{age:?}");
        }
    }

    #[test]
    fn initial_age_counts_date_age_and_transit() {
        // Date 10 s before arrival: apparent age 10.
        let head = response(200, &[("date", &date(990))]);
        assert_eq!(initial_age(&head, at(999), at(1000)).as_secs(), 10);
        // Age 100 from an upstream cache plus 2 s in transit beats an apparent age of 0.
        let head = response(200, &[("date", &date(1000)), ("age", "100")]);
        assert_eq!(initial_age(&head, at(998), at(1000)).as_secs(), 102);
        // A Date in the future (clock skew) is no negative age.
        let head = response(200, &[("date", &date(2000))]);
        assert_eq!(initial_age(&head, at(1000), at(1000)).as_secs(), 0);
        // An Age below the apparent age: the apparent age counts.
        let head = response(200, &[("date", &date(900)), ("age", "5")]);
        assert_eq!(initial_age(&head, at(1000), at(1000)).as_secs(), 100);
    }
}
