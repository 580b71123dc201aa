//! A stored variant chosen by its language: a response in one language (`Content-Language:
//! de`) for a request whose `Accept-Language` clearly prefers that language, though the
//! request's list is not the one the variant was stored for.
//!
//! RFC 9111 section 4.1 lets a cache reuse a variant when the selecting fields "match", and
//! leaves a cache free to know more about a field than its bytes. A request whose single most
//! preferred range is `de` (`fr;q=0.5, de;q=1.0`) would be answered in German by an origin
//! that answered `en, de` in German: it chose German among the languages it has, and the
//! request ranks German above everything else. Only that case is taken, as conservatively as
//! it can be read: a wildcard, a tie for the top, a weight of 0, a response in several
//! languages or none, or a list that does not parse, and the bytes alone decide as before.

use crate::http::head::Headers;
use crate::http::weight::qvalue;
use crate::http::{RequestHead, ResponseHead};

/// Whether `request`'s `Accept-Language` ranks the one language of `response` (its
/// `Content-Language`) strictly above every other range: the origin would choose it again.
pub fn prefers(request: &RequestHead, response: &ResponseHead) -> bool {
    match (content_language(response), top_range(request)) {
        (Some(tag), Some(range)) => tag.eq_ignore_ascii_case(&range),
        _ => false,
    }
}

/// The language tag of a response in exactly one language: one `Content-Language` line that
/// holds one tag.
fn content_language(response: &ResponseHead) -> Option<String> {
    let mut lines = response.values("content-language");
    let line = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    let tag = std::str::from_utf8(line).ok()?.trim();
    let one = !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    one.then(|| tag.to_owned())
}

/// The range of `Accept-Language` (all its lines) whose weight is above every other's and
/// above 0, if there is one and it is not the wildcard. `None` when the field is absent or
/// does not parse (RFC 9110 section 12.5.4: `language-range [ weight ]`).
fn top_range(request: &RequestHead) -> Option<String> {
    let mut best: Option<(u16, String)> = None;
    let mut tied = false;
    for line in request.values("accept-language") {
        for element in std::str::from_utf8(line).ok()?.split(',') {
            let mut parts = element.split(';');
            let range = parts.next().unwrap_or("").trim();
            if range.is_empty() {
                if parts.next().is_some() {
                    return None; // a weight without a range
                }
                continue; // an empty list element, which the list syntax allows
            }
            if !range
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
            {
                return None;
            }
            let q = match parts.next() {
                None => 1000,
                Some(weight) => {
                    let (name, value) = weight.split_once('=')?;
                    if !name.trim().eq_ignore_ascii_case("q") {
                        return None;
                    }
                    qvalue(value.trim().as_bytes())?
                }
            };
            if parts.next().is_some() {
                return None; // only one weight, and no other parameter
            }
            match &best {
                Some((top, _)) if q < *top => {}
                Some((top, _)) if q == *top => tied = true,
                _ => {
                    best = Some((q, range.to_owned()));
                    tied = false;
                }
            }
        }
    }
    let (q, range) = best?;
    (!tied && q > 0 && range != "*").then_some(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_heads;

    #[test]
    fn the_one_language_preferred_above_all_others_selects_a_response_in_it() {
        // (Accept-Language lines, Content-Language lines, selects)
        let table: &[(&[&str], &[&str], bool)] = &[
            // The public suite's case.
            (&["fr;q=0.5, de;q=1.0"], &["de"], true),
            (&["de"], &["de"], true),
            (&["DE-ch, en;q=0.9"], &["de-CH"], true),
            (&["en;q=0.1", "de;q=0.2"], &["de"], true),
            (&["de;Q=0.5 , ,fr;q=0.4"], &["de"], true),
            (&["de;q=1.000, fr;q=0.999"], &["de"], true),
            // Another language on top, or none at all.
            (&["en, de;q=0.9"], &["de"], false),
            (&["fr;q=0.5, de;q=1.0"], &["en"], false),
            (&[], &["de"], false),
            // A tie for the top: the origin chose among them by a rule we do not know.
            (&["en, de"], &["de"], false),
            (&["de;q=0.5, en;q=0.5"], &["de"], false),
            // The wildcard, or nothing acceptable.
            (&["*, de;q=0.5"], &["de"], false),
            (&["*"], &["de"], false),
            (&["de;q=0"], &["de"], false),
            // Only an exact tag, not a prefix (basic filtering would be the origin's choice).
            (&["de"], &["de-DE"], false),
            (&["de-DE"], &["de"], false),
            // A response in several languages, or in none.
            (&["de"], &["de, en"], false),
            (&["de"], &["de", "en"], false),
            (&["de"], &[], false),
            (&["de"], &[""], false),
            // A list that does not parse.
            (&["de;q=2"], &["de"], false),
            (&["de;q=0.5;q=0.4"], &["de"], false),
            (&["de;level=1"], &["de"], false),
            (&[";q=0.5, de"], &["de"], false),
            (&["de\"x\""], &["de"], false),
        ];
        for (accept, content, want) in table {
            let accept: Vec<(&str, &str)> =
                accept.iter().map(|v| ("Accept-Language", *v)).collect();
            let content: Vec<(&str, &str)> =
                content.iter().map(|v| ("Content-Language", *v)).collect();
            let request = test_heads::request("GET", "/", &accept);
            let response = test_heads::response(200, &content);
            assert_eq!(
                prefers(&request, &response),
                *want,
                "{accept:?} {content:?}"
            );
        }
    }
}
