//! The TLS handshake counters of `/metrics` (`metrics::tls()`), counted by the TLS stream
//! itself: one handshake that completes, one client that sends plain HTTP to the TLS port.
//! Its own test binary, since the counters are process-wide and other TLS tests would move
//! them while this one reads.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use revproxy::http::Socket;
use revproxy::metrics::tls::TlsSnapshot;
use revproxy::tls::certs::KeyedChain;
use revproxy::tls::server::{server_config, NamedCertificate};
use revproxy::tls::TlsAcceptor;

const TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn handshakes_and_failures_are_counted() {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["a.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der: CertificateDer<'static> = cert.der().clone();
    let chain = KeyedChain {
        chain: vec![der.clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    };
    let certs = vec![NamedCertificate {
        names: vec!["a.test".to_owned()],
        chain,
    }];
    let acceptor = TlsAcceptor::new(server_config(certs).unwrap(), TIMEOUT);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The server side: each connection's handshake, then the stream is dropped; a message
    // says when, so the counters are read only after.
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming().take(2).map_while(Result::ok) {
            let mut tls = acceptor.accept(stream).unwrap();
            tls.set_read_timeout(Some(TIMEOUT)).unwrap();
            let result = tls.complete_handshake().is_ok();
            drop(tls);
            let _ = done_tx.send(result);
        }
    });
    assert_eq!(revproxy::metrics::tls().snapshot(), TlsSnapshot::default());

    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let name = ServerName::try_from("a.test".to_owned()).unwrap();
    let conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut client = StreamOwned::new(conn, tcp);
    while client.conn.is_handshaking() {
        client
            .conn
            .complete_io(&mut client.sock)
            .expect("handshake");
    }
    assert_eq!(done_rx.recv_timeout(TIMEOUT), Ok(true));
    drop(client);

    let mut plain = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert_eq!(done_rx.recv_timeout(TIMEOUT), Ok(false));

    let counted = revproxy::metrics::tls().snapshot();
    assert_eq!(
        counted,
        TlsSnapshot {
            handshakes: 1,
            failures: 1
        }
    );
}
