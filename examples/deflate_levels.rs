//! What each gzip level costs and saves on chapter 09's 100 KiB JSON body (or any file),
//! outside any proxy, in both libraries stage 9 uses: zlib, which streams (nginx's library,
//! the flate2 backend in Cargo.toml), and libdeflate, which compresses a whole buffer in one
//! call (`src/compress/whole.rs`). Bodies compressed per second on one thread, and the bytes
//! of one.
//!
//!     cargo run --release --example deflate_levels                  # levels 1, 2, 3, 6, 9
//!     cargo run --release --example deflate_levels -- 1 6           # some of them
//!     cargo run --release --example deflate_levels -- --file README.md 1 6
//!
//! Where stage 9 serves a level by another of libdeflate's (level 6, by its 5), a line under
//! the row measures that one too.
//!
//! Change the `flate2` line's feature to `"zlib-rs"` to measure zlib-rs in zlib's column.
//! The default body is the one `chapters/scripts/edge-vs-nginx.sh` writes: 10,000 rows of
//! Python's `json.dumps`, cut to 100 KiB.

use std::time::{Duration, Instant};

use flate2::{Compress, Compression, FlushCompress, Status};
use revproxy::compress::whole::libdeflate_level;

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

/// One gzip stream of `input`, in one call; its length.
fn gzip_once(compress: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> usize {
    // Reset and reused, as the proxy reuses its streams (src/compress/deflater.rs).
    compress.reset();
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

/// Bodies per second that libdeflate at `level` compresses `input` into one gzip stream each
/// (one compressor, reused, as the proxy does), and the bytes of one.
fn measure_libdeflate(level: u32, input: &[u8]) -> (f64, usize) {
    let lvl = libdeflater::CompressionLvl::new(level as i32).expect("levels 1 to 9 exist");
    let mut compressor = libdeflater::Compressor::new(lvl);
    let mut room = vec![0; compressor.gzip_compress_bound(input.len())];
    measure(|| {
        compressor
            .gzip_compress(input, &mut room)
            .unwrap_or_else(|err| panic!("libdeflate failed: {err:?}"))
    })
}

/// Bodies per second that `compress_one` does in [`RUN`], and the bytes of the last one.
fn measure(mut compress_one: impl FnMut() -> usize) -> (f64, usize) {
    let started = Instant::now();
    let mut bodies = 0u32;
    let mut size = 0;
    while started.elapsed() < RUN {
        size = compress_one();
        bodies += 1;
    }
    (f64::from(bodies) / started.elapsed().as_secs_f64(), size)
}

const USAGE: &str = "usage: deflate_levels [--file PATH] [LEVEL...]   (levels 1 to 9)";

fn main() {
    let mut file = None;
    let mut levels = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), arg.parse()) {
            ("--file", _) => file = args.next(),
            (_, Ok(level @ 1..=9)) => levels.push(level),
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    if levels.is_empty() {
        levels = vec![1, 2, 3, 6, 9];
    }
    let (input, what) = match &file {
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => (bytes, path.as_str()),
            Err(err) => {
                eprintln!("deflate_levels: cannot read {path}: {err}");
                std::process::exit(1);
            }
        },
        None => (body(), "JSON (chapter 09's body)"),
    };
    println!(
        "body: {} bytes of {what}; {RUN:?} per level and library, one thread",
        input.len()
    );
    println!("level  zlib: bodies/s    bytes  libdeflate: bodies/s    bytes");
    let mut out = Vec::new();
    for level in levels {
        let mut compress = Compress::new_gzip(Compression::new(level), 15);
        let (zlib_rate, zlib_size) = measure(|| gzip_once(&mut compress, &input, &mut out));
        let (ld_rate, ld_size) = measure_libdeflate(level, &input);
        println!("{level:>5}  {zlib_rate:14.0} {zlib_size:8}  {ld_rate:20.0} {ld_size:8}");
        let served = libdeflate_level(level);
        if served != level {
            let (rate, size) = measure_libdeflate(served, &input);
            println!(
                "       stage 9 serves level {level} by libdeflate's {served}: \
                 {rate:.0} bodies/s, {size} bytes"
            );
        }
    }
}
