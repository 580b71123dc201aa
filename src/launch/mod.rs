//! Starting a stage that reads a configuration file (stage 6 and later): the shared flags,
//! `-t` (check and exit, like `nginx -t`), the demo backends, health checks, the pool, and a
//! relay with the stage's own phases, and its life after startup (see `lifecycle`):
//! `SIGTERM` and `SIGINT` drain and exit, `SIGHUP` reloads the file, `SIGUSR1` reopens the
//! access log. A stage binary is its flags and its phases; the rest is here, once.
//!
//! Stages 6 to 8 run one upstream group ([`main`]); stage 9 runs every `[upstreams.NAME]`
//! group, each with its own balancer and health checks, and hands them to its routing phase
//! ([`main_routed`]). The relay's default upstream is the group `[server] upstream` names
//! (or the only one, or the first by name when routes choose every request's group).
//!
//! A reload runs the same functions as startup, `adjust` and `phases`, on the file read
//! again, starts new upstream groups with their health checks, builds a new [`Relay`](crate::relay::Relay), and
//! swaps it into the [`Swappable`](crate::server::Swappable) handler that the pool serves with; the old groups' health
//! checks stop at once, and the old relay goes when the last request on it ends. What a
//! reload cannot change without a restart (the listen address, the pool's size, a switch
//! between stderr and a file for the access log, the log level) is kept, with a warning. A
//! reload builds the phases afresh, but the stage may carry state over from the running ones:
//! the cache keeps its entries when `[cache]` did not change, access control its rate-limit
//! budgets and connection counts when the limits did not. The `--debug` table keeps showing
//! the health of the group it started with.
//!
//! With `[admin]` in the file, every exchange is counted (a [`MetricsPhases`](crate::metrics::phase::MetricsPhases) first in the
//! chain) into one registry laid out at start from the groups and routes, which outlives
//! reloads; the admin listener reads the running groups and phases at each request. The
//! admin listener itself (its address and key) is kept until a restart.
//!
//! Parts: [`build`] makes a relay from checked settings (at startup and at each reload),
//! [`startup`] runs a stage until it is told to stop, [`reload`] is `SIGHUP`, [`demo`] starts
//! the demo backends of `--demo`.

mod build;
mod demo;
mod reload;
mod startup;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use crate::cli;
use crate::config::Settings;
use crate::lifecycle::drain::Drain;
use crate::relay::Phases;
use crate::upstream::Upstreams;
use build::Build;

/// Exit code for a configuration error (EX_CONFIG in sysexits.h, as with nginx -t).
pub const EXIT_CONFIG: u8 = 78;

/// The flags of every stage that reads a configuration file.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// The configuration file (proxy.example.toml lists every key).
    #[arg(long, value_name = "FILE", default_value = "proxy.toml")]
    pub config: PathBuf,

    /// Check the configuration and exit (0 if valid, 78 if not), like `nginx -t`.
    #[arg(short = 't', long)]
    pub check: bool,

    /// Listen here instead of the configured address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// Log level instead of the configured one.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<log::LevelFilter>,

    /// Show a live table of the servers' health on stderr.
    #[arg(long)]
    pub debug: bool,

    /// Start a demo backend on every configured server address first.
    #[arg(long)]
    pub demo: bool,
}

/// The running upstream groups, by name, for a routing phase.
pub type Groups = Vec<(String, Arc<dyn Upstreams>)>;

/// What a stage does to the settings after they are read (its own flags), at startup and at
/// each reload: one name for the bound every part of the launcher repeats.
pub trait AdjustSettings: Fn(&mut Settings) -> Result<(), String> + Send + Sync + 'static {}
impl<T> AdjustSettings for T where T: Fn(&mut Settings) -> Result<(), String> + Send + Sync + 'static
{}

/// How a stage builds its phases from the settings, the running groups and (on a reload) the
/// phases running until now.
pub trait BuildPhases<P>:
    Fn(&Settings, Groups, Option<&P>) -> Result<P, String> + Send + Sync + 'static
{
}
impl<P, T> BuildPhases<P> for T where
    T: Fn(&Settings, Groups, Option<&P>) -> Result<P, String> + Send + Sync + 'static
{
}

/// Loads the configuration, lets `adjust` apply the stage's own flags to it, then checks
/// (`-t`) or runs the stage with the phases `phases` builds from the settings. One upstream
/// group runs (stages 6 to 8); a file with `[[routes]]` is refused, since only stage 9 would
/// follow them. Both functions run again on every reload (`SIGHUP`), on the signal thread;
/// there `phases` also gets the running phases, to carry over what the new ones may keep (the
/// cache's entries, the rate limits' budgets), and `None` at startup.
pub fn main<P, A, F>(program: &str, args: &ConfigArgs, adjust: A, phases: F) -> ExitCode
where
    P: Phases,
    A: Fn(&mut Settings) -> Result<(), String> + Send + Sync + 'static,
    F: Fn(&Settings, Option<&P>) -> Result<P, String> + Send + Sync + 'static,
{
    launch(program, args, adjust, false, move |settings, _, running| {
        phases(settings, running)
    })
}

/// Like [`main`], for stage 9: every upstream group runs, and `phases` gets them by name.
pub fn main_routed<P, A, F>(program: &str, args: &ConfigArgs, adjust: A, phases: F) -> ExitCode
where
    P: Phases,
    A: Fn(&mut Settings) -> Result<(), String> + Send + Sync + 'static,
    F: Fn(&Settings, Groups, Option<&P>) -> Result<P, String> + Send + Sync + 'static,
{
    launch(program, args, adjust, true, phases)
}

fn launch<P, A, F>(program: &str, args: &ConfigArgs, adjust: A, routed: bool, phases: F) -> ExitCode
where
    P: Phases,
    A: AdjustSettings,
    F: BuildPhases<P>,
{
    let build = Build {
        adjust,
        phases,
        routed,
        args: args.clone(),
        drain: Drain::new(),
        demo_addrs: HashMap::new(),
        bound: String::new(),
        bound_tls: None,
        registry: None,
        built: std::marker::PhantomData,
    };
    let settings = match build.load() {
        Ok(settings) => settings,
        Err(Refused::Config(err)) => {
            eprintln!("{program}: configuration error: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(Refused::Usage(err)) => {
            eprintln!("{program}: {err}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!(
            "{}: configuration is valid ({})",
            args.config.display(),
            settings.summary()
        );
        return ExitCode::SUCCESS;
    }
    // The live table and per-request access lines would fight over the terminal.
    let level = if args.debug {
        log::LevelFilter::Warn
    } else {
        settings.log_level
    };
    cli::init_logging(args.log_level.unwrap_or(level));
    cli::exit_with(program, startup::run(program, build, settings))
}

/// Why a file was not taken: its contents (exit 78), or what the stage's flags made of it
/// (exit 2).
pub(super) enum Refused {
    Config(String),
    Usage(String),
}
