//! JSON helpers shared by `frame` and `legacy`: a string escaper and a nesting-depth guard.
//!
//! The escaper writes exactly what JavaScript's `JSON.stringify` writes for a string, so legacy
//! clients see byte-identical frames to the Node original: `"` and `\` escaped, `\b \f \n \r \t`
//! in short form, other C0 controls as lowercase `\u00xx`, and everything else (DEL, U+2028,
//! U+2029, `/`, non-ASCII) written raw. serde_json happens to agree; the tests check both.

/// Frames nested deeper than this many arrays/objects are refused before parsing.
///
/// A v1 frame is a flat object (depth 1); unknown fields are allowed for forward compatibility,
/// so a little nesting inside them is tolerated, but not enough to make parsing expensive.
pub(crate) const MAX_DEPTH: usize = 32;

/// Appends `s` as a JSON string literal (with quotes) to `out`.
pub(crate) fn push_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // Only ASCII bytes are ever escaped, and in UTF-8 an ASCII byte is always a whole
        // character, so `i` is a char boundary whenever we slice at it.
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Whether `text` nests arrays/objects deeper than `max` (a top-level object is depth 1).
///
/// This is a byte scan that understands strings and escapes but nothing else; it runs before
/// the parser so that hostile input is refused in linear time with no recursion at all.
/// Unbalanced input is left for the parser to reject.
pub(crate) fn too_deep(text: &str, max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text.as_bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> String {
        let mut out = String::new();
        push_string(&mut out, s);
        out
    }

    #[test]
    fn escapes_like_json_stringify() {
        assert_eq!(lit("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(lit("\u{8}\u{c}\n\r\t"), r#""\b\f\n\r\t""#);
        assert_eq!(lit("\u{0}\u{1f}\u{1b}"), r#""\u0000\u001f\u001b""#);
        assert_eq!(
            lit("\u{7f}\u{2028}\u{2029}</script>"),
            "\"\u{7f}\u{2028}\u{2029}</script>\""
        );
        assert_eq!(lit("é😀"), "\"é😀\"");
        assert_eq!(lit(""), "\"\"");
    }

    #[test]
    fn agrees_with_serde_json_on_every_ascii_char_and_some_others() {
        let mut s: String = (0u8..128).map(char::from).collect();
        s.push_str("\u{85}\u{a0}\u{2028}\u{2029}\u{feff}\u{fffd}\u{10ffff}😀");
        assert_eq!(lit(&s), serde_json::to_string(&s).unwrap());
    }

    #[test]
    fn depth() {
        assert!(!too_deep(r#"{"a":[1,{"b":[]}]}"#, 4));
        assert!(too_deep(r#"{"a":[1,{"b":[]}]}"#, 3));
        // Brackets inside strings do not count, escaped quotes do not end the string.
        assert!(!too_deep(r#"{"a":"[[[[\"[[[["}"#, 1));
        assert!(too_deep(&"[".repeat(100_000), 32));
    }
}
