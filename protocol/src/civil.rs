//! Civil dates and UTC times from unix time and back (proleptic Gregorian, for
//! dates from 1970 on): for publish dates, and for the ISO 8601 times the open
//! data face writes and parses. H. Hinnant's algorithms.

/// The (year, month, day) of a day counted from 1970-01-01.
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(month <= 2), month, day)
}

/// Days from 1970-01-01 to a (year, month, day) on or after it; `None` for an
/// invalid or earlier date.
pub fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day == 0
        || day > month_days(year, month)
    {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Days in a month (1-12) of a year, leap years honoured.
pub fn month_days(year: u64, month: u64) -> u64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        2 => 28,
        _ => 31,
    }
}

/// A unix time in ms as `YYYY-MM-DDTHH:MM:SS.ffffff` in UTC (CKAN's form; add
/// `Z` for `xsd:dateTime`).
pub fn utc_iso(unix_ms: u64) -> String {
    let (y, mo, d) = civil_from_days(unix_ms / 86_400_000);
    let ms_of_day = unix_ms % 86_400_000;
    let (h, mi, s) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}", ms_of_day % 1000 * 1000)
}

/// Parses `YYYY-MM-DD`, optionally followed by `THH:MM:SS`, a fraction of a
/// second and `Z`, as UTC unix ms (sub-millisecond digits dropped).
pub fn parse_utc_iso(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let digits = |s: &str, n: usize| {
        (s.len() == n && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten()
    };
    let mut parts = date.split('-');
    let (y, mo, d) = (digits(parts.next()?, 4)?, digits(parts.next()?, 2)?, digits(parts.next()?, 2)?);
    if parts.next().is_some() {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d)? * 86_400_000;
    if let Some(time) = time {
        let (hms, fraction) = match time.split_once('.') {
            Some((hms, fraction)) => (hms, Some(fraction)),
            None => (time, None),
        };
        let mut parts = hms.split(':');
        let (h, mi, s) = (digits(parts.next()?, 2)?, digits(parts.next()?, 2)?, digits(parts.next()?, 2)?);
        if parts.next().is_some() || h > 23 || mi > 59 || s > 59 {
            return None;
        }
        ms += (h * 3600 + mi * 60 + s) * 1000;
        if let Some(fraction) = fraction {
            if fraction.is_empty() || fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let millis: String = fraction.chars().chain("000".chars()).take(3).collect();
            ms += millis.parse::<u64>().ok()?;
        }
    }
    Some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_bad_ones_are_refused() {
        for ms in [0, 951_782_400_000, 1_764_298_325_123, 4_102_444_799_999] {
            assert_eq!(parse_utc_iso(&utc_iso(ms)), Some(ms), "{}", utc_iso(ms));
            let (y, m, d) = civil_from_days(ms / 86_400_000);
            assert_eq!(days_from_civil(y, m, d), Some(ms / 86_400_000));
        }
        assert_eq!(utc_iso(1_764_298_325_123), "2025-11-28T02:52:05.123000");
        assert_eq!(parse_utc_iso("2000-02-29"), Some(951_782_400_000));
        assert_eq!(parse_utc_iso("2025-11-28T02:52:05Z"), Some(1_764_298_325_000));
        assert_eq!(parse_utc_iso("2025-11-28T02:52:05.1234567Z"), Some(1_764_298_325_123));
        for bad in [
            "",
            "2025",
            "2025-13-01",
            "2001-02-29",
            "1969-12-31",
            "2025-11-28T24:00:00",
            "2025-11-28T1:00:00",
            "2025-11-28T01:00:00.",
            "2025-11-28T01:00:00+08:00",
            "２０２５-11-28",
        ] {
            assert_eq!(parse_utc_iso(bad), None, "{bad}");
        }
    }
}
