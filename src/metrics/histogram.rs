//! A latency histogram of fixed buckets, counted with atomics: recording is a few relaxed
//! additions, never a lock, so every worker can record into the same one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (Prometheus's client defaults, with a 1 ms and a
/// 2.5 ms bucket more: a proxy on loopback answers in well under 5 ms). `+Inf` is implied.
pub const BOUNDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counts per bucket (not cumulative: each observation adds to one bucket only, so a
/// scrape that reads them while requests land never sees a bucket below its predecessor).
#[derive(Debug, Default)]
pub struct Histogram {
    /// `BOUNDS.len()` buckets, then the one above the last bound.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

/// A histogram at one moment, cumulative as the exposition format wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations at or below each bound of [`BOUNDS`], then all of them (`+Inf`).
    pub cumulative: Vec<u64>,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, duration: Duration) {
        crate::exercise::stub!("Histogram::observe");
        let seconds = duration.as_secs_f64();
        let index = BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BOUNDS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

impl HistogramSnapshot {
    /// All observations (the `+Inf` bucket, so `_count` always matches the buckets).
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    pub fn mean_seconds(&self) -> Option<f64> {
        let count = self.count();
        (count > 0).then(|| self.sum_seconds / count as f64)
    }

    /// The `q` quantile (0 to 1), interpolated inside its bucket as Prometheus's
    /// `histogram_quantile` does; the last finite bound when it falls in `+Inf`.
    pub fn quantile_seconds(&self, q: f64) -> Option<f64> {
        crate::exercise::stub!("HistogramSnapshot::quantile_seconds");
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let index = self.cumulative.iter().position(|&c| c as f64 >= rank)?;
        let Some(&upper) = BOUNDS.get(index) else {
            return BOUNDS.last().copied();
        };
        let lower = if index == 0 { 0.0 } else { BOUNDS[index - 1] };
        let below = if index == 0 {
            0
        } else {
            self.cumulative[index - 1]
        };
        let inside = self.cumulative[index] - below;
        if inside == 0 {
            return Some(upper);
        }
        Some(lower + (upper - lower) * (rank - below as f64) / inside as f64)
    }

    /// Adds another histogram's counts (a group's servers into the group).
    pub fn add(&mut self, other: &HistogramSnapshot) {
        if self.cumulative.len() < other.cumulative.len() {
            self.cumulative.resize(other.cumulative.len(), 0);
        }
        for (mine, theirs) in self.cumulative.iter_mut().zip(&other.cumulative) {
            *mine += theirs;
        }
        self.sum_seconds += other.sum_seconds;
    }
}

impl Default for HistogramSnapshot {
    fn default() -> HistogramSnapshot {
        HistogramSnapshot {
            cumulative: vec![0; BOUNDS.len() + 1],
            sum_seconds: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::default();
        // (duration in microseconds, bucket index)
        let table: &[(u64, usize)] =
            &[(0, 0), (1_000, 0), (1_001, 1), (7_000, 3), (60_000_000, 13)];
        for &(micros, _) in table {
            h.observe(Duration::from_micros(micros));
        }
        let s = h.snapshot();
        assert_eq!(s.count(), table.len() as u64);
        assert_eq!(s.cumulative[0], 2);
        assert_eq!(s.cumulative[1], 3);
        assert_eq!(s.cumulative[3], 4);
        assert_eq!(s.cumulative[12], 4, "60 s is above the last bound");
        assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]));
        assert!(
            (s.sum_seconds - 60.009001).abs() < 1e-9,
            "{}",
            s.sum_seconds
        );
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let h = Histogram::default();
        for _ in 0..10 {
            h.observe(Duration::from_millis(20)); // the 10..25 ms bucket
        }
        let s = h.snapshot();
        let median = s.quantile_seconds(0.5).unwrap();
        assert!((median - 0.0175).abs() < 1e-9, "{median}");
        assert_eq!(HistogramSnapshot::default().quantile_seconds(0.5), None);
        assert!((s.mean_seconds().unwrap() - 0.02).abs() < 1e-9);
    }
}
