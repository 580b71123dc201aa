//! Stage 9's compression over real sockets: an in-process relay with `CompressPhases` (and,
//! in one test, `CachePhases` before it) in front of a hand-written origin whose responses
//! each test chooses by path. Bodies are decoded with flate2 and brotli and compared with
//! what the origin sent.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use revproxy::cache::{CachePhases, CacheSettings};
use revproxy::compress::{CompressPhases, CompressSettings};
use revproxy::relay::{Phases, Relay, RelayConfig};
use revproxy::server::pool::{Pool, PoolConfig};
use revproxy::upstream::{Connector, SingleUpstream, UpstreamTimeouts};
use support::{connect, raw_backend, read_request_head, Response, TIMEOUT};

/// A body that compresses well and is far above the minimum length.
fn json_body() -> Vec<u8> {
    let items: Vec<String> = (0..600)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"name\":\"item {}\",\"tags\":[\"a\",\"b\"]}}",
                i % 17
            )
        })
        .collect();
    format!("[{}]", items.join(",")).into_bytes()
}

const SMALL: &[u8] = b"short answer\n";

/// The origin's answer to `GET path` (a HEAD gets the same head, no body).
fn answer(path: &str, body: &[u8]) -> (String, Vec<u8>) {
    let json = "Content-Type: application/json\r\n";
    let len = format!("Content-Length: {}\r\n", body.len());
    let ok = |extra: &str| {
        (
            format!("HTTP/1.1 200 OK\r\n{json}{extra}{len}\r\n"),
            body.to_vec(),
        )
    };
    match path {
        "/length" | "/cached" => {
            ok("ETag: \"v1\"\r\nAccept-Ranges: bytes\r\nCache-Control: max-age=60\r\n")
        }
        "/cached-vary" => ok("Cache-Control: max-age=60\r\nVary: Accept-Encoding\r\n"),
        "/vary" => ok("Vary: Origin\r\n"),
        "/no-transform" => ok("Cache-Control: public, no-transform\r\n"),
        "/chunked" => {
            let mut chunked = Vec::new();
            for piece in body.chunks(1000) {
                chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                chunked.extend_from_slice(piece);
                chunked.extend_from_slice(b"\r\n");
            }
            chunked.extend_from_slice(b"0\r\n\r\n");
            (
                format!("HTTP/1.1 200 OK\r\n{json}Transfer-Encoding: chunked\r\n\r\n"),
                chunked,
            )
        }
        "/small" => (
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                SMALL.len()
            ),
            SMALL.to_vec(),
        ),
        "/png" => (
            format!("HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n{len}\r\n"),
            body.to_vec(),
        ),
        "/encoded" => (
            format!("HTTP/1.1 200 OK\r\n{json}Content-Encoding: gzip\r\n{len}\r\n"),
            body.to_vec(),
        ),
        "/no-content" => (format!("HTTP/1.1 204 No Content\r\n{json}\r\n"), Vec::new()),
        "/not-modified" => (
            format!("HTTP/1.1 304 Not Modified\r\n{json}ETag: \"v1\"\r\n\r\n"),
            Vec::new(),
        ),
        "/partial" => (
            format!(
                "HTTP/1.1 206 Partial Content\r\n{json}Content-Range: bytes 0-{}/{}\r\n{len}\r\n",
                body.len() - 1,
                body.len() * 2
            ),
            body.to_vec(),
        ),
        _ => (
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned(),
            Vec::new(),
        ),
    }
}

/// An origin that answers by path, keep-alive, and counts the requests it got per path.
fn origin() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let body = Arc::new(json_body());
    let addr = raw_backend(move |mut s| loop {
        let head = read_request_head(&mut s);
        if head.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut words = text.split(' ');
        let method = words.next().unwrap_or("").to_owned();
        let path = words.next().unwrap_or("").to_owned();
        log.lock().unwrap().push(path.clone());
        let (head, body) = answer(&path, &body);
        let mut out = head.into_bytes();
        if method != "HEAD" {
            out.extend(body);
        }
        if s.write_all(&out).is_err() {
            return;
        }
    });
    (addr, seen)
}

fn serve<P: Phases>(origin: SocketAddr, phases: P) -> SocketAddr {
    let timeouts = UpstreamTimeouts {
        connect: TIMEOUT,
        read: TIMEOUT,
        write: TIMEOUT,
    };
    let relay = Relay::with_phases(
        RelayConfig::default(),
        Arc::new(SingleUpstream(origin)),
        Connector::new(timeouts),
        phases,
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let pool = Pool::new(&PoolConfig::default()).unwrap();
    thread::spawn(move || revproxy::server::serve(&listener, &pool, Arc::new(relay)));
    addr
}

fn compressing_proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let (origin, seen) = origin();
    (
        serve(origin, CompressPhases::new(CompressSettings::default())),
        seen,
    )
}

