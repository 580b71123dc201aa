//! `[upgrades]`: as written (a serde section, every key optional) and checked into the relay's
//! [`UpgradeConfig`]. Here, not in the relay, so the relay knows nothing of configuration
//! files.

use std::time::Duration;

use serde::Deserialize;

use crate::relay::upgrade::{UpgradeConfig, DEFAULT_MAX_TUNNELS, DEFAULT_TUNNEL_IDLE};

/// Largest `max_tunnels`: each tunnel is two threads and two descriptors.
pub const MAX_MAX_TUNNELS: usize = 16_384;
/// Longest tunnel idle timeout: a day.
pub const MAX_TUNNEL_IDLE_MS: u64 = 86_400_000;

/// `[upgrades]` as written in the configuration file, every key optional:
///
/// ```toml
/// [upgrades]
/// enabled = false              # pass WebSocket (and other upgrades, never h2c) upstream
/// max_tunnels = 256            # open at once; past it an upgrade request gets 503
/// idle_timeout_ms = 60000      # no byte either way this long: both sides closed
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpgradeSection {
    pub enabled: bool,
    pub max_tunnels: usize,
    pub idle_timeout_ms: u64,
}

impl Default for UpgradeSection {
    fn default() -> UpgradeSection {
        UpgradeSection {
            enabled: false,
            max_tunnels: DEFAULT_MAX_TUNNELS,
            idle_timeout_ms: DEFAULT_TUNNEL_IDLE.as_millis() as u64,
        }
    }
}

/// Checks `[upgrades]`; the message names the key.
pub fn check(section: &UpgradeSection) -> Result<UpgradeConfig, String> {
    if !(1..=MAX_MAX_TUNNELS).contains(&section.max_tunnels) {
        return Err(format!(
            "[upgrades] max_tunnels must be from 1 to {MAX_MAX_TUNNELS}"
        ));
    }
    if !(1..=MAX_TUNNEL_IDLE_MS).contains(&section.idle_timeout_ms) {
        return Err(format!(
            "[upgrades] idle_timeout_ms must be from 1 to {MAX_TUNNEL_IDLE_MS}"
        ));
    }
    Ok(UpgradeConfig {
        allow: section.enabled,
        max_tunnels: section.max_tunnels,
        idle_timeout: Duration::from_millis(section.idle_timeout_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_checked_key_by_key() {
        let section = |enabled, max_tunnels, idle_timeout_ms| UpgradeSection {
            enabled,
            max_tunnels,
            idle_timeout_ms,
        };
        assert_eq!(
            check(&UpgradeSection::default()),
            Ok(UpgradeConfig::default())
        );
        /// The section, then the settings (allow, max_tunnels, idle ms) or the key refused.
        type Case = (UpgradeSection, Result<(bool, usize, u64), &'static str>);
        let cases: &[Case] = &[
            (section(true, 1, 1), Ok((true, 1, 1))),
            (
                section(true, 16_384, 86_400_000),
                Ok((true, 16_384, 86_400_000)),
            ),
            (section(true, 0, 1000), Err("max_tunnels")),
            (section(true, 16_385, 1000), Err("max_tunnels")),
            (section(false, 8, 0), Err("idle_timeout_ms")),
            (section(false, 8, 86_400_001), Err("idle_timeout_ms")),
        ];
        for (input, want) in cases {
            let got = check(input);
            match want {
                Ok((allow, max, idle)) => assert_eq!(
                    got,
                    Ok(UpgradeConfig {
                        allow: *allow,
                        max_tunnels: *max,
                        idle_timeout: Duration::from_millis(*idle),
                    }),
                    "{input:?}"
                ),
                Err(key) => {
                    let err = got.expect_err("refused");
                    assert!(err.contains(key) && err.contains("[upgrades]"), "{err}");
                }
            }
        }
    }
}
