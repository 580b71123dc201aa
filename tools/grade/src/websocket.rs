//! Stage 9's protocols, from the grader's side: a development CA and certificate for the
//! program's TLS listener and a client that trusts only that CA; and a WebSocket handshake
//! and one echoed frame, written by hand (SHA-1 and base64 included: a few lines each, and no
//! dependency shared with the proxy).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::http::{self, IO_TIMEOUT};
use crate::origin::Record;

/// The name the program's certificate is for, sent as SNI.
pub const TLS_NAME: &str = "grade.test";
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The CA a TLS check trusts.
pub struct Trust {
    ca: CertificateDer<'static>,
}

impl Trust {
    /// Makes a CA and a certificate for `TLS_NAME` signed by it, writes the certificate chain
    /// and key as PEM into `dir`, and returns the trust and the two paths.
    pub fn make(dir: &Path) -> Result<(Trust, String, String), String> {
        let fail = |e: rcgen::Error| format!("cannot make a certificate: {e}");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "grade test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(fail)?)
            .map_err(fail)?;
        let params = CertificateParams::new(vec![TLS_NAME.to_string()]).map_err(fail)?;
        let key = KeyPair::generate().map_err(fail)?;
        let cert = params.signed_by(&key, &ca).map_err(fail)?;
        let cert_path = dir.join("grade-cert.pem");
        let key_path = dir.join("grade-key.pem");
        let write = |path: &Path, text: String| {
            std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        write(&cert_path, format!("{}{}", cert.pem(), ca.pem()))?;
        write(&key_path, key.serialize_pem())?;
        Ok((
            Trust {
                ca: ca.der().clone(),
            },
            cert_path.display().to_string(),
            key_path.display().to_string(),
        ))
    }

    /// `GET target` over TLS to `addr` (SNI `TLS_NAME`, only this CA trusted), read to the
    /// close: the status and the raw bytes after the head.
    pub fn get(&self, addr: SocketAddr, target: &str) -> Result<(u16, Vec<u8>), String> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).map_err(|e| e.to_string())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(TLS_NAME).map_err(|e| e.to_string())?;
        let conn = ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .map_err(|e| format!("cannot connect to the TLS listener at {addr}: {e}"))?;
        sock.set_read_timeout(Some(IO_TIMEOUT)).ok();
        sock.set_write_timeout(Some(IO_TIMEOUT)).ok();
        let mut tls = StreamOwned::new(conn, sock);
        tls.write_all(
            format!("GET {target} HTTP/1.1\r\nHost: {TLS_NAME}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|e| format!("the TLS handshake or the request failed: {e}"))?;
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match tls.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) if bytes.len() < 1024 * 1024 => bytes.extend_from_slice(&chunk[..n]),
                Ok(_) => break,
                // A peer that closes without close_notify: what came is what counts.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(format!("reading the TLS response failed: {e}")),
            }
        }
        let end = http::find(&bytes, b"\r\n\r\n")
            .ok_or_else(|| format!("no complete response head over TLS: {}", http::show(&bytes)))?;
        let line = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not a status line: {}", http::show(line.as_bytes())))?;
        Ok((status, bytes[end + 4..].to_vec()))
    }
}

/// The `Sec-WebSocket-Accept` value for `key` (RFC 6455 section 4.2.2).
pub fn accept_key(key: &str) -> String {
    base64(&sha1(format!("{key}{GUID}").as_bytes()))
}

/// A frame: FIN, `opcode`, masked with `mask` when given.
pub fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let masked = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(masked | n as u8),
        n if n <= 0xFFFF => {
            out.push(masked | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(masked | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Reads one frame from `read` (with `pending` bytes already received first): its opcode and
/// unmasked payload.
pub fn read_frame(read: &mut impl Read, pending: &mut Vec<u8>) -> Result<(u8, Vec<u8>), String> {
    let mut need = |n: usize, pending: &mut Vec<u8>| -> Result<(), String> {
        let mut chunk = [0u8; 4096];
        while pending.len() < n {
            match read.read(&mut chunk) {
                Ok(0) => return Err("the connection closed inside a WebSocket frame".into()),
                Ok(k) => pending.extend_from_slice(&chunk[..k]),
                Err(e) => return Err(http::io_words(&e)),
            }
        }
        Ok(())
    };
    need(2, pending)?;
    let opcode = pending[0] & 0x0F;
    let masked = pending[1] & 0x80 != 0;
    let mut len = (pending[1] & 0x7F) as usize;
    let mut at = 2;
    if len == 126 {
        need(4, pending)?;
        len = u16::from_be_bytes([pending[2], pending[3]]) as usize;
        at = 4;
    } else if len == 127 {
        need(10, pending)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(&pending[2..10]);
        len = u64::from_be_bytes(b) as usize;
        at = 10;
    }
    if len > 1024 * 1024 {
        return Err(format!("a WebSocket frame of {len} bytes"));
    }
    let mask_at = at;
    if masked {
        at += 4;
    }
    need(at + len, pending)?;
    let mut payload = pending[at..at + len].to_vec();
    if masked {
        let m = [
            pending[mask_at],
            pending[mask_at + 1],
            pending[mask_at + 2],
            pending[mask_at + 3],
        ];
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    pending.drain(..at + len);
    Ok((opcode, payload))
}

/// The origin's side: completes the handshake of `record` and echoes one frame.
pub fn origin_echo(stream: &TcpStream, mut pending: Vec<u8>, record: &Record) {
    let Some(key) = record.header("sec-websocket-key") else {
        let _ = (&*stream).write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    };
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(&key)
    );
    let mut out = stream;
    if out.write_all(answer.as_bytes()).is_err() {
        return;
    }
    let mut reader = stream;
    if let Ok((opcode, payload)) = read_frame(&mut reader, &mut pending) {
        let _ = out.write_all(&frame(opcode, &payload, None));
        let _ = out.write_all(&frame(0x8, &[0x03, 0xE8], None));
    }
}

/// SHA-1 (FIPS 180-4): only for the handshake's accept key.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, word) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_6455_example_key() {
        // RFC 6455 section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }

    #[test]
    fn frames_round_trip_masked_and_not() {
        for mask in [None, Some([1, 2, 3, 4])] {
            for len in [0, 5, 125, 126, 70_000] {
                let payload = crate::pattern::body(len);
                let bytes = frame(0x1, &payload, mask);
                let mut pending = Vec::new();
                let (op, back) = read_frame(&mut &bytes[..], &mut pending).unwrap();
                assert_eq!((op, back), (0x1, payload));
            }
        }
    }
}
