//! Stage 7's cache over real sockets: the real `stage7` binary in front of an origin whose
//! response headers each test chooses and which counts the requests it gets.
//!
//! Time is never waited for: a response is made stale by a `Date` in the past, and ages are
//! checked within bounds.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use revproxy::http::date::imf_fixdate;
use support::{connect, read_request_head, Proxy, Response, TIMEOUT};

const STAGE7: &str = env!("CARGO_BIN_EXE_stage7");

/// What the origin answers to one request head: the whole response as text (after
/// `CLOSE:`, the connection closes after it), or `None` to close without a word.
type Respond = dyn Fn(&str) -> Option<String> + Send + Sync;

/// An origin on a free port: counts requests by path, keeps every request head, and can be
/// stopped (its port then refuses connections).
struct Origin {
    addr: SocketAddr,
    counts: Arc<Mutex<Vec<String>>>,
    heads: Arc<Mutex<Vec<String>>>,
    stopped: Arc<AtomicBool>,
    /// Every accepted connection, so that `stop` closes kept ones too.
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Origin {
    fn start(respond: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Origin {
        let respond: Arc<Respond> = Arc::new(respond);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Mutex::new(Vec::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (c, h, s, k) = (
            counts.clone(),
            heads.clone(),
            stopped.clone(),
            conns.clone(),
        );
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                if s.load(Ordering::SeqCst) {
                    return; // the listener goes with this thread
                }
                if let Ok(clone) = stream.try_clone() {
                    k.lock().unwrap().push(clone);
                }
                let (respond, c, h) = (respond.clone(), c.clone(), h.clone());
                thread::spawn(move || serve(stream, &*respond, &c, &h));
            }
        });
        Origin {
            addr,
            counts,
            heads,
            stopped,
            conns,
        }
    }

    /// Requests seen for `path`.
    fn count(&self, path: &str) -> usize {
        self.counts
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }

