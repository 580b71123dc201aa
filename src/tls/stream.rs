//! `TlsStream`: a rustls connection (server or client side) over a `TcpStream`, as a
//! [`Socket`] and a [`Transport`], so that the relay, stage 4's pool and parker, and the
//! upstream connection cache carry TLS exactly as they carry plain TCP.
//!
//! rustls does no I/O itself: it takes the bytes we read from the socket (`read_tls`),
//! decrypts what forms whole records (`process_new_packets`), hands out plaintext
//! (`reader`), and queues what must be sent (`write_tls`). Two ways of driving it live here:
//!
//! - blocking (`Read`, `Write`): a worker serving a request reads and writes as on TCP, the
//!   handshake done on the way, every wait bounded by the socket's timeouts;
//! - without waiting ([`Transport::read_now`]): the pool's gather step and the parker read
//!   only what the socket holds already. A ClientHello that arrives in pieces, or a record cut
//!   in two, yields `Ok(None)` and the connection is parked, so a handshake never holds a
//!   worker; the parker closes it at [`Transport::handshake_deadline`].
//!
//! Decrypted bytes sit inside rustls where `poll` cannot see them, so
//! [`Transport::has_buffered`] reports them (and a received `close_notify`, which a read
//! would report as the end of the stream).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::http::stream::{Socket, Transport};
use crate::sys;

/// Rounds of socket reads one `read_now` makes before it lets the caller look again: enough
/// for a handshake flight or a few records; the parker wakes the connection again if more
/// is waiting.
const MAX_ROUNDS_NOW: usize = 8;

/// A TLS connection over TCP.
#[derive(Debug)]
pub struct TlsStream {
    tcp: TcpStream,
    tls: Connection,
    /// Set while a server-side handshake is in progress: when it must be done.
    deadline: Option<Instant>,
    /// Plaintext or a `close_notify` waits inside rustls (see `refresh`).
    pending: bool,
    /// `close_notify` was queued already, so `finish` after `shutdown_write` sends one only.
    closed: bool,
}

impl TlsStream {
    /// The server side of an accepted connection. Nothing is read yet: the handshake is
    /// driven by the first reads, and must be done within `handshake_timeout`.
    pub fn server(
        tcp: TcpStream,
        config: Arc<ServerConfig>,
        handshake_timeout: Duration,
    ) -> io::Result<TlsStream> {
        let tls = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsStream::over(
            tcp,
            tls.into(),
            Some(Instant::now() + handshake_timeout),
        ))
    }

    /// The client side, to a backend named `name` (sent as SNI and checked against its
    /// certificate). The handshake is completed here, blocking within the socket's
    /// timeouts, so that a certificate that does not verify fails the connect, not a request.
    pub fn connect(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream> {
        let tls = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut stream = TlsStream::over(tcp, tls.into(), None);
        stream.complete_handshake()?;
        Ok(stream)
    }

    fn over(tcp: TcpStream, tls: Connection, deadline: Option<Instant>) -> TlsStream {
        TlsStream {
            tcp,
            tls,
            deadline,
            pending: false,
            closed: false,
        }
    }

    /// The rustls connection: negotiated version, ALPN protocol, SNI name, peer certificates.
    pub fn connection(&self) -> &Connection {
        &self.tls
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Runs the handshake to its end, blocking (each read within the socket's read timeout).
    pub fn complete_handshake(&mut self) -> io::Result<()> {
        // Bounded: every round reads at least one byte or fails, and rustls refuses a
        // handshake that goes on too long.
        while self.tls.is_handshaking() {
            self.flush_tls()?;
            if !self.tls.is_handshaking() {
                break;
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake not finished in time",
                ));
            }
            if self.read_tls()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the TLS handshake",
                ));
            }
            self.process()?;
        }
        self.flush_tls()
    }

    /// Sends everything rustls has queued (handshake messages, records, alerts).
    fn flush_tls(&mut self) -> io::Result<()> {
        // Bounded: each round writes at least one byte, or fails.
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// One read from the socket into rustls; 0 at the end of the stream.
    fn read_tls(&mut self) -> io::Result<usize> {
        loop {
            match self.tls.read_tls(&mut self.tcp) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// Decrypts what arrived. A protocol error (garbage instead of a ClientHello, a
    /// certificate that does not verify) sends rustls's alert and becomes `InvalidData`.
    fn process(&mut self) -> io::Result<()> {
        match self.tls.process_new_packets() {
            Ok(state) => {
                self.pending = state.plaintext_bytes_to_read() > 0 || state.peer_has_closed();
                // A server-side handshake is counted once, when it completes.
                if !self.tls.is_handshaking() && self.deadline.take().is_some() {
                    crate::metrics::tls().handshake_done();
                }
                Ok(())
            }
            Err(err) => {
                let _ = self.flush_tls(); // the alert, if the socket takes it
                let peer = self.tcp.peer_addr().map(|p| p.to_string());
                log::debug!("{}: TLS error: {err}", peer.as_deref().unwrap_or("?"));
                Err(io::Error::new(io::ErrorKind::InvalidData, err))
            }
        }
    }

    /// Plaintext rustls holds, if any: `None` when a read from the socket is needed first.
    fn take_plaintext(&mut self, out: &mut [u8]) -> Option<io::Result<usize>> {
        let got = match self.tls.reader().read(out) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return None,
            got => got,
        };
        // rustls says how much is left only from `process_new_packets`; with no new bytes
        // read it decrypts nothing and just reports.
        self.pending = match self.tls.process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
            Err(_) => true, // the next read reports the error
        };
        Some(got)
    }

    fn send_close_notify(&mut self) -> io::Result<()> {
        if !self.closed {
            self.closed = true;
            self.tls.send_close_notify();
        }
        self.flush_tls()
    }
}

