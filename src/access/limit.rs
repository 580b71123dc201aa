//! Rate limits with nginx `limit_req` semantics, computed as GCRA (the generic cell rate
//! algorithm): one timestamp per client, the *theoretical arrival time* (TAT) at which the
//! client's budget would be whole again. With emission interval `T = 1 / rate` and tolerance
//! `tau = burst * T`, a request at `now` conforms when `TAT - now <= tau`; it then moves TAT to
//! `max(TAT, now) + T`. A client that keeps to the rate never builds up TAT; one that sends
//! `burst + 1` at once fills the tolerance, and is then allowed one request per `T`.
//!
//! `nodelay` (nginx's flag): requests within the burst are served at once. Without it, nginx
//! queues them so they leave at the rate; here a request within the burst is held in its
//! worker for `TAT - now` before it goes upstream (at most `tau`), which ties up a pool worker
//! for that long: keep `burst` small or use `nodelay` under real load.
//!
//! Memory is bounded: the table keeps at most `capacity` clients, least recently seen
//! evicted. An evicted client starts with a whole budget, which errs towards serving.
//!
//! Also nginx's `limit_conn`: a cap on requests in progress per client address.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

/// `10r/s` or `600r/m`: a number of requests per second or per minute, as nginx writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub requests: u64,
    /// The unit the rate was written in, in seconds (1 or 60), for `RateLimit-Policy`.
    pub per_secs: u64,
}

impl Rate {
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad = || format!("rate '{text}' must look like 10r/s or 600r/m");
        let (number, unit) = text.trim().split_once("r/").ok_or_else(bad)?;
        let per_secs = match unit {
            "s" => 1,
            "m" => 60,
            _ => return Err(bad()),
        };
        let requests: u64 = number.parse().map_err(|_| bad())?;
        if requests == 0 || requests > 1_000_000 {
            return Err(format!(
                "rate '{text}': from 1 to 1000000 requests per unit"
            ));
        }
        Ok(Rate { requests, per_secs })
    }

    /// The emission interval, in nanoseconds.
    fn interval_nanos(&self) -> u64 {
        self.per_secs * 1_000_000_000 / self.requests
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.per_secs == 60 { "m" } else { "s" };
        write!(f, "{}r/{unit}", self.requests)
    }
}

/// One limit as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSpec {
    pub rate: Rate,
    /// Requests beyond the rate accepted at once (nginx `burst`).
    pub burst: u64,
    pub nodelay: bool,
}

/// A limiter's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go on, after waiting `delay` (zero with `nodelay`); `remaining` requests could follow
    /// at once, and the budget is whole again after `reset`.
    Allow {
        delay: Duration,
        remaining: u64,
        reset: Duration,
    },
    /// Refused: a request conforms again after `retry_after`.
    Reject { retry_after: Duration },
}

/// The GCRA step, pure: the stored TAT (or none), the time, the limit; gives the decision
/// and the TAT to store (unchanged on a reject). Times are nanoseconds on any monotonic
/// clock, so tests run it on a made-up one.
pub fn gcra(tat: Option<u64>, now: u64, spec: &LimitSpec) -> (Decision, u64) {
    crate::exercise::stub!("gcra");
    let t = spec.rate.interval_nanos();
    let tau = t.saturating_mul(spec.burst);
    let tat = tat.unwrap_or(now).max(now);
    let ahead = tat - now; // how far the client is ahead of its rate
    if ahead > tau {
        let retry_after = Duration::from_nanos(ahead - tau);
        return (Decision::Reject { retry_after }, tat);
    }
    let new_tat = tat + t;
    let delay = if spec.nodelay {
        Duration::ZERO
    } else {
        Duration::from_nanos(ahead)
    };
    let used = new_tat - now;
    let remaining = (tau + t).saturating_sub(used) / t.max(1);
    let decision = Decision::Allow {
        delay,
        remaining,
        reset: Duration::from_nanos(used),
    };
    (decision, new_tat)
}

/// Monotonic nanoseconds since the limiter started.
pub trait Clock: Send + Sync {
    fn now_nanos(&self) -> u64;
}

/// The real clock.
#[derive(Debug)]
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A table of TATs keyed by client, bounded.
pub struct Limiter<K: Hash + Eq> {
    table: Mutex<LruCache<K, u64>>,
    clock: Box<dyn Clock>,
}

impl<K: Hash + Eq> Limiter<K> {
    pub fn new(capacity: NonZeroUsize, clock: Box<dyn Clock>) -> Limiter<K> {
        Limiter {
            table: Mutex::new(LruCache::new(capacity)),
            clock,
        }
    }

    pub fn decide(&self, key: K, spec: &LimitSpec) -> Decision {
        let now = self.clock.now_nanos();
        // A worker that panicked holding the lock left a table of plain numbers, still valid.
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let stored = table.get(&key).copied();
        let (decision, tat) = gcra(stored, now, spec);
        if stored != Some(tat) {
            table.put(key, tat);
        }
        decision
    }

