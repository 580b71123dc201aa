//! One line per request in the Combined Log Format that nginx and Apache write, so existing
//! log tools read it, or as a JSON object per line (`[log] format = "json"`) for log
//! shippers. Lines go to the `access` log target (stderr, beside the diagnostics), or, with
//! `[log] access_log = "FILE"`, to that file through a writer thread (`writer.rs`) that never
//! makes a request wait on the disk, reopened on `SIGUSR1`.

mod writer;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

pub use writer::FileLog;

/// How each line is written (`[log] format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// nginx's and Apache's `combined`, plus the duration in seconds.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// The file lines go to, once [`log_to_file`] has run; stderr (the `access` target) until then.
static FILE: OnceLock<FileLog> = OnceLock::new();
/// The current [`Format`], as its index: a reload may change it.
static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Chooses the format of the lines from now on.
pub fn set_format(format: Format) {
    FORMAT.store(format as u8, Ordering::Relaxed);
}

fn format() -> Format {
    match FORMAT.load(Ordering::Relaxed) {
        1 => Format::Json,
        _ => Format::Combined,
    }
}

/// Sends every access line from now on to `path`, through a writer thread. Once per process;
/// a later call (a reload naming another file) reopens the writer at the new path.
pub fn log_to_file(path: &Path) -> std::io::Result<()> {
    if let Some(file) = FILE.get() {
        file.reopen(Some(path.to_owned()));
        return Ok(());
    }
    let file = FileLog::open(path, writer::DEFAULT_CAPACITY)?;
    if let Err(file) = FILE.set(file) {
        file.finish(); // another thread won the race; its writer is the one
    }
    Ok(())
}

/// Whether lines go to a file.
pub fn to_file() -> bool {
    FILE.get().is_some()
}

/// Reopens the access log file at its path (`SIGUSR1`, after logrotate renamed it).
pub fn reopen() {
    match FILE.get() {
        Some(file) => file.reopen(None),
        None => log::info!("SIGUSR1: the access log goes to stderr, nothing to reopen"),
    }
}

/// Writes the lines still queued and stops the writer (at exit).
pub fn finish() {
    if let Some(file) = FILE.get() {
        file.finish();
    }
}

/// What an access log line records about one exchange.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub client: IpAddr,
    /// The authenticated user (CLF's `%u`): an API key's name or a JWT subject, never a
    /// secret; `-` when there is none.
    pub user: Option<&'a str>,
    /// `GET /path HTTP/1.1`, or `-` when the request line could not be read.
    pub request_line: &'a str,
    pub status: u16,
    /// Body bytes sent to the client.
    pub bytes: u64,
    /// Request body bytes read from the client (JSON only: the combined format has no field
    /// for them, and log tools expect its fields where they are).
    pub request_bytes: u64,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub duration: Duration,
    /// The request's method and target apart (JSON has a field for each); `None` with no
    /// request.
    pub method: Option<&'a str>,
    pub target: Option<&'a str>,
    /// The route that took the request (stage 9).
    pub route: Option<&'a str>,
    /// The backend that answered, or was last tried.
    pub upstream: Option<SocketAddr>,
    /// Whether the cache answered (`HIT`, `MISS`...), when known.
    pub cache: Option<&'a str>,
    /// The client's TLS version, on a TLS listener.
    pub tls: Option<&'a str>,
    /// From the request sent upstream to the response head back (nginx's
    /// `$upstream_header_time`); `None` when no backend answered.
    pub upstream_time: Option<Duration>,
}

/// Whether access log lines are wanted: a file is configured, or stderr's log level is
/// `info` or more.
pub fn enabled() -> bool {
    to_file() || log::log_enabled!(target: "access", log::Level::Info)
}

/// Writes the entry in the configured format: to the file's writer without waiting, or at
/// `info` level on target `access`.
pub fn write(entry: &Entry<'_>) {
    if !enabled() {
        return;
    }
    let now = SystemTime::now();
    let line = match format() {
        Format::Combined => format_line(entry, now),
        Format::Json => json_line(entry, now),
    };
    match FILE.get() {
        Some(file) => file.send(line),
        None => log::info!(target: "access", "{line}"),
    }
}

/// The entry as one JSON object, fields named as log shippers expect them; absent values
/// are `null`, so every line has the same keys.
pub fn json_line(entry: &Entry<'_>, now: SystemTime) -> String {
    let text = |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8_lossy(b).into_owned());
    let millis = entry.duration.as_secs_f64() * 1000.0;
    serde_json::json!({
        "time": rfc3339(now),
        "client": entry.client.to_string(),
        "user": entry.user,
        "method": entry.method,
        "target": entry.target,
        "request": entry.request_line,
        "status": entry.status,
        "bytes": entry.bytes,
        "request_bytes": entry.request_bytes,
        "duration_ms": (millis * 1000.0).round() / 1000.0,
        "route": entry.route,
        "upstream": entry.upstream.map(|a| a.to_string()),
        "upstream_ms": entry.upstream_time.map(|t| (t.as_secs_f64() * 1_000_000.0).round() / 1000.0),
        "cache": entry.cache,
        "tls": entry.tls,
        "referer": text(entry.referer),
        "user_agent": text(entry.user_agent),
    })
    .to_string()
}

