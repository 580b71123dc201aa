//! Stage 5: requests spread over two and three origins, a refused origin is skipped, and a
//! POST is never sent twice.

use super::{expect_status, Check, Checked, Ctx, Failure};
use crate::http::{self, Conn};
use crate::setup::Setup;

const TEACHES: &str = "chapters/05-load-balancer.md#strategies";

pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "spread_over_three",
            stage: 5,
            points: 1,
            teaches: TEACHES,
            what: "60 requests, each on its own connection, reach each of three origins at least 5 times",
            run: spread_over_three,
        },
        Check {
            name: "spread_over_two",
            stage: 5,
            points: 1,
            teaches: TEACHES,
            what: "40 requests over two origins reach each at least 5 times",
            run: spread_over_two,
        },
        Check {
            name: "refused_origin_skipped",
            stage: 5,
            points: 2,
            teaches: "chapters/05-load-balancer.md#a-backend-that-refuses-connections",
            what: "with one of three origins refusing connections, 30 requests are all answered 200",
            run: refused_origin_skipped,
        },
        Check {
            name: "post_not_sent_twice",
            stage: 5,
            points: 2,
            teaches: "chapters/06-health-checks.md#failover-what-may-be-sent-twice",
            what: "a POST whose origin closes without answering is not sent again (to it or another origin)",
            run: post_not_sent_twice,
        },
    ]
}

/// Sends `count` requests to `proxy` and counts which origin answered each.
fn spread(ctx: &mut Ctx, proxy: std::net::SocketAddr, count: usize) -> Result<[usize; 3], String> {
    let mut seen = [0usize; 3];
    for i in 0..count {
        let (token, target) = ctx.target("");
        let r = http::exchange(proxy, &http::get_close(&target))
            .map_err(|e| format!("request {} of {count}: {e}", i + 1))?;
        if r.status != 200 {
            return Err(format!("request {} of {count}: status {}", i + 1, r.status));
        }
        // The origins' records say who served it, whatever headers the proxy passed on.
        let records = ctx.records(&token, 1);
        let Some(record) = records.first() else {
            return Err(format!("request {} of {count} reached no origin", i + 1));
        };
        seen[record.origin] += 1;
    }
    Ok(seen)
}

fn spread_over_three(ctx: &mut Ctx) -> Checked {
    let seen = spread(ctx, ctx.proxy, 60)?;
    if seen.iter().any(|&n| n < 5) {
        return Err(Failure::Fail(format!(
            "60 requests reached the three origins {} / {} / {} times: not spread",
            seen[0], seen[1], seen[2]
        )));
    }
    Ok(())
}

fn spread_over_two(ctx: &mut Ctx) -> Checked {
    let setup = Setup {
        backends: ctx.backend_addrs()[..2].to_vec(),
        ..Setup::default()
    };
    let proxy = ctx.start(setup, "two origins")?;
    let seen = spread(ctx, proxy.addr, 40)?;
    if seen[0] < 5 || seen[1] < 5 {
        return Err(Failure::Fail(format!(
            "40 requests reached the two origins {} / {} times: not spread",
            seen[0], seen[1]
        )));
    }
    Ok(())
}

fn refused_origin_skipped(ctx: &mut Ctx) -> Checked {
    ctx.origins.stop(1);
    let mut result = Ok(());
    for i in 0..30 {
        let (_, target) = ctx.target("");
        let answer = http::exchange(ctx.proxy, &http::get_close(&target))
            .map_err(Failure::Fail)
            .and_then(|r| {
                expect_status(
                    &r,
                    200,
                    &format!("request {} of 30 with origin 1 refusing", i + 1),
                )
            });
        if answer.is_err() {
            result = answer;
            break;
        }
    }
    ctx.origins.restart(1)?;
    result?;
    ctx.wait_serving()
}

fn post_not_sent_twice(ctx: &mut Ctx) -> Checked {
    let (token, target) = ctx.target("drop=1");
    let mut conn = Conn::open(ctx.proxy)?;
    conn.send(
        format!(
            "POST {target} HTTP/1.1\r\nHost: grade.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        )
        .as_bytes(),
    )?;
    // Any answer will do (502 is right); what matters is how often the origins saw it.
    let answer = conn.read_response(false);
    let records = ctx.records(&token, 1);
    match records.len() {
        1 => match answer {
            Ok(r) if r.status >= 500 => Ok(()),
            Ok(r) => Err(Failure::Fail(format!(
                "the origin closed without answering, yet the client got {}",
                r.status
            ))),
            // Closing the client's connection is a clear enough "it failed".
            Err(_) => Ok(()),
        },
        0 => Err(Failure::Fail("the POST never reached an origin".into())),
        n => Err(Failure::Fail(format!(
            "the POST reached the origins {n} times: a request that may have been processed \
             must not be sent again"
        ))),
    }
}
