//! Streaming a body from one stream to another through a fixed-size buffer, decoding the
//! incoming framing and writing it out in the framing the receiver needs.
//!
//! A body is never collected whole: the proxy holds at most one read buffer of it at a time,
//! so a 5 MB response reaches the client while the backend is still sending it.

use std::fmt;
use std::io::{self, Read, Write};

use super::error::HttpError;
use super::framing::BodyFraming;
use super::limits::Limits;
use super::stream::BufStream;

/// How the body is written to the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The bytes as they are: the receiver knows the length from `Content-Length`, or reads
    /// until the connection closes.
    Raw,
    /// `Transfer-Encoding: chunked`, ending with a last chunk and an empty trailer section.
    Chunked,
}

/// Which side of a body copy failed; the caller answers differently for each.
#[derive(Debug)]
pub enum BodyError {
    /// The sender failed: closed early, timed out, or sent invalid chunked framing.
    Source(HttpError),
    /// The receiver failed (it went away, or stopped reading).
    Sink(io::Error),
    /// The body is larger than the limit the caller set.
    TooLarge,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Source(err) => write!(f, "reading body: {err}"),
            BodyError::Sink(err) => write!(f, "writing body: {err}"),
            BodyError::TooLarge => f.write_str("body larger than allowed"),
        }
    }
}

impl std::error::Error for BodyError {}

/// Copies one body from `src` to `dst`, returning the number of body bytes (after decoding).
/// `max_body` stops a body that grows past it before the excess is forwarded.
pub fn copy_body<S: Read, W: Write>(
    src: &mut BufStream<S>,
    framing: BodyFraming,
    dst: &mut W,
    encoding: Encoding,
    limits: &Limits,
    max_body: Option<u64>,
) -> Result<u64, BodyError> {
    let mut delivered = 0;
    copy_body_counting(
        src,
        framing,
        dst,
        encoding,
        limits,
        max_body,
        &mut delivered,
    )?;
    Ok(delivered)
}

/// [`copy_body`] that also tells, when it fails, how many body bytes reached `dst` before
/// (`delivered`, the figure an access log needs for a response that broke off).
pub fn copy_body_counting<S: Read, W: Write>(
    src: &mut BufStream<S>,
    framing: BodyFraming,
    dst: &mut W,
    encoding: Encoding,
    limits: &Limits,
    max_body: Option<u64>,
    delivered: &mut u64,
) -> Result<(), BodyError> {
    let out = BodyWriter::new(dst, encoding, delivered, max_body, false);
    copy_framed(src, framing, out, limits, max_body)
}

/// [`copy_body_counting`] for a destination that holds output back (a compressor), in the
/// raw encoding: `dst` is flushed each time the source has nothing more for now
/// ([`BufStream::drained`]), so what a slow origin sends reaches the client at once, and a
/// fast origin's body goes through in large pieces with one flush at its end. (A read that
/// fills the buffer exactly as the origin pauses leaves that piece in `dst` until the next
/// one arrives, or the end.)
pub fn copy_body_flushing<S: Read, W: Write>(
    src: &mut BufStream<S>,
    framing: BodyFraming,
    dst: &mut W,
    limits: &Limits,
    delivered: &mut u64,
) -> Result<(), BodyError> {
    let out = BodyWriter::new(dst, Encoding::Raw, delivered, None, true);
    copy_framed(src, framing, out, limits, None)
}

fn copy_framed<S: Read, W: Write>(
    src: &mut BufStream<S>,
    framing: BodyFraming,
    mut out: BodyWriter<'_, W>,
    limits: &Limits,
    max_body: Option<u64>,
) -> Result<(), BodyError> {
    crate::exercise::stub!("copy_framed");
    match framing {
        BodyFraming::Empty => {}
        BodyFraming::Length(n) => {
            if max_body.is_some_and(|max| n > max) {
                return Err(BodyError::TooLarge);
            }
            copy_exact(src, n, &mut out, true)?;
        }
        BodyFraming::UntilClose => copy_until_close(src, &mut out)?,
        BodyFraming::Chunked => copy_chunks(src, &mut out, limits)?,
    }
    out.finish()
}

/// The last chunk and an empty trailer section: the end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Writes `bytes` as one chunk of a chunked body, in a single write (with `TCP_NODELAY`, the
/// size line, the data and the CRLF written apart would be three packets). `scratch` is reused
/// between calls so a body costs one allocation, not one per chunk. Nothing is written for an
/// empty `bytes`: an empty chunk would end the body.
pub fn write_chunk<W: Write + ?Sized>(
    dst: &mut W,
    bytes: &[u8],
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    scratch.clear();
    write!(scratch, "{:x}\r\n", bytes.len())?;
    scratch.extend_from_slice(bytes);
    scratch.extend_from_slice(b"\r\n");
    dst.write_all(scratch)
}

