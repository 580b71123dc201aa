//! Closing sockets that tiny_http owns.
//!
//! tiny_http accepts connections on its own thread and never hands the `TcpStream` to the
//! application, and it keeps a connection open for as long as the client does (it has no idle
//! timeout). Two behaviours need more than that:
//!
//! - `/drop` must close the connection in the middle of a body, like an upstream that crashed;
//! - `Backend::stop` must look like a dead process: port refused, open connections closed, and
//!   no worker left blocked on a client that neither reads nor writes.
//!
//! A TCP socket is shared by every descriptor that refers to it, and `shutdown(2)` acts on the
//! socket, not the descriptor. So on Unix we list this process's descriptors, duplicate each,
//! keep the ones that are connections accepted on our port (from a given peer), and shut those
//! down. tiny_http's reader then sees end of file and its writer an error, and it closes its own
//! descriptors as usual. Elsewhere these functions do nothing.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};

/// Stops a listening socket from accepting, without waiting for tiny_http's accept thread.
///
/// On Linux, `shutdown(SHUT_RD)` on a listening socket moves it out of the LISTEN state: new
/// connections are refused from now on and the blocked `accept` returns an error, so tiny_http's
/// accept thread ends. std has no `TcpListener::shutdown`, hence the detour through `TcpStream`,
/// which only wraps the same descriptor (a duplicate, closed on return).
pub(crate) fn close_listener(listener: TcpListener) {
    #[cfg(unix)]
    {
        let fd = std::os::fd::OwnedFd::from(listener);
        let _ = TcpStream::from(fd).shutdown(Shutdown::Read);
    }
    #[cfg(not(unix))]
    drop(listener);
}

/// Shuts down (both ways) every TCP connection in this process that was accepted on `local`
/// and, if `peer` is given, comes from `peer`. Returns how many were shut down.
pub(crate) fn close_accepted(local: SocketAddr, peer: Option<SocketAddr>) -> usize {
    #[cfg(unix)]
    {
        unix::close_accepted(local, peer)
    }
    #[cfg(not(unix))]
    {
        let _ = (local, peer);
        0
    }
}

/// `local` is the address a connection was accepted on; `bound` what the listener was bound to,
/// maybe an unspecified address (0.0.0.0 or ::) that stands for every local address.
fn accepted_on(bound: SocketAddr, local: SocketAddr) -> bool {
    local.port() == bound.port() && (bound.ip().is_unspecified() || local.ip() == bound.ip())
}

#[cfg(unix)]
mod unix {
    use super::*;
    use std::os::fd::{BorrowedFd, RawFd};

    pub(super) fn close_accepted(local: SocketAddr, peer: Option<SocketAddr>) -> usize {
        // Linux has /proc/self/fd; macOS and the BSDs have /dev/fd.
        let Ok(dir) = std::fs::read_dir("/proc/self/fd").or_else(|_| std::fs::read_dir("/dev/fd"))
        else {
            return 0;
        };
        let fds: Vec<RawFd> = dir
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        let mut closed = 0;
        for fd in fds {
            // SAFETY: the borrow lives only for the `dup` inside `try_clone_to_owned`. Another
            // thread may close `fd` after we listed it; then `dup` fails (EBADF) or duplicates
            // whatever reused the number. Either way we own only our duplicate, and the address
            // checks below reject anything that is not one of our accepted connections.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            let Ok(owned) = borrowed.try_clone_to_owned() else {
                continue;
            };
            // Not a TCP socket (a file, a pipe, a Unix socket): `local_addr` fails, we skip it.
            let socket = TcpStream::from(owned);
            let Ok(socket_local) = socket.local_addr() else {
                continue;
            };
            // A listening socket has no peer, which leaves it out.
            let Ok(socket_peer) = socket.peer_addr() else {
                continue;
            };
            if !accepted_on(local, socket_local) || peer.is_some_and(|p| p != socket_peer) {
                continue;
            }
            if socket.shutdown(Shutdown::Both).is_ok() {
                closed += 1;
            }
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Duration;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn accepted_on_matches_port_and_ip() {
        let cases = [
            ("127.0.0.1:8000", "127.0.0.1:8000", true),
            ("127.0.0.1:8000", "127.0.0.1:8001", false),
            ("127.0.0.1:8000", "127.0.0.2:8000", false),
            ("0.0.0.0:8000", "127.0.0.2:8000", true),
            ("[::]:8000", "[::ffff:127.0.0.1]:8000", true),
            ("[::1]:8000", "[::1]:8000", true),
        ];
        for (bound, local, want) in cases {
            assert_eq!(
                accepted_on(addr(bound), addr(local)),
                want,
                "{bound} {local}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn closes_only_the_accepted_side_of_the_given_peer() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let local = listener.local_addr().expect("addr");
        let mut a = TcpStream::connect(local).expect("connect a");
        let mut b = TcpStream::connect(local).expect("connect b");
        let (sa, _) = listener.accept().expect("accept a");
        let (_sb, _) = listener.accept().expect("accept b");
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
        }
        // The client sockets have `local` as their peer, not as their local address: untouched.
        assert_eq!(close_accepted(local, Some(a.local_addr().expect("a"))), 1);
        let mut buf = [0u8; 1];
        assert_eq!(a.read(&mut buf).expect("eof on a"), 0);
        // b is still open: a read times out rather than seeing end of file.
        b.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        assert!(b.read(&mut buf).is_err());
        drop(sa);
        assert_eq!(close_accepted(local, None), 1);
        b.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        assert_eq!(b.read(&mut buf).expect("eof on b"), 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn closed_listener_refuses_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let local = listener.local_addr().expect("addr");
        let keep = listener.try_clone().expect("clone");
        close_listener(listener);
        let err = TcpStream::connect(local).expect_err("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        drop(keep);
    }
}
