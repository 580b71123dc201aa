//! The chapters' rebuild exercises, stubbed at run time for the mutation check.
//!
//! A rebuild exercise says "replace the body of F with `todo!()`, and the tests T fail". The
//! first line of each such F is `crate::exercise::stub!("F");`, which expands to nothing in
//! every normal build. Built with `--cfg revproxy_mutants` (only `solutions/mutants.py` does,
//! into a target directory of its own), it panics as `todo!()` would when the environment
//! variable `REVPROXY_STUB` names F. So one build serves every exercise, where a rebuild per
//! stubbed function would cost tens of seconds each, and the integration tests check the stage
//! binaries they start too, since a child process inherits the variable.

/// `stub!("F")` at the top of F: nothing, unless this is the mutation check's build.
#[cfg(not(revproxy_mutants))]
macro_rules! stub {
    ($name:literal) => {};
}

/// `stub!("F")` at the top of F: `todo!()` when `REVPROXY_STUB` is F.
#[cfg(revproxy_mutants)]
macro_rules! stub {
    ($name:literal) => {
        if $crate::exercise::stubbed($name) {
            todo!("{} (stubbed by REVPROXY_STUB)", $name)
        }
    };
}

pub(crate) use stub;

/// Whether `REVPROXY_STUB` names `name`.
///
/// The variable is read once, at the first call: after that a call only compares strings,
/// with no lock and no allocation, which is what stage 2's `SIGCHLD` handler (one of the
/// exercises) may do. Stage 2 makes its first call in `Reaper::wait_below`, before its first
/// child exists.
#[cfg(revproxy_mutants)]
pub(crate) fn stubbed(name: &str) -> bool {
    static STUB: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    STUB.get_or_init(|| std::env::var("REVPROXY_STUB").ok())
        .as_deref()
        == Some(name)
}
