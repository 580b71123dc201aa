//! `[server]`: as written (a serde section whose defaults are the checked types' own) and
//! checked into [`ServerSettings`], which holds the parts' checked types as they are: the
//! relay's [`ClientPolicy`] and the pool's [`PoolConfig`]. A new client setting is a field of
//! `ClientPolicy` with its default, and here its key, its default (taken from
//! `ClientPolicy::default()`) and its line in [`check`].

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::SectionError;
use crate::http::Limits;
use crate::relay::{ClientPolicy, ClientTimeouts};
use crate::server::pool::PoolConfig;
use crate::tuning::DEFAULT_SHUTDOWN_TIMEOUT;
use crate::upstream::resolve;

/// `[server]` as written: the listener, its workers, and what clients may do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub listen: Spanned<String>,
    /// Pool threads that serve requests.
    pub workers: usize,
    /// Accepted connections waiting for a worker before new ones get 503.
    pub queue: usize,
    pub header_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    /// Longest pause while a client sends a request body (nginx `client_body_timeout`).
    pub body_timeout_ms: u64,
    /// Longest a write to a client may block (nginx `send_timeout`), and the window over
    /// which `min_send_rate` is averaged.
    pub send_timeout_ms: u64,
    /// Bytes per second a client must read a response at, or be cut off (`0`: no minimum).
    pub min_send_rate: u64,
    pub max_body_bytes: u64,
    /// The upstream that serves requests; may be left out when there is only one, or when
    /// `[[routes]]` (stage 9) say which group takes each request.
    pub upstream: Option<Spanned<String>>,
    /// How long a graceful shutdown (SIGTERM, SIGINT) waits for requests in flight.
    pub shutdown_timeout_ms: u64,
    /// Forward request header fields whose name holds an `_` (nginx's
    /// `underscores_in_headers`); dropped by default.
    pub underscores_in_headers: bool,
    /// Forward `TRACE` requests; answered 405 by default.
    pub allow_trace: bool,
}

impl Default for ServerSection {
    fn default() -> ServerSection {
        let client = ClientPolicy::default();
        let pool = PoolConfig::default();
        ServerSection {
            listen: Spanned::new(0..0, "127.0.0.1:8080".to_owned()),
            workers: pool.workers,
            queue: pool.queue,
            header_timeout_ms: millis(client.timeouts.head),
            idle_timeout_ms: millis(client.timeouts.idle),
            body_timeout_ms: millis(client.timeouts.body),
            send_timeout_ms: millis(client.timeouts.write),
            min_send_rate: client.timeouts.min_send_rate,
            max_body_bytes: client.limits.max_body,
            upstream: None,
            shutdown_timeout_ms: millis(DEFAULT_SHUTDOWN_TIMEOUT),
            underscores_in_headers: client.underscores_in_headers,
            allow_trace: client.allow_trace,
        }
    }
}

/// `[server]`, checked: what clients may do, and the pool that serves them.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub client: ClientPolicy,
    pub pool: PoolConfig,
    pub shutdown_timeout: Duration,
}

/// Checks `[server]` (the `upstream` key is checked with the upstreams it names).
pub fn check(server: &ServerSection) -> Result<ServerSettings, SectionError> {
    resolve(server.listen.get_ref())
        .map_err(|e| SectionError::at(server.listen.span(), format!("listen: {e}")))?;
    if server.workers == 0 || server.queue == 0 {
        return Err(SectionError::new(
            None,
            "[server] workers and queue must be at least 1".to_owned(),
        ));
    }
    let key = |name: &str, ms| positive_ms(&format!("[server] {name}"), ms);
    Ok(ServerSettings {
        client: ClientPolicy {
            timeouts: ClientTimeouts {
                head: key("header_timeout_ms", server.header_timeout_ms)?,
                idle: key("idle_timeout_ms", server.idle_timeout_ms)?,
                body: key("body_timeout_ms", server.body_timeout_ms)?,
                write: key("send_timeout_ms", server.send_timeout_ms)?,
                min_send_rate: server.min_send_rate,
            },
            limits: Limits {
                max_body: server.max_body_bytes,
                ..Limits::default()
            },
            underscores_in_headers: server.underscores_in_headers,
            allow_trace: server.allow_trace,
        },
        pool: PoolConfig {
            workers: server.workers,
            queue: server.queue,
            ..PoolConfig::default()
        },
        shutdown_timeout: key("shutdown_timeout_ms", server.shutdown_timeout_ms)?,
    })
}

/// A duration key in milliseconds, which must be more than 0 (a zero socket timeout is an
/// error to the OS); `what` names the key in the message.
pub(super) fn positive_ms(what: &str, ms: u64) -> Result<Duration, SectionError> {
    if ms == 0 {
        return Err(SectionError::new(
            None,
            format!("{what} must be more than 0"),
        ));
    }
    Ok(Duration::from_millis(ms))
}

/// A default duration as the file writes it.
pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `[server]` left out checks to the defaults of the parts' own types (and of the flags,
    /// which start from the same ones): no default is written twice.
    #[test]
    fn the_section_defaults_are_the_checked_defaults() {
        let settings = check(&ServerSection::default()).unwrap();
        assert_eq!(settings.client, ClientPolicy::default());
        assert_eq!(settings.pool, PoolConfig::default());
        assert_eq!(settings.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
    }

    #[test]
    fn zero_durations_and_an_empty_pool_are_refused_by_key() {
        /// A change that makes the section wrong, and the message it must get.
        type Case = (fn(&mut ServerSection), &'static str);
        let table: &[Case] = &[
            (
                |s| s.header_timeout_ms = 0,
                "[server] header_timeout_ms must be more than 0",
            ),
            (
                |s| s.idle_timeout_ms = 0,
                "[server] idle_timeout_ms must be more than 0",
            ),
            (
                |s| s.body_timeout_ms = 0,
                "[server] body_timeout_ms must be more than 0",
            ),
            (
                |s| s.send_timeout_ms = 0,
                "[server] send_timeout_ms must be more than 0",
            ),
            (
                |s| s.shutdown_timeout_ms = 0,
                "[server] shutdown_timeout_ms must be more than 0",
            ),
            (
                |s| s.workers = 0,
                "[server] workers and queue must be at least 1",
            ),
            (
                |s| s.queue = 0,
                "[server] workers and queue must be at least 1",
            ),
        ];
        for (spoil, want) in table {
            let mut section = ServerSection::default();
            spoil(&mut section);
            let err = check(&section).expect_err(want);
            assert_eq!(err.message, *want);
        }
    }
}
