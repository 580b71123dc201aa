//! One grader check, run by name from a root test: the course's grader (`tools/grade`) owns
//! the black-box checks of each stage, so a proxy test that needs one calls it here instead of
//! keeping a copy that could drift from it. The grader judges with HTTP code of its own, not
//! this crate's `http` module, so a parser bug cannot hide on both sides.
//!
//! `tests/grade.rs` runs every check against every stage; this is for a test that names one
//! (a chapter's exercise, say) and must run it on its own.

use grade::{Options, Outcome, Report};

/// Runs the grader's check `name` against `bin`, started as a stage-`stage` program (the
/// grader's contract: `--listen`, `--backend` or `--config`), and returns the report.
pub fn run_check(stage: u8, bin: &str, name: &str) -> Report {
    let mut options = Options::program(stage, bin, &["--log-level", "warn"]);
    options.only = vec![name.to_string()];
    let report = grade::run(&options);
    print!("{}", report.text());
    report
}

/// Asserts that the grader's check `name` passes against `bin` graded at `stage`.
pub fn assert_check_passes(stage: u8, bin: &str, name: &str) {
    let report = run_check(stage, bin, name);
    let outcomes: Vec<(&str, &Outcome)> = report
        .results
        .iter()
        .map(|r| (r.name.as_str(), &r.outcome))
        .collect();
    // A misspelt name selects nothing: that must fail, not pass with no check run.
    assert_eq!(
        outcomes,
        [(name, &Outcome::Pass)],
        "the grader's check {name} against {bin} at stage {stage}:\n{}",
        report.text()
    );
}
