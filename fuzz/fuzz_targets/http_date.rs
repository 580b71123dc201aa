//! The strict HTTP date parser (RFC 9110 section 5.6.7) on arbitrary bytes, against a fixed
//! clock (two-digit RFC 850 years are read relative to it).
//!
//! Properties: it never panics; a date it accepts formats back to an IMF-fixdate that parses
//! to the same instant; and an accepted IMF-fixdate is already canonical (formatting it gives
//! the same bytes, leap seconds aside), since the parser takes no spelling that the formatter
//! would not write.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use revproxy::http::date::{imf_fixdate, parse_http_date_at};

fuzz_target!(|data: &[u8]| {
    let now = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let Some(at) = parse_http_date_at(data, now) else {
        return;
    };
    // `Fri, 31 Dec 9999 23:59:60 GMT` is one second past what four year digits can write;
    // the formatter clamps it, so that one instant cannot round-trip.
    let last_writable = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    if at > last_writable {
        return;
    }
    let formatted = imf_fixdate(at);
    assert_eq!(
        parse_http_date_at(&formatted, now),
        Some(at),
        "{:?} -> {:?}",
        String::from_utf8_lossy(data),
        String::from_utf8_lossy(&formatted)
    );
    // A leap second (`:60`) is accepted and lands on the next second, which is written anew.
    let leap_second = data.get(23..25) == Some(&b"60"[..]);
    if data.len() == formatted.len() && data.get(3) == Some(&b',') && !leap_second {
        assert_eq!(&formatted[..], data, "an accepted IMF-fixdate is canonical");
    }
});
