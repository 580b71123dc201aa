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
//! again, starts new upstream groups with their health checks, builds a new [`Relay`], and
//! swaps it into the [`Swappable`] handler that the pool serves with; the old groups' health
//! checks stop at once, and the old relay goes when the last request on it ends. What a
//! reload cannot change without a restart (the listen address, the pool's size, a switch
//! between stderr and a file for the access log, the log level) is kept, with a warning. A
//! reload builds the phases afresh, but the stage may carry state over from the running ones:
//! the cache keeps its entries when `[cache]` did not change, access control its rate-limit
//! budgets and connection counts when the limits did not. The `--debug` table keeps showing
//! the health of the group it started with.
//!
//! With `[admin]` in the file, every exchange is counted (a [`MetricsPhases`] first in the
//! chain) into one registry laid out at start from the groups and routes, which outlives
//! reloads; the admin listener reads the running groups and phases at each request. The
//! admin listener itself (its address and key) is kept until a restart.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};

use clap::Args;

use crate::admin::{self, AdminSettings, GroupSource, Sources};
use crate::config::{self, AccessLogSettings, Settings};
use crate::health::MonitoredUpstream;
use crate::lifecycle::drain::Drain;
use crate::lifecycle::graceful;
use crate::lifecycle::signals::{Event, Signals};
use crate::metrics::{GroupLayout, Layout, MetricsPhases, PhaseReport, Registry};
use crate::relay::{Phases, Relay, RelayConfig};
use crate::route::config::Action;
use crate::server::{self, pool::Pool, Swappable};
use crate::tls::{TlsAcceptor, TlsHandler};
use crate::upstream::{Connector, Upstreams};
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

/// The running upstream groups, by name, for a routing phase.
pub type Groups = Vec<(String, Arc<dyn Upstreams>)>;

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
    A: Fn(&mut Settings) -> Result<(), String> + Send + Sync + 'static,
    F: Fn(&Settings, Groups, Option<&P>) -> Result<P, String> + Send + Sync + 'static,
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
    cli::exit_with(program, run(program, build, settings))
}

/// Why a file was not taken: its contents (exit 78), or what the stage's flags made of it
/// (exit 2).
enum Refused {
    Config(String),
    Usage(String),
}

/// What building a relay from the file takes, at startup and at each reload.
struct Build<P, A, F> {
    adjust: A,
    phases: F,
    /// Stage 9: every group runs and `[[routes]]` are followed.
    routed: bool,
    args: ConfigArgs,
    drain: Drain,
    /// `--demo`: each configured server address and the demo backend started for it.
    demo_addrs: HashMap<SocketAddr, SocketAddr>,
    /// The address actually listened on (port 0 resolved), which the phases see.
    bound: String,
    /// The same for `[tls] listen`: a reload keeps the listener and its certificates.
    bound_tls: Option<String>,
    /// The request counters, when `[admin]` is there to show them; kept across reloads.
    registry: Option<Arc<Registry>>,
    /// The phases `phases` builds: `P` appears only in `F`'s arguments now (the running
    /// phases), and an impl cannot name a type that only a bound's arguments mention.
    built: std::marker::PhantomData<fn() -> P>,
}

/// A stage's phases behind the one that counts.
type Counted<P> = (MetricsPhases, P);

/// The running configuration, replaced as a whole by a successful reload.
struct Running {
    settings: Settings,
    /// `[server] listen` as the file said it, to tell a changed one on reload.
    configured_listen: String,
    /// The groups' health checks run while they are here; a reload drops the old ones, which
    /// stops them.
    groups: Vec<(String, MonitoredUpstream)>,
}

