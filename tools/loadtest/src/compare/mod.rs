//! `loadtest compare`: the stages side by side, measured by the same load on the same
//! backends, so the student sees why each concurrency model exists.
//!
//! Contract with the binaries (all found next to the running `loadtest`, i.e. in
//! `target/release/` after `cargo build --release --workspace`):
//! - `backends --port 0 --name bN --delay-ms D --workers W` prints `... listening on http://127.0.0.1:P`
//!   when ready. If it prints port 0 (it cannot bind port 0 itself), it is restarted on a
//!   port picked here.
//! - `stageN --listen 127.0.0.1:0 --log-level warn --backend 127.0.0.1:P1 ...` prints
//!   a line containing `listening on 127.0.0.1:PORT` on stdout or stderr within 10 s.
//!   Stages 1 to 4 take a single `--backend` and get the first one; stages 6 to 9 take no
//!   `--backend` at all but `--config FILE` (and `--listen`, which wins over the file's), so
//!   compare writes `OUT/proxy.toml` with the backends and nothing else turned on.
//!
//! Each cell (stage x keep-alive x concurrency) gets a freshly started stage, so work a
//! stage still has queued from the previous cell (stage1 with 255 waiting connections)
//! cannot leak into the next measurement. The backends live for the whole comparison.
//! After the grid comes the slow-client scenario: K idle connections (half silent, half
//! with a partial request head) are opened first, then the normal load runs at c=16.
//!
//! With `--with-c`, each stage that has a C counterpart in `chapters/c/` (built with
//! `make -C chapters/c`, into `--c-bin-dir`) gets it as a row right after its own:
//! `c-reverse_proxy` after stage1, `c-fork`, `c-threaded`, `c-balancer` after stage5. The C
//! programs take the stages' `--listen`/`--backend` flags and print the same ready line, so
//! they are measured exactly like the stages. An opt-in flag, not "whatever is built": their
//! keep-alive cells wait out the timeout on every request (they read a response until the
//! backend closes, chapter 01), which makes the run longer.
//!
//! Every cell also says what the stage spent on it: its CPU time and context switches from
//! `/proc` just before and just after the run ([`super::proc_cpu`]), per good response. With
//! `--layers`, the table is that cost from stage4 to stage9 at c=64 with a backend that does
//! not wait, each row against the first: what each layer adds with its features off.
//!
//! A stage that cannot start, or exits, fills its cells with the reason and compare goes on.
//! Ctrl-C (or SIGTERM) stops after the current cell; every child is stopped by its guard.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

mod output;

use super::cell::Cell;
use super::cli::CompareArgs;
use super::proc_cpu;
use super::procs::{self, ChildGuard, ProcError};
use super::report::Report;
use super::request::build_request;
use super::run::{self, RunConfig};
pub use output::markdown;
use output::{summary_line, write_outputs};

pub const BUILD_COMMAND: &str = "cargo build --release --workspace";
/// How long a started binary has to print its ready line.
const READY_WAIT: Duration = Duration::from_secs(10);
/// Load of the slow-client scenario, beside the idle connections.
const SLOW_SCENARIO_CONCURRENCY: u32 = 16;
const DEFAULT_STAGES: [&str; 4] = ["stage1", "stage2", "stage3", "stage4"];
/// `--layers`: the pool and every layer built on it.
const LAYER_STAGES: [&str; 6] = ["stage4", "stage5", "stage6", "stage7", "stage8", "stage9"];
/// The configuration compare writes into `--out` for the stages that read one.
const CONFIG_FILE: &str = "proxy.toml";
pub const C_BUILD_COMMAND: &str = "make -C chapters/c";
/// The C programs of `chapters/c/` beside the stage that fixes what they get wrong:
/// (stage, row name, file in `--c-bin-dir`).
const C_COUNTERPARTS: [(&str, &str, &str); 4] = [
    ("stage1", "c-reverse_proxy", "reverse_proxy"),
    ("stage2", "c-fork", "fork_proxy"),
    ("stage3", "c-threaded", "threaded_proxy"),
    ("stage5", "c-balancer", "proxy_load_balancer"),
];

/// One row group of the table: a program, where it is, how to build it if it is not, and
/// how to start it.
#[derive(Debug, Clone, PartialEq)]
struct Contender {
    name: String,
    bin: PathBuf,
    build: &'static str,
    launch: Launch,
}

