//! A negative control for the grader's own tests (not a tool): the C course's first forwarder,
//! in Rust. It takes a request as one `read()` of 4 KiB, writes it to the origin, and copies
//! the answer back until the origin closes or 4 KiB have come; a thread per connection.
//!
//! `control-one-read --listen 127.0.0.1:PORT --backend 127.0.0.1:PORT`; other flags ignored.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

fn main() -> io::Result<()> {
    let (listen, backend) = grade::controls::listen_and_backend();
    let listener = TcpListener::bind(&listen)?;
    for client in listener.incoming() {
        let Ok(mut client) = client else { continue };
        let backend = backend.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let Ok(n) = client.read(&mut buf) else { return };
            let Ok(mut origin) = TcpStream::connect(&backend) else {
                return;
            };
            if origin.write_all(&buf[..n]).is_err() {
                return;
            }
            let mut total = 0;
            while total < buf.len() {
                match origin.read(&mut buf[total..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
            let _ = client.write_all(&buf[..total]);
        });
    }
    Ok(())
}
