//! Stage 8: access control as a request phase. Every request is judged before a byte of it
//! goes upstream: a 400 for a path that cannot be normalised, 403 from an IP list, 401 for a
//! missing or wrong API key or JWT, 429 from a rate limit.
//!
//! One job per module:
//! - [`keys`]: API keys, kept as SHA-256 digests, compared in constant time;
//! - [`jwt`]: JSON Web Tokens with the algorithm fixed per key;
//! - [`ip`]: CIDR ranges, `allow`/`deny` lists, the real client address behind proxies;
//! - [`path`]: the normalised path that rules are matched on;
//! - [`limit`]: GCRA rate limits (nginx `limit_req`) and `limit_conn`;
//! - [`store`]: the same limits shared by several processes through Redis;
//! - [`phase`]: the [`Phases`](crate::relay::Phases) impl that applies them in order;
//! - [`config`]: `[access]` in the configuration file.

pub mod config;
pub mod ip;
pub mod jwt;
pub mod keys;
pub mod limit;
pub mod path;
pub mod phase;
pub mod store;

pub use config::AccessSettings;
pub use phase::AccessPhases;
