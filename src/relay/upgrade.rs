//! HTTP/1.1 upgrades (RFC 9110 section 7.8): which requests may switch protocols through the
//! proxy, the headers that carry the switch on each hop, and how many tunnels may be open.
//!
//! `Connection` and `Upgrade` are hop-by-hop, so the header rules (`http::headers`) strip
//! them from every request. An upgrade request keeps them only when all of these hold:
//!
//! - the relay allows upgrades ([`UpgradeConfig::allow`], off by default, so stages 1 to 8
//!   behave as they always did) or the phases' `upgrade` hook says yes for this request (a
//!   stage 9 route);
//! - it is HTTP/1.1 (a server must ignore `Upgrade` in HTTP/1.0) with `Connection: upgrade`;
//! - it has no body. A WebSocket handshake is a GET without one; a body before the switch
//!   would mean relaying it, then watching for a `101` in the middle of the upload. Such a
//!   request goes on as a plain request, without the upgrade headers, as servers may ignore
//!   `Upgrade`;
//! - at least one protocol is left once the refused ones are taken out. `h2c` (and `h2`) are
//!   never relayed: RFC 9113 section 3.1 dropped the h2c upgrade, and a switched connection
//!   is opaque, so every later request on it would bypass routing and access control. The
//!   request is forwarded as a plain HTTP/1.1 request, which is what nginx does with it too,
//!   and the origin answers it in HTTP/1.1.
//!
//! Either side may be TLS (wss:// from a client, an `https://` backend): on the `101` the
//! connection is taken from the worker whole (`Socket::take_over`). Two plain TCP sockets get
//! a thread per direction (`tunnel.rs`); a TLS stream cannot be split between two threads,
//! so such a tunnel gets one thread polling both sides (`poll_tunnel.rs`).
//!
//! A tunnel holds one or two threads of its own, never a worker of stage 4's pool: the
//! worker that read the upgrade request returns as soon as the `101` is sent, so a pool of
//! `workers` serves plain requests at full strength whatever the number of open tunnels. The
//! tunnels' own bound is [`UpgradeConfig::max_tunnels`] (256 by default, independent of
//! `workers`); past it an upgrade request is answered `503` with `Retry-After: 1` before
//! anything goes upstream, and plain requests are served as usual. In stages 1 to 3 (and the
//! pool's `hold` mode) the connection's own thread or process also waits for its tunnel, so
//! there a tunnel counts against `max_connections` as well, as any long connection does.
//!
//! Stages 1 to 8 keep upgrades off unless asked (`[upgrades] enabled = true` from stage 6 on):
//! an earlier stage's binary behaves as it always did, and an operator opts in to connections
//! the proxy can no longer see into, as with nginx's explicit `proxy_set_header Upgrade`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::http::head::Headers;
use crate::http::{RequestHead, ResponseHead};

/// Default for [`UpgradeConfig::max_tunnels`]: each tunnel costs at most two threads (small
/// stacks) and two descriptors, so 256 is 512 threads, a bounded amount on any machine.
pub const DEFAULT_MAX_TUNNELS: usize = 256;

/// Default for [`UpgradeConfig::idle_timeout`]: nginx closes a tunnel after
/// `proxy_read_timeout` (60 s) without a byte; WebSocket applications ping well within that.
pub const DEFAULT_TUNNEL_IDLE: Duration = Duration::from_secs(60);

/// Protocols a request may not switch to through the proxy (see the module docs).
const REFUSED: &[&str] = &["h2c", "h2"];

/// Whether and how requests may switch protocols.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeConfig {
    /// Pass upgrade requests (WebSocket and others, never h2c) to the origin. The phases'
    /// `upgrade` hook can decide per request instead.
    pub allow: bool,
    /// Tunnels open at once; an upgrade request past it gets `503`.
    pub max_tunnels: usize,
    /// A tunnel with no byte in either direction for this long is closed on both sides.
    pub idle_timeout: Duration,
}

impl Default for UpgradeConfig {
    fn default() -> UpgradeConfig {
        UpgradeConfig {
            allow: false,
            max_tunnels: DEFAULT_MAX_TUNNELS,
            idle_timeout: DEFAULT_TUNNEL_IDLE,
        }
    }
}

