//! `stale-while-revalidate` (RFC 5861): the client gets the stale entry at once, and one
//! request, sent to this proxy on a thread of its own, revalidates it through the ordinary
//! path (its routes, its access rules, the cache's fill), so nothing here stores anything.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::CachePhases;
use crate::cache::store::Joined;
use crate::http::RequestHead;

impl CachePhases {
    /// Starts the background refresh of `key` unless one runs already.
    pub(super) fn refresh_in_background(&self, proxy: SocketAddr, key: &str, head: &RequestHead) {
        let Joined::Lead(lead) = self.flights.join(&format!("refresh {key}")) else {
            return;
        };
        // The client's fields, less those about its own connection, conditions or cache
        // wishes: the refresh must reach the origin and select the same variant.
        const SKIP: &[&str] = &[
            "cache-control",
            "pragma",
            "connection",
            "keep-alive",
            "te",
            "upgrade",
            "expect",
            "content-length",
            "transfer-encoding",
            "if-none-match",
            "if-modified-since",
            "if-match",
            "if-unmodified-since",
            "if-range",
            "range",
        ];
        // The client's target, not the one a route rewrote: the refresh goes through this
        // proxy's routes again.
        let mut request = format!("GET {} HTTP/1.1\r\n", head.client_target()).into_bytes();
        for h in &head.headers {
            if !SKIP.iter().any(|n| h.name.eq_ignore_ascii_case(n)) {
                request.extend_from_slice(h.name.as_bytes());
                request.extend_from_slice(b": ");
                request.extend_from_slice(&h.value);
                request.extend_from_slice(b"\r\n");
            }
        }
        request.extend_from_slice(b"Cache-Control: max-age=0\r\nConnection: close\r\n\r\n");
        let spawned = std::thread::Builder::new()
            .name("cache-refresh".into())
            .spawn(move || {
                let _lead = lead; // released when the refresh is over
                if let Err(err) = send_refresh(proxy, &request) {
                    log::warn!("cache: background refresh failed: {err}");
                }
            });
        if let Err(err) = spawned {
            log::warn!("cache: cannot start a background refresh: {err}");
        }
    }
}

/// One refresh request through the proxy; the answer is read to its end and dropped (the
/// proxy stored it on the way).
fn send_refresh(proxy: SocketAddr, request: &[u8]) -> std::io::Result<()> {
    const LIMIT: Duration = Duration::from_secs(30);
    let mut conn = TcpStream::connect_timeout(&proxy, LIMIT)?;
    conn.set_read_timeout(Some(LIMIT))?;
    conn.set_write_timeout(Some(LIMIT))?;
    conn.write_all(request)?;
    // Connection: close, so the answer ends with the connection; bounded all the same.
    std::io::copy(&mut (&mut conn).take(1 << 30), &mut std::io::sink())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::TcpListener;

    #[test]
    fn a_refresh_sends_the_request_and_reads_the_answer_to_its_end() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let proxy = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            while !got.ends_with(b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody")
                .expect("answer");
            got
        });
        let request = b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
        send_refresh(addr, request).expect("the refresh completes when the proxy closes");
        assert_eq!(proxy.join().expect("the proxy thread"), request);
    }
}
