//! `[cache]` in the configuration file, and the settings it gives.

use std::time::Duration;

use serde::Deserialize;

/// `[cache]` as written (every key optional; the cache is off unless `enabled = true` or
/// stage 7's `-c`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSection {
    pub enabled: bool,
    /// Bytes held in all (bodies and stored heads).
    pub max_size: u64,
    /// A larger response is streamed through and not kept.
    pub max_entry_size: u64,
    pub max_entries: usize,
    /// Seconds of freshness for responses that carry no freshness information at all
    /// (nginx's `proxy_cache_valid`); 0 is off.
    pub default_ttl: u64,
    /// Longest a request waits for a concurrent miss of the same URL (nginx's
    /// `proxy_cache_lock_timeout`).
    pub lock_timeout_ms: u64,
    /// Targeted cache-control fields this cache obeys, first present and valid one wins, in
    /// place of `Cache-Control` and `Expires` (RFC 9213); `[]` turns them off.
    pub targeted_fields: Vec<String>,
    /// Whether those fields go on to the client. RFC 9213 section 3: a cache that uses them
    /// typically forwards them for the caches of its class further down, and MAY remove
    /// them when configured to, because nothing downstream uses them.
    pub forward_targeted: bool,
    /// This cache's device token for `Surrogate-Control` (the W3C Edge Architecture note),
    /// announced to origins in `Surrogate-Capability` (Squid's `httpd_accel_surrogate_id`);
    /// `""` turns `Surrogate-Control` off (then it is neither read nor removed).
    pub surrogate_id: String,
}

pub const DEFAULT_SURROGATE_ID: &str = "revproxy";
pub const DEFAULT_MAX_SIZE: u64 = 64 * 1024 * 1024;
pub const DEFAULT_MAX_ENTRY_SIZE: u64 = 1024 * 1024;
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

fn default_targeted_fields() -> Vec<String> {
    super::targeted::DEFAULT_FIELDS
        .iter()
        .map(|f| (*f).to_owned())
        .collect()
}

impl Default for CacheSection {
    fn default() -> CacheSection {
        CacheSection {
            enabled: false,
            max_size: DEFAULT_MAX_SIZE,
            max_entry_size: DEFAULT_MAX_ENTRY_SIZE,
            max_entries: DEFAULT_MAX_ENTRIES,
            default_ttl: 0,
            lock_timeout_ms: DEFAULT_LOCK_TIMEOUT.as_millis() as u64,
            targeted_fields: default_targeted_fields(),
            forward_targeted: true,
            surrogate_id: DEFAULT_SURROGATE_ID.to_owned(),
        }
    }
}

/// The cache's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    pub enabled: bool,
    pub max_size: u64,
    pub max_entry_size: u64,
    pub max_entries: usize,
    pub default_ttl: Option<Duration>,
    pub lock_timeout: Duration,
    pub targeted_fields: Vec<String>,
    pub forward_targeted: bool,
    pub surrogate_id: String,
}

impl Default for CacheSettings {
    fn default() -> CacheSettings {
        // The section's defaults are valid by construction.
        check(&CacheSection::default()).unwrap_or(CacheSettings {
            enabled: false,
            max_size: DEFAULT_MAX_SIZE,
            max_entry_size: DEFAULT_MAX_ENTRY_SIZE,
            max_entries: DEFAULT_MAX_ENTRIES,
            default_ttl: None,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            targeted_fields: default_targeted_fields(),
            forward_targeted: true,
            surrogate_id: DEFAULT_SURROGATE_ID.to_owned(),
        })
    }
}

/// Checks `[cache]`; the message names the key.
pub fn check(section: &CacheSection) -> Result<CacheSettings, String> {
    if section.max_size == 0 || section.max_entries == 0 {
        return Err("[cache] max_size and max_entries must be at least 1".to_owned());
    }
    if section.max_entry_size == 0 || section.max_entry_size > section.max_size {
        return Err("[cache] max_entry_size must be from 1 to max_size".to_owned());
    }
    if section.lock_timeout_ms > 60_000 {
        return Err("[cache] lock_timeout_ms must be at most 60000".to_owned());
    }
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if let Some(bad) = section
        .targeted_fields
        .iter()
        .find(|f| f.is_empty() || !f.bytes().all(tchar))
    {
        return Err(format!(
            "[cache] targeted_fields: {bad:?} is not a field name"
        ));
    }
    if !section.surrogate_id.bytes().all(tchar) {
        return Err(format!(
            "[cache] surrogate_id: {:?} is not a token",
            section.surrogate_id
        ));
    }
    Ok(CacheSettings {
        enabled: section.enabled,
        max_size: section.max_size,
        max_entry_size: section.max_entry_size,
        max_entries: section.max_entries,
        default_ttl: (section.default_ttl > 0).then(|| Duration::from_secs(section.default_ttl)),
        lock_timeout: Duration::from_millis(section.lock_timeout_ms),
        targeted_fields: section.targeted_fields.clone(),
        forward_targeted: section.forward_targeted,
        surrogate_id: section.surrogate_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use std::path::Path;

    const UPSTREAM: &str = "[upstreams.app]\nservers = [\"127.0.0.1:8000\"]\n";

    #[test]
    fn the_cache_section_is_read_checked_and_off_by_default() {
        let s = parse(UPSTREAM, Path::new("p.toml")).unwrap();
        assert!(!s.cache.enabled);
        assert_eq!(s.cache.default_ttl, None);
        let text = format!("{UPSTREAM}[cache]\nenabled = true\nmax_size = 1000\nmax_entry_size = 100\ndefault_ttl = 30\n");
        let s = parse(&text, Path::new("p.toml")).unwrap();
        assert!(s.cache.enabled);
        assert_eq!((s.cache.max_size, s.cache.max_entry_size), (1000, 100));
        assert_eq!(
            s.cache.default_ttl,
            Some(std::time::Duration::from_secs(30))
        );
        assert_eq!(s.cache.targeted_fields, ["CDN-Cache-Control"]);
        assert!(s.cache.forward_targeted);
        assert_eq!(s.cache.surrogate_id, "revproxy");
        let text = format!("{UPSTREAM}[cache]\ntargeted_fields = [\"Revproxy-Cache-Control\", \"CDN-Cache-Control\"]\n");
        let s = parse(&text, Path::new("p.toml")).unwrap();
        assert_eq!(
            s.cache.targeted_fields,
            ["Revproxy-Cache-Control", "CDN-Cache-Control"]
        );
        for (bad, want) in [
            ("max_sise = 1\n", "p.toml:4:1: unknown field `max_sise`"),
            (
                "max_size = 10\nmax_entry_size = 100\n",
                "max_entry_size must be from 1 to max_size",
            ),
            ("max_entries = 0\n", "at least 1"),
            ("targeted_fields = [\"CDN Cache\"]\n", "is not a field name"),
            (
                "surrogate_id = \"a b\"\n",
                "surrogate_id: \"a b\" is not a token",
            ),
        ] {
            let err = parse(&format!("{UPSTREAM}[cache]\n{bad}"), Path::new("p.toml")).unwrap_err();
            assert!(err.to_string().contains(want), "{bad:?}: {err}");
        }
    }
}