impl Read for TlsStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        // Bounded: every round reads at least one byte from the socket or returns; after the
        // end of the stream rustls's reader answers (0, or UnexpectedEof without close_notify).
        loop {
            if let Some(got) = self.take_plaintext(out) {
                return got;
            }
            // What we owe the peer (our handshake flight) goes out before we wait for it.
            self.flush_tls()?;
            self.read_tls()?;
            self.process()?;
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.tls.is_handshaking() {
            self.complete_handshake()?;
        }
        let n = self.tls.writer().write(data)?;
        self.flush_tls()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()?;
        self.tcp.flush()
    }
}

impl Socket for TlsStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_read_timeout(timeout)
    }

    fn reset_on_close(&self) -> io::Result<()> {
        self.tcp.reset_on_close()?;
        // `finish` would queue a close_notify behind the bytes the client is not reading and
        // wait a whole send timeout for room; with the write side shut, it fails at once.
        self.tcp.shutdown(std::net::Shutdown::Write)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.send_close_notify()?;
        self.tcp.shutdown(std::net::Shutdown::Write)
    }

    fn finish(&mut self) {
        // The peer may be gone already; there is nothing to do about a failure here.
        let _ = self.send_close_notify();
    }

    fn scheme(&self) -> &'static str {
        "https"
    }

    fn input_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(self.tcp.as_fd())
    }

    fn holds_input(&self) -> bool {
        self.pending
    }

    fn tls_version(&self) -> Option<&'static str> {
        if self.tls.is_handshaking() {
            return None;
        }
        match self.tls.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
            rustls::ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
            _ => Some("TLS"),
        }
    }
}

impl Transport for TlsStream {
    fn has_buffered(&self) -> bool {
        self.pending
    }

    fn read_now(&mut self, out: &mut [u8]) -> io::Result<Option<usize>> {
        if out.is_empty() {
            return Ok(Some(0));
        }
        for _ in 0..MAX_ROUNDS_NOW {
            if let Some(got) = self.take_plaintext(out) {
                return got.map(Some);
            }
            // Our handshake flight is a few KiB into an empty send buffer: it does not wait.
            // On a non-blocking socket (a tunnel) records that do not fit stay queued for
            // `flush_now`: a full send buffer must not stop us reading.
            self.flush_now()?;
            if !sys::poll_now(self.tcp.as_fd())? {
                return Ok(None);
            }
            match self.read_tls() {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(err) => return Err(err),
            }
            self.process()?;
            self.flush_now()?;
        }
        Ok(None)
    }

    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.tcp.set_nonblocking(nonblocking)
    }

    fn handshake_deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn write_now(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.tls.is_handshaking() {
            // A tunnel starts after a request and its answer, so never here; a blocking
            // handshake would be wrong on a non-blocking socket.
            return Err(io::Error::other("TLS handshake not done"));
        }
        // rustls takes plaintext only while its queue of records is under its buffer limit
        // (64 KiB by default): that queue is what bounds this side's memory.
        let taken = self.tls.writer().write(data)?;
        self.flush_now()?;
        if taken == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn flush_now(&mut self) -> io::Result<bool> {
        // Bounded: each round writes at least one byte, or stops.
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) => return Err(err),
            }
        }
        Ok(true)
    }

    fn has_unsent(&self) -> bool {
        self.tls.wants_write()
    }
}

/// A server-side stream dropped with its handshake unfinished (a TLS error, the handshake
/// timeout, a client that closed or never spoke TLS) is a failed handshake for `/metrics`.
impl Drop for TlsStream {
    fn drop(&mut self) {
        if self.deadline.is_some() {
            crate::metrics::tls().handshake_failed();
        }
    }
}

impl AsFd for TlsStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tcp.as_fd()
    }
}
