//! The slow-reader rule: a client must take a response at a minimum average rate, or be cut
//! off.
//!
//! A per-write timeout (nginx `send_timeout`) only catches a client that stops reading. One
//! that reads steadily but slowly, a few kilobytes a second, resets it on every write and
//! holds its worker for as long as the body lasts: a 10 MB response read at 10 KB/s holds a
//! pool worker for seventeen minutes, and a few hundred such readers hold all of them (the
//! "slow read" attack, the mirror image of slowloris).
//!
//! The rule chosen: in every `window` of time spent *waiting for the client* (blocked in a
//! write), the client must take at least `min_rate * window` bytes. Why this shape, and not a
//! deadline on the whole response:
//!
//! - only time blocked on the client counts, so a backend that sends slowly (a stream of
//!   server-sent events, a long poll) is never blamed on its reader;
//! - the window is the send timeout itself, so a client that pauses is allowed exactly what
//!   `send_timeout` always allowed it, and no second duration has to be tuned;
//! - a large download to a fast client is never cut, however long it takes in total;
//! - bytes that went into the socket buffers at once (megabytes on loopback) pass the first
//!   window but buy nothing after it, because every window starts again from zero.
//!
//! A client below the rate is cut off after at most two windows of waiting once its buffers
//! are full, and its worker is free again; one that takes nothing at all for a window is cut
//! off by the send timeout itself, the same way. Its connection is reset rather than closed: a
//! close would leave the kernel draining megabytes of buffered response to it at its own
//! pace (nginx's `reset_timedout_connection` does the same for a `send_timeout`).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::http::{BufStream, Socket};

/// Default for [`SendRate::min_bytes_per_sec`]: 16 KiB/s, 128 kbit/s. Slower than any link a
/// person browses on today (2G EDGE carries about twice that); a reader slower than this for
/// a whole window is far more likely to be holding a worker on purpose. `0` switches the
/// rule off, leaving only the per-write timeout.
pub const DEFAULT_MIN_SEND_RATE: u64 = 16 * 1024;

/// The minimum rate at which a client must take a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendRate {
    /// Bytes per second, averaged over each window; `0` for no minimum.
    pub min_bytes_per_sec: u64,
    /// Time spent waiting on the client over which the rate is averaged (the send timeout).
    pub window: Duration,
}

/// A client writer that enforces a [`SendRate`], for one response body.
pub(super) struct Paced<'a, S: Socket> {
    client: &'a mut BufStream<S>,
    rate: SendRate,
    peer: SocketAddr,
    /// Time blocked in writes, and bytes taken, since the current window began.
    waited: Duration,
    taken: u64,
}

impl<'a, S: Socket> Paced<'a, S> {
    pub(super) fn new(
        client: &'a mut BufStream<S>,
        rate: SendRate,
        peer: SocketAddr,
    ) -> Paced<'a, S> {
        Paced {
            client,
            rate,
            peer,
            waited: Duration::ZERO,
            taken: 0,
        }
    }

    /// Counts one write; at the end of a window, checks the rate and starts the next one.
    fn account(&mut self, bytes: usize, blocked: Duration) -> io::Result<()> {
        crate::exercise::stub!("Paced::account");
        self.waited += blocked;
        self.taken += bytes as u64;
        if self.rate.min_bytes_per_sec == 0 || self.waited < self.rate.window {
            return Ok(());
        }
        let needed = self.rate.min_bytes_per_sec as f64 * self.waited.as_secs_f64();
        if (self.taken as f64) < needed {
            log::warn!(
                "{}: client cut off: it took {} bytes in {:.1?} of waiting, below the \
                 minimum send rate of {} bytes/s",
                self.peer,
                self.taken,
                self.waited,
                self.rate.min_bytes_per_sec
            );
            self.reset_on_close();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client reads slower than the minimum send rate",
            ));
        }
        self.waited = Duration::ZERO;
        self.taken = 0;
        Ok(())
    }

    /// The outcome of one write: a send timeout that expired with nothing taken (the socket
    /// says `WouldBlock`) ends the response as the rate does, with a reset, or the kernel
    /// would go on feeding the megabytes already in its buffers to a client that stopped
    /// reading (the first window, filled at once, passes; the next write then times out).
    fn judge(&mut self, written: io::Result<usize>, started: Instant) -> io::Result<usize> {
        match written {
            Ok(n) => {
                self.account(n, started.elapsed())?;
                Ok(n)
            }
            Err(err) if is_timeout(&err) => {
                // A whole window of waiting: judged by the rate first, whose message says
                // more; a client that took enough before still stopped for a whole timeout.
                self.account(0, started.elapsed().max(self.rate.window))?;
                log::warn!(
                    "{}: client cut off: it took nothing for {:.1?} (the send timeout)",
                    self.peer,
                    started.elapsed()
                );
                self.reset_on_close();
                Err(err)
            }
            Err(err) => Err(err),
        }
    }

    fn reset_on_close(&self) {
        if let Err(err) = self.client.get_ref().reset_on_close() {
            log::debug!("{}: cannot make the close a reset: {err}", self.peer);
        }
    }
}

