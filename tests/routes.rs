//! Stage 9's routing over real sockets: the real `stage9` binary in front of backends that
//! record every request head that reached them and answer with their name and the target
//! they saw, so each test can tell which group took a request and what it was sent.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use support::{dead_addr, raw_backend, read_request_head, Proxy, Response};

const STAGE9: &str = env!("CARGO_BIN_EXE_stage9");
const STAGE8: &str = env!("CARGO_BIN_EXE_stage8");

/// A backend named `name` that answers every request (keep-alive) with
/// `NAME TARGET` as its body, a cacheable `Cache-Control`, and a `Server` header, and keeps
/// each request head (health probes left out).
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn start(name: &'static str) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let addr = raw_backend(move |mut stream| loop {
            let head = read_request_head(&mut stream);
            if !head.ends_with(b"\r\n\r\n") {
                return;
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let target = text.split(' ').nth(1).unwrap_or("").to_owned();
            if !target.starts_with("/health") {
                log.lock().unwrap().push(text);
            }
            let body = format!("{name} {target}");
            let response = format!(
                "HTTP/1.1 200 OK\r\nServer: raw-backend\r\nCache-Control: max-age=60\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(response.as_bytes()).is_err() {
                return;
            }
        });
        Recorder { addr, seen }
    }

    fn heads(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    fn last(&self) -> String {
        self.heads().last().cloned().unwrap_or_default()
    }

    /// The value of header `name` in the last request head that arrived.
    fn last_header(&self, name: &str) -> Option<String> {
        self.last().lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

fn config_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "revproxy-routes-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).expect("write the config");
    path
}

fn stage9(name: &str, text: &str, extra: &[&str]) -> Proxy {
    let path = config_file(name, text);
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    Proxy::start(STAGE9, &[], &args)
}

/// One request with `Host: host` (none if empty) on a new connection.
fn request(proxy: &Proxy, method: &str, host: &str, target: &str, headers: &str) -> Response {
    let mut conn = proxy.connect();
    let host = if host.is_empty() {
        String::new()
    } else {
        format!("Host: {host}\r\n")
    };
    conn.send(
        format!("{method} {target} HTTP/1.1\r\n{host}{headers}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    conn.read_response(method)
}

fn get(proxy: &Proxy, host: &str, target: &str) -> Response {
    request(proxy, "GET", host, target, "")
}

/// The route table most tests share: every route names its hosts, so an unknown Host finds
/// none and gets the default (404).
fn table(one: SocketAddr, two: SocketAddr) -> String {
    format!(
        r#"
[upstreams.one]
servers = ["{one}"]
[upstreams.two]
servers = ["{two}"]

[[routes]]
name = "api"
hosts = ["a.test"]
path = "/api"
upstream = "one"

[[routes]]
name = "a-home"
hosts = ["a.test"]
return = {{ status = 200, body = "a.test home", headers = {{ "Content-Type" = "text/plain", "X-Fixed" = "yes" }} }}

[[routes]]
name = "wild"
hosts = ["*.example.test"]
upstream = "two"
upstream_host = "upstream"

[[routes]]
name = "s1"
hosts = ["svc.test"]
path = "/service1"
upstream = "one"
strip_prefix = true
request_headers = {{ set = {{ "X-Route" = "s1" }}, remove = ["Cookie"] }}
response_headers = {{ set = {{ "X-Served-By" = "revproxy" }}, remove = ["Server"] }}

[[routes]]
name = "s1-deep"
hosts = ["svc.test"]
path = "/service1/deep"
upstream = "two"

[[routes]]
name = "s2"
hosts = ["svc.test"]
path = "/service2"
upstream = "two"
strip_prefix = true
upstream_host = "backend.internal"

[[routes]]
name = "moved"
hosts = ["svc.test"]
path = "/old"
strip_prefix = true
redirect = {{ to = "https://new.test/base", status = 308, keep_path = true }}

[[routes]]
name = "gone"
hosts = ["svc.test"]
path = "/gone"
redirect = {{ to = "https://new.test/", status = 301 }}
"#
    )
}

#[test]
fn host_exact_and_wildcard_pick_the_routes() {
    let (one, two) = (Recorder::start("one"), Recorder::start("two"));
    let proxy = stage9("hosts", &table(one.addr, two.addr), &[]);

    let res = get(&proxy, "a.test", "/api/users");
    assert_eq!((res.status, res.text()), (200, "one /api/users".to_owned()));
    // Host compared without its port and case-insensitively.
    let res = get(&proxy, "A.Test:8080", "/api");
    assert_eq!(res.text(), "one /api");
    // Within a.test, /apix is not under /api: the host's / route answers.
    let res = get(&proxy, "a.test", "/apix");
    assert_eq!((res.status, res.text()), (200, "a.test home".to_owned()));

    let res = get(&proxy, "www.example.test", "/z?q=1");
    assert_eq!(res.text(), "two /z?q=1");
    assert_eq!(
        two.last_header("host").as_deref(),
        Some("two"),
        "upstream_host = upstream sends the group's name"
    );
    let res = get(&proxy, "x.y.example.test", "/");
    assert_eq!(res.text(), "two /");
    // A wildcard does not cover its bare domain; no route takes it.
    assert_eq!(get(&proxy, "example.test", "/").status, 404);
    // An absolute-form target's authority is the Host that routes.
    let res = get(&proxy, "ignored.test", "http://a.test/api/abs");
    assert_eq!(res.text(), "one /api/abs");
}

#[test]
fn longest_prefix_segment_boundaries_strip_prefix_and_query() {
    let (one, two) = (Recorder::start("one"), Recorder::start("two"));
    let proxy = stage9("prefix", &table(one.addr, two.addr), &[]);
    // (target, body: which backend saw which target)
    let cases = [
        ("/service1/x", "one /x"),
        ("/service1", "one /"),
        ("/service1/", "one /"),
        ("/service1?q=1&r", "one /?q=1&r"),
        ("/service1/x/y?z", "one /x/y?z"),
        ("/service1/deep/x", "two /service1/deep/x"), // the longer prefix wins, no strip
        ("/service2/y", "two /y"),
        // matched by the normalised path
        ("/%73ervice1/x", "one /x"),
        ("/service1/../service2/y", "two /y"),
        ("//service1//x", "one /x"),
    ];
    for (target, want) in cases {
        let res = get(&proxy, "svc.test", target);
        assert_eq!((res.status, res.text()), (200, want.to_owned()), "{target}");
    }
    // svc.test has no route at /: a prefix never matches part of a segment.
    let res = get(&proxy, "svc.test", "/service1foo");
    assert_eq!(res.status, 404, "{}", res.text());
    assert!(one.heads().iter().all(|h| !h.contains("service1foo")));
    // A path that cannot be normalised cannot be routed.
    assert_eq!(get(&proxy, "svc.test", "/service1/../../x").status, 400);
}

#[test]
fn host_sent_upstream_and_header_edits() {
    let (one, two) = (Recorder::start("one"), Recorder::start("two"));
    let proxy = stage9("headers", &table(one.addr, two.addr), &[]);

    let res = request(
        &proxy,
        "GET",
        "svc.test",
        "/service1/h",
        "Cookie: secret=1\r\nX-Route: forged\r\nx-route: forged-too\r\n",
    );
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-served-by"), Some("revproxy"));
    assert_eq!(
        res.header("server"),
        None,
        "Server removed from the response"
    );
    let head = one.last();
    assert_eq!(
        one.last_header("host").as_deref(),
        Some("svc.test"),
        "client's Host by default"
    );
    assert_eq!(one.last_header("x-route").as_deref(), Some("s1"));
    assert_eq!(
        head.to_ascii_lowercase().matches("x-route:").count(),
        1,
        "{head}"
    );
    assert!(!head.to_ascii_lowercase().contains("cookie"), "{head}");

    let res = get(&proxy, "svc.test", "/service2/h");
    assert_eq!(
        res.header("server"),
        Some("raw-backend"),
        "other routes keep it"
    );
    assert_eq!(two.last_header("host").as_deref(), Some("backend.internal"));
}

#[test]
fn fixed_response_redirects_and_head() {
    let (one, two) = (Recorder::start("one"), Recorder::start("two"));
    let proxy = stage9("fixed", &table(one.addr, two.addr), &[]);

    let res = get(&proxy, "a.test", "/anything");
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "a.test home");
    assert_eq!(res.header("content-type"), Some("text/plain"));
    assert_eq!(res.header("x-fixed"), Some("yes"));

    // HEAD gets the same headers and no body: the next response on the connection starts
    // right after the head.
    let mut conn = proxy.connect();
    conn.send_in_fragments(
        b"HEAD / HTTP/1.1\r\nHost: a.test\r\n\r\nGET /x HTTP/1.1\r\nHost: a.test\r\n\r\n",
        7,
    );
    let head = conn.read_response("HEAD");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("11"));
    assert_eq!(head.header("x-fixed"), Some("yes"));
    assert!(head.body.is_empty());
    let next = conn.read_response("GET");
    assert_eq!(next.text(), "a.test home");

    let res = get(&proxy, "svc.test", "/old/x/y?k=v");
    assert_eq!(res.status, 308);
    assert_eq!(
        res.header("location"),
        Some("https://new.test/base/x/y?k=v")
    );
    let res = get(&proxy, "svc.test", "/gone/anything");
    assert_eq!(res.status, 301);
    assert_eq!(res.header("location"), Some("https://new.test/"));
    assert!(
        one.heads().is_empty() && two.heads().is_empty(),
        "fixed answers and redirects never reach a backend"
    );
}

#[test]
fn unknown_host_gets_the_default_status_or_the_default_route() {
    let (one, two) = (Recorder::start("one"), Recorder::start("two"));
    let proxy = stage9("unknown", &table(one.addr, two.addr), &[]);
    assert_eq!(get(&proxy, "nobody.test", "/service1/x").status, 404);
    // No Host at all (HTTP/1.0) only meets routes without hosts: none here.
    let mut conn = proxy.connect();
    conn.send(b"GET /service1/x HTTP/1.0\r\n\r\n");
    assert_eq!(conn.read_response("GET").status, 404);
    assert!(one.heads().is_empty());

    let text = format!(
        "{}\n[routing]\ndefault_route = \"s2\"\n",
        table(one.addr, two.addr)
    );
    let proxy = stage9("default-route", &text, &[]);
    let res = get(&proxy, "nobody.test", "/service2/z");
    assert_eq!(
        res.text(),
        "two /z",
        "the default route strips its own prefix"
    );
    let res = get(&proxy, "nobody.test", "/elsewhere");
    assert_eq!(res.text(), "two /elsewhere");

    let text = format!(
        "{}\n[routing]\ndefault_status = 421\n",
        table(one.addr, two.addr)
    );
    let proxy = stage9("default-status", &text, &[]);
    assert_eq!(get(&proxy, "nobody.test", "/").status, 421);
}

#[test]
fn a_dead_server_in_one_group_does_not_touch_the_other() {
    let (one, two) = (Recorder::start("one"), Recorder::start("two"));
    let dead = dead_addr();
    let text = format!(
        r#"
[upstreams.alive]
servers = ["{one}"]
[upstreams.alive.health]
interval_ms = 100
timeout_ms = 100
rise = 1
fall = 1
[upstreams.mixed]
servers = ["{dead}", "{two}"]
[upstreams.mixed.health]
interval_ms = 100
timeout_ms = 100
rise = 1
fall = 1
[[routes]]
path = "/alive"
upstream = "alive"
[[routes]]
path = "/mixed"
upstream = "mixed"
"#,
        one = one.addr,
        two = two.addr
    );
    let proxy = stage9("groups", &text, &[]);
    for i in 0..6 {
        let res = get(&proxy, "t", &format!("/alive/{i}"));
        assert_eq!((res.status, res.text()), (200, format!("one /alive/{i}")));
        let res = get(&proxy, "t", &format!("/mixed/{i}"));
        assert_eq!(
            (res.status, res.text()),
            (200, format!("two /mixed/{i}")),
            "the dead server is retried past, then skipped"
        );
    }
    assert_eq!(one.heads().len(), 6);
    assert_eq!(two.heads().len(), 6);
    assert!(one.heads().iter().all(|h| h.starts_with("GET /alive/")));
}

#[test]
fn the_cache_keys_by_route() {
    let (one, two) = (Recorder::start("one"), Recorder::start("two"));
    let text = format!(
        r#"
[cache]
enabled = true
[upstreams.one]
servers = ["{one}"]
[upstreams.two]
servers = ["{two}"]
[[routes]]
path = "/one"
upstream = "one"
strip_prefix = true
[[routes]]
path = "/two"
upstream = "two"
strip_prefix = true
"#,
        one = one.addr,
        two = two.addr
    );
    let proxy = stage9("cache", &text, &[]);
    let first = get(&proxy, "t", "/one/x");
    assert_eq!(first.text(), "one /x");
    let again = get(&proxy, "t", "/one/x");
    assert_eq!(again.text(), "one /x");
    assert_eq!(again.header("x-cache"), Some("HIT"), "the cache is on");
    // Both routes send /x upstream; the second must not get the first's body.
    let other = get(&proxy, "t", "/two/x");
    assert_eq!(other.text(), "two /x");
    assert_ne!(other.header("x-cache"), Some("HIT"));
    assert_eq!((one.heads().len(), two.heads().len()), (1, 1));
}

/// RFC 9111 section 4.4 under a route: a successful POST invalidates the URLs its response
/// names (`Location`, `Content-Location`), which the origin writes in its own paths, behind
/// the route's stripped prefix; they are the keys of the route the POST took.
#[test]
fn an_unsafe_request_invalidates_the_locations_it_names_within_its_route() {
    let origin = raw_backend(|mut stream| loop {
        let head = read_request_head(&mut stream);
        if !head.ends_with(b"\r\n\r\n") {
            return;
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let target = text.split(' ').nth(1).unwrap_or("").to_owned();
        let response = if text.starts_with("POST") {
            // The test's POST carries two bytes of body.
            let mut body = [0u8; 2];
            if std::io::Read::read_exact(&mut stream, &mut body).is_err() {
                return;
            }
            "HTTP/1.1 200 OK\r\nLocation: /made\r\nContent-Location: /listed\r\n\
             Content-Length: 0\r\n\r\n"
                .to_owned()
        } else {
            let body = format!("got {target}");
            format!(
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    });
    let text = format!(
        r#"
[cache]
enabled = true
[upstreams.app]
servers = ["{origin}"]
[[routes]]
path = "/app"
upstream = "app"
strip_prefix = true
"#
    );
    let proxy = stage9("invalidate", &text, &[]);
    for path in ["/app/made", "/app/listed", "/app/kept"] {
        assert_eq!(get(&proxy, "t", path).header("x-cache"), Some("MISS"));
        assert_eq!(get(&proxy, "t", path).header("x-cache"), Some("HIT"));
    }
    let mut conn = proxy.connect();
    conn.send(b"POST /app/new HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(conn.read_response("POST").status, 200);
    for path in ["/app/made", "/app/listed"] {
        let res = get(&proxy, "t", path);
        assert_eq!(
            res.header("x-cache"),
            Some("MISS"),
            "{path} was invalidated"
        );
    }
    assert_eq!(get(&proxy, "t", "/app/kept").header("x-cache"), Some("HIT"));
}

#[test]
fn demo_backends_start_for_every_group() {
    let text = r#"
[upstreams.service1]
servers = ["127.0.0.1:0"]
[upstreams.service2]
servers = ["127.0.0.1:0"]
[[routes]]
path = "/service1"
upstream = "service1"
strip_prefix = true
[[routes]]
path = "/service2"
upstream = "service2"
strip_prefix = true
"#;
    let proxy = stage9("demo", text, &["--demo"]);
    let res = get(&proxy, "t", "/service1/");
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-backend-server"), Some("service1-1"));
    let res = get(&proxy, "t", "/service2/");
    assert_eq!(res.header("x-backend-server"), Some("service2-1"));
    assert_eq!(get(&proxy, "t", "/").status, 404);
}

fn check(bin: &str, path: &Path) -> (i32, String) {
    let out = Command::new(bin)
        .args(["-t", "--config", path.to_str().unwrap()])
        .output()
        .expect("run -t");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_flag_names_line_and_column_and_passes_the_full_example() {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.full.toml");
    let (code, text) = check(STAGE9, &full);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("5 routes"), "{text}");

    let bad = config_file(
        "bad",
        "[upstreams.app]\nservers = [\"127.0.0.1:8000\"]\n[[routes]]\npath = \"/x\"\nupstream = \"web\"\n",
    );
    let (code, text) = check(STAGE9, &bad);
    assert_eq!(code, 78, "{text}");
    assert!(
        text.contains(&format!(
            "{}:5:12: no [upstreams.web] is defined",
            bad.display()
        )),
        "{text}"
    );

    // Stages 6 to 8 would not follow the routes: they refuse the file rather than ignore them.
    let (code, text) = check(STAGE8, &full);
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("stage9 only"), "{text}");
}

#[test]
fn access_runs_before_routing() {
    let (one, two) = (Recorder::start("one"), Recorder::start("two"));
    let text = format!(
        "{}\n[access]\n[access.keys]\nlist = [{{ name = \"k\", key = \"route-test-key-0123\" }}]\n\
         [[access.rules]]\npath = \"/service1\"\nauth = \"key\"\n",
        table(one.addr, two.addr)
    );
    let proxy = stage9("access", &text, &[]);
    // The access rule sees the normalised path too: the encoded spelling is refused alike.
    for target in ["/service1/x", "/%73ervice1/x"] {
        assert_eq!(get(&proxy, "svc.test", target).status, 401, "{target}");
    }
    assert!(one.heads().is_empty(), "a refused request reaches no route");
    let res = request(
        &proxy,
        "GET",
        "svc.test",
        "/service1/x",
        "X-API-Key: route-test-key-0123\r\n",
    );
    assert_eq!((res.status, res.text()), (200, "one /x".to_owned()));
    assert_eq!(get(&proxy, "svc.test", "/service2/x").text(), "two /x");
}

/// Each group's own `read_timeout_ms` and `retries` apply to the requests routed to it, not the
/// default group's: a silent backend behind a group with a 300 ms read timeout gets a 504 (the
/// default group, on the same server, waits 60 s, longer than this client), and of two requests
/// to a group with `retries = 0` over a dead server and a live one, the one sent to the dead
/// server gets a 502 where the group with `retries = 1` tries the next server and answers both.
#[test]
fn each_group_applies_its_own_read_timeout_and_retries() {
    let silent = raw_backend(|mut stream| {
        let _ = read_request_head(&mut stream);
        // Holds the request unanswered until the proxy gives up and closes (or the timeout).
        let _ = std::io::Read::read(&mut stream, &mut [0u8; 1]);
    });
    let live = Recorder::start("live");
    let dead = dead_addr();
    let text = format!(
        r#"
[server]
upstream = "patient"

[upstreams.patient]
servers = ["{silent}"]

[upstreams.hasty]
servers = ["{silent}"]
read_timeout_ms = 300
connect_timeout_ms = 5000

[upstreams.retrying]
servers = ["{dead}", "{live}"]
retries = 1

[upstreams.once]
servers = ["{dead}", "{live}"]
retries = 0

[[routes]]
name = "hasty"
path = "/hasty"
upstream = "hasty"

[[routes]]
name = "retrying"
path = "/retrying"
upstream = "retrying"

[[routes]]
name = "once"
path = "/once"
upstream = "once"
"#,
        live = live.addr
    );
    let proxy = stage9("group-policy", &text, &[]);
    assert_eq!(get(&proxy, "a.test", "/hasty").status, 504);
    let retrying: Vec<u16> = (0..2)
        .map(|_| get(&proxy, "a.test", "/retrying").status)
        .collect();
    assert_eq!(retrying, [200, 200]);
    let mut once: Vec<u16> = (0..2)
        .map(|_| get(&proxy, "a.test", "/once").status)
        .collect();
    once.sort_unstable();
    assert_eq!(once, [200, 502]);
}
