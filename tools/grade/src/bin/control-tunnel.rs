//! A negative control for the grader's own tests (not a tool): a raw TCP tunnel that copies
//! bytes both ways without reading HTTP at all. It passes the framing checks (it changes
//! nothing) and fails every check where a proxy must read the request: refusals, smuggling.
//!
//! `control-tunnel --listen 127.0.0.1:PORT --backend 127.0.0.1:PORT`; other flags ignored.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;

fn main() -> io::Result<()> {
    let (listen, backend) = grade::controls::listen_and_backend();
    let listener = TcpListener::bind(&listen)?;
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let backend = backend.clone();
        thread::spawn(move || {
            let Ok(origin) = TcpStream::connect(&backend) else {
                return;
            };
            let (Ok(mut c2), Ok(mut o2)) = (client.try_clone(), origin.try_clone()) else {
                return;
            };
            let up = thread::spawn(move || {
                let _ = io::copy(&mut c2, &mut o2);
                let _ = o2.shutdown(Shutdown::Write);
            });
            let (mut c, mut o) = (client, origin);
            let _ = io::copy(&mut o, &mut c);
            let _ = c.shutdown(Shutdown::Both);
            let _ = up.join();
        });
    }
    Ok(())
}
