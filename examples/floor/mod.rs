//! The least a blocking, thread-per-connection relay can cost per request on this machine:
//! the floor under every stage of the course, measured beside nginx in `chapters/comparing.md`.
//! Two examples run it: `blocking_floor`, with no HTTP at all, and `parsing_floor`, which also
//! parses each request head and each response head with httparse, as any HTTP proxy must, and
//! does nothing with them.
//!
//!     cargo build --release --example blocking_floor --example parsing_floor
//!     target/release/examples/blocking_floor --listen 127.0.0.1:18082 --backend 127.0.0.1:19001
//!
//! It takes stage 5's flags (`--listen`, `--backend` repeated; `--log-level` is ignored), so
//! the bench kit can run it in stage 5's place. With `--tls CERT KEY` (PEM files) it speaks
//! TLS to its clients (rustls, as stage 9), for the floor under stage 9's TLS figures
//! (`FLOOR=1 chapters/scripts/edge-vs-nginx.sh`):
//!
//!     BIN=target/release/examples STAGE=blocking_floor TESTS="/@16 /@64" \
//!         chapters/scripts/bench-kit.sh
//!
//! Not a proxy: no HTTP beyond the parsing floor's parse. Each client connection gets a thread
//! and one kept connection to a backend (round robin), and each turn is one `read` from the
//! client, one `write` to the backend, one `read` of its answer, one `write` back. That is only
//! right for small requests and answers that each arrive in one piece, as a benchmark's do
//! (`wrk` asking for a 13-byte page); it is the four system calls and two waits that no
//! blocking relay can do without.
//! Whatever a stage costs above this figure is its own work, and what this figure costs above
//! nginx's is the price of the model. The parsing floor's cost above the other's is what two
//! heads cost to parse at the least.

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// What the command line asked for.
struct Options {
    listen: SocketAddr,
    backends: Vec<SocketAddr>,
    /// `--tls CERT KEY`: the certificate chain and key files.
    tls: Option<(String, String)>,
}

/// Runs the floor named `name` (for its messages) until it is killed. With `parse_heads`,
/// each request head and response head is parsed (httparse, up to `FIELDS` fields) and the
/// bytes go through unchanged: the least an HTTP proxy reads of a request.
pub fn run(name: &str, parse_heads: bool) {
    let Options {
        listen,
        backends,
        tls,
    } = match parse(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(why) => {
            eprintln!("{name}: {why}");
            eprintln!(
                "usage: {name} --listen ADDR --backend ADDR [--backend ADDR ...] \
                 [--tls CERT KEY]"
            );
            std::process::exit(2);
        }
    };
    let tls = tls.map(|(cert, key)| {
        tls_config(&cert, &key).unwrap_or_else(|err| {
            eprintln!("{name}: {err}");
            std::process::exit(1);
        })
    });
    let listener = TcpListener::bind(listen).unwrap_or_else(|err| {
        eprintln!("{name}: cannot listen on {listen}: {err}");
        std::process::exit(1);
    });
    eprintln!("relaying {listen} to {backends:?}, a thread per connection");
    let next = Arc::new(AtomicUsize::new(0));
    for client in listener.incoming().flatten() {
        let backend = backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()];
        let tls = tls.clone();
        thread::spawn(move || {
            let ended = match tls {
                None => relay(client, backend, parse_heads),
                Some(config) => tls_relay(client, config, backend, parse_heads),
            };
            if let Err(err) = ended {
                eprintln!("connection ended: {err}");
            }
        });
    }
}

/// The address to listen on and the backends, from stage 5's flags, and `--tls`.
fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut listen = None;
    let mut backends = Vec::new();
    let mut tls = None;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = Some(value()?),
            "--backend" => backends.push(value()?),
            "--log-level" => drop(value()?),
            "--tls" => tls = Some((value()?, value()?)),
            "-h" | "--help" => return Err("a blocking relay, the floor of the model".to_owned()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let addr = |text: &str| {
        text.parse::<SocketAddr>()
            .map_err(|_| format!("{text} is not an IP:PORT"))
    };
    let listen = addr(&listen.ok_or("--listen is missing")?)?;
    if backends.is_empty() {
        return Err("no --backend".to_owned());
    }
    let backends = backends.iter().map(|b| addr(b)).collect::<Result<_, _>>()?;
    Ok(Options {
        listen,
        backends,
        tls,
    })
}

/// A server configuration as stage 9's (ring, TLS 1.2 and 1.3, ALPN http/1.1), with one
/// certificate and no session tickets: a keep-alive benchmark does one handshake per
/// connection.
fn tls_config(cert: &str, key: &str) -> Result<Arc<ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{key}: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// [`relay`] with TLS to the client: the same four steps, the client's two through rustls.
fn tls_relay(
    client: TcpStream,
    config: Arc<ServerConfig>,
    backend: SocketAddr,
    parse_heads: bool,
) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let session = ServerConnection::new(config).map_err(std::io::Error::other)?;
    turns(StreamOwned::new(session, client), backend, parse_heads)
}

/// Request, answer, request, answer, over plain TCP.
fn relay(client: TcpStream, backend: SocketAddr, parse_heads: bool) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    turns(client, backend, parse_heads)
}

/// Request, answer, request, answer, until either side closes (or idles for 10 s), or an
/// HTTP/1.0 request was answered.
fn turns(
    mut client: impl Read + Write,
    backend: SocketAddr,
    parse_heads: bool,
) -> std::io::Result<()> {
    let mut upstream = TcpStream::connect(backend)?;
    upstream.set_nodelay(true)?;
    upstream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = client.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        // The one piece of HTTP here: after an HTTP/1.0 request (ab's, without keep-alive)
        // the client waits for the connection to close.
        let last = buf[..n].windows(10).any(|w| w == b" HTTP/1.0\r");
        if parse_heads {
            parse_request(&buf[..n])?;
        }
        upstream.write_all(&buf[..n])?;
        let n = upstream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if parse_heads {
            parse_response(&buf[..n])?;
        }
        client.write_all(&buf[..n])?;
        if last {
            return Ok(());
        }
    }
}

/// Field slots for a parse, uninitialised as the stages' are (`http::head`): as many as they
/// keep on the stack.
const FIELDS: usize = 128;

/// Parses the request head at the start of `bytes`; an error if it is not one, whole.
fn parse_request(bytes: &[u8]) -> std::io::Result<()> {
    let mut fields = [const { MaybeUninit::uninit() }; FIELDS];
    let mut request = httparse::Request::new(&mut []);
    whole(request.parse_with_uninit_headers(bytes, &mut fields))
}

/// Parses the response head at the start of `bytes`; an error if it is not one, whole.
fn parse_response(bytes: &[u8]) -> std::io::Result<()> {
    let mut fields = [const { MaybeUninit::uninit() }; FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let parser = httparse::ParserConfig::default();
    whole(parser.parse_response_with_uninit_headers(&mut response, bytes, &mut fields))
}

/// A benchmark's heads arrive whole, in one read: anything else ends the connection.
fn whole(parsed: httparse::Result<usize>) -> std::io::Result<()> {
    match parsed {
        Ok(httparse::Status::Complete(_)) => Ok(()),
        Ok(httparse::Status::Partial) => Err(std::io::Error::other("a head in more than one read")),
        Err(err) => Err(std::io::Error::other(format!("not a head: {err}"))),
    }
}
