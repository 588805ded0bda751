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
    for c in text.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        used += w;
        out.push(c);
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
    }
}
