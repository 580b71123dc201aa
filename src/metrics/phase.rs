//! The logging phase that counts: every exchange's [`Summary`] goes into the [`Registry`].
//! Chained first in a stage's phases, it sees every exchange, the proxy's own refusals too.

use std::sync::Arc;

use super::registry::{Observation, Registry};
use crate::relay::{Phases, Summary};

/// Counts exchanges; `MetricsPhases::off()` counts nothing (no `[admin]` section: nobody
/// would read the numbers).
#[derive(Debug, Clone, Default)]
pub struct MetricsPhases {
    registry: Option<Arc<Registry>>,
}

impl MetricsPhases {
    pub fn new(registry: Arc<Registry>) -> MetricsPhases {
        MetricsPhases {
            registry: Some(registry),
        }
    }

    pub fn off() -> MetricsPhases {
        MetricsPhases { registry: None }
    }

    /// Counts into `registry` if there is one.
    pub fn counting(registry: Option<Arc<Registry>>) -> MetricsPhases {
        MetricsPhases { registry }
    }
}

impl Phases for MetricsPhases {
    type Ctx = ();

    /// It only counts: a cache hit's stored fields can go as serialised.
    fn reads_reply_fields(&self) -> bool {
        false
    }

    fn logging(&self, _ctx: &mut (), summary: &Summary<'_>) {
        let Some(registry) = &self.registry else {
            return;
        };
        let request = summary.request;
        registry.record(&Observation {
            route: request.and_then(|r| r.route.as_deref()),
            method: request.map(|r| r.method.as_str()),
            status: summary.status,
            upstream: summary.upstream,
            body_bytes: summary.body_bytes,
            request_bytes: summary.request_bytes,
            duration: summary.duration,
            upstream_time: summary.upstream_time,
        });
    }
}
