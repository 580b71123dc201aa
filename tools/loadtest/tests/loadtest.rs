//! The `loadtest` binary end to end, against a raw HTTP/1.1 server on port 0 in this test.
//! No timing is asserted; every socket has timeouts and every loop a bound.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Serves up to `max_connections` connections, each on its own thread: every request gets a
/// 2-byte body, named alternately b1 and b2 in X-Backend-Server. Chunked on odd requests, so
/// both framings go through the binary. Returns the base URL.
fn start_server(max_connections: usize) -> String {
    start_counting_server(max_connections).0
}

/// [`start_server`], also returning how many requests it has answered.
fn start_counting_server(max_connections: usize) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let port = listener.local_addr().expect("local addr").port();
    let served = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&served);
    thread::spawn(move || {
        for stream in listener.incoming().take(max_connections) {
            let Ok(stream) = stream else { continue };
            let served = Arc::clone(&served);
            thread::spawn(move || serve_connection(stream, &served));
        }
    });
    (format!("http://127.0.0.1:{port}/"), counted)
}

/// For request `n` on a connection: the response, and whether to close after it.
type Script = fn(usize) -> Option<(&'static [u8], bool)>;

/// A server whose every connection reads requests and answers each with `respond(n)` (n:
/// the request's number on that connection) and closes the connection after it when told
/// to; `None` closes it without an answer. Each response goes out in two writes, so the
/// client sees it in pieces.
fn start_scripted_server(max_connections: usize, respond: Script) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let port = listener.local_addr().expect("local addr").port();
    thread::spawn(move || {
        for stream in listener.incoming().take(max_connections) {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                if !set_timeouts(&stream) {
                    return;
                }
                let mut pending = Vec::new();
                let mut chunk = [0u8; 4096];
                // Bounded: by the script, the client closing, and the read timeout.
                for n in 0..10_000 {
                    while !pending.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => pending.extend_from_slice(&chunk[..k]),
                        }
                    }
                    let end = pending
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .unwrap_or(0);
                    pending.drain(..end + 4);
                    let Some((response, close)) = respond(n) else {
                        return;
                    };
                    let (first, rest) = response.split_at(response.len() / 2);
                    if stream.write_all(first).is_err() || stream.write_all(rest).is_err() || close
                    {
                        return;
                    }
                }
            });
        }
    });
    format!("http://127.0.0.1:{port}/")
}

fn serve_connection(mut stream: TcpStream, served: &AtomicU64) {
    if set_timeouts(&stream) {
        serve_requests(&mut stream, served);
    }
}

fn set_timeouts(stream: &TcpStream) -> bool {
    stream.set_read_timeout(Some(TIMEOUT)).is_ok()
        && stream.set_write_timeout(Some(TIMEOUT)).is_ok()
}

fn serve_requests(stream: &mut (impl Read + Write), served: &AtomicU64) {
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    // Bounded: by the client (it closes) and by the read timeout.
    for _ in 0..100_000 {
        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
        pending.drain(..end + 4);
        let n = served.fetch_add(1, Ordering::Relaxed);
        let even = n.is_multiple_of(2);
        let backend = if even { "b1" } else { "b2" };
        let close = head.contains("connection: close");
        let connection = if close { "Connection: close\r\n" } else { "" };
        let response = if even {
            format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend-Server: {backend}\r\n{connection}\r\nok")
        } else {
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Backend-Server: {backend}\r\n{connection}\r\n1\r\no\r\n1\r\nk\r\n0\r\n\r\n"
            )
        };
        if stream.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// What the TLS server of [`start_tls_server`] counted.
#[derive(Default)]
struct Handshakes {
    full: AtomicU64,
    resumed: AtomicU64,
}

/// The same server over TLS, with a certificate for `localhost` signed by a CA made here;
/// returns the base URL, the CA's PEM file and the handshake counts.
fn start_tls_server(max_connections: usize) -> (String, tempfile_path::TempPem, Arc<Handshakes>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let port = listener.local_addr().expect("local addr").port();
    let served = Arc::new(AtomicU64::new(0));
    let handshakes = Arc::new(Handshakes::default());
    let counts = Arc::clone(&handshakes);
    thread::spawn(move || {
        for stream in listener.incoming().take(max_connections) {
            let Ok(stream) = stream else { continue };
            let (served, counts, config) = (
                Arc::clone(&served),
                Arc::clone(&counts),
                Arc::clone(&config),
            );
            thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                if !set_timeouts(&stream) {
                    return;
                }
                let mut tls = rustls::StreamOwned::new(conn, stream);
                while tls.conn.is_handshaking() {
                    if tls.conn.complete_io(&mut tls.sock).is_err() {
                        return;
                    }
                }
                let counter = match tls.conn.handshake_kind() {
                    Some(rustls::HandshakeKind::Resumed) => &counts.resumed,
                    _ => &counts.full,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                serve_requests(&mut tls, &served);
            });
        }
    });
    let ca = tempfile_path::TempPem::write(&ca_cert.pem());
    (format!("https://localhost:{port}/"), ca, handshakes)
}

