//! The grader's own command line, as CodeCrafters tests its tester: a program that passes a
//! check, one that fails, one that exits, one that never starts, and the exit codes, `--list`,
//! `--json` and `--print-config` around them.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

const GRADE: &str = env!("CARGO_BIN_EXE_grade");
const TUNNEL: &str = env!("CARGO_BIN_EXE_control-tunnel");
const TODO: &str = env!("CARGO_BIN_EXE_control-todo");

fn grade(args: &[&str]) -> (Output, String) {
    let out = Command::new(GRADE).args(args).output().expect("grade runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out, text)
}

#[test]
fn list_names_every_check_of_the_stages_asked() {
    let (out, text) = grade(&["--list", "--stage", "2"]);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("content_length_response") && text.contains("silent_client"),
        "{text}"
    );
    assert!(
        !text.contains("full_queue_503"),
        "stage 4's check listed at stage 2:\n{text}"
    );
    let (_, all) = grade(&["--list", "--stage", "9"]);
    for name in grade::checks::all().iter().map(|c| c.name) {
        assert!(all.contains(name), "--list --stage 9 misses {name}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let (out, text) = grade(&["--stage", "1"]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("-- PROGRAM"), "{text}");
    let (out, text) = grade(&["--only", "no_such_check", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("no_such_check"), "{text}");
    let (out, _) = grade(&["--stage", "10", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    let (out, text) = grade(&["--addr", "10.0.0.1:80"]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("loopback"), "{text}");
}

#[test]
fn a_pass_and_a_fail_exit_1_and_json_says_which() {
    // The tunnel relays a good request unchanged, and relays a smuggled one too.
    let (out, text) = grade(&[
        "--json",
        "--only",
        "content_length_response",
        "--only",
        "smuggling_two_lengths",
        "--",
        TUNNEL,
    ]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json is JSON");
    assert_eq!(json["passed"], 1, "{json}");
    assert_eq!(json["failed"], 1, "{json}");
    let checks = json["checks"].as_array().expect("checks");
    assert_eq!(checks[0]["name"], "content_length_response");
    assert_eq!(checks[0]["outcome"], "pass");
    assert_eq!(checks[1]["outcome"], "fail");
    let reason = checks[1]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("reached the origin"), "{reason}");
    assert!(checks[1]["teaches"]
        .as_str()
        .unwrap_or("")
        .starts_with("chapters/"));
}

#[test]
fn a_passing_run_exits_0_with_the_totals_last() {
    let (out, text) = grade(&[
        "--only",
        "keep_alive",
        "--only",
        "chunked_response",
        "--",
        TUNNEL,
    ]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("PASS  keep_alive"), "{text}");
    assert!(text.contains("stage 1: 2/2 points"), "{text}");
    assert_eq!(text.lines().last(), Some("2 passed, 0 failed"), "{text}");
}

#[test]
fn a_program_that_panics_is_reported_once_and_the_rest_is_not_run() {
    let started = Instant::now();
    let (out, text) = grade(&["--stage", "2", "--", TODO]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("the program exited with status 101 during `content_length_response`"),
        "{text}"
    );
    assert!(
        text.contains("not yet implemented: read the request head"),
        "the todo! message is shown:\n{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("NOTE")).count(),
        1,
        "{text}"
    );
    assert!(
        text.contains("FAIL  silent_client                stage 2  not run: the program is gone"),
        "{text}"
    );
    // Generous: it is about not waiting for every remaining check's timeout.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_program_that_never_listens_is_reported() {
    let (out, text) = grade(&["--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("the program did not start: the program exited (status 0) before it accepted connections"),
        "{text}"
    );
    let (out, text) = grade(&["--", "/no/such/program"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("cannot start `/no/such/program`"), "{text}");
}

#[test]
fn placeholders_replace_the_contract_flags() {
    // The tunnel's own flags, spelled by placeholders: nothing is appended, or it would see
    // two --listen flags and take the first.
    let (out, text) = grade(&[
        "--only",
        "content_length_response",
        "--",
        TUNNEL,
        "--backend",
        "{backend}",
        "--listen",
        "127.0.0.1:{port}",
    ]);
    assert!(out.status.success(), "{text}");
}

#[test]
fn printed_configs_point_at_the_fixed_origins() {
    let (out, nginx) = grade(&[
        "--print-config",
        "nginx",
        "--stage",
        "5",
        "--addr",
        "127.0.0.1:18080",
    ]);
    assert!(out.status.success(), "{nginx}");
    for port in [19101, 19102, 19103] {
        assert!(
            nginx.contains(&format!("server 127.0.0.1:{port} max_fails=0;")),
            "{nginx}"
        );
    }
    assert!(nginx.contains("listen 127.0.0.1:18080;"), "{nginx}");
    let (_, one) = grade(&["--print-config", "nginx", "--stage", "1"]);
    assert!(
        one.contains("server 127.0.0.1:19101 ") && !one.contains("19102"),
        "{one}"
    );
    let (out, haproxy) = grade(&[
        "--print-config",
        "haproxy",
        "--stage",
        "5",
        "--origin-port",
        "29101",
    ]);
    assert!(out.status.success(), "{haproxy}");
    assert!(haproxy.contains("server o2 127.0.0.1:29103"), "{haproxy}");
    assert!(haproxy.contains("bind 127.0.0.1:8080"), "{haproxy}");
}

#[test]
fn an_address_where_nothing_listens_is_said_once() {
    // Port 1 on loopback: nothing listens there on a test machine.
    let (out, text) = grade(&["--addr", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("NOTE  nothing accepts connections on 127.0.0.1:1"),
        "{text}"
    );
    assert!(
        text.contains("not run: nothing listens on the address"),
        "{text}"
    );
}
