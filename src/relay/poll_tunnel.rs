//! A tunnel for connections that cannot be split between two threads (TLS on either side:
//! rustls keeps one state for both directions in one object, so `Socket::duplicate` gives
//! nothing). One thread owns both streams whole and polls both descriptors.
//!
//! Why one polling thread rather than the TLS stream behind a mutex shared by two threads: a
//! reader blocked inside the lock would stop the writer, and short non-blocking turns under a
//! lock are a poll loop anyway, only spread over two threads. And why not blocking writes
//! here: one thread blocked writing to a peer that is itself blocked writing to us would
//! deadlock (see `tunnel.rs`). So every read and write is non-blocking:
//!
//! - each direction has a bounded buffer ([`BUFFER`]); its source is read only while the
//!   buffer has room, so a peer that stops reading stalls its direction (and makes the other
//!   peer's TCP window fill up) instead of growing memory. TLS adds at most rustls's own
//!   send queue (64 KiB) per side;
//! - plaintext rustls has decrypted but not handed out is invisible to `poll`
//!   ([`Transport::has_buffered`]): such a side is served without waiting;
//! - records rustls has queued but the socket did not take ([`Transport::has_unsent`]) make
//!   the thread wait for that socket to be writable;
//! - a side's end of stream is passed on as a half-close once its buffer is delivered
//!   (`shutdown_write`: TLS sends `close_notify` first), and the other direction goes on;
//! - no byte moved either way for `idle` closes both, as in the two-thread tunnel. A peer
//!   that stops reading for that long is closed the same way (there is no separate write
//!   timeout: the stalled direction moves nothing, but the other may still be alive).

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::tunnel::Relayed;
use crate::http::stream::BoxedTransport;
use crate::sys::{self, Interest};

/// Each direction's buffer: bytes read from one side not yet taken by the other.
const BUFFER: usize = 64 * 1024;

/// The two connections of a tunnel, whole, and the bytes each side sent that were read
/// ahead before the switch.
pub(super) struct Ends {
    pub(super) client: BoxedTransport,
    pub(super) upstream: BoxedTransport,
    pub(super) from_client: Vec<u8>,
    pub(super) from_upstream: Vec<u8>,
}

/// One direction: what was read from its source and waits for its destination.
struct Direction {
    buffer: Vec<u8>,
    /// Bytes `start..end` of `buffer` are still to be written.
    start: usize,
    end: usize,
    /// The source ended (or failed): nothing more will be read from it.
    source_done: bool,
    /// The destination was half-closed (or failed): the direction is over.
    closed: bool,
    delivered: u64,
}

impl Direction {
    fn new(early: Vec<u8>) -> Direction {
        let end = early.len();
        let mut buffer = early;
        // The early bytes may exceed BUFFER (a large first frame); they are kept whole and
        // the buffer is not grown past them.
        buffer.resize(end.max(BUFFER), 0);
        Direction {
            buffer,
            start: 0,
            end,
            source_done: false,
            closed: false,
            delivered: 0,
        }
    }

    fn pending(&self) -> bool {
        self.start < self.end
    }

    fn has_room(&self) -> bool {
        !self.source_done && self.end < self.buffer.len()
    }

