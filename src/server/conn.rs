//! A client connection between requests: what travels between stage 4's workers and its
//! parker. Its own module so that neither of those two imports the other.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
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
    /// Its slot in the parker's table, from its first park until it closes (`None` before).
    pub(super) watch: Option<Watch>,
    /// Counts the connection as open until it is dropped, however it ends.
    pub(super) _open: Open,
}

/// A connection's slot in the parker's table. The parker's `epoll` set reports the socket
/// by this slot for as long as it is open, so the slot stays the connection's while a worker
/// serves it, and is given back when the connection is dropped, however it ends.
pub(super) struct Watch {
    pub(super) index: u32,
    pub(super) generation: u32,
    /// Weak: a parked connection sits in the table it points to.
    pub(super) table: Weak<dyn SlotOwner>,
}

/// The side of the parker that takes a slot back.
pub(super) trait SlotOwner: Send + Sync {
    fn release(&self, index: u32, generation: u32);
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(table) = self.table.upgrade() {
            table.release(self.index, self.generation);
        }
    }
}

/// Gauges of the pool's client connections, read by `/metrics` (relaxed atomics: a scrape
/// may see one connection in two states for an instant, never a lock on the request path).
#[derive(Debug, Default)]
pub(super) struct ConnGauges {
    /// Accepted and not closed yet.
    pub(super) open: AtomicUsize,
    /// Watched by the parker (idle, or with part of a head).
    pub(super) parked: AtomicUsize,
    /// Parked with no byte of a next request yet.
    pub(super) idle: AtomicUsize,
}

/// One open connection in [`ConnGauges::open`], for as long as it lives.
pub(super) struct Open(Arc<ConnGauges>);

impl Open {
    pub(super) fn new(gauges: &Arc<ConnGauges>) -> Open {
        gauges.open.fetch_add(1, Ordering::Relaxed);
        Open(Arc::clone(gauges))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
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
