//! Display widths in terminal cells, and cutting text to fit them.

use ratatui::buffer::CellWidth;

/// Display width of text in terminal cells, as ratatui draws it: grapheme
/// by grapheme. The width of the whole string can differ (unicode-width
/// makes an Arabic lam-alef one cell, and a halfwidth sound mark none,
/// where each is drawn in a cell of its own), which would put a column a
/// cell off.
pub fn width_of(text: &str) -> usize {
    unicode_segmentation::UnicodeSegmentation::graphemes(text, true)
        .filter(|grapheme| !grapheme.contains(char::is_control))
        .map(|grapheme| usize::from(grapheme.cell_width()))
        .sum()
}

/// Text cut to at most `width` cells, with an ellipsis when cut.
pub fn fit(text: &str, width: usize) -> String {
    if width_of(text) <= width {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    // By grapheme, as the terminal draws them: an emoji with its variation
    // selector is two cells, though its characters count one and none.
    for grapheme in unicode_segmentation::UnicodeSegmentation::graphemes(text, true) {
        let w = width_of(grapheme);
        if used + w + 1 > width {
            break;
        }
        used += w;
        out.push_str(grapheme);
    }
    if width > 0 {
        out.push('…');
    }
    out
}

/// Text broken into lines of at most `width` cells, after the last space
/// that fits, or inside a word longer than a line. Nothing is dropped: a
/// space that does not fit hangs past the end of its line, one cell over,
/// unless it ends the text, where it starts the next line, so that a cursor
/// drawn after the last line is where the next character goes. Empty text
/// is one empty line.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut used = 0;
    // Where `line` may be broken: the byte just after its last space.
    let mut after_space = None;
    let mut graphemes = unicode_segmentation::UnicodeSegmentation::graphemes(text, true).peekable();
    while let Some(grapheme) = graphemes.next() {
        let w = width_of(grapheme);
        let hangs = grapheme == " " && used == width && graphemes.peek().is_some();
        if used + w > width && !line.is_empty() && !hangs {
            let rest = match after_space {
                Some(at) if at < line.len() && grapheme != " " => line.split_off(at),
                _ => String::new(),
            };
            lines.push(std::mem::replace(&mut line, rest));
            used = width_of(&line);
            after_space = None;
            // The word carried over may leave no room for a wide character.
            if used + w > width && !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                used = 0;
            }
        }
        line.push_str(grapheme);
        used += w;
        if grapheme == " " {
            after_space = Some(line.len());
        }
    }
    lines.push(line);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_wraps_after_spaces_and_inside_long_words() {
        assert_eq!(wrap("", 10), vec![""]);
        assert_eq!(
            wrap("restart the primary", 10),
            vec!["restart ", "the ", "primary"]
        );
        assert_eq!(wrap("abcdefghijkl", 5), vec!["abcde", "fghij", "kl"]);
        // A space that does not fit starts the next line, so the cursor
        // after it shows where typing goes.
        assert_eq!(wrap("abcde ", 5), vec!["abcde", " "]);
        // Inside the text, it hangs past the end, and the next word starts
        // its line.
        assert_eq!(wrap("abcde fg", 5), vec!["abcde ", "fg"]);
        assert_eq!(wrap("日本語の", 5), vec!["日本", "語の"]);
        assert_eq!(wrap(" abcd日", 5), vec![" ", "abcd", "日"]);
        for (text, width) in [
            ("Failover of db-prod-1 after the replica fell", 12),
            ("x y z", 1),
        ] {
            let lines = wrap(text, width);
            assert_eq!(lines.concat(), text, "nothing is dropped");
            let fits = |l: &String| width_of(l.strip_suffix(' ').unwrap_or(l)) <= width;
            assert!(lines.iter().all(fits), "{lines:?}");
        }
    }

    #[test]
    fn wide_characters_count_twice_and_cuts_are_marked() {
        assert_eq!(width_of("日本"), 4);
        assert_eq!(fit("prod-db-admin", 20), "prod-db-admin");
        assert_eq!(fit("prod-db-admin", 5), "prod…");
        assert_eq!(fit("日本語", 4), "日…");
        let hearts = "\u{2764}\u{FE0F}".repeat(6);
        assert!(width_of(&fit(&hearts, 10)) <= 10, "{}", fit(&hearts, 10));
    }

    /// The width counted is the width ratatui draws, for the scripts where
    /// a whole string's width differs from its graphemes'.
    #[test]
    fn widths_are_what_ratatui_draws() {
        use ratatui::buffer::Buffer;
        use ratatui::layout::Rect;
        for text in [
            "db-admin",
            "日本語",
            "\u{0644}\u{0627} admin",
            "\u{FF8A}\u{FF9E}\u{FF9F}",
            "\u{2764}\u{FE0F} on call",
            "👩\u{200D}💻 e\u{0301}",
            "\u{1100}\u{1161}\u{11A8}",
        ] {
            let mut buffer = Buffer::empty(Rect::new(0, 0, 40, 1));
            let (end, _) = buffer.set_stringn(0, 0, text, 40, ratatui::style::Style::default());
            assert_eq!(width_of(text), usize::from(end), "{text:?}");
        }
        assert_eq!(width_of("\u{0644}\u{0627}"), 2);
    }
}