/// The protocols an upgrade request asks for, without the refused ones, as the value of the
/// `Upgrade` header to forward; `None` when the request is no upgrade the proxy would relay
/// (HTTP/1.0, no `upgrade` token in `Connection`, no `Upgrade` header, only refused protocols).
pub(super) fn requested(head: &RequestHead) -> Option<String> {
    if head.minor_version == 0 || !head.has_token("connection", "upgrade") {
        return None;
    }
    let mut kept: Vec<String> = Vec::new();
    for value in head.values("upgrade") {
        for token in value.split(|&b| b == b',') {
            let token = String::from_utf8_lossy(token.trim_ascii());
            let name = token.split('/').next().unwrap_or("").trim();
            if token.is_empty() || REFUSED.iter().any(|r| name.eq_ignore_ascii_case(r)) {
                continue;
            }
            kept.push(token.into_owned());
        }
    }
    (!kept.is_empty()).then(|| kept.join(", "))
}

/// The protocol a `101` switches to, from its `Upgrade` header (a 101 without one is invalid,
/// RFC 9110 section 15.2.2).
pub(super) fn switched_to(response: &ResponseHead) -> Option<Vec<u8>> {
    let mut joined = Vec::new();
    for value in response.values("upgrade") {
        let value = value.trim_ascii();
        if value.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(value);
    }
    (!joined.is_empty()).then_some(joined)
}

/// Adds `Connection: upgrade` and `Upgrade` to a serialised head (which the header rules
/// wrote without them), just before its empty line.
pub(super) fn with_upgrade_headers(mut head: Vec<u8>, protocols: &[u8]) -> Vec<u8> {
    debug_assert!(head.ends_with(b"\r\n\r\n"));
    head.truncate(head.len().saturating_sub(2));
    head.extend_from_slice(b"Connection: upgrade\r\nUpgrade: ");
    head.extend_from_slice(protocols);
    head.extend_from_slice(b"\r\n\r\n");
    head
}

/// Counts open tunnels against the cap.
#[derive(Debug)]
pub(super) struct Tunnels {
    live: Arc<AtomicUsize>,
    max: usize,
}

/// One open tunnel's place under the cap, given back when dropped (however its thread ends).
#[derive(Debug)]
pub(super) struct TunnelSlot(Arc<AtomicUsize>);

impl Tunnels {
    pub(super) fn new(max: usize) -> Tunnels {
        Tunnels {
            live: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// A slot, if fewer than the cap are open.
    pub(super) fn take(&self) -> Option<TunnelSlot> {
        self.live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| TunnelSlot(Arc::clone(&self.live)))
    }

    pub(super) fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request, parse_response};

    #[test]
    fn which_requests_are_upgrades_and_to_what() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                Some("websocket"),
            ),
            (
                "GET /ws HTTP/1.1\r\nConnection: keep-alive, upgrade\r\nUpgrade: WebSocket\r\n\r\n",
                Some("WebSocket"),
            ),
            // No `upgrade` token in Connection: Upgrade is not meant for this hop.
            ("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", None),
            ("GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n", None),
            // HTTP/1.0: ignored, RFC 9110 section 7.8.
            (
                "GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
                None,
            ),
            (
                "GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n",
                None,
            ),
            (
                "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: H2C, foo/2 , h2\r\n\r\n",
                Some("foo/2"),
            ),
            (
                "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: a\r\nUpgrade: b/1\r\n\r\n",
                Some("a, b/1"),
            ),
            (
                "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: , \r\n\r\n",
                None,
            ),
        ];
        for (request, want) in cases {
            let head = parse_request(request.as_bytes(), 20).unwrap();
            assert_eq!(requested(&head).as_deref(), *want, "{request:?}");
        }
    }

    #[test]
    fn a_101_names_its_protocol() {
        let head = parse_response(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            10,
        )
        .unwrap();
        assert_eq!(switched_to(&head).as_deref(), Some(&b"websocket"[..]));
        let bare = parse_response(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 10).unwrap();
        assert_eq!(switched_to(&bare), None);
    }

    #[test]
    fn upgrade_headers_go_before_the_empty_line() {
        let head =
            with_upgrade_headers(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), b"websocket");
        assert_eq!(
            head,
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        );
    }

    #[test]
    fn tunnel_slots_are_capped_and_given_back() {
        let tunnels = Tunnels::new(1);
        let slot = tunnels.take().expect("first");
        assert!(tunnels.take().is_none());
        assert_eq!(tunnels.live(), 1);
        drop(slot);
        assert!(tunnels.take().is_some());
    }
}
