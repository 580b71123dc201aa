//! Flags (clap derive). Usage errors exit with code 2, as clap does by default.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::request::Header;

/// `500ms`, `5s`, `2m`, `1h` (a bare number is seconds), more than 0 and at most a week.
/// The proxy's flags read durations the same way; this is a copy, not a dependency on the
/// proxy, because the tester shares no code with what it measures.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 500ms, 5s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' in '{text}' (use ms, s, m or h)"
            ))
        }
    };
    if !(seconds > 0.0 && seconds <= 7.0 * 24.0 * 3600.0) {
        return Err(format!("'{text}' must be more than 0 and at most a week"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

const RUN_EXAMPLES: &str = "\
Examples:
  loadtest -c 16 -z 10s http://127.0.0.1:8080/
  loadtest -n 10000 -c 64 --no-keepalive http://127.0.0.1:8080/
  loadtest --rate 2000 -z 30s -c 128 http://127.0.0.1:8080/   (open loop)
  loadtest -m POST -H 'Content-Type: application/json' -d '{\"a\":1}' http://localhost:8080/api
  loadtest -c 64 -z 10s --cacert ca.pem https://localhost:8443/      (keep-alive over TLS)
  loadtest -c 16 -z 10s -k --no-keepalive --no-resume https://127.0.0.1:8443/
                                                  (full TLS handshakes per second)
  loadtest compare                                           (all stages side by side)

Only loopback targets (127.0.0.0/8, ::1, localhost) are accepted without --allow-remote.
Exit codes: 0 the run happened (even if requests failed), 1 failure (e.g. target not
reachable), 2 usage error.";

const COMPARE_NOTES: &str = "\
Needs the release binaries next to this one; build them first with:
  cargo build --release --workspace
then run:
  target/release/loadtest compare            (about 2 minutes)
  target/release/loadtest compare --quick    (a first look, under 20 s)
  target/release/loadtest compare --with-c   (the C programs beside their stages,
                                             after: make -C chapters/c)
  target/release/loadtest compare --layers   (what each layer costs, stage4 to stage9:
                                             CPU per request at c=64, a 2 s cell each)

Stages 1 to 5 (and the C programs) get `--listen 127.0.0.1:0 --backend ADDR...` (stages 1
to 4 only the first backend); stages 6 to 9 get `--config OUT/proxy.toml --listen
127.0.0.1:0`, a file compare writes with the backends and nothing else turned on. Each must
print a line containing `listening on 127.0.0.1:PORT` (stdout or stderr) within 10 s.
CPU per request is the stage's CPU time during the cell (its process group, from /proc),
over the responses below 400. Every process started is stopped again, also on Ctrl-C.";

#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    version,
    about = "HTTP/1.1 load generator for the revproxy stages (closed or open loop)",
    after_help = RUN_EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the demo backends and each stage in turn, and measure them side by side.
    #[command(after_help = COMPARE_NOTES)]
    Compare(CompareArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Target, e.g. http://127.0.0.1:8080/path
    #[arg(required = true, value_name = "URL")]
    pub url: Option<String>,

    /// Connections (at most 4096). Closed loop over http: driven by --threads event loops;
    /// over https or with --rate: each by its own blocking thread
    #[arg(short = 'c', long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,

    /// Total requests [default: 200 when -z is not given]
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Run for this long, e.g. 10s, 500ms, 2m (with -n: whichever ends first)
    #[arg(short = 'z', long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Event-loop threads for closed-loop http runs [default: the number of CPUs, at most
    /// the concurrency]. Ignored over https and with --rate (a thread per connection)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,

    /// Open loop: send R requests/s on a fixed schedule, latency measured from each due time
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// A new connection per request (sends `Connection: close`)
    #[arg(long)]
    pub no_keepalive: bool,

    /// HTTP method
    #[arg(short = 'm', long, default_value = "GET", value_parser = parse_method)]
    pub method: String,

    /// Request header "Name: value" (repeatable)
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<Header>,

    /// Request body
    #[arg(
        short = 'd',
        long = "data",
        value_name = "BODY",
        conflicts_with = "body_file"
    )]
    pub data: Option<String>,

    /// Request body read from a file
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,

    /// Limit for connecting and for each whole request
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Print one JSON object instead of the text report
    #[arg(long)]
    pub json: bool,

    /// Allow targets that are not on this machine (only hosts you own)
    #[arg(long)]
    pub allow_remote: bool,

    #[command(flatten)]
    pub tls: TlsArgs,
}

/// For `https://` targets.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// https: trust the CA in this PEM file (e.g. the one `stage9 --demo` writes)
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// https: accept any server certificate (loopback benchmarks only)
    #[arg(long, short = 'k')]
    pub insecure: bool,

    /// https: a full handshake on every new connection instead of resuming a session; with
    /// --no-keepalive, this measures handshakes per second
    #[arg(long)]
    pub no_resume: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Stage binaries to measure [default: every stage1..stage4 found; --layers: every
    /// stage4..stage9 found]
    #[arg(long, value_delimiter = ',', value_parser = parse_stage_name)]
    pub stages: Vec<String>,

    /// A first look in under 20 s: concurrency 1,32, 0.5 s per cell, timeout 1 s, 16 slow
    /// clients. A flag given beside it still wins
    #[arg(long)]
    pub quick: bool,

    /// What each layer adds, with its features off: stage4 to stage9, keep-alive only,
    /// concurrency 64, backend delay 0 ms, 3 backends, no slow clients, 2 s per cell (as
    /// without it). The table gets a
    /// paragraph on the CPU column and "vs stage4", each row's CPU per request against the
    /// first row's. A flag given beside it still wins
    #[arg(long, conflicts_with = "quick")]
    pub layers: bool,

    /// Put each stage's C counterpart (chapters/c) in a row beside it: c-reverse_proxy beside
    /// stage1, c-fork beside stage2, c-threaded beside stage3, c-balancer beside stage5.
    /// Build them first with: make -C chapters/c
    #[arg(long)]
    pub with_c: bool,

    /// Where the C programs are, for --with-c
    #[arg(long, value_name = "DIR", default_value = "chapters/c/bin")]
    pub c_bin_dir: PathBuf,

    /// Concurrency levels to measure [--quick: 1,32; --layers: 64]
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256", default_value_ifs([("quick", "true", Some("1,32")), ("layers", "true", Some("64"))]), value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: Vec<u32>,

    /// Which connection modes to measure: keep-alive on, off, or both [--layers: on]
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        default_value = "both",
        default_value_if("layers", "true", Some("on"))
    )]
    pub keep_alive: KeepAliveCells,

    /// Length of each measurement [--quick: 500ms]
    #[arg(short = 'z', long, value_name = "DURATION", default_value = "2s", default_value_if("quick", "true", Some("500ms")), value_parser = parse_duration)]
    pub duration: Duration,

    /// Delay of every backend response, so the work is I/O-bound like a real service
    /// [--layers: 0]
    #[arg(
        long,
        default_value = "20",
        default_value_if("layers", "true", Some("0")),
        value_name = "MS"
    )]
    pub backend_delay_ms: u64,

    /// Demo backends to start (b1, b2, ...); stage5 and later get all of them, stages 1 to 4
    /// forward to the first only, so 1 is the default [--layers: 3]
    #[arg(long, default_value = "1", default_value_if("layers", "true", Some("3")), value_parser = clap::value_parser!(u32).range(1..=16))]
    pub backends: u32,

    /// Worker threads per backend (its --workers) [default: the backend's own, a few event-loop
    /// threads that serve any number of connections]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub backend_workers: Option<u32>,

    /// Idle connections held open during the slow-client scenario (0 skips it) [--quick: 16;
    /// --layers: 0]
    #[arg(long, default_value = "32", default_value_ifs([("quick", "true", Some("16")), ("layers", "true", Some("0"))]), value_name = "K", value_parser = clap::value_parser!(u32).range(0..=1_000))]
    pub slow_clients: u32,

    /// Limit for connecting and for each whole request [--quick: 1s]
    #[arg(long, value_name = "DURATION", default_value = "2s", default_value_if("quick", "true", Some("1s")), value_parser = parse_duration)]
    pub timeout: Duration,

    /// Where compare.md, compare.json and chart.svg go
    #[arg(long, value_name = "DIR", default_value = "target/loadtest-compare")]
    pub out: PathBuf,

    /// Where the stage and backend binaries are [default: next to this executable]
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
}

