//! `[admin]` in the configuration file: where the admin listener listens, and the key it
//! asks for.
//!
//! The listener shows every backend's address and state and the traffic's shape, so it
//! listens on loopback by default, and an address other than loopback is refused unless an
//! `api_key` is set: exposing it must be a decision, not a typo. (A warning would be
//! forgotten in a log; an error at `-t` is not.)

use serde::Deserialize;
use toml::Spanned;

use crate::access::keys::{parse_value, KeyStore};
use crate::config::SectionError;

/// The admin listener's default address (Envoy's admin port is 9901 too).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9901";

/// `[admin]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    #[serde(default = "default_listen")]
    pub listen: Spanned<String>,
    /// Asked for as `X-API-Key: KEY` or `Authorization: Bearer KEY`; `sha256:HEX` keeps only
    /// its digest in the file.
    pub api_key: Option<Spanned<String>>,
}

fn default_listen() -> Spanned<String> {
    Spanned::new(0..0, DEFAULT_LISTEN.to_owned())
}

/// `[admin]`, checked.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: String,
    /// The key every request must present; `None`: none is asked for (loopback only).
    pub api_key: Option<KeyStore>,
}

/// Checks `[admin]`: the address resolves, and is loopback unless a key is set.
pub fn check(section: Option<AdminSection>) -> Result<Option<AdminSettings>, SectionError> {
    let err = SectionError::new;
    let Some(section) = section else {
        return Ok(None);
    };
    let listen = &section.listen;
    let addr = crate::upstream::resolve(listen.get_ref())
        .map_err(|e| err(Some(listen.span()), format!("[admin] listen: {e}")))?;
    let api_key = match &section.api_key {
        None => None,
        Some(key) => {
            let key = parse_value("admin", key.get_ref())
                .map_err(|e| err(Some(key.span()), format!("[admin] api_key: {e}")))?;
            Some(KeyStore::new(vec![key]))
        }
    };
    if !addr.ip().is_loopback() && api_key.is_none() {
        return Err(err(
            Some(listen.span()),
            format!(
                "[admin] listen = \"{}\" is not a loopback address: set api_key to expose the admin listener",
                listen.get_ref()
            ),
        ));
    }
    Ok(Some(AdminSettings {
        listen: listen.get_ref().clone(),
        api_key,
    }))
}
