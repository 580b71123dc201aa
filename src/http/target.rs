//! The two places a request names its authority, the request target and `Host`, checked
//! against the grammar (RFC 9112 section 3.2, RFC 3986 section 3.2.2) before anything routes
//! on them. A value two parsers could read differently (`a.test, b.test`, `a.test/x`,
//! `user@a.test`) is how a request reaches a virtual host its sender should not reach, so it is
//! refused instead of forwarded.

use std::net::Ipv6Addr;

use super::error::HttpError;

/// An absolute-form target (`http://a.test/x?q`) taken apart: what goes on the wire to the
/// upstream (origin-form) and what becomes its `Host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbsoluteTarget {
    pub origin_form: String,
    pub authority: String,
}

/// Checks the form of a request target (RFC 9112 section 3.2) and returns `Some` for an
/// absolute-form one, which the caller reduces to origin-form. Origin-form and `OPTIONS *`
/// pass unchanged. CONNECT is not judged here: its authority-form is refused later, with the
/// 501 a proxy that opens no tunnels owes.
pub fn check_target(method: &str, target: &str) -> Result<Option<AbsoluteTarget>, HttpError> {
    // The target grammar is ASCII (RFC 9112 section 3.2, RFC 3986): a raw UTF-8 byte, which
    // httparse lets through, is a client that did not percent-encode, and a backend may
    // decode it in another charset than the rules in front of it did.
    if !target.is_ascii() {
        return Err(HttpError::BadSyntax("non-ASCII byte in the request target"));
    }
    if method == "CONNECT" {
        return Ok(None);
    }
    // An encoded NUL in the path ends the string for C code and some runtimes, so a backend
    // would serve another path than the one every rule here judged; nginx refuses it too.
    // The query is left alone: a NUL there names no file.
    let path = target.split('?').next().unwrap_or(target);
    if path.contains("%00") {
        return Err(HttpError::BadSyntax("encoded NUL in the request path"));
    }
    // A fragment is for the user agent only (RFC 9110 section 4.2.5); one on the wire means a
    // client that builds targets by hand, and a backend could cut the path there.
    if target.contains('#') {
        return Err(HttpError::BadSyntax("fragment in the request target"));
    }
    if target.starts_with('/') {
        return Ok(None);
    }
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(None)
        } else {
            Err(HttpError::BadSyntax("asterisk target outside OPTIONS"))
        };
    }
    absolute_form(method, target).map(Some)
}

fn absolute_form(method: &str, target: &str) -> Result<AbsoluteTarget, HttpError> {
    const NOT_HTTP: HttpError =
        HttpError::BadSyntax("request target is not origin-form or an http(s) URI");
    let (scheme, rest) = target.split_once(':').ok_or(NOT_HTTP)?;
    let is_http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    let after = rest
        .strip_prefix("//")
        .filter(|_| is_http)
        .ok_or(NOT_HTTP)?;
    let end = after.find(['/', '?']).unwrap_or(after.len());
    let (authority, path_and_query) = after.split_at(end);
    // Userinfo is deprecated in http(s) URIs (RFC 9110 section 4.2.4) and a classic way to
    // make a log or a filter read `user` as the host.
    if authority.contains('@') {
        return Err(HttpError::BadSyntax("userinfo in the request target"));
    }
    // An empty host is invalid for http(s) (RFC 9110 section 4.2.1); `valid_host` refuses it.
    if !valid_host(authority.as_bytes()) {
        return Err(HttpError::BadSyntax(
            "invalid authority in the request target",
        ));
    }
    let origin_form = match path_and_query {
        // RFC 9112 section 3.2.4: the last proxy turns `OPTIONS http://a.test` into `OPTIONS *`.
        "" if method == "OPTIONS" => "*".to_owned(),
        "" => "/".to_owned(),
        q if q.starts_with('?') => format!("/{q}"),
        path => path.to_owned(),
    };
    Ok(AbsoluteTarget {
        origin_form,
        authority: authority.to_owned(),
    })
}

