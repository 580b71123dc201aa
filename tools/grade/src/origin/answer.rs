//! An origin's answer to a recorded request, as the request's target asks (the keys are in
//! the `origin` module's docs).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use super::request::{reader_leftover, Reader};
use super::{lock, percent_decode, Record, Shared, HELD_TAIL, HOLD_LIMIT};
use crate::pattern;

/// Answers `record` as its target asks; false when the connection must close.
pub(super) fn answer(
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
