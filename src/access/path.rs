//! The path a rule is matched against: a normalised copy of the request target, so that
//! `/%61dmin`, `/./admin`, `/x/../admin`, `//admin` and `/admin;x` all meet the rule for
//! `/admin`. The target itself is forwarded byte for byte; only the decision uses the copy.
//!
//! The copy is what RFC 3986 says two equivalent URIs share (section 6.2.2: percent-decoding
//! of unreserved characters, upper-case hex, dot-segments removed), plus two things origins
//! commonly do and the RFC does not: repeated slashes merged (nginx's `merge_slashes`) and
//! `;` parameters dropped from each segment (Tomcat and Spring read `/admin;x` as `/admin`).
//! What an origin may still read differently (case, `\` as `/`, `%2F` as `/`, `%25` decoded
//! twice, `//host/x` as a URL) is refused by strict mode instead of guessed at. One of these
//! is judged in every mode: an encoded separator that would change which rule applies once an
//! origin decodes it ([`as_separators_decoded`]).

use std::fmt;

/// Why a target is refused (400) before any rule is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `/../etc`: more `..` than segments.
    AboveRoot,
    /// `%zz`, `%4`: not a percent-encoding.
    BadEncoding,
    /// Strict mode: a backslash, which some origins read as `/`.
    Backslash,
    /// Strict mode: `%2F` or `%5C`, an encoded separator an origin may decode before routing.
    EncodedSlash,
    /// Strict mode: `%25` followed by hex digits, decoded twice by some origins.
    DoubleEncoding,
    /// Strict mode: a control character or a byte outside ASCII, spelled raw or encoded.
    Control,
    /// Strict mode: `//host/x`, a network-path reference that some origins read as a URL
    /// whose path is `/x`.
    NetworkPath,
    /// Any mode: `%2F`, `%5C` or `\` that, read as `/` (as many origins do before routing),
    /// would put the request under another rule than the one it was judged by.
    AmbiguousSeparator,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::AboveRoot => "the path goes above the root",
            PathError::BadEncoding => "invalid percent-encoding in the path",
            PathError::Backslash => "backslash in the path (strict mode)",
            PathError::EncodedSlash => "encoded slash in the path (strict mode)",
            PathError::DoubleEncoding => "double percent-encoding in the path (strict mode)",
            PathError::Control => "control or non-ASCII byte in the path (strict mode)",
            PathError::NetworkPath => "path starts with // (strict mode)",
            PathError::AmbiguousSeparator => {
                "encoded slash or backslash that would change the rule once decoded"
            }
        })
    }
}

impl std::error::Error for PathError {}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The normalised path of `target` (the query dropped). `*` (OPTIONS) is matched as `/`, so a
/// rule for the whole site covers it too.
pub fn normalise(target: &str, strict: bool) -> Result<String, PathError> {
    crate::exercise::stub!("normalise");
    if target == "*" {
        return Ok("/".to_owned());
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if strict && path.starts_with("//") {
        return Err(PathError::NetworkPath);
    }
    let bytes = path.as_bytes();
    // Pass 1: decode unreserved characters, upper-case the hex of the rest.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::BadEncoding);
            };
            let value = hi << 4 | lo;
            if strict {
                match value {
                    b'/' | b'\\' => return Err(PathError::EncodedSlash),
                    b'%' if bytes.get(i + 3).copied().and_then(hex).is_some() => {
                        return Err(PathError::DoubleEncoding)
                    }
                    v if !(0x20..0x7f).contains(&v) => return Err(PathError::Control),
                    _ => {}
                }
            }
            if is_unreserved(value) {
                decoded.push(value);
            } else {
                decoded.push(b'%');
                decoded.push(bytes[i + 1].to_ascii_uppercase());
                decoded.push(bytes[i + 2].to_ascii_uppercase());
            }
            i += 3;
            continue;
        }
        if strict {
            if b == b'\\' {
                return Err(PathError::Backslash);
            }
            if !(0x20..0x7f).contains(&b) {
                return Err(PathError::Control);
            }
        }
        decoded.push(b);
        i += 1;
    }
    // Pass 2: segments, without empty ones (merged slashes) and `;` parameters, dot-segments
    // resolved. A `..` that has nothing to remove is an error, not silently clamped to `/`:
    // a client that sends it is probing.
    let mut out: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded.split(|&b| b == b'/') {
        let segment = match segment.iter().position(|&b| b == b';') {
            Some(end) => &segment[..end],
            None => segment,
        };
        trailing_slash = true;
        match segment {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut normal = Vec::with_capacity(decoded.len());
    for segment in &out {
        normal.push(b'/');
        normal.extend_from_slice(segment);
    }
    if normal.is_empty() || trailing_slash {
        normal.push(b'/');
    }
    // Only ASCII went in unchanged or was decoded to ASCII, or non-ASCII came from a valid
    // &str: the bytes are UTF-8 whenever the target was; lossy covers the rest.
    Ok(String::from_utf8_lossy(&normal).into_owned())
}

/// The path as an origin that decodes `%2F` and `%5C` before routing, or reads `\` as `/`
/// (IIS, and many frameworks), would see it, normalised like [`normalise`]; `None` when the
/// target has no such separator, which is the common case and costs one scan. A rule judged
/// on [`normalise`]'s copy alone would let `/%2fadmin` or `/x%2f..%2fadmin` past a rule for
/// `/admin`; the access phase refuses a target whose two readings fall under different rules.
pub fn as_separators_decoded(target: &str) -> Option<Result<String, PathError>> {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let bytes = path.as_bytes();
    let is_encoded_separator = |i: usize| {
        bytes[i] == b'%'
            && matches!(
                bytes.get(i + 1..i + 3),
                Some([b'2', b'f' | b'F'] | [b'5', b'c' | b'C'])
            )
    };
    let mut found = false;
    let mut plain = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if is_encoded_separator(i) {
            plain.push('/');
            i += 3;
            found = true;
        } else if bytes[i] == b'\\' {
            plain.push('/');
            i += 1;
            found = true;
        } else {
            // Every byte pushed here is one of `path`'s whole characters: a multi-byte
            // character has no byte equal to `%` or `\`, so `i` never stops inside one.
            let len = path[i..].chars().next().map_or(1, char::len_utf8);
            plain.push_str(&path[i..i + len]);
            i += len;
        }
    }
    found.then(|| normalise(&plain, false))
}

