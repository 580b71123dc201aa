//! The path that access rules and routes are matched against (`access::path::normalise`).
//!
//! Properties, for any target text:
//! - it never panics, and what it returns is a path: it starts with `/` and has no empty,
//!   `.`, `..` or `;`-parameter segment left, so a prefix check on it cannot be walked around;
//! - normalising is idempotent: the result normalises to itself (a rule and a route see the
//!   same path however many times it is normalised);
//! - strict mode only refuses more: what it accepts, the lenient mode accepts with the same
//!   result, and that result is printable ASCII.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revproxy::access::path::normalise;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let lenient = normalise(target, false);
    if let Ok(path) = &lenient {
        assert!(path.starts_with('/'), "{target:?} -> {path:?}");
        assert!(!path.contains("//"), "{target:?} -> {path:?}");
        for segment in path.split('/') {
            assert!(segment != "." && segment != "..", "{target:?} -> {path:?}");
            assert!(!segment.contains(';'), "{target:?} -> {path:?}");
        }
        // The result has no query: a `?` it holds came percent-encoded and stays so.
        assert!(!path.contains('?'), "{target:?} -> {path:?}");
        assert_eq!(normalise(path, false).as_ref(), Ok(path), "{target:?}");
    }
    if let Ok(strict) = normalise(target, true) {
        assert_eq!(lenient.as_ref(), Ok(&strict), "{target:?}");
        assert!(
            strict.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "{target:?} -> {strict:?}"
        );
    }
});
