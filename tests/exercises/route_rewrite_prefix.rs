//! Chapter 09, exercise: `rewrite_prefix = "/v2"` on a route, nginx's
//! `location /v1 { proxy_pass http://app/v2; }`: the route's `path` is replaced by another
//! prefix in the target sent upstream, so `/v1/users?id=7` reaches the origin as
//! `/v2/users?id=7` (an API renamed behind the proxy, clients unchanged). `strip_prefix` is
//! the special case `rewrite_prefix = "/"`, so a route takes one or the other. The path is
//! rewritten after normalisation, as `strip_prefix` does; the query goes as sent.
//! Solution: `solutions/09-route-rewrite-prefix.patch`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::support::{raw_backend, read_request_head, Proxy};

const STAGE9: &str = env!("CARGO_BIN_EXE_stage9");

/// An origin that answers every request with `200 ok` and keeps the targets it was sent.
fn origin() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let targets = Arc::clone(&seen);
    let addr = raw_backend(move |mut stream| loop {
        let head = read_request_head(&mut stream);
        if !head.ends_with(b"\r\n\r\n") {
            return;
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        targets
            .lock()
            .unwrap()
            .push(text.split(' ').nth(1).unwrap_or("").to_owned());
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    });
    (addr, seen)
}

fn config(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "revproxy-exercise-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).expect("write the config");
    path
}

/// `stage9 -t` on `text`: its exit code and everything it printed.
fn check(name: &str, text: &str) -> (PathBuf, i32, String) {
    let path = config(name, text);
    let out = Command::new(STAGE9)
        .args(["-t", "--config", path.to_str().unwrap()])
        .output()
        .expect("run stage9 -t");
    let printed =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (path, out.status.code().unwrap_or(-1), printed)
}

#[test]
#[ignore = "exercise (chapter 09): rewrite_prefix"]
fn rewrite_prefix_replaces_the_routes_path_in_the_target_sent_upstream() {
    let (addr, seen) = origin();
    let text = format!(
        "[upstreams.app]\nservers = [\"{addr}\"]\n\
         [[routes]]\nname = \"v1\"\npath = \"/v1\"\nupstream = \"app\"\nrewrite_prefix = \"/v2\"\n\
         [[routes]]\nname = \"assets\"\npath = \"/static/\"\nupstream = \"app\"\nrewrite_prefix = \"/assets/\"\n\
         [[routes]]\nname = \"rest\"\npath = \"/\"\nupstream = \"app\"\n"
    );
    let path = config("rewrite", &text);
    let proxy = Proxy::start(STAGE9, &[], &["--config", path.to_str().unwrap()]);
    // (target the client sends, target the origin must see)
    let table = [
        ("/v1/users?id=7", "/v2/users?id=7"),
        ("/v1", "/v2"),
        ("/v1/", "/v2/"),
        ("/v1?q", "/v2?q"),
        ("/v1//a/./b", "/v2/a/b"),
        ("/%76%31/x", "/v2/x"),
        ("/static/app.css", "/assets/app.css"),
        // segment boundaries as for every route: /v1x is not under /v1
        ("/v1x", "/v1x"),
        ("/other/v1/x", "/other/v1/x"),
    ];
    let mut conn = proxy.connect();
    for (sent, _) in table {
        let request = format!("GET {sent} HTTP/1.1\r\nHost: t\r\n\r\n");
        conn.send_in_fragments(request.as_bytes(), 5);
        let res = conn.read_response("GET");
        assert_eq!(res.status, 200, "{sent}");
        assert_eq!(res.body, b"ok", "{sent}");
    }
    let want: Vec<&str> = table.iter().map(|(_, upstream)| *upstream).collect();
    assert_eq!(*seen.lock().unwrap(), want);
}

#[test]
#[ignore = "exercise (chapter 09): rewrite_prefix"]
fn rewrite_prefix_is_checked_and_its_errors_name_the_line() {
    let route = |extra: &str| {
        format!(
            "[upstreams.app]\nservers = [\"127.0.0.1:8000\"]\n\
             [[routes]]\npath = \"/v1\"\n{extra}\n"
        )
    };
    let (_, code, printed) = check(
        "rewrite-ok",
        &route("upstream = \"app\"\nrewrite_prefix = \"/v2\""),
    );
    assert_eq!(code, 0, "a valid rewrite_prefix: {printed}");
    // (what the route says, the line the error must name, words the message must hold)
    let bad = [
        (
            "upstream = \"app\"\nrewrite_prefix = \"v2\"",
            6,
            "rewrite_prefix",
        ),
        (
            "upstream = \"app\"\nrewrite_prefix = \"/v2?x=1\"",
            6,
            "rewrite_prefix",
        ),
        (
            "upstream = \"app\"\nrewrite_prefix = \"/a/../v2\"",
            6,
            "rewrite_prefix",
        ),
        (
            "upstream = \"app\"\nstrip_prefix = true\nrewrite_prefix = \"/v2\"",
            7,
            "strip_prefix",
        ),
        (
            "return = { body = \"x\" }\nrewrite_prefix = \"/v2\"",
            6,
            "rewrite_prefix",
        ),
    ];
    for (i, (extra, line, words)) in bad.iter().enumerate() {
        let (path, code, printed) = check(&format!("rewrite-bad-{i}"), &route(extra));
        assert_eq!(code, 78, "{extra:?} must be refused: {printed}");
        let at = format!("{}:{line}:", path.display());
        assert!(printed.contains(&at), "{extra:?}: no {at} in {printed}");
        assert!(
            printed.contains(words),
            "{extra:?}: no {words} in {printed}"
        );
    }
}
