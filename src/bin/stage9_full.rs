//! Stage 9: the edge. Stage 8 (access control, then the cache) with routing by Host and path
//! in front of several upstream groups, the way an operator runs nginx or HAProxy in front of
//! real services.
//!
//! C counterpart: none. One of the course's sources demanded a single exact `Host` and
//! refused the rest; here `[[routes]]` (`src/route/`) match a Host (exact names, then
//! `*.example.test` wildcards, then routes for any host) and then the longest prefix of the
//! normalised path (`/service1` takes `/service1/x`, never `/service1foo`; `/%73ervice1` is
//! `/service1`). A route sends to its own `[upstreams.NAME]` group (each with its own
//! balancer and health checks), answers with a fixed response, or redirects; it may strip its
//! prefix, choose the `Host` sent upstream, and set or remove request and response headers.
//! A request no route takes gets `[routing] default_status` (404) or `default_route`.
//!
//! The phases run access, then routing, then the cache, then compression: a refused request
//! never reaches a route or the cache, the cache keys by the route, so two routes that strip
//! their prefixes to the same `/x` never share a stored body, and it keeps the identity body,
//! which `[compression]` (`src/compress/`) encodes for each client, hits included.
//!
//! Run: `cargo run --bin stage9 -- --config proxy.full.toml --demo` (a demo backend on every
//! server address of every group), then `curl -H 'Host: a.test' localhost:8080/service1/`.
//! `-t` checks the file and exits (0, or 78 with file:line:column).
//!
//! Known limits: the connect and read timeouts and the retries of the default group apply to
//! every group; `--debug` shows the default group's table only.

use std::process::ExitCode;

use clap::Parser;
use revproxy::access::AccessPhases;
use revproxy::cache::CachePhases;
use revproxy::compress::CompressPhases;
use revproxy::launch::{self, ConfigArgs};
use revproxy::route::RoutePhases;

/// Stage 9 of revproxy: stage 8 plus routing by Host and path to several upstream groups.
#[derive(Debug, Parser)]
#[command(name = "stage9", version)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    launch::main_routed(
        "stage9",
        &args.config,
        |_| Ok(()),
        |settings, groups| {
            let access = AccessPhases::new(settings.access.clone().unwrap_or_default())?;
            let routes = RoutePhases::new(&settings.routes, groups)?;
            let cache =
                CachePhases::new(&settings.cache).refreshing_through(settings.listen.parse().ok());
            let compress = CompressPhases::new(settings.compression.clone());
            // Access first (a refused request goes no further), then the route, whose name the
            // cache puts in its key; compression last, so the cache stores identity bodies.
            Ok((access, (routes, (cache, compress))))
        },
    )
}
