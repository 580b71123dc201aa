//! The "shutting down" flag: set once, when a graceful shutdown starts, and read by the accept
//! loop (stop accepting), the concurrency models (close idle connections, wait for the busy
//! ones) and the relay (every response from now on says `Connection: close`).
//!
//! A leaf module, so that the relay can read it without depending on the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether the process is draining; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Drain(Arc<AtomicBool>);

impl Drain {
    pub fn new() -> Drain {
        Drain::default()
    }

    /// Starts draining; returns whether this call started it (false: it had already begun).
    pub fn start(&self) -> bool {
        !self.0.swap(true, Ordering::SeqCst)
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag_and_only_the_first_start_counts() {
        let drain = Drain::new();
        let seen_elsewhere = drain.clone();
        assert!(!seen_elsewhere.is_draining());
        assert!(drain.start());
        assert!(!drain.start(), "a second start is not a new shutdown");
        assert!(seen_elsewhere.is_draining());
    }
}
