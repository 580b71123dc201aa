//! The compressors as body transforms: payload goes in as it arrives, and whenever the
//! origin pauses the relay asks for a flush (zlib's `Z_SYNC_FLUSH`, brotli's
//! `BROTLI_OPERATION_FLUSH`), so a response produced slowly reaches the client as it is
//! produced, while a fast origin's body is compressed in one run with no flush until its end
//! (a flush per 16 KiB piece cost 6% at gzip level 6, and a write to the client each).
//! The only buffers are the encoder's own state and the output it has produced since the
//! relay last took it, except for gzip and deflate of a body of declared, bounded length,
//! which is gathered and compressed in one call (`whole.rs`).

use std::io::{self, Write};

use brotli::CompressorWriter;

use super::deflater::{Deflater, Wrapper};
use super::whole::Whole;
use crate::relay::BodyTransform;

/// A content coding this proxy can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Brotli,
    Gzip,
    /// HTTP's `deflate` is the zlib format (RFC 9110 section 8.4.1.2), not raw deflate.
    Deflate,
}

impl Coding {
    /// The token in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }

    pub fn from_token(token: &str) -> Option<Coding> {
        [Coding::Brotli, Coding::Gzip, Coding::Deflate]
            .into_iter()
            .find(|c| c.token() == token)
    }
}

/// How hard each coding works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    /// zlib level 1 to 9, for gzip and deflate.
    pub gzip: u32,
    /// brotli quality 0 to 11.
    pub brotli: u32,
    /// brotli window, log2 of its size in bytes (10 to 24).
    pub brotli_window: u32,
}

/// brotli's internal input buffer; the output is drained after every piece anyway.
const BROTLI_BUFFER: usize = 4096;

/// One response's compressor.
pub struct Encoder {
    inner: Inner,
}

enum Inner {
    /// gzip and deflate: the same compressor in two wrappers (`deflater.rs`).
    Zlib(Deflater),
    /// gzip and deflate of a body gathered whole (`whole.rs`).
    Whole(Whole),
    /// `None` once finished: brotli writes its last block only when given up.
    Brotli(Option<Box<CompressorWriter<Vec<u8>>>>),
}

impl Encoder {
    /// An encoder for a body of `declared` length (`Content-Length`), if the origin said.
    pub fn new(coding: Coding, levels: Levels, declared: Option<u64>) -> Encoder {
        let zlib = |wrapper| match Whole::for_body(wrapper, levels.gzip, declared) {
            Some(whole) => Inner::Whole(whole),
            None => Inner::Zlib(Deflater::take(wrapper, levels.gzip)),
        };
        let inner = match coding {
            Coding::Gzip => zlib(Wrapper::Gzip),
            Coding::Deflate => zlib(Wrapper::Zlib),
            Coding::Brotli => Inner::Brotli(Some(Box::new(CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                levels.brotli,
                levels.brotli_window,
            )))),
        };
        Encoder { inner }
    }
}

