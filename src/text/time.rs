//! Times for people: countdowns, spans, relative times, and wall-clock times
//! in the local zone. Callers pass `now`, so these never read a clock.

use chrono::{DateTime, Local, TimeDelta, Utc};

/// `mm:ss`, or `h:mm:ss` past an hour. Rounded up, so a grant never shows
/// `00:00` while it is still live.
pub fn clock(left: TimeDelta) -> String {
    let secs = left.num_milliseconds().max(0).saturating_add(999) / 1000;
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, (secs % 3600) / 60, secs % 60)
    } else {
        format!("{:02}:{:02}", secs / 60, secs % 60)
    }
}

/// A duration in its largest sensible unit: "45s", "12m", "3h58m", "2d".
pub fn span(delta: TimeDelta) -> String {
    let secs = delta.num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d", s / 86_400),
    }
}

/// "just now", "5m ago", "3h ago", "2d ago"; or "in 5m" for the future.
pub fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let delta = now - at;
    if delta < TimeDelta::zero() {
        return format!("in {}", span(-delta));
    }
    if delta < TimeDelta::minutes(1) {
        return "just now".into();
    }
    format!("{} ago", span(delta))
}

/// Local wall-clock time, to the second: `14:03:07`.
pub fn local_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&Local).format("%H:%M:%S").to_string()
}

/// Local date and time without the year, for timelines: `06-01 14:03:07`.
pub fn local_stamp(at: DateTime<Utc>) -> String {
    at.with_timezone(&Local)
        .format("%m-%d %H:%M:%S")
        .to_string()
}

/// Local date and time with the zone's offset, for tables a person may
/// paste elsewhere: `2026-06-01 14:03:07 +02:00`.
pub fn local_timestamp(at: DateTime<Utc>) -> String {
    at.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

#[cfg(test)]
mod tests {
    /// The longest span a broker could send does not overflow the clock.
    #[test]
    fn the_clock_takes_the_longest_span() {
        let shown = super::clock(chrono::TimeDelta::MAX);
        assert!(
            shown.starts_with(&(i64::MAX / 1000 / 3600).to_string()),
            "{shown}"
        );
    }

    use super::*;

    #[test]
    fn the_clock_rounds_up_and_grows_an_hour_field() {
        assert_eq!(clock(TimeDelta::milliseconds(1)), "00:01");
        assert_eq!(clock(TimeDelta::zero()), "00:00");
        assert_eq!(clock(TimeDelta::seconds(-5)), "00:00");
        assert_eq!(clock(TimeDelta::seconds(29 * 60 + 41)), "29:41");
        assert_eq!(clock(TimeDelta::seconds(3600 + 61)), "1:01:01");
    }

    #[test]
    fn spans_and_relative_times() {
        assert_eq!(span(TimeDelta::seconds(45)), "45s");
        assert_eq!(span(TimeDelta::minutes(12)), "12m");
        assert_eq!(span(TimeDelta::seconds(5400)), "1h30m");
        assert_eq!(span(TimeDelta::minutes(238)), "3h58m");
        assert_eq!(span(TimeDelta::days(2)), "2d");
        let now = Utc::now();
        assert_eq!(ago(now - TimeDelta::seconds(10), now), "just now");
        assert_eq!(ago(now - TimeDelta::minutes(5), now), "5m ago");
        assert_eq!(ago(now + TimeDelta::minutes(5), now), "in 5m");
    }
}
