//! `[compression]` in the configuration file, and the settings it gives.
//!
//! ```toml
//! [compression]
//! enabled = true
//! prefer = ["br", "gzip", "deflate"]   # offered codings, best first (ties in q go to the first)
//! types = ["text/*", "application/json"]  # media types compressed ("*" for all)
//! min_length = 256                     # a smaller Content-Length is sent as it is
//! gzip_level = 6                       # 1 to 9, for gzip and deflate
//! brotli_quality = 4                   # 0 to 11
//! brotli_window = 19                   # log2 of brotli's window, 10 to 24
//! ```

use serde::Deserialize;
use toml::Spanned;

use super::encoder::{Coding, Levels};
use crate::config::SectionError;

/// `[compression]` as written; every key optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionSection {
    pub enabled: bool,
    pub prefer: Vec<Spanned<String>>,
    pub types: Vec<Spanned<String>>,
    pub min_length: u64,
    pub gzip_level: Spanned<u32>,
    pub brotli_quality: Spanned<u32>,
    pub brotli_window: Spanned<u32>,
}

/// zlib's own default, and nginx's usual `gzip_comp_level` in guides: most of level 9's ratio
/// for about half its time.
pub const DEFAULT_GZIP_LEVEL: u32 = 6;
/// Quality 4 is brotli's fastest quality that still beats gzip 6 on text for a similar
/// CPU cost; from 5 on it switches to slower matchers, and 10 to 11 are for precompressing
/// static files (a hundred times slower). The `brotli_quality` knob lets a measurement say
/// otherwise.
pub const DEFAULT_BROTLI_QUALITY: u32 = 4;
/// 512 KiB, ngx_brotli's default: the window is memory held per response being compressed,
/// and brotli's own default (4 MiB) is a lot for many concurrent responses.
pub const DEFAULT_BROTLI_WINDOW: u32 = 19;
/// Below this, the compressed body plus the coding's framing saves little or nothing (a
/// gzip header and trailer alone are 18 bytes), and costs the CPU anyway.
pub const DEFAULT_MIN_LENGTH: u64 = 256;
pub const DEFAULT_PREFER: &[Coding] = &[Coding::Brotli, Coding::Gzip, Coding::Deflate];
/// nginx's `gzip_types` as commonly configured, with every `text/*`: the formats that are
/// text, or compress like text. Images, audio, video and archives are compressed already.
pub const DEFAULT_TYPES: &[&str] = &[
    "text/*",
    "application/json",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/ld+json",
    "application/manifest+json",
    "application/geo+json",
    "application/problem+json",
    "application/x-ndjson",
    "application/wasm",
    "application/vnd.ms-fontobject",
    "application/x-font-ttf",
    "font/otf",
    "font/ttf",
    "image/svg+xml",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "image/bmp",
];

impl Default for CompressionSection {
    fn default() -> CompressionSection {
        let unplaced = |s: &str| Spanned::new(0..0, s.to_owned());
        CompressionSection {
            enabled: false,
            prefer: DEFAULT_PREFER.iter().map(|c| unplaced(c.token())).collect(),
            types: DEFAULT_TYPES.iter().map(|t| unplaced(t)).collect(),
            min_length: DEFAULT_MIN_LENGTH,
            gzip_level: Spanned::new(0..0, DEFAULT_GZIP_LEVEL),
            brotli_quality: Spanned::new(0..0, DEFAULT_BROTLI_QUALITY),
            brotli_window: Spanned::new(0..0, DEFAULT_BROTLI_WINDOW),
        }
    }
}

/// Which media types are compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeRule {
    /// `text/html`.
    Exact(String),
    /// `text/*`: the type part, with its slash (`text/`).
    Prefix(String),
    /// `*`: every response that has a Content-Type.
    Any,
}

impl TypeRule {
    fn parse(text: &str) -> Result<TypeRule, String> {
        let text = text.trim().to_ascii_lowercase();
        if text == "*" || text == "*/*" {
            return Ok(TypeRule::Any);
        }
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        match text.split_once('/') {
            Some((kind, "*")) if valid(kind) => Ok(TypeRule::Prefix(format!("{kind}/"))),
            Some((kind, sub)) if valid(kind) && valid(sub) => Ok(TypeRule::Exact(text)),
            _ => Err(format!(
                "'{text}' is not a media type (type/subtype, type/*, or *)"
            )),
        }
    }

    /// Whether `media_type` (lower-case, without parameters) is compressed.
    pub fn matches(&self, media_type: &str) -> bool {
        match self {
            TypeRule::Exact(t) => t == media_type,
            TypeRule::Prefix(p) => media_type.starts_with(p.as_str()),
            TypeRule::Any => true,
        }
    }
}

/// The compression settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressSettings {
    pub enabled: bool,
    /// The codings offered, best first.
    pub prefer: Vec<Coding>,
    pub types: Vec<TypeRule>,
    pub min_length: u64,
    pub levels: Levels,
}

impl Default for CompressSettings {
    /// The defaults of `[compression]`, switched on: what a program that compresses without
    /// a file starts from (tests, `--demo`).
    fn default() -> CompressSettings {
        CompressSettings {
            enabled: true,
            prefer: DEFAULT_PREFER.to_vec(),
            types: DEFAULT_TYPES
                .iter()
                .filter_map(|t| TypeRule::parse(t).ok())
                .collect(),
            min_length: DEFAULT_MIN_LENGTH,
            levels: Levels {
                gzip: DEFAULT_GZIP_LEVEL,
                brotli: DEFAULT_BROTLI_QUALITY,
                brotli_window: DEFAULT_BROTLI_WINDOW,
            },
        }
    }
}

