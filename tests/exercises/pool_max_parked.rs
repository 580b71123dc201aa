//! Chapter 04, exercise: `stage4 --max-parked N`. The parker watches idle keep-alive
//! connections, at most `PoolConfig::max_parked` (`DEFAULT_MAX_PARKED`, 16,384) of them; past
//! that it closes the one that has been idle longest, as nginx reuses its idle keep-alive
//! connections when it runs short of `worker_connections`. The limit is in the library
//! already: the exercise is to make it a flag of every pool stage (`PoolArgs`, `src/cli.rs`),
//! counted like `--workers`.
//! Solution: `solutions/04-pool-max-parked.patch`.

use crate::support::{backend, Client, Proxy};

const STAGE4: &str = env!("CARGO_BIN_EXE_stage4");

fn get(c: &mut Client) -> u16 {
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    c.read_response("GET").status
}

#[test]
#[ignore = "exercise (chapter 04): --max-parked"]
fn past_max_parked_the_longest_idle_connection_is_closed() {
    let b = backend("b1");
    // One worker: each connection is parked before the next one is served, so the order in
    // which they went idle is the order below.
    let p = Proxy::start(
        STAGE4,
        &[b.addr()],
        &["--workers", "1", "--max-parked", "2"],
    );
    let mut oldest = p.connect();
    assert_eq!(get(&mut oldest), 200);
    let mut middle = p.connect();
    assert_eq!(get(&mut middle), 200);
    let mut newest = p.connect();
    assert_eq!(get(&mut newest), 200);
    // Three parked, two allowed: the first to go idle is closed, without an answer.
    assert_eq!(
        oldest.read_to_close(),
        Some(Vec::new()),
        "closed, nothing sent"
    );
    assert_eq!(get(&mut middle), 200);
    assert_eq!(get(&mut newest), 200);
}

#[test]
#[ignore = "exercise (chapter 04): --max-parked"]
fn max_parked_takes_a_count_of_at_least_one() {
    let out = std::process::Command::new(STAGE4)
        .args(["--max-parked", "0"])
        .output()
        .expect("run stage4");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--max-parked"), "{stderr}");
    assert!(stderr.contains("at least 1"), "{stderr}");
}
