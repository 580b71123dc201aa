//! Binding, the accept loop, and the concurrency model that runs each accepted connection.
//!
//! The stages differ only in their `ConnectionModel`: stage 1 serves each connection before
//! accepting the next, later stages fork, spawn a thread, or hand it to a pool.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::relay::Relay;

/// Serves one accepted connection to its end.
pub trait ConnectionHandler: Send + Sync + 'static {
    fn handle(&self, stream: TcpStream, peer: SocketAddr);
}

impl ConnectionHandler for Relay {
    fn handle(&self, stream: TcpStream, peer: SocketAddr) {
        self.serve_tcp(stream, peer);
    }
}

/// Decides where an accepted connection is served.
pub trait ConnectionModel {
    fn dispatch(&self, stream: TcpStream, peer: SocketAddr, handler: &Arc<dyn ConnectionHandler>);
}

/// Stage 1: the accept loop itself serves the connection, so the next client waits until this
/// one is done (all its keep-alive requests included).
#[derive(Debug, Default, Clone, Copy)]
pub struct Sequential;

impl ConnectionModel for Sequential {
    fn dispatch(&self, stream: TcpStream, peer: SocketAddr, handler: &Arc<dyn ConnectionHandler>) {
        handler.handle(stream, peer);
    }
}

/// Binds the listening socket, with the address in the error so the user knows which one.
pub fn bind(addr: &str) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}")))
}

/// Accepts connections forever and dispatches each through `model`.
pub fn serve(
    listener: &TcpListener,
    model: &dyn ConnectionModel,
    handler: Arc<dyn ConnectionHandler>,
) {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => model.dispatch(stream, peer, &handler),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                // Out of file descriptors, mostly. Spinning on the error would burn a core;
                // pause so connections can finish and free some.
                log::error!("accept failed: {err}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
