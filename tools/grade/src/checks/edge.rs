//! Stage 9: routes by Host and path, TLS with a certificate the grader trusts, compression
//! where asked and never where refused, a WebSocket echo.

use std::io::Read;

use super::{expect_pattern, expect_status, Check, Checked, Ctx, Failure};
use crate::http::{self, Conn};
use crate::websocket;

pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "routes_by_host_and_path",
            stage: 9,
            points: 2,
            teaches: "chapters/09-the-edge.md#routing-like-nginx",
            what: "Host one.grade.test goes to origin 1 only, the path /two to origin 2 only",
            run: routes_by_host_and_path,
        },
        Check {
            name: "tls_trusted_certificate",
            stage: 9,
            points: 2,
            teaches: "chapters/09-the-edge.md#tls-termination",
            what: "a request over TLS, trusting only the grader's CA, is answered by an origin",
            run: tls_trusted_certificate,
        },
        Check {
            name: "compression_where_asked",
            stage: 9,
            points: 2,
            teaches: "chapters/09-the-edge.md#compression",
            what: "a 5,000-byte text page is gzipped for Accept-Encoding: gzip (and decodes to the page), and sent as it is for gzip;q=0 or no Accept-Encoding",
            run: compression_where_asked,
        },
        Check {
            name: "websocket_echo",
            stage: 9,
            points: 2,
            teaches: "chapters/09-the-edge.md#websocket-tunnels",
            what: "a WebSocket handshake is relayed (101 with the right accept key) and a frame comes back echoed",
            run: websocket_echo,
        },
    ]
}

fn routes_by_host_and_path(ctx: &mut Ctx) -> Checked {
    for (host, prefix, origin) in [("one.grade.test", "/grade", 1), ("grade.test", "/two", 2)] {
        for i in 0..4 {
            let token = ctx.token();
            let target = format!("{prefix}/{token}/x");
            let r = http::exchange(
                ctx.proxy,
                format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )?;
            let what = format!("Host {host}, {target}");
            expect_status(&r, 200, &what)?;
            let records = ctx.records(&token, 1);
            if let Some(wrong) = records.iter().find(|r| r.origin != origin) {
                return Err(Failure::Fail(format!(
                    "request {} for {what} reached origin {} instead of origin {origin}",
                    i + 1,
                    wrong.origin
                )));
            }
        }
    }
    Ok(())
}

fn tls_trusted_certificate(ctx: &mut Ctx) -> Checked {
    let Some((addr, trust)) = ctx.tls else {
        return Err(Failure::Skip(
            "needs the program's TLS listener, which the grader configures itself; not with --addr"
                .into(),
        ));
    };
    let (token, target) = ctx.target("");
    let (status, body) = trust.get(addr, &target)?;
    if status != 200 {
        return Err(Failure::Fail(format!(
            "GET over TLS: expected 200, got {status}"
        )));
    }
    if ctx.records(&token, 1).is_empty() || !String::from_utf8_lossy(&body).contains(&token) {
        return Err(Failure::Fail(format!(
            "GET over TLS got 200 but not the origin's page: {}",
            http::show(&body)
        )));
    }
    Ok(())
}

fn get_with(ctx: &Ctx, target: &str, accept: Option<&str>) -> Result<http::Response, String> {
    let header = accept.map_or(String::new(), |a| format!("Accept-Encoding: {a}\r\n"));
    http::exchange(
        ctx.proxy,
        format!("GET {target} HTTP/1.1\r\nHost: grade.test\r\n{header}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

fn compression_where_asked(ctx: &mut Ctx) -> Checked {
    let (_, target) = ctx.target("n=5000&ctype=text/plain");
    let r = get_with(ctx, &target, Some("gzip"))?;
    expect_status(&r, 200, "Accept-Encoding: gzip")?;
    if r.header("content-encoding").map(str::to_ascii_lowercase) != Some("gzip".into()) {
        return Err(Failure::Fail(format!(
            "a 5,000-byte text page asked for with Accept-Encoding: gzip came back with Content-Encoding {:?}",
            r.header("content-encoding")
        )));
    }
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_end(&mut plain)
        .map_err(|e| format!("the gzip body does not decode: {e}"))?;
    expect_pattern(&plain, 5000, "the gzip body, decoded")?;
    for accept in [Some("gzip;q=0"), None] {
        let (_, target) = ctx.target("n=5000&ctype=text/plain");
        let what = match accept {
            Some(a) => format!("Accept-Encoding: {a}"),
            None => "no Accept-Encoding".to_string(),
        };
        let r = get_with(ctx, &target, accept)?;
        expect_status(&r, 200, &what)?;
        if let Some(coding) = r.header("content-encoding") {
            return Err(Failure::Fail(format!(
                "{what}: the page came back with Content-Encoding: {coding}"
            )));
        }
        expect_pattern(&r.body, 5000, &what)?;
    }
    Ok(())
}

fn websocket_echo(ctx: &mut Ctx) -> Checked {
    let (_, target) = ctx.target("ws=1");
    let key = "Z3JhZGUtd2Vic29ja2V0LWs=";
    let mut conn = Conn::open(ctx.proxy)?;
    conn.send(
        format!(
            "GET {target} HTTP/1.1\r\nHost: grade.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )?;
    let head = conn.read_head()?;
    if head.status != 101 {
        return Err(Failure::Fail(format!(
            "the WebSocket handshake got {} instead of 101 Switching Protocols",
            head.status
        )));
    }
    let accept = http::header(&head.headers, "sec-websocket-accept").unwrap_or("");
    if accept != websocket::accept_key(key) {
        return Err(Failure::Fail(format!(
            "Sec-WebSocket-Accept is {accept:?}, not the origin's {:?}",
            websocket::accept_key(key)
        )));
    }
    let message = b"hello through the proxy";
    conn.send(&websocket::frame(0x1, message, Some([7, 13, 21, 42])))?;
    let mut pending = conn.leftover().to_vec();
    let (opcode, payload) = websocket::read_frame(&mut conn.stream, &mut pending)
        .map_err(|e| format!("waiting for the echoed frame: {e}"))?;
    if opcode != 0x1 || payload != message {
        return Err(Failure::Fail(format!(
            "the echo came back as opcode {opcode} with {}",
            http::show(&payload)
        )));
    }
    Ok(())
}
