//! YAML for scripts that is as safe on a terminal as the JSON: block
//! style, every string double-quoted with each control, bidirectional and
//! invisible character written as an escape. A YAML library picks a
//! string's style itself and writes a bidi override or a zero-width space
//! as it is (YAML counts them printable), so this writes the document; a
//! YAML parser gets the exact text back.

use std::fmt::Write;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::text::sanitize::is_hostile;

/// `value` as a YAML document.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let value = serde_json::to_value(value)?;
    let mut out = String::new();
    match &value {
        Value::Object(map) if !map.is_empty() => entries(&mut out, map, 0, false),
        Value::Array(list) if !list.is_empty() => items(&mut out, list, 0),
        scalar => {
            inline(&mut out, scalar);
            out.push('\n');
        }
    }
    Ok(out)
}

/// The value after a key's `:` or an item's `-`: on the same line if it is
/// a scalar or empty, else on the lines below, at `indent`.
fn after_marker(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            entries(out, map, indent, false);
        }
        Value::Array(list) if !list.is_empty() => {
            out.push('\n');
            items(out, list, indent);
        }
        scalar => {
            out.push(' ');
            inline(out, scalar);
            out.push('\n');
        }
    }
}

/// A mapping's entries at `indent`; the first on the current line when it
/// follows an item's `- `.
fn entries(out: &mut String, map: &Map<String, Value>, indent: usize, first_inline: bool) {
    for (n, (key, value)) in map.iter().enumerate() {
        if n > 0 || !first_inline {
            pad(out, indent);
        }
        let mut written = String::new();
        self::key(&mut written, key);
        if written.len() > MAX_IMPLICIT_KEY {
            // An explicit key: `? key` on a line, then `: value`.
            out.push_str("? ");
            out.push_str(&written);
            out.push('\n');
            pad(out, indent);
        } else {
            out.push_str(&written);
        }
        out.push(':');
        after_marker(out, value, indent + 2);
    }
}

