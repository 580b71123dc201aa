//! The grader's origin servers. They record the exact bytes of every request they receive (so
//! a check fails when a smuggled or malformed request reaches an origin, whatever the client
//! was told) and answer as the request's target asks: `/grade/TOKEN/NAME?key=value&...`.
//!
//! The answer keys: `n` (body length, default: a short line naming the origin), `frame`
//! (`cl`, `chunked` or `close`), `status`, `delay_ms` (before the head), `trickle` (the head
//! one byte per write), `hang` (never answer), `hold` (stream the body but keep its last 64 KiB
//! until the client says it has seen the first bytes), `drop` (read the request, close without
//! an answer), `cc` (Cache-Control), `vary`, `etag` (answers 304 to a matching
//! If-None-Match), `echo` (the named request header ends the body), `ctype` (Content-Type),
//! `hop` (a Connection-named field in the answer), `ws` (a WebSocket echo of one frame). `GET /health` gets 200.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

mod answer;
mod request;

use answer::answer;
use request::{read_request, Reader};

/// Longest an origin holds back an answer (`hang`, `hold`): a bound, so nothing waits forever.
const HOLD_LIMIT: Duration = Duration::from_secs(15);
/// How long an origin keeps an idle keep-alive connection open for the next request: Apache's
/// default KeepAliveTimeout. A forwarder that waits for the origin to close (the C course's
/// first programs) is held this long per request, not the whole `HOLD_LIMIT`.
const IDLE_LIMIT: Duration = Duration::from_secs(5);
/// Bytes of each request body kept in its record (the rest is counted).
const KEEP_BODY: usize = 1024 * 1024;
/// Bytes of the body that `hold` keeps back until the client has seen the first bytes.
const HELD_TAIL: u64 = 64 * 1024;

/// One request as an origin received it.
#[derive(Debug, Clone)]
pub struct Record {
    /// Which origin (0, 1, 2).
    pub origin: usize,
    /// The request target, `""` when the head could not be parsed.
    pub target: String,
    pub method: String,
    /// The head exactly as received, request line and CRLFs included.
    pub head: String,
    /// The body, decoded from its framing (at most `KEEP_BODY` bytes kept).
    pub body: Vec<u8>,
    pub body_len: u64,
    /// What was wrong with the request, if the origin could not read it.
    pub error: Option<String>,
}

impl Record {
    /// The first value of header `name` in the received head.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Tells `hold` answers that the client has seen their first bytes.
#[derive(Default)]
struct Signals {
    released: Mutex<HashSet<String>>,
    changed: Condvar,
}

impl Signals {
    fn release(&self, token: &str) {
        lock(&self.released).insert(token.to_string());
        self.changed.notify_all();
    }

