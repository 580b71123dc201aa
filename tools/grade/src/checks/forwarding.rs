//! Stage 1: what a forwarder must change and must not: hop-by-hop fields (RFC 9110 section
//! 7.6.1) are dropped both ways, and the request target reaches the origin byte for byte, dot
//! segments and odd escapes included.

use super::{expect_status, Check, Checked, Ctx, Failure};
use crate::http;

pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "hop_by_hop_removed",
            stage: 1,
            points: 1,
            teaches: "chapters/glossary.md#hop-by-hop-headers",
            what: "fields named in Connection do not cross the proxy either way, nor do Connection's own list, Keep-Alive, Proxy-Connection, TE and Upgrade; end-to-end fields do",
            run: hop_by_hop_removed,
        },
        Check {
            name: "target_byte_for_byte",
            stage: 1,
            points: 1,
            teaches: "chapters/08-access-control.md#a-path-rule-and-the-spellings-that-fool-a-string-match",
            what: "a target with percent-escapes, dot segments, a `;` and an odd query (a bad escape in it too) reaches the origin exactly as sent",
            run: target_byte_for_byte,
        },
    ]
}

fn hop_by_hop_removed(ctx: &mut Ctx) -> Checked {
    let (token, target) = ctx.target("hop=1");
    let r = http::exchange(
        ctx.proxy,
        format!(
            "GET {target} HTTP/1.1\r\nHost: grade.test\r\nConnection: keep-alive, X-Grade-Hop\r\n\
             X-Grade-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
             TE: trailers\r\nUpgrade: h2c\r\nX-Grade-Kept: yes\r\n\r\n"
        )
        .as_bytes(),
    )?;
    expect_status(&r, 200, "a request with hop-by-hop fields")?;
    let records = ctx.records(&token, 1);
    let Some(record) = records.first() else {
        return Err(Failure::Fail("the request never reached the origin".into()));
    };
    // RFC 9110 section 7.6.1: the fields Connection names go, and an intermediary removes
    // Proxy-Connection, Keep-Alive, TE, Transfer-Encoding and Upgrade before forwarding (an
    // Upgrade the client's Connection does not name is no upgrade; a TE is about this hop).
    for gone in [
        "X-Grade-Hop",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Upgrade",
    ] {
        if record.header(gone).is_some() {
            return Err(Failure::Fail(format!(
                "{gone} reached the origin: a field the client's Connection header names (or \
                 one that is hop-by-hop by definition) is for the proxy alone"
            )));
        }
    }
    // Connection itself is removed or replaced by the proxy's own options, never passed on
    // with the client's list.
    if let Some(connection) = record.header("Connection") {
        if connection.to_ascii_lowercase().contains("x-grade-hop") {
            return Err(Failure::Fail(format!(
                "the client's Connection header reached the origin as it was ({}): a proxy \
                 removes it or sends its own",
                http::show(connection.as_bytes())
            )));
        }
    }
    if record.header("X-Grade-Kept").is_none() {
        return Err(Failure::Fail(
            "the end-to-end field X-Grade-Kept did not reach the origin".into(),
        ));
    }
    // The origin's answer named X-Grade-Resp-Hop in its own Connection header.
    if r.header("X-Grade-Resp-Hop").is_some() {
        return Err(Failure::Fail(
            "X-Grade-Resp-Hop reached the client, though the origin's Connection header named it"
                .into(),
        ));
    }
    if r.header("X-Grade-Resp-Kept").is_none() {
        return Err(Failure::Fail(
            "the origin's end-to-end field X-Grade-Resp-Kept did not reach the client".into(),
        ));
    }
    Ok(())
}

fn target_byte_for_byte(ctx: &mut Ctx) -> Checked {
    let token = ctx.token();
    // Dot segments and an escape that decodes to `/` are the origin's to read: a proxy that
    // resolved or decoded them would send another resource's name.
    let target = format!("/grade/{token}/a%2Fb%20c;p=1/../%7Ex/./y?q=%41&q=a+b&bad=%zz&empty=&=v#");
    // A fragment is never sent; the target ends before it.
    let target = target.trim_end_matches('#').to_string();
    let r = http::exchange(ctx.proxy, &http::get_close(&target))?;
    expect_status(&r, 200, "a target with escapes")?;
    let records = ctx.records(&token, 1);
    let Some(record) = records.first() else {
        return Err(Failure::Fail("the request never reached the origin".into()));
    };
    if record.target != target {
        return Err(Failure::Fail(format!(
            "the origin received the target {} for {}: a proxy forwards it as it came",
            http::show(record.target.as_bytes()),
            http::show(target.as_bytes())
        )));
    }
    Ok(())
}