/// A sequence's items at `indent`; an item that is a mapping starts on the
/// item's line (`- key: value`).
fn items(out: &mut String, list: &[Value], indent: usize) {
    for value in list {
        pad(out, indent);
        match value {
            Value::Object(map) if !map.is_empty() => {
                out.push_str("- ");
                entries(out, map, indent + 2, true);
            }
            _ => {
                out.push('-');
                after_marker(out, value, indent + 2);
            }
        }
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// YAML reads a key longer than this (in bytes, for libyaml) only as an
/// explicit one.
const MAX_IMPLICIT_KEY: usize = 1000;

/// A key as it is when nothing in it could be read as anything but the
/// key (the field names), else quoted. YAML 1.1 reads `yes`, `on`, `null`
/// and their kin, in any case, as booleans and null.
fn key(out: &mut String, key: &str) {
    let plain = key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null"
        );
    if plain {
        out.push_str(key);
    } else {
        quoted(out, key);
    }
}

fn inline(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            // YAML 1.1 reads `1e+300` as text: its floats have a point.
            let n = n.to_string();
            match n.split_once('e') {
                Some((mantissa, exponent)) if !mantissa.contains('.') => {
                    let _ = write!(out, "{mantissa}.0e{exponent}");
                }
                _ => out.push_str(&n),
            }
        }
        Value::String(s) => quoted(out, s),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

/// A double-quoted scalar: `\` and `"` escaped, and every hostile
/// character (line breaks included), variation selector with nothing to
/// select, and any YAML may not hold as it is, as `\uXXXX` or, past the
/// BMP, `\UXXXXXXXX`.
fn quoted(out: &mut String, text: &str) {
    out.push('"');
    let mut previous = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let stray = hoist_api::text::is_stray_selector(previous, c, chars.peek().copied());
        previous = Some(c);
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            // Writing to a String cannot fail.
            c if (is_hostile(c) || !printable(c)) && u32::from(c) > 0xFFFF => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
            // And a variation selector with nothing to select.
            c if is_hostile(c) || !printable(c) || stray => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// YAML's printable characters (`c-printable`), less the controls that
/// [`is_hostile`] escapes anyway.
fn printable(c: char) -> bool {
    matches!(u32::from(c), 0x20..=0x7E | 0x85 | 0xA0..=0xD7FF | 0xE000..=0xFFFD | 0x10000..)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const HOSTILE: &str =
        "fix\u{200B}db \u{202E}txt \x1b[2J \u{9b} \u{7f} \u{E0041} \u{2028} ok é \"q\" \\ yes";

    #[test]
    fn hostile_characters_are_escaped_and_the_text_survives_exactly() {
        let mut value = json!({
            "justification": HOSTILE,
            "tags": [HOSTILE, "", 1, 2.5, true, null, [], {}, [[1, 2], {"a": [3]}]],
            "grant": {"id": "gr_1", "access": {"env": {"EXAMPLE-KEY": "v", "1": "n"}}},
            "empty": {},
            "none": [],
        });
        value[HOSTILE] = json!("as a key");
        let yaml = to_string(&value).unwrap();
        assert!(!yaml.chars().any(|c| is_hostile(c) && c != '\n'), "{yaml}");
        assert!(
            yaml.contains(
                r#""fix\u200bdb \u202etxt \u001b[2J \u009b \u007f \U000e0041 \u2028 ok é \"q\" \\ yes""#
            ),
            "{yaml}"
        );
        let back: Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(back, value, "{yaml}");
    }

    #[test]
    fn a_selector_with_nothing_to_select_is_escaped() {
        let value = json!({
            "incident": "INC-42\u{FE0F}",
            "ok": "❤\u{FE0F}",
            "hidden": "x\u{200B}\u{FE0F}",
        });
        let yaml = to_string(&value).unwrap();
        assert!(yaml.contains(r#""INC-42\ufe0f""#), "{yaml}");
        assert!(yaml.contains(r#""x\u200b\ufe0f""#), "{yaml}");
        assert!(yaml.contains("❤\u{FE0F}"), "{yaml}");
        let back: Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(back, value, "{yaml}");
    }

    /// Keys YAML 1.1 would read as booleans or null are quoted; a key too
    /// long to be implicit is explicit; characters YAML may not hold, and
    /// floats it would read as text, are written so that they read back.
    #[test]
    fn what_yaml_would_misread_is_written_so_it_reads_back() {
        let mut value = json!({
            "yes": 1, "On": 2, "TRUE": 3, "null": 4, "y": 5, "plain_key": 6,
            "text": "a\u{FFFE}b\u{FFFF}c",
            "floats": [1e300, 1e-7, -0.0, 2.5],
        });
        value["k".repeat(1100)] = json!("long");
        value["é".repeat(600)] = json!({"nested": true});
        let yaml = to_string(&value).unwrap();
        for key in [
            "\"yes\":",
            "\"On\":",
            "\"TRUE\":",
            "\"null\":",
            "\"y\":",
            "\nplain_key:",
        ] {
            assert!(yaml.contains(key), "{key} in {yaml}");
        }
        assert!(yaml.contains(r#""a\ufffeb\uffffc""#), "{yaml}");
        assert!(
            yaml.contains("- 1.0e300\n") || yaml.contains("- 1.0e+300\n"),
            "{yaml}"
        );
        assert!(
            yaml.contains(&format!("? {}\n:", "k".repeat(1100))),
            "{yaml}"
        );
        let back: Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn lists_of_records_read_as_scripts_expect() {
        let value = json!([{"id": "req_1", "state": "pending"}, {"id": "req_2", "reviews": []}]);
        assert_eq!(
            to_string(&value).unwrap(),
            "- id: \"req_1\"\n  state: \"pending\"\n- id: \"req_2\"\n  reviews: []\n"
        );
        assert_eq!(to_string(&json!([])).unwrap(), "[]\n");
        assert_eq!(to_string(&json!("text")).unwrap(), "\"text\"\n");
    }
}
