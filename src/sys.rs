//! The few POSIX calls `std` does not offer, each behind a small safe function: `fork` and
//! `_exit` (stage 2), a `SIGCHLD` handler that reaps children and counts the live ones
//! (stage 2), `poll` and `epoll` (stage 4's parker, the tunnels), and the signals of a running proxy (shutdown,
//! reload, log reopening: `lifecycle`).
//!
//! This is the only module with `unsafe` code, so every way it can go wrong is in one place.
//! Each `unsafe` block says why it is sound.
//!
//! Linux is the target (the course runs there); the calls are POSIX, except the `/proc` check
//! in [`fork`] and the `errno` location, which are Linux's.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Which side of a `fork` this process is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    /// The original process; the child has this process id.
    Parent(libc::pid_t),
    /// The new process. It must end with [`exit_child`], never by returning into the code
    /// that called `fork` (that code is the parent's accept loop).
    Child,
}

/// Forks the process, but only if it has a single thread.
///
/// After `fork`, the child has a copy of every lock but only the thread that called `fork`.
/// A lock that another thread held at that instant (the allocator's, stdout's, the logger's)
/// stays locked forever in the child, and the child's next `malloc` or `println!` deadlocks.
/// POSIX therefore allows only async-signal-safe calls in the child of a multi-threaded
/// process, which rules out nearly all Rust code. Refusing to fork then is what makes this
/// function safe to call.
pub fn fork() -> io::Result<Fork> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork a process with {threads} threads: the child could inherit a \
             lock held by another thread and deadlock"
        )));
    }
    // SAFETY: the process has exactly one thread (checked above; only this thread could start
    // another, and it is busy here), so no lock can be held by a thread the child lacks, and
    // the child may run ordinary code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// Ends a forked child at once with `code`, without running destructors, `atexit` handlers or
/// flushing buffers: those belong to the parent's state, which the child only has a copy of
/// (flushing a copied stdout buffer would print the parent's pending output twice).
pub fn exit_child(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe, takes no pointers and never returns.
    unsafe { libc::_exit(code) }
}

/// Closes a raw file descriptor inherited by a forked child.
///
/// # Safety
///
/// Whoever owns `fd` (a `TcpListener`, say) must never use or close it again. That holds in a
/// forked child that ends with [`exit_child`]: the owner's destructor never runs there.
pub unsafe fn close_inherited(fd: RawFd) {
    // SAFETY: by the caller's promise nobody uses `fd` afterwards; a failed close changes
    // nothing we rely on.
    unsafe {
        libc::close(fd);
    }
}

/// Waits for one child to end (a blocking `waitpid`), retrying when a signal interrupts.
pub fn wait_child(pid: libc::pid_t) -> io::Result<()> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid, writable `c_int` for the duration of the call.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Threads of this process, from `/proc/self/task` (one entry per thread).
fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Children forked with [`Reaper::fork`] that have not been reaped yet. A static because the
/// signal handler can reach nothing else.
static LIVE_CHILDREN: AtomicUsize = AtomicUsize::new(0);
static REAPER_INSTALLED: AtomicBool = AtomicBool::new(false);

/// Proof that the `SIGCHLD` handler is installed: every child that ends is reaped (no zombie
/// is left) and leaves the live count, whatever the main loop is doing at the time.
#[derive(Debug, Clone, Copy)]
pub struct Reaper {
    _private: (),
}