/// A PEM file in the temp directory, removed when dropped.
mod tempfile_path {
    pub struct TempPem(pub std::path::PathBuf);

    impl TempPem {
        pub fn write(pem: &str) -> TempPem {
            let path = std::env::temp_dir().join(format!(
                "loadtest-ca-{}-{:?}.pem",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::write(&path, pem).expect("write the CA file");
            TempPem(path)
        }

        pub fn arg(&self) -> &str {
            self.0.to_str().expect("a UTF-8 temp path")
        }
    }

    impl Drop for TempPem {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn loadtest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .output()
        .expect("run the loadtest binary")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON object")
}

#[test]
fn closed_loop_keepalive_counts_everything() {
    let url = start_server(16);
    let report = json(&loadtest(&["-n", "40", "-c", "4", "--json", &url]));
    assert_eq!(report["responses"], 40);
    assert_eq!(report["errors_total"], 0);
    assert_eq!(report["status_codes"]["200"], 40);
    assert_eq!(report["body_bytes"], 80, "{report}");
    assert_eq!(report["backends"]["b1"], 20);
    assert_eq!(report["backends"]["b2"], 20);
    // At most one connection per worker: keep-alive reuses it. (Fewer when a worker thread
    // starts after the others have taken every request, as happens on a busy machine.)
    let connections = report["connections"].as_u64().expect("a count");
    assert!(
        (1..=4).contains(&connections),
        "keep-alive reuses one connection per worker, got {connections}"
    );
    assert_eq!(report["mode"], "closed");
}

#[test]
fn no_keepalive_opens_a_connection_per_request() {
    let url = start_server(64);
    let report = json(&loadtest(&[
        "-n",
        "12",
        "-c",
        "3",
        "--no-keepalive",
        "--json",
        &url,
    ]));
    assert_eq!(report["responses"], 12);
    assert_eq!(report["connections"], 12);
    assert_eq!(report["keepalive"], false);
}

#[test]
fn https_keepalive_reuses_one_tls_connection_per_worker() {
    let (url, ca, handshakes) = start_tls_server(16);
    let report = json(&loadtest(&[
        "-n",
        "40",
        "-c",
        "4",
        "--cacert",
        ca.arg(),
        "--json",
        &url,
    ]));
    assert_eq!(report["responses"], 40);
    assert_eq!(report["errors_total"], 0);
    assert_eq!(report["body_bytes"], 80, "{report}");
    let connections = report["connections"].as_u64().expect("a count");
    assert!((1..=4).contains(&connections), "{connections}");
    // One more handshake than the workers' connections: the reachability check's.
    let total =
        handshakes.full.load(Ordering::Relaxed) + handshakes.resumed.load(Ordering::Relaxed);
    assert_eq!(total, connections + 1);
}

#[test]
fn https_handshakes_resume_unless_told_not_to() {
    let (url, ca, handshakes) = start_tls_server(64);
    let args = [
        "-n",
        "12",
        "-c",
        "1",
        "--no-keepalive",
        "--cacert",
        ca.arg(),
        "--json",
    ];
    let report = json(&loadtest(&[&args[..], &[url.as_str()]].concat()));
    assert_eq!(
        (report["responses"].as_u64(), report["connections"].as_u64()),
        (Some(12), Some(12))
    );
    // One client config for the run: after the first full handshake, sessions resume.
    assert!(
        handshakes.resumed.load(Ordering::Relaxed) >= 10,
        "resumed {}",
        handshakes.resumed.load(Ordering::Relaxed)
    );

    let (url, ca, handshakes) = start_tls_server(64);
    let args = [
        "-n",
        "12",
        "-c",
        "1",
        "--no-keepalive",
        "--no-resume",
        "--cacert",
        ca.arg(),
        "--json",
    ];
    let report = json(&loadtest(&[&args[..], &[url.as_str()]].concat()));
    assert_eq!(report["connections"], 12);
    assert_eq!(handshakes.resumed.load(Ordering::Relaxed), 0);
    assert_eq!(handshakes.full.load(Ordering::Relaxed), 13);
}

#[test]
fn https_without_a_trusted_ca_says_what_to_pass() {
    let (url, _ca, _) = start_tls_server(4);
    let output = loadtest(&["-n", "1", &url]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--cacert"));
    // A CA that did not sign the server's certificate: the handshake fails, exit 1.
    let (_, other_ca, _) = start_tls_server(1);
    let output = loadtest(&[
        "-n",
        "1",
        "--timeout",
        "2s",
        "--cacert",
        other_ca.arg(),
        &url,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("TLS handshake") && stderr.contains("certificate"),
        "{stderr}"
    );
    // --insecure takes it anyway.
    let report = json(&loadtest(&["-n", "3", "-c", "1", "-k", "--json", &url]));
    assert_eq!(report["responses"], 3, "{report}");
}

#[test]
fn open_loop_runs_the_schedule() {
    let url = start_server(16);
    let report = json(&loadtest(&[
        "--rate", "500", "-n", "25", "-c", "4", "--json", &url,
    ]));
    assert_eq!(report["mode"], "open");
    assert_eq!(report["rate"], 500.0);
    assert_eq!(report["responses"], 25);
}

#[test]
fn text_report_by_default() {
    let url = start_server(16);
    let output = loadtest(&["-n", "10", "-c", "2", &url]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for section in [
        "Summary:",
        "Requests/sec:",
        "Latency:",
        "p99.9",
        "Status codes:",
        "[200] 10",
        "Backends",
    ] {
        assert!(text.contains(section), "missing {section:?} in\n{text}");
    }
}

#[test]
fn remote_target_is_a_usage_error() {
    // Refused before any socket is opened: no packet goes to 10.0.0.1.
    let output = loadtest(&["-n", "1", "http://10.0.0.1:8080/"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--allow-remote"));
}

#[test]
fn unreachable_target_is_a_failure() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let output = loadtest(&[
        "-n",
        "1",
        "--timeout",
        "2s",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not reachable"));
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    assert_eq!(loadtest(&[]).status.code(), Some(2));
    assert_eq!(
        loadtest(&["-z", "soon", "http://127.0.0.1/"]).status.code(),
        Some(2)
    );
    let help = loadtest(&["compare", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("cargo build --release --workspace"));
}

#[test]
fn request_count_is_exact_over_many_connections_and_threads() {
    let (url, served) = start_counting_server(64);
    let report = json(&loadtest(&[
        "-n",
        "203",
        "-c",
        "7",
        "--threads",
        "2",
        "--json",
        &url,
    ]));
    assert_eq!(report["responses"], 203);
    assert_eq!(report["errors_total"], 0);
    assert_eq!(report["body_bytes"], 406);
    // The reachability check sends no request, so the server saw exactly -n requests.
    assert_eq!(served.load(Ordering::Relaxed), 203);
    let connections = report["connections"].as_u64().expect("a count");
    assert!((1..=7).contains(&connections), "{connections}");
}

#[test]
fn close_delimited_and_chunked_responses_in_pieces() {
    fn respond(n: usize) -> Option<(&'static [u8], bool)> {
        match n {
            0 => Some((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n", false)),
            // No length: the body runs until the server closes, so the client reconnects.
            1 => Some((b"HTTP/1.1 200 OK\r\nX-Backend-Server: b9\r\n\r\nuntil close", true)),
            _ => None,
        }
    }
    let url = start_scripted_server(64, respond);
    let report = json(&loadtest(&["-n", "10", "-c", "2", "--json", &url]));
    assert_eq!(report["responses"], 10, "{report}");
    assert_eq!(report["errors_total"], 0, "{report}");
    // Each connection answers a chunked response (5 body bytes), then one until the close
    // (11 bytes, named b9). How the two connections share the ten requests varies: the last
    // one of each may be cut after its chunked response when the count runs out.
    let until_close = report["backends"]["b9"].as_u64().expect("a count");
    assert!((4..=5).contains(&until_close), "{report}");
    assert_eq!(report["connections"], 10 - until_close, "{report}");
    assert_eq!(
        report["body_bytes"],
        5 * (10 - until_close) + 11 * until_close,
        "{report}"
    );
}

#[test]
fn a_server_closing_idle_keepalive_connections_costs_no_error() {
    // Two keep-alive responses, then the server closes without saying so: the third
    // request on the connection finds it closed and is retried once on a new one.
    fn respond(n: usize) -> Option<(&'static [u8], bool)> {
        (n < 2).then_some((b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false))
    }
    // The event loop, and the thread-per-connection driver (open loop) for comparison.
    for extra in [&[][..], &["--rate", "100000"][..]] {
        let url = start_scripted_server(256, respond);
        let args = [
            &["-n", "30", "-c", "3", "--json"][..],
            extra,
            &[url.as_str()],
        ]
        .concat();
        let report = json(&loadtest(&args));
        assert_eq!(report["responses"], 30, "{extra:?}: {report}");
        assert_eq!(report["errors_total"], 0, "{extra:?}: {report}");
        let connections = report["connections"].as_u64().expect("a count");
        assert!(connections >= 15, "{extra:?}: {connections}");
    }
}

#[test]
fn requests_past_the_timeout_are_counted_as_timeouts() {
    // Connections complete in the backlog, but nothing ever answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let url = format!(
        "http://127.0.0.1:{}/",
        listener.local_addr().expect("addr").port()
    );
    let report = json(&loadtest(&[
        "-n",
        "4",
        "-c",
        "2",
        "--timeout",
        "150ms",
        "--json",
        &url,
    ]));
    assert_eq!(report["responses"], 0);
    assert_eq!(report["errors"]["timeout"], 4, "{report}");
    assert_eq!(report["errors_total"], 4);
    drop(listener);
}

#[test]
fn duration_ends_the_run() {
    let url = start_server(64);
    let report = json(&loadtest(&["-z", "300ms", "-c", "4", "--json", &url]));
    let responses = report["responses"].as_u64().expect("a count");
    assert!(responses > 0, "{report}");
    assert_eq!(report["errors_total"], 0, "{report}");
    assert_eq!(report["status_codes"]["200"], responses);
}

#[test]
fn ctrl_c_stops_the_event_loops_and_reports() {
    let (url, served) = start_counting_server(64);
    let child = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["-z", "30s", "-c", "4", "--json", &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start loadtest");
    // Wait (bounded) until the load is flowing, then interrupt as Ctrl-C would.
    let deadline = std::time::Instant::now() + TIMEOUT;
    while served.load(Ordering::Relaxed) < 20 && std::time::Instant::now() < deadline {
        thread::yield_now();
    }
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    // SAFETY: signals our own child process, which is still running (not yet waited for).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let started = std::time::Instant::now();
    let report = json(&child.wait_with_output().expect("loadtest exits"));
    assert!(started.elapsed() < TIMEOUT, "Ctrl-C did not stop the run");
    assert_eq!(report["interrupted"], true, "{report}");
    assert!(
        report["responses"].as_u64().expect("a count") >= 20,
        "{report}"
    );
    assert_eq!(report["errors_total"], 0, "{report}");
}
