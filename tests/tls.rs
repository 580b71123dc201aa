//! Stage 9's TLS over real sockets, with the proxy built in-process (a relay behind a
//! `TlsHandler` on stage 4's pool) and rustls clients: certificates by SNI, TLS 1.2 and 1.3,
//! ALPN, handshakes that never hold a worker (garbage, a stall, half a ClientHello), requests
//! pipelined and kept alive through the parker, the scheme per connection, resumption, and
//! TLS to backends verified against a test CA. Certificates are generated at test time.

mod support;

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned};

use revproxy::relay::{Phases, Relay, RelayConfig};
use revproxy::server::pool::{Pool, PoolConfig};
use revproxy::server::{self, ConnectionHandler};
use revproxy::tls::certs::KeyedChain;
use revproxy::tls::client::{client_config, Verify};
use revproxy::tls::config::{CertificateFiles, CertificateSource, TlsSettings, UpstreamTls};
use revproxy::tls::server::{server_config, NamedCertificate};
use revproxy::tls::{TlsAcceptor, TlsHandler, TlsPhases};
use revproxy::upstream::{Connector, SingleUpstream, UpstreamTimeouts};
use support::{connect, raw_backend, read_request_head, TIMEOUT};

/// A test CA and three certificates it signed: `a.test` (also for 127.0.0.1, and the
/// default), `*.b.test`, and `backend.test` for the TLS backend.
struct Pki {
    ca: CertificateDer<'static>,
    ca_pem: String,
    a: Issued,
    b: Issued,
    backend: Issued,
}

struct Issued {
    cert: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
    key: PrivateKeyDer<'static>,
}

impl Issued {
    fn chain(&self) -> KeyedChain {
        KeyedChain {
            chain: vec![self.cert.clone()],
            key: self.key.clone_key(),
        }
    }
}

fn pki() -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "tls test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let issue = |names: &[&str]| {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        Issued {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    };
    Pki {
        ca: ca.der().clone(),
        ca_pem: ca.pem(),
        a: issue(&["a.test", "127.0.0.1"]),
        b: issue(&["*.b.test"]),
        backend: issue(&["backend.test"]),
    }
}

/// A file in the temporary directory, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("revproxy-tls-{}-{n}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A plain backend that answers every request with what it saw: the scheme the proxy says
/// the client used, the path, and which of its connections carried it.
fn echo_backend() -> SocketAddr {
    let connections = Arc::new(AtomicUsize::new(0));
    raw_backend(move |mut stream| {
        let conn = connections.fetch_add(1, Ordering::SeqCst) + 1;
        loop {
            let head = read_request_head(&mut stream);
            if head.is_empty() {
                return;
            }
            let _ = stream.write_all(&echo_answer(&head, conn));
        }
    })
}

fn echo_answer(head: &[u8], conn: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let path = text.split(' ').nth(1).unwrap_or("?");
    let proto = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-forwarded-proto:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| "none".to_owned());
    let body = format!("proto={proto} path={path} conn={conn}");
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn timeouts() -> UpstreamTimeouts {
    UpstreamTimeouts {
        connect: TIMEOUT,
        read: TIMEOUT,
        write: TIMEOUT,
    }
}

fn relay_config() -> RelayConfig {
    let mut config = RelayConfig::default();
    // Longer than any test waits: a connection closed early was closed by the handshake
    // timeout, not by the idle one.
    config.client.timeouts.idle = Duration::from_secs(60);
    config
}

fn acceptor(pki: &Pki, handshake_timeout: Duration) -> TlsAcceptor {
    let certs = vec![
        NamedCertificate {
            names: vec!["a.test".to_owned()],
            chain: pki.a.chain(),
        },
        NamedCertificate {
            names: vec!["*.b.test".to_owned()],
            chain: pki.b.chain(),
        },
    ];
    TlsAcceptor::new(server_config(certs).unwrap(), handshake_timeout)
}

fn serve(handler: Arc<dyn ConnectionHandler>, workers: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let pool = Pool::new(&PoolConfig {
        workers,
        ..PoolConfig::default()
    })
    .unwrap();
    thread::spawn(move || server::serve(&listener, &pool, handler));
    addr
}

/// A TLS proxy in front of `relay`, on a pool of `workers`.
fn tls_proxy<P: Phases>(relay: Arc<Relay<P>>, acceptor: TlsAcceptor, workers: usize) -> SocketAddr {
    serve(Arc::new(TlsHandler::new(relay, acceptor)), workers)
}

fn echo_relay() -> Arc<Relay> {
    Arc::new(Relay::new(
        relay_config(),
        Arc::new(SingleUpstream(echo_backend())),
        Connector::new(timeouts()),
    ))
}

fn client_config_for(
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn all_versions(pki: &Pki) -> Arc<ClientConfig> {
    client_config_for(pki, &[&rustls::version::TLS13, &rustls::version::TLS12])
}

type TlsClient = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `addr`, handshake done.
fn tls_connect(addr: SocketAddr, name: &str, config: &Arc<ClientConfig>) -> TlsClient {
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let conn = ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("TLS handshake");
    }
    stream
}

/// One response: status, headers (lower-case names), body (Content-Length framing; the
/// proxy's own replies and the backends here all send one).
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response from `stream`, keeping bytes past it in `buf` for the next.
fn read_response(stream: &mut impl Read, buf: &mut Vec<u8>) -> Response {
    let deadline = Instant::now() + TIMEOUT;
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        assert!(Instant::now() < deadline, "no response head in time");
        let n = stream.read(&mut chunk).expect("read a response");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut slots = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut slots);
    parsed.parse(&buf[..head_end]).unwrap();
    let status = parsed.code.unwrap();
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).expect("read a body");
        assert!(n > 0, "closed inside a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    buf.drain(..head_end + len);
    Response {
        status,
        headers,
        body,
    }
}

