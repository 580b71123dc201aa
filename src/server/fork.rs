//! Stage 2: a process per connection, the way `fork_proxy.c` should have done it.
//!
//! The C version forked for every connection and left every finished child a zombie (nobody
//! called `wait`), with nothing to limit how many children ran at once. A process per
//! connection needs four things right:
//!
//! - the parent closes its copy of the client socket right after `fork`;
//! - the child closes its copy of the listening socket, serves the connection, and leaves
//!   with `_exit`, never returning into the accept loop (a panic included);
//! - a `SIGCHLD` handler reaps every child that ends and keeps a count of the live ones
//!   ([`sys::Reaper`]);
//! - at `max_children`, the accept loop waits for a child to end before forking another, so
//!   further clients wait in the kernel's listen backlog, as with Apache's prefork
//!   `MaxRequestWorkers`.
//!
//! Forking is only safe while the proxy has a single thread: [`sys::fork`] checks that, and
//! [`start_demo_process`] keeps `--demo`'s backend threads out of the proxy's process.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use super::{refuse_busy, ConnectionHandler, ConnectionModel};
use crate::sys::{self, Fork, Reaper};

/// Default for `--max-children`, Apache prefork's default `MaxRequestWorkers`.
pub const DEFAULT_MAX_CHILDREN: usize = 256;

/// Forks a child process per accepted connection, at most `max_children` at a time.
#[derive(Debug)]
pub struct ForkPerConnection {
    max_children: usize,
    listener_fd: RawFd,
    reaper: Reaper,
}

impl ForkPerConnection {
    /// Installs the `SIGCHLD` reaper. `listener` is the socket the accept loop uses: each
    /// child closes its copy.
    pub fn new(listener: &TcpListener, max_children: usize) -> std::io::Result<Self> {
        Ok(ForkPerConnection {
            max_children,
            listener_fd: listener.as_raw_fd(),
            reaper: Reaper::install()?,
        })
    }

    /// Children serving a connection right now.
    pub fn live_children(&self) -> usize {
        self.reaper.live()
    }
}

impl ConnectionModel for ForkPerConnection {
    fn dispatch(&self, stream: TcpStream, peer: SocketAddr, handler: &Arc<dyn ConnectionHandler>) {
        self.reaper.wait_below(self.max_children);
        match self.reaper.fork() {
            Ok(Fork::Parent(pid)) => {
                log::debug!("{peer}: served by process {pid}");
                // The child has its own copy. Keeping ours would hold the connection open
                // after the child closes it (the client would never see the end), and leak a
                // descriptor per connection.
                drop(stream);
            }
            Ok(Fork::Child) => {
                // SAFETY: this child ends with `exit_child` below, so the `TcpListener` that
                // owns this descriptor (in the parent's accept loop, copied here) is never used
                // or dropped in this process again.
                unsafe { sys::close_inherited(self.listener_fd) };
                // A panic must not unwind out of here: it would land in the accept loop of a
                // copy of the parent, which would start accepting clients itself.
                let served = panic::catch_unwind(AssertUnwindSafe(|| handler.handle(stream, peer)));
                sys::exit_child(if served.is_ok() { 0 } else { 70 });
            }
            Err(err) => {
                log::error!("{peer}: cannot fork: {err}");
                refuse_busy(stream, peer, &**handler);
            }
        }
    }
}

/// How long `--demo` waits for its backend process to report its addresses.
const DEMO_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the `--demo` backends in a separate process and returns their addresses.
///
/// The demo backends run on threads (hyper on a tokio runtime), and a process with threads must not fork
/// (see [`sys::fork`]). So they get a process of their own, forked while the proxy still has
/// a single thread. It is forked twice, so that it is not the proxy's child: the reaper and
/// the live-children count only ever see connection children. It ends when the proxy does:
/// it waits on a socket pair whose other end only the proxy (and its connection children)
/// hold, and the end of that stream is its signal to stop.
pub fn start_demo_process(addrs: &[&str]) -> Result<DemoProcess, String> {
    let (link, child_link) =
        UnixStream::pair().map_err(|e| format!("cannot create a socket pair: {e}"))?;
    match sys::fork().map_err(|e| format!("cannot fork the demo backends: {e}"))? {
        Fork::Child => {
            drop(link);
            match sys::fork() {
                Ok(Fork::Child) => run_demo_backends(child_link, addrs),
                Ok(Fork::Parent(_)) => sys::exit_child(0),
                Err(_) => sys::exit_child(71),
            }
        }
        Fork::Parent(pid) => {
            drop(child_link);
            sys::wait_child(pid).map_err(|e| format!("demo backends: {e}"))?;
            let started = read_demo_report(&link)?;
            Ok(DemoProcess {
                addrs: started,
                _link: link,
            })
        }
    }
}

/// The demo backends' process, seen from the proxy. Keep it alive as long as the proxy runs:
/// dropping it stops the backends.
#[derive(Debug)]
pub struct DemoProcess {
    addrs: Vec<SocketAddr>,
    _link: UnixStream,
}

impl DemoProcess {
    /// The backends' bound addresses, in the order they were asked for.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

fn read_demo_report(link: &UnixStream) -> Result<Vec<SocketAddr>, String> {
    link.set_read_timeout(Some(DEMO_START_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(link)
        .read_line(&mut line)
        .map_err(|e| format!("the demo backends did not start: {e}"))?;
    if let Some(message) = line.strip_prefix("error: ") {
        return Err(message.trim_end().to_owned());
    }
    line.split_whitespace()
        .map(|addr| {
            addr.parse()
                .map_err(|_| format!("demo backends reported {line:?}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|addrs| {
            if addrs.is_empty() {
                Err("the demo backends process ended before starting".to_owned())
            } else {
                Ok(addrs)
            }
        })
}

/// The demo backends' process: start them, report their addresses, serve until the proxy's
/// end of `link` closes.
fn run_demo_backends(mut link: UnixStream, addrs: &[&str]) -> ! {
    match crate::cli::start_demo_backends(addrs) {
        Ok(backends) => {
            let list: Vec<String> = backends.iter().map(|b| b.addr().to_string()).collect();
            if writeln!(link, "{}", list.join(" ")).is_ok() {
                // Blocks until the proxy is gone (end of stream) or the link fails.
                let mut rest = Vec::new();
                let _ = std::io::Read::read_to_end(&mut link, &mut rest);
            }
            drop(backends);
            sys::exit_child(0)
        }
        Err(message) => {
            let _ = writeln!(link, "error: {message}");
            sys::exit_child(1)
        }
    }
}