fn run<P, A, F>(
    program: &str,
    mut build: Build<P, A, F>,
    mut settings: Settings,
) -> Result<(), String>
where
    P: Phases,
    A: Fn(&mut Settings) -> Result<(), String> + Send + Sync + 'static,
    F: Fn(&Settings, Groups, Option<&P>) -> Result<P, String> + Send + Sync + 'static,
{
    // First, before any thread starts: every later thread inherits the blocked signals.
    let signals = Signals::block().map_err(|e| format!("cannot block signals: {e}"))?;
    let args = build.args.clone();
    let _demo = if args.demo {
        let configured = server_addrs(&settings);
        let demo = if build.routed {
            start_demos(&mut settings)?
        } else {
            cli::start_demo_for(&mut settings.upstream.servers)?
        };
        // Only the moved ones: an unmoved copy of an address (a group stage 6 leaves alone)
        // must not overwrite the move of another.
        let moved = configured.into_iter().zip(server_addrs(&settings));
        build.demo_addrs = moved.filter(|(from, to)| from != to).collect();
        Some(demo)
    } else {
        None
    };
    build.one_group_unless_routed(&mut settings);
    let configured_listen = settings.listen.clone();
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
    start_access_log(&settings.access_log)?;
    let groups = start_groups(&settings)?;
    let upstream = default_group(&groups, &settings)?;
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
    let tls = start_tls(program, &mut settings)?;
    build.bound_tls = settings.tls.as_ref().map(|t| t.listen.clone());
    build.registry = (settings.admin.is_some()).then(|| Arc::new(Registry::new(layout(&settings))));
    let relay = build.relay(&settings, &groups, None)?;
    let handler = Arc::new(Swappable::new(Arc::new(relay)));
    let running = Arc::new(Mutex::new(Running {
        settings,
        configured_listen,
        groups,
    }));
    let admin = lock(&running).settings.admin.clone();
    if let (Some(admin), Some(registry)) = (admin, &build.registry) {
        start_admin(program, &admin, registry, &pool, &handler, &running)?;
    }
    let drain = build.drain.clone();
    let on_signal = {
        let listener = listener
            .try_clone()
            .map_err(|e| format!("cannot share the listening socket: {e}"))?;
        let handler = Arc::clone(&handler);
        let running = Arc::clone(&running);
        let tls_listener = match &tls {
            Some((listener, _)) => Some(
                listener
                    .try_clone()
                    .map_err(|e| format!("cannot share the TLS listening socket: {e}"))?,
            ),
            None => None,
        };
        move |event| match event {
            Event::Shutdown => {
                if let Some(tls_listener) = &tls_listener {
                    crate::server::stop_listening(tls_listener, &build.drain);
                }
                graceful::stop(&listener, &build.drain)
            }
            Event::Reload => build.reload(&handler, &running),
            Event::ReopenLog => access_log::reopen(),
        }
    };
    signals
        .spawn(on_signal)
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    // The timeout of the configuration running when the signal came (a reload may change it).
    let timeout = || lock(&running).settings.server.shutdown_timeout;
    std::thread::scope(|scope| {
        // The TLS listener shares the pool and the (reloadable) relay with the plain one; a
        // stop signal shuts both, and the pool is drained once, below.
        if let Some((tls_listener, acceptor)) = tls {
            let tls_handler = Arc::new(TlsHandler::new(Arc::clone(&handler), acceptor));
            let (pool, drain) = (&pool, &drain);
            let accepting = std::thread::Builder::new()
                .name("accept-tls".to_owned())
                .spawn_scoped(scope, move || {
                    server::serve_until(&tls_listener, pool, tls_handler, drain)
                });
            if let Err(err) = accepting {
                log::error!("cannot start the TLS accept thread: {err}");
            }
        }
        graceful::serve_then_drain(listener, &pool, handler, &drain, timeout);
    });
    access_log::finish();
    Ok(())
}

/// `[tls]`: the listener bound and the certificates loaded (or made), before any request is
/// served; `settings.tls.listen` then names the address bound (a port 0 resolved), which the
/// https redirect needs.
fn start_tls(
    program: &str,
    settings: &mut Settings,
) -> Result<Option<(TcpListener, TlsAcceptor)>, String> {
    let Some(tls) = settings.tls.as_mut() else {
        return Ok(None);
    };
    let listener = server::bind(&tls.listen).map_err(|e| e.to_string())?;
    if let Ok(addr) = listener.local_addr() {
        tls.listen = addr.to_string();
    }
    let acceptor = TlsAcceptor::from_settings(tls)?;
    // On stdout beside `listening on`, for scripts and tests that start it on port 0.
    println!("{program} TLS on {}", tls.listen);
    Ok(Some((listener, acceptor)))
}

