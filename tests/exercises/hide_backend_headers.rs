//! Chapter 01, exercise: the proxy hides the backend's `Server` and `X-Powered-By` headers
//! (what nginx's `proxy_hide_header` does for `X-Powered-By`), which tell an attacker which
//! software and version sits behind it; every other end-to-end header still passes, the
//! course's `X-Backend-Server` included. Every stage shares the relay, so stage 1 and stage 4
//! both show it. Solution: `solutions/01-hide-backend-headers.patch`.

use std::io::Write;

use crate::support::{raw_backend, read_request_head, Proxy};

const STAGE1: &str = env!("CARGO_BIN_EXE_stage1");
const STAGE4: &str = env!("CARGO_BIN_EXE_stage4");

fn check(bin: &str) {
    let backend = raw_backend(|mut stream| {
        read_request_head(&mut stream);
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nServer: secret-server/1.2.3\r\nX-Powered-By: PHP/5.1\r\n\
              X-Backend-Server: b1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        );
    });
    let p = Proxy::start(bin, &[backend], &[]);
    let mut c = p.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let res = c.read_response("GET");
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("server"),
        None,
        "{bin}: Server must not reach the client"
    );
    assert_eq!(
        res.header("x-powered-by"),
        None,
        "{bin}: X-Powered-By must not reach the client"
    );
    assert_eq!(
        res.header("x-backend-server"),
        Some("b1"),
        "{bin}: other headers still pass"
    );
    assert_eq!(res.text(), "ok");
}

#[test]
#[ignore = "exercise (chapter 01): hide the backend's Server and X-Powered-By"]
fn stage1_hides_the_backend_s_server_headers() {
    check(STAGE1);
}

#[test]
#[ignore = "exercise (chapter 01): hide the backend's Server and X-Powered-By"]
fn stage4_hides_the_backend_s_server_headers() {
    check(STAGE4);
}
