//! The one error every configuration section's check returns: where in the file (a byte span
//! of the text, when the error has a place) and what is wrong. `config::parse` turns it into a
//! [`ConfigError`](super::ConfigError) with the file name, line and column. A leaf module, so a
//! section (`access::config`, `route::config`...) can name it without importing the config
//! wing that calls it back.

use std::ops::Range;

/// What a section's check found wrong, and where (byte offsets into the file's text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionError {
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl SectionError {
    /// An error at `span` of the file, or of the file as a whole when `None`.
    pub fn new(span: Option<Range<usize>>, message: String) -> SectionError {
        SectionError { span, message }
    }

    /// An error at a known place in the file.
    pub fn at(span: Range<usize>, message: String) -> SectionError {
        SectionError::new(Some(span), message)
    }
}

/// A bare message has no place in the file: the section names the key in its words.
impl From<String> for SectionError {
    fn from(message: String) -> SectionError {
        SectionError::new(None, message)
    }
}
