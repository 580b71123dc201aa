//! [`TlsHandler`]: a relay's connection handler for a TLS listener. Every model works with
//! it; under stage 4's pool the handshake is driven by the gather step and the parker, never
//! by a worker waiting on a client (see `stream.rs`).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::server::TlsAcceptor;
use crate::http::stream::{BoxedTransport, Socket};
use crate::http::BufStream;
use crate::relay::{ClientTimeouts, Phases, Relay};
use crate::server::ConnectionHandler;

/// Serves https with a relay that may also serve a plain listener: both hold the same
/// `Arc<Relay>`, so they share its backends, cache and limits, and each request tells its
/// phases which scheme it came with (`Client::proto`).
pub struct TlsHandler<P: Phases> {
    relay: Arc<Relay<P>>,
    acceptor: TlsAcceptor,
}

impl<P: Phases> TlsHandler<P> {
    pub fn new(relay: Arc<Relay<P>>, acceptor: TlsAcceptor) -> TlsHandler<P> {
        TlsHandler { relay, acceptor }
    }
}

impl<P: Phases> ConnectionHandler for TlsHandler<P> {
    fn handle(&self, stream: TcpStream, peer: SocketAddr) {
        // The blocking models (a thread per connection): the handshake first, within its own
        // timeout, then requests as on plain TCP.
        let tls = self.relay.prepare_tcp(&stream).and_then(|()| {
            let mut tls = self.acceptor.accept(stream)?;
            tls.set_read_timeout(Some(self.acceptor.handshake_timeout()))?;
            tls.complete_handshake()?;
            Ok(tls)
        });
        match tls {
            Ok(tls) => self.relay.serve(tls, peer),
            Err(err) => log::debug!("{peer}: TLS handshake failed: {err}"),
        }
    }

    fn transport(&self, stream: TcpStream) -> io::Result<BoxedTransport> {
        self.relay.prepare_tcp(&stream)?;
        Ok(Box::new(self.acceptor.accept(stream)?))
    }

    fn serve_next(
        &self,
        conn: &mut BufStream<BoxedTransport>,
        peer: SocketAddr,
        idle: Duration,
    ) -> bool {
        self.relay.serve_next(conn, peer, idle)
    }

    fn request_ready(&self, buffered: &[u8]) -> bool {
        ConnectionHandler::request_ready(&*self.relay, buffered)
    }

    fn timeouts(&self) -> ClientTimeouts {
        self.relay.config().client
    }

    fn refused(&self, peer: SocketAddr, status: u16, duration: Duration) {
        self.relay.log_refusal(peer, status, duration);
    }

    fn refuses_in_plain_http(&self) -> bool {
        false
    }
}
