//! Where in a text a parser's byte offset falls, for `file:line:column`
//! errors in the broker's policy and the client's config alike.

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

#[cfg(test)]
mod tests {
    use super::line_and_column;

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
