//! Reading one request off an origin's connection, byte for byte, into a [`Record`]: the
//! head, the body by its framing, and what could not be read.

use std::io::Read;
use std::net::TcpStream;

use super::{Record, KEEP_BODY};

pub(super) struct Reader<'a> {
    pub(super) stream: &'a TcpStream,
    pub(super) buf: Vec<u8>,
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
pub(super) fn read_request(index: usize, r: &mut Reader) -> Result<Option<Record>, Box<Record>> {
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
                // The trailer section: field lines up to the empty one. Anything else (a
                // second "0" line, say) is chunk framing the proxy copied wrong.
                loop {
                    let Some(line) = r.line() else {
                        record.error = Some("the chunked body ended early".into());
                        return Err(Box::new(record));
                    };
                    if line.is_empty() {
                        break;
                    }
                    if !crate::http::is_field_line(&line) {
                        let text = String::from_utf8_lossy(&line);
                        record.error = Some(format!(
                            "after the last chunk came {text:?}, which is not a trailer field"
                        ));
                        return Err(Box::new(record));
                    }
                }
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

/// Bytes the reader already took past the request (a WebSocket frame sent with the upgrade).
pub(super) fn reader_leftover(reader: &mut Reader) -> Vec<u8> {
    std::mem::take(&mut reader.buf)
}
