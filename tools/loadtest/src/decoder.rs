//! One response decoded incrementally, from whatever bytes a nonblocking read returned: the
//! event-loop engine cannot block inside [`super::response::read_response`], so the same
//! framing (RFC 9112 section 6.3) is kept here as a state machine over a buffer.
//!
//! The head and the chunk-size lines are parsed by [`super::response`]'s own functions, and
//! every error and end-of-stream case maps to the same [`ClientError`] as the blocking
//! reader's, so both engines count failures identically (the tests check this over every
//! split of each response).

use super::error::ClientError;
use super::response::{
    parse_chunk_size, parse_head, Framing, ResponseMeta, MAX_HEAD, MAX_INTERIM, MAX_TRAILERS,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    /// Body bytes still to skip.
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailers,
    UntilClose,
}

/// Decodes one response at a time; [`Decoder::start`] readies it for the next.
#[derive(Debug)]
pub struct Decoder {
    head_request: bool,
    state: State,
    interim: usize,
    trailers: usize,
    status: u16,
    close: bool,
    has_backend: bool,
    body_bytes: u64,
}

const TOO_LONG: ClientError = ClientError::Bad("response head or chunk line too long");

impl Decoder {
    pub fn new(head_request: bool) -> Self {
        Decoder {
            head_request,
            state: State::Head,
            interim: 0,
            trailers: 0,
            status: 0,
            close: false,
            has_backend: false,
            body_bytes: 0,
        }
    }

    /// Forgets the previous response.
    pub fn start(&mut self) {
        *self = Decoder::new(self.head_request);
    }

