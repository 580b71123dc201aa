//! The parker: one thread that watches waiting connections (idle keep-alive ones, and those
//! whose request head is still arriving) with `poll(2)`, and hands each back to the pool as
//! soon as it has more to read.
//!
//! This is the heart of an event loop, reduced to one job. Workers send connections here
//! through a channel; since the parker is usually blocked in `poll`, each send is followed by
//! a byte on a socket pair whose reading end is in the `poll` set, so the new connection is
//! watched at once (the "self-pipe" trick).

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::conn::{Conn, ConnGauges};
use super::refuse_now;
use crate::relay::Reply;
use crate::sys;

/// Longest single `poll`: a safety net only, every event of interest wakes it earlier.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// The workers' side: park a connection, or stop the parker.
pub(super) struct ParkerHandle {
    to_parker: Sender<Conn>,
    wake: UnixStream,
    stop: Arc<AtomicBool>,
}

impl ParkerHandle {
    /// Hands an idle connection to the parker. If the parker is gone, the connection is
    /// dropped, which closes it: a client must expect an idle keep-alive connection to close.
    pub(super) fn park(&self, conn: Conn) {
        if self.to_parker.send(conn).is_ok() {
            self.wake();
        }
    }

    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        // Non-blocking: when the socket buffer is full, a wake-up is pending anyway.
        let _ = (&self.wake).write(&[1]);
    }
}

/// The parker's side, until its thread starts.
pub(super) struct Parker {
    arrivals: Receiver<Conn>,
    wake: UnixStream,
    stop: Arc<AtomicBool>,
    max_parked: usize,
    gauges: Arc<ConnGauges>,
}

impl Parker {
    /// A parker and the handle that feeds it; nothing runs until [`Parker::spawn`].
    pub(super) fn new(
        max_parked: usize,
        gauges: Arc<ConnGauges>,
    ) -> io::Result<(ParkerHandle, Parker)> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let (to_parker, arrivals) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = ParkerHandle {
            to_parker,
            wake: wake_tx,
            stop: Arc::clone(&stop),
        };
        let parker = Parker {
            arrivals,
            wake: wake_rx,
            stop,
            max_parked: max_parked.max(1),
            gauges,
        };
        Ok((handle, parker))
    }

    /// Starts the parker thread; `ready` receives each connection whose next request arrived
    /// (or whose client closed: a worker finds that out in one read).
    pub(super) fn spawn<F>(self, ready: F) -> io::Result<()>
    where
        F: Fn(Conn) + Send + 'static,
    {
        thread::Builder::new()
            .name("parker".to_owned())
            .spawn(move || self.run(ready))
            .map(drop)
    }

    fn run<F: Fn(Conn)>(self, ready: F) {
        let mut parked: Vec<Conn> = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            self.take_arrivals(&mut parked, &ready);
            self.show(&parked);
            let now = Instant::now();
            let timeout = parked
                .iter()
                .map(|c| c.deadline().saturating_duration_since(now))
                .min()
                .unwrap_or(MAX_WAIT)
                .min(MAX_WAIT);
            let flags = {
                let mut fds = Vec::with_capacity(parked.len() + 1);
                fds.push(self.wake.as_fd());
                fds.extend(parked.iter().map(|c| c.stream.get_ref().as_fd()));
                match sys::wait_readable(&fds, timeout) {
                    Ok(flags) => flags,
                    Err(err) => {
                        // Nothing transient is expected here (EINTR is handled below us);
                        // pause rather than spin if it happens anyway.
                        log::error!("parker: poll failed: {err}");
                        thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                }
            };
            if flags[0] {
                self.drain_wake();
            }
            let now = Instant::now();
            let mut still_idle = Vec::with_capacity(parked.len());
            for (conn, readable) in parked.drain(..).zip(flags.into_iter().skip(1)) {
                if readable {
                    ready(conn);
                } else if conn.deadline() <= now {
                    expire(conn);
                } else {
                    still_idle.push(conn);
                }
            }
            parked = still_idle;
            self.show(&parked);
        }
    }

    /// Moves newly parked connections into `parked`, closing the longest-idle ones beyond the
    /// cap (as nginx reuses its idle keep-alive connections when it runs short).
    fn take_arrivals<F: Fn(Conn)>(&self, parked: &mut Vec<Conn>, ready: &F) {
        // Bounded by what the workers sent; a disconnected channel just has nothing more.
        while let Ok(conn) = self.arrivals.try_recv() {
            // Bytes inside the stream would never wake `poll`: such a connection is ready.
            if conn.has_hidden_bytes() {
                ready(conn);
            } else {
                parked.push(conn);
            }
        }
        while parked.len() > self.max_parked {
            let oldest = parked
                .iter()
                .enumerate()
                .min_by_key(|(_, c)| c.idle_since)
                .map(|(i, _)| i);
            if let Some(i) = oldest {
                let conn = parked.swap_remove(i);
                log::debug!("{}: parked connections at the cap, closed", conn.peer);
                close_quietly(conn);
            }
        }
    }

    /// Updates the gauges: after new arrivals, and after each `poll` round.
    fn show(&self, parked: &[Conn]) {
        let idle = parked.iter().filter(|c| c.head_since.is_none()).count();
        self.gauges.parked.store(parked.len(), Ordering::Relaxed);
        self.gauges.idle.store(idle, Ordering::Relaxed);
    }

    fn drain_wake(&self) {
        let mut sink = [0u8; 256];
        // Bounded: the socket buffer holds a finite number of wake-up bytes.
        for _ in 0..1024 {
            match (&self.wake).read(&mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
}

/// Ends a connection whose wait is over: an idle one, or one still in its TLS handshake, is
/// just closed (as nginx does); one that started a head and did not finish it in time gets
/// `408`, as from a worker reading it.
fn expire(conn: Conn) {
    let peer = conn.peer;
    if conn.handshake_deadline().is_some() {
        log::debug!("{peer}: TLS handshake not finished in time, closed");
        return close_quietly(conn);
    }
    if conn.head_since.is_none() {
        log::debug!("{peer}: idle keep-alive connection closed");
        return close_quietly(conn);
    }
    log::debug!("{peer}: request head not finished in time");
    let handler = conn.handler;
    let (stream, _) = conn.stream.into_parts();
    refuse_now(stream, peer, &Reply::error(408), &*handler);
}

/// Closes a parked connection without ever blocking the parker (a TLS stream still says
/// `close_notify`).
fn close_quietly(mut conn: Conn) {
    if conn.stream.get_ref().set_nonblocking(true).is_ok() {
        conn.stream.finish();
    }
}
