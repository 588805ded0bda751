//! JSON for scripts that is also safe on a terminal: the broker's text kept
//! exactly, with every control, bidirectional and invisible character
//! written as a `\uXXXX` escape, so `hoist requests --json` read by a person
//! shows what is there, and a JSON parser gets the exact text back.

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter};

use crate::text::sanitize::is_hostile;

/// Pretty JSON with hostile characters escaped (serde_json escapes only
/// C0 controls, quotes and backslashes by itself).
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    written(value, Escaping(PrettyFormatter::new()))
}

/// [`to_string`] on one line, for JSON lines.
pub fn to_line<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    written(value, Escaping(CompactFormatter))
}

fn written<T: Serialize + ?Sized, F: Formatter>(
    value: &T,
    formatter: Escaping<F>,
) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer)?;
    // serde_json writes UTF-8, and the escapes are ASCII.
    String::from_utf8(out).map_err(|err| serde_json::Error::io(io::Error::other(err)))
}

/// A formatter that lays out as `F` does, escaping hostile characters.
struct Escaping<F>(F);

impl<F: Formatter> Formatter for Escaping<F> {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        // And a variation selector with nothing to select (shown as
        // nothing); a fragment starts after an escape or a quote, which
        // none selects after.
        while let Some((at, c)) = rest.char_indices().find(|(at, c)| {
            let before = rest[..*at].chars().next_back();
            let after = rest[at + c.len_utf8()..].chars().next();
            is_hostile(*c) || hoist_api::text::is_stray_selector(before, *c, after)
        }) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selector_with_nothing_to_select_is_escaped() {
        let value = serde_json::json!({ "incident": "INC-42\u{FE0F}", "ok": "❤\u{FE0F}" });
        let json = to_string(&value).unwrap();
        assert!(json.contains(r"INC-42\ufe0f"), "{json}");
        assert!(json.contains("❤\u{FE0F}"), "{json}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            value
        );
    }

    #[test]
    fn hostile_characters_are_escaped_and_the_text_survives_exactly() {
        let text = "fix\u{200B}db \u{202E}txt \x1b[2J \u{9b} \u{7f} \u{E0041} ok é ❤\u{FE0F}";
        let value = serde_json::json!({ "justification": text, "tags": [text] });
        let json = to_string(&value).unwrap();
        assert!(!json.chars().any(|c| is_hostile(c) && c != '\n'), "{json}");
        assert!(
            json.contains(r"fix\u200bdb \u202etxt \u001b[2J \u009b \u007f \udb40\udc41 ok é ❤️"),
            "{json}"
        );
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back, value);
        let line = to_line(&value).unwrap();
        assert!(!line.contains('\n'), "{line}");
        assert!(!line.chars().any(is_hostile), "{line}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&line).unwrap(),
            value
        );
    }

    #[test]
    fn plain_values_look_as_serde_json_writes_them() {
        let value = serde_json::json!({ "id": "req_1", "n": [1, 2], "empty": {}, "none": [] });
        assert_eq!(
            to_string(&value).unwrap(),
            serde_json::to_string_pretty(&value).unwrap()
        );
    }
}
