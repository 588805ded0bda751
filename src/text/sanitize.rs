//! Text from the broker is untrusted: before it reaches the terminal, control
//! characters, escape sequences, bidirectional controls and invisible
//! characters are shown as visible escapes (`⟨U+202E⟩`), and length is
//! bounded.

use std::borrow::Cow;
use std::fmt::Write;

use hoist_api::text::is_stray_selector;

/// Longest text drawn from one server field, in characters.
pub const MAX_CHARS: usize = 8192;

/// Whether `c` must never reach the terminal as it is: C0 and C1 controls
/// (ESC starts every escape sequence, OSC 52 included) and DEL, and the
/// characters that hide or reorder text ([`is_invisible`]).
pub fn is_hostile(c: char) -> bool {
    c.is_control() || is_invisible(c)
}

/// Characters that show nothing or reorder what is shown: the set the broker
/// refuses in new text (`hoist_api::text`). Text stored before it did, or
/// from an older broker, can still hold them.
pub use hoist_api::text::is_invisible;

/// How a hostile character is shown: its code point between angle brackets,
/// so a reader sees that something was there, and what.
fn escape(c: char, out: &mut String) {
    // Writing to a String cannot fail.
    let _ = write!(out, "⟨U+{:04X}⟩", u32::from(c));
}

/// Whether `text` holds anything that must not reach the terminal as it
/// is: a hostile character ([`is_hostile`]), or a variation selector with
/// nothing to select, which shows as nothing
/// ([`hoist_api::text::is_stray_selector`]).
pub fn hides_anything(text: &str) -> bool {
    let mut previous = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if hidden(previous, c, chars.peek().copied()) {
            return true;
        }
        previous = Some(c);
    }
    false
}

/// Whether `c`, between `previous` and `next`, must be escaped: hostile,
/// or a selector with nothing to select, as after an escaped character.
fn hidden(previous: Option<char>, c: char, next: Option<char>) -> bool {
    is_hostile(c)
        || is_stray_selector(previous, c, next)
        || (hoist_api::text::is_variation_selector(c) && previous.is_some_and(is_hostile))
}

/// One line of untrusted text: tabs and line breaks become spaces, every
/// other hostile character (and selector with nothing to select) a visible
/// escape, and at most [`MAX_CHARS`] characters are kept.
pub fn line(text: &str) -> Cow<'_, str> {
    let long = text.len() > MAX_CHARS && text.chars().nth(MAX_CHARS).is_some();
    if !long && !hides_anything(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(MAX_CHARS * 4));
    let mut previous = None;
    let mut chars = text.chars().take(MAX_CHARS).peekable();
    while let Some(c) = chars.next() {
        match c {
            '\t' | '\n' | '\r' => out.push(' '),
            c if hidden(previous, c, chars.peek().copied()) => escape(c, &mut out),
            c => out.push(c),
        }
        previous = Some(c);
    }
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
        // Emoji with their selectors and joiners of scripts that print stay.
        assert!(matches!(line("❤\u{FE0F} 日本 é"), Cow::Borrowed(_)));
    }

    #[test]
    fn escapes_controls_and_bidi_never_survive() {
        let hostile = "a\x1b[2Jb\x1b]52;c;ZXZpbA==\x07c\u{202E}d\u{2066}e\0f\u{9b}g\x7fh";
        let clean = line(hostile);
        assert!(!clean.chars().any(is_hostile), "{clean:?}");
        assert_eq!(
            clean,
            "a⟨U+001B⟩[2Jb⟨U+001B⟩]52;c;ZXZpbA==⟨U+0007⟩c⟨U+202E⟩d⟨U+2066⟩e⟨U+0000⟩f⟨U+009B⟩g⟨U+007F⟩h"
        );
    }

    #[test]
    fn invisible_characters_are_shown_by_code_point() {
        // Ten zero-width spaces are not an empty line: the reader sees them.
        assert_eq!(line(&"\u{200B}".repeat(3)), "⟨U+200B⟩⟨U+200B⟩⟨U+200B⟩");
        for (c, shown) in [
            ('\u{200D}', "⟨U+200D⟩"),
            ('\u{2028}', "⟨U+2028⟩"),
            ('\u{2029}', "⟨U+2029⟩"),
            ('\u{FEFF}', "⟨U+FEFF⟩"),
            ('\u{00AD}', "⟨U+00AD⟩"),
            ('\u{3164}', "⟨U+3164⟩"),
            ('\u{E0041}', "⟨U+E0041⟩"),
        ] {
            assert_eq!(line(&format!("a{c}b")), format!("a{shown}b"));
        }
        // Escaping twice changes nothing: the escape is plain text.
        let once = line("x\u{202E}y").into_owned();
        assert!(matches!(line(&once), Cow::Borrowed(_)));
    }

    #[test]
    fn a_selector_with_nothing_to_select_is_shown() {
        // `db` and `db` with selectors after it would look the same.
        assert_eq!(line("db\u{FE0F}\u{FE0F}"), "db⟨U+FE0F⟩⟨U+FE0F⟩");
        assert_eq!(line("❤\u{FE0F}\u{FE0F}"), "❤\u{FE0F}⟨U+FE0F⟩");
        assert!(matches!(
            line("1\u{FE0F}\u{20E3} ❤\u{FE0F}"),
            Cow::Borrowed(_)
        ));
        assert!(hides_anything("\u{FE0E}"));
        assert!(!hides_anything("☺\u{FE0E}"));
        assert_eq!(line("INC-42\u{FE0F}"), "INC-42⟨U+FE0F⟩");
        // After an escaped character, a selector would stand alone.
        assert_eq!(line("x\u{200B}\u{FE0F}"), "x⟨U+200B⟩⟨U+FE0F⟩");
    }

    #[test]
    fn long_text_is_bounded() {
        let huge = "x".repeat(100_000);
        let clean = line(&huge);
        assert_eq!(clean.chars().count(), MAX_CHARS + 1);
        let many = lines(&format!("{}\n{}", "y".repeat(50_000), "z".repeat(50_000)));
        assert!(many.iter().map(|l| l.chars().count()).sum::<usize>() <= MAX_CHARS + 1);
        // Escapes grow the text, but only so far.
        let hidden = "\u{200B}".repeat(100_000);
        assert_eq!(line(&hidden).matches("⟨U+200B⟩").count(), MAX_CHARS);
    }

    #[test]
    fn lines_split_and_clean_each() {
        assert_eq!(lines("one\r\ntwo\x1b[31m"), ["one", "two⟨U+001B⟩[31m"]);
        // A line separator does not start a line: it is shown.
        assert_eq!(lines("one\u{2028}two"), ["one⟨U+2028⟩two"]);
    }
}
