//! How long a response stays fresh, and how old a stored one is (RFC 9111 section 4.2).

use std::time::{Duration, SystemTime};

use super::control::{parse_delta_seconds, ResponseDirectives};
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
    let of = |duration, source| Lifetime { duration, source };
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
/// response's current age is this plus the time it has been held since.
pub fn initial_age(
    head: &ResponseHead,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let apparent = response_time
        .duration_since(date_value(head, response_time))
        .unwrap_or(Duration::ZERO);
    let age_value = age_value(head).unwrap_or(Duration::ZERO);
    let delay = response_time
        .duration_since(request_time)
        .unwrap_or(Duration::ZERO);
    apparent.max(age_value + delay)
}

/// The `Age` field's value (RFC 9111 section 5.1): of a list (two field lines, or commas on
/// one), the first member, the rest discarded; a value that is not a non-negative integer
/// (`abc`, `-1`, `7200.0`, `7200;x=1`) is ignored (`None`), not taken as "stale". That is the
/// RFC's rule since http-core issue 778 aligned it with what caches do; the public cache
/// suite's `age-parse-*` tests still expect the older draft's "stale" in most of these cases.
/// A value too large for a cache is 2^31 (section 1.2.2).
fn age_value(head: &ResponseHead) -> Option<Duration> {
    let line = head.header("age")?;
    let first = line.split(|&b| b == b',').next()?.trim_ascii();
    parse_delta_seconds(first).map(Duration::from_secs)
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
    fn age_takes_the_first_member_and_ignores_an_invalid_value() {
        let secs = |n| Some(Duration::from_secs(n));
        let table: &[(&[&str], Option<Duration>)] = &[
            (&["7200"], secs(7200)),
            (&[" 60 "], secs(60)),
            (&["7200,0"], secs(7200)),
            (&["0, 7200"], secs(0)),
            (&["3600, 3600"], secs(3600)),
            (&["0", "7200"], secs(0)),
            (&["7200", "0"], secs(7200)),
            (&["99999999999999999999"], secs(1 << 31)),
            (&["abc"], None),
            (&["-7200"], None),
            (&["7200.0"], None),
            (&["7200;foo=bar"], None),
            (&[""], None),
            (&[",7200"], None),
        ];
        for (lines, want) in table {
            let headers: Vec<(&str, &str)> = lines.iter().map(|l| ("age", *l)).collect();
            assert_eq!(age_value(&response(200, &headers)), *want, "{lines:?}");
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
        // A malformed Age is ignored.
        let head = response(200, &[("date", &date(1000)), ("age", "-5")]);
        assert_eq!(initial_age(&head, at(1000), at(1000)).as_secs(), 0);
    }
}
