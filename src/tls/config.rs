//! `[tls]` in the configuration file, and the settings it gives.
//!
//! ```toml
//! [tls]
//! listen = "127.0.0.1:8443"
//! certificates = [
//!     { cert = "certs/a.pem", key = "certs/a.key", names = ["a.test"] },
//!     { cert = "certs/b.pem", key = "certs/b.key", names = ["*.b.test"] },
//! ]
//! redirect_http = true            # the plain listener answers 308 to https://
//! hsts = "max-age=31536000"       # Strict-Transport-Security on responses over TLS
//! handshake_timeout_ms = 10000
//! ```
//!
//! The certificate is chosen by the name the client sends (SNI); the first one serves
//! clients that send no name, or one that no entry lists. For development,
//! `self_signed = true` (with `self_signed_names`, and `self_signed_ca` for where the CA
//! certificate goes) generates a CA and a certificate at start instead of reading files.
//!
//! Checking here is about the text only (addresses, names, ranges); reading the PEM files
//! is [`server_config`](super::server::server_config)'s job, at start.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::SectionError;

/// Default for `handshake_timeout_ms`: as long as a client gets to send a request head is
/// far too long for a handshake, which takes one or two round trips; nginx gives 60 s
/// (`ssl_handshake_timeout`) but anything past a few seconds is a stalled or hostile client.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `[tls]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The TLS listener's address (the plain one stays `[server] listen`).
    pub listen: Spanned<String>,
    #[serde(default)]
    pub certificates: Vec<Spanned<CertificateEntry>>,
    /// Generate a CA and a certificate signed by it at start (development only).
    #[serde(default)]
    pub self_signed: bool,
    /// Names the generated certificate is for.
    #[serde(default = "default_self_signed_names")]
    pub self_signed_names: Vec<Spanned<String>>,
    /// Where the generated CA certificate is written, for clients to trust; a file in the
    /// temporary directory when left out.
    #[serde(default)]
    pub self_signed_ca: Option<String>,
    /// The plain listener answers `308` to the same URL over https.
    #[serde(default)]
    pub redirect_http: bool,
    /// The `Strict-Transport-Security` value for responses over TLS (`max-age=...`).
    #[serde(default)]
    pub hsts: Option<Spanned<String>>,
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

/// One certificate: `{ cert = "PEM file", key = "PEM file", names = ["a.test", "*.b.test"] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateEntry {
    /// The certificate chain, end-entity first.
    pub cert: String,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// The SNI names it serves; `*.b.test` matches one label under `b.test`.
    #[serde(default)]
    pub names: Vec<String>,
}

fn default_self_signed_names() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "localhost".to_owned())]
}

fn default_handshake_timeout_ms() -> u64 {
    u64::try_from(DEFAULT_HANDSHAKE_TIMEOUT.as_millis()).unwrap_or(u64::MAX)
}

/// `[tls]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub listen: String,
    /// Where the certificates come from.
    pub certificates: CertificateSource,
    pub redirect_http: bool,
    pub hsts: Option<String>,
    pub handshake_timeout: Duration,
}

/// Certificates from files, or generated at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// In the order written; the first is the default.
    Files(Vec<CertificateFiles>),
    SelfSigned {
        names: Vec<String>,
        /// Where the CA certificate is written; `None` for the temporary directory.
        ca_path: Option<PathBuf>,
    },
}

/// One `certificates` entry, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Lower case; `*.` only as the first label.
    pub names: Vec<String>,
}

