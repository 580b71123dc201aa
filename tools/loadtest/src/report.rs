//! The report of one run: text for people (like hey and oha), or one JSON object.
//!
//! JSON shape (`--json`), every key always present:
//!
//! ```text
//! {
//!   "target": "http://127.0.0.1:8080/",   "method": "GET",
//!   "mode": "closed" | "open",            "rate": null | <requests/s asked for>,
//!   "concurrency": 16,                    "keepalive": true,
//!   "interrupted": false,                 // Ctrl-C ended the run early
//!   "total_secs": 3.001,                  // first request to last response
//!   "requests": 48213,                    // responses + errors
//!   "responses": 48210,                   // any status, 5xx included
//!   "errors_total": 3,
//!   "requests_per_sec": 16065.2,          // responses / total_secs
//!   "body_bytes": 1446300,                "body_bytes_per_sec": 481938.0,
//!   "connections": 16,                    // TCP connections opened
//!   "late_starts": 0,                     // open loop: requests started >1 ms after due
//!   "latency_us": null | {                // null when there was no response
//!     "min": 41, "mean": 990.4, "p50": 951, "p90": 1320, "p99": 2890, "p99_9": 5120,
//!     "max": 10230
//!   },
//!   "histogram": [ { "le_us": 120, "count": 321 }, ... ],   // about 10 buckets
//!   "status_codes": { "200": 48200, "503": 10 },
//!   "errors": { "connect_refused": 0, "reset": 3, "timeout": 0, "bad_response": 0, "other": 0 },
//!   "backends": { "b1": 16070, "b2": 16070, "b3": 16070 }    // by X-Backend-Server
//! }
//! ```
//!
//! Latencies are in microseconds. In open loop they are measured from each request's due
//! time, so they include any wait for a free worker.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::error::ErrorKind;
use super::run::{RunConfig, RunOutcome};

const HISTOGRAM_BUCKETS: usize = 10;
const BAR_WIDTH: u64 = 40;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub method: String,
    pub mode: &'static str,
    pub rate: Option<f64>,
    pub concurrency: usize,
    pub keepalive: bool,
    pub interrupted: bool,
    pub total_secs: f64,
    pub requests: u64,
    pub responses: u64,
    pub errors_total: u64,
    pub requests_per_sec: f64,
    pub body_bytes: u64,
    pub body_bytes_per_sec: f64,
    pub connections: u64,
    pub late_starts: u64,
    pub latency_us: Option<Latency>,
    pub histogram: Vec<Bucket>,
    pub status_codes: BTreeMap<String, u64>,
    pub errors: BTreeMap<&'static str, u64>,
    pub backends: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bucket {
    pub le_us: u64,
    pub count: u64,
}

impl Report {
    pub fn new(target: &str, method: &str, config: &RunConfig, outcome: &RunOutcome) -> Self {
        let s = &outcome.stats;
        let secs = outcome.elapsed.as_secs_f64();
        let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let responses = s.responses();
        let latency_us = (responses > 0).then(|| Latency {
            min: s.latency.min(),
            mean: s.latency.mean(),
            p50: s.percentile_us(50.0),
            p90: s.percentile_us(90.0),
            p99: s.percentile_us(99.0),
            p99_9: s.percentile_us(99.9),
            max: s.latency.max(),
        });
        Report {
            target: target.to_string(),
            method: method.to_string(),
            mode: if config.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            rate: config.rate,
            concurrency: config.concurrency,
            keepalive: config.keepalive,
            interrupted: outcome.interrupted,
            total_secs: secs,
            requests: responses + s.error_count(),
            responses,
            errors_total: s.error_count(),
            requests_per_sec: per_sec(responses),
            body_bytes: s.body_bytes,
            body_bytes_per_sec: per_sec(s.body_bytes),
            connections: s.connections,
            late_starts: s.late_starts,
            latency_us,
            histogram: s
                .buckets(HISTOGRAM_BUCKETS)
                .into_iter()
                .map(|(le_us, count)| Bucket { le_us, count })
                .collect(),
            status_codes: s
                .statuses
                .iter()
                .map(|(code, &n)| (code.to_string(), n))
                .collect(),
            errors: ErrorKind::ALL
                .iter()
                .map(|&kind| (kind.name(), s.errors[kind.index()]))
                .collect(),
            backends: s.backends.clone(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; the results are ignored for that reason.
        let _ = self.write_text(&mut out);
        out
    }

    fn write_text(&self, out: &mut String) -> std::fmt::Result {
        let mode = match self.rate {
            Some(rate) => format!(
                "open loop at {rate} req/s, up to {} connections",
                self.concurrency
            ),
            None => format!("closed loop, {} connections", self.concurrency),
        };
        let keepalive = if self.keepalive {
            "keep-alive"
        } else {
            "no keep-alive"
        };
        writeln!(out, "Summary:")?;
        writeln!(out, "  Target:         {} {}", self.method, self.target)?;
        writeln!(out, "  Mode:           {mode}, {keepalive}")?;
        if self.interrupted {
            writeln!(out, "  Interrupted:    yes (partial results)")?;
        }
        writeln!(out, "  Total:          {:.4} s", self.total_secs)?;
        writeln!(
            out,
            "  Requests:       {} ({} responses, {} errors)",
            self.requests, self.responses, self.errors_total
        )?;
        writeln!(out, "  Requests/sec:   {:.1}", self.requests_per_sec)?;
        writeln!(
            out,
            "  Body:           {} total, {}/s",
            human_bytes(self.body_bytes as f64),
            human_bytes(self.body_bytes_per_sec)
        )?;
        writeln!(out, "  Connections:    {} opened", self.connections)?;
        if self.rate.is_some() {
            writeln!(
                out,
                "  Late starts:    {} (started >1 ms after their due time)",
                self.late_starts
            )?;
        }

        writeln!(out, "\nLatency:")?;
        match &self.latency_us {
            None => writeln!(out, "  (no responses)")?,
            Some(l) => {
                for (name, us) in [
                    ("min", l.min),
                    ("p50", l.p50),
                    ("p90", l.p90),
                    ("p99", l.p99),
                    ("p99.9", l.p99_9),
                    ("max", l.max),
                ] {
                    writeln!(out, "  {name:<7}{:>12}", human_us(us))?;
                }
                writeln!(
                    out,
                    "  {:<7}{:>12}",
                    "mean",
                    human_us(l.mean.round() as u64)
                )?;
            }
        }

        if !self.histogram.is_empty() {
            writeln!(out, "\nLatency histogram:")?;
            let most = self
                .histogram
                .iter()
                .map(|b| b.count)
                .max()
                .unwrap_or(1)
                .max(1);
            for b in &self.histogram {
                let bar = "#".repeat((b.count * BAR_WIDTH).div_ceil(most) as usize);
                writeln!(
                    out,
                    "  <= {:>10} [{:>8}] |{bar}",
                    human_us(b.le_us),
                    b.count
                )?;
            }
        }

        writeln!(out, "\nStatus codes:")?;
        if self.status_codes.is_empty() {
            writeln!(out, "  (none)")?;
        }
        for (code, n) in &self.status_codes {
            writeln!(out, "  [{code}] {n} responses")?;
        }

        writeln!(out, "\nErrors:")?;
        if self.errors_total == 0 {
            writeln!(out, "  (none)")?;
        }
        for (kind, n) in self.errors.iter().filter(|(_, &n)| n > 0) {
            writeln!(out, "  {kind:<16}{n}")?;
        }

        writeln!(out, "\nBackends (X-Backend-Server):")?;
        if self.backends.is_empty() {
            writeln!(out, "  (no responses carried the header)")?;
        }
        let with_header: u64 = self.backends.values().sum();
        for (name, n) in &self.backends {
            let share = 100.0 * *n as f64 / with_header.max(1) as f64;
            writeln!(out, "  {name:<16}{n:>10}  {share:5.1}%")?;
        }
        Ok(())
    }
}

/// `850 µs`, `12.35 ms`, `3.100 s`.
pub fn human_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.3} s", us as f64 / 1e6)
    }
}

pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;
    use std::net::SocketAddr;
    use std::time::Duration;

    fn sample(responses: bool) -> Report {
        let config = RunConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request: Vec::new(),
            head_request: false,
            concurrency: 4,
            keepalive: true,
            requests: Some(10),
            duration: None,
            rate: Some(100.0),
            timeout: Duration::from_secs(1),
            threads: None,
            progress: false,
            tls: None,
        };
        let mut stats = Stats::new().expect("histogram");
        if responses {
            for ms in 1..=9 {
                stats.record_response(Duration::from_millis(ms), 200, 100, Some(b"b1"));
            }
            stats.record_response(Duration::from_millis(50), 503, 0, None);
        }
        stats.record_error(ErrorKind::Reset);
        let outcome = RunOutcome {
            stats,
            elapsed: Duration::from_secs(1),
            interrupted: false,
        };
        Report::new("http://127.0.0.1:8080/", "GET", &config, &outcome)
    }

    #[test]
    fn json_shape_is_pinned() {
        let value: serde_json::Value =
            serde_json::from_str(&sample(true).to_json()).expect("valid JSON");
        let object = value.as_object().expect("one object");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "backends",
                "body_bytes",
                "body_bytes_per_sec",
                "concurrency",
                "connections",
                "errors",
                "errors_total",
                "histogram",
                "interrupted",
                "keepalive",
                "late_starts",
                "latency_us",
                "method",
                "mode",
                "rate",
                "requests",
                "requests_per_sec",
                "responses",
                "status_codes",
                "target",
                "total_secs",
            ]
        );
        let latency = value["latency_us"].as_object().expect("latency object");
        for key in ["min", "mean", "p50", "p90", "p99", "p99_9", "max"] {
            assert!(latency[key].is_number(), "latency_us.{key}");
        }
        for kind in ErrorKind::ALL {
            assert!(
                value["errors"][kind.name()].is_u64(),
                "errors.{}",
                kind.name()
            );
        }
        assert_eq!(value["errors"]["reset"], 1);
        assert_eq!(value["status_codes"]["200"], 9);
        assert_eq!(value["backends"]["b1"], 9);
        assert_eq!(value["mode"], "open");
        assert_eq!(value["requests"], 11);
        assert_eq!(value["responses"], 10);
        let buckets = value["histogram"].as_array().expect("histogram array");
        assert!(buckets
            .iter()
            .all(|b| b["le_us"].is_u64() && b["count"].is_u64()));
    }

    #[test]
    fn no_responses_gives_null_latency() {
        let report = sample(false);
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).expect("valid JSON");
        assert!(value["latency_us"].is_null());
        assert_eq!(value["histogram"], serde_json::json!([]));
        assert!(report.to_text().contains("(no responses)"));
    }

    #[test]
    fn text_has_every_section() {
        let text = sample(true).to_text();
        for section in [
            "Summary:",
            "Latency:",
            "p99.9",
            "Latency histogram:",
            "Status codes:",
            "[503] 1",
            "Errors:",
            "reset",
            "Backends",
            "b1",
        ] {
            assert!(text.contains(section), "missing {section:?} in\n{text}");
        }
    }

    #[test]
    fn human_units() {
        assert_eq!(human_us(850), "850 µs");
        assert_eq!(human_us(12_346), "12.35 ms");
        assert_eq!(human_us(3_100_000), "3.100 s");
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(1536.0), "1.50 KiB");
    }
}
