//! Starting a stage that reads a configuration file (stage 6 and later): the shared flags,
//! `-t` (check and exit, like `nginx -t`), the demo backends, health checks, the pool, and a
//! relay with the stage's own phases. A stage binary is its flags and its phases; the rest is
//! here, once.
//!
//! Stages 6 to 8 run one upstream group ([`main`]); stage 9 runs every `[upstreams.NAME]`
//! group, each with its own balancer and health checks, and hands them to its routing phase
//! ([`main_routed`]). The relay's default upstream is the group `[server] upstream` names
//! (or the only one, or the first by name when routes choose every request's group).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use crate::config::{self, Settings};
use crate::health::MonitoredUpstream;
use crate::relay::{Phases, Relay};
use crate::server::{self, pool::Pool};
use crate::upstream::{Connector, Upstreams};
use crate::{cli, dashboard};

/// Exit code for a configuration error (EX_CONFIG in sysexits.h, as with nginx -t).
pub const EXIT_CONFIG: u8 = 78;

/// The flags of every stage that reads a configuration file.
#[derive(Debug, Args)]
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

/// Loads the configuration, lets `adjust` apply the stage's own flags to it, then checks
/// (`-t`) or runs the stage with the phases `phases` builds from the settings. One upstream
/// group runs (stages 6 to 8); a file with `[[routes]]` is refused, since only stage 9 would
/// follow them.
pub fn main<P, A, F>(program: &str, args: &ConfigArgs, adjust: A, phases: F) -> ExitCode
where
    P: Phases,
    A: FnOnce(&mut Settings) -> Result<(), String>,
    F: FnOnce(&Settings) -> Result<P, String>,
{
    launch(program, args, adjust, false, |settings, _| phases(settings))
}

/// Like [`main`], for stage 9: every upstream group runs, and `phases` gets them by name.
pub fn main_routed<P, A, F>(program: &str, args: &ConfigArgs, adjust: A, phases: F) -> ExitCode
where
    P: Phases,
    A: FnOnce(&mut Settings) -> Result<(), String>,
    F: FnOnce(&Settings, Groups) -> Result<P, String>,
{
    launch(program, args, adjust, true, phases)
}

fn launch<P, A, F>(program: &str, args: &ConfigArgs, adjust: A, routed: bool, phases: F) -> ExitCode
where
    P: Phases,
    A: FnOnce(&mut Settings) -> Result<(), String>,
    F: FnOnce(&Settings, Groups) -> Result<P, String>,
{
    let mut settings = match config::load(&args.config) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{program}: configuration error: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if !routed && !settings.routes.is_empty() {
        eprintln!(
            "{program}: configuration error: {}: [[routes]] are followed by stage9 only",
            args.config.display()
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Err(err) = adjust(&mut settings) {
        eprintln!("{program}: {err}");
        return ExitCode::from(2);
    }
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
    cli::exit_with(program, run(program, args, settings, routed, phases))
}

fn run<P: Phases, F: FnOnce(&Settings, Groups) -> Result<P, String>>(
    program: &str,
    args: &ConfigArgs,
    mut settings: Settings,
    routed: bool,
    phases: F,
) -> Result<(), String> {
    let _demo = match (args.demo, routed) {
        (false, _) => None,
        (true, true) => Some(start_demos(&mut settings)?),
        (true, false) => Some(cli::start_demo_for(&mut settings.upstream.servers)?),
    };
    if !routed {
        // Only the serving group runs; the others are checked and left alone, as before.
        settings.groups = vec![settings.upstream.clone()];
    }
    let listen = args.listen.as_deref().unwrap_or(&settings.listen);
    let listener = server::bind(listen).map_err(|e| e.to_string())?;
    let tuning = settings.tuning();
    warn_about_shared_tuning(&settings);
    let pool = Pool::new(&tuning.pool).map_err(|e| format!("cannot start the pool: {e}"))?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for spec in settings.groups.iter().flat_map(|g| &g.servers) {
        if !addrs.contains(&spec.addr) {
            addrs.push(spec.addr);
        }
    }
    cli::announce(program, &listener, &addrs)?;
    // Each group its own balancer and health checks; they run until `running` is dropped.
    let mut running: Vec<(String, MonitoredUpstream)> = Vec::new();
    for group in &settings.groups {
        let monitored = MonitoredUpstream::start(group)
            .map_err(|e| format!("cannot start health checks of {}: {e}", group.name))?;
        running.push((group.name.clone(), monitored));
    }
    let upstream = running
        .iter()
        .find(|(name, _)| *name == settings.upstream.name)
        .map(|(_, monitored)| monitored)
        .ok_or_else(|| format!("upstream {} is not running", settings.upstream.name))?;
    if let (true, Some(health)) = (args.debug, &upstream.health) {
        dashboard::spawn(
            settings.upstream.name.clone(),
            Arc::clone(health),
            Arc::clone(&upstream.balancer),
        )
        .map_err(|e| format!("cannot start the --debug table: {e}"))?;
    }
    // Phases see the address actually bound (a port 0 resolved): a cache that refreshes an
    // entry in the background sends the request to the proxy itself.
    if let Ok(addr) = listener.local_addr() {
        settings.listen = addr.to_string();
    }
    let groups: Groups = running
        .iter()
        .map(|(name, m)| (name.clone(), m.balancer.clone() as Arc<dyn Upstreams>))
        .collect();
    let phases = phases(&settings, groups)?;
    let relay = Relay::with_phases(
        tuning.relay_config(),
        upstream.balancer.clone(),
        Connector::new(tuning.upstream_timeouts()),
        phases,
    );
    server::serve(&listener, &pool, Arc::new(relay));
    Ok(())
}

/// `--demo`: a demo backend on every configured server address of every running group (one
/// for an address listed in several groups), each server pointed at the backend that took
/// its place (a port 0 gets whatever free port the demo found).
fn start_demos(settings: &mut Settings) -> Result<Vec<backends::Backend>, String> {
    let mut started = Vec::new();
    let mut moved: HashMap<SocketAddr, SocketAddr> = HashMap::new();
    for group in &mut settings.groups {
        for (i, spec) in group.servers.iter_mut().enumerate() {
            if let Some(&actual) = moved.get(&spec.addr).filter(|_| spec.addr.port() != 0) {
                spec.addr = actual;
                continue;
            }
            let options = backends::Options {
                name: format!("{}-{}", group.name, i + 1),
                ..backends::Options::default()
            };
            let backend =
                backends::Backend::start(&spec.addr.to_string(), options).map_err(|e| {
                    format!(
                        "cannot start a demo backend on {}: {e} (is something else using it?)",
                        spec.addr
                    )
                })?;
            moved.insert(spec.addr, backend.addr());
            spec.addr = backend.addr();
            started.push(backend);
        }
    }
    if let Some(group) = settings
        .groups
        .iter()
        .find(|g| g.name == settings.upstream.name)
    {
        settings.upstream = group.clone();
    }
    Ok(started)
}

/// The relay has one connector and one retry count, the default group's; a group that asks
/// for others is told at start rather than silently overruled.
fn warn_about_shared_tuning(settings: &Settings) {
    let default = &settings.upstream;
    for group in settings.groups.iter().filter(|g| g.name != default.name) {
        if (group.connect_timeout, group.read_timeout, group.retries)
            != (
                default.connect_timeout,
                default.read_timeout,
                default.retries,
            )
        {
            log::warn!(
                "upstream {}: connect_timeout_ms, read_timeout_ms and retries of the default \
                 group {} apply to every group",
                group.name,
                default.name
            );
        }
    }
}