impl Reaper {
    /// Installs the `SIGCHLD` handler (once per process; later calls return the same proof).
    pub fn install() -> io::Result<Reaper> {
        if !REAPER_INSTALLED.swap(true, Ordering::SeqCst) {
            // SAFETY: `action` is fully initialised (zeroed, then the handler, an empty mask
            // and flags set) before `sigaction` reads it; the handler is an `extern "C" fn`
            // that only makes async-signal-safe calls.
            let installed = unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = reap_children as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut action.sa_mask);
                // SA_RESTART: system calls the signal interrupts (accept, read) resume instead
                // of failing with EINTR. SA_NOCLDSTOP: a stopped child is not an ended one.
                action.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
                libc::sigaction(libc::SIGCHLD, &action, ptr::null_mut())
            };
            if installed != 0 {
                REAPER_INSTALLED.store(false, Ordering::SeqCst);
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Reaper { _private: () })
    }

    /// Children started with [`Reaper::fork`] still running (or ended but not yet reaped).
    pub fn live(&self) -> usize {
        LIVE_CHILDREN.load(Ordering::SeqCst)
    }

    /// Forks a counted child (see [`fork`] for when forking is refused).
    pub fn fork(&self) -> io::Result<Fork> {
        // Counted before the fork: a child that ends at once is reaped by the handler, which
        // must find it counted, or the count would wrap below zero.
        LIVE_CHILDREN.fetch_add(1, Ordering::SeqCst);
        let forked = fork();
        if forked.is_err() {
            LIVE_CHILDREN.fetch_sub(1, Ordering::SeqCst);
        }
        forked
    }

    /// Blocks until fewer than `max` counted children are alive. Each child's life is bounded
    /// by the relay's timeouts, so this wait is too.
    pub fn wait_below(&self, max: usize) {
        crate::exercise::stub!("Reaper::wait_below");
        if self.live() < max {
            return;
        }
        // Checking the count and then waiting for a signal would miss a child that ends in
        // between, and wait for the next one instead. So SIGCHLD is blocked while checking, and
        // `sigsuspend` unblocks it and waits in one atomic step.
        //
        // SAFETY: every sigset_t is initialised by sigemptyset or sigprocmask before use and
        // lives on this stack for the duration of the calls.
        unsafe {
            let mut block: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut block);
            libc::sigaddset(&mut block, libc::SIGCHLD);
            libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut previous);
            let mut during_wait = previous;
            libc::sigdelset(&mut during_wait, libc::SIGCHLD);
            while self.live() >= max {
                libc::sigsuspend(&during_wait);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &previous, ptr::null_mut());
        }
    }
}

/// The `SIGCHLD` handler: reaps every child that has ended (several may end before the signal
/// is delivered; signals do not queue) and decrements the live count for each.
extern "C" fn reap_children(_signal: libc::c_int) {
    crate::exercise::stub!("reap_children");
    // The interrupted code may be about to read errno, and waitpid sets it.
    let saved_errno = errno();
    loop {
        let mut status = 0;
        // SAFETY: waitpid is async-signal-safe; `status` is a valid `c_int`.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            break; // 0: children remain but none has ended; -1: no children left.
        }
        // Lock-free atomics are async-signal-safe. Saturating, so a child not forked through
        // `Reaper::fork` cannot wrap the count.
        let _ = LIVE_CHILDREN.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            Some(n.saturating_sub(1))
        });
    }
    set_errno(saved_errno);
}

fn errno() -> libc::c_int {
    // SAFETY: `__errno_location` returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: libc::c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value }
}

/// Waits until at least one of `fds` is readable (data, end of stream or an error is pending),
/// or until `timeout` passes. Returns one flag per descriptor, in order.
///
/// A signal that interrupts the wait counts as a timeout: callers loop anyway.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<Vec<bool>> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Round up, so a deadline 0.4 ms away does not turn into a busy loop of 0 ms polls.
    let millis = timeout.as_micros().div_ceil(1000);
    let millis = libc::c_int::try_from(millis).unwrap_or(libc::c_int::MAX);
    // SAFETY: `polled` is a valid array of `polled.len()` pollfd structs for the whole call;
    // the descriptors are borrowed, so they stay open until it returns.
    let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, millis) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(err);
    }
    let ready = libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
    Ok(polled.iter().map(|p| p.revents & ready != 0).collect())
}

/// What [`wait_ready`] is to wait for on one descriptor; `None` leaves it out of the wait
/// (poll then reports nothing for it, not even a hang-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
}

/// What [`wait_ready`] found on one descriptor: `readable` includes the end of the stream
/// and errors (a read reports them), `writable` includes errors (a write reports them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
}