/// Checks `[tls]`.
pub fn check(section: &TlsSection) -> Result<TlsSettings, SectionError> {
    let listen = section.listen.get_ref();
    if listen.parse::<std::net::SocketAddr>().is_err() && !listen.contains(':') {
        return Err(SectionError::new(
            Some(section.listen.span()),
            format!("[tls] listen: '{listen}' is not host:port"),
        ));
    }
    let certificates = match (section.self_signed, section.certificates.is_empty()) {
        (true, true) => {
            let mut names = Vec::new();
            for name in &section.self_signed_names {
                names.push(check_name(name.get_ref()).map_err(|e| {
                    SectionError::at(name.span(), format!("[tls] self_signed_names: {e}"))
                })?);
            }
            if names.is_empty() {
                return Err(SectionError::new(
                    None,
                    "[tls] self_signed_names is empty".to_owned(),
                ));
            }
            CertificateSource::SelfSigned {
                names,
                ca_path: section.self_signed_ca.as_ref().map(PathBuf::from),
            }
        }
        (false, false) => {
            let mut files = Vec::new();
            for entry in &section.certificates {
                let at =
                    |e: String| SectionError::at(entry.span(), format!("[tls] certificates: {e}"));
                let e = entry.get_ref();
                if e.cert.is_empty() || e.key.is_empty() {
                    return Err(at("cert and key must name PEM files".to_owned()));
                }
                let names = e
                    .names
                    .iter()
                    .map(|n| check_name(n))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(at)?;
                files.push(CertificateFiles {
                    cert: PathBuf::from(&e.cert),
                    key: PathBuf::from(&e.key),
                    names,
                });
            }
            CertificateSource::Files(files)
        }
        (true, false) => {
            return Err(SectionError::new(
                None,
                "[tls] give either certificates or self_signed = true, not both".to_owned(),
            ))
        }
        (false, true) => {
            return Err(SectionError::new(
                None,
                "[tls] needs certificates = [{ cert, key, names }], or self_signed = true"
                    .to_owned(),
            ))
        }
    };
    let hsts = match &section.hsts {
        None => None,
        Some(value) => Some(
            check_hsts(value.get_ref())
                .map_err(|e| SectionError::at(value.span(), format!("[tls] hsts: {e}")))?,
        ),
    };
    if !(1..=300_000).contains(&section.handshake_timeout_ms) {
        return Err(SectionError::new(
            None,
            "[tls] handshake_timeout_ms must be from 1 to 300000".to_owned(),
        ));
    }
    Ok(TlsSettings {
        listen: listen.clone(),
        certificates,
        redirect_http: section.redirect_http,
        hsts,
        handshake_timeout: Duration::from_millis(section.handshake_timeout_ms),
    })
}

/// A DNS name or a `*.` wildcard over one, lower-cased.
fn check_name(name: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    let base = lower.strip_prefix("*.").unwrap_or(&lower);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if base.is_empty() || base.len() > 253 || !base.split('.').all(label_ok) {
        return Err(format!(
            "'{name}' is not a host name (a wildcard is '*.' before one)"
        ));
    }
    Ok(lower)
}

/// `max-age=SECONDS`, optionally followed by `; includeSubDomains` and `; preload`.
fn check_hsts(value: &str) -> Result<String, String> {
    let mut parts = value.split(';').map(str::trim);
    let max_age = parts
        .next()
        .and_then(|p| p.strip_prefix("max-age="))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !max_age {
        return Err(format!("'{value}' must start with max-age=SECONDS"));
    }
    for directive in parts {
        if !directive.eq_ignore_ascii_case("includeSubDomains")
            && !directive.eq_ignore_ascii_case("preload")
        {
            return Err(format!("unknown directive '{directive}'"));
        }
    }
    Ok(value.trim().to_owned())
}

/// How a backend's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Against the CA certificates in this PEM file (a private CA).
    CaFile(PathBuf),
    /// Against the operating system's trust store (rustls-platform-verifier).
    System,
    /// Not at all (`tls_verify = false`): encryption without knowing who answers. For tests
    /// and broken internal setups; warned about at start.
    Off,
}

/// Whether a server address names a TLS backend: `https://host:port` gives `host:port`.
pub fn strip_https(addr: &str) -> Option<&str> {
    addr.strip_prefix("https://")
}

/// How one upstream reaches its `https://` servers, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Each TLS backend and the name sent as SNI and checked in its certificate (the host
    /// part of `https://host:port`).
    pub servers: Vec<(std::net::SocketAddr, String)>,
    /// `ca_file`, or the system's roots, or (`tls_verify = false`) nothing.
    pub verify: Verify,
}

/// `https://host:port` split into `host:port` (to resolve) and `host` (the TLS name, an IPv6
/// literal without its brackets); `None` for a plain server.
pub fn https_server(addr: &str) -> Option<(&str, &str)> {
    let host_port = strip_https(addr)?;
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host_port, host))
}

