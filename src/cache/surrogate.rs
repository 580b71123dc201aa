//! `Surrogate-Control` (the Edge Architecture Specification, W3C Note 2001), the older,
//! non-structured ancestor of RFC 9213's targeted fields: what an origin tells the surrogates
//! in front of it (reverse proxies and CDNs) apart from what it tells browsers.
//!
//! The field is a comma-separated list of directives, each `name[=value][;target]`, names
//! compared without regard to case; a directive with a `;target` applies only to the surrogate
//! whose device token that is, one without to every surrogate. A surrogate announces its token
//! to the origin in `Surrogate-Capability: token="Surrogate/1.0"` on each request it forwards.
//! This cache honours `max-age=N[+M]` (the `+M` is how long it may serve the response stale
//! when the origin fails: `stale-if-error` here) and `no-store`; `no-store-remote` concerns
//! surrogates that are not the edge, and this proxy is the edge. When one of those applies,
//! it replaces `Cache-Control` and `Expires` for this cache, as a targeted field does; when
//! none does (only `content=`, or directives for another device), the field is ignored.
//!
//! Surrogates remove the field before the response leaves them: it is meant for the
//! surrogates of the origin, and the client is not one (see `CachePhases::hidden`).

use std::time::Duration;

use super::control::{parse_delta_seconds, ResponseDirectives};
use crate::http::head::Headers;

/// The field's name.
pub const FIELD: &str = "Surrogate-Control";

/// `Surrogate-Capability`'s value for a surrogate whose device token is `id`.
pub fn capability(id: &str) -> Vec<u8> {
    format!("{id}=\"Surrogate/1.0\"").into_bytes()
}

/// The directives `head`'s `Surrogate-Control` gives the surrogate `id`; `None` when it has
/// none this cache understands (then `Cache-Control` applies). Directives targeted at `id`
/// win over untargeted ones of the same name.
pub fn directives(head: &impl Headers, id: &str) -> Option<ResponseDirectives> {
    let mut general = Found::default();
    let mut mine = Found::default();
    for line in head.values(FIELD) {
        let line = String::from_utf8_lossy(line);
        for directive in split_list(&line) {
            let (body, target) = match directive.split_once(';') {
                Some((body, target)) => (body, Some(target.trim())),
                None => (directive, None),
            };
            let found = match target {
                None => &mut general,
                Some(t) if t.eq_ignore_ascii_case(id) => &mut mine,
                Some(_) => continue,
            };
            found.read(body.trim());
        }
    }
    let found = mine.or(general);
    if found.max_age.is_none() && !found.no_store {
        return None;
    }
    Some(ResponseDirectives {
        no_store: found.no_store,
        max_age: found.max_age,
        stale_if_error: found.stale,
        targeted: true,
        ..ResponseDirectives::default()
    })
}

/// What one set of directives (general, or targeted at us) says.
#[derive(Default)]
struct Found {
    no_store: bool,
    max_age: Option<Duration>,
    stale: Option<Duration>,
}

impl Found {
    fn read(&mut self, directive: &str) {
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (directive, None),
        };
        // Spaces around `=` are not in the grammar: such a directive is not understood.
        if name.ends_with([' ', '\t']) || value.is_some_and(|v| v.starts_with([' ', '\t'])) {
            return;
        }
        if name.eq_ignore_ascii_case("no-store") && value.is_none() {
            self.no_store = true;
        } else if name.eq_ignore_ascii_case("max-age") && self.max_age.is_none() {
            // The first valid max-age wins, as for Cache-Control (RFC 9111 section 4.2.1).
            let Some(value) = value else { return };
            let (fresh, stale) = match value.split_once('+') {
                Some((f, s)) => (f, Some(s)),
                None => (value, None),
            };
            if let Some(fresh) = seconds(fresh) {
                self.max_age = Some(fresh);
                self.stale = stale.and_then(seconds);
            }
        }
    }

    /// `self` if it says anything, else `other`.
    fn or(self, other: Found) -> Found {
        if self.max_age.is_some() || self.no_store {
            self
        } else {
            other
        }
    }
}

/// A delta-seconds value, a huge one capped at 2^31 (RFC 9111 section 1.2.2).
fn seconds(value: &str) -> Option<Duration> {
    parse_delta_seconds(value.trim().as_bytes()).map(Duration::from_secs)
}

/// The list's members, split at commas outside quoted strings (`content="ESI/1.0, X/1"`).
fn split_list(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&line[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&line[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ResponseHead;

    fn head(lines: &[&str]) -> ResponseHead {
        let pairs: Vec<(&str, &str)> = lines.iter().map(|v| ("Surrogate-Control", *v)).collect();
        crate::cache::test_heads::response(200, &pairs)
    }

    #[test]
    fn directives_for_every_surrogate_or_for_this_one_apply() {
        let secs = |n| Some(Duration::from_secs(n));
        let table: &[(&[&str], Option<Duration>, bool)] = &[
            (&["max-age=3600"], secs(3600), false),
            (&["MaX-aGe=60"], secs(60), false),
            (&["foobar, max-age=5"], secs(5), false),
            (&["content=\"ESI/1.0, X/2\", max-age=7"], secs(7), false),
            (&["max-age=99999999999"], secs(1 << 31), false),
            (&["max-age=0"], secs(0), false),
            (&["no-store"], None, true),
            (&["max-age=10;me"], secs(10), false),
            // Ours beats the general one.
            (&["max-age=10, max-age=20;me"], secs(20), false),
            (&["max-age=10", "no-store;me"], None, true),
            // Another device's is not ours.
            (&["max-age=10;other, max-age=30"], secs(30), false),
        ];
        for (lines, max_age, no_store) in table {
            let d = directives(&head(lines), "me").unwrap_or_else(|| panic!("{lines:?}"));
            assert_eq!(d.max_age, *max_age, "{lines:?}");
            assert_eq!(d.no_store, *no_store, "{lines:?}");
            assert!(d.targeted, "{lines:?}");
        }
        let d = directives(&head(&["max-age=60+600"]), "me").unwrap();
        assert_eq!(d.stale_if_error, secs(600));
    }

    #[test]
    fn a_field_with_nothing_for_this_surrogate_is_ignored() {
        for lines in [
            &["max-age=3600;other"][..],
            &["content=\"ESI/1.0\""],
            &["max-age =100"],
            &["max-age= 100"],
            &["max-age=abc"],
            &["max-age=-1"],
            &["no-store-remote"],
            &[""],
        ] {
            assert_eq!(directives(&head(lines), "me"), None, "{lines:?}");
        }
    }
}