/// Writes decoded body bytes in the receiver's encoding and enforces the size limit.
struct BodyWriter<'a, W> {
    dst: &'a mut W,
    encoding: Encoding,
    /// Body bytes taken from the sender, for the size limit.
    seen: u64,
    /// Body bytes the receiver was given (written without error).
    delivered: &'a mut u64,
    max_body: Option<u64>,
    scratch: Vec<u8>,
    /// Flush `dst` after a piece that emptied the source's buffer from a read that drained
    /// it (see [`copy_body_flushing`]).
    flush_when_drained: bool,
}

impl<'a, W: Write> BodyWriter<'a, W> {
    fn new(
        dst: &'a mut W,
        encoding: Encoding,
        delivered: &'a mut u64,
        max_body: Option<u64>,
        flush_when_drained: bool,
    ) -> BodyWriter<'a, W> {
        BodyWriter {
            dst,
            encoding,
            seen: 0,
            delivered,
            max_body,
            scratch: Vec::new(),
            flush_when_drained,
        }
    }

    fn flush_if_drained<S>(&mut self, src: &BufStream<S>) -> Result<(), BodyError> {
        if self.flush_when_drained && src.buffered().is_empty() && src.drained() {
            self.dst.flush().map_err(BodyError::Sink)?;
        }
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), BodyError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.seen += bytes.len() as u64;
        if self.max_body.is_some_and(|max| self.seen > max) {
            return Err(BodyError::TooLarge);
        }
        match self.encoding {
            Encoding::Raw => self.dst.write_all(bytes),
            Encoding::Chunked => write_chunk(self.dst, bytes, &mut self.scratch),
        }
        .map_err(BodyError::Sink)?;
        *self.delivered += bytes.len() as u64;
        Ok(())
    }

    /// Ends the body: for chunked output, the last chunk and the empty trailer section.
    fn finish(self) -> Result<(), BodyError> {
        if self.encoding == Encoding::Chunked {
            self.dst.write_all(LAST_CHUNK).map_err(BodyError::Sink)?;
        }
        if self.flush_when_drained {
            return Ok(()); // a holding destination is finished by its owner, in one write
        }
        self.dst.flush().map_err(BodyError::Sink)
    }
}

/// Makes sure at least one byte is buffered; end of stream here means the body was cut short.
fn fill<S: Read>(src: &mut BufStream<S>) -> Result<(), BodyError> {
    if src.buffered().is_empty() {
        match src.fill_more(0) {
            Ok(0) => return Err(BodyError::Source(HttpError::Truncated)),
            Ok(_) => {}
            Err(err) => return Err(BodyError::Source(HttpError::from_read(err))),
        }
    }
    Ok(())
}

/// Copies `left` bytes; `ends_body` when they are the last of the body.
fn copy_exact<S: Read, W: Write>(
    src: &mut BufStream<S>,
    mut left: u64,
    out: &mut BodyWriter<'_, W>,
    ends_body: bool,
) -> Result<(), BodyError> {
    while left > 0 {
        fill(src)?;
        let n = src
            .buffered()
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        out.data(&src.buffered()[..n])?;
        src.consume(n);
        left -= n as u64;
        if left > 0 || !ends_body {
            out.flush_if_drained(src)?; // the end of the body is flushed by its finish
        }
    }
    Ok(())
}

fn copy_until_close<S: Read, W: Write>(
    src: &mut BufStream<S>,
    out: &mut BodyWriter<'_, W>,
) -> Result<(), BodyError> {
    loop {
        match fill(src) {
            Err(BodyError::Source(HttpError::Truncated)) => return Ok(()),
            other => other?,
        }
        let n = src.buffered().len();
        out.data(&src.buffered()[..n])?;
        src.consume(n);
        out.flush_if_drained(src)?;
    }
}

