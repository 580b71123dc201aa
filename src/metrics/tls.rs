//! TLS handshake counters, process-wide: the TLS listener counts here without being handed
//! anything, and `/metrics` reads them (zero until a stage terminates TLS).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Handshakes on the client side of the proxy.
#[derive(Debug, Default)]
pub struct TlsCounters {
    handshakes: AtomicU64,
    failures: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TlsSnapshot {
    /// Completed handshakes.
    pub handshakes: u64,
    /// Handshakes that failed (a bad client hello, no common version or cipher, a timeout).
    pub failures: u64,
}

static TLS: TlsCounters = TlsCounters {
    handshakes: AtomicU64::new(0),
    failures: AtomicU64::new(0),
};

/// The process's TLS counters: `metrics::tls().handshake_done()` after a handshake,
/// `metrics::tls().handshake_failed()` when one fails.
pub fn tls() -> &'static TlsCounters {
    &TLS
}

impl TlsCounters {
    pub fn handshake_done(&self) {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn handshake_failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> TlsSnapshot {
        TlsSnapshot {
            handshakes: self.handshakes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}
