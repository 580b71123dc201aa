//! Helpers shared by the fuzz targets: a stream that hands out its input in small pieces (the
//! way a slow peer would), and the proxy's own mapping from a parsed framing to what it writes.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use revproxy::http::headers::{ForwardInfo, OutFraming};
use revproxy::http::stream::Socket;
use revproxy::http::BodyFraming;

/// Reads hand out at most `step` bytes each, then end of stream: a parser that only works when
/// a message arrives in one read fails here. Writes are kept in `written`.
pub struct Pieces<'a> {
    input: &'a [u8],
    step: usize,
    pub written: Vec<u8>,
}

impl<'a> Pieces<'a> {
    /// `step` 0 means "everything in one read".
    pub fn new(input: &'a [u8], step: usize) -> Pieces<'a> {
        Pieces {
            input,
            step: if step == 0 { usize::MAX } else { step },
            written: Vec::new(),
        }
    }

    /// The bytes nobody has read yet.
    pub fn unread(&self) -> &'a [u8] {
        self.input
    }
}

impl Read for Pieces<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(out.len()).min(self.input.len());
        out[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Pieces<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for Pieces<'_> {
    fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

/// Piece size from one fuzz byte: mostly tiny pieces (where split-state bugs live), sometimes
/// the whole input at once.
pub fn step_from(byte: u8) -> usize {
    match byte {
        0..=127 => 1 + usize::from(byte % 8),
        128..=191 => 1 + usize::from(byte % 64),
        _ => 0,
    }
}

/// What the proxy knows about the client hop, as the relay fills it in.
pub fn forward_info() -> ForwardInfo<'static> {
    ForwardInfo {
        client_ip: "192.0.2.7".parse().expect("literal address"),
        proto: "http",
        via_name: "revproxy",
        fallback_host: SocketAddr::from(([127, 0, 0, 1], 8000)),
    }
}

/// The framing written upstream for a request body, as `relay::send_request` chooses it: the
/// body goes on exactly as the client framed it.
pub fn upstream_out_framing(framing: BodyFraming) -> OutFraming {
    match framing {
        BodyFraming::Length(n) => OutFraming::Length(n),
        BodyFraming::Chunked => OutFraming::Chunked,
        BodyFraming::Empty | BodyFraming::UntilClose => OutFraming::NoBody,
    }
}

/// Header names that must never reach the next hop from a client's head: the proxy writes its
/// own framing, and these describe one connection only.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];