    fn last_head(&self) -> String {
        self.heads
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        for conn in self.conns.lock().unwrap().iter() {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        // Bounded wait until the port refuses.
        for _ in 0..200 {
            if TcpStream::connect(self.addr).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        panic!("the origin did not stop");
    }
}

/// Serves one connection, then shuts it down (a clone is kept for `stop`, so dropping this
/// one would not close it).
fn serve(
    mut s: TcpStream,
    respond: &Respond,
    counts: &Mutex<Vec<String>>,
    heads: &Mutex<Vec<String>>,
) {
    serve_until_done(&mut s, respond, counts, heads);
    let _ = s.shutdown(std::net::Shutdown::Both);
}

fn serve_until_done(
    s: &mut TcpStream,
    respond: &Respond,
    counts: &Mutex<Vec<String>>,
    heads: &Mutex<Vec<String>>,
) {
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    loop {
        let head = read_request_head(s);
        if head.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let path = text.split(' ').nth(1).unwrap_or("").to_owned();
        counts.lock().unwrap().push(path);
        heads.lock().unwrap().push(text.clone());
        // Request bodies (the POSTs here) are small and sent with their head.
        if let Some(len) = header_of(&text, "content-length").and_then(|v| v.parse::<usize>().ok())
        {
            let mut body = vec![0; len];
            let _ = std::io::Read::read_exact(s, &mut body);
        }
        match respond(&text) {
            // "CLOSE:" first: send the rest, then close (a body that breaks off).
            Some(reply) => match reply.strip_prefix("CLOSE:") {
                Some(rest) => {
                    let _ = s.write_all(rest.as_bytes());
                    return;
                }
                None => {
                    if s.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            },
            None => return,
        }
    }
}

/// A header's value in a request head written as text.
fn header_of(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// An HTTP date `secs` seconds from now (negative: in the past).
fn date(secs: i64) -> String {
    let now = SystemTime::now();
    let at = if secs >= 0 {
        now + Duration::from_secs(secs as u64)
    } else {
        now - Duration::from_secs(secs.unsigned_abs())
    };
    String::from_utf8(imf_fixdate(at).to_vec()).unwrap()
}

/// A 200 with `headers` (each "Name: value") and `body`.
fn ok(headers: &[&str], body: &str) -> String {
    let mut out = String::from("HTTP/1.1 200 OK\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

fn config_file(name: &str, text: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("revproxy-cache-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write the config");
    path
}

/// Stage 7 in front of `origin`, with `cache` lines added to `[cache]`.
fn proxy(name: &str, origin: &Origin, cache: &str) -> Proxy {
    let text = format!(
        "[upstreams.app]\nservers = [\"{}\"]\nretries = 0\nconnect_timeout_ms = 1000\nread_timeout_ms = 5000\n[cache]\nenabled = true\n{cache}",
        origin.addr
    );
    let path = config_file(name, &text);
    Proxy::start(STAGE7, &[], &["--config", path.to_str().unwrap()])
}

/// One request on a new connection; `extra` are header lines.
fn request(proxy: &Proxy, method: &str, target: &str, extra: &[&str]) -> Response {
    let mut c = connect(proxy.addr);
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: cache.test\r\n");
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    c.send(req.as_bytes());
    c.read_response(method)
}

fn get(proxy: &Proxy, target: &str) -> Response {
    request(proxy, "GET", target, &[])
}

fn x_cache(res: &Response) -> &str {
    res.header("x-cache").unwrap_or("-")
}

fn age(res: &Response) -> u64 {
    res.header("age")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no Age in {res:?}"))
}

/// An origin answering by path with a fixed table of (path, headers), body "body of PATH".
fn table_origin(table: Vec<(&'static str, Vec<String>)>) -> Origin {
    Origin::start(move |head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        let (_, headers) = table.iter().find(|(p, _)| *p == path)?;
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        Some(ok(&headers, &format!("body of {path}")))
    })
}

#[test]
fn freshness_comes_from_each_source_and_no_information_is_not_stored() {
    let origin = table_origin(vec![
        (
            "/s-maxage",
            vec!["Cache-Control: s-maxage=60, max-age=0".into()],
        ),
        ("/max-age", vec!["Cache-Control: max-age=60".into()]),
        (
            "/expires",
            vec![
                format!("Date: {}", date(0)),
                format!("Expires: {}", date(60)),
            ],
        ),
        // 10% of 10 days since Last-Modified: a day of heuristic freshness.
        (
            "/heuristic",
            vec![format!("Last-Modified: {}", date(-864_000))],
        ),
        ("/nothing", vec![]),
        ("/max-age-0", vec!["Cache-Control: max-age=0".into()]),
        (
            "/expired",
            vec![
                format!("Date: {}", date(0)),
                format!("Expires: {}", date(-10)),
            ],
        ),
        ("/bad-expires", vec!["Expires: tomorrow".into()]),
        ("/quoted", vec!["Cache-Control: max-age=\"60\"".into()]),
    ]);
    let p = proxy("fresh", &origin, "");
    for path in ["/s-maxage", "/max-age", "/expires", "/heuristic"] {
        let first = get(&p, path);
        assert_eq!((first.status, x_cache(&first)), (200, "MISS"), "{path}");
        let second = get(&p, path);
        assert_eq!(x_cache(&second), "HIT", "{path}");
        assert_eq!(second.text(), format!("body of {path}"));
        assert_eq!(origin.count(path), 1, "{path} went upstream once");
    }
    for path in [
        "/nothing",
        "/max-age-0",
        "/expired",
        "/bad-expires",
        "/quoted",
    ] {
        assert_eq!(x_cache(&get(&p, path)), "MISS", "{path}");
        assert_eq!(x_cache(&get(&p, path)), "MISS", "{path} is never fresh");
        assert_eq!(origin.count(path), 2, "{path}");
    }
}

/// RFC 9110 section 5.6.7: an `Expires` with its names in the wrong case (or its weekday
/// wrong) is the date it names, so the response is fresh; another zone is not a date at all.
#[test]
fn expires_in_the_wrong_case_is_still_a_date() {
    let future = date(3600); // "Sun, 06 Nov 1994 08:49:37 GMT" shape
    let (weekday, rest) = future.split_at(3);
    let month_upper = format!(
        "{}{}{}",
        &future[..8],
        future[8..11].to_uppercase(),
        &future[11..]
    );
    let table = vec![
        ("/upper-day", format!("{}{rest}", weekday.to_uppercase())),
        ("/upper-month", month_upper),
        ("/lower-zone", future.replace("GMT", "gmt")),
        ("/utc", future.replace("GMT", "UTC")),
    ];
    let origin = table_origin(
        table
            .iter()
            .map(|(path, expires)| {
                (
                    *path,
                    vec![format!("Expires: {expires}"), format!("Date: {}", date(0))],
                )
            })
            .collect(),
    );
    let p = proxy("expires-case", &origin, "");
    for (path, expires) in &table {
        assert_eq!(x_cache(&get(&p, path)), "MISS", "{path}");
        let want = if *path == "/utc" { "MISS" } else { "HIT" };
        assert_eq!(x_cache(&get(&p, path)), want, "Expires: {expires}");
    }
}

/// RFC 9213: a valid `CDN-Cache-Control` (or another field this cache is configured to
/// obey) replaces `Cache-Control` and `Expires` here, either way; an invalid one is ignored;
/// the field goes on to the client.
#[test]
fn targeted_cache_control_takes_precedence_over_cache_control() {
    let table = vec![
        // (path, response fields, whether the second request is a hit)
        (
            "/cdn-max-age",
            vec!["CDN-Cache-Control: max-age=60", "Cache-Control: no-store"],
            true,
        ),
        (
            "/cdn-no-store",
            vec!["CDN-Cache-Control: no-store", "Cache-Control: max-age=60"],
            false,
        ),
        (
            "/cdn-private",
            vec!["CDN-Cache-Control: private", "Cache-Control: max-age=60"],
            false,
        ),
        (
            "/cdn-no-cache",
            vec!["CDN-Cache-Control: no-cache", "Cache-Control: max-age=60"],
            false,
        ),
        (
            "/cdn-expires",
            vec!["CDN-Cache-Control: max-age=60", "Expires: 0"],
            true,
        ),
        (
            "/cdn-invalid",
            vec![
                "CDN-Cache-Control: max-age=\"60",
                "Cache-Control: max-age=60",
            ],
            true,
        ),
        (
            "/cdn-invalid-2",
            vec!["CDN-Cache-Control: MAX-AGE=60", "Cache-Control: no-store"],
            false,
        ),
        (
            "/ours",
            vec![
                "Revproxy-Cache-Control: no-store",
                "CDN-Cache-Control: max-age=60",
            ],
            false,
        ),
        (
            "/ours-max-age",
            vec![
                "Revproxy-Cache-Control: max-age=60",
                "CDN-Cache-Control: no-store",
            ],
            true,
        ),
    ];
    let origin = table_origin(
        table
            .iter()
            .map(|(path, fields, _)| (*path, fields.iter().map(|f| (*f).to_owned()).collect()))
            .collect(),
    );
    let p = proxy(
        "targeted",
        &origin,
        "targeted_fields = [\"Revproxy-Cache-Control\", \"CDN-Cache-Control\"]\n",
    );
    for (path, fields, hit) in &table {
        assert_eq!(x_cache(&get(&p, path)), "MISS", "{path}");
        let res = get(&p, path);
        let want = if *hit { "HIT" } else { "MISS" };
        assert_eq!(x_cache(&res), want, "{path}: {fields:?}");
        let sent = fields.iter().find(|f| f.starts_with("CDN-")).unwrap();
        let value = sent.split_once(": ").unwrap().1;
        assert_eq!(
            res.header("cdn-cache-control"),
            Some(value),
            "{path}: kept on the way out"
        );
    }

    // With the default list, only CDN-Cache-Control is obeyed.
    let origin = table_origin(vec![(
        "/d",
        vec![
            "Revproxy-Cache-Control: no-store".into(),
            "CDN-Cache-Control: max-age=60".into(),
        ],
    )]);
    let p = proxy("targeted-default", &origin, "");
    get(&p, "/d");
    assert_eq!(x_cache(&get(&p, "/d")), "HIT");
}

/// RFC 9213 on the way out. Section 3: a cache that uses a targeted field typically forwards
/// it (the default, checked above), and MAY remove it when configured to. Section 2.1: a
/// targeted field this cache does not obey is passed through and changes nothing here. Each
/// is checked on a miss, on a hit, and on a hit after a `304` refreshed the entry.
#[test]
fn targeted_fields_this_cache_obeys_are_removed_on_the_way_out_when_configured() {
    let origin = Origin::start(|head| {
        let fields = [
            "Revproxy-Cache-Control: max-age=60",
            "CDN-Cache-Control: no-store",
            "Cache-Control: no-store",
            "ETag: \"v1\"",
        ];
        Some(if header_of(head, "if-none-match").is_some() {
            "HTTP/1.1 304 Not Modified\r\nRevproxy-Cache-Control: max-age=60\r\n\r\n".into()
        } else if head.starts_with("GET /old ") {
            // Already past its 60 s when it arrives: the next request revalidates it.
            let mut fields = fields.to_vec();
            fields.push("Age: 100");
            ok(&fields, "old")
        } else {
            ok(&fields, "body")
        })
    });
    let p = proxy(
        "targeted-out",
        &origin,
        "targeted_fields = [\"Revproxy-Cache-Control\"]\nforward_targeted = false\n",
    );
    let check = |res: &Response, label: &str, what: &str| {
        assert_eq!((res.status, x_cache(res)), (200, label), "{what}");
        assert_eq!(
            res.header("revproxy-cache-control"),
            None,
            "{what}: removed"
        );
        assert_eq!(
            res.header("cdn-cache-control"),
            Some("no-store"),
            "{what}: not on the list, passed through"
        );
        assert_eq!(res.header("cache-control"), Some("no-store"), "{what}");
    };
    check(&get(&p, "/a"), "MISS", "miss");
    // Stored and reused: the field was obeyed before it was removed.
    check(&get(&p, "/a"), "HIT", "hit");
    assert_eq!(origin.count("/a"), 1);
    check(&get(&p, "/old"), "MISS", "miss of a stale one");
    check(&get(&p, "/old"), "REVALIDATED", "hit after a 304");
    check(&get(&p, "/old"), "HIT", "the refreshed entry");
    assert_eq!(origin.count("/old"), 2);
}

/// `Surrogate-Control` (W3C Edge Architecture): stage 7 announces itself in
/// `Surrogate-Capability`, obeys the directives for every surrogate or targeted at its token
/// in place of `Cache-Control` and `Expires`, ignores those for another device, and takes the
/// field off what the client gets, on a miss and on a hit.
#[test]
fn surrogate_control_replaces_cache_control_for_this_cache_and_is_removed() {
    let origin = Origin::start(|head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        // The token the proxy announced, as an origin would target it.
        let token = header_of(head, "surrogate-capability")
            .and_then(|c| c.split('=').next().map(str::to_owned))
            .unwrap_or_default();
        let fields: Vec<String> = match path {
            "/sc" => vec!["Surrogate-Control: MaX-aGe=3600".into()],
            "/sc-over-no-store" => vec![
                "Cache-Control: no-store".into(),
                format!("Surrogate-Control: max-age=600;{token}"),
            ],
            "/sc-short" => vec![
                "Cache-Control: max-age=3600".into(),
                "Surrogate-Control: max-age=0".into(),
            ],
            "/sc-no-store" => vec![
                "Cache-Control: max-age=3600".into(),
                format!("Expires: {}", date(3600)),
                "Surrogate-Control: no-store".into(),
            ],
            "/sc-past-expires" => vec![
                format!("Expires: {}", date(-3600)),
                "Surrogate-Control: foobar, max-age=3600".into(),
            ],
            "/sc-other" => vec!["Surrogate-Control: max-age=3600;not-us".into()],
            _ => return None,
        };
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        Some(ok(&fields, "body"))
    });
    let p = proxy("surrogate", &origin, "");
    for (path, stored) in [
        ("/sc", true),
        ("/sc-over-no-store", true),
        ("/sc-short", false),
        ("/sc-no-store", false),
        ("/sc-past-expires", true),
        ("/sc-other", false),
    ] {
        let first = get(&p, path);
        let second = get(&p, path);
        for res in [&first, &second] {
            assert_eq!(res.status, 200, "{path}");
            assert_eq!(res.header("surrogate-control"), None, "{path}: removed");
        }
        assert_eq!(
            (x_cache(&second) == "HIT", origin.count(path)),
            (stored, if stored { 1 } else { 2 }),
            "{path}"
        );
    }
    assert_eq!(
        header_of(&origin.last_head(), "surrogate-capability").as_deref(),
        Some("revproxy=\"Surrogate/1.0\"")
    );
    // `surrogate_id = ""`: neither announced, nor read, nor removed.
    let off = proxy("surrogate-off", &origin, "surrogate_id = \"\"\n");
    get(&off, "/sc");
    let res = get(&off, "/sc");
    assert_eq!(x_cache(&res), "MISS");
    assert_eq!(res.header("surrogate-control"), Some("MaX-aGe=3600"));
    assert_eq!(header_of(&origin.last_head(), "surrogate-capability"), None);
}

#[test]
fn default_ttl_applies_only_to_responses_that_say_nothing() {
    let origin = table_origin(vec![
        ("/nothing", vec![]),
        ("/no-cache", vec!["Cache-Control: no-cache".into()]),
        ("/max-age-0", vec!["Cache-Control: max-age=0".into()]),
    ]);
    let p = proxy("ttl", &origin, "default_ttl = 60\n");
    get(&p, "/nothing");
    assert_eq!(x_cache(&get(&p, "/nothing")), "HIT");
    for path in ["/no-cache", "/max-age-0"] {
        get(&p, path);
        get(&p, path);
        assert_eq!(origin.count(path), 2, "{path}: the origin's word wins");
    }
}

/// `Age` is a singleton: a list (`0, 0`, or two lines) or a value that is not one
/// non-negative integer leaves the age unknown, and the response is stored as already stale
/// (`freshness::age_value` says why): reused only once revalidated by its validator, or
/// fetched again without one. A plain `Age` is the age a hit starts from.
#[test]
fn an_age_that_cannot_be_read_makes_the_response_stale() {
    const MAX_AGE: &str = "Cache-Control: max-age=3600";
    let origin = Origin::start(|head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        let age: &[&str] = match path {
            "/dup-0" | "/validated" => &["Age: 0, 0"],
            "/young-first" => &["Age: 0,7200"],
            "/two-lines" => &["Age: 0", "Age: 7200"],
            "/parameter" => &["Age: 7200;foo=bar"],
            "/negative" => &["Age: -7200"],
            "/valid" => &["Age: 100"],
            _ => return None,
        };
        if path == "/validated" && header_of(head, "if-none-match").as_deref() == Some("\"v1\"") {
            return Some(format!(
                "HTTP/1.1 304 Not Modified\r\n{MAX_AGE}\r\nETag: \"v1\"\r\n\r\n"
            ));
        }
        let mut fields = vec![MAX_AGE, "ETag: \"v1\""];
        fields.truncate(if path == "/validated" { 2 } else { 1 });
        fields.extend(age);
        Some(ok(&fields, &format!("body of {path}")))
    });
    let p = proxy("age-parse", &origin, "");
    for path in [
        "/dup-0",
        "/young-first",
        "/two-lines",
        "/parameter",
        "/negative",
    ] {
        assert_eq!(x_cache(&get(&p, path)), "MISS", "{path}");
        let second = get(&p, path);
        assert_eq!(second.status, 200, "{path}");
        assert_ne!(x_cache(&second), "HIT", "{path}: stale on arrival");
        assert_eq!(origin.count(path), 2, "{path}: fetched again");
    }
    // Stored all the same: its validator revalidates it, and the 304 (with no Age) makes
    // it fresh.
    get(&p, "/validated");
    let second = get(&p, "/validated");
    assert_eq!(
        (x_cache(&second), second.text().as_str()),
        ("REVALIDATED", "body of /validated")
    );
    assert!(origin.last_head().contains("If-None-Match: \"v1\""));
    assert_eq!(x_cache(&get(&p, "/validated")), "HIT");
    assert_eq!(origin.count("/validated"), 2);
    // One integer: reused, and the hit starts from it.
    get(&p, "/valid");
    let hit = get(&p, "/valid");
    assert_eq!(x_cache(&hit), "HIT");
    assert!((100..3600).contains(&age(&hit)), "{hit:?}");
    assert_eq!(origin.count("/valid"), 1);
}

#[test]
fn a_hit_carries_age_from_date_origin_age_and_time_held_and_keeps_the_date() {
    let past = date(-100);
    let origin = table_origin(vec![
        (
            "/old",
            vec![
                format!("Date: {past}"),
                "Cache-Control: max-age=1000".into(),
            ],
        ),
        (
            "/aged",
            vec![
                format!("Date: {}", date(0)),
                "Age: 50".into(),
                "Cache-Control: max-age=1000".into(),
            ],
        ),
        // Fresh for 50 s, but already 60 s old when it arrives: stale at once.
        (
            "/stale-on-arrival",
            vec![
                format!("Date: {}", date(-60)),
                "Cache-Control: max-age=50".into(),
            ],
        ),
    ]);
    let p = proxy("age", &origin, "");
    get(&p, "/old");
    let hit = get(&p, "/old");
    assert_eq!(x_cache(&hit), "HIT");
    assert!(
        (100..110).contains(&age(&hit)),
        "Age {} for a Date 100 s old",
        age(&hit)
    );
    assert_eq!(
        hit.header("date"),
        Some(past.as_str()),
        "the origin's Date is kept"
    );
    get(&p, "/aged");
    let hit = get(&p, "/aged");
    assert!(
        (50..60).contains(&age(&hit)),
        "Age {} after an origin Age of 50",
        age(&hit)
    );
    get(&p, "/stale-on-arrival");
    assert_ne!(x_cache(&get(&p, "/stale-on-arrival")), "HIT");
    assert_eq!(origin.count("/stale-on-arrival"), 2);
}

/// RFC 9111 section 5.2.2.3: `must-understand` stores only a status whose caching rules the
/// cache knows (a `599` is not one), and then overrides the `no-store` sent beside it; section
/// 4.2.2: `public` lets heuristic freshness apply to a status not cacheable by default.
#[test]
fn must_understand_and_public_decide_for_statuses_the_cache_does_or_does_not_know() {
    let origin = Origin::start(|head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        let modified = format!("Last-Modified: {}", date(-24 * 3600));
        let (status, fields): (&str, Vec<String>) = match path {
            "/599-must-understand" => (
                "599 Whatever",
                vec!["Cache-Control: max-age=3600, must-understand".into()],
            ),
            "/200-must-understand" => (
                "200 OK",
                vec!["Cache-Control: no-store, must-understand, max-age=3600".into()],
            ),
            "/599-public" => (
                "599 Unknown",
                vec!["Cache-Control: public".into(), modified],
            ),
            "/599-heuristic" => ("599 Unknown", vec![modified]),
            _ => return None,
        };
        let mut out = format!("HTTP/1.1 {status}\r\nDate: {}\r\n", date(0));
        for f in fields {
            out.push_str(&f);
            out.push_str("\r\n");
        }
        Some(out + "Content-Length: 4\r\n\r\nbody")
    });
    let p = proxy("must-understand", &origin, "");
    for (path, stored) in [
        ("/599-must-understand", false),
        ("/200-must-understand", true),
        ("/599-public", true),
        ("/599-heuristic", false),
    ] {
        get(&p, path);
        let second = get(&p, path);
        assert_eq!(second.text(), "body", "{path}");
        assert_eq!(
            (x_cache(&second) == "HIT", origin.count(path)),
            (stored, if stored { 1 } else { 2 }),
            "{path}"
        );
    }
}

#[test]
fn prohibited_responses_are_never_stored() {
    let cc = |v: &str| vec![format!("Cache-Control: {v}")];
    let origin = table_origin(vec![
        ("/no-store", cc("no-store, max-age=60")),
        ("/private", cc("private, max-age=60")),
        (
            "/vary-star",
            vec!["Cache-Control: max-age=60".into(), "Vary: Accept, *".into()],
        ),
        ("/auth", cc("max-age=60")),
        ("/auth-public", cc("public, max-age=60")),
        ("/asked-no-store", cc("max-age=60")),
        (
            "/cookie",
            vec![
                "Cache-Control: max-age=60".into(),
                "Set-Cookie: session=alice".into(),
            ],
        ),
    ]);
    let p = proxy("prohibit", &origin, "");
    for path in ["/no-store", "/private", "/vary-star", "/cookie"] {
        get(&p, path);
        assert_eq!(x_cache(&get(&p, path)), "MISS", "{path}");
        assert_eq!(origin.count(path), 2, "{path} is never stored");
    }
    let auth = ["Authorization: Bearer alice"];
    request(&p, "GET", "/auth", &auth);
    request(&p, "GET", "/auth", &auth);
    assert_eq!(
        origin.count("/auth"),
        2,
        "an authorised answer is the user's"
    );
    request(&p, "GET", "/auth-public", &auth);
    assert_eq!(
        x_cache(&get(&p, "/auth-public")),
        "HIT",
        "unless public says so"
    );
    // A request's no-store keeps the answer out too.
    request(&p, "GET", "/asked-no-store", &["Cache-Control: no-store"]);
    assert_eq!(x_cache(&get(&p, "/asked-no-store")), "MISS");
    assert_eq!(x_cache(&get(&p, "/asked-no-store")), "HIT");
}

#[test]
fn an_incomplete_or_oversized_body_is_streamed_but_not_stored() {
    let big = "x".repeat(5000);
    let big2 = big.clone();
    let origin = Origin::start(move |head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        Some(match path {
            "/cut" => "CLOSE:HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 100\r\n\r\n0123456789".into(),
            "/big" => ok(&["Cache-Control: max-age=60"], &big2),
            // No Content-Length: the size is found out while streaming.
            "/big-chunked" => format!(
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big2}\r\n{:x}\r\n{big2}\r\n0\r\n\r\n",
                big2.len(),
                big2.len()
            ),
            "/small-chunked" => "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".into(),
            _ => return None,
        })
    });
    let p = proxy("sizes", &origin, "max_entry_size = 4096\n");
    // The cut body: the client sees the connection end early; nothing is stored.
    for _ in 0..2 {
        let mut c = connect(p.addr);
        c.send(b"GET /cut HTTP/1.1\r\nHost: cache.test\r\n\r\n");
        assert!(
            c.try_read_response("GET").is_none(),
            "a cut body is not passed off as whole"
        );
    }
    assert_eq!(origin.count("/cut"), 2);
    for path in ["/big", "/big-chunked"] {
        let res = get(&p, path);
        assert!(
            res.text().len() >= 5000 && res.text().bytes().all(|b| b == b'x'),
            "{path}"
        );
        get(&p, path);
        assert_eq!(
            origin.count(path),
            2,
            "{path} over max_entry_size is not kept"
        );
    }
    get(&p, "/small-chunked");
    let hit = get(&p, "/small-chunked");
    assert_eq!((x_cache(&hit), hit.text().as_str()), ("HIT", "hello world"));
    assert_eq!(
        hit.header("content-length"),
        Some("11"),
        "stored decoded, served with a length"
    );
}

#[test]
fn vary_selects_among_variants() {
    let origin = Origin::start(|head| {
        let lang = header_of(head, "accept-language").unwrap_or_default();
        Some(ok(
            &["Cache-Control: max-age=60", "Vary: Accept-Language"],
            &format!("lang {lang}"),
        ))
    });
    let p = proxy("vary", &origin, "");
    let en = ["Accept-Language: en"];
    let fr = ["Accept-Language: fr"];
    assert_eq!(request(&p, "GET", "/v", &en).text(), "lang en");
    assert_eq!(request(&p, "GET", "/v", &fr).text(), "lang fr");
    let hit_en = request(&p, "GET", "/v", &en);
    let hit_fr = request(&p, "GET", "/v", &fr);
    assert_eq!(
        (x_cache(&hit_en), hit_en.text().as_str()),
        ("HIT", "lang en")
    );
    assert_eq!(
        (x_cache(&hit_fr), hit_fr.text().as_str()),
        ("HIT", "lang fr")
    );
    assert_eq!(
        x_cache(&get(&p, "/v")),
        "MISS",
        "no Accept-Language is a third variant"
    );
    assert_eq!(origin.count("/v"), 3);
}

/// RFC 9111 section 4.1: a selecting field that says the same thing in another spelling
/// (whitespace, case, lines, the order of items of different weight) is a hit.
#[test]
fn vary_matches_preference_lists_however_they_are_spelled() {
    let origin = Origin::start(|head| {
        let lang = header_of(head, "accept-language").unwrap_or_default();
        Some(ok(
            &[
                "Cache-Control: max-age=60",
                "Vary: Accept-Language, Accept-Encoding",
            ],
            &format!("lang {lang}"),
        ))
    });
    let p = proxy("vary-normal", &origin, "");
    let first = [
        "Accept-Language: en-US,fr;q=0.8",
        "Accept-Encoding: gzip, br",
    ];
    assert_eq!(x_cache(&request(&p, "GET", "/n", &first)), "MISS");
    let spellings: &[&[&str]] = &[
        &[
            "Accept-Language: en-us, fr;q=0.80",
            "Accept-Encoding: GZIP,br",
        ],
        &[
            "Accept-Language: fr;q=0.8, en-US",
            "Accept-Encoding: gzip , br",
        ],
        &[
            "Accept-Language: en-US",
            "Accept-Language: fr; q=0.8",
            "Accept-Encoding: gzip,br",
        ],
    ];
    for extra in spellings {
        let res = request(&p, "GET", "/n", extra);
        assert_eq!(
            (x_cache(&res), res.text().as_str()),
            ("HIT", "lang en-US,fr;q=0.8"),
            "{extra:?}"
        );
    }
    let other = ["Accept-Language: fr,en-US", "Accept-Encoding: gzip, br"];
    assert_eq!(x_cache(&request(&p, "GET", "/n", &other)), "MISS");
    assert_eq!(origin.count("/n"), 2);
}

/// A variant in one language (`Content-Language: de`) serves a request whose
/// `Accept-Language` ranks that language strictly above every other range, as the origin
/// would choose it again; a tie for the top, or another language on top, goes to the origin.
#[test]
fn vary_accept_language_reuses_the_variant_in_the_language_a_request_prefers() {
    // Negotiates as an origin with German and French would, for the lists sent here: French
    // when it comes first with no weight, else German.
    let origin = Origin::start(|head| {
        let asked = header_of(head, "accept-language").unwrap_or_default();
        let lang = if asked.starts_with("fr,") { "fr" } else { "de" };
        Some(ok(
            &[
                "Cache-Control: max-age=60",
                "Vary: Accept-Language",
                &format!("Content-Language: {lang}"),
            ],
            &format!("lang {lang} for {asked}"),
        ))
    });
    let p = proxy("vary-language", &origin, "");
    let stored = request(&p, "GET", "/l", &["Accept-Language: en, de"]);
    assert_eq!(x_cache(&stored), "MISS");
    let res = request(&p, "GET", "/l", &["Accept-Language: fr;q=0.5, de;q=1.0"]);
    assert_eq!(
        (x_cache(&res), res.text().as_str()),
        ("HIT", "lang de for en, de")
    );
    for (asked, body) in [
        ("de, fr", "lang de for de, fr"),
        ("fr, de;q=0.5", "lang fr for fr, de;q=0.5"),
    ] {
        let res = request(&p, "GET", "/l", &[&format!("Accept-Language: {asked}")]);
        assert_eq!((x_cache(&res), res.text().as_str()), ("MISS", body));
    }
    assert_eq!(origin.count("/l"), 3);
}

/// RFC 9111 section 4.1: whitespace around the commas of a selecting field, and the split
/// into lines, do not make another variant; another member does.
#[test]
fn vary_ignores_spaces_around_commas_in_any_selecting_field() {
    let origin = Origin::start(|head| {
        let foo = header_of(head, "foo").unwrap_or_default();
        Some(ok(
            &["Cache-Control: max-age=60", "Vary: Foo"],
            &format!("foo {foo}"),
        ))
    });
    let p = proxy("vary-space", &origin, "");
    assert_eq!(x_cache(&request(&p, "GET", "/v", &["Foo: 1,2"])), "MISS");
    for extra in [
        &["Foo:  1 ,\t2 "][..],
        &["Foo: 1, 2"],
        &["Foo: 1", "Foo: 2"],
    ] {
        let res = request(&p, "GET", "/v", extra);
        assert_eq!(
            (x_cache(&res), res.text().as_str()),
            ("HIT", "foo 1,2"),
            "{extra:?}"
        );
    }
    assert_eq!(x_cache(&request(&p, "GET", "/v", &["Foo: 1,3"])), "MISS");
    assert_eq!(
        x_cache(&request(&p, "GET", "/v", &["Foo: \"1,2\""])),
        "MISS"
    );
    assert_eq!(origin.count("/v"), 3);
}

/// An origin for revalidation: first a stale-on-arrival 200 with `validator`; then a 304 to
/// any conditional request (with new headers), a 200 otherwise.
fn revalidating_origin(validator: &'static str) -> Origin {
    Origin::start(move |head| {
        let conditional = header_of(head, "if-none-match").is_some()
            || header_of(head, "if-modified-since").is_some();
        Some(if conditional {
            "HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=100\r\nX-Version: 2\r\n\r\n"
                .to_owned()
        } else {
            ok(
                &[
                    &format!("Date: {}", date(-10)),
                    "Cache-Control: max-age=1",
                    "X-Version: 1",
                    validator,
                ],
                "stored body",
            )
        })
    })
}

/// RFC 9111 section 3.2: a `304` updates the stored fields, but not those the stored body
/// depends on (`Content-Encoding`, `Content-MD5`, `Content-Range`, `Content-Length`) nor its
/// `ETag` (section 4.3.4: another validator selects no stored response), on the revalidated
/// answer and on later hits.
#[test]
fn a_304_does_not_update_the_fields_the_stored_body_depends_on() {
    let origin = Origin::start(|head| {
        Some(
            if header_of(head, "if-none-match").as_deref() == Some("\"v1\"") {
                concat!(
                    "HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=100\r\nETag: \"v2\"\r\n",
                    "Content-Encoding: x-new\r\nContent-MD5: N7UdGUp1E+RbVvZSTy1R8g==\r\n",
                    "Content-Range: bytes 0-1/2\r\nX-Version: 2\r\n\r\n"
                )
                .to_owned()
            } else {
                ok(
                    &[
                        &format!("Date: {}", date(-10)),
                        "Cache-Control: max-age=1",
                        "ETag: \"v1\"",
                        "Content-Encoding: x-old",
                        "Content-MD5: rL0Y20zC+Fzt72VPzMSk2A==",
                        "Content-Range: bytes 0-10/11",
                        "X-Version: 1",
                    ],
                    "stored body",
                )
            },
        )
    });
    let p = proxy("304-kept", &origin, "");
    assert_eq!(x_cache(&get(&p, "/r")), "MISS");
    for label in ["REVALIDATED", "HIT"] {
        let res = get(&p, "/r");
        assert_eq!((res.status, x_cache(&res)), (200, label));
        assert_eq!(res.header("x-version"), Some("2"), "{label}: updated");
        assert_eq!(res.header("etag"), Some("\"v1\""), "{label}");
        assert_eq!(res.header("content-encoding"), Some("x-old"), "{label}");
        assert_eq!(
            res.header("content-md5"),
            Some("rL0Y20zC+Fzt72VPzMSk2A=="),
            "{label}"
        );
        assert_eq!(
            res.header("content-range"),
            Some("bytes 0-10/11"),
            "{label}"
        );
        assert_eq!(res.text(), "stored body", "{label}");
    }
    assert_eq!(origin.count("/r"), 2);
}

#[test]
fn a_stale_entry_is_revalidated_with_its_etag_and_the_304_updates_it() {
    let origin = revalidating_origin("ETag: \"v1\"");
    let p = proxy("etag", &origin, "");
    assert_eq!(x_cache(&get(&p, "/r")), "MISS");
    let res = get(&p, "/r");
    assert_eq!(x_cache(&res), "REVALIDATED");
    assert_eq!((res.status, res.text().as_str()), (200, "stored body"));
    assert!(
        origin.last_head().contains("If-None-Match: \"v1\""),
        "{}",
        origin.last_head()
    );
    assert_eq!(
        res.header("x-version"),
        Some("2"),
        "stored fields updated from the 304"
    );
    assert_eq!(res.header("cache-control"), Some("max-age=100"));
    assert_eq!(res.header("etag"), Some("\"v1\""));
    let hit = get(&p, "/r");
    assert_eq!((x_cache(&hit), hit.header("x-version")), ("HIT", Some("2")));
    assert_eq!(origin.count("/r"), 2);
}

/// An origin that validates as a real one does: a 200 that is stale on arrival (`Date` ten
/// seconds ago, `max-age=5`) with `validator` ("ETag: ..." or "Last-Modified: ..."), and a
/// bare 304 (no `Date`, no `Cache-Control`, as many origins send it) only to a request whose
/// `If-None-Match` or `If-Modified-Since` is exactly that validator's value; any other
/// request gets a new version. A body's version is in `X-Version` and in the body.
fn validating_origin(validator: String) -> Origin {
    let (name, value) = validator.split_once(": ").unwrap();
    let asked_by = if name.eq_ignore_ascii_case("etag") {
        "if-none-match"
    } else {
        "if-modified-since"
    };
    let value = value.to_owned();
    Origin::start(move |head| {
        if header_of(head, asked_by).as_deref() == Some(value.as_str()) {
            return Some("HTTP/1.1 304 Not Modified\r\nX-Version: 2\r\n\r\n".into());
        }
        let first = header_of(head, "if-none-match").is_none()
            && header_of(head, "if-modified-since").is_none();
        let version = if first { "1" } else { "other" };
        Some(ok(
            &[
                &format!("Date: {}", date(-10)),
                "Cache-Control: max-age=5",
                &format!("X-Version: {version}"),
                &validator,
            ],
            &format!("body {version}"),
        ))
    })
}

/// Revalidation of a stale entry with `validator`, for a client that sends no validators,
/// one that the entry matches (`matching`) and one it does not (`other`): the origin is
/// always asked with the entry's validator, its bare 304 refreshes the entry (the next
/// request is a hit), and the client gets a 304 or the refreshed 200 as its own validators
/// say.
fn a_304_refreshes_the_entry(name: &str, validator: String, matching: &str, other: &str) {
    let origin = validating_origin(validator.clone());
    let (_, value) = validator.split_once(": ").unwrap();
    let p = proxy(name, &origin, "");
    let cases: [(&str, Option<&str>, u16); 3] = [
        ("/plain", None, 200),
        ("/matching", Some(matching), 304),
        ("/other", Some(other), 200),
    ];
    for (path, client_validator, status) in cases {
        let first = get(&p, path);
        assert_eq!((x_cache(&first), first.text().as_str()), ("MISS", "body 1"));
        let extra: Vec<&str> = client_validator.into_iter().collect();
        let res = request(&p, "GET", path, &extra);
        let upstream = origin.last_head();
        assert!(
            upstream.contains(value),
            "{path}: asked with the entry's validator: {upstream}"
        );
        if let Some(theirs) = client_validator {
            assert!(
                !upstream.contains(theirs) || theirs.contains(value),
                "{path}: {upstream}"
            );
        }
        assert_eq!(
            (res.status, x_cache(&res)),
            (status, "REVALIDATED"),
            "{path}"
        );
        if status == 200 {
            assert_eq!(
                (res.header("x-version"), res.text().as_str()),
                (Some("2"), "body 1"),
                "{path}: the stored body, its fields updated from the 304"
            );
        }
        let hit = get(&p, path);
        assert_eq!(
            (x_cache(&hit), hit.header("x-version"), hit.text().as_str()),
            ("HIT", Some("2"), "body 1"),
            "{path}: the 304 made the entry fresh"
        );
        assert_eq!(origin.count(path), 2, "{path}");
    }
}

#[test]
fn a_304_refreshes_an_entry_validated_by_etag_whatever_the_client_sent() {
    a_304_refreshes_the_entry(
        "304-etag",
        "ETag: \"v1\"".into(),
        "If-None-Match: \"v0\", W/\"v1\"",
        "If-None-Match: \"v0\"",
    );
}

#[test]
fn a_304_refreshes_an_entry_validated_by_last_modified_whatever_the_client_sent() {
    let modified = date(-3600);
    a_304_refreshes_the_entry(
        "304-lm",
        format!("Last-Modified: {modified}"),
        &format!("If-Modified-Since: {}", date(-60)),
        &format!("If-Modified-Since: {}", date(-7200)),
    );
}

#[test]
fn a_stale_entry_is_revalidated_with_its_last_modified() {
    let modified = date(-3600);
    let line: &'static str = Box::leak(format!("Last-Modified: {modified}").into_boxed_str());
    let origin = revalidating_origin(line);
    let p = proxy("lm", &origin, "");
    get(&p, "/r");
    let res = get(&p, "/r");
    assert_eq!(
        (x_cache(&res), res.text().as_str()),
        ("REVALIDATED", "stored body")
    );
    assert!(
        origin
            .last_head()
            .contains(&format!("If-Modified-Since: {modified}")),
        "{}",
        origin.last_head()
    );
    assert_eq!(x_cache(&get(&p, "/r")), "HIT");
}

#[test]
fn a_stale_entry_without_a_304_is_replaced() {
    let version = Arc::new(AtomicUsize::new(0));
    let v = version.clone();
    let origin = Origin::start(move |_| {
        let n = v.fetch_add(1, Ordering::SeqCst);
        Some(ok(
            &[
                &format!("Date: {}", date(if n == 0 { -10 } else { 0 })),
                "Cache-Control: max-age=5",
                &format!("ETag: \"{n}\""),
            ],
            &format!("version {n}"),
        ))
    });
    let p = proxy("replace", &origin, "");
    get(&p, "/r");
    let res = get(&p, "/r");
    assert_eq!(
        (x_cache(&res), res.text().as_str()),
        ("EXPIRED", "version 1")
    );
    let hit = get(&p, "/r");
    assert_eq!((x_cache(&hit), hit.text().as_str()), ("HIT", "version 1"));
}

#[test]
fn a_conditional_client_request_is_answered_304_from_a_fresh_entry() {
    let modified = date(-3600);
    let origin = table_origin(vec![(
        "/c",
        vec![
            "Cache-Control: max-age=60".into(),
            "ETag: W/\"x\"".into(),
            format!("Last-Modified: {modified}"),
        ],
    )]);
    let p = proxy("cond", &origin, "");
    get(&p, "/c");
    let res = request(&p, "GET", "/c", &["If-None-Match: \"y\", \"x\""]);
    assert_eq!((res.status, x_cache(&res)), (304, "HIT"), "weak comparison");
    assert_eq!(res.header("etag"), Some("W/\"x\""));
    let res = request(
        &p,
        "GET",
        "/c",
        &[&format!("If-Modified-Since: {}", date(0))],
    );
    assert_eq!(res.status, 304);
    let res = request(
        &p,
        "GET",
        "/c",
        &[&format!("If-Modified-Since: {}", date(-7200))],
    );
    assert_eq!(res.status, 200, "modified since then");
    // If-None-Match takes precedence: no match means 200 whatever the date says.
    let res = request(
        &p,
        "GET",
        "/c",
        &[
            "If-None-Match: \"other\"",
            &format!("If-Modified-Since: {}", date(0)),
        ],
    );
    assert_eq!((res.status, res.text().as_str()), (200, "body of /c"));
    assert_eq!(origin.count("/c"), 1);
}

/// RFC 9111 section 4.3.2: without `Last-Modified`, the stored response's `Date` is the
/// validator an `If-Modified-Since` is evaluated against.
#[test]
fn if_modified_since_is_evaluated_against_the_stored_date_without_last_modified() {
    let stored_date = date(-60);
    let origin = table_origin(vec![
        (
            "/d",
            vec![
                "Cache-Control: max-age=600".into(),
                format!("Date: {stored_date}"),
            ],
        ),
        ("/none", vec!["Cache-Control: max-age=600".into()]),
    ]);
    let p = proxy("ims-date", &origin, "");
    assert_eq!(x_cache(&get(&p, "/d")), "MISS");
    for since in [stored_date.clone(), date(0)] {
        let res = request(&p, "GET", "/d", &[&format!("If-Modified-Since: {since}")]);
        assert_eq!((res.status, x_cache(&res)), (304, "HIT"), "since {since}");
        assert_eq!(res.header("date"), Some(stored_date.as_str()));
    }
    let res = request(
        &p,
        "GET",
        "/d",
        &[&format!("If-Modified-Since: {}", date(-3600))],
    );
    assert_eq!((res.status, res.text().as_str()), (200, "body of /d"));
    // A response without a Date of its own gets one at receipt, which serves the same way.
    get(&p, "/none");
    let res = request(
        &p,
        "GET",
        "/none",
        &[&format!("If-Modified-Since: {}", date(5))],
    );
    assert_eq!((res.status, x_cache(&res)), (304, "HIT"));
    assert_eq!(origin.count("/d") + origin.count("/none"), 2);
}

#[test]
fn request_directives_are_honoured_and_unknown_ones_ignored() {
    let origin = table_origin(vec![
        ("/d", vec!["Cache-Control: max-age=60".into()]),
        (
            "/stale",
            vec![
                format!("Date: {}", date(-100)),
                "Cache-Control: max-age=10".into(),
            ],
        ),
    ]);
    let p = proxy("directives", &origin, "");
    get(&p, "/d");
    let with = |v: &str| request(&p, "GET", "/d", &[&format!("Cache-Control: {v}")]);
    assert_eq!(x_cache(&with("frobnicate, x-foo=1")), "HIT");
    assert_eq!(origin.count("/d"), 1);
    assert_ne!(x_cache(&with("no-cache")), "HIT");
    assert_eq!(origin.count("/d"), 2);
    assert_ne!(x_cache(&with("max-age=0")), "HIT");
    assert_eq!(origin.count("/d"), 3);
    assert_ne!(x_cache(&with("min-fresh=120")), "HIT");
    assert_eq!(origin.count("/d"), 4);
    assert_eq!(x_cache(&with("min-fresh=10")), "HIT");
    let miss = request(&p, "GET", "/none", &["Cache-Control: only-if-cached"]);
    assert_eq!(miss.status, 504);
    assert_eq!(origin.count("/none"), 0);
    assert_eq!(with("only-if-cached").status, 200);
    // max-stale: a client that takes stale copies gets one.
    get(&p, "/stale");
    let stale = request(&p, "GET", "/stale", &["Cache-Control: max-stale=200"]);
    assert_eq!((x_cache(&stale), stale.status), ("STALE", 200));
    let bounded = request(&p, "GET", "/stale", &["Cache-Control: max-stale=5"]);
    assert_ne!(x_cache(&bounded), "STALE");
    assert_eq!(origin.count("/stale"), 2);
}

#[test]
fn a_stored_204_is_served_without_a_body_or_length() {
    let origin = Origin::start(|_| {
        Some("HTTP/1.1 204 No Content\r\nCache-Control: max-age=60\r\n\r\n".into())
    });
    let p = proxy("204", &origin, "");
    let mut c = connect(p.addr);
    for want in ["MISS", "HIT", "HIT"] {
        c.send(b"GET /n HTTP/1.1\r\nHost: cache.test\r\n\r\n");
        let res = c.read_response("GET");
        assert_eq!((res.status, x_cache(&res)), (204, want));
        assert_eq!(res.header("content-length"), None);
    }
    assert_eq!(origin.count("/n"), 1);
}

#[test]
fn head_is_answered_from_a_stored_get() {
    let origin = table_origin(vec![("/h", vec!["Cache-Control: max-age=60".into()])]);
    let p = proxy("head", &origin, "");
    get(&p, "/h");
    let mut c = connect(p.addr);
    c.send(b"HEAD /h HTTP/1.1\r\nHost: cache.test\r\n\r\n");
    let res = c.read_response("HEAD");
    assert_eq!((res.status, x_cache(&res)), (200, "HIT"));
    assert_eq!(res.header("content-length"), Some("10"));
    // No body followed: the next response on the connection parses from its start.
    c.send(b"GET /h HTTP/1.1\r\nHost: cache.test\r\n\r\n");
    assert_eq!(c.read_response("GET").text(), "body of /h");
    assert_eq!(origin.count("/h"), 1);
}

#[test]
fn a_head_miss_is_fetched_with_get_and_stored() {
    let origin = table_origin(vec![("/h", vec!["Cache-Control: max-age=60".into()])]);
    let p = proxy("head-miss", &origin, "");
    let mut c = connect(p.addr);
    c.send_in_fragments(b"HEAD /h HTTP/1.1\r\nHost: cache.test\r\n\r\n", 7);
    let res = c.read_response("HEAD");
    assert_eq!((res.status, x_cache(&res)), (200, "MISS"));
    assert_eq!(res.header("content-length"), Some("10"), "the GET's length");
    assert!(
        origin.last_head().starts_with("GET /h "),
        "{}",
        origin.last_head()
    );
    // No body followed the head: the next response on the connection parses from its start.
    c.send(b"GET /h HTTP/1.1\r\nHost: cache.test\r\n\r\n");
    let res = c.read_response("GET");
    assert_eq!((x_cache(&res), res.text().as_str()), ("HIT", "body of /h"));
    c.send(b"HEAD /h HTTP/1.1\r\nHost: cache.test\r\n\r\n");
    let res = c.read_response("HEAD");
    assert_eq!((res.status, x_cache(&res)), (200, "HIT"));
    assert_eq!(origin.count("/h"), 1, "one GET upstream");
}

#[test]
fn a_head_miss_that_may_not_be_stored_stays_a_head() {
    let origin = table_origin(vec![("/n", vec!["Cache-Control: max-age=60".into()])]);
    let p = proxy("head-nostore", &origin, "");
    let res = request(&p, "HEAD", "/n", &["Cache-Control: no-store"]);
    assert_eq!(
        (res.status, res.header("content-length")),
        (200, Some("10"))
    );
    assert!(
        origin.last_head().starts_with("HEAD /n "),
        "{}",
        origin.last_head()
    );
    assert_eq!(x_cache(&get(&p, "/n")), "MISS");
}

#[test]
fn concurrent_cold_heads_and_gets_reach_the_origin_once() {
    const N: usize = 8;
    let origin = Origin::start(|_| {
        thread::sleep(Duration::from_millis(200)); // a slow origin: the misses overlap
        Some(ok(&["Cache-Control: max-age=60"], "collapsed"))
    });
    let p = Arc::new(proxy("collapse-head", &origin, ""));
    let barrier = Arc::new(Barrier::new(N));
    let clients: Vec<_> = (0..N)
        .map(|i| {
            let (p, barrier) = (p.clone(), barrier.clone());
            thread::spawn(move || {
                let method = if i % 2 == 0 { "HEAD" } else { "GET" };
                barrier.wait();
                let res = request(&p, method, "/cold", &[]);
                let text = res.text();
                (
                    method,
                    res.status,
                    text,
                    res.header("content-length").map(str::to_owned),
                )
            })
        })
        .collect();
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    for (method, status, text, length) in &results {
        let body = if *method == "HEAD" { "" } else { "collapsed" };
        assert_eq!(
            (*status, text.as_str(), length.as_deref()),
            (200, body, Some("9")),
            "{results:?}"
        );
    }
    assert_eq!(origin.count("/cold"), 1, "{results:?}");
    assert!(
        origin.last_head().starts_with("GET "),
        "{}",
        origin.last_head()
    );
}

#[test]
fn a_successful_unsafe_request_invalidates_its_target_and_same_origin_locations() {
    let origin = Origin::start(|head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        Some(if head.starts_with("POST") {
            ok(
                &[
                    "Location: /other",
                    "Content-Location: http://cache.test/third",
                    "Cache-Control: max-age=60",
                ],
                "posted",
            )
        } else if head.starts_with("DELETE") {
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".into()
        } else {
            ok(&["Cache-Control: max-age=60"], &format!("body of {path}"))
        })
    });
    let p = proxy("invalidate", &origin, "");
    for path in ["/item", "/other", "/third", "/kept"] {
        get(&p, path);
    }
    let mut c = connect(p.addr);
    c.send(b"POST /item HTTP/1.1\r\nHost: cache.test\r\nContent-Length: 2\r\n\r\nhi");
    let res = c.read_response("POST");
    assert_eq!((res.status, x_cache(&res)), (200, "BYPASS"));
    for path in ["/item", "/other", "/third"] {
        assert_eq!(x_cache(&get(&p, path)), "MISS", "{path} was invalidated");
    }
    assert_eq!(x_cache(&get(&p, "/kept")), "HIT");
    // A failed unsafe request changes nothing.
    let mut c = connect(p.addr);
    c.send(b"DELETE /kept HTTP/1.1\r\nHost: cache.test\r\n\r\n");
    assert_eq!(c.read_response("DELETE").status, 500);
    assert_eq!(x_cache(&get(&p, "/kept")), "HIT");
}