/// How a program is told where to listen and where its backends are (see `--help` of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Launch {
    /// `--listen 127.0.0.1:0 --backend ADDR`: stages 1 to 4 forward to one backend.
    OneBackend,
    /// `--listen 127.0.0.1:0 --backend ADDR...`: stage5, the C programs, anything else.
    Backends,
    /// `--config FILE --listen 127.0.0.1:0`: stages 6 to 9 read their backends from a file.
    ConfigFile,
}

fn launch_of(name: &str) -> Launch {
    match name
        .strip_prefix("stage")
        .and_then(|n| n.parse::<u32>().ok())
    {
        Some(1..=4) => Launch::OneBackend,
        Some(6..) => Launch::ConfigFile,
        _ => Launch::Backends,
    }
}

/// The command line that starts `contender` on a port of its own choosing.
fn stage_command(contender: &Contender, backends: &[SocketAddr], config_file: &Path) -> Command {
    let mut cmd = Command::new(&contender.bin);
    cmd.args(["--listen", "127.0.0.1:0"]);
    if contender.name.starts_with("stage") && contender.launch != Launch::ConfigFile {
        // As the config stages' file says: an access log line per request, written to a
        // pipe this process drains, would be measured as the stage's cost.
        cmd.args(["--log-level", "warn"]);
    }
    let backends = match contender.launch {
        Launch::OneBackend => &backends[..backends.len().min(1)],
        Launch::Backends => backends,
        Launch::ConfigFile => {
            cmd.arg("--config").arg(config_file);
            &[]
        }
    };
    for backend in backends {
        cmd.arg("--backend").arg(backend.to_string());
    }
    cmd
}

/// `OUT/proxy.toml` for the config stages: the backends as one upstream and nothing else
/// turned on, so each layer is measured with its features off. `listen_port` was free a
/// moment ago; compare still passes `--listen 127.0.0.1:0`, which wins, so that no cell
/// races another program for it. The file stays valid on its own, to rerun a stage by hand.
pub fn config_toml(listen_port: u16, backends: &[SocketAddr]) -> String {
    let servers: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "# Written by `loadtest compare`: the demo backends, no cache, no access rules, no \
         routes.\n\
         [server]\nlisten = \"127.0.0.1:{listen_port}\"\n\n\
         [upstreams.app]\nservers = [{}]\n\n\
         [log]\nlevel = \"warn\"\n",
        servers.join(", ")
    )
}

/// The stages in the order asked, each followed by its C counterpart when `c_dir` is given.
fn contenders(stages: &[String], bin_dir: &Path, c_dir: Option<&Path>) -> Vec<Contender> {
    let mut out = Vec::new();
    for stage in stages {
        out.push(Contender {
            name: stage.clone(),
            bin: bin_dir.join(stage),
            build: BUILD_COMMAND,
            launch: launch_of(stage),
        });
        let counterpart = C_COUNTERPARTS.iter().find(|(s, _, _)| s == stage);
        if let (Some(dir), Some((_, name, file))) = (c_dir, counterpart) {
            out.push(Contender {
                name: name.to_string(),
                bin: dir.join(file),
                build: C_BUILD_COMMAND,
                launch: Launch::Backends,
            });
        }
    }
    out
}

#[derive(Debug)]
pub enum CompareError {
    NoBinDir(io::Error),
    Missing { what: String, dir: PathBuf },
    Backend(ProcError),
    Output { path: PathBuf, source: io::Error },
    Interrupted { out: PathBuf },
}

impl fmt::Display for CompareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompareError::NoBinDir(e) => {
                write!(f, "cannot find the directory of this executable: {e}")
            }
            CompareError::Missing { what, dir } => write!(
                f,
                "{what} not found in {}; build everything first with: {BUILD_COMMAND}",
                dir.display()
            ),
            CompareError::Backend(e) => write!(f, "demo backend: {e}"),
            CompareError::Output { path, source } => {
                write!(f, "cannot write {}: {source}", path.display())
            }
            CompareError::Interrupted { out } => {
                write!(f, "interrupted; partial results are in {}", out.display())
            }
        }
    }
}

impl std::error::Error for CompareError {}