/// The connection modes of `compare`'s grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeepAliveCells {
    /// Keep-alive cells, then a new connection per request
    Both,
    /// Keep-alive cells only
    On,
    /// A new connection per request only
    Off,
}

impl KeepAliveCells {
    /// The `keepalive` values of the cells, in the order they are measured.
    pub fn modes(self) -> &'static [bool] {
        match self {
            KeepAliveCells::Both => &[true, false],
            KeepAliveCells::On => &[true],
            KeepAliveCells::Off => &[false],
        }
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 10_000_000.0 => Ok(r),
        _ => Err(format!("{s:?} is not a rate in requests/s (more than 0)")),
    }
}

fn parse_method(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(s.to_ascii_uppercase())
    } else {
        Err(format!("{s:?} is not an HTTP method"))
    }
}

/// Stage names become file names in the binary directory, so no paths.
fn parse_stage_name(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a binary name like stage3"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_flags() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "-c",
            "8",
            "-z",
            "3s",
            "--no-keepalive",
            "-m",
            "post",
            "-H",
            "A: 1",
            "-H",
            "B: 2",
            "-d",
            "x",
            "http://127.0.0.1:1/",
        ])
        .expect("valid flags");
        assert!(cli.command.is_none());
        let run = cli.run;
        assert_eq!(run.concurrency, 8);
        assert_eq!(run.duration, Some(Duration::from_secs(3)));
        assert!(run.no_keepalive);
        assert_eq!(run.method, "POST");
        assert_eq!(run.headers.len(), 2);
        assert_eq!(run.url.as_deref(), Some("http://127.0.0.1:1/"));
    }

    #[test]
    fn compare_subcommand() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "compare",
            "--stages",
            "stage1,stage3",
            "--concurrency",
            "1,8",
        ])
        .expect("valid flags");
        let Some(Command::Compare(args)) = cli.command else {
            panic!("compare not parsed");
        };
        assert_eq!(args.stages, ["stage1", "stage3"]);
        assert_eq!(args.concurrency, [1, 8]);
        assert_eq!(args.duration, Duration::from_secs(2));
        assert!(Cli::try_parse_from(["loadtest", "compare", "--stages", "../x"]).is_err());
        assert!(!args.quick && !args.with_c);
    }

    #[test]
    fn compare_quick_shrinks_the_grid_and_explicit_flags_win() {
        let parse = |extra: &[&str]| {
            let cli = Cli::try_parse_from(["loadtest", "compare"].iter().chain(extra))
                .expect("valid flags");
            let Some(Command::Compare(args)) = cli.command else {
                panic!("compare not parsed");
            };
            args
        };
        let quick = parse(&["--quick"]);
        assert_eq!(quick.concurrency, [1, 32]);
        assert_eq!(quick.duration, Duration::from_millis(500));
        assert_eq!(quick.timeout, Duration::from_secs(1));
        assert_eq!(quick.slow_clients, 16);
        let mixed = parse(&["--quick", "-z", "1s", "--concurrency", "4"]);
        assert_eq!(mixed.duration, Duration::from_secs(1));
        assert_eq!(mixed.concurrency, [4]);
        assert_eq!(mixed.slow_clients, 16);
        let full = parse(&["--with-c"]);
        assert_eq!(full.concurrency, [1, 16, 64, 256]);
        assert_eq!(full.keep_alive, KeepAliveCells::Both);
        assert_eq!((full.backends, full.backend_delay_ms), (1, 20));
        assert!(!full.layers);
        assert!(full.with_c);
        assert_eq!(full.c_bin_dir, PathBuf::from("chapters/c/bin"));
    }

    #[test]
    fn compare_layers_presets_the_cost_table_and_explicit_flags_win() {
        let parse = |extra: &[&str]| {
            let cli = Cli::try_parse_from(["loadtest", "compare", "--layers"].iter().chain(extra))
                .expect("valid flags");
            let Some(Command::Compare(args)) = cli.command else {
                panic!("compare not parsed");
            };
            args
        };
        let layers = parse(&[]);
        assert!(layers.layers);
        assert_eq!(layers.concurrency, [64]);
        assert_eq!(layers.keep_alive, KeepAliveCells::On);
        assert_eq!(layers.keep_alive.modes(), [true]);
        assert_eq!(layers.backend_delay_ms, 0);
        assert_eq!(layers.backends, 3);
        assert_eq!(layers.slow_clients, 0);
        assert_eq!(layers.duration, Duration::from_secs(2));
        assert!(layers.stages.is_empty());
        let mixed = parse(&[
            "-z",
            "300ms",
            "--backends",
            "2",
            "--keep-alive",
            "both",
            "--stages",
            "stage4,stage9",
        ]);
        assert_eq!(mixed.duration, Duration::from_millis(300));
        assert_eq!(mixed.backends, 2);
        assert_eq!(mixed.keep_alive.modes(), [true, false]);
        assert_eq!(mixed.stages, ["stage4", "stage9"]);
        assert_eq!(mixed.concurrency, [64]);
        assert!(Cli::try_parse_from(["loadtest", "compare", "--layers", "--quick"]).is_err());
    }

    #[test]
    fn usage_errors() {
        for args in [
            vec!["loadtest"],
            vec!["loadtest", "-c", "0", "http://127.0.0.1/"],
            vec!["loadtest", "--rate", "0", "http://127.0.0.1/"],
            vec![
                "loadtest",
                "-d",
                "x",
                "--body-file",
                "f",
                "http://127.0.0.1/",
            ],
            vec!["loadtest", "-H", "nocolon", "http://127.0.0.1/"],
        ] {
            let err = Cli::try_parse_from(&args).expect_err("must be refused");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn durations_read_like_the_proxy_flags() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        for bad in ["", "0s", "5x", "8d", "-1s", "9000h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
