//! The operator's signals as events, handled on one thread of its own.
//!
//! The signals are blocked in every thread ([`Signals::block`] runs before any thread is
//! started, and threads inherit the mask) and taken with `sigwait` by the `signals` thread.
//! So no handler interrupts a request thread in the middle of a `read` (a socket with a
//! timeout fails with `EINTR` even under `SA_RESTART`), and what a signal triggers (building a
//! relay, opening a file, logging) is ordinary code rather than the few async-signal-safe
//! calls a handler may make.

use std::io;

use crate::sys::{self, SignalSet};

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `SIGTERM` or `SIGINT`, the first time.
    Shutdown,
    /// `SIGHUP`.
    Reload,
    /// `SIGUSR1`.
    ReopenLog,
}

/// The signals this module takes, blocked in the calling thread and its future threads.
#[derive(Debug)]
pub struct Signals {
    set: SignalSet,
}

impl Signals {
    /// Blocks `SIGTERM`, `SIGINT`, `SIGHUP` and `SIGUSR1`. Call it before starting any thread:
    /// a thread started earlier still has them unblocked, and the kernel may deliver one there
    /// with its default action (ending the process).
    pub fn block() -> io::Result<Signals> {
        let set = sys::block_signals(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1])?;
        Ok(Signals { set })
    }

    /// Starts the `signals` thread, which calls `on_event` for each signal, one at a time. A
    /// second `SIGTERM`/`SIGINT` does not reach `on_event`: it ends the process at once with
    /// [`super::EXIT_FORCED`], so that an operator can always stop a shutdown that hangs.
    pub fn spawn<F>(self, mut on_event: F) -> io::Result<()>
    where
        F: FnMut(Event) + Send + 'static,
    {
        std::thread::Builder::new()
            .name("signals".to_owned())
            .spawn(move || {
                let mut stopping = false;
                loop {
                    let signal = match sys::wait_signal(&self.set) {
                        Ok(signal) => signal,
                        Err(err) => {
                            // sigwait fails only for an invalid set, which cannot change.
                            log::error!("signals: sigwait failed: {err}; signals are ignored");
                            return;
                        }
                    };
                    match signal {
                        libc::SIGTERM | libc::SIGINT if stopping => {
                            log::warn!("second stop signal: exiting now");
                            std::process::exit(super::EXIT_FORCED);
                        }
                        libc::SIGTERM | libc::SIGINT => {
                            stopping = true;
                            on_event(Event::Shutdown);
                        }
                        libc::SIGHUP => on_event(Event::Reload),
                        libc::SIGUSR1 => on_event(Event::ReopenLog),
                        _ => {}
                    }
                }
            })
            .map(drop)
    }
}
