//! gzip and deflate of a body whose length the origin declared and which is small enough to
//! hold: the payload is gathered and compressed in one call by libdeflate, which has no
//! streaming interface and is faster than zlib at the levels most used, with smaller output
//! (chapter 09's 100 KiB JSON body, `cargo run --release --example deflate_levels`):
//!
//! - level 1: 1.3 to 1.6 times zlib's speed, 8% fewer bytes;
//! - level 6 (the default): zlib's speed, 11% fewer bytes.
//!
//! From level 7 up libdeflate trades much more time for bytes than zlib does (level 9 took
//! 3.6 times zlib's), so those levels stay on zlib's stream ([`Whole::suits`]).
//!
//! Holding the body costs what the origin sends before the client gets anything, so it is
//! held only while the origin keeps sending: when the relay reports a pause (a slow origin),
//! what was gathered goes into a zlib stream ([`Deflater`]), which takes the rest piece by
//! piece as before, and the client gets a flushed prefix at once.

use std::io;

use libdeflater::{CompressionLvl, Compressor};

use super::deflater::{Deflater, Wrapper};
use super::stock::Stock;

/// Largest declared length gathered whole: input and output together stay under 0.6 MiB a
/// response, and compressing it takes a few milliseconds at most, the longest a client can
/// wait for a first byte that streaming would have sent sooner.
pub const WHOLE_BODY_MAX: u64 = 256 * 1024;

/// Highest zlib level served by libdeflate (see the module's comment).
const HIGHEST_LEVEL: u32 = 6;

/// Compressors, with the buffer each writes into, and buffers to gather bodies in, kept
/// between responses. Made anew for each response, their few hundred KiB came from `malloc`
/// as fresh pages: 16 page faults a response (`perf stat`) and a tenth of the throughput.
const STOCK_MAX: usize = 8;

static WORKSPACES: Stock<Workspace> = Stock::new(STOCK_MAX);
static BODIES: Stock<Vec<u8>> = Stock::new(STOCK_MAX);

/// A compressor for one level, and the buffer it compresses into before the output is copied
/// (a tenth of the input's size, for text) to the caller.
struct Workspace {
    level: u32,
    compressor: Compressor,
    output: Vec<u8>,
}

/// One response's body, gathered, or streamed since the origin paused.
pub struct Whole {
    wrapper: Wrapper,
    level: u32,
    state: State,
}

enum State {
    Gathering(Vec<u8>),
    Streaming(Deflater),
}

impl Whole {
    /// Whether a body of `length` bytes at zlib `level` is gathered and compressed whole.
    pub fn suits(length: Option<u64>, level: u32) -> bool {
        length.is_some_and(|n| n <= WHOLE_BODY_MAX) && (1..=HIGHEST_LEVEL).contains(&level)
    }

    pub fn new(wrapper: Wrapper, level: u32, length: u64) -> Whole {
        let room = usize::try_from(length.min(WHOLE_BODY_MAX)).unwrap_or(0);
        let mut body = BODIES.take(|_| true).unwrap_or_default();
        body.reserve(room);
        Whole {
            wrapper,
            level,
            state: State::Gathering(body),
        }
    }

    pub fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.state {
            State::Gathering(body) => {
                body.extend_from_slice(input);
                // An origin that sends more than it declared is cut off by the relay; until
                // then the gathered body stays bounded all the same.
                if body.len() as u64 > WHOLE_BODY_MAX {
                    self.stream(out)?;
                }
                Ok(())
            }
            State::Streaming(deflater) => deflater.data(input, out),
        }
    }

    /// The origin paused: from here on the body is streamed, and what came so far is
    /// flushed to the client.
    pub fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.stream(out)?;
        match &mut self.state {
            State::Streaming(deflater) => deflater.flushed(&[], out),
            State::Gathering(_) => unreachable!("stream() leaves the gathering state"),
        }
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.state {
            State::Gathering(body) => compress(self.wrapper, self.level, body, out),
            State::Streaming(deflater) => deflater.finish(out),
        }
    }

    /// Moves to a zlib stream, giving it what was gathered.
    fn stream(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if let State::Gathering(body) = &mut self.state {
            let mut deflater = Deflater::take(self.wrapper, self.level);
            deflater.data(body, out)?;
            give_body(std::mem::take(body));
            self.state = State::Streaming(deflater);
        }
        Ok(())
    }
}

impl Drop for Whole {
    fn drop(&mut self) {
        if let State::Gathering(body) = &mut self.state {
            give_body(std::mem::take(body));
        }
    }
}

/// Back to the stock, empty, unless it grew past what a gathered body may be.
fn give_body(mut body: Vec<u8>) {
    if body.capacity() as u64 <= WHOLE_BODY_MAX {
        body.clear();
        BODIES.give(body);
    }
}