fn decode(coding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => flate2::read::GzDecoder::new(bytes).read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(bytes).read_to_end(&mut out),
        "br" => brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out),
        other => panic!("unexpected coding {other}"),
    }
    .unwrap_or_else(|e| panic!("{coding} body does not decode: {e}"));
    out
}

/// Everything a stream that has not ended yet decodes to.
fn decode_prefix(coding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut reader: Box<dyn Read + '_> = match coding {
        "gzip" => Box::new(flate2::read::GzDecoder::new(bytes)),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(bytes)),
        _ => Box::new(brotli::Decompressor::new(bytes, 4096)),
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..10_000 {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

fn get(path: &str, accept: &str) -> Vec<u8> {
    let accept = if accept.is_empty() {
        String::new()
    } else {
        format!("Accept-Encoding: {accept}\r\n")
    };
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n{accept}\r\n").into_bytes()
}

/// Every value of `name`, in order.
fn all(res: &Response, name: &str) -> Vec<String> {
    res.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

#[test]
fn each_coding_decodes_to_the_origin_body_for_length_and_chunked_origins() {
    let (proxy, _) = compressing_proxy();
    let body = json_body();
    let mut c = connect(proxy);
    for coding in ["gzip", "deflate", "br"] {
        for path in ["/length", "/chunked"] {
            // One connection for all: each re-framed body ends where the next response starts.
            c.send_in_fragments(&get(path, coding), 11);
            let res = c.read_response("GET");
            assert_eq!(res.status, 200);
            assert_eq!(res.header("content-encoding"), Some(coding), "{path}");
            assert_eq!(res.header("content-length"), None, "{path}");
            assert_eq!(res.header("transfer-encoding"), Some("chunked"), "{path}");
            assert_eq!(all(&res, "vary"), vec!["Accept-Encoding"], "{path}");
            assert!(
                res.body.len() < body.len() / 3,
                "{coding} {path}: {} bytes",
                res.body.len()
            );
            assert_eq!(decode(coding, &res.body), body, "{coding} {path}");
        }
    }
    c.send(&get("/length", "gzip"));
    let res = c.read_response("GET");
    assert_eq!(
        res.header("etag"),
        Some("W/\"v1\""),
        "a strong ETag is made weak"
    );
    assert_eq!(
        res.header("accept-ranges"),
        None,
        "byte ranges of identity do not apply"
    );
}

#[test]
fn the_coding_follows_the_clients_weights_over_sockets() {
    let (proxy, _) = compressing_proxy();
    let mut c = connect(proxy);
    for (accept, want) in [
        ("br;q=0.5, gzip;q=1", Some("gzip")),
        ("gzip, deflate, br", Some("br")),
        ("gzip;q=0, deflate", Some("deflate")),
        ("identity;q=0, gzip;q=0.1", Some("gzip")),
        // Identity refused and nothing else acceptable: identity anyway, never a 406.
        ("identity;q=0", None),
        ("*;q=0", None),
        ("gzip;q=0", None),
        ("identity, gzip;q=0.5", None),
        ("", None),
    ] {
        c.send(&get("/length", accept));
        let res = c.read_response("GET");
        assert_eq!(res.header("content-encoding"), want, "{accept:?}");
        assert_eq!(all(&res, "vary"), vec!["Accept-Encoding"], "{accept:?}");
        let body = match want {
            Some(coding) => decode(coding, &res.body),
            None => {
                assert_eq!(
                    res.header("etag"),
                    Some("\"v1\""),
                    "identity keeps a strong ETag"
                );
                res.body.clone()
            }
        };
        assert_eq!(body, json_body(), "{accept:?}");
    }
}

#[test]
fn an_http10_client_gets_a_close_delimited_compressed_body() {
    let (proxy, _) = compressing_proxy();
    for path in ["/length", "/chunked"] {
        let mut c = connect(proxy);
        c.send(format!("GET {path} HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n").as_bytes());
        let all_bytes = c.read_to_close().expect("the proxy closes after the body");
        let split = all_bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&all_bytes[..split]).to_ascii_lowercase();
        assert!(head.contains("content-encoding: gzip"), "{head}");
        assert!(
            !head.contains("content-length") && !head.contains("transfer-encoding"),
            "{head}"
        );
        assert!(head.contains("connection: close"), "{head}");
        assert_eq!(decode("gzip", &all_bytes[split..]), json_body(), "{path}");
    }
}

#[test]
fn excluded_responses_pass_as_the_origin_sent_them() {
    let (proxy, _) = compressing_proxy();
    let body = json_body();
    // path, extra request header, status, body expected, Vary added.
    let cases: &[(&str, &str, u16, &[u8], bool)] = &[
        ("/no-content", "", 204, b"", false),
        ("/not-modified", "", 304, b"", false),
        ("/partial", "", 206, &body, false),
        ("/length", "Range: bytes=0-\r\n", 200, &body, false),
        ("/encoded", "", 200, &body, false),
        ("/no-transform", "", 200, &body, false),
        ("/png", "", 200, &body, false),
        ("/small", "", 200, SMALL, true),
        (
            "/length",
            "Cache-Control: no-transform\r\n",
            200,
            &body,
            true,
        ),
    ];
    let mut c = connect(proxy);
    for &(path, extra, status, want, vary) in cases {
        c.send(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip, br\r\n{extra}\r\n")
                .as_bytes(),
        );
        let res = c.read_response("GET");
        assert_eq!(res.status, status, "{path} {extra:?}");
        let coding = if path == "/encoded" {
            Some("gzip")
        } else {
            None
        };
        assert_eq!(
            res.header("content-encoding"),
            coding,
            "{path} {extra:?}: not compressed by us"
        );
        assert_eq!(res.body, want, "{path} {extra:?}: the origin's bytes");
        let expect_vary: Vec<String> = if vary {
            vec!["Accept-Encoding".into()]
        } else {
            vec![]
        };
        assert_eq!(all(&res, "vary"), expect_vary, "{path} {extra:?}");
        if !want.is_empty() {
            assert_eq!(
                res.header("content-length"),
                Some(want.len().to_string().as_str()),
                "{path} {extra:?}: the length is kept"
            );
        }
    }
}

#[test]
fn a_head_gets_the_headers_its_get_would_get() {
    let (proxy, _) = compressing_proxy();
    let mut c = connect(proxy);
    for (path, accept) in [
        ("/length", "gzip"),
        ("/length", "br"),
        ("/length", ""),
        ("/small", "gzip"),
        ("/png", "gzip"),
    ] {
        let without_framing = |res: &Response| -> Vec<(String, String)> {
            let mut h: Vec<(String, String)> = res
                .headers
                .iter()
                .filter(|(n, _)| {
                    !n.eq_ignore_ascii_case("transfer-encoding") && !n.eq_ignore_ascii_case("date")
                })
                .cloned()
                .collect();
            h.sort();
            h
        };
        c.send(&get(path, accept));
        let get_res = c.read_response("GET");
        let mut head = get(path, accept);
        head.splice(0..3, *b"HEAD");
        c.send(&head);
        let head_res = c.read_response("HEAD");
        assert_eq!((head_res.status, get_res.status), (200, 200));
        assert_eq!(
            without_framing(&head_res),
            without_framing(&get_res),
            "{path} {accept:?}"
        );
    }
}

#[test]
fn vary_is_merged_with_the_origins() {
    let (proxy, _) = compressing_proxy();
    let mut c = connect(proxy);
    for accept in ["gzip", ""] {
        c.send(&get("/vary", accept));
        let res = c.read_response("GET");
        assert_eq!(
            all(&res, "vary"),
            vec!["Origin, Accept-Encoding"],
            "{accept:?}"
        );
    }
}

/// Reads from `c` until the chunked body so far decodes to at least `want`; returns what was
/// read past the head. Bounded by the client's read timeout and a deadline.
fn read_until_decoded(stream: &mut std::net::TcpStream, coding: &str, want: &[u8]) -> Vec<u8> {
    let deadline = Instant::now() + TIMEOUT;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < deadline {
        let n = stream
            .read(&mut buf)
            .expect("the first bytes arrive in time");
        assert!(n > 0, "the proxy closed early");
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let payload = complete_chunks(&raw[end + 4..]);
        if decode_prefix(coding, &payload).starts_with(want) {
            return raw;
        }
    }
    panic!("the first piece never arrived decoded");
}

/// The data of the complete chunks at the start of `bytes`.
fn complete_chunks(mut bytes: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    while let Some(line_end) = bytes.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&bytes[..line_end]);
        let size = usize::from_str_radix(size_text.trim(), 16).unwrap();
        let start = line_end + 2;
        if size == 0 || bytes.len() < start + size + 2 {
            break;
        }
        data.extend_from_slice(&bytes[start..start + size]);
        bytes = &bytes[start + size + 2..];
    }
    data
}

