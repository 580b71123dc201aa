//! Choosing a content coding from the client's `Accept-Encoding` (RFC 9110 section 12.5.3).
//!
//! Each listed coding has a weight (`q`, 0 to 1, in thousandths here); a coding with `q=0`
//! is refused. `*` gives its weight to every coding not listed by name, identity included.
//! The coding with the highest weight wins; equal weights go to the server's order of
//! preference, and identity ranks after every coding the server offers. Identity is
//! acceptable unless `identity;q=0`, or `*;q=0` without `identity` listed, refuses it; when
//! it is refused and nothing else is acceptable, the response is sent as identity anyway,
//! since a `406` would be less useful to the client than a body it may still decode
//! (RFC 9110 lets the server disregard the header in that case).
//!
//! A request without the header gets identity: RFC 9110 allows any coding then, but a client
//! that says nothing may not decode anything (nginx and HAProxy do the same).

use super::encoder::Coding;
use crate::http::head::Headers;
use crate::http::weight::qvalue;
use crate::http::RequestHead;

/// A weight in thousandths: `q=0.5` is 500.
type Weight = u16;

/// What the header says about one coding: its weight if named, and the weight of `*`.
#[derive(Debug, Default, Clone, Copy)]
struct Weights {
    named: Option<Weight>,
    star: Option<Weight>,
}

impl Weights {
    /// The weight that applies: the coding's own, else the wildcard's.
    fn get(self) -> Option<Weight> {
        self.named.or(self.star)
    }
}

/// The coding to send for `request`, among `offered` (the server's order of preference);
/// `None` is identity.
pub fn choose(request: &RequestHead, offered: &[Coding]) -> Option<Coding> {
    let mut values = request.values("accept-encoding").peekable();
    values.peek()?;
    let mut elements = Vec::new();
    for value in values {
        elements.extend(parse_list(value));
    }
    choose_from(&elements, offered)
}

/// One element of the list: a coding name (lower-cased) and its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Element {
    name: String,
    weight: Weight,
}

/// Parses `gzip;q=0.8, br, *;q=0`. An element with a malformed weight is dropped, as if the
/// client had not listed it: guessing its weight could send a coding the client refuses.
fn parse_list(value: &[u8]) -> impl Iterator<Item = Element> + '_ {
    value.split(|&b| b == b',').filter_map(|item| {
        let mut parts = item.split(|&b| b == b';');
        let name = std::str::from_utf8(parts.next()?.trim_ascii()).ok()?;
        if name.is_empty() {
            return None;
        }
        let mut weight = 1000;
        for param in parts {
            let mut pair = param.splitn(2, |&b| b == b'=');
            let key = pair.next().unwrap_or_default().trim_ascii();
            if key.eq_ignore_ascii_case(b"q") {
                weight = qvalue(pair.next()?.trim_ascii())?;
            }
            // No other parameter is defined for Accept-Encoding: ignored.
        }
        Some(Element {
            name: canonical(name),
            weight,
        })
    })
}

/// `x-gzip` is `gzip` (RFC 9110 section 8.4.1.3); names are case-insensitive.
fn canonical(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    if name == "x-gzip" {
        "gzip".to_owned()
    } else {
        name
    }
}

fn weights(elements: &[Element], name: &str) -> Weights {
    let mut w = Weights::default();
    for e in elements {
        // Listed twice: the lower weight holds, so a refusal is never overridden.
        if e.name == name {
            w.named = Some(w.named.map_or(e.weight, |q| q.min(e.weight)));
        } else if e.name == "*" {
            w.star = Some(w.star.map_or(e.weight, |q| q.min(e.weight)));
        }
    }
    w
}

fn choose_from(elements: &[Element], offered: &[Coding]) -> Option<Coding> {
    crate::exercise::stub!("choose_from");
    let mut best: Option<(Weight, Coding)> = None;
    // `offered` is in preference order, so a strict `>` keeps the preferred one on a tie.
    for &coding in offered {
        if let Some(q) = weights(elements, coding.token()).get().filter(|&q| q > 0) {
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, coding));
            }
        }
    }
    let (best_q, coding) = best?;
    // Identity not named and not covered by `*`: acceptable, but below any coding offered.
    match weights(elements, "identity").get() {
        Some(identity_q) if identity_q > best_q => None,
        _ => Some(coding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Header;
    use Coding::{Brotli as Br, Deflate as De, Gzip as Gz};

    const ALL: &[Coding] = &[Br, Gz, De];

    fn request(values: &[&str]) -> RequestHead {
        RequestHead {
            method: "GET".into(),
            target: "/".into(),
            minor_version: 1,
            headers: values
                .iter()
                .map(|v| Header {
                    name: "Accept-Encoding".into(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
            route: None,
            original_target: None,
        }
    }

    #[test]
    fn negotiation_table() {
        let table: &[(&[&str], &[Coding], Option<Coding>)] = &[
            (&[], ALL, None),
            (&[""], ALL, None),
            (&["gzip"], ALL, Some(Gz)),
            (&["GZIP"], ALL, Some(Gz)),
            (&["x-gzip"], ALL, Some(Gz)),
            (&["deflate"], ALL, Some(De)),
            (&["gzip, deflate, br"], ALL, Some(Br)),
            (&["gzip, deflate, br"], &[Gz, Br, De], Some(Gz)),
            (&["br;q=0.5, gzip;q=1"], ALL, Some(Gz)),
            (&["br;q=0.5, gzip;q=0.4"], ALL, Some(Br)),
            (&["  gzip ; q=0.8 ,\tbr ;Q=0.9  "], ALL, Some(Br)),
            (&["gzip;q=0"], ALL, None),
            (&["gzip;q=0, deflate"], ALL, Some(De)),
            (&["*"], ALL, Some(Br)),
            (&["*;q=0.5, br;q=0"], ALL, Some(Gz)),
            (&["*;q=0"], ALL, None),
            (&["identity;q=0"], ALL, None),
            (&["identity;q=0, gzip"], ALL, Some(Gz)),
            (&["identity, gzip;q=0.5"], ALL, None),
            (&["gzip, identity"], ALL, Some(Gz)),
            (&["gzip;q=0.001"], ALL, Some(Gz)),
            (&["gzip;q=0.5, identity;q=0.6"], ALL, None),
            (&["gzip;q=1.0, br;q=1.000"], ALL, Some(Br)),
            (&["gzip;q=2"], ALL, None),
            (&["gzip;q=0.5555"], ALL, None),
            (&["gzip;q=abc, deflate"], ALL, Some(De)),
            (&["gzip;q="], ALL, None),
            (&["gzip;q=-1"], ALL, None),
            (&["gzip;q=1.5"], ALL, None),
            (&["zstd, compress"], ALL, None),
            (&["br"], &[Gz, De], None),
            (&["gzip"], &[], None),
            (&["gzip", "br"], ALL, Some(Br)),
            (&["gzip, gzip;q=0"], ALL, None),
            (&[",, ,gzip,"], ALL, Some(Gz)),
            (&["gzip;level=1"], ALL, Some(Gz)),
        ];
        for (values, offered, want) in table {
            assert_eq!(
                choose(&request(values), offered),
                *want,
                "{values:?} offered {offered:?}"
            );
        }
    }
}
