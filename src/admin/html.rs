//! `/status`: the status page for people, in the manner of HAProxy's stats page. One table
//! per upstream group (a row per server, coloured by state), then routes, the pool, the
//! cache, access control and TLS. It refreshes itself every 5 s with a `<meta>` tag: no
//! JavaScript, and every value from the outside (addresses, route names, probe errors) is
//! HTML-escaped.

use std::fmt::Write;

use super::status::{ServerStatus, Status, StatusClasses};
use crate::metrics::registry::OTHER_ROUTE;

/// Seconds between refreshes.
const REFRESH_SECONDS: u32 = 5;

const STYLE: &str = "
body { font: 14px/1.4 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0; color: #1d2430; background: #f4f6f9; }
header { background: #1d2430; color: #fff; padding: 12px 24px; display: flex; gap: 24px; align-items: baseline; flex-wrap: wrap; }
header h1 { font-size: 18px; margin: 0; }
header span { color: #c4cbd6; }
main { padding: 8px 24px 24px; }
h2 { font-size: 15px; margin: 20px 0 6px; }
h2 small { font-weight: normal; color: #5b6575; }
table { border-collapse: collapse; font-size: 13px; background: #fff; box-shadow: 0 1px 2px rgba(0,0,0,.08); margin-bottom: 4px; }
th, td { padding: 5px 8px; border-bottom: 1px solid #e3e7ee; text-align: right; white-space: nowrap; }
th { background: #e9edf3; font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; color: #3a4352; }
th:first-child, td:first-child { text-align: left; font-family: ui-monospace, 'SFMono-Regular', Menlo, monospace; }
td.left { text-align: left; }
tr.up td:first-child { border-left: 4px solid #2f9e44; }
tr.down td:first-child { border-left: 4px solid #e03131; }
tr.unknown td:first-child { border-left: 4px solid #adb5bd; }
tr.down { background: #fff0f0; }
.state { font-weight: 700; font-size: 12px; padding: 1px 8px; border-radius: 9px; color: #fff; }
.state.up { background: #2f9e44; }
.state.down { background: #e03131; }
.state.unknown { background: #868e96; }
.fail { color: #c92a2a; }
.muted { color: #868e96; }
th.check, td.check { text-align: left; max-width: 200px; overflow: hidden; text-overflow: ellipsis; }
.grid td:first-child { font-family: inherit; }
.grid { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
";

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms"))
}

fn age(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1} s ago")
    } else {
        format!("{:.0} min ago", seconds / 60.0)
    }
}

fn uptime(seconds: f64) -> String {
    let s = seconds as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

fn classes(c: &StatusClasses) -> String {
    format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        c.success, c.redirect, c.client_error, c.server_error
    )
}

/// The whole page.
pub fn render(status: &Status) -> String {
    let mut page = String::with_capacity(8 * 1024);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>revproxy status</title><style>{STYLE}</style></head><body>\
         <header><h1>revproxy status</h1><span>version {}</span><span>up {}</span>\
         <span>listening on {}</span><span>refreshes every {REFRESH_SECONDS} s</span></header><main>",
        escape(status.version),
        uptime(status.uptime_seconds),
        escape(&status.listen),
    );
    for up in &status.upstreams {
        upstream(&mut page, up);
    }
    routes(&mut page, status);
    page.push_str("<div class=\"grid\">");
    counters(&mut page, status);
    page.push_str("</div></main></body></html>\n");
    page
}

fn upstream(page: &mut String, up: &super::status::UpstreamStatus) {
    let checks = if up.health_checks {
        "health checks on"
    } else {
        "no health checks"
    };
    let down = up.servers.iter().filter(|s| s.state == "DOWN").count();
    let _ = write!(
        page,
        "<h2>upstream {} <small>{} servers, {down} down, {checks}</small></h2>\
         <table><tr><th>server</th><th>state</th><th>weight</th><th>active</th>\
         <th>requests</th><th>errors</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th>\
         <th title=\"time to the response head\">mean</th><th>p95</th><th class=\"check\">last check</th><th title=\"probes passed / failed\">checks</th></tr>",
        escape(&up.name),
        up.servers.len()
    );
    for s in &up.servers {
        server_row(page, s);
    }
    page.push_str("</table>");
}

fn server_row(page: &mut String, s: &ServerStatus) {
    let class = s.state.to_ascii_lowercase();
    // The age first: a long probe error is cut by the column (whole in the tooltip).
    let (last, title) = match &s.last_check {
        None => (
            "<span class=\"muted\">never</span>".to_owned(),
            String::new(),
        ),
        Some(c) => {
            let detail = escape(&c.detail);
            let class = if c.passed { "" } else { " class=\"fail\"" };
            let text = format!("{} <span{class}>{detail}</span>", age(c.age_seconds));
            (text, detail)
        }
    };
    let _ = write!(
        page,
        "<tr class=\"{class}\"><td>{}</td><td><span class=\"state {class}\">{}</span></td>\
         <td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}<td>{}</td><td>{}</td>\
         <td class=\"check\" title=\"{title}\">{last}</td><td>{} / {}</td></tr>",
        escape(&s.addr),
        s.state,
        s.weight,
        s.active,
        s.requests,
        s.errors,
        classes(&s.by_status),
        ms(s.mean_ms),
        ms(s.p95_ms),
        s.checks_passed,
        s.checks_failed,
    );
}

fn routes(page: &mut String, status: &Status) {
    page.push_str(
        "<h2>routes</h2><table><tr><th>route</th><th>upstream</th><th>requests</th>\
         <th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th>\
         <th title=\"request body bytes read from clients\">bytes in</th><th>bytes out</th>\
         <th>mean</th><th>p95</th></tr>",
    );
    // `other` (routes added by a reload) only once it counted something.
    for r in status
        .routes
        .iter()
        .filter(|r| r.requests > 0 || r.name != OTHER_ROUTE)
    {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"left\">{}</td><td>{}</td>{}<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.name),
            escape(r.upstream.as_deref().unwrap_or("-")),
            r.requests,
            classes(&r.by_status),
            r.bytes_in,
            r.bytes_out,
            ms(r.mean_ms),
            ms(r.p95_ms),
        );
    }
    page.push_str("</table>");
}

/// A small two-column table.
fn pairs(page: &mut String, title: &str, rows: &[(&str, String)]) {
    let _ = write!(page, "<div><h2>{}</h2><table>", escape(title));
    for (name, value) in rows {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(name),
            escape(value)
        );
    }
    page.push_str("</table></div>");
}

fn counters(page: &mut String, status: &Status) {
    if let Some(p) = status.pool {
        pairs(
            page,
            "pool and connections",
            &[
                ("workers busy", format!("{} of {}", p.busy, p.workers)),
                ("queued", p.queued.to_string()),
                ("connections open", p.open.to_string()),
                ("parked", p.parked.to_string()),
                ("idle", p.idle.to_string()),
            ],
        );
    }
    match status.cache {
        Some(c) => pairs(
            page,
            "cache",
            &[
                ("hits", c.hits.to_string()),
                ("misses", c.misses.to_string()),
                ("stores", c.stores.to_string()),
                ("evictions", c.evictions.to_string()),
                ("entries", c.entries.to_string()),
                ("bytes", c.bytes.to_string()),
            ],
        ),
        None => pairs(page, "cache", &[("cache", "not in this stage".to_owned())]),
    }
    match status.access {
        Some(a) => pairs(
            page,
            "access control",
            &[
                ("allowed", a.allowed.to_string()),
                ("400 bad path", a.bad_path.to_string()),
                ("401 unauthorized", a.unauthorized.to_string()),
                ("403 forbidden", a.forbidden.to_string()),
                ("429 limited", a.limited.to_string()),
            ],
        ),
        None => pairs(
            page,
            "access control",
            &[("access control", "not in this stage".to_owned())],
        ),
    }
    pairs(
        page,
        "TLS",
        &[
            ("handshakes", status.tls.handshakes.to_string()),
            ("failures", status.tls.failures.to_string()),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        let table = [
            ("<script>", "&lt;script&gt;"),
            ("a&b", "a&amp;b"),
            ("\"q\" 'q'", "&quot;q&quot; &#39;q&#39;"),
            ("127.0.0.1:8000", "127.0.0.1:8000"),
        ];
        for (raw, escaped) in table {
            assert_eq!(escape(raw), escaped);
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(uptime(59.9), "59 s");
        assert_eq!(uptime(125.0), "2 min 5 s");
        assert_eq!(uptime(7260.0), "2 h 1 min");
        assert_eq!(age(1.25), "1.2 s ago");
        assert_eq!(ms(Some(2.345)), "2.3 ms");
        assert_eq!(ms(None), "-");
    }
}