    /// True when `token` was released within `limit`.
    fn wait(&self, token: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut set = lock(&self.released);
        loop {
            if set.contains(token) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            set = self
                .changed
                .wait_timeout(set, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

/// What every origin shares: the records, the signals, the open connections.
#[derive(Default)]
struct Shared {
    records: Mutex<Vec<Record>>,
    signals: Signals,
    /// Open connections, so stopping an origin or releasing hangs closes them.
    conns: Mutex<HashMap<u64, (usize, TcpStream)>>,
    /// Connections held by `hang` (with their token), closed by `release_hangs`.
    hanging: Mutex<HashMap<u64, (String, TcpStream)>>,
    /// Tokens whose hangs were released: a proxy that retries one gets an answer at once.
    released_hangs: Mutex<HashSet<String>>,
    next_id: AtomicU64,
    /// `hold` answers whose tail went out without the client's signal.
    held_too_long: Mutex<HashSet<String>>,
}

/// One origin: an address and, while it runs, an accept thread.
struct Origin {
    index: usize,
    addr: SocketAddr,
    running: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

/// The grader's origins.
pub struct Origins {
    list: Mutex<Vec<Origin>>,
    shared: Arc<Shared>,
}

impl Origins {
    /// Starts `count` origins on `base_port`, `base_port + 1`... (0: ports the system picks).
    pub fn start(count: usize, base_port: u16) -> Result<Origins, String> {
        let shared = Arc::new(Shared::default());
        let mut list = Vec::new();
        for index in 0..count {
            let port = if base_port == 0 {
                0
            } else {
                base_port + index as u16
            };
            let listener = TcpListener::bind(("127.0.0.1", port))
                .map_err(|e| format!("cannot start origin {index} on 127.0.0.1:{port}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            let mut origin = Origin {
                index,
                addr,
                running: None,
            };
            origin.running = Some(spawn_accept(index, listener, shared.clone()));
            list.push(origin);
        }
        Ok(Origins {
            list: Mutex::new(list),
            shared,
        })
    }

    /// The origins' addresses, in order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        lock(&self.list).iter().map(|o| o.addr).collect()
    }

    /// Stops origin `index`: its port refuses connections and its open connections close.
    pub fn stop(&self, index: usize) {
        let mut list = lock(&self.list);
        let Some(origin) = list.get_mut(index) else {
            return;
        };
        if let Some((stop, handle)) = origin.running.take() {
            stop.store(true, Ordering::SeqCst);
            // Wakes the blocking accept so the thread sees the flag and drops the listener.
            let _ = TcpStream::connect_timeout(&origin.addr, Duration::from_secs(1));
            let _ = handle.join();
        }
        for (_, (owner, stream)) in lock(&self.shared.conns).iter() {
            if *owner == origin.index {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Starts origin `index` again on its address.
    pub fn restart(&self, index: usize) -> Result<(), String> {
        let mut list = lock(&self.list);
        let Some(origin) = list.get_mut(index) else {
            return Err(format!("no origin {index}"));
        };
        if origin.running.is_some() {
            return Ok(());
        }
        // The port was ours a moment ago; retried briefly in case the old socket lingers.
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(origin.addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!(
                        "cannot restart origin {index} on {}: {e}",
                        origin.addr
                    ))
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        };
        origin.running = Some(spawn_accept(index, listener, self.shared.clone()));
        Ok(())
    }

    /// Every request received so far whose target contains `token`.
    pub fn records(&self, token: &str) -> Vec<Record> {
        lock(&self.shared.records)
            .iter()
            .filter(|r| r.target.contains(token) || r.head.contains(token))
            .cloned()
            .collect()
    }

    /// Every request received so far that the origins could not read (malformed).
    pub fn malformed_count(&self) -> usize {
        lock(&self.shared.records)
            .iter()
            .filter(|r| r.error.is_some())
            .count()
    }

    /// Every request received so far (all tokens).
    pub fn record_count(&self) -> usize {
        lock(&self.shared.records).len()
    }

    /// Tells the `hold` answer of `token` that the client has seen its first bytes.
    pub fn release(&self, token: &str) {
        self.shared.signals.release(token);
    }

    /// True when the `hold` answer of `token` sent its tail without the client's signal.
    pub fn held_too_long(&self, token: &str) -> bool {
        lock(&self.shared.held_too_long).contains(token)
    }

    /// Closes every connection held by `hang` (the end of a check that used it).
    pub fn release_hangs(&self) {
        for (_, (token, stream)) in lock(&self.shared.hanging).drain() {
            lock(&self.shared.released_hangs).insert(token);
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Origins {
    fn drop(&mut self) {
        let count = lock(&self.list).len();
        for index in 0..count {
            self.stop(index);
        }
        self.release_hangs();
    }
}

/// Locks `mutex`, whatever a panicking thread left in it (the records stay readable).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn spawn_accept(
    index: usize,
    listener: TcpListener,
    shared: Arc<Shared>,
) -> (Arc<AtomicBool>, JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::spawn(move || {
        for stream in listener.incoming() {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else { continue };
            let shared = shared.clone();
            thread::spawn(move || serve(index, stream, &shared));
        }
    });
    (stop, handle)
}

/// Serves one connection: requests in turn until a close.
fn serve(index: usize, stream: TcpStream, shared: &Shared) {
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    if let Ok(clone) = stream.try_clone() {
        lock(&shared.conns).insert(id, (index, clone));
    }
    stream.set_read_timeout(Some(IDLE_LIMIT)).ok();
    stream.set_write_timeout(Some(HOLD_LIMIT)).ok();
    stream.set_nodelay(true).ok();
    let mut reader = Reader {
        stream: &stream,
        buf: Vec::new(),
    };
    // Bounded: a connection serves at most this many requests.
    for _ in 0..10_000 {
        match read_request(index, &mut reader) {
            Ok(None) => break,
            Ok(Some(record)) => {
                // Recorded before the answer: a check may wait for a request that is never
                // answered (`hang`) to reach the origin.
                lock(&shared.records).push(record.clone());
                let keep = answer(id, &stream, &mut reader, &record, shared);
                if !keep {
                    break;
                }
            }
            Err(record) => {
                // The body says what the origin could not read, so the client's failure
                // message shows it.
                let why = format!(
                    "grade origin: cannot read the request: {}\n",
                    record.error.as_deref().unwrap_or("")
                );
                lock(&shared.records).push(*record);
                let _ = (&stream).write_all(
                    format!(
                        "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{why}",
                        why.len()
                    )
                    .as_bytes(),
                );
                break;
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    lock(&shared.conns).remove(&id);
}

/// `%XX` and `+` in a query value.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
