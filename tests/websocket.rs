//! WebSocket and other HTTP/1.1 upgrades through the relay, over real sockets: a real
//! tungstenite client through stage 4's pool (in this process) to the demo backend's `/ws`
//! echo, and raw bytes against hand-written backends for what a well-behaved server never
//! shows (bytes right behind the 101, silence, a 200 to an upgrade, the headers that arrive).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use revproxy::http::RequestHead;
use revproxy::relay::{Phases, Relay, RelayConfig, Summary, UpgradeConfig};
use revproxy::server::pool::{Pool, PoolConfig};
use revproxy::server::threads::ThreadPerConnection;
use revproxy::server::{self, ConnectionHandler};
use revproxy::upstream::{Connector, SingleUpstream, UpstreamTimeouts};
use support::{backend, connect, raw_backend, read_request_head, TIMEOUT};
use tungstenite::{Message, WebSocket};

/// Phases that report every exchange's status and body bytes, and may allow upgrades for
/// targets under a prefix (the per-route decision of stage 9).
struct Recorder {
    logged: Mutex<Sender<(u16, u64)>>,
    allow_under: Option<&'static str>,
}

impl Phases for Recorder {
    type Ctx = ();

    fn upgrade(&self, _: &mut (), head: &RequestHead, _protocols: &str) -> Option<bool> {
        self.allow_under
            .map(|prefix| head.target.starts_with(prefix))
    }

    fn logging(&self, _: &mut (), summary: &Summary<'_>) {
        let _ = self
            .logged
            .lock()
            .unwrap()
            .send((summary.status, summary.body_bytes));
    }
}

struct Proxy {
    addr: SocketAddr,
    relay: Arc<Relay<Recorder>>,
    logged: Receiver<(u16, u64)>,
}

fn upgrades(allow: bool) -> UpgradeConfig {
    UpgradeConfig {
        allow,
        ..UpgradeConfig::default()
    }
}

/// A relay to `upstream` behind a stage 4 pool of `workers` (0: stage 3's thread per
/// connection instead), on a free port.
fn proxy_with(
    upstream: SocketAddr,
    upgrades: UpgradeConfig,
    workers: usize,
    allow_under: Option<&'static str>,
) -> Proxy {
    let (logged_tx, logged) = mpsc::channel();
    let config = RelayConfig {
        upgrades,
        ..RelayConfig::default()
    };
    let connector = Connector::new(UpstreamTimeouts {
        connect: TIMEOUT,
        read: TIMEOUT,
        write: TIMEOUT,
    });
    let phases = Recorder {
        logged: Mutex::new(logged_tx),
        allow_under,
    };
    let relay = Arc::new(Relay::with_phases(
        config,
        Arc::new(SingleUpstream(upstream)),
        connector,
        phases,
    ));
    let handler: Arc<dyn ConnectionHandler> = relay.clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    if workers == 0 {
        // Stage 3's model: a thread per connection, which carries its tunnel too.
        let model = ThreadPerConnection::new(8);
        thread::spawn(move || server::serve(&listener, &model, handler));
    } else {
        let pool = Pool::new(&PoolConfig {
            workers,
            ..PoolConfig::default()
        })
        .unwrap();
        thread::spawn(move || server::serve(&listener, &pool, handler));
    }
    Proxy {
        addr,
        relay,
        logged,
    }
}

fn proxy(upstream: SocketAddr, allow: bool) -> Proxy {
    proxy_with(upstream, upgrades(allow), 4, None)
}

