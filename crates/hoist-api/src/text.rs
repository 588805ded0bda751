//! Rules about text shared by the broker and the client: which characters a
//! justification, ticket, incident reference or comment may hold, how many
//! of them count, and where in a text a parser's byte offset falls (for
//! `file:line:column` errors in the broker's policy and the client's config).

use std::fmt;

/// 1-based line and column, in characters, of a byte offset into `text`.
///
/// Parsers report byte offsets; people count characters, so a column after
/// `é` is one further along, not two. An offset inside a character names
/// that character, and one past the end names the end: the text is never
/// sliced, so no offset can panic.
pub fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for (at, c) in text.char_indices() {
        if at + c.len_utf8() > offset {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

/// A character that shows nothing (or reorders what is shown) and so may
/// not appear in text people read to decide on access: bidirectional
/// controls, zero-width characters, line and paragraph separators, and other
/// invisible format characters. It names itself in refusals:
/// `U+200B ZERO WIDTH SPACE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invisible(pub char);

impl Invisible {
    /// The Unicode name of the character, or what kind of character it is
    /// where it belongs to a range.
    pub fn name(self) -> &'static str {
        match invisible_name(self.0) {
            Some(name) => name,
            None if is_variation_selector(self.0) => "VARIATION SELECTOR WITH NOTHING TO SELECT",
            None => "INVISIBLE CHARACTER",
        }
    }
}

impl fmt::Display for Invisible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "U+{:04X} {}", self.0 as u32, self.name())
    }
}

/// Whether `c` is one of the characters [`Invisible`] describes.
pub fn is_invisible(c: char) -> bool {
    invisible_name(c).is_some()
}

/// The first invisible character in `text`, if any: one of those
/// [`is_invisible`] names, or a variation selector with nothing to select
/// ([`is_stray_selector`]).
pub fn find_invisible(text: &str) -> Option<Invisible> {
    let mut previous = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if is_invisible(c) || is_stray_selector(previous, c, chars.peek().copied()) {
            return Some(Invisible(c));
        }
        previous = Some(c);
    }
    None
}

/// The characters a reader sees: those [`find_invisible`] would name left
/// out (invisible characters, and variation selectors with nothing to
/// select). For text hoist repeats to people (a notice, an error, a claim
/// quoted from a token) that it did not refuse on the way in; characters
/// the caller maps (line separators to line breaks) are mapped first.
pub fn visible_chars(chars: impl IntoIterator<Item = char>) -> impl Iterator<Item = char> {
    let mut previous = None;
    let mut chars = chars.into_iter().peekable();
    std::iter::from_fn(move || {
        loop {
            let c = chars.next()?;
            let hidden = is_invisible(c) || is_stray_selector(previous, c, chars.peek().copied());
            previous = Some(c);
            if !hidden {
                return Some(c);
            }
        }
    })
}

/// Whether `c`, between `previous` and `next`, is a variation selector
/// with nothing to select: it then shows as nothing, and makes two texts
/// that look the same differ (`INC-42`, and `INC-42` with a selector in
/// it). A selector selects only after a character that has variants: an
/// emoji or symbol (U+FE0E, U+FE0F), a keycap's `#`, `*` or digit when
/// the keycap mark (U+20E3) follows, a mathematical symbol, a CJK
/// ideograph or a letter of a script with standardized variants
/// (U+FE00-FE0D), a Mongolian letter (its free variation selectors), and
/// a slashed zero (`0` and U+FE00). Anything else, `é` or another
/// selector included, has none to choose.
pub fn is_stray_selector(previous: Option<char>, c: char, next: Option<char>) -> bool {
    if !is_variation_selector(c) {
        return false;
    }
    let Some(base) = previous else {
        return true;
    };
    // A space, a control or an invisible character has no variants, though
    // some sit among symbols below.
    if base.is_whitespace() || base.is_control() || is_invisible(base) {
        return true;
    }
    let emoji = matches!(c, '\u{FE0E}' | '\u{FE0F}');
    let standardized = matches!(c, '\u{FE00}'..='\u{FE0D}');
    let takes = match base {
        '#' | '*' | '0'..='9' => {
            (emoji && next == Some('\u{20E3}')) || (base == '0' && c == '\u{FE00}')
        }
        '\u{1820}'..='\u{18AA}' => matches!(c, '\u{180B}'..='\u{180D}' | '\u{180F}'),
        '\u{00A9}' | '\u{00AE}' | '\u{3030}' | '\u{303D}' | '\u{3297}' | '\u{3299}' => emoji,
        // Punctuation, letterlike symbols, arrows, mathematical operators,
        // technical symbols, enclosed alphanumerics, shapes, dingbats, and
        // the emoji planes.
        '\u{2000}'..='\u{2BFF}' | '\u{1F000}'..='\u{1FAFF}' => emoji || standardized,
        // CJK ideographs, Myanmar, Phags-pa, Manichaean, Egyptian
        // hieroglyphs: Unicode's standardized variation sequences.
        '\u{3400}'..='\u{9FFF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{3FFFF}'
        | '\u{1000}'..='\u{109F}'
        | '\u{A9E0}'..='\u{A9FF}'
        | '\u{AA60}'..='\u{AA7F}'
        | '\u{A840}'..='\u{A877}'
        | '\u{10AC0}'..='\u{10AFF}'
        | '\u{13000}'..='\u{1345F}' => standardized,
        _ => false,
    };
    !takes
}