/// compare.json
#[derive(Debug, Serialize)]
pub struct CompareReport {
    pub duration_secs: f64,
    pub timeout_secs: f64,
    pub backend_delay_ms: u64,
    pub backends: u32,
    pub cpus: usize,
    /// `--layers`: the table compares each row's CPU per request with the first row's.
    pub layers: bool,
    pub interrupted: bool,
    pub cells: Vec<Cell>,
}

/// Runs the comparison, prints progress to stderr and the table to stdout, and writes
/// compare.md, compare.json and chart.svg into `--out`.
pub fn run_command(args: &CompareArgs, stop: &AtomicBool) -> Result<(), CompareError> {
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .map_err(CompareError::NoBinDir)?
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| {
                CompareError::NoBinDir(io::Error::other("executable has no parent directory"))
            })?,
    };
    let backends_bin = bin_dir.join("backends");
    if !backends_bin.is_file() {
        return Err(CompareError::Missing {
            what: "the demo backends binary".into(),
            dir: bin_dir,
        });
    }
    let defaults: &[&str] = if args.layers {
        &LAYER_STAGES
    } else {
        &DEFAULT_STAGES
    };
    let stages: Vec<String> = if args.stages.is_empty() {
        defaults
            .iter()
            .filter(|s| bin_dir.join(s).is_file())
            .map(|s| s.to_string())
            .collect()
    } else {
        args.stages.clone()
    };
    if stages.is_empty() {
        return Err(CompareError::Missing {
            what: format!("no stage binary ({})", defaults.join(", ")),
            dir: bin_dir,
        });
    }
    // Fail on an unwritable --out now, not after minutes of measuring.
    std::fs::create_dir_all(&args.out).map_err(|source| CompareError::Output {
        path: args.out.clone(),
        source,
    })?;

    // The backends run on hyper's event loop: a few threads serve any number of connections,
    // and more threads only add contention on two cores.
    let workers = args.backend_workers;
    let mut backend_guards = Vec::new();
    let mut backend_addrs = Vec::new();
    for i in 1..=args.backends {
        let started = start_backend(&backends_bin, i, args.backend_delay_ms, workers, stop);
        let (guard, port) = started.map_err(|e| match e {
            ProcError::Interrupted => CompareError::Interrupted {
                out: args.out.clone(),
            },
            e => CompareError::Backend(e),
        })?;
        eprintln!(
            "compare: backend {} listening on 127.0.0.1:{port}",
            guard.name()
        );
        backend_guards.push(guard);
        backend_addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }

    let contenders = contenders(&stages, &bin_dir, args.with_c.then_some(&*args.c_bin_dir));
    let config_file = args.out.join(CONFIG_FILE);
    if contenders.iter().any(|c| c.launch == Launch::ConfigFile) {
        let output_error = |source| CompareError::Output {
            path: config_file.clone(),
            source,
        };
        let port = procs::free_port().map_err(output_error)?;
        std::fs::write(&config_file, config_toml(port, &backend_addrs)).map_err(output_error)?;
    }
    let mut cells = Vec::new();
    let mut grid = Vec::new();
    for contender in &contenders {
        for &keepalive in args.keep_alive.modes() {
            for &c in &args.concurrency {
                grid.push((contender, keepalive, c, 0));
            }
        }
        if args.slow_clients > 0 {
            grid.push((
                contender,
                true,
                SLOW_SCENARIO_CONCURRENCY,
                args.slow_clients,
            ));
        }
    }
    let total = grid.len();
    for (n, (contender, keepalive, c, slow)) in grid.into_iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let cell = if contender.bin.is_file() {
            let cmd = stage_command(contender, &backend_addrs, &config_file);
            measure(cmd, &contender.name, keepalive, c, slow, args, stop)
        } else {
            Cell::new(&contender.name, keepalive, c, slow)
                .failed(format!("binary not found; run {}", contender.build))
        };
        eprintln!("compare: [{}/{total}] {}", n + 1, summary_line(&cell));
        cells.push(cell);
    }
    drop(backend_guards);

    let interrupted = stop.load(Ordering::Relaxed);
    let report = CompareReport {
        duration_secs: args.duration.as_secs_f64(),
        timeout_secs: args.timeout.as_secs_f64(),
        backend_delay_ms: args.backend_delay_ms,
        backends: args.backends,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        layers: args.layers,
        interrupted,
        cells,
    };
    let markdown = markdown(&report);
    write_outputs(&args.out, &report, &markdown)?;
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "{markdown}");
    let _ = writeln!(
        stdout,
        "Written: {}/{{compare.md,compare.json,chart.svg}}",
        args.out.display()
    );
    if interrupted {
        return Err(CompareError::Interrupted {
            out: args.out.clone(),
        });
    }
    Ok(())
}

