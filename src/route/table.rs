//! Which route takes a request: the Host picks a set of routes, then the longest path prefix
//! within that set wins, as nginx picks a `server` block by `server_name` and then a prefix
//! `location` inside it.
//!
//! A Host (compared without its port, case-insensitively, a trailing dot ignored) is looked up
//! in this order, and the first pattern that names it decides which routes are searched:
//!
//! 1. an exact name (`a.test`);
//! 2. the longest leading wildcard that covers it (`*.example.test` covers `a.example.test`
//!    and `x.a.example.test`, never `example.test` itself);
//! 3. the routes that list no `hosts` at all.
//!
//! Only the routes that list the chosen pattern are searched by path, so a Host with routes of
//! its own never falls through to another Host's routes (nginx's server blocks behave so). A
//! prefix matches at a segment boundary: `/service1` takes `/service1`, `/service1/x` and
//! `/service1?q`, never `/service1foo`; `/` takes every path.

use std::collections::HashMap;

/// One name a route answers to, as written in `hosts`, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `a.test`.
    Exact(String),
    /// `*.example.test`, kept as its suffix `.example.test`.
    Wildcard(String),
}

impl HostPattern {
    /// Parses one entry of `hosts`: a name made of letters, digits, `-`, `_` and dots (or a
    /// bracketed IPv6 literal), optionally starting with `*.`; no port, no other `*`.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let lower = text.to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower);
        if let Some(literal) = lower.strip_prefix('[') {
            let ok = literal
                .strip_suffix(']')
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
            return if ok {
                Ok(HostPattern::Exact(lower.to_owned()))
            } else {
                Err(format!("host {text:?} is not a valid [IPv6] literal"))
            };
        }
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower),
        };
        if name.contains(':') {
            return Err(format!(
                "host {text:?} has a port: hosts are matched without their port"
            ));
        }
        let labels_ok = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !labels_ok {
            return Err(format!(
                "host {text:?} must be a name like a.test or *.example.test \
                 (a wildcard only as the whole first label)"
            ));
        }
        Ok(if wildcard {
            HostPattern::Wildcard(format!(".{name}"))
        } else {
            HostPattern::Exact(name.to_owned())
        })
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// The host part of a `Host` value, as patterns are written: lower-cased, without its port
/// or a trailing dot. `None` (no Host, as HTTP/1.0 allows) matches only routes without `hosts`.
pub fn request_host(value: Option<&[u8]>) -> Option<String> {
    let text = std::str::from_utf8(value?).ok()?.trim();
    let host = if text.starts_with('[') {
        // `[::1]:8080`: the port follows the bracket.
        text.split_inclusive(']').next().unwrap_or(text)
    } else {
        text.split(':').next().unwrap_or(text)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Whether prefix `prefix` covers the normalised `path` at a segment boundary.
pub fn prefix_covers(prefix: &str, path: &str) -> bool {
    crate::exercise::stub!("prefix_covers");
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// `path` without `prefix` (which covers it), never empty: `/service1/x` less `/service1` is
/// `/x`, and `/service1` alone becomes `/`.
pub fn strip_prefix<'a>(prefix: &str, path: &'a str) -> &'a str {
    let rest = path
        .strip_prefix(prefix.trim_end_matches('/'))
        .unwrap_or(path);
    if rest.is_empty() {
        "/"
    } else {
        rest
    }
}

/// A route's place in the table: its path prefix and its index in the route list.
#[derive(Debug, Clone)]
struct Entry {
    prefix: String,
    route: usize,
}

/// The routes, arranged for lookup by Host, then prefix.
#[derive(Debug, Default)]
pub struct Table {
    exact: HashMap<String, Vec<Entry>>,
    /// Longest suffix first, so the most specific wildcard is tried first.
    wildcards: Vec<(String, Vec<Entry>)>,
    any_host: Vec<Entry>,
}

impl Table {
    /// Builds the table from each route's host patterns (empty: any host) and path prefix,
    /// in route order; the index of a route in `routes` is what `find` returns.
    pub fn new(routes: &[(Vec<HostPattern>, String)]) -> Table {
        let mut table = Table::default();
        for (route, (hosts, prefix)) in routes.iter().enumerate() {
            let entry = Entry {
                prefix: prefix.clone(),
                route,
            };
            if hosts.is_empty() {
                table.any_host.push(entry);
                continue;
            }
            for host in hosts {
                match host {
                    HostPattern::Exact(name) => table
                        .exact
                        .entry(name.clone())
                        .or_default()
                        .push(entry.clone()),
                    HostPattern::Wildcard(suffix) => {
                        match table.wildcards.iter_mut().find(|(s, _)| s == suffix) {
                            Some((_, entries)) => entries.push(entry.clone()),
                            None => table.wildcards.push((suffix.clone(), vec![entry.clone()])),
                        }
                    }
                }
            }
        }
        // Longest prefix first; a stable sort keeps file order between equal lengths (which
        // the configuration check makes distinct prefixes, so never a real tie).
        let by_length = |entries: &mut Vec<Entry>| {
            entries.sort_by_key(|e| std::cmp::Reverse(e.prefix.len()));
        };
        table.exact.values_mut().for_each(by_length);
        table.wildcards.iter_mut().for_each(|(_, e)| by_length(e));
        by_length(&mut table.any_host);
        table
            .wildcards
            .sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        table
    }

    /// The route for `host` (as [`request_host`] gives it) and the normalised `path`.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let candidates = self.candidates(host);
        candidates
            .iter()
            .find(|entry| prefix_covers(&entry.prefix, path))
            .map(|entry| entry.route)
    }

    /// The routes the Host picks (see the module docs for the order).
    fn candidates(&self, host: Option<&str>) -> &[Entry] {
        crate::exercise::stub!("Table::candidates");
        let Some(host) = host else {
            return &self.any_host;
        };
        if let Some(entries) = self.exact.get(host) {
            return entries;
        }
        self.wildcards
            .iter()
            .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
            .map_or(&self.any_host, |(_, entries)| entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(hosts: &[&str]) -> Vec<HostPattern> {
        hosts
            .iter()
            .map(|h| HostPattern::parse(h).unwrap())
            .collect()
    }

    #[test]
    fn host_patterns_parse_or_say_why_not() {
        // (as written, parsed or the start of the error)
        let table: &[(&str, Result<HostPattern, &str>)] = &[
            ("a.test", Ok(HostPattern::Exact("a.test".into()))),
            ("A.Test.", Ok(HostPattern::Exact("a.test".into()))),
            (
                "*.example.test",
                Ok(HostPattern::Wildcard(".example.test".into())),
            ),
            ("localhost", Ok(HostPattern::Exact("localhost".into()))),
            ("127.0.0.1", Ok(HostPattern::Exact("127.0.0.1".into()))),
            ("[::1]", Ok(HostPattern::Exact("[::1]".into()))),
            ("a.test:8080", Err("host \"a.test:8080\" has a port")),
            ("*", Err("host \"*\" must be")),
            ("a.*.test", Err("host \"a.*.test\" must be")),
            ("*example.test", Err("host \"*example.test\" must be")),
            ("", Err("host \"\" must be")),
            ("a..test", Err("host \"a..test\" must be")),
            ("a test", Err("host \"a test\" must be")),
            ("[nope]", Err("host \"[nope]\" is not")),
        ];
        for (text, want) in table {
            match (HostPattern::parse(text), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{text:?}"),
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{text:?}: {got}"),
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn request_hosts_lose_port_case_and_trailing_dot() {
        let table: &[(Option<&str>, Option<&str>)] = &[
            (Some("a.test"), Some("a.test")),
            (Some("A.TEST:8080"), Some("a.test")),
            (Some("a.test."), Some("a.test")),
            (Some("[::1]:8080"), Some("[::1]")),
            (Some("127.0.0.1:80"), Some("127.0.0.1")),
            (Some(""), None),
            (None, None),
        ];
        for (value, want) in table {
            let got = request_host(value.map(str::as_bytes));
            assert_eq!(got.as_deref(), *want, "{value:?}");
        }
    }

    #[test]
    fn prefixes_match_at_segment_boundaries() {
        // (prefix, path, covers)
        let table = [
            ("/", "/", true),
            ("/", "/anything/at/all", true),
            ("/service1", "/service1", true),
            ("/service1", "/service1/", true),
            ("/service1", "/service1/x/y", true),
            ("/service1", "/service1foo", false),
            ("/service1", "/service", false),
            ("/service1", "/", false),
            ("/static/", "/static/a.css", true),
            ("/static/", "/static", false),
            ("/a/b", "/a/b/c", true),
            ("/a/b", "/a/bc", false),
        ];
        for (prefix, path, want) in table {
            assert_eq!(prefix_covers(prefix, path), want, "{prefix} vs {path}");
        }
    }

    #[test]
    fn stripping_leaves_a_path() {
        let table = [
            ("/service1", "/service1/x", "/x"),
            ("/service1", "/service1", "/"),
            ("/service1", "/service1/", "/"),
            ("/static/", "/static/a.css", "/a.css"),
            ("/", "/x", "/x"),
            ("/a/b", "/a/b/c/d", "/c/d"),
        ];
        for (prefix, path, want) in table {
            assert_eq!(strip_prefix(prefix, path), want, "{prefix} from {path}");
        }
    }

    /// One table of routes, and which route each (Host, path) reaches.
    #[test]
    fn lookup_order_exact_then_wildcard_then_any_host_then_longest_prefix() {
        let routes = vec![
            (patterns(&["a.test"]), "/".to_owned()),                 // 0
            (patterns(&["a.test"]), "/api".to_owned()),              // 1
            (patterns(&["a.test", "b.test"]), "/api/v2".to_owned()), // 2
            (patterns(&["*.example.test"]), "/".to_owned()),         // 3
            (patterns(&["*.deep.example.test"]), "/".to_owned()),    // 4
            (patterns(&[]), "/service1".to_owned()),                 // 5
            (patterns(&[]), "/".to_owned()),                         // 6
            (patterns(&["only.test"]), "/x".to_owned()),             // 7
        ];
        let table = Table::new(&routes);
        // (Host as sent, path, route)
        let cases: &[(Option<&str>, &str, Option<usize>)] = &[
            (Some("a.test"), "/", Some(0)),
            (Some("A.test:8080"), "/api", Some(1)),
            (Some("a.test"), "/api/x", Some(1)),
            (Some("a.test"), "/apix", Some(0)),
            (Some("a.test"), "/api/v2/users", Some(2)),
            (Some("b.test"), "/api/v2", Some(2)),
            // b.test has one route, at /api/v2: no fall-through to the any-host routes
            (Some("b.test"), "/", None),
            (Some("www.example.test"), "/x", Some(3)),
            (Some("x.y.example.test"), "/", Some(3)),
            (Some("x.deep.example.test"), "/", Some(4)),
            // a wildcard never covers its own bare domain
            (Some("example.test"), "/service1/x", Some(5)),
            (Some("unknown.test"), "/service1", Some(5)),
            (Some("unknown.test"), "/service1foo", Some(6)),
            (None, "/service1/x", Some(5)),
            (Some("only.test"), "/x/y", Some(7)),
            (Some("only.test"), "/y", None),
        ];
        for (host, path, want) in cases {
            let host = request_host(host.map(str::as_bytes));
            assert_eq!(table.find(host.as_deref(), path), *want, "{host:?} {path}");
        }
    }
}