impl BodyTransform for Encoder {
    fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if input.is_empty() {
            return Ok(()); // nothing to flush: an empty sync flush would still cost bytes
        }
        match &mut self.inner {
            Inner::Zlib(d) => d.data(input, out),
            Inner::Whole(w) => w.data(input, out),
            Inner::Brotli(Some(e)) => {
                e.write_all(input)?;
                out.append(e.get_mut());
                Ok(())
            }
            Inner::Brotli(None) => Err(io::Error::other("brotli: data after the end")),
        }
    }

    fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.inner {
            Inner::Zlib(d) => d.flushed(&[], out),
            Inner::Whole(w) => w.flush(out),
            Inner::Brotli(Some(e)) => {
                e.flush()?;
                out.append(e.get_mut());
                Ok(())
            }
            Inner::Brotli(None) => Ok(()),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.inner {
            Inner::Zlib(d) => d.finish(out)?,
            Inner::Whole(w) => w.finish(out)?,
            Inner::Brotli(e) => {
                if let Some(e) = e.take() {
                    out.append(&mut e.into_inner());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const LEVELS: Levels = Levels {
        gzip: 6,
        brotli: 4,
        brotli_window: 19,
    };

    pub(crate) fn decode(coding: Coding, bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?,
            Coding::Deflate => flate2::read::ZlibDecoder::new(bytes).read_to_end(&mut out)?,
            Coding::Brotli => brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out)?,
        };
        Ok(out)
    }

    fn sample() -> Vec<u8> {
        (0..2000)
            .flat_map(|i| format!("{{\"id\":{i},\"name\":\"item {}\"}},", i % 37).into_bytes())
            .collect()
    }

    /// Each of `codings` twice: with the length undeclared (streamed) and declared as `length`
    /// (gzip and deflate gather the body for libdeflate).
    fn declared_and_not(
        codings: &[Coding],
        length: u64,
    ) -> impl Iterator<Item = (Coding, Option<u64>)> + '_ {
        codings
            .iter()
            .flat_map(move |&c| [(c, None), (c, Some(length))])
    }

    /// The encoder of `coding` over `pieces`, with their length `declared` or not: the output,
    /// and how much came out after each piece.
    fn encode(coding: Coding, pieces: &[&[u8]], declared: bool) -> (Vec<u8>, Vec<usize>) {
        let length = pieces.iter().map(|p| p.len() as u64).sum();
        let mut encoder = Encoder::new(coding, LEVELS, declared.then_some(length));
        let mut all = Vec::new();
        let mut sizes = Vec::new();
        for piece in pieces {
            let mut out = Vec::new();
            encoder.data(piece, &mut out).unwrap();
            sizes.push(out.len());
            all.extend(out);
        }
        encoder.finish(&mut all).unwrap();
        (all, sizes)
    }

    #[test]
    fn each_coding_round_trips_whole_and_in_many_small_pieces() {
        let body = sample();
        let all = [Coding::Gzip, Coding::Deflate, Coding::Brotli];
        for (coding, length) in declared_and_not(&all, body.len() as u64) {
            let declared = length.is_some();
            let case = format!("{coding:?}, declared {declared}");
            let (whole, _) = encode(coding, &[&body], declared);
            assert!(whole.len() < body.len() / 4, "{case}: {}", whole.len());
            assert_eq!(decode(coding, &whole).unwrap(), body, "{case}: whole");
            let pieces: Vec<&[u8]> = body.chunks(7).collect();
            let (small, sizes) = encode(coding, &pieces, declared);
            assert_eq!(
                decode(coding, &small).unwrap(),
                body,
                "{case}: 7-byte pieces"
            );
            if declared && coding != Coding::Brotli {
                assert!(sizes.iter().all(|&n| n == 0), "{case}: gathered to the end");
            }
            let (empty, _) = encode(coding, &[], declared);
            assert_eq!(decode(coding, &empty).unwrap(), b"", "{case}: empty body");
        }
    }

    #[test]
    fn every_level_and_quality_the_config_allows_round_trips() {
        let body = &sample()[..4000];
        let pieces: Vec<&[u8]> = body.chunks(500).collect();
        for gzip in 1..=9 {
            for (coding, declared) in
                declared_and_not(&[Coding::Gzip, Coding::Deflate], body.len() as u64)
            {
                let mut encoder = Encoder::new(coding, Levels { gzip, ..LEVELS }, declared);
                let mut out = Vec::new();
                for piece in &pieces {
                    encoder.data(piece, &mut out).unwrap();
                }
                encoder.finish(&mut out).unwrap();
                assert_eq!(
                    decode(coding, &out).unwrap(),
                    body,
                    "{coding:?} level {gzip}, declared {declared:?}"
                );
            }
        }
        for (brotli, brotli_window) in (0..=11).map(|q| (q, 19)).chain([(4, 10), (4, 24)]) {
            let levels = Levels {
                brotli,
                brotli_window,
                ..LEVELS
            };
            let mut encoder = Encoder::new(Coding::Brotli, levels, None);
            let mut out = Vec::new();
            for piece in &pieces {
                encoder.data(piece, &mut out).unwrap();
            }
            encoder.finish(&mut out).unwrap();
            assert_eq!(decode(Coding::Brotli, &out).unwrap(), body, "{levels:?}");
        }
    }

    #[test]
    fn a_flush_gives_up_everything_so_far_as_a_decodable_prefix() {
        let body = sample();
        let (first, rest) = body.split_at(1000);
        let all = [Coding::Gzip, Coding::Deflate, Coding::Brotli];
        for (coding, declared) in declared_and_not(&all, body.len() as u64) {
            let mut encoder = Encoder::new(coding, LEVELS, declared);
            let mut out = Vec::new();
            encoder.data(first, &mut out).unwrap();
            // Without a flush a compressor may keep the piece (these all do, it is small).
            assert!(
                decode_prefix(coding, &out).len() < first.len(),
                "{coding:?} gave the whole piece before a flush"
            );
            encoder.flush(&mut out).unwrap();
            assert_eq!(decode_prefix(coding, &out), first, "{coding:?} prefix");
            encoder.flush(&mut out).unwrap(); // a second flush with nothing new is harmless
            encoder.data(rest, &mut out).unwrap();
            encoder.finish(&mut out).unwrap();
            assert_eq!(
                decode(coding, &out).unwrap(),
                body,
                "{coding:?} {declared:?}"
            );
            let mut after = Vec::new();
            assert!(
                encoder.data(b"more", &mut after).is_err(),
                "data after the end"
            );
        }
    }

    /// Decodes a stream that has not ended: everything that was flushed.
    pub(crate) fn decode_prefix(coding: Coding, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let mut read = |r: &mut dyn Read| loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        };
        match coding {
            Coding::Gzip => read(&mut flate2::read::GzDecoder::new(bytes)),
            Coding::Deflate => read(&mut flate2::read::ZlibDecoder::new(bytes)),
            Coding::Brotli => read(&mut brotli::Decompressor::new(bytes, 4096)),
        }
        out
    }

    #[test]
    fn tokens_name_the_codings() {
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli] {
            assert_eq!(Coding::from_token(coding.token()), Some(coding));
        }
        assert_eq!(Coding::from_token("zstd"), None);
    }
}
