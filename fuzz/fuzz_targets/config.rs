//! The configuration file parser on arbitrary text.
//!
//! Properties: it never panics; an error names the file first (`fuzz.toml:`), then, when it
//! has a place, `LINE:COLUMN: ` with a line and column that exist in the text (1-based,
//! column counted in characters, one past the end of a line allowed), and a message.
//! (`upstream::resolve` looks up no names under `cfg(fuzzing)`, so this sends no DNS queries.)
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Err(err) = revproxy::config::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    let shown = err.to_string();
    assert!(shown.starts_with("fuzz.toml:"), "{shown:?}");
    match err.position {
        Some((line, column)) => {
            let prefix = format!("fuzz.toml:{line}:{column}: ");
            assert!(shown.starts_with(&prefix), "{shown:?} lacks {prefix:?}");
            // `split('\n')`, not `lines()`: a position just after a final newline is on a line
            // of its own.
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(
                line >= 1 && line <= lines.len(),
                "line {line} of {}",
                lines.len()
            );
            let width = lines[line - 1].chars().count();
            assert!(
                column >= 1 && column <= width + 1,
                "column {column} of {width}"
            );
        }
        None => assert!(shown.starts_with("fuzz.toml: "), "{shown:?}"),
    }
    assert!(!err.message.is_empty(), "an error without a message");
});