/// Waits until one of `fds` is ready for what its [`Interest`] asks, or `timeout` passes; one
/// answer per descriptor, in order. A descriptor with no interest is not watched at all. A
/// signal that interrupts the wait counts as a timeout: callers loop anyway.
pub fn wait_ready(fds: &[(BorrowedFd<'_>, Interest)], timeout: Duration) -> io::Result<Vec<Ready>> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, interest)| {
            let mut events = 0;
            if interest.read {
                events |= libc::POLLIN;
            }
            if interest.write {
                events |= libc::POLLOUT;
            }
            libc::pollfd {
                // A negative descriptor is skipped by poll (POSIX).
                fd: if events == 0 { -1 } else { fd.as_raw_fd() },
                events,
                revents: 0,
            }
        })
        .collect();
    let millis = timeout.as_micros().div_ceil(1000);
    let millis = libc::c_int::try_from(millis).unwrap_or(libc::c_int::MAX);
    // SAFETY: `polled` is a valid array of `polled.len()` pollfd structs for the whole call;
    // the descriptors are borrowed, so they stay open until it returns.
    let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, millis) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![Ready::default(); fds.len()]);
        }
        return Err(err);
    }
    let failed = libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
    Ok(polled
        .iter()
        .map(|p| Ready {
            readable: p.revents & (libc::POLLIN | failed) != 0,
            writable: p.revents & (libc::POLLOUT | failed) != 0,
        })
        .collect())
}

/// Whether `fd` has something to read right now, without waiting.
pub fn readable_now(fd: BorrowedFd<'_>) -> bool {
    poll_now(fd).is_ok_and(|ready| ready)
}

