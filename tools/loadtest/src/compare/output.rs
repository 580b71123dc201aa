//! What `compare` writes: the live summary line of each cell, and `compare.md`, `compare.json`
//! and `chart.svg` under `--out`.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use super::{CompareError, CompareReport};
use crate::cell::Cell;
use crate::report::human_us;
use crate::svg;

pub(super) fn concurrency_label(cell: &Cell) -> String {
    if cell.slow_clients > 0 {
        format!("{} + {} slow", cell.concurrency, cell.slow_clients)
    } else {
        cell.concurrency.to_string()
    }
}

pub(super) fn errors_label(cell: &Cell) -> String {
    match cell.errors {
        None => "-".into(),
        Some(0) => "0".into(),
        Some(n) => {
            let kinds: Vec<String> = cell
                .errors_by_kind
                .iter()
                .map(|(kind, n)| format!("{kind} {n}"))
                .collect();
            format!("{n} ({})", kinds.join(", "))
        }
    }
}

pub(super) fn summary_line(cell: &Cell) -> String {
    let ka = if cell.keepalive {
        "keep-alive"
    } else {
        "no keep-alive"
    };
    let head = format!("{} {ka} c={}", cell.stage, concurrency_label(cell));
    match (&cell.failure, cell.requests_per_sec) {
        (Some(why), _) => format!("{head}: FAILED: {why}"),
        (None, Some(rps)) => format!(
            "{head}: {rps:.1} req/s, p99 {}, errors {}, CPU {} µs/request",
            cell.p99_us.map_or("-".into(), human_us),
            errors_label(cell),
            number_or_dash(cell.cpu_us_per_request, 1)
        ),
        (None, None) => format!("{head}: no result"),
    }
}

/// Text safe inside one Markdown table cell.
pub(super) fn table_text(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let short: String = flat.chars().take(120).collect();
    short.replace('|', "\\|")
}

pub fn markdown(report: &CompareReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Each cell: {:.1} s of closed-loop GET / against a freshly started stage; {} demo backend(s) \
         with {} ms delay; timeout {:.1} s; {} CPU(s). req/s counts responses below 400; errors are \
         failed requests plus 4xx/5xx responses; p50/p99 cover responses only. CPU and context \
         switches: the stage's, during the cell (its process group, from /proc), over the \
         responses below 400; \"-\" where they cannot be known (context switches of child \
         processes, or of threads that ended during the cell, as stage 3's thread per connection \
         does, are kept nowhere), or where the cell took fewer than 10 clock ticks of CPU (a \
         figure within 10% needs at least 10).{}\n",
        report.duration_secs,
        report.backends,
        report.backend_delay_ms,
        report.timeout_secs,
        report.cpus,
        if report.interrupted { " INTERRUPTED: partial results." } else { "" }
    );
    if report.cells.iter().any(|c| c.stage.starts_with("c-")) {
        let _ = writeln!(
            out,
            "Rows c-*: the C programs of chapters/c beside the stage that fixes them. They read a \
             response until the backend closes, so with keep-alive every request waits for the \
             timeout (chapter 01).\n"
        );
    }
    // `--layers`: each row's CPU per request against the first row's.
    let baseline = report.cells.first().filter(|_| report.layers);
    if let Some(first) = baseline {
        let _ = writeln!(
            out,
            "What each layer adds with its features off: every stage behind the same backends \
             (stage4 and earlier: the first only), the config stages with a file that turns \
             nothing on (no cache, no access rules, one upstream), all with the access log off \
             (`--log-level warn`, as the file says). CPU µs/request is what the stage spent per good response; it holds \
             much better from run to run than req/s, which on a shared machine says mostly how \
             much CPU the stage was given. \"vs {0}\" is each row's CPU per request divided by \
             that of {0}, the first row.\n",
            table_text(&first.stage)
        );
    }
    let mut header = String::from(
        "| stage | keep-alive | concurrency | req/s | p50 | p99 | errors | CPU µs/request \
         | context switches/request |",
    );
    let mut rule = String::from("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    if let Some(first) = baseline {
        let _ = write!(header, " vs {} |", table_text(&first.stage));
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for cell in &report.cells {
        let ka = if cell.keepalive { "on" } else { "off" };
        let latency = |v: Option<u64>| v.map_or("-".into(), human_us);
        let rps = match (&cell.failure, cell.requests_per_sec) {
            (Some(why), Some(rps)) => format!("{rps:.1} (failed: {})", table_text(why)),
            (Some(why), None) => format!("failed: {}", table_text(why)),
            (None, Some(rps)) => format!("{rps:.1}"),
            (None, None) => "-".into(),
        };
        let _ = write!(
            out,
            "| {} | {ka} | {} | {rps} | {} | {} | {} | {} | {} |",
            table_text(&cell.stage),
            concurrency_label(cell),
            latency(cell.p50_us),
            latency(cell.p99_us),
            errors_label(cell),
            number_or_dash(cell.cpu_us_per_request, 1),
            number_or_dash(cell.context_switches_per_request, 2),
        );
        if let Some(first) = baseline {
            let _ = write!(out, " {} |", relative_cpu(cell, first));
        }
        out.push('\n');
    }
    out
}

pub(super) fn number_or_dash(value: Option<f64>, decimals: usize) -> String {
    value.map_or("-".into(), |v| format!("{v:.decimals$}"))
}

/// `cell`'s CPU per request as a multiple of `first`'s ("1.06×"), "-" when either is unknown.
pub(super) fn relative_cpu(cell: &Cell, first: &Cell) -> String {
    match (cell.cpu_us_per_request, first.cpu_us_per_request) {
        (Some(cpu), Some(base)) if base > 0.0 => format!("{:.2}×", cpu / base),
        _ => "-".into(),
    }
}

pub(super) fn write_outputs(
    dir: &Path,
    report: &CompareReport,
    markdown: &str,
) -> Result<(), CompareError> {
    let write = |name: &str, contents: &str| {
        let path = dir.join(name);
        std::fs::write(&path, contents).map_err(|source| CompareError::Output { path, source })
    };
    write("compare.md", markdown)?;
    let json = serde_json::to_string_pretty(report).map_err(|e| CompareError::Output {
        path: dir.join("compare.json"),
        source: io::Error::other(e),
    })?;
    write("compare.json", &json)?;
    let title = format!(
        "revproxy stages: {} demo backend(s), {} ms delay, {} s per point",
        report.backends,
        report.backend_delay_ms,
        seconds_label(report.duration_secs)
    );
    write("chart.svg", &svg::chart(&report.cells, &title))
}

/// `2` for 2 s, `0.5` for half a second: whole seconds without a fraction, the rest with one
/// digit (the chart's title once said "0 s per point" for `--quick`'s 0.5 s).
pub(super) fn seconds_label(secs: f64) -> String {
    if (secs - secs.round()).abs() < 1e-9 {
        format!("{secs:.0}")
    } else {
        format!("{secs:.1}")
    }
}
