//! Stage 7: a cached page outlives its origin (Proxy Lab's cache check); no-store, private
//! and Authorization are respected; Vary keeps variants apart; a stale entry is revalidated.

use super::{expect_status, Check, Checked, Ctx, Failure};
use crate::http;

pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "cache_serves_dead_origin",
            stage: 7,
            points: 2,
            teaches: "chapters/07-cache.md#what-may-be-stored-rfc-9111-section-3",
            what: "a page with max-age=60 is served again, the same, after every origin is killed",
            run: cache_serves_dead_origin,
        },
        Check {
            name: "cache_respects_no_store_private_authorization",
            stage: 7,
            points: 2,
            teaches: "chapters/07-cache.md#what-may-be-stored-rfc-9111-section-3",
            what: "responses with no-store or private, and answers to requests with Authorization, are fetched from the origin every time",
            run: cache_respects_rules,
        },
        Check {
            name: "vary_keeps_variants",
            stage: 7,
            points: 1,
            teaches: "chapters/07-cache.md#vary-one-url-several-answers",
            what: "a response that varies on Accept-Language is kept per language",
            run: vary_keeps_variants,
        },
        Check {
            name: "revalidation_304",
            stage: 7,
            points: 1,
            teaches: "chapters/07-cache.md#validation-stale-is-not-useless-section-43",
            what: "a stale entry with an ETag is checked with If-None-Match, and the origin's 304 gets the client the stored page",
            run: revalidation_304,
        },
    ]
}

/// A GET of `target` with `headers`, on its own connection.
fn get(ctx: &Ctx, target: &str, headers: &str) -> Result<http::Response, String> {
    http::exchange(
        ctx.proxy,
        format!("GET {target} HTTP/1.1\r\nHost: grade.test\r\n{headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

fn cache_serves_dead_origin(ctx: &mut Ctx) -> Checked {
    let (_, target) = ctx.target("cc=max-age%3D60");
    let first = get(ctx, &target, "")?;
    expect_status(&first, 200, "a page with max-age=60")?;
    for &i in &ctx.backends.clone() {
        ctx.origins.stop(i);
    }
    let again = get(ctx, &target, "");
    for &i in &ctx.backends.clone() {
        ctx.origins.restart(i)?;
    }
    let again = again.map_err(|e| format!("the same page with every origin killed: {e}"))?;
    expect_status(&again, 200, "the same page with every origin killed")?;
    if again.body != first.body {
        return Err(Failure::Fail(format!(
            "with every origin killed the page came back different: {} instead of {}",
            http::show(&again.body),
            http::show(&first.body)
        )));
    }
    ctx.wait_serving()
}

fn cache_respects_rules(ctx: &mut Ctx) -> Checked {
    // First, that the cache is on at all: a max-age page is fetched once for two requests.
    let (token, target) = ctx.target("cc=max-age%3D60");
    get(ctx, &target, "")?;
    get(ctx, &target, "")?;
    let seen = ctx.records(&token, 1).len();
    if seen != 1 {
        return Err(Failure::Fail(format!(
            "a page with max-age=60, asked twice, reached the origin {seen} times: nothing is cached"
        )));
    }
    let cases = [
        (
            "Cache-Control: no-store",
            "cc=no-store%2C%20max-age%3D60",
            "",
        ),
        ("Cache-Control: private", "cc=private%2C%20max-age%3D60", ""),
        (
            "a request with Authorization",
            "cc=max-age%3D60",
            "Authorization: Basic Z3JhZGU6Z3JhZGU=\r\n",
        ),
    ];
    for (what, query, headers) in cases {
        let (token, target) = ctx.target(query);
        for _ in 0..2 {
            let r = get(ctx, &target, headers)?;
            expect_status(&r, 200, what)?;
        }
        let seen = ctx.records(&token, 2).len();
        if seen != 2 {
            return Err(Failure::Fail(format!(
                "{what}: asked twice, the origin saw it {seen} time(s): it was served from the cache"
            )));
        }
    }
    Ok(())
}

fn vary_keeps_variants(ctx: &mut Ctx) -> Checked {
    let (token, target) = ctx.target("cc=max-age%3D60&vary=Accept-Language&echo=accept-language");
    for (i, lang) in ["en", "fr", "en", "fr"].into_iter().enumerate() {
        let r = get(ctx, &target, &format!("Accept-Language: {lang}\r\n"))?;
        expect_status(&r, 200, &format!("Accept-Language: {lang}"))?;
        let body = String::from_utf8_lossy(&r.body);
        if !body.trim_end().ends_with(lang) {
            return Err(Failure::Fail(format!(
                "request {} with Accept-Language: {lang} got the page made for another language: {}",
                i + 1,
                http::show(&r.body)
            )));
        }
    }
    let seen = ctx.records(&token, 2).len();
    if seen != 2 {
        return Err(Failure::Fail(format!(
            "two languages asked twice each reached the origin {seen} times (2 expected: one per variant)"
        )));
    }
    Ok(())
}

fn revalidation_304(ctx: &mut Ctx) -> Checked {
    // max-age=0: stored, and stale at once, so the second request must be checked.
    let (token, target) = ctx.target("cc=max-age%3D0&etag=%22v1%22&n=300");
    let first = get(ctx, &target, "")?;
    expect_status(&first, 200, "a page with max-age=0 and an ETag")?;
    let again = get(ctx, &target, "")?;
    expect_status(&again, 200, "the same page again")?;
    if again.body != first.body {
        return Err(Failure::Fail(format!(
            "after the origin's 304 the client got {} instead of the stored page",
            http::show(&again.body)
        )));
    }
    let records = ctx.records(&token, 2);
    match records.get(1) {
        None => Err(Failure::Fail(
            "a stale entry (max-age=0) was served without asking the origin".into(),
        )),
        Some(second) => match second.header("if-none-match") {
            Some(v) if v.contains("\"v1\"") => Ok(()),
            other => Err(Failure::Fail(format!(
                "the second request reached the origin without If-None-Match: \"v1\" (it had {other:?}): the stored page was not revalidated"
            ))),
        },
    }
}
