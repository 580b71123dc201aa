//! Stage 1: bad input gets a status (400, 413, 414, 431), a dead origin 502, a slow one 504,
//! and the smuggling framings are refused before anything reaches an origin.

use std::io::Write;
use std::thread;

use super::framing::next_response_is_clean;
use super::{body_hint, expect_nothing_reached, Check, Checked, Ctx, Failure};
use crate::http::{self, Conn, Response};
use crate::setup::Setup;

const BAD_INPUT: &str =
    "chapters/01-single-connection-forwarder.md#bad-input-gets-a-status-not-a-crash";
const DESYNC: &str = "chapters/hardening.md#what-a-desync-is";

pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "bad_request_400",
            stage: 1,
            points: 1,
            teaches: BAD_INPUT,
            what: "malformed heads (a header line without a colon, a Content-Length that is not a number) get 400 and reach no origin",
            run: bad_request_400,
        },
        Check {
            name: "body_too_large_413",
            stage: 1,
            points: 1,
            teaches: BAD_INPUT,
            what: "a request that declares a 1 GiB body gets 413 and reaches no origin",
            run: body_too_large_413,
        },
        Check {
            name: "uri_too_long_414",
            stage: 1,
            points: 1,
            teaches: BAD_INPUT,
            what: "a 20 KiB request target gets 414",
            run: uri_too_long_414,
        },
        Check {
            name: "header_too_large_431",
            stage: 1,
            points: 1,
            teaches: BAD_INPUT,
            what: "a 40 KiB header gets 431",
            run: header_too_large_431,
        },
        Check {
            name: "dead_origin_502",
            stage: 1,
            points: 1,
            teaches: BAD_INPUT,
            what: "an origin that refuses connections gets the client a 502, and the proxy's own answer to HEAD has no body",
            run: dead_origin_502,
        },
        Check {
            name: "slow_origin_504",
            stage: 1,
            points: 1,
            teaches: BAD_INPUT,
            what: "an origin slower than the proxy's upstream timeout gets the client a 504",
            run: slow_origin_504,
        },
        Check {
            name: "smuggling_cl_te",
            stage: 1,
            points: 1,
            teaches: DESYNC,
            what: "a request with both Content-Length and Transfer-Encoding is refused with 400, the connection closed, and nothing reaches an origin",
            run: smuggling_cl_te,
        },
        Check {
            name: "smuggling_two_lengths",
            stage: 1,
            points: 1,
            teaches: DESYNC,
            what: "a request with two different Content-Length values is refused with 400, the connection closed, and nothing reaches an origin",
            run: smuggling_two_lengths,
        },
        Check {
            name: "smuggling_te_not_chunked",
            stage: 1,
            points: 1,
            teaches: DESYNC,
            what: "a request whose Transfer-Encoding does not end in chunked is refused (400 or 501), the connection closed, and nothing reaches an origin",
            run: smuggling_te_not_chunked,
        },
    ]
}

/// Writes `request` from a thread of its own (a proxy may refuse and close before reading it
/// all, so the write may fail) while this thread reads the answer.
fn send_and_read(ctx: &Ctx, request: Vec<u8>) -> Result<Response, String> {
    send_and_read_then(ctx, request, |_| Ok(()))
}

/// Like [`send_and_read`], then `after` looks at the connection once the answer is read.
fn send_and_read_then(
    ctx: &Ctx,
    request: Vec<u8>,
    after: impl FnOnce(&mut Conn) -> Result<(), String>,
) -> Result<Response, String> {
    let mut conn = Conn::open(ctx.proxy)?;
    let mut writer = conn.stream.try_clone().map_err(|e| e.to_string())?;
    let handle = thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let result = conn.read_response(false);
    let result = match result {
        Ok(r) => after(&mut conn).map(|()| r),
        Err(e) => Err(e),
    };
    drop(conn);
    let _ = handle.join();
    result
}