    /// Reads what `source` gives without waiting; whether a byte (or the end) came.
    fn fill(&mut self, source: &mut BoxedTransport) -> bool {
        if !self.has_room() {
            return false;
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        match source.read_now(&mut self.buffer[self.end..]) {
            Ok(Some(0)) => {
                self.source_done = true;
                true
            }
            Ok(Some(n)) => {
                self.end += n;
                true
            }
            Ok(None) => false,
            Err(err) if would_wait(&err) => false,
            // A reset or a TLS error ends this direction as its end of stream would.
            Err(_) => {
                self.source_done = true;
                true
            }
        }
    }

    /// Writes what `destination` takes without waiting, then half-closes it once the
    /// source is done and everything is delivered; whether anything moved.
    fn drain(&mut self, destination: &mut BoxedTransport) -> bool {
        if self.closed {
            return false;
        }
        let mut moved = false;
        // Bounded: each round writes at least one byte, or stops.
        while self.pending() {
            match destination.write_now(&self.buffer[self.start..self.end]) {
                Ok(0) => break,
                Ok(n) => {
                    self.start += n;
                    self.delivered += n as u64;
                    moved = true;
                }
                Err(err) if would_wait(&err) => break,
                Err(_) => return self.fail(),
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        match destination.flush_now() {
            Ok(_) => {}
            Err(err) if would_wait(&err) => {}
            Err(_) => return self.fail(),
        }
        if self.source_done && !self.pending() && !destination.has_unsent() {
            match destination.shutdown_write() {
                Ok(()) => {
                    self.closed = true;
                    moved = true;
                }
                // TLS: the close_notify is queued; the next round sends it and shuts.
                Err(err) if would_wait(&err) => {}
                Err(_) => return self.fail(),
            }
        }
        moved
    }

    /// The destination is gone: what is buffered is dropped, nothing more is read.
    fn fail(&mut self) -> bool {
        self.source_done = true;
        self.closed = true;
        self.start = 0;
        self.end = 0;
        true
    }

    /// What the poll waits for on this direction's source and destination.
    fn interest(&self, destination: &BoxedTransport) -> (bool, bool) {
        let read = self.has_room();
        let write = !self.closed && (self.pending() || destination.has_unsent());
        (read, write)
    }
}

/// Relays until both directions have ended or the tunnel went idle; the streams are closed
/// when this returns.
pub(super) fn run(ends: Ends, idle: Duration) -> Relayed {
    let Ends {
        mut client,
        mut upstream,
        from_client,
        from_upstream,
    } = ends;
    if client.set_nonblocking(true).is_err() || upstream.set_nonblocking(true).is_err() {
        return Relayed::default();
    }
    let mut up = Direction::new(from_client);
    let mut down = Direction::new(from_upstream);
    let mut last_moved = Instant::now();
    let mut idle_closed = false;
    // Bounded by the idle timeout: each round moves bytes (and restarts it) or waits on it.
    while !(up.closed && down.closed) {
        let mut moved = up.drain(&mut upstream);
        moved |= down.drain(&mut client);
        moved |= up.fill(&mut client);
        moved |= down.fill(&mut upstream);
        moved |= up.drain(&mut upstream);
        moved |= down.drain(&mut client);
        if moved {
            last_moved = Instant::now();
            continue;
        }
        let Some(wait) = idle
            .checked_sub(last_moved.elapsed())
            .filter(|w| !w.is_zero())
        else {
            idle_closed = true;
            break;
        };
        // Plaintext inside rustls is there now, whatever poll says.
        let buffered = (up.has_room() && client.has_buffered())
            || (down.has_room() && upstream.has_buffered());
        if buffered {
            continue;
        }
        let (read_client, write_upstream) = up.interest(&upstream);
        let (read_upstream, write_client) = down.interest(&client);
        let fds = [
            (
                client.as_fd(),
                Interest {
                    read: read_client,
                    write: write_client,
                },
            ),
            (
                upstream.as_fd(),
                Interest {
                    read: read_upstream,
                    write: write_upstream,
                },
            ),
        ];
        if sys::wait_ready(&fds, wait).is_err() {
            break;
        }
    }
    if idle_closed {
        // As the two-thread tunnel does: each peer is told the end (TLS: close_notify), if
        // its socket takes it now; dropping the streams closes them either way.
        for (direction, destination) in [(&up, &mut upstream), (&down, &mut client)] {
            if !direction.closed {
                let _ = destination.shutdown_write();
            }
        }
    }
    let _ = client.set_nonblocking(false);
    let _ = upstream.set_nonblocking(false);
    Relayed {
        to_upstream: up.delivered,
        to_client: down.delivered,
        idle_closed,
    }
}

fn would_wait(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::thread;

    /// Two connected sockets: (our end, for the tunnel; the peer's end).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        peer.set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (ours, peer)
    }

    fn ends(client: TcpStream, upstream: TcpStream) -> Ends {
        Ends {
            client: Box::new(client),
            upstream: Box::new(upstream),
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
        let tunnel =
            thread::spawn(move || run(ends(client_side, upstream_side), Duration::from_secs(10)));
        client.write_all(b" hello").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_all(&mut upstream), b"early-c hello");
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
            run(ends(client_side, upstream_side), Duration::from_millis(200))
        });
        assert_eq!(read_all(&mut client), b"early-u");
        assert_eq!(read_all(&mut upstream), b"early-c");
        assert!(tunnel.join().unwrap().idle_closed);
    }

    /// CPU time this thread has used, in clock ticks (utime + stime of /proc/thread-self/stat).
    fn thread_cpu_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 from the state.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    #[test]
    fn a_stalled_tunnel_waits_in_poll_without_spinning() {
        // The client sends far more than the upstream peer ever reads: both buffers and the
        // sockets fill, nothing can move, and the tunnel must sleep in poll until the idle
        // timeout rather than retry in a loop.
        let (client_side, mut client) = pair();
        let (upstream_side, upstream) = pair();
        let writer = thread::spawn(move || {
            let chunk = vec![7u8; 64 * 1024];
            // Bounded: ends when the tunnel closes the connection (or the write timeout).
            while client.write_all(&chunk).is_ok() {}
        });
        let before = thread_cpu_ticks();
        let relayed = run(ends(client_side, upstream_side), Duration::from_millis(600));
        let used = thread_cpu_ticks() - before;
        assert!(relayed.idle_closed);
        assert!(relayed.to_upstream > 0);
        // A spinning loop would use about 60 ticks (600 ms at 100 Hz).
        assert!(used < 20, "{used} ticks of CPU while stalled");
        drop(upstream);
        writer.join().unwrap();
    }

    #[test]
    fn a_reader_that_lags_gets_everything_through_the_bounded_buffer() {
        // 4 MiB one way, far more than BUFFER and the sockets' buffers: the tunnel must stop
        // reading while the upstream peer does not read, and lose nothing.
        let (client_side, mut client) = pair();
        let (upstream_side, mut upstream) = pair();
        let tunnel =
            thread::spawn(move || run(ends(client_side, upstream_side), Duration::from_secs(10)));
        let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = thread::spawn(move || {
            client.write_all(&sent).unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
            client
        });
        let got = read_all(&mut upstream);
        assert_eq!(got.len(), 7 + data.len());
        assert!(got[7..] == data[..], "the bytes arrive intact, in order");
        drop(upstream);
        let mut client = writer.join().unwrap();
        assert_eq!(read_all(&mut client), b"early-u");
        assert_eq!(tunnel.join().unwrap().to_upstream, 7 + data.len() as u64);
    }
}
