//! The server side: a rustls `ServerConfig` built from `[tls]`, with the certificate chosen
//! by SNI, and the [`TlsAcceptor`] that wraps each accepted socket in a [`TlsStream`].
//!
//! Choices, all rustls defaults unless said: the *ring* provider; TLS 1.2 and 1.3 only, with
//! rustls's cipher suites (all AEAD with forward secrecy, which is Mozilla's "intermediate"
//! profile without its legacy CBC suites); ALPN `http/1.1` (the only protocol we speak, so a
//! client that offers only `h2` is refused in the handshake rather than misunderstood);
//! resumption by stateless tickets (a [`Ticketer`] whose keys rotate every 6 hours) and by
//! the default in-memory session cache for TLS 1.2 clients without ticket support.

use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::ring::{default_provider, Ticketer};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::certs::{self, KeyedChain};
use super::config::{CertificateSource, TlsSettings};
use super::stream::TlsStream;

/// One certificate and the SNI names it serves (`*.b.test` matches one label under it).
#[derive(Debug)]
pub struct NamedCertificate {
    pub names: Vec<String>,
    pub chain: KeyedChain,
}

/// Builds the server configuration; the first certificate is the default for clients that
/// send no SNI name or one no entry lists.
pub fn server_config(certificates: Vec<NamedCertificate>) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(default_provider());
    let mut entries = Vec::with_capacity(certificates.len());
    for named in certificates {
        let key = CertifiedKey::from_der(named.chain.chain, named.chain.key, &provider)
            .map_err(|e| format!("certificate for {:?}: {e}", named.names))?;
        entries.push((named.names, Arc::new(key)));
    }
    if entries.is_empty() {
        return Err("TLS needs at least one certificate".to_owned());
    }
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { entries }));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = Ticketer::new().map_err(|e| format!("TLS session tickets: {e}"))?;
    Ok(Arc::new(config))
}

/// Wraps accepted sockets in TLS: what a listener needs to speak https.
#[derive(Debug, Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
}

impl TlsAcceptor {
    pub fn new(config: Arc<ServerConfig>, handshake_timeout: Duration) -> TlsAcceptor {
        TlsAcceptor {
            config,
            handshake_timeout,
        }
    }

    /// Reads the certificate files named in `[tls]`, or generates a development CA and
    /// certificate and writes the CA certificate where clients can find it (logged).
    pub fn from_settings(settings: &TlsSettings) -> Result<TlsAcceptor, String> {
        let certificates = match &settings.certificates {
            CertificateSource::Files(files) => files
                .iter()
                .map(|f| {
                    certs::load_pem(&f.cert, &f.key).map(|chain| NamedCertificate {
                        names: f.names.clone(),
                        chain,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            CertificateSource::SelfSigned { names, ca_path } => {
                let made = certs::self_signed(names, certs::SELF_SIGNED_VALIDITY)?;
                let path = ca_path.clone().unwrap_or_else(default_ca_path);
                std::fs::write(&path, &made.ca_pem).map_err(|e| {
                    format!("cannot write the CA certificate {}: {e}", path.display())
                })?;
                log::warn!(
                    "TLS: self-signed certificate for {names:?}; clients must trust the CA in {}",
                    path.display()
                );
                vec![NamedCertificate {
                    names: names.clone(),
                    chain: made.leaf,
                }]
            }
        };
        Ok(TlsAcceptor::new(
            server_config(certificates)?,
            settings.handshake_timeout,
        ))
    }

    /// The TLS stream for an accepted socket; the handshake happens in its first reads.
    pub fn accept(&self, tcp: TcpStream) -> std::io::Result<TlsStream> {
        TlsStream::server(tcp, Arc::clone(&self.config), self.handshake_timeout)
    }

    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }
}

/// `revproxy-ca-PID.pem` in the temporary directory: a new CA each start.
fn default_ca_path() -> PathBuf {
    std::env::temp_dir().join(format!("revproxy-ca-{}.pem", std::process::id()))
}

/// Chooses the certificate by SNI name: the first entry that lists it (exactly, or by a
/// wildcard), else the first entry.
#[derive(Debug)]
struct SniResolver {
    entries: Vec<(Vec<String>, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let by_name = hello.server_name().and_then(|name| {
            self.entries
                .iter()
                .find(|(names, _)| names.iter().any(|p| name_matches(p, name)))
        });
        by_name
            .or_else(|| self.entries.first())
            .map(|(_, key)| Arc::clone(key))
    }
}

/// Whether SNI `name` is served by `pattern` (lower case; `*.` covers exactly one label).
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        None => pattern.eq_ignore_ascii_case(name),
        Some(base) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(base)),
    }
}

/// The ring provider, for code that builds its own rustls configs (the upstream side).
pub(super) fn provider() -> Arc<CryptoProvider> {
    Arc::new(default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_exactly_or_by_one_wildcard_label() {
        let table = [
            ("a.test", "a.test", true),
            ("a.test", "A.Test", true),
            ("a.test", "b.test", false),
            ("*.b.test", "x.b.test", true),
            ("*.b.test", "b.test", false),
            ("*.b.test", "y.x.b.test", false),
            ("*.b.test", ".b.test", false),
        ];
        for (pattern, name, want) in table {
            assert_eq!(name_matches(pattern, name), want, "{pattern} vs {name}");
        }
    }
}