/// How a blocking write reports that its send timeout expired.
fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl<S: Socket> Write for Paced<'_, S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let started = Instant::now();
        let written = self.client.write(data);
        self.judge(written, started)
    }

    /// Passed on whole, so a head and a large body still leave in one `writev`.
    fn write_vectored(&mut self, parts: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let started = Instant::now();
        let written = self.client.write_vectored(parts);
        self.judge(written, started)
    }

    fn flush(&mut self) -> io::Result<()> {
        let started = Instant::now();
        self.client.flush()?;
        self.account(0, started.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Socket` that takes everything: time is passed to `account` by hand.
    struct Sink(Vec<u8>);
    impl io::Read for Sink {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Ok(0)
        }
    }
    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Socket for Sink {
        fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
    }

    fn paced(out: &mut BufStream<Sink>, min: u64) -> Paced<'_, Sink> {
        let rate = SendRate {
            min_bytes_per_sec: min,
            window: Duration::from_secs(1),
        };
        Paced::new(out, rate, "127.0.0.1:1".parse().unwrap())
    }

    #[test]
    fn the_rate_is_judged_per_window_of_waiting() {
        // (min rate, writes as (bytes, milliseconds blocked), whether the last is cut off)
        type Writes = &'static [(usize, u64)];
        let cases: &[(u64, Writes, bool)] = &[
            // Within the first window nothing is judged.
            (1000, &[(1, 900)], false),
            // A window ends below the rate.
            (1000, &[(10, 600), (10, 500)], true),
            // A window ends above it, and the next starts from zero.
            (1000, &[(2000, 1000), (10, 500)], false),
            (1000, &[(2000, 1000), (10, 500), (10, 600)], true),
            // Time not spent waiting does not count: many fast writes never end a window.
            (1000, &[(1, 0); 50], false),
            // No minimum: never cut off.
            (0, &[(0, 5000), (0, 5000)], false),
        ];
        for (min, writes, cut) in cases {
            let mut out = BufStream::new(Sink(Vec::new()));
            let mut pace = paced(&mut out, *min);
            let results: Vec<bool> = writes
                .iter()
                .map(|(bytes, blocked)| {
                    pace.account(*bytes, Duration::from_millis(*blocked))
                        .is_err()
                })
                .collect();
            let (last, before) = results.split_last().unwrap();
            assert!(before.iter().all(|e| !e), "{min} {writes:?}: cut off early");
            assert_eq!(last, cut, "{min} {writes:?}");
        }
    }

    /// A `Socket` whose every write times out, and that remembers being asked to reset.
    #[derive(Default)]
    struct Stalled {
        reset: std::cell::Cell<bool>,
    }
    impl io::Read for Stalled {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Ok(0)
        }
    }
    impl Write for Stalled {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::WouldBlock))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Socket for Stalled {
        fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
        fn reset_on_close(&self) -> io::Result<()> {
            self.reset.set(true);
            Ok(())
        }
    }

    #[test]
    fn a_write_whose_send_timeout_expires_ends_with_a_reset() {
        let mut out = BufStream::new(Stalled::default());
        let rate = SendRate {
            min_bytes_per_sec: 0, // even with the rate rule off
            window: Duration::from_secs(1),
        };
        let mut pace = Paced::new(&mut out, rate, "127.0.0.1:1".parse().unwrap());
        let err = pace.write(b"abc").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(out.get_ref().reset.get(), "the close is made a reset");
    }

    #[test]
    fn writes_pass_through() {
        let mut out = BufStream::new(Sink(Vec::new()));
        let mut pace = paced(&mut out, 1);
        pace.write_all(b"abc").unwrap();
        pace.flush().unwrap();
        assert_eq!(out.get_ref().0, b"abc");
    }
}
