//! `Cache-Control` as a shared cache reads it (`cache::control`), on any header value.
//!
//! Properties:
//! - parsing a response's and a request's directives never panics;
//! - the reading does not depend on how the directives are split over header lines: the
//!   value as one `Cache-Control` line and the same list split at each top-level comma into
//!   several lines give the same directives (RFC 9110 section 5.3), whenever the value has
//!   no quoted string (a comma inside quotes is not a separator);
//! - `no-store` seen in the text as a whole directive is always honoured.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revproxy::cache::control::{RequestDirectives, ResponseDirectives};
use revproxy::http::{Header, ResponseHead};

fn head(values: &[&[u8]]) -> ResponseHead {
    ResponseHead {
        status: 200,
        reason: "OK".to_owned(),
        minor_version: 1,
        headers: values
            .iter()
            .map(|v| Header {
                name: "Cache-Control".to_owned(),
                value: v.to_vec(),
            })
            .collect(),
    }
}

fuzz_target!(|data: &[u8]| {
    // Header values never hold CR, LF or NUL (the head parser refuses them).
    if data.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        return;
    }
    let one = head(&[data]);
    let response = ResponseDirectives::parse(&one);
    let _ = RequestDirectives::parse(&one);
    if !data.contains(&b'"') {
        // The head parser trims each line's surrounding whitespace; so does this split.
        let pieces: Vec<&[u8]> = data.split(|&b| b == b',').map(<[u8]>::trim_ascii).collect();
        let split = head(&pieces);
        assert_eq!(ResponseDirectives::parse(&split), response);
        assert_eq!(
            RequestDirectives::parse(&split),
            RequestDirectives::parse(&one)
        );
        let whole_no_store = pieces
            .iter()
            .any(|p| p.trim_ascii().eq_ignore_ascii_case(b"no-store"));
        if whole_no_store {
            assert!(response.no_store, "{:?}", String::from_utf8_lossy(data));
        }
    }
});
