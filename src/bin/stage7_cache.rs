//! Stage 7: a shared HTTP cache (RFC 9111) in front of stage 6.
//!
//! C counterpart: none. The Python proxies this course is measured against stored every GET
//! for 300 s whatever the origin said, keyed on the path: they served one user's private page
//! to the next and kept `no-store` answers. Here the cache is a set of request phases
//! (`src/cache/`): it stores what RFC 9111 lets a shared cache store, for as long as the
//! origin says (`s-maxage`, `max-age`, `Expires`, else 10% of the `Last-Modified` age),
//! serves hits with `Age`, selects `Vary` variants, revalidates stale entries with
//! `If-None-Match` / `If-Modified-Since`, serves stale copies on `stale-if-error` when the
//! origin fails, invalidates after unsafe requests, and sends concurrent misses for one URL
//! upstream once. A miss streams to the client while its copy is kept. Every response that
//! went through it says `X-Cache: HIT | MISS | EXPIRED | REVALIDATED | STALE | BYPASS`.
//!
//! Run: `backends/launch.sh 3`, then `cargo run --bin stage7 -- --config proxy.example.toml
//! -c`; `--cache-size BYTES` and `--cache-ttl SECONDS` override `[cache]`; `--debug` prints
//! the cache's counters every 5 s.
//!
//! Known limits: memory only; a `Range` request is answered `206` from a fresh stored `200`
//! and otherwise passes through unstored (several ranges, `If-Range`); a
//! `stale-while-revalidate` refresh is a request to
//! the proxy itself (its origin sees it come from the proxy); responses with `Set-Cookie` are not stored (as with
//! nginx); a request waiting on a concurrent miss holds its worker (at most 5 s).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use revproxy::cache::CachePhases;
use revproxy::launch::{self, ConfigArgs};

/// Stage 7 of revproxy: stage 6 plus a shared HTTP cache.
#[derive(Debug, Parser)]
#[command(name = "stage7", version)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,

    /// Turn the cache on (with `[cache]`'s settings, or the defaults).
    #[arg(short = 'c', long)]
    cache: bool,

    /// Bytes the cache may hold (turns it on).
    #[arg(long, value_name = "BYTES")]
    cache_size: Option<u64>,

    /// Seconds of freshness for responses that say nothing about it (turns it on).
    #[arg(long, value_name = "SECONDS")]
    cache_ttl: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let debug = args.config.debug;
    let adjust = move |settings: &mut revproxy::config::Settings| {
        let cache = &mut settings.cache;
        cache.enabled |= args.cache || args.cache_size.is_some() || args.cache_ttl.is_some();
        if let Some(size) = args.cache_size {
            if size == 0 {
                return Err("--cache-size must be at least 1".to_owned());
            }
            cache.max_size = size;
            cache.max_entry_size = cache.max_entry_size.min(size);
        }
        if let Some(ttl) = args.cache_ttl {
            cache.default_ttl = (ttl > 0).then(|| Duration::from_secs(ttl));
        }
        Ok(())
    };
    launch::main("stage7", &args.config, adjust, move |settings, running| {
        let phases = CachePhases::new(&settings.cache)
            .continuing(running)
            .refreshing_through(settings.listen.parse().ok());
        // Once, at startup: a reporter per reload would pile up, each printing the same
        // line. Like the health table of `--debug`, it shows the cache it started with (the
        // same one for as long as reloads leave `[cache]` alone).
        if debug && running.is_none() {
            let stats = phases.stats_source();
            std::thread::Builder::new()
                .name("cache-stats".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    eprintln!("cache: {:?}", stats());
                })
                .map_err(|e| format!("cannot start the cache counters: {e}"))?;
        }
        Ok(phases)
    })
}
