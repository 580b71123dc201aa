//! Stage 8: 401, 403 and 429 where the config says, and a denied prefix that no other spelling
//! of the path reaches.

use super::{body_hint, expect_nothing_reached, Check, Checked, Ctx, Failure};
use crate::http;

/// The key of the config's one API key (`setup::stage_toml`).
pub const API_KEY: &str = "grade-key-0123456789";

pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "access_401_403_429",
            stage: 8,
            points: 2,
            teaches: "chapters/08-access-control.md#api-keys-and-why-strcmp-leaks",
            what: "/keyed needs the API key (401 without), /blocked is denied (403), /limited allows 1 request a minute (429 after)",
            run: access_statuses,
        },
        Check {
            name: "denied_prefix_respelled",
            stage: 8,
            points: 2,
            teaches: "chapters/08-access-control.md#a-path-rule-and-the-spellings-that-fool-a-string-match",
            what: "/blocked reached as /%62locked, /./blocked, //blocked or /x/../blocked is still refused, and nothing reaches an origin",
            run: denied_prefix_respelled,
        },
    ]
}

fn status_of(ctx: &Ctx, target: &str, headers: &str) -> Result<http::Response, String> {
    http::exchange(
        ctx.proxy,
        format!("GET {target} HTTP/1.1\r\nHost: grade.test\r\n{headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

fn access_statuses(ctx: &mut Ctx) -> Checked {
    let key = format!("X-API-Key: {API_KEY}\r\n");
    let cases: [(&str, &str, u16, &str); 5] = [
        ("/keyed", "", 401, "/keyed without a key"),
        ("/keyed", &key, 200, "/keyed with the key"),
        ("/blocked", "", 403, "/blocked"),
        (
            "/limited",
            "",
            200,
            "/limited, the first request of the minute",
        ),
        (
            "/limited",
            "",
            429,
            "/limited, the second request of the minute",
        ),
    ];
    for (prefix, headers, want, what) in cases {
        let token = ctx.token();
        let r = status_of(ctx, &format!("{prefix}/{token}/x"), headers)
            .map_err(|e| format!("{what}: {e}"))?;
        if r.status != want {
            return Err(Failure::Fail(format!(
                "{what}: expected {want}, got {}{}",
                r.status,
                body_hint(&r.body)
            )));
        }
        if want != 200 {
            expect_nothing_reached(ctx, &token, what)?;
        }
    }
    Ok(())
}

fn denied_prefix_respelled(ctx: &mut Ctx) -> Checked {
    for spelling in [
        "/%62locked",
        "/./blocked",
        "//blocked",
        "/x/../blocked",
        "/blocked/.",
    ] {
        let token = ctx.token();
        let target = format!("{spelling}/{token}/x");
        let r = status_of(ctx, &target, "").map_err(|e| format!("{target}: {e}"))?;
        if (200..300).contains(&r.status) {
            return Err(Failure::Fail(format!(
                "{target} got {}: a re-spelling of the denied /blocked got through",
                r.status
            )));
        }
        expect_nothing_reached(ctx, &token, &target)?;
    }
    Ok(())
}
