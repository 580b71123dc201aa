//! Chapter 06, exercise: `expect_status = [200]` in `[upstreams.NAME.health]`, HAProxy's
//! `http-check expect status 200`. A probe passes on any 2xx or 3xx, so a backend whose
//! `/health` redirects to a login page (a 302, sent by an application that lost its
//! session store, or by a misrouted vhost) stays healthy forever. With `expect_status`, a
//! probe passes only with one of the listed statuses; without it, nothing changes. An empty
//! list or a status outside 100 to 599 is a configuration error.
//! Solution: `solutions/06-health-expect-status.patch`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::support::{raw_backend, read_request_head, Proxy, TIMEOUT};

const STAGE6: &str = env!("CARGO_BIN_EXE_stage6");

/// A backend named `name` whose `/health` answers `health` (a status line's code and reason)
/// and every other path `200` with its name as the body.
fn origin(name: &'static str, health: &'static str) -> SocketAddr {
    raw_backend(move |mut stream| loop {
        let head = read_request_head(&mut stream);
        if !head.ends_with(b"\r\n\r\n") {
            return;
        }
        let line = String::from_utf8_lossy(&head).into_owned();
        let response = if line.starts_with("GET /health ") {
            format!("HTTP/1.1 {health}\r\nLocation: /login\r\nContent-Length: 0\r\n\r\n")
        } else {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                name.len()
            )
        };
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    })
}

fn config(name: &str, servers: &[SocketAddr], health: &str) -> PathBuf {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let text = format!(
        "[upstreams.app]\nservers = [{}]\n\
         [upstreams.app.health]\ninterval_ms = 50\ntimeout_ms = 50\nrise = 1\nfall = 1\n{health}",
        list.join(", ")
    );
    let path = std::env::temp_dir().join(format!(
        "revproxy-exercise-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).expect("write the config");
    path
}

/// Which backend answered each of `n` requests on one connection.
fn answers(p: &Proxy, n: usize) -> Vec<String> {
    let mut c = p.connect();
    (0..n)
        .map(|_| {
            c.send_in_fragments(b"GET /page HTTP/1.1\r\nHost: t\r\n\r\n", 9);
            let res = c.read_response("GET");
            assert_eq!(res.status, 200);
            res.text()
        })
        .collect()
}

#[test]
#[ignore = "exercise (chapter 06): expect_status"]
fn a_backend_whose_health_check_redirects_is_taken_out_with_expect_status() {
    let redirecting = origin("login", "302 Found");
    let healthy = origin("app", "200 OK");
    let path = config(
        "expect-status",
        &[redirecting, healthy],
        "expect_status = [200]\n",
    );
    let p = Proxy::start(STAGE6, &[], &["--config", path.to_str().unwrap()]);
    // Both take requests until the first probes; then only the one whose check says 200.
    let deadline = Instant::now() + TIMEOUT;
    while answers(&p, 4) != ["app"; 4] {
        assert!(
            Instant::now() < deadline,
            "the redirecting backend still gets requests"
        );
    }
    assert_eq!(answers(&p, 8), ["app"; 8], "and it stays out");
}

#[test]
#[ignore = "exercise (chapter 06): expect_status"]
fn expect_status_is_checked() {
    let servers = [SocketAddr::from(([127, 0, 0, 1], 8000))];
    let check = |name: &str, health: &str| {
        let out = Command::new(STAGE6)
            .args(["-t", "--config"])
            .arg(config(name, &servers, health))
            .output()
            .expect("run stage6 -t");
        let printed = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), printed)
    };
    let (code, printed) = check("expect-ok", "expect_status = [200, 204]\n");
    assert_eq!(code, Some(0), "{printed}");
    for (i, bad) in [
        "expect_status = []\n",
        "expect_status = [200, 600]\n",
        "expect_status = [99]\n",
    ]
    .iter()
    .enumerate()
    {
        let (code, printed) = check(&format!("expect-bad-{i}"), bad);
        assert_eq!(code, Some(78), "{bad:?} must be refused: {printed}");
        assert!(printed.contains("expect_status"), "{bad:?}: {printed}");
    }
}
