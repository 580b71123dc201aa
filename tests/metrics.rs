//! The admin listener over real sockets: the real `stage8` binary with an `[admin]` section,
//! in front of a live backend and a dead one. A known sequence of requests goes through the
//! proxy; then `/metrics` is scraped and every line parsed by a strict parser of the text
//! format, `/status.json` is read, the key is enforced, and (where Debian's `chromium` is
//! installed) the HTML page is loaded in headless Chromium.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use support::{connect, dead_addr, raw_backend, read_request_head, Response, TIMEOUT};

const STAGE8: &str = env!("CARGO_BIN_EXE_stage8");
const STAGE9: &str = env!("CARGO_BIN_EXE_stage9");
const ADMIN_KEY: &str = "admin-secret-1";

/// A backend: `/missing` is 404, `/cached` may be cached for a minute, the rest is `200 ok`.
fn backend() -> SocketAddr {
    raw_backend(|mut stream| loop {
        let head = read_request_head(&mut stream);
        if !head.ends_with(b"\r\n\r\n") {
            return;
        }
        let line = String::from_utf8_lossy(&head);
        let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
        let reply: &[u8] = match path.as_str() {
            "/missing" => b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope",
            "/cached" => {
                b"HTTP/1.1 200 OK\r\nCache-Control: public, max-age=60\r\nContent-Length: 6\r\n\r\ncached"
            }
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        if stream.write_all(reply).is_err() {
            return;
        }
    })
}

/// stage8 with a cache, a key-protected `/private`, health checks and `[admin]`.
struct Stage {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(name: &str, servers: &[SocketAddr], admin: &str) -> Stage {
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let text = format!(
        "[server]\nworkers = 4\n\
         [upstreams.app]\nservers = [{}]\n\
         [upstreams.app.health]\npath = \"/health\"\ninterval_ms = 100\ntimeout_ms = 100\nrise = 1\nfall = 1\n\
         [cache]\nenabled = true\n\
         [access]\n[access.keys]\nlist = [{{ name = \"alice\", key = \"k-123\" }}]\n\
         [[access.rules]]\npath = \"/private\"\nauth = \"key\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{admin}",
        servers.join(", ")
    );
    start_with(STAGE8, name, &text)
}

/// `bin` with the configuration `text`, and the addresses it announces.
fn start_with(bin: &str, name: &str, text: &str) -> Stage {
    let path: PathBuf = std::env::temp_dir().join(format!(
        "revproxy-metrics-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).expect("write the config");
    let mut child = Command::new(bin)
        .args(["--config", path.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut addr, mut admin) = (None, None);
    let deadline = Instant::now() + TIMEOUT;
    while addr.is_none() || admin.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            panic!("{bin} did not announce its listener and its admin listener");
        };
        if let Some(a) = line.split("listening on ").nth(1) {
            addr = a.trim().parse().ok();
        }
        if let Some(a) = line.split("admin on http://").nth(1) {
            admin = a.split_whitespace().next().and_then(|a| a.parse().ok());
        }
    }
    Stage {
        child,
        addr: addr.unwrap(),
        admin: admin.unwrap(),
    }
}

/// One request on a new connection; `extra` are header lines.
fn get(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Response {
    let mut conn = connect(addr);
    conn.send(
        format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    conn.read_response(method)
}

fn key_header() -> String {
    format!("X-API-Key: {ADMIN_KEY}\r\n")
}

fn status_json(stage: &Stage) -> serde_json::Value {
    let res = get(stage.admin, "GET", "/status.json", &key_header());
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("content-type"), Some("application/json"));
    serde_json::from_slice(&res.body).expect("/status.json is JSON")
}

/// Waits (bounded) until the health checks have a verdict on every server: the live ones
/// UP, the dead one DOWN, so that no request of the test meets the dead one.
fn wait_for_verdicts(stage: &Stage, servers: usize) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let status = status_json(stage);
        let states: Vec<String> = status["upstreams"][0]["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .map(|s| s["state"].as_str().unwrap_or("").to_owned())
            .collect();
        if states.len() == servers && states.iter().all(|s| s != "UNKNOWN") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no verdict on every server: {states:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// `/metrics` once `want` requests are counted. An exchange is counted when it is logged,
/// just after its last byte went out, so the client may read it a moment before: wait
/// (bounded) for the count rather than race it.
fn scrape_when_counted(stage: &Stage, extra: &str, want: f64) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let res = get(stage.admin, "GET", "/metrics", extra);
        assert_eq!(res.status, 200, "{}", res.text());
        let text = res.text();
        let (_, samples) = parse_exposition(&text);
        let counted = total(&samples, "revproxy_requests_total", &[]);
        if counted >= want {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "only {counted} of {want} requests were counted"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// One sample line, parsed.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict parser of the text format 0.0.4 as we emit it: every line is `# HELP`, `# TYPE`
/// or a sample of a family whose TYPE came first; names and label names are valid, label
/// values use only the three escapes, a series appears once. Any other line fails the test.
fn parse_exposition(text: &str) -> (HashMap<String, String>, Vec<Sample>) {
    assert!(text.ends_with('\n'), "the scrape ends with a line feed");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let mut series = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let fail = |why: &str| -> ! { panic!("line {}: {why}: {line:?}", n + 1) };
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .unwrap_or_else(|| fail("HELP without text"));
            if !valid_name(name) {
                fail("bad metric name");
            }
            let mut chars = help.chars();
            while let Some(c) = chars.next() {
                if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                    fail("bad escape in HELP");
                }
            }
            if helps.insert(name.to_owned(), help.to_owned()).is_some() {
                fail("second HELP");
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .unwrap_or_else(|| fail("TYPE without type"));
            if !valid_name(name)
                || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
            {
                fail("bad TYPE");
            }
            if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                fail("second TYPE");
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            fail("not a HELP, TYPE or sample line");
        }
        let sample = parse_sample(line).unwrap_or_else(|why| fail(&why));
        let family =
            family_of(&sample.name, &types).unwrap_or_else(|| fail("sample before its TYPE"));
        if !helps.contains_key(&family) {
            fail("family without HELP");
        }
        if types[&family] == "counter" && (sample.value < 0.0 || sample.value.is_nan()) {
            fail("a counter below zero");
        }
        if sample.name.ends_with("_bucket") && !sample.labels.contains_key("le") {
            fail("bucket without le");
        }
        if !series.insert(format!("{}{:?}", sample.name, sample.labels)) {
            fail("the same series twice");
        }
        samples.push(sample);
    }
    (types, samples)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn family_of(name: &str, types: &HashMap<String, String>) -> Option<String> {
    if types.contains_key(name) {
        return Some(name.to_owned());
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        (types.get(base).map(String::as_str) == Some("histogram")).then(|| base.to_owned())
    })
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err("bad metric name".into());
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            // label name
            let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
            let mut end = start;
            while let Some(&(i, c)) = chars.peek() {
                if c == '=' {
                    end = i;
                    break;
                }
                chars.next();
            }
            let label = &inner[start..end];
            if !valid_name(label) || label.contains(':') {
                return Err(format!("bad label name {label:?}"));
            }
            chars.next(); // '='
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '"' => break,
                    '\\' => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    '\n' => return Err("line feed in a label value".into()),
                    c => value.push(c),
                }
            }
            if labels.insert(label.to_owned(), value).is_some() {
                return Err(format!("label {label} twice"));
            }
            match chars.next().ok_or("unterminated labels")? {
                (_, ',') => continue,
                (i, '}') => {
                    rest = &inner[i + 1..];
                    break;
                }
                (_, c) => return Err(format!("unexpected {c:?} after a label")),
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    if value.contains(' ') {
        return Err("a timestamp or junk after the value".into());
    }
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The sum of `name`'s samples whose labels include every pair of `with`.
fn total(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Every histogram series: buckets rise with `le`, end at `+Inf`, and `+Inf` is `_count`.
fn check_histograms(types: &HashMap<String, String>, samples: &[Sample]) -> usize {
    let mut checked = 0;
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let mut by_series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for s in samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let mut labels = s.labels.clone();
            let le = labels.remove("le").expect("le");
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("numeric le")
            };
            by_series
                .entry(format!("{labels:?}"))
                .or_default()
                .push((le, s.value));
        }
        assert!(!by_series.is_empty(), "{family} has no buckets");
        for (labels, buckets) in by_series {
            assert!(
                buckets.windows(2).all(|w| w[0].0 < w[1].0),
                "{family}{labels}: le in order"
            );
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}{labels}: buckets are cumulative"
            );
            let (last_le, last) = *buckets.last().unwrap();
            assert!(last_le.is_infinite(), "{family}{labels} ends with +Inf");
            let count = samples
                .iter()
                .find(|s| {
                    s.name == format!("{family}_count") && format!("{:?}", s.labels) == labels
                })
                .unwrap_or_else(|| panic!("{family}{labels} has a _count"));
            assert_eq!(
                count.value, last,
                "{family}{labels}: _count is the +Inf bucket"
            );
            assert!(
                samples
                    .iter()
                    .any(|s| s.name == format!("{family}_sum")
                        && format!("{:?}", s.labels) == labels),
                "{family}{labels} has a _sum"
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn metrics_count_a_known_sequence_and_every_line_parses() {
    let live = backend();
    let dead = dead_addr();
    let stage = start(
        "sequence",
        &[live, dead],
        &format!("api_key = \"{ADMIN_KEY}\"\n"),
    );
    wait_for_verdicts(&stage, 2);

    // 3 x 200, 1 x 404, 1 refused 401 by access, 1 cache miss then 2 hits: 8 requests.
    for _ in 0..3 {
        assert_eq!(get(stage.addr, "GET", "/ok", "").status, 200);
    }
    assert_eq!(get(stage.addr, "GET", "/missing", "").status, 404);
    assert_eq!(get(stage.addr, "GET", "/private", "").status, 401);
    let mut conn = connect(stage.addr);
    for want in ["MISS", "HIT", "HIT"] {
        conn.send(b"GET /cached HTTP/1.1\r\nHost: t\r\n\r\n");
        let res = conn.read_response("GET");
        assert_eq!((res.status, res.header("x-cache")), (200, Some(want)));
    }
    drop(conn);
    scrape_when_counted(&stage, &key_header(), 8.0);

    // The scrape itself is sent in fragments, as a slow client would.
    let mut admin = connect(stage.admin);
    let request = format!("GET /metrics HTTP/1.1\r\nHost: a\r\n{}\r\n", key_header());
    admin.send_in_fragments(request.as_bytes(), 7);
    let res = admin.read_response("GET");
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = res.text();
    let (types, samples) = parse_exposition(&text);

    let requests = "revproxy_requests_total";
    assert_eq!(types[requests], "counter");
    assert_eq!(total(&samples, requests, &[]), 8.0, "{text}");
    assert_eq!(total(&samples, requests, &[("status", "2xx")]), 6.0);
    assert_eq!(total(&samples, requests, &[("status", "4xx")]), 2.0);
    assert_eq!(total(&samples, requests, &[("method", "GET")]), 8.0);
    assert_eq!(total(&samples, requests, &[("route", "default")]), 8.0);
    assert_eq!(
        total(&samples, requests, &[("upstream", "app")]),
        5.0,
        "3 ok, 1 missing, 1 miss"
    );
    assert_eq!(
        total(&samples, requests, &[("upstream", "none")]),
        3.0,
        "the 401 and 2 hits"
    );
    let live_s = live.to_string();
    let dead_s = dead.to_string();
    let duration = "revproxy_request_duration_seconds";
    assert_eq!(types[duration], "histogram");
    assert_eq!(
        total(
            &samples,
            &format!("{duration}_count"),
            &[("route", "default")]
        ),
        8.0
    );
    assert!(
        check_histograms(&types, &samples) >= 3,
        "route and per-server histograms"
    );

    fn at(server: &str) -> Vec<(&str, &str)> {
        vec![("upstream", "app"), ("server", server)]
    }
    let upstream_requests = "revproxy_upstream_requests_total";
    assert_eq!(total(&samples, upstream_requests, &at(&live_s)), 5.0);
    let mut live_4xx = at(&live_s);
    live_4xx.push(("status", "4xx"));
    assert_eq!(total(&samples, upstream_requests, &live_4xx), 1.0);
    assert_eq!(total(&samples, upstream_requests, &at(&dead_s)), 0.0);
    assert_eq!(
        total(&samples, "revproxy_upstream_server_up", &at(&live_s)),
        1.0
    );
    assert_eq!(
        total(&samples, "revproxy_upstream_server_up", &at(&dead_s)),
        0.0
    );
    let mut dead_down = at(&dead_s);
    dead_down.push(("state", "down"));
    assert_eq!(
        total(&samples, "revproxy_upstream_server_state", &dead_down),
        1.0
    );
    assert_eq!(
        total(&samples, "revproxy_upstream_server_state", &at(&dead_s)),
        1.0,
        "one state at a time"
    );
    let mut dead_failed = at(&dead_s);
    dead_failed.push(("result", "failed"));
    assert!(total(&samples, "revproxy_health_checks_total", &dead_failed) >= 1.0);
    let mut live_failed = at(&live_s);
    live_failed.push(("result", "failed"));
    assert_eq!(
        total(&samples, "revproxy_health_checks_total", &live_failed),
        0.0
    );

    assert_eq!(total(&samples, "revproxy_cache_hits_total", &[]), 2.0);
    // Every GET the cache looked up and did not have: /ok x 3, /missing, the first /cached.
    assert_eq!(total(&samples, "revproxy_cache_misses_total", &[]), 5.0);
    assert_eq!(total(&samples, "revproxy_cache_stores_total", &[]), 1.0);
    assert_eq!(total(&samples, "revproxy_cache_entries", &[]), 1.0);
    assert!(total(&samples, "revproxy_cache_bytes", &[]) > 0.0);
    let decisions = "revproxy_access_decisions_total";
    assert_eq!(total(&samples, decisions, &[("decision", "allowed")]), 7.0);
    assert_eq!(
        total(&samples, decisions, &[("decision", "unauthorized")]),
        1.0
    );
    assert_eq!(
        total(&samples, decisions, &[("decision", "forbidden")]),
        0.0
    );
    assert_eq!(total(&samples, "revproxy_pool_workers", &[]), 4.0);
    assert_eq!(types["revproxy_connections_open"], "gauge");
    assert_eq!(total(&samples, "revproxy_tls_handshakes_total", &[]), 0.0);
    assert_eq!(
        total(&samples, "revproxy_tls_handshake_failures_total", &[]),
        0.0
    );
    // 3 x "ok", "nope", and "cached" three times; the 401's body is the proxy's own.
    let bytes = total(&samples, "revproxy_response_bytes_total", &[]);
    assert!(bytes >= (3 * 2 + 4 + 3 * 6) as f64, "{bytes}");

    // A kept-alive connection between requests: open, parked and idle.
    let mut kept = connect(stage.addr);
    kept.send(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(kept.read_response("GET").status, 200);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let res = get(stage.admin, "GET", "/metrics", &key_header());
        let (_, now) = parse_exposition(&res.text());
        let gauge = |name: &str| total(&now, name, &[]);
        if gauge("revproxy_connections_parked") >= 1.0 {
            assert!(gauge("revproxy_connections_open") >= 1.0);
            assert!(gauge("revproxy_connections_idle") >= 1.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the kept connection never showed as parked"
        );
        thread::sleep(Duration::from_millis(20));
    }
    drop(kept);

    // /status.json: every server, with the same numbers.
    let status = status_json(&stage);
    let servers = status["upstreams"][0]["servers"]
        .as_array()
        .expect("servers");
    assert_eq!(status["upstreams"][0]["name"], "app");
    assert_eq!(servers.len(), 2);
    let by_addr = |addr: &str| {
        servers
            .iter()
            .find(|s| s["addr"] == addr)
            .expect("listed")
            .clone()
    };
    let (l, d) = (by_addr(&live_s), by_addr(&dead_s));
    assert_eq!(
        (l["state"].as_str(), l["up"].as_u64()),
        (Some("UP"), Some(1))
    );
    assert_eq!(
        (d["state"].as_str(), d["up"].as_u64()),
        (Some("DOWN"), Some(0))
    );
    // The 5 counted above and the kept connection's request.
    assert_eq!(
        (l["requests"].as_u64(), l["errors"].as_u64()),
        (Some(6), Some(0))
    );
    assert_eq!(l["by_status"]["4xx"], 1);
    assert_eq!(l["weight"], 1);
    assert_eq!(l["last_check"]["passed"], true);
    assert_eq!(d["last_check"]["passed"], false);
    assert!(
        d["last_check"]["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("connect"),
        "{d}"
    );
    assert!(d["checks_failed"].as_u64() >= Some(1));
    assert!(l["mean_ms"].as_f64().is_some());
    assert_eq!(status["cache"]["hits"], 2);
    assert_eq!(status["access"]["unauthorized"], 1);
    assert_eq!(status["pool"]["workers"], 4);
    assert_eq!(status["routes"][0]["name"], "default");
    assert_eq!(status["routes"][0]["requests"], 9);
    assert!(status["uptime_seconds"].as_f64() > Some(0.0));
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_admin_key_is_enforced_and_bad_requests_get_their_status() {
    let stage = start("key", &[backend()], &format!("api_key = \"{ADMIN_KEY}\"\n"));
    // (method, path, extra header lines, status)
    let bearer = format!("Authorization: Bearer {ADMIN_KEY}\r\n");
    let table: &[(&str, &str, &str, u16)] = &[
        ("GET", "/metrics", "", 401),
        ("GET", "/status", "X-API-Key: admin-secret-2\r\n", 401),
        (
            "GET",
            "/status.json",
            "Authorization: Bearer admin-secret\r\n",
            401,
        ),
        ("GET", "/metrics", &key_header(), 200),
        ("GET", "/status", &bearer, 200),
        ("HEAD", "/status.json", &bearer, 200),
        ("GET", "/status.json?pretty", &key_header(), 200),
        ("GET", "/nothing-here", &key_header(), 404),
        ("GET", "/", &key_header(), 302),
        ("POST", "/metrics", &key_header(), 405),
        ("DELETE", "/status", "", 405),
    ];
    for (method, path, extra, want) in table {
        let res = get(stage.admin, method, path, extra);
        assert_eq!(
            res.status,
            *want,
            "{method} {path} {extra:?}: {}",
            res.text()
        );
        if *want == 401 {
            assert!(res
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")));
        }
        if *want == 405 {
            assert_eq!(res.header("allow"), Some("GET, HEAD"));
        }
    }
    let html = get(stage.admin, "GET", "/status", &key_header());
    assert!(html
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    assert!(html
        .text()
        .contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    assert!(!html.text().contains("<script"), "no JavaScript");
    // Garbage is a 400, and a client that says nothing is let go; the proxy serves on.
    let mut conn = connect(stage.admin);
    conn.send(b"this is not http\r\n\r\n");
    assert_eq!(conn.read_response("GET").status, 400);
    assert_eq!(
        get(stage.addr, "GET", "/", "").status,
        200,
        "the main listener still serves"
    );
}

/// Debian's chromium, if installed.
fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Runs headless chromium on `url` with `args`, bounded by `timeout(1)`; its stdout.
fn run_chromium(chromium: &PathBuf, url: &str, args: &[String]) -> String {
    let profile = std::env::temp_dir().join(format!(
        "revproxy-chromium-{}-{}",
        std::process::id(),
        args.len()
    ));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).expect("a fresh profile directory");
    let out = Command::new("timeout")
        .args(["--kill-after=5", "60"])
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed or timed out: {:?}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The table row (`<tr ...>...</tr>`) of the DOM that names `addr`.
fn row_of<'a>(dom: &'a str, addr: &str) -> &'a str {
    let at = dom
        .find(&format!(">{addr}<"))
        .unwrap_or_else(|| panic!("{addr} is not on the page"));
    let start = dom[..at].rfind("<tr").expect("in a row");
    let end = at + dom[at..].find("</tr>").expect("row ends");
    &dom[start..end]
}

#[test]
fn the_status_page_in_headless_chromium_lists_every_server_and_its_state() {
    let Some(chromium) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed: .ci/run installs Debian's chromium package for this test");
        }
        println!("skipped: chromium not installed");
        return;
    };
    let (a, b, dead) = (backend(), backend(), dead_addr());
    let stage = start("chromium", &[a, b, dead], "");
    wait_for_verdicts_open(&stage, 3);
    for path in ["/", "/a", "/missing", "/private", "/cached", "/cached"] {
        get(stage.addr, "GET", path, "");
    }
    let url = format!("http://{}/status", stage.admin);
    let dom = run_chromium(&chromium, &url, &["--dump-dom".to_owned()]);
    assert!(dom.contains("revproxy status"), "{dom}");
    assert!(dom.contains("upstream app"), "{dom}");
    for (addr, state) in [(a, "UP"), (b, "UP"), (dead, "DOWN")] {
        let row = row_of(&dom, &addr.to_string());
        assert!(
            row.contains(&format!(">{state}<")),
            "{addr} is not shown {state}: {row}"
        );
        assert!(
            row.contains(&format!("class=\"{}\"", state.to_ascii_lowercase())),
            "{row}"
        );
    }
    // `REVPROXY_SCREENSHOT=chapters/img/status-page.png` also takes the chapter's picture.
    if let Some(path) = std::env::var_os("REVPROXY_SCREENSHOT") {
        let path = PathBuf::from(path);
        let path = if path.is_absolute() {
            path
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
        };
        run_chromium(
            &chromium,
            &url,
            &[
                format!("--screenshot={}", path.display()),
                "--window-size=1200,800".to_owned(),
            ],
        );
        assert!(path.exists(), "the screenshot was written");
    }
}

/// Like `wait_for_verdicts`, for a stage without an admin key.
fn wait_for_verdicts_open(stage: &Stage, servers: usize) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let res = get(stage.admin, "GET", "/status.json", "");
        assert_eq!(res.status, 200, "no key is asked for");
        let status: serde_json::Value = serde_json::from_slice(&res.body).expect("JSON");
        let servers_json = status["upstreams"][0]["servers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if servers_json.len() == servers && servers_json.iter().all(|s| s["state"] != "UNKNOWN") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no verdict on every server: {status}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The parser is strict: each malformed scrape fails it (so a pass above means something).
#[test]
fn the_parser_refuses_malformed_lines() {
    let head = "# HELP x_total X.\n# TYPE x_total counter\n";
    let bad = [
        "x_total 1\n",                                                       // no TYPE first
        "# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"b} 1\n",     // unterminated
        "# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"\\q\"} 1\n", // bad escape
        "# HELP x_total X.\n# TYPE x_total counter\nx_total{1a=\"b\"} 1\n",  // bad label name
        "# HELP x_total X.\n# TYPE x_total counter\nx_total one\n",          // bad value
        "# HELP x_total X.\n# TYPE x_total counter\nx_total 1 2 3\n",        // junk
        "# HELP x_total X.\n# TYPE x_total counter\nx_total 1\nx_total 2\n", // same series twice
        "# HELP x_total X.\n# TYPE x_total counter\nx_total -1\n",           // a counter below zero
        "# HELP x_total X.\n# TYPE x_total counter\n\n",                     // an empty line
        "# HELP x_total X.\n# TYPE x_total counter\n# comment\n",            // a stray comment
        "# HELP x_total X.\n# TYPE x_total countr\n",                        // unknown type
        "# HELP x_total X.\n# TYPE x_total counter\nx_total 1",              // no final line feed
    ];
    for text in bad {
        let result = std::panic::catch_unwind(|| parse_exposition(text));
        assert!(result.is_err(), "accepted: {text:?}");
    }
    let (_, samples) = parse_exposition(&format!("{head}x_total{{a=\"q\\\"\\\\\\n\"}} 1.5\n"));
    assert_eq!(samples[0].labels["a"], "q\"\\\n");
    assert_eq!(samples[0].value, 1.5);
}

/// Stage 9: requests count by route name, a fixed page under `upstream="none"`, and every
/// group with its servers on the status.
#[test]
fn stage9_counts_by_route_and_shows_every_group() {
    let (web, api) = (backend(), backend());
    let text = format!(
        "[upstreams.web]\nservers = [\"{web}\"]\n\
         [upstreams.api]\nservers = [\"{api}\"]\n\
         [[routes]]\nname = \"api\"\npath = \"/api\"\nupstream = \"api\"\nstrip_prefix = true\n\
         [[routes]]\nname = \"site\"\npath = \"/site\"\nupstream = \"web\"\n\
         [[routes]]\nname = \"home\"\npath = \"/\"\nreturn = {{ status = 200, body = \"hi\" }}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n"
    );
    let stage = start_with(STAGE9, "stage9", &text);
    for (path, status) in [
        ("/api/x", 200),
        ("/api/missing", 404),
        ("/api/y", 200),
        ("/site/z", 200),
        ("/", 200),
    ] {
        assert_eq!(get(stage.addr, "GET", path, "").status, status, "{path}");
    }
    let text = scrape_when_counted(&stage, "", 5.0);
    let (types, samples) = parse_exposition(&text);
    check_histograms(&types, &samples);
    let requests = "revproxy_requests_total";
    assert_eq!(
        total(&samples, requests, &[("route", "api"), ("upstream", "api")]),
        3.0,
        "{}",
        text.lines()
            .filter(|l| l.starts_with(requests) && !l.ends_with(" 0"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        total(&samples, requests, &[("route", "api"), ("status", "4xx")]),
        1.0
    );
    assert_eq!(
        total(
            &samples,
            requests,
            &[("route", "site"), ("upstream", "web")]
        ),
        1.0
    );
    assert_eq!(
        total(
            &samples,
            requests,
            &[("route", "home"), ("upstream", "none")]
        ),
        1.0
    );
    assert_eq!(total(&samples, requests, &[]), 5.0);
    let api_s = api.to_string();
    let at_api = [("upstream", "api"), ("server", api_s.as_str())];
    assert_eq!(
        total(&samples, "revproxy_upstream_requests_total", &at_api),
        3.0
    );
    assert_eq!(
        total(&samples, "revproxy_upstream_server_up", &at_api),
        1.0,
        "no checks: takes traffic"
    );

    let res = get(stage.admin, "GET", "/status.json", "");
    let status: serde_json::Value = serde_json::from_slice(&res.body).expect("JSON");
    let mut servers: Vec<(String, String, String)> = Vec::new();
    for g in status["upstreams"].as_array().expect("upstreams") {
        for s in g["servers"].as_array().expect("servers") {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
            servers.push((text(&g["name"]), text(&s["addr"]), text(&s["state"])));
        }
    }
    servers.sort();
    let mut want = vec![
        ("api".to_owned(), api_s.clone(), "UNKNOWN".to_owned()),
        ("web".to_owned(), web.to_string(), "UNKNOWN".to_owned()),
    ];
    want.sort();
    assert_eq!(servers, want);
    let routes: Vec<(String, u64)> = status["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or("").to_owned(),
                r["requests"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    for (name, count) in [("api", 3), ("site", 1), ("home", 1), ("default", 0)] {
        assert!(
            routes.contains(&(name.to_owned(), count)),
            "{name} {count} in {routes:?}"
        );
    }
    let page = get(stage.admin, "GET", "/status", "").text();
    assert!(page.contains("upstream api") && page.contains("upstream web"));
}

/// Reads one CRLF-ended line (without its CRLF) from a raw backend's connection.
fn read_line(stream: &mut std::net::TcpStream) -> Option<String> {
    use std::io::Read;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        // Bounded: a line longer than any this test sends is a failure, as is a timeout.
        if line.len() > 1024 || stream.read(&mut byte).ok()? != 1 {
            return None;
        }
        line.push(byte[0]);
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).ok()
}

/// Reads a request body by its framing and returns how many body bytes it had.
fn read_body(stream: &mut std::net::TcpStream, head: &str) -> Option<u64> {
    use std::io::Read;
    let exact = |stream: &mut std::net::TcpStream, n: u64| -> Option<()> {
        let mut buf = vec![0u8; usize::try_from(n).ok()?];
        stream.read_exact(&mut buf).ok()
    };
    if head.contains("\r\ntransfer-encoding: chunked\r\n") {
        let mut total = 0;
        // Bounded: every chunk this test sends is at least one byte, and the body is short.
        for _ in 0..64 {
            let line = read_line(stream)?;
            let size = u64::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // The trailer section, up to its empty line.
                for _ in 0..16 {
                    if read_line(stream)?.is_empty() {
                        return Some(total);
                    }
                }
                return None;
            }
            exact(stream, size + 2)?; // the data and its CRLF
            total += size;
        }
        return None;
    }
    let length = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(Some(0), |v| v.trim().parse().ok())?;
    exact(stream, length)?;
    Some(length)
}

/// A backend that reads every request's body (by `Content-Length` or chunked) and answers
/// with the number of body bytes it received, so the test knows what reached it.
fn counting_backend() -> SocketAddr {
    raw_backend(|mut stream| loop {
        let head = read_request_head(&mut stream);
        if !head.ends_with(b"\r\n\r\n") {
            return;
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let Some(received) = read_body(&mut stream, &head) else {
            return;
        };
        let body = received.to_string();
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    })
}

/// Bytes in: request bodies of known sizes, by `Content-Length` and chunked, sent in
/// fragments. What counts is the body read from the client (decoded: a chunked body's data,
/// not its framing): sent to the backend, or read and dropped before a fixed route's reply on
/// a kept connection. A body refused unread (413 on its `Content-Length`), or left unread
/// because the connection closes after the reply, does not count.
#[test]
fn request_body_bytes_count_by_route_and_by_server() {
    let (api, web) = (counting_backend(), counting_backend());
    let text = format!(
        "[server]\nmax_body_bytes = 100\n\
         [upstreams.api]\nservers = [\"{api}\"]\n\
         [upstreams.web]\nservers = [\"{web}\"]\n\
         [[routes]]\nname = \"api\"\npath = \"/api\"\nupstream = \"api\"\n\
         [[routes]]\nname = \"fixed\"\npath = \"/fixed\"\nreturn = {{ status = 200, body = \"hi\" }}\n\
         [[routes]]\nname = \"site\"\npath = \"/\"\nupstream = \"web\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n"
    );
    let stage = start_with(STAGE9, "bytes-in", &text);

    // One kept connection: 10 bytes by length, 12 chunked, 7 dropped by the fixed route, and
    // a GET after them that proves the dropped body was read (the connection is in step).
    let mut conn = connect(stage.addr);
    conn.send_in_fragments(
        b"POST /api/a HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789",
        3,
    );
    let res = conn.read_response("POST");
    assert_eq!((res.status, res.text()), (200, "10".to_owned()));
    conn.send_in_fragments(
        b"POST /api/b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n7\r\nworld!!\r\n0\r\n\r\n",
        4,
    );
    let res = conn.read_response("POST");
    assert_eq!((res.status, res.text()), (200, "12".to_owned()), "chunked");
    conn.send(b"POST /fixed HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\ndiscard");
    let res = conn.read_response("POST");
    assert_eq!((res.status, res.text()), (200, "hi".to_owned()));
    conn.send(b"GET /api/after HTTP/1.1\r\nHost: t\r\n\r\n");
    let res = conn.read_response("GET");
    assert_eq!((res.status, res.text()), (200, "0".to_owned()), "in step");
    drop(conn);

    // Refused on its length before a byte of body is read: nothing counts.
    let mut big = connect(stage.addr);
    big.send(b"POST /api/big HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n");
    assert_eq!(big.read_response("POST").status, 413);
    drop(big);
    // A fixed reply on a connection that closes: the body is never read as one.
    let mut closing = connect(stage.addr);
    closing.send(
        b"POST /fixed HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 5\r\n\r\nabcde",
    );
    assert_eq!(closing.read_response("POST").status, 200);
    drop(closing);

    let text = scrape_when_counted(&stage, "", 6.0);
    let (types, samples) = parse_exposition(&text);
    let by_route = "revproxy_request_bytes_total";
    assert_eq!(types[by_route], "counter");
    for (route, want) in [
        ("api", 22.0),
        ("fixed", 7.0),
        ("site", 0.0),
        ("default", 0.0),
    ] {
        assert_eq!(
            total(&samples, by_route, &[("route", route)]),
            want,
            "{route}"
        );
    }
    assert_eq!(total(&samples, by_route, &[]), 29.0, "{text}");
    let by_server = "revproxy_upstream_request_bytes_total";
    assert_eq!(types[by_server], "counter");
    let (api_s, web_s) = (api.to_string(), web.to_string());
    let at_api = [("upstream", "api"), ("server", api_s.as_str())];
    let at_web = [("upstream", "web"), ("server", web_s.as_str())];
    assert_eq!(total(&samples, by_server, &at_api), 22.0);
    assert_eq!(total(&samples, by_server, &at_web), 0.0, "written at zero");
    // Bytes out beside it: "10", "12", "0" from the backend, "hi" twice from the route.
    assert_eq!(
        total(
            &samples,
            "revproxy_response_bytes_total",
            &[("route", "api")]
        ),
        5.0
    );

    let status = status_json_open(&stage);
    let route = |name: &str| {
        status["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("route {name} in {status}"))
            .clone()
    };
    assert_eq!(
        (
            route("api")["bytes_in"].as_u64(),
            route("api")["bytes_out"].as_u64()
        ),
        (Some(22), Some(5))
    );
    assert_eq!(route("fixed")["bytes_in"], 7);
    let api_server = status["upstreams"]
        .as_array()
        .expect("upstreams")
        .iter()
        .find(|g| g["name"] == "api")
        .expect("api group")["servers"][0]
        .clone();
    assert_eq!(api_server["addr"], api_s.as_str());
    assert_eq!(api_server["bytes_in"], 22);

    let page = get(stage.admin, "GET", "/status", "").text();
    assert!(page.contains("bytes in</th><th>bytes out</th>"), "{page}");
    assert!(
        // api's 3 requests (the 413 came before routing: `default`), all 2xx, 22 in, 5 out.
        page.contains(
            "<tr><td>api</td><td class=\"left\">api</td><td>3</td><td>3</td><td>0</td>\
             <td>0</td><td>0</td><td>22</td><td>5</td>"
        ),
        "{page}"
    );
}

/// `/status.json` of an admin listener without a key.
fn status_json_open(stage: &Stage) -> serde_json::Value {
    let res = get(stage.admin, "GET", "/status.json", "");
    assert_eq!(res.status, 200, "{}", res.text());
    serde_json::from_slice(&res.body).expect("/status.json is JSON")
}

/// Clients that connect to the admin listener and say nothing hold a thread each for a few
/// seconds and never delay a scrape; past the cap, a connection gets 503 at once, and once
/// they are gone, scrapes are answered again.
#[test]
fn silent_admin_clients_never_delay_a_scrape() {
    use revproxy::admin::listener::MAX_CLIENTS;
    use std::net::TcpStream;
    let hold = |stage: &Stage, n: usize| -> Vec<TcpStream> {
        let held = (0..n)
            .map(|_| TcpStream::connect(stage.admin).unwrap())
            .collect();
        thread::sleep(Duration::from_millis(100)); // taken by the accept thread
        held
    };
    let stage = start("silent", &[backend()], "");
    let _silent = hold(&stage, 3);
    let started = Instant::now();
    assert_eq!(get(stage.admin, "GET", "/metrics", "").status, 200);
    // One at a time, each silent client would have held the scrape for its 3 s timeout.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "the scrape took {took:?}");
    // A stage of its own for the cap: a scrape answered a moment ago may still hold its
    // thread (it waits for the client's close), which would make the count one more.
    let stage = start("silent-cap", &[backend()], "");
    let silent = hold(&stage, MAX_CLIENTS);
    let refused = get(stage.admin, "GET", "/metrics", "");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    drop(silent);
    // Bounded: the closed connections end their threads at once (well within TIMEOUT).
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let status = get(stage.admin, "GET", "/metrics", "").status;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} after the clients left"
        );
        thread::sleep(Duration::from_millis(50));
    }
}
