//! One connection of the event-loop engine as a small state machine: connect (nonblocking),
//! write the request, read and decode the response, and again; every step stops where the
//! socket would block and resumes on the next readiness event.
//!
//! The rules are those of the blocking [`super::client::Client`], so both engines count the
//! same things: a request is bounded by `--timeout` as a whole; a response that ends with
//! `Connection: close` (or by the close) makes the next request reconnect, without an error;
//! a request on a reused connection that the server had already closed (nothing received,
//! then a close or a reset) is retried once on a new connection, within the same deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::decoder::Decoder;
use super::epoll::{connect_nonblocking, Epoll};
use super::error::ClientError;
use super::response::ResponseMeta;

/// Enough for a small response in one read; grows only for a long head or chunk line.
const INITIAL_BUF: usize = 16 * 1024;

/// What every connection of one event loop shares.
pub struct LoopContext<'a> {
    pub addr: SocketAddr,
    pub request: &'a [u8],
    pub keepalive: bool,
    pub timeout: Duration,
    pub epoll: &'a Epoll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request in flight.
    Idle,
    /// Connect started; the first write tells whether it is done.
    Connecting,
    /// This many request bytes written.
    Writing(usize),
    Reading,
}

/// The epoll token of connection `index` in its `generation`: events of a socket that was
/// closed meanwhile (same index, older generation) are recognised and ignored.
pub fn token(index: usize, generation: u32) -> u64 {
    ((generation as u64) << 32) | index as u64
}

/// The index and generation in a token.
pub fn split_token(token: u64) -> (usize, u32) {
    ((token & 0xffff_ffff) as usize, (token >> 32) as u32)
}

pub struct LoopConn {
    stream: Option<TcpStream>,
    phase: Phase,
    generation: u32,
    buf: Vec<u8>,
    /// Bytes of `buf` not yet consumed by the decoder.
    filled: usize,
    decoder: Decoder,
    /// `X-Backend-Server` of the last response (when it had one).
    backend: Vec<u8>,
    /// When the current request started: its latency counts from here.
    started: Instant,
    deadline: Instant,
    /// The current attempt runs on a connection an earlier request used.
    reused: bool,
    /// Bytes received for the current attempt; zero means the server sent nothing.
    received: u64,
    connections: u64,
}

impl LoopConn {
    pub fn new(head_request: bool) -> Self {
        let now = Instant::now();
        LoopConn {
            stream: None,
            phase: Phase::Idle,
            generation: 0,
            buf: vec![0; INITIAL_BUF],
            filled: 0,
            decoder: Decoder::new(head_request),
            backend: Vec::new(),
            started: now,
            deadline: now,
            reused: false,
            received: 0,
            connections: 0,
        }
    }