fn get(stream: &mut TlsClient, path: &str) -> Response {
    let request = format!("GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    read_response(stream, &mut Vec::new())
}

/// Whether the server closed `stream` (end of stream, a reset, or a TLS alert and then the
/// end) within `within`; false when it stays open.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let deadline = Instant::now() + within;
    let mut sink = [0u8; 4096];
    // Bounded by the deadline: every read waits at most `within`.
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {} // an alert: the close follows
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn each_sni_name_gets_its_certificate_and_the_first_is_the_default() {
    let pki = pki();
    let addr = tls_proxy(echo_relay(), acceptor(&pki, TIMEOUT), 2);
    let verified = all_versions(&pki);
    // (name sent, config, expected certificate)
    let unverified = client_config(&Verify::Off).unwrap();
    let cases: [(&str, &Arc<ClientConfig>, &CertificateDer); 4] = [
        ("a.test", &verified, &pki.a.cert),
        ("x.b.test", &verified, &pki.b.cert),
        // An IP address sends no SNI at all: the default certificate (it lists 127.0.0.1).
        ("127.0.0.1", &verified, &pki.a.cert),
        // A name nobody serves: the default too (not valid for it, hence no verification).
        ("other.test", &unverified, &pki.a.cert),
    ];
    for (name, config, want) in cases {
        let mut stream = tls_connect(addr, name, config);
        let got = stream.conn.peer_certificates().expect("a certificate")[0].clone();
        assert_eq!(&got, want, "certificate for {name}");
        let res = get(&mut stream, "/sni");
        assert_eq!(res.status, 200, "{name}");
    }
}

#[test]
fn tls12_and_tls13_both_negotiate_with_alpn_http11() {
    let pki = pki();
    let addr = tls_proxy(echo_relay(), acceptor(&pki, TIMEOUT), 2);
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = client_config_for(&pki, &[version]);
        let mut stream = tls_connect(addr, "a.test", &config);
        assert_eq!(stream.conn.protocol_version(), Some(version.version));
        assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        let res = get(&mut stream, "/v");
        assert_eq!(res.status, 200);
        assert!(res.body.starts_with("proto=https path=/v"), "{}", res.body);
    }
}

#[test]
fn certificates_load_from_pem_files_named_in_the_settings() {
    let pki = pki();
    let files = [
        TempFile::new("a.pem", &pki.a.cert_pem),
        TempFile::new("a.key", &pki.a.key_pem),
        TempFile::new("b.pem", &pki.b.cert_pem),
        TempFile::new("b.key", &pki.b.key_pem),
    ];
    let settings = TlsSettings {
        listen: "127.0.0.1:0".to_owned(),
        certificates: CertificateSource::Files(vec![
            CertificateFiles {
                cert: files[0].0.clone(),
                key: files[1].0.clone(),
                names: vec!["a.test".to_owned()],
            },
            CertificateFiles {
                cert: files[2].0.clone(),
                key: files[3].0.clone(),
                names: vec!["*.b.test".to_owned()],
            },
        ]),
        redirect_http: false,
        hsts: None,
        handshake_timeout: TIMEOUT,
    };
    let addr = tls_proxy(
        echo_relay(),
        TlsAcceptor::from_settings(&settings).unwrap(),
        2,
    );
    let stream = tls_connect(addr, "y.b.test", &all_versions(&pki));
    assert_eq!(stream.conn.peer_certificates().unwrap()[0], pki.b.cert);
}

#[test]
fn a_self_signed_setup_writes_a_ca_that_clients_can_trust() {
    let ca_file = TempFile::new("self-ca.pem", "");
    let settings = TlsSettings {
        listen: "127.0.0.1:0".to_owned(),
        certificates: CertificateSource::SelfSigned {
            names: vec!["localhost".to_owned()],
            ca_path: Some(ca_file.0.clone()),
        },
        redirect_http: false,
        hsts: None,
        handshake_timeout: TIMEOUT,
    };
    let addr = tls_proxy(
        echo_relay(),
        TlsAcceptor::from_settings(&settings).unwrap(),
        2,
    );
    let pem = std::fs::read_to_string(&ca_file.0).unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE") && !pem.contains("PRIVATE KEY"));
    let config = client_config(&Verify::CaFile(ca_file.0.clone())).unwrap();
    let mut stream = tls_connect(addr, "localhost", &config);
    assert_eq!(get(&mut stream, "/self").status, 200);
}

#[test]
fn a_client_sending_garbage_is_closed_and_the_next_tls_client_is_served() {
    let pki = pki();
    let addr = tls_proxy(echo_relay(), acceptor(&pki, TIMEOUT), 1);
    let mut garbage = TcpStream::connect(addr).unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert!(
        closed_within(&mut garbage, TIMEOUT),
        "garbage connection left open"
    );
    let mut stream = tls_connect(addr, "a.test", &all_versions(&pki));
    assert_eq!(get(&mut stream, "/after-garbage").status, 200);
}

/// The first bytes a TLS client sends: a whole ClientHello record.
fn client_hello(pki: &Pki) -> Vec<u8> {
    let mut conn =
        ClientConnection::new(all_versions(pki), ServerName::try_from("a.test").unwrap()).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    assert!(hello.len() > 100, "a ClientHello is a few hundred bytes");
    hello
}

/// Whether `stream` is still open: nothing to read and no close within a short wait.
fn still_open(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut byte = [0u8; 1];
    matches!(
        stream.read(&mut byte),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
    )
}

