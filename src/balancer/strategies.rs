//! The load-balancing algorithms. Each is a few lines; the tests pin their behaviour exactly
//! where it is deterministic and within bounds under a fixed seed where it is random.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{BackendState, Choice, Strategy};

/// Each candidate in turn.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Strategy for RoundRobin {
    fn choose(&self, choice: &Choice<'_>) -> usize {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        choice.candidates[turn % choice.candidates.len()]
    }
}

/// nginx's smooth weighted round robin: every pick, each candidate's current weight grows by
/// its weight; the largest wins and gives back the total. Weights 5, 1, 1 give
/// `a a b a c a a`: the shares follow the weights, and the heavy backend's turns are spread
/// out instead of coming in a burst of five.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    current: Mutex<Vec<i64>>,
}

impl WeightedRoundRobin {
    pub fn new(backends: usize) -> WeightedRoundRobin {
        WeightedRoundRobin {
            current: Mutex::new(vec![0; backends]),
        }
    }
}

impl Strategy for WeightedRoundRobin {
    fn choose(&self, choice: &Choice<'_>) -> usize {
        crate::exercise::stub!("WeightedRoundRobin::choose");
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = 0;
        let mut best = choice.candidates[0];
        for &i in choice.candidates {
            let weight = i64::from(choice.backends[i].weight);
            current[i] += weight;
            total += weight;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        best
    }
}

/// A random candidate, in proportion to its weight.
#[derive(Debug)]
pub struct Random {
    rng: Mutex<fastrand::Rng>,
}

impl Random {
    pub fn new(seed: Option<u64>) -> Random {
        Random {
            rng: Mutex::new(seeded(seed)),
        }
    }
}

impl Strategy for Random {
    fn choose(&self, choice: &Choice<'_>) -> usize {
        let total: u64 = choice
            .candidates
            .iter()
            .map(|&i| u64::from(choice.backends[i].weight))
            .sum();
        let mut ticket = self
            .rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .u64(0..total);
        for &i in choice.candidates {
            let weight = u64::from(choice.backends[i].weight);
            if ticket < weight {
                return i;
            }
            ticket -= weight;
        }
        choice.candidates[choice.candidates.len() - 1]
    }
}

/// The candidate with the fewest requests in flight relative to its weight. Ties go round
/// robin, so an idle group is not served by its first backend alone.
#[derive(Debug, Default)]
pub struct LeastConnections {
    next: AtomicUsize,
}

impl Strategy for LeastConnections {
    fn choose(&self, choice: &Choice<'_>) -> usize {
        crate::exercise::stub!("LeastConnections::choose");
        let n = choice.candidates.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best = choice.candidates[start];
        for k in 1..n {
            let i = choice.candidates[(start + k) % n];
            if choice.backends[i].less_loaded_than(&choice.backends[best]) {
                best = i;
            }
        }
        best
    }
}

/// A hash of the client's address picks the backend, so one client keeps reaching the same
/// one (sessions kept in a backend's memory keep working). When that backend cannot be
/// chosen, the same hash picks among those that can.
#[derive(Debug, Default, Clone, Copy)]
pub struct IpHash;

impl Strategy for IpHash {
    fn choose(&self, choice: &Choice<'_>) -> usize {
        let hash = fnv1a(client_bytes(choice.client).as_slice()) as usize;
        let home = hash % choice.backends.len();
        if choice.candidates.contains(&home) {
            home
        } else {
            choice.candidates[hash % choice.candidates.len()]
        }
    }
}

/// Two random candidates, and the less loaded of the two: nearly as good as least
/// connections, without looking at every backend, and without the herd that follows the
/// single least-loaded one.
#[derive(Debug)]
pub struct PowerOfTwoChoices {
    rng: Mutex<fastrand::Rng>,
}

impl PowerOfTwoChoices {
    pub fn new(seed: Option<u64>) -> PowerOfTwoChoices {
        PowerOfTwoChoices {
            rng: Mutex::new(seeded(seed)),
        }
    }
}

impl Strategy for PowerOfTwoChoices {
    fn choose(&self, choice: &Choice<'_>) -> usize {
        let n = choice.candidates.len();
        if n == 1 {
            return choice.candidates[0];
        }
        let (a, b) = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            let a = rng.usize(0..n);
            let b = (a + 1 + rng.usize(0..n - 1)) % n; // a different one
            (choice.candidates[a], choice.candidates[b])
        };
        let (first, second): (&BackendState, &BackendState) =
            (&choice.backends[a], &choice.backends[b]);
        if second.less_loaded_than(first) {
            b
        } else {
            a
        }
    }
}