fn open_websocket(proxy: SocketAddr, path: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect_timeout(&proxy, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    let (ws, response) = tungstenite::client(format!("ws://{proxy}{path}"), stream)
        .expect("the WebSocket handshake through the proxy");
    assert_eq!(response.status(), 101);
    assert!(
        response.headers().contains_key("sec-websocket-accept"),
        "{response:?}"
    );
    ws
}

/// The next data message, skipping nothing: a test that expects a pong asks for it itself.
fn read_message(ws: &mut WebSocket<TcpStream>) -> Message {
    ws.read().expect("a message from the echo")
}

fn assert_echoes(ws: &mut WebSocket<TcpStream>) {
    ws.send(Message::text("hello through the proxy")).unwrap();
    assert_eq!(
        read_message(ws),
        Message::text("hello through the proxy"),
        "text"
    );
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    ws.send(Message::binary(binary.clone())).unwrap();
    assert_eq!(read_message(ws), Message::binary(binary), "binary");
}

/// The summary the logging phase got for the tunnel (sent when it ends).
fn tunnel_summary(proxy: &Proxy) -> (u16, u64) {
    // Bounded: every exchange logs once; the ordinary ones before the tunnel come first.
    for _ in 0..16 {
        let logged = proxy.logged.recv_timeout(TIMEOUT).expect("a summary");
        if logged.0 == 101 {
            return logged;
        }
    }
    panic!("no summary with status 101");
}

#[test]
fn a_websocket_echo_through_the_pool_with_ping_and_close() {
    let origin = backend("ws1");
    let proxy = proxy(origin.addr(), true);
    let mut ws = open_websocket(proxy.addr, "/ws");
    assert_echoes(&mut ws);

    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    assert_eq!(
        read_message(&mut ws),
        Message::Pong(b"are you there".to_vec().into())
    );

    ws.close(None).unwrap();
    // Bounded: the close reply comes after at most what was in flight.
    let mut closed = false;
    for _ in 0..8 {
        match ws.read() {
            Ok(Message::Close(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => {
                closed = true;
                break;
            }
            Err(err) => panic!("close handshake failed: {err}"),
        }
    }
    assert!(closed, "the close handshake completed");
    // The origin closes its connection after the handshake; the proxy passes that on.
    let mut rest = Vec::new();
    let end = ws.get_mut().read_to_end(&mut rest);
    assert!(end.is_ok(), "the client connection ends: {end:?}");
    // The client closes its side in turn, which ends the tunnel's other direction.
    drop(ws);

    let (status, to_client) = tunnel_summary(&proxy);
    assert_eq!(status, 101);
    assert!(
        to_client > 70_000,
        "bytes to the client logged: {to_client}"
    );
    assert_eq!(proxy.relay.open_tunnels(), 0, "its slot was given back");
}

#[test]
fn a_tunnel_does_not_hold_a_worker_of_a_one_worker_pool() {
    let origin = backend("ws2");
    let proxy = proxy_with(origin.addr(), upgrades(true), 1, None);
    let mut ws = open_websocket(proxy.addr, "/ws");
    assert_echoes(&mut ws);
    // The only worker is free: ordinary requests are served while the tunnel stays open.
    for _ in 0..3 {
        let mut c = connect(proxy.addr);
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let res = c.read_response("GET");
        assert_eq!(res.status, 200);
        assert_eq!(res.text(), "hello from ws2\n");
    }
    assert_eq!(proxy.relay.open_tunnels(), 1);
    assert_echoes(&mut ws);
}

#[test]
fn a_websocket_echo_through_a_thread_per_connection() {
    let origin = backend("ws4");
    let proxy = proxy_with(origin.addr(), upgrades(true), 0, None);
    let mut ws = open_websocket(proxy.addr, "/ws");
    assert_echoes(&mut ws);
    assert_eq!(proxy.relay.open_tunnels(), 1);
    drop(ws);
    // The client's close ends the tunnel (the origin sees the half-close and closes too).
    assert_eq!(tunnel_summary(&proxy).0, 101);
    assert_eq!(proxy.relay.open_tunnels(), 0);
}

#[test]
fn a_phase_can_allow_upgrades_where_the_relay_does_not() {
    let origin = backend("ws3");
    let proxy = proxy_with(origin.addr(), upgrades(false), 2, Some("/ws"));
    let mut ws = open_websocket(proxy.addr, "/ws");
    assert_echoes(&mut ws);
}

/// A request head sent with the upgrade headers, and a marker header other hop-by-hop
/// headers travel with.
const UPGRADE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, X-Hop\r\n\
    X-Hop: secret\r\nKeep-Alive: timeout=5\r\nUpgrade: websocket\r\n\r\n";

/// A backend that answers every upgrade request with a 101 and, in the same write, `first`;
/// then echoes what arrives until the proxy half-closes, and closes. Heads go to `heads`.
fn switching_backend(first: &'static [u8], heads: Sender<String>) -> SocketAddr {
    let heads = Arc::new(Mutex::new(heads));
    raw_backend(move |mut stream| {
        let head = String::from_utf8_lossy(&read_request_head(&mut stream)).into_owned();
        let _ = heads.lock().unwrap().send(head);
        let mut out = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nX-Origin: yes\r\n\r\n"
            .to_vec();
        out.extend_from_slice(first);
        stream.write_all(&out).unwrap();
        let mut buf = [0u8; 4096];
        // Bounded by the connection: it ends at the proxy's half-close (or the timeout).
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// Reads a response head (through its empty line) byte by byte, leaving what follows.
fn read_head(stream: &mut TcpStream) -> String {
    String::from_utf8(read_request_head(stream)).unwrap()
}

fn read_exactly(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    stream.read_exact(&mut out).expect("the tunnelled bytes");
    out
}

#[test]
fn bytes_behind_both_heads_go_first_and_a_half_close_passes_through() {
    let (heads_tx, heads) = mpsc::channel();
    let origin = switching_backend(b"from-origin;", heads_tx);
    let proxy = proxy(origin, true);
    let mut client = connect(proxy.addr).stream;
    // The first bytes of the new protocol in the same packet as the request.
    let mut packet = UPGRADE.to_vec();
    packet.extend_from_slice(b"early;");
    client.write_all(&packet).unwrap();

    let head = read_head(&mut client);
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("Connection: upgrade\r\n"), "{head}");
    assert!(head.contains("Upgrade: websocket\r\n"), "{head}");
    assert!(head.contains("X-Origin: yes\r\n"), "{head}");
    assert!(!head.contains("Content-Length"), "{head}");

    let sent = heads.recv_timeout(TIMEOUT).unwrap();
    assert!(sent.contains("Connection: upgrade\r\n"), "{sent}");
    assert!(sent.contains("Upgrade: websocket\r\n"), "{sent}");
    for gone in ["X-Hop", "Keep-Alive"] {
        assert!(!sent.contains(gone), "{gone} still stripped:\n{sent}");
    }

    // The origin's bytes behind its 101, then the echo of the client's early bytes.
    assert_eq!(read_exactly(&mut client, 12), b"from-origin;");
    assert_eq!(read_exactly(&mut client, 6), b"early;");
    // Fragments arrive in order.
    for piece in [&b"a"[..], b"bc", b"def"] {
        client.write_all(piece).unwrap();
        assert_eq!(read_exactly(&mut client, piece.len()), piece);
    }
    // The client's half-close reaches the origin, which then closes: the client sees the end.
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("the tunnel ends");
    assert!(rest.is_empty(), "{rest:?}");
    let (status, to_client) = tunnel_summary(&proxy);
    assert_eq!((status, to_client), (101, 12 + 6 + 6));
}

#[test]
fn a_silent_tunnel_is_closed_after_the_idle_timeout() {
    let (heads_tx, _heads) = mpsc::channel();
    let origin = switching_backend(b"", heads_tx);
    let config = UpgradeConfig {
        allow: true,
        idle_timeout: Duration::from_millis(300),
        ..UpgradeConfig::default()
    };
    let proxy = proxy_with(origin, config, 2, None);
    let mut c = connect(proxy.addr);
    // In pieces: the pool parks the connection until the head is whole, then switches it.
    c.send_in_fragments(UPGRADE, 9);
    let res = c.read_response("GET");
    assert_eq!(res.status, 101);
    // Nobody says a word: the proxy closes (well before the client's own 10 s timeout).
    assert_eq!(c.read_to_close(), Some(Vec::new()));
    assert_eq!(tunnel_summary(&proxy), (101, 0));
    assert_eq!(proxy.relay.open_tunnels(), 0);
}

/// A backend that answers plain requests with `200 OK` and a body naming the connection's
/// number and the request's position on it, and upgrade requests with a 101 it then holds
/// until the proxy closes. Every head goes to `heads`.
fn mixed_backend(heads: Sender<String>) -> SocketAddr {
    let heads = Arc::new(Mutex::new(heads));
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    raw_backend(move |mut stream| {
        let id = connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // Bounded: a connection carries a handful of requests in these tests.
        for nth in 0..16 {
            let head = String::from_utf8_lossy(&read_request_head(&mut stream)).into_owned();
            if head.is_empty() {
                return;
            }
            let _ = heads.lock().unwrap().send(head.clone());
            if head.contains("Content-Length: 5") {
                let mut body = [0u8; 5];
                stream.read_exact(&mut body).unwrap();
            }
            if head.to_ascii_lowercase().contains("upgrade: websocket") && head.contains("/hold") {
                stream
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
                    .unwrap();
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink);
                return;
            }
            let body = format!("conn {id} request {nth}");
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    })
}

#[test]
fn past_max_tunnels_an_upgrade_gets_503_before_anything_goes_upstream() {
    let (heads_tx, heads) = mpsc::channel();
    let origin = mixed_backend(heads_tx);
    let config = UpgradeConfig {
        allow: true,
        max_tunnels: 1,
        ..UpgradeConfig::default()
    };
    let proxy = proxy_with(origin, config, 2, None);
    let hold =
        b"GET /hold HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    let mut first = connect(proxy.addr);
    first.send(hold);
    assert_eq!(first.read_response("GET").status, 101);
    assert!(heads
        .recv_timeout(TIMEOUT)
        .unwrap()
        .starts_with("GET /hold"));

    let mut second = connect(proxy.addr);
    second.send(hold);
    let res = second.read_response("GET");
    assert_eq!(res.status, 503);
    assert_eq!(res.header("retry-after"), Some("1"));
    // The connection lives on, and the next head the backend sees is this plain request:
    // the refused upgrade never went upstream.
    second.send(b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(second.read_response("GET").status, 200);
    let next = heads.recv_timeout(TIMEOUT).unwrap();
    assert!(next.starts_with("GET /plain "), "{next}");
    assert_eq!(proxy.relay.open_tunnels(), 1);
}

/// Sends `request` through a proxy to the mixed backend; returns the head the backend got and
/// the response, then checks that the connection carries a second request.
fn plain_exchange(allow: bool, request: &[u8]) -> (String, support::Response) {
    let (heads_tx, heads) = mpsc::channel();
    let origin = mixed_backend(heads_tx);
    let proxy = proxy(origin, allow);
    let mut c = connect(proxy.addr);
    c.send_in_fragments(request, 7);
    let res = c.read_response("GET");
    let head = heads.recv_timeout(TIMEOUT).unwrap();
    c.send(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n");
    let again = c.read_response("GET");
    assert_eq!(again.status, 200, "the client connection is reusable");
    // The same upstream connection carried both: it went back to the keep-alive cache.
    assert_eq!(again.text(), "conn 0 request 1");
    assert_eq!(proxy.relay.open_tunnels(), 0);
    (head, res)
}

fn assert_no_upgrade_headers(head: &str) {
    let lower = head.to_ascii_lowercase();
    for gone in ["upgrade:", "connection:", "http2-settings"] {
        assert!(!lower.contains(gone), "{gone} must be stripped:\n{head}");
    }
}

#[test]
fn an_origin_that_answers_200_to_an_upgrade_gives_a_normal_response() {
    let (head, res) = plain_exchange(true, UPGRADE);
    assert!(head.contains("Upgrade: websocket\r\n"), "offered: {head}");
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "conn 0 request 0");
    assert!(res.header("upgrade").is_none());
}

#[test]
fn upgrades_not_allowed_are_forwarded_as_plain_requests() {
    let (head, res) = plain_exchange(false, UPGRADE);
    assert_no_upgrade_headers(&head);
    assert_eq!(res.status, 200);
}

#[test]
fn h2c_upgrades_are_forwarded_as_plain_http11_requests() {
    let h2c = b"GET /h2 HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n\
        Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let (head, res) = plain_exchange(true, h2c);
    assert_no_upgrade_headers(&head);
    assert!(head.starts_with("GET /h2 HTTP/1.1\r\n"), "{head}");
    assert_eq!(res.status, 200);
}

#[test]
fn an_upgrade_request_with_a_body_goes_on_as_a_plain_request() {
    let post = b"POST /form HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
        Content-Length: 5\r\n\r\nhello";
    let (head, res) = plain_exchange(true, post);
    assert_no_upgrade_headers(&head);
    assert!(head.contains("Content-Length: 5\r\n"), "{head}");
    assert_eq!(res.status, 200);
}

#[test]
fn an_unrequested_101_is_a_bad_gateway() {
    // An origin that switches protocols on a plain request (the proxy offered no upgrade).
    let origin = raw_backend(|mut stream| {
        read_request_head(&mut stream);
        let _ = stream.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n");
    });
    let proxy = proxy(origin, true);
    let mut c = connect(proxy.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 502);
}

#[test]
fn a_101_that_names_no_protocol_is_a_bad_gateway() {
    // RFC 9110 section 15.2.2: a 101 must say what it switches to.
    let origin = raw_backend(|mut stream| {
        read_request_head(&mut stream);
        let _ = stream.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    });
    let proxy = proxy(origin, true);
    let mut c = connect(proxy.addr);
    c.send(UPGRADE);
    assert_eq!(c.read_response("GET").status, 502);
    assert_eq!(proxy.relay.open_tunnels(), 0);
}

const STAGE6: &str = env!("CARGO_BIN_EXE_stage6");

/// Starts stage 6 with one upstream and `extra` appended to its configuration file.
fn stage6(name: &str, upstream: SocketAddr, extra: &str) -> support::Proxy {
    let path = std::env::temp_dir().join(format!(
        "revproxy-{}-websocket-{name}.toml",
        std::process::id()
    ));
    let text = format!("[upstreams.app]\nservers = [\"{upstream}\"]\n{extra}");
    std::fs::write(&path, text).expect("write the config");
    support::Proxy::start(STAGE6, &[], &["--config", path.to_str().unwrap()])
}

#[test]
fn stage6_passes_websocket_when_the_file_enables_upgrades() {
    let origin = backend("ws6");
    let proxy = stage6(
        "on",
        origin.addr(),
        "[upgrades]\nenabled = true\nmax_tunnels = 4\n",
    );
    let mut ws = open_websocket(proxy.addr, "/ws");
    assert_echoes(&mut ws);
    ws.send(Message::Ping(b"p".to_vec().into())).unwrap();
    assert_eq!(read_message(&mut ws), Message::Pong(b"p".to_vec().into()));
}

#[test]
fn stage6_strips_the_upgrade_by_default() {
    let origin = backend("ws7");
    let proxy = stage6("off", origin.addr(), "");
    let stream = TcpStream::connect_timeout(&proxy.addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    match tungstenite::client(format!("ws://{}/ws", proxy.addr), stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            // The origin saw a plain GET and asked for an upgrade it never got.
            assert_eq!(response.status(), 426);
        }
        Err(err) => panic!("unexpected failure: {err}"),
        Ok(_) => panic!("the upgrade went through with upgrades off"),
    }
}

#[test]
fn a_bad_upgrades_section_is_a_config_error() {
    let path = std::env::temp_dir().join(format!(
        "revproxy-{}-websocket-bad.toml",
        std::process::id()
    ));
    std::fs::write(
        &path,
        "[upstreams.app]\nservers = [\"127.0.0.1:1\"]\n[upgrades]\nmax_tunnels = 0\n",
    )
    .unwrap();
    let out = std::process::Command::new(STAGE6)
        .args(["-t", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("max_tunnels"), "{stderr}");
}

const STAGE9: &str = env!("CARGO_BIN_EXE_stage9");

fn stage9(name: &str, text: &str) -> support::Proxy {
    let path = std::env::temp_dir().join(format!(
        "revproxy-{}-websocket9-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).expect("write the config");
    support::Proxy::start(STAGE9, &[], &["--config", path.to_str().unwrap()])
}

#[test]
fn stage9_routes_decide_over_the_upgrades_section() {
    let origin = backend("ws9");
    // Upgrades on for the file, off for one route; on for another route of a file whose
    // [upgrades] would keep them off.
    let text = format!(
        "[upgrades]\nenabled = true\n[upstreams.chat]\nservers = [\"{}\"]\n\
         [[routes]]\npath = \"/closed\"\nupstream = \"chat\"\nstrip_prefix = true\nwebsocket = false\n\
         [[routes]]\npath = \"/\"\nupstream = \"chat\"\n",
        origin.addr()
    );
    let proxy = stage9("routes", &text);
    let mut ws = open_websocket(proxy.addr, "/ws");
    assert_echoes(&mut ws);
    let stream = TcpStream::connect_timeout(&proxy.addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    match tungstenite::client(format!("ws://{}/closed/ws", proxy.addr), stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            assert_eq!(response.status(), 426, "the route stripped the upgrade");
        }
        Err(err) => panic!("unexpected failure: {err}"),
        Ok(_) => panic!("the route's websocket = false was ignored"),
    }

    let text = format!(
        "[upstreams.chat]\nservers = [\"{}\"]\n\
         [[routes]]\npath = \"/ws\"\nupstream = \"chat\"\nwebsocket = true\n",
        origin.addr()
    );
    let proxy = stage9("route-on", &text);
    let mut ws = open_websocket(proxy.addr, "/ws");
    assert_echoes(&mut ws);
}

#[test]
fn stage9_refuses_websocket_on_a_route_that_answers_itself() {
    let path = std::env::temp_dir().join(format!(
        "revproxy-{}-websocket9-bad.toml",
        std::process::id()
    ));
    std::fs::write(
        &path,
        "[upstreams.app]\nservers = [\"127.0.0.1:1\"]\n[[routes]]\npath = \"/x\"\n\
         return = { status = 200 }\nwebsocket = true\n",
    )
    .unwrap();
    let out = std::process::Command::new(STAGE9)
        .args(["-t", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":6:13: websocket applies only to a route with upstream"),
        "{stderr}"
    );
}