/// Whether a rule for `prefix` covers `path`, ignoring ASCII case: strict mode's match, since
/// a case-insensitive origin (IIS, a macOS or Windows file system) serves `/ADMIN` as `/admin`.
pub fn covers_any_case(prefix: &str, path: &str) -> bool {
    path.len() >= prefix.len()
        && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Whether a rule for `prefix` covers `path`, nginx's prefix `location`: a plain string prefix
/// of the normalised path (so `/admin` also covers `/administrator`; write `/admin/` to
/// stop at the segment).
pub fn covers(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        // (target, normalised copy, or the error)
        type Case = (&'static str, Result<&'static str, PathError>);
        let table: &[Case] = &[
            ("/", Ok("/")),
            ("/admin", Ok("/admin")),
            ("/admin?x=1", Ok("/admin")),
            ("/%61dmin", Ok("/admin")),
            ("/%41dmin", Ok("/Admin")),
            ("/./admin", Ok("/admin")),
            ("/x/../admin", Ok("/admin")),
            ("/x/%2e%2e/admin", Ok("/admin")),
            ("/x/.%2E/admin", Ok("/admin")),
            ("//admin", Ok("/admin")),
            ("///admin//x", Ok("/admin/x")),
            ("/admin;x", Ok("/admin")),
            ("/admin;x/y", Ok("/admin/y")),
            ("/x/..;/admin", Ok("/admin")),
            ("/admin/", Ok("/admin/")),
            ("/admin/.", Ok("/admin/")),
            ("/admin/x/..", Ok("/admin/")),
            ("/a%2fb", Ok("/a%2Fb")),
            ("/a%20b", Ok("/a%20b")),
            ("/a%2a", Ok("/a%2A")),
            ("*", Ok("/")),
            ("/..", Err(PathError::AboveRoot)),
            ("/../admin", Err(PathError::AboveRoot)),
            ("/x/../../admin", Err(PathError::AboveRoot)),
            ("/%2e%2e/admin", Err(PathError::AboveRoot)),
            ("/%zz", Err(PathError::BadEncoding)),
            ("/%4", Err(PathError::BadEncoding)),
            ("/a\\b", Ok("/a\\b")),
        ];
        for (target, want) in table {
            assert_eq!(
                normalise(target, false).as_deref(),
                want.as_ref().map(|s| *s),
                "{target}"
            );
        }
    }

    #[test]
    fn strict_mode_refuses_what_origins_read_differently() {
        let table: &[(&str, PathError)] = &[
            ("/a\\admin", PathError::Backslash),
            ("/x%2fadmin", PathError::EncodedSlash),
            ("/x%5Cadmin", PathError::EncodedSlash),
            ("/%2561dmin", PathError::DoubleEncoding),
            ("/a%00b", PathError::Control),
            ("/a%C3%A9", PathError::Control),
            ("//host/admin", PathError::NetworkPath),
            ("//admin", PathError::NetworkPath),
        ];
        for (target, want) in table {
            assert_eq!(normalise(target, true), Err(*want), "{target}");
            assert!(
                normalise(target, false).is_ok(),
                "{target} passes without strict"
            );
        }
        assert_eq!(
            normalise("/%61dmin/x%20y", true).as_deref(),
            Ok("/admin/x%20y")
        );
        assert_eq!(normalise("/100%25", true).as_deref(), Ok("/100%25"));
    }

    #[test]
    fn separators_read_as_an_origin_may_decode_them() {
        let table: &[(&str, Option<Result<&str, PathError>>)] = &[
            ("/admin", None),
            ("/a%20b?x=%2F", None),
            ("/%2fadmin", Some(Ok("/admin"))),
            ("/%2Fadmin", Some(Ok("/admin"))),
            ("/x%2f..%2fadmin", Some(Ok("/admin"))),
            ("/x%5C..%5Cadmin", Some(Ok("/admin"))),
            ("/x\\..\\admin", Some(Ok("/admin"))),
            ("/files/a%2Fb", Some(Ok("/files/a/b"))),
            ("/caf\u{e9}%2fx", Some(Ok("/caf\u{e9}/x"))),
            ("/%2f..%2f..%2fetc", Some(Err(PathError::AboveRoot))),
            ("/%2", None),
        ];
        for (target, want) in table {
            let got = as_separators_decoded(target);
            let got = got.as_ref().map(|r| r.as_deref().map_err(|e| *e));
            assert_eq!(got, *want, "{target}");
        }
    }

    #[test]
    fn strict_prefixes_ignore_case() {
        assert!(covers_any_case("/admin", "/ADMIN"));
        assert!(covers_any_case("/admin", "/Admin/x"));
        assert!(!covers_any_case("/admin", "/adm"));
        assert!(!covers_any_case("/admin", "/x/admin"));
    }

    #[test]
    fn prefixes_match_like_nginx_locations() {
        assert!(covers("/admin", "/admin"));
        assert!(covers("/admin", "/admin/x"));
        assert!(covers("/admin", "/administrator"));
        assert!(!covers("/admin/", "/admin"));
        assert!(!covers("/admin", "/Admin"));
    }
}
