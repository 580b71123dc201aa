//! Every reference stage graded by the course's grader (`tools/grade`, which shares no code
//! with this crate): each scores full marks at its own stage, and fails exactly the later
//! stages' checks it cannot pass, as a student's program would.
//!
//! Run one with its report: `cargo test --test grade stage3 -- --nocapture`.

use grade::{Options, Outcome, Report};

const STAGE1: &str = env!("CARGO_BIN_EXE_stage1");
const STAGE2: &str = env!("CARGO_BIN_EXE_stage2");
const STAGE3: &str = env!("CARGO_BIN_EXE_stage3");
const STAGE4: &str = env!("CARGO_BIN_EXE_stage4");
const STAGE5: &str = env!("CARGO_BIN_EXE_stage5");
const STAGE6: &str = env!("CARGO_BIN_EXE_stage6");
const STAGE7: &str = env!("CARGO_BIN_EXE_stage7");
const STAGE8: &str = env!("CARGO_BIN_EXE_stage8");
const STAGE9: &str = env!("CARGO_BIN_EXE_stage9");

/// Grades `bin` with the checks of stages 1 to `stage`, printing the report.
fn grade(stage: u8, bin: &str) -> Report {
    let report = grade::run(&Options::program(stage, bin, &["--log-level", "warn"]));
    print!("{}", report.text());
    report
}

/// Every check of stages 1 to `own` passed, and exactly `failed` failed.
fn assert_grades(report: &Report, own: u8, failed: &[&str]) {
    for r in report.results.iter().filter(|r| r.stage <= own) {
        assert_eq!(
            r.outcome,
            Outcome::Pass,
            "{} (stage {}) must pass",
            r.name,
            r.stage
        );
    }
    assert_eq!(report.failed_names(), failed, "{}", report.text());
    assert_eq!(
        report.skipped(),
        0,
        "nothing is skipped when the grader starts the program"
    );
}

#[test]
fn stage1_full_marks_and_blocked_by_a_silent_client_or_origin() {
    // Stage 1 serves one connection at a time: Proxy Lab's silent client and silent server
    // both block the next client.
    let report = grade(2, STAGE1);
    assert_grades(&report, 1, &["silent_client", "silent_origin"]);
    // No children, so no zombies: that stage 2 check passes.
    assert_eq!(report.outcome("no_zombies"), Some(&Outcome::Pass));
}

#[test]
fn stage2_and_stage3_full_marks_and_no_pool_flags() {
    // Neither has a pool: stage 4's checks start an instance with --workers, which they refuse.
    for bin in [STAGE2, STAGE3] {
        let report = grade(4, bin);
        assert_grades(
            &report,
            3,
            &["idle_clients_do_not_starve", "full_queue_503"],
        );
        let Some(Outcome::Fail(why)) = report.outcome("full_queue_503") else {
            unreachable!("checked above")
        };
        assert!(why.contains("--workers"), "{why}");
    }
}

/// Every check was "not run" because the program refused its command line or config, and
/// the note quotes what it said.
fn assert_refused(report: &Report, said: &str) {
    assert!(
        report
            .results
            .iter()
            .all(|r| r.outcome == Outcome::Fail("not run: the program did not start".into())),
        "{}",
        report.text()
    );
    assert!(report.notes[0].contains(said), "{:?}", report.notes);
}

#[test]
fn stage4_full_marks_and_takes_one_backend_only() {
    let report = grade(4, STAGE4);
    assert_grades(&report, 4, &[]);
    // Stage 5 starts it with three --backend flags: it refuses them and nothing runs.
    assert_refused(&grade(5, STAGE4), "--backend");
}

#[test]
fn stage4_naive_pool_is_starved_by_idle_clients() {
    // `--keep-alive hold`, the pool chapter 04 starts from: a worker holds its idle
    // keep-alive connection, so two idle clients take both workers.
    let mut options = Options::program(4, STAGE4, &["--log-level", "warn", "--keep-alive", "hold"]);
    options.only = vec!["idle_clients_do_not_starve".into(), "full_queue_503".into()];
    let report = grade::run(&options);
    print!("{}", report.text());
    assert_eq!(report.failed_names(), ["idle_clients_do_not_starve"]);
}

#[test]
fn stage5_full_marks_and_no_config_file() {
    assert_grades(&grade(5, STAGE5), 5, &[]);
    assert_refused(&grade(6, STAGE5), "--config");
}

#[test]
fn stage6_full_marks_and_no_cache() {
    let report = grade(7, STAGE6);
    assert_grades(
        &report,
        6,
        &[
            "cache_serves_dead_origin",
            "cache_respects_no_store_private_authorization",
            "vary_keeps_variants",
            "revalidation_304",
        ],
    );
}

#[test]
fn stage7_full_marks_and_no_access_control() {
    let report = grade(8, STAGE7);
    assert_grades(
        &report,
        7,
        &["access_401_403_429", "denied_prefix_respelled"],
    );
}

#[test]
fn stage8_full_marks_and_no_routes() {
    assert_grades(&grade(8, STAGE8), 8, &[]);
    assert_refused(&grade(9, STAGE8), "[[routes]]");
}

#[test]
fn stage9_full_marks() {
    assert_grades(&grade(9, STAGE9), 9, &[]);
}
