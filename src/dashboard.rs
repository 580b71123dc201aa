//! `--debug`: a live table of the servers of an upstream (address, state, failures in a row,
//! last healthy time, requests in flight), redrawn in place like a small `top`.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

use crate::balancer::Balancer;
use crate::health::{format_table, HealthTable};

const REFRESH: Duration = Duration::from_millis(500);

/// Draws the table on stderr for the life of the process. On a terminal it is redrawn in
/// place; otherwise (a log file) it is printed again only when a server changes state.
pub fn spawn(
    upstream: String,
    health: Arc<HealthTable>,
    balancer: Arc<Balancer>,
) -> std::io::Result<()> {
    thread::Builder::new().name("dashboard".to_owned()).spawn(move || {
        let terminal = std::io::stderr().is_terminal();
        let mut last_states = String::new();
        loop {
            let rows: Vec<_> = health
                .snapshot()
                .into_iter()
                .zip(balancer.backends().iter().map(|b| b.active()))
                .collect();
            let states: String = rows.iter().map(|(s, _)| s.state.to_string()).collect();
            let table = format_table(&upstream, &rows, SystemTime::now());
            let mut err = std::io::stderr().lock();
            if terminal {
                // Home the cursor and clear the screen, then draw.
                let _ = write!(err, "\x1b[H\x1b[J{table}\n(--debug: refreshed every {REFRESH:?}; Ctrl-C stops the proxy)\n");
            } else if states != last_states {
                let _ = writeln!(err, "{table}");
            }
            drop(err);
            last_states = states;
            thread::sleep(REFRESH);
        }
    })?;
    Ok(())
}
