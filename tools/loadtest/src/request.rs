//! The one request every worker sends: built once per run, written as one buffer.

use std::str::FromStr;

/// A `-H "Name: value"` request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

impl FromStr for Header {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, value) = s
            .split_once(':')
            .ok_or_else(|| format!("header {s:?} is not \"Name: value\""))?;
        let name = name.trim();
        let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(is_tchar) {
            return Err(format!("header name {name:?} is not a valid token"));
        }
        // A CR or LF in a value would let a flag inject extra headers or requests.
        if value.contains(['\r', '\n']) {
            return Err(format!("header {name} has a line break in its value"));
        }
        Ok(Header {
            name: name.to_string(),
            value: value.trim().to_string(),
        })
    }
}

/// Builds the bytes of the one request every worker sends, once, before the run.
///
/// Defaults (`Host`, `User-Agent`, `Accept`, `Content-Length`, `Connection`) give way to a
/// user header of the same name, so `-H "Host: example"` does what it says.
pub fn build_request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[Header],
    body: &[u8],
    keepalive: bool,
) -> Vec<u8> {
    let user_has = |name: &str| headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    let mut add = |name: &str, value: &str| {
        if !user_has(name) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    };
    add("Host", host);
    add(
        "User-Agent",
        concat!("revproxy-loadtest/", env!("CARGO_PKG_VERSION")),
    );
    add("Accept", "*/*");
    let method_has_body = ["POST", "PUT", "PATCH"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method));
    if !body.is_empty() || method_has_body {
        add("Content-Length", &body.len().to_string());
    }
    if !keepalive {
        add("Connection", "close");
    }
    for h in headers {
        head.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_build() {
        let h: Header = "X-Key:  secret ".parse().expect("valid header");
        assert_eq!((h.name.as_str(), h.value.as_str()), ("X-Key", "secret"));
        assert!("no colon".parse::<Header>().is_err());
        assert!("Bad Name: x".parse::<Header>().is_err());
        assert!("X: a\r\nInjected: b".parse::<Header>().is_err());

        let host = Header {
            name: "host".into(),
            value: "example".into(),
        };
        let req = build_request("POST", "127.0.0.1:8080", "/p", &[host], b"abc", false);
        let text = String::from_utf8(req).expect("ascii");
        assert!(text.starts_with("POST /p HTTP/1.1\r\n"));
        assert!(text.contains("host: example\r\n") && !text.contains("Host: 127"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nabc"));
    }
}
