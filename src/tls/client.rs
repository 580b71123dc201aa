//! The client side, to backends named `https://` in an upstream: a rustls `ClientConfig`
//! per upstream (verifying against a CA file, the system's roots, or, when the operator
//! says so, nothing), and [`BackendTls`], what the `Connector` needs to open one connection.
//!
//! The handshake is completed inside `connect`, so a certificate that does not verify is a
//! connect failure (the relay answers `502` and may try another backend) rather than a
//! request that fails half-way. Sessions are resumed (rustls's default in-memory client
//! cache), which makes a new connection to a backend one round trip cheaper.

use std::io;
use std::net::TcpStream;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_platform_verifier::BuilderVerifierExt;

use super::config::UpstreamTls;
pub use super::config::Verify;
use super::server::provider;
use super::stream::TlsStream;
use crate::http::stream::BoxedTransport;

/// A client configuration for one upstream's backends.
pub fn client_config(verify: &Verify) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?;
    let mut config = match verify {
        Verify::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: cannot read CA certificates: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("{}: no usable CA certificate", path.display()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verify::System => builder
            .with_platform_verifier()
            .map_err(|e| format!("system certificate verifier: {e}"))?
            .with_no_client_auth(),
        Verify::Off => {
            log::warn!("TLS to backends without certificate verification (tls_verify = false)");
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What the connector needs to speak TLS to one backend.
#[derive(Debug, Clone)]
pub struct BackendTls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl BackendTls {
    /// TLS to a backend known as `name` (a host name, or an IP address): the SNI name sent,
    /// and the name its certificate must carry.
    pub fn new(config: Arc<ClientConfig>, name: &str) -> Result<BackendTls, String> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|e| format!("'{name}' is not a TLS server name: {e}"))?;
        Ok(BackendTls { config, name })
    }

    /// Runs the handshake over a connected socket (within its timeouts).
    pub fn connect(&self, tcp: TcpStream) -> io::Result<BoxedTransport> {
        let stream = TlsStream::connect(tcp, Arc::clone(&self.config), self.name.clone())?;
        Ok(Box::new(stream))
    }
}

/// The connector entries for one upstream's `https://` servers (see `Connector::with_tls`).
pub fn backends(tls: &UpstreamTls) -> Result<Vec<(std::net::SocketAddr, BackendTls)>, String> {
    let config = client_config(&tls.verify)?;
    tls.servers
        .iter()
        .map(|(addr, name)| BackendTls::new(Arc::clone(&config), name).map(|b| (*addr, b)))
        .collect()
}

/// `tls_verify = false`: any certificate is accepted, but the handshake signatures are still
/// checked (against the certificate offered), as rustls requires.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let path =
            std::env::temp_dir().join(format!("revproxy-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = client_config(&Verify::CaFile(path.clone())).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains("no usable CA certificate"), "{err}");
    }

    #[test]
    fn server_names_are_checked() {
        let config = client_config(&Verify::Off).unwrap();
        assert!(BackendTls::new(Arc::clone(&config), "api.internal").is_ok());
        assert!(BackendTls::new(Arc::clone(&config), "127.0.0.1").is_ok());
        assert!(BackendTls::new(config, "bad name!").is_err());
    }
}