/// Decodes a chunked body, passing the data on. Trailers are read and checked, then dropped:
/// forwarding them would mean vetting every field a peer might smuggle in one (framing,
/// `Host`, forwarding headers), and nothing this proxy serves needs them.
fn copy_chunks<S: Read, W: Write>(
    src: &mut BufStream<S>,
    out: &mut BodyWriter<'_, W>,
    limits: &Limits,
) -> Result<(), BodyError> {
    loop {
        let line_len = buffer_line(src, limits.max_chunk_line)?;
        let size = parse_chunk_size(&src.buffered()[..line_len]).map_err(BodyError::Source)?;
        src.consume(line_len);
        if size == 0 {
            return read_trailers(src, limits);
        }
        copy_exact(src, size, out, false)?;
        let crlf = buffer_line(src, 2)?;
        if &src.buffered()[..crlf] != b"\r\n" {
            return Err(BodyError::Source(HttpError::BadSyntax(
                "chunk data not followed by CRLF",
            )));
        }
        src.consume(crlf);
        out.flush_if_drained(src)?;
    }
}

/// Reads a chunked body's first chunk-size line and checks it, leaving it buffered for the
/// copy that follows. The relay calls it before it sends a request upstream, so a body whose
/// framing is invalid from its first line (`5;`, an extension name that is not a token)
/// reaches no backend at all: it is refused like a bad head, not after the head went on.
pub fn check_first_chunk_line<S: Read>(
    src: &mut BufStream<S>,
    limits: &Limits,
) -> Result<(), HttpError> {
    let len = buffer_line(src, limits.max_chunk_line).map_err(|err| match err {
        BodyError::Source(err) => err,
        BodyError::Sink(err) => HttpError::Io(err),
        BodyError::TooLarge => HttpError::BodyTooLarge,
    })?;
    parse_chunk_size(&src.buffered()[..len]).map(|_| ())
}

/// Buffers one line and returns its length including the line feed.
pub(super) fn buffer_line<S: Read>(src: &mut BufStream<S>, max: usize) -> Result<usize, BodyError> {
    let mut scanned = 0;
    loop {
        let buf = src.buffered();
        if let Some(pos) = buf[scanned..].iter().position(|&b| b == b'\n') {
            return Ok(scanned + pos + 1);
        }
        if buf.len() > max {
            return Err(BodyError::Source(HttpError::BadSyntax(
                "chunk line too long",
            )));
        }
        scanned = buf.len();
        match src.fill_more(max + 2) {
            Ok(0) => return Err(BodyError::Source(HttpError::Truncated)),
            Ok(_) => {}
            Err(err) => return Err(BodyError::Source(HttpError::from_read(err))),
        }
    }
}

/// Parses `chunk-size [ chunk-ext ] CRLF`. Only CRLF ends the line: a bare LF accepted here
/// but not by the next hop would be a smuggling vector.
pub fn parse_chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    const BAD: HttpError = HttpError::BadSyntax("invalid chunk size line");
    let line = line.strip_suffix(b"\r\n").ok_or(BAD)?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(BAD);
    }
    let size = line[..digits].iter().fold(0u64, |acc, &d| {
        let v = (d as char).to_digit(16).unwrap_or(0);
        (acc << 4) | u64::from(v)
    });
    if !valid_chunk_ext(&line[digits..]) {
        return Err(BAD);
    }
    Ok(size)
}

/// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`, with a token
/// for a name and a token or quoted-string for a value (RFC 9112 section 7.1.1). Read to the
/// letter: a bare `;`, a name that is not a token or an unclosed quote is a framing error like
/// any other, since a next hop that reads the line differently (where the size ends, what is
/// data) is how a chunked body smuggles a request.
fn valid_chunk_ext(mut ext: &[u8]) -> bool {
    // Bounded by the line: every turn consumes at least the `;` and one name byte.
    while !ext.is_empty() {
        let Some(after_semi) = skip_bws(ext).strip_prefix(b";") else {
            return false;
        };
        let after_name = skip_bws(after_semi);
        let name = token_len(after_name);
        if name == 0 {
            return false;
        }
        ext = &after_name[name..];
        if let Some(after_eq) = skip_bws(ext).strip_prefix(b"=") {
            let value = skip_bws(after_eq);
            let len = match value.first() {
                Some(b'"') => quoted_string_len(value),
                _ => token_len(value),
            };
            if len == 0 {
                return false;
            }
            ext = &value[len..];
        }
    }
    true
}

fn skip_bws(bytes: &[u8]) -> &[u8] {
    let blanks = bytes
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    &bytes[blanks..]
}

/// `tchar` of RFC 9110 section 5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn token_len(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|&&b| is_tchar(b)).count()
}

