//! Display widths in terminal cells, and cutting text to fit them.

/// Display width of text in terminal cells.
pub fn width_of(text: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(text)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_characters_count_twice_and_cuts_are_marked() {
        assert_eq!(width_of("日本"), 4);
        assert_eq!(fit("prod-db-admin", 20), "prod-db-admin");
        assert_eq!(fit("prod-db-admin", 5), "prod…");
        assert_eq!(fit("日本語", 4), "日…");
        let hearts = "\u{2764}\u{FE0F}".repeat(6);
        assert!(width_of(&fit(&hearts, 10)) <= 10, "{}", fit(&hearts, 10));
    }
}
