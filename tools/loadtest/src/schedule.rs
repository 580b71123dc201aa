//! The open-loop schedule (`--rate R`): request `i` is due at `start + i/R`.
//!
//! A closed-loop tester only sends when a previous response came back, so a server that
//! stalls for a second also stalls the tester, and the requests that *would* have been sent
//! during that second are never measured ("coordinated omission"). In open loop the due
//! times are fixed in advance; a worker that picks request `i` late still measures its latency
//! from the due time, so the waiting a real user would have done is counted.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    rate: f64,
}

impl Schedule {
    /// `rate` is requests per second over all workers; it must be positive and finite (the
    /// CLI checks that).
    pub fn new(start: Instant, rate: f64) -> Self {
        Schedule { start, rate }
    }

    /// Offset of request `i` from the start: `i / rate` seconds. Computed from `i`, not by
    /// adding intervals, so rounding errors do not accumulate over a long run.
    pub fn offset(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    pub fn due(&self, i: u64) -> Instant {
        self.start + self.offset(i)
    }

    /// How many requests fall due within `duration` of the start: `ceil(duration * rate)`
    /// (request 0 is due at once, the last strictly before `duration`).
    pub fn count_within(&self, duration: Duration) -> u64 {
        (duration.as_secs_f64() * self.rate).ceil() as u64
    }
}

/// Latency measured from when the request was due, not from when a worker got to it.
pub fn latency_from_due(due: Instant, finished: Instant) -> Duration {
    finished.saturating_duration_since(due)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_follow_the_rate() {
        let start = Instant::now();
        let s = Schedule::new(start, 100.0);
        for i in 0..=1000u64 {
            assert_eq!(s.offset(i), Duration::from_millis(i * 10), "request {i}");
            assert_eq!(s.due(i), start + Duration::from_millis(i * 10));
        }
        let fractional = Schedule::new(start, 3.0);
        let third = fractional.offset(1).as_nanos();
        assert!((333_333_333..=333_333_334).contains(&third));
        // No drift: the 3000th request is due at exactly 1000 s.
        assert_eq!(fractional.offset(3000), Duration::from_secs(1000));
    }

    #[test]
    fn count_within_a_duration() {
        let s = Schedule::new(Instant::now(), 100.0);
        assert_eq!(s.count_within(Duration::from_secs(2)), 200);
        assert_eq!(s.count_within(Duration::from_millis(2005)), 201);
        assert_eq!(s.count_within(Duration::ZERO), 0);
        let slow = Schedule::new(Instant::now(), 0.5);
        assert_eq!(slow.count_within(Duration::from_secs(3)), 2);
    }

    #[test]
    fn late_worker_measures_from_due_time() {
        let start = Instant::now();
        let s = Schedule::new(start, 10.0);
        let due = s.due(5); // start + 500 ms
                            // The worker only got to request 5 at +800 ms, and the response came at +830 ms.
        let picked_up = start + Duration::from_millis(800);
        let finished = picked_up + Duration::from_millis(30);
        assert_eq!(latency_from_due(due, finished), Duration::from_millis(330));
        // An early worker waits for the due time, so only service time counts.
        assert_eq!(
            latency_from_due(due, due + Duration::from_millis(30)),
            Duration::from_millis(30)
        );
        // Never negative.
        assert_eq!(latency_from_due(due, start), Duration::ZERO);
    }
}