/// RFC 9110 section 9.3.3 and RFC 9111 section 3: a response to a `POST` with explicit
/// freshness and a `Content-Location` that is the request's own URI is stored, and serves
/// later `GET`s and `HEAD`s of that URI; a `POST` itself always goes to the origin. Any other
/// successful `POST` invalidates the URI (section 4.4).
#[test]
fn a_post_response_naming_its_own_uri_with_explicit_freshness_serves_later_gets() {
    let posts = Arc::new(AtomicUsize::new(0));
    let counter = posts.clone();
    let origin = Origin::start(move |head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        if !head.starts_with("POST") {
            return Some(ok(&["Cache-Control: max-age=60"], &format!("got {path}")));
        }
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let fields: &[&str] = match path {
            "/form" => &["Content-Location: /form", "Cache-Control: max-age=60"],
            "/absolute?a=1" => &[
                "Content-Location: http://cache.test/absolute?a=1",
                "Expires: Thu, 01 Jan 2099 00:00:00 GMT",
            ],
            "/elsewhere" => &["Content-Location: /other", "Cache-Control: max-age=60"],
            // Heuristic freshness only: not explicit.
            "/implicit" => &[
                "Content-Location: /implicit",
                "Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT",
            ],
            _ => return None,
        };
        Some(ok(fields, &format!("posted {path} {n}")))
    });
    let p = proxy("post", &origin, "");
    let post = |target: &str, body: &str| {
        let mut c = connect(p.addr);
        c.send(
            format!(
                "POST {target} HTTP/1.1\r\nHost: cache.test\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        c.send(body.as_bytes());
        c.read_response("POST")
    };
    let res = post("/form", "a=1");
    assert_eq!((res.status, x_cache(&res)), (200, "BYPASS"));
    let hit = get(&p, "/form");
    assert_eq!(
        (x_cache(&hit), hit.text().as_str()),
        ("HIT", "posted /form 1")
    );
    let head = request(&p, "HEAD", "/form", &[]);
    assert_eq!((head.status, x_cache(&head)), (200, "HIT"));
    // Another POST goes to the origin, whatever is stored and whatever its body, and its
    // response replaces the stored one rather than invalidating itself.
    let res = post("/form", "a=1");
    assert_eq!(
        (x_cache(&res), res.text().as_str()),
        ("BYPASS", "posted /form 2")
    );
    let hit = get(&p, "/form");
    assert_eq!(
        (x_cache(&hit), hit.text().as_str()),
        ("HIT", "posted /form 2")
    );
    assert_eq!(origin.count("/form"), 2, "the POSTs alone");
    // An absolute Content-Location of the same origin, a query, freshness from Expires.
    post("/absolute?a=1", "");
    let hit = get(&p, "/absolute?a=1");
    assert_eq!(
        (x_cache(&hit), hit.text().as_str()),
        ("HIT", "posted /absolute?a=1 3")
    );
    // Another URI in Content-Location, or no explicit freshness: the POST invalidates what
    // was stored for its target, and stores nothing.
    for path in ["/elsewhere", "/implicit"] {
        get(&p, path);
        assert_eq!(x_cache(&get(&p, path)), "HIT", "{path}: stored by a GET");
        post(path, "x");
        let res = get(&p, path);
        assert_eq!(
            (x_cache(&res), res.text()),
            ("MISS", format!("got {path}")),
            "{path}"
        );
    }
    assert_eq!(posts.load(Ordering::SeqCst), 5);
}

#[test]
fn stale_if_error_serves_the_stale_copy_when_the_origin_answers_500_or_is_down() {
    let failing = Arc::new(AtomicBool::new(false));
    let f = failing.clone();
    let origin = Origin::start(move |head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        Some(if f.load(Ordering::SeqCst) {
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops".into()
        } else {
            let cc = if path == "/strict" {
                "max-age=1, stale-if-error=600, must-revalidate"
            } else {
                "max-age=1, stale-if-error=600"
            };
            ok(
                &[
                    &format!("Date: {}", date(-10)),
                    &format!("Cache-Control: {cc}"),
                ],
                "good copy",
            )
        })
    });
    let p = proxy("sie", &origin, "");
    get(&p, "/s");
    get(&p, "/strict");
    failing.store(true, Ordering::SeqCst);
    let res = get(&p, "/s");
    assert_eq!(
        (res.status, x_cache(&res), res.text().as_str()),
        (200, "STALE", "good copy")
    );
    assert_eq!(
        get(&p, "/strict").status,
        500,
        "must-revalidate forbids the stale copy"
    );
    origin.stop();
    let res = get(&p, "/s");
    assert_eq!(
        (res.status, x_cache(&res), res.text().as_str()),
        (200, "STALE", "good copy")
    );
    assert_eq!(get(&p, "/never-stored").status, 502);
}