impl CompressSettings {
    /// One line for the startup log and `-t`: `compression br, gzip (gzip 6, br 4, min 256 bytes)`.
    pub fn summary(&self) -> String {
        let codings: Vec<&str> = self.prefer.iter().map(|c| c.token()).collect();
        format!(
            "compression {} (gzip {}, br {}, min {} bytes)",
            codings.join(", "),
            self.levels.gzip,
            self.levels.brotli,
            self.min_length
        )
    }
}

/// Checks `[compression]`; errors name the key's place in the file.
pub fn check(section: &CompressionSection) -> Result<CompressSettings, SectionError> {
    let err = SectionError::new;
    let at = |span: std::ops::Range<usize>, message: String| err(Some(span), message);
    let mut prefer = Vec::new();
    for entry in &section.prefer {
        let coding =
            Coding::from_token(&entry.get_ref().to_ascii_lowercase()).ok_or_else(|| {
                at(
                    entry.span(),
                    format!(
                        "prefer: unknown coding '{}' (br, gzip, deflate)",
                        entry.get_ref()
                    ),
                )
            })?;
        if prefer.contains(&coding) {
            return Err(at(
                entry.span(),
                format!("prefer: '{}' is listed twice", entry.get_ref()),
            ));
        }
        prefer.push(coding);
    }
    let mut types = Vec::new();
    for entry in &section.types {
        types.push(
            TypeRule::parse(entry.get_ref())
                .map_err(|e| at(entry.span(), format!("types: {e}")))?,
        );
    }
    let range = |value: &Spanned<u32>, name: &str, low: u32, high: u32| {
        let v = *value.get_ref();
        if (low..=high).contains(&v) {
            Ok(v)
        } else {
            Err(at(
                value.span(),
                format!("{name} must be from {low} to {high}"),
            ))
        }
    };
    let levels = Levels {
        gzip: range(&section.gzip_level, "gzip_level", 1, 9)?,
        brotli: range(&section.brotli_quality, "brotli_quality", 0, 11)?,
        brotli_window: range(&section.brotli_window, "brotli_window", 10, 24)?,
    };
    Ok(CompressSettings {
        enabled: section.enabled,
        prefer,
        types,
        min_length: section.min_length,
        levels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const UPSTREAM: &str = "[upstreams.app]\nservers = [\"127.0.0.1:8000\"]\n";

    /// `text` after an upstream section, through the whole configuration checker.
    fn parse(text: &str) -> Result<CompressSettings, String> {
        crate::config::parse(&format!("{UPSTREAM}{text}"), Path::new("p.toml"))
            .map(|s| s.compression)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid_and_the_section_is_off_unless_enabled() {
        let s = parse("").unwrap();
        assert_eq!(s, parse("[compression]\n").unwrap());
        assert!(!s.enabled);
        assert_eq!(
            CompressSettings { enabled: true, ..s },
            CompressSettings::default()
        );
    }

    #[test]
    fn keys_are_read_and_checked_with_their_place() {
        let s = parse(
            "[compression]\nenabled = true\nprefer = [\"gzip\", \"BR\"]\ntypes = [\"text/html\", \"image/*\"]\nmin_length = 0\ngzip_level = 1\nbrotli_quality = 11\n",
        )
        .unwrap();
        assert_eq!(s.prefer, vec![Coding::Gzip, Coding::Brotli]);
        assert_eq!(
            s.types,
            vec![
                TypeRule::Exact("text/html".into()),
                TypeRule::Prefix("image/".into())
            ]
        );
        assert_eq!((s.min_length, s.levels.gzip, s.levels.brotli), (0, 1, 11));
        assert_eq!(
            s.summary(),
            "compression gzip, br (gzip 1, br 11, min 0 bytes)"
        );
        for (bad, want) in [
            (
                "prefer = [\"zstd\"]",
                "p.toml:4:11: prefer: unknown coding 'zstd'",
            ),
            (
                "prefer = [\"gzip\", \"gzip\"]",
                "p.toml:4:19: prefer: 'gzip' is listed twice",
            ),
            (
                "types = [\"html\"]",
                "p.toml:4:10: types: 'html' is not a media type",
            ),
            ("types = [\"text/\"]", "is not a media type"),
            (
                "gzip_level = 0",
                "p.toml:4:14: gzip_level must be from 1 to 9",
            ),
            ("brotli_quality = 12", "brotli_quality must be from 0 to 11"),
            ("brotli_window = 30", "brotli_window must be from 10 to 24"),
            ("level = 3", "unknown field `level`"),
        ] {
            let err = parse(&format!("[compression]\n{bad}\n")).unwrap_err();
            assert!(err.contains(want), "{bad:?}: {err}");
        }
    }

    #[test]
    fn type_rules_match_media_types() {
        let html = TypeRule::parse("Text/HTML").unwrap();
        assert!(html.matches("text/html") && !html.matches("text/css"));
        let text = TypeRule::parse("text/*").unwrap();
        assert!(text.matches("text/css") && !text.matches("textual/css"));
        assert!(TypeRule::parse("*").unwrap().matches("video/mp4"));
    }
}
