//! JSON text exactly as Python's `json.dumps` writes it, and Python's `round`.
//!
//! The seed tutorials push `json.dumps(...)` output into their streams, and
//! users compare ssed's streams with theirs byte for byte: `", "` and `": "`
//! separators, and non-ASCII characters escaped as `\uXXXX` (`ensure_ascii`).
//! HTTP replies, which FastAPI writes compactly, use `serde_json` as it is.

use serde_json::ser::{Formatter, Serializer};
use serde_json::Value;
use std::io::{self, Write};

/// `json.dumps(value)`.
pub fn dumps(value: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = Serializer::with_formatter(&mut out, PythonFormatter);
    // Writing a `Value` into a Vec cannot fail: its keys are strings and its
    // numbers finite.
    serde::Serialize::serialize(value, &mut ser).expect("a Value serialises into memory");
    // The formatter writes only ASCII.
    String::from_utf8(out).expect("ASCII output")
}

/// Python's `round(x, digits)`: the decimal nearest to the exact binary
/// value, ties to even, which is what Rust's `{:.N}` formatting does too.
pub fn round(x: f64, digits: usize) -> f64 {
    format!("{x:.digits$}").parse().unwrap_or(x)
}

struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_json_dumps() {
        let cases = [
            (
                json!({"status": "Received", "message": "hi"}),
                r#"{"status": "Received", "message": "hi"}"#,
            ),
            (
                json!({"a": [1, 2.5, null, true]}),
                r#"{"a": [1, 2.5, null, true]}"#,
            ),
            (json!("héllo 😀"), r#""h\u00e9llo \ud83d\ude00""#),
            (json!({"q": "say \"x\"\n"}), r#"{"q": "say \"x\"\n"}"#),
            (json!({}), "{}"),
            (json!({"price": 150.0}), r#"{"price": 150.0}"#),
        ];
        for (value, expected) in cases {
            assert_eq!(dumps(&value), expected);
        }
    }

    #[test]
    fn rounds_like_python() {
        // Python: round(0.125, 2) == 0.12, round(2.675, 2) == 2.67 (binary value
        // is below the tie), round(0.375, 2) == 0.38 (tie, to even).
        assert_eq!(round(0.125, 2), 0.12);
        assert_eq!(round(2.675, 2), 2.67);
        assert_eq!(round(0.375, 2), 0.38);
        assert_eq!(round(28.999999999999996, 2), 29.0);
        assert_eq!(round(0.55, 4), 0.55);
    }
}
