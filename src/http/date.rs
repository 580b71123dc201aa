//! HTTP dates (RFC 9110 section 5.6.7): the IMF-fixdate the proxy writes in `Date`, and a
//! strict parser for the three formats a recipient must accept, for the cache stage's `Date`,
//! `Expires` and `Last-Modified`.
//!
//! Written here rather than taken from `httpdate` (which hyper already pulls in for the demo
//! backends): its parser reads a two-digit RFC 850 year with a fixed pivot instead of the
//! "more than 50 years in the future" rule RFC 9110 asks for, refuses years before 1970, and
//! does not check the weekday. The arithmetic is a few lines of Howard Hinnant's
//! `days_from_civil` and its inverse.

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An IMF-fixdate is always this long: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const IMF_FIXDATE_LEN: usize = 29;

/// Indexed by weekday, 0 = Sunday.
const DAY_NAMES: [&[u8]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const DAY_NAMES_LONG: [&[u8]; 7] = [
    b"Sunday",
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
];
/// Indexed by month - 1.
const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

const SECS_PER_DAY: i64 = 86_400;
/// 0000-01-01 and 9999-12-31 23:59:59, the years four digits can write.
const MIN_SECS: i64 = -62_167_219_200;
const MAX_SECS: i64 = 253_402_300_799;

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse: (year, month 1-12, day 1-31) of a day count since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// 0 = Sunday; 1970-01-01 was a Thursday.
fn weekday(days: i64) -> usize {
    (days + 4).rem_euclid(7) as usize
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Whole seconds since the epoch, rounded down (also before 1970).
fn unix_secs(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            -secs - i64::from(before.subsec_nanos() > 0)
        }
    }
}

fn from_unix_secs(secs: i64) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// Formats `time` as an IMF-fixdate. Times outside years 0000 to 9999 are clamped to them,
/// as four digits cannot write more.
pub fn imf_fixdate(time: SystemTime) -> [u8; IMF_FIXDATE_LEN] {
    format_secs(unix_secs(time).clamp(MIN_SECS, MAX_SECS))
}

fn format_secs(secs: i64) -> [u8; IMF_FIXDATE_LEN] {
    let days = secs.div_euclid(SECS_PER_DAY);
    let in_day = secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"Sun, 00 Jan 0000 00:00:00 GMT";
    out[..3].copy_from_slice(DAY_NAMES[weekday(days)]);
    put_digits(&mut out[5..7], i64::from(day));
    out[8..11].copy_from_slice(MONTHS[month as usize - 1]);
    put_digits(&mut out[12..16], year);
    put_digits(&mut out[17..19], in_day / 3600);
    put_digits(&mut out[20..22], in_day / 60 % 60);
    put_digits(&mut out[23..25], in_day % 60);
    out
}

