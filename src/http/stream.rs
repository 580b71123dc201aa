//! A buffered two-way stream that never loses the bytes it has read ahead.
//!
//! Reading a head means reading *past* it: the same `read()` that completes the head may carry
//! the start of the body or the whole next pipelined request. `BufStream` keeps those bytes and
//! hands them out first, which is what the C course's single `read()` into a 4 KiB array could
//! not do.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use crate::sys;

/// A byte stream whose read timeout can be changed: a TCP socket, a TLS stream over one, or a
/// test double. Everything in `http` and `relay` is generic over it.
pub trait Socket: Read + Write {
    /// Sets how long one `read` may block; `None` blocks forever.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;

    /// Tells the peer we will send nothing more, while still reading what it sends. A TLS
    /// stream sends its `close_notify` alert first. Streams without a separate write side do
    /// nothing.
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Makes closing this connection reset it, dropping what it has not sent yet: for a
    /// client cut off for reading too slowly, whose unsent bytes would otherwise keep the
    /// kernel busy (and its memory held) for as long as it takes to drain them. Streams
    /// without a socket (test doubles) do nothing.
    fn reset_on_close(&self) -> io::Result<()> {
        Ok(())
    }

    /// Ends the stream cleanly before it is dropped. Plain TCP needs nothing (closing the
    /// descriptor sends the FIN); a TLS stream sends `close_notify`, without which the peer
    /// cannot tell a complete close-delimited body from a cut-off one.
    fn finish(&mut self) {}

    /// The scheme requests on this stream arrived with: `http`, or `https` over TLS. Per
    /// connection, because one proxy may listen for both.
    fn scheme(&self) -> &'static str {
        "http"
    }

    /// The TLS version negotiated (`TLSv1.2`, `TLSv1.3`, as nginx's `$ssl_protocol` names
    /// them), `None` for a stream without TLS or before its handshake is done.
    fn tls_version(&self) -> Option<&'static str> {
        None
    }

    /// Another handle on the same connection that a thread of its own can own, for a tunnel
    /// after a `101 Switching Protocols` (`relay::tunnel`): one thread reads while another
    /// writes. A TCP socket gives a duplicated descriptor; a stream whose state cannot be
    /// shared between two handles (TLS keeps one cipher state per direction in one object)
    /// gives `None`, and its tunnel runs on one polling thread instead (`relay::poll_tunnel`).
    fn duplicate(&self) -> Option<BoxedTransport> {
        None
    }

    /// The connection itself, for a tunnel thread that will own it from now on (after a
    /// `101 Switching Protocols`), leaving this handle unusable: reads end, writes fail,
    /// `finish` does nothing. What works where `duplicate` cannot: a TLS stream moves
    /// whole, with its cipher state, instead of being shared. A TCP socket gives a
    /// duplicated descriptor; a boxed transport gives its box (see `Detached`); `None`
    /// when the stream cannot be handed over (test doubles).
    fn take_over(&mut self) -> Option<BoxedTransport> {
        None
    }

    /// The descriptor that `poll(2)` shows this stream's input on, for a relay that watches a
    /// client and its backend at once (a request body still arriving while the origin
    /// answers); `None` for a stream without one (test doubles), which is then read as it
    /// comes.
    fn input_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Whether input was received and waits inside the stream, where `poll` on
    /// [`input_fd`](Self::input_fd) cannot see it (decrypted TLS bytes).
    fn holds_input(&self) -> bool {
        false
    }
}

/// A stream that a thread watching many connections (stage 4's parker) can wait on without
/// blocking: a socket underneath for `poll(2)`, and two answers that `poll` cannot give.
///
/// A TLS stream is why this exists. It can hold decrypted bytes that the socket no longer
/// shows as readable (a pipelined request that arrived in the same record as the last one),
/// and a readable socket may carry only part of a record, so a plain `read` would block a
/// worker until the rest comes: the slow-client hole that parking closed.
pub trait Transport: Socket + AsFd + Send {
    /// Whether bytes were received and are held inside the stream, where `poll` on the
    /// descriptor cannot see them.
    fn has_buffered(&self) -> bool {
        false
    }

    /// Reads what is there without blocking: `Ok(Some(n))` for `n` bytes (0 at the end of
    /// the stream), `Ok(None)` when nothing can be read yet. A TLS stream returns `None` while
    /// it holds only part of a record.
    fn read_now(&mut self, out: &mut [u8]) -> io::Result<Option<usize>>;

    /// Switches reads and writes between blocking and non-blocking, for a thread that must
    /// never wait on one peer (the parker answering a `408`).
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()>;

