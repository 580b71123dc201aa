//! Starting a stage that reads a configuration file (stage 6 and later): the shared flags,
//! `-t` (check and exit, like `nginx -t`), the demo backends, health checks, the pool, and a
//! relay with the stage's own phases, and its life after startup (see `lifecycle`): `SIGTERM`
//! and `SIGINT` drain and exit, `SIGHUP` reloads the file, `SIGUSR1` reopens the access log.
//! A stage binary is its flags and its phases; the rest is here, once.
//!
//! A reload runs the same two functions as startup, `adjust` and `phases`, on the file read
//! again, builds a new [`Relay`] with new upstreams and health checks, and swaps it into the
//! [`Swappable`] handler that the pool serves with; the old relay's health checks stop at
//! once, and the relay itself goes when the last request on it ends. What a reload cannot
//! change without a restart (the listen address, the pool's size, a switch between stderr and
//! a file for the access log, the log level) is kept, with a warning. A reload starts the
//! phases afresh: stage 7's cache and stage 8's rate-limit counters begin empty, and the
//! `--debug` table keeps showing the health of the upstream it started with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Args;

use crate::config::{self, AccessLogSettings, Settings};
use crate::health::MonitoredUpstream;
use crate::lifecycle::drain::Drain;
use crate::lifecycle::graceful;
use crate::lifecycle::signals::{Event, Signals};
use crate::relay::{Phases, Relay};
use crate::server::{self, pool::Pool, Swappable};
use crate::upstream::Connector;
use crate::{access_log, cli, dashboard};

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

/// Loads the configuration, lets `adjust` apply the stage's own flags to it, then checks
/// (`-t`) or runs the stage with the phases `phases` builds from the settings. Both functions
/// run again on every reload (`SIGHUP`), on the thread that handles signals.
pub fn main<P, A, F>(program: &str, args: &ConfigArgs, adjust: A, phases: F) -> ExitCode
where
    P: Phases,
    A: Fn(&mut Settings) -> Result<(), String> + Send + Sync + 'static,
    F: Fn(&Settings) -> Result<P, String> + Send + Sync + 'static,
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
    let build = Build {
        adjust,
        phases,
        args: args.clone(),
        drain: Drain::new(),
        demo_addrs: Vec::new(),
        bound: String::new(),
    };
    cli::exit_with(program, run(program, build, settings))
}

/// What building a relay from settings takes, at startup and at each reload.
struct Build<A, F> {
    adjust: A,
    phases: F,
    args: ConfigArgs,
    drain: Drain,
    /// `--demo`: each configured server address and the demo backend started for it.
    demo_addrs: Vec<(SocketAddr, SocketAddr)>,
    /// The address actually listened on (port 0 resolved), which the phases see.
    bound: String,
}

/// The running configuration, replaced as a whole by a successful reload.
struct Running {
    settings: Settings,
    /// `[server] listen` as the file said it, to tell a changed one on reload.
    configured_listen: String,
    /// Its health checks run while it is here; a reload drops the old one, which stops them.
    upstream: MonitoredUpstream,
}

fn run<P, A, F>(program: &str, mut build: Build<A, F>, mut settings: Settings) -> Result<(), String>
where
    P: Phases,
    A: Fn(&mut Settings) -> Result<(), String> + Send + Sync + 'static,
    F: Fn(&Settings) -> Result<P, String> + Send + Sync + 'static,
{
    // First, before any thread starts: every later thread inherits the blocked signals.
    let signals = Signals::block().map_err(|e| format!("cannot block signals: {e}"))?;
    let args = build.args.clone();
    let _demo = if args.demo {
        let configured: Vec<_> = settings.upstream.servers.iter().map(|s| s.addr).collect();
        let demo = cli::start_demo_for(&mut settings.upstream.servers)?;
        let started = settings.upstream.servers.iter().map(|s| s.addr);
        build.demo_addrs = configured.into_iter().zip(started).collect();
        Some(demo)
    } else {
        None
    };
    let configured_listen = settings.listen.clone();
    let listen = args.listen.as_deref().unwrap_or(&settings.listen);
    let listener = server::bind(listen).map_err(|e| e.to_string())?;
    let tuning = settings.tuning();
    let pool = Pool::new(&tuning.pool).map_err(|e| format!("cannot start the pool: {e}"))?;
    let addrs: Vec<_> = settings.upstream.servers.iter().map(|s| s.addr).collect();
    cli::announce(program, &listener, &addrs)?;
    start_access_log(&settings.access_log)?;
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
    build.bound = settings.listen.clone();
    let relay = build.relay(&settings, &upstream)?;
    let handler = Arc::new(Swappable::new(Arc::new(relay)));
    let running = Arc::new(Mutex::new(Running {
        settings,
        configured_listen,
        upstream,
    }));
    let drain = build.drain.clone();
    let on_signal = {
        let listener = listener
            .try_clone()
            .map_err(|e| format!("cannot share the listening socket: {e}"))?;
        let handler = Arc::clone(&handler);
        let running = Arc::clone(&running);
        move |event| match event {
            Event::Shutdown => graceful::stop(&listener, &build.drain),
            Event::Reload => build.reload(&handler, &running),
            Event::ReopenLog => access_log::reopen(),
        }
    };
    signals
        .spawn(on_signal)
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    // The timeout of the configuration running when the signal came (a reload may change it).
    let timeout = || lock(&running).settings.server.shutdown_timeout;
    graceful::serve_then_drain(listener, &pool, handler, &drain, timeout);
    access_log::finish();
    Ok(())
}