/// After refusing an ambiguous framing, the proxy cannot know where the next request would
/// start, so it closes (RFC 9112 section 6.3): a second response here means it read the
/// smuggled bytes as a request of their own.
fn closes_after_refusing(conn: &mut Conn) -> Result<(), String> {
    match conn.wait_for_bytes(http::IO_TIMEOUT) {
        Ok(0) => Ok(()),
        Ok(_) => Err(format!(
            "after refusing it, the proxy sent more on the same connection ({}): it went on \
             reading the bytes after the ambiguous head as a request of their own",
            http::show(conn.leftover())
        )),
        Err(e) if e.contains("reset") => Ok(()),
        Err(e) => Err(format!(
            "after refusing it, the proxy kept the connection open ({e}); it must close it"
        )),
    }
}

/// `Ok` when `r` is one of `allowed`; else says what came.
fn expect_one_of(r: &Response, allowed: &[u16], what: &str) -> Checked {
    if allowed.contains(&r.status) {
        return Ok(());
    }
    let list: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
    Err(Failure::Fail(format!(
        "{what}: expected status {}, got {}{}",
        list.join(" or "),
        r.status,
        body_hint(&r.body)
    )))
}

fn bad_request_400(ctx: &mut Ctx) -> Checked {
    let (token, target) = ctx.target("");
    let cases = [
        (
            "a header line without a colon",
            format!("GET {target} HTTP/1.1\r\nHost: grade.test\r\nNo colon here\r\n\r\n"),
        ),
        (
            "Content-Length: abc",
            format!("POST {target} HTTP/1.1\r\nHost: grade.test\r\nContent-Length: abc\r\n\r\n"),
        ),
    ];
    for (what, request) in cases {
        let r = send_and_read(ctx, request.into_bytes()).map_err(|e| format!("{what}: {e}"))?;
        expect_one_of(&r, &[400], what)?;
    }
    expect_nothing_reached(ctx, &token, "a malformed request")
}

fn body_too_large_413(ctx: &mut Ctx) -> Checked {
    let (token, target) = ctx.target("");
    let request =
        format!("POST {target} HTTP/1.1\r\nHost: grade.test\r\nContent-Length: 1073741824\r\n\r\n");
    let r = send_and_read(ctx, request.into_bytes())
        .map_err(|e| format!("a request declaring a 1 GiB body: {e}"))?;
    expect_one_of(&r, &[413], "a request declaring a 1 GiB body")?;
    expect_nothing_reached(ctx, &token, "a request declaring a 1 GiB body")
}

fn uri_too_long_414(ctx: &mut Ctx) -> Checked {
    let (_, target) = ctx.target("");
    let long = format!("{target}&pad={}", "a".repeat(20 * 1024));
    let r = send_and_read(ctx, http::get_close(&long))
        .map_err(|e| format!("a 20 KiB request target: {e}"))?;
    expect_one_of(&r, &[414], "a 20 KiB request target")
}

fn header_too_large_431(ctx: &mut Ctx) -> Checked {
    let (_, target) = ctx.target("");
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: grade.test\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let r =
        send_and_read(ctx, request.into_bytes()).map_err(|e| format!("a 40 KiB header: {e}"))?;
    expect_one_of(&r, &[431], "a 40 KiB header")
}

fn dead_origin_502(ctx: &mut Ctx) -> Checked {
    for &i in &ctx.backends {
        ctx.origins.stop(i);
    }
    let result = dead_origin_answers(ctx);
    for &i in &ctx.backends.clone() {
        ctx.origins.restart(i)?;
    }
    result?;
    ctx.wait_serving()
}