fn seeded(seed: Option<u64>) -> fastrand::Rng {
    seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed)
}

fn client_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// FNV-1a: stable across runs and Rust versions (std's hasher promises neither), so a client
/// keeps its backend across proxy restarts.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn backends(weights: &[u32]) -> Vec<BackendState> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| BackendState {
                addr: format!("127.0.0.1:{}", 8000 + i).parse().unwrap(),
                weight,
                active: AtomicUsize::new(0),
            })
            .collect()
    }

    fn run(strategy: &dyn Strategy, backends: &[BackendState], picks: usize) -> Vec<usize> {
        let candidates: Vec<usize> = (0..backends.len()).collect();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        (0..picks)
            .map(|_| {
                strategy.choose(&Choice {
                    client,
                    candidates: &candidates,
                    backends,
                })
            })
            .collect()
    }

    fn counts(picks: &[usize], n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &p in picks {
            counts[p] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_sequence() {
        let b = backends(&[1, 1, 1]);
        assert_eq!(run(&RoundRobin::default(), &b, 7), [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn round_robin_skips_what_is_not_a_candidate() {
        let b = backends(&[1, 1, 1]);
        let rr = RoundRobin::default();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let picks: Vec<usize> = (0..4)
            .map(|_| {
                rr.choose(&Choice {
                    client,
                    candidates: &[0, 2],
                    backends: &b,
                })
            })
            .collect();
        assert_eq!(picks, [0, 2, 0, 2]);
    }

    #[test]
    fn smooth_weighted_round_robin_sequence_is_nginx_s() {
        let b = backends(&[5, 1, 1]);
        let picks = run(&WeightedRoundRobin::new(3), &b, 14);
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
        let b = backends(&[2, 1]);
        assert_eq!(run(&WeightedRoundRobin::new(2), &b, 6), [0, 1, 0, 0, 1, 0]);
    }

    #[test]
    fn least_connections_prefers_the_idle_backend() {
        let b = backends(&[1, 1, 1]);
        b[0].active.store(3, Ordering::Relaxed);
        b[2].active.store(1, Ordering::Relaxed);
        let picks = run(&LeastConnections::default(), &b, 5);
        assert!(picks.iter().all(|&p| p == 1), "{picks:?}");
        // Relative to weight: 4 in flight on weight 4 is less loaded than 2 on weight 1.
        let b = backends(&[4, 1]);
        b[0].active.store(4, Ordering::Relaxed);
        b[1].active.store(2, Ordering::Relaxed);
        assert_eq!(run(&LeastConnections::default(), &b, 3), [0, 0, 0]);
    }

    #[test]
    fn least_connections_spreads_ties() {
        let b = backends(&[1, 1, 1]);
        assert_eq!(
            counts(&run(&LeastConnections::default(), &b, 30), 3),
            [10, 10, 10]
        );
    }

    #[test]
    fn ip_hash_is_stable_per_client_and_spreads_clients() {
        let b = backends(&[1, 1, 1]);
        let picks = run(&IpHash, &b, 10);
        assert!(picks.windows(2).all(|w| w[0] == w[1]), "{picks:?}");
        let candidates = [0, 1, 2];
        let mut seen = vec![0; 3];
        for last in 0..=255u8 {
            let client = IpAddr::from([10, 0, 0, last]);
            let pick = IpHash.choose(&Choice {
                client,
                candidates: &candidates,
                backends: &b,
            });
            seen[pick] += 1;
        }
        assert!(
            seen.iter().all(|&n| n > 50),
            "256 clients spread over 3 backends: {seen:?}"
        );
    }

    #[test]
    fn random_follows_weights_under_a_fixed_seed() {
        let b = backends(&[1, 1, 2]);
        let got = counts(&run(&Random::new(Some(7)), &b, 10_000), 3);
        for (count, expected) in got.iter().zip([2500, 2500, 5000]) {
            assert!(count.abs_diff(expected) < 300, "{got:?}");
        }
    }

    #[test]
    fn two_choices_spreads_and_avoids_the_loaded_backend() {
        let b = backends(&[1, 1, 1]);
        let got = counts(&run(&PowerOfTwoChoices::new(Some(11)), &b, 9_000), 3);
        assert!(got.iter().all(|&c| c.abs_diff(3000) < 300), "{got:?}");
        b[1].active.store(10, Ordering::Relaxed);
        let got = counts(&run(&PowerOfTwoChoices::new(Some(11)), &b, 1_000), 3);
        assert_eq!(
            got[1], 0,
            "a busier backend loses every comparison: {got:?}"
        );
    }
}
