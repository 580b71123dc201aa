//! Stages 2 to 4: a silent client or a silent origin blocks no one else, 50 clients at once
//! each get their own answer, no zombie after 200 connections, idle keep-alive clients do not
//! starve a pool, and a full queue answers 503 instead of hanging.

use std::thread;
use std::time::{Duration, Instant};

use super::{expect_status, Check, Checked, Ctx, Failure};
use crate::http::{self, Conn};
use crate::program;
use crate::setup::Setup;

/// How long a client that must be served while others wait is given.
const PATIENCE: Duration = Duration::from_secs(8);

pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "silent_client",
            stage: 2,
            points: 2,
            teaches: "chapters/01-single-connection-forwarder.md#what-stage-1-still-cannot-do",
            what: "a client is served while another is connected and silent, and a third holds an idle keep-alive connection",
            run: silent_client,
        },
        Check {
            name: "silent_origin",
            stage: 2,
            points: 2,
            teaches: "chapters/01-single-connection-forwarder.md#what-stage-1-still-cannot-do",
            what: "a client is served while another waits for an origin that never answers",
            run: silent_origin,
        },
        Check {
            name: "no_zombies",
            stage: 2,
            points: 1,
            teaches: "chapters/02-process-per-connection.md#what-stage-2-does",
            what: "after 200 connections, the proxy has no zombie children",
            run: no_zombies,
        },
        Check {
            name: "concurrent_clients",
            stage: 3,
            points: 2,
            teaches: "chapters/03-thread-per-connection.md#what-stage-3-does",
            what: "50 clients connected at once each get their own response",
            run: concurrent_clients,
        },
        Check {
            name: "idle_clients_do_not_starve",
            stage: 4,
            points: 2,
            teaches: "chapters/04-thread-pool.md#keep-alive-clients-no-longer-starve-the-pool",
            what: "with 2 workers, 6 idle keep-alive clients do not keep a new client from being served",
            run: idle_clients_do_not_starve,
        },
        Check {
            name: "full_queue_503",
            stage: 4,
            points: 2,
            teaches: "chapters/04-thread-pool.md#a-bounded-queue-in-front-of-threadpool",
            what: "with 1 worker busy and the queue of 1 full, new clients get 503 at once, not a hang",
            run: full_queue_503,
        },
    ]
}

/// A GET on a new connection that must be answered within `PATIENCE`.
fn served_within_patience(proxy: std::net::SocketAddr, target: &str, while_: &str) -> Checked {
    let mut conn = Conn::open_with(proxy, PATIENCE)?;
    conn.send(&http::get_close(target))?;
    let r = conn.read_response(false).map_err(|e| {
        format!(
            "a client was not served within {} s while {while_}: {e}",
            PATIENCE.as_secs()
        )
    })?;
    expect_status(&r, 200, &format!("a client served while {while_}"))
}

fn silent_client(ctx: &mut Ctx) -> Checked {
    // One client sends a request and keeps its connection open, idle.
    let mut idle = Conn::open(ctx.proxy)?;
    let (_, target) = ctx.target("");
    idle.send(&http::get(&target))?;
    let r = idle.read_response(false)?;
    expect_status(&r, 200, "a keep-alive request")?;
    // Another connects and sends nothing at all (Proxy Lab's "silent client").
    let silent = Conn::open(ctx.proxy)?;
    let (_, target) = ctx.target("");
    let result = served_within_patience(
        ctx.proxy,
        &target,
        "one client held an idle keep-alive connection and another was connected and silent",
    );
    drop(silent);
    drop(idle);
    result
}

fn silent_origin(ctx: &mut Ctx) -> Checked {
    let (token, hang) = ctx.target("hang=1");
    let mut stuck = Conn::open(ctx.proxy)?;
    stuck.send(&http::get_close(&hang))?;
    // Waits until the request is at the origin, so the proxy is really waiting for it.
    if ctx.records_now_or_wait(&token).is_none() {
        return Err(Failure::Fail(format!(
            "the request to an origin that never answers did not reach the origin within {} s",
            PATIENCE.as_secs()
        )));
    }
    let (_, target) = ctx.target("");
    let result = served_within_patience(
        ctx.proxy,
        &target,
        "another client waited for an origin that never answers",
    );
    ctx.origins.release_hangs();
    drop(stuck);
    result
}