fn start_backend(
    bin: &Path,
    i: u32,
    delay_ms: u64,
    workers: Option<u32>,
    stop: &AtomicBool,
) -> Result<(ChildGuard, u16), ProcError> {
    let name = format!("b{i}");
    let command = |port: u16| {
        let mut cmd = Command::new(bin);
        cmd.args(["--port", &port.to_string(), "--name", &name])
            .args(["--delay-ms", &delay_ms.to_string()]);
        if let Some(workers) = workers {
            cmd.args(["--workers", &workers.to_string()]);
        }
        cmd
    };
    let (guard, port) = procs::spawn_ready(command(0), &name, READY_WAIT, stop)?;
    if port != 0 {
        return Ok((guard, port));
    }
    // It took "0" literally; a port that is free now is the next best thing.
    drop(guard);
    let port = procs::free_port().map_err(|source| ProcError::Spawn {
        name: name.clone(),
        source,
    })?;
    procs::spawn_ready(command(port), &name, READY_WAIT, stop)
}

fn measure(
    cmd: Command,
    stage: &str,
    keepalive: bool,
    concurrency: u32,
    slow_clients: u32,
    args: &CompareArgs,
    stop: &AtomicBool,
) -> Cell {
    let cell = Cell::new(stage, keepalive, concurrency, slow_clients);
    let (mut proxy, port) = match procs::spawn_ready(cmd, stage, READY_WAIT, stop) {
        Ok(ready) => ready,
        Err(e) => return cell.failed(format!("failed to start: {e}")),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let idle = open_idle_connections(addr, slow_clients, args.timeout);
    let config = RunConfig {
        addr,
        request: build_request(
            "GET",
            &format!("127.0.0.1:{port}"),
            "/",
            &[],
            b"",
            keepalive,
        ),
        head_request: false,
        concurrency: concurrency as usize,
        keepalive,
        requests: None,
        duration: Some(args.duration),
        rate: None,
        timeout: args.timeout,
        threads: None,
        progress: false,
        tls: None,
    };
    // Just around the run: starting the stage and opening the idle clients are not the
    // cell's work.
    let before = proc_cpu::group_usage(proxy.pid());
    let outcome = run::run(&config, stop);
    let after = proc_cpu::group_usage(proxy.pid());
    let mut cell = match outcome {
        Ok(outcome) => {
            let report = Report::new(&format!("http://{addr}/"), "GET", &config, &outcome);
            let mut cell = from_report(cell, &report);
            let cost = proc_cpu::cost(
                before,
                after,
                good_responses(&report),
                proc_cpu::ticks_per_second(),
            );
            cell.cpu_us_per_request = cost.cpu_us_per_request;
            cell.context_switches_per_request = cost.context_switches_per_request;
            if outcome.interrupted {
                // A cut-short cell would read as a real (low) number in the chart.
                cell.failed("interrupted; partial numbers".into())
            } else {
                cell
            }
        }
        Err(e) => cell.failed(e.to_string()),
    };
    if let Some(status) = proxy.exited() {
        cell.failure = Some(format!(
            "{stage} exited during the run ({status}); {}",
            proxy.last_output()
        ));
    }
    drop(idle);
    drop(proxy);
    cell
}

/// Responses with a status below 400: what throughput and the cost per request count.
fn good_responses(report: &Report) -> u64 {
    let http_errors: u64 = report
        .status_codes
        .iter()
        .filter(|(code, _)| code.parse::<u16>().is_ok_and(|c| c >= 400))
        .map(|(_, &n)| n)
        .sum();
    report.responses.saturating_sub(http_errors)
}

/// Throughput counts good responses only: a stage that answers 503 when full (stage4) must
/// not look faster for it. HTTP 4xx/5xx responses count as errors, beside failed requests.
fn from_report(mut cell: Cell, report: &Report) -> Cell {
    let mut errors_by_kind: BTreeMap<String, u64> = report
        .errors
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(&kind, &n)| (kind.to_string(), n))
        .collect();
    let mut http_errors = 0;
    for (code, &n) in &report.status_codes {
        if code.parse::<u16>().is_ok_and(|c| c >= 400) {
            http_errors += n;
            errors_by_kind.insert(format!("http_{code}"), n);
        }
    }
    let good = good_responses(report);
    cell.requests_per_sec = Some(if report.total_secs > 0.0 {
        good as f64 / report.total_secs
    } else {
        0.0
    });
    cell.p50_us = report.latency_us.map(|l| l.p50);
    cell.p99_us = report.latency_us.map(|l| l.p99);
    cell.responses = Some(report.responses);
    cell.errors = Some(report.errors_total + http_errors);
    cell.errors_by_kind = errors_by_kind;
    cell
}

