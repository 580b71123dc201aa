//! Load balancing over several backends: which one serves the next request.
//!
//! `Balancer` keeps the backend list and each backend's requests in flight, and implements
//! [`Upstreams`] for the relay. The choice itself is a [`Strategy`], one small type per
//! algorithm in `strategies.rs`, picked with `--strategy` (or `strategy =` in the config).

mod strategies;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use smallvec::SmallVec;

pub use strategies::{
    IpHash, LeastConnections, PowerOfTwoChoices, Random, RoundRobin, WeightedRoundRobin,
};

use crate::upstream::{GroupPolicy, Outcome, Upstreams};

/// One backend as configured: its address and its share of the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendSpec {
    pub addr: SocketAddr,
    /// Relative share (nginx's `weight=`); 1 unless said otherwise.
    pub weight: u32,
}

impl FromStr for BackendSpec {
    type Err = String;

    /// `127.0.0.1:8001` or `127.0.0.1:8001,weight=3`.
    fn from_str(text: &str) -> Result<BackendSpec, String> {
        let (addr, options) = text.split_once(',').unwrap_or((text, ""));
        let addr = crate::upstream::resolve(addr.trim())?;
        let mut weight = 1;
        for option in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            match option.split_once('=') {
                Some(("weight", n)) => {
                    weight = n
                        .parse()
                        .ok()
                        .filter(|w| (1..=1000).contains(w))
                        .ok_or_else(|| {
                            format!("weight '{n}' must be a whole number from 1 to 1000")
                        })?;
                }
                _ => {
                    return Err(format!(
                        "unknown backend option '{option}' (expected weight=N)"
                    ))
                }
            }
        }
        Ok(BackendSpec { addr, weight })
    }
}

/// A backend and its live load.
#[derive(Debug)]
pub struct BackendState {
    pub addr: SocketAddr,
    pub weight: u32,
    active: AtomicUsize,
}

impl BackendState {
    /// Requests being served by this backend right now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether `self` is less loaded than `other`, relative to their weights
    /// (`active / weight`, compared without division).
    pub fn less_loaded_than(&self, other: &BackendState) -> bool {
        (self.active() as u64) * u64::from(other.weight)
            < (other.active() as u64) * u64::from(self.weight)
    }
}

/// What a strategy chooses from.
pub struct Choice<'a> {
    pub client: IpAddr,
    /// Indices into `backends` that may serve this request; never empty.
    pub candidates: &'a [usize],
    pub backends: &'a [BackendState],
}

/// A load-balancing algorithm.
pub trait Strategy: Send + Sync {
    /// Returns one of `choice.candidates`.
    fn choose(&self, choice: &Choice<'_>) -> usize;
}

/// The strategies by name, as `--strategy` and the config spell them. The names are written
/// once, in [`StrategyKind::name`]; the flag parser and the config reader both use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    /// Each backend in turn (the C course's algorithm).
    RoundRobin,
    /// nginx's smooth weighted round robin: shares follow the weights, evenly interleaved.
    WeightedRoundRobin,
    /// A random backend, in proportion to its weight.
    Random,
    /// The backend with the fewest requests in flight, relative to its weight.
    LeastConn,
    /// A hash of the client address: the same client goes to the same backend.
    IpHash,
    /// Two random backends, and the less loaded of them ("power of two choices").
    TwoChoices,
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 6] = [
        StrategyKind::RoundRobin,
        StrategyKind::WeightedRoundRobin,
        StrategyKind::Random,
        StrategyKind::LeastConn,
        StrategyKind::IpHash,
        StrategyKind::TwoChoices,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            StrategyKind::RoundRobin => "round-robin",
            StrategyKind::WeightedRoundRobin => "weighted-round-robin",
            StrategyKind::Random => "random",
            StrategyKind::LeastConn => "least-conn",
            StrategyKind::IpHash => "ip-hash",
            StrategyKind::TwoChoices => "two-choices",
        }
    }

    /// A new strategy of this kind for `backends` backends; `seed` fixes the random ones.
    pub fn build(self, backends: usize, seed: Option<u64>) -> Box<dyn Strategy> {
        match self {
            StrategyKind::RoundRobin => Box::new(RoundRobin::default()),
            StrategyKind::WeightedRoundRobin => Box::new(WeightedRoundRobin::new(backends)),
            StrategyKind::Random => Box::new(Random::new(seed)),
            StrategyKind::LeastConn => Box::new(LeastConnections::default()),
            StrategyKind::IpHash => Box::new(IpHash),
            StrategyKind::TwoChoices => Box::new(PowerOfTwoChoices::new(seed)),
        }
    }
}

