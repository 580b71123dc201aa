//! One line per request in the Combined Log Format that nginx and Apache write, so existing
//! log tools read it. Lines go to the `access` log target, apart from diagnostics.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub duration: Duration,
}

/// Whether access log lines are wanted (`--log-level info` or more).
pub fn enabled() -> bool {
    log::log_enabled!(target: "access", log::Level::Info)
}

/// Writes the entry at `info` level on target `access`.
pub fn write(entry: &Entry<'_>) {
    if enabled() {
        log::info!(target: "access", "{}", format_line(entry, SystemTime::now()));
    }
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
            referer: None,
            user_agent: Some(b"curl/8\n"),
            duration: Duration::from_millis(12),
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
}