fn no_zombies(ctx: &mut Ctx) -> Checked {
    let Some(pid) = ctx.main_pid else {
        return Err(Failure::Skip(
            "needs the program's process id; not known with --addr".into(),
        ));
    };
    for i in 0..200 {
        let (_, target) = ctx.target("");
        let r = http::exchange(ctx.proxy, &http::get_close(&target))
            .map_err(|e| format!("connection {} of 200: {e}", i + 1))?;
        expect_status(&r, 200, &format!("connection {} of 200", i + 1))?;
    }
    // A child that just finished may not be reaped yet: a parent that reaps has 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let zombies = program::zombie_children(pid)?;
        if zombies == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Failure::Fail(format!(
                "after 200 connections the proxy (pid {pid}) has {zombies} zombie children \
                 10 s later: it does not reap them (waitpid)"
            )));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn concurrent_clients(ctx: &mut Ctx) -> Checked {
    let mut conns = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..50 {
        let (token, target) = ctx.target("");
        let mut conn = Conn::open(ctx.proxy).map_err(|e| format!("client {} of 50: {e}", i + 1))?;
        conn.send(&http::get_close(&target))?;
        conns.push(conn);
        tokens.push(token);
    }
    let handles: Vec<_> = conns
        .into_iter()
        .zip(tokens)
        .enumerate()
        .map(|(i, (mut conn, token))| {
            thread::spawn(move || -> Result<(), String> {
                let r = conn
                    .read_response(false)
                    .map_err(|e| format!("client {} of 50: {e}", i + 1))?;
                if r.status != 200 {
                    return Err(format!("client {} of 50: status {}", i + 1, r.status));
                }
                let body = String::from_utf8_lossy(&r.body);
                if !body.trim_end().ends_with(&token) {
                    return Err(format!(
                        "client {} of 50 got another client's response: {}",
                        i + 1,
                        http::show(&r.body)
                    ));
                }
                Ok(())
            })
        })
        .collect();
    let mut first_error = None;
    for handle in handles {
        let result = handle
            .join()
            .unwrap_or_else(|_| Err("a client thread panicked".into()));
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(Failure::Fail(e)),
        None => Ok(()),
    }
}

fn idle_clients_do_not_starve(ctx: &mut Ctx) -> Checked {
    let setup = Setup {
        backends: ctx.backend_addrs(),
        pool: Some((2, 8)),
        ..Setup::default()
    };
    let how = if ctx.stage >= 6 {
        "workers = 2, queue = 8"
    } else {
        "--workers 2 --queue 8"
    };
    let proxy = ctx.start(setup, how)?;
    let mut idle = Vec::new();
    for i in 0..6 {
        let (_, target) = ctx.target("");
        let mut conn = Conn::open(proxy.addr)?;
        conn.send(&http::get(&target))?;
        // The first two take the two workers and must be answered; later ones may wait
        // behind them (a pool whose workers hold idle connections), which is the failure
        // shown below, so their answers are not required and not waited for long.
        conn.set_read_timeout(if i < 2 {
            PATIENCE
        } else {
            Duration::from_secs(2)
        });
        let answered = conn.read_response(false).is_ok();
        if i < 2 && !answered {
            return Err(Failure::Fail(format!(
                "keep-alive client {} of 6 got no response from a pool of 2 workers",
                i + 1
            )));
        }
        idle.push(conn);
    }
    let (_, target) = ctx.target("");
    let result = served_within_patience(
        proxy.addr,
        &target,
        "6 keep-alive clients sat idle on a pool of 2 workers",
    );
    drop(idle);
    result
}

fn full_queue_503(ctx: &mut Ctx) -> Checked {
    let setup = Setup {
        backends: ctx.backend_addrs(),
        pool: Some((1, 1)),
        ..Setup::default()
    };
    let how = if ctx.stage >= 6 {
        "workers = 1, queue = 1"
    } else {
        "--workers 1 --queue 1"
    };
    let proxy = ctx.start(setup, how)?;
    // One request first, so that the connection the grader made to see the program listen
    // has been served and is not sitting in the queue.
    // It may itself get 503 while that connection is still queued: tried again, for 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, target) = ctx.target("");
        let r = http::exchange(proxy.addr, &http::get_close(&target))?;
        if r.status == 200 {
            break;
        }
        if r.status != 503 || Instant::now() >= deadline {
            expect_status(&r, 200, "a first request to a pool of 1 worker")?;
        }
        thread::sleep(Duration::from_millis(20));
    }
    // The one worker waits for an origin that never answers. Sent again if it was refused
    // with 503: the grader's first connection (the one that saw the program listen) may
    // have waited in a parker and passed through the queue once more just then.
    let deadline = Instant::now() + Duration::from_secs(20);
    let busy = loop {
        let (token, hang) = ctx.target("hang=1");
        let mut busy = Conn::open(proxy.addr)?;
        busy.send(&http::get_close(&hang))?;
        if ctx.records_now_or_wait(&token).is_some() {
            break busy;
        }
        busy.set_read_timeout(Duration::from_secs(1));
        let refused = matches!(busy.read_response(false), Ok(r) if r.status == 503);
        if !refused || Instant::now() >= deadline {
            ctx.origins.release_hangs();
            return Err(Failure::Fail(
                "a request to an origin that never answers did not reach the origin".into(),
            ));
        }
    };
    // One more fills the queue (it waits for the worker); every one after it finds the queue
    // full and must get 503 at once.
    let (_, target) = ctx.target("");
    let mut queued = Conn::open(proxy.addr)?;
    queued.send(&http::get_close(&target))?;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let (_, target) = ctx.target("");
        let mut conn = Conn::open_with(proxy.addr, PATIENCE)?;
        conn.send(&http::get_close(&target))?;
        match conn.read_response(false) {
            Ok(r) => statuses.push(r.status),
            Err(e) => {
                ctx.origins.release_hangs();
                return Err(Failure::Fail(format!(
                    "client {} after the queue was full: {e} (expected 503 at once)",
                    i + 1
                )));
            }
        }
    }
    ctx.origins.release_hangs();
    drop(busy);
    drop(queued);
    if statuses.iter().any(|&s| s != 503) {
        return Err(Failure::Fail(format!(
            "with the worker busy and the queue full, three new clients got {statuses:?}, \
             expected 503 each"
        )));
    }
    Ok(())
}
