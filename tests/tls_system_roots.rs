//! `https://` backends verified against the system's roots: an upstream with neither
//! `ca_file` nor `tls_verify = false` uses rustls-platform-verifier, which on Linux reads the
//! trust store through the usual OpenSSL variables. The real `stage9` is started with
//! `SSL_CERT_FILE` naming a test CA (in its own environment only), in front of a TLS backend
//! whose certificate that CA signed: trusted, it answers; with another CA as the "system"
//! store, the same backend gets a 502.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::thread;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use support::{connect, Proxy, TIMEOUT};

const STAGE9: &str = env!("CARGO_BIN_EXE_stage9");

/// A CA, and a server certificate for `localhost` that it signed.
struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: Vec<u8>,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn pki() -> Pki {
    let ca = ca("system roots test CA");
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert: cert.der().clone(),
        key: key.serialize_der(),
    }
}

fn temp(name: &str, text: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("revproxy-sysroots-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// A TLS backend that answers every request with `200 backend over tls` and closes.
fn tls_backend(pki: &Pki) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key.clone())),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for tcp in listener.incoming().map_while(Result::ok) {
            let config = Arc::clone(&config);
            thread::spawn(move || {
                tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
                let conn = ServerConnection::new(config).unwrap();
                let mut stream = StreamOwned::new(conn, tcp);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return, // a proxy that refused our certificate
                    }
                }
                let body = "backend over tls";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
                stream.conn.send_close_notify();
                let _ = stream.flush();
            });
        }
    });
    addr
}

/// Stage 9 with one upstream, `https://localhost:PORT`, and nothing said about verification,
/// with `SSL_CERT_FILE` set to `trust` for it alone.
fn stage9_trusting(backend: SocketAddr, trust: &Path, tag: &str) -> Proxy {
    let config = temp(
        &format!("{tag}.toml"),
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\
             [upstreams.app]\nservers = [\"https://localhost:{}\"]\n",
            backend.port()
        ),
    );
    let trust = trust.to_str().unwrap();
    Proxy::start_with_env(
        STAGE9,
        &[],
        &["--config", config.to_str().unwrap()],
        Stdio::null(),
        &[("SSL_CERT_FILE", trust), ("SSL_CERT_DIR", "/nonexistent")],
    )
}

#[test]
fn a_backend_signed_by_a_ca_in_the_system_store_is_trusted_and_one_outside_it_gets_a_502() {
    let pki = pki();
    let backend = tls_backend(&pki);
    let right = temp("right-ca.pem", &pki.ca_pem);
    let other = temp("other-ca.pem", &ca("some other CA").pem());
    for (trust, tag, status, body) in [
        (&right, "right", 200, Some("backend over tls")),
        (&other, "other", 502, None),
    ] {
        let proxy = stage9_trusting(backend, trust, tag);
        let mut client = connect(proxy.addr);
        // The head in two fragments, as a slow client would send it.
        client.send(b"GET /sys HTTP/1.1\r\nHo");
        client.send(b"st: app.test\r\nConnection: close\r\n\r\n");
        let res = client.read_response("GET");
        assert_eq!(res.status, status, "trusting the {tag} CA: {}", res.text());
        if let Some(body) = body {
            assert_eq!(res.text(), body);
        }
    }
    for path in [right, other] {
        let _ = std::fs::remove_file(path);
    }
}
