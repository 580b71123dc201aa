//! What each zlib level costs and saves on chapter 09's 100 KiB JSON body, outside any proxy:
//! bodies compressed per second on one thread, and the bytes of one.
//!
//!     cargo run --release --example deflate_levels            # levels 1, 2, 3, 6, 9
//!     cargo run --release --example deflate_levels -- 1 6     # some of them
//!
//! It uses the flate2 backend the proxy is built with (zlib, nginx's library, see Cargo.toml);
//! change the `flate2` line's feature to `"zlib-rs"` to measure zlib-rs the same way.
//! The body is the one `chapters/scripts/edge-vs-nginx.sh` writes: 10,000 rows of
//! Python's `json.dumps`, cut to 100 KiB.

use std::time::{Duration, Instant};

use flate2::{Compress, Compression, FlushCompress, Status};

/// How long each level is measured.
const RUN: Duration = Duration::from_secs(1);

fn body() -> Vec<u8> {
    let rows: Vec<String> = (0..10_000u32)
        .map(|i| {
            let tags: Vec<&str> = ["\"a\"", "\"b\"", "\"c\""][..(i % 4).min(3) as usize].to_vec();
            format!(
                "{{\"id\": {i}, \"name\": \"user{i}\", \"email\": \"user{i}@example.test\", \
                 \"active\": {}, \"score\": {}, \"tags\": [{}]}}",
                i % 3 == 0,
                (i * 7919) % 1000,
                tags.join(", ")
            )
        })
        .collect();
    let text = format!("[{}]", rows.join(", "));
    let mut bytes = text.into_bytes();
    bytes.truncate(100 * 1024 - 1);
    bytes.push(b']');
    bytes
}

/// One gzip stream of `input` at `level`, in one call; its length.
fn gzip_once(input: &[u8], level: u32, out: &mut Vec<u8>) -> usize {
    let mut compress = Compress::new_gzip(Compression::new(level), 15);
    out.clear();
    loop {
        let taken = usize::try_from(compress.total_in()).unwrap_or(usize::MAX);
        if out.len() == out.capacity() {
            out.reserve(64 * 1024);
        }
        match compress.compress_vec(&input[taken.min(input.len())..], out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => return out.len(),
            Ok(_) => {}
            Err(err) => panic!("deflate failed: {err}"),
        }
    }
}

fn main() {
    let levels: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| match a.parse() {
            Ok(level @ 1..=9) => level,
            _ => {
                eprintln!("usage: deflate_levels [LEVEL...]   (levels 1 to 9)");
                std::process::exit(2);
            }
        })
        .collect();
    let levels = if levels.is_empty() {
        vec![1, 2, 3, 6, 9]
    } else {
        levels
    };
    let input = body();
    println!(
        "body: {} bytes of JSON; {RUN:?} per level, one thread",
        input.len()
    );
    let mut out = Vec::new();
    for level in levels {
        let started = Instant::now();
        let mut bodies = 0u32;
        let mut size = 0;
        while started.elapsed() < RUN {
            size = gzip_once(&input, level, &mut out);
            bodies += 1;
        }
        let per_second = f64::from(bodies) / started.elapsed().as_secs_f64();
        println!("gzip level {level}: {per_second:7.0} bodies/s, {size} bytes");
    }
}