#[test]
fn concurrent_cold_misses_reach_the_origin_once() {
    const N: usize = 20;
    let origin = Origin::start(|_| {
        thread::sleep(Duration::from_millis(300)); // a slow origin: the misses overlap
        Some(ok(&["Cache-Control: max-age=60"], "collapsed"))
    });
    let p = Arc::new(proxy("collapse", &origin, ""));
    let barrier = Arc::new(Barrier::new(N));
    let clients: Vec<_> = (0..N)
        .map(|_| {
            let (p, barrier) = (p.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                let res = get(&p, "/cold");
                (res.status, res.text(), x_cache(&res).to_owned())
            })
        })
        .collect();
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(
        results
            .iter()
            .all(|(s, t, _)| *s == 200 && t == "collapsed"),
        "{results:?}"
    );
    assert_eq!(origin.count("/cold"), 1, "{results:?}");
    let misses = results.iter().filter(|(_, _, x)| x == "MISS").count();
    assert_eq!(
        misses, 1,
        "the others were served from the stored copy: {results:?}"
    );
}

#[test]
fn uncacheable_concurrent_misses_each_go_upstream() {
    const N: usize = 5;
    let origin = Origin::start(|_| {
        thread::sleep(Duration::from_millis(200));
        Some(ok(&["Cache-Control: no-store"], "private stuff"))
    });
    let p = Arc::new(proxy("collapse-nostore", &origin, ""));
    let barrier = Arc::new(Barrier::new(N));
    let clients: Vec<_> = (0..N)
        .map(|_| {
            let (p, barrier) = (p.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                get(&p, "/nostore").status
            })
        })
        .collect();
    assert!(clients.into_iter().all(|c| c.join().unwrap() == 200));
    assert_eq!(origin.count("/nostore"), N);
}

