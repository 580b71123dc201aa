//! Whether a response is compressed, decided from the heads alone, never from the body: a
//! HEAD must get the headers its GET would get (RFC 9110 section 9.3.2), and the body is
//! not there yet when the head goes out.

use super::config::CompressSettings;
use super::encoder::Coding;
use super::negotiate;
use crate::http::head::Headers;
use crate::http::{RequestHead, ResponseHead};

/// What the compressor does with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not ours to touch: no body of its own (1xx, 204, 304), a part of one (206, or a
    /// `Range` request), already encoded, `no-transform`, or a type we never compress.
    Untouched,
    /// A type we compress, but not this time (the client takes identity only, the body is
    /// short, the client asked for `no-transform`): still `Vary: Accept-Encoding`, since the
    /// same URL is compressed for other clients.
    Identity,
    Compress(Coding),
}

pub fn decide(
    settings: &CompressSettings,
    request: &RequestHead,
    response: &ResponseHead,
) -> Decision {
    crate::exercise::stub!("decide");
    let status = response.status;
    if status < 200 || matches!(status, 204 | 206 | 304) || request.header("range").is_some() {
        return Decision::Untouched;
    }
    let encoded = response
        .values("content-encoding")
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|c| !c.trim_ascii().is_empty() && !c.trim_ascii().eq_ignore_ascii_case(b"identity"));
    if encoded
        || response.has_token("cache-control", "no-transform")
        || !compressible_type(settings, response)
    {
        return Decision::Untouched;
    }
    if content_length(response).is_some_and(|n| n < settings.min_length)
        || request.has_token("cache-control", "no-transform")
    {
        return Decision::Identity;
    }
    match negotiate::choose(request, &settings.prefer) {
        Some(coding) => Decision::Compress(coding),
        None => Decision::Identity,
    }
}

/// The media type (`text/html` of `Text/HTML; charset=utf-8`) is one of the configured ones.
fn compressible_type(settings: &CompressSettings, response: &ResponseHead) -> bool {
    let Some(value) = response.header("content-type") else {
        return false;
    };
    let media = value
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let Ok(media) = std::str::from_utf8(media) else {
        return false;
    };
    let media = media.to_ascii_lowercase();
    settings.types.iter().any(|rule| rule.matches(&media))
}

/// A Content-Length that parses; several that disagree were refused by the relay already.
pub(super) fn content_length(response: &ResponseHead) -> Option<u64> {
    std::str::from_utf8(response.header("content-length")?)
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Header;

    type Fields<'a> = &'a [(&'a str, &'a str)];

    fn head(headers: &[(&str, &str)]) -> Vec<Header> {
        headers
            .iter()
            .map(|(n, v)| Header {
                name: (*n).into(),
                value: v.as_bytes().to_vec(),
            })
            .collect()
    }

    fn request(headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: "GET".into(),
            target: "/".into(),
            minor_version: 1,
            headers: head(headers),
            route: None,
            original_target: None,
        }
    }

    fn response(status: u16, headers: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            status,
            reason: String::new(),
            minor_version: 1,
            headers: head(headers),
        }
    }

    #[test]
    fn decisions_follow_status_type_length_encoding_and_cache_control() {
        use Decision::*;
        let gzip = [("Accept-Encoding", "gzip")];
        let json = ("Content-Type", "application/json; charset=utf-8");
        let long = ("Content-Length", "1000");
        let settings = CompressSettings::default();
        let table: &[(Fields, u16, Fields, Decision)] = &[
            (&gzip, 200, &[json, long], Compress(Coding::Gzip)),
            (&gzip, 200, &[json], Compress(Coding::Gzip)),
            (
                &gzip,
                404,
                &[("Content-Type", "TEXT/HTML"), long],
                Compress(Coding::Gzip),
            ),
            (&gzip, 200, &[json, ("Content-Length", "255")], Identity),
            (
                &gzip,
                200,
                &[json, ("Content-Length", "256")],
                Compress(Coding::Gzip),
            ),
            (&[], 200, &[json, long], Identity),
            (
                &[
                    ("Accept-Encoding", "gzip"),
                    ("Cache-Control", "no-transform"),
                ],
                200,
                &[json, long],
                Identity,
            ),
            (
                &gzip,
                200,
                &[("Content-Type", "image/png"), long],
                Untouched,
            ),
            (&gzip, 200, &[long], Untouched),
            (&gzip, 204, &[json], Untouched),
            (&gzip, 304, &[json], Untouched),
            (&gzip, 206, &[json, long], Untouched),
            (&gzip, 101, &[json], Untouched),
            (
                &[("Accept-Encoding", "gzip"), ("Range", "bytes=0-9")],
                200,
                &[json, long],
                Untouched,
            ),
            (
                &gzip,
                200,
                &[json, long, ("Content-Encoding", "br")],
                Untouched,
            ),
            (
                &gzip,
                200,
                &[json, long, ("Content-Encoding", "identity")],
                Compress(Coding::Gzip),
            ),
            (
                &gzip,
                200,
                &[json, long, ("Cache-Control", "public, No-Transform")],
                Untouched,
            ),
        ];
        for (req, status, res, want) in table {
            assert_eq!(
                decide(&settings, &request(req), &response(*status, res)),
                *want,
                "{req:?} {status} {res:?}"
            );
        }
    }
}