/// `body` in `wrapper` at `level`, appended to `out` in one libdeflate call.
fn compress(wrapper: Wrapper, level: u32, body: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let mut space = match WORKSPACES.take(|w| w.level == level) {
        Some(space) => space,
        None => Workspace::new(level)?,
    };
    let compressor = &mut space.compressor;
    let bound = match wrapper {
        Wrapper::Gzip => compressor.gzip_compress_bound(body.len()),
        Wrapper::Zlib => compressor.zlib_compress_bound(body.len()),
    };
    if space.output.len() < bound {
        space.output.resize(bound, 0);
    }
    let room = &mut space.output[..bound];
    let written = match wrapper {
        Wrapper::Gzip => compressor.gzip_compress(body, room),
        Wrapper::Zlib => compressor.zlib_compress(body, room),
    };
    let result = match written {
        Ok(n) => {
            out.extend_from_slice(&space.output[..n]);
            Ok(())
        }
        Err(e) => Err(io::Error::other(format!("libdeflate: {e:?}"))),
    };
    WORKSPACES.give(space);
    result
}

impl Workspace {
    fn new(level: u32) -> io::Result<Workspace> {
        let lvl = i32::try_from(level)
            .ok()
            .and_then(|l| CompressionLvl::new(l).ok())
            .ok_or_else(|| io::Error::other(format!("libdeflate has no level {level}")))?;
        Ok(Workspace {
            level,
            compressor: Compressor::new(lvl),
            output: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Vec<u8> {
        (0..4000)
            .flat_map(|i| format!("{{\"id\":{i},\"tag\":\"t{}\"}},", i % 13).into_bytes())
            .collect()
    }

    fn decode(wrapper: Wrapper, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match wrapper {
            Wrapper::Gzip => flate2::read::GzDecoder::new(bytes).read_to_end(&mut out),
            Wrapper::Zlib => flate2::read::ZlibDecoder::new(bytes).read_to_end(&mut out),
        }
        .unwrap();
        out
    }

    #[test]
    fn a_gathered_body_is_one_stream_in_either_wrapper_at_every_level_it_takes() {
        let body = sample();
        for wrapper in [Wrapper::Gzip, Wrapper::Zlib] {
            for level in 1..=HIGHEST_LEVEL {
                let mut whole = Whole::new(wrapper, level, body.len() as u64);
                let mut out = Vec::new();
                for piece in body.chunks(16 * 1024) {
                    whole.data(piece, &mut out).unwrap();
                }
                assert!(out.is_empty(), "nothing before the end");
                whole.finish(&mut out).unwrap();
                assert!(out.len() < body.len() / 4, "{wrapper:?} {level} compresses");
                assert_eq!(decode(wrapper, &out), body, "{wrapper:?} level {level}");
            }
        }
    }

    #[test]
    fn a_pause_flushes_what_came_and_streams_the_rest() {
        let body = sample();
        let (first, rest) = body.split_at(5000);
        let mut whole = Whole::new(Wrapper::Gzip, 6, body.len() as u64);
        let mut out = Vec::new();
        whole.data(first, &mut out).unwrap();
        whole.flush(&mut out).unwrap();
        let mut prefix = Vec::new();
        let mut decoder = flate2::read::GzDecoder::new(&out[..]);
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = decoder.read(&mut buf) {
            prefix.extend_from_slice(&buf[..n]);
        }
        assert_eq!(prefix, first, "the flushed prefix decodes to what came");
        for piece in rest.chunks(3000) {
            whole.data(piece, &mut out).unwrap();
        }
        whole.finish(&mut out).unwrap();
        assert_eq!(decode(Wrapper::Gzip, &out), body);
    }

    #[test]
    fn more_than_the_bound_is_streamed_and_the_levels_above_six_are_not_gathered() {
        let big: Vec<u8> = sample().repeat(4);
        assert!(big.len() as u64 > WHOLE_BODY_MAX);
        let mut whole = Whole::new(Wrapper::Zlib, 1, 1000);
        let mut out = Vec::new();
        whole.data(&big, &mut out).unwrap();
        assert!(matches!(whole.state, State::Streaming(_)));
        whole.finish(&mut out).unwrap();
        assert_eq!(decode(Wrapper::Zlib, &out), big);
        assert!(Whole::suits(Some(WHOLE_BODY_MAX), 6));
        assert!(!Whole::suits(Some(WHOLE_BODY_MAX + 1), 6));
        assert!(!Whole::suits(None, 6));
        assert!(!Whole::suits(Some(1000), 7));
    }
}
