//! Durations as Istio accepts them: Go's syntax (`1h2m3.5s`, `500ms`, `10us`).
//!
//! Protobuf's JSON form (`1.5s`) is a subset of this, so both read the same.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}: use a number with a unit, e.g. 500ms, 1s, 1m30s (units: ns, us, ms, s, m, h)")]
    Syntax(String),
    #[error("invalid duration {0:?}: must not be negative")]
    Negative(String),
    #[error("invalid duration {0:?}: too large")]
    Overflow(String),
}

/// Parses a Go-syntax duration. Negative values are refused: Istio has no use for them.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax(text.to_string());
    let s = text.trim();
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(syntax());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        rest = &rest[num_len..];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(syntax());
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return Err(syntax()),
        };
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| syntax())?
        };
        let mut nanos = int
            .checked_mul(scale)
            .ok_or_else(|| DurationError::Overflow(text.to_string()))?;
        let mut div = 1u128;
        let mut frac: u128 = 0;
        for c in frac_part.chars().take(18) {
            frac = frac * 10 + u128::from(c.to_digit(10).ok_or_else(syntax)?);
            div *= 10;
        }
        nanos += frac * scale / div;
        total = total
            .checked_add(nanos)
            .ok_or_else(|| DurationError::Overflow(text.to_string()))?;
    }
    if neg && total > 0 {
        return Err(DurationError::Negative(text.to_string()));
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| DurationError::Overflow(text.to_string()))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Formats a duration the way Istio prints them back (`1.5s`, `500ms`, `0s`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    if d.subsec_nanos() == 0 {
        return format!("{}s", d.as_secs());
    }
    if d.as_nanos().is_multiple_of(1_000_000) && d.as_secs() == 0 {
        return format!("{}ms", d.as_millis());
    }
    let s = format!("{}.{:09}", d.as_secs(), d.subsec_nanos());
    format!("{}s", s.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_syntax() {
        let ok: &[(&str, u128)] = &[
            ("0", 0),
            ("0s", 0),
            ("1s", 1_000_000_000),
            ("500ms", 500_000_000),
            ("1h2m", 3_720_000_000_000),
            ("1.5s", 1_500_000_000),
            ("10us", 10_000),
            ("1m30s", 90_000_000_000),
            (".5s", 500_000_000),
            ("300s", 300_000_000_000),
        ];
        for (text, nanos) in ok {
            assert_eq!(parse_duration(text).unwrap().as_nanos(), *nanos, "{text}");
        }
        for bad in ["", "1", "apple", "1x", "s", "1..2s", "-1s", "1s2"] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn formats_back() {
        assert_eq!(format_duration(parse_duration("1.5s").unwrap()), "1.5s");
        assert_eq!(format_duration(parse_duration("250ms").unwrap()), "250ms");
        assert_eq!(format_duration(parse_duration("2m").unwrap()), "120s");
    }
}
