//! The few system calls the event-loop engine needs that std does not offer: an edge-triggered
//! epoll set and a nonblocking TCP connect. All of the tester's `unsafe` for I/O is here.
//!
//! Edge-triggered, and each socket registered once for both directions: a keep-alive request
//! then costs one `write`, one `read` and a share of one `epoll_wait`, with no `epoll_ctl`
//! per request (wrk re-arms its events with `epoll_ctl` on every turn). Closing a socket
//! removes it from the set (the tester never duplicates a descriptor).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// An epoll instance, closed when dropped.
pub struct Epoll {
    fd: OwnedFd,
}

/// Room for the events of one `epoll_wait`.
pub struct Events {
    list: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    pub fn with_capacity(n: usize) -> Self {
        Events {
            list: vec![libc::epoll_event { events: 0, u64: 0 }; n.max(1)],
            len: 0,
        }
    }

    /// The tokens of the sockets that became ready in the last wait.
    pub fn tokens(&self) -> impl Iterator<Item = u64> + '_ {
        // Copy the (packed on x86_64) struct out before reading its field.
        self.list[..self.len].iter().map(|e| {
            let event = *e;
            event.u64
        })
    }
}

impl Epoll {
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `fd` for readable and writable edges, reported with `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open; `event` is a valid epoll_event for the call.
        let rc =
            unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits at most `timeout` (rounded up to a millisecond) for events.
    pub fn wait(&self, events: &mut Events, timeout: Duration) -> io::Result<()> {
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let capacity = events.list.len().min(i32::MAX as usize) as i32;
        // SAFETY: the pointer and the capacity describe `events.list`, which lives
        // through the call; the kernel writes at most `capacity` entries.
        let n = unsafe {
            libc::epoll_wait(self.fd.as_raw_fd(), events.list.as_mut_ptr(), capacity, ms)
        };
        events.len = 0;
        if n < 0 {
            let e = io::Error::last_os_error();
            // A signal (Ctrl-C) is not an error: the caller checks its stop flag.
            return match e.kind() {
                io::ErrorKind::Interrupted => Ok(()),
                _ => Err(e),
            };
        }
        events.len = n as usize;
        Ok(())
    }
}

/// Starts connecting a nonblocking socket to `addr`; the connection completes (or fails)
/// later, when the socket becomes writable (see `TcpStream::take_error`).
pub fn connect_nonblocking(addr: SocketAddr) -> io::Result<TcpStream> {
    let (domain, storage, len) = sockaddr(addr);
    // SAFETY: socket takes no pointers; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket that nothing else owns; from here it is closed on drop.
    let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    // SAFETY: `storage` holds a sockaddr of `len` bytes for the family of the socket.
    let rc = unsafe {
        libc::connect(
            stream.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr>(),
            len,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(stream)
}

/// `addr` as the C socket API wants it.
fn sockaddr(addr: SocketAddr) -> (libc::c_int, libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid (empty) value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for any sockaddr_*.
            unsafe {
                std::ptr::write(
                    (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>(),
                    sin,
                )
            };
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            (libc::AF_INET, storage, len)
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: as above.
            unsafe {
                std::ptr::write(
                    (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>(),
                    sin6,
                )
            };
            let len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            (libc::AF_INET6, storage, len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn connect_and_wait_for_readiness() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let epoll = Epoll::new().expect("epoll");
        let mut events = Events::with_capacity(4);
        let mut client = connect_nonblocking(addr).expect("connect");
        epoll.add(client.as_raw_fd(), 7).expect("add");
        let (mut server, _) = listener.accept().expect("accept");
        epoll
            .wait(&mut events, Duration::from_secs(5))
            .expect("wait");
        assert_eq!(
            events.tokens().collect::<Vec<_>>(),
            [7],
            "writable once connected"
        );
        assert!(client.take_error().expect("SO_ERROR").is_none());
        client.write_all(b"ping").expect("write");
        server.write_all(b"pong").expect("write");
        epoll
            .wait(&mut events, Duration::from_secs(5))
            .expect("wait");
        assert_eq!(events.tokens().collect::<Vec<_>>(), [7], "readable");
        let mut got = [0u8; 4];
        client.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"pong");
        let mut seen = [0u8; 4];
        server.read_exact(&mut seen).expect("read");
        assert_eq!(&seen, b"ping");
    }

    #[test]
    fn refused_connect_shows_as_socket_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let epoll = Epoll::new().expect("epoll");
        let mut events = Events::with_capacity(4);
        match connect_nonblocking(SocketAddr::from(([127, 0, 0, 1], port))) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            Ok(client) => {
                epoll.add(client.as_raw_fd(), 1).expect("add");
                epoll
                    .wait(&mut events, Duration::from_secs(5))
                    .expect("wait");
                let error = client.take_error().expect("SO_ERROR").expect("an error");
                assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
            }
        }
    }
}