impl clap::ValueEnum for StrategyKind {
    fn value_variants<'a>() -> &'a [StrategyKind] {
        &StrategyKind::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

impl<'de> serde::Deserialize<'de> for StrategyKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<StrategyKind, D::Error> {
        let text = String::deserialize(deserializer)?;
        StrategyKind::ALL
            .into_iter()
            .find(|k| k.name() == text)
            .ok_or_else(|| {
                const NAMES: [&str; StrategyKind::ALL.len()] = {
                    let mut names = [""; StrategyKind::ALL.len()];
                    let mut i = 0;
                    while i < names.len() {
                        names[i] = StrategyKind::ALL[i].name();
                        i += 1;
                    }
                    names
                };
                serde::de::Error::unknown_variant(&text, &NAMES)
            })
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StrategyKind {
    type Err = String;

    fn from_str(text: &str) -> Result<StrategyKind, String> {
        StrategyKind::ALL
            .into_iter()
            .find(|k| k.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = StrategyKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown strategy '{text}' (one of: {})", names.join(", "))
            })
    }
}

/// Decides, per request, which backends may be chosen at all (stage 6 plugs health in here).
pub trait Eligibility: Send + Sync {
    fn eligible(&self, index: usize) -> bool;
    /// Told how each use of a backend ended (passive health checks listen here).
    fn observe(&self, _index: usize, _outcome: Outcome) {}
}

/// Every backend is always eligible (stage 5, no health checks).
pub struct AllEligible;

impl Eligibility for AllEligible {
    fn eligible(&self, _index: usize) -> bool {
        true
    }
}

/// A group of backends behind one strategy.
pub struct Balancer {
    backends: Vec<BackendState>,
    strategy: Box<dyn Strategy>,
    eligibility: Box<dyn Eligibility>,
    /// The group's own timeouts and retries (configured stages); `None` on the flag stages.
    policy: Option<GroupPolicy>,
}

impl Balancer {
    pub fn new(specs: &[BackendSpec], strategy: Box<dyn Strategy>) -> Balancer {
        Balancer::with_eligibility(specs, strategy, Box::new(AllEligible))
    }

    pub fn with_eligibility(
        specs: &[BackendSpec],
        strategy: Box<dyn Strategy>,
        eligibility: Box<dyn Eligibility>,
    ) -> Balancer {
        let backends = specs
            .iter()
            .map(|spec| BackendState {
                addr: spec.addr,
                weight: spec.weight.max(1),
                active: AtomicUsize::new(0),
            })
            .collect();
        Balancer {
            backends,
            strategy,
            eligibility,
            policy: None,
        }
    }

    /// Requests to this group use its own timeouts and retries.
    pub fn with_policy(mut self, policy: GroupPolicy) -> Balancer {
        self.policy = Some(policy);
        self
    }

    pub fn backends(&self) -> &[BackendState] {
        &self.backends
    }

    fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.backends.iter().position(|b| b.addr == addr)
    }
}

impl Upstreams for Balancer {
    fn policy(&self) -> Option<GroupPolicy> {
        self.policy
    }

    fn pick(&self, client: IpAddr, tried: &[SocketAddr]) -> Option<SocketAddr> {
        // On the stack for up to 16 backends: this runs for every request.
        let candidates: SmallVec<[usize; 16]> = (0..self.backends.len())
            .filter(|&i| !tried.contains(&self.backends[i].addr) && self.eligibility.eligible(i))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let choice = Choice {
            client,
            candidates: &candidates,
            backends: &self.backends,
        };
        let index = self.strategy.choose(&choice);
        let backend = &self.backends[index];
        backend.active.fetch_add(1, Ordering::Relaxed);
        Some(backend.addr)
    }

    fn finished(&self, addr: SocketAddr, outcome: Outcome) {
        if let Some(index) = self.index_of(addr) {
            self.backends[index].active.fetch_sub(1, Ordering::Relaxed);
            self.eligibility.observe(index, outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_specs_parse() {
        let spec: BackendSpec = "127.0.0.1:8001,weight=3".parse().unwrap();
        assert_eq!((spec.addr.port(), spec.weight), (8001, 3));
        let spec: BackendSpec = "127.0.0.1:8002".parse().unwrap();
        assert_eq!(spec.weight, 1);
        assert!("127.0.0.1:8001,weight=0".parse::<BackendSpec>().is_err());
        assert!("127.0.0.1:8001,max_fails=3".parse::<BackendSpec>().is_err());
        assert!("nowhere".parse::<BackendSpec>().is_err());
    }

    #[test]
    fn strategy_names_round_trip() {
        for kind in StrategyKind::ALL {
            assert_eq!(kind.name().parse::<StrategyKind>(), Ok(kind));
        }
        assert!("fastest".parse::<StrategyKind>().is_err());
    }

    #[test]
    fn tried_backends_are_skipped_and_load_is_counted() {
        let specs: Vec<BackendSpec> = ["127.0.0.1:1", "127.0.0.1:2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let balancer = Balancer::new(&specs, StrategyKind::RoundRobin.build(2, None));
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        let first = balancer.pick(client, &[]).unwrap();
        let second = balancer.pick(client, &[first]).unwrap();
        assert_ne!(first, second);
        assert_eq!(balancer.pick(client, &[first, second]), None);
        assert_eq!(
            balancer.backends()[0].active() + balancer.backends()[1].active(),
            2
        );
        balancer.finished(first, Outcome::ConnectFailed);
        balancer.finished(second, Outcome::Answered);
        assert_eq!(
            balancer.backends()[0].active() + balancer.backends()[1].active(),
            0
        );
    }
}
