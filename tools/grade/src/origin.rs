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
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::pattern;

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

struct Reader<'a> {
    stream: &'a TcpStream,
    buf: Vec<u8>,
}

impl Reader<'_> {
    /// More bytes; false at end of stream or error.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = crate::http::find(&self.buf, b"\r\n") {
                let line = self.buf[..end].to_vec();
                self.buf.drain(..end + 2);
                return Some(line);
            }
            if self.buf.len() > 64 * 1024 || !self.fill() {
                return None;
            }
        }
    }
}

/// Reads one request: `Ok(None)` at a clean end of stream, `Err` a record of what was wrong.
fn read_request(index: usize, r: &mut Reader) -> Result<Option<Record>, Box<Record>> {
    let bad = |head: &[u8], why: &str| {
        Box::new(Record {
            origin: index,
            target: String::new(),
            method: String::new(),
            head: String::from_utf8_lossy(head).into_owned(),
            body: Vec::new(),
            body_len: 0,
            error: Some(why.to_string()),
        })
    };
    let end = loop {
        if let Some(end) = crate::http::find(&r.buf, b"\r\n\r\n") {
            break end + 4;
        }
        if r.buf.len() > 256 * 1024 {
            return Err(bad(&r.buf, "a head longer than 256 KiB"));
        }
        if !r.fill() {
            if r.buf.is_empty() {
                return Ok(None);
            }
            return Err(bad(
                &r.buf,
                "the head never ended (the connection closed, or was silent for 5 s)",
            ));
        }
    };
    let head_bytes: Vec<u8> = r.buf.drain(..end).collect();
    let head = String::from_utf8_lossy(&head_bytes).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let parts: Vec<&str> = request_line.split(' ').collect();
    if parts.len() != 3 || !parts[2].starts_with("HTTP/1.") {
        return Err(bad(
            &head_bytes,
            "the request line is not METHOD TARGET HTTP/1.x",
        ));
    }
    let mut record = Record {
        origin: index,
        target: parts[1].to_string(),
        method: parts[0].to_string(),
        head: head.clone(),
        body: Vec::new(),
        body_len: 0,
        error: None,
    };
    let mut lengths = Vec::new();
    let mut te = None;
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            record.error = Some(format!("a header line without a colon: {line:?}"));
            return Err(Box::new(record));
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            lengths.push(value.trim().to_string());
        }
        if name.trim().eq_ignore_ascii_case("transfer-encoding") {
            te = Some(value.trim().to_ascii_lowercase());
        }
    }
    let keep = |piece: &[u8], record: &mut Record| {
        let room = KEEP_BODY.saturating_sub(record.body.len());
        record
            .body
            .extend_from_slice(&piece[..piece.len().min(room)]);
        record.body_len += piece.len() as u64;
    };
    if let Some(te) = te {
        if !te.ends_with("chunked") {
            record.error = Some(format!("Transfer-Encoding {te:?} does not end in chunked"));
            return Err(Box::new(record));
        }
        loop {
            let Some(line) = r.line() else {
                record.error = Some("the chunked body ended early".into());
                return Err(Box::new(record));
            };
            let text = String::from_utf8_lossy(&line);
            let size = text.split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(size, 16) else {
                record.error = Some(format!("a chunk size that is not hexadecimal: {text:?}"));
                return Err(Box::new(record));
            };
            if size == 0 {
                while r.line().is_some_and(|l| !l.is_empty()) {}
                break;
            }
            while r.buf.len() < size + 2 {
                if !r.fill() {
                    record.error = Some("the chunked body ended early".into());
                    return Err(Box::new(record));
                }
            }
            let chunk: Vec<u8> = r.buf.drain(..size + 2).collect();
            keep(&chunk[..size], &mut record);
        }
    } else if let Some(first) = lengths.first() {
        if lengths.iter().any(|l| l != first) {
            record.error = Some(format!("different Content-Length values: {lengths:?}"));
            return Err(Box::new(record));
        }
        let Ok(mut left) = first.parse::<u64>() else {
            record.error = Some(format!("Content-Length {first:?} is not a number"));
            return Err(Box::new(record));
        };
        while left > 0 {
            if r.buf.is_empty() && !r.fill() {
                record.error = Some(format!("the body ended {left} bytes early"));
                return Err(Box::new(record));
            }
            let take = r.buf.len().min(left as usize);
            let piece: Vec<u8> = r.buf.drain(..take).collect();
            keep(&piece, &mut record);
            left -= take as u64;
        }
    }
    Ok(Some(record))
}