/// The length of the quoted-string `bytes` starts with (RFC 9110 section 5.6.4), or 0 when it
/// is not closed or holds a byte the grammar refuses.
fn quoted_string_len(bytes: &[u8]) -> usize {
    let qdtext = |b: u8| b == b'\t' || b == b' ' || (b >= 0x21 && b != b'"' && b != 0x7f);
    let mut i = 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => return i + 1,
            b'\\' => match bytes.get(i + 1) {
                Some(&next) if next == b'\t' || (next >= 0x20 && next != 0x7f) => i += 2,
                _ => return 0,
            },
            b if qdtext(b) => i += 1,
            _ => return 0,
        }
    }
    0
}

pub(super) fn read_trailers<S: Read>(
    src: &mut BufStream<S>,
    limits: &Limits,
) -> Result<(), BodyError> {
    let mut section = Vec::new();
    loop {
        let len = buffer_line(src, limits.max_chunk_line)?;
        let line = &src.buffered()[..len];
        // CRLF only: a bare LF that ended the section for the next hop but not for us would
        // let bytes after it through as "trailers" (a smuggled request).
        if !line.ends_with(b"\r\n") {
            return Err(BodyError::Source(HttpError::BadSyntax(
                "trailer line not ended by CRLF",
            )));
        }
        let last = len == 2;
        section.extend_from_slice(line);
        src.consume(len);
        if section.len() > limits.max_head {
            return Err(BodyError::Source(HttpError::HeadTooLarge));
        }
        if last {
            break;
        }
    }
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    match httparse::parse_headers(&section, &mut slots) {
        Ok(httparse::Status::Complete((n, _))) if n == section.len() => Ok(()),
        Ok(_) => Err(BodyError::Source(HttpError::BadSyntax(
            "malformed trailers",
        ))),
        Err(err) => Err(BodyError::Source(err.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::stream::tests::Trickle;

    /// Counts the flushes a holding destination is asked for.
    #[derive(Default)]
    struct Flushes {
        data: Vec<u8>,
        flushes: usize,
    }
    impl Write for Flushes {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.data.extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }

    #[test]
    fn a_holding_destination_is_flushed_when_the_origin_pauses_and_not_at_the_end() {
        let body = vec![b'x'; 40_000];
        let chunked: Vec<u8> = [&b"9c40\r\n"[..], &body, b"\r\n0\r\n\r\n"].concat();
        // (framing, input, bytes per read, flushes expected)
        let cases: [(BodyFraming, &[u8], usize, usize); 5] = [
            // Reads that fill the buffer mean more is there: no flush until the end, which
            // the destination's owner finishes itself.
            (BodyFraming::Length(40_000), &body, 1 << 20, 0),
            // Every read short of room: the origin paused after each, so each is flushed
            // but the last (40 pieces of 1,000 bytes).
            (BodyFraming::Length(40_000), &body, 1_000, 39),
            (BodyFraming::UntilClose, &body, 1 << 20, 1),
            // Chunked: the last chunk came with the data, so nothing waits: no flush; read
            // by read, each of the 40 reads that end inside the data is flushed.
            (BodyFraming::Chunked, &chunked, 1 << 20, 0),
            (BodyFraming::Chunked, &chunked, 1_000, 40),
        ];
        for (framing, input, step, expected) in cases {
            let mut src = BufStream::new(Trickle::new(input, step));
            let mut dst = Flushes::default();
            let mut delivered = 0;
            copy_body_flushing(
                &mut src,
                framing,
                &mut dst,
                &Limits::default(),
                &mut delivered,
            )
            .unwrap();
            assert_eq!(dst.data, body, "{framing:?} step {step}");
            assert_eq!(dst.flushes, expected, "{framing:?} step {step}");
        }
    }

    fn copy(
        input: &[u8],
        framing: BodyFraming,
        enc: Encoding,
        step: usize,
    ) -> (Result<u64, BodyError>, Vec<u8>, Vec<u8>) {
        let mut src = BufStream::new(Trickle::new(input, step));
        let mut out = Vec::new();
        let res = copy_body(
            &mut src,
            framing,
            &mut out,
            enc,
            &Limits::default(),
            Some(1000),
        );
        let mut rest = Vec::new();
        src.read_to_end(&mut rest).unwrap();
        (res, out, rest)
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let table: &[(&[u8], &[u8])] = &[
            (b"5\r\nhello\r\n0\r\n\r\nNEXT", b"hello"),
            (
                b"5;name=val\r\nhello\r\n6 ; x\r\n world\r\n0\r\n\r\n",
                b"hello world",
            ),
            (
                b"A\r\n0123456789\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n",
                b"0123456789",
            ),
            (b"000\r\n\r\n", b""),
        ];
        for &(input, body) in table {
            for step in [1, 3, input.len()] {
                let (res, out, _) = copy(input, BodyFraming::Chunked, Encoding::Raw, step);
                assert_eq!(res.unwrap(), body.len() as u64);
                assert_eq!(out, body);
                let (_, out, _) = copy(input, BodyFraming::Chunked, Encoding::Chunked, step);
                // Trailers are checked, then dropped: the output ends with an empty section.
                assert!(out.ends_with(b"0\r\n\r\n"), "{out:?}");
                assert!(!out.windows(5).any(|w| w == b"X-Sum"), "{out:?}");
            }
        }
        let (_, _, rest) = copy(table[0].0, BodyFraming::Chunked, Encoding::Raw, 1);
        assert_eq!(
            rest, b"NEXT",
            "bytes after the body are kept for the next message"
        );
    }

    #[test]
    fn invalid_chunked_framing_is_a_source_error() {
        let table: &[&[u8]] = &[
            b"zz\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"0\r\nBad Trailer\r\n\r\n",
            // A bare LF ending the trailers, then a request for the next hop to find.
            b"0\r\n\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
            b"0\r\nX: a\n\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
            b"5\x0c;x\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhel",
        ];
        for input in table {
            let (res, _, _) = copy(input, BodyFraming::Chunked, Encoding::Raw, 1);
            assert!(
                matches!(res, Err(BodyError::Source(_))),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// RFC 9112 section 7.1.1's chunk-ext, read to the letter.
    #[test]
    fn chunk_size_lines_and_their_extensions() {
        let good: &[(&[u8], u64)] = &[
            (b"5\r\n", 5),
            (b"a\r\n", 10),
            (b"5;name\r\n", 5),
            (b"5;name=val\r\n", 5),
            (b"5 ; name = val\r\n", 5),
            (b"5;a=1;b;c=\"q s\\\"x\"\r\n", 5),
            (b"5;a=\"\"\r\n", 5),
            (b"5\t;\tx\r\n", 5),
            (b"0;ieof\r\n", 0),
        ];
        for &(line, size) in good {
            let got = parse_chunk_size(line);
            assert_eq!(got.ok(), Some(size), "{:?}", String::from_utf8_lossy(line));
        }
        let bad: &[&[u8]] = &[
            b"5;\r\n",
            b"5; \r\n",
            b"5;;x\r\n",
            b"5;x;\r\n",
            b"5;(x)\r\n",
            b"5;a b\r\n",
            b"5;na\"me\r\n",
            b"5;x=\r\n",
            b"5;x=a b\r\n",
            b"5;x=\"open\r\n",
            b"5;x=\"a\"b\r\n",
            b"5;x=\"a\x01\"\r\n",
            b"5;x=y=z\r\n",
            b"5 \r\n",
            b"5 x\r\n",
            b"5;x\x7f\r\n",
            b"5;\xc3\xa9\r\n",
            b"5;x\n",
        ];
        for line in bad {
            let err = parse_chunk_size(line).expect_err(&String::from_utf8_lossy(line));
            assert_eq!(err.client_status(), Some(400));
        }
    }

    #[test]
    fn lengths_and_limits() {
        let (res, out, rest) = copy(b"abcdefgh", BodyFraming::Length(5), Encoding::Raw, 2);
        assert_eq!(
            (res.unwrap(), out.as_slice(), rest.as_slice()),
            (5, &b"abcde"[..], &b"fgh"[..])
        );
        let (res, _, _) = copy(b"abc", BodyFraming::Length(5), Encoding::Raw, 2);
        assert!(matches!(res, Err(BodyError::Source(HttpError::Truncated))));
        let (res, _, _) = copy(b"x", BodyFraming::Length(5000), Encoding::Raw, 2);
        assert!(matches!(res, Err(BodyError::TooLarge)));
        let big = format!("7d0\r\n{}\r\n0\r\n\r\n", "x".repeat(2000));
        let (res, out, _) = copy(big.as_bytes(), BodyFraming::Chunked, Encoding::Raw, 100);
        assert!(matches!(res, Err(BodyError::TooLarge)));
        assert!(out.len() <= 1000, "nothing past the limit is forwarded");
    }

    #[test]
    fn until_close_is_rechunked_for_http11_receivers() {
        let (res, out, _) = copy(
            b"hello world",
            BodyFraming::UntilClose,
            Encoding::Chunked,
            100,
        );
        assert_eq!(res.unwrap(), 11);
        assert_eq!(out, b"b\r\nhello world\r\n0\r\n\r\n");
    }
}