#[test]
fn the_least_recently_used_is_evicted_at_max_size() {
    let body = "y".repeat(1000);
    let origin = Origin::start(move |_| Some(ok(&["Cache-Control: max-age=60"], &body)));
    // Room for two entries of about 1.1 KB, not three.
    let p = proxy("evict", &origin, "max_size = 2500\nmax_entry_size = 2000\n");
    get(&p, "/a");
    get(&p, "/b");
    assert_eq!(x_cache(&get(&p, "/a")), "HIT"); // /a is now the most recent
    get(&p, "/c");
    assert_eq!(x_cache(&get(&p, "/a")), "HIT");
    assert_eq!(x_cache(&get(&p, "/c")), "HIT");
    assert_eq!(
        x_cache(&get(&p, "/b")),
        "MISS",
        "/b was least recently used"
    );
    assert_eq!(origin.count("/b"), 2);
}

#[test]
fn the_cache_flags_and_the_check_mode_work() {
    let kilo = "k".repeat(1000);
    let origin = Origin::start(move |head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        Some(match path {
            "/f" => ok(&[], "body of /f"),
            "/m" => ok(&["Cache-Control: max-age=60"], "body of /m"),
            _ => ok(&["Cache-Control: max-age=60"], &kilo),
        })
    });
    let path = config_file(
        "flags",
        &format!("[upstreams.app]\nservers = [\"{}\"]\n", origin.addr),
    );
    // Without -c the cache is off: no X-Cache.
    let off = Proxy::start(STAGE7, &[], &["--config", path.to_str().unwrap()]);
    assert_eq!(get(&off, "/f").header("x-cache"), None);
    // --cache-ttl turns it on and gives silent responses a lifetime.
    let on = Proxy::start(
        STAGE7,
        &[],
        &["--config", path.to_str().unwrap(), "--cache-ttl", "60"],
    );
    get(&on, "/f");
    assert_eq!(x_cache(&get(&on, "/f")), "HIT");
    // -c turns it on with the defaults: no default_ttl, so /f (no freshness) is not kept,
    // /m (max-age) is.
    let on = Proxy::start(STAGE7, &[], &["--config", path.to_str().unwrap(), "-c"]);
    get(&on, "/f");
    assert_eq!(x_cache(&get(&on, "/f")), "MISS");
    get(&on, "/m");
    assert_eq!(x_cache(&get(&on, "/m")), "HIT");
    // --cache-size bounds it: room for one entry of about 1 KB, not two.
    let small = Proxy::start(
        STAGE7,
        &[],
        &["--config", path.to_str().unwrap(), "--cache-size", "1500"],
    );
    get(&small, "/k1");
    assert_eq!(x_cache(&get(&small, "/k1")), "HIT");
    get(&small, "/k2");
    assert_eq!(
        x_cache(&get(&small, "/k1")),
        "MISS",
        "/k1 was evicted for /k2"
    );
    let bad = config_file(
        "bad",
        "[upstreams.app]\nservers = [\"127.0.0.1:1\"]\n[cache]\nmax_sise = 1\n",
    );
    let out = std::process::Command::new(STAGE7)
        .args(["-t", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `max_sise`"));
}

/// The cache the Python proxies had, in a few lines, for chapter 07: every GET's 200 kept for
/// 300 s by path, whatever the origin said.
mod naive {
    use super::*;
    use revproxy::http::{RequestHead, ResponseHead};
    use revproxy::relay::{BodyObserver, BodyPlan, Client, Phases, Relay, Reply, ReplyBody};
    use revproxy::server::pool::{Pool, PoolConfig};
    use revproxy::upstream::{Connector, SingleUpstream, UpstreamTimeouts};
    use std::collections::HashMap;
    use std::time::Instant;

    pub type Table = Arc<Mutex<HashMap<String, (Instant, Arc<[u8]>)>>>;

    #[derive(Default)]
    pub struct NaiveCache(Table);

    impl Phases for NaiveCache {
        type Ctx = ();

        fn request(&self, _: &mut (), head: &mut RequestHead, _: &Client) -> Option<Reply> {
            let table = self.0.lock().unwrap();
            let (at, body) = table.get(&head.target)?;
            (at.elapsed() < Duration::from_secs(300))
                .then(|| Reply::new(200).body("text/plain", ReplyBody::Shared(body.clone())))
        }

        fn response_head(
            &self,
            _: &mut (),
            req: &RequestHead,
            res: &mut ResponseHead,
            plan: &mut BodyPlan,
        ) {
            if req.method == "GET" && res.status == 200 {
                plan.observe(Fill(self.0.clone(), req.target.clone(), Vec::new()));
            }
        }
    }

    struct Fill(Table, String, Vec<u8>);

    impl BodyObserver for Fill {
        fn data(&mut self, bytes: &[u8]) {
            self.2.extend_from_slice(bytes);
        }
        fn end(&mut self, _complete: bool) {
            let body = std::mem::take(&mut self.2).into();
            self.0
                .lock()
                .unwrap()
                .insert(self.1.clone(), (Instant::now(), body));
        }
    }

    /// The naive cache in a relay in front of `origin`, and its table.
    pub fn start(origin: SocketAddr) -> (SocketAddr, Table) {
        let cache = NaiveCache::default();
        let table = cache.0.clone();
        let timeouts = UpstreamTimeouts {
            connect: TIMEOUT,
            read: TIMEOUT,
            write: TIMEOUT,
        };
        let relay = Relay::with_phases(
            Default::default(),
            Arc::new(SingleUpstream(origin)),
            Connector::new(timeouts),
            cache,
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::new(&PoolConfig::default()).unwrap();
        thread::spawn(move || revproxy::server::serve(&listener, &pool, Arc::new(relay)));
        (addr, table)
    }

    /// Waits (bounded) until `target` is in the table: it is filled after the client has the
    /// body.
    pub fn wait_stored(table: &Table, target: &str) {
        for _ in 0..500 {
            if table.lock().unwrap().contains_key(target) {
                return;
            }
            thread::sleep(Duration::from_millis(2));
        }
        panic!("{target} never stored");
    }
}

#[test]
fn a_naive_ttl_cache_leaks_a_private_page_and_keeps_no_store_where_stage7_does_not() {
    let quotes = Arc::new(AtomicUsize::new(0));
    let q = quotes.clone();
    let origin = Origin::start(move |head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        Some(match path {
            "/account" => {
                let user = header_of(head, "authorization").unwrap_or_default();
                ok(&["Cache-Control: private"], &format!("account of {user}"))
            }
            _ => {
                let n = q.fetch_add(1, Ordering::SeqCst) + 1;
                ok(&["Cache-Control: no-store"], &format!("quote {n}"))
            }
        })
    });
    let (naive, table) = naive::start(origin.addr);
    let stage7 = proxy("naive", &origin, "");
    let ask = |addr: SocketAddr, target: &str, user: &str| {
        let mut c = connect(addr);
        c.send(
            format!("GET {target} HTTP/1.1\r\nHost: cache.test\r\nAuthorization: {user}\r\n\r\n")
                .as_bytes(),
        );
        c.read_response("GET").text()
    };
    assert_eq!(ask(naive, "/account", "alice"), "account of alice");
    naive::wait_stored(&table, "/account");
    assert_eq!(
        ask(naive, "/account", "bob"),
        "account of alice",
        "the naive cache leaks"
    );
    assert_eq!(ask(stage7.addr, "/account", "alice"), "account of alice");
    assert_eq!(ask(stage7.addr, "/account", "bob"), "account of bob");
    let first = ask(naive, "/quote", "-");
    naive::wait_stored(&table, "/quote");
    assert_eq!(
        ask(naive, "/quote", "-"),
        first,
        "the naive cache keeps a no-store answer"
    );
    let a = ask(stage7.addr, "/quote", "-");
    assert_ne!(
        ask(stage7.addr, "/quote", "-"),
        a,
        "stage 7 asks the origin every time"
    );
}

#[test]
fn a_range_request_is_answered_206_from_a_stored_200() {
    let origin = Origin::start(|head| {
        Some(if header_of(head, "range").is_some() {
            "HTTP/1.1 206 Partial Content\r\nCache-Control: max-age=60\r\nContent-Range: bytes 0-1/10\r\nContent-Length: 2\r\n\r\n01".into()
        } else {
            ok(&["Cache-Control: max-age=60"], "0123456789")
        })
    });
    let p = proxy("range", &origin, "");
    // A miss with Range goes to the origin as it is. Its 206 is stored as a part, but
    // without a strong validator it cannot be completed: the whole is fetched.
    let res = request(&p, "GET", "/r", &["Range: bytes=0-1"]);
    assert_eq!((res.status, x_cache(&res)), (206, "MISS"));
    let whole = get(&p, "/r");
    assert_eq!((whole.status, whole.text().as_str()), (200, "0123456789"));
    assert_eq!(origin.count("/r"), 2);
    let part = request(&p, "GET", "/r", &["Range: bytes=2-4"]);
    assert_eq!(
        (part.status, part.text().as_str(), x_cache(&part)),
        (206, "234", "HIT")
    );
    assert_eq!(part.header("content-range"), Some("bytes 2-4/10"));
    let tail = request(&p, "GET", "/r", &["Range: bytes=-3"]);
    assert_eq!((tail.status, tail.text().as_str()), (206, "789"));
    let outside = request(&p, "GET", "/r", &["Range: bytes=20-"]);
    assert_eq!(
        (outside.status, outside.header("content-range")),
        (416, Some("bytes */10"))
    );
    assert_eq!(origin.count("/r"), 2, "all answered from the stored 200");
    // Several ranges are left to the origin. Its answer, a part that cannot be combined
    // (no validator), does not displace the whole entry.
    request(&p, "GET", "/r", &["Range: bytes=0-1,3-4"]);
    assert_eq!(origin.count("/r"), 3);
    let whole = get(&p, "/r");
    assert_eq!(
        (whole.text().as_str(), x_cache(&whole)),
        ("0123456789", "HIT")
    );
    assert_eq!(origin.count("/r"), 3);
}

/// The one representation a [`ranged_origin`] serves; a test may change it between requests.
struct Representation {
    body: &'static str,
    etag: &'static str,
}

fn representation(body: &'static str, etag: &'static str) -> Arc<Mutex<Representation>> {
    Arc::new(Mutex::new(Representation { body, etag }))
}

/// An origin serving `rep` at every path, fresh for 60 s: a request with one byte range gets
/// a `206` of that range, unless its `If-Range` names another tag (then the whole `200`).
fn ranged_origin(rep: Arc<Mutex<Representation>>) -> Origin {
    Origin::start(move |head| {
        let rep = rep.lock().unwrap();
        let etag = format!("ETag: {}", rep.etag);
        let fields = ["Cache-Control: max-age=60", etag.as_str()];
        let if_range_holds = header_of(head, "if-range").is_none_or(|tag| tag == rep.etag);
        let Some(spec) = header_of(head, "range").filter(|_| if_range_holds) else {
            return Some(ok(&fields, rep.body));
        };
        let len = rep.body.len();
        let (first, last) = match spec.strip_prefix("bytes=")?.split_once('-')? {
            ("", n) => (len.saturating_sub(n.parse().ok()?), len - 1),
            (a, "") => (a.parse().ok()?, len - 1),
            (a, b) => (a.parse().ok()?, b.parse::<usize>().ok()?.min(len - 1)),
        };
        let part = &rep.body[first..=last];
        Some(format!(
            "HTTP/1.1 206 Partial Content\r\n{}\r\n{}\r\nContent-Range: bytes {first}-{last}/{len}\r\nContent-Length: {}\r\n\r\n{part}",
            fields[0],
            fields[1],
            part.len()
        ))
    })
}

fn ranged(proxy: &Proxy, target: &str, range: &str) -> Response {
    request(proxy, "GET", target, &[&format!("Range: {range}")])
}

/// RFC 9111 section 3.3: a `206` is stored as a part; a later range inside it is answered
/// from it with its own `Content-Range`, and one outside it goes to the origin.
#[test]
fn a_stored_206_answers_the_ranges_it_holds() {
    let origin = ranged_origin(representation("0123456789", "\"v1\""));
    let p = proxy("partial-reuse", &origin, "");
    let first = ranged(&p, "/p", "bytes=2-5");
    assert_eq!(
        (first.status, first.text().as_str(), x_cache(&first)),
        (206, "2345", "MISS")
    );
    for (range, body, content_range) in [
        ("bytes=3-4", "34", "bytes 3-4/10"),
        ("bytes=2-5", "2345", "bytes 2-5/10"),
        ("bytes=5-5", "5", "bytes 5-5/10"),
    ] {
        let res = ranged(&p, "/p", range);
        assert_eq!(
            (res.status, res.text().as_str(), x_cache(&res)),
            (206, body, "HIT"),
            "{range}"
        );
        assert_eq!(res.header("content-range"), Some(content_range), "{range}");
    }
    // The request in fragments, as a slow client sends it.
    let mut c = connect(p.addr);
    c.send_in_fragments(
        b"GET /p HTTP/1.1\r\nHost: cache.test\r\nRange: bytes=4-5\r\n\r\n",
        3,
    );
    let res = c.read_response("GET");
    assert_eq!((res.status, res.text().as_str()), (206, "45"));
    // The part knows the complete length: past it is 416, from the cache.
    let res = ranged(&p, "/p", "bytes=20-");
    assert_eq!(
        (res.status, res.header("content-range")),
        (416, Some("bytes */10"))
    );
    assert_eq!(origin.count("/p"), 1, "all from the stored part");
    for (range, body) in [("bytes=1-3", "123"), ("bytes=5-8", "5678")] {
        let res = ranged(&p, "/p", range);
        assert_eq!(
            (res.status, res.text().as_str(), x_cache(&res)),
            (206, body, "MISS"),
            "{range} is not all held"
        );
    }
    assert_eq!(origin.count("/p"), 3);
}

/// RFC 9111 section 3.4: parts with the same strong validator are combined; once they cover
/// the whole representation, a request without `Range` gets the whole `200` from the cache.
/// Parts of different representations are never joined.
#[test]
fn parts_with_the_same_strong_validator_combine_into_the_whole() {
    let rep = representation("0123456789", "\"v1\"");
    let origin = ranged_origin(Arc::clone(&rep));
    let p = proxy("partial-combine", &origin, "");
    ranged(&p, "/c", "bytes=0-4");
    ranged(&p, "/c", "bytes=3-");
    let res = ranged(&p, "/c", "bytes=2-6");
    assert_eq!(
        (res.status, res.text().as_str(), x_cache(&res)),
        (206, "23456", "HIT")
    );
    let whole = get(&p, "/c");
    assert_eq!(
        (whole.status, whole.text().as_str(), x_cache(&whole)),
        (200, "0123456789", "HIT")
    );
    assert_eq!(whole.header("content-range"), None);
    assert_eq!(whole.header("etag"), Some("\"v1\""));
    assert_eq!(origin.count("/c"), 2);

    // The representation changes between the two parts: the newer part replaces the older
    // and a request for the gap is fetched, so the whole is all of the new one.
    ranged(&p, "/n", "bytes=0-4");
    *rep.lock().unwrap() = Representation {
        body: "abcdefghij",
        etag: "\"v2\"",
    };
    ranged(&p, "/n", "bytes=5-");
    let res = ranged(&p, "/n", "bytes=0-4");
    assert_eq!((res.text().as_str(), x_cache(&res)), ("abcde", "MISS"));
    let whole = get(&p, "/n");
    assert_eq!(
        (whole.text().as_str(), x_cache(&whole)),
        ("abcdefghij", "HIT")
    );

    // A weak validator does not allow combining: the whole goes to the origin.
    let origin = ranged_origin(representation("0123456789", "W/\"w\""));
    let p = proxy("partial-weak", &origin, "");
    ranged(&p, "/w", "bytes=0-4");
    ranged(&p, "/w", "bytes=5-");
    let whole = get(&p, "/w");
    assert_eq!(
        (whole.status, whole.text().as_str(), x_cache(&whole)),
        (200, "0123456789", "MISS")
    );
    assert_eq!(origin.count("/w"), 3);
}

/// A part that holds the start of a representation is completed with a request for the
/// rest (`Range: bytes=N-`, `If-Range` with its strong validator): the client that asked for
/// the whole gets a `200` of the stored start and the origin's rest, and the entry is whole.
#[test]
fn a_partial_entry_is_completed_with_a_range_request_for_the_rest() {
    let rep = representation("0123456789", "\"v1\"");
    let origin = ranged_origin(Arc::clone(&rep));
    let p = proxy("partial-complete", &origin, "");
    ranged(&p, "/x", "bytes=0-3");
    let whole = get(&p, "/x");
    assert_eq!(
        (whole.status, whole.text().as_str(), x_cache(&whole)),
        (200, "0123456789", "MISS")
    );
    assert_eq!(whole.header("content-range"), None);
    let asked = origin.last_head();
    assert_eq!(header_of(&asked, "range").as_deref(), Some("bytes=4-"));
    assert_eq!(header_of(&asked, "if-range").as_deref(), Some("\"v1\""));
    let again = get(&p, "/x");
    assert_eq!(
        (again.status, again.text().as_str(), x_cache(&again)),
        (200, "0123456789", "HIT")
    );
    assert_eq!(origin.count("/x"), 2);

    // Changed meanwhile: If-Range fails, the origin sends the new whole 200, which the
    // client gets and the cache keeps.
    ranged(&p, "/y", "bytes=0-3");
    *rep.lock().unwrap() = Representation {
        body: "abcdefghij",
        etag: "\"v2\"",
    };
    let whole = get(&p, "/y");
    assert_eq!((whole.status, whole.text().as_str()), (200, "abcdefghij"));
    let again = get(&p, "/y");
    assert_eq!(
        (again.text().as_str(), x_cache(&again)),
        ("abcdefghij", "HIT")
    );
    assert_eq!(origin.count("/y"), 2);
}

/// A part is held only if its whole representation would fit in `max_entry_size` (parts
/// count against the same bounds as whole responses), and only if its body is the length its
/// `Content-Range` says: otherwise a hit would cut the wrong bytes.
#[test]
fn a_part_too_large_for_an_entry_or_not_the_length_it_says_is_not_stored() {
    let origin = ranged_origin(representation("0123456789", "\"v1\""));
    for (name, cache, fetched) in [
        ("partial-bound", "max_entry_size = 8\n", 2),
        ("partial-fits", "max_entry_size = 10\n", 1),
    ] {
        let p = proxy(name, &origin, cache);
        let target = format!("/{name}");
        for _ in 0..2 {
            let res = ranged(&p, &target, "bytes=0-3");
            assert_eq!((res.status, res.text().as_str()), (206, "0123"), "{cache}");
        }
        assert_eq!(origin.count(&target), fetched, "{cache}");
    }
    // Bytes 4-9 are six bytes, not five.
    let origin = Origin::start(|_| {
        Some("HTTP/1.1 206 Partial Content\r\nCache-Control: max-age=60\r\nETag: \"v1\"\r\nContent-Range: bytes 4-9/10\r\nContent-Length: 5\r\n\r\n01234".into())
    });
    let p = proxy("partial-wrong-length", &origin, "");
    for _ in 0..2 {
        assert_eq!(ranged(&p, "/l", "bytes=4-8").status, 206);
    }
    assert_eq!(origin.count("/l"), 2, "not stored, so fetched twice");
}

#[test]
fn stale_while_revalidate_serves_the_stale_copy_and_refreshes_it_once_in_the_background() {
    let origin = Origin::start(|head| {
        Some(if header_of(head, "if-none-match").is_some() {
            "HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=100\r\nX-Version: 2\r\n\r\n"
                .to_owned()
        } else {
            ok(
                &[
                    &format!("Date: {}", date(-10)),
                    "Cache-Control: max-age=1, stale-while-revalidate=600",
                    "ETag: \"v1\"",
                    "X-Version: 1",
                ],
                "swr body",
            )
        })
    });
    let p = proxy("swr", &origin, "");
    get(&p, "/w");
    let res = get(&p, "/w");
    assert_eq!((x_cache(&res), res.text().as_str()), ("STALE", "swr body"));
    // Until the refresh lands, more stale hits (they start no second refresh).
    for _ in 0..3 {
        let res = get(&p, "/w");
        assert!(matches!(x_cache(&res), "STALE" | "HIT"), "{res:?}");
        assert_eq!(res.text(), "swr body");
    }
    // Bounded wait for the background refresh to be stored.
    let mut refreshed = None;
    for _ in 0..500 {
        let res = get(&p, "/w");
        if res.header("x-version") == Some("2") {
            refreshed = Some(res);
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let res = refreshed.expect("the entry was refreshed in the background");
    assert_eq!(x_cache(&res), "HIT");
    assert!(
        origin.last_head().contains("If-None-Match: \"v1\""),
        "{}",
        origin.last_head()
    );
    assert_eq!(
        origin.count("/w"),
        2,
        "one background refresh, however many stale hits"
    );
}

#[test]
fn statuses_not_cacheable_by_default_need_explicit_freshness() {
    let modified = format!("Last-Modified: {}", date(-864_000));
    let origin = Origin::start(move |head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        let (status, cc) = match path {
            "/302-heuristic" => ("302 Found", None),
            "/302-max-age" => ("302 Found", Some("Cache-Control: max-age=60")),
            "/404-heuristic" => ("404 Not Found", None),
            _ => return None,
        };
        let mut lines = format!("HTTP/1.1 {status}\r\n{modified}\r\nContent-Length: 2\r\n");
        if let Some(cc) = cc {
            lines.push_str(cc);
            lines.push_str("\r\n");
        }
        Some(lines + "\r\nno")
    });
    let p = proxy("statuses", &origin, "");
    for (path, stored) in [
        ("/302-heuristic", false),
        ("/302-max-age", true),
        ("/404-heuristic", true),
    ] {
        get(&p, path);
        let again = get(&p, path);
        assert_eq!(x_cache(&again) == "HIT", stored, "{path}: {again:?}");
        assert_eq!(origin.count(path), if stored { 1 } else { 2 }, "{path}");
    }
}

#[test]
fn an_authorised_answer_is_stored_when_s_maxage_or_must_revalidate_allows_it() {
    let cc = |v: &str| vec![format!("Cache-Control: {v}")];
    let origin = table_origin(vec![
        ("/s-maxage", cc("s-maxage=60")),
        ("/must-revalidate", cc("max-age=60, must-revalidate")),
    ]);
    let p = proxy("auth-allowed", &origin, "");
    for path in ["/s-maxage", "/must-revalidate"] {
        request(&p, "GET", path, &["Authorization: Bearer alice"]);
        assert_eq!(x_cache(&get(&p, path)), "HIT", "{path}");
        assert_eq!(origin.count(path), 1, "{path}");
    }
}

#[test]
fn hop_by_hop_fields_and_those_connection_names_are_not_stored() {
    let origin = table_origin(vec![(
        "/hop",
        vec![
            "Cache-Control: max-age=60".into(),
            "Connection: X-Secret".into(),
            "X-Secret: for this hop".into(),
            "Keep-Alive: timeout=5".into(),
            "Proxy-Authenticate: Basic".into(),
            "X-Kept: yes".into(),
        ],
    )]);
    let p = proxy("hop", &origin, "");
    get(&p, "/hop");
    let hit = get(&p, "/hop");
    assert_eq!((x_cache(&hit), hit.header("x-kept")), ("HIT", Some("yes")));
    for name in ["x-secret", "keep-alive", "proxy-authenticate"] {
        assert_eq!(hit.header(name), None, "{name} in {hit:?}");
    }
}

#[test]
fn response_no_cache_revalidates_every_time_and_must_revalidate_is_never_served_stale() {
    let origin = Origin::start(|head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        if header_of(head, "if-none-match").as_deref() == Some("\"nc\"") {
            return Some("HTTP/1.1 304 Not Modified\r\n\r\n".into());
        }
        Some(match path {
            "/no-cache" => ok(
                &["Cache-Control: no-cache, max-age=60", "ETag: \"nc\""],
                "nc",
            ),
            _ => ok(
                &[
                    &format!("Date: {}", date(-10)),
                    "Cache-Control: max-age=1, must-revalidate",
                ],
                "strict",
            ),
        })
    });
    let p = proxy("no-cache", &origin, "");
    get(&p, "/no-cache");
    for _ in 0..2 {
        let res = get(&p, "/no-cache");
        assert_eq!((x_cache(&res), res.text().as_str()), ("REVALIDATED", "nc"));
    }
    assert_eq!(origin.count("/no-cache"), 3, "asked every time");
    get(&p, "/strict");
    let res = request(&p, "GET", "/strict", &["Cache-Control: max-stale=600"]);
    assert_ne!(x_cache(&res), "STALE", "must-revalidate beats max-stale");
    assert_eq!(origin.count("/strict"), 2);
}

#[test]
fn every_successful_unsafe_method_invalidates_its_target() {
    let origin = Origin::start(|head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        Some(ok(
            &["Cache-Control: max-age=60"],
            &format!("body of {path}"),
        ))
    });
    let p = proxy("unsafe-methods", &origin, "");
    for method in ["PUT", "DELETE", "PATCH", "FROBNICATE"] {
        let path = format!("/{}", method.to_ascii_lowercase());
        get(&p, &path);
        assert_eq!(x_cache(&get(&p, &path)), "HIT", "{path}");
        let res = request(&p, method, &path, &["Content-Length: 0"]);
        assert_eq!((res.status, x_cache(&res)), (200, "BYPASS"), "{method}");
        assert_eq!(
            x_cache(&get(&p, &path)),
            "MISS",
            "{method} invalidated {path}"
        );
    }
    // Safe methods other than GET and HEAD change nothing.
    let res = request(&p, "OPTIONS", "/put", &[]);
    assert_eq!(x_cache(&res), "BYPASS");
    assert_eq!(x_cache(&get(&p, "/put")), "HIT");
}

