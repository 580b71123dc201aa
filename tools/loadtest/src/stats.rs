//! What one worker records, merged into one set for the report.
//!
//! Latencies go into an HDR histogram in microseconds with 3 significant digits: memory stays
//! a few tens of KiB whatever the run length, and every percentile is within 0.1%. Each worker
//! has its own [`Stats`], so recording takes no lock; they are merged once at the end.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::error::ErrorKind;

/// Initial range, 100 ms in microseconds. The histogram grows (auto-resize) when a slower
/// response comes, so each of thousands of workers starts with ~60 KiB, not the ~190 KiB a
/// fixed one-hour range would take.
const INITIAL_HIGH_US: u64 = 100_000;

#[derive(Debug)]
pub struct StatsError(String);

impl fmt::Display for StatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "latency histogram: {}", self.0)
    }
}

impl std::error::Error for StatsError {}

#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of every response (whatever its status), in microseconds. Failed requests
    /// have no meaningful latency and are only counted in `errors`.
    pub latency: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    /// Indexed by [`ErrorKind::index`].
    pub errors: [u64; 5],
    pub body_bytes: u64,
    /// Responses per `X-Backend-Server` value.
    pub backends: BTreeMap<String, u64>,
    pub connections: u64,
    /// Open loop only: requests that started more than [`LATE_START`] after their due time.
    pub late_starts: u64,
}

/// Beyond normal sleep jitter: a start this late means the workers could not keep up.
pub const LATE_START: Duration = Duration::from_millis(1);

impl Stats {
    pub fn new() -> Result<Self, StatsError> {
        let mut latency = Histogram::new_with_bounds(1, INITIAL_HIGH_US, 3)
            .map_err(|e| StatsError(format!("{e:?}")))?;
        latency.auto(true);
        Ok(Stats {
            latency,
            statuses: BTreeMap::new(),
            errors: [0; 5],
            body_bytes: 0,
            backends: BTreeMap::new(),
            connections: 0,
            late_starts: 0,
        })
    }

