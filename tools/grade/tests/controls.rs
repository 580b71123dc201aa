//! Proof that the grader discriminates: two negative controls fail the framing and
//! smuggling checks, exactly these. A raw TCP tunnel changes nothing, so it passes the framing
//! checks and fails every check where a proxy must read the request (or drop what is its own); a forwarder that takes a
//! request as one `read()` of 4 KiB (the C course's first program) fails the framing checks
//! too.

use grade::{Options, Report};

const TUNNEL: &str = env!("CARGO_BIN_EXE_control-tunnel");
const ONE_READ: &str = env!("CARGO_BIN_EXE_control-one-read");

fn grade_only(bin: &str, only: &[&str]) -> Report {
    let mut options = Options::program(1, bin, &[]);
    options.only = only.iter().map(|s| s.to_string()).collect();
    let report = grade::run(&options);
    print!("{}", report.text());
    report
}

#[test]
fn a_tcp_tunnel_passes_framing_and_fails_every_refusal() {
    let report = grade_only(TUNNEL, &[]);
    assert_eq!(
        report.failed_names(),
        [
            "hop_by_hop_removed",
            "bad_request_400",
            "body_too_large_413",
            "uri_too_long_414",
            "header_too_large_431",
            "dead_origin_502",
            "slow_origin_504",
            "smuggling_cl_te",
            "smuggling_two_lengths",
            "smuggling_te_not_chunked",
        ]
    );
    // The smuggled requests reached the origins: the reason says so, whatever the client got.
    for name in [
        "smuggling_cl_te",
        "smuggling_two_lengths",
        "smuggling_te_not_chunked",
    ] {
        let Some(grade::Outcome::Fail(why)) = report.outcome(name) else {
            unreachable!("failed above")
        };
        assert!(why.contains("reached the origin"), "{name}: {why}");
    }
}

#[test]
fn a_one_read_forwarder_fails_framing_and_smuggling() {
    // The checks that fail at once (no timeout to wait for): bodies longer than one read,
    // pipelined requests, and the smuggling framings it forwards unread.
    let only = [
        "content_length_response",
        "chunked_response",
        "close_delimited_response",
        "large_body_streams",
        "pipelining",
        "smuggling_cl_te",
        "smuggling_two_lengths",
        "smuggling_te_not_chunked",
    ];
    let report = grade_only(ONE_READ, &only);
    assert_eq!(report.failed_names(), only);
}