/// Whether one descriptor can be read without waiting (data, end of stream, or an error
/// waiting to be reported), asked with one `poll` and no allocation: this runs once or twice
/// per request. An interrupted call is asked again; any other failure is the caller's to judge.
pub fn poll_now(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut polled = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // Bounded: only a signal arriving at each attempt could keep it looping.
    for _ in 0..16 {
        // SAFETY: `polled` is one valid pollfd for the whole call; the descriptor is
        // borrowed, so it stays open until the call returns.
        let n = unsafe { libc::poll(&mut polled, 1, 0) };
        if n >= 0 {
            let ready = libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
            return Ok(polled.revents & ready != 0);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Err(io::Error::from(io::ErrorKind::Interrupted))
}

/// Reads what a socket holds right now, without waiting and without touching its blocking
/// mode: `Ok(Some(n))` for `n` bytes (0 at the end of the stream), `Ok(None)` when nothing has
/// arrived. One `recv(MSG_DONTWAIT)`; an interrupted call is made again.
pub fn recv_now(fd: BorrowedFd<'_>, out: &mut [u8]) -> io::Result<Option<usize>> {
    // Bounded: only a signal arriving at each attempt could keep it looping.
    for _ in 0..16 {
        // SAFETY: `out` is valid for writes of `out.len()` bytes for the whole call, and the
        // descriptor is borrowed, so it stays open until the call returns.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                out.as_mut_ptr().cast(),
                out.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::WouldBlock => return Ok(None),
            io::ErrorKind::Interrupted => {}
            _ => return Err(err),
        }
    }
    Err(io::Error::from(io::ErrorKind::Interrupted))
}

/// An edge-triggered `epoll` set (`EPOLLET`): stage 4's parker. A descriptor is added once,
/// for as long as it is open, and its token is reported each time new bytes arrive (or the
/// peer closes), whoever holds the connection then. So parking a connection again costs no
/// system call at all; the price is a report, now and then, for a connection that a worker
/// is reading anyway, which the parker notes and the worker checks (see `parker.rs`).
///
/// A descriptor that is closed leaves the set by itself (it is never `dup`ed here).
#[derive(Debug)]
pub struct ReadySet {
    epoll: OwnedFd,
}

impl ReadySet {
    pub fn new() -> io::Result<ReadySet> {
        // SAFETY: no pointers; a negative result is an error, anything else a new descriptor
        // that nothing else owns.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(ReadySet {
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Reports `token` whenever bytes arrive on `fd`, the peer closes it or it fails, from now
    /// until it is closed; once at once if it is readable already.
    pub fn watch(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: `event` is valid for the call; both descriptors are open (one owned, one
        // borrowed) until it returns.
        let n = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut event,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` for reports, and appends the tokens of at most `max` of them
    /// (256 at most) to `tokens`. A signal that interrupts the wait counts as a timeout.
    pub fn wait(&self, tokens: &mut Vec<u64>, max: usize, timeout: Duration) -> io::Result<()> {
        // On the stack: this runs at every wake-up of the parker, so no allocation. And not
        // zeroed: the kernel writes the entries it reports, where zeroing them cost 3 KiB of
        // writes (on x86_64) at every wake-up.
        const MOST: usize = 256;
        let mut events = [const { MaybeUninit::<libc::epoll_event>::uninit() }; MOST];
        let millis = timeout.as_micros().div_ceil(1000);
        let millis = libc::c_int::try_from(millis).unwrap_or(libc::c_int::MAX);
        let len = max.clamp(1, MOST) as libc::c_int;
        // SAFETY: `events` holds `len` writable entries for the whole call.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr().cast(),
                len,
                millis,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::Interrupted => Ok(()),
                _ => Err(err),
            };
        }
        // SAFETY: `epoll_wait` initialised the first `n` entries (n <= len <= MOST).
        tokens.extend(
            events[..n as usize]
                .iter()
                .map(|e| unsafe { e.assume_init_ref().u64 }),
        );
        Ok(())
    }
}

/// A wake-up another thread can send to one blocked in `poll` or `epoll` (an `eventfd`):
/// any number of [`wake`](Wakeup::wake) calls before the sleeper looks count as one.
#[derive(Debug)]
pub struct Wakeup {
    fd: OwnedFd,
}

impl Wakeup {
    pub fn new() -> io::Result<Wakeup> {
        // SAFETY: no pointers; a negative result is an error, anything else a new descriptor.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(Wakeup {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of `one`. It fails only if the counter would overflow,
        // which leaves a wake-up pending anyway.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), ptr::addr_of!(one).cast(), 8) };
    }

    /// Takes the pending wake-ups, if any, so the next wait sleeps again.
    pub fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads at most 8 bytes into `count`; non-blocking, so it returns at once.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), ptr::addr_of_mut!(count).cast(), 8) };
    }
}

impl AsFd for Wakeup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A set of signals that the process takes synchronously, with [`wait_signal`], instead of
/// through a handler.
#[derive(Clone, Copy)]
pub struct SignalSet {
    set: libc::sigset_t,
}

impl std::fmt::Debug for SignalSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignalSet")
    }
}

/// Blocks `signals` in the calling thread, and so in every thread it starts afterwards (a new
/// thread inherits its creator's mask). Called first thing in `main`, before any thread
/// exists, it makes the signals reach the process only through [`wait_signal`]: no handler
/// ever interrupts a request thread's `read` with `EINTR` (which `SA_RESTART` does not prevent
/// on a socket with a timeout), and no async-signal-safety rules apply to what is done about
/// a signal.
pub fn block_signals(signals: &[libc::c_int]) -> io::Result<SignalSet> {
    // SAFETY: `set` is initialised by sigemptyset before sigaddset and pthread_sigmask read
    // it; it lives on this stack for the duration of the calls.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            if libc::sigaddset(&mut set, signal) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let failed = libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut());
        if failed != 0 {
            return Err(io::Error::from_raw_os_error(failed));
        }
        Ok(SignalSet { set })
    }
}

/// Waits until one of the signals of `set` (blocked with [`block_signals`]) is pending and
/// takes it; returns its number.
pub fn wait_signal(set: &SignalSet) -> io::Result<libc::c_int> {
    let mut signal: libc::c_int = 0;
    // SAFETY: `set.set` is an initialised sigset_t and `signal` a writable c_int, both alive
    // for the whole call.
    let failed = unsafe { libc::sigwait(&set.set, &mut signal) };
    if failed != 0 {
        return Err(io::Error::from_raw_os_error(failed));
    }
    Ok(signal)
}

/// Stops a listening socket: a thread blocked in `accept` on it wakes at once (with `EINVAL`),
/// connections waiting in its backlog are reset, and new ones are refused, while the
/// descriptor stays open (so no other thread can be handed the same number by a racing
/// `open`). This is Linux's behaviour for `shutdown(2)` on a listener; the BSDs answer
/// `ENOTCONN` and leave `accept` blocked.
pub fn shutdown_listener(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: the descriptor is borrowed, so it is open for the whole call; shutdown takes no
    // pointers.
    if unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes closing `fd` reset its TCP connection (`SO_LINGER` on, zero seconds): what is left in
/// the send buffer is dropped at once instead of drained to a peer that may take minutes to
/// read it (nginx's `reset_timedout_connection`).
pub fn reset_on_close(fd: BorrowedFd<'_>) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a descriptor borrowed for the call, and a pointer to a `linger` with its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::sync::mpsc;

    #[test]
    fn fork_refuses_a_multi_threaded_process() {
        // The test harness already runs threads; one more makes sure of it.
        let (tx, rx) = mpsc::channel::<()>();
        let helper = std::thread::spawn(move || {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        });
        let err = fork().expect_err("a process with two threads must not fork");
        assert!(err.to_string().contains("threads"), "{err}");
        drop(tx);
        helper.join().unwrap();
    }

    #[test]
    fn readable_means_data_or_end_of_stream() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert!(!readable_now(server.as_fd()), "nothing sent yet");
        client.write_all(b"x").unwrap();
        let ready = wait_readable(&[server.as_fd()], Duration::from_secs(10)).unwrap();
        assert_eq!(ready, vec![true]);
        let (other, _) = {
            let late = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            drop(late); // closed at once: end of stream is "readable" too
            listener.accept().unwrap()
        };
        let ready = wait_readable(&[other.as_fd()], Duration::from_secs(10)).unwrap();
        assert_eq!(ready, vec![true]);
    }

    #[test]
    fn wait_readable_times_out_with_nothing_ready() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let ready = wait_readable(&[server.as_fd()], Duration::from_millis(1)).unwrap();
        assert_eq!(ready, vec![false]);
    }

    #[test]
    fn a_watched_socket_is_reported_at_each_arrival_until_closed() {
        let set = ReadySet::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        set.watch(server.as_fd(), 7).unwrap();
        let mut tokens = Vec::new();
        let patience = Duration::from_secs(30);
        // Nothing yet: nothing reported.
        set.wait(&mut tokens, 8, Duration::from_millis(1)).unwrap();
        assert!(tokens.is_empty());
        // Each arrival is reported once, whether or not the bytes before it were read.
        for _ in 0..3 {
            client.write_all(b"x").unwrap();
            set.wait(&mut tokens, 8, patience).unwrap();
            assert_eq!(tokens, [7]);
            tokens.clear();
            set.wait(&mut tokens, 8, Duration::from_millis(1)).unwrap();
            assert!(tokens.is_empty(), "reported twice for one arrival");
        }
        // The peer closing is an arrival too.
        drop(client);
        set.wait(&mut tokens, 8, patience).unwrap();
        assert_eq!(tokens, [7]);
    }

    #[test]
    fn a_watched_wakeup_is_reported_at_every_wake() {
        let set = ReadySet::new().unwrap();
        let wake = Wakeup::new().unwrap();
        set.watch(wake.as_fd(), 1).unwrap();
        let mut tokens = Vec::new();
        for _ in 0..3 {
            wake.wake();
            set.wait(&mut tokens, 8, Duration::from_secs(30)).unwrap();
            assert_eq!(tokens, [1]);
            tokens.clear();
            wake.clear();
        }
    }
}
