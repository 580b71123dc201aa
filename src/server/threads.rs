//! Stage 3: a thread per connection, with a cap on how many live at once.
//!
//! `threaded_proxy.c` started a thread per connection with no limit, so a burst of clients
//! spawns threads until memory or the thread limit runs out, and, like the rest of the C
//! course, with no timeouts, so a client that vanished mid-request pinned its thread forever.
//! Here every connection holds a [`Slot`] for exactly as long as its thread runs; the slot is
//! released when the thread ends by any way (return, or a panic unwinding), and the relay's
//! timeouts bound how long a thread can run.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use super::{refuse_busy, wait_until, ConnectionHandler, ConnectionModel};

/// Default for `--max-connections`: far above what one small machine serves well, low
/// enough that a flood is refused before it exhausts memory or file descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// One thread per accepted connection, at most `max` at a time. Above the cap the client gets
/// `503` with `Retry-After: 1` at once (see `chapters/03-thread-per-connection.md` for why
/// this model refuses while stage 2 waits).
#[derive(Debug)]
pub struct ThreadPerConnection {
    max: usize,
    live: Arc<AtomicUsize>,
    next_id: AtomicU64,
}

impl ThreadPerConnection {
    pub fn new(max_connections: usize) -> ThreadPerConnection {
        ThreadPerConnection {
            max: max_connections,
            live: Arc::new(AtomicUsize::new(0)),
            next_id: AtomicU64::new(1),
        }
    }

    /// Connections being served right now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

impl ConnectionModel for ThreadPerConnection {
    fn dispatch(&self, stream: TcpStream, peer: SocketAddr, handler: &Arc<dyn ConnectionHandler>) {
        crate::exercise::stub!("ThreadPerConnection::dispatch");
        let Some(slot) = Slot::take(&self.live, self.max) else {
            log::debug!("{peer}: {} connections already, refusing", self.max);
            refuse_busy(stream, peer, &**handler);
            return;
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let handler = Arc::clone(handler);
        // Named, so the log says which connection a line is about.
        let spawned = thread::Builder::new()
            .name(format!("conn-{id}"))
            .spawn(move || {
                let _slot = slot; // released when this closure ends, unwinding included
                handler.handle(stream, peer);
            });
        if let Err(err) = spawned {
            // The closure was dropped unrun: the slot is released and the socket closed.
            log::error!("{peer}: cannot start a thread: {err}");
        }
    }

    /// Waits for the connection threads. One that idles between keep-alive requests waits in a
    /// blocking read and ends only at its idle timeout, or at the deadline with the process.
    fn drain(&self, deadline: Instant) -> bool {
        wait_until(deadline, || self.live() == 0)
    }
}

/// One unit of a capacity counter, given back on drop. Holding it in the thread's closure is
/// what makes the count right even when the thread panics.
#[derive(Debug)]
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A slot if fewer than `max` are taken.
    pub(crate) fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        crate::exercise::stub!("Slot::take");
        count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(count)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::stream::BoxedTransport;
    use crate::http::BufStream;
    use crate::relay::ClientTimeouts;
    use std::io;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// Tells the test which thread served, then panics.
    struct Panicking(std::sync::Mutex<mpsc::Sender<String>>);

    impl ConnectionHandler for Panicking {
        fn handle(&self, _stream: TcpStream, _peer: SocketAddr) {
            let name = thread::current().name().unwrap_or("").to_owned();
            let _ = self.0.lock().unwrap().send(name);
            panic!("a bug in a handler");
        }
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
        fn refused(&self, _: SocketAddr, _: u16, _: Duration) {}
        fn request_ready(&self, _buffered: &[u8]) -> bool {
            true
        }
        fn timeouts(&self) -> ClientTimeouts {
            ClientTimeouts::default()
        }
    }

    #[test]
    fn slots_are_capped_and_given_back() {
        let count = Arc::new(AtomicUsize::new(0));
        let a = Slot::take(&count, 2).expect("first");
        let b = Slot::take(&count, 2).expect("second");
        assert!(Slot::take(&count, 2).is_none(), "the cap holds");
        drop(a);
        assert!(
            Slot::take(&count, 2).is_some(),
            "a released slot is reusable"
        );
        drop(b);
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_panicking_connection_thread_gives_its_slot_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        let (tx, rx) = mpsc::channel();
        let handler: Arc<dyn ConnectionHandler> = Arc::new(Panicking(tx.into()));
        let model = ThreadPerConnection::new(1);
        model.dispatch(stream, peer, &handler);
        let name = rx.recv_timeout(Duration::from_secs(10)).expect("served");
        assert!(name.starts_with("conn-"), "thread named {name:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while model.live() != 0 {
            assert!(Instant::now() < deadline, "the slot was never given back");
            thread::sleep(Duration::from_millis(5));
        }
    }
}