#[test]
fn a_waiter_goes_upstream_itself_once_lock_timeout_passes() {
    // The first request's answer is held until the test lets it go; the second one waits
    // lock_timeout_ms for it, then asks the origin itself.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = Mutex::new(Some(held));
    let origin = Origin::start(move |_| {
        let first = held.lock().unwrap().take(); // not held while the answer is
        if let Some(held) = first {
            let _ = held.recv_timeout(TIMEOUT);
            return Some(ok(&["Cache-Control: max-age=60"], "first"));
        }
        Some(ok(&["Cache-Control: max-age=60"], "second"))
    });
    let p = Arc::new(proxy("lock-timeout", &origin, "lock_timeout_ms = 50\n"));
    let p1 = p.clone();
    let leader = thread::spawn(move || get(&p1, "/slow").text());
    // Bounded wait until the leader's request reached the origin.
    for _ in 0..500 {
        if origin.count("/slow") == 1 {
            break;
        }
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(origin.count("/slow"), 1);
    let res = get(&p, "/slow");
    assert_eq!((res.status, res.text().as_str()), (200, "second"));
    assert_eq!(origin.count("/slow"), 2, "the waiter did not wait for ever");
    release.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), "first");
}

#[test]
fn a_miss_streams_to_the_client_before_the_origin_has_sent_it_all() {
    // The origin sends half the body, then waits until the client has read that half
    // through the proxy: a cache that buffered the whole body first would deadlock here
    // (until the origin's bounded wait ends, and the test fails).
    let (got_half, half_seen) = std::sync::mpsc::channel::<()>();
    let half_seen = Arc::new(Mutex::new(half_seen));
    let origin = support::raw_backend(move |mut s| {
        let head = read_request_head(&mut s);
        if head.is_empty() {
            return;
        }
        let first =
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 10\r\n\r\nhello";
        let _ = s.write_all(first.as_bytes());
        let seen = half_seen.lock().unwrap().recv_timeout(TIMEOUT).is_ok();
        let _ = s.write_all(if seen { b"world" } else { b"late!" });
    });
    let text = format!(
        "[upstreams.app]\nservers = [\"{origin}\"]\nretries = 0\n[cache]\nenabled = true\n"
    );
    let p = Proxy::start(
        STAGE7,
        &[],
        &["--config", config_file("stream", &text).to_str().unwrap()],
    );
    let mut c = connect(p.addr);
    c.send(b"GET /s HTTP/1.1\r\nHost: cache.test\r\n\r\n");
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !seen.ends_with(b"hello") {
        let n = std::io::Read::read(&mut c.stream, &mut buf).expect("the first half arrives");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    got_half.send(()).unwrap();
    while !seen.ends_with(b"world") {
        let n = std::io::Read::read(&mut c.stream, &mut buf).expect("the rest arrives");
        assert!(
            n > 0 && !seen.ends_with(b"late!"),
            "{}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let hit = get(&p, "/s");
    assert_eq!((x_cache(&hit), hit.text().as_str()), ("HIT", "helloworld"));
}

#[test]
fn the_least_recently_used_is_evicted_at_max_entries() {
    let origin = Origin::start(|_| Some(ok(&["Cache-Control: max-age=60"], "e")));
    let p = proxy("max-entries", &origin, "max_entries = 2\n");
    get(&p, "/a");
    get(&p, "/b");
    assert_eq!(x_cache(&get(&p, "/a")), "HIT");
    get(&p, "/c");
    assert_eq!(
        x_cache(&get(&p, "/b")),
        "MISS",
        "/b was least recently used"
    );
    assert_eq!(origin.count("/b"), 2);
}

#[test]
fn a_large_hit_is_sent_whole_from_the_stored_body() {
    // Over the size below which a hit's body is copied after its head: head and body leave
    // gathered in one write, and the next response on the connection starts where it should.
    let body: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let expected = body.clone();
    let origin =
        Origin::start(move |_| Some(ok(&["Cache-Control: max-age=60", "X-Kind: big"], &body)));
    let p = proxy("large-hit", &origin, "");
    let mut c = connect(p.addr);
    for want in ["MISS", "HIT", "HIT"] {
        c.send(b"GET /big HTTP/1.1\r\nHost: cache.test\r\n\r\n");
        let res = c.read_response("GET");
        assert_eq!((x_cache(&res), res.header("x-kind")), (want, Some("big")));
        assert!(res.text() == expected, "{want}: {} bytes", res.body.len());
    }
    assert_eq!(origin.count("/big"), 1);
}

#[test]
fn a_head_miss_on_a_chunked_answer_is_stored_and_the_connection_stays_in_step() {
    let origin = Origin::start(|_| {
        Some("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".into())
    });
    let p = proxy("head-chunked", &origin, "");
    let mut c = connect(p.addr);
    c.send(b"HEAD /c HTTP/1.1\r\nHost: cache.test\r\n\r\n");
    let res = c.read_response("HEAD");
    assert_eq!(
        (res.status, x_cache(&res), res.body.len()),
        (200, "MISS", 0)
    );
    c.send(b"GET /c HTTP/1.1\r\nHost: cache.test\r\n\r\n");
    let res = c.read_response("GET");
    assert_eq!((x_cache(&res), res.text().as_str()), ("HIT", "hello world"));
    assert_eq!(res.header("content-length"), Some("11"));
    assert_eq!(origin.count("/c"), 1);
}