/// Two parts, each decided by events, so a loaded machine cannot fail them: with a handshake
/// timeout far longer than the test, a client is served while two stalled handshakes are
/// still open (one worker: had either held it, the client would have waited the 30 s and its
/// read deadline would have failed first); with a short one, both are closed by it.
#[test]
fn stalled_handshakes_hold_no_worker_and_are_closed_by_the_handshake_timeout() {
    let pki = pki();
    let stall = |addr: SocketAddr| {
        let silent = TcpStream::connect(addr).unwrap();
        let mut half = TcpStream::connect(addr).unwrap();
        let hello = client_hello(&pki);
        half.write_all(&hello[..hello.len() / 2]).unwrap();
        (silent, half)
    };

    let addr = tls_proxy(echo_relay(), acceptor(&pki, Duration::from_secs(30)), 1);
    let (mut silent, mut half) = stall(addr);
    let mut stream = tls_connect(addr, "a.test", &all_versions(&pki));
    assert_eq!(get(&mut stream, "/meanwhile").status, 200);
    for (what, conn) in [("silent", &mut silent), ("half a ClientHello", &mut half)] {
        assert!(
            still_open(conn),
            "{what}: closed before the served client was answered"
        );
    }
    assert_eq!(get(&mut stream, "/still").status, 200);

    // Closed by the handshake timeout, long before the 60 s idle timeout.
    let handshake_timeout = Duration::from_millis(600);
    let addr = tls_proxy(echo_relay(), acceptor(&pki, handshake_timeout), 1);
    let started = Instant::now();
    let (mut silent, mut half) = stall(addr);
    for (what, conn) in [("silent", &mut silent), ("half a ClientHello", &mut half)] {
        assert!(
            closed_within(conn, Duration::from_secs(5)),
            "{what}: left open"
        );
        assert!(
            started.elapsed() >= handshake_timeout,
            "{what}: closed too early"
        );
    }
    // The worker is free for the next client.
    let mut stream = tls_connect(addr, "a.test", &all_versions(&pki));
    assert_eq!(get(&mut stream, "/after").status, 200);
}

#[test]
fn pipelined_requests_in_one_tls_record_are_all_answered_in_order() {
    let pki = pki();
    let addr = tls_proxy(echo_relay(), acceptor(&pki, TIMEOUT), 1);
    let mut stream = tls_connect(addr, "a.test", &all_versions(&pki));
    let mut requests = Vec::new();
    for i in 0..3 {
        requests
            .extend_from_slice(format!("GET /p{i} HTTP/1.1\r\nHost: a.test\r\n\r\n").as_bytes());
    }
    stream.write_all(&requests).unwrap(); // one write: one record, three requests
    let mut buf = Vec::new();
    for i in 0..3 {
        let res = read_response(&mut stream, &mut buf);
        assert_eq!(res.status, 200);
        assert!(res.body.contains(&format!("path=/p{i} ")), "{}", res.body);
    }
}

#[test]
fn a_kept_alive_tls_connection_is_parked_between_requests_and_served_again() {
    let pki = pki();
    let addr = tls_proxy(echo_relay(), acceptor(&pki, TIMEOUT), 1);
    let mut stream = tls_connect(addr, "a.test", &all_versions(&pki));
    let mut other = tls_connect(addr, "a.test", &all_versions(&pki));
    for i in 0..4 {
        // An idle gap, so the connection goes to the parker; then a request in fragments,
        // each its own TLS record, so the head arrives over several wake-ups.
        thread::sleep(Duration::from_millis(30));
        let request = format!("GET /k{i} HTTP/1.1\r\nHost: a.test\r\n\r\n");
        for piece in request.as_bytes().chunks(7) {
            stream.write_all(piece).unwrap();
            stream.flush().unwrap();
        }
        let res = read_response(&mut stream, &mut Vec::new());
        assert_eq!(res.status, 200);
        assert!(res.body.contains(&format!("path=/k{i} ")), "{}", res.body);
        // The single worker serves another connection in between: this one was parked.
        assert_eq!(get(&mut other, "/other").status, 200);
    }
}

#[test]
fn the_scheme_is_per_connection_and_reaches_the_backend() {
    let pki = pki();
    let relay = echo_relay();
    let tls_addr = tls_proxy(Arc::clone(&relay), acceptor(&pki, TIMEOUT), 2);
    let plain_addr = serve(relay, 2);
    let mut stream = tls_connect(tls_addr, "a.test", &all_versions(&pki));
    let res = get(&mut stream, "/s");
    assert!(res.body.starts_with("proto=https "), "{}", res.body);
    let mut plain = connect(plain_addr);
    plain.send(b"GET /s HTTP/1.1\r\nHost: a.test\r\n\r\n");
    let res = plain.read_response("GET");
    assert!(res.text().starts_with("proto=http "), "{}", res.text());
}

#[test]
fn plain_http_is_redirected_and_tls_responses_carry_hsts() {
    let pki = pki();
    // The TLS listener's port must be known before the relay is built: bind first.
    let tls_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tls_addr = tls_listener.local_addr().unwrap();
    let settings = TlsSettings {
        listen: tls_addr.to_string(),
        certificates: CertificateSource::Files(Vec::new()), // unused: the acceptor is built here
        redirect_http: true,
        hsts: Some("max-age=600".to_owned()),
        handshake_timeout: TIMEOUT,
    };
    let relay = Arc::new(Relay::with_phases(
        relay_config(),
        Arc::new(SingleUpstream(echo_backend())),
        Connector::new(timeouts()),
        TlsPhases::new(&settings, tls_addr.port()),
    ));
    // One pool serves both listeners, as a stage would run them.
    let pool = Arc::new(
        Pool::new(&PoolConfig {
            workers: 2,
            ..PoolConfig::default()
        })
        .unwrap(),
    );
    let tls_handler: Arc<dyn ConnectionHandler> =
        Arc::new(TlsHandler::new(Arc::clone(&relay), acceptor(&pki, TIMEOUT)));
    let tls_pool = Arc::clone(&pool);
    thread::spawn(move || server::serve(&tls_listener, &*tls_pool, tls_handler));
    let plain_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_addr = plain_listener.local_addr().unwrap();
    thread::spawn(move || server::serve(&plain_listener, &*pool, relay));

    let mut plain = connect(plain_addr);
    plain.send(b"GET /login?next=%2F HTTP/1.1\r\nHost: a.test:8080\r\n\r\n");
    let res = plain.read_response("GET");
    assert_eq!(res.status, 308);
    let want = format!("https://a.test:{}/login?next=%2F", tls_addr.port());
    assert_eq!(res.header("location"), Some(want.as_str()));
    assert_eq!(res.header("strict-transport-security"), None);

    let mut stream = tls_connect(tls_addr, "a.test", &all_versions(&pki));
    let res = get(&mut stream, "/login");
    assert_eq!(res.status, 200);
    assert_eq!(res.header("strict-transport-security"), Some("max-age=600"));
    assert!(
        res.body.starts_with("proto=https path=/login "),
        "{}",
        res.body
    );
}