    /// Consumes what it can of `bytes`: returns how many bytes it used, and the response
    /// once it is complete. Bytes after a complete response are not consumed.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        backend: &mut Vec<u8>,
    ) -> Result<(usize, Option<ResponseMeta>), ClientError> {
        let mut used = 0;
        // Bounded: every pass consumes bytes, changes state towards the end, or returns.
        loop {
            let rest = &bytes[used..];
            match self.state {
                State::Head => {
                    let Some((n, head)) = parse_head(rest, backend)? else {
                        return match rest.len() >= MAX_HEAD {
                            true => Err(TOO_LONG),
                            false => Ok((used, None)),
                        };
                    };
                    used += n;
                    if (100..200).contains(&head.status) {
                        if head.status == 101 {
                            return Err(ClientError::Bad("unexpected 101 Switching Protocols"));
                        }
                        self.interim += 1;
                        if self.interim > MAX_INTERIM {
                            return Err(ClientError::Bad("too many 1xx responses"));
                        }
                        continue;
                    }
                    self.status = head.status;
                    self.close = head.close;
                    self.has_backend = head.has_backend;
                    let no_body = self.head_request || head.status == 204 || head.status == 304;
                    self.state = match (no_body, head.framing) {
                        (true, _) | (false, Framing::None) => return Ok((used, Some(self.done()))),
                        (false, Framing::Length(n)) => State::Length(n),
                        (false, Framing::Chunked) => State::ChunkSize,
                        (false, Framing::UntilClose) => {
                            self.close = true;
                            State::UntilClose
                        }
                    };
                }
                State::Length(remaining) => {
                    let take = (rest.len() as u64).min(remaining);
                    used += take as usize;
                    self.body_bytes += take;
                    if take == remaining {
                        return Ok((used, Some(self.done())));
                    }
                    self.state = State::Length(remaining - take);
                    return Ok((used, None));
                }
                State::ChunkData(remaining) => {
                    let take = (rest.len() as u64).min(remaining);
                    used += take as usize;
                    self.body_bytes = self.body_bytes.saturating_add(take);
                    if take < remaining {
                        self.state = State::ChunkData(remaining - take);
                        return Ok((used, None));
                    }
                    self.state = State::ChunkEnd;
                }
                State::UntilClose => {
                    self.body_bytes += rest.len() as u64;
                    return Ok((bytes.len(), None));
                }
                State::ChunkSize | State::ChunkEnd | State::Trailers => {
                    let Some(i) = rest.iter().position(|&b| b == b'\n') else {
                        return match rest.len() >= MAX_HEAD {
                            true => Err(TOO_LONG),
                            false => Ok((used, None)),
                        };
                    };
                    let line = &rest[..i];
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    used += i + 1;
                    if let Some(meta) = self.line(line)? {
                        return Ok((used, Some(meta)));
                    }
                }
            }
        }
    }

    /// One line of the chunked framing, by state.
    fn line(&mut self, line: &[u8]) -> Result<Option<ResponseMeta>, ClientError> {
        match self.state {
            State::ChunkSize => {
                self.state = match parse_chunk_size(line)? {
                    0 => State::Trailers,
                    size => State::ChunkData(size),
                };
            }
            State::ChunkEnd if line.is_empty() => self.state = State::ChunkSize,
            State::ChunkEnd => return Err(ClientError::Bad("chunk data not followed by CRLF")),
            _ if line.is_empty() => return Ok(Some(self.done())),
            _ => {
                self.trailers += 1;
                if self.trailers >= MAX_TRAILERS {
                    return Err(ClientError::Bad("too many trailer fields"));
                }
            }
        }
        Ok(None)
    }

    /// The server closed the connection; `pending` bytes of it were not consumed.
    pub fn end_of_stream(&self, pending: usize) -> Result<ResponseMeta, ClientError> {
        match self.state {
            State::UntilClose => Ok(self.done()),
            State::Head if pending > 0 => Err(ClientError::Bad(
                "connection closed inside the response head",
            )),
            _ => Err(ClientError::Closed),
        }
    }

    fn done(&self) -> ResponseMeta {
        ResponseMeta {
            status: self.status,
            body_bytes: self.body_bytes,
            close: self.close,
            has_backend: self.has_backend,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::{read_response, Buf};
    use std::io::Cursor;

    /// Decodes `raw` fed in pieces of `step` bytes, then the end of stream.
    fn decode(raw: &[u8], head_request: bool, step: usize) -> Result<ResponseMeta, String> {
        let mut decoder = Decoder::new(head_request);
        let mut backend = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        for piece in raw.chunks(step) {
            pending.extend_from_slice(piece);
            let (used, done) = decoder
                .feed(&pending, &mut backend)
                .map_err(|e| e.to_string())?;
            pending.drain(..used);
            if let Some(meta) = done {
                return Ok(meta);
            }
        }
        decoder
            .end_of_stream(pending.len())
            .map_err(|e| e.to_string())
    }

    /// What the blocking reader says about the same bytes.
    fn blocking(raw: &[u8], head_request: bool) -> Result<ResponseMeta, String> {
        read_response(
            &mut Cursor::new(raw),
            &mut Buf::default(),
            head_request,
            &mut Vec::new(),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn same_verdict_as_the_blocking_reader_for_every_split() {
        // (raw response, HEAD request?)
        let cases: &[(&[u8], bool)] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", false),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n", false),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", false),
            (b"HTTP/1.1 200 OK\r\n\r\nuntil close", false),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false),
            (b"HTTP/1.1 304 Not Modified\r\n\r\n", false),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            // Failures: truncated body, bad chunk size, missing CRLF, truncated head, 101.
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n0\r\n\r\n", false),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n", false),
            (b"HTTP/1.1 200 OK\r\nContent-Len", false),
            (b"", false),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false),
            (b"HTTP/1.1 abc\r\n\r\n", false),
        ];
        for &(raw, head) in cases {
            let expected = blocking(raw, head);
            for step in 1..=raw.len().max(1) {
                assert_eq!(
                    decode(raw, head, step),
                    expected,
                    "{raw:?} in {step}-byte pieces"
                );
            }
        }
    }

    #[test]
    fn too_many_trailers_and_endless_heads_are_bad() {
        let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
        raw.extend(b"T: x\r\n".repeat(MAX_TRAILERS));
        raw.extend(b"\r\n");
        assert_eq!(decode(&raw, false, 7), blocking(&raw, false));
        assert!(decode(&raw, false, 7).is_err());

        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        endless.extend(b"X: ");
        endless.extend(b"y".repeat(MAX_HEAD));
        let err = decode(&endless, false, 4096).expect_err("head too long");
        assert!(err.contains("too long"), "{err}");
    }

    #[test]
    fn leaves_the_bytes_after_a_response_and_starts_over() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend-Server: b7\r\n\r\nokHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        let mut decoder = Decoder::new(false);
        let mut backend = Vec::new();
        let (used, meta) = decoder.feed(raw, &mut backend).expect("first");
        let meta = meta.expect("complete");
        assert_eq!(
            (meta.status, meta.body_bytes, meta.has_backend),
            (200, 2, true)
        );
        assert_eq!(backend, b"b7");
        decoder.start();
        let (rest_used, meta) = decoder.feed(&raw[used..], &mut backend).expect("second");
        assert_eq!(used + rest_used, raw.len());
        assert_eq!(meta.map(|m| (m.status, m.has_backend)), Some((404, false)));
    }
}
