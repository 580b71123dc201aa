//! The bytes of a switched connection (after `101 Switching Protocols`), relayed both ways
//! until both sides are done.
//!
//! Two threads, one per direction, each a blocking read-then-write loop. One thread polling
//! both sockets with blocking writes could deadlock: while it waits to write to a peer that
//! is itself waiting to write to us, nobody reads. With a thread per direction each peer's
//! bytes are always being read, as with a direct connection.
//!
//! - Bytes read ahead before the switch go first: what the client sent right behind its
//!   upgrade request (a WebSocket frame in the same packet), and what the origin sent right
//!   behind its `101`.
//! - A side that closes its sending half (end of stream) is passed on as a half-close
//!   (`shutdown_write` towards the other side); the other direction goes on until its own
//!   end, so a close handshake completes.
//! - No byte in either direction for `idle` closes both: each thread reads with a timeout and,
//!   when it fires, looks at when the tunnel last moved a byte either way.
//! - A peer that stops reading blocks its direction's writes only up to the socket's write
//!   timeout (the client's `send_timeout`, the upstream's write timeout); that direction then
//!   ends as if its source had closed.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::http::stream::BoxedTransport;

/// Size of each direction's copy buffer.
const BUFFER: usize = 16 * 1024;

/// Stack of the second thread: it only copies between two sockets through a heap buffer.
pub(super) const STACK_SIZE: usize = 128 * 1024;

/// The two connections of a tunnel, each as a reading and a writing handle on the same
/// socket, and the bytes each side sent that were read ahead before the switch.
pub(super) struct Ends {
    pub(super) client_reader: BoxedTransport,
    pub(super) client_writer: BoxedTransport,
    pub(super) upstream_reader: BoxedTransport,
    pub(super) upstream_writer: BoxedTransport,
    /// The client's bytes after its request head, for the origin.
    pub(super) from_client: Vec<u8>,
    /// The origin's bytes after its `101` head, for the client.
    pub(super) from_upstream: Vec<u8>,
}

/// What a tunnel carried, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Relayed {
    pub(super) to_upstream: u64,
    pub(super) to_client: u64,
    /// The idle timeout ended it (rather than both sides closing, or an error).
    pub(super) idle_closed: bool,
}

/// When the tunnel last moved a byte, shared by both directions.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
    /// Set by the direction that found the tunnel idle, so the other stops at once too.
    expired: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            expired: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    /// How long until the tunnel counts as idle; `None` once it does.
    fn remaining(&self, idle: Duration) -> Option<Duration> {
        if self.expired.load(Ordering::Relaxed) {
            return None;
        }
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        let quiet = self.start.elapsed().saturating_sub(last);
        match idle.checked_sub(quiet) {
            Some(left) if !left.is_zero() => Some(left),
            _ => {
                self.expired.store(true, Ordering::Relaxed);
                None
            }
        }
    }
}

/// Relays until both directions have ended; the handles are closed when this returns.
pub(super) fn run(ends: Ends, idle: Duration, name: &str) -> Relayed {
    let Ends {
        mut client_reader,
        mut client_writer,
        mut upstream_reader,
        mut upstream_writer,
        from_client,
        from_upstream,
    } = ends;
    let activity = Activity::new();
    thread::scope(|scope| {
        let down = thread::Builder::new()
            .name(format!("{name}-down"))
            .stack_size(STACK_SIZE)
            .spawn_scoped(scope, || {
                pump(
                    &mut upstream_reader,
                    &mut client_writer,
                    &from_upstream,
                    &activity,
                    idle,
                )
            });
        let down = match down {
            Ok(down) => down,
            Err(err) => {
                log::error!("{name}: cannot start its second thread: {err}");
                return Relayed::default();
            }
        };
        let to_upstream = pump(
            &mut client_reader,
            &mut upstream_writer,
            &from_client,
            &activity,
            idle,
        );
        // A panic in the copy loop is a bug; the tunnel is over either way.
        let to_client = down.join().unwrap_or(0);
        Relayed {
            to_upstream,
            to_client,
            idle_closed: activity.expired.load(Ordering::Relaxed),
        }
    })
}

/// Copies one direction until its source ends, fails or the tunnel goes idle, then
/// half-closes the destination. Returns the bytes delivered.
fn pump(
    source: &mut BoxedTransport,
    destination: &mut BoxedTransport,
    early: &[u8],
    activity: &Activity,
    idle: Duration,
) -> u64 {
    let mut delivered = 0;
    if !early.is_empty() {
        if destination.write_all(early).is_err() {
            let _ = destination.shutdown_write();
            return 0;
        }
        activity.touch();
        delivered += early.len() as u64;
    }
    let mut buffer = vec![0u8; BUFFER];
    // Bounded by the idle timeout: each round moves bytes (and restarts it) or waits on it.
    while let Some(wait) = activity.remaining(idle) {
        if source.set_read_timeout(Some(wait)).is_err() {
            break;
        }
        match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                activity.touch();
                if destination.write_all(&buffer[..n]).is_err() {
                    break;
                }
                activity.touch();
                delivered += n as u64;
            }
            Err(err) if is_timeout(&err) || err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = destination.flush();
    let _ = destination.shutdown_write();
    delivered
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// Two connected sockets: (our end as handles for the tunnel, the peer's end).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (ours, peer)
    }

    fn ends(client: TcpStream, upstream: TcpStream) -> Ends {
        Ends {
            client_reader: Box::new(client.try_clone().unwrap()),
            client_writer: Box::new(client),
            upstream_reader: Box::new(upstream.try_clone().unwrap()),
            upstream_writer: Box::new(upstream),
            from_client: b"early-c".to_vec(),
            from_upstream: b"early-u".to_vec(),
        }
    }

    fn read_all(stream: &mut TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        stream.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn bytes_flow_both_ways_and_half_closes_pass_through() {
        let (client_side, mut client) = pair();
        let (upstream_side, mut upstream) = pair();
        let tunnel = thread::spawn(move || {
            run(
                ends(client_side, upstream_side),
                Duration::from_secs(10),
                "t",
            )
        });
        client.write_all(b" hello").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        // The origin sees the early bytes, the rest, then the client's half-close...
        assert_eq!(read_all(&mut upstream), b"early-c hello");
        // ...and can still answer, after which it closes too.
        upstream.write_all(b" world").unwrap();
        upstream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_all(&mut client), b"early-u world");
        let relayed = tunnel.join().unwrap();
        assert_eq!(
            relayed,
            Relayed {
                to_upstream: 13,
                to_client: 13,
                idle_closed: false
            }
        );
    }

    #[test]
    fn a_silent_tunnel_is_closed_on_both_sides() {
        let (client_side, mut client) = pair();
        let (upstream_side, mut upstream) = pair();
        let tunnel = thread::spawn(move || {
            run(
                ends(client_side, upstream_side),
                Duration::from_millis(200),
                "t",
            )
        });
        assert_eq!(read_all(&mut client), b"early-u");
        assert_eq!(read_all(&mut upstream), b"early-c");
        assert!(tunnel.join().unwrap().idle_closed);
    }
}
