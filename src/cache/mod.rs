//! Stage 7: a shared HTTP cache as RFC 9111 defines it, plugged into the relay as phases.
//!
//! One job per file:
//! - `control.rs`: `Cache-Control` directives of requests and responses;
//! - `targeted.rs`: `CDN-Cache-Control` and other targeted fields (RFC 9213);
//! - `surrogate.rs`: `Surrogate-Control` (the W3C Edge Architecture note);
//! - `freshness.rs`: a response's freshness lifetime and its age;
//! - `policy.rs`: what may be stored, and which fields;
//! - `language.rs`: a variant chosen by the language a request prefers;
//! - `weight.rs`: the `q` of a preference list's member;
//! - `partial.rs`: parts of a representation (`206`), and how they combine;
//! - `store.rs`: the LRU of entries and their variants, and the in-flight misses;
//! - `phase/`: the phases: lookup, fill, background refresh, ranges, conditionals, key;
//! - `config.rs`: `[cache]`.

pub mod config;
pub mod control;
pub mod freshness;
pub mod language;
pub mod partial;
pub mod phase;
pub mod policy;
pub mod store;
pub mod surrogate;
pub mod targeted;
#[cfg(test)]
mod test_heads;

pub use config::CacheSettings;
pub use phase::{CacheCtx, CachePhases, Label};
pub use store::CacheStats;
