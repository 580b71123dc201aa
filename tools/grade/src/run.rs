//! The runner: start the origins and the program, run the checks of stages 1 to N in order,
//! notice when the program is gone, stop everything.

use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::checks::{self, Check, Ctx, Failure};
use crate::options::{Options, Target};
use crate::origin::Origins;
use crate::program::{self, Program};
use crate::report::{CheckResult, Outcome, Report};
use crate::setup::{self, Launcher, Setup};
use crate::websocket::Trust;

/// The checks `options` selects, in order.
pub fn selected(options: &Options) -> Vec<Check> {
    checks::all()
        .into_iter()
        .filter(|c| c.stage <= options.stage)
        .filter(|c| options.only.is_empty() || options.only.iter().any(|n| n == c.name))
        .collect()
}

/// Grades what `options` says and returns the report (nothing is printed).
pub fn run(options: &Options) -> Report {
    let checks = selected(options);
    let mut report = Report {
        stage: options.stage,
        target: match &options.target {
            Target::Program { command, args } => {
                let mut words = vec![command.clone()];
                words.extend(args.iter().cloned());
                format!("`{}`", words.join(" "))
            }
            Target::Addr(addr) => format!("the proxy at {addr}"),
        },
        ..Report::default()
    };
    let not_run = |report: &mut Report, checks: &[Check], why: &str| {
        for c in checks {
            report
                .results
                .push(result(c, Outcome::Fail(format!("not run: {why}")), 0.0));
        }
    };
    if let Target::Addr(addr) = &options.target {
        // Said once, rather than as every check's own connection failure.
        if let Err(e) = std::net::TcpStream::connect_timeout(addr, Duration::from_secs(5)) {
            report
                .notes
                .push(format!("nothing accepts connections on {addr}: {e}"));
            not_run(&mut report, &checks, "nothing listens on the address");
            return report;
        }
    }
    let origins = match Origins::start(3, options.origin_port) {
        Ok(o) => o,
        Err(e) => {
            report.notes.push(e);
            not_run(&mut report, &checks, "the origins could not start");
            return report;
        }
    };
    let addrs = origins.addrs();
    let count = if options.stage >= 5 { 3 } else { 1 };
    let extra = setup::stage_toml(options.stage, &addrs);
    let mut launcher = None;
    let mut main: Option<Program> = None;
    let mut tls = None;
    let proxy = match &options.target {
        Target::Addr(addr) => *addr,
        Target::Program { command, args } => {
            let started = Launcher::new(command, args, options.stage).and_then(|l| {
                let mut main_toml = extra.clone();
                if options.stage >= 9 {
                    // Stage 9's TLS listener: a certificate from a CA made for this run.
                    let (trust, cert, key) = Trust::make(l.dir())?;
                    let port = program::free_port()?;
                    main_toml.push_str(&setup::tls_toml(port, &cert, &key));
                    tls = Some((SocketAddr::from(([127, 0, 0, 1], port)), trust));
                }
                let setup = Setup {
                    backends: addrs[..count].to_vec(),
                    extra_toml: main_toml,
                    ..Setup::default()
                };
                let program = l.start(&setup)?;
                Ok((l, program))
            });
            match started {
                Ok((l, program)) => {
                    launcher = Some(l);
                    let addr = program.addr;
                    main = Some(program);
                    addr
                }
                Err(e) => {
                    report.notes.push(format!("the program did not start: {e}"));
                    not_run(&mut report, &checks, "the program did not start");
                    return report;
                }
            }
        }
    };
    let mut ctx = Ctx::new(proxy, &origins, options.stage, launcher.as_ref());
    ctx.main_pid = main.as_ref().map(Program::pid);
    ctx.tls = tls.as_ref().map(|(addr, trust)| (*addr, trust));
    ctx.extra_toml = extra;
    let mut gone = false;
    let mut panics_seen = None;
    for check in &checks {
        if gone {
            report.results.push(result(
                check,
                Outcome::Fail("not run: the program is gone".into()),
                0.0,
            ));
            continue;
        }
        ctx.check = check.name;
        let started = Instant::now();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| (check.run)(&mut ctx)));
        origins.release_hangs();
        let mut outcome = match outcome {
            Ok(Ok(())) => Outcome::Pass,
            Ok(Err(Failure::Fail(why))) => Outcome::Fail(why),
            Ok(Err(Failure::Skip(why))) => Outcome::Skip(why),
            Err(_) => Outcome::Fail("the grader's check itself panicked (a bug in grade)".into()),
        };
        if let Some(program) = main.as_mut() {
            // A program that crashed is still exiting as the failure shows (printing its panic,
            // a backtrace): it gets a moment, so the report blames the right check.
            let exited = match outcome {
                Outcome::Fail(_) => program.wait_exit(Duration::from_millis(500)),
                _ => program.exit_status(),
            };
            if let Some(status) = exited {
                gone = true;
                // The panic message says more than the last lines (a backtrace, often).
                let said = match program.panic_words() {
                    Some(panic) => format!(": it panicked: {panic}"),
                    None => program.stderr_words(),
                };
                let note = format!(
                    "the program exited with {} during `{}`{said}",
                    program::status_words(status),
                    check.name,
                );
                report.notes.push(note);
                // The note says it in full, once; the check's line says what it saw.
                let saw = match &outcome {
                    Outcome::Fail(why) => format!("{why}; "),
                    _ => String::new(),
                };
                outcome = Outcome::Fail(format!(
                    "{saw}the program exited with {} during this check (see the NOTE above)",
                    program::status_words(status)
                ));
            } else if let Outcome::Fail(why) = &outcome {
                // A thread of the program panicked (a `todo!()` in a workbook skeleton): say
                // so once, with its message.
                let panicked = program.panic_words();
                if panicked.is_some() && panicked != panics_seen {
                    panics_seen = panicked.clone();
                    let words = panicked.unwrap_or_default();
                    outcome = Outcome::Fail(format!("{why}; the program panicked: {words}"));
                }
            }
        }
        report
            .results
            .push(result(check, outcome, started.elapsed().as_secs_f64()));
    }
    if let Some(mut program) = main {
        program.stop();
    }
    report
}

fn result(check: &Check, outcome: Outcome, seconds: f64) -> CheckResult {
    CheckResult {
        name: check.name.to_string(),
        stage: check.stage,
        points: check.points,
        teaches: check.teaches.to_string(),
        outcome,
        seconds,
    }
}