/// Answers `record` as its target asks; false when the connection must close.
fn answer(
    id: u64,
    stream: &TcpStream,
    reader: &mut Reader,
    record: &Record,
    shared: &Shared,
) -> bool {
    let mut out = stream;
    if record.target == "/health" {
        return out
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
            .is_ok();
    }
    let (path, query) = record
        .target
        .split_once('?')
        .unwrap_or((&record.target, ""));
    let params: HashMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect();
    let get = |k: &str| params.get(k).map(String::as_str);
    let num = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok());
    let token = path.split('/').nth(2).unwrap_or("").to_string();
    let client_close = record
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));

    // A released hang that a proxy sends again (a retry) is answered like any request, so that
    // the retry does not count as one more failure of the origin.
    if get("hang").is_some() && !lock(&shared.released_hangs).contains(&token) {
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.hanging).insert(id, (token.clone(), clone));
        }
        // Waits for the peer to close, or for release_hangs to shut the socket.
        let mut sink = [0u8; 1024];
        let deadline = Instant::now() + HOLD_LIMIT;
        while Instant::now() < deadline {
            match (&*stream).read(&mut sink) {
                Ok(0) => break,
                Err(e)
                    if e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut =>
                {
                    break
                }
                _ => {}
            }
        }
        lock(&shared.hanging).remove(&id);
        return false;
    }
    if get("drop").is_some() {
        return false;
    }
    if get("ws").is_some() {
        crate::websocket::origin_echo(stream, reader_leftover(reader), record);
        return false;
    }
    if let Some(ms) = num("delay_ms") {
        thread::sleep(Duration::from_millis(ms.min(HOLD_LIMIT.as_millis() as u64)));
    }
    let mut status = num("status").unwrap_or(200) as u16;
    if let (Some(etag), Some(inm)) = (get("etag"), record.header("if-none-match")) {
        if inm.split(',').any(|t| t.trim() == etag) {
            status = 304;
        }
    }
    // `echo=NAME`: the request's header NAME ends the default body (Vary checks).
    let echoed = get("echo")
        .map(|name| format!(" {}", record.header(name).unwrap_or_default()))
        .unwrap_or_default();
    let default_body = format!("origin {} {token}{echoed}\n", record.origin).into_bytes();
    let length = num("n").unwrap_or(default_body.len() as u64);
    let frame = get("frame").unwrap_or("cl");
    let no_body = status == 204 || status == 304 || record.method == "HEAD";

    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    head.push_str(&format!("X-Grade-Origin: {}\r\n", record.origin));
    if get("hop").is_some() {
        // A field the origin's Connection header names: for the proxy, not for the client.
        head.push_str(
            "Connection: X-Grade-Resp-Hop\r\nX-Grade-Resp-Hop: 1\r\nX-Grade-Resp-Kept: yes\r\n",
        );
    }
    for (key, name) in [("cc", "Cache-Control"), ("vary", "Vary"), ("etag", "ETag")] {
        if let Some(v) = get(key) {
            head.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    if get("ctype").is_some() || length > 0 {
        head.push_str(&format!(
            "Content-Type: {}\r\n",
            get("ctype").unwrap_or("text/plain")
        ));
    }
    let close = frame == "close" || client_close;
    match frame {
        "chunked" if status != 204 && status != 304 => {
            head.push_str("Transfer-Encoding: chunked\r\n")
        }
        "close" => head.push_str("Connection: close\r\n"),
        _ if status == 204 => {}
        _ => head.push_str(&format!("Content-Length: {length}\r\n")),
    }
    if client_close && frame != "close" {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let head_ok = if get("trickle").is_some() {
        head.as_bytes().chunks(1).all(|b| out.write_all(b).is_ok())
    } else {
        out.write_all(head.as_bytes()).is_ok()
    };
    if !head_ok {
        return false;
    }
    if no_body {
        return !close;
    }
    let chunked = frame == "chunked";
    let mut send = |bytes: &[u8]| -> bool {
        if chunked {
            let size = format!("{:x}\r\n", bytes.len());
            out.write_all(size.as_bytes()).is_ok()
                && out.write_all(bytes).is_ok()
                && out.write_all(b"\r\n").is_ok()
        } else {
            out.write_all(bytes).is_ok()
        }
    };
    let ok = if num("n").is_none() {
        send(&default_body)
    } else {
        let hold = get("hold").is_some();
        let held_from = if hold {
            length.saturating_sub(HELD_TAIL)
        } else {
            length
        };
        let mut sent = 0u64;
        let mut ok = true;
        let mut block = vec![0u8; 64 * 1024];
        while ok && sent < length {
            if hold && sent == held_from && !shared.signals.wait(&token, HOLD_LIMIT) {
                lock(&shared.held_too_long).insert(token.clone());
            }
            let limit = if sent < held_from { held_from } else { length };
            let take = (limit - sent).min(block.len() as u64) as usize;
            pattern::fill(&mut block[..take], sent);
            ok = send(&block[..take]);
            sent += take as u64;
        }
        ok
    };
    if ok && chunked && out.write_all(b"0\r\n\r\n").is_err() {
        return false;
    }
    ok && !close
}

/// Bytes the reader already took past the request (a WebSocket frame sent with the upgrade).
fn reader_leftover(reader: &mut Reader) -> Vec<u8> {
    std::mem::take(&mut reader.buf)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
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
