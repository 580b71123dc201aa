//! A stored part's `Content-Range` and the combining of parts (`cache::partial`), on
//! arbitrary bytes.
//!
//! Properties: `content_range` never panics; a range it accepts has its first byte at or
//! before its last and its last inside the complete length, and written back in the one
//! form it reads (`bytes a-b/len`) it parses to the same range. `combine` of two parts (the
//! input split in two, at offsets from its first bytes) never panics, joins them exactly when
//! they meet or overlap, and holds the newer bytes at their offset and the older ones where
//! the newer do not reach.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revproxy::cache::partial::{combine, content_range};
use revproxy::http::{Header, ResponseHead};

fn head(value: &[u8]) -> ResponseHead {
    ResponseHead {
        status: 206,
        reason: "Partial Content".to_owned(),
        minor_version: 1,
        headers: vec![Header {
            name: "Content-Range".to_owned(),
            value: value.to_vec(),
        }],
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(range) = content_range(&head(data)) {
        assert!(
            range.first <= range.last && range.last < range.complete,
            "{range:?}"
        );
        let written = format!("bytes {}-{}/{}", range.first, range.last, range.complete);
        assert_eq!(content_range(&head(written.as_bytes())), Some(range));
    }

    // Two parts: offsets from the first two bytes, the rest split at the third.
    let [a, b, split, rest @ ..] = data else {
        return;
    };
    let (old, new) = rest.split_at(usize::from(*split).min(rest.len()));
    let (old_first, new_first) = (u64::from(*a), u64::from(*b));
    let old_end = old_first + old.len() as u64;
    let new_end = new_first + new.len() as u64;
    let meet = new_first <= old_end && old_first <= new_end;
    let Some((first, joined)) = combine(old_first, old, new_first, new) else {
        assert!(!meet, "parts that meet must combine");
        return;
    };
    assert!(meet, "parts that do not meet must not combine");
    assert_eq!(first, old_first.min(new_first));
    assert_eq!(first + joined.len() as u64, old_end.max(new_end));
    let at = |offset: u64| (offset - first) as usize;
    assert_eq!(&joined[at(new_first)..at(new_end)], new);
    for (i, &byte) in old.iter().enumerate() {
        let offset = old_first + i as u64;
        if offset < new_first || offset >= new_end {
            assert_eq!(joined[at(offset)], byte);
        }
    }
});
