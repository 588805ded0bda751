//! Durations as people type and read them: `30m`, `1h30m`, `90s`.

use std::time::Duration;

/// The shortest exact spelling: `90s` is `1m30s`, `5400` seconds is `1h30m`.
pub fn format_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, 0) => format!("{h}h{m}m"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// `30m`, `1h30m`, `90s`, `2h`, or bare minutes (`45`).
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(minutes) = text.parse::<u64>() {
        return minutes.checked_mul(60);
    }
    humantime::parse_duration(text)
        .ok()
        .map(|d: Duration| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for (secs, text) in [
            (45, "45s"),
            (1800, "30m"),
            (7200, "2h"),
            (5400, "1h30m"),
            (3661, "1h1m1s"),
        ] {
            assert_eq!(format_duration(secs), text);
            assert_eq!(parse_duration(text), Some(secs));
        }
        assert_eq!(parse_duration(" 45 "), Some(2700));
        assert_eq!(parse_duration("soon"), None);
    }
}
