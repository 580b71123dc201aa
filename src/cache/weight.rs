//! The weight of a member of a preference list (RFC 9110 section 12.4.2), as in
//! `Accept-Language: de, fr;q=0.5`: read by the variant keys (`store`) and by the choice of a
//! variant by its language (`language`).

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` as thousandths.
pub fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
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
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.123", Some(123)),
            ("1.001", None),
            ("0.1234", None),
            ("2", None),
            ("-0.5", None),
            (".5", None),
            ("0.x", None),
            ("", None),
        ];
        for (text, want) in table {
            assert_eq!(qvalue(text), *want, "{text:?}");
        }
    }
}
