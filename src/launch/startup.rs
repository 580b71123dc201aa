//! A configured stage from its first bind to its last request: signals blocked before any
//! thread starts, demo backends, the listeners (plain and TLS), the access log, the groups and
//! their `--debug` table, the admin listener, then serving until a stop signal and the drain.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use super::build::{default_group, start_groups, Build, Counted};
use super::demo::{server_addrs, start_demos};
use super::reload::{lock, Running};
use super::{AdjustSettings, BuildPhases};
use crate::admin::{self, AdminSettings, GroupSource, Sources};
use crate::config::{AccessLogSettings, Settings};
use crate::lifecycle::graceful;
use crate::lifecycle::signals::{Event, Signals};
use crate::metrics::{GroupLayout, Layout, PhaseReport, Registry};
use crate::relay::{Phases, Relay};
use crate::route::config::Action;
use crate::server::{self, pool::Pool, Swappable};
use crate::tls::{TlsAcceptor, TlsHandler};
use crate::{access_log, cli, dashboard};

pub(super) fn run<P, A, F>(
    program: &str,
    mut build: Build<P, A, F>,
    mut settings: Settings,
) -> Result<(), String>
where
    P: Phases,
    A: AdjustSettings,
    F: BuildPhases<P>,
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

/// The access log's destination and format at startup.
fn start_access_log(settings: &AccessLogSettings) -> Result<(), String> {
    access_log::set_format(settings.format);
    if let Some(path) = &settings.file {
        access_log::log_to_file(path).map_err(|e| e.to_string())?;
    }
    Ok(())
}
