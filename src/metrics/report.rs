//! What the phases count themselves (the cache's hits, access control's decisions), handed
//! to `/metrics` and the status page through [`Phases::report`](crate::relay::Phases::report).
//!
//! Plain numbers only, and nothing from the modules that fill them in: the relay's trait names
//! this type, so it must not depend on the cache or access modules, which depend on the relay.

use serde::Serialize;

/// Everything the phase set of a stage reports; a part is `None` when no phase of that kind
/// runs (stage 6 has neither cache nor access control).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PhaseReport {
    pub cache: Option<CacheReport>,
    pub access: Option<AccessReport>,
}

/// A response cache's counters. Two caches in one phase set add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheReport {
    pub hits: u64,
    pub misses: u64,
    pub stores: u64,
    pub evictions: u64,
    /// Bytes held now, and entries held now (gauges).
    pub bytes: u64,
    pub entries: u64,
}

/// Access control's decisions, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AccessReport {
    pub allowed: u64,
    /// 400: a path that cannot be normalised.
    pub bad_path: u64,
    /// 401: a missing or wrong API key or JWT.
    pub unauthorized: u64,
    /// 403: an IP rule.
    pub forbidden: u64,
    /// 429: a rate or connection limit.
    pub limited: u64,
}

impl CacheReport {
    pub fn add(&mut self, other: &CacheReport) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.stores += other.stores;
        self.evictions += other.evictions;
        self.bytes += other.bytes;
        self.entries += other.entries;
    }
}

impl AccessReport {
    pub fn add(&mut self, other: &AccessReport) {
        self.allowed += other.allowed;
        self.bad_path += other.bad_path;
        self.unauthorized += other.unauthorized;
        self.forbidden += other.forbidden;
        self.limited += other.limited;
    }
}

impl PhaseReport {
    /// Adds a cache's counters (a phase's `report` calls this).
    pub fn add_cache(&mut self, cache: CacheReport) {
        self.cache
            .get_or_insert_with(CacheReport::default)
            .add(&cache);
    }

    /// Adds access control's counters.
    pub fn add_access(&mut self, access: AccessReport) {
        self.access
            .get_or_insert_with(AccessReport::default)
            .add(&access);
    }
}
