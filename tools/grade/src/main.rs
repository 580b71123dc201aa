//! `grade`: the course's checks against a proxy. See `tools/grade/README.md`.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use grade::options::{DEFAULT_ORIGIN_PORT, LAST_STAGE};
use grade::{Options, Target};

/// Grades an HTTP/1.1 proxy with the course's checks, stage by stage.
///
/// Start a program:  grade --stage 3 -- target/release/stage3
/// A running proxy:  grade --stage 5 --addr 127.0.0.1:8080
///   (configure it with `grade --print-config nginx --stage 5`)
///
/// Every check of stages 1 to N runs (earlier stages re-run). Each prints PASS, FAIL (the
/// reason, and where the course teaches it) or SKIP; then the points per stage and
/// `N passed, M failed`. Exit status: 0 when no check failed, 1 when one did, 2 usage error.
///
/// The program gets `--listen 127.0.0.1:PORT --backend ADDR` (stages 1 to 5) or
/// `--config FILE` (stage 6 on): the contract in tools/grade/README.md. Another command line
/// works with placeholders: `grade -- ./proxy {port} {backend_port}`.
/// GRADE_SHOW_STDERR=1 echoes the program's stderr while it is graded.
#[derive(Debug, Parser)]
#[command(name = "grade", version, verbatim_doc_comment)]
struct Cli {
    /// Grade the checks of stages 1 to N.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=LAST_STAGE as i64))]
    stage: u8,

    /// Grade a proxy already running on this loopback address instead of starting one.
    #[arg(long, value_name = "ADDR", conflicts_with = "program")]
    addr: Option<SocketAddr>,

    /// The origins' first port with --addr (three ports from it); the program's config
    /// must point at them.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_ORIGIN_PORT)]
    origin_port: u16,

    /// Run only this check (repeatable); see --list.
    #[arg(long, value_name = "NAME")]
    only: Vec<String>,

    /// List the checks of stages 1 to N and exit.
    #[arg(long)]
    list: bool,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,

    /// Print a configuration for nginx or HAProxy that forwards to the origins of --addr
    /// mode, listening on --addr's port (default 8080), and exit.
    #[arg(long, value_name = "SERVER")]
    print_config: Option<Server>,

    /// The program to grade and its arguments (after --); {port}, {backend}, {backend_port}
    /// and {config} in them are replaced, and then nothing is appended.
    #[arg(last = true, value_name = "PROGRAM")]
    program: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Server {
    Nginx,
    Haproxy,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.list {
        for c in grade::checks::all()
            .into_iter()
            .filter(|c| c.stage <= cli.stage)
        {
            println!(
                "{:28} stage {}  {} point(s)  {}",
                c.name, c.stage, c.points, c.what
            );
        }
        return ExitCode::SUCCESS;
    }
    let listen = cli.addr.map_or(8080, |a| a.port());
    let origins: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], cli.origin_port + i)))
        .collect();
    match cli.print_config {
        Some(Server::Nginx) => {
            print!(
                "{}",
                grade::setup::nginx_config(cli.stage, listen, &origins)
            );
            return ExitCode::SUCCESS;
        }
        Some(Server::Haproxy) => {
            print!(
                "{}",
                grade::setup::haproxy_config(cli.stage, listen, &origins)
            );
            return ExitCode::SUCCESS;
        }
        None => {}
    }
    let known: Vec<&str> = grade::checks::all().iter().map(|c| c.name).collect();
    if let Some(unknown) = cli.only.iter().find(|n| !known.contains(&n.as_str())) {
        eprintln!("grade: no check named {unknown:?}; `grade --list --stage 9` lists them");
        return ExitCode::from(2);
    }
    let target = match (cli.addr, cli.program.split_first()) {
        (Some(addr), _) => {
            if !addr.ip().is_loopback() {
                eprintln!("grade: --addr must be a loopback address (127.0.0.1), not {addr}");
                return ExitCode::from(2);
            }
            Target::Addr(addr)
        }
        (None, Some((command, args))) => Target::Program {
            command: command.clone(),
            args: args.to_vec(),
        },
        (None, None) => {
            eprintln!("grade: say what to grade: `-- PROGRAM [ARGS...]` or `--addr 127.0.0.1:PORT` (see --help)");
            return ExitCode::from(2);
        }
    };
    let origin_port = match target {
        Target::Addr(_) => cli.origin_port,
        Target::Program { .. } => 0,
    };
    let options = Options {
        stage: cli.stage,
        target,
        only: cli.only,
        origin_port,
    };
    let report = grade::run(&options);
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.json()).unwrap_or_default()
        );
    } else {
        print!("{}", report.text());
    }
    if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