    pub fn len(&self) -> usize {
        self.table.lock().map_or(0, |t| t.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// nginx `limit_conn`: requests in progress per client address. `enter` takes a slot and
/// `leave` gives it back (the logging phase, which runs once per exchange).
#[derive(Debug, Default)]
pub struct ConnLimit {
    max: u32,
    counts: Mutex<HashMap<IpAddr, u32>>,
}

impl ConnLimit {
    pub fn new(max: u32) -> ConnLimit {
        ConnLimit {
            max,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` may start one more request; if so it holds a slot until `leave`.
    pub fn enter(&self, ip: IpAddr) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max {
            return false;
        }
        *count += 1;
        true
    }

    pub fn leave(&self, ip: IpAddr) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&ip) {
            *count = count.saturating_sub(1);
            // Entries go when they reach zero, so the map holds only clients in progress.
            if *count == 0 {
                counts.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    struct FakeClock(Arc<AtomicU64>);
    impl Clock for FakeClock {
        fn now_nanos(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    fn spec(rate: &str, burst: u64, nodelay: bool) -> LimitSpec {
        LimitSpec {
            rate: Rate::parse(rate).unwrap(),
            burst,
            nodelay,
        }
    }

    #[test]
    fn rates_parse_like_nginx() {
        assert_eq!(Rate::parse("10r/s").unwrap().interval_nanos(), 100_000_000);
        assert_eq!(
            Rate::parse("60r/m").unwrap().interval_nanos(),
            1_000_000_000
        );
        for bad in ["10", "10r/h", "0r/s", "r/s", "-1r/s", "10 r/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        let s = spec("10r/s", 3, true);
        let mut tat = None;
        // Four at once: one for the rate, three for the burst.
        for i in 0..4 {
            let (d, t) = gcra(tat, 0, &s);
            assert!(
                matches!(d, Decision::Allow { remaining, .. } if remaining == 3 - i),
                "{d:?}"
            );
            tat = Some(t);
        }
        let (d, _) = gcra(tat, 0, &s);
        assert_eq!(
            d,
            Decision::Reject {
                retry_after: Duration::from_millis(100)
            }
        );
        // 100 ms later exactly one more conforms.
        let (d, t) = gcra(tat, 100_000_000, &s);
        assert!(matches!(d, Decision::Allow { .. }));
        let (d, _) = gcra(Some(t), 100_000_000, &s);
        assert!(matches!(d, Decision::Reject { .. }));
    }

    #[test]
    fn without_nodelay_the_burst_is_delayed_to_the_rate() {
        let s = spec("10r/s", 2, false);
        let (d1, t) = gcra(None, 0, &s);
        let (d2, t) = gcra(Some(t), 0, &s);
        let (d3, t) = gcra(Some(t), 0, &s);
        let (d4, _) = gcra(Some(t), 0, &s);
        let delay = |d: Decision| match d {
            Decision::Allow { delay, .. } => delay,
            Decision::Reject { .. } => panic!("rejected"),
        };
        assert_eq!(delay(d1), Duration::ZERO);
        assert_eq!(delay(d2), Duration::from_millis(100));
        assert_eq!(delay(d3), Duration::from_millis(200));
        assert!(matches!(d4, Decision::Reject { .. }));
    }

    /// Ten times the configured rate for 100 s of made-up time: what is allowed is the rate
    /// times the time plus the burst, within 1%.
    #[test]
    fn accuracy_at_ten_times_overload_is_within_one_percent() {
        let now = Arc::new(AtomicU64::new(0));
        let limiter: Limiter<u32> = Limiter::new(
            NonZeroUsize::new(16).unwrap(),
            Box::new(FakeClock(now.clone())),
        );
        let s = spec("50r/s", 10, true);
        let seconds = 100u64;
        let offered = 50 * 10 * seconds; // 10x overload
        let step = seconds * 1_000_000_000 / offered;
        let mut allowed = 0u64;
        for i in 0..offered {
            now.store(i * step, Ordering::Relaxed);
            if matches!(limiter.decide(7, &s), Decision::Allow { .. }) {
                allowed += 1;
            }
        }
        let expected = 50 * seconds + 10;
        let error = (allowed as f64 - expected as f64).abs() / expected as f64;
        assert!(error < 0.01, "allowed {allowed}, expected {expected}");
    }

    #[test]
    fn the_table_is_bounded() {
        let now = Arc::new(AtomicU64::new(0));
        let limiter: Limiter<u32> =
            Limiter::new(NonZeroUsize::new(100).unwrap(), Box::new(FakeClock(now)));
        let s = spec("1r/s", 0, true);
        for client in 0..10_000 {
            limiter.decide(client, &s);
        }
        assert_eq!(limiter.len(), 100);
    }

    #[test]
    fn conn_limit_counts_requests_in_progress() {
        let limit = ConnLimit::new(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(limit.enter(ip));
        assert!(limit.enter(ip));
        assert!(!limit.enter(ip));
        limit.leave(ip);
        assert!(limit.enter(ip));
        limit.leave(ip);
        limit.leave(ip);
        assert!(limit.counts.lock().unwrap().is_empty());
    }
}
