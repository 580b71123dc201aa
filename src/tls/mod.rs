//! Stage 9's TLS: https for clients, and https to backends, with rustls.
//!
//! - `stream.rs`: [`TlsStream`], a rustls connection over TCP as a `Socket` and a
//!   `Transport`, driven blocking by a worker or without waiting by stage 4's gather step
//!   and parker, so a slow or stalled handshake never holds a worker;
//! - `server.rs`: the `ServerConfig` (SNI certificate choice, TLS 1.2/1.3, ALPN http/1.1,
//!   session tickets) and the [`TlsAcceptor`];
//! - `handler.rs`: [`TlsHandler`], a relay's `ConnectionHandler` for a TLS listener;
//! - `client.rs`: `ClientConfig`s for `https://` backends, and [`BackendTls`](client::BackendTls) for the
//!   `Connector`;
//! - `certs.rs`: PEM files, and a generated development CA (`self_signed = true`);
//! - `phases.rs`: [`HttpsRedirect`] (308 from http to https) and [`Hsts`], together as
//!   [`TlsPhases`];
//! - `config.rs`: the `[tls]` section.
//!
//! The scheme is a property of each connection (`Socket::scheme`, `Socket::tls_version`), not
//! of the relay: one relay serves the plain and the TLS listener, and a request's phases see
//! `Client::proto` = `https` and its backend gets `X-Forwarded-Proto: https` only when it
//! came over TLS.
//!
//! `upstream` imports `tls::client` by its full path (not these re-exports), because
//! `handler.rs` imports the relay, which imports `upstream`.

pub mod certs;
pub mod client;
pub mod config;
mod handler;
pub mod phases;
pub mod server;
pub mod stream;

pub use config::TlsSettings;
pub use handler::TlsHandler;
pub use phases::{Hsts, HttpsRedirect, TlsPhases};
pub use server::TlsAcceptor;
pub use stream::TlsStream;