/// Whether `value` is `uri-host [ ":" port ]` (RFC 9112 section 3.2). Stricter than the grammar
/// in two ways, as nginx and HAProxy are: a comma (a sub-delim, but it makes the value read as
/// a list) and an empty host (nothing to route on) are refused. An empty port (`a.test:`) is
/// what the grammar allows, so it is accepted.
pub fn valid_host(value: &[u8]) -> bool {
    let (host_ok, rest) = if let Some(literal) = value.strip_prefix(b"[") {
        match literal.iter().position(|&b| b == b']') {
            Some(end) => (valid_ip_literal(&literal[..end]), &literal[end + 1..]),
            None => return false,
        }
    } else {
        let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
        (valid_reg_name(&value[..end]), &value[end..])
    };
    let port_ok = match rest {
        [] => true,
        [b':', port @ ..] => port.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    host_ok && port_ok
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The sub-delims of RFC 3986 without the comma (see [`valid_host`]).
fn is_sub_delim_not_comma(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b';' | b'='
    )
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`, not empty. IPv4 addresses are
/// reg-names as far as the characters go, so they need no case of their own.
fn valid_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'%' => {
                let hex = name.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            b if is_unreserved(b) || is_sub_delim_not_comma(b) => i += 1,
            _ => return false,
        }
    }
    !name.is_empty()
}

/// Between the brackets: an IPv6 address, or `IPvFuture = "v" 1*HEXDIG "." 1*( unreserved /
/// sub-delims / ":" )`.
fn valid_ip_literal(literal: &[u8]) -> bool {
    if let Some(future) = literal.strip_prefix(b"v").or(literal.strip_prefix(b"V")) {
        let Some(dot) = future.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (version, rest) = (&future[..dot], &future[dot + 1..]);
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !rest.is_empty()
            && rest
                .iter()
                .all(|&b| is_unreserved(b) || is_sub_delim_not_comma(b) || b == b':');
    }
    std::str::from_utf8(literal).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values() {
        let good: &[&str] = &[
            "a",
            "example.test",
            "example.test:8080",
            "example.test:",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::7]:",
            "[::ffff:192.0.2.1]",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.test",
            "a-b_c~d.test",
            "caf%C3%A9.test",
            "a!$&'()*+;=.test",
            "EXAMPLE.TEST",
        ];
        for host in good {
            assert!(valid_host(host.as_bytes()), "{host:?} is valid");
        }
        let bad: &[&str] = &[
            "",
            ":8080",
            "a.test, b.test",
            "a.test,b.test",
            "a test",
            "a.test/x",
            "a.test/",
            "user@a.test",
            "user:pw@a.test",
            "a.test:80:81",
            "a.test:8o",
            "a.test:-1",
            "::1",
            "[::1",
            "::1]",
            "[::1]x",
            "[::1]:80x",
            "[zz::1]",
            "[]",
            "[v1.]",
            "[v.x]",
            "[::1%eth0]",
            "a.test?",
            "a.test#",
            "a%2",
            "a%zz.test",
            "a\\b",
            "a\"b",
            "a\tb",
            "café.test",
            "a.test\r",
        ];
        for host in bad {
            assert!(!valid_host(host.as_bytes()), "{host:?} is invalid");
        }
    }

    #[test]
    fn target_forms() {
        // (method, target, Ok(None) = forwarded as is | Ok(Some((origin-form, authority))))
        type Want = Option<(&'static str, &'static str)>;
        let ok: &[(&str, &str, Want)] = &[
            ("GET", "/", None),
            ("GET", "/a/b?x=%2F", None),
            ("GET", "//double", None),
            ("GET", "/x?nul=%00", None),
            ("GET", "/a%2000", None),
            ("OPTIONS", "*", None),
            ("CONNECT", "example.test:443", None),
            ("CONNECT", "*", None),
            (
                "GET",
                "http://example.test/x?q",
                Some(("/x?q", "example.test")),
            ),
            ("GET", "http://example.test", Some(("/", "example.test"))),
            (
                "GET",
                "http://example.test?q",
                Some(("/?q", "example.test")),
            ),
            ("GET", "HTTPS://a.test:8443/p", Some(("/p", "a.test:8443"))),
            ("GET", "hTtP://[::1]:8080/", Some(("/", "[::1]:8080"))),
            ("POST", "http://a.test:/p", Some(("/p", "a.test:"))),
            ("OPTIONS", "http://a.test", Some(("*", "a.test"))),
            ("OPTIONS", "http://a.test/", Some(("/", "a.test"))),
        ];
        for &(method, target, want) in ok {
            let got = check_target(method, target)
                .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
                .map(|a| (a.origin_form, a.authority));
            let want = want.map(|(o, a)| (o.to_owned(), a.to_owned()));
            assert_eq!(got, want, "{method} {target}");
        }
        let bad: &[(&str, &str)] = &[
            ("GET", "x"),
            ("GET", "index.html"),
            ("GET", "*"),
            ("POST", "*"),
            ("GET", "/a#frag"),
            ("GET", "/#"),
            ("GET", "http://a.test/#x"),
            ("GET", "example.test:80"),
            ("GET", "ftp://a.test/x"),
            ("GET", "file:///etc/passwd"),
            ("GET", "http:/a.test/x"),
            ("GET", "http:a.test"),
            ("GET", "http://"),
            ("GET", "http:///x"),
            ("GET", "http://user@a.test/"),
            ("GET", "http://user:pw@a.test/"),
            ("GET", "http://a.test,b.test/"),
            ("GET", "http://a.test:8o/"),
            ("GET", "httpx://a.test/"),
            ("OPTIONS", "**"),
            ("GET", "/caf\u{e9}"),
            ("GET", "/?q=\u{e9}"),
            ("GET", "http://a.test/\u{e9}"),
            ("CONNECT", "\u{e9}.test:443"),
            ("GET", "/a%00b"),
            ("GET", "/a%00"),
            ("GET", "http://a.test/x%00.php"),
        ];
        for &(method, target) in bad {
            let err = check_target(method, target).expect_err(target);
            assert_eq!(err.client_status(), Some(400), "{method} {target}");
        }
    }
}