/// What the registry counts: every group and its servers, every route and its group.
fn layout(settings: &Settings) -> Layout {
    let groups: Vec<GroupLayout> = settings
        .groups
        .iter()
        .map(|g| GroupLayout {
            name: g.name.clone(),
            servers: g.servers.iter().map(|s| s.addr).collect(),
        })
        .collect();
    let index = |name: &str| groups.iter().position(|g| g.name == name);
    let routes = settings
        .routes
        .routes
        .iter()
        .map(|r| {
            let group = match &r.action {
                Action::Upstream(name) => index(name),
                Action::Fixed(_) | Action::Redirect(_) => None,
            };
            (r.name.to_string(), group)
        })
        .collect();
    Layout {
        default_group: index(&settings.upstream.name).unwrap_or(0),
        groups,
        routes,
    }
}

/// Starts the admin listener: it reads the running groups and the running relay's phases
/// (both replaced by a reload) at each request.
fn start_admin<P: Phases>(
    program: &str,
    admin: &AdminSettings,
    registry: &Arc<Registry>,
    pool: &Pool,
    handler: &Arc<Swappable<Relay<Counted<P>>>>,
    running: &Arc<Mutex<Running>>,
) -> Result<(), String> {
    let listen = lock(running).settings.listen.clone();
    let (handler, running) = (Arc::clone(handler), Arc::clone(running));
    let sources = Sources {
        registry: Arc::clone(registry),
        groups: Box::new(move || {
            let running = lock(&running);
            running
                .groups
                .iter()
                .map(|(name, monitored)| GroupSource::new(name, monitored))
                .collect()
        }),
        pool: Some(pool.status()),
        phases: Box::new(move || {
            let mut report = PhaseReport::default();
            handler.load().phases().report(&mut report);
            report
        }),
        listen,
        started: std::time::Instant::now(),
    };
    let addr = admin::start(admin, sources).map_err(|e| e.to_string())?;
    println!("{program} admin on http://{addr} (/metrics, /status, /status.json)");
    Ok(())
}

fn server_addrs(settings: &Settings) -> Vec<SocketAddr> {
    let groups = settings.groups.iter().flat_map(|g| &g.servers);
    settings
        .upstream
        .servers
        .iter()
        .chain(groups)
        .map(|s| s.addr)
        .collect()
}

/// Each group its own balancer and health checks; they run until dropped.
fn start_groups(settings: &Settings) -> Result<Vec<(String, MonitoredUpstream)>, String> {
    settings
        .groups
        .iter()
        .map(|group| {
            MonitoredUpstream::start(group)
                .map(|monitored| (group.name.clone(), monitored))
                .map_err(|e| format!("cannot start health checks of {}: {e}", group.name))
        })
        .collect()
}

fn default_group<'a>(
    groups: &'a [(String, MonitoredUpstream)],
    settings: &Settings,
) -> Result<&'a MonitoredUpstream, String> {
    groups
        .iter()
        .find(|(name, _)| *name == settings.upstream.name)
        .map(|(_, monitored)| monitored)
        .ok_or_else(|| format!("upstream {} is not running", settings.upstream.name))
}

fn lock(running: &Mutex<Running>) -> MutexGuard<'_, Running> {
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