#[test]
fn a_second_connection_with_the_same_client_config_resumes() {
    let pki = pki();
    let addr = tls_proxy(echo_relay(), acceptor(&pki, TIMEOUT), 2);
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = client_config_for(&pki, &[version]);
        let mut first = tls_connect(addr, "a.test", &config);
        assert_eq!(first.conn.handshake_kind(), Some(HandshakeKind::Full));
        // Reading a response also takes in the session tickets sent after the handshake.
        assert_eq!(get(&mut first, "/r1").status, 200);
        let mut second = tls_connect(addr, "a.test", &config);
        assert_eq!(
            second.conn.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "{:?}",
            version.version
        );
        assert_eq!(get(&mut second, "/r2").status, 200);
    }
}

/// A TLS backend (`backend.test`), keep-alive, answering like `echo_backend`; returns its
/// address and a count of the TLS connections it accepted.
fn tls_backend(pki: &Pki) -> (SocketAddr, Arc<AtomicUsize>) {
    let config = server_config(vec![NamedCertificate {
        names: vec!["backend.test".to_owned()],
        chain: pki.backend.chain(),
    }])
    .unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for tcp in listener.incoming().map_while(Result::ok) {
            tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
            let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            thread::spawn(move || {
                let mut stream = StreamOwned::new(conn, tcp);
                loop {
                    let head = read_head(&mut stream);
                    if head.is_empty() || stream.write_all(&echo_answer(&head, n)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// One request head from any stream (empty when it ends or fails first).
fn read_head(stream: &mut impl Read) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return Vec::new(),
        }
    }
    head
}

/// A relay to one TLS backend, set up as a config file's group would be.
fn relay_to_tls_backend(backend: SocketAddr, verify: Verify, name: &str) -> Arc<Relay> {
    let group = UpstreamTls {
        servers: vec![(backend, name.to_owned())],
        verify,
    };
    Arc::new(Relay::new(
        relay_config(),
        Arc::new(SingleUpstream(backend)),
        Connector::new(timeouts()).with_tls_group(&group).unwrap(),
    ))
}

#[test]
fn a_tls_backend_is_verified_with_the_ca_file_and_its_connection_reused() {
    let pki = pki();
    let (backend, accepted) = tls_backend(&pki);
    let ca = TempFile::new("ca.pem", &pki.ca_pem);
    let relay = relay_to_tls_backend(backend, Verify::CaFile(ca.0.clone()), "backend.test");
    let addr = serve(relay, 1);
    let mut client = connect(addr);
    for i in 0..3 {
        client.send(format!("GET /b{i} HTTP/1.1\r\nHost: a.test\r\n\r\n").as_bytes());
        let res = client.read_response("GET");
        assert_eq!(res.status, 200, "{}", res.text());
        // One backend connection carried them all (its number is 1).
        assert_eq!(res.text(), format!("proto=http path=/b{i} conn=1"));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn a_tls_backend_whose_certificate_does_not_verify_gets_a_502() {
    let pki = pki();
    let (backend, _) = tls_backend(&pki);
    let other_ca = self_signed_ca_pem();
    let ca = TempFile::new("other-ca.pem", &other_ca);
    let right_ca = TempFile::new("right-ca.pem", &pki.ca_pem);
    let cases = [
        (
            "an unknown CA",
            Verify::CaFile(ca.0.clone()),
            "backend.test",
        ),
        (
            "the wrong name",
            Verify::CaFile(right_ca.0.clone()),
            "wrong.test",
        ),
    ];
    for (what, verify, name) in cases {
        let addr = serve(relay_to_tls_backend(backend, verify, name), 1);
        let mut client = connect(addr);
        client.send(b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n");
        assert_eq!(client.read_response("GET").status, 502, "{what}");
    }
    // tls_verify = false accepts it anyway.
    let addr = serve(relay_to_tls_backend(backend, Verify::Off, "wrong.test"), 1);
    let mut client = connect(addr);
    client.send(b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n");
    assert_eq!(client.read_response("GET").status, 200);
}

fn self_signed_ca_pem() -> String {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap())
        .unwrap()
        .pem()
}

/// The server side of one connection, accepted from a listener in the test, with the
/// client's end.
fn accepted_pair(pki: &Pki) -> (revproxy::tls::TlsStream, TcpStream) {
    let listener = TcpListener::bind((IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let (tcp, _) = listener.accept().unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
    (acceptor(pki, TIMEOUT).accept(tcp).unwrap(), client)
}

#[test]
fn read_now_never_waits_and_reports_the_version_once_the_handshake_is_done() {
    use revproxy::http::stream::Transport;
    use revproxy::http::Socket;
    let pki = pki();
    let (mut server, mut tcp) = accepted_pair(&pki);
    let mut out = [0u8; 256];
    assert_eq!(server.read_now(&mut out).unwrap(), None, "nothing sent yet");
    assert!(server.handshake_deadline().is_some());
    assert_eq!(server.tls_version(), None);

    let config = client_config_for(&pki, &[&rustls::version::TLS12]);
    let mut client =
        ClientConnection::new(config, ServerName::try_from("a.test").unwrap()).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    tcp.write_all(&hello[..10]).unwrap();
    // Part of a record: the server must answer `None`, not block for the rest. Give the
    // bytes time to cross loopback (bounded), checking each time that nothing blocks. A
    // blocking read would wait for the socket's read timeout (`TIMEOUT`, 10 s); the bound is
    // half of it, so a loaded machine's pauses cannot fail the check.
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(server.read_now(&mut out).unwrap(), None);
        assert!(started.elapsed() < TIMEOUT / 2);
        thread::sleep(Duration::from_millis(5));
    }
    tcp.write_all(&hello[10..]).unwrap();
    // The rest of the handshake, the client driven by its own thread.
    let driver = thread::spawn(move || {
        let mut stream = StreamOwned::new(client, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
        stream.write_all(b"ping").unwrap();
        stream
    });
    let deadline = Instant::now() + TIMEOUT;
    let got = loop {
        if let Some(n) = server.read_now(&mut out).unwrap() {
            break n;
        }
        assert!(Instant::now() < deadline, "no plaintext in time");
        thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(&out[..got], b"ping");
    assert_eq!(server.tls_version(), Some("TLSv1.2"));
    assert_eq!(server.scheme(), "https");
    assert!(server.handshake_deadline().is_none());
    assert!(!server.has_buffered());
    drop(driver.join().unwrap());
}

#[test]
fn plaintext_left_inside_the_stream_is_reported_as_buffered() {
    use revproxy::http::stream::Transport;
    let pki = pki();
    let (mut server, tcp) = accepted_pair(&pki);
    let driver = thread::spawn(move || {
        let mut stream = tls_connect_over(tcp, &pki);
        stream.write_all(b"0123456789").unwrap();
        stream
    });
    let mut two = [0u8; 2];
    server.read_exact(&mut two).unwrap(); // blocking read: the handshake on the way
    assert_eq!(&two, b"01");
    assert!(
        server.has_buffered(),
        "8 decrypted bytes wait where poll cannot see them"
    );
    let mut rest = [0u8; 8];
    server.read_exact(&mut rest).unwrap();
    assert!(!server.has_buffered());
    drop(driver.join().unwrap());
}

fn tls_connect_over(tcp: TcpStream, pki: &Pki) -> TlsClient {
    let name = ServerName::try_from("a.test").unwrap();
    let conn = ClientConnection::new(all_versions(pki), name).unwrap();
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("TLS handshake");
    }
    stream
}

#[test]
fn a_kept_tls_backend_connection_that_the_backend_closed_is_not_reused() {
    let pki = pki();
    let config = server_config(vec![NamedCertificate {
        names: vec!["backend.test".to_owned()],
        chain: pki.backend.chain(),
    }])
    .unwrap();
    // Answers one request per connection (without saying `Connection: close`), then sends
    // close_notify and closes, and tells the test it did.
    let (closed_tx, closed) = std::sync::mpsc::channel();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = listener.local_addr().unwrap();
    thread::spawn(move || {
        for (n, tcp) in listener.incoming().map_while(Result::ok).enumerate() {
            tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
            let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut stream = StreamOwned::new(conn, tcp);
            let head = read_head(&mut stream);
            let _ = stream.write_all(&echo_answer(&head, n + 1));
            stream.conn.send_close_notify();
            let _ = stream.conn.complete_io(&mut stream.sock);
            drop(stream);
            let _ = closed_tx.send(n + 1);
        }
    });
    let ca = TempFile::new("ca.pem", &pki.ca_pem);
    let addr = serve(
        relay_to_tls_backend(backend, Verify::CaFile(ca.0.clone()), "backend.test"),
        1,
    );
    let mut client = connect(addr);
    for i in 1..=2 {
        client.send(b"GET /c HTTP/1.1\r\nHost: a.test\r\n\r\n");
        let res = client.read_response("GET");
        assert_eq!(res.status, 200);
        assert_eq!(res.text(), format!("proto=http path=/c conn={i}"));
        assert_eq!(closed.recv_timeout(TIMEOUT), Ok(i), "the backend closed");
    }
}

#[test]
fn a_thread_per_connection_model_serves_tls_too() {
    let pki = pki();
    let handler: Arc<dyn ConnectionHandler> =
        Arc::new(TlsHandler::new(echo_relay(), acceptor(&pki, TIMEOUT)));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let model = revproxy::server::threads::ThreadPerConnection::new(8);
        server::serve(&listener, &model, handler)
    });
    let mut stream = tls_connect(addr, "x.b.test", &all_versions(&pki));
    assert_eq!(stream.conn.peer_certificates().unwrap()[0], pki.b.cert);
    for i in 0..2 {
        let res = get(&mut stream, &format!("/t{i}"));
        assert!(
            res.body.starts_with(&format!("proto=https path=/t{i} ")),
            "{}",
            res.body
        );
    }
    // Garbage there ends that connection's thread, not the server.
    let mut garbage = TcpStream::connect(addr).unwrap();
    garbage.write_all(b"\x16\x03\x01\x00\x05hello").unwrap();
    assert!(closed_within(&mut garbage, TIMEOUT));
    assert_eq!(get(&mut stream, "/t2").status, 200);
}

#[test]
fn a_full_pool_closes_new_tls_connections_without_plain_text() {
    let pki = pki();
    // A backend that holds each request until the test lets it answer.
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    let release = Arc::new(std::sync::Mutex::new(release));
    let (arrived_tx, arrived) = std::sync::mpsc::channel::<()>();
    let backend = raw_backend(move |mut stream| {
        let head = read_request_head(&mut stream);
        let _ = arrived_tx.send(());
        let _ = release.lock().unwrap().recv_timeout(TIMEOUT);
        let _ = stream.write_all(&echo_answer(&head, 1));
    });
    let relay = Arc::new(Relay::new(
        relay_config(),
        Arc::new(SingleUpstream(backend)),
        Connector::new(timeouts()),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let pool = Pool::new(&PoolConfig {
        workers: 1,
        queue: 1,
        ..PoolConfig::default()
    })
    .unwrap();
    let handler: Arc<dyn ConnectionHandler> =
        Arc::new(TlsHandler::new(relay, acceptor(&pki, TIMEOUT)));
    thread::spawn(move || server::serve(&listener, &pool, handler));

    // The only worker waits on the backend; then one connection fills the queue.
    let mut busy = tls_connect(addr, "a.test", &all_versions(&pki));
    busy.write_all(b"GET /hold HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    arrived
        .recv_timeout(TIMEOUT)
        .expect("the request reached the backend");
    let _queued = TcpStream::connect(addr).unwrap();
    // Past the queue: closed without a byte (a 503 in plain text would be garbage to TLS).
    // The queued connection may need a moment to be counted: try a few times (bounded).
    let mut refused = false;
    for _ in 0..50 {
        let mut extra = TcpStream::connect(addr).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut got = Vec::new();
        match extra.read_to_end(&mut got) {
            Ok(_) | Err(_) if !got.is_empty() => panic!("bytes sent: {got:?}"),
            Ok(_) => {
                refused = true;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                refused = true;
                break;
            }
            Err(_) => {} // still open: it was queued; try another
        }
    }
    assert!(refused, "no connection was refused at capacity");
    release_tx.send(()).unwrap();
    let res = read_response(&mut busy, &mut Vec::new());
    assert_eq!(res.status, 200);
}

/// Sends the TLS version of every exchange it logs.
struct VersionLog(std::sync::Mutex<std::sync::mpsc::Sender<Option<&'static str>>>);

impl Phases for VersionLog {
    type Ctx = ();

    fn logging(&self, _: &mut (), summary: &revproxy::relay::Summary<'_>) {
        let _ = self.0.lock().unwrap().send(summary.tls_version);
    }
}

#[test]
fn the_logging_phase_sees_the_tls_version_of_each_connection() {
    let pki = pki();
    let (logged_tx, logged) = std::sync::mpsc::channel();
    let relay = Arc::new(Relay::with_phases(
        relay_config(),
        Arc::new(SingleUpstream(echo_backend())),
        Connector::new(timeouts()),
        VersionLog(std::sync::Mutex::new(logged_tx)),
    ));
    let tls_addr = tls_proxy(Arc::clone(&relay), acceptor(&pki, TIMEOUT), 2);
    let plain_addr = serve(relay, 2);
    for (version, name) in [
        (&rustls::version::TLS12, "TLSv1.2"),
        (&rustls::version::TLS13, "TLSv1.3"),
    ] {
        let mut stream = tls_connect(tls_addr, "a.test", &client_config_for(&pki, &[version]));
        assert_eq!(get(&mut stream, "/l").status, 200);
        assert_eq!(logged.recv_timeout(TIMEOUT), Ok(Some(name)));
    }
    let mut plain = connect(plain_addr);
    plain.send(b"GET /l HTTP/1.1\r\nHost: a.test\r\n\r\n");
    assert_eq!(plain.read_response("GET").status, 200);
    assert_eq!(logged.recv_timeout(TIMEOUT), Ok(None));
}

// --- wss: WebSocket upgrades from TLS clients, and to TLS backends -------------------------
//
// A TLS stream cannot be split between two threads, so these tunnels run on the relay's
// single polling thread (`relay/poll_tunnel.rs`); the client is tungstenite over a rustls
// client stream.

/// Sends (status, body bytes, TLS version) of every exchange it logs.
struct TunnelLog(std::sync::Mutex<std::sync::mpsc::Sender<(u16, u64, Option<&'static str>)>>);

impl Phases for TunnelLog {
    type Ctx = ();

    fn logging(&self, _: &mut (), summary: &revproxy::relay::Summary<'_>) {
        let _ =
            self.0
                .lock()
                .unwrap()
                .send((summary.status, summary.body_bytes, summary.tls_version));
    }
}

type TunnelLogs = std::sync::mpsc::Receiver<(u16, u64, Option<&'static str>)>;

/// A relay allowing upgrades (tunnels idle at most `idle`) to `upstream` through `connector`.
fn upgrading_relay(
    upstream: SocketAddr,
    connector: Connector,
    idle: Duration,
) -> (Arc<Relay<TunnelLog>>, TunnelLogs) {
    let (logged_tx, logged) = std::sync::mpsc::channel();
    let mut config = relay_config();
    config.upgrades = revproxy::relay::UpgradeConfig {
        allow: true,
        idle_timeout: idle,
        ..revproxy::relay::UpgradeConfig::default()
    };
    let relay = Arc::new(Relay::with_phases(
        config,
        Arc::new(SingleUpstream(upstream)),
        connector,
        TunnelLog(std::sync::Mutex::new(logged_tx)),
    ));
    (relay, logged)
}

/// The summary of the first tunnel that ends (plain exchanges logged before it skipped).
fn tunnel_logged(logged: &TunnelLogs) -> (u64, Option<&'static str>) {
    // Bounded: each wait is TIMEOUT, and a test logs a handful of exchanges.
    for _ in 0..16 {
        let (status, bytes, version) = logged.recv_timeout(TIMEOUT).expect("a summary");
        if status == 101 {
            return (bytes, version);
        }
    }
    panic!("no tunnel was logged");
}

type Wss = tungstenite::WebSocket<TlsClient>;

/// A WebSocket over TLS to the proxy at `addr`, handshake done.
fn open_wss(addr: SocketAddr, pki: &Pki) -> Wss {
    let stream = tls_connect(addr, "a.test", &all_versions(pki));
    let (ws, response) = tungstenite::client("wss://a.test/ws", stream)
        .expect("the WebSocket handshake through the proxy");
    assert_eq!(response.status(), 101);
    assert!(response.headers().contains_key("sec-websocket-accept"));
    ws
}

/// Text, binary, a ping, and a 1 MiB message both ways come back unchanged.
fn assert_wss_echoes<S: Read + Write>(ws: &mut tungstenite::WebSocket<S>) {
    use tungstenite::Message;
    ws.send(Message::text("hello over wss")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello over wss"));
    let binary: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    ws.send(Message::binary(binary.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(binary));
    ws.send(Message::Ping(b"there?".to_vec().into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Pong(b"there?".to_vec().into()));
    // Far larger than the tunnel's buffers (64 KiB a direction): they fill and drain
    // many times over, and every byte arrives in order.
    let large: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    ws.send(Message::binary(large.clone())).unwrap();
    match ws.read().unwrap() {
        Message::Binary(got) => assert!(got[..] == large[..], "1 MiB intact"),
        other => panic!("unexpected {other:?}"),
    }
}

/// Runs the close handshake from the client; true once the connection ended after it.
fn close_wss<S: Read + Write>(ws: &mut tungstenite::WebSocket<S>) -> bool {
    ws.close(None).unwrap();
    // Bounded: the close reply comes after at most what was in flight.
    for _ in 0..8 {
        match ws.read() {
            Ok(tungstenite::Message::Close(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => return true,
            Err(err) => panic!("close handshake failed: {err}"),
        }
    }
    false
}

#[test]
fn wss_to_a_plain_backend_echoes_text_binary_ping_and_a_large_message_and_closes() {
    let pki = pki();
    let origin = support::backend("wss1");
    let (relay, logged) = upgrading_relay(
        origin.addr(),
        Connector::new(timeouts()),
        Duration::from_secs(30),
    );
    let addr = tls_proxy(Arc::clone(&relay), acceptor(&pki, TIMEOUT), 2);
    let mut ws = open_wss(addr, &pki);
    assert_eq!(relay.open_tunnels(), 1);
    assert_wss_echoes(&mut ws);
    assert!(close_wss(&mut ws), "the close handshake completed");
    drop(ws);
    let (to_client, version) = tunnel_logged(&logged);
    assert!(to_client > 1024 * 1024, "bytes to the client: {to_client}");
    assert!(version.is_some(), "a TLS tunnel logs its TLS version");
    // The slot is given back as the tunnel thread ends, just before it logs.
    assert_eq!(relay.open_tunnels(), 0);
}

#[test]
fn a_wss_tunnel_holds_no_worker_of_a_one_worker_pool() {
    let pki = pki();
    let origin = support::backend("wss2");
    let (relay, _logged) = upgrading_relay(
        origin.addr(),
        Connector::new(timeouts()),
        Duration::from_secs(30),
    );
    let addr = tls_proxy(Arc::clone(&relay), acceptor(&pki, TIMEOUT), 1);
    let mut ws = open_wss(addr, &pki);
    ws.send(tungstenite::Message::text("first")).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("first"));
    for _ in 0..3 {
        let mut https = tls_connect(addr, "a.test", &all_versions(&pki));
        let res = get(&mut https, "/");
        assert_eq!(res.status, 200);
        assert_eq!(res.body, "hello from wss2\n");
    }
    assert_eq!(relay.open_tunnels(), 1);
    ws.send(tungstenite::Message::text("still open")).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("still open"));
}

/// A plain backend that answers an upgrade with a 101 and `first` in one write, then echoes
/// until the proxy half-closes, and closes.
fn switching_backend(first: &'static [u8]) -> SocketAddr {
    raw_backend(move |mut stream| {
        read_request_head(&mut stream);
        let mut out =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\n"
                .to_vec();
        out.extend_from_slice(first);
        if stream.write_all(&out).is_err() {
            return;
        }
        let mut buf = [0u8; 4096];
        // Bounded by the connection: it ends at the half-close or the socket's timeout.
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            if stream.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    })
}

/// Reads from `stream` until `want` bytes came (or the stream ended).
fn read_exactly(stream: &mut impl Read, buf: &mut Vec<u8>, want: usize) {
    let mut chunk = [0u8; 4096];
    // Bounded: each read brings a byte, or ends the loop (end, error, socket timeout).
    while buf.len() < want {
        match stream.read(&mut chunk) {
            Ok(n @ 1..) => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
}

#[test]
fn bytes_behind_the_101_pass_both_ways_and_half_closes_end_the_wss_tunnel() {
    let pki = pki();
    let origin = switching_backend(b"origin-first");
    let (relay, logged) =
        upgrading_relay(origin, Connector::new(timeouts()), Duration::from_secs(30));
    let addr = tls_proxy(Arc::clone(&relay), acceptor(&pki, TIMEOUT), 2);
    let mut client = tls_connect(addr, "a.test", &all_versions(&pki));
    // The request and the first tunnel bytes in one TLS write.
    client
        .write_all(
            b"GET /raw HTTP/1.1\r\nHost: a.test\r\nConnection: upgrade\r\nUpgrade: raw\r\n\r\n\
              client-first",
        )
        .unwrap();
    let mut buf = Vec::new();
    let head = b"HTTP/1.1 101";
    read_exactly(&mut client, &mut buf, head.len());
    assert!(buf.starts_with(head), "{:?}", String::from_utf8_lossy(&buf));
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let before = buf.len();
        read_exactly(&mut client, &mut buf, before + 1);
        assert!(buf.len() > before, "the 101 head ends");
    };
    // The origin's bytes behind its 101, then the echo of the client's bytes behind its
    // request.
    let want = b"origin-firstclient-first";
    read_exactly(&mut client, &mut buf, end + want.len());
    assert_eq!(&buf[end..], want);
    client.write_all(b" more").unwrap();
    buf.clear();
    read_exactly(&mut client, &mut buf, 5);
    assert_eq!(buf, b" more");
    // The client's close_notify is a half-close: the origin sees its end and closes, and
    // the proxy passes that back as its own close_notify.
    client.conn.send_close_notify();
    client.flush().unwrap();
    let mut rest = Vec::new();
    assert!(client.read_to_end(&mut rest).is_ok(), "a clean TLS close");
    assert!(rest.is_empty(), "{rest:?}");
    let (to_client, _) = tunnel_logged(&logged);
    assert_eq!(to_client, (want.len() + 5) as u64);
    assert_eq!(relay.open_tunnels(), 0);
}

#[test]
fn a_silent_wss_tunnel_is_closed_by_the_idle_timeout() {
    let pki = pki();
    let origin = switching_backend(b"");
    let (relay, logged) = upgrading_relay(
        origin,
        Connector::new(timeouts()),
        Duration::from_millis(300),
    );
    let addr = tls_proxy(Arc::clone(&relay), acceptor(&pki, TIMEOUT), 2);
    let mut client = tls_connect(addr, "a.test", &all_versions(&pki));
    client
        .write_all(
            b"GET /raw HTTP/1.1\r\nHost: a.test\r\nConnection: upgrade\r\nUpgrade: raw\r\n\r\n",
        )
        .unwrap();
    let opened = Instant::now();
    let res = read_response(&mut client, &mut Vec::new());
    assert_eq!(res.status, 101);
    // Nothing moves: the tunnel ends on its own, well before the client's read timeout.
    let mut rest = Vec::new();
    let end = client.read_to_end(&mut rest);
    assert!(end.is_ok(), "closed with a close_notify: {end:?}");
    assert!(rest.is_empty());
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < TIMEOUT,
        "closed after {waited:?}"
    );
    assert_eq!(tunnel_logged(&logged).0, 0);
    assert_eq!(relay.open_tunnels(), 0);
}

/// A TLS backend (`backend.test`) that accepts WebSocket handshakes (tungstenite's server
/// side) and echoes data messages.
fn wss_backend(pki: &Pki) -> SocketAddr {
    let config = server_config(vec![NamedCertificate {
        names: vec!["backend.test".to_owned()],
        chain: pki.backend.chain(),
    }])
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for tcp in listener.incoming().map_while(Result::ok) {
            tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
            tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
            let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            thread::spawn(move || {
                let Ok(mut ws) = tungstenite::accept(StreamOwned::new(conn, tcp)) else {
                    return;
                };
                // Bounded by the connection: it ends at the close handshake or the timeout.
                while let Ok(message) = ws.read() {
                    if (message.is_text() || message.is_binary()) && ws.send(message).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn wss_and_ws_clients_reach_an_https_backend() {
    let pki = pki();
    let backend = wss_backend(&pki);
    let ca = TempFile::new("wss-ca.pem", &pki.ca_pem);
    let group = UpstreamTls {
        servers: vec![(backend, "backend.test".to_owned())],
        verify: Verify::CaFile(ca.0.clone()),
    };
    let connector = Connector::new(timeouts()).with_tls_group(&group).unwrap();
    let (relay, logged) = upgrading_relay(backend, connector, Duration::from_secs(30));
    // TLS on both sides of the tunnel.
    let tls_addr = tls_proxy(Arc::clone(&relay), acceptor(&pki, TIMEOUT), 2);
    let mut ws = open_wss(tls_addr, &pki);
    assert_wss_echoes(&mut ws);
    assert!(close_wss(&mut ws));
    drop(ws);
    assert!(tunnel_logged(&logged).0 > 1024 * 1024);
    // A plain client, TLS only towards the backend.
    let plain_addr = serve(relay.clone(), 2);
    let tcp = TcpStream::connect_timeout(&plain_addr, TIMEOUT).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
    let (mut ws, response) =
        tungstenite::client(format!("ws://{plain_addr}/ws"), tcp).expect("ws handshake");
    assert_eq!(response.status(), 101);
    assert_wss_echoes(&mut ws);
    assert!(close_wss(&mut ws));
    drop(ws);
    let (_, version) = tunnel_logged(&logged);
    assert_eq!(version, None, "the client side was plain");
    assert_eq!(relay.open_tunnels(), 0);
}

/// An origin that answers `200` chunked at once and echoes the (chunked) body back as it
/// arrives, until its last chunk; or, for a path with `refuse`, answers `413` and reads
/// nothing.
fn duplex_origin() -> SocketAddr {
    raw_backend(|mut s| {
        let head = read_request_head(&mut s);
        if head.windows(6).any(|w| w == b"refuse") {
            let _ = s.write_all(
                b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig",
            );
            let mut one = [0u8; 1];
            let _ = s.peek(&mut one); // until the proxy closes
            return;
        }
        if s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .is_err()
        {
            return;
        }
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.ends_with(b"0\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// The data of the complete chunks in `raw` (a chunked body without its head), and whether
/// the last chunk was among them.
fn chunk_data(raw: &[u8]) -> (Vec<u8>, bool) {
    let mut data = Vec::new();
    let mut rest = raw;
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let Ok(size) = usize::from_str_radix(&String::from_utf8_lossy(&rest[..eol]), 16) else {
            break;
        };
        if size == 0 {
            return (data, true);
        }
        let start = eol + 2;
        if rest.len() < start + size + 2 {
            break;
        }
        data.extend_from_slice(&rest[start..start + size]);
        rest = &rest[start + size + 2..];
    }
    (data, false)
}

/// Reads from `stream` until the body after the head decodes to `want` (or to its end when
/// `want` is empty). Bounded by the read timeout and 64 reads.
fn read_echo(stream: &mut TlsClient, raw: &mut Vec<u8>, want: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 4096];
    for _ in 0..64 {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let (data, ended) = chunk_data(&raw[end + 4..]);
            if (!want.is_empty() && data == want) || (want.is_empty() && ended) {
                return data;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    panic!("no {want:?} in {:?}", String::from_utf8_lossy(raw));
}

#[test]
fn over_tls_an_echo_streams_back_and_an_early_413_reaches_a_waiting_client() {
    let pki = pki();
    let relay = Arc::new(Relay::new(
        relay_config(),
        Arc::new(SingleUpstream(duplex_origin())),
        Connector::new(timeouts()),
    ));
    let addr = tls_proxy(relay, acceptor(&pki, TIMEOUT), 2);
    let config = all_versions(&pki);

    let mut echo = tls_connect(addr, "a.test", &config);
    echo.write_all(b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    echo.write_all(b"5\r\nfirst\r\n").unwrap();
    let mut raw = Vec::new();
    assert_eq!(read_echo(&mut echo, &mut raw, b"first"), b"first");
    assert!(raw.starts_with(b"HTTP/1.1 200 OK\r\n"));
    echo.write_all(b"4\r\nlast\r\n0\r\n\r\n").unwrap();
    assert_eq!(read_echo(&mut echo, &mut raw, b""), b"firstlast");

    // A client that sends the head of a large upload and waits for the answer.
    let mut upload = tls_connect(addr, "a.test", &config);
    upload
        .write_all(b"POST /refuse HTTP/1.1\r\nHost: a.test\r\nContent-Length: 500000\r\n\r\n")
        .unwrap();
    let res = read_response(&mut upload, &mut Vec::new());
    assert_eq!((res.status, res.body.as_str()), (413, "big"));
}
