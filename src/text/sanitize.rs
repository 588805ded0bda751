//! Text from the broker is untrusted: before it reaches the terminal, control
//! characters, escape sequences and bidirectional overrides are replaced, and
//! length is bounded.

use std::borrow::Cow;

/// Longest text drawn from one server field, in characters.
pub const MAX_CHARS: usize = 8192;
/// What a removed character is shown as, so hidden content is visible.
pub const REPLACEMENT: char = '\u{FFFD}';

/// Characters that must never reach the terminal: C0 and C1 controls (ESC
/// starts every escape sequence, OSC 52 included), DEL, and the Unicode
/// controls that reorder or hide text (bidi overrides and isolates, marks).
fn is_hostile(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// One line of untrusted text: every hostile character replaced, newlines
/// and tabs included, and at most [`MAX_CHARS`] characters.
pub fn line(text: &str) -> Cow<'_, str> {
    let long = text.len() > MAX_CHARS && text.chars().nth(MAX_CHARS).is_some();
    if !long && !text.chars().any(is_hostile) {
        return Cow::Borrowed(text);
    }
    let mut out: String = text
        .chars()
        .take(MAX_CHARS)
        .map(|c| match c {
            '\t' | '\n' | '\r' => ' ',
            c if is_hostile(c) => REPLACEMENT,
            c => c,
        })
        .collect();
    if long {
        out.push('…');
    }
    Cow::Owned(out)
}

/// Multi-line untrusted text (a justification): split on newlines, each line
/// cleaned as by [`line`], the whole bounded to [`MAX_CHARS`].
pub fn lines(text: &str) -> Vec<String> {
    let bounded: String = text.chars().take(MAX_CHARS).collect();
    let mut out: Vec<String> = bounded
        .split('\n')
        .map(|l| line(l.trim_end_matches('\r')).into_owned())
        .collect();
    if text.chars().nth(MAX_CHARS).is_some()
        && let Some(last) = out.last_mut()
    {
        last.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_untouched_and_not_copied() {
        assert!(matches!(line("rotate the slot"), Cow::Borrowed(_)));
        assert_eq!(line("naïve — ok ✓"), "naïve — ok ✓");
    }

    #[test]
    fn escapes_controls_and_bidi_never_survive() {
        let hostile = "a\x1b[2Jb\x1b]52;c;ZXZpbA==\x07c\u{202E}d\u{2066}e\0f\u{9b}g\x7fh";
        let clean = line(hostile);
        assert!(!clean.chars().any(is_hostile), "{clean:?}");
        assert!(!clean.contains('\x1b') && !clean.contains('\0') && !clean.contains('\u{202E}'));
        assert_eq!(clean.chars().filter(|c| *c == REPLACEMENT).count(), 8);
    }

    #[test]
    fn long_text_is_bounded() {
        let huge = "x".repeat(100_000);
        let clean = line(&huge);
        assert_eq!(clean.chars().count(), MAX_CHARS + 1);
        let many = lines(&format!("{}\n{}", "y".repeat(50_000), "z".repeat(50_000)));
        assert!(many.iter().map(|l| l.chars().count()).sum::<usize>() <= MAX_CHARS + 1);
    }

    #[test]
    fn lines_split_and_clean_each() {
        assert_eq!(lines("one\r\ntwo\x1b[31m"), ["one", "two\u{FFFD}[31m"]);
    }
}
