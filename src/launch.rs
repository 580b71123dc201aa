//! Starting a stage that reads a configuration file (stage 6 and later): the shared flags,
//! `-t` (check and exit, like `nginx -t`), the demo backends, health checks, the pool, and a
//! relay with the stage's own phases. A stage binary is its flags and its phases; the rest is
//! here, once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use crate::admin::{self, AdminSettings, GroupSource, Sources};
use crate::config::{self, Settings};
use crate::health::MonitoredUpstream;
use crate::metrics::{Layout, MetricsPhases, PhaseReport, Registry};
use crate::relay::{Phases, Relay};
use crate::server::{self, pool::Pool};
use crate::upstream::Connector;
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

/// Loads the configuration, lets `adjust` apply the stage's own flags to it, then checks
/// (`-t`) or runs the stage with the phases `phases` builds from the settings.
pub fn main<P, A, F>(program: &str, args: &ConfigArgs, adjust: A, phases: F) -> ExitCode
where
    P: Phases,
    A: FnOnce(&mut Settings) -> Result<(), String>,
    F: FnOnce(&Settings) -> Result<P, String>,
{
    let mut settings = match config::load(&args.config) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{program}: configuration error: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
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
    cli::exit_with(program, run(program, args, settings, phases))
}

fn run<P: Phases, F: FnOnce(&Settings) -> Result<P, String>>(
    program: &str,
    args: &ConfigArgs,
    mut settings: Settings,
    phases: F,
) -> Result<(), String> {
    let _demo = if args.demo {
        Some(cli::start_demo_for(&mut settings.upstream.servers)?)
    } else {
        None
    };
    let listen = args.listen.as_deref().unwrap_or(&settings.listen);
    let listener = server::bind(listen).map_err(|e| e.to_string())?;
    let tuning = settings.tuning();
    let pool = Pool::new(&tuning.pool).map_err(|e| format!("cannot start the pool: {e}"))?;
    let addrs: Vec<_> = settings.upstream.servers.iter().map(|s| s.addr).collect();
    cli::announce(program, &listener, &addrs)?;
    let upstream = MonitoredUpstream::start(&settings.upstream)
        .map_err(|e| format!("cannot start health checks: {e}"))?;
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
    let phases = phases(&settings)?;
    // Counted only when `[admin]` is there to show the numbers.
    let registry = (settings.admin.is_some()).then(|| {
        Arc::new(Registry::new(Layout::single(
            &settings.upstream.name,
            addrs,
        )))
    });
    let metrics = registry
        .clone()
        .map_or_else(MetricsPhases::off, MetricsPhases::new);
    let relay = Arc::new(Relay::with_phases(
        tuning.relay_config(),
        upstream.balancer.clone(),
        Connector::new(tuning.upstream_timeouts()),
        (metrics, phases),
    ));
    if let (Some(admin), Some(registry)) = (&settings.admin, registry) {
        let groups = vec![GroupSource::new(&settings.upstream.name, &upstream)];
        start_admin(
            program,
            admin,
            registry,
            groups,
            &pool,
            &relay,
            &settings.listen,
        )?;
    }
    server::serve(&listener, &pool, relay);
    Ok(())
}

/// Starts the admin listener for `relay`, whose phases count into `registry` through a
/// [`MetricsPhases`]; `groups` are the upstream groups in the order of the registry's layout.
pub fn start_admin<P: Phases>(
    program: &str,
    admin: &AdminSettings,
    registry: Arc<Registry>,
    groups: Vec<GroupSource>,
    pool: &Pool,
    relay: &Arc<Relay<P>>,
    listen: &str,
) -> Result<(), String> {
    let sources = Sources {
        registry,
        groups,
        pool: Some(pool.status()),
        phases: phase_report(relay),
        listen: listen.to_owned(),
        started: std::time::Instant::now(),
    };
    let addr = admin::start(admin, sources).map_err(|e| e.to_string())?;
    println!("{program} admin on http://{addr} (/metrics, /status, /status.json)");
    Ok(())
}

/// What the phases count themselves, read on the admin listener's thread.
pub fn phase_report<P: Phases>(
    relay: &Arc<Relay<P>>,
) -> Box<dyn Fn() -> PhaseReport + Send + Sync> {
    let relay = Arc::clone(relay);
    Box::new(move || {
        let mut report = PhaseReport::default();
        relay.phases().report(&mut report);
        report
    })
}
