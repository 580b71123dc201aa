//! The grader's own HTTP/1.1 client side: write raw bytes, read one response with its framing
//! (Content-Length, chunked, until close), and say in words what went wrong. It shares no code
//! with the proxy it judges, so a framing bug cannot hide on both sides.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// Longest wait for any one read or write of a check, unless the check says otherwise.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response head the reader accepts.
const MAX_HEAD: usize = 64 * 1024;

/// One response, as the client received it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// How the body was delimited, in words (`Content-Length: 10`, `chunked`, `close`, `none`).
    pub framing: String,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Every value of header `name`, in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The first value of header `name` in `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A response head, before its body.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// A client connection to the proxy, with its own read buffer.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl Conn {
    /// Connects with `IO_TIMEOUT` on the connect and on every read and write.
    pub fn open(addr: SocketAddr) -> Result<Conn, String> {
        Conn::open_with(addr, IO_TIMEOUT)
    }

    /// Connects, with `timeout` on every read and write.
    pub fn open_with(addr: SocketAddr, timeout: Duration) -> Result<Conn, String> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .map_err(|e| format!("cannot connect to the proxy at {addr}: {e}"))?;
        stream.set_read_timeout(Some(timeout)).ok();
        stream.set_write_timeout(Some(timeout)).ok();
        // Small writes leave at once, so a request written in fragments arrives in fragments.
        stream.set_nodelay(true).ok();
        Ok(Conn {
            stream,
            buf: Vec::new(),
            pos: 0,
        })
    }

    /// Sets the timeout of every later read.
    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).ok();
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .map_err(|e| format!("writing the request failed: {}", io_words(&e)))
    }

    /// Writes `bytes` in pieces of `size` bytes, one write each.
    pub fn send_in_pieces(&mut self, bytes: &[u8], size: usize) -> Result<(), String> {
        for piece in bytes.chunks(size.max(1)) {
            self.send(piece)?;
        }
        Ok(())
    }

    /// Closes the writing half (the request is complete).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads one complete response; `head_request` says the request was HEAD (no body).
    pub fn read_response(&mut self, head_request: bool) -> Result<Response, String> {
        let head = self.read_head()?;
        let framing = self.framing(&head, head_request);
        let mut body = Vec::new();
        self.read_body(framing, |piece| {
            body.extend_from_slice(piece);
            Ok(())
        })?;
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body,
            framing: framing_words(framing),
        })
    }

    /// Reads a response head (skipping `1xx` interim responses other than 101).
    pub fn read_head(&mut self) -> Result<Head, String> {
        loop {
            let head = self.read_one_head()?;
            if (100..200).contains(&head.status) && head.status != 101 {
                continue;
            }
            return Ok(head);
        }
    }

    fn read_one_head(&mut self) -> Result<Head, String> {
        // Where the search for the blank line resumes, relative to `pos` (a fill may move the
        // buffered bytes, never their order).
        let mut from = 0;
        loop {
            if let Some(end) = find(&self.buf[self.pos + from..], b"\r\n\r\n") {
                let end = self.pos + from + end + 4;
                let text = String::from_utf8_lossy(&self.buf[self.pos..end]).into_owned();
                self.pos = end;
                return parse_head(&text);
            }
            from = (self.buf.len() - self.pos).saturating_sub(3);
            if self.buf.len() - self.pos > MAX_HEAD {
                return Err(format!(
                    "the response head is longer than {MAX_HEAD} bytes or never ends"
                ));
            }
            match self.fill()? {
                0 if self.buf.len() == self.pos => {
                    return Err("the proxy closed the connection without a response".into())
                }
                0 => {
                    return Err(format!(
                        "the proxy closed the connection in the middle of a response head: {}",
                        show(&self.buf[self.pos..])
                    ))
                }
                _ => {}
            }
        }
    }

    /// How the body after `head` is delimited (RFC 9112 section 6.3).
    pub fn framing(&self, head: &Head, head_request: bool) -> Framing {
        if head_request || head.status == 204 || head.status == 304 || head.status < 200 {
            return Framing::None;
        }
        if let Some(te) = header(&head.headers, "transfer-encoding") {
            if te.to_ascii_lowercase().trim().ends_with("chunked") {
                return Framing::Chunked;
            }
            return Framing::Close;
        }
        match header(&head.headers, "content-length").map(|v| v.trim().parse::<u64>()) {
            Some(Ok(n)) => Framing::Length(n),
            _ => Framing::Close,
        }
    }

    /// Reads the body framed by `framing`, handing each piece to `sink` (bounded memory).
    pub fn read_body(
        &mut self,
        framing: Framing,
        mut sink: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        match framing {
            Framing::None => Ok(()),
            Framing::Length(n) => self.read_exact_into(n, &mut sink),
            Framing::Close => loop {
                if self.pos == self.buf.len() && self.fill()? == 0 {
                    return Ok(());
                }
                sink(&self.buf[self.pos..])?;
                self.pos = self.buf.len();
            },
            Framing::Chunked => loop {
                let line = self.read_line()?;
                let size_text = line.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size_text, 16)
                    .map_err(|_| format!("a chunk size line is not hexadecimal: {line:?}"))?;
                if size == 0 {
                    // Trailer section up to the empty line: field lines only. Anything else
                    // (a second "0" line, say) is chunk framing copied wrong.
                    loop {
                        let line = self.read_line()?;
                        if line.is_empty() {
                            return Ok(());
                        }
                        if !is_field_line(line.as_bytes()) {
                            return Err(format!(
                                "after the last chunk came {line:?}, which is not a trailer field"
                            ));
                        }
                    }
                }
                self.read_exact_into(size, &mut sink)?;
                let end = self.read_line()?;
                if !end.is_empty() {
                    return Err(format!("a chunk is not followed by CRLF but by {end:?}"));
                }
            },
        }
    }

    fn read_exact_into(
        &mut self,
        mut n: u64,
        sink: &mut impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        while n > 0 {
            if self.pos == self.buf.len() && self.fill()? == 0 {
                return Err(format!(
                    "the connection closed with {n} bytes of the body still to come"
                ));
            }
            let take = (self.buf.len() - self.pos).min(n as usize);
            sink(&self.buf[self.pos..self.pos + take])?;
            self.pos += take;
            n -= take as u64;
        }
        Ok(())
    }

    fn read_line(&mut self) -> Result<String, String> {
        loop {
            if let Some(end) = find(&self.buf[self.pos..], b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[self.pos..self.pos + end]).into();
                self.pos += end + 2;
                return Ok(line);
            }
            if self.buf.len() - self.pos > 4096 {
                return Err("a chunk line is longer than 4096 bytes".into());
            }
            if self.fill()? == 0 {
                return Err("the connection closed in the middle of a chunked body".into());
            }
        }
    }

    /// Bytes already received and not yet read as part of a response.
    pub fn leftover(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Waits up to `timeout` for the connection to send something or close: `Ok(0)` is a
    /// close, `Ok(n)` n new bytes (kept for the next read), `Err` a timeout.
    pub fn wait_for_bytes(&mut self, timeout: Duration) -> Result<usize, String> {
        if self.pos < self.buf.len() {
            return Ok(self.buf.len() - self.pos);
        }
        self.set_read_timeout(timeout);
        let result = self.fill();
        self.set_read_timeout(IO_TIMEOUT);
        result
    }

    /// Reads more bytes into the buffer; 0 is end of stream.
    fn fill(&mut self) -> Result<usize, String> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 256 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                // A signal (a debugger attaching) is not the proxy's doing.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_words(&e)),
            }
        }
    }
}

/// An I/O error in words a student understands.
pub fn io_words(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            "no answer: the read timed out".to_string()
        }
        io::ErrorKind::ConnectionReset => "the proxy reset the connection".to_string(),
        io::ErrorKind::BrokenPipe => "the proxy closed the connection (broken pipe)".to_string(),
        _ => e.to_string(),
    }
}

fn framing_words(framing: Framing) -> String {
    match framing {
        Framing::None => "no body".into(),
        Framing::Length(n) => format!("Content-Length: {n}"),
        Framing::Chunked => "chunked".into(),
        Framing::Close => "until close".into(),
    }
}

/// Parses `HTTP/1.x CODE REASON` and the header lines of a complete head.
fn parse_head(text: &str) -> Result<Head, String> {
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!(
            "the response does not start with a status line: {}",
            show(status_line.as_bytes())
        ));
    }
    let status = code
        .parse::<u16>()
        .map_err(|_| format!("the status code is not a number: {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("a response header line has no colon: {line:?}"));
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(Head { status, headers })
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Up to 80 bytes of `bytes`, escaped, for a failure message.
pub fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(80)];
    let mut text: String = cut.escape_ascii().to_string();
    if bytes.len() > 80 {
        text.push_str("...");
    }
    format!("\"{text}\"")
}

/// One request and its response on a connection of its own.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Result<Response, String> {
    let mut conn = Conn::open(addr)?;
    conn.send(request)?;
    let head = request.starts_with(b"HEAD ");
    conn.read_response(head)
}

/// A `GET target` request with `Connection: close`.
pub fn get_close(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: grade.test\r\nConnection: close\r\n\r\n").into_bytes()
}

/// A keep-alive `GET target` request.
pub fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: grade.test\r\n\r\n").into_bytes()
}

/// Whether a line of a head or a trailer section is a field: a name without spaces, then `:`.
pub fn is_field_line(line: &[u8]) -> bool {
    let colon = line.iter().position(|&b| b == b':');
    colon.is_some_and(|i| i > 0 && !line[..i].iter().any(u8::is_ascii_whitespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_ends_with_field_lines_only() {
        assert!(is_field_line(b"X-T: 1"));
        assert!(!is_field_line(b"0"));
        assert!(!is_field_line(b": x"));
        assert!(!is_field_line(b"X T: 1"));
        // A proxy that forwards the last chunk's line twice: the client side says so.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"3\r\nabc\r\n0\r\n0\r\nX-T: 1\r\n\r\n")
                .unwrap();
        });
        let mut conn = Conn::open(addr).unwrap();
        let mut body = Vec::new();
        let err = conn
            .read_body(Framing::Chunked, |piece| {
                body.extend_from_slice(piece);
                Ok(())
            })
            .unwrap_err();
        server.join().unwrap();
        assert_eq!(body, b"abc");
        assert!(err.contains("not a trailer field"), "{err}");
    }

    #[test]
    fn heads_parse_and_bad_ones_say_why() {
        let head = parse_head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX:  y \r\n\r\n").unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(header(&head.headers, "x"), Some("y"));
        assert!(parse_head("hello\r\n\r\n")
            .unwrap_err()
            .contains("status line"));
        assert!(parse_head("HTTP/1.1 200 OK\r\nnocolon\r\n\r\n")
            .unwrap_err()
            .contains("no colon"));
    }

    #[test]
    fn show_escapes_and_cuts() {
        assert_eq!(show(b"a\r\n"), "\"a\\r\\n\"");
        assert!(show(&[b'x'; 100]).ends_with("...\""));
    }
}
