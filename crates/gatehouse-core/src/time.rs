//! Timestamps as Unix milliseconds: cheap to compare on the hot path, RFC 3339 at the edges.

use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A point in time, in milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        Self((now.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    pub fn from_unix_seconds(secs: i64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Parses an RFC 3339 date-time (`2030-01-01T00:00:00Z`).
    pub fn parse_rfc3339(s: &str) -> Result<Self, String> {
        let t = OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|e| format!("`{s}` is not an RFC 3339 date-time ({e}); example: 2030-01-31T12:00:00Z"))?;
        Ok(Self((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }

    /// Whole seconds, e.g. `2030-01-31T12:00:00Z`: what people read in CLI output and logs.
    pub fn to_rfc3339(self) -> String {
        let t = OffsetDateTime::from_unix_timestamp(self.unix_seconds()).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        t.format(&Rfc3339).unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Parses a human duration such as `90s`, `15m`, `24h`, `7d` or a bare number of seconds.
pub fn parse_duration_secs(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: i64 = num.parse().map_err(|_| format!("`{s}` is not a duration; use e.g. 30s, 15m, 24h or 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}` has an unknown unit; use s, m, h or d")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2030-01-31T12:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2030-01-31T12:00:00Z");
        assert_eq!(t.unix_seconds(), 1_896_091_200);
        assert!(Timestamp::parse_rfc3339("tomorrow").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("24h"), Ok(86_400));
        assert_eq!(parse_duration_secs("7d"), Ok(604_800));
        assert_eq!(parse_duration_secs("90"), Ok(90));
        assert!(parse_duration_secs("1w").is_err());
        assert!(parse_duration_secs("h").is_err());
        assert!(parse_duration_secs("-5s").is_err());
    }
}
