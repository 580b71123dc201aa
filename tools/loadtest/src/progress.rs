//! The live progress line on stderr, redrawn about four times a second.
//!
//! Only drawn when stderr is a terminal: in a pipe or a CI log a line rewritten with `\r`
//! is noise. Workers bump two relaxed atomic counters; the printer only reads them.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub const TICK: Duration = Duration::from_millis(250);

/// Shared by all workers: requests finished (with or without a response) and errors.
#[derive(Debug, Default)]
pub struct Counters {
    pub done: AtomicU64,
    pub errors: AtomicU64,
}

impl Counters {
    pub fn finished(&self, error: bool) {
        self.add(1, u64::from(error));
    }

    /// Several requests at once: an event loop counts locally and adds every few ms, so
    /// its threads do not contend for these cache lines on every request.
    pub fn add(&self, done: u64, errors: u64) {
        if done > 0 {
            self.done.fetch_add(done, Ordering::Relaxed);
        }
        if errors > 0 {
            self.errors.fetch_add(errors, Ordering::Relaxed);
        }
    }
}

/// `[  3.2s] 12345/20000 requests   4012 req/s   0 errors`
pub fn format_line(
    elapsed: Duration,
    done: u64,
    total: Option<u64>,
    rate: f64,
    errors: u64,
) -> String {
    let total = total.map_or_else(String::new, |t| format!("/{t}"));
    format!(
        "[{:>6.1}s] {done}{total} requests  {rate:>8.0} req/s  {errors} errors",
        elapsed.as_secs_f64()
    )
}

/// Redraws the line until `done` is disconnected (the run dropped its sender), then clears
/// it. Bounded: the run always ends, and with it the sender.
pub fn draw_until(done: &Receiver<()>, counters: &Counters, total: Option<u64>, start: Instant) {
    let mut stderr = std::io::stderr();
    let mut last = (start, 0u64);
    // Anything but a timeout (in practice: the sender was dropped) ends the line.
    while let Err(RecvTimeoutError::Timeout) = done.recv_timeout(TICK) {
        let now = Instant::now();
        let finished = counters.done.load(Ordering::Relaxed);
        let dt = now.duration_since(last.0).as_secs_f64();
        let rate = if dt > 0.0 {
            finished.saturating_sub(last.1) as f64 / dt
        } else {
            0.0
        };
        last = (now, finished);
        let errors = counters.errors.load(Ordering::Relaxed);
        let line = format_line(now.duration_since(start), finished, total, rate, errors);
        // Erase to the end of the line: the new text may be shorter than the old.
        let _ = write!(stderr, "\r{line}\x1b[K");
        let _ = stderr.flush();
    }
    let _ = write!(stderr, "\r\x1b[K");
    let _ = stderr.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shape() {
        let line = format_line(Duration::from_millis(3300), 1234, Some(5000), 4012.4, 2);
        assert_eq!(
            line,
            "[   3.3s] 1234/5000 requests      4012 req/s  2 errors"
        );
        let open_ended = format_line(Duration::from_secs(1), 10, None, 10.0, 0);
        assert!(open_ended.contains(" 10 requests"));
    }

    #[test]
    fn counters_count() {
        let c = Counters::default();
        c.finished(false);
        c.finished(true);
        assert_eq!(c.done.load(Ordering::Relaxed), 2);
        assert_eq!(c.errors.load(Ordering::Relaxed), 1);
    }
}