/// How many characters of `text` a reader sees: invisible characters,
/// control characters other than line breaks and tabs, and variation
/// selectors (which only choose how the character before them looks) do
/// not count. Minimum lengths are checked against this, so ten zero-width
/// spaces are not ten characters of justification.
pub fn visible_len(text: &str) -> usize {
    text.chars()
        .filter(|c| {
            !is_invisible(*c)
                && !is_variation_selector(*c)
                && (!c.is_control() || matches!(c, '\n' | '\t'))
        })
        .count()
}

/// Whether `c` is a variation selector: it only chooses how the character
/// before it looks.
pub fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}' | '\u{180B}'..='\u{180D}' | '\u{180F}')
}

/// Unicode's invisible characters: the format characters (general category
/// Cf) other than the prepended concatenation marks, which print, plus the
/// line and paragraph separators, the fillers and marks that render as
/// nothing and are used to spoof text, the supplementary variation
/// selectors, and the code points Unicode reserves as ignorable (which a
/// later version may assign, and terminals already show as nothing).
fn invisible_name(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{00AD}' => "SOFT HYPHEN",
        '\u{034F}' => "COMBINING GRAPHEME JOINER",
        '\u{061C}' => "ARABIC LETTER MARK",
        '\u{115F}' => "HANGUL CHOSEONG FILLER",
        '\u{1160}' => "HANGUL JUNGSEONG FILLER",
        '\u{17B4}' => "KHMER VOWEL INHERENT AQ",
        '\u{17B5}' => "KHMER VOWEL INHERENT AA",
        '\u{180E}' => "MONGOLIAN VOWEL SEPARATOR",
        '\u{200B}' => "ZERO WIDTH SPACE",
        '\u{200C}' => "ZERO WIDTH NON-JOINER",
        '\u{200D}' => "ZERO WIDTH JOINER",
        '\u{200E}' => "LEFT-TO-RIGHT MARK",
        '\u{200F}' => "RIGHT-TO-LEFT MARK",
        '\u{2028}' => "LINE SEPARATOR",
        '\u{2029}' => "PARAGRAPH SEPARATOR",
        '\u{202A}' => "LEFT-TO-RIGHT EMBEDDING",
        '\u{202B}' => "RIGHT-TO-LEFT EMBEDDING",
        '\u{202C}' => "POP DIRECTIONAL FORMATTING",
        '\u{202D}' => "LEFT-TO-RIGHT OVERRIDE",
        '\u{202E}' => "RIGHT-TO-LEFT OVERRIDE",
        '\u{2060}' => "WORD JOINER",
        '\u{2061}' => "FUNCTION APPLICATION",
        '\u{2062}' => "INVISIBLE TIMES",
        '\u{2063}' => "INVISIBLE SEPARATOR",
        '\u{2064}' => "INVISIBLE PLUS",
        '\u{2065}' => "UNASSIGNED IGNORABLE CHARACTER",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => "FIRST STRONG ISOLATE",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE",
        '\u{206A}'..='\u{206F}' => "DEPRECATED FORMAT CHARACTER",
        '\u{3164}' => "HANGUL FILLER",
        '\u{FEFF}' => "ZERO WIDTH NO-BREAK SPACE",
        '\u{FFA0}' => "HALFWIDTH HANGUL FILLER",
        '\u{FFF0}'..='\u{FFF8}' => "UNASSIGNED IGNORABLE CHARACTER",
        '\u{FFF9}' => "INTERLINEAR ANNOTATION ANCHOR",
        '\u{FFFA}' => "INTERLINEAR ANNOTATION SEPARATOR",
        '\u{FFFB}' => "INTERLINEAR ANNOTATION TERMINATOR",
        '\u{13430}'..='\u{1343F}' => "EGYPTIAN HIEROGLYPH FORMAT CONTROL",
        '\u{1BCA0}'..='\u{1BCA3}' => "SHORTHAND FORMAT CONTROL",
        '\u{1D173}'..='\u{1D17A}' => "MUSICAL SYMBOL FORMAT CONTROL",
        '\u{E0001}' => "LANGUAGE TAG",
        '\u{E0020}'..='\u{E007F}' => "TAG CHARACTER",
        // Only ideographic variation sequences use these, and a run of
        // them after one letter shows as nothing while carrying a byte
        // each; the selectors emoji use (U+FE00-FE0F) stay.
        '\u{E0100}'..='\u{E01EF}' => "VARIATION SELECTOR SUPPLEMENT",
        '\u{E0000}'
        | '\u{E0002}'..='\u{E001F}'
        | '\u{E0080}'..='\u{E00FF}'
        | '\u{E01F0}'..='\u{E0FFF}' => "UNASSIGNED IGNORABLE CHARACTER",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_are_found_and_named() {
        assert_eq!(find_invisible("plain text, é and 🦀\n\tok"), None);
        let found = find_invisible("fix\u{200B}db").unwrap();
        assert_eq!(found.to_string(), "U+200B ZERO WIDTH SPACE");
        for (c, name) in [
            ('\u{202E}', "U+202E RIGHT-TO-LEFT OVERRIDE"),
            ('\u{2066}', "U+2066 LEFT-TO-RIGHT ISOLATE"),
            ('\u{200F}', "U+200F RIGHT-TO-LEFT MARK"),
            ('\u{2028}', "U+2028 LINE SEPARATOR"),
            ('\u{2029}', "U+2029 PARAGRAPH SEPARATOR"),
            ('\u{FEFF}', "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
            ('\u{00AD}', "U+00AD SOFT HYPHEN"),
            ('\u{E0041}', "U+E0041 TAG CHARACTER"),
            ('\u{3164}', "U+3164 HANGUL FILLER"),
            ('\u{E0100}', "U+E0100 VARIATION SELECTOR SUPPLEMENT"),
            ('\u{E01EF}', "U+E01EF VARIATION SELECTOR SUPPLEMENT"),
            ('\u{2065}', "U+2065 UNASSIGNED IGNORABLE CHARACTER"),
            ('\u{FFF0}', "U+FFF0 UNASSIGNED IGNORABLE CHARACTER"),
            ('\u{FFF8}', "U+FFF8 UNASSIGNED IGNORABLE CHARACTER"),
            ('\u{E0000}', "U+E0000 UNASSIGNED IGNORABLE CHARACTER"),
            ('\u{E0002}', "U+E0002 UNASSIGNED IGNORABLE CHARACTER"),
            ('\u{E0080}', "U+E0080 UNASSIGNED IGNORABLE CHARACTER"),
            ('\u{E0FFF}', "U+E0FFF UNASSIGNED IGNORABLE CHARACTER"),
        ] {
            assert_eq!(
                find_invisible(&format!("a{c}b")).map(|i| i.to_string()),
                Some(name.to_string())
            );
        }
        // Printing format characters and emoji with their selectors are fine.
        assert_eq!(find_invisible("\u{0600}1 ❤\u{FE0F}"), None);
    }

    #[test]
    fn a_selector_with_nothing_to_select_is_invisible() {
        // Emoji, symbols, keycaps, ideographs and Mongolian keep theirs.
        for fine in [
            "❤\u{FE0F}",
            "©\u{FE0F}",
            "™\u{FE0F}",
            "1\u{FE0F}\u{20E3}",
            "#\u{FE0F}\u{20E3}",
            "☺\u{FE0E}",
            "🏳\u{FE0F}",
            "≩\u{FE00}",
            "葛\u{FE00}",
            "ᠠ\u{180B}",
            "0\u{FE00}",
        ] {
            assert_eq!(find_invisible(fine), None, "{fine:?}");
        }
        for (stray, at) in [
            ("db\u{FE0F}", 2),
            ("\u{FE0F}db", 0),
            ("INC-1 \u{FE00}", 6),
            ("❤\u{FE0F}\u{FE0F}", 2),
            ("a\u{180B}", 1),
            ("INC-42\u{FE0F}", 6),
            ("INC-4\u{FE0F}2", 5),
            ("1\u{FE00}", 1),
            ("café\u{FE0F}", 4),
            ("Ä\u{FE00}RENDE-42", 1),
            ("restart db\u{2009}\u{FE0F} now", 11),
        ] {
            let found = find_invisible(stray).unwrap_or_else(|| panic!("{stray:?}"));
            assert_eq!(Some(found.0), stray.chars().nth(at), "{stray:?}");
            assert!(found.to_string().contains("NOTHING TO SELECT"), "{found}");
        }
        assert!(!is_invisible('\u{FE0F}'));
    }

    #[test]
    fn visible_characters_leave_out_what_find_invisible_names() {
        let seen = |text: &str| visible_chars(text.chars()).collect::<String>();
        assert_eq!(seen("INC-4\u{FE0F}2"), "INC-42");
        assert_eq!(seen("main\u{200B}\u{FE0F}"), "main");
        assert_eq!(
            seen("❤\u{FE0F}\u{FE0F} 1\u{FE0F}\u{20E3}"),
            "❤\u{FE0F} 1\u{FE0F}\u{20E3}"
        );
        assert_eq!(seen("\u{202E}db\u{FE00}"), "db");
        assert_eq!(seen("café\n葛\u{FE00}"), "café\n葛\u{FE00}");
        // What is left has nothing find_invisible names.
        for text in ["a\u{FE0F}\u{FE0F}b", "\u{2009}\u{FE0F}x", "\u{FE0F}"] {
            assert_eq!(find_invisible(&seen(text)), None, "{text:?}");
        }
    }

    #[test]
    fn only_visible_characters_count() {
        assert_eq!(visible_len("fix the db"), 10);
        assert_eq!(visible_len(&"\u{200B}".repeat(10)), 0);
        assert_eq!(visible_len("ok\u{202E}\u{2066}\u{FE0F}\u{7}"), 2);
        assert_eq!(visible_len("two\nlines"), 9);
        assert_eq!(visible_len("🦀é"), 2);
    }

    #[test]
    fn lines_and_columns_count_from_one() {
        assert_eq!(line_and_column("", 0), (1, 1));
        assert_eq!(line_and_column("abc", 0), (1, 1));
        assert_eq!(line_and_column("abc", 2), (1, 3));
        assert_eq!(line_and_column("ab\ncd", 3), (2, 1));
        assert_eq!(line_and_column("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(line_and_column("ab\ncé\nx", 7), (3, 1));
        assert_eq!(line_and_column("ab\ncéd", 6), (2, 3));
        // Four bytes of one emoji, then the character after it.
        assert_eq!(line_and_column("🦀x", 4), (1, 2));
    }

    #[test]
    fn offsets_inside_a_character_or_past_the_end_do_not_panic() {
        // Byte 1 and 2 fall inside `é` (bytes 0..2) and the emoji (bytes 1..5).
        assert_eq!(line_and_column("éa", 1), (1, 1));
        assert_eq!(line_and_column("a🦀b", 3), (1, 2));
        assert_eq!(line_and_column("ab\nc", 100), (2, 2));
    }
}
