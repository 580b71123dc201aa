//! A client connection between requests: what travels between stage 4's workers and its
//! parker. Its own module so that neither of those two imports the other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::ConnectionHandler;
use crate::http::stream::BoxedTransport;
use crate::http::BufStream;

pub(super) struct Conn {
    pub(super) stream: BufStream<BoxedTransport>,
    pub(super) peer: SocketAddr,
    /// When the last response ended (or the connection was accepted).
    pub(super) idle_since: Instant,
    /// When the first byte of a request head arrived, while the head is incomplete.
    pub(super) head_since: Option<Instant>,
    pub(super) handler: Arc<dyn ConnectionHandler>,
}

impl Conn {
    /// When the parker should give up: the idle timeout between requests, or the header
    /// timeout once a head has started (the same rules as a worker reading it would apply).
    /// A TLS handshake still in progress has its own, shorter deadline.
    pub(super) fn deadline(&self) -> Instant {
        let timeouts = self.handler.timeouts();
        let wait = match self.head_since {
            Some(started) => started + timeouts.head,
            None => self.idle_since + timeouts.idle,
        };
        self.handshake_deadline().map_or(wait, |d| d.min(wait))
    }

    /// When the TLS handshake must be done by, while it is in progress.
    pub(super) fn handshake_deadline(&self) -> Option<Instant> {
        self.stream.get_ref().handshake_deadline()
    }

    /// Whether bytes wait inside the stream where `poll` cannot see them (see `Transport`).
    pub(super) fn has_hidden_bytes(&self) -> bool {
        self.stream.get_ref().has_buffered()
    }
}