#[test]
fn a_streamed_response_reaches_the_client_before_the_origin_has_finished() {
    let first: &[u8] = b"{\"event\":\"first\",\"padding\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}\n";
    // Together over the 256 bytes below which a body of declared length is sent as it is.
    let rest: &[u8] = b"{\"event\":\"second\",\"padding\":\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"}\n";
    // Chunked, and with a declared length: gzip and deflate gather a short body of declared
    // length to compress it whole, and must give that up when the origin pauses.
    for declared in [false, true] {
        for coding in ["gzip", "deflate", "br"] {
            let (go_on, wait) = mpsc::channel::<()>();
            let wait = Arc::new(Mutex::new(wait));
            let origin = raw_backend(move |mut s| {
                read_request_head(&mut s);
                let json = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n";
                let chunk = |data: &[u8]| {
                    if declared {
                        return data.to_vec();
                    }
                    [format!("{:x}\r\n", data.len()).as_bytes(), data, b"\r\n"].concat()
                };
                let (framing, end) = if declared {
                    let total = first.len() + rest.len();
                    (format!("Content-Length: {total}\r\n\r\n"), Vec::new())
                } else {
                    (
                        "Transfer-Encoding: chunked\r\n\r\n".to_owned(),
                        b"0\r\n\r\n".to_vec(),
                    )
                };
                let _ = s.write_all(&[json.as_bytes(), framing.as_bytes(), &chunk(first)].concat());
                // The rest only once the test has seen the first piece through the proxy.
                if wait.lock().unwrap().recv_timeout(TIMEOUT).is_ok() {
                    let _ = s.write_all(&[chunk(rest), end].concat());
                }
            });
            let proxy = serve(origin, CompressPhases::new(CompressSettings::default()));
            let mut c = connect(proxy);
            c.send(&get("/events", coding));
            let mut raw = read_until_decoded(&mut c.stream, coding, first);
            go_on.send(()).unwrap();
            // Then the whole body, to its last chunk.
            let deadline = Instant::now() + TIMEOUT;
            while !raw.ends_with(b"0\r\n\r\n") && Instant::now() < deadline {
                let mut buf = [0u8; 4096];
                let n = c.stream.read(&mut buf).unwrap();
                assert!(n > 0, "closed before the last chunk");
                raw.extend_from_slice(&buf[..n]);
            }
            let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            assert!(
                head.contains(&format!("content-encoding: {coding}")),
                "{head}"
            );
            let payload = complete_chunks(&raw[end + 4..]);
            let whole = [first, rest].concat();
            assert_eq!(
                decode(coding, &payload),
                whole,
                "{coding}, declared {declared}"
            );
        }
    }
}