    /// While a TLS handshake is still in progress, the moment it must be done by; `None` once
    /// it is (or for a stream without one). The parker closes a connection past it, so a
    /// client that connects and never finishes its handshake is dropped early.
    fn handshake_deadline(&self) -> Option<std::time::Instant> {
        None
    }

    /// Writes what the stream takes without blocking, on a stream made non-blocking with
    /// [`set_nonblocking`](Self::set_nonblocking): `Err(WouldBlock)` (or `Ok(0)`) when it
    /// takes nothing now. A TLS stream accepts plaintext while its queue of records is not
    /// full, and sends what it can of them. For the single-thread tunnel (`relay::poll_tunnel`).
    fn write_now(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write(data)
    }

    /// Sends bytes the stream holds inside (TLS records) without blocking; `Ok(true)` once
    /// nothing is left. A plain socket holds nothing.
    fn flush_now(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    /// Whether bytes wait inside the stream to be sent (see [`flush_now`](Self::flush_now)),
    /// so a poller must wait for the socket to be writable.
    fn has_unsent(&self) -> bool {
        false
    }
}

impl Socket for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }

    fn reset_on_close(&self) -> io::Result<()> {
        sys::reset_on_close(self.as_fd())
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }

    fn duplicate(&self) -> Option<BoxedTransport> {
        // The clone shares the socket (and its timeouts); closing one handle leaves the
        // connection open for the other.
        let clone = self.try_clone().ok()?;
        Some(Box::new(clone))
    }

    fn take_over(&mut self) -> Option<BoxedTransport> {
        // This handle stays open until its owner drops it; that does not close the
        // connection, which the duplicate keeps.
        self.duplicate()
    }

    fn input_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}

impl Transport for TcpStream {
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        TcpStream::set_nonblocking(self, nonblocking)
    }

    fn read_now(&mut self, out: &mut [u8]) -> io::Result<Option<usize>> {
        // One `recv` with MSG_DONTWAIT: no `poll` first and no toggling of O_NONBLOCK, so the
        // socket stays in blocking mode for the worker that serves it next. This runs twice
        // per keep-alive request (the head that arrived, then the wait for the next one).
        sys::recv_now(self.as_fd(), out)
    }
}

impl<S: Socket + ?Sized> Socket for &mut S {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }

    fn reset_on_close(&self) -> io::Result<()> {
        (**self).reset_on_close()
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        (**self).shutdown_write()
    }

    fn finish(&mut self) {
        (**self).finish()
    }

    fn scheme(&self) -> &'static str {
        (**self).scheme()
    }

    fn tls_version(&self) -> Option<&'static str> {
        (**self).tls_version()
    }

    fn duplicate(&self) -> Option<BoxedTransport> {
        (**self).duplicate()
    }

    fn take_over(&mut self) -> Option<BoxedTransport> {
        (**self).take_over()
    }

    fn input_fd(&self) -> Option<BorrowedFd<'_>> {
        (**self).input_fd()
    }

    fn holds_input(&self) -> bool {
        (**self).holds_input()
    }
}

/// Only for `BoxedTransport` (the one box the project uses): taking it over swaps the box for
/// a [`Detached`] one, which a generic `Box<S>` could not do.
impl Socket for BoxedTransport {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }

    fn reset_on_close(&self) -> io::Result<()> {
        (**self).reset_on_close()
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        (**self).shutdown_write()
    }

    fn finish(&mut self) {
        (**self).finish()
    }

    fn scheme(&self) -> &'static str {
        (**self).scheme()
    }

    fn tls_version(&self) -> Option<&'static str> {
        (**self).tls_version()
    }

    fn duplicate(&self) -> Option<BoxedTransport> {
        (**self).duplicate()
    }

    fn take_over(&mut self) -> Option<BoxedTransport> {
        let husk = Detached::of(&**self)?;
        Some(std::mem::replace(self, Box::new(husk)))
    }

    fn input_fd(&self) -> Option<BorrowedFd<'_>> {
        Some((**self).as_fd())
    }

    fn holds_input(&self) -> bool {
        (**self).has_buffered()
    }
}

impl Transport for BoxedTransport {
    fn has_buffered(&self) -> bool {
        (**self).has_buffered()
    }

    fn read_now(&mut self, out: &mut [u8]) -> io::Result<Option<usize>> {
        (**self).read_now(out)
    }

    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        (**self).set_nonblocking(nonblocking)
    }

    fn handshake_deadline(&self) -> Option<std::time::Instant> {
        (**self).handshake_deadline()
    }

    fn write_now(&mut self, data: &[u8]) -> io::Result<usize> {
        (**self).write_now(data)
    }

    fn flush_now(&mut self) -> io::Result<bool> {
        (**self).flush_now()
    }

    fn has_unsent(&self) -> bool {
        (**self).has_unsent()
    }
}

