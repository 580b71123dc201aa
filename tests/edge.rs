//! The real `stage9` binary with `[tls]` in its file: the TLS listener beside the plain one,
//! a CA made at start that a rustls client trusts, the plain listener redirecting to https,
//! HSTS on TLS responses only, `X-Forwarded-Proto` per connection, routes over TLS, and a
//! SIGTERM that stops both listeners.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use support::{raw_backend, read_request_head, Proxy, TIMEOUT};

const STAGE9: &str = env!("CARGO_BIN_EXE_stage9");

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("revproxy-edge-{}-{name}", std::process::id()))
}

/// A backend that answers `seen PROTO` with the X-Forwarded-Proto it got.
fn proto_backend() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let addr = raw_backend(move |mut stream| loop {
        let head = read_request_head(&mut stream);
        if !head.ends_with(b"\r\n\r\n") {
            return;
        }
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let proto = text
            .lines()
            .find_map(|l| l.strip_prefix("x-forwarded-proto:"))
            .unwrap_or("none")
            .trim()
            .to_owned();
        log.lock().unwrap().push(proto.clone());
        let body = format!("seen {proto}");
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).is_err() {
            return;
        }
    });
    (addr, seen)
}

fn stage9(backend: SocketAddr, ca: &Path, redirect: bool) -> Proxy {
    stage9_with(backend, ca, redirect, "")
}

fn stage9_with(backend: SocketAddr, ca: &Path, redirect: bool, extra: &str) -> Proxy {
    let config = temp(&format!("config-{redirect}-{}.toml", extra.len()));
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\
             [upstreams.app]\nservers = [\"{backend}\"]\n\
             [[routes]]\npath = \"/app\"\nupstream = \"app\"\nstrip_prefix = true\n\
             [[routes]]\npath = \"/\"\nreturn = {{ status = 200, body = \"welcome\" }}\n\
             [tls]\nlisten = \"127.0.0.1:0\"\nself_signed = true\n\
             self_signed_names = [\"localhost\"]\nself_signed_ca = \"{}\"\n\
             redirect_http = {redirect}\nhsts = \"max-age=600\"\n{extra}",
            ca.display()
        ),
    )
    .unwrap();
    let path = config.to_str().unwrap().to_owned();
    Proxy::start(STAGE9, &[], &["--config", &path])
}

