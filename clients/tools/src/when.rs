//! World times as agents and people write them: ISO 8601 (`2024-03-01`, `2024-03-01T09:30:00Z`,
//! with any offset) or milliseconds since the Unix epoch (a number, or a string of digits).
//! Printed back as RFC 3339 in UTC.

use cairn::Millis;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// Why a time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a time: give ISO 8601 (2024-03-01, 2024-03-01T09:30:00Z, 2024-03-01T09:30:00+02:00) or \
     milliseconds since the Unix epoch"
)]
pub struct BadTime(pub String);

/// Parses a world time (see the module docs). A date or date-time without an offset is UTC.
pub fn parse(s: &str) -> Result<Millis, BadTime> {
    let t = s.trim();
    let bad = || BadTime(s.to_owned());
    let digits = t.strip_prefix('-').unwrap_or(t);
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        return t.parse().map_err(|_| bad());
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(naive.and_utc().timestamp_millis());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return date.and_hms_opt(0, 0, 0).map(|d| d.and_utc().timestamp_millis()).ok_or_else(bad);
    }
    Err(bad())
}

/// A world time as RFC 3339 in UTC (`2024-03-01T09:30:00Z`; milliseconds shown when there are
/// any). Times outside chrono's range are printed as milliseconds.
pub fn iso(ms: Millis) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_8601_and_milliseconds_are_read() {
        let cases = [
            ("1709251200000", 1_709_251_200_000),
            ("  1709251200000 ", 1_709_251_200_000),
            ("-1000", -1000),
            ("2024-03-01", 1_709_251_200_000),
            ("2024-03-01T00:00:00Z", 1_709_251_200_000),
            ("2024-03-01T02:00:00+02:00", 1_709_251_200_000),
            ("2024-03-01T00:00:00.250Z", 1_709_251_200_250),
            ("2024-03-01T00:00:00", 1_709_251_200_000),
            ("2024-03-01T00:00", 1_709_251_200_000),
        ];
        for (text, ms) in cases {
            assert_eq!(parse(text), Ok(ms), "{text}");
        }
        for bad in ["", "-", "soon", "2024-13-01", "2024-03-01T25:00:00Z", "12ab"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_print_as_rfc_3339_utc() {
        assert_eq!(iso(1_709_251_200_000), "2024-03-01T00:00:00Z");
        assert_eq!(iso(1_709_251_200_250), "2024-03-01T00:00:00.250Z");
        assert_eq!(parse(&iso(1_709_251_200_250)), Ok(1_709_251_200_250));
    }
}
