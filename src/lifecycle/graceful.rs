//! The accept loop with graceful shutdown, for any stage: serve until `SIGTERM`/`SIGINT`, then
//! drain. `launch` (stage 6 on) uses [`serve_then_drain`] with its own signal handling (it
//! reloads too); the stages with flags only (3 to 5) use [`Graceful`], which handles the stop
//! signals alone.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::drain::Drain;
use super::signals::{Event, Signals};
use crate::server::{self, ConnectionHandler, ConnectionModel};

/// Serves `listener` until `drain` is set (by [`server::stop_listening`]), then lets `model`
/// finish the requests in flight within `timeout`; returns whether all finished.
pub fn serve_then_drain(
    listener: TcpListener,
    model: &dyn ConnectionModel,
    handler: Arc<dyn ConnectionHandler>,
    drain: &Drain,
    timeout: impl FnOnce() -> Duration,
) -> bool {
    server::serve_until(&listener, model, handler, drain);
    drop(listener);
    let timeout = timeout();
    let finished = model.drain(Instant::now() + timeout);
    if finished {
        log::info!("shutdown complete: every request in flight finished");
    } else {
        log::warn!("shutdown: requests still in flight after {timeout:?} are cut off");
    }
    finished
}

/// Starts a graceful shutdown on the signals thread: logged, then the listener stopped.
pub fn stop(listener: &TcpListener, drain: &Drain) {
    log::info!("shutting down: no new connections; a second signal exits at once");
    server::stop_listening(listener, drain);
}

/// Graceful shutdown for a stage without a configuration file.
#[derive(Debug)]
pub struct Graceful {
    signals: Signals,
    drain: Drain,
}

impl Graceful {
    /// Blocks the signals: call it first in `main`'s work, before any thread is started (see
    /// [`Signals::block`]).
    pub fn start() -> Result<Graceful, String> {
        Ok(Graceful {
            signals: Signals::block().map_err(|e| format!("cannot block signals: {e}"))?,
            drain: Drain::new(),
        })
    }

    /// The flag the relay reads, so that responses close their connections while draining
    /// (`Relay::with_drain`).
    pub fn drain(&self) -> Drain {
        self.drain.clone()
    }

    /// Serves until `SIGTERM`/`SIGINT`, then drains within `timeout`.
    pub fn serve(
        self,
        listener: TcpListener,
        model: &dyn ConnectionModel,
        handler: Arc<dyn ConnectionHandler>,
        timeout: Duration,
    ) -> Result<(), String> {
        let for_signals = listener
            .try_clone()
            .map_err(|e| format!("cannot share the listening socket: {e}"))?;
        let drain = self.drain.clone();
        self.signals
            .spawn(move |event| match event {
                Event::Shutdown => stop(&for_signals, &drain),
                Event::Reload => log::warn!("SIGHUP: this stage has no file to reload"),
                Event::ReopenLog => log::info!("SIGUSR1: this stage logs to stderr only"),
            })
            .map_err(|e| format!("cannot start the signal thread: {e}"))?;
        serve_then_drain(listener, model, handler, &self.drain, || timeout);
        Ok(())
    }
}
