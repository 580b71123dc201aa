//! One blocking HTTP/1.1 client connection, as lean as a load generator needs: it writes the
//! prebuilt request, reads the response with [`super::response`], and reconnects when the
//! server (or `--no-keepalive`) closes the connection.
//!
//! This is deliberately separate from the proxy's own `src/http/`: a load tester that shares
//! the framing code of the thing it measures would share its bugs too.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::error::ClientError;
use super::response::{read_response, Buf, ResponseMeta};
use super::tls::{Conn, TlsClient};

/// What [`Client::send`] returns; `backend` borrows the client's buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Response<'c> {
    pub status: u16,
    pub body_bytes: u64,
    pub backend: Option<&'c [u8]>,
}

/// One worker's connection: reconnects when the server (or `--no-keepalive`) closes it.
pub struct Client<'r> {
    addr: SocketAddr,
    timeout: Duration,
    request: &'r [u8],
    head_request: bool,
    keepalive: bool,
    /// Set for an `https://` target: every connection starts with a handshake.
    tls: Option<&'r TlsClient>,
    stream: Option<Conn>,
    buf: Buf,
    backend: Vec<u8>,
    connections: u64,
}

impl<'r> Client<'r> {
    pub fn new(
        addr: SocketAddr,
        timeout: Duration,
        request: &'r [u8],
        head_request: bool,
        keepalive: bool,
    ) -> Self {
        Client {
            addr,
            timeout,
            request,
            head_request,
            keepalive,
            tls: None,
            stream: None,
            buf: Buf::default(),
            backend: Vec::new(),
            connections: 0,
        }
    }

    /// Speaks TLS on every connection (an `https://` target).
    pub fn with_tls(mut self, tls: Option<&'r TlsClient>) -> Self {
        self.tls = tls;
        self
    }

    /// Connections opened so far.
    pub fn connections(&self) -> u64 {
        self.connections
    }

    /// Sends the request and reads the whole response.
    pub fn send(&mut self) -> Result<Response<'_>, ClientError> {
        let deadline = Instant::now() + self.timeout;
        let reused = self.stream.is_some();
        let mut result = self.exchange(deadline);
        if let Err(e) = &result {
            if reused && self.buf.received() == 0 && e.is_stale_connection() {
                result = self.exchange(deadline);
            }
        }
        let meta = result?;
        Ok(Response {
            status: meta.status,
            body_bytes: meta.body_bytes,
            backend: meta.has_backend.then_some(self.backend.as_slice()),
        })
    }

    fn exchange(&mut self, deadline: Instant) -> Result<ResponseMeta, ClientError> {
        let result = self.exchange_on_connection(deadline);
        let reusable = matches!(&result, Ok(meta) if !meta.close) && self.keepalive;
        if !reusable {
            self.stream = None;
        }
        result
    }

    fn exchange_on_connection(&mut self, deadline: Instant) -> Result<ResponseMeta, ClientError> {
        self.buf.reset(Some(deadline));
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let socket = connect(self.addr, self.timeout)?;
                let stream = match self.tls {
                    Some(tls) => tls.connect(socket).map_err(ClientError::Connect)?,
                    None => Conn::Plain(socket),
                };
                self.connections += 1;
                self.stream.insert(stream)
            }
        };
        stream.write_all(self.request).map_err(ClientError::Io)?;
        read_response(stream, &mut self.buf, self.head_request, &mut self.backend)
    }
}

/// Connects with every timeout set, so no socket of the load tester can hang.
pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ClientError> {
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(ClientError::Connect)?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        // The request goes out in one write; no reason to let Nagle delay anything.
        .and_then(|()| stream.set_nodelay(true))
        .map_err(ClientError::Connect)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::request::build_request;
    use std::io::Read;
    use std::net::TcpListener;
    use std::thread;

    /// A raw server on port 0 that answers each connection's requests with scripted bytes.
    fn serve(responses: Vec<Vec<Vec<u8>>>) -> (SocketAddr, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let handle = thread::spawn(move || {
            for per_connection in responses {
                let (mut s, _) = listener.accept().expect("accept");
                s.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
                s.set_write_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
                for response in per_connection {
                    let mut seen = Vec::new();
                    let mut byte = [0u8; 1];
                    while !seen.ends_with(b"\r\n\r\n") {
                        match s.read(&mut byte) {
                            Ok(1) => seen.push(byte[0]),
                            _ => return,
                        }
                    }
                    if s.write_all(&response).is_err() {
                        return;
                    }
                }
                // Dropping `s` closes the connection: the close-delimited body ends here.
            }
        });
        (addr, handle)
    }

    #[test]
    fn client_over_real_sockets() {
        let conn1 = vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend-Server: b1\r\n\r\nok".to_vec(),
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                .to_vec(),
            b"HTTP/1.1 202 Accepted\r\n\r\nuntil close".to_vec(),
        ];
        let conn2 =
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbye!".to_vec()];
        let (addr, server) = serve(vec![conn1, conn2]);
        let request = build_request("GET", "x", "/", &[], b"", true);
        let mut client = Client::new(addr, Duration::from_secs(5), &request, false, true);

        let r = client.send().expect("content-length response");
        assert_eq!(
            (r.status, r.body_bytes, r.backend),
            (200, 2, Some(&b"b1"[..]))
        );
        let r = client.send().expect("chunked response");
        assert_eq!((r.status, r.body_bytes, r.backend), (201, 3, None));
        let r = client.send().expect("close-delimited response");
        assert_eq!((r.status, r.body_bytes), (202, 11));
        let r = client.send().expect("response on a new connection");
        assert_eq!((r.status, r.body_bytes), (200, 4));
        assert_eq!(client.connections(), 2);
        server.join().expect("server thread");

        // The server is gone: the next request is refused and counted as such.
        let err = client.send().expect_err("nothing listens any more");
        assert_eq!(err.kind(), ErrorKind::ConnectRefused);
    }

    #[test]
    fn head_request_over_real_socket() {
        let conn = vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec(),
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        ];
        let (addr, server) = serve(vec![conn]);
        let request = build_request("HEAD", "x", "/", &[], b"", true);
        let mut client = Client::new(addr, Duration::from_secs(5), &request, true, true);
        let r = client.send().expect("HEAD response");
        assert_eq!((r.status, r.body_bytes), (200, 0));
        // Had the client waited for 100 body bytes, this would time out instead.
        let r = client
            .send()
            .expect("second response on the same connection");
        assert_eq!(r.status, 204);
        assert_eq!(client.connections(), 1);
        drop(client);
        server.join().expect("server thread");
    }
}