fn lock(running: &Mutex<Running>) -> std::sync::MutexGuard<'_, Running> {
    // A panic in a reload leaves the previous configuration, which is whole.
    running.lock().unwrap_or_else(|p| p.into_inner())
}

/// The access log's destination and format at startup.
fn start_access_log(settings: &AccessLogSettings) -> Result<(), String> {
    access_log::set_format(settings.format);
    if let Some(path) = &settings.file {
        access_log::log_to_file(path).map_err(|e| e.to_string())?;
    }
    Ok(())
}

impl<P, A, F> Build<A, F>
where
    P: Phases,
    A: Fn(&mut Settings) -> Result<(), String>,
    F: Fn(&Settings) -> Result<P, String>,
{
    /// A relay for `settings`, to the balancer of `upstream`.
    fn relay(&self, settings: &Settings, upstream: &MonitoredUpstream) -> Result<Relay<P>, String> {
        let tuning = settings.tuning();
        let mut config = tuning.relay_config();
        config.drain = self.drain.clone();
        let phases = (self.phases)(settings)?;
        Ok(Relay::with_phases(
            config,
            upstream.balancer.clone(),
            Connector::new(tuning.upstream_timeouts()),
            phases,
        ))
    }

    /// `SIGHUP`: the file read and built again, then swapped in; on any error the running
    /// configuration stays and the error is logged.
    fn reload(&self, handler: &Swappable<Relay<P>>, running: &Mutex<Running>) {
        let path = &self.args.config;
        log::info!("reloading {}", path.display());
        match self.reloaded(handler, running) {
            Ok(summary) => log::info!("reloaded {}: {summary}", path.display()),
            Err(err) => log::error!("reload failed, the running configuration stays: {err}"),
        }
    }

    fn reloaded(
        &self,
        handler: &Swappable<Relay<P>>,
        running: &Mutex<Running>,
    ) -> Result<String, String> {
        let mut settings = config::load(&self.args.config).map_err(|e| e.to_string())?;
        (self.adjust)(&mut settings)?;
        for server in &mut settings.upstream.servers {
            if let Some(&(_, demo)) = self.demo_addrs.iter().find(|(c, _)| *c == server.addr) {
                server.addr = demo;
            }
        }
        let mut running = lock(running);
        self.warn_about_restart_only(&running, &settings);
        settings.listen = self.bound.clone();
        let upstream = MonitoredUpstream::start(&settings.upstream)
            .map_err(|e| format!("cannot start health checks: {e}"))?;
        // On an error here the new upstream is dropped, and its health checks with it.
        let relay = self.relay(&settings, &upstream)?;
        if settings.access_log != running.settings.access_log {
            reload_access_log(&running.settings.access_log, &settings.access_log)?;
        }
        // Requests from now on get the new relay; those in flight hold the old one.
        drop(handler.swap(Arc::new(relay)));
        let summary = settings.summary();
        running.configured_listen = std::mem::take(&mut settings.listen);
        settings.listen = self.bound.clone();
        // Dropping the old upstream stops its health checks (the thread is joined).
        drop(std::mem::replace(&mut running.upstream, upstream));
        running.settings = settings;
        Ok(summary)
    }

    /// Settings a running process keeps until restarted.
    fn warn_about_restart_only(&self, running: &Running, new: &Settings) {
        if self.args.listen.is_none() && new.listen != running.configured_listen {
            log::warn!(
                "reload: [server] listen changed to {}; a new address needs a restart, still \
                 listening on {}",
                new.listen,
                self.bound
            );
        }
        if new.server.pool != running.settings.server.pool {
            log::warn!("reload: [server] workers and queue need a restart to change");
        }
        if new.log_level != running.settings.log_level {
            log::warn!("reload: [log] level needs a restart to change");
        }
    }
}

/// A changed `[log]` on reload: the format changes at once, the file is reopened at its new
/// path; moving between stderr and a file needs a restart.
fn reload_access_log(old: &AccessLogSettings, new: &AccessLogSettings) -> Result<(), String> {
    match (&old.file, &new.file) {
        (Some(_), Some(path)) => access_log::log_to_file(path).map_err(|e| e.to_string())?,
        (None, None) => {}
        _ => log::warn!("reload: moving the access log between stderr and a file needs a restart"),
    }
    access_log::set_format(new.format);
    Ok(())
}
