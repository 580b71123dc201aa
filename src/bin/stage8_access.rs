//! Stage 8: access control in front of the backends: API keys, JWT, IP and path rules, rate
//! limits. Everything is `[access]` in the TOML file (`proxy.example.toml` documents each key).
//!
//! C counterpart: none, though two programs of the C course had a piece of it: one filtered
//! client addresses through a block list given with `-a`, the other demanded
//! `X-API-Key: test-api-key-123` and compared it with `strcmp`, which leaks through timing how
//! much of a guess was right. Here keys are compared in constant time, a JWT's algorithm is
//! the operator's, rules match a normalised path (`/%61dmin` is `/admin`), `X-Forwarded-For`
//! counts only from trusted proxies, and a client over its rate gets 429 with `Retry-After`.
//!
//! Run: `backends/launch.sh 3`, then `cargo run --bin stage8 -- --config proxy.example.toml`
//! (with an `[access]` block uncommented); `-a blocklist.txt` adds the course's block list
//! (`deny CIDR`, `allow CIDR` or a bare address per line) before every rule's own list.
//!
//! Stage 8 is stage 7 plus access: the phases run access first, then the cache (`[cache]`
//! in the file turns it on), so a refused request never reaches either.
//!
//! Known limits: a burst without `nodelay` is delayed by holding the worker (at most 10 s,
//! checked at start); rate limits are per process unless `store = "redis://..."` shares them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use revproxy::access::config::read_ip_file;
use revproxy::access::{AccessPhases, AccessSettings};
use revproxy::cache::CachePhases;
use revproxy::launch::{self, ConfigArgs};

/// Stage 8 of revproxy: stage 7 plus API keys, JWT, IP and path rules, rate limits.
#[derive(Debug, Parser)]
#[command(name = "stage8", version)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,

    /// A block list: one `deny CIDR`, `allow CIDR` or bare address (denied) per line, checked
    /// before the configured IP lists.
    #[arg(short = 'a', long, value_name = "FILE")]
    access: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let block_list = args.access.clone();
    let adjust = move |settings: &mut revproxy::config::Settings| {
        if let Some(path) = &block_list {
            let list = read_ip_file(path)?;
            settings
                .access
                .get_or_insert_with(AccessSettings::default)
                .prepend_ip(&list);
        }
        Ok(())
    };
    launch::main("stage8", &args.config, adjust, |settings, running| {
        // Access first: a refused request never reaches the cache, let alone the origin.
        let access = AccessPhases::new(settings.access.clone().unwrap_or_default())?
            .continuing(running.map(|(access, _)| access));
        let cache = CachePhases::new(&settings.cache)
            .continuing(running.map(|(_, cache)| cache))
            .refreshing_through(settings.listen.parse().ok());
        Ok((access, cache))
    })
}
