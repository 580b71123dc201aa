//! `--demo`: a demo backend in place of every configured server, so a configured stage runs on
//! a machine with nothing else started.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::config::Settings;

pub(super) fn server_addrs(settings: &Settings) -> Vec<SocketAddr> {
    let groups = settings.groups.iter().flat_map(|g| &g.servers);
    settings
        .upstream
        .servers
        .iter()
        .chain(groups)
        .map(|s| s.addr)
        .collect()
}

/// `--demo`: a demo backend on every configured server address of every running group (one
/// for an address listed in several groups), each server pointed at the backend that took
/// its place (a port 0 gets whatever free port the demo found).
pub(super) fn start_demos(settings: &mut Settings) -> Result<Vec<backends::Backend>, String> {
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
