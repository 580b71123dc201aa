//! API keys: where they come from (the config, a file, an environment variable; never a flag,
//! which `ps` shows to every user), how they are kept (SHA-256 digests only, so a key read
//! from the config is held like a stored digest and no key is in memory for a log to print),
//! and how a presented key is checked (constant time).
//!
//! The course's proxy compared `X-API-Key` with `strcmp`, which returns at the first differing
//! byte: the time of a wrong answer says how many leading bytes were right. Here the presented
//! key is hashed first, so what is compared is 32 bytes whatever its length, and the digests
//! are compared with `subtle::ConstantTimeEq` against every stored key, without stopping at a
//! match, so the time says neither how much of a key was right nor which key it was.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// One key: its name (for logs and the limiter) and the SHA-256 of its value.
#[derive(Clone)]
pub struct ApiKey {
    pub name: String,
    digest: [u8; 32],
}

/// Never shows the digest: a digest of a short key can be searched for.
impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    pub fn from_value(name: &str, value: &str) -> ApiKey {
        ApiKey {
            name: name.to_owned(),
            digest: Sha256::digest(value.as_bytes()).into(),
        }
    }

    /// `hex` is 64 hexadecimal digits, as `sha256sum` prints them.
    pub fn from_digest(name: &str, hex: &str) -> Result<ApiKey, KeyError> {
        let hex = hex.trim();
        if hex.len() != 64 {
            return Err(KeyError::BadDigest);
        }
        let mut digest = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| KeyError::BadDigest)?;
            digest[i] = u8::from_str_radix(text, 16).map_err(|_| KeyError::BadDigest)?;
        }
        Ok(ApiKey {
            name: name.to_owned(),
            digest,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// A `sha256:` value that is not 64 hex digits.
    BadDigest,
    /// A line that is not `NAME KEY` or `NAME sha256:HEX`.
    BadLine(usize),
    /// An empty key would let an empty header in.
    Empty,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::BadDigest => f.write_str("a sha256 digest must be 64 hexadecimal digits"),
            KeyError::BadLine(n) => {
                write!(f, "entry {n}: expected `NAME KEY` or `NAME sha256:HEX`")
            }
            KeyError::Empty => f.write_str("a key must not be empty"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Parses a key list: one `NAME KEY` or `NAME sha256:HEX` per line (or per comma, for an
/// environment variable); blank lines and `#` comments are skipped. Errors name the entry,
/// never its value.
pub fn parse_list(text: &str, separators: &[char]) -> Result<Vec<ApiKey>, KeyError> {
    let mut keys = Vec::new();
    for (n, entry) in text.split(separators).enumerate() {
        let entry = entry.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        let Some((name, value)) = entry.split_once(char::is_whitespace) else {
            return Err(KeyError::BadLine(n + 1));
        };
        keys.push(parse_value(name, value.trim())?);
    }
    Ok(keys)
}

/// A key value as written: `sha256:HEX` is a digest, anything else the key itself.
pub fn parse_value(name: &str, value: &str) -> Result<ApiKey, KeyError> {
    if value.is_empty() {
        return Err(KeyError::Empty);
    }
    match value.strip_prefix("sha256:") {
        Some(hex) => ApiKey::from_digest(name, hex),
        None => Ok(ApiKey::from_value(name, value)),
    }
}

/// The configured keys.
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    keys: Vec<ApiKey>,
}

impl KeyStore {
    pub fn new(keys: Vec<ApiKey>) -> KeyStore {
        KeyStore { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The name of the key `presented`, if it is one of ours. Every stored digest is compared,
    /// each in constant time, and the result is chosen without branching on which matched.
    pub fn check(&self, presented: &[u8]) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found: Option<&ApiKey> = None;
        for key in &self.keys {
            let equal: bool = key.digest.ct_eq(&digest).into();
            // Two keys with one digest are refused at load, so at most one matches; the `if`
            // runs for every key either way.
            if equal {
                found = Some(key);
            }
        }
        found.map(|k| k.name.as_str())
    }

    /// Whether two names share a value: a copy-paste error that would make the limiter and
    /// the log attribute one client's traffic to another.
    pub fn duplicate(&self) -> Option<(&str, &str)> {
        for (i, a) in self.keys.iter().enumerate() {
            for b in &self.keys[i + 1..] {
                if a.digest == b.digest {
                    return Some((&a.name, &b.name));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_value_or_digest() {
        // sha256("letmein") as sha256sum prints it.
        let digest = "1c8bfe8f801d79745c4631d09fff36c82aa37fc4cce4fc946683d7b336b63032";
        let store = KeyStore::new(vec![
            ApiKey::from_value("alice", "test-api-key-123"),
            ApiKey::from_digest("bob", digest).unwrap(),
        ]);
        assert_eq!(store.check(b"test-api-key-123"), Some("alice"));
        assert_eq!(store.check(b"letmein"), Some("bob"));
        assert_eq!(store.check(b"test-api-key-124"), None, "last byte differs");
        assert_eq!(store.check(b"test-api-key-12"), None, "a prefix");
        assert_eq!(store.check(b""), None);
    }

    #[test]
    fn lists_parse_and_errors_hide_the_value() {
        let keys = parse_list("# ops\nalice  s3cret\n\nbob sha256:1c8bfe8f801d79745c4631d09fff36c82aa37fc4cce4fc946683d7b336b63032\n", &['\n']).unwrap();
        assert_eq!(keys.len(), 2);
        let err = parse_list("alice\n", &['\n']).unwrap_err();
        assert_eq!(err, KeyError::BadLine(1));
        assert_eq!(
            parse_value("x", "sha256:abc").unwrap_err(),
            KeyError::BadDigest
        );
        let keys = parse_list("a one,b two", &['\n', ',']).unwrap();
        assert_eq!(KeyStore::new(keys).check(b"two"), Some("b"));
        let debug = format!("{:?}", ApiKey::from_value("alice", "s3cret"));
        assert!(
            !debug.contains("s3cret") && debug.contains("alice"),
            "{debug}"
        );
    }

    #[test]
    fn duplicates_are_found() {
        let store = KeyStore::new(vec![
            ApiKey::from_value("a", "same"),
            ApiKey::from_value("b", "same"),
        ]);
        assert_eq!(store.duplicate(), Some(("a", "b")));
    }
}
