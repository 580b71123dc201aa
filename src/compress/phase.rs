//! Compression as a response-head phase: the decision from the heads, then the headers that
//! describe the compressed representation, and the encoder as the body's transform. It is
//! the last phase of a chain, after the cache, so the cache keeps the identity body and a
//! hit is compressed like a miss.

use super::config::CompressSettings;
use super::decide::{content_length, decide, Decision};
use super::encoder::{Coding, Encoder};
use crate::http::head::Headers;
use crate::http::{Header, RequestHead, ResponseHead};
use crate::relay::{BodyPlan, Phases};

/// The compression phases of stage 9.
pub struct CompressPhases {
    settings: CompressSettings,
}

impl CompressPhases {
    pub fn new(settings: CompressSettings) -> CompressPhases {
        CompressPhases { settings }
    }

    pub fn settings(&self) -> &CompressSettings {
        &self.settings
    }
}

impl Phases for CompressPhases {
    /// Nothing is kept between hooks: a cache hit skips the request phases after the cache's,
    /// so everything is decided in `response_head`, from the request as it arrived.
    type Ctx = ();

    fn response_head(
        &self,
        _ctx: &mut (),
        request: &RequestHead,
        response: &mut ResponseHead,
        body: &mut BodyPlan,
    ) {
        if !self.settings.enabled {
            return;
        }
        match decide(&self.settings, request, response) {
            Decision::Untouched => {}
            Decision::Identity => add_vary(response),
            Decision::Compress(coding) => {
                add_vary(response);
                let declared = content_length(response);
                describe_compressed(response, coding);
                body.transform(Encoder::new(coding, self.settings.levels, declared));
            }
        }
    }
}

/// `Vary: Accept-Encoding`, merged into the last `Vary` there is, never twice, and not beside
/// `Vary: *` (which says it already).
fn add_vary(response: &mut ResponseHead) {
    if response.has_token("vary", "accept-encoding") || response.has_token("vary", "*") {
        return;
    }
    match response
        .headers
        .iter_mut()
        .rev()
        .find(|h| h.name.eq_ignore_ascii_case("vary") && !h.value.trim_ascii().is_empty())
    {
        Some(vary) => vary.value.extend_from_slice(b", Accept-Encoding"),
        None => response.headers.push(header("Vary", "Accept-Encoding")),
    }
}

/// The head of the compressed representation: its coding, no length (the body is re-framed),
/// no byte ranges (they would count identity bytes), and a weak ETag, since the bytes differ
/// from the identity's that the strong one names (RFC 9110 section 8.8.3.3).
fn describe_compressed(response: &mut ResponseHead, coding: Coding) {
    response.headers.retain(|h| {
        !["content-encoding", "content-length", "accept-ranges"]
            .iter()
            .any(|n| h.name.eq_ignore_ascii_case(n))
    });
    response
        .headers
        .push(header("Content-Encoding", coding.token()));
    for etag in response
        .headers
        .iter_mut()
        .filter(|h| h.name.eq_ignore_ascii_case("etag"))
    {
        if etag.value.trim_ascii_start().starts_with(b"\"") {
            etag.value.splice(0..0, *b"W/");
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.to_owned(),
        value: value.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(headers: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            status: 200,
            reason: "OK".into(),
            minor_version: 1,
            headers: headers.iter().map(|(n, v)| header(n, v)).collect(),
        }
    }

    fn values(r: &ResponseHead, name: &str) -> Vec<String> {
        r.values(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    #[test]
    fn vary_is_merged_once() {
        for (before, want) in [
            (&[][..], vec!["Accept-Encoding"]),
            (&[("Vary", "Origin")][..], vec!["Origin, Accept-Encoding"]),
            (
                &[("Vary", "Origin"), ("vary", "Cookie")][..],
                vec!["Origin", "Cookie, Accept-Encoding"],
            ),
            (
                &[("Vary", "origin, ACCEPT-ENCODING")][..],
                vec!["origin, ACCEPT-ENCODING"],
            ),
            (&[("Vary", "*")][..], vec!["*"]),
        ] {
            let mut r = response(before);
            add_vary(&mut r);
            add_vary(&mut r);
            assert_eq!(values(&r, "vary"), want, "{before:?}");
        }
    }

    #[test]
    fn a_compressed_head_is_weak_unlengthed_and_names_its_coding() {
        let mut r = response(&[
            ("ETag", "\"abc\""),
            ("Content-Length", "1000"),
            ("Accept-Ranges", "bytes"),
            ("Content-Encoding", "identity"),
            ("Content-Type", "text/html"),
        ]);
        describe_compressed(&mut r, Coding::Brotli);
        assert_eq!(values(&r, "etag"), vec!["W/\"abc\""]);
        assert_eq!(values(&r, "content-encoding"), vec!["br"]);
        assert!(r.header("content-length").is_none() && r.header("accept-ranges").is_none());
        let mut weak = response(&[("ETag", "W/\"abc\"")]);
        describe_compressed(&mut weak, Coding::Gzip);
        assert_eq!(values(&weak, "etag"), vec!["W/\"abc\""], "already weak");
    }
}