    pub fn record_response(
        &mut self,
        latency: Duration,
        status: u16,
        body_bytes: u64,
        backend: Option<&[u8]>,
    ) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // `record` grows the histogram; `saturating_record` would clamp to the current range.
        if self.latency.record(us).is_err() {
            self.latency.saturating_record(us);
        }
        *self.statuses.entry(status).or_insert(0) += 1;
        self.body_bytes = self.body_bytes.saturating_add(body_bytes);
        if let Some(name) = backend {
            let name = String::from_utf8_lossy(name);
            // Look up by &str first: a String is allocated only the first time a name is seen.
            match self.backends.get_mut(name.as_ref()) {
                Some(count) => *count += 1,
                None => {
                    self.backends.insert(name.into_owned(), 1);
                }
            }
        }
    }

    pub fn record_error(&mut self, kind: ErrorKind) {
        self.errors[kind.index()] += 1;
    }

    pub fn responses(&self) -> u64 {
        self.latency.len()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn merge(&mut self, other: &Stats) -> Result<(), StatsError> {
        self.latency
            .add(&other.latency)
            .map_err(|e| StatsError(format!("{e:?}")))?;
        for (&code, &n) in &other.statuses {
            *self.statuses.entry(code).or_insert(0) += n;
        }
        for (total, n) in self.errors.iter_mut().zip(other.errors) {
            *total += n;
        }
        self.body_bytes = self.body_bytes.saturating_add(other.body_bytes);
        for (name, &n) in &other.backends {
            *self.backends.entry(name.clone()).or_insert(0) += n;
        }
        self.connections += other.connections;
        self.late_starts += other.late_starts;
        Ok(())
    }

    /// Percentile in microseconds (`q` in 0..=100); 0 when nothing was recorded.
    pub fn percentile_us(&self, q: f64) -> u64 {
        if self.latency.is_empty() {
            return 0;
        }
        self.latency.value_at_percentile(q)
    }

    /// About `n` buckets between the fastest and the slowest response, geometrically spaced
    /// so that one slow outlier does not squash every other response into the first bucket.
    /// Each entry is (upper bound in µs, count).
    pub fn buckets(&self, n: usize) -> Vec<(u64, u64)> {
        if self.latency.is_empty() || n == 0 {
            return Vec::new();
        }
        let min = self.latency.min().max(1);
        let max = self.latency.max().max(min);
        if min == max {
            return vec![(max, self.latency.len())];
        }
        let ratio = max as f64 / min as f64;
        let mut edges: Vec<u64> = (1..=n)
            .map(|k| (min as f64 * ratio.powf(k as f64 / n as f64)).round() as u64)
            .collect();
        edges.dedup();
        if let Some(last) = edges.last_mut() {
            *last = max;
        }
        let mut counts = vec![0u64; edges.len()];
        for v in self.latency.iter_recorded() {
            let value = self.latency.median_equivalent(v.value_iterated_to());
            let i = edges.partition_point(|&e| e < value).min(edges.len() - 1);
            counts[i] += v.count_since_last_iteration();
        }
        edges.into_iter().zip(counts).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close_to(actual: u64, expected: u64) -> bool {
        // Three significant digits: within 0.1%, plus one for rounding.
        actual.abs_diff(expected) <= expected / 1000 + 1
    }

    #[test]
    fn percentiles_of_known_latencies() {
        let mut s = Stats::new().expect("histogram");
        // 1 ms, 2 ms, ..., 1000 ms, in a scrambled order.
        for i in 0..1000u64 {
            let ms = (i * 7919) % 1000 + 1;
            s.record_response(Duration::from_millis(ms), 200, 10, None);
        }
        assert_eq!(s.responses(), 1000);
        assert!(
            close_to(s.percentile_us(50.0), 500_000),
            "{}",
            s.percentile_us(50.0)
        );
        assert!(
            close_to(s.percentile_us(90.0), 900_000),
            "{}",
            s.percentile_us(90.0)
        );
        assert!(
            close_to(s.percentile_us(99.0), 990_000),
            "{}",
            s.percentile_us(99.0)
        );
        // 99.9% of 1000 is 999 in exact arithmetic, but 99.9/100 * 1000 rounds up to a hair
        // above 999 in floating point, so the library may answer the 1000th value.
        let p999 = s.percentile_us(99.9);
        assert!(
            close_to(p999, 999_000) || close_to(p999, 1_000_000),
            "{p999}"
        );
        assert!(close_to(s.latency.max(), 1_000_000), "{}", s.latency.max());
        assert!(close_to(s.latency.min(), 1_000), "{}", s.latency.min());
        assert_eq!(s.body_bytes, 10_000);
    }

    #[test]
    fn skewed_distribution() {
        let mut s = Stats::new().expect("histogram");
        for _ in 0..990 {
            s.record_response(Duration::from_micros(100), 200, 0, None);
        }
        for _ in 0..10 {
            s.record_response(Duration::from_secs(2), 200, 0, None);
        }
        assert!(close_to(s.percentile_us(50.0), 100));
        assert!(close_to(s.percentile_us(99.0), 100));
        assert!(close_to(s.percentile_us(99.9), 2_000_000));
        assert!(close_to(s.latency.max(), 2_000_000));
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::new().expect("histogram");
        let mut b = Stats::new().expect("histogram");
        a.record_response(Duration::from_millis(1), 200, 5, Some(b"b1"));
        b.record_response(Duration::from_millis(3), 200, 5, Some(b"b1"));
        b.record_response(Duration::from_millis(2), 503, 0, Some(b"b2"));
        b.record_error(ErrorKind::Timeout);
        b.connections = 2;
        a.merge(&b).expect("same bounds");
        assert_eq!(a.responses(), 3);
        assert_eq!(a.statuses, BTreeMap::from([(200, 2), (503, 1)]));
        assert_eq!(
            a.backends,
            BTreeMap::from([("b1".to_string(), 2), ("b2".to_string(), 1)])
        );
        assert_eq!(a.errors[ErrorKind::Timeout.index()], 1);
        assert_eq!(a.error_count(), 1);
        assert_eq!(a.body_bytes, 10);
        assert_eq!(a.connections, 2);
    }

    #[test]
    fn buckets_cover_every_response() {
        let mut s = Stats::new().expect("histogram");
        assert!(s.buckets(10).is_empty());
        for ms in 1..=100 {
            s.record_response(Duration::from_millis(ms), 200, 0, None);
        }
        s.record_response(Duration::from_secs(5), 200, 0, None);
        let buckets = s.buckets(10);
        assert!(buckets.len() <= 10 && buckets.len() >= 5);
        assert_eq!(buckets.iter().map(|&(_, n)| n).sum::<u64>(), 101);
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(buckets.last().map(|&(edge, _)| edge), Some(s.latency.max()));
    }
}
