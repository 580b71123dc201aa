//! The C course's programs (`chapters/c/`), graded: each fails the checks its chapter says it
//! fails, and passes the one its chapter added. A full run of each takes a minute or more (a
//! C program without timeouts waits for every origin to close), so CI grades the checks that
//! tell the chapters' story; `tools/grade/README.md` ("The C programs") has the full table,
//! from `grade --stage 3` (and `--stage 5`) against each.
//!
//! Without gcc or make the tests print why and pass; under CI (`CI` set) a missing toolchain
//! fails them instead, as in `tests/c_programs.rs`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use grade::{Options, Report};

/// Builds the programs once, into this test's own directory; `None` without a toolchain.
fn c_bin_dir() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let has = |tool: &str| {
            Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !has("gcc") || !has("make") {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but gcc or make is missing: .ci/run installs them"
            );
            println!("SKIPPED: gcc or make not found; install them to grade the C programs");
            return None;
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("grade-c-programs");
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/../../chapters/c");
        let out = Command::new("make")
            .args(["-C", source])
            .arg(format!("BIN={}", dir.display()))
            .output()
            .expect("make runs");
        assert!(
            out.status.success(),
            "make -C chapters/c failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(dir)
    })
    .as_ref()
}

/// Grades C program `name` with `only` at `stage`; `None` without a toolchain.
fn grade_c(name: &str, stage: u8, only: &[&str]) -> Option<Report> {
    let bin = c_bin_dir()?.join(name);
    let mut options = Options::program(stage, &bin.display().to_string(), &[]);
    options.only = only.iter().map(|s| s.to_string()).collect();
    let report = grade::run(&options);
    print!("{}", report.text());
    Some(report)
}

#[test]
fn reverse_proxy_reads_once_and_serves_one_client_at_a_time() {
    // Chapter 01: one read() of 4 KiB is the request and the answer ends at 4 KiB or the
    // origin's close; a second request on the connection is never read; nothing is refused.
    let only = [
        "content_length_response",
        "chunked_response",
        "head_response_has_no_body",
        "keep_alive",
        "smuggling_two_lengths",
        "silent_client",
    ];
    let Some(report) = grade_c("reverse_proxy", 2, &only) else {
        return;
    };
    assert_eq!(
        report.failed_names(),
        [
            "content_length_response",
            "chunked_response",
            "keep_alive",
            "smuggling_two_lengths",
            "silent_client",
        ]
    );
}

#[test]
fn fork_proxy_serves_clients_at_once_and_leaves_zombies() {
    // Chapter 02: a process per connection frees the silent client's neighbours, and the
    // children nobody waits for stay as zombies.
    let only = ["content_length_response", "silent_client", "no_zombies"];
    let Some(report) = grade_c("fork_proxy", 2, &only) else {
        return;
    };
    assert_eq!(
        report.failed_names(),
        ["content_length_response", "no_zombies"]
    );
    let Some(grade::Outcome::Fail(why)) = report.outcome("no_zombies") else {
        unreachable!("failed above")
    };
    assert!(why.contains("zombie children"), "{why}");
}

#[test]
fn threaded_proxy_serves_clients_at_once_without_zombies() {
    // Chapter 03: a thread per connection; still the one-read exchange.
    let only = [
        "pipelining",
        "silent_client",
        "no_zombies",
        "concurrent_clients",
    ];
    let Some(report) = grade_c("threaded_proxy", 3, &only) else {
        return;
    };
    assert_eq!(report.failed_names(), ["pipelining"]);
}

#[test]
fn proxy_load_balancer_spreads_but_does_not_skip_a_refusing_backend() {
    // Chapter 05: round robin over the backends, and a backend that refuses gets its clients
    // nothing instead of the next backend.
    let only = [
        "spread_over_three",
        "spread_over_two",
        "refused_origin_skipped",
        "post_not_sent_twice",
    ];
    let Some(report) = grade_c("proxy_load_balancer", 5, &only) else {
        return;
    };
    assert_eq!(report.failed_names(), ["refused_origin_skipped"]);
}