/// With every origin down: a GET gets 502, and so does a HEAD, whose answer (the proxy's own
/// page this time) has no body either: on a kept connection a body would be read as the start
/// of the next response.
fn dead_origin_answers(ctx: &mut Ctx) -> Checked {
    // From stage 6 on, health checks may have marked every origin down first: 503, "no
    // healthy backend", is then the right answer.
    let allowed: &[u16] = if ctx.stage >= 6 { &[502, 503] } else { &[502] };
    let (_, target) = ctx.target("");
    let r = http::exchange(ctx.proxy, &http::get_close(&target))
        .map_err(|e| format!("with its origin down: {e}"))?;
    expect_one_of(&r, allowed, "with its origin refusing connections")?;
    let (_, target) = ctx.target("");
    let mut conn = Conn::open(ctx.proxy)?;
    conn.send(format!("HEAD {target} HTTP/1.1\r\nHost: grade.test\r\n\r\n").as_bytes())?;
    let head = conn
        .read_head()
        .map_err(|e| format!("a HEAD with its origin down: {e}"))?;
    if !allowed.contains(&head.status) {
        return Err(format!(
            "a HEAD with its origin refusing connections: expected status {}, got {}",
            allowed[0], head.status
        )
        .into());
    }
    next_response_is_clean(&mut conn, ctx, "a HEAD with its origin down", allowed)
}

fn slow_origin_504(ctx: &mut Ctx) -> Checked {
    // The proxy's default timeout may be a minute (nginx's is): an instance of its own gets
    // 1 s. With --addr, the printed configs set 2 s, and the origin takes 4.
    let own = if ctx.launcher.is_some() {
        let setup = Setup {
            backends: ctx.backend_addrs(),
            upstream_timeout_ms: Some(1000),
            ..Setup::default()
        };
        let what = if ctx.stage >= 6 {
            "read_timeout_ms = 1000 in [upstreams.app]"
        } else {
            "--upstream-timeout 1000ms"
        };
        Some(ctx.start(setup, what)?)
    } else {
        None
    };
    let proxy = own.as_ref().map_or(ctx.proxy, |p| p.addr);
    let (_, target) = ctx.target("delay_ms=4000");
    let r = http::exchange(proxy, &http::get_close(&target))
        .map_err(|e| format!("an origin that answers after 4 s: {e}"))?;
    expect_one_of(
        &r,
        &[504],
        "an origin that answers after 4 s, past the proxy's timeout",
    )
}

/// Sends a smuggling attempt and checks it was refused with one of `allowed` and that no
/// request carrying its token reached an origin.
fn refused_and_nothing_reached(
    ctx: &mut Ctx,
    what: &str,
    request: String,
    token: &str,
    allowed: &[u16],
) -> Checked {
    let r = send_and_read_then(ctx, request.into_bytes(), closes_after_refusing);
    // A proxy that forwarded it is caught by the origins' records, whatever it answered.
    expect_nothing_reached(ctx, token, what)?;
    let r = r.map_err(|e| format!("{what}: {e}"))?;
    expect_one_of(&r, allowed, what)
}

fn smuggling_cl_te(ctx: &mut Ctx) -> Checked {
    let (token, target) = ctx.target("");
    let smuggled = format!("GET /grade/{token}/smuggled HTTP/1.1\r\nHost: grade.test\r\n\r\n");
    let body = format!("0\r\n\r\n{smuggled}");
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: grade.test\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    );
    refused_and_nothing_reached(
        ctx,
        "Content-Length with Transfer-Encoding: chunked",
        request,
        &token,
        &[400],
    )
}

fn smuggling_two_lengths(ctx: &mut Ctx) -> Checked {
    let (token, target) = ctx.target("");
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: grade.test\r\nContent-Length: 5\r\nContent-Length: 45\r\n\r\nhelloGET /grade/{token}/smuggled HTTP/1.1\r\n\r\n"
    );
    refused_and_nothing_reached(
        ctx,
        "two different Content-Length headers",
        request,
        &token,
        &[400],
    )
}

fn smuggling_te_not_chunked(ctx: &mut Ctx) -> Checked {
    let (token, target) = ctx.target("");
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: grade.test\r\nTransfer-Encoding: chunked, identity\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    refused_and_nothing_reached(
        ctx,
        "Transfer-Encoding: chunked, identity",
        request,
        &token,
        &[400, 501],
    )
}
