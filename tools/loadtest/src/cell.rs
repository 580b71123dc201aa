//! One measured cell of `loadtest compare` (stage x keep-alive x concurrency), on its own so
//! that the comparison ([`super::compare`]) and its chart ([`super::svg`]) both use it
//! without importing each other.

use std::collections::BTreeMap;

use serde::Serialize;

/// One measurement. `None` where nothing could be measured; `failure` says why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub stage: String,
    pub keepalive: bool,
    pub concurrency: u32,
    /// Idle connections held open during the measurement (the slow-client scenario).
    pub slow_clients: u32,
    /// Responses with a status below 400, per second.
    pub requests_per_sec: Option<f64>,
    /// Over every response, whatever its status.
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub responses: Option<u64>,
    /// Failed requests plus responses with status 400 or more.
    pub errors: Option<u64>,
    /// Errors by kind (`timeout`, `reset`, ..., `http_503`), only the kinds that occurred.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// CPU time (user + system) of the stage's process group during the run, over the
    /// responses counted in `requests_per_sec` (see [`super::proc_cpu`]).
    pub cpu_us_per_request: Option<f64>,
    /// Context switches of the stage's threads during the run, per such response; `None`
    /// for a stage that forks (stage2) and wherever `/proc` could not tell.
    pub context_switches_per_request: Option<f64>,
    pub failure: Option<String>,
}

impl Cell {
    pub fn new(stage: &str, keepalive: bool, concurrency: u32, slow_clients: u32) -> Self {
        Cell {
            stage: stage.to_string(),
            keepalive,
            concurrency,
            slow_clients,
            requests_per_sec: None,
            p50_us: None,
            p99_us: None,
            responses: None,
            errors: None,
            errors_by_kind: BTreeMap::new(),
            cpu_us_per_request: None,
            context_switches_per_request: None,
            failure: None,
        }
    }

    pub fn failed(mut self, why: String) -> Self {
        self.failure = Some(why);
        self
    }
}