/// `2026-11-22T10:00:00.123Z`.
fn rfc3339(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = crate::http::date::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// `127.0.0.1 - - [22/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 13 "-" "curl/8" 0.001`
pub fn format_line(entry: &Entry<'_>, now: SystemTime) -> String {
    let bytes = if entry.bytes == 0 {
        "-".to_owned()
    } else {
        entry.bytes.to_string()
    };
    format!(
        "{} - {} [{}] \"{}\" {} {} \"{}\" \"{}\" {:.3}",
        entry.client,
        // A space would shift every later field for a log parser.
        entry.user.map_or_else(
            || "-".to_owned(),
            |u| escape(u.as_bytes()).replace(' ', "\\x20")
        ),
        clf_time(now),
        escape(entry.request_line.as_bytes()),
        entry.status,
        bytes,
        entry.referer.map_or_else(|| "-".to_owned(), escape),
        entry.user_agent.map_or_else(|| "-".to_owned(), escape),
        entry.duration.as_secs_f64(),
    )
}

/// Quotes and control bytes escaped, so a hostile header cannot forge a log line.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02X}")),
        }
    }
    out
}

/// `22/Nov/2026:10:00:00 +0000`, always UTC.
fn clf_time(now: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = crate::http::date::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert() {
        use crate::http::date::civil_from_days;
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
    }

    #[test]
    fn a_line_in_combined_log_format() {
        let entry = Entry {
            client: "10.0.0.1".parse().unwrap(),
            user: None,
            request_line: "GET /a?b=\"c\" HTTP/1.1",
            status: 200,
            bytes: 13,
            request_bytes: 5,
            referer: None,
            user_agent: Some(b"curl/8\n"),
            duration: Duration::from_millis(12),
            method: Some("GET"),
            target: Some("/a?b=\"c\""),
            route: None,
            upstream: None,
            cache: None,
            tls: None,
            upstream_time: None,
        };
        let now = UNIX_EPOCH + Duration::from_secs(20_414 * 86_400 + 3_723);
        assert_eq!(
            format_line(&entry, now),
            "10.0.0.1 - - [22/Nov/2025:01:02:03 +0000] \"GET /a?b=\\\"c\\\" HTTP/1.1\" 200 13 \"-\" \"curl/8\\x0A\" 0.012"
        );
        let named = Entry {
            user: Some("ops team"),
            ..entry
        };
        assert!(format_line(&named, now).starts_with("10.0.0.1 - ops\\x20team [22/Nov/2025"));
    }

    #[test]
    fn json_counts_request_bytes_even_when_none_came() {
        let entry = Entry {
            client: "10.0.0.1".parse().unwrap(),
            user: None,
            request_line: "-",
            status: 400,
            bytes: 0,
            request_bytes: 0,
            referer: None,
            user_agent: None,
            duration: Duration::ZERO,
            method: None,
            target: None,
            route: None,
            upstream: None,
            cache: None,
            tls: None,
            upstream_time: None,
        };
        let line = json_line(&entry, UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        // A number, never null: every line has the same keys, and sums need no special case.
        assert_eq!(v["request_bytes"], 0);
        let uploaded = Entry {
            request_bytes: 7,
            status: 201,
            ..entry
        };
        let v: serde_json::Value = serde_json::from_str(&json_line(&uploaded, UNIX_EPOCH)).unwrap();
        assert_eq!(v["request_bytes"], 7);
        assert_eq!(v["bytes"], 0);
        // The combined line does not change: its fields stay where log tools expect them.
        assert!(!format_line(&uploaded, UNIX_EPOCH).contains(" 7 "));
    }

    #[test]
    fn a_line_in_json() {
        let entry = Entry {
            client: "10.0.0.1".parse().unwrap(),
            user: Some("ops"),
            request_line: "GET /a\"b HTTP/1.1",
            status: 502,
            bytes: 0,
            request_bytes: 1_048_576,
            referer: None,
            user_agent: Some(b"curl/8\n"),
            duration: Duration::from_micros(12_345),
            method: Some("GET"),
            target: Some("/a\"b"),
            route: Some("api"),
            upstream: Some("127.0.0.1:8000".parse().unwrap()),
            cache: None,
            tls: None,
            upstream_time: None,
        };
        let now = UNIX_EPOCH + Duration::from_millis((20_414 * 86_400 + 3_723) * 1000 + 45);
        let line = json_line(&entry, now);
        assert!(!line.contains('\n'), "one line: {line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2025-11-22T01:02:03.045Z");
        assert_eq!(v["client"], "10.0.0.1");
        assert_eq!(v["user"], "ops");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["target"], "/a\"b");
        assert_eq!(v["status"], 502);
        assert_eq!(v["bytes"], 0);
        assert_eq!(v["request_bytes"], 1_048_576);
        assert_eq!(v["duration_ms"], 12.345);
        assert_eq!(v["route"], "api");
        assert_eq!(v["upstream"], "127.0.0.1:8000");
        assert!(v["cache"].is_null() && v["tls"].is_null() && v["referer"].is_null());
        assert_eq!(v["user_agent"], "curl/8\n");
    }
}