    /// Connections opened so far.
    pub fn connections(&self) -> u64 {
        self.connections
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn in_flight(&self) -> bool {
        self.phase != Phase::Idle
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The backend name of the last response, when it had one.
    pub fn backend(&self, meta: &ResponseMeta) -> Option<&[u8]> {
        meta.has_backend.then_some(self.backend.as_slice())
    }

    /// No more requests: closes the connection.
    pub fn close(&mut self) {
        self.stream = None;
        self.phase = Phase::Idle;
    }

    /// Starts a request at `now`; returns its result when it finished without waiting.
    pub fn begin(
        &mut self,
        ctx: &LoopContext<'_>,
        index: usize,
        now: Instant,
    ) -> Option<Result<ResponseMeta, ClientError>> {
        self.started = now;
        self.deadline = now + ctx.timeout;
        let result = self.run_attempt(ctx, index)?;
        self.finish(result, ctx, index)
    }

    /// Runs the request in flight as far as the socket allows (after a readiness event);
    /// its result once it is finished.
    pub fn drive(
        &mut self,
        ctx: &LoopContext<'_>,
        index: usize,
    ) -> Option<Result<ResponseMeta, ClientError>> {
        let result = self.advance(ctx)?;
        self.finish(result, ctx, index)
    }

    /// Fails the request in flight if its deadline has passed.
    pub fn expire(&mut self, now: Instant) -> Option<ClientError> {
        if !self.in_flight() || now < self.deadline {
            return None;
        }
        let timed_out = io::Error::new(
            io::ErrorKind::TimedOut,
            "request took longer than --timeout",
        );
        let error = match self.phase {
            Phase::Connecting => ClientError::Connect(timed_out),
            _ => ClientError::Io(timed_out),
        };
        self.close();
        Some(error)
    }

    /// The retry rule, then the connection's fate.
    fn finish(
        &mut self,
        result: Result<ResponseMeta, ClientError>,
        ctx: &LoopContext<'_>,
        index: usize,
    ) -> Option<Result<ResponseMeta, ClientError>> {
        let result = match result {
            Err(e) if self.reused && self.received == 0 && e.is_stale_connection() => {
                // The server closed this idle connection before our request reached it.
                // Bounded: the retry runs on a new connection, which is never retried.
                self.stream = None;
                self.run_attempt(ctx, index)?
            }
            other => other,
        };
        self.phase = Phase::Idle;
        let reusable = matches!(&result, Ok(meta) if !meta.close) && ctx.keepalive;
        if !reusable {
            self.stream = None;
        }
        Some(result)
    }

    fn run_attempt(
        &mut self,
        ctx: &LoopContext<'_>,
        index: usize,
    ) -> Option<Result<ResponseMeta, ClientError>> {
        match self.attempt(ctx, index) {
            Ok(()) => self.advance(ctx),
            Err(e) => Some(Err(e)),
        }
    }

    /// Prepares one attempt: on the open connection if there is one, else on a new one.
    fn attempt(&mut self, ctx: &LoopContext<'_>, index: usize) -> Result<(), ClientError> {
        self.decoder.start();
        self.filled = 0;
        self.received = 0;
        self.reused = self.stream.is_some();
        if self.reused {
            self.phase = Phase::Writing(0);
            return Ok(());
        }
        self.phase = Phase::Connecting;
        self.generation = self.generation.wrapping_add(1);
        let stream = connect_nonblocking(ctx.addr).map_err(ClientError::Connect)?;
        // The request goes out in one write; no reason to let Nagle delay anything.
        stream.set_nodelay(true).map_err(ClientError::Connect)?;
        ctx.epoll
            .add(stream.as_raw_fd(), token(index, self.generation))
            .map_err(ClientError::Connect)?;
        self.stream = Some(stream);
        Ok(())
    }

    /// Moves through the phases until the socket would block (`None`) or the attempt ends.
    fn advance(&mut self, ctx: &LoopContext<'_>) -> Option<Result<ResponseMeta, ClientError>> {
        let Some(stream) = self.stream.as_mut() else {
            return match self.phase {
                Phase::Idle => None,
                _ => Some(Err(ClientError::Closed)),
            };
        };
        // Bounded: every pass moves a phase forward, moves bytes, or returns.
        loop {
            match self.phase {
                Phase::Idle => return None,
                Phase::Connecting => {
                    match stream.take_error() {
                        Ok(Some(e)) | Err(e) => return Some(Err(ClientError::Connect(e))),
                        Ok(None) => {}
                    }
                    // Before the handshake is done this write would block; after, it is
                    // the first write of the request.
                    match stream.write(ctx.request) {
                        Ok(n) => {
                            self.connections += 1;
                            self.phase = Phase::Writing(n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Some(Err(ClientError::Connect(e))),
                    }
                }
                Phase::Writing(written) if written >= ctx.request.len() => {
                    self.phase = Phase::Reading;
                }
                Phase::Writing(written) => match stream.write(&ctx.request[written..]) {
                    Ok(n) => self.phase = Phase::Writing(written + n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Some(Err(ClientError::Io(e))),
                },
                Phase::Reading => {
                    // The decoder fails a head or line past its limit, so this stays bounded.
                    if self.filled == self.buf.len() {
                        let len = self.buf.len() * 2;
                        self.buf.resize(len, 0);
                    }
                    match stream.read(&mut self.buf[self.filled..]) {
                        Ok(0) => return Some(self.decoder.end_of_stream(self.filled)),
                        Ok(n) => {
                            self.received += n as u64;
                            self.filled += n;
                            let (used, done) = match self
                                .decoder
                                .feed(&self.buf[..self.filled], &mut self.backend)
                            {
                                Ok(step) => step,
                                Err(e) => return Some(Err(e)),
                            };
                            self.buf.copy_within(used..self.filled, 0);
                            self.filled -= used;
                            if let Some(meta) = done {
                                return Some(Ok(meta));
                            }
                            // Read on until the socket would block, even after a short read:
                            // the close may already be queued behind these bytes, and an
                            // edge-triggered set reports it only once, which was before.
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Some(Err(ClientError::Io(e))),
                    }
                }
            }
        }
    }
}