/// Checks an upstream's `ca_file` and `tls_verify` against its `https://` servers.
pub fn upstream_tls(
    servers: Vec<(std::net::SocketAddr, String)>,
    ca_file: Option<&Spanned<String>>,
    tls_verify: Option<&Spanned<bool>>,
) -> Result<Option<UpstreamTls>, SectionError> {
    if servers.is_empty() {
        return match (ca_file, tls_verify) {
            (Some(key), _) => Err(SectionError::new(
                Some(key.span()),
                "ca_file: no server is https://".to_owned(),
            )),
            (None, Some(key)) => Err(SectionError::new(
                Some(key.span()),
                "tls_verify: no server is https://".to_owned(),
            )),
            (None, None) => Ok(None),
        };
    }
    let verify = match (ca_file, tls_verify.map(|v| *v.get_ref())) {
        (Some(key), Some(false)) => {
            return Err(SectionError::new(
                Some(key.span()),
                "ca_file is pointless with tls_verify = false".to_owned(),
            ))
        }
        (Some(path), _) => Verify::CaFile(PathBuf::from(path.get_ref())),
        (None, Some(false)) => Verify::Off,
        (None, _) => Verify::System,
    };
    Ok(Some(UpstreamTls { servers, verify }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TlsSettings, String> {
        #[derive(Deserialize)]
        struct File {
            tls: TlsSection,
        }
        let file: File = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        check(&file.tls).map_err(|e| e.message)
    }

    #[test]
    fn sections_are_checked() {
        // (section body, Ok: what to check / Err: part of the message)
        let table: &[(&str, Result<&str, &str>)] = &[
            (
                "listen = \"127.0.0.1:8443\"\ncertificates = [{ cert = \"a.pem\", key = \"a.key\", names = [\"A.test\", \"*.b.test\"] }]",
                Ok("files"),
            ),
            ("listen = \"127.0.0.1:8443\"\nself_signed = true", Ok("self")),
            ("listen = \"127.0.0.1:8443\"", Err("needs certificates")),
            (
                "listen = \"127.0.0.1:8443\"\nself_signed = true\ncertificates = [{ cert = \"a\", key = \"b\" }]",
                Err("not both"),
            ),
            (
                "listen = \"127.0.0.1:8443\"\ncertificates = [{ cert = \"a\", key = \"b\", names = [\"a.*.test\"] }]",
                Err("is not a host name"),
            ),
            ("listen = \"127.0.0.1:8443\"\nself_signed = true\nhsts = \"1 year\"", Err("max-age")),
            (
                "listen = \"127.0.0.1:8443\"\nself_signed = true\nhsts = \"max-age=60; everywhere\"",
                Err("unknown directive"),
            ),
            ("listen = \"127.0.0.1:8443\"\nself_signed = true\nhandshake_timeout_ms = 0", Err("handshake_timeout_ms")),
            ("listen = \"127.0.0.1:8443\"\nself_signed = true\ncolour = 1", Err("unknown field")),
            ("listen = \"nowhere\"\nself_signed = true", Err("not host:port")),
        ];
        for (body, want) in table {
            let got = parse(&format!("[tls]\n{body}\n"));
            match (want, &got) {
                (Ok("files"), Ok(s)) => {
                    let CertificateSource::Files(files) = &s.certificates else {
                        panic!("{body}: {got:?}")
                    };
                    assert_eq!(files[0].names, ["a.test", "*.b.test"]);
                    assert_eq!(s.handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT);
                }
                (Ok(_), Ok(s)) => assert!(
                    matches!(&s.certificates, CertificateSource::SelfSigned { names, .. } if names == &["localhost"]),
                    "{body}: {got:?}"
                ),
                (Err(part), Err(message)) => {
                    assert!(message.contains(part), "{body}: {message:?} lacks {part:?}")
                }
                _ => panic!("{body}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn https_servers_give_their_host_as_the_tls_name() {
        assert_eq!(
            https_server("https://api.test:8443"),
            Some(("api.test:8443", "api.test"))
        );
        assert_eq!(
            https_server("https://[::1]:8443"),
            Some(("[::1]:8443", "::1"))
        );
        assert_eq!(https_server("127.0.0.1:80"), None);
    }

    #[test]
    fn upstream_tls_keys_need_https_servers() {
        let ca = Spanned::new(3..9, "ca.pem".to_owned());
        let off = Spanned::new(3..9, false);
        let one = || vec![("127.0.0.1:1".parse().unwrap(), "a.test".to_owned())];
        assert!(upstream_tls(Vec::new(), Some(&ca), None).is_err());
        assert!(upstream_tls(one(), Some(&ca), Some(&off)).is_err());
        let verify = |ca, v| upstream_tls(one(), ca, v).unwrap().unwrap().verify;
        assert_eq!(verify(None, None), Verify::System);
        assert_eq!(verify(None, Some(&off)), Verify::Off);
        assert_eq!(
            verify(Some(&ca), None),
            Verify::CaFile(PathBuf::from("ca.pem"))
        );
    }

    #[test]
    fn hsts_accepts_its_directives() {
        assert_eq!(
            check_hsts("max-age=63072000; includeSubDomains; preload"),
            Ok("max-age=63072000; includeSubDomains; preload".to_owned())
        );
    }
}