/// What is left in a worker's hands once a tunnel took its connection over
/// ([`Socket::take_over`]): reads see the end of the stream, writes fail, `finish` does
/// nothing, so the connection loop that served the upgrade request ends without touching the
/// tunnel's bytes. It keeps a duplicate of the socket's descriptor only because a
/// `Transport` must have one to poll; closing it does not close the connection.
#[derive(Debug)]
pub struct Detached {
    fd: std::os::fd::OwnedFd,
    scheme: &'static str,
}

impl Detached {
    /// The husk of `live`; `None` when no descriptor is left to duplicate.
    fn of(live: &dyn Transport) -> Option<Detached> {
        Some(Detached {
            fd: live.as_fd().try_clone_to_owned().ok()?,
            scheme: live.scheme(),
        })
    }
}

impl Read for Detached {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Ok(0)
    }
}

impl Write for Detached {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the connection belongs to a tunnel",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for Detached {
    fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }

    fn scheme(&self) -> &'static str {
        self.scheme
    }
}

impl Transport for Detached {
    fn read_now(&mut self, _: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(Some(0))
    }

    fn set_nonblocking(&self, _: bool) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Detached {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A connection whose transport is chosen at run time (plain TCP, TLS, a test double): what
/// the pool, the parker and the upstream connection cache hold.
pub type BoxedTransport = Box<dyn Transport>;

/// Read size when the buffer has room; large enough that a body streams in few syscalls.
const READ_CHUNK: usize = 16 * 1024;

/// Read buffers kept per thread after their connection went idle, at most this many.
const SPARE_PER_THREAD: usize = 4;

thread_local! {
    /// Read buffers given back by connections that went idle ([`BufStream::release_if_empty`]),
    /// for the next stream on this thread that needs one: a keep-alive request then reuses
    /// memory already touched instead of allocating and zeroing 16 KiB again (about a third
    /// of a cache hit's instructions, by callgrind). Bounded, so an idle connection still
    /// costs no buffer however many there are.
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A read buffer of `READ_CHUNK` bytes: a spare one if this thread has it, else a new one.
fn chunk() -> Vec<u8> {
    SPARE
        .with(|spare| spare.borrow_mut().pop())
        .unwrap_or_else(|| vec![0; READ_CHUNK])
}

/// Keeps `buf` for [`chunk`] if it is one (a grown buffer is freed) and there is room.
fn give_back(buf: Vec<u8>) {
    if buf.len() == READ_CHUNK {
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_PER_THREAD {
                spare.push(buf);
            }
        });
    }
}

/// A stream with a read-ahead buffer. Writes go straight to the inner stream.
#[derive(Debug)]
pub struct BufStream<S> {
    inner: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The read timeout last set through [`set_read_timeout`](Self::set_read_timeout), or
    /// `None` when unknown: setting the same value again is skipped, which saves a
    /// `setsockopt` per response head on a kept upstream connection. (So nothing sets the
    /// inner stream's read timeout behind this buffer's back: no caller does.)
    read_timeout: Cell<Option<Option<Duration>>>,
    /// Whether the last read took less than it had room for: the peer had sent nothing more
    /// at that moment, so the next read will likely wait.
    drained: bool,
}

impl<S> BufStream<S> {
    pub fn new(inner: S) -> BufStream<S> {
        BufStream {
            inner,
            buf: chunk(),
            start: 0,
            end: 0,
            read_timeout: Cell::new(None),
            drained: false,
        }
    }

    /// Whether the last read found less than it had room for (the peer had paused, or the
    /// stream ended). A writer that holds output back (a compressor) flushes then, so a slow
    /// origin's bytes still go out as they come, while a fast one's go out in large pieces.
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// Bytes read from the peer but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` buffered bytes as used.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The stream itself. Its read timeout must still be set through
    /// [`set_read_timeout`](Self::set_read_timeout) here, which remembers it.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Gives the read buffer back to the allocator when it holds nothing: a connection that
    /// idles between requests then costs a few hundred bytes instead of 16 KiB (nginx frees
    /// its buffers in keep-alive the same way). The next read allocates it again.
    pub fn release_if_empty(&mut self) {
        if self.start == self.end {
            give_back(std::mem::take(&mut self.buf));
            self.start = 0;
            self.end = 0;
        }
    }

    /// Makes room at the end of the buffer for one more read.
    fn make_room(&mut self, max_buffered: usize) -> io::Result<()> {
        if self.start > 0 && self.end == self.buf.len() {
            // Slide the unconsumed bytes to the front instead of growing.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.is_empty() {
            self.buf = chunk();
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= max_buffered {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "read buffer full",
                ));
            }
            let grown = (self.buf.len() * 2)
                .max(READ_CHUNK)
                .min(max_buffered.max(READ_CHUNK));
            self.buf.resize(grown, 0);
        }
        Ok(())
    }

    /// Gives the stream back, with any bytes still buffered.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        let rest = self.buf[self.start..self.end].to_vec();
        (self.inner, rest)
    }
}

