//! `SIGHUP`: the file read and checked again, a new relay built with the same code as at
//! startup and swapped in; on any error the running configuration stays. What only a restart
//! can change is kept, with a warning.

use std::sync::{Arc, Mutex, MutexGuard};

use super::build::{start_groups, Build, Counted};
use super::{AdjustSettings, BuildPhases, Refused};
use crate::access_log;
use crate::config::{AccessLogSettings, Settings};
use crate::health::MonitoredUpstream;
use crate::relay::{Phases, Relay};
use crate::server::Swappable;

/// The running configuration, replaced as a whole by a successful reload.
pub(super) struct Running {
    pub(super) settings: Settings,
    /// `[server] listen` as the file said it, to tell a changed one on reload.
    pub(super) configured_listen: String,
    /// The groups' health checks run while they are here; a reload drops the old ones, which
    /// stops them.
    pub(super) groups: Vec<(String, MonitoredUpstream)>,
}

pub(super) fn lock(running: &Mutex<Running>) -> MutexGuard<'_, Running> {
    // A panic in a reload leaves the previous configuration, which is whole.
    running.lock().unwrap_or_else(|p| p.into_inner())
}

impl<P, A, F> Build<P, A, F>
where
    P: Phases,
    A: AdjustSettings,
    F: BuildPhases<P>,
{
    /// `SIGHUP`: the file read and built again, then swapped in; on any error the running
    /// configuration stays and the error is logged.
    pub(super) fn reload(&self, handler: &Swappable<Relay<Counted<P>>>, running: &Mutex<Running>) {
        let path = &self.args.config;
        log::info!("reloading {}", path.display());
        match self.reloaded(handler, running) {
            Ok(summary) => log::info!("reloaded {}: {summary}", path.display()),
            Err(err) => log::error!("reload failed, the running configuration stays: {err}"),
        }
    }

    pub(super) fn reloaded(
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