/// Clients that connect and then stall: even ones send nothing, odd ones half a request
/// head. A server that gives each connection a thread (or the only thread) waits on them.
fn open_idle_connections(addr: SocketAddr, count: u32, timeout: Duration) -> Vec<TcpStream> {
    let partial_head = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n");
    (0..count)
        .filter_map(|i| {
            let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
            stream.set_read_timeout(Some(timeout)).ok()?;
            stream.set_write_timeout(Some(timeout)).ok()?;
            if i % 2 == 1 {
                stream.write_all(partial_head.as_bytes()).ok()?;
            }
            Some(stream)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use output::{errors_label, seconds_label};

    pub(crate) fn sample_cells() -> Vec<Cell> {
        let mut cells = Vec::new();
        for (s, stage) in ["stage1", "stage3"].iter().enumerate() {
            for keepalive in [true, false] {
                for (i, c) in [1u32, 16, 64, 256].into_iter().enumerate() {
                    let mut cell = Cell::new(stage, keepalive, c, 0);
                    cell.requests_per_sec = Some(45.0 * (1 + s * i) as f64);
                    cell.p50_us = Some(21_000 * (1 + i as u64));
                    cell.p99_us = Some(25_000 * (1 + i as u64 * 10));
                    cell.responses = Some(100);
                    cell.errors = Some(0);
                    cell.cpu_us_per_request = Some(30.0 * (1 + i) as f64);
                    cell.context_switches_per_request = Some(1.25);
                    cells.push(cell);
                }
            }
        }
        cells.push(
            Cell::new("stage2", true, 16, 0)
                .failed("failed to start: exited (1) | oops <&>".into()),
        );
        let mut slow = Cell::new("stage1", true, 16, 32);
        slow.requests_per_sec = Some(0.0);
        slow.errors = Some(16);
        slow.errors_by_kind.insert("timeout".into(), 16);
        cells.push(slow);
        cells
    }

    fn sample_report() -> CompareReport {
        CompareReport {
            duration_secs: 2.0,
            timeout_secs: 2.0,
            backend_delay_ms: 20,
            backends: 3,
            cpus: 2,
            layers: false,
            interrupted: false,
            cells: sample_cells(),
        }
    }

    #[test]
    fn the_title_says_half_a_second() {
        assert_eq!(seconds_label(0.5), "0.5");
        assert_eq!(seconds_label(2.0), "2");
        assert_eq!(seconds_label(1.25), "1.2");
    }

    #[test]
    fn table_has_one_row_per_cell() {
        let report = sample_report();
        let md = markdown(&report);
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(
            rows[0],
            "| stage | keep-alive | concurrency | req/s | p50 | p99 | errors | CPU µs/request \
             | context switches/request |"
        );
        assert_eq!(rows.len(), 1 + report.cells.len());
        assert!(
            md.contains("| stage1 | on | 16 + 32 slow | 0.0 | - | - | 16 (timeout 16) | - | - |"),
            "{md}"
        );
        assert!(
            md.contains("| stage1 | on | 1 | 45.0 | 21.00 ms | 25.00 ms | 0 | 30.0 | 1.25 |"),
            "{md}"
        );
        // The failure's '|' is escaped, so the row keeps its 9 columns.
        let failed = rows
            .iter()
            .find(|r| r.contains("failed:"))
            .expect("failed row");
        assert_eq!(failed.matches(" | ").count(), 8, "{failed}");
        assert!(!md.contains("vs stage") && !md.contains("What each layer adds"));
    }

    #[test]
    fn layers_table_compares_cpu_with_the_first_row() {
        let mut report = sample_report();
        report.layers = true;
        let cpu = [Some(17.0), Some(18.7), None, Some(0.0)];
        report.cells = ["stage4", "stage5", "stage6", "stage9"]
            .iter()
            .zip(cpu)
            .map(|(stage, cpu)| {
                let mut cell = Cell::new(stage, true, 64, 0);
                cell.requests_per_sec = Some(50_000.0);
                cell.cpu_us_per_request = cpu;
                cell
            })
            .collect();
        let md = markdown(&report);
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        assert!(
            rows[0].ends_with("| context switches/request | vs stage4 |"),
            "{md}"
        );
        assert_eq!(rows[1].matches('|').count(), 11, "{md}");
        let last_column = |row: &str| {
            row.rsplit(" | ")
                .next()
                .map(|c| c.trim_end_matches(" |").to_string())
        };
        let got: Vec<Option<String>> = rows[2..].iter().map(|r| last_column(r)).collect();
        let want = ["1.00×", "1.10×", "-", "0.00×"].map(|s| Some(s.to_string()));
        assert_eq!(got, want, "{md}");
        assert!(rows[3].contains("| 18.7 | - | 1.10× |"), "{md}");
        let paragraph = md.find("What each layer adds").expect("the paragraph");
        assert!(paragraph < md.find("| stage |").expect("the table"), "{md}");
        assert!(md.contains("\"vs stage4\""), "{md}");

        // The first row unknown: every comparison is unknown, none is invented.
        report.cells[0].cpu_us_per_request = None;
        let md = markdown(&report);
        assert!(
            md.lines()
                .filter(|l| l.starts_with("| stage") && !l.starts_with("| stage |"))
                .all(|l| l.ends_with(" - |")),
            "{md}"
        );
    }

    #[test]
    fn each_kind_of_stage_is_started_with_its_own_flags() {
        let backends: Vec<SocketAddr> = (1..=3)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 8000 + i)))
            .collect();
        let args_of = |name: &str| -> Vec<String> {
            let contender = &contenders(&[name.to_string()], Path::new("bin"), None)[0];
            stage_command(contender, &backends, Path::new("out/proxy.toml"))
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let listen = ["--listen", "127.0.0.1:0"];
        let quiet = ["--listen", "127.0.0.1:0", "--log-level", "warn"];
        for (name, want) in [
            (
                "stage1",
                [&quiet[..], &["--backend", "127.0.0.1:8001"]].concat(),
            ),
            (
                "stage4",
                [&quiet[..], &["--backend", "127.0.0.1:8001"]].concat(),
            ),
            (
                "stage5",
                [
                    &quiet[..],
                    &["--backend", "127.0.0.1:8001", "--backend", "127.0.0.1:8002"],
                    &["--backend", "127.0.0.1:8003"],
                ]
                .concat(),
            ),
            (
                "stage6",
                [&listen[..], &["--config", "out/proxy.toml"]].concat(),
            ),
            (
                "stage9",
                [&listen[..], &["--config", "out/proxy.toml"]].concat(),
            ),
            (
                "myproxy",
                [
                    &listen[..],
                    &[
                        "--backend",
                        "127.0.0.1:8001",
                        "--backend",
                        "127.0.0.1:8002",
                        "--backend",
                        "127.0.0.1:8003",
                    ],
                ]
                .concat(),
            ),
        ] {
            assert_eq!(args_of(name), want, "{name}");
        }
    }

    #[test]
    fn config_file_names_the_backends_and_turns_nothing_on() {
        let backends = [
            SocketAddr::from(([127, 0, 0, 1], 8001)),
            SocketAddr::from(([127, 0, 0, 1], 8002)),
        ];
        let text = config_toml(18282, &backends);
        // That the proxy accepts it is checked where the proxy is: tests/compare_stages.rs.
        assert!(text.contains("listen = \"127.0.0.1:18282\""), "{text}");
        assert!(
            text.contains("servers = [\"127.0.0.1:8001\", \"127.0.0.1:8002\"]"),
            "{text}"
        );
        let sections: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
        assert_eq!(sections, ["[server]", "[upstreams.app]", "[log]"]);
    }

    #[test]
    fn http_errors_do_not_count_as_throughput() {
        use crate::error::ErrorKind;
        use crate::run::{RunConfig, RunOutcome};
        use crate::stats::Stats;

        let mut stats = Stats::new().expect("histogram");
        for _ in 0..6 {
            stats.record_response(Duration::from_millis(1), 200, 0, None);
        }
        for _ in 0..4 {
            stats.record_response(Duration::from_millis(1), 503, 0, None);
        }
        stats.record_error(ErrorKind::Timeout);
        let config = RunConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            request: Vec::new(),
            head_request: false,
            concurrency: 1,
            keepalive: true,
            requests: None,
            duration: None,
            rate: None,
            timeout: Duration::from_secs(1),
            threads: None,
            progress: false,
            tls: None,
        };
        let outcome = RunOutcome {
            stats,
            elapsed: Duration::from_secs(2),
            interrupted: false,
        };
        let report = Report::new("http://127.0.0.1:1/", "GET", &config, &outcome);
        let cell = from_report(Cell::new("stage4", true, 1, 0), &report);
        assert_eq!(cell.requests_per_sec, Some(3.0));
        assert_eq!(cell.responses, Some(10));
        assert_eq!(cell.errors, Some(5));
        assert_eq!(errors_label(&cell), "5 (http_503 4, timeout 1)");
    }

    #[test]
    fn json_report_has_cells() {
        let value: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&sample_report()).expect("serialize"))
                .expect("parse");
        let cell = &value["cells"][0];
        for key in [
            "stage",
            "keepalive",
            "concurrency",
            "slow_clients",
            "requests_per_sec",
            "p50_us",
            "p99_us",
            "responses",
            "errors",
            "errors_by_kind",
            "cpu_us_per_request",
            "context_switches_per_request",
            "failure",
        ] {
            assert!(cell.get(key).is_some(), "cells[].{key}");
        }
    }

    #[test]
    fn c_programs_follow_their_stages() {
        let stages: Vec<String> = ["stage1", "stage4", "stage5", "stage2", "stage3"]
            .map(String::from)
            .to_vec();
        let rows = |c_dir| -> Vec<String> {
            contenders(&stages, Path::new("rel"), c_dir)
                .into_iter()
                .map(|c| c.name)
                .collect()
        };
        assert_eq!(rows(None), stages);
        assert_eq!(
            rows(Some(Path::new("c"))),
            [
                "stage1",
                "c-reverse_proxy",
                "stage4",
                "stage5",
                "c-balancer",
                "stage2",
                "c-fork",
                "stage3",
                "c-threaded"
            ]
        );
        let all = contenders(&stages, Path::new("rel"), Some(Path::new("c")));
        assert_eq!(all[1].bin, Path::new("c/reverse_proxy"));
        assert_eq!(all[1].build, C_BUILD_COMMAND);
        assert_eq!(all[2].bin, Path::new("rel/stage4"));
        assert_eq!(all[2].build, BUILD_COMMAND);
    }

    #[test]
    fn c_rows_are_explained_above_the_table() {
        let mut report = sample_report();
        assert!(!markdown(&report).contains("Rows c-*"));
        report.cells.push(Cell::new("c-fork", true, 1, 0));
        assert!(markdown(&report).contains("Rows c-*"));
    }

    #[test]
    fn missing_binaries_name_the_build_command() {
        let dir = std::env::temp_dir().join(format!("loadtest-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let args = CompareArgs {
            stages: Vec::new(),
            concurrency: vec![1],
            duration: Duration::from_millis(100),
            backend_delay_ms: 0,
            backends: 1,
            backend_workers: None,
            slow_clients: 0,
            timeout: Duration::from_secs(1),
            out: dir.join("out"),
            bin_dir: Some(dir.clone()),
            quick: false,
            layers: false,
            keep_alive: crate::cli::KeepAliveCells::Both,
            with_c: false,
            c_bin_dir: dir.join("c"),
        };
        let err = run_command(&args, &AtomicBool::new(false)).expect_err("nothing to run");
        assert!(err.to_string().contains(BUILD_COMMAND), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