#[test]
fn the_cache_keeps_identity_and_each_client_gets_its_coding_from_one_entry() {
    let (origin, seen) = origin();
    let cache = CachePhases::new(&CacheSettings {
        enabled: true,
        ..CacheSettings::default()
    });
    let proxy = serve(
        origin,
        (cache, CompressPhases::new(CompressSettings::default())),
    );
    let body = json_body();
    let fetched = |path: &str| seen.lock().unwrap().iter().filter(|p| *p == path).count();
    let mut c = connect(proxy);
    // The origin does not vary: one entry, compressed or not on the way out.
    for (accept, coding, label) in [
        ("gzip", Some("gzip"), "MISS"),
        ("", None, "HIT"),
        ("br", Some("br"), "HIT"),
        ("gzip", Some("gzip"), "HIT"),
    ] {
        c.send(&get("/cached", accept));
        let res = c.read_response("GET");
        assert_eq!(res.header("x-cache"), Some(label), "{accept:?}");
        assert_eq!(res.header("content-encoding"), coding, "{accept:?}");
        assert_eq!(all(&res, "vary"), vec!["Accept-Encoding"], "{accept:?}");
        match coding {
            Some(coding) => {
                assert_eq!(decode(coding, &res.body), body, "{accept:?}");
                assert_eq!(res.header("etag"), Some("W/\"v1\""));
            }
            None => {
                assert_eq!(res.body, body, "identity from the stored entry");
                assert_eq!(
                    res.header("content-length"),
                    Some(body.len().to_string().as_str())
                );
                assert_eq!(res.header("etag"), Some("\"v1\""));
            }
        }
    }
    assert_eq!(fetched("/cached"), 1, "one entry served every client");
    // A weak validator from a gzip client still revalidates against the stored strong one.
    c.send(b"GET /cached HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nIf-None-Match: W/\"v1\"\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 304);

    // The origin varies on Accept-Encoding itself: one variant per header value, each right.
    for (accept, coding, label) in [
        ("gzip", Some("gzip"), "MISS"),
        ("", None, "MISS"),
        ("gzip", Some("gzip"), "HIT"),
        ("", None, "HIT"),
    ] {
        c.send(&get("/cached-vary", accept));
        let res = c.read_response("GET");
        assert_eq!(res.header("x-cache"), Some(label), "vary {accept:?}");
        assert_eq!(res.header("content-encoding"), coding, "vary {accept:?}");
        assert_eq!(
            all(&res, "vary"),
            vec!["Accept-Encoding"],
            "never twice: {accept:?}"
        );
        let got = coding.map_or_else(|| res.body.clone(), |c| decode(c, &res.body));
        assert_eq!(got, body, "vary {accept:?}");
    }
    assert_eq!(
        fetched("/cached-vary"),
        2,
        "two variants, each fetched once"
    );
    // An HTTP/1.0 client of a hit: the stored body compressed, ended by close.
    let mut old = connect(proxy);
    old.send(b"GET /cached HTTP/1.0\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    let raw = old
        .read_to_close()
        .expect("the proxy closes after the body");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(
        head.contains("x-cache: hit") && head.contains("content-encoding: gzip"),
        "{head}"
    );
    assert!(
        !head.contains("content-length") && !head.contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(decode("gzip", &raw[split..]), body);
    // A HEAD served from the entry has the GET's headers.
    c.send(b"HEAD /cached HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    let res = c.read_response("HEAD");
    assert_eq!(
        (res.header("content-encoding"), res.header("content-length")),
        (Some("gzip"), None)
    );
}

const STAGE9: &str = env!("CARGO_BIN_EXE_stage9");

/// The `stage9` binary in front of `origin`, with the cache on and `[compression]` as given.
fn stage9(name: &str, origin: SocketAddr, compression: &str) -> support::Proxy {
    let text = format!(
        "[upstreams.app]\nservers = [\"{origin}\"]\n[cache]\nenabled = true\n[compression]\n{compression}\n"
    );
    let path = std::env::temp_dir().join(format!(
        "revproxy-compress-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).expect("write the config");
    support::Proxy::start(STAGE9, &[], &["--config", path.to_str().unwrap()])
}

#[test]
fn stage9_compresses_after_its_cache_when_the_section_enables_it() {
    let (origin, seen) = origin();
    let body = json_body();
    let proxy = stage9("on", origin, "enabled = true\nprefer = [\"gzip\", \"br\"]");
    let mut c = proxy.connect();
    for (accept, coding) in [("gzip, br", Some("gzip")), ("", None), ("br", Some("br"))] {
        c.send(&get("/cached", accept));
        let res = c.read_response("GET");
        assert_eq!(res.header("content-encoding"), coding, "{accept:?}");
        assert_eq!(all(&res, "vary"), vec!["Accept-Encoding"], "{accept:?}");
        let got = coding.map_or_else(|| res.body.clone(), |c| decode(c, &res.body));
        assert_eq!(got, body, "{accept:?}");
    }
    let fetched = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|p| *p == "/cached")
        .count();
    assert_eq!(
        fetched, 1,
        "the cache served the identity body to every coding"
    );

    let off = stage9("off", origin, "enabled = false");
    let mut c = off.connect();
    c.send(&get("/length", "gzip"));
    let res = c.read_response("GET");
    assert_eq!(
        (res.header("content-encoding"), res.header("vary")),
        (None, None)
    );
    assert_eq!(res.body, body);
}

#[test]
fn an_origin_that_breaks_off_a_declared_body_leaves_the_client_a_body_without_its_end() {
    let body = json_body();
    for coding in ["gzip", "deflate"] {
        let part = body[..body.len() / 2].to_vec();
        let total = body.len();
        let origin = raw_backend(move |mut s| {
            read_request_head(&mut s);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {total}\r\n\r\n"
            );
            let _ = s.write_all(&[head.as_bytes(), &part].concat());
            // Then the origin goes away, half its declared body short.
        });
        let proxy = serve(origin, CompressPhases::new(CompressSettings::default()));
        let mut c = connect(proxy);
        c.send(&get("/half", coding));
        let raw = c.read_to_close().expect("the proxy closes the connection");
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(
            head.contains(&format!("content-encoding: {coding}")),
            "{head}"
        );
        assert!(
            !raw.ends_with(b"0\r\n\r\n"),
            "{coding}: a body cut short must not end as if whole"
        );
    }
}