fn client(ca: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("the CA file stage 9 wrote") {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One request and its whole answer (the proxy closes after `Connection: close`).
fn exchange(stream: &mut impl ReadWrite, request: &str) -> String {
    stream.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    // Bounded by the read timeout and the proxy closing.
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn tls(addr: SocketAddr, config: &Arc<ClientConfig>) -> StreamOwned<ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    StreamOwned::new(
        ClientConnection::new(Arc::clone(config), name).unwrap(),
        tcp,
    )
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn stage9_serves_tls_from_its_file_beside_plain_http() {
    let (backend, seen) = proto_backend();
    let ca = temp("ca-plain.pem");
    let proxy = stage9(backend, &ca, false);
    let https = proxy.announced("TLS on ");
    let config = client(&ca);

    let mut stream = tls(https, &config);
    let answer = exchange(
        &mut stream,
        "GET /app/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("seen https"), "{answer}");
    assert_eq!(
        header(&answer, "strict-transport-security"),
        Some("max-age=600")
    );
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));

    // Keep-alive over TLS: two requests on one connection, the second a fixed route.
    let mut stream = tls(https, &config);
    stream
        .write_all(b"GET /app/1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let answer = exchange(
        &mut stream,
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    assert!(answer.ends_with("welcome"), "{answer}");

    // The plain listener serves plain http, without HSTS (RFC 6797 section 7.2).
    let mut plain = TcpStream::connect(proxy.addr).unwrap();
    plain.set_read_timeout(Some(TIMEOUT)).unwrap();
    let answer = exchange(
        &mut plain,
        "GET /app/y HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.ends_with("seen http"), "{answer}");
    assert_eq!(header(&answer, "strict-transport-security"), None);
    assert_eq!(*seen.lock().unwrap(), ["https", "https", "http"]);
    let _ = std::fs::remove_file(&ca);
}

#[test]
fn stage9_redirects_plain_http_to_its_tls_port_and_stops_both_on_sigterm() {
    let (backend, seen) = proto_backend();
    let ca = temp("ca-redirect.pem");
    let mut proxy = stage9(backend, &ca, true);
    let https = proxy.announced("TLS on ");
    let mut plain = TcpStream::connect(proxy.addr).unwrap();
    plain.set_read_timeout(Some(TIMEOUT)).unwrap();
    let answer = exchange(
        &mut plain,
        "GET /app/z?q=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    assert_eq!(
        header(&answer, "location"),
        Some(format!("https://localhost:{}/app/z?q=1", https.port()).as_str())
    );
    assert!(seen.lock().unwrap().is_empty(), "a redirect goes nowhere");

    let mut stream = tls(https, &client(&ca));
    let answer = exchange(
        &mut stream,
        "GET /app/z HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.ends_with("seen https"), "{answer}");

    // SIGTERM: both listeners refuse new connections, and the process exits 0.
    unsafe { libc::kill(proxy.pid() as i32, libc::SIGTERM) };
    let status = proxy
        .wait_exit(TIMEOUT)
        .expect("stage 9 exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        TcpStream::connect(https).is_err(),
        "the TLS listener is closed"
    );
    assert!(TcpStream::connect(proxy.addr).is_err(), "the plain one too");
    let _ = std::fs::remove_file(&ca);
}

/// `stage9 --demo` without `--config` runs a built-in file (the README's first command); `-t`
/// checks it, so the demo can never ship a configuration that does not start.
#[test]
fn the_built_in_demo_configuration_is_valid() {
    let output = std::process::Command::new(STAGE9)
        .args(["--demo", "-t"])
        .output()
        .expect("run stage9");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for part in [
        "configuration is valid",
        "5 routes",
        "admin on 127.0.0.1:9901",
        "compression",
    ] {
        assert!(stdout.contains(part), "{part:?} missing in: {stdout}");
    }
}

/// The JSON access log names the TLS version of each request that came over TLS, and how long
/// the backend took to answer; it shows the target the client sent, not the one a route's
/// `strip_prefix` made of it for the backend.
#[test]
fn the_json_access_log_has_the_tls_version_and_the_upstream_time() {
    let (backend, _) = proto_backend();
    let ca = temp("ca-log.pem");
    let log = temp("access.json");
    let extra = format!(
        "[log]\nlevel = \"warn\"\naccess_log = \"{}\"\nformat = \"json\"\n",
        log.display()
    );
    let proxy = stage9_with(backend, &ca, false, &extra);
    let https = proxy.announced("TLS on ");
    let mut stream = tls(https, &client(&ca));
    let answer = exchange(
        &mut stream,
        "GET /app/a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.ends_with("seen https"), "{answer}");
    let mut plain = TcpStream::connect(proxy.addr).unwrap();
    plain.set_read_timeout(Some(TIMEOUT)).unwrap();
    exchange(
        &mut plain,
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    // The writer thread writes behind the requests: wait (bounded) for both lines.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let lines: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<_> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 2 || std::time::Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["tls"], "TLSv1.3");
    assert_eq!(lines[0]["route"], "route1");
    assert_eq!(lines[0]["target"], "/app/a", "{}", lines[0]);
    assert_eq!(lines[0]["request"], "GET /app/a HTTP/1.1");
    assert!(lines[0]["upstream_ms"].as_f64().is_some(), "{}", lines[0]);
    assert!(
        lines[1]["tls"].is_null() && lines[1]["upstream_ms"].is_null(),
        "{}",
        lines[1]
    );
    let _ = std::fs::remove_file(&ca);
    let _ = std::fs::remove_file(&log);
}
