//! A handler that a reload replaces while connections are open: every request loads the
//! current one, and a request in flight keeps the one it started with until it ends.
//!
//! The pointer sits behind an `RwLock`: a request takes the read lock just long enough to
//! clone an `Arc` (no lock is held while it is served), and a reload takes the write lock
//! just long enough to store the new one. Readers never wait on each other, and a reload
//! happens a few times a day, so the lock is never contended in practice.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::ConnectionHandler;
use crate::http::stream::BoxedTransport;
use crate::http::BufStream;
use crate::relay::ClientTimeouts;

/// The current handler of type `H`, replaceable with [`Swappable::swap`].
pub struct Swappable<H: ConnectionHandler> {
    current: RwLock<Arc<H>>,
}

impl<H: ConnectionHandler> Swappable<H> {
    pub fn new(handler: Arc<H>) -> Swappable<H> {
        Swappable {
            current: RwLock::new(handler),
        }
    }

    /// The handler that new requests get now.
    pub fn load(&self) -> Arc<H> {
        // A panic while holding this lock cannot leave the pointer half-written.
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Makes `handler` the one new requests get; returns the previous one, which requests in
    /// flight still hold.
    pub fn swap(&self, handler: Arc<H>) -> Arc<H> {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *current, handler)
    }
}

impl<H: ConnectionHandler> ConnectionHandler for Swappable<H> {
    /// A whole connection (stages 1 to 3, or a pool that holds connections): each request on
    /// it loads the handler anew, so a long keep-alive connection follows reloads too.
    fn handle(&self, stream: TcpStream, peer: SocketAddr) {
        let transport = match self.load().transport(stream) {
            Ok(transport) => transport,
            Err(err) => {
                log::warn!("{peer}: cannot set up the client connection: {err}");
                return;
            }
        };
        let mut conn = BufStream::new(transport);
        // Bounded by the client: each round serves one request or ends the connection.
        loop {
            let handler = self.load();
            let idle = handler.timeouts().idle;
            if !handler.serve_next(&mut conn, peer, idle) {
                break;
            }
        }
        conn.finish();
    }

    fn transport(&self, stream: TcpStream) -> io::Result<BoxedTransport> {
        self.load().transport(stream)
    }

    fn serve_next(
        &self,
        conn: &mut BufStream<BoxedTransport>,
        peer: SocketAddr,
        idle: Duration,
    ) -> bool {
        self.load().serve_next(conn, peer, idle)
    }

    fn request_ready(&self, buffered: &[u8]) -> bool {
        self.load().request_ready(buffered)
    }

    fn timeouts(&self) -> ClientTimeouts {
        self.load().timeouts()
    }

    fn refused(&self, peer: SocketAddr, status: u16, duration: Duration) {
        self.load().refused(peer, status, duration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler that only tells its name through its timeouts.
    struct Named(u64);

    impl ConnectionHandler for Named {
        fn handle(&self, _: TcpStream, _: SocketAddr) {}
        fn transport(&self, stream: TcpStream) -> io::Result<BoxedTransport> {
            Ok(Box::new(stream))
        }
        fn serve_next(
            &self,
            _: &mut BufStream<BoxedTransport>,
            _: SocketAddr,
            _: Duration,
        ) -> bool {
            false
        }
        fn request_ready(&self, _: &[u8]) -> bool {
            true
        }
        fn timeouts(&self) -> ClientTimeouts {
            ClientTimeouts {
                idle: Duration::from_secs(self.0),
                ..ClientTimeouts::default()
            }
        }
        fn refused(&self, _: SocketAddr, _: u16, _: Duration) {}
    }

    #[test]
    fn new_calls_get_the_new_handler_while_a_held_one_lives_on() {
        let swappable = Swappable::new(Arc::new(Named(1)));
        let in_flight = swappable.load();
        let old = swappable.swap(Arc::new(Named(2)));
        assert_eq!(old.0, 1);
        assert_eq!(
            swappable.timeouts().idle,
            Duration::from_secs(2),
            "new calls: new one"
        );
        assert_eq!(
            in_flight.timeouts().idle,
            Duration::from_secs(1),
            "held: still the old"
        );
        drop(old);
        assert_eq!(
            Arc::strong_count(&in_flight),
            1,
            "the old one goes with its last user"
        );
    }
}
