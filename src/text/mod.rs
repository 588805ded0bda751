//! Text for people, shared by the core, the screens and the commands:
//! countdowns, times, durations, plurals, display widths, and the sanitiser
//! every server string passes through. Pure functions only: no terminal,
//! no network, no state.

mod duration;
pub mod sanitize;
mod time;
mod width;

pub use duration::{format_duration, parse_duration};
pub use time::{ago, clock, local_stamp, local_time, local_timestamp, span};
pub use width::{fit, width_of, wrap};

/// A word as a POSIX shell reads it back: bare if it is plain, else in
/// single quotes (a quote inside becomes `'\''`).
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// "1 approval", "2 approvals".
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "approval"), "1 approval");
        assert_eq!(plural(0, "approval"), "0 approvals");
        assert_eq!(plural(2, "approval"), "2 approvals");
    }
}