impl<P, A, F> Build<P, A, F>
where
    P: Phases,
    A: Fn(&mut Settings) -> Result<(), String>,
    F: Fn(&Settings, Groups, Option<&P>) -> Result<P, String>,
{
    /// The file read and checked, with the stage's flags applied.
    fn load(&self) -> Result<Settings, Refused> {
        let mut settings =
            config::load(&self.args.config).map_err(|e| Refused::Config(e.to_string()))?;
        if !self.routed && !settings.routes.is_empty() {
            return Err(Refused::Config(format!(
                "{}: [[routes]] are followed by stage9 only",
                self.args.config.display()
            )));
        }
        if !self.routed && settings.tls.is_some() {
            return Err(Refused::Config(format!(
                "{}: [tls] is served by stage9 only",
                self.args.config.display()
            )));
        }
        (self.adjust)(&mut settings).map_err(Refused::Usage)?;
        Ok(settings)
    }

    /// Stages 6 to 8 run only the serving group; the others are checked and left alone.
    fn one_group_unless_routed(&self, settings: &mut Settings) {
        if !self.routed {
            settings.groups = vec![settings.upstream.clone()];
        }
    }

    /// A relay for `settings`, to the default group of `groups`, through phases that get
    /// every group (and the running phases, on a reload).
    fn relay(
        &self,
        settings: &Settings,
        groups: &[(String, MonitoredUpstream)],
        running: Option<&P>,
    ) -> Result<Relay<Counted<P>>, String> {
        let upstream = default_group(groups, settings)?;
        let by_name: Groups = groups
            .iter()
            .map(|(name, m)| (name.clone(), m.balancer.clone() as Arc<dyn Upstreams>))
            .collect();
        let phases = (self.phases)(settings, by_name, running)?;
        let tuning = settings.tuning();
        let relay_config = RelayConfig {
            upgrades: settings.upgrades.clone(),
            ..tuning.relay_config()
        };
        let mut connector = Connector::new(tuning.upstream_timeouts());
        for tls in settings.groups.iter().filter_map(|g| g.tls.as_ref()) {
            connector = connector.with_tls_group(tls)?;
        }
        Ok(Relay::with_phases(
            relay_config,
            upstream.balancer.clone(),
            connector,
            (MetricsPhases::counting(self.registry.clone()), phases),
        )
        .with_drain(self.drain.clone()))
    }

    /// `SIGHUP`: the file read and built again, then swapped in; on any error the running
    /// configuration stays and the error is logged.
    fn reload(&self, handler: &Swappable<Relay<Counted<P>>>, running: &Mutex<Running>) {
        let path = &self.args.config;
        log::info!("reloading {}", path.display());
        match self.reloaded(handler, running) {
            Ok(summary) => log::info!("reloaded {}: {summary}", path.display()),
            Err(err) => log::error!("reload failed, the running configuration stays: {err}"),
        }
    }

    fn reloaded(
        &self,
        handler: &Swappable<Relay<Counted<P>>>,
        running: &Mutex<Running>,
    ) -> Result<String, String> {
        let mut settings = self
            .load()
            .map_err(|(Refused::Config(e) | Refused::Usage(e))| e)?;
        let groups = settings.groups.iter_mut().flat_map(|g| &mut g.servers);
        for server in settings.upstream.servers.iter_mut().chain(groups) {
            if let Some(&demo) = self.demo_addrs.get(&server.addr) {
                server.addr = demo;
            }
        }
        self.one_group_unless_routed(&mut settings);
        let mut running = lock(running);
        self.warn_about_restart_only(&running, &settings);
        warn_about_shared_tuning(&settings);
        let configured_listen = std::mem::replace(&mut settings.listen, self.bound.clone());
        // The TLS listener and its certificates stay as started (a restart changes them);
        // the phases see the address bound, as at start.
        if running
            .settings
            .tls
            .as_ref()
            .map(|t| (&t.certificates, t.handshake_timeout))
            != settings
                .tls
                .as_ref()
                .map(|t| (&t.certificates, t.handshake_timeout))
        {
            log::warn!("reload: [tls] listen, certificates and timeouts need a restart to change");
        }
        if let (Some(tls), Some(bound)) = (settings.tls.as_mut(), &self.bound_tls) {
            tls.listen = bound.clone();
        }
        // On an error from here on, the new groups are dropped, and their health checks with
        // them.
        let groups = start_groups(&settings)?;
        let running_relay = handler.load();
        let relay = self.relay(&settings, &groups, Some(&running_relay.phases().1))?;
        if settings.access_log != running.settings.access_log {
            reload_access_log(&running.settings.access_log, &settings.access_log)?;
        }
        // Requests from now on get the new relay; those in flight hold the old one.
        drop(handler.swap(Arc::new(relay)));
        let summary = settings.summary();
        // Dropping the old groups stops their health checks (each thread is joined).
        drop(std::mem::replace(&mut running.groups, groups));
        running.settings = settings;
        running.configured_listen = configured_listen;
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
        let admin_listen = |s: &Settings| s.admin.as_ref().map(|a| a.listen.clone());
        if admin_listen(new) != admin_listen(&running.settings) {
            log::warn!("reload: [admin] needs a restart to change (its listener keeps running)");
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