impl<S: Read> BufStream<S> {
    /// Reads once more from the peer, appending to the buffered bytes, and returns how many
    /// arrived (0 at end of stream). The buffer grows up to `max_buffered` bytes so that a head
    /// that is bigger than one read can be collected; past that it refuses with `OutOfMemory`
    /// (never reached by callers that check their own limit first).
    pub fn fill_more(&mut self, max_buffered: usize) -> io::Result<usize> {
        self.make_room(max_buffered)?;
        loop {
            let room = self.buf.len() - self.end;
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    self.drained = n < room;
                    return Ok(n);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
    }
}

impl<S: Read> Read for BufStream<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start < self.end {
            let n = out.len().min(self.end - self.start);
            out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
            self.consume(n);
            return Ok(n);
        }
        self.inner.read(out)
    }
}

impl<S: Write> Write for BufStream<S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.inner.write(data)
    }

    /// Passed through, so that a head and a body in two buffers leave in one `writev`.
    fn write_vectored(&mut self, parts: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.inner.write_vectored(parts)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<S: Socket> BufStream<S> {
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        if self.read_timeout.get() == Some(timeout) {
            return Ok(());
        }
        // Forgotten first: if the call fails, the socket's timeout is not known any more.
        self.read_timeout.set(None);
        self.inner.set_read_timeout(timeout)?;
        self.read_timeout.set(Some(timeout));
        Ok(())
    }

    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.inner.shutdown_write()
    }

    /// Ends the stream cleanly (see [`Socket::finish`]).
    pub fn finish(&mut self) {
        self.inner.finish()
    }
}

impl BufStream<BoxedTransport> {
    /// Whether bytes wait to be served anywhere: in this buffer, or inside the transport.
    pub fn has_pending(&self) -> bool {
        !self.buffered().is_empty() || self.inner.has_buffered()
    }

    /// Appends what can be read without blocking, like [`fill_more`](Self::fill_more):
    /// `Ok(None)` when nothing is there yet.
    pub fn fill_now(&mut self, max_buffered: usize) -> io::Result<Option<usize>> {
        self.make_room(max_buffered)?;
        let inner = &mut self.inner;
        let got = inner.read_now(&mut self.buf[self.end..])?;
        if let Some(n) = got {
            self.end += n;
        }
        Ok(got)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A test double that hands out its input one byte per `read`, the worst case a parser
    /// must survive, and records everything written to it.
    pub struct Trickle {
        input: Vec<u8>,
        pos: usize,
        pub step: usize,
        pub written: Vec<u8>,
    }

    impl Trickle {
        pub fn new(input: &[u8], step: usize) -> Trickle {
            Trickle {
                input: input.to_vec(),
                pos: 0,
                step,
                written: Vec::new(),
            }
        }
    }

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.input.len() - self.pos);
            out[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Write for Trickle {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Socket for Trickle {
        fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn buffered_bytes_are_read_before_the_socket() {
        let mut stream = BufStream::new(Trickle::new(b"abcdef", 4));
        stream.fill_more(64).unwrap();
        assert_eq!(stream.buffered(), b"abcd");
        stream.consume(1);
        let mut out = [0u8; 8];
        let n = stream.read(&mut out).unwrap();
        assert_eq!(&out[..n], b"bcd");
        let n = stream.read(&mut out).unwrap();
        assert_eq!(&out[..n], b"ef");
    }

    #[test]
    fn a_released_buffer_is_allocated_again_on_the_next_read() {
        let mut stream = BufStream::new(Trickle::new(b"abcdef", 3));
        stream.fill_more(64).unwrap();
        stream.release_if_empty();
        assert_eq!(stream.buffered(), b"abc", "a buffer holding bytes is kept");
        stream.consume(3);
        stream.release_if_empty();
        assert_eq!(stream.buf.capacity(), 0);
        stream.fill_more(64).unwrap();
        assert_eq!(stream.buffered(), b"def");
    }

    #[test]
    fn buffer_grows_up_to_the_limit_only() {
        let big = vec![b'x'; READ_CHUNK * 3];
        let mut stream = BufStream::new(Trickle::new(&big, READ_CHUNK));
        for _ in 0..2 {
            stream.fill_more(READ_CHUNK * 2).unwrap();
        }
        assert_eq!(stream.buffered().len(), READ_CHUNK * 2);
        let err = stream.fill_more(READ_CHUNK * 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
    }
}
