//! Stage 9's routing, in nginx's and HAProxy's vocabulary: `[[routes]]` matched by Host
//! (exact names, `*.example.test` wildcards) and then by the longest path prefix of the
//! normalised path, each sending to a named upstream group, answering with a fixed response,
//! or redirecting; with per-route prefix stripping, the `Host` sent upstream, and headers set
//! or removed on the request and the response. `[routing]` says what a request no route takes
//! gets (a 404 by default, or a named route).
//!
//! - `config.rs`: the TOML tables and their checks;
//! - `table.rs`: host patterns, prefixes and the lookup order;
//! - `phase.rs`: the request, route and response-head phases.

pub mod config;
pub mod phase;
pub mod table;

pub use config::RouteSettings;
pub use phase::RoutePhases;
