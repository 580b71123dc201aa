//! [`TlsHandler`]: the connection handler of a TLS listener, wrapped around the handler that
//! serves the plain one (a relay, or the reloadable [`Swappable`](crate::server::Swappable)
//! around it). Every model works with it; under stage 4's pool the handshake is driven by the
//! gather step and the parker, never by a worker waiting on a client (see `stream.rs`).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::server::TlsAcceptor;
use crate::http::stream::{BoxedTransport, Socket};
use crate::http::BufStream;
use crate::relay::ClientTimeouts;
use crate::server::ConnectionHandler;

/// Serves https through the handler `H` that may also serve a plain listener: both hold the
/// same `Arc`, so they share its backends, cache and limits (and a reload swaps both), and
/// each request tells its phases which scheme it came with (`Client::proto`).
pub struct TlsHandler<H: ConnectionHandler> {
    inner: Arc<H>,
    acceptor: TlsAcceptor,
}

impl<H: ConnectionHandler> TlsHandler<H> {
    pub fn new(inner: Arc<H>, acceptor: TlsAcceptor) -> TlsHandler<H> {
        TlsHandler { inner, acceptor }
    }
}

impl<H: ConnectionHandler> ConnectionHandler for TlsHandler<H> {
    fn handle(&self, stream: TcpStream, peer: SocketAddr) {
        // The blocking models (a thread per connection): the handshake first, within its own
        // timeout, then requests as on plain TCP.
        let tls = self.inner.prepare(&stream).and_then(|()| {
            let mut tls = self.acceptor.accept(stream)?;
            tls.set_read_timeout(Some(self.acceptor.handshake_timeout()))?;
            tls.complete_handshake()?;
            Ok(tls)
        });
        let tls = match tls {
            Ok(tls) => tls,
            Err(err) => {
                log::debug!("{peer}: TLS handshake failed: {err}");
                return;
            }
        };
        let mut conn = BufStream::new(Box::new(tls) as BoxedTransport);
        // Bounded by the client: each round serves one request or ends the connection.
        while self
            .inner
            .serve_next(&mut conn, peer, self.inner.timeouts().idle)
        {}
        conn.finish();
    }

    fn transport(&self, stream: TcpStream) -> io::Result<BoxedTransport> {
        self.inner.prepare(&stream)?;
        Ok(Box::new(self.acceptor.accept(stream)?))
    }

    fn serve_next(
        &self,
        conn: &mut BufStream<BoxedTransport>,
        peer: SocketAddr,
        idle: Duration,
    ) -> bool {
        self.inner.serve_next(conn, peer, idle)
    }

    fn request_ready(&self, buffered: &[u8]) -> bool {
        self.inner.request_ready(buffered)
    }

    fn timeouts(&self) -> ClientTimeouts {
        self.inner.timeouts()
    }

    fn refused(&self, peer: SocketAddr, status: u16, duration: Duration) {
        self.inner.refused(peer, status, duration);
    }

    fn refuses_in_plain_http(&self) -> bool {
        false
    }

    fn prepare(&self, stream: &TcpStream) -> io::Result<()> {
        self.inner.prepare(stream)
    }
}
