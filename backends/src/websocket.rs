//! `/ws`: a WebSocket echo (RFC 6455), so that a proxy's upgrade path can be tested against
//! a real WebSocket server rather than one written alongside it.
//!
//! hyper answers the handshake with `101 Switching Protocols` and hands over the connection
//! (`hyper::upgrade::on`), and tokio-tungstenite speaks WebSocket on it. Text and binary
//! messages come back unchanged; tungstenite answers a ping with a pong and a close with a
//! close, after which the connection ends. A request to `/ws` that is no WebSocket handshake
//! gets `426 Upgrade Required` (or `400` when the handshake is malformed).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::body::Out;

/// The path of the echo.
pub(crate) const PATH: &str = "/ws";

/// A connection silent this long is dropped, so a forgotten client never holds a task.
const IDLE: Duration = Duration::from_secs(300);

/// Answers a request to `/ws`: `101` and an echo task for a valid handshake.
pub(crate) fn accept(mut request: Request<Incoming>) -> Response<Out> {
    let headers = request.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        let mut response = plain(426, "this is a WebSocket endpoint: send an upgrade\n");
        response
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return response;
    }
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let key = headers.get(header::SEC_WEBSOCKET_KEY).map(|k| k.as_bytes());
    let (Some(key), true, true) = (key, version_ok, request.method() == Method::GET) else {
        return plain(
            400,
            "a WebSocket handshake is a GET with Sec-WebSocket-Key and Sec-WebSocket-Version: 13\n",
        );
    };
    let accept_key = derive_accept_key(key);
    let switched = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        // Fails when the client went away before the switch: nothing to echo then.
        if let Ok(upgraded) = switched.await {
            let stream =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            echo(stream).await;
        }
    });
    let mut response = Response::new(Out::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(value) = HeaderValue::from_str(&accept_key) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    response
}

/// Sends every data message back until the client closes, fails, or stays silent too long.
async fn echo<S>(mut stream: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // Bounded by the connection: each turn takes one message, and it ends at close or IDLE.
    while let Ok(Some(received)) = tokio::time::timeout(IDLE, stream.next()).await {
        let reply = match received {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => message,
            // Pings are answered and closes replied to by tungstenite itself, as it reads on.
            Ok(_) => continue,
            Err(_) => return,
        };
        if stream.send(reply).await.is_err() {
            return;
        }
    }
}

fn plain(status: u16, body: &'static str) -> Response<Out> {
    let mut response = Response::new(Out::full(body.to_owned()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    response
}
