//! Chapter 08, exercise: `methods = ["GET", "HEAD"]` in an `[[access.rules]]` limits the
//! methods the rule's paths accept (nginx's `limit_except`): any other method is answered
//! `405 Method Not Allowed` with an `Allow` header listing the rule's methods (RFC 9110
//! section 15.5.6), before a credential is asked for, and never reaches the origin. A rule
//! without `methods` accepts every method, as before. Solution:
//! `solutions/08-rule-methods.patch`.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::support::{raw_backend, read_request_head, Proxy, Response};

const STAGE8: &str = env!("CARGO_BIN_EXE_stage8");

/// A backend that answers 200 to everything and keeps the request lines it saw.
fn recorder() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&lines);
    let addr = raw_backend(move |mut stream| loop {
        let head = read_request_head(&mut stream);
        if !head.ends_with(b"\r\n\r\n") {
            return;
        }
        let text = String::from_utf8_lossy(&head);
        seen.lock()
            .unwrap()
            .push(text.lines().next().unwrap_or("").to_owned());
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    });
    (addr, lines)
}

fn config(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "revproxy-exercise-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).expect("write the config");
    path
}

const RULES: &str = r#"
[access.keys]
list = [{ name = "course", key = "test-api-key-123" }]
[[access.rules]]
path = "/docs"
methods = ["GET", "HEAD"]
[[access.rules]]
path = "/api"
auth = "key"
methods = ["GET", "POST"]
"#;

fn send(proxy: &Proxy, method: &str, target: &str, headers: &str) -> Response {
    let mut c = proxy.connect();
    let body = if method == "POST" || method == "PUT" {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    c.send(
        format!(
            "{method} {target} HTTP/1.1\r\nHost: t\r\n{headers}{body}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    c.read_response(method)
}

#[test]
#[ignore = "exercise (chapter 08): methods per access rule"]
fn a_rule_s_methods_pass_and_others_get_405_with_allow() {
    let (backend, lines) = recorder();
    let path = config(
        "methods",
        &format!("[upstreams.app]\nservers = [\"{backend}\"]\n{RULES}"),
    );
    let p = Proxy::start(STAGE8, &[], &["--config", path.to_str().unwrap()]);
    let key = "X-API-Key: test-api-key-123\r\n";
    for (method, target, headers, status) in [
        ("GET", "/docs/a", "", 200),
        ("HEAD", "/docs/a", "", 200),
        ("POST", "/docs/a", "", 405),
        ("DELETE", "/docs", "", 405),
        // On the normalised path, as every rule.
        ("PUT", "/%64ocs/a", "", 405),
        ("GET", "/api/x", key, 200),
        ("POST", "/api/x", key, 200),
        ("DELETE", "/api/x", key, 405),
        // The method is refused before a credential is asked for.
        ("DELETE", "/api/x", "", 405),
        ("POST", "/api/x", "", 401),
        // No rule, no limit.
        ("DELETE", "/other", "", 200),
    ] {
        let res = send(&p, method, target, headers);
        assert_eq!(res.status, status, "{method} {target} {headers:?}");
        if status == 405 {
            let allow = if target.contains("api") {
                "GET, POST"
            } else {
                "GET, HEAD"
            };
            assert_eq!(res.header("allow"), Some(allow), "{method} {target}");
        }
    }
    // Nothing refused reached the backend.
    assert_eq!(
        *lines.lock().unwrap(),
        [
            "GET /docs/a HTTP/1.1",
            "HEAD /docs/a HTTP/1.1",
            "GET /api/x HTTP/1.1",
            "POST /api/x HTTP/1.1",
            "DELETE /other HTTP/1.1",
        ]
    );
}

#[test]
#[ignore = "exercise (chapter 08): methods per access rule"]
fn an_empty_or_malformed_method_list_is_a_config_error() {
    for (list, want) in [("[]", "methods"), ("[\"get it\"]", "get it")] {
        let text = format!(
            "[upstreams.app]\nservers = [\"127.0.0.1:9\"]\n[[access.rules]]\npath = \"/x\"\nmethods = {list}\n"
        );
        let path = config("bad-methods", &text);
        let out = Command::new(STAGE8)
            .args(["-t", "--config", path.to_str().unwrap()])
            .output()
            .expect("run stage8 -t");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{list}: accepted");
        assert!(err.contains(want), "{list}: {err}");
        assert!(err.contains(":5:"), "{list}: names the line: {err}");
    }
}
