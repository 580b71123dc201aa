//! `grade`: the course's checks, stage by stage, against any HTTP/1.1 proxy, either a program
//! it starts (following the contract in `README.md`) or an address it is told.
//!
//! [`run`] grades and returns a [`Report`]; the binary prints it. Nothing here uses the
//! course's proxy library: the client ([`http`]), the origins ([`origin`]) and the checks are
//! the grader's own, so a bug cannot hide on both sides.
//!
//! Modules: [`options`] (what to grade), [`setup`] (starting a program, writing its config,
//! the nginx and HAProxy configs), [`program`] (process group, stderr, exit), [`origin`] (the
//! recording origins), [`http`] (the client), [`pattern`] (body bytes), [`checks`] (the checks
//! by stage), [`report`] (text and JSON), [`run`] (the runner).

pub mod checks;
pub mod controls;
pub mod http;
pub mod options;
pub mod origin;
pub mod pattern;
pub mod program;
pub mod report;
pub mod run;
pub mod setup;
pub mod websocket;

pub use options::{Options, Target};
pub use report::{Outcome, Report};
pub use run::run;
