//! Targeted cache control (RFC 9213): `CDN-Cache-Control`, and any other field an operator
//! names for this cache, parsed as a Structured Field Dictionary (RFC 8941 section 3.2).
//!
//! A reverse-proxy cache is the cache such fields target. The first field of the configured
//! list that is present and valid replaces `Cache-Control` and `Expires` for this cache (RFC
//! 9213 section 2.1): its `max-age` wins over `Cache-Control: no-store`, its `no-store` over a
//! fresh `Cache-Control`. A field that does not parse as a dictionary, or parses to an empty
//! one, is ignored as if absent.
//!
//! On the way out (RFC 9213 section 3): a cache that uses such a field typically forwards it,
//! so that caches of its class further down use it too, and MAY remove it when configured to
//! because nothing downstream does. So the fields of the list go on to the client unless
//! `[cache] forward_targeted = false`, which takes them off misses and hits alike (the
//! stored head keeps them, to read a `304` that refreshes it). A targeted field not on the
//! list is passed through whatever the setting, and changes nothing here (section 2.1).

use std::time::Duration;

use super::control::ResponseDirectives;
use super::surrogate;
use crate::http::head::Headers;

/// The largest delta-seconds value a cache must handle (RFC 9111 section 1.2.2).
const MAX_DELTA: i64 = 1 << 31;

/// The default list: the field RFC 9213 section 3 defines for CDN caches.
pub const DEFAULT_FIELDS: &[&str] = &["CDN-Cache-Control"];

/// A dictionary member's value, as far as the cache needs it: the bare item (parameters are
/// parsed for validity, then dropped, as RFC 9213 section 2.2 asks).
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Integer(i64),
    Boolean(bool),
    /// A decimal, string, token, byte sequence or inner list: valid, of no use to a directive
    /// that wants an integer or a boolean.
    Other,
}

/// The directives this cache follows: those of the first targeted field in `fields` that
/// `head` carries valid, else those its `Surrogate-Control` gives the surrogate
/// `surrogate_id` (none when it is empty; see `surrogate`), else its `Cache-Control`. RFC
/// 9213's fields come first: they are the standard, and an origin that sends both wrote the
/// newer one for caches that read it.
pub fn for_this_cache(
    head: &impl Headers,
    fields: &[String],
    surrogate_id: &str,
) -> ResponseDirectives {
    directives(head, fields)
        .or_else(|| {
            (!surrogate_id.is_empty())
                .then(|| surrogate::directives(head, surrogate_id))
                .flatten()
        })
        .unwrap_or_else(|| ResponseDirectives::parse(head))
}

/// The directives of the first field of `fields` (names, in order) that `head` carries as a
/// valid, non-empty dictionary; `None` when there is none, and `Cache-Control` applies.
pub fn directives(head: &impl Headers, fields: &[String]) -> Option<ResponseDirectives> {
    fields.iter().find_map(|name| {
        let lines: Vec<&[u8]> = head.values(name).collect();
        if lines.is_empty() {
            return None;
        }
        // Field lines combine with commas (RFC 9110 section 5.3), as a dictionary's members.
        let joined = lines.join(&b","[..]);
        let members = parse_dictionary(&joined)?;
        (!members.is_empty()).then(|| to_directives(&members))
    })
}

/// Cache-Control semantics for each member; a member whose value has the wrong type (a
/// string `max-age`, a numeric `no-store`) is ignored, as an unknown directive is.
fn to_directives(members: &[(String, Item)]) -> ResponseDirectives {
    let mut d = ResponseDirectives {
        targeted: true,
        ..ResponseDirectives::default()
    };
    let seconds = |item: &Item| match item {
        Item::Integer(n) if *n >= 0 => Some(Duration::from_secs((*n).min(MAX_DELTA) as u64)),
        _ => None,
    };
    for (key, item) in members {
        let flag = matches!(item, Item::Boolean(true));
        match key.as_str() {
            "no-store" => d.no_store |= flag,
            "no-cache" => d.no_cache |= flag,
            "private" => d.private |= flag,
            "public" => d.public |= flag,
            "must-revalidate" => d.must_revalidate |= flag,
            "proxy-revalidate" => d.proxy_revalidate |= flag,
            "must-understand" => d.must_understand |= flag,
            "max-age" => d.max_age = seconds(item).or(d.max_age),
            "s-maxage" => d.s_maxage = seconds(item).or(d.s_maxage),
            "stale-while-revalidate" => d.stale_while_revalidate = seconds(item),
            "stale-if-error" => d.stale_if_error = seconds(item),
            _ => {}
        }
    }
    d
}

