//! Certificates and keys: PEM files read at start, or a development CA and certificate
//! generated with rcgen (`self_signed = true`), so that no private key is ever committed.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// How long a generated certificate is valid: 90 days, as Let's Encrypt issues them.
pub const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);

/// A certificate chain (end-entity first) and its private key.
#[derive(Debug)]
pub struct KeyedChain {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Reads a chain and its key from PEM files; the message names the file at fault.
pub fn load_pem(cert: &Path, key: &Path) -> Result<KeyedChain, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: cannot read certificates: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no CERTIFICATE in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{}: cannot read a private key: {e}", key.display()))?;
    Ok(KeyedChain { chain, key })
}

/// A development CA and one certificate signed by it.
#[derive(Debug)]
pub struct SelfSigned {
    /// The CA certificate in PEM, for clients to trust (its key is dropped after signing).
    pub ca_pem: String,
    pub ca_der: CertificateDer<'static>,
    /// The ECDSA P-256 end-entity certificate and its key.
    pub leaf: KeyedChain,
}

/// Generates a CA and an ECDSA P-256 certificate for `names` signed by it, valid from an
/// hour ago (clocks differ) for `validity`.
pub fn self_signed(names: &[String], validity: Duration) -> Result<SelfSigned, String> {
    let fail = |e: rcgen::Error| format!("cannot generate a certificate: {e}");
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| format!("the clock is before 1970: {e}"))?;
    let not_before = now - Duration::from_secs(3600);
    let not_after = now + validity;

    // RFC 5280's profile, as strict verifiers (`openssl verify -x509_strict`) and
    // Mozilla-profile scanners read it: a Subject Key Identifier on both certificates (rcgen
    // writes it with the basic constraints), an Authority Key Identifier naming the key that
    // signed each (section 4.2.1.1: required except on a self-signed CA, where it is
    // recommended), critical basic constraints, and a key usage that fits each role.
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.use_authority_key_identifier_extension = true;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "revproxy development CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate().map_err(fail)?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(fail)?;

    let mut params = CertificateParams::new(names.to_vec()).map_err(fail)?;
    if let Some(first) = names.first() {
        params.distinguished_name.push(DnType::CommonName, first);
    }
    // `ExplicitNoCa` writes `CA:FALSE` and, with it, the Subject Key Identifier.
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    // An ECDSA key signs the handshake; it never enciphers a key.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate().map_err(fail)?; // ECDSA P-256 is rcgen's default
    let cert = params.signed_by(&key, &ca).map_err(fail)?;
    Ok(SelfSigned {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        leaf: KeyedChain {
            chain: vec![cert.der().clone(), ca.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_chain_is_a_leaf_then_its_ca() {
        let names = vec!["localhost".to_owned(), "*.dev.test".to_owned()];
        let made = self_signed(&names, SELF_SIGNED_VALIDITY).unwrap();
        assert_eq!(made.leaf.chain.len(), 2);
        assert_eq!(made.leaf.chain[1], made.ca_der);
        assert!(made.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        // The CA file holds no key.
        assert!(!made.ca_pem.contains("PRIVATE KEY"));
    }

    /// What strict X.509 verifiers and Mozilla-profile scanners check is RFC 5280's profile:
    /// `openssl verify -x509_strict` refuses a chain without Authority and Subject Key
    /// Identifiers (error 85), with a CA whose basic constraints are not critical, or whose
    /// key usage does not allow signing certificates. `-purpose sslserver` adds the checks of
    /// a TLS server certificate (extended and plain key usage).
    #[test]
    fn strict_x509_verifiers_accept_the_generated_chain() {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let made = self_signed(&names, SELF_SIGNED_VALIDITY).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "revproxy-certs-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), &made.ca_pem).unwrap();
        std::fs::write(dir.join("leaf.pem"), pem_certificate(&made.leaf.chain[0])).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["verify", "-x509_strict", "-purpose", "sslserver"])
            .args(["-CAfile", "ca.pem", "leaf.pem"])
            .current_dir(&dir)
            .output();
        let _ = std::fs::remove_dir_all(&dir);
        let out = out.expect("openssl runs (.ci/run installs it)");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "openssl verify refused the chain:\n{said}"
        );
        assert!(said.contains("leaf.pem: OK"), "{said}");
    }

    /// PEM of one DER certificate (RFC 7468: base64 in lines of 64).
    fn pem_certificate(der: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut b64 = Vec::with_capacity(der.len() * 4 / 3 + 4);
        for group in der.chunks(3) {
            let n = group
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                b64.push(if i <= group.len() {
                    ALPHABET[(n >> (18 - 6 * i) & 63) as usize]
                } else {
                    b'='
                });
            }
        }
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    }

    #[test]
    fn missing_files_are_named() {
        let err = load_pem(Path::new("/nonexistent/c.pem"), Path::new("k.pem")).unwrap_err();
        assert!(err.contains("/nonexistent/c.pem"), "{err}");
    }
}
