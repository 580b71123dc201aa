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
//! Run: `cargo run --release --bin stage9 -- --demo`: a built-in configuration
//! (`src/bin/stage9_demo.toml`) with three demo backends, routes, a cache, an API key,
//! compression, a self-signed TLS listener and the admin listener; it prints what to try.
//! `--config proxy.full.toml --demo` runs that file with a demo backend on every server
//! address of every group.
//! `-t` checks the file and exits (0, or 78 with file:line:column).
//!
//! Each group's connect and read timeouts and retries apply to the requests it serves.
//!
//! Known limits: `--debug` shows the default group's table only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use revproxy::access::AccessPhases;
use revproxy::cache::CachePhases;
use revproxy::compress::CompressPhases;
use revproxy::launch::{self, ConfigArgs};
use revproxy::route::RoutePhases;
use revproxy::tls::TlsPhases;

/// Stage 9 of revproxy: routing by Host and path to several upstream groups, TLS,
/// compression, WebSocket, metrics and a status page, in front of real services.
#[derive(Debug, Parser)]
#[command(
    name = "stage9",
    version,
    after_help = "With --demo and no --config, stage 9 runs a built-in configuration \
                  (src/bin/stage9_demo.toml): three demo backends on 127.0.0.1:8000-8002, \
                  plain http on :8080, https on :8443 with a certificate made at start, and \
                  the admin listener on :9901; it prints what to try."
)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

/// `--demo` without `--config`: every stage 9 feature switched on once.
const DEMO_CONFIG: &str = include_str!("stage9_demo.toml");

/// Stage 9's phases, in the order a request meets them (see the chain built in `main`).
type EdgePhases = (
    TlsPhases,
    (AccessPhases, (RoutePhases, (CachePhases, CompressPhases))),
);

/// What a reload may carry over from the running phases, by name: the one place that reads
/// the chain's positions, beside its type.
struct Carried<'a> {
    access: &'a AccessPhases,
    routes: &'a RoutePhases,
    cache: &'a CachePhases,
}

impl<'a> Carried<'a> {
    fn from(running: &'a EdgePhases) -> Carried<'a> {
        let (_tls, (access, (routes, (cache, _compress)))) = running;
        Carried {
            access,
            routes,
            cache,
        }
    }
}

fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    let mut args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(err) => err.exit(),
    };
    let config_given = matches.value_source("config") == Some(ValueSource::CommandLine);
    let mut demo_file = None;
    if args.config.demo && !config_given {
        match write_demo_config() {
            Ok((path, ca)) => {
                if !args.config.check {
                    print_demo_guide(&ca);
                }
                args.config.config = path.clone();
                demo_file = Some(path);
            }
            Err(err) => {
                eprintln!("stage9: cannot write the demo configuration: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    let code = run(&args);
    if let Some(path) = demo_file {
        let _ = std::fs::remove_file(path);
    }
    code
}

fn run(args: &Args) -> ExitCode {
    launch::main_routed(
        "stage9",
        &args.config,
        |_| Ok(()),
        |settings, groups, running: Option<&EdgePhases>| {
            let running = running.map(Carried::from);
            let access = AccessPhases::new(settings.access.clone().unwrap_or_default())?
                .continuing(running.as_ref().map(|r| r.access));
            let routes = RoutePhases::new(&settings.routes, groups)?;
            // The entries are kept only while the routes that their keys name stay the same.
            let kept = running
                .filter(|r| r.routes.same_routes(&routes))
                .map(|r| r.cache);
            let cache = CachePhases::new(&settings.cache)
                .continuing(kept)
                .refreshing_through(settings.listen.parse().ok());
            let compress = CompressPhases::new(settings.compression.clone());
            // `[tls]`'s redirect of plain http and its HSTS header come first: a redirected
            // request needs nothing else. The TLS listener is bound by now (its port known).
            let tls = settings
                .tls
                .as_ref()
                .map_or_else(TlsPhases::default, |tls| {
                    let port = tls.listen.rsplit(':').next().and_then(|p| p.parse().ok());
                    TlsPhases::new(tls, port.unwrap_or(443))
                });
            // Access next (a refused request goes no further), then the route, whose name the
            // cache puts in its key; compression last, so the cache stores identity bodies.
            Ok((tls, (access, (routes, (cache, compress)))))
        },
    )
}

/// The built-in configuration in the temporary directory (a file, so that `SIGHUP` can
/// re-read it like any other), with the place the demo CA certificate goes.
fn write_demo_config() -> std::io::Result<(PathBuf, PathBuf)> {
    let dir = std::env::temp_dir();
    let ca = dir.join("revproxy-demo-ca.pem");
    let text = DEMO_CONFIG.replace(
        "self_signed = true ",
        &format!(
            "self_signed_ca = {:?}\nself_signed = true ",
            ca.display().to_string()
        ),
    );
    let path = dir.join(format!("revproxy-demo-{}.toml", std::process::id()));
    std::fs::write(&path, text)?;
    Ok((path, ca))
}

fn print_demo_guide(ca: &Path) {
    let ca = ca.display();
    println!(
        "stage9 demo: three demo backends, routes, a cache, an API key, compression, TLS and \
         the admin listener. Try, in another terminal:
  curl -i http://127.0.0.1:8080/                          the fixed welcome page
  curl -i http://127.0.0.1:8080/service1/                 to service1 (:8001), its prefix stripped
  curl -i http://127.0.0.1:8080/service2/echo             to service2 (:8002): what it received
  curl -si http://127.0.0.1:8080/cached/cacheable | grep -i x-cache   MISS, then HIT
  curl -i http://127.0.0.1:8080/api/                      401; with -H 'X-API-Key: demo-key': 200
  curl -s --compressed -D - -o /dev/null http://127.0.0.1:8080/service2/echo   br or gzip
  curl -i --cacert {ca} https://localhost:8443/service1/   over TLS (the CA made at start)
  open http://127.0.0.1:9901/status                       the status page (/metrics, /status.json)
Stop with Ctrl-C (a second Ctrl-C stops at once)."
    );
}