/// Writes `n` in decimal, zero-padded to the slot (callers keep `n` within it).
fn put_digits(slot: &mut [u8], mut n: i64) {
    for b in slot.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

thread_local! {
    /// The last second formatted on this thread and its text. Per thread, so the hot path
    /// takes no lock and shares no cache line; a thread formats at most once a second.
    static NOW: Cell<(i64, [u8; IMF_FIXDATE_LEN])> = const { Cell::new((i64::MIN, [0; IMF_FIXDATE_LEN])) };
}

/// The current time as an IMF-fixdate, formatted at most once per second per thread.
pub fn now_imf_fixdate() -> [u8; IMF_FIXDATE_LEN] {
    let secs = unix_secs(SystemTime::now()).clamp(MIN_SECS, MAX_SECS);
    NOW.with(|cache| {
        let (at, text) = cache.get();
        if at == secs {
            return text;
        }
        let text = format_secs(secs);
        cache.set((secs, text));
        text
    })
}

/// Parses an HTTP date in any of the three formats of RFC 9110 section 5.6.7, strictly: names
/// are case-sensitive, the weekday must be the date's, days must exist in their month, `GMT`
/// is required, and no byte may be missing or extra. `None` for anything else, which a cache
/// reads as "in the past" (RFC 9111 section 5.3).
pub fn parse_http_date(value: &[u8]) -> Option<SystemTime> {
    parse_http_date_at(value, SystemTime::now())
}

/// [`parse_http_date`] with the clock that a two-digit RFC 850 year is read against.
pub fn parse_http_date_at(value: &[u8], now: SystemTime) -> Option<SystemTime> {
    parse(value, now, Reading::Strict)
}

/// Parses an HTTP date as a lenient recipient does, for `Expires`: the three formats with
/// their layout exactly as strict, but names in any case (`THU`, `AUG`, `gmt`) and a weekday
/// that is not the date's taken as a slip (the date says when; the weekday only repeats it).
/// RFC 9110 section 5.6.7 asks recipients to accept the three formats, and senders of
/// `Expires` get the case and weekday wrong often enough that refusing them would treat a
/// fresh response as expired. Another zone, a two-digit year in IMF-fixdate, a missing comma,
/// extra spaces, dashes, dots or a one-digit hour stay invalid: those are not one of the
/// three formats misspelled, and reading them would be guessing.
pub fn parse_http_date_lenient(value: &[u8]) -> Option<SystemTime> {
    parse(value, SystemTime::now(), Reading::Lenient)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Strict,
    Lenient,
}

fn parse(value: &[u8], now: SystemTime, reading: Reading) -> Option<SystemTime> {
    let fields = if value.len() == IMF_FIXDATE_LEN && value.get(3) == Some(&b',') {
        imf_fields(value, reading)?
    } else if value.len() == 24 && value.get(3) == Some(&b' ') {
        asctime_fields(value, reading)?
    } else {
        rfc850_fields(value, now, reading)?
    };
    fields.to_time(reading)
}

/// A date as written, before it is checked.
struct Fields {
    weekday: usize,
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Fields {
    fn to_time(&self, reading: Reading) -> Option<SystemTime> {
        if !(1..=12).contains(&self.month)
            || self.day == 0
            || self.day > days_in_month(self.year, self.month)
            || self.hour > 23
            || self.minute > 59
            // 60 is a leap second (RFC 9110 section 5.6.7); it counts as the next second, as
            // POSIX `timegm` does.
            || self.second > 60
        {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        if reading == Reading::Strict && weekday(days) != self.weekday {
            return None;
        }
        let secs = days * SECS_PER_DAY
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        from_unix_secs(secs)
    }
}

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        bytes
            .iter()
            .fold(0, |acc, &d| acc * 10 + u32::from(d - b'0')),
    )
}

fn position(names: &[&[u8]], name: &[u8], reading: Reading) -> Option<usize> {
    names.iter().position(|&n| match reading {
        Reading::Strict => n == name,
        Reading::Lenient => n.eq_ignore_ascii_case(name),
    })
}

fn month(name: &[u8], reading: Reading) -> Option<u32> {
    position(&MONTHS, name, reading).map(|m| m as u32 + 1)
}

/// `GMT`, the only zone an HTTP date has.
fn is_gmt(zone: &[u8], reading: Reading) -> bool {
    match reading {
        Reading::Strict => zone == b"GMT",
        Reading::Lenient => zone.eq_ignore_ascii_case(b"GMT"),
    }
}

/// `HH:MM:SS`.
fn time_of_day(bytes: &[u8]) -> Option<(u32, u32, u32)> {
    match bytes {
        [h1, h2, b':', m1, m2, b':', s1, s2] => Some((
            digits(&[*h1, *h2])?,
            digits(&[*m1, *m2])?,
            digits(&[*s1, *s2])?,
        )),
        _ => None,
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fields(v: &[u8], reading: Reading) -> Option<Fields> {
    if &v[3..5] != b", "
        || v[7] != b' '
        || v[11] != b' '
        || v[16] != b' '
        || v[25] != b' '
        || !is_gmt(&v[26..], reading)
    {
        return None;
    }
    let (hour, minute, second) = time_of_day(&v[17..25])?;
    Some(Fields {
        weekday: position(&DAY_NAMES, &v[..3], reading)?,
        day: digits(&v[5..7])?,
        month: month(&v[8..11], reading)?,
        year: i64::from(digits(&v[12..16])?),
        hour,
        minute,
        second,
    })
}

/// `Sun Nov  6 08:49:37 1994`: the day is two digits or a space and one digit.
fn asctime_fields(v: &[u8], reading: Reading) -> Option<Fields> {
    if v[7] != b' ' || v[10] != b' ' || v[19] != b' ' {
        return None;
    }
    let day = match &v[8..10] {
        [b' ', d] => digits(&[*d])?,
        two => digits(two)?,
    };
    let (hour, minute, second) = time_of_day(&v[11..19])?;
    Some(Fields {
        weekday: position(&DAY_NAMES, &v[..3], reading)?,
        month: month(&v[4..7], reading)?,
        day,
        year: i64::from(digits(&v[20..24])?),
        hour,
        minute,
        second,
    })
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn rfc850_fields(v: &[u8], now: SystemTime, reading: Reading) -> Option<Fields> {
    let comma = v.iter().position(|&b| b == b',')?;
    let weekday = position(&DAY_NAMES_LONG, &v[..comma], reading)?;
    let rest = v.get(comma..)?;
    if rest.len() != 24
        || &rest[..2] != b", "
        || rest[4] != b'-'
        || rest[8] != b'-'
        || rest[11] != b' '
        || rest[20] != b' '
        || !is_gmt(&rest[21..], reading)
    {
        return None;
    }
    let (hour, minute, second) = time_of_day(&rest[12..20])?;
    let mut fields = Fields {
        weekday,
        day: digits(&rest[2..4])?,
        month: month(&rest[5..8], reading)?,
        year: 0,
        hour,
        minute,
        second,
    };
    fields.year = full_year(i64::from(digits(&rest[9..11])?), &fields, now);
    Some(fields)
}

/// RFC 9110 section 5.6.7: a two-digit year that "appears to be more than 50 years in the
/// future" is the most recent past year with those digits. So the year is the latest one
/// ending in `yy` that is not more than 50 years after `now`, to the second.
fn full_year(yy: i64, date: &Fields, now: SystemTime) -> i64 {
    let now = unix_secs(now);
    let (now_year, now_month, now_day) = civil_from_days(now.div_euclid(SECS_PER_DAY));
    let in_day = now.rem_euclid(SECS_PER_DAY);
    let limit = now_year + 50;
    let year = limit - (limit - yy).rem_euclid(100);
    let later_in_year = (date.month, date.day, date.hour, date.minute, date.second)
        > (
            now_month,
            now_day,
            (in_day / 3600) as u32,
            (in_day / 60 % 60) as u32,
            (in_day % 60) as u32,
        );
    if year == limit && later_in_year {
        year - 100
    } else {
        year
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> SystemTime {
        from_unix_secs(secs).unwrap()
    }

    #[test]
    fn formats_imf_fixdate() {
        let table: &[(i64, &str)] = &[
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (-1, "Wed, 31 Dec 1969 23:59:59 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
            (1_798_761_599, "Thu, 31 Dec 2026 23:59:59 GMT"),
            (MAX_SECS, "Fri, 31 Dec 9999 23:59:59 GMT"),
            (MAX_SECS + 1_000, "Fri, 31 Dec 9999 23:59:59 GMT"),
            (MIN_SECS, "Sat, 01 Jan 0000 00:00:00 GMT"),
        ];
        for &(secs, text) in table {
            let got = imf_fixdate(at(secs));
            assert_eq!(std::str::from_utf8(&got).unwrap(), text, "{secs}");
        }
        // Before the epoch with a fraction rounds down, like after it.
        let t = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(&imf_fixdate(t), b"Wed, 31 Dec 1969 23:59:59 GMT");
    }

    #[test]
    fn formatted_dates_parse_back() {
        // Every 7919th hour plus a few seconds, from 1900 to about 2150.
        let mut secs = -2_208_988_800i64;
        for _ in 0..2_800 {
            let text = imf_fixdate(at(secs));
            assert_eq!(parse_http_date(&text), Some(at(secs)), "{secs}");
            secs += 7_919 * 3_600 + 17;
        }
    }

    #[test]
    fn now_is_cached_and_current() {
        let before = unix_secs(SystemTime::now());
        let text = now_imf_fixdate();
        let after = unix_secs(SystemTime::now());
        let parsed = unix_secs(parse_http_date(&text).unwrap());
        assert!(
            (before..=after).contains(&parsed),
            "{before} {parsed} {after}"
        );
        assert_eq!(now_imf_fixdate().len(), IMF_FIXDATE_LEN);
    }

    #[test]
    fn parses_the_three_formats() {
        // 2026-12-01 10:00:00 UTC: the clock two-digit years are read against.
        let now = at(1_796_119_200);
        let sunday_1994 = Some(at(784_111_777));
        let table: &[(&str, Option<SystemTime>)] = &[
            ("Sun, 06 Nov 1994 08:49:37 GMT", sunday_1994),
            ("Sunday, 06-Nov-94 08:49:37 GMT", sunday_1994),
            ("Sun Nov  6 08:49:37 1994", sunday_1994),
            ("Sun Nov 06 08:49:37 1994", sunday_1994),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(at(0))),
            ("Tue, 29 Feb 2000 00:00:00 GMT", Some(at(951_782_400))),
            ("Wed, 31 Dec 1969 23:59:59 GMT", Some(at(-1))),
            ("Tue Feb 29 00:00:00 2000", Some(at(951_782_400))),
            ("Thu Jan 16 12:00:00 2025", Some(at(1_737_028_800))),
            // A leap second counts as the next second.
            ("Sat, 31 Dec 2016 23:59:60 GMT", Some(at(1_483_228_800))),
            ("Fri, 31 Dec 9999 23:59:59 GMT", Some(at(MAX_SECS))),
            // Two-digit years: up to 50 years ahead of `now` they are in this century...
            ("Monday, 12-Dec-50 00:00:00 GMT", Some(at(2_554_416_000))),
            ("Tuesday, 01-Dec-76 10:00:00 GMT", Some(at(3_374_042_400))),
            // ... one second later than 50 years ahead, the last century.
            ("Wednesday, 01-Dec-76 10:00:01 GMT", Some(at(218_282_401))),
            ("Friday, 31-Dec-99 23:59:59 GMT", Some(at(946_684_799))),
            ("Friday, 01-Jan-27 00:00:00 GMT", Some(at(1_798_761_600))),
            // "70" is 2070 here, not 1970: it is less than 50 years ahead.
            ("Wednesday, 01-Jan-70 00:00:00 GMT", Some(at(3_155_760_000))),
            ("Thursday, 01-Jan-70 00:00:00 GMT", None),
        ];
        for &(text, want) in table {
            assert_eq!(parse_http_date_at(text.as_bytes(), now), want, "{text}");
        }
    }

    /// What the strict parser refuses as a misspelling of the three formats, the lenient one
    /// reads; anything else it refuses as well.
    #[test]
    fn expires_is_read_leniently() {
        let aug18 = Some(at(2_544_400_878)); // Thu, 18 Aug 2050 02:01:18 GMT
        let aug8 = Some(at(2_543_536_878)); // a Monday
        let table: &[(&str, Option<SystemTime>)] = &[
            ("Thu, 18 Aug 2050 02:01:18 GMT", aug18),
            ("THU, 18 Aug 2050 02:01:18 GMT", aug18),
            ("Thu, 18 AUG 2050 02:01:18 GMT", aug18),
            ("Thu, 18 Aug 2050 02:01:18 gMT", aug18),
            ("thursday, 18-aug-50 02:01:18 gmt", aug18),
            ("Thu Aug  8 02:01:18 2050", aug8),
            ("Mon, 18 Aug 2050 02:01:18 GMT", aug18),
            ("Thu, 18 Aug 2050 02:01:18 UTC", None),
            ("Thu, 18 Aug 2050 02:01:18 AEST", None),
            ("Thu, 18 Aug 50 02:01:18 GMT", None),
            ("Thu 18 Aug 2050 02:01:18 GMT", None),
            ("Thu, 18  Aug  2050 02:01:18 GMT", None),
            ("Thu, 18-Aug-2050 02:01:18 GMT", None),
            ("Thu, 18 Aug 2050 02.01.18 GMT", None),
            ("Thu, 18 Aug 2050 2:01:18 GMT", None),
            ("Xyz, 18 Aug 2050 02:01:18 GMT", None),
            ("Thu, 31 Feb 2050 02:01:18 GMT", None),
            ("0", None),
        ];
        for &(text, want) in table {
            assert_eq!(parse_http_date_lenient(text.as_bytes()), want, "{text}");
        }
        for strict_refuses in &table[1..7] {
            assert_eq!(parse_http_date(strict_refuses.0.as_bytes()), None);
        }
    }

    #[test]
    fn refuses_everything_else() {
        let now = at(1_796_119_200);
        let bad: &[&str] = &[
            "",
            "0",
            "-1",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 gmt",
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "Sun, 06 Nov 1994 08:49:37 GMT ",
            " Sun, 06 Nov 1994 08:49:37 GMT",
            "Sun,  6 Nov 1994 08:49:37 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "sun, 06 Nov 1994 08:49:37 GMT",
            "SUN, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun, 06 NOV 1994 08:49:37 GMT",
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 06-Nov-1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08.49.37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 23:60:00 GMT",
            "Sun, 06 Nov 1994 23:59:61 GMT",
            "Mon, 30 Feb 2026 00:00:00 GMT",
            "Sun, 29 Feb 2026 00:00:00 GMT",
            "Thu, 29 Feb 2100 00:00:00 GMT",
            "Thu, 31 Apr 2026 00:00:00 GMT",
            "Thu, 00 Jan 2026 00:00:00 GMT",
            "Thu, 32 Jan 2026 00:00:00 GMT",
            "Sun, 06 Nov +994 08:49:37 GMT",
            "Sun, 0a Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT\r",
            "Sunday, 06-Nov-94 08:49:37 UTC",
            "sunday, 06-Nov-94 08:49:37 GMT",
            "Sun, 06-Nov-94 08:49:37 GMT",
            "Monday, 06-Nov-94 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sunday, 6-Nov-94 08:49:37 GMT",
            "Sunday,06-Nov-94 08:49:37 GMT",
            "Sunday, 06 Nov 94 08:49:37 GMT",
            "Sunday, 31-Nov-94 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",
            "Sun Nov  6 08:49:37 94",
            "Sun Nov  6 08:49:37 1994 ",
            "Sun Nov  6 08:49:37 1994 GMT",
            "Mon Nov  6 08:49:37 1994",
            "sun Nov  6 08:49:37 1994",
            "Sun nov  6 08:49:37 1994",
            "Sun Nov  6 24:49:37 1994",
            "Sun Nov 6  08:49:37 1994",
            "Sun Nov  0 08:49:37 1994",
            "Sun Nov 31 08:49:37 1994",
            "Sunday Nov  6 08:49:37 1994",
        ];
        for text in bad {
            assert_eq!(parse_http_date_at(text.as_bytes(), now), None, "{text:?}");
        }
    }
}
