//! The one piece of JSON the server needs: writing strings. Every event is
//! built by `format!`-like pushes of known keys, so escaping user text is
//! all there is to get right (RFC 8259 §7).

/// Appends `s` to `out` as a JSON string literal, quotes included.
///
/// ```
/// let mut out = String::new();
/// wschat::json::push_string(&mut out, "say \"hi\"\n</script>");
/// assert_eq!(out, r#""say \"hi\"\n<\/script>""#);
/// ```
pub fn push_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escaped = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            // `</` is escaped so the JSON can never close a <script> element.
            '/' if s[..i].ends_with('<') => "\\/",
            // U+2028/2029 are valid in JSON but not in older JavaScript.
            '\u{2028}' => "\\u2028",
            '\u{2029}' => "\\u2029",
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&s[start..i]);
                out.push_str(&format!("\\u{:04x}", c as u32));
                start = i + c.len_utf8();
                continue;
            }
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push_str(escaped);
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::push_string;

    fn json(s: &str) -> String {
        let mut out = String::new();
        push_string(&mut out, s);
        out
    }

    #[test]
    fn escapes() {
        assert_eq!(json(""), r#""""#);
        assert_eq!(json("plain ünïcödé €"), "\"plain ünïcödé €\"");
        assert_eq!(json("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(json("\u{0}\u{1f}\u{7f}"), r#""\u0000\u001f\u007f""#);
        assert_eq!(
            json("<img src=x onerror=alert(1)>"),
            "\"<img src=x onerror=alert(1)>\""
        );
        assert_eq!(json("\u{2028}"), r#""\u2028""#);
    }
}
