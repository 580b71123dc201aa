//! A relay made from checked settings: the file loaded with the stage's flags applied, the
//! upstream groups started, the stage's phases built, behind the counting phase. The same
//! code runs at startup and at every reload.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

use super::{AdjustSettings, BuildPhases, ConfigArgs, Groups, Refused};
use crate::config::{self, Settings};
use crate::health::MonitoredUpstream;
use crate::lifecycle::drain::Drain;
use crate::metrics::{MetricsPhases, Registry};
use crate::relay::{Phases, Relay};
use crate::upstream::Upstreams;

/// What building a relay from the file takes, at startup and at each reload.
pub(super) struct Build<P, A, F> {
    pub(super) adjust: A,
    pub(super) phases: F,
    /// Stage 9: every group runs and `[[routes]]` are followed.
    pub(super) routed: bool,
    pub(super) args: ConfigArgs,
    pub(super) drain: Drain,
    /// `--demo`: each configured server address and the demo backend started for it.
    pub(super) demo_addrs: HashMap<SocketAddr, SocketAddr>,
    /// The address actually listened on (port 0 resolved), which the phases see.
    pub(super) bound: String,
    /// The same for `[tls] listen`: a reload keeps the listener and its certificates.
    pub(super) bound_tls: Option<String>,
    /// The request counters, when `[admin]` is there to show them; kept across reloads.
    pub(super) registry: Option<Arc<Registry>>,
    /// The phases `phases` builds: `P` appears only in `F`'s arguments now (the running
    /// phases), and an impl cannot name a type that only a bound's arguments mention.
    pub(super) built: PhantomData<fn() -> P>,
}

/// A stage's phases behind the one that counts.
pub(super) type Counted<P> = (MetricsPhases, P);

impl<P, A, F> Build<P, A, F>
where
    P: Phases,
    A: AdjustSettings,
    F: BuildPhases<P>,
{
    /// The file read and checked, with the stage's flags applied.
    pub(super) fn load(&self) -> Result<Settings, Refused> {
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
    pub(super) fn one_group_unless_routed(&self, settings: &mut Settings) {
        if !self.routed {
            settings.groups = vec![settings.upstream.clone()];
        }
    }

    /// A relay for `settings`, to the default group of `groups`, through phases that get
    /// every group (and the running phases, on a reload).
    pub(super) fn relay(
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
        let mut connector = tuning.connector();
        for tls in settings.groups.iter().filter_map(|g| g.tls.as_ref()) {
            connector = connector.with_tls_group(tls)?;
        }
        Ok(Relay::with_phases(
            tuning.relay_config(),
            upstream.balancer.clone(),
            connector,
            (MetricsPhases::counting(self.registry.clone()), phases),
        )
        .with_drain(self.drain.clone()))
    }
}

/// Each group its own balancer and health checks; they run until dropped.
pub(super) fn start_groups(
    settings: &Settings,
) -> Result<Vec<(String, MonitoredUpstream)>, String> {
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

pub(super) fn default_group<'a>(
    groups: &'a [(String, MonitoredUpstream)],
    settings: &Settings,
) -> Result<&'a MonitoredUpstream, String> {
    groups
        .iter()
        .find(|(name, _)| *name == settings.upstream.name)
        .map(|(_, monitored)| monitored)
        .ok_or_else(|| format!("upstream {} is not running", settings.upstream.name))
}