/// RFC 8941 section 4.2.2: a dictionary, or `None` if the text is not one. A key given twice
/// keeps its last value, in the place of its first.
fn parse_dictionary(input: &[u8]) -> Option<Vec<(String, Item)>> {
    let mut p = Parser { input, at: 0 };
    p.skip(b" ");
    let mut members: Vec<(String, Item)> = Vec::new();
    // Each turn consumes one member and its comma, or ends the loop.
    while !p.done() {
        let key = p.key()?;
        let item = if p.eat(b'=') {
            p.item_or_inner_list()?
        } else {
            p.parameters()?;
            Item::Boolean(true)
        };
        match members.iter_mut().find(|(k, _)| *k == key) {
            Some(member) => member.1 = item,
            None => members.push((key, item)),
        }
        p.skip(b" \t");
        if p.done() {
            break;
        }
        if !p.eat(b',') {
            return None;
        }
        p.skip(b" \t");
        if p.done() {
            return None; // a trailing comma
        }
    }
    Some(members)
}

struct Parser<'a> {
    input: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.at >= self.input.len()
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let ate = self.peek() == Some(b);
        self.at += usize::from(ate);
        ate
    }

    fn skip(&mut self, bytes: &[u8]) {
        while self.peek().is_some_and(|b| bytes.contains(&b)) {
            self.at += 1;
        }
    }

    /// `key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`
    fn key(&mut self) -> Option<String> {
        let start = self.at;
        if !self
            .peek()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
        {
            return None;
        }
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b))
        {
            self.at += 1;
        }
        Some(String::from_utf8_lossy(&self.input[start..self.at]).into_owned())
    }

    /// `*( ";" *SP key [ "=" bare-item ] )`, checked and dropped.
    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip(b" ");
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    fn item_or_inner_list(&mut self) -> Option<Item> {
        if self.eat(b'(') {
            // An inner list: items separated by spaces, then ")" and parameters.
            loop {
                self.skip(b" ");
                if self.eat(b')') {
                    break;
                }
                self.bare_item()?;
                self.parameters()?;
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return None;
                }
            }
            self.parameters()?;
            return Some(Item::Other);
        }
        let item = self.bare_item()?;
        self.parameters()?;
        Some(item)
    }

    fn bare_item(&mut self) -> Option<Item> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b':' => self.byte_sequence(),
            b'?' => {
                self.at += 1;
                let value = match self.peek()? {
                    b'0' => false,
                    b'1' => true,
                    _ => return None,
                };
                self.at += 1;
                Some(Item::Boolean(value))
            }
            b if b.is_ascii_alphabetic() || b == b'*' => {
                let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b);
                while self.peek().is_some_and(tchar) {
                    self.at += 1;
                }
                Some(Item::Other)
            }
            _ => None,
        }
    }

    /// RFC 8941 section 4.2.4: at most 15 integer digits, or 12 and up to 3 decimals.
    fn number(&mut self) -> Option<Item> {
        let negative = self.eat(b'-');
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        let whole = &self.input[start..self.at];
        if whole.is_empty() {
            return None;
        }
        if self.eat(b'.') {
            let fraction_start = self.at;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.at += 1;
            }
            let fraction = self.at - fraction_start;
            return (whole.len() <= 12 && (1..=3).contains(&fraction)).then_some(Item::Other);
        }
        if whole.len() > 15 {
            return None;
        }
        let n: i64 = std::str::from_utf8(whole).ok()?.parse().ok()?;
        Some(Item::Integer(if negative { -n } else { n }))
    }

    /// A quoted string of printable ASCII, `\"` and `\\` the only escapes.
    fn string(&mut self) -> Option<Item> {
        self.at += 1;
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(Item::Other);
                }
                b'\\' => {
                    self.at += 1;
                    if !matches!(self.peek()?, b'"' | b'\\') {
                        return None;
                    }
                    self.at += 1;
                }
                0x20..=0x7e => self.at += 1,
                _ => return None,
            }
        }
    }

    /// `:` base64 `:`.
    fn byte_sequence(&mut self) -> Option<Item> {
        self.at += 1;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        {
            self.at += 1;
        }
        self.eat(b':').then_some(Item::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ResponseHead;

    fn head(lines: &[(&str, &str)]) -> ResponseHead {
        crate::cache::test_heads::response(200, lines)
    }

    fn cdn() -> Vec<String> {
        DEFAULT_FIELDS.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn dictionaries_parse_to_the_directives_they_name() {
        let secs = |n| Some(Duration::from_secs(n));
        let table: &[(&str, ResponseDirectives)] = &[
            (
                "max-age=60",
                ResponseDirectives {
                    max_age: secs(60),
                    ..Default::default()
                },
            ),
            (
                "no-store",
                ResponseDirectives {
                    no_store: true,
                    ..Default::default()
                },
            ),
            (
                "private, max-age=5;x=1, stale-if-error=30",
                ResponseDirectives {
                    private: true,
                    max_age: secs(5),
                    stale_if_error: secs(30),
                    ..Default::default()
                },
            ),
            (
                "no-cache=?0, max-age=\"60\", must-revalidate=?1, x=(a \"b\");q=1",
                ResponseDirectives {
                    must_revalidate: true,
                    ..Default::default()
                },
            ),
            (
                "max-age=10, max-age=20",
                ResponseDirectives {
                    max_age: secs(20),
                    ..Default::default()
                },
            ),
            (
                "max-age=99999999999, s-maxage=1.5",
                ResponseDirectives {
                    max_age: secs(1 << 31),
                    ..Default::default()
                },
            ),
        ];
        for (value, want) in table {
            let want = ResponseDirectives {
                targeted: true,
                ..want.clone()
            };
            let got = directives(&head(&[("CDN-Cache-Control", value)]), &cdn());
            assert_eq!(got.as_ref(), Some(&want), "{value}");
        }
    }

    #[test]
    fn an_invalid_or_empty_field_is_ignored_as_if_absent() {
        for value in [
            "",
            "Max-Age=60",
            "max-age=60,",
            "max-age = 60",
            "max-age=60 no-store",
            "max-age=\"60",
            "max-age=?2",
            "max-age=1234567890123456",
            "max-age=60;",
            "private=\"a,b\",,x",
            "max-age=(a",
            "9max-age=1",
        ] {
            let h = head(&[("CDN-Cache-Control", value)]);
            assert_eq!(directives(&h, &cdn()), None, "{value:?}");
        }
        assert_eq!(
            directives(&head(&[("Cache-Control", "max-age=1")]), &cdn()),
            None
        );
    }

    #[test]
    fn the_first_valid_field_of_the_list_wins() {
        let fields = vec![
            "Revproxy-Cache-Control".to_owned(),
            "CDN-Cache-Control".to_owned(),
        ];
        let h = head(&[
            ("CDN-Cache-Control", "max-age=10"),
            ("Revproxy-Cache-Control", "max-age=20"),
        ]);
        assert_eq!(
            directives(&h, &fields).and_then(|d| d.max_age),
            Some(Duration::from_secs(20))
        );
        let h = head(&[
            ("CDN-Cache-Control", "max-age=10"),
            ("Revproxy-Cache-Control", "max-age=\"x"),
        ]);
        assert_eq!(
            directives(&h, &fields).and_then(|d| d.max_age),
            Some(Duration::from_secs(10))
        );
        // Two lines of one field are one dictionary.
        let h = head(&[
            ("CDN-Cache-Control", "max-age=10"),
            ("cdn-cache-control", "no-store"),
        ]);
        let d = directives(&h, &cdn()).unwrap();
        assert!(d.no_store && d.max_age == Some(Duration::from_secs(10)));
    }
}
