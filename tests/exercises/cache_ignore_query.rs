//! Chapter 07, exercise: `[cache] ignore_query = ["utm_source", ...]` names query parameters
//! that are left out of the cache key, so `/page?utm_source=mail` and `/page?utm_source=ad`
//! share one entry (nginx does this by writing `proxy_cache_key` by hand; Varnish setups strip
//! tracking parameters in `vcl_recv`). Only the key changes: the target is forwarded as the
//! client sent it, and every other parameter still makes a key of its own.
//! Solution: `solutions/07-cache-ignore-query.patch`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::{raw_backend, read_request_head, Proxy, Response};

const STAGE7: &str = env!("CARGO_BIN_EXE_stage7");

/// An origin that answers every GET with a fresh, cacheable 200 whose body counts the
/// answers, and keeps the request lines it saw.
struct Counting {
    addr: std::net::SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

fn origin() -> Counting {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&lines);
    let count = Arc::new(AtomicUsize::new(0));
    let addr = raw_backend(move |mut stream| loop {
        let head = read_request_head(&mut stream);
        if !head.ends_with(b"\r\n\r\n") {
            return;
        }
        let line = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        seen.lock().unwrap().push(line);
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let body = format!("answer {n}");
        let response = format!(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    });
    Counting { addr, lines }
}

fn config(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "revproxy-exercise-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).expect("write the config");
    path
}

fn stage7(name: &str, origin: &Counting, cache: &str) -> Proxy {
    let text = format!(
        "[upstreams.app]\nservers = [\"{}\"]\n[cache]\nenabled = true\n{cache}",
        origin.addr
    );
    let path = config(name, &text);
    Proxy::start(STAGE7, &[], &["--config", path.to_str().unwrap()])
}

fn get(proxy: &Proxy, target: &str) -> Response {
    let mut c = proxy.connect();
    c.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes());
    c.read_response("GET")
}

fn x_cache(res: &Response) -> String {
    res.header("x-cache").unwrap_or("-").to_owned()
}

#[test]
#[ignore = "exercise (chapter 07): [cache] ignore_query"]
fn ignored_query_parameters_share_one_entry() {
    let o = origin();
    let p = stage7(
        "ignore",
        &o,
        "ignore_query = [\"utm_source\", \"utm_medium\"]\n",
    );
    let first = get(&p, "/page?utm_source=mail&id=7");
    assert_eq!((first.status, x_cache(&first)), (200, "MISS".into()));
    // Another value, another order, one more ignored parameter: the same key.
    for target in [
        "/page?id=7&utm_source=ad",
        "/page?utm_medium=web&id=7",
        "/page?id=7",
    ] {
        let res = get(&p, target);
        assert_eq!(x_cache(&res), "HIT", "{target}");
        assert_eq!(res.text(), first.text(), "{target}");
    }
    // The origin saw the first target exactly as the client sent it.
    assert_eq!(
        *o.lines.lock().unwrap(),
        ["GET /page?utm_source=mail&id=7 HTTP/1.1"]
    );
}

#[test]
#[ignore = "exercise (chapter 07): [cache] ignore_query"]
fn other_parameters_and_names_that_only_look_alike_keep_their_own_entries() {
    let o = origin();
    let p = stage7("others", &o, "ignore_query = [\"utm_source\"]\n");
    // Not ignored: `id`, a name that merely starts with an ignored one, and the bare path.
    let targets = [
        "/page?id=1",
        "/page?id=2",
        "/page?utm_source_x=1",
        "/page",
        "/other?utm_source=mail",
    ];
    for target in targets {
        let res = get(&p, target);
        assert_eq!(x_cache(&res), "MISS", "{target}");
    }
    for target in targets {
        assert_eq!(x_cache(&get(&p, target)), "HIT", "{target} again");
    }
    assert_eq!(o.lines.lock().unwrap().len(), targets.len());
}

#[test]
#[ignore = "exercise (chapter 07): [cache] ignore_query"]
fn without_the_setting_every_query_is_its_own_key() {
    let o = origin();
    let p = stage7("default", &o, "");
    assert_eq!(x_cache(&get(&p, "/page?utm_source=mail")), "MISS");
    assert_eq!(x_cache(&get(&p, "/page?utm_source=ad")), "MISS");
    assert_eq!(x_cache(&get(&p, "/page?utm_source=ad")), "HIT");
}
