//! gzip and zlib-wrapped deflate on `flate2::Compress` directly, with the compressor state
//! kept for the next response. The library under it is zlib (see `Cargo.toml`).
//!
//! Two costs showed in the profile of stage 9 compressing 100 KiB JSON responses, besides
//! the compression itself, and this module removes them:
//!
//! - **Setting up a compressor.** A deflate stream allocates a few hundred KiB (a 64 KiB
//!   window, the hash chains, the pending buffer) and clears most of it; at level 1 that
//!   clearing was 15% of the CPU (measured on zlib-rs, the backend before). A stream that
//!   ended is `reset` (which clears only the hash head) and kept in a small shared stock, so
//!   a response takes a ready compressor. The stock is bounded ([`STOCK_MAX`]), so it costs
//!   at most a few MiB.
//! - **Copies and a second checksum.** `flate2::write::GzEncoder` copies the output through
//!   a buffer of its own and computes the gzip CRC-32 in flate2 with a table-driven loop (7%
//!   at level 1). Here the library writes the gzip header and trailer itself (`new_gzip`),
//!   straight into the caller's output.

use std::io;

use flate2::{Compress, Compression, FlushCompress, Status};

use crate::stock::Stock;

/// Most compressors kept between responses, of every coding and level together: enough for
/// the workers of a busy pool on two cores to find one, and about 3 MiB at most.
const STOCK_MAX: usize = 8;

/// deflate's largest window, 32 KiB, as zlib and nginx use by default.
const WINDOW_BITS: u8 = 15;

/// Output room reserved before each call when the output is full: the compressed form of a
/// typical piece fits, and a larger one takes a few more rounds.
const OUTPUT_STEP: usize = 8 * 1024;

/// The two zlib-library formats HTTP names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrapper {
    /// `gzip` (RFC 1952): a header, deflate, CRC-32 and length.
    Gzip,
    /// `deflate` in HTTP is the zlib format (RFC 1950): a header, deflate, Adler-32.
    Zlib,
}

/// Compressors that finished a stream and were reset, ready for another one.
static STOCK: Stock<Stream> = Stock::new(STOCK_MAX);

/// A compressor and what it was made for.
struct Stream {
    compress: Compress,
    wrapper: Wrapper,
    level: u32,
}

/// One response's deflate stream; its compressor goes back to the stock when dropped.
pub struct Deflater {
    /// `None` only inside `drop`.
    stream: Option<Stream>,
}

impl Deflater {
    /// A compressor from the stock when one of this kind is there, or a new one.
    pub fn take(wrapper: Wrapper, level: u32) -> Deflater {
        let reused = STOCK.take(|s| s.wrapper == wrapper && s.level == level);
        let stream = reused.unwrap_or_else(|| {
            let compression = Compression::new(level);
            let compress = match wrapper {
                Wrapper::Gzip => Compress::new_gzip(compression, WINDOW_BITS),
                Wrapper::Zlib => Compress::new(compression, true),
            };
            Stream {
                compress,
                wrapper,
                level,
            }
        });
        Deflater {
            stream: Some(stream),
        }
    }

    /// Compresses `input`; deflate may hold some of it back, until a flush or the finish.
    pub fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        self.run(input, out, FlushCompress::None)
    }

    /// Compresses `input` and flushes (a sync flush: the output ends on a byte boundary and
    /// decodes up to the last input byte), appending to `out`.
    pub fn flushed(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.run(input, out, FlushCompress::Sync)
    }

    /// Ends the stream: whatever is held, then the trailer.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.run(&[], out, FlushCompress::Finish)
    }

    fn run(&mut self, mut input: &[u8], out: &mut Vec<u8>, flush: FlushCompress) -> io::Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::Error::other("deflate: the stream is gone"));
        };
        let compress = &mut stream.compress;
        let finishing = matches!(flush, FlushCompress::Finish);
        // Bounded: each round consumes input, or fills the output (which then grows), or
        // ends; a round that can do none of these reports `BufError` and ends the loop.
        loop {
            if out.len() == out.capacity() {
                out.reserve(OUTPUT_STEP);
            }
            let before = compress.total_in();
            let status = compress
                .compress_vec(input, out, flush)
                .map_err(io::Error::other)?;
            let consumed = usize::try_from(compress.total_in() - before).unwrap_or(usize::MAX);
            input = &input[consumed.min(input.len())..];
            match status {
                Status::StreamEnd | Status::BufError => return Ok(()),
                // With the input taken and room left over, deflate has done what no flush or
                // a sync flush asks for; a finish is done only at `StreamEnd`.
                Status::Ok if !finishing && input.is_empty() && out.len() < out.capacity() => {
                    return Ok(())
                }
                Status::Ok => {}
            }
        }
    }
}

impl Drop for Deflater {
    /// Back to the stock, reset, when there is room; a compressor whose response broke off
    /// mid-stream is reset just the same.
    fn drop(&mut self) {
        let Some(mut stream) = self.stream.take() else {
            return;
        };
        if STOCK.has_room() {
            // Outside the lock: the reset clears the hash head (64 KiB in zlib).
            stream.compress.reset();
            STOCK.give(stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn sample() -> Vec<u8> {
        (0..5000)
            .flat_map(|i| format!("{{\"id\":{i},\"tag\":\"t{}\"}},", i % 11).into_bytes())
            .collect()
    }

    #[test]
    fn a_reused_compressor_starts_a_clean_stream() {
        let body = sample();
        let mut first = Vec::new();
        let mut deflater = Deflater::take(Wrapper::Gzip, 3);
        // Broken off halfway: what it held must not leak into the next stream.
        deflater
            .flushed(&body[..body.len() / 2], &mut first)
            .unwrap();
        drop(deflater);
        for _ in 0..3 {
            let mut deflater = Deflater::take(Wrapper::Gzip, 3);
            let mut out = Vec::new();
            for piece in body.chunks(4096) {
                deflater.flushed(piece, &mut out).unwrap();
            }
            deflater.finish(&mut out).unwrap();
            assert_eq!(gunzip(&out), body);
            assert_eq!(&out[..3], b"\x1f\x8b\x08", "a gzip header");
        }
    }

    #[test]
    fn output_larger_than_a_step_and_a_finish_without_input_are_whole() {
        // Incompressible input: the output outgrows OUTPUT_STEP several times in one call.
        let mut noise = Vec::with_capacity(100_000);
        let mut x: u32 = 12345;
        for _ in 0..100_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            noise.push((x >> 16) as u8);
        }
        let mut deflater = Deflater::take(Wrapper::Zlib, 6);
        let mut out = Vec::new();
        deflater.flushed(&noise, &mut out).unwrap();
        deflater.finish(&mut out).unwrap();
        let mut back = Vec::new();
        flate2::read::ZlibDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, noise);
        let mut empty = Deflater::take(Wrapper::Gzip, 1);
        let mut out = Vec::new();
        empty.finish(&mut out).unwrap();
        assert_eq!(gunzip(&out), b"");
    }
}
