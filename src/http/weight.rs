//! The weight of a member of a preference list (RFC 9110 section 12.4.2), the `q` of
//! `Accept-Encoding: gzip, br;q=0.5` and `Accept-Language: de, fr;q=0.5`: read by the
//! negotiation of a response's coding (`compress`) and by the cache's variant keys and its
//! choice of a variant by language (`cache`).

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` as thousandths, `None` for
/// anything else (`2`, `.5`, `0.1234`, an empty value).
pub fn qvalue(text: &[u8]) -> Option<u16> {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Read as three digits, the missing ones zero: `0.5` is 500.
    let thousandths = (0..3).fold(0, |n, i| {
        n * 10 + fraction.get(i).map_or(0, |d| u16::from(d - b'0'))
    });
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qvalues_are_thousandths_between_0_and_1() {
        let table: &[(&str, Option<u16>)] = &[
            ("1", Some(1000)),
            ("1.", Some(1000)),
            ("1.000", Some(1000)),
            ("0", Some(0)),
            ("0.", Some(0)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.123", Some(123)),
            ("1.001", None),
            ("0.1234", None),
            ("2", None),
            ("-0.5", None),
            (".5", None),
            ("0.x", None),
            ("0x1", None),
            ("", None),
        ];
        for (text, want) in table {
            assert_eq!(qvalue(text.as_bytes()), *want, "{text:?}");
        }
    }
}
