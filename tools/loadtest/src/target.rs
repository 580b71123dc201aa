//! The target URL (`http[s]://HOST[:PORT][/PATH]`) and the loopback-only rule.
//!
//! A load tester is a traffic cannon; pointed at the wrong address it is an attack. So only
//! 127.0.0.0/8, ::1 and `localhost` are accepted unless `--allow-remote` says otherwise, and
//! other host names are not even resolved without it.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, for the report.
    pub url: String,
    pub addr: SocketAddr,
    /// Value of the `Host` header: host as written, plus the port when it is not the
    /// scheme's default.
    pub host_header: String,
    /// The host as written (brackets kept for IPv6): the TLS server name of an https target.
    pub host: String,
    /// Path and query, at least `/`.
    pub path: String,
    /// `https://`: every connection is TLS.
    pub tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    Syntax { url: String, why: &'static str },
    NotLoopback { host: String },
    Resolve { host: String, why: String },
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Syntax { url, why } => {
                write!(
                    f,
                    "invalid target URL {url:?}: {why} (expected http://127.0.0.1:8080/path \
                     or https://localhost:8443/path)"
                )
            }
            TargetError::NotLoopback { host } => write!(
                f,
                "refusing to load-test {host}: only loopback targets (127.0.0.0/8, ::1, localhost) \
                 are allowed; pass --allow-remote if you own that host"
            ),
            TargetError::Resolve { host, why } => write!(f, "cannot resolve {host}: {why}"),
        }
    }
}

impl std::error::Error for TargetError {}

/// True for the hosts that need no `--allow-remote`: loopback IP literals and `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

pub fn parse(url: &str, allow_remote: bool) -> Result<Target, TargetError> {
    let syntax = |why| TargetError::Syntax {
        url: url.to_string(),
        why,
    };
    let lower = url.to_ascii_lowercase();
    let (rest, tls) = if lower.starts_with("http://") {
        (&url["http://".len()..], false)
    } else if lower.starts_with("https://") {
        (&url["https://".len()..], true)
    } else {
        return Err(syntax("it must start with http:// or https://"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let path = match path.split_once('#') {
        Some((before, _)) => before.to_string(),
        None => path,
    };
    if authority.contains('@') {
        return Err(syntax("user info is not supported"));
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) =
        split_host_port(authority, default_port).ok_or_else(|| syntax("bad host or port"))?;
    if host.is_empty() {
        return Err(syntax("no host"));
    }
    if !allow_remote && !is_loopback_host(host) {
        return Err(TargetError::NotLoopback {
            host: host.to_string(),
        });
    }
    let addr = resolve(host, port)?;
    let host_header = if port == default_port {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    Ok(Target {
        url: url.to_string(),
        addr,
        host_header,
        host: host.to_string(),
        path,
        tls,
    })
}

/// Splits `host[:port]` or `[v6][:port]`; the host keeps its brackets (for the Host header).
fn split_host_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (host, after) = authority.split_at(close + 1);
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok().filter(|&p| p != 0)?,
        None => default_port,
    };
    Some((host, port))
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, TargetError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    // `localhost` is pinned to 127.0.0.1 rather than resolved: some resolvers answer ::1
    // first, and the stages listen on 127.0.0.1.
    if bare.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let resolve_error = |why: String| TargetError::Resolve {
        host: host.to_string(),
        why,
    };
    (bare, port)
        .to_socket_addrs()
        .map_err(|e| resolve_error(e.to_string()))?
        .next()
        .ok_or_else(|| resolve_error("no addresses".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "localhost",
            "LocalHost",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback_host(host), "{host} should be loopback");
        }
        for host in [
            "10.0.0.1",
            "192.168.1.1",
            "0.0.0.0",
            "::",
            "example.com",
            "localhost.evil.com",
            "[::2]",
        ] {
            assert!(!is_loopback_host(host), "{host} must not count as loopback");
        }
    }

    #[test]
    fn parses_loopback_urls() {
        let t = parse("http://127.0.0.1:8080/a/b?x=1", false).expect("valid");
        assert_eq!(t.addr, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(t.host_header, "127.0.0.1:8080");
        assert_eq!(t.path, "/a/b?x=1");

        let t = parse("http://localhost", false).expect("valid");
        assert_eq!(t.addr, SocketAddr::from(([127, 0, 0, 1], 80)));
        assert_eq!(
            (t.host_header.as_str(), t.path.as_str()),
            ("localhost", "/")
        );

        let t = parse("https://localhost/x", false).expect("valid");
        assert_eq!(t.addr, SocketAddr::from(([127, 0, 0, 1], 443)));
        assert_eq!((t.host_header.as_str(), t.tls), ("localhost", true));
        let t = parse("HTTPS://localhost:8443", false).expect("valid");
        assert_eq!(
            (t.host_header.as_str(), t.host.as_str()),
            ("localhost:8443", "localhost")
        );

        let t = parse("HTTP://[::1]:9000?q", false).expect("valid");
        assert_eq!(t.addr, "[::1]:9000".parse().expect("addr"));
        assert_eq!(
            (t.host_header.as_str(), t.path.as_str()),
            ("[::1]:9000", "/?q")
        );
    }

    #[test]
    fn refuses_remote_targets() {
        for url in [
            "http://10.0.0.1:8080/",
            "http://example.com/",
            "http://192.168.0.1",
        ] {
            assert!(
                matches!(parse(url, false), Err(TargetError::NotLoopback { .. })),
                "{url}"
            );
        }
        let t = parse("http://10.0.0.1:8080/", true).expect("allowed with --allow-remote");
        assert_eq!(t.addr, SocketAddr::from(([10, 0, 0, 1], 8080)));
    }

    #[test]
    fn rejects_bad_syntax() {
        for url in [
            "127.0.0.1:8080",
            "ftp://127.0.0.1/",
            "http://:8080/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:99999/",
            "http://u@127.0.0.1/",
            "http://[::1/",
        ] {
            assert!(
                matches!(parse(url, false), Err(TargetError::Syntax { .. })),
                "{url}"
            );
        }
    }
}
