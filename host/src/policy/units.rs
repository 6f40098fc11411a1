//! Sizes and durations as people write them on command lines and in manifests: `64MiB`,
//! `500ms`, `10s`.

use crate::policy::limits::{GIB, KIB, MIB};
use std::time::Duration;

/// A size or duration that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("`{0}` is not a size; write a number with an optional unit, such as 64MiB")]
    NotASize(String),
    #[error("`{0}` is too large")]
    TooLarge(String),
    #[error("unknown size unit `{unit}` in `{text}`; use B, KiB, MiB or GiB")]
    UnknownSizeUnit { unit: String, text: String },
    #[error("`{0}` is not a duration; write a number with a unit, such as 500ms or 10s")]
    NotADuration(String),
    #[error("`{0}` is too long")]
    TooLong(String),
    #[error("unknown duration unit `{unit}` in `{text}`; use ms, s, m, h or d")]
    UnknownDurationUnit { unit: String, text: String },
    #[error("the duration `{0}` must be longer than zero")]
    ZeroDuration(String),
}

/// Parses sizes such as `64MiB`, `16M`, `4GiB`, `1024` (bytes).
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(UnitError::NotASize(text.to_string()));
    }
    let too_large = || UnitError::TooLarge(text.to_string());
    let number: u64 = digits.parse().map_err(|_| too_large())?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        "t" | "tb" | "tib" => 1024 * GIB,
        other => {
            return Err(UnitError::UnknownSizeUnit {
                unit: other.to_string(),
                text: text.to_string(),
            });
        }
    };
    number.checked_mul(factor).ok_or_else(too_large)
}

/// Parses durations such as `500ms`, `10s`, `2m`, `10` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(UnitError::NotADuration(text.to_string()));
    }
    let too_long = || UnitError::TooLong(text.to_string());
    let number: u64 = digits.parse().map_err(|_| too_long())?;
    let seconds = |factor: u64| {
        number
            .checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(too_long)
    };
    let duration = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" => Duration::from_millis(number),
        "" | "s" => seconds(1)?,
        "m" | "min" => seconds(60)?,
        "h" => seconds(3600)?,
        "d" => seconds(86_400)?,
        other => {
            return Err(UnitError::UnknownDurationUnit {
                unit: other.to_string(),
                text: text.to_string(),
            });
        }
    };
    if duration.is_zero() {
        return Err(UnitError::ZeroDuration(text.to_string()));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::limits::MAX_TIMEOUT;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("64MiB"), Ok(64 * MIB));
        assert_eq!(parse_size("16m"), Ok(16 * MIB));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("4 GiB"), Ok(4 * GIB));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        for huge in [
            "99999999999999999999s",
            "999999999999999999d",
            "999999999999999999h",
        ] {
            assert!(
                parse_duration(huge)
                    .unwrap_err()
                    .to_string()
                    .contains("too long"),
                "{huge}"
            );
        }
        assert_eq!(parse_duration("1d"), Ok(MAX_TIMEOUT));
        for huge in ["99999999999T", "99999999999999999999", "17179869184G"] {
            assert!(
                parse_size(huge)
                    .unwrap_err()
                    .to_string()
                    .contains("too large"),
                "{huge}"
            );
        }
    }
}
